"""End-to-end: incremental exports (CreateExportRequest.incremental_base_id,
docs/EXPORT.md "Incremental exports", FORMAT.md 15 "Incremental packages").

A real fzipd on loopback (embedded store, or MongoDB behind the ferretdb
fixture), real gRPC clients and the real `fzip` and `fzipd seed` binaries:
every export records the change_seq it is complete up to; after `fzipd
seed --mutate` an increment on a complete export holds exactly the
transactions that changed (ids and documents those of a complete export
taken now), its manifest names its base (id, package sha256, change
sequences, chain length) and data/deletions.json is `[]`; an import
undone after a base gives deletions (kind, id ascending); a chain of two
increments links each to the one before; a wipe (DeleteAllData) since the
base fails the increment (FAILED_PRECONDITION); bad bases (another user's,
unknown, malformed, running, cancelled, deleted, expired, a different
selection, CSV) are refused at create; an increment uploaded for import fails validation
with archive.incremental and writes nothing; `fzip export create
--incremental` and `fzip package inspect` show the base.  Byte equality of
base + chain applied with a pinned complete export is
test_package_apply's (HA).
"""
import hashlib
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from fzipd_harness import Checks, Fzipd, Hold, unique_user  # noqa: E402

import grpc  # noqa: E402
from fzip.v1 import data_service_pb2 as dpb  # noqa: E402
from fzip.v1 import export_service_pb2 as epb  # noqa: E402
from fzip.v1 import jobs_pb2 as jpb  # noqa: E402
from fzip_e2e import (Client, check, check_schema, expect, fzip_cli,  # noqa: E402
                      import_package, read_package, rewrite_package, state, undo_and_wait,
                      verify_checksums)

SCALE = float(os.environ.get("FZIP_TEST_SCALE", "1"))
SEED_TX = max(200, int(2000 * SCALE))
PIN = 1700000000000
COMPLETE = jpb.EXPORT_TYPE_COMPLETE
# The package's kind order (dependency order), that of data/deletions.json.
KINDS = ["accounts", "categories", "file_maps", "transaction_files", "transactions", "analytics"]


def completed(c, **kw):
    final, info, data = c.export_and_download(**kw)
    check(info.sha256 == final.package_sha256, "download sha256 is not the job's")
    return final, data


def entities(data, kind):
    z, _ = read_package(data)
    return json.loads(z.read("data/%s.json" % kind))[kind]


def by_id(docs, field):
    return {d[field]: d for d in docs}


def incremental_of(c, base, **kw):
    final, data = completed(c, incremental_base_id=base.export_id, pinned_timestamp=PIN + 1, **kw)
    z, m = read_package(data)
    verify_checksums(z, m)
    inc = m.get("incremental")
    check(inc == {"base_export_id": base.export_id,
                  "base_package_sha256": base.package_sha256,
                  "base_change_seq": base.change_seq,
                  "change_seq": final.change_seq,
                  "chain_length": base.chain_length + 1},
          "manifest incremental %r (base %s seq %d, job seq %d)"
          % (inc, base.export_id, base.change_seq, final.change_seq))
    check(final.base_export_id == base.export_id and final.base_sha256 == base.package_sha256
          and final.base_change_seq == base.change_seq
          and final.chain_length == base.chain_length + 1,
          "job's base fields: %r" % final)
    check(final.change_seq >= base.change_seq, "change_seq went back")
    check("data/deletions.json" in z.namelist(), "no data/deletions.json")
    check_schema("manifest", m)
    check_schema("deletions", json.loads(z.read("data/deletions.json")))
    return final, data, m


def changed_ids(old, new, kind, field):
    a, b = by_id(entities(old, kind), field), by_id(entities(new, kind), field)
    return sorted(i for i in b if a.get(i) != b[i])


