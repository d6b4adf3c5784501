"""Export under faults and at the edges of the wire: real fzipd, SQLite store.

- kill -9 of fzipd while the export writes its package blob (failpoint
  export.uploading holds it there, after 4 MiB of it are written): on
  restart the job is taken over and COMPLETED, the dead run's uncommitted
  blob is reaped (--uncommitted-blob-age-seconds), the dead process's temp
  dir is swept, and the downloaded package verifies.
- DownloadExport at the largest chunk_size read by a stock Python grpc
  client, whose receive limit is the default 4 MiB: every message fits.
- A store failure while the package is written (failpoint
  store.blob_chunk) ends the export FAILED with a generic client message
  naming the creating call's x-request-id (JobError and the "failed"
  event), while fzipd's log line with that request id keeps the full one.
"""
import hashlib
import json
import os
import sqlite3
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from fzipd_harness import Checks, Fzipd, Hold, sqlite_blob_file, unique_user  # noqa: E402
from fzip_e2e import (Client, check, read_package, unzip_t, verify_checksums,  # noqa: E402
                      wait_for)

import grpc  # noqa: E402
from fzip.v1 import export_service_pb2 as epb  # noqa: E402
from fzip.v1 import export_service_pb2_grpc as egrpc  # noqa: E402
from fzip.v1 import jobs_pb2 as jpb  # noqa: E402

STOCK_LIMIT = 4 * 1024 * 1024
# The store's chunk (storage/store.h STORE_BLOB_CHUNK): a download message
# ends where a stored chunk does.
STORE_CHUNK = 256 * 1024
# Enough transactions for a package over 4 MiB (file text and JSON).
BIG_TX = int(os.environ.get("FZIP_TEST_BIG_TX", "60000"))


def blob_rows(db_path, blob_id):
    """(committed, uncommitted) rows of a package blob, and orphan chunks."""
    db = sqlite3.connect(sqlite_blob_file(db_path))
    try:
        rows = db.execute("select committed, count(*) from blobs where blob_id = ? "
                          "group by committed", (blob_id,)).fetchall()
        orphans = db.execute("select count(*) from blob_chunks where blob_key not in "
                             "(select blob_key from blobs)").fetchone()[0]
    finally:
        db.close()
    got = dict(rows)
    return got.get(1, 0), got.get(0, 0), orphans


def private_dirs(temp):
    return sorted(n for n in os.listdir(temp) if n.startswith("fzipd-"))


def test_kill_during_package_upload_recovers(big_user_db):
    db_path, user = big_user_db
    temp = os.path.join(os.path.dirname(db_path), "tmp-kill")
    os.makedirs(temp, exist_ok=True)
    common = ["--job-lease-ms", "1500", "--temp-dir", temp]
    # One export worker: the paused job's lease (1.5 s) lapses long before
    # the process is killed, and a second worker of the same server would
    # take the job over and start a second blob.  Held at the upload's
    # second progress report, after PKG_PROGRESS_EVERY_BYTES (4 MiB) of
    # the package: the store's writer keeps the first 1 MiB in its buffer
    # and writes nothing before it overflows (a smaller blob is written
    # whole by its commit), so the first report finds no blob row yet.
    hold = Hold("export.uploading", from_hit=2)
    srv = Fzipd(extra_args=common + ["--export-workers", "1"], store="sqlite:" + db_path,
                env={"FZIP_FAILPOINTS": hold.spec})
    srv.start()
    try:
        c = Client(srv, user)
        job = c.create(export_type=jpb.EXPORT_TYPE_COMPLETE)
        blob = "export-" + job.export_id

        def uploading():
            j = c.exp.GetExport(epb.GetExportRequest(export_id=job.export_id), metadata=c.md).job
            check(j.status not in (jpb.EXPORT_STATUS_COMPLETED, jpb.EXPORT_STATUS_FAILED),
                  "export ended before the failpoint: %s" % jpb.ExportStatus.Name(j.status))
            return j.status == jpb.EXPORT_STATUS_UPLOADING
        wait_for(uploading, 240, "UPLOADING")
        wait_for(lambda: blob_rows(db_path, blob)[1] == 1, 30, "a part-written blob")
        dead = private_dirs(temp)
        check(len(dead) == 1, "one private temp dir expected: %r" % dead)
        check(any(n.startswith("fzip-pkg-") for n in os.listdir(os.path.join(temp, dead[0]))),
              "the package's spool dir is not in the private dir: %r"
              % os.listdir(os.path.join(temp, dead[0])))
        srv.kill()
    finally:
        srv.stop(expect_clean=False)

    # Restart without the failpoint; uncommitted blobs older than 5 s go
    # (longer than the re-run takes to write its own package blob).
    srv = Fzipd(extra_args=common + ["--uncommitted-blob-age-seconds", "5",
                                     "--reaper-interval-ms", "300"],
                store="sqlite:" + db_path)
    srv.start()
    try:
        check(dead[0] not in private_dirs(temp), "dead process's temp dir not swept at start-up")
        c = Client(srv, user)
        final = c.watch(job.export_id, timeout=600)[-1]
        check(final.status == jpb.EXPORT_STATUS_COMPLETED,
              "after the crash the export ended %s: %s"
              % (jpb.ExportStatus.Name(final.status), final.error.message))
        check(any(e.type == "resumed" for e in final.events), "no resumed event: %r"
              % [e.type for e in final.events])
        try:
            wait_for(lambda: blob_rows(db_path, blob) == (1, 0, 0), 30,
                     "exactly one committed blob, no uncommitted one, no orphan chunks")
        except AssertionError as e:
            raise AssertionError("%s (have %r); fzipd's log: %s"
                                 % (e, blob_rows(db_path, blob), srv.read_log()))
        info, data = c.download(job.export_id)
        check(len(data) == info.size == final.package_size, "size differs")
        check(hashlib.sha256(data).hexdigest() == info.sha256 == final.package_sha256,
              "sha256 differs")
        unzip_t(data)
        z, manifest = read_package(data)
        verify_checksums(z, manifest)
        live = private_dirs(temp)
        check(len(live) == 1 and live[0] != dead[0], "temp dirs now: %r" % live)
    finally:
        srv.stop()
    check(private_dirs(temp) == [], "fzipd left its temp dir behind: %r" % private_dirs(temp))
    return job.export_id


