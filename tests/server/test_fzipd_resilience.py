"""fzipd housekeeping and abandoned calls: real fzipd on the SQLite store.

- Temp files: every fzipd works in its own flock'ed fzipd-PID-* directory
  under --temp-dir; start-up and every reaper pass remove the directories
  of dead processes and old-style fzip-import-*/fzip-package-*/fzip-pkg-*
  leftovers older than an hour, and nothing a live process holds.
- --uncommitted-blob-age-seconds: an upload cut by kill -9 leaves an
  uncommitted blob that the reaper deletes once older than the flag (and
  not before, with the 24 h default).
- Cancellation: calls abandoned by their client (deadline passed) stop
  within one step; a server with two workers answers the next call at
  once after six abandoned slow ones.
"""
import fcntl
import json
import os
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from fzipd_harness import Checks, Fzipd, sqlite_blob_file, unique_user  # noqa: E402
from fzip_e2e import Client, check, wait_for  # noqa: E402

import grpc  # noqa: E402
from fzip.v1 import data_service_pb2 as dpb  # noqa: E402
from fzip.v1 import export_service_pb2 as epb  # noqa: E402
from fzip.v1 import import_service_pb2 as ipb  # noqa: E402

HOUR = 3600


def make_tree(path, files=("a", "b")):
    os.makedirs(path)
    for f in files:
        with open(os.path.join(path, f), "wb") as out:
            out.write(b"x" * 100)


