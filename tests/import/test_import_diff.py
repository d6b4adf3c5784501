"""End-to-end tests of the import preview as a diff and of the merge_fields
strategy, on a real fzipd with a real store (FZIP_TEST_STORE), through
grpcio.

What a user must be able to trust: the preview of a package that differs
from their data in one transaction and one account says exactly that under
every strategy (one changed per kind with the right field names, the rest
identical); an overwrite writes exactly the changed entities and nothing
else, with the real run's counts and diffs equal to the preview's;
merge_fields takes the package's fields where the package's entity is
newer (updatedAt), only fills the fields the stored one lacks where it is
not, and writes nothing where it takes nothing.
"""
import io
import json
import os
import zipfile
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from fzipd_harness import Checks, Fzipd, unique_user  # noqa: E402
from fzip_e2e import (Client, check, import_package, read_package, rewrite_package,  # noqa: E402
                      state)

from fzip.v1 import jobs_pb2 as jpb  # noqa: E402

SCALE = float(os.environ.get("FZIP_TEST_SCALE", "1"))
SEED = 43
TXNS = max(100, int(2000 * SCALE))
DIFFS_PER_KIND = 10  # PKGV_DIFFS_PER_KIND
# --import-batch-bytes of the second server: the package spans many
# batches, so a batch size that is not reset shows as one batch per entity.
TEST_BATCH_BYTES = 16 * 1024
STRATEGIES = [jpb.MERGE_STRATEGY_FAIL_ON_CONFLICT, jpb.MERGE_STRATEGY_SKIP_EXISTING,
              jpb.MERGE_STRATEGY_OVERWRITE, jpb.MERGE_STRATEGY_MERGE_FIELDS]
KINDS = ["accounts", "categories", "file_maps", "transaction_files", "transactions"]
COUNT_FIELDS = ["created", "identical", "changed", "overwritten", "skipped", "merged"]


def entities(parsed, kind):
    return parsed["data/%s.json" % kind][kind]


def with_field(items, field):
    """The first item that has `field` and updatedAt (the seed writes both
    for most)."""
    for item in items:
        if item.get(field) and "updatedAt" in item:
            return item
    raise AssertionError("no entity with %s and updatedAt" % field)


class World:
    """A package of seeded data, the ids of the entities the tests change,
    and a seeded user equal to it."""

    def __init__(self, srv):
        self.srv = srv
        src = self.seeded("src")
        job = src.create(export_type=jpb.EXPORT_TYPE_COMPLETE, pinned_timestamp=1700000000000)
        final = src.watch(job.export_id)[-1]
        check(final.status == jpb.EXPORT_STATUS_COMPLETED, "source export failed")
        _, self.package = src.download(job.export_id)
        z, _ = read_package(self.package)
        parsed = {n: json.loads(z.read(n)) for n in z.namelist() if n.startswith("data/")}
        txns = [t for t in entities(parsed, "transactions") if t.get("memo") and
                "updatedAt" in t]
        check(len(txns) >= 3, "the seed wrote too few transactions with a memo")
        self.t1, self.t2, self.t3 = (t["transactionId"] for t in txns[:3])
        self.a1 = with_field(entities(parsed, "accounts"), "accountName")["accountId"]
        self.f1 = with_field(entities(parsed, "transaction_files"), "recordCount")["fileId"]
        self.checksums = read_package(self.package)[1]["checksums"]
        self.totals = {k: len(entities(parsed, k)) for k in KINDS}

    def seeded(self, prefix):
        c = Client(self.srv, unique_user(prefix))
        self.srv.seed(c.user, TXNS, seed=SEED)
        return c

    def edit(self, fn):
        return rewrite_package(self.package, fn)

    def one_changed(self):
        """t1's memo and a1's name changed, nothing else (updatedAt kept)."""
        def fn(parsed):
            for t in entities(parsed, "transactions"):
                if t["transactionId"] == self.t1:
                    t["memo"] = "changed by the diff test"
            for a in entities(parsed, "accounts"):
                if a["accountId"] == self.a1:
                    a["accountName"] = "Renamed by the diff test"
        return self.edit(fn)


