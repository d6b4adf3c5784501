"""End-to-end export tests: real fzipd, real store, real gRPC (Python grpcio).

Each test seeds users with `fzipd seed`, drives fzip.v1.ExportService and
checks the downloaded package against what DataService reports from the
store: counts, every checksum, every entity id and every file's bytes.
Run by CTest on the embedded store and, behind the ferretdb fixture, on
MongoDB (FerretDB).
"""
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from fzipd_harness import Checks, Fzipd, sqlite_blob_file, unique_user  # noqa: E402

import grpc  # noqa: E402
from fzip.v1 import data_service_pb2 as dpb  # noqa: E402
from fzip.v1 import export_service_pb2 as epb  # noqa: E402
from fzip.v1 import jobs_pb2 as jpb  # noqa: E402

# FerretDB is far slower than the embedded store: the MongoDB run scales
# every dataset down (FZIP_TEST_SCALE) to fit the CI budget.
SCALE = float(os.environ.get("FZIP_TEST_SCALE", "1"))


def n(count):
    return max(20, int(count * SCALE))


SEED_TX = n(3000)


from fzip_e2e import (Client, TERMINAL, check, read_package, unzip_t,  # noqa: E402
                      verify_checksums)


# ---- tests ----------------------------------------------------------------

def test_complete_export_matches_the_store(srv):
    c = Client(srv, unique_user("full"))
    srv.seed(c.user, SEED_TX, seed=7, extra=["--analytics"])
    final, info, data = c.export_and_download(export_type=jpb.EXPORT_TYPE_COMPLETE,
                                              include_analytics=True,
                                              description="e2e complete")
    check(final.progress == 100, "completed at progress %d" % final.progress)
    check(info.size == len(data) == final.package_size, "sizes disagree")
    check(hashlib.sha256(data).hexdigest() == info.sha256 == final.package_sha256,
          "package sha256 mismatch")
    unzip_t(data)
    z, manifest = read_package(data)
    verify_checksums(z, manifest)
    summary = c.data.GetDataSummary(dpb.GetDataSummaryRequest(), metadata=c.md).summary
    ds = manifest["data_summary"]
    check(ds["accounts_count"] == summary.accounts_count, "accounts count")
    check(ds["transactions_count"] == summary.transactions_count == SEED_TX, "tx count")
    check(ds["categories_count"] == summary.categories_count, "categories count")
    check(ds["file_maps_count"] == summary.file_maps_count, "file maps count")
    check(ds["transaction_files_count"] == summary.transaction_files_count, "files count")
    check(final.data_summary.transactions_count == SEED_TX, "job summary")
    # Every entity id and field the store has is in the package.
    for method, field, entry, key, idf in [
            ("ListAccounts", "accounts", "data/accounts.json", "accounts", "account_id"),
            ("ListCategories", "categories", "data/categories.json", "categories", "category_id"),
            ("ListFileMaps", "file_maps", "data/file_maps.json", "file_maps", "file_map_id"),
            ("ListTransactions", "transactions", "data/transactions.json", "transactions",
             "transaction_id")]:
        stored = c.list_all(method, field)
        packaged = json.loads(z.read(entry))[key]
        check(len(stored) == len(packaged), "%s: %d stored, %d packaged"
              % (key, len(stored), len(packaged)))
        camel = {"account_id": "accountId", "category_id": "categoryId",
                 "file_map_id": "fileMapId", "transaction_id": "transactionId"}[idf]
        check(sorted(getattr(s, idf) for s in stored) == sorted(p[camel] for p in packaged),
              "%s ids differ" % key)
    txs = {t["transactionId"]: t for t in json.loads(z.read("data/transactions.json"))
           ["transactions"]}
    for t in c.list_all("ListTransactions", "transactions")[:200]:
        p = txs[t.transaction_id]
        check(p["amount"] == t.amount and p["date"] == t.date
              and p["description"] == t.description and p["accountId"] == t.account_id,
              "transaction %s differs" % t.transaction_id)
    # Every file's bytes are there, equal to what the store holds.
    files = c.list_all("ListTransactionFiles", "files")
    check(files, "seed made no transaction files")
    names = z.namelist()
    for f in files:
        entry = [n for n in names if n.startswith("files/%s/" % f.file_id)]
        check(len(entry) == 1, "file %s: %d entries" % (f.file_id, len(entry)))
        body = z.read(entry[0])
        check(len(body) == f.file_size, "file %s size" % f.file_id)
        check(hashlib.sha256(body).hexdigest() == f.sha256, "file %s bytes" % f.file_id)
    check("data/analytics.json" in names, "analytics requested but missing")


