"""`fzip import upload` against a server that ends the stream: real fzip,
real fzipd (SQLite store).

- The server refuses the upload mid-way (failpoint import.upload_chunk) or
  at once (over --max-upload-bytes): fzip exits at once, non-zero, with the
  server's message, and nothing is left on the server.  Before the client
  watched for the call's status while sending, it blocked forever on flow
  control.
- The stream breaks (fzip killed mid-upload): the server keeps what it
  received (phase "interrupted", received_bytes); `--resume ID` sends the
  rest and the import completes equal to the source, checked over the
  whole package; a resume at the wrong offset is refused and harmless, and
  a resume the server refuses mid-way keeps the bytes from before it.
"""
import hashlib
import os
import signal
import sqlite3
import sys
import tempfile
import time

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)
from fzipd_harness import Checks, Fzipd, sqlite_blob_file, unique_user  # noqa: E402
from fzip_cli import Cli, check, expect  # noqa: E402

import grpc  # noqa: E402
from fzip.v1 import import_service_pb2 as ipb  # noqa: E402
from fzip.v1 import import_service_pb2_grpc as igrpc  # noqa: E402

BIG = 48 * 1024 * 1024
SOURCE_TX = int(os.environ.get("FZIP_TEST_RESUME_TX", "30000"))
RATE = os.environ.get("FZIP_TEST_RESUME_RATE", "1M")  # --limit-rate of the upload to cut
CHUNK = 1024 * 1024  # the CLI's upload chunk (client/cli_xfer.h)
PROMPT_S = 30  # "at once": far below the old forever, with room for a loaded machine