def test_max_chunk_fits_a_stock_client(big_user_db):
    db_path, user = big_user_db
    with Fzipd(store="sqlite:" + db_path) as srv:
        c = Client(srv, user)
        final, _, _ = c.export_and_download(export_type=jpb.EXPORT_TYPE_COMPLETE)
        check(final.package_size > STOCK_LIMIT,
              "package of %d bytes is too small to test the limit" % final.package_size)
        # A channel with grpc's default receive limit (4 MiB).
        stock = grpc.insecure_channel("127.0.0.1:%d" % srv.port)
        try:
            stub = egrpc.ExportServiceStub(stock)
            sizes, buf = [], bytearray()
            for resp in stub.DownloadExport(
                    epb.DownloadExportRequest(export_id=final.export_id,
                                              chunk_size=STOCK_LIMIT),
                    metadata=c.md, timeout=300):
                check(resp.ByteSize() < STOCK_LIMIT, "message of %d bytes" % resp.ByteSize())
                if resp.WhichOneof("payload") == "chunk":
                    sizes.append(len(resp.chunk))
                    buf += resp.chunk
        finally:
            stock.close()
        check(bytes(buf) and hashlib.sha256(bytes(buf)).hexdigest() == final.package_sha256,
              "stock download differs")
        # Whole stored chunks: the largest message under the limit is
        # within one chunk of it.
        check(max(sizes) >= STOCK_LIMIT - STORE_CHUNK, "chunks were small: %r" % sizes[:4])


def test_store_failure_reaches_the_job_without_internals(big_user_db):
    db_path, user = big_user_db
    rid = "export-store-fault-1"
    srv = Fzipd(store="sqlite:" + db_path, env={"FZIP_FAILPOINTS": "store.blob_chunk=error@1"})
    srv.start()
    try:
        c = Client(srv, user)
        job = c.exp.CreateExport(epb.CreateExportRequest(export_type=jpb.EXPORT_TYPE_COMPLETE),
                                 metadata=c.md + (("x-request-id", rid),)).job
        final = c.watch(job.export_id, timeout=600)[-1]
    finally:
        srv.stop()
    check(final.status == jpb.EXPORT_STATUS_FAILED,
          "export ended %s" % jpb.ExportStatus.Name(final.status))
    public = "storage unavailable; retry later (request id %s)" % rid
    check(final.error.code == "UNAVAILABLE" and final.error.message == public,
          "job error %r / %r, expected %r" % (final.error.code, final.error.message, public))
    failed = [e.message for e in final.events if e.type == "failed"]
    check(failed == [public], "failed event messages %r" % failed)
    with open(srv.log_path, "rb") as f:
        lines = [json.loads(ln) for ln in f.read().decode().splitlines() if ln.startswith("{")]
    full = [ln for ln in lines if ln.get("request_id") == rid
            and "failpoint store.blob_chunk" in str(ln.get("error", ""))]
    check(full, "no log line with request_id %s keeps the failpoint's message" % rid)


def main():
    checks = Checks()
    import tempfile
    with tempfile.TemporaryDirectory(prefix="fzip-export-faults-") as tmp:
        db_path = os.path.join(tmp, "fzip.db")
        user = unique_user("big")
        seeder = Fzipd(store="sqlite:" + db_path)
        seeder.seed(user, BIG_TX, seed=3)
        seeder.tmp.cleanup()
        for t in [test_max_chunk_fits_a_stock_client,
                  test_store_failure_reaches_the_job_without_internals,
                  test_kill_during_package_upload_recovers]:
            checks.run(t, (db_path, user))
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
