"""End-to-end tests of RestoreOptions: restore as a copy, partial packages
(drop_dangling_references) and selective import (kinds, account_ids), on a
real fzipd with a real store (FZIP_TEST_STORE), through grpcio.

What a user must be able to trust: a package restored as a copy lands next
to the data it came from (twice: three times the data), every reference of
the copies resolves among the copies, and the copies' file bytes are the
originals'; a partial export that would dangle in an empty profile is
refused without the option, with a reason, and imported with it, with
exactly the counts the rules give (computed here independently from the
package's JSON); a selection restores exactly what it names; bad options
are refused up front; a copy that fails half-way leaves nothing; a copy
names none of the package's ids and duplicates no analytics record.  Every
real import's counts equal its validate-only preview's.
"""
import contextlib
import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pkg"))
from fzipd_harness import Checks, Fzipd, Hold, own_store, unique_user  # noqa: E402
from fzip_e2e import (Client, check, import_package, read_package, state,  # noqa: E402
                      status_details, upload, wait_for, watch_import)

import make_housef3_packages as hf  # noqa: E402

import grpc  # noqa: E402
from fzip.v1 import import_service_pb2 as ipb  # noqa: E402
from fzip.v1 import jobs_pb2 as jpb  # noqa: E402

SCALE = float(os.environ.get("FZIP_TEST_SCALE", "1"))
PINNED = 1700000000000
KINDS = ["accounts", "categories", "file_maps", "transaction_files", "transactions",
         "analytics"]
ID_FIELD = {"accounts": "accountId", "categories": "categoryId", "file_maps": "fileMapId",
            "transaction_files": "fileId", "transactions": "transactionId",
            "analytics": "analyticsId"}
# docs/FORMAT.md "External references" (pkg_validate.c's table): (from, field,
# item, to, required).
REFS = [("accounts", "defaultFileMapId", None, "file_maps", False),
        ("categories", "parentCategoryId", None, "categories", False),
        ("file_maps", "accountId", None, "accounts", False),
        ("transaction_files", "accountId", None, "accounts", False),
        ("transaction_files", "fileMapId", None, "file_maps", False),
        ("transactions", "accountId", None, "accounts", True),
        ("transactions", "fileId", None, "transaction_files", False),
        ("transactions", "primaryCategoryId", None, "categories", False),
        ("transactions", "categories", "categoryId", "categories", False),
        ("analytics", "accountId", None, "accounts", False)]
ACCOUNT_FIELD = {"file_maps": "accountId", "transaction_files": "accountId",
                 "transactions": "accountId", "analytics": "accountId",
                 "accounts": "accountId"}


def n(count):
    return max(20, int(count * SCALE))


def kind_name(k):
    return KINDS[k - 1]


def counts(job, field):
    return {kind_name(c.kind): getattr(c, field) for c in job.result.counts}


MAPPING_FIELDS = ("created", "not_selected", "dropped", "references_cleared")


def check_preview_predicted(preview, real):
    check(preview.status == jpb.IMPORT_STATUS_VALIDATION_PASSED,
          "preview ended %s: %s" % (jpb.ImportStatus.Name(preview.status),
                                    preview.error.message))
    check(real.status == jpb.IMPORT_STATUS_COMPLETED,
          "import ended %s: %s" % (jpb.ImportStatus.Name(real.status), real.error.message))
    for field in MAPPING_FIELDS:
        check(counts(preview, field) == counts(real, field),
              "preview %s %r != result %r" % (field, counts(preview, field),
                                               counts(real, field)))


def package_data(data):
    """kind -> list of entities, and the checksums, of a package."""
    z, manifest = read_package(data)
    out = {}
    for k in KINDS:
        name = "data/%s.json" % k
        out[k] = json.loads(z.read(name))[k] if name in z.namelist() else []
    return out, manifest