def without_analytics(checksums):
    """A state() without the regenerated analytics (computed anew, with
    their computation time, by every import)."""
    return {k: v for k, v in checksums.items() if k != "data/analytics.json"}


def counts_of(summary_counts):
    return {jpb.EntityKind.Name(c.kind): {f: getattr(c, f) for f in COUNT_FIELDS}
            for c in summary_counts}


def diffs_of(diffs):
    return sorted((jpb.EntityKind.Name(d.kind), d.entity_id, tuple(d.fields)) for d in diffs)


def preview(c, package, strategy):
    job = import_package(c, package, strategy=strategy, validate_only=True)
    check(job.status in (jpb.IMPORT_STATUS_VALIDATION_PASSED, jpb.IMPORT_STATUS_VALIDATION_FAILED),
          "preview ended %s: %s" % (jpb.ImportStatus.Name(job.status), job.error.message))
    return job


def expect(counts, kind, **want):
    got = counts[kind]
    for f, v in want.items():
        check(got[f] == v, "%s.%s: want %d, got %d (%r)" % (kind, f, v, got[f], got))


# ---- tests ----------------------------------------------------------------

def test_preview_shows_one_changed_entity_per_kind_under_each_strategy(w):
    c = w.seeded("pv")
    pkg = w.one_changed()
    n_txn = w.totals["transactions"]
    for strategy in STRATEGIES:
        name = jpb.MergeStrategy.Name(strategy)
        job = preview(c, pkg, strategy)
        counts = counts_of(job.validation.counts)
        expect(counts, "ENTITY_KIND_TRANSACTIONS", created=0, identical=n_txn - 1, changed=1)
        expect(counts, "ENTITY_KIND_ACCOUNTS", created=0, changed=1,
               identical=w.totals["accounts"] - 1)
        for k in ["ENTITY_KIND_CATEGORIES", "ENTITY_KIND_FILE_MAPS", "ENTITY_KIND_TRANSACTION_FILES"]:
            expect(counts, k, created=0, changed=0)
        check(diffs_of(job.validation.diffs) ==
              [("ENTITY_KIND_ACCOUNTS", w.a1, ("accountName",)),
               ("ENTITY_KIND_TRANSACTIONS", w.t1, ("memo",))],
              "%s: diffs %r" % (name, diffs_of(job.validation.diffs)))
        check(diffs_of(job.result.diffs) == diffs_of(job.validation.diffs),
              "%s: the job's preview result has other diffs" % name)
        txn = counts["ENTITY_KIND_TRANSACTIONS"]
        if strategy == jpb.MERGE_STRATEGY_FAIL_ON_CONFLICT:
            # Every existing id is a conflict, identical ones too.
            check(not job.validation.passed and
                  job.status == jpb.IMPORT_STATUS_VALIDATION_FAILED, "fail_on_conflict passed")
        elif strategy == jpb.MERGE_STRATEGY_SKIP_EXISTING:
            check(txn["skipped"] == n_txn and txn["overwritten"] == 0, "%s: %r" % (name, txn))
        elif strategy == jpb.MERGE_STRATEGY_OVERWRITE:
            check(txn["overwritten"] == 1 and txn["skipped"] == 0, "%s: %r" % (name, txn))
        else:
            # Same updatedAt: the package is not newer, and the stored
            # entity lacks no field: the merge takes nothing.
            check(txn["merged"] == 0 and txn["skipped"] == 1 and txn["overwritten"] == 0,
                  "%s: %r" % (name, txn))