def test_resumed_download_reproduces_the_sha256(srv):
    c = Client(srv, unique_user("resume"))
    srv.seed(c.user, n(1500), seed=3)
    final, info, whole = c.export_and_download()
    mid = len(whole) // 2 + 17
    info2, tail = c.download(final.export_id, offset=mid, chunk_size=4096)
    check(info2.offset == mid and info2.size == len(whole), "resume info")
    check(hashlib.sha256(whole[:mid] + tail).hexdigest() == info.sha256,
          "resumed download differs")
    try:
        c.download(final.export_id, offset=len(whole) + 1)
        raise AssertionError("offset past the end accepted")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.OUT_OF_RANGE, "past-end offset: %s" % e.code())


def test_unchanged_data_exports_identically(srv):
    c = Client(srv, unique_user("determ"))
    srv.seed(c.user, n(1200), seed=11)
    _, _, a = c.export_and_download()
    _, _, b = c.export_and_download()
    za, ma = read_package(a)
    zb, mb = read_package(b)
    check(ma["checksums"] == mb["checksums"], "data checksums differ between two exports")
    pin = 1700000000123
    _, _, p1 = c.export_and_download(pinned_timestamp=pin)
    _, _, p2 = c.export_and_download(pinned_timestamp=pin)
    check(p1 == p2, "pinned exports are not byte-identical")


def test_export_types_select_exactly_their_data(srv):
    c = Client(srv, unique_user("types"))
    srv.seed(c.user, n(2000), seed=5)
    accounts = c.list_all("ListAccounts", "accounts")
    _, _, data = c.export_and_download(export_type=jpb.EXPORT_TYPE_ACCOUNTS_ONLY)
    z, m = read_package(data)
    check("data/accounts.json" in z.namelist(), "accounts_only lacks accounts")
    check("data/transactions.json" not in z.namelist(), "accounts_only has transactions")
    check(len(json.loads(z.read("data/accounts.json"))["accounts"]) == len(accounts),
          "accounts_only count")
    _, _, data = c.export_and_download(export_type=jpb.EXPORT_TYPE_CATEGORIES_ONLY)
    z, m = read_package(data)
    check("data/categories.json" in z.namelist()
          and "data/transactions.json" not in z.namelist(), "categories_only content")
    # Selective: one account and a date range.
    acct = accounts[0].account_id
    txs = c.list_all("ListTransactions", "transactions", account_ids=[acct])
    dates = sorted(t.date for t in txs)
    lo, hi = dates[len(dates) // 4], dates[3 * len(dates) // 4]
    want = c.list_all("ListTransactions", "transactions", account_ids=[acct],
                      date_range=jpb.TimeRange(has_from=True, **{"from": lo},
                                               has_to=True, to=hi))
    _, _, data = c.export_and_download(
        export_type=jpb.EXPORT_TYPE_SELECTIVE,
        filters=jpb.ExportFilters(account_ids=[acct], date_range=jpb.TimeRange(
            has_from=True, **{"from": lo}, has_to=True, to=hi)))
    z, m = read_package(data)
    got = json.loads(z.read("data/transactions.json"))["transactions"]
    check(sorted(t["transactionId"] for t in got) == sorted(t.transaction_id for t in want),
          "selective transactions differ: %d vs %d" % (len(got), len(want)))
    check(all(t["accountId"] == acct and lo <= t["date"] <= hi for t in got),
          "selective export leaked other data")
    check(m["export_type"] == "selective", "manifest export_type")
    verify_checksums(z, m)


def test_users_are_isolated(srv):
    users = [Client(srv, unique_user("iso%d" % i)) for i in range(3)]
    for i, u in enumerate(users):
        srv.seed(u.user, n(500) + i, seed=20 + i)
    jobs = [u.create() for u in users]
    results = [None] * len(users)

    def follow(i):
        results[i] = users[i].watch(jobs[i].export_id)[-1]
    threads = [threading.Thread(target=follow, args=(i,)) for i in range(len(users))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, u in enumerate(users):
        check(results[i].status == jpb.EXPORT_STATUS_COMPLETED, "user %d export" % i)
        check(results[i].data_summary.transactions_count == n(500) + i, "user %d count" % i)
    a, b = users[0], users[1]
    for call, req in [(b.exp.GetExport, epb.GetExportRequest(export_id=jobs[0].export_id)),
                      (b.exp.DeleteExport, epb.DeleteExportRequest(export_id=jobs[0].export_id)),
                      (b.exp.CancelExport, epb.CancelExportRequest(export_id=jobs[0].export_id))]:
        try:
            call(req, metadata=b.md)
            raise AssertionError("user B reached user A's export")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.NOT_FOUND, "foreign export: %s" % e.code())
    try:
        b.download(jobs[0].export_id)
        raise AssertionError("user B downloaded user A's export")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.NOT_FOUND, "foreign download: %s" % e.code())
    listed = b.exp.ListExports(epb.ListExportsRequest(), metadata=b.md).jobs
    check([j.export_id for j in listed] == [jobs[1].export_id], "B's list shows others' jobs")