def export_of(c):
    job = c.create(export_type=jpb.EXPORT_TYPE_COMPLETE, pinned_timestamp=PINNED)
    final = c.watch(job.export_id)[-1]
    check(final.status == jpb.EXPORT_STATUS_COMPLETED, "export failed: %r" % final.error)
    _, data = c.download(job.export_id)
    return package_data(data)


def new_id(import_id, kind, old):
    """import/import_map.c's import_map_new_id."""
    h = hashlib.sha256(b"\0".join(s.encode() for s in (import_id, kind, old)) + b"\0")
    x = list(h.hexdigest()[:32])
    x[12] = "8"
    x[16] = "89ab"[int(x[16], 16) & 3]
    x = "".join(x)
    return "%s-%s-%s-%s-%s" % (x[:8], x[8:12], x[12:16], x[16:20], x[20:32])


def refs_of(kind, e):
    """(to, id, required) of every reference entity e of `kind` holds."""
    for frm, field, item, to, required in REFS:
        if frm != kind or field not in e:
            continue
        if item:
            for a in e[field]:
                if isinstance(a, dict) and a.get(item):
                    yield to, a[item], required
        elif e[field]:
            yield to, e[field], required


def expected_counts(pkg, user_ids, kinds=None, accounts=None):
    """The rules of docs/IMPORT.md "Partial packages and selective import",
    here from the package's JSON: per kind, how many entities the
    selection leaves out, how many are dropped (a required reference
    dangles) and how many references are cleared, and how many created."""
    def selected(kind, e):
        if kinds and kind not in kinds:
            return False
        if accounts and kind in ACCOUNT_FIELD and e.get(ACCOUNT_FIELD[kind]):
            return e[ACCOUNT_FIELD[kind]] in accounts
        return True
    sel = {k: {e[ID_FIELD[k]] for e in pkg[k] if selected(k, e)} for k in KINDS}
    out = {k: dict(not_selected=0, dropped=0, references_cleared=0, created=0) for k in KINDS}
    for k in KINDS:
        for e in pkg[k]:
            if not selected(k, e):
                out[k]["not_selected"] += 1
                continue
            cleared, dropped = 0, False
            for to, i, required in refs_of(k, e):
                if i in sel[to] or i in user_ids[to]:
                    continue
                if required:
                    dropped = True
                else:
                    cleared += 1
            if dropped:
                out[k]["dropped"] += 1
            else:
                out[k]["references_cleared"] += cleared
                out[k]["created"] += 1
    return out


def check_counts(job, want, what):
    for field in ("not_selected", "dropped", "references_cleared", "created"):
        got = counts(job, field)
        exp = {k: want[k][field] for k in KINDS}
        check(got == exp, "%s: %s %r, the rules give %r" % (what, field, got, exp))


def restore_opts(**kw):
    return jpb.RestoreOptions(**kw)


def run_both(c, data, restore, strategy=jpb.MERGE_STRATEGY_FAIL_ON_CONFLICT):
    preview = import_package(c, data, strategy=strategy, validate_only=True, restore=restore)
    real = import_package(c, data, strategy=strategy, restore=restore)
    check_preview_predicted(preview, real)
    return real


# Kinds some reference field points at: a copy must name none of the
# package's ids of these kinds anywhere (finding 8 of the issue 12 review:
# this does not go through refs_of, which mirrors the table under test).
REFERENCED = {to for _, _, _, to, _ in REFS}


def strings_of(v):
    """Every string anywhere in a JSON value, keys left out."""
    if isinstance(v, str):
        yield v
    elif isinstance(v, dict):
        for x in v.values():
            yield from strings_of(x)
    elif isinstance(v, list):
        for x in v:
            yield from strings_of(x)


def analytics_of(c):
    _, _, data = c.export_and_download(export_type=jpb.EXPORT_TYPE_COMPLETE,
                                       include_analytics=True, pinned_timestamp=PINNED)
    return data, package_data(data)[0]["analytics"]


