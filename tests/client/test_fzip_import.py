"""End-to-end import through the `fzip` client.

Export a seeded user's data with the CLI, then `fzip import upload
--validate-only --wait` (a validation verdict, nothing written), `fzip
import upload --start --wait` into a fresh user (data summary equal to the
source's afterwards), a tampered package (validation fails, exit 1), and
the shared job commands (status, list, delete); `fzip import undo --wait`
puts the empty profile back and a second undo is refused (exit 1).
"""
import hashlib
import json
import os
import sys
import tempfile
import zipfile

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)
from fzipd_harness import Checks, Fzipd, unique_user  # noqa: E402
from fzip_cli import Cli, check, expect  # noqa: E402

SEED_TX = 300


class World:
    def __init__(self, srv):
        self.srv = srv
        self.addr = "127.0.0.1:%d" % srv.port
        self.source = unique_user("src")
        srv.seed(self.source, SEED_TX, seed=11)
        self.src = Cli(self.addr, srv.token(self.source))
        self.dir = tempfile.mkdtemp(prefix="fzip-cli-import-", dir=srv.dir)
        self.package = os.path.join(self.dir, "src.fzip")
        job = expect(self.src.run("export", "create", "--wait", "--json"), 0).json_lines()[-1]
        expect(self.src.run("export", "download", job["export_id"], "-o", self.package), 0)
        self.summary = expect(self.src.run("data", "summary", "--json"), 0).json_lines()[0]

    def fresh(self, prefix):
        return Cli(self.addr, self.srv.token(unique_user(prefix)))


def test_validate_only_passes_and_writes_nothing(w):
    cli = w.fresh("val")
    r = expect(cli.run("import", "upload", w.package, "--validate-only", "--wait", "--json"), 0)
    job = r.json_lines()[-1]
    check(job["status"] == "IMPORT_STATUS_VALIDATION_PASSED", "job %r" % job)
    check(job["validate_only"] is True and int(job["package_size"]) == os.path.getsize(w.package), job)
    after = expect(cli.run("data", "summary", "--json"), 0).json_lines()[0]
    check(int(after.get("transactions_count", 0)) == 0, "validate-only wrote data: %r" % after)


def test_upload_start_wait_restores_everything(w):
    cli = w.fresh("dst")
    r = expect(cli.run("import", "upload", w.package, "--start", "--wait", "--json"), 0)
    job = r.json_lines()[-1]
    check(job["status"] == "IMPORT_STATUS_COMPLETED", "job %r" % job)
    check("upload" in r.err, "no upload progress on stderr: %r" % r)
    after = expect(cli.run("data", "summary", "--json"), 0).json_lines()[0]
    for key in ("accounts_count", "transactions_count", "categories_count", "file_maps_count",
                "transaction_files_count", "file_bytes"):
        check(after.get(key) == w.summary.get(key), "%s: %r vs %r" % (key, after, w.summary))
    iid = job["import_id"]
    expect(cli.run("import", "status", iid), 0, stdout_has="status: COMPLETED")
    expect(cli.run("import", "list"), 0, stdout_has=iid)
    expect(cli.run("import", "delete", iid), 0, stdout_has="deleted import " + iid)
    expect(cli.run("import", "status", iid), 1, stderr_has="fzip: NOT_FOUND: ")


def test_upload_then_start_by_id(w):
    cli = w.fresh("two-step")
    job = expect(cli.run("import", "upload", w.package, "--json"), 0).json_lines()[-1]
    check(job["status"] == "IMPORT_STATUS_UPLOADED", "job %r" % job)
    done = expect(cli.run("import", "start", job["import_id"], "--strategy", "skip_existing",
                          "--wait", "--json"), 0).json_lines()[-1]
    check(done["status"] == "IMPORT_STATUS_COMPLETED", "job %r" % done)
    check(done["merge_strategy"] == "MERGE_STRATEGY_SKIP_EXISTING", "strategy %r" % done)


def test_tampered_package_fails_validation_exit_1(w):
    bad = os.path.join(w.dir, "bad.fzip")
    with zipfile.ZipFile(w.package) as zin, zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "data/transactions.json":
                mid = len(data) // 2  # checksum no longer matches the manifest
                data = data[:mid] + bytes([data[mid] ^ 0x01]) + data[mid + 1:]
            zout.writestr(info.filename, data)
    cli = w.fresh("bad")
    r = expect(cli.run("import", "upload", bad, "--validate-only", "--wait", "--json"), 1)
    job = r.json_lines()[-1]
    check(job["status"] == "IMPORT_STATUS_VALIDATION_FAILED", "job %r" % job)
    check("VALIDATION_FAILED" in r.err, "no failure line: %r" % r)


def changed_copy(w, name):
    """The source's package with its first transaction's memo changed (the
    manifest's checksum of that entry brought up to date); that id."""
    path = os.path.join(w.dir, name)
    with zipfile.ZipFile(w.package) as zin:
        entries = [(i.filename, zin.read(i.filename)) for i in zin.infolist()]
    parsed = json.loads(dict(entries)["data/transactions.json"])
    first = parsed["transactions"][0]
    first["memo"] = "changed by the cli test"
    txns = json.dumps(parsed, separators=(",", ":")).encode()
    manifest = json.loads(dict(entries)["manifest.json"])
    manifest["checksums"]["data/transactions.json"] = "sha256:" + hashlib.sha256(txns).hexdigest()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for n, data in entries:
            zout.writestr(n, {"data/transactions.json": txns,
                              "manifest.json": json.dumps(manifest).encode()}.get(n, data))
    return path, first["transactionId"]