def age(path, seconds):
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_temp_dirs_of_dead_processes_are_swept(tmp):
    temp = os.path.join(tmp, "temp-sweep")
    os.makedirs(temp)
    dead = os.path.join(temp, "fzipd-999999-dead01")
    make_tree(dead, (".owner.lock", "fzip-package-abc"))
    live = os.path.join(temp, "fzipd-1-live01")
    make_tree(live, ("fzip-import-xyz",))
    lock = open(os.path.join(live, ".owner.lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # held by this (live) process
    old_file = os.path.join(temp, "fzip-import-old1")
    make_tree(os.path.join(temp, "fzip-pkg-old2"))
    with open(old_file, "wb") as f:
        f.write(b"old")
    age(old_file, 2 * HOUR)
    age(os.path.join(temp, "fzip-pkg-old2"), 2 * HOUR)
    recent = os.path.join(temp, "fzip-package-new3")
    with open(recent, "wb") as f:
        f.write(b"new")
    other = os.path.join(temp, "unrelated.txt")
    with open(other, "wb") as f:
        f.write(b"keep")
    age(other, 2 * HOUR)
    try:
        with Fzipd(extra_args=["--temp-dir", temp, "--reaper-interval-ms", "300"]) as srv:
            names = set(os.listdir(temp))
            check("fzipd-999999-dead01" not in names, "dead dir kept: %r" % names)
            check("fzip-import-old1" not in names and "fzip-pkg-old2" not in names,
                  "old leftovers kept: %r" % names)
            for keep in ("fzipd-1-live01", "fzip-package-new3", "unrelated.txt"):
                check(keep in names, "%s removed: %r" % (keep, names))
            mine = [n for n in names if n.startswith("fzipd-%d-" % srv.proc.pid)]
            check(len(mine) == 1, "fzipd's own dir: %r" % names)
            # A process dying while fzipd runs: the reaper removes its dir.
            later = os.path.join(temp, "fzipd-999998-dead02")
            make_tree(later, (".owner.lock", "fzip-pkg-x"))
            wait_for(lambda: not os.path.exists(later), 10, "the reaper to sweep a dead dir")
            check(os.path.isdir(os.path.join(temp, mine[0])), "fzipd swept its own dir")
            check(os.path.isdir(live), "the reaper swept a live dir")
        check(not os.path.exists(os.path.join(temp, mine[0])), "fzipd left its own dir")
        check(os.path.isdir(live), "stop removed another process's dir")
    finally:
        lock.close()


def uncommitted_blobs(db_path):
    db = sqlite3.connect(sqlite_blob_file(db_path))
    try:
        n = db.execute("select count(*) from blobs where committed = 0").fetchone()[0]
        orphans = db.execute("select count(*) from blob_chunks where blob_key not in "
                             "(select blob_key from blobs)").fetchone()[0]
        return n, orphans
    finally:
        db.close()


def test_uncommitted_blob_age_flag(tmp):
    db_path = os.path.join(tmp, "age.db")
    store = "sqlite:" + db_path
    srv = Fzipd(store=store)
    srv.start()
    release = threading.Event()
    try:
        c = Client(srv, unique_user("age"))

        def requests():
            yield ipb.UploadImportRequest(options=ipb.ImportOptions(file_name="cut.fzip"))
            for _ in range(4):
                yield ipb.UploadImportRequest(chunk=b"z" * 300000)
            release.wait(60)

        def call():
            try:
                c.imp.UploadImport(requests(), metadata=c.md, timeout=60)
            except grpc.RpcError:
                pass
        t = threading.Thread(target=call, daemon=True)
        t.start()
        wait_for(lambda: uncommitted_blobs(db_path)[0] == 1, 30, "a part-uploaded blob")
        srv.kill()
    finally:
        release.set()
        srv.stop(expect_clean=False)
    # Default age (24 h): the reaper's first pass, at start, keeps it.
    with Fzipd(store=store, extra_args=["--reaper-interval-ms", "200"]):
        time.sleep(1.5)
        check(uncommitted_blobs(db_path)[0] == 1, "a young uncommitted blob was reaped")
    with Fzipd(store=store, extra_args=["--reaper-interval-ms", "200",
                                        "--uncommitted-blob-age-seconds", "1"]):
        wait_for(lambda: uncommitted_blobs(db_path) == (0, 0), 15,
                 "the reaper to delete the uncommitted blob and its chunks")


def call_log(srv, method):
    out = []
    for line in open(srv.log_path, errors="replace").read().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("msg") == "call done" and rec.get("method", "").endswith(method):
            out.append(rec)
    return out


def test_abandoned_calls_stop_and_free_the_workers(tmp):
    # Every listed item and every counted kind takes 300 ms: a page of 100
    # transactions would hold a worker 30 s if nobody stopped it.
    env = {"FZIP_FAILPOINTS": "data.list_item=delay:300,data.summary_kind=delay:300"}
    with Fzipd(extra_args=["--workers", "2"], env=env) as srv:
        c = Client(srv, unique_user("cancel"))
        srv.seed(c.user, 200, seed=5)
        errors = []

        def abandon(fn):
            try:
                fn()
                errors.append("finished")
            except grpc.RpcError as e:
                errors.append(e.code())
        calls = [lambda: c.data.ListTransactions(dpb.ListTransactionsRequest(page_size=100),
                                                 metadata=c.md, timeout=0.5)] * 4 + \
                [lambda: c.data.GetDataSummary(dpb.GetDataSummaryRequest(), metadata=c.md,
                                               timeout=0.5)] * 2
        threads = [threading.Thread(target=abandon, args=(fn,)) for fn in calls]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        check(errors == [grpc.StatusCode.DEADLINE_EXCEEDED] * 6, "abandoned calls: %r" % errors)
        started = time.monotonic()
        c.exp.ListExports(epb.ListExportsRequest(), metadata=c.md, timeout=5)
        check(time.monotonic() - started < 5, "the next call waited for abandoned ones")
        # The server side of each abandoned call ended within a few steps.
        wait_for(lambda: len(call_log(srv, "/ListTransactions")) == 4 and
                 len(call_log(srv, "/GetDataSummary")) == 2, 10, "the calls to end")
        for rec in call_log(srv, "/ListTransactions") + call_log(srv, "/GetDataSummary"):
            check(rec.get("status") != "OK" and int(rec["duration_ms"]) < 3000,
                  "abandoned call ran on: %r" % rec)


def main():
    import tempfile
    checks = Checks()
    with tempfile.TemporaryDirectory(prefix="fzip-resilience-") as tmp:
        for t in [test_temp_dirs_of_dead_processes_are_swept,
                  test_uncommitted_blob_age_flag,
                  test_abandoned_calls_stop_and_free_the_workers]:
            checks.run(t, tmp)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