def test_increment_holds_exactly_the_changes(srv):
    c = Client(srv, unique_user("inc"))
    srv.seed(c.user, SEED_TX, seed=31)
    base, base_data = completed(c, export_type=COMPLETE, pinned_timestamp=PIN)
    check(base.change_seq > 0 and base.chain_length == 0 and base.base_export_id == "",
          "a complete export's change fields: seq %d chain %d base %r"
          % (base.change_seq, base.chain_length, base.base_export_id))
    check("incremental" not in read_package(base_data)[1], "complete package has 'incremental'")
    check("data/deletions.json" not in read_package(base_data)[0].namelist(),
          "complete package has data/deletions.json")

    # Nothing changed yet: an empty increment.
    empty, empty_data, m = incremental_of(c, base)
    check(empty.change_seq == base.change_seq, "no writes but the seq moved")
    check(all(m["data_summary"][k] == 0 for k in m["data_summary"] if k.endswith("_count")),
          "empty increment counts: %r" % m["data_summary"])
    check(json.loads(read_package(empty_data)[0].read("data/deletions.json")) == [],
          "empty increment deletions")

    n = srv.mutate(c.user, 5, seed=9, seeded=SEED_TX)
    check(n > 0, "seed --mutate 5 changed nothing")
    inc, inc_data, m = incremental_of(c, base)
    now, now_data = completed(c, export_type=COMPLETE, pinned_timestamp=PIN + 2)
    want = changed_ids(base_data, now_data, "transactions", "transactionId")
    check(len(want) == n, "%d transactions differ, seed said %d" % (len(want), n))
    got = [d["transactionId"] for d in entities(inc_data, "transactions")]
    check(got == want, "increment holds %d transactions, %d changed (first extra %r)"
          % (len(got), len(want), sorted(set(got) ^ set(want))[:3]))
    current = by_id(entities(now_data, "transactions"), "transactionId")
    check(all(d == current[d["transactionId"]] for d in entities(inc_data, "transactions")),
          "an increment's transaction differs from the complete export's")
    for kind in ("accounts", "categories", "file_maps", "transaction_files"):
        check(entities(inc_data, kind) == [], "increment holds unchanged %s" % kind)
    check(m["data_summary"]["transactions_count"] == n, "data_summary %r" % m["data_summary"])
    check(json.loads(read_package(inc_data)[0].read("data/deletions.json")) == [],
          "deletions without deletes")
    check(not any(e.startswith("files/") for e in read_package(inc_data)[0].namelist()),
          "unchanged file bytes in the increment")
    check(inc.change_seq > base.change_seq and now.change_seq == inc.change_seq,
          "seqs base %d inc %d now %d" % (base.change_seq, inc.change_seq, now.change_seq))

    # Chain: a second increment on the first holds only the second change.
    n2 = srv.mutate(c.user, 2, seed=10, seeded=SEED_TX)
    inc2, inc2_data, m2 = incremental_of(c, inc)
    check(inc2.chain_length == 2, "chain_length %d" % inc2.chain_length)
    later, later_data = completed(c, export_type=COMPLETE, pinned_timestamp=PIN + 3)
    want2 = changed_ids(now_data, later_data, "transactions", "transactionId")
    got2 = [d["transactionId"] for d in entities(inc2_data, "transactions")]
    check(got2 == want2 and len(want2) == n2, "second increment %d, want %d (seed said %d)"
          % (len(got2), len(want2), n2))