def analytics_key(r):
    """What one analytics record is of (the regeneration writes one per key)."""
    return (r.get("analyticType"), r.get("timePeriod"), r.get("accountId"),
            (r.get("data") or {}).get("currency"))


def duplicate_keys(records):
    seen = {}
    for r in records:
        seen[analytics_key(r)] = seen.get(analytics_key(r), 0) + 1
    return {k: v for k, v in seen.items() if v > 1}


def check_references_resolve(data):
    """Every reference of the user's data resolves in the user's data."""
    ids = {k: {e[ID_FIELD[k]] for e in data[k]} for k in KINDS}
    for k in KINDS:
        for e in data[k]:
            for to, i, _ in refs_of(k, e):
                check(i in ids[to], "%s %s refers to %s %s, which the user does not have"
                      % (k, e[ID_FIELD[k]], to, i))


class World:
    def __init__(self, srv):
        self.srv = srv
        self.src = Client(srv, unique_user("src"))
        srv.seed(self.src.user, n(600), seed=41)
        self.package = self.export(export_type=jpb.EXPORT_TYPE_COMPLETE)
        self.pkg, self.manifest = package_data(self.package)

    def export(self, **kw):
        _, _, data = self.src.export_and_download(pinned_timestamp=PINNED, **kw)
        return data

    def fresh(self, prefix):
        return Client(self.srv, unique_user(prefix))


EMPTY = {k: set() for k in KINDS}


# ---- restore as a copy -----------------------------------------------------

def test_copy_twice_into_the_source_profile_triples_the_data(w):
    c = w.fresh("copy")
    setup = import_package(c, w.package)
    check(setup.status == jpb.IMPORT_STATUS_COMPLETED, "setup: %s" % setup.error.message)
    _, before_sums = export_of(c)
    copies = []
    for _ in range(2):
        real = run_both(c, w.package, restore_opts(as_copy=True))
        check(all(v == 0 for v in counts(real, "overwritten").values()), "a copy overwrote")
        for k in KINDS:
            check(counts(real, "created")[k] == len(w.pkg[k]),
                  "copy created %r" % counts(real, "created"))
        check(real.result.files_restored == len(w.manifest["checksums"]) - sum(
            1 for e in w.manifest["checksums"] if e.startswith("data/")),
            "files restored %d" % real.result.files_restored)
        check(real.restore.as_copy, "the job does not keep its options: %r" % real.restore)
        copies.append(real.import_id)
    after, sums = export_of(c)
    for k in ("accounts", "categories", "file_maps", "transaction_files", "transactions"):
        check(len(after[k]) == 3 * len(w.pkg[k]), "%s: %d after two copies of %d"
              % (k, len(after[k]), len(w.pkg[k])))
    check_references_resolve(after)
    # The originals are untouched, and each copy's entities are the
    # package's under the derived ids, references included.
    for entry, digest in before_sums["checksums"].items():
        if entry.startswith("files/"):
            check(sums["checksums"].get(entry) == digest, "original %s changed" % entry)
    by_id = {k: {e[ID_FIELD[k]]: e for e in after[k]} for k in KINDS}
    package_ids = {e[ID_FIELD[k]] for k in REFERENCED for e in w.pkg[k]}
    check(any("transactionHash" in t for t in w.pkg["transactions"]),
          "the package has no transactionHash: the test proves nothing")
    for import_id in copies:
        for k in KINDS:
            for e in w.pkg[k]:
                got = by_id[k].get(new_id(import_id, k, e[ID_FIELD[k]]))
                check(got is not None, "%s %s has no copy" % (k, e[ID_FIELD[k]]))
                stale = sorted(set(strings_of(got)) & package_ids)
                check(not stale, "the copy of %s %s still names package ids %r"
                      % (k, e[ID_FIELD[k]], stale[:3]))
                # A digest over the old accountId: left out of a copy.
                check("transactionHash" not in got, "the copy of %s %s keeps transactionHash"
                      % (k, e[ID_FIELD[k]]))
                for to, i, _ in refs_of(k, e):
                    check(new_id(import_id, to, i) in {r for t, r, _ in refs_of(k, got)
                                                      if t == to},
                          "the copy of %s %s does not refer to the copy of %s %s"
                          % (k, e[ID_FIELD[k]], to, i))
        # Each copy's bytes are in a blob of its own, under its new file id.
        keys = {f.file_id: f.s3_key for f in c.list_all("ListTransactionFiles", "files")}
        for e in w.pkg["transaction_files"]:
            nid = new_id(import_id, "transaction_files", e["fileId"])
            check(keys.get(nid) == "%s/%s/%s" % (c.user, nid, import_id),
                  "copy %s names blob %r" % (nid, keys.get(nid)))
        # File bytes of the copies are the originals'.
        for entry, digest in w.manifest["checksums"].items():
            if not entry.startswith("files/"):
                continue
            _, fid, name = entry.split("/", 2)
            copy_entry = "files/%s/%s" % (new_id(import_id, "transaction_files", fid), name)
            check(sums["checksums"].get(copy_entry) == digest,
                  "bytes of %s differ from %s's" % (copy_entry, entry))