def test_overwrite_writes_only_the_changed_entities(w):
    c = w.seeded("ow")
    pkg = w.one_changed()
    pv = preview(c, pkg, jpb.MERGE_STRATEGY_OVERWRITE)
    before = state(c)
    job = import_package(c, pkg, strategy=jpb.MERGE_STRATEGY_OVERWRITE)
    check(job.status == jpb.IMPORT_STATUS_COMPLETED, "import: %s" % job.error.message)
    real = counts_of(job.result.counts)
    check(real == counts_of(pv.validation.counts),
          "real counts differ from the preview's: %r vs %r"
          % (real, counts_of(pv.validation.counts)))
    check(diffs_of(job.result.diffs) == diffs_of(pv.validation.diffs), "real diffs differ")
    expect(real, "ENTITY_KIND_TRANSACTIONS", overwritten=1, created=0)
    expect(real, "ENTITY_KIND_TRANSACTION_FILES", overwritten=0, identical=w.totals[
        "transaction_files"])
    check(job.result.files_restored == 0, "identical files' bytes were restored again: %d"
          % job.result.files_restored)
    # What the import tagged (undo marks, when the server keeps them): the
    # two documents it wrote, nothing else of the package's kinds (the
    # analytics are regenerated from the transactions after every import).
    marks = {jpb.EntityKind.Name(m.kind): m.documents for m in getattr(job, "undo_marks", [])
             if m.kind != jpb.ENTITY_KIND_ANALYTICS}
    if marks:
        check(marks.get("ENTITY_KIND_TRANSACTIONS") == 1 and marks.get("ENTITY_KIND_ACCOUNTS") == 1
              and sum(marks.values()) == 2, "the import wrote more than the changes: %r" % marks)
    after = without_analytics(state(c))
    before = without_analytics(before)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    check(changed == ["data/accounts.json", "data/transactions.json"],
          "entries that changed: %r" % changed)
    # Importing the same package again changes nothing and writes nothing.
    again = import_package(c, pkg, strategy=jpb.MERGE_STRATEGY_OVERWRITE)
    counts = counts_of(again.result.counts)
    check(all(v["overwritten"] == 0 and v["changed"] == 0 for v in counts.values()),
          "a second overwrite wrote again: %r" % counts)
    marks = [m for m in getattr(again, "undo_marks", []) if m.kind != jpb.ENTITY_KIND_ANALYTICS]
    check(all(m.documents == 0 for m in marks), "a second overwrite tagged documents")
    check(without_analytics(state(c)) == after, "a second identical overwrite changed the data")


def merge_package(w, base_parsed_edit=None):
    """t1 newer with a new memo, t2 older with a new memo and a check
    number the stored one lacks, t3 older with a new memo only, a1 newer
    with a new name."""
    def fn(parsed):
        if base_parsed_edit:
            base_parsed_edit(parsed)
        for t in entities(parsed, "transactions"):
            if t["transactionId"] == w.t1:
                t["memo"], t["updatedAt"] = "newer memo", t["updatedAt"] + 1000
            elif t["transactionId"] == w.t2:
                t["memo"], t["updatedAt"] = "older memo", t["updatedAt"] - 1000
                t["checkNumber"] = "4242"
            elif t["transactionId"] == w.t3:
                t["memo"], t["updatedAt"] = "older memo", t["updatedAt"] - 1000
        for a in entities(parsed, "accounts"):
            if a["accountId"] == w.a1:
                a["accountName"], a["updatedAt"] = "Newer name", a["updatedAt"] + 1000
    return w.edit(fn)