def test_undo_of_an_import_gives_deletions(srv):
    """An import that created entities, undone after the base: the undo
    deletes them, and the increment lists them (kind order, ids ascending)."""
    c = Client(srv, unique_user("incdel"))
    donor = Client(srv, unique_user("donor"))
    srv.seed(c.user, max(50, SEED_TX // 4), seed=41)
    srv.seed(donor.user, 40, seed=42)
    _, cats = completed(donor, export_type=jpb.EXPORT_TYPE_CATEGORIES_ONLY)
    imported = import_package(c, cats, strategy=jpb.MERGE_STRATEGY_SKIP_EXISTING)
    check(imported.status == jpb.IMPORT_STATUS_COMPLETED, "import: %r" % imported.error)
    base, _ = completed(c, export_type=COMPLETE, pinned_timestamp=PIN)
    undo_and_wait(c, imported.import_id)
    inc, data, m = incremental_of(c, base)
    dels = json.loads(read_package(data)[0].read("data/deletions.json"))
    want = [{"kind": "categories", "id": d["categoryId"]}
            for d in sorted(entities(cats, "categories"), key=lambda d: d["categoryId"])]
    check(dels == want, "deletions %d, want the %d undone categories (first %r)"
          % (len(dels), len(want), dels[:2]))
    check(entities(data, "categories") == [], "the undone categories are in the increment")


def test_selective_increment_lists_what_left_the_selection(srv):
    """A selective base (a date range): a transaction re-dated out of the
    range since is a deletion of the increment, one re-dated into it is
    in its data."""
    c = Client(srv, unique_user("incsel"))
    srv.seed(c.user, max(60, SEED_TX // 4), seed=101)
    _, full = completed(c, export_type=COMPLETE)
    dates = sorted(d["date"] for d in entities(full, "transactions"))
    lo, hi = dates[0], dates[len(dates) // 2]
    rng = jpb.TimeRange(**{"has_from": True, "from": lo, "has_to": True, "to": hi})
    base, base_data = completed(c, export_type=jpb.EXPORT_TYPE_SELECTIVE,
                                filters=jpb.ExportFilters(date_range=rng), pinned_timestamp=PIN)
    leaving = next(d for d in entities(base_data, "transactions") if d["date"] < hi)
    coming = next(d for d in entities(full, "transactions") if d["date"] > hi)

    def edit(parsed):
        for d in parsed["data/transactions.json"]["transactions"]:
            if d["transactionId"] == leaving["transactionId"]:
                d["date"] = hi + 86400000
            elif d["transactionId"] == coming["transactionId"]:
                d["date"] = lo
    job = import_package(c, rewrite_package(full, edit), strategy=jpb.MERGE_STRATEGY_OVERWRITE)
    check(job.status == jpb.IMPORT_STATUS_COMPLETED, "overwrite import: %r" % job.error)
    inc, data, _ = incremental_of(c, base)
    dels = json.loads(read_package(data)[0].read("data/deletions.json"))
    check({"kind": "transactions", "id": leaving["transactionId"]} in dels,
          "the transaction that left the range is no deletion: %r" % dels[:5])
    check(dels == sorted(dels, key=lambda d: (KINDS.index(d["kind"]), d["id"])),
          "deletions out of order")
    ids = [d["transactionId"] for d in entities(data, "transactions")]
    check(coming["transactionId"] in ids and leaving["transactionId"] not in ids,
          "increment transactions %r" % ids[:5])


def test_wipe_since_the_base_fails_the_increment(srv):
    c = Client(srv, unique_user("incwipe"))
    srv.seed(c.user, 60, seed=51)
    base, _ = completed(c, export_type=COMPLETE)
    c.data.DeleteAllData(dpb.DeleteAllDataRequest(confirm="DELETE ALL DATA"), metadata=c.md)
    job = c.create(incremental_base_id=base.export_id)
    final = c.watch(job.export_id)[-1]
    check(final.status == jpb.EXPORT_STATUS_FAILED, "increment after a wipe ended %s"
          % jpb.ExportStatus.Name(final.status))
    check("wiped" in final.error.message and final.error.code == "FAILED_PRECONDITION",
          "error %r" % final.error)
    # A complete export after the wipe is a base again.
    again, _ = completed(c, export_type=COMPLETE)
    incremental_of(c, again)


def refused(fn, code, what, text=None):
    try:
        fn()
    except grpc.RpcError as e:
        check(e.code() == code, "%s: %s, want %s" % (what, e.code(), code))
        check(text is None or text in e.details(), "%s: %r" % (what, e.details()))
        return
    raise AssertionError("%s was accepted" % what)


def cancelled_export(c, tries=10):
    """An export of c's that ended CANCELLED.  A small export can finish
    before its cancel lands (CancelExport then refuses it, or the worker's
    final save wins): such a try is not a failure, another one is made."""
    for _ in range(tries):
        job = c.create(export_type=COMPLETE)
        try:
            c.exp.CancelExport(epb.CancelExportRequest(export_id=job.export_id), metadata=c.md)
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.FAILED_PRECONDITION,
                  "cancel: %s %s" % (e.code(), e.details()))
        final = c.watch(job.export_id)[-1]
        if final.status == jpb.EXPORT_STATUS_CANCELLED:
            return final
        check(final.status == jpb.EXPORT_STATUS_COMPLETED,
              "an export cancelled late ended %s" % jpb.ExportStatus.Name(final.status))
    raise AssertionError("no export ended CANCELLED in %d tries" % tries)


def test_bad_bases_are_refused(srv):
    c = Client(srv, unique_user("incbad"))
    other = Client(srv, unique_user("incother"))
    srv.seed(c.user, 60, seed=61)
    srv.seed(other.user, 30, seed=62)
    base, _ = completed(c, export_type=COMPLETE)
    theirs, _ = completed(other, export_type=COMPLETE)
    NF, FP, IA = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
                  grpc.StatusCode.INVALID_ARGUMENT)
    refused(lambda: c.create(incremental_base_id=theirs.export_id), NF, "another user's base")
    refused(lambda: c.create(incremental_base_id="9b2f0d6e-0000-4000-8000-000000000000"), NF,
            "an unknown base")
    refused(lambda: c.create(incremental_base_id="not an id/"), IA, "a malformed base id")
    refused(lambda: c.create(incremental_base_id=base.export_id, include_csv=True), IA,
            "an increment with CSV", "include_csv")
    refused(lambda: c.create(incremental_base_id=base.export_id,
                             export_type=jpb.EXPORT_TYPE_ACCOUNTS_ONLY), IA,
            "another export_type", "export_type")
    refused(lambda: c.create(incremental_base_id=base.export_id, include_analytics=True), IA,
            "include_analytics the base has not", "include_analytics")
    # The base's own selection, spelled out, is accepted.
    job = c.create(incremental_base_id=base.export_id, export_type=COMPLETE)
    check(c.watch(job.export_id)[-1].status == jpb.EXPORT_STATUS_COMPLETED, "explicit type")
    # Not completed: cancelled, and deleted.
    pending = cancelled_export(c)
    refused(lambda: c.create(incremental_base_id=pending.export_id), FP, "a cancelled base",
            "CANCELLED")
    c.exp.DeleteExport(epb.DeleteExportRequest(export_id=base.export_id), metadata=c.md)
    refused(lambda: c.create(incremental_base_id=base.export_id), NF, "a deleted base")


def test_expired_base_is_refused():
    with Fzipd(extra_args=["--export-ttl-seconds", "1"]) as srv:
        c = Client(srv, unique_user("incexp"))
        srv.seed(c.user, 30, seed=71)
        base, _ = completed(c, export_type=COMPLETE)
        time.sleep(1.5)
        refused(lambda: c.create(incremental_base_id=base.export_id),
                grpc.StatusCode.FAILED_PRECONDITION, "an expired base", "EXPIRED")


def test_running_base_is_refused():
    """A base still being written (held in UPLOADING by a failpoint)."""
    hold = Hold("export.uploading")
    with Fzipd(env={"FZIP_FAILPOINTS": hold.spec}) as srv, hold:
        c = Client(srv, unique_user("increm"))
        srv.seed(c.user, 30, seed=72)
        job = c.create(export_type=COMPLETE)
        deadline = time.monotonic() + 60
        while c.exp.GetExport(epb.GetExportRequest(export_id=job.export_id),
                              metadata=c.md).job.status != jpb.EXPORT_STATUS_UPLOADING:
            check(time.monotonic() < deadline, "the base never reached UPLOADING")
            time.sleep(0.05)
        refused(lambda: c.create(incremental_base_id=job.export_id),
                grpc.StatusCode.FAILED_PRECONDITION, "a running base", "UPLOADING")
        hold.release()
        check(c.watch(job.export_id)[-1].status == jpb.EXPORT_STATUS_COMPLETED, "base failed")


def test_import_refuses_an_increment_and_writes_nothing(srv):
    c = Client(srv, unique_user("incsrc"))
    srv.seed(c.user, 80, seed=81)
    base, _ = completed(c, export_type=COMPLETE)
    check(srv.mutate(c.user, 50, seed=3, seeded=80) > 0, "nothing mutated")
    _, data, _ = incremental_of(c, base)
    target = Client(srv, unique_user("incdst"))
    before = state(target)
    job = import_package(target, data)
    check(job.status in (jpb.IMPORT_STATUS_FAILED, jpb.IMPORT_STATUS_VALIDATION_FAILED),
          "importing an increment ended %s" % jpb.ImportStatus.Name(job.status))
    text = str(job)
    check("archive.incremental" in text and "fzip package apply" in text,
          "the refusal does not name archive.incremental and apply: %s" % text[-800:])
    check(state(target) == before, "a refused increment changed the user's data")


def test_cli_incremental_and_inspect(srv):
    c = Client(srv, unique_user("inccli"))
    srv.seed(c.user, 60, seed=91)
    base, _ = completed(c, export_type=COMPLETE)
    check(srv.mutate(c.user, 10, seed=4, seeded=60) > 0, "nothing mutated")
    r = expect(fzip_cli(srv, c.user, "--json", "-q", "export", "create", "--incremental",
                        base.export_id, "--wait"), 0, "export create --incremental")
    job = json.loads(r.stdout.strip().splitlines()[-1])
    check(job["base_export_id"] == base.export_id and job["chain_length"] == 1,
          "CLI job %r" % job)
    with tempfile.TemporaryDirectory(prefix="fzip-inc-") as d:
        out = os.path.join(d, "inc.fzip")
        expect(fzip_cli(srv, c.user, "-q", "export", "download", job["export_id"], "--output",
                        out), 0, "download")
        r = expect(fzip_cli(srv, None, "--json", "package", "inspect", out), 0, "inspect")
        info = json.loads(r.stdout)
        check(info.get("incremental", {}).get("base_export_id") == base.export_id
              and info["incremental"]["base_package_sha256"] == base.package_sha256
              and info["incremental"]["chain_length"] == "1", "inspect %r" % info)
        r = expect(fzip_cli(srv, None, "package", "verify", out), 3, "verify of an increment")
        check("archive.incremental" in r.stderr, "verify of an increment: %s" % r.stderr[-400:])
        with open(out, "rb") as f:
            check(hashlib.sha256(f.read()).hexdigest() == job["package_sha256"], "sha256")


def main():
    checks = Checks()
    with Fzipd() as srv:
        for t in [test_increment_holds_exactly_the_changes,
                  test_undo_of_an_import_gives_deletions,
                  test_selective_increment_lists_what_left_the_selection,
                  test_wipe_since_the_base_fails_the_increment,
                  test_bad_bases_are_refused,
                  test_import_refuses_an_increment_and_writes_nothing,
                  test_cli_incremental_and_inspect]:
            checks.run(t, srv)
    checks.run(test_expired_base_is_refused)
    checks.run(test_running_base_is_refused)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