def test_copy_with_analytics_has_no_duplicate_key(w):
    # A package with analytics restored as a copy next to its source: the
    # package's records are left out (not_selected, preview and result
    # alike) and the import regenerates the analytics, the copies'
    # included, so no (type, period, account, currency) has two records.
    c = w.fresh("copyan")
    setup = import_package(c, w.package)  # regenerates the analytics
    check(setup.status == jpb.IMPORT_STATUS_COMPLETED, "setup: %s" % setup.error.message)
    data, records = analytics_of(c)
    check(records, "no analytics to copy: the test proves nothing")
    check(not duplicate_keys(records), "duplicates before the copy: %r" % duplicate_keys(records))
    real = run_both(c, data, restore_opts(as_copy=True))
    check(counts(real, "not_selected")["analytics"] == len(records) and
          counts(real, "created")["analytics"] == 0,
          "analytics not_selected %d created %d of %d" % (
              counts(real, "not_selected")["analytics"], counts(real, "created")["analytics"],
              len(records)))
    check(len(real.result.analytics_types) > 0, "no analytics regenerated")
    _, after = analytics_of(c)
    dups = duplicate_keys(after)
    check(not dups, "%d keys with more than one record after a copy, e.g. %r"
          % (len(dups), sorted(dups.items(), key=str)[:3]))
    accounts = {r["accountId"] for r in records if r.get("accountId")}
    copied = {new_id(real.import_id, "accounts", a) for a in accounts}
    check(not accounts or copied & {r.get("accountId") for r in after},
          "no regenerated analytics for the copied accounts")


def copy_under_failpoint(w, failpoint, prefix, interrupt=None):
    """The package imported as a copy, by an fzipd with `failpoint` set (an
    FZIP_FAILPOINTS entry, or a Hold released once interrupt has run),
    into a user holding the source's data; interrupt(c, job) runs while
    it goes.  The job's end, and whether the user's data is as before."""
    hold = failpoint if isinstance(failpoint, Hold) else None
    spec = hold.spec if hold else failpoint
    with Fzipd(store=own_store("copyfp"), env={"FZIP_FAILPOINTS": spec}) as srv, \
            hold or contextlib.nullcontext():
        c = Client(srv, unique_user(prefix))
        srv.seed(c.user, n(600), seed=41)
        before = state(c)
        job = upload(c, w.package, restore=restore_opts(as_copy=True))
        if interrupt:
            interrupt(c, job)
        if hold:
            hold.release()
        final = watch_import(c, job.import_id)
        return final, state(c) == before