def test_merge_fields_newer_wins_older_only_fills_missing(w):
    # The user's data: the package with t2's checkNumber removed.
    def drop_check_number(parsed):
        for t in entities(parsed, "transactions"):
            if t["transactionId"] == w.t2:
                t.pop("checkNumber", None)
    c = Client(w.srv, unique_user("mf"))
    base = w.edit(drop_check_number)
    job = import_package(c, base)
    check(job.status == jpb.IMPORT_STATUS_COMPLETED, "base import: %s" % job.error.message)
    z, _ = read_package(base)
    stored = {t["transactionId"]: t for t in
              json.loads(z.read("data/transactions.json"))["transactions"]}
    pkg = merge_package(w)
    pv = preview(c, pkg, jpb.MERGE_STRATEGY_MERGE_FIELDS)
    check(pv.status == jpb.IMPORT_STATUS_VALIDATION_PASSED, "merge preview refused")
    counts = counts_of(pv.validation.counts)
    expect(counts, "ENTITY_KIND_TRANSACTIONS", changed=3, merged=2, skipped=1, overwritten=0,
           identical=w.totals["transactions"] - 3)
    expect(counts, "ENTITY_KIND_ACCOUNTS", changed=1, merged=1)
    diffs = {d[1]: set(d[2]) for d in diffs_of(pv.validation.diffs)}
    check(diffs.get(w.t1) == {"memo", "updatedAt"} and
          diffs.get(w.t2) == {"memo", "updatedAt", "checkNumber"} and
          diffs.get(w.t3) == {"memo", "updatedAt"}, "diffs: %r" % diffs)
    job = import_package(c, pkg, strategy=jpb.MERGE_STRATEGY_MERGE_FIELDS)
    check(job.status == jpb.IMPORT_STATUS_COMPLETED, "merge import: %s" % job.error.message)
    check(counts_of(job.result.counts) == counts,
          "real counts differ from the preview's: %r vs %r" % (counts_of(job.result.counts),
                                                                counts))
    check(diffs_of(job.result.diffs) == diffs_of(pv.validation.diffs), "real diffs differ")
    _, _, data = c.export_and_download(export_type=jpb.EXPORT_TYPE_COMPLETE)
    z, _ = read_package(data)
    got = {t["transactionId"]: t for t in
           json.loads(z.read("data/transactions.json"))["transactions"]}
    t1, t2, t3 = got[w.t1], got[w.t2], got[w.t3]
    check(t1["memo"] == "newer memo" and t1["updatedAt"] == stored[w.t1]["updatedAt"] + 1000,
          "t1 (newer) did not take the package's fields: %r" % t1)
    check(t2["memo"] == stored[w.t2]["memo"] and t2["checkNumber"] == "4242" and
          t2["updatedAt"] == stored[w.t2]["updatedAt"],
          "t2 (older) should keep its fields and gain checkNumber: %r" % t2)
    check(t3 == stored[w.t3], "t3 (older, nothing missing) changed: %r" % t3)
    accounts = {a["accountId"]: a for a in json.loads(z.read("data/accounts.json"))["accounts"]}
    check(accounts[w.a1]["accountName"] == "Newer name", "a1 (newer) kept its name")
    # A second merge of the same package takes nothing more.
    again = import_package(c, pkg, strategy=jpb.MERGE_STRATEGY_MERGE_FIELDS)
    counts = counts_of(again.result.counts)
    check(all(v["merged"] == 0 for v in counts.values()), "a second merge merged: %r" % counts)


def test_merge_fields_keeps_the_stored_file_bytes(w, srv):
    """A transaction file the merge changes (an older record that gains a
    field) keeps the stored bytes: nothing is restored, and the commit,
    which here forgets the replaced versions at once (no undo window),
    must not delete the blob the merged record still names."""
    def drop_record_count(parsed):
        for f in entities(parsed, "transaction_files"):
            if f["fileId"] == w.f1:
                del f["recordCount"]

    def older_file(parsed):
        for f in entities(parsed, "transaction_files"):
            if f["fileId"] == w.f1:
                f["updatedAt"] -= 1000
    c = Client(srv, unique_user("mfb"))
    job = import_package(c, w.edit(drop_record_count))
    check(job.status == jpb.IMPORT_STATUS_COMPLETED, "base import: %s" % job.error.message)
    pkg = w.edit(older_file)
    pv = preview(c, pkg, jpb.MERGE_STRATEGY_MERGE_FIELDS)
    expect(counts_of(pv.validation.counts), "ENTITY_KIND_TRANSACTION_FILES", changed=1, merged=1)
    job = import_package(c, pkg, strategy=jpb.MERGE_STRATEGY_MERGE_FIELDS)
    check(job.status == jpb.IMPORT_STATUS_COMPLETED, "merge import: %s" % job.error.message)
    check(counts_of(job.result.counts) == counts_of(pv.validation.counts), "real counts differ")
    check(job.result.files_restored == 0, "the merge restored %d files' bytes"
          % job.result.files_restored)
    got = state(c)
    files = {k: v for k, v in w.checksums.items() if k.startswith("files/")}
    check(files and all(got.get(k) == v for k, v in files.items()),
          "file bytes lost or changed after the merge: %r"
          % sorted(k for k, v in files.items() if got.get(k) != v))
    # The kept bytes were copied to the merge's own blob: no two versions
    # of the file share one (an undo or forget deletes a version's blob).
    rec = next(f for f in c.list_all("ListTransactionFiles", "files") if f.file_id == w.f1)
    check(rec.s3_key == "%s/%s/%s" % (c.user, w.f1, job.import_id),
          "the merged record names %r, not the merge's own blob" % rec.s3_key)


