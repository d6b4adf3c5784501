"""End-to-end tests of UndoImport: undo a completed import within the undo
window, on a real fzipd with a real store (FZIP_TEST_STORE), through grpcio.

What a user must be able to trust: an overwrite import (files included)
undone leaves the user's whole state exactly as before it (the checksums
of a pinned complete export: every entity and every file byte); an undo
is refused, and changes nothing, when something the import wrote was
changed since (a later import, DeleteAllData), when the window has passed,
and for a job that is not COMPLETED; a fzipd killed in the middle of an
undo leaves a job the next claim finishes.
"""
import io
import os
import sqlite3
import sys
import time
import zipfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from fzipd_harness import Checks, Fzipd, Hold, own_store, unique_user  # noqa: E402
from fzip_e2e import Client, check, import_package, rewrite_package, state  # noqa: E402

import grpc  # noqa: E402
from fzip.v1 import data_service_pb2 as dpb  # noqa: E402
from fzip.v1 import import_service_pb2 as ipb  # noqa: E402
from fzip.v1 import jobs_pb2 as jpb  # noqa: E402

SCALE = float(os.environ.get("FZIP_TEST_SCALE", "1"))
SEED = 41
# A server whose first undo is killed: its lease, short so that the next
# one takes the job over soon (tests/import/test_import_e2e.py does the same).
LEASE_MS = 2000


def n(count):
    return max(20, int(count * SCALE))


def rename_everything(parsed):
    """Every account and file renamed, every transaction's memo changed: an
    overwrite of this package replaces documents of every kind it holds."""
    for a in parsed["data/accounts.json"]["accounts"]:
        a["accountName"] = "Undo test " + a["accountName"]
    for f in parsed["data/transaction_files.json"]["transaction_files"]:
        f["errorMessage"] = "changed by the undo test"
    for t in parsed["data/transactions.json"]["transactions"]:
        t["memo"] = "changed by the undo test"


class World:
    """A package of the seeded data (same ids as a user seeded alike),
    changed in every kind."""

    def __init__(self, srv):
        self.srv = srv
        src = Client(srv, unique_user("src"))
        srv.seed(src.user, n(500), seed=SEED)
        job = src.create(export_type=jpb.EXPORT_TYPE_COMPLETE, pinned_timestamp=1700000000000)
        final = src.watch(job.export_id)[-1]
        check(final.status == jpb.EXPORT_STATUS_COMPLETED, "source export failed")
        _, self.package = src.download(job.export_id)
        self.changed = rewrite_package(self.package, rename_everything)

    def seeded(self, prefix, srv=None):
        srv = srv or self.srv
        c = Client(srv, unique_user(prefix))
        srv.seed(c.user, n(500), seed=SEED)
        return c


def kept_versions(srv, user, import_id):
    """The import's stash entries, read straight from an SQLite store (None
    on MongoDB, where the test trusts the conformance suite)."""
    if not srv.store.startswith("sqlite:"):
        return None
    db = sqlite3.connect(srv.store[len("sqlite:"):].split("?")[0])
    try:
        return db.execute("SELECT count(*) FROM stash WHERE user_id = ? AND tag = ?",
                          (user, import_id)).fetchone()[0]
    finally:
        db.close()


def get_import(c, import_id):
    return c.imp.GetImport(ipb.GetImportRequest(import_id=import_id), metadata=c.md).job


def undo(c, import_id):
    return c.imp.UndoImport(ipb.UndoImportRequest(import_id=import_id), metadata=c.md).job


def wait_undo(c, import_id, timeout=300):
    """The job once its undo ended: UNDONE, or COMPLETED again (refused)."""
    deadline = time.monotonic() + timeout
    job = get_import(c, import_id)
    while job.status == jpb.IMPORT_STATUS_UNDOING and time.monotonic() < deadline:
        time.sleep(0.1)
        job = get_import(c, import_id)
    check(job.status != jpb.IMPORT_STATUS_UNDOING, "undo still running after %d s" % timeout)
    return job