def test_copy_that_fails_half_way_leaves_nothing(w):
    job, unchanged = copy_under_failpoint(w, "store.put_tagged=error@3", "copyfail")
    check(job.status == jpb.IMPORT_STATUS_FAILED, "ended %s" % jpb.ImportStatus.Name(job.status))
    check(any(e.type == "rolled_back" for e in job.events), "no rollback event")
    check(unchanged, "a failed copy changed the data")


def cancel_once_writing(c, job):
    wait_for(lambda: c.imp.GetImport(ipb.GetImportRequest(import_id=job.import_id),
                                     metadata=c.md).job.items_done > 0 or None,
             60, "the copy to start writing")
    c.imp.CancelImport(ipb.CancelImportRequest(import_id=job.import_id), metadata=c.md)


def test_copy_cancelled_half_way_leaves_nothing(w):
    # The second tagged write waits until the cancel is in: it lands
    # mid-restore, one batch written.
    job, unchanged = copy_under_failpoint(w, Hold("store.put_tagged", from_hit=2), "copycancel",
                                          cancel_once_writing)
    check(job.status == jpb.IMPORT_STATUS_CANCELLED, "ended %s"
          % jpb.ImportStatus.Name(job.status))
    check(unchanged, "a cancelled copy changed the data")


# ---- partial packages ----------------------------------------------------

PARTIAL = [("accounts_only", dict(export_type=jpb.EXPORT_TYPE_ACCOUNTS_ONLY)),
           ("transactions_only", dict(export_type=jpb.EXPORT_TYPE_TRANSACTIONS_ONLY)),
           ("selective", None)]


def test_partial_packages_into_an_empty_profile(w):
    first_account = w.pkg["accounts"][0]["accountId"]
    for name, kw in PARTIAL:
        if kw is None:
            kw = dict(export_type=jpb.EXPORT_TYPE_SELECTIVE,
                      filters=jpb.ExportFilters(account_ids=[first_account]))
        data = w.export(**kw)
        pkg, manifest = package_data(data)
        check(any(manifest.get("external_references", {}).values()),
              "%s: the package has no external references to test with" % name)
        c = w.fresh("partial")
        refused = import_package(c, data)
        check(refused.status == jpb.IMPORT_STATUS_VALIDATION_FAILED,
              "%s without drop_dangling ended %s" % (name, jpb.ImportStatus.Name(refused.status)))
        check(any(i.rule == "reference.external_missing" for i in refused.validation.issues),
              "%s: refusal does not say why: %r" % (name, refused.error.message))
        check("user does not have" in refused.error.message,
              "%s: message %r" % (name, refused.error.message))
        real = run_both(c, data, restore_opts(drop_dangling_references=True))
        check_counts(real, expected_counts(pkg, EMPTY), name)
        check(sum(counts(real, "references_cleared").values()) > 0,
              "%s: nothing cleared: the test proves nothing" % name)
        check(any(i.rule == "reference.cleared" for i in real.validation.issues),
              "%s: no reference.cleared warning" % name)
        if name == "selective":  # one export is enough to see it (FerretDB is slow)
            check_references_resolve(export_of(c)[0])


def test_housef3_accounts_only_into_an_empty_profile(w):
    # The HouseF3 app's own partial package (docs/FORMAT.md "The HouseF3
    # flavour"): no external_references at all, so the accounts' default
    # file maps dangle until cleared.
    data, _ = hf.build_dataset(20)
    part = {"accounts": data["accounts"]}
    path = os.path.join(w.srv.dir, "hf_accounts_only.fzip")
    hf.write_package(path, part, {}, manifest=hf.manifest_for(part, backup_type="accounts_only"))
    with open(path, "rb") as f:
        pkg = f.read()
    c = w.fresh("hfpart")
    refused = import_package(c, pkg)
    check(refused.status == jpb.IMPORT_STATUS_VALIDATION_FAILED and
          any(i.rule == "reference.dangling" for i in refused.validation.issues),
          "HouseF3 accounts_only not refused: %r" % refused.error.message)
    real = run_both(c, pkg, restore_opts(drop_dangling_references=True))
    cleared = sum(1 for a in part["accounts"] if a.get("defaultFileMapId"))
    check(cleared > 0 and counts(real, "references_cleared")["accounts"] == cleared and
          counts(real, "created")["accounts"] == len(part["accounts"]),
          "counts %r / %r" % (counts(real, "created"), counts(real, "references_cleared")))