def diff_batches(srv, import_id):
    """The diff_batches of the import's "import ended" log line: how many
    times the restore asked the store for the stored versions."""
    with open(srv.log_path, "rb") as f:
        for line in f.read().decode(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("msg") == "import ended" and rec.get("import") == import_id:
                return rec["diff_batches"]
    raise AssertionError("no 'import ended' log line with diff_batches for %s" % import_id)


def test_unchanged_overwrite_asks_the_store_once_per_batch(w, srv):
    """An overwrite of an unchanged package writes nothing, and its batches
    still end at the byte limit: one store round trip per batch, not one
    per entity once the all-identical batches have added up the limit."""
    c = Client(srv, unique_user("batches"))
    job = import_package(c, w.package)
    check(job.status == jpb.IMPORT_STATUS_COMPLETED, "base import: %s" % job.error.message)
    job = import_package(c, w.package, strategy=jpb.MERGE_STRATEGY_OVERWRITE)
    check(job.status == jpb.IMPORT_STATUS_COMPLETED, "overwrite: %s" % job.error.message)
    counts = counts_of(job.result.counts)
    check(all(v["overwritten"] == 0 and v["changed"] == 0 for v in counts.values()),
          "the unchanged package wrote: %r" % counts)
    z = zipfile.ZipFile(io.BytesIO(w.package))
    data_bytes = sum(z.getinfo(n).file_size for n in z.namelist() if n.startswith("data/"))
    entities = sum(w.totals.values())
    # Each kind ends one batch early at most; JSON and BSON sizes differ a little.
    most = 2 * (data_bytes // TEST_BATCH_BYTES) + 2 * len(KINDS) + entities // 1000 + 2
    check(most * 3 < entities, "the test data spans too few batches to tell: %d entities, "
          "%d bytes" % (entities, data_bytes))
    got = diff_batches(srv, job.import_id)
    check(1 < got <= most, "%d batches for %d entities (%d bytes; at most %d expected)"
          % (got, entities, data_bytes, most))


def test_diffs_are_capped_per_kind(w):
    c = w.seeded("cap")
    def fn(parsed):
        for t in entities(parsed, "transactions")[:DIFFS_PER_KIND + 5]:
            t["description"] = "changed " + t["transactionId"]
    job = preview(c, w.edit(fn), jpb.MERGE_STRATEGY_OVERWRITE)
    counts = counts_of(job.validation.counts)
    expect(counts, "ENTITY_KIND_TRANSACTIONS", changed=DIFFS_PER_KIND + 5,
           overwritten=DIFFS_PER_KIND + 5)
    txn_diffs = [d for d in job.validation.diffs if d.kind == jpb.ENTITY_KIND_TRANSACTIONS]
    check(len(txn_diffs) == DIFFS_PER_KIND and
          all(list(d.fields) == ["description"] for d in txn_diffs),
          "diffs: %r" % [(d.entity_id, list(d.fields)) for d in txn_diffs])


def main():
    checks = Checks()
    with Fzipd() as srv:
        w = World(srv)
        for t in [test_preview_shows_one_changed_entity_per_kind_under_each_strategy,
                  test_overwrite_writes_only_the_changed_entities,
                  test_merge_fields_newer_wins_older_only_fills_missing,
                  test_diffs_are_capped_per_kind]:
            checks.run(t, w)
    # Then a server whose commits forget the replaced versions at once
    # (the first one is stopped: on MongoDB they would share the job queue).
    with Fzipd(extra_args=["--import-undo-window-hours", "0",
                           "--import-batch-bytes", str(TEST_BATCH_BYTES)]) as now:
        checks.run(test_merge_fields_keeps_the_stored_file_bytes, w, now)
        checks.run(test_unchanged_overwrite_asks_the_store_once_per_batch, w, now)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