def test_list_is_newest_first_and_paginated(srv):
    c = Client(srv, unique_user("list"))
    srv.seed(c.user, n(100), seed=2)
    ids = []
    for _ in range(5):
        ids.append(c.create().export_id)
        time.sleep(0.005)  # creation times have millisecond resolution; ties order by id
    seen, token = [], ""
    while True:
        resp = c.exp.ListExports(epb.ListExportsRequest(page_size=2, page_token=token),
                                 metadata=c.md)
        seen.extend(j.export_id for j in resp.jobs)
        token = resp.next_page_token
        if not token:
            break
    check(seen == list(reversed(ids)), "list order/pagination: %s vs %s" % (seen, ids))
    for i in ids:
        c.watch(i)


def package_blob_count(srv, export_id):
    """The export's package blob (0 or 1), asked through the store API
    (tests/lib/store_blob_probe) on every backend.  On the embedded store
    its rows are also counted directly, committed or not, and any orphan
    chunk left behind (schema of storage/store_sqlite.c); the storage
    conformance suite checks GridFS chunks on MongoDB."""
    out = subprocess.run([os.environ["FZIP_STORE_PROBE"], srv.store, "packages",
                          "export-" + export_id],
                         check=True, capture_output=True, text=True).stdout.strip()
    check(out == "absent" or out.startswith("present "), "store_blob_probe said %r" % out)
    count = 0 if out == "absent" else 1
    if srv.store.startswith("sqlite:"):
        db = sqlite3.connect(sqlite_blob_file(srv.store))
        try:
            rows = db.execute("select count(*) from blobs where blob_id = ?",
                              ("export-" + export_id,)).fetchone()[0]
            orphans = db.execute("select count(*) from blob_chunks where blob_key not in "
                                 "(select blob_key from blobs)").fetchone()[0]
        finally:
            db.close()
        count = max(count, rows) + orphans
    return count