def refused_precondition(c, import_id, what):
    try:
        undo(c, import_id)
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.FAILED_PRECONDITION,
              "%s: %s %s" % (what, e.code(), e.details()))
        return e.details()
    raise AssertionError("%s: UndoImport was accepted" % what)


def overwrite(c, package):
    job = import_package(c, package, strategy=jpb.MERGE_STRATEGY_OVERWRITE)
    check(job.status == jpb.IMPORT_STATUS_COMPLETED, "import: %s" % job.error.message)
    return job


# ---- tests ----------------------------------------------------------------

def test_undo_puts_back_the_before_state_byte_for_byte(w):
    c = w.seeded("undo")
    before = state(c)
    job = overwrite(c, w.changed)
    check(job.undo_until > time.time() * 1000, "no undo window: %r" % job.undo_until)
    check(job.expires_at >= job.undo_until, "the record expires before its undo window ends")
    marks = {jpb.EntityKind.Name(m.kind): (m.documents, m.previous_versions)
             for m in job.undo_marks}
    check(marks["ENTITY_KIND_TRANSACTIONS"][1] == n(500) and
          marks["ENTITY_KIND_TRANSACTION_FILES"][1] > 0, "undo marks %r" % marks)
    after = state(c)
    check(after != before, "the import changed nothing")
    queued = undo(c, job.import_id)
    check(queued.status == jpb.IMPORT_STATUS_UNDOING, "UndoImport answered %s"
          % jpb.ImportStatus.Name(queued.status))
    final = wait_undo(c, job.import_id)
    check(final.status == jpb.IMPORT_STATUS_UNDONE,
          "undo ended %s: %s" % (jpb.ImportStatus.Name(final.status), final.error.message))
    check(final.undo_until == 0, "undone job still offers an undo")
    check(state(c) == before, "the undone import left the data different from before it")
    # An undone job cannot be undone again (nor started).
    refused_precondition(c, job.import_id, "undo of an UNDONE job")
    check(state(c) == before, "a refused undo changed the data")


def test_undo_refused_after_a_later_import_changed_what_it_wrote(w):
    c = w.seeded("later")
    first = overwrite(c, w.changed)
    second = overwrite(c, w.package)  # puts the original versions back over the first
    after_second = state(c)
    undo(c, first.import_id)
    final = wait_undo(c, first.import_id)
    check(final.status == jpb.IMPORT_STATUS_COMPLETED,
          "undo ended %s" % jpb.ImportStatus.Name(final.status))
    check("changed or deleted since" in final.error.message and "accounts" in final.error.message,
          "refusal says: %r" % final.error.message)
    check(any(e.type == "undo_refused" for e in final.events), "no undo_refused event")
    check(final.undo_until == first.undo_until, "a refused undo moved the window")
    check(state(c) == after_second, "a refused undo changed the data")
    # The later import itself can still be undone, and then the first one.
    undo(c, second.import_id)
    check(wait_undo(c, second.import_id).status == jpb.IMPORT_STATUS_UNDONE, "second undo")
    undo(c, first.import_id)
    final = wait_undo(c, first.import_id)
    check(final.status == jpb.IMPORT_STATUS_UNDONE,
          "first undo after the second's: %s" % final.error.message)


def test_undo_refused_after_delete_all_data(w):
    c = w.seeded("delall")
    job = overwrite(c, w.changed)
    c.data.DeleteAllData(dpb.DeleteAllDataRequest(confirm="DELETE ALL DATA"), metadata=c.md)
    emptied = state(c)
    undo(c, job.import_id)
    final = wait_undo(c, job.import_id)
    check(final.status == jpb.IMPORT_STATUS_COMPLETED and
          "changed or deleted since" in final.error.message,
          "undo after DeleteAllData ended %s: %r" % (jpb.ImportStatus.Name(final.status),
                                                    final.error.message))
    check(state(c) == emptied, "a refused undo changed the data")


def test_undo_refused_for_jobs_that_are_not_completed(w):
    c = w.seeded("notdone")
    # fail_on_conflict over the same ids: VALIDATION_FAILED, nothing written.
    job = import_package(c, w.changed)
    check(job.status == jpb.IMPORT_STATUS_VALIDATION_FAILED, "setup: %s"
          % jpb.ImportStatus.Name(job.status))
    refused_precondition(c, job.import_id, "undo of a VALIDATION_FAILED job")
    try:
        undo(c, "00000000-0000-4000-8000-000000000000")
        raise AssertionError("undo of a missing job accepted")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.NOT_FOUND, "missing job: %s" % e.code())


