"""End-to-end tests of the `fzip` command-line client.

A real fzipd (SQLite store, started by tests/lib/fzipd_harness.py) and the
real `fzip` binary: seed a user, export and download through the CLI
(interrupted with SIGKILL mid-download and resumed to the same sha256),
verify the package offline, check that `package verify` catches a flipped
byte in every entry and a missing file, and check exit statuses and
error lines.  Import tests are in test_fzip_import.py.
"""
import hashlib
import os
import signal
import sys
import tempfile
import time
import zipfile

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)
from fzipd_harness import Checks, Fzipd, unique_user  # noqa: E402
from fzip_cli import Cli, check, expect  # noqa: E402

SEED_TX = 400


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


class World:
    """One server, one seeded user, one completed export downloaded once."""

    def __init__(self, srv):
        self.srv = srv
        self.user = unique_user("cli")
        srv.seed(self.user, SEED_TX, seed=7)
        self.addr = "127.0.0.1:%d" % srv.port
        self.cli = Cli(self.addr, srv.token(self.user))
        self.dir = tempfile.mkdtemp(prefix="fzip-cli-", dir=srv.dir)
        self.export = None
        self.package = None


def test_help_lists_every_command_and_each_has_help(w):
    r = expect(Cli().run("--help"), 0)
    section = r.out.split("Commands:\n", 1)[1].split("\n\n", 1)[0]  # not "Also:"
    commands = [line.split()[1:3] for line in section.splitlines() if line.startswith("  fzip ")]
    check(len(commands) >= 18, "help lists too few commands: %r" % r)
    for group, name in commands:
        h = expect(Cli().run(group, name, "--help"), 0, stdout_has="Usage: fzip %s %s" % (group, name))
        check("Global options" in h.out, "no global options hint: %r" % h)
    check("Exit status" in r.out, "exit statuses undocumented")


def test_usage_errors_exit_2(w):
    expect(Cli().run("export", "create", "--type", "nope"), 2, stderr_has="unknown export type")
    expect(Cli().run("export", "status"), 2, stderr_has="missing argument ID")
    expect(Cli().run("export", "list", "--bogus"), 2, stderr_has="unknown option --bogus")
    expect(Cli().run("frobnicate"), 2, stderr_has="unknown command")
    expect(Cli().run("data", "list", "transactions", "--from", "2024-13-01"), 2,
           stderr_has="not a date")


def test_unreachable_server_exits_4_with_status_line(w):
    r = expect(Cli("127.0.0.1:1", "x").run("data", "summary"), 4)
    check(r.err.startswith("fzip: UNAVAILABLE: "), "error line: %r" % r)


def test_missing_and_bad_token_exit_5(w):
    r = expect(Cli(w.addr).run("data", "summary"), 5)
    check(r.err.startswith("fzip: UNAUTHENTICATED: "), "error line: %r" % r)
    check("--token" in r.err, "no hint about the token: %r" % r)
    expect(Cli(w.addr, "not-a-jwt").run("data", "summary"), 5, stderr_has="UNAUTHENTICATED")


def test_environment_supplies_address_and_token(w):
    cli = Cli(env={"FZIP_ADDR": w.addr, "FZIP_TOKEN": w.cli.token})
    r = expect(cli.run("data", "summary", "--json"), 0)
    check(int(r.json_lines()[0]["transactions_count"]) == SEED_TX, "summary: %r" % r)


def test_data_summary_and_lists_match(w):
    s = expect(w.cli.run("data", "summary", "--json"), 0).json_lines()[0]
    check(int(s["transactions_count"]) == SEED_TX, "summary %r" % s)
    text = expect(w.cli.run("data", "summary"), 0)
    check("transactions_count: %d" % SEED_TX in text.out, "text summary: %r" % text)
    accounts = expect(w.cli.run("data", "list", "accounts", "--json", "--limit", "0"), 0).json_lines()
    check(len(accounts) == int(s["accounts_count"]), "accounts %d vs %r" % (len(accounts), s))
    txs = expect(w.cli.run("data", "list", "transactions", "--json", "--limit", "0"), 0).json_lines()
    check(len(txs) == SEED_TX, "transactions listed: %d" % len(txs))
    five = expect(w.cli.run("data", "list", "transactions", "--limit", "5"), 0)
    check(len(five.out.splitlines()) == 5, "--limit 5 printed %r" % five)
    acc = accounts[0]["account_id"]
    mine = expect(w.cli.run("data", "list", "transactions", "--json", "--limit", "0",
                            "--accounts", acc), 0).json_lines()
    check(mine and all(t["account_id"] == acc for t in mine), "account filter leaked")
    check(len(mine) < SEED_TX, "account filter did not filter")
    expect(w.cli.run("data", "list", "accounts", "--from", "2020-01-01"), 2,
           stderr_has="do not apply to accounts")