def test_dangling_required_reference_drops_the_entity(w):
    # Only the transactions of a complete package, into an empty profile:
    # their accounts are neither selected nor the user's.
    c = w.fresh("drop")
    refused = import_package(c, w.package, restore=restore_opts(kinds=[
        jpb.ENTITY_KIND_TRANSACTIONS]))
    check(refused.status == jpb.IMPORT_STATUS_VALIDATION_FAILED, "not refused: %s"
          % jpb.ImportStatus.Name(refused.status))
    check(any(i.rule == "reference.dangling" for i in refused.validation.issues),
          "no reference.dangling issue")
    real = run_both(c, w.package, restore_opts(kinds=[jpb.ENTITY_KIND_TRANSACTIONS],
                                               drop_dangling_references=True))
    want = expected_counts(w.pkg, EMPTY, kinds={"transactions"})
    check_counts(real, want, "transactions only, empty profile")
    check(want["transactions"]["dropped"] == len(w.pkg["transactions"]), "rules: %r" % want)
    check(export_of(c)[0]["transactions"] == [], "dropped transactions were written")


# The validator's reference questions come in store batches (pkg_validate.c
# ask_ahead_*): fewer exists calls than this for the selection below, which
# one question per id would take several times over.
EXISTS_CALLS_MAX = 12


def test_reference_questions_are_batched(w):
    # Only the transactions, into an empty profile: each of them refers to
    # accounts, categories and files of the package that are not selected,
    # so the user's data is asked about every one of those ids.  fzipd
    # fails the EXISTS_CALLS_MAX-th exists_many call (failpoint).
    referenced = {(to, i) for e in w.pkg["transactions"]
                  for to, i, _ in refs_of("transactions", e)}
    check(len(referenced) > 2 * EXISTS_CALLS_MAX,
          "%d referenced ids: too few to tell batches from single questions" % len(referenced))
    with Fzipd(env={"FZIP_FAILPOINTS": "store.entity_exists_many=error@%d"
                    % EXISTS_CALLS_MAX}) as srv:
        c = Client(srv, unique_user("batched"))
        ro = restore_opts(kinds=[jpb.ENTITY_KIND_TRANSACTIONS], drop_dangling_references=True)
        job = import_package(c, w.package, validate_only=True, restore=ro)
        check(job.status == jpb.IMPORT_STATUS_VALIDATION_PASSED,
              "preview ended %s (%d or more exists calls for %d ids?): %s"
              % (jpb.ImportStatus.Name(job.status), EXISTS_CALLS_MAX, len(referenced),
                 job.error.message))
        check_counts(job, expected_counts(w.pkg, EMPTY, kinds={"transactions"}), "batched")


# ---- selective import ------------------------------------------------------

def test_select_kinds(w):
    c = w.fresh("kinds")
    kinds = [jpb.ENTITY_KIND_ACCOUNTS, jpb.ENTITY_KIND_CATEGORIES, jpb.ENTITY_KIND_FILE_MAPS]
    real = run_both(c, w.package, restore_opts(kinds=kinds))
    check_counts(real, expected_counts(w.pkg, EMPTY, kinds={kind_name(k) for k in kinds}),
                 "kinds")
    got = export_of(c)[0]
    for k in KINDS[:3]:
        check(len(got[k]) == len(w.pkg[k]), "%s: %d of %d" % (k, len(got[k]), len(w.pkg[k])))
    check(got["transactions"] == [] and got["transaction_files"] == [], "unselected restored")
    check(real.result.files_restored == 0, "file bytes of unselected files restored")