def big_file(tmp):
    path = os.path.join(tmp, "big.bin")
    if not os.path.exists(path):
        with open(path, "wb") as f:
            block = os.urandom(1024 * 1024)
            for _ in range(BIG // len(block)):
                f.write(block)
    return path


def package_blobs(srv):
    """Import blobs of the embedded store; None on MongoDB (the storage
    conformance suite covers GridFS there)."""
    if not srv.store.startswith("sqlite:"):
        return None
    db = sqlite3.connect(sqlite_blob_file(srv.store))
    try:
        return db.execute("select blob_id, committed from blobs "
                          "where blob_id like 'import-%'").fetchall()
    finally:
        db.close()


def upload_refused_promptly(srv, tmp, who, reason):
    """A new user uploads the big file: fzip must fail saying `reason`, and
    within PROMPT_S.  Returns that user's Cli."""
    cli = Cli("127.0.0.1:%d" % srv.port, srv.token(unique_user(who)))
    started = time.monotonic()
    r = cli.run("import", "upload", big_file(tmp), timeout=120)
    took = time.monotonic() - started
    check(r.rc != 0 and reason in r.err, "result %r" % r)
    check(took < PROMPT_S, "fzip took %.1f s to notice the refusal" % took)
    return cli


def test_refused_mid_way_exits_at_once(tmp):
    env = {"FZIP_FAILPOINTS": "import.upload_chunk=error@3"}
    with Fzipd(env=env) as srv:
        # The failpoint fails like the store (UNAVAILABLE, store domain): the
        # client hears the sanitised message (docs/GRPC.md "Error model").
        cli = upload_refused_promptly(srv, tmp, "refused", "storage unavailable; retry later")
        listed = expect(cli.run("import", "list", "--json"), 0)
        check(listed.json_lines() == [], "a refused upload left a job: %r" % listed)
        check(package_blobs(srv) in ([], None), "a refused upload left blobs: %r"
              % package_blobs(srv))


def test_over_the_size_limit_exits_at_once(tmp):
    with Fzipd(extra_args=["--max-upload-bytes", str(1024 * 1024)]) as srv:
        upload_refused_promptly(srv, tmp, "limit", "upload limit")


def interrupted(cli):
    jobs = expect(cli.run("import", "list", "--json"), 0).json_lines()
    return [j for j in jobs if j.get("current_phase") == "interrupted"]


def test_broken_upload_resumes_to_an_equal_import(tmp):
    with Fzipd() as srv:
        addr = "127.0.0.1:%d" % srv.port
        source = unique_user("src")
        srv.seed(source, SOURCE_TX, seed=21)
        src = Cli(addr, srv.token(source))
        package = os.path.join(tmp, "src.fzip")
        job = expect(src.run("export", "create", "--wait", "--json"), 0).json_lines()[-1]
        expect(src.run("export", "download", job["export_id"], "-o", package), 0)
        size = os.path.getsize(package)
        check(size > 2 * CHUNK, "package of %d bytes: too small to cut" % size)
        with open(package, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        summary = expect(src.run("data", "summary", "--json"), 0).json_lines()[0]

        user = unique_user("dst")
        cli = Cli(addr, srv.token(user))
        # 1 MiB chunks at RATE: killed after a chunk or two.
        p = cli.popen("import", "upload", package, "--limit-rate", RATE, "--quiet")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and p.poll() is None and not [
                j for j in expect(cli.run("import", "list", "--json"), 0).json_lines()
                if j.get("current_phase") == "receiving"]:
            time.sleep(0.1)
        time.sleep(1.5)  # a chunk or two in
        check(p.poll() is None, "upload ended before the cut")
        live = [j for j in expect(cli.run("import", "list", "--json"), 0).json_lines()
                if j.get("current_phase") == "receiving"]
        check(live and int(live[0]["received_bytes"]) > 0, "no live received_bytes: %r" % live)
        p.send_signal(signal.SIGKILL)
        p.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not interrupted(cli):
            time.sleep(0.2)
        cut = interrupted(cli)
        check(len(cut) == 1, "no interrupted upload listed: %r\n%s" % (
            cli.run("import", "list", "--json").out, srv.read_log()[-1500:]))
        iid, received = cut[0]["import_id"], int(cut[0]["received_bytes"])
        check(0 < received < size, "received %d of %d" % (received, size))
        check(cut[0]["status"] == "IMPORT_STATUS_UPLOADED", "job %r" % cut[0])
        # Starting an incomplete upload is refused.
        expect(cli.run("import", "start", iid), 1, stderr_has="cannot be started")

        # A resume at the wrong offset is refused and changes nothing.
        stub = igrpc.ImportServiceStub(srv.channel)
        md = srv.metadata(user)
        try:
            stub.UploadImport(iter([ipb.UploadImportRequest(options=ipb.ImportOptions(
                resume_import_id=iid, resume_offset=received - 1))]), metadata=md, timeout=30)
            raise AssertionError("a wrong offset was accepted")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.FAILED_PRECONDITION and
                  "resume from offset %d" % received in e.details(), "%s %s"
                  % (e.code(), e.details()))
        check(int(interrupted(cli)[0]["received_bytes"]) == received, "the refusal changed it")

        # A resume that the server refuses mid-way (more bytes than it
        # announced) keeps the bytes from before it: still interrupted at
        # the same offset, and the resume below still gives an equal import.
        try:
            stub.UploadImport(iter([
                ipb.UploadImportRequest(options=ipb.ImportOptions(
                    resume_import_id=iid, resume_offset=received, expected_size=received + 10)),
                ipb.UploadImportRequest(chunk=b"x" * 11)]), metadata=md, timeout=30)
            raise AssertionError("a chunk past expected_size was accepted")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, "%s %s" % (e.code(), e.details()))
        kept = interrupted(cli)
        check(len(kept) == 1 and int(kept[0]["received_bytes"]) == received,
              "a failed resume lost the kept upload: %r" % kept)

        r = expect(cli.run("import", "upload", package, "--resume", iid, "--start", "--wait",
                           "--json"), 0)
        done = r.json_lines()[-1]
        check(done["import_id"] == iid and done["status"] == "IMPORT_STATUS_COMPLETED",
              "job %r" % done)
        check(int(done["package_size"]) == size == int(done["received_bytes"]) and
              done["package_sha256"] == sha, "whole package differs: %r" % done)
        check(any(e["type"] == "upload_resumed" for e in done["events"]), "events %r" % done)
        after = expect(cli.run("data", "summary", "--json"), 0).json_lines()[0]
        for key in ("accounts_count", "transactions_count", "categories_count",
                    "file_maps_count", "transaction_files_count", "file_bytes"):
            check(after.get(key) == summary.get(key), "%s: %r vs %r" % (key, after, summary))
        blobs = package_blobs(srv)
        check(blobs is None or (("import-" + iid, 1) in blobs and
                                not any(b.endswith(".part") for b, _ in blobs)),
              "blobs %r" % blobs)


def main():
    checks = Checks()
    with tempfile.TemporaryDirectory(prefix="fzip-cli-upload-") as tmp:
        for t in (test_refused_mid_way_exits_at_once,
                  test_over_the_size_limit_exits_at_once,
                  test_broken_upload_resumes_to_an_equal_import):
            checks.run(t, tmp)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