def test_cancel_and_delete_leave_nothing(srv):
    c = Client(srv, unique_user("cancel"))
    srv.seed(c.user, n(800), seed=9)
    job = c.create()
    resp = c.exp.CancelExport(epb.CancelExportRequest(export_id=job.export_id), metadata=c.md)
    final = c.watch(job.export_id)[-1]
    check(final.status in (jpb.EXPORT_STATUS_CANCELLED, jpb.EXPORT_STATUS_COMPLETED),
          "cancel ended %s" % jpb.ExportStatus.Name(final.status))
    if final.status == jpb.EXPORT_STATUS_CANCELLED:
        check(package_blob_count(srv, job.export_id) == 0, "cancelled export kept blobs")
        try:
            c.download(job.export_id)
            raise AssertionError("downloaded a cancelled export")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.FAILED_PRECONDITION, "cancelled: %s" % e.code())
    check(resp.job.export_id == job.export_id, "cancel response")
    final, _, _ = c.export_and_download()
    blobs = package_blob_count(srv, final.export_id)
    check(blobs == 1, "completed export should have one blob, has %s" % blobs)
    c.exp.DeleteExport(epb.DeleteExportRequest(export_id=final.export_id), metadata=c.md)
    check(package_blob_count(srv, final.export_id) == 0, "deleted export kept blobs")
    for call, req in [(c.exp.GetExport, epb.GetExportRequest(export_id=final.export_id))]:
        try:
            call(req, metadata=c.md)
            raise AssertionError("deleted export still found")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.NOT_FOUND, "deleted: %s" % e.code())


def test_bad_requests_get_clear_errors(srv):
    c = Client(srv, unique_user("bad"))
    for req, code in [
            (epb.CreateExportRequest(export_type=99), grpc.StatusCode.INVALID_ARGUMENT),
            (epb.CreateExportRequest(description="x" * 1001), grpc.StatusCode.INVALID_ARGUMENT),
            (epb.CreateExportRequest(export_type=jpb.EXPORT_TYPE_SELECTIVE, filters=jpb.ExportFilters(
                date_range=jpb.TimeRange(has_from=True, **{"from": 10}, has_to=True, to=5))),
             grpc.StatusCode.INVALID_ARGUMENT)]:
        try:
            c.exp.CreateExport(req, metadata=c.md)
            raise AssertionError("accepted %s" % req)
        except grpc.RpcError as e:
            check(e.code() == code and e.details(), "bad create: %s %s" % (e.code(), e.details()))
    try:
        c.exp.GetExport(epb.GetExportRequest(export_id="../etc"), metadata=c.md)
        raise AssertionError("accepted a bad id")
    except grpc.RpcError as e:
        check(e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), "bad id")
    try:
        c.exp.ListExports(epb.ListExportsRequest(), metadata=())
        raise AssertionError("no token accepted")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.UNAUTHENTICATED, "no token: %s" % e.code())


def test_completed_export_expires_and_says_so():
    # A server whose packages live one second, reaped every second.
    with Fzipd(extra_args=["--export-ttl-seconds", "1", "--reaper-interval-ms", "300"]) as srv:
        c = Client(srv, unique_user("expire"))
        srv.seed(c.user, n(100), seed=4)
        final, _, _ = c.export_and_download()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            job = c.exp.GetExport(epb.GetExportRequest(export_id=final.export_id),
                                  metadata=c.md).job
            if job.status == jpb.EXPORT_STATUS_EXPIRED and \
                    package_blob_count(srv, final.export_id) == 0:
                break
            time.sleep(0.3)
        check(job.status == jpb.EXPORT_STATUS_EXPIRED, "export did not expire")
        check(package_blob_count(srv, final.export_id) == 0, "expired blob kept")
        try:
            c.download(final.export_id)
            raise AssertionError("downloaded an expired export")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.FAILED_PRECONDITION and "expired" in e.details(),
                  "expired download: %s %s" % (e.code(), e.details()))


def main():
    checks = Checks()
    with Fzipd() as srv:
        for t in [test_complete_export_matches_the_store,
                  test_resumed_download_reproduces_the_sha256,
                  test_unchanged_data_exports_identically,
                  test_export_types_select_exactly_their_data,
                  test_users_are_isolated,
                  test_list_is_newest_first_and_paginated,
                  test_cancel_and_delete_leave_nothing,
                  test_bad_requests_get_clear_errors]:
            checks.run(t, srv)
    checks.run(test_completed_export_expires_and_says_so)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