def test_delete_inside_the_window_keeps_the_data(w):
    # DeleteImport closes the window and forgets what the import kept for
    # its undo (import_undo_before_delete): the data stays as imported.
    c = w.seeded("delwin")
    job = overwrite(c, w.changed)
    after = state(c)
    kept = kept_versions(w.srv, c.user, job.import_id)
    check(kept is None or kept > 0, "nothing kept for the undo")
    c.imp.DeleteImport(ipb.DeleteImportRequest(import_id=job.import_id), metadata=c.md)
    try:
        get_import(c, job.import_id)
        raise AssertionError("the deleted job is still there")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.NOT_FOUND, "deleted job: %s" % e.code())
    check(state(c) == after, "deleting the job changed the data")
    check(kept_versions(w.srv, c.user, job.import_id) in (None, 0),
          "the deleted job's stash was not forgotten")
    # A later import over the same ids still commits and undoes cleanly.
    before = state(c)
    again = overwrite(c, w.package)
    undo(c, again.import_id)
    check(wait_undo(c, again.import_id).status == jpb.IMPORT_STATUS_UNDONE, "later undo")
    check(state(c) == before, "the later import's undo left different data")


def test_undo_after_the_window_is_refused(w):
    with Fzipd(store=own_store("undowin"),
               extra_args=["--import-undo-window-ms", "1500", "--reaper-interval-ms", "200"]) as srv:
        c = w.seeded("window", srv)
        before = state(c)
        job = overwrite(c, w.changed)
        after = state(c)
        check(after != before, "the import changed nothing")
        kept = kept_versions(srv, c.user, job.import_id)
        check(kept is None or kept > 0 or
              get_import(c, job.import_id).undo_until == 0, "nothing kept for the undo")
        time.sleep(2.5)
        msg = refused_precondition(c, job.import_id, "undo after the window")
        check("window" in msg, "refusal says: %r" % msg)
        # The reaper closed the window and kept the record (its retention).
        closed = get_import(c, job.import_id)
        check(closed.status == jpb.IMPORT_STATUS_COMPLETED and closed.undo_until == 0 and
              not closed.undo_marks, "after the window: %r" % closed)
        check(kept_versions(srv, c.user, job.import_id) in (None, 0),
              "the window ended but the stash was not forgotten")
        check(state(c) == after, "the end of the window changed the data")
    with Fzipd(store=own_store("undonone"), extra_args=["--import-undo-window-hours", "0"]) as srv:
        c = w.seeded("nowindow", srv)
        job = overwrite(c, w.changed)
        check(job.undo_until == 0 and not job.undo_marks, "window 0 still offers an undo")
        refused_precondition(c, job.import_id, "undo with window 0")