def test_export_create_wait_reports_completed_job(w):
    r = expect(w.cli.run("export", "create", "--wait", "--json", "--description", "cli e2e"), 0)
    job = r.json_lines()[-1]
    check(job["status"] == "EXPORT_STATUS_COMPLETED", "job %r" % job)
    check(job["description"] == "cli e2e", "description lost: %r" % job)
    check(len(job["package_sha256"]) == 64 and int(job["package_size"]) > 0, "job %r" % job)
    # Not a terminal: plain progress lines on stderr, ending at 100%.
    check("COMPLETED" in r.err and "100%" in r.err, "no plain progress lines: %r" % r)
    w.export = job
    status = expect(w.cli.run("export", "status", job["export_id"]), 0)
    check("status: COMPLETED" in status.out, "status text: %r" % status)
    listed = expect(w.cli.run("export", "list"), 0)
    check(job["export_id"] in listed.out, "export list: %r" % listed)


def test_export_download_interrupted_then_resumed_to_same_sha256(w):
    check(w.export, "needs the export of the previous test")
    eid = w.export["export_id"]
    size = int(w.export["package_size"])
    out = os.path.join(w.dir, "pkg.fzip")
    part = out + ".part"
    # Paced so that a kill lands mid-download deterministically.
    rate = max(4096, size // 8)
    p = w.cli.popen("export", "download", eid, "-o", out, "--chunk-size", "4k",
                    "--limit-rate", str(rate))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if os.path.exists(part) and os.path.getsize(part) >= size // 4:
            break
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    p.stdout.close()
    p.stderr.close()
    got = os.path.getsize(part)
    check(0 < got < size, "interrupt did not leave a partial file: %d of %d" % (got, size))
    check(not os.path.exists(out), "final file appeared before the download finished")
    r = expect(w.cli.run("export", "download", eid, "-o", out, "--json"), 0)
    res = r.json_lines()[0]
    check(int(res["resumed_from"]) == got, "did not resume at %d: %r" % (got, res))
    check("resuming" in r.err, "no resume notice: %r" % r)
    check(res["sha256"] == w.export["package_sha256"] == sha256_of(out), "sha256 differs")
    check(os.path.getsize(out) == size and not os.path.exists(part), "file state after resume")
    w.package = out


def test_download_of_corrupt_partial_fails_verification_exit_3(w):
    check(w.package, "needs the downloaded package")
    out = os.path.join(w.dir, "corrupt.fzip")
    with open(w.package, "rb") as f:
        head = bytearray(f.read(1000))
    head[500] ^= 0xFF
    with open(out + ".part", "wb") as f:
        f.write(head)
    r = expect(w.cli.run("export", "download", w.export["export_id"], "-o", out), 3)
    last = r.err.splitlines()[-1]
    check(last.startswith("fzip: DATA_LOSS: sha256 mismatch"), "error line: %r" % r)
    check(not os.path.exists(out) and not os.path.exists(out + ".part"), "bad bytes kept")


def test_download_over_a_longer_stale_partial_starts_over(w):
    check(w.package, "needs the downloaded package")
    out = os.path.join(w.dir, "stale.fzip")
    with open(out + ".part", "wb") as f:
        f.write(b"\0" * (int(w.export["package_size"]) + 100))
    r = expect(w.cli.run("export", "download", w.export["export_id"], "-o", out, "--json"), 0)
    check("starting over" in r.err, "no restart notice: %r" % r)
    check(int(r.json_lines()[0]["resumed_from"]) == 0, "result %r" % r)
    check(sha256_of(out) == w.export["package_sha256"], "sha256 after restart")


def test_download_unknown_export_is_not_found_exit_1(w):
    r = expect(w.cli.run("export", "download", "no-such-export", "-o",
                         os.path.join(w.dir, "x.fzip")), 1)
    check(r.err.startswith("fzip: NOT_FOUND: "), "error line: %r" % r)


def test_package_inspect_and_verify_pass(w):
    check(w.package, "needs the downloaded package")
    info = expect(w.cli.run("package", "inspect", w.package, "--json"), 0).json_lines()[0]
    check(int(info["transactions_count"]) == SEED_TX and info["format_version"] == "1.0", info)
    text = expect(w.cli.run("package", "inspect", w.package), 0)
    check("transactions: present, declared %d" % SEED_TX in text.out, "inspect: %r" % text)
    v = expect(w.cli.run("package", "verify", w.package), 0, stdout_has="package verified")
    check("transactions" in v.out, "verify text: %r" % v)
    vj = expect(w.cli.run("package", "verify", w.package, "--json"), 0).json_lines()[0]
    check(vj["passed"] is True and int(vj["errors"]) == 0, "verify json %r" % vj)
    # Offline: works with no server at all.
    expect(Cli("127.0.0.1:1").run("package", "verify", w.package), 0)


def rewrite(src, dst, change):
    """Copies the zip, letting change(name, data) alter or drop entries."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)


def test_package_verify_catches_a_flipped_byte_in_every_entry(w):
    check(w.package, "needs the downloaded package")
    with zipfile.ZipFile(w.package) as z:
        names = [i.filename for i in z.infolist() if not i.filename.endswith("/")]
    check(len(names) >= 7, "too few entries to test: %r" % names)
    for name in names:
        bad = os.path.join(w.dir, "flip.fzip")

        def flip(n, data, target=name):
            if n != target or not data:
                return data
            b = bytearray(data)
            b[len(b) // 2] ^= 0x01
            return bytes(b)

        rewrite(w.package, bad, flip)
        r = w.cli.run("package", "verify", bad)
        check(r.rc == 3, "flipped byte in %s: %r" % (name, r))
        check("verification failed" in r.err or "fzip: " in r.err, "no failure line for %s" % name)


def test_package_verify_catches_a_missing_file(w):
    check(w.package, "needs the downloaded package")
    bad = os.path.join(w.dir, "missing.fzip")
    dropped = []

    def drop_first_file(n, data):
        if n.startswith("files/") and not n.endswith("/") and not dropped:
            dropped.append(n)
            return None
        return data

    rewrite(w.package, bad, drop_first_file)
    check(dropped, "package has no files/ entry")
    r = expect(w.cli.run("package", "verify", bad), 3, stderr_has="verification failed")
    vj = w.cli.run("package", "verify", bad, "--json").json_lines()[0]
    check(vj["passed"] is False and vj["issues"], "json verdict: %r" % vj)


def test_package_verify_of_a_non_zip_exits_3(w):
    junk = os.path.join(w.dir, "junk.fzip")
    with open(junk, "wb") as f:
        f.write(b"this is not a zip file" * 10)
    r = w.cli.run("package", "verify", junk)
    check(r.rc == 3, "non-zip: %r" % r)
    expect(w.cli.run("package", "inspect", junk), 3)


def test_export_delete_then_status_is_not_found(w):
    r = expect(w.cli.run("export", "create", "--json", "--type", "accounts_only"), 0)
    eid = r.json_lines()[0]["export_id"]
    expect(w.cli.run("export", "watch", eid), 0)
    expect(w.cli.run("export", "delete", eid), 0, stdout_has="deleted export " + eid)
    r = expect(w.cli.run("export", "status", eid), 1, stderr_has="fzip: NOT_FOUND: ")
    # The server's google.rpc.ErrorInfo, kept by rpc_client (docs/GRPC.md "Error model").
    check("(reason JOB_NOT_FOUND, request id " in r.err, "no reason/request id: %r" % r)


def test_export_create_with_request_id_is_idempotent(w):
    args = ("export", "create", "--json", "--type", "accounts_only", "--request-id", "cli-op-1")
    first = expect(w.cli.run(*args), 0).json_lines()[0]["export_id"]
    again = expect(w.cli.run(*args), 0).json_lines()[0]["export_id"]
    check(again == first, "the same --request-id made export %s, then %s" % (first, again))
    listed = expect(w.cli.run("export", "list", "--json"), 0).out
    check(listed.count(first) == 1, "export list: %r" % listed)
    expect(w.cli.run("export", "create", "--type", "categories_only", "--request-id",
                     "cli-op-1"), 1,
           stderr_has="fzip: ALREADY_EXISTS: request_id cli-op-1 was used for a different "
                      "request")
    expect(w.cli.run("export", "create", "--request-id", "has space"), 1,
           stderr_has="fzip: INVALID_ARGUMENT: request_id")


def main():
    checks = Checks()
    with Fzipd() as srv:
        w = World(srv)
        for t in (test_help_lists_every_command_and_each_has_help,
                  test_usage_errors_exit_2,
                  test_unreachable_server_exits_4_with_status_line,
                  test_missing_and_bad_token_exit_5,
                  test_environment_supplies_address_and_token,
                  test_data_summary_and_lists_match,
                  test_export_create_wait_reports_completed_job,
                  test_export_download_interrupted_then_resumed_to_same_sha256,
                  test_download_of_corrupt_partial_fails_verification_exit_3,
                  test_download_over_a_longer_stale_partial_starts_over,
                  test_download_unknown_export_is_not_found_exit_1,
                  test_package_inspect_and_verify_pass,
                  test_package_verify_catches_a_flipped_byte_in_every_entry,
                  test_package_verify_catches_a_missing_file,
                  test_package_verify_of_a_non_zip_exits_3,
                  test_export_delete_then_status_is_not_found,
                  test_export_create_with_request_id_is_idempotent):
            checks.run(t, w)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