def test_select_accounts(w):
    # Into the profile the package came from minus one account: the
    # selected account's things come back, references to the rest resolve
    # in the user's data.
    acc = [a["accountId"] for a in w.pkg["accounts"][:2]]
    c = w.fresh("accts")
    real = run_both(c, w.package, restore_opts(account_ids=acc,
                                               drop_dangling_references=True))
    check_counts(real, expected_counts(w.pkg, EMPTY, accounts=set(acc)), "accounts")
    got = export_of(c)[0]
    check(sorted(a["accountId"] for a in got["accounts"]) == sorted(acc), "accounts %r"
          % [a["accountId"] for a in got["accounts"]])
    want_txns = sorted(t["transactionId"] for t in w.pkg["transactions"] if t["accountId"] in acc)
    check(want_txns and sorted(t["transactionId"] for t in got["transactions"]) == want_txns,
          "transactions of the selected accounts")
    check(len(got["categories"]) == len(w.pkg["categories"]), "categories are not filtered")
    check_references_resolve(got)
    # Then the same package restored whole with skip_existing: what the
    # selection left out arrives, nothing is duplicated.
    rest = import_package(c, w.package, strategy=jpb.MERGE_STRATEGY_SKIP_EXISTING,
                          restore=restore_opts())
    check(rest.status == jpb.IMPORT_STATUS_COMPLETED, "whole package: %r" % rest.error)
    check(counts(rest, "skipped")["transactions"] == len(want_txns), "skipped %r"
          % counts(rest, "skipped"))


# ---- bad options -----------------------------------------------------------

def expect_invalid(call, field):
    try:
        call()
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, "code %s" % e.code())
        _, _, bad = status_details(e)
        fields = [v.field for b in bad for v in b.field_violations]
        check(field in fields, "violations %r do not name %s" % (fields, field))
        return
    raise AssertionError("accepted options with a bad %s" % field)


def test_bad_options_are_refused(w):
    c = w.fresh("bad")
    cases = [("restore.kinds", restore_opts(kinds=[99])),
             ("restore.account_ids", restore_opts(account_ids=["a/b"])),
             ("restore.account_ids", restore_opts(account_ids=["x%d" % i for i in range(1001)]))]
    for field, ro in cases:
        expect_invalid(lambda: upload(c, w.package, restore=ro), field)
    job = upload(c, w.package, start=False)
    for field, ro in cases:
        expect_invalid(lambda: c.imp.StartImport(ipb.StartImportRequest(
            import_id=job.import_id, restore=ro), metadata=c.md), field)
    # StartImport replaces the job's options.
    started = c.imp.StartImport(ipb.StartImportRequest(
        import_id=job.import_id, validate_only=True, restore=restore_opts(as_copy=True)),
        metadata=c.md).job
    check(started.restore.as_copy, "StartImport did not keep its options")
    done = watch_import(c, job.import_id)
    check(done.status == jpb.IMPORT_STATUS_VALIDATION_PASSED, "preview %r" % done.error)


def main():
    checks = Checks()
    with Fzipd() as srv:
        w = World(srv)
        for t in [test_bad_options_are_refused,
                  test_copy_twice_into_the_source_profile_triples_the_data,
                  test_copy_with_analytics_has_no_duplicate_key,
                  test_partial_packages_into_an_empty_profile,
                  test_dangling_required_reference_drops_the_entity,
                  test_reference_questions_are_batched,
                  test_housef3_accounts_only_into_an_empty_profile,
                  test_select_kinds,
                  test_select_accounts,
                  test_copy_that_fails_half_way_leaves_nothing,
                  test_copy_cancelled_half_way_leaves_nothing]:
            started = time.monotonic()
            checks.run(t, w)
            print("     %s: %.1f s" % (t.__name__, time.monotonic() - started), flush=True)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
