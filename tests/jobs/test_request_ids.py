"""Idempotent creates and the per-user queue cap, end to end: a real fzipd
on loopback, real grpcio clients, the real store (SQLite by default, or
MongoDB through FZIP_TEST_STORE=mongodb).

- CreateExport with one request_id, 12 times in a row and 12 at once from
  threads: one job, the same id every time (ListExports shows one);
- the same request_id with other parameters: ALREADY_EXISTS;
- UploadImport twice with one request_id: one import job, and the second
  call's (different) bytes are not stored;
- a replayed UploadImport is held to --max-upload-bytes and its
  expected_size like a first upload (same error), and leaves the first
  call's job unchanged;
- --max-queued-jobs-per-user N: the (N+1)th create is RESOURCE_EXHAUSTED
  and writes nothing, a replay of an existing request_id still answers,
  and creates work again once the jobs finished;
- every line the export runner writes for a job carries the x-request-id
  of the call that created it.
"""
import hashlib
import json
import os
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from fzipd_harness import Checks, Fzipd, Hold, sqlite_blob_file, unique_user  # noqa: E402

import grpc  # noqa: E402
from fzip.v1 import export_service_pb2 as epb  # noqa: E402
from fzip.v1 import import_service_pb2 as ipb  # noqa: E402
from fzip.v1 import jobs_pb2 as jpb  # noqa: E402

from fzip_e2e import Client, check, status_details, upload, watch_import  # noqa: E402

CAP = 2
UPLOAD_LIMIT = 1024 * 1024  # fzipd's smallest --max-upload-bytes
REPEATS = 12
ON_SQLITE = os.environ.get("FZIP_TEST_STORE", "sqlite") == "sqlite"


def list_exports(c):
    return list(c.exp.ListExports(epb.ListExportsRequest(page_size=100), metadata=c.md).jobs)


def list_imports(c):
    return list(c.imp.ListImports(ipb.ListImportsRequest(page_size=100), metadata=c.md).jobs)


def reason_of(e):
    """The ErrorInfo reason of a failed call's google.rpc.Status and the
    fields its BadRequest names."""
    _, infos, bad = status_details(e)
    reason = infos[0].reason if infos else None
    fields = [v.field for b in bad for v in b.field_violations]
    return reason, fields


def expect_error(code, fn, what, reason=None, field=None):
    try:
        fn()
    except grpc.RpcError as e:
        check(e.code() == code, "%s: %s %s" % (what, e.code(), e.details()))
        got, fields = reason_of(e)
        check(reason is None or got == reason, "%s: reason %s, want %s" % (what, got, reason))
        check(field is None or fields == [field], "%s: violations %r" % (what, fields))
        return e.details()
    raise AssertionError("%s: accepted" % what)