def test_undo_after_a_merge_kept_the_bytes_and_its_window_ended(w):
    """Z creates file F; A (merge_fields, an older record that gains a
    field) keeps F's stored bytes; B overwrites F with new bytes; A's
    window ends and its stash is forgotten; undoing B must put back A's
    version of F with its bytes: A's merge copied them to a blob of its
    own, so forgetting Z's version (A's stash) deleted nothing B's stash
    still names."""
    window_ms = 12000
    z = zipfile.ZipFile(io.BytesIO(w.package))
    fid = next(n for n in z.namelist() if n.startswith("files/")).split("/")[1]

    def edit_file(fn):
        def e(parsed):
            for f in parsed["data/transaction_files.json"]["transaction_files"]:
                if f["fileId"] == fid:
                    fn(f)
        return rewrite_package(w.package, e)
    p_z = edit_file(lambda f: f.pop("recordCount", None))
    p_a = edit_file(lambda f: f.__setitem__("updatedAt", f["updatedAt"] - 1000))
    p_b = edit_file(lambda f: f.__setitem__("updatedAt", f["updatedAt"] + 5000))
    with Fzipd(store=own_store("undokept"),
               extra_args=["--import-undo-window-ms", str(window_ms),
                           "--reaper-interval-ms", "200"]) as srv:
        c = Client(srv, unique_user("kept"))
        check(import_package(c, p_z).status == jpb.IMPORT_STATUS_COMPLETED, "import Z")
        a = import_package(c, p_a, strategy=jpb.MERGE_STRATEGY_MERGE_FIELDS)
        a_done = time.time()
        check(a.status == jpb.IMPORT_STATUS_COMPLETED, "merge A: %s" % a.error.message)
        tf = next(x for x in a.result.counts if x.kind == jpb.ENTITY_KIND_TRANSACTION_FILES)
        check(tf.merged == 1 and a.result.files_restored == 0, "merge A: %r" % tf)
        after_a = state(c)
        check(any(k.startswith("files/%s" % fid) for k in after_a), "F's bytes after A")
        # B inside A's window, late enough to be inside its own window
        # after A's has ended.
        time.sleep(max(0.0, a_done + window_ms / 2000.0 - time.time()))
        b = overwrite(c, p_b)
        check(b.result.files_restored >= 1, "B restored no bytes")
        while time.time() < a_done + window_ms / 1000.0 + 1.5:
            time.sleep(0.2)
        deadline = time.monotonic() + 30
        while kept_versions(srv, c.user, a.import_id) not in (None, 0):
            check(time.monotonic() < deadline, "A's stash was not forgotten after its window")
            time.sleep(0.2)
        check(get_import(c, a.import_id).undo_until == 0, "A's window still open")
        undo(c, b.import_id)
        final = wait_undo(c, b.import_id)
        check(final.status == jpb.IMPORT_STATUS_UNDONE,
              "undo B ended %s: %s" % (jpb.ImportStatus.Name(final.status), final.error.message))
        got = state(c)
        check(got == after_a, "undo B did not put back A's state; entries differing: %r"
              % sorted(k for k in set(got) | set(after_a) if got.get(k) != after_a.get(k)))


def test_killed_mid_undo_is_finished_by_the_next_claim(w):
    store = own_store("undokill")
    # The undo's walk is held at its second document (never released):
    # the kill lands inside the walk, after its first document.
    hold = Hold("import.rollback_visit", from_hit=2)
    first = Fzipd(store=store, extra_args=["--job-lease-ms", str(LEASE_MS)],
                  env={"FZIP_FAILPOINTS": hold.spec}).start()
    c = w.seeded("killundo", first)
    before = state(c)
    job = overwrite(c, w.changed)
    undo(c, job.import_id)
    deadline = time.monotonic() + 60
    while get_import(c, job.import_id).current_phase != "undoing":
        check(time.monotonic() < deadline, "undo never reached phase undoing")
        time.sleep(0.05)
    first.kill()
    first.channel.close()
    with Fzipd(store=first.store, extra_args=["--job-lease-ms", str(LEASE_MS)]) as second:
        c2 = Client(second, c.user)
        final = wait_undo(c2, job.import_id, timeout=120)
        check(final.status == jpb.IMPORT_STATUS_UNDONE,
              "after the kill the undo ended %s: %s" % (jpb.ImportStatus.Name(final.status),
                                                        final.error.message))
        check(state(c2) == before, "the undo finished after a kill left different data")
    first.stop(expect_clean=False)
    first.tmp.cleanup()
    hold.tmp.cleanup()


def main():
    checks = Checks()
    with Fzipd() as srv:
        w = World(srv)
        for t in [test_undo_puts_back_the_before_state_byte_for_byte,
                  test_undo_refused_after_a_later_import_changed_what_it_wrote,
                  test_undo_refused_after_delete_all_data,
                  test_undo_refused_for_jobs_that_are_not_completed,
                  test_delete_inside_the_window_keeps_the_data,
                  test_undo_after_the_window_is_refused,
                  test_undo_after_a_merge_kept_the_bytes_and_its_window_ended,
                  test_killed_mid_undo_is_finished_by_the_next_claim]:
            checks.run(t, w)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