def test_merge_fields_preview_prints_the_diff(w):
    """--strategy merge_fields is offered and accepted, and the text preview
    of the source's own package with one memo changed shows that entity
    and field, and the rest identical (docs/CLIENT.md)."""
    expect(w.src.run("import", "upload", "--help"), 0, stdout_has="merge_fields")
    path, tid = changed_copy(w, "memo.fzip")
    r = expect(w.src.run("import", "upload", path, "--strategy", "merge_fields",
                         "--validate-only", "--wait"), 0)
    for want in ("status: VALIDATION_PASSED", "merge_strategy: MERGE_FIELDS", "changed: 1",
                 "identical: %d" % (SEED_TX - 1), "entity_id: " + tid, "fields[0]: memo"):
        check(want in r.out, "%r not in the preview:\n%s" % (want, r.out))


def test_bad_strategy_is_usage_error(w):
    expect(w.src.run("import", "upload", w.package, "--strategy", "merge_harder"), 2,
           stderr_has="unknown merge strategy")


def test_undo_puts_back_the_empty_profile_and_refuses_twice(w):
    cli = w.fresh("undo")
    r = expect(cli.run("import", "upload", w.package, "--start", "--wait", "--json"), 0)
    job = r.json_lines()[-1]
    check(job["status"] == "IMPORT_STATUS_COMPLETED" and int(job["undo_until"]) > 0,
          "job %r" % job)
    r = expect(cli.run("import", "undo", job["import_id"], "--wait", "--json"), 0)
    final = r.json_lines()[-1]
    check(final["status"] == "IMPORT_STATUS_UNDONE", "undo ended %r" % final)
    after = expect(cli.run("data", "summary", "--json"), 0).json_lines()[0]
    for key in ("accounts_count", "transactions_count", "transaction_files_count"):
        check(int(after.get(key, 0)) == 0, "undo left %s: %r" % (key, after))
    expect(cli.run("import", "undo", job["import_id"]), 1, stderr_has="only a COMPLETED import")
    expect(cli.run("import", "undo", "--help"), 0, stdout_has="Usage: fzip import undo")


def counts_of(job, field):
    return {c["kind"]: int(c.get(field, 0)) for c in job["result"]["counts"]}


def test_restore_options(w):
    # --as-copy twice into the profile the package came from: three times
    # the data.
    cli = w.fresh("copy")
    expect(cli.run("import", "upload", w.package, "--start", "--wait", "--json"), 0)
    for _ in range(2):
        r = expect(cli.run("import", "upload", w.package, "--as-copy", "--wait", "--json"), 0)
        job = r.json_lines()[-1]
        check(job["status"] == "IMPORT_STATUS_COMPLETED" and job["restore"]["as_copy"],
              "copy %r" % job)
    after = expect(cli.run("data", "summary", "--json"), 0).json_lines()[0]
    for key in ("accounts_count", "transactions_count", "transaction_files_count", "file_bytes"):
        check(int(after.get(key, 0)) == 3 * int(w.summary.get(key, 0)), "%s: %r" % (key, after))
    # A selection prints what it left out.
    fresh = w.fresh("kinds")
    expect(fresh.run("import", "upload", w.package, "--kinds", "accounts,categories,file_maps",
                     "--validate-only", "--wait"), 0, stdout_has="not_selected: ")
    # start replaces the upload's options: only transactions, whose accounts
    # are missing, are all dropped.
    job = expect(fresh.run("import", "upload", w.package, "--json"), 0).json_lines()[-1]
    done = expect(fresh.run("import", "start", job["import_id"], "--kinds", "transactions",
                            "--drop-dangling", "--wait", "--json"), 0).json_lines()[-1]
    check(done["status"] == "IMPORT_STATUS_COMPLETED", "job %r" % done)
    check(counts_of(done, "dropped").get("ENTITY_KIND_TRANSACTIONS") == SEED_TX,
          "dropped %r" % counts_of(done, "dropped"))
    expect(fresh.run("import", "upload", w.package, "--kinds", "budgets"), 2,
           stderr_has="--kinds: unknown kind 'budgets'")
    expect(fresh.run("import", "start", "--help"), 0, stdout_has="--drop-dangling")


def main():
    checks = Checks()
    with Fzipd() as srv:
        w = World(srv)
        for t in (test_validate_only_passes_and_writes_nothing,
                  test_upload_start_wait_restores_everything,
                  test_upload_then_start_by_id,
                  test_tampered_package_fails_validation_exit_1,
                  test_bad_strategy_is_usage_error,
                  test_merge_fields_preview_prints_the_diff,
                  test_undo_puts_back_the_empty_profile_and_refuses_twice,
                  test_restore_options):
            checks.run(t, w)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