def wait_exports_end(c, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = list_exports(c)
        if all(j.status in (jpb.EXPORT_STATUS_COMPLETED, jpb.EXPORT_STATUS_FAILED)
               for j in jobs):
            return jobs
        time.sleep(0.2)
    raise AssertionError("exports did not end: %r" % [j.status for j in list_exports(c)])


def test_repeated_create_makes_one_job(srv):
    c = Client(srv, unique_user("repeat"))
    ids = {c.create(export_type=jpb.EXPORT_TYPE_ACCOUNTS_ONLY, request_id="op-1").export_id
           for _ in range(REPEATS)}
    check(len(ids) == 1, "%d calls with one request_id made %d jobs" % (REPEATS, len(ids)))
    got = c.exp.GetExport(epb.GetExportRequest(export_id=min(ids)), metadata=c.md).job
    check(got.request_id == "op-1", "GetExport request_id %r" % got.request_id)
    check(len(list_exports(c)) == 1, "list shows %d jobs" % len(list_exports(c)))
    # The replay answers with the job's current state, not the first reply.
    wait_exports_end(c)
    again = c.create(export_type=jpb.EXPORT_TYPE_ACCOUNTS_ONLY, request_id="op-1")
    check(again.export_id in ids and again.status == jpb.EXPORT_STATUS_COMPLETED,
          "replay after the end: %s" % jpb.ExportStatus.Name(again.status))
    # Another user's same request_id is another request; no request_id: a new job each.
    other = Client(srv, unique_user("other"))
    check(other.create(request_id="op-1").export_id not in ids, "request ids cross users")
    check(c.create().request_id == "", "a job without request_id shows one")
    c.create()
    check(len(list_exports(c)) == 3, "creates without request_id were merged")


def test_concurrent_duplicates_make_one_job(srv):
    c = Client(srv, unique_user("race"))
    got, errors = [], []
    start = threading.Barrier(REPEATS)

    def one():
        try:
            start.wait()
            got.append(c.create(description="race", request_id="race-1").export_id)
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(REPEATS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(not errors, "concurrent creates failed: %r" % errors[:2])
    check(len(got) == REPEATS and len(set(got)) == 1, "concurrent creates made %d jobs"
          % len(set(got)))
    check(len(list_exports(c)) == 1, "list shows %d jobs" % len(list_exports(c)))


def test_reused_request_id_with_other_parameters_is_refused(srv):
    c = Client(srv, unique_user("differ"))
    first = c.create(export_type=jpb.EXPORT_TYPE_ACCOUNTS_ONLY, request_id="same")
    msg = expect_error(grpc.StatusCode.ALREADY_EXISTS,
                       lambda: c.create(export_type=jpb.EXPORT_TYPE_CATEGORIES_ONLY,
                                        request_id="same"), "other export type",
                       reason="REQUEST_ID_REUSED")
    check("request_id same was used for a different request" in msg and first.export_id in msg,
          "message: %s" % msg)
    expect_error(grpc.StatusCode.ALREADY_EXISTS,
                 lambda: c.create(export_type=jpb.EXPORT_TYPE_ACCOUNTS_ONLY, request_id="same",
                                  filters=jpb.ExportFilters(account_ids=["a1"])),
                 "other filters")
    # The default export type is COMPLETE: the same request either way.
    d = c.create(request_id="dflt").export_id
    check(c.create(export_type=jpb.EXPORT_TYPE_COMPLETE, request_id="dflt").export_id == d,
          "UNSPECIFIED and COMPLETE are different requests")
    for bad in ["x" * 129, "has space", "tab\t", "caf\u00e9"]:
        expect_error(grpc.StatusCode.INVALID_ARGUMENT, lambda: c.create(request_id=bad),
                     "request_id %r" % bad[:20], reason="INVALID_REQUEST_ID", field="request_id")
    c.create(request_id="y" * 128)
    check(len(list_exports(c)) == 3, "refused creates wrote jobs: %d" % len(list_exports(c)))


def package_blob_rows(srv):
    db = sqlite3.connect(sqlite_blob_file(srv.store))
    try:
        return db.execute("SELECT count(*) FROM blobs WHERE bucket = 0").fetchone()[0]
    finally:
        db.close()


def test_upload_replay_stores_nothing(srv):
    c = Client(srv, unique_user("upload"))
    pkg = c.create(export_type=jpb.EXPORT_TYPE_ACCOUNTS_ONLY)
    wait_exports_end(c)
    data = b"".join(r.chunk for r in c.exp.DownloadExport(
        epb.DownloadExportRequest(export_id=pkg.export_id), metadata=c.md)
        if r.WhichOneof("payload") == "chunk")
    blobs = package_blob_rows(srv) if ON_SQLITE else 0
    first = upload(c, data, start=False, with_checksum=False, request_id="up-1")
    # Different bytes, same options: the first job comes back, bytes dropped.
    second = upload(c, b"\x00" * (600 * 1024), start=False, with_checksum=False,
                    request_id="up-1")
    check(second.import_id == first.import_id, "second upload made job %s" % second.import_id)
    check(first.request_id == second.request_id == "up-1", "ImportJob.request_id %r"
          % second.request_id)
    check(second.package_sha256 == hashlib.sha256(data).hexdigest(),
          "the replay's bytes replaced the package")
    check(len(list_imports(c)) == 1, "list shows %d imports" % len(list_imports(c)))
    if ON_SQLITE:
        check(package_blob_rows(srv) == blobs + 1, "the replay stored a blob")
    expect_error(grpc.StatusCode.ALREADY_EXISTS,
                 lambda: upload(c, data, start=False, with_checksum=False, request_id="up-1",
                                strategy=jpb.MERGE_STRATEGY_OVERWRITE), "other options",
                 reason="REQUEST_ID_REUSED")
    expect_error(grpc.StatusCode.INVALID_ARGUMENT,
                 lambda: upload(c, data, with_checksum=False, request_id="up-2",
                                resume_import_id=first.import_id), "request_id with a resume")
    # The stored package is whole: it validates.
    c.imp.StartImport(ipb.StartImportRequest(import_id=first.import_id, validate_only=True),
                      metadata=c.md)
    final = watch_import(c, first.import_id)
    check(final.status == jpb.IMPORT_STATUS_VALIDATION_PASSED,
          "replayed upload's package: %s" % jpb.ImportStatus.Name(final.status))


def test_upload_replay_is_held_to_the_limits(srv):
    c = Client(srv, unique_user("limit"))
    small = b"x" * 1000
    first = upload(c, small, start=False, with_checksum=False, request_id="lim-1")
    over = b"\x00" * (UPLOAD_LIMIT + 1)
    fresh = expect_error(grpc.StatusCode.RESOURCE_EXHAUSTED,
                         lambda: upload(c, over, start=False, with_checksum=False,
                                        request_id="lim-2"), "first upload over the limit")
    replay = expect_error(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          lambda: upload(c, over, start=False, with_checksum=False,
                                         request_id="lim-1"), "replay over the limit")
    check(replay == fresh, "replay refused with %r, a first upload with %r" % (replay, fresh))
    # expected_size is an option: the replay announces the first call's.
    sized = dict(expected_size=len(small), expected_sha256=hashlib.sha256(small).hexdigest())
    first_sized = upload(c, small, start=False, request_id="lim-3", **sized)
    expect_error(grpc.StatusCode.INVALID_ARGUMENT,
                 lambda: upload(c, small * 2, start=False, request_id="lim-3", **sized),
                 "replay larger than its expected_size")
    for job in (first, first_sized):
        now = c.imp.GetImport(ipb.GetImportRequest(import_id=job.import_id), metadata=c.md).job
        check((now.status, now.received_bytes, now.package_sha256, now.updated_at)
              == (job.status, job.received_bytes, job.package_sha256, job.updated_at),
              "a refused replay changed import %s: %s" % (job.import_id, now))
    check(len(list_imports(c)) == 2, "list shows %d imports" % len(list_imports(c)))


def test_queue_cap(c_srv, hold):
    srv = c_srv
    c = Client(srv, unique_user("cap"))
    jobs = [c.create(request_id="cap-%d" % i) for i in range(CAP)]
    msg = expect_error(grpc.StatusCode.RESOURCE_EXHAUSTED, lambda: c.create(request_id="cap-x"),
                       "create over the cap", reason="QUEUED_JOBS_LIMIT")
    check("%d of your jobs are queued or running; the limit is %d" % (CAP, CAP) in msg,
          "cap message: %s" % msg)
    expect_error(grpc.StatusCode.RESOURCE_EXHAUSTED,
                 lambda: upload(c, b"PK" * 100, start=True, with_checksum=False),
                 "upload(start) over the cap", reason="QUEUED_JOBS_LIMIT")
    check(len(list_exports(c)) == CAP and not list_imports(c), "refused creates wrote jobs")
    # A replay is no new job: it still answers.
    check(c.create(request_id="cap-0").export_id == jobs[0].export_id, "replay refused")
    # Another user has a queue of their own.
    Client(srv, unique_user("cap-other")).create()
    hold.release()
    wait_exports_end(c)
    check(c.create(request_id="cap-x").export_id not in {j.export_id for j in jobs},
          "create after the jobs ended")


def test_job_lines_carry_the_creating_call_request_id(srv):
    c = Client(srv, unique_user("trace"))
    rid = "trace-%d" % os.getpid()
    job, call = c.exp.CreateExport.with_call(epb.CreateExportRequest(),
                                             metadata=c.md + (("x-request-id", rid),))
    wait_exports_end(c)
    lines = [json.loads(line) for line in open(srv.log_path, "rb").read().decode().splitlines()
             if line.startswith("{") and job.job.export_id in line]
    runner = [ln for ln in lines if ln.get("component") == "export-jobs"
              or ln.get("msg") == "job claimed"]
    check(runner, "no runner line for the job: %r" % lines[-3:])
    check(all(ln.get("request_id") == rid for ln in runner),
          "runner lines without the call's request id: %r" % runner[:3])


def main():
    checks = Checks()
    with Fzipd() as srv:
        for t in [test_repeated_create_makes_one_job,
                  test_concurrent_duplicates_make_one_job,
                  test_reused_request_id_with_other_parameters_is_refused,
                  test_upload_replay_stores_nothing,
                  test_job_lines_carry_the_creating_call_request_id]:
            checks.run(t, srv)
    # Exports held in their upload phase so that they stay queued/running.
    hold = Hold("export.uploading")
    with Fzipd(extra_args=["--max-queued-jobs-per-user", str(CAP), "--export-workers", "1"],
               env={"FZIP_FAILPOINTS": hold.spec}) as srv, hold:
        checks.run(test_queue_cap, srv, hold)
    with Fzipd(extra_args=["--max-upload-bytes", str(UPLOAD_LIMIT)]) as srv:
        checks.run(test_upload_replay_is_held_to_the_limits, srv)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
