"""End-to-end import tests: real fzipd, real store, real gRPC (Python grpcio).

What a user must be able to trust: a round trip reproduces the data
exactly; each merge strategy does what it says, and validate-only
predicts it; broken and hostile packages are refused with a precise
reason and change nothing; a failure, a cancel or a killed server in the
middle of a restore leaves the user's data exactly as it was.  "Exactly"
is checked, not assumed: the user's whole state is compared through the
checksums of a pinned complete export (every entity, every file byte).
"""
import glob
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from fzipd_harness import Checks, Fzipd, Hold, own_store, unique_user  # noqa: E402
from fzip_e2e import (Client, check, import_package, read_package, rewrite_package,  # noqa: E402
                      state, upload, watch_import)

import grpc  # noqa: E402
from fzip.v1 import data_service_pb2 as dpb  # noqa: E402
from fzip.v1 import import_service_pb2 as ipb  # noqa: E402
from fzip.v1 import jobs_pb2 as jpb  # noqa: E402

SCALE = float(os.environ.get("FZIP_TEST_SCALE", "1"))
# Nothing here tests undo (tests/import/test_import_undo.py does): every
# fzipd of this file commits imports without an undo window, so a commit
# forgets its stash at once as it did before undo existed.  With the default
# window (168 h) the stash of every overwrite import of every test stays in
# the one database they share, and on FerretDB, which answers every stash
# query with a scan, rollbacks grew past the job lease (another fzipd then
# took the job over: "interrupted ... rolled back").
os.environ.setdefault("FZIP_IMPORT_UNDO_WINDOW_HOURS", "0")
# FerretDB answers every query with a table scan: the MongoDB run imports a
# sample of the hostile corpus (every one of them is refused by the same
# validator before the store is touched; the SQLite run imports them all).
HOSTILE_MAX = int(os.environ.get("FZIP_TEST_HOSTILE_MAX", "0"))
HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS_MAKER = os.path.join(HERE, "..", "pkg", "make_packages.py")


def n(count):
    return max(20, int(count * SCALE))


def kind_counts(job, field):
    return {jpb.EntityKind.Name(c.kind): getattr(c, field) for c in job.result.counts}


class World:
    """A server and a source user whose package the tests reuse."""

    def __init__(self, srv):
        self.srv = srv
        self.src = Client(srv, unique_user("src"))
        srv.seed(self.src.user, n(2500), seed=31)
        job = self.src.create(export_type=jpb.EXPORT_TYPE_COMPLETE, pinned_timestamp=1700000000000)
        final = self.src.watch(job.export_id)[-1]
        check(final.status == jpb.EXPORT_STATUS_COMPLETED, "source export failed")
        _, self.package = self.src.download(job.export_id)
        _, self.manifest = read_package(self.package)
        self.changed = rewrite_package(self.package, rename_and_add_account)

    def fresh(self, prefix):
        return Client(self.srv, unique_user(prefix))

    def copy_of_source(self, prefix):
        """A user holding exactly the source's data (imported)."""
        c = self.fresh(prefix)
        job = import_package(c, self.package)
        check(job.status == jpb.IMPORT_STATUS_COMPLETED, "setup import: %s" % job.error.message)
        return c


NEW_ACCOUNT_ID = "0e0e0e0e-0000-4000-8000-00000000abcd"


def rename_and_add_account(parsed):
    """The source package with its first account renamed and one account
    added, and every transaction and file record changed: an overwrite
    writes (and stashes) every one of them, since identical entities are
    not written (docs/IMPORT.md "Preview")."""
    accounts = parsed["data/accounts.json"]["accounts"]
    accounts[0]["accountName"] = "Renamed by the test"
    for t in parsed["data/transactions.json"]["transactions"]:
        t["memo"] = "changed by the test"
    for f in parsed["data/transaction_files.json"]["transaction_files"]:
        f["errorMessage"] = "changed by the test"
    extra = dict(accounts[-1])
    extra["accountId"] = NEW_ACCOUNT_ID
    extra["accountName"] = "Added by the test"
    extra.pop("defaultFileMapId", None)
    accounts.append(extra)


# Transaction files are restored in batches of 64 (IMPORT_FILE_BATCH_MAX,
# import/import_run.c), each batch's records then their bytes: this many
# files cross two batch borders and end inside a third.
FILES_PAST_BATCHES = 150


def with_many_files(data, count):
    """The package with `count` more transaction files: copies of its first
    file record under new ids and names, each with bytes of its own (the
    record's fileSize and sha256, the manifest's checksums and counts
    follow); the new files/ entries go after the others."""
    z = zipfile.ZipFile(io.BytesIO(data))
    names = z.namelist()
    raw = {name: z.read(name) for name in names}
    manifest = json.loads(raw["manifest.json"])
    files_doc = json.loads(raw["data/transaction_files.json"])
    first = files_doc["transaction_files"][0]
    ext = os.path.splitext(first["fileName"])[1]
    added = []
    for i in range(count):
        rec = dict(first)
        rec["fileId"] = "f11e0000-0000-4000-8000-%012d" % i
        rec["fileName"] = "batch file %03d%s" % (i, ext)
        body = ("line %d of file %d\n" % (i, i)).encode() * (i + 1)
        rec["fileSize"] = len(body)
        rec["sha256"] = hashlib.sha256(body).hexdigest()
        files_doc["transaction_files"].append(rec)
        entry = "files/%s/%s" % (rec["fileId"], rec["fileName"])
        raw[entry] = body
        added.append(entry)
        manifest["checksums"][entry] = "sha256:" + rec["sha256"]
    tf = "data/transaction_files.json"
    raw[tf] = json.dumps(files_doc, ensure_ascii=False, separators=(",", ":")).encode()
    manifest["checksums"][tf] = "sha256:" + hashlib.sha256(raw[tf]).hexdigest()
    summary = manifest["data_summary"]
    summary["transaction_files_count"] += count
    summary["files_count"] += count
    summary["files_bytes"] += sum(len(raw[e]) for e in added)
    raw["manifest.json"] = json.dumps(manifest).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zw:
        for name in names + added:
            zw.writestr(name, raw[name])
    return out.getvalue()


def account_names(c):
    return {a.account_id: a.account_name for a in c.list_all("ListAccounts", "accounts")}


# ---- tests ----------------------------------------------------------------

def test_round_trip_reproduces_identical_data_entries(w):
    dst = w.fresh("dst")
    job = import_package(dst, w.package)
    check(job.status == jpb.IMPORT_STATUS_COMPLETED, "import: %s" % job.error.message)
    check(job.progress == 100 and job.current_phase == "completed", "final job %r" % job)
    created = kind_counts(job, "created")
    ds = w.manifest["data_summary"]
    check(created["ENTITY_KIND_TRANSACTIONS"] == ds["transactions_count"] == n(2500),
          "transactions created %r" % created)
    check(created["ENTITY_KIND_ACCOUNTS"] == ds["accounts_count"], "accounts created")
    check(job.result.files_restored == ds["transaction_files_count"], "files restored")
    check(job.package_info.source_user_id == w.src.user, "package info")
    again = dst.create(export_type=jpb.EXPORT_TYPE_COMPLETE, pinned_timestamp=1700000000000)
    check(dst.watch(again.export_id)[-1].status == jpb.EXPORT_STATUS_COMPLETED, "re-export")
    _, data = dst.download(again.export_id)
    _, m2 = read_package(data)
    for entry, digest in w.manifest["checksums"].items():
        check(m2["checksums"].get(entry) == digest, "entry %s differs after the round trip"
              % entry)
    check(set(m2["checksums"]) == set(w.manifest["checksums"]), "entry sets differ")
    # The package's user id is never trusted: the source user is untouched.
    check(w.src.data.GetDataSummary(dpb.GetDataSummaryRequest(), metadata=w.src.md)
          .summary.transactions_count == n(2500), "source user changed")


def test_files_past_two_restore_batches_come_back_byte_for_byte(w):
    data = with_many_files(w.package, FILES_PAST_BATCHES)
    _, manifest = read_package(data)
    total = manifest["data_summary"]["transaction_files_count"]
    check(total > 2 * 64, "the package has %d files, not past two batches" % total)
    dst = w.fresh("files")
    job = import_package(dst, data)
    check(job.status == jpb.IMPORT_STATUS_COMPLETED, "import: %s" % job.error.message)
    check(job.result.files_restored == total,
          "files restored %d of %d" % (job.result.files_restored, total))
    again = dst.create(export_type=jpb.EXPORT_TYPE_COMPLETE, pinned_timestamp=1700000000000)
    check(dst.watch(again.export_id)[-1].status == jpb.EXPORT_STATUS_COMPLETED, "re-export")
    _, out = dst.download(again.export_id)
    _, back = read_package(out)
    wanted = {e: d for e, d in manifest["checksums"].items() if e.startswith("files/")}
    got = {e: d for e, d in back["checksums"].items() if e.startswith("files/")}
    check(len(wanted) == total, "the crafted package lists %d files" % len(wanted))
    check(got == wanted, "%d file entries differ after the round trip"
          % len(set(wanted.items()) ^ set(got.items())))


def test_fail_on_conflict_lists_conflicts_and_writes_nothing(w):
    c = w.copy_of_source("foc")
    before = state(c)
    for validate_only in (True, False):
        job = import_package(c, w.changed, strategy=jpb.MERGE_STRATEGY_FAIL_ON_CONFLICT,
                             validate_only=validate_only)
        check(job.status == jpb.IMPORT_STATUS_VALIDATION_FAILED, "status %r" % job.status)
        check(job.validation.conflicting_ids and job.validation.issues[0].rule
              == "conflict.exists", "conflicts not listed: %r" % job.validation)
        check("conflict" in job.error.message or "exist" in job.error.message,
              "error does not say why: %r" % job.error.message)
    check(state(c) == before, "fail_on_conflict changed the data")


def check_preview_predicted(preview, real):
    """A validate-only run's per-kind counts are what the real import did."""
    for field in ("created", "overwritten", "skipped"):
        check(kind_counts(preview, field) == kind_counts(real, field),
              "preview %s %r != result %r" % (field, kind_counts(preview, field),
                                               kind_counts(real, field)))

def test_skip_existing_keeps_existing_and_adds_new(w):
    c = w.copy_of_source("skip")
    names_before = account_names(c)
    preview = import_package(c, w.changed, strategy=jpb.MERGE_STRATEGY_SKIP_EXISTING,
                             validate_only=True)
    check(preview.status == jpb.IMPORT_STATUS_VALIDATION_PASSED, "preview %r" % preview.error)
    check(account_names(c) == names_before, "validate-only wrote something")
    real = import_package(c, w.changed, strategy=jpb.MERGE_STRATEGY_SKIP_EXISTING)
    check(real.status == jpb.IMPORT_STATUS_COMPLETED, "import %r" % real.error)
    check_preview_predicted(preview, real)
    check(kind_counts(real, "created")["ENTITY_KIND_ACCOUNTS"] == 1, "one account is new")
    check(kind_counts(real, "skipped")["ENTITY_KIND_ACCOUNTS"] == len(names_before), "skipped")
    after = account_names(c)
    check(after[NEW_ACCOUNT_ID] == "Added by the test", "new account missing")
    del after[NEW_ACCOUNT_ID]
    check(after == names_before, "skip_existing changed an existing account")


def test_overwrite_replaces_existing(w):
    c = w.copy_of_source("over")
    preview = import_package(c, w.changed, strategy=jpb.MERGE_STRATEGY_OVERWRITE,
                             validate_only=True)
    real = import_package(c, w.changed, strategy=jpb.MERGE_STRATEGY_OVERWRITE)
    check(real.status == jpb.IMPORT_STATUS_COMPLETED, "import %r" % real.error)
    check_preview_predicted(preview, real)
    ov = kind_counts(real, "overwritten")
    check(ov["ENTITY_KIND_TRANSACTIONS"] == n(2500), "transactions overwritten %r" % ov)
    names = account_names(c)
    first = json.loads(zipfile.ZipFile(io.BytesIO(w.changed)).read("data/accounts.json"))
    check(names[first["accounts"][0]["accountId"]] == "Renamed by the test", "not overwritten")
    # Files were overwritten with new blobs: the bytes they serve are the package's.
    files = {f.file_id: f for f in c.list_all("ListTransactionFiles", "files")}
    check(files and all(f.s3_key.endswith("/" + real.import_id) for f in files.values()),
          "overwritten files do not point at this import's blobs")
    st = state(c)
    for entry, digest in w.manifest["checksums"].items():
        if entry.startswith("files/"):
            check(st.get(entry) == digest, "file %s differs from the package" % entry)


def make_corpus(tmp):
    """Writes the corpus; returns expected.tsv as {package name: (rule,
    entry, field)} of the first error issue each must produce."""
    subprocess.run(["/usr/bin/python3", CORPUS_MAKER, tmp], check=True, capture_output=True)
    expected = {}
    with open(os.path.join(tmp, "expected.tsv")) as f:
        for line in f:
            name, rule, entry, field = line.rstrip("\n").split("\t")
            check(name not in expected, "expected.tsv lists %s twice" % name)
            expected[name + ".fzip"] = (rule, entry, field)
    return expected


def entry_name_max():
    """PKG_ENTRY_NAME_MAX from the limits table of docs/FORMAT.md (the test
    pkg.limits_doc keeps that table equal to pkg/pkg_limits.h)."""
    path = os.path.join(HERE, "..", "..", "docs", "FORMAT.md")
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("| `PKG_ENTRY_NAME_MAX` |"):
                return int(line.split("|")[2].split()[0])
    raise RuntimeError("PKG_ENTRY_NAME_MAX not in docs/FORMAT.md")


ENTRY_NAME_MAX = entry_name_max()


def matches(got, want):
    """expected.tsv's entry/field notation: "-" is empty.  An issue keeps an
    entry name cut at PKG_ENTRY_NAME_MAX bytes, so a longer expected name
    matches exactly its first PKG_ENTRY_NAME_MAX bytes, nothing shorter."""
    if want == "-":
        return got == ""
    return got == want or (len(want) > ENTRY_NAME_MAX and got == want[:ENTRY_NAME_MAX])


def test_hostile_packages_are_refused_and_change_nothing(w):
    c = w.copy_of_source("hostile")
    before = state(c)
    summary = c.data.GetDataSummary(dpb.GetDataSummaryRequest(), metadata=c.md).summary
    with tempfile.TemporaryDirectory() as tmp:
        expected = make_corpus(tmp)
        bad = sorted(glob.glob(os.path.join(tmp, "bad_*.fzip")))
        # The corpus is exactly the packages expected.tsv names (whose rows
        # tests/pkg/test_pkg_validate.c pins to its own table): none
        # without an expected issue, none expected but not written.
        names = {os.path.basename(p) for p in bad}
        check(names == set(expected),
              "corpus and expected.tsv differ: only in the corpus %s, only in the tsv %s"
              % (sorted(names - set(expected)), sorted(set(expected) - names)))
        if HOSTILE_MAX:
            bad = bad[::max(1, len(bad) // HOSTILE_MAX)][:HOSTILE_MAX]
        for path in bad:
            name = os.path.basename(path)
            with open(path, "rb") as f:
                data = f.read()
            if not data:
                # Refused at upload already: nothing to validate.
                try:
                    upload(c, data, strategy=jpb.MERGE_STRATEGY_OVERWRITE)
                    raise AssertionError("%s: empty upload accepted" % name)
                except grpc.RpcError as e:
                    check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, "%s: %s" % (name, e))
                continue
            job = import_package(c, data, strategy=jpb.MERGE_STRATEGY_OVERWRITE)
            check(job.status == jpb.IMPORT_STATUS_VALIDATION_FAILED,
                  "%s: ended %s" % (name, jpb.ImportStatus.Name(job.status)))
            errors = [i for i in job.validation.issues
                      if i.severity == jpb.ValidationIssue.SEVERITY_ERROR]
            check(errors, "%s: no error issue" % name)
            rule, entry, field = expected[name]
            first = errors[0]
            check(first.rule == rule and matches(first.entry, entry) and
                  matches(first.field, field),
                  "%s: first error %s %r %r, want %s %r %r"
                  % (name, first.rule, first.entry, first.field, rule, entry, field))
            check(job.error.message and errors[0].reason, "%s: no reason given" % name)
            now = c.data.GetDataSummary(dpb.GetDataSummaryRequest(), metadata=c.md).summary
            check(now == summary, "%s changed the data" % name)
    check(state(c) == before, "the hostile corpus changed the data")


def test_design_document_packages_import(w):
    with tempfile.TemporaryDirectory() as tmp:
        make_corpus(tmp)
        good = sorted(glob.glob(os.path.join(tmp, "good_*.fzip")))
        check(good, "no hand-written packages")
        for path in good:
            c = w.fresh("design")
            with open(path, "rb") as f:
                job = import_package(c, f.read())
            check(job.status == jpb.IMPORT_STATUS_COMPLETED,
                  "%s: %s %s" % (os.path.basename(path), jpb.ImportStatus.Name(job.status),
                                 job.error.message))
            created = sum(kind_counts(job, "created").values())
            check(created > 0, "%s imported nothing" % path)


def test_upload_checks_size_sha_and_order(w):
    c = w.fresh("upload")
    data = w.package
    for kw, code in [
            (dict(expected_sha256="0" * 64), grpc.StatusCode.DATA_LOSS),
            (dict(expected_size=len(data) + 1), grpc.StatusCode.DATA_LOSS),
            (dict(expected_size=len(data) - 1), grpc.StatusCode.INVALID_ARGUMENT),
            (dict(expected_sha256="xyz"), grpc.StatusCode.INVALID_ARGUMENT)]:
        try:
            upload(c, data, **kw)
            raise AssertionError("upload with %r accepted" % kw)
        except grpc.RpcError as e:
            check(e.code() == code and e.details(), "%r: %s %s" % (kw, e.code(), e.details()))
    try:
        c.imp.UploadImport(iter([ipb.UploadImportRequest(chunk=b"PK")]), metadata=c.md)
        raise AssertionError("upload without options accepted")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, "no options: %s" % e.code())
    listed = c.imp.ListImports(ipb.ListImportsRequest(), metadata=c.md).jobs
    check(not listed, "failed uploads left jobs behind: %r" % [j.import_id for j in listed])


def test_delete_import_removes_the_upload_not_the_data(w):
    c = w.fresh("del")
    job = import_package(c, w.package)
    check(job.status == jpb.IMPORT_STATUS_COMPLETED, "import")
    c.imp.DeleteImport(ipb.DeleteImportRequest(import_id=job.import_id), metadata=c.md)
    try:
        c.imp.GetImport(ipb.GetImportRequest(import_id=job.import_id), metadata=c.md)
        raise AssertionError("deleted import still found")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.NOT_FOUND, "deleted: %s" % e.code())
    s = c.data.GetDataSummary(dpb.GetDataSummaryRequest(), metadata=c.md).summary
    check(s.transactions_count == n(2500), "deleting the job removed data")
    other = w.fresh("other")
    try:
        other.imp.GetImport(ipb.GetImportRequest(import_id=job.import_id), metadata=other.md)
        raise AssertionError("another user sees the import")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.NOT_FOUND, "foreign import: %s" % e.code())


def test_upload_limit_is_enforced_while_streaming():
    with Fzipd(extra_args=["--max-upload-bytes", str(1024 * 1024)]) as srv:
        c = Client(srv, unique_user("limit"))
        big = os.urandom(3 * 1024 * 1024)
        try:
            upload(c, big, with_checksum=False)
            raise AssertionError("upload over the limit accepted")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit" in e.details(),
                  "over limit: %s %s" % (e.code(), e.details()))
        check(not c.imp.ListImports(ipb.ListImportsRequest(), metadata=c.md).jobs,
              "a refused upload left a job")


# ---- failure in the middle of a restore ------------------------------------

def prepare_overlap(srv, package, changed, prefix):
    """A user holding the source data, its state, and the changed package."""
    c = Client(srv, unique_user(prefix))
    job = import_package(c, package)
    check(job.status == jpb.IMPORT_STATUS_COMPLETED, "setup import: %s" % job.error.message)
    return c, state(c)


def wait_processing(c, import_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = c.imp.GetImport(ipb.GetImportRequest(import_id=import_id), metadata=c.md).job
        if job.status == jpb.IMPORT_STATUS_PROCESSING and job.items_done > 0:
            return job
        check(job.status not in (jpb.IMPORT_STATUS_COMPLETED, jpb.IMPORT_STATUS_FAILED),
              "import ended before it could be interrupted: %r" % job.status)
        time.sleep(0.05)
    raise AssertionError("import never reached PROCESSING")


def test_store_failure_mid_restore_rolls_back(w):
    # Every tagged write from the 4th on fails: the import has written
    # (and stashed) three batches when the store "breaks".
    with Fzipd(store=own_store("fail"), env={"FZIP_FAILPOINTS": "store.put_tagged=error@4"}) as srv:
        c = Client(srv, unique_user("fail"))
        srv.seed(c.user, n(2500), seed=31)  # same ids as the package: overwrites stash
        before = state(c)
        job = import_package(c, w.changed, strategy=jpb.MERGE_STRATEGY_OVERWRITE)
        check(job.status == jpb.IMPORT_STATUS_FAILED, "ended %s" % jpb.ImportStatus.Name(job.status))
        # The client reads a generic message naming the request id; fzipd's
        # lines under that id keep what failed.
        m = re.fullmatch(r"storage unavailable; retry later \(request id (\S+)\)",
                         job.error.message)
        check(m, "job error is not the generic store message: %r" % job.error.message)
        with open(srv.log_path, "rb") as f:
            log = [json.loads(ln) for ln in f.read().decode().splitlines() if ln.startswith("{")]
        check(any(ln.get("request_id") == m.group(1) and "failpoint" in str(ln.get("error", ""))
                  for ln in log), "no log line under %s says what failed" % m.group(1))
        check(any(e.type == "rolled_back" for e in job.events), "no rollback event")
        # The error names the phase that failed, not the rollback after it.
        check(job.error.phase.startswith("restoring_"), "error phase %r" % job.error.phase)
        check(state(c) == before, "a failed import changed the data")


def hold_second_write():
    """The restore's first tagged write goes through, so its progress
    shows; the second and later ones wait for the test's release."""
    return Hold("store.put_tagged", from_hit=2)


def test_cancel_mid_restore_rolls_back(w):
    hold = hold_second_write()
    with Fzipd(store=own_store("cancel"), env={"FZIP_FAILPOINTS": hold.spec}) as srv, hold:
        c = Client(srv, unique_user("cancel"))
        srv.seed(c.user, n(2500), seed=31)
        before = state(c)
        job = upload(c, w.changed, strategy=jpb.MERGE_STRATEGY_OVERWRITE)
        wait_processing(c, job.import_id)
        c.imp.CancelImport(ipb.CancelImportRequest(import_id=job.import_id), metadata=c.md)
        hold.release()
        final = watch_import(c, job.import_id)
        check(final.status == jpb.IMPORT_STATUS_CANCELLED,
              "ended %s" % jpb.ImportStatus.Name(final.status))
        check(state(c) == before, "a cancelled import changed the data")
        # Started again, it runs to its end: the cancel of its first run is
        # not inherited (docs/IMPORT.md: CANCELLED -> StartImport).
        c.imp.StartImport(ipb.StartImportRequest(import_id=job.import_id,
                                                 merge_strategy=jpb.MERGE_STRATEGY_OVERWRITE),
                          metadata=c.md)
        final = watch_import(c, job.import_id)
        check(final.status == jpb.IMPORT_STATUS_COMPLETED,
              "restarted after a cancel, ended %s: %s" % (jpb.ImportStatus.Name(final.status),
                                                          final.error.message))


def test_killed_server_is_rolled_back_by_the_next_one(w):
    hold = hold_second_write()  # not released: killed while held
    first = Fzipd(store=own_store("kill"), extra_args=["--job-lease-ms", "2000"],
                  env={"FZIP_FAILPOINTS": hold.spec})
    first.start()
    store = first.store
    c = Client(first, unique_user("kill"))
    first.seed(c.user, n(2500), seed=31)
    before = state(c)
    job = upload(c, w.changed, strategy=jpb.MERGE_STRATEGY_OVERWRITE)
    wait_processing(c, job.import_id)
    first.kill()
    first.channel.close()
    # A new fzipd on the same store takes the job over when the lease lapses.
    with Fzipd(store=store, extra_args=["--job-lease-ms", "2000"]) as second:
        c2 = Client(second, c.user)
        second_secret = second.secret_file
        check(second_secret, "no secret")
        deadline = time.monotonic() + 60
        final = None
        while time.monotonic() < deadline:
            final = c2.imp.GetImport(ipb.GetImportRequest(import_id=job.import_id),
                                     metadata=c2.md).job
            if final.status == jpb.IMPORT_STATUS_FAILED:
                break
            time.sleep(0.2)
        check(final and final.status == jpb.IMPORT_STATUS_FAILED,
              "not rolled back: %r" % (final and jpb.ImportStatus.Name(final.status)))
        check("interrupted" in final.error.message, "message: %r" % final.error.message)
        check(state(c2) == before, "the killed import changed the data")
    first.stop(expect_clean=False)
    first.tmp.cleanup()
    hold.tmp.cleanup()


# ---- isolation, a full store, and kills inside the commit ------------------

def log_lines(needle, *servers):
    """What the servers logged about `needle` (an import id), for failure
    messages: which replica claimed the job, and why it stopped."""
    out = []
    for srv in servers:
        try:
            with open(srv.log_path, "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            continue
        out += ["%s: %s" % (srv.port, line) for line in text.splitlines()
                if needle in line and '"debug"' not in line and "call done" not in line]
    return "\n".join(out[-30:])


def get_import(c, import_id):
    return c.imp.GetImport(ipb.GetImportRequest(import_id=import_id), metadata=c.md).job


def summary(c):
    return c.data.GetDataSummary(dpb.GetDataSummaryRequest(), metadata=c.md).summary


def test_readers_never_see_an_uncommitted_import(w):
    # The restore is held after its first write; meanwhile an export and
    # the DataService must show exactly the data from before, and the
    # commit then shows the import whole.
    hold = hold_second_write()
    with Fzipd(store=own_store("iso"), env={"FZIP_FAILPOINTS": hold.spec}) as srv, hold:
        c = Client(srv, unique_user("iso"))
        srv.seed(c.user, n(2500), seed=31)
        before, names_before, sum_before = state(c), account_names(c), summary(c)
        job = upload(c, w.changed, strategy=jpb.MERGE_STRATEGY_OVERWRITE)
        wait_processing(c, job.import_id)
        # Two rounds of reads while the restore is held mid-way (one write
        # done, the next waiting): none may see any of it.
        for _ in range(2):
            names, summ, st = account_names(c), summary(c), state(c)
            now = get_import(c, job.import_id)
            check(now.status == jpb.IMPORT_STATUS_PROCESSING and
                  now.current_phase.startswith("restoring_"),
                  "the held import is %s/%s" % (jpb.ImportStatus.Name(now.status),
                                                now.current_phase))
            check(names == names_before, "DataService showed uncommitted accounts")
            check(summ == sum_before, "the data summary counted uncommitted rows")
            check(st == before, "an export taken during the import holds uncommitted rows")
        hold.release()
        final = watch_import(c, job.import_id)
        check(final.status == jpb.IMPORT_STATUS_COMPLETED, "ended %s: %s\n%s"
              % (jpb.ImportStatus.Name(final.status), final.error.message,
                 log_lines(job.import_id, srv, w.srv)))
        names = account_names(c)
        check(names.get(NEW_ACCOUNT_ID) == "Added by the test", "committed import not visible")
        check("Renamed by the test" in names.values(), "committed rename not visible")
        check(state(c) != before, "the committed import changed nothing")


def sqlite_path(uri):
    return uri[len("sqlite:"):].split("?")[0]


def page_count(uri):
    """(pages in the file, bytes per page)."""
    import sqlite3
    db = sqlite3.connect("file:%s?mode=ro" % sqlite_path(uri), uri=True)
    try:
        return (db.execute("PRAGMA page_count").fetchone()[0],
                db.execute("PRAGMA page_size").fetchone()[0])
    finally:
        db.close()


def test_full_store_mid_import_ends_failed_with_data_restored(w):
    # SQLite only: the store is capped (sqlite:PATH?max_pages=N) a little
    # above what the uploaded package leaves, so the restore runs out of
    # space part-way.  The job must end FAILED (not hang in PROCESSING), the
    # client's watch must end, and the data must be exactly as before.
    if os.environ.get("FZIP_TEST_STORE", "sqlite") != "sqlite":
        return
    first = Fzipd().start()
    uri = first.store
    c = Client(first, unique_user("full"))
    first.seed(c.user, n(2500), seed=31)
    before = state(c)
    job = upload(c, w.changed, strategy=jpb.MERGE_STRATEGY_OVERWRITE, start=False)
    check(job.status == jpb.IMPORT_STATUS_UPLOADED, "upload: %r" % job.status)
    first.stop()
    # 4 MiB are the import's reserve (SQ_RESERVE_BYTES); 1 MiB more leaves
    # room for the job records but not for the restore (several MiB).
    pages, page_size = page_count(uri)
    cap = pages + (4 * 1024 * 1024 + 1024 * 1024) // page_size
    try:
        with Fzipd(store="%s?max_pages=%d" % (uri, cap)) as capped:
            c2 = Client(capped, c.user)
            c2.imp.StartImport(ipb.StartImportRequest(
                import_id=job.import_id, merge_strategy=jpb.MERGE_STRATEGY_OVERWRITE),
                metadata=c2.md)
            t0 = time.monotonic()
            final = watch_import(c2, job.import_id, timeout=120)
            check(final.status == jpb.IMPORT_STATUS_FAILED, "ended %s: %s"
                  % (jpb.ImportStatus.Name(final.status), final.error.message))
            check(time.monotonic() - t0 < 60, "the failure took %.0f s to reach the client"
                  % (time.monotonic() - t0))
            check("full" in final.error.message, "error does not say the store is full: %r"
                  % final.error.message)
            check(any(e.type == "rolled_back" for e in final.events), "no rollback event")
            check(final.current_phase != "cleanup_pending", "the rollback did not finish")
        with Fzipd(store=uri) as again:
            check(state(Client(again, c.user)) == before, "a failed import on a full store "
                  "changed the data")
    finally:
        first.tmp.cleanup()


def content(c):
    """state(c), but with the analytics compared without their
    computedDate (the time they were regenerated), so two users who went
    through the same import compare equal."""
    _, _, data = c.export_and_download(export_type=jpb.EXPORT_TYPE_COMPLETE,
                                       include_analytics=True, pinned_timestamp=1000000000000)
    z, manifest = read_package(data)
    out = dict(manifest["checksums"])
    if "data/analytics.json" in out:
        records = json.loads(z.read("data/analytics.json"))["analytics"]
        for r in records:
            r.pop("computedDate", None)
        out["data/analytics.json"] = hashlib.sha256(
            json.dumps(records, sort_keys=True).encode()).hexdigest()
    return out


def duplicate_last_transaction_id(parsed):
    """The last transaction takes the first one's id: the validator finds
    the duplicate only at the end of the kind (ids out of order go
    through its sorted runs), after the restore beside it has written."""
    txns = parsed["data/transactions.json"]["transactions"]
    txns[-1]["transactionId"] = txns[0]["transactionId"]


def empty_summary(c):
    s = c.data.GetDataSummary(dpb.GetDataSummaryRequest(), metadata=c.md).summary
    return (s.accounts_count, s.transactions_count, s.categories_count, s.file_maps_count,
            s.transaction_files_count) == (0, 0, 0, 0, 0)


def test_package_refused_late_into_an_empty_user_is_rolled_back(w):
    # Into a user with no data the restore runs beside the validation
    # (docs/IMPORT.md "Restoring while validating"): a package refused at
    # its last transaction has been written in part (pending), and the
    # job ends VALIDATION_FAILED with the validator's verdict only after
    # the rollback.  The restore's own refusal of the duplicate id (the
    # store's) is not what the client reads.
    bad = rewrite_package(w.package, duplicate_last_transaction_id)
    c = w.fresh("late")
    job = import_package(c, bad)
    check(job.status == jpb.IMPORT_STATUS_VALIDATION_FAILED,
          "ended %s: %s" % (jpb.ImportStatus.Name(job.status), job.error.message))
    errors = [i for i in job.validation.issues if i.severity == jpb.ValidationIssue.SEVERITY_ERROR]
    check(errors and errors[0].rule == "id.duplicate", "first error %r" % (errors[:1],))
    check(any(e.type == "rolled_back" for e in job.events),
          "no rollback event: the restore did not run beside the validation")
    check(job.error.phase == "validating", "error phase %r" % job.error.phase)
    check(empty_summary(c), "a refused package left data behind")
    # Nothing pending is left either: the good package goes in whole.
    job = import_package(c, w.package)
    check(job.status == jpb.IMPORT_STATUS_COMPLETED, "then: %s" % job.error.message)
    check(kind_counts(job, "created")["ENTITY_KIND_TRANSACTIONS"] == n(2500),
          "then created %r" % kind_counts(job, "created"))


def failed_and_rolled_back(srv, c, job, failpoint):
    """The import ended FAILED after its rollback, a log line names the
    failpoint that failed it, and the user it went into is empty again."""
    check(job.status == jpb.IMPORT_STATUS_FAILED,
          "ended %s: %s" % (jpb.ImportStatus.Name(job.status), job.error.message))
    check(any(e.type == "rolled_back" for e in job.events), "no rollback event")
    with open(srv.log_path, "rb") as f:
        log = f.read().decode()
    check(failpoint in log, "no log line names %s" % failpoint)
    check(empty_summary(c), "a failed import left data behind")


def test_store_failure_while_regenerating_analytics_rolls_back(w):
    # The analytics are regenerated from the import's own transactions,
    # read back on the job's thread and tallied on another
    # (import/analytics.c): a store that fails under the read, half way
    # through the package's transactions (n(2500): fewer on FerretDB),
    # stops both threads and the import rolls back, its entities and
    # files with it.
    spec = "analytics.read=error@%d" % (n(2500) // 2)
    with Fzipd(store=own_store("anfail"), env={"FZIP_FAILPOINTS": spec}) as srv:
        c = Client(srv, unique_user("anfail"))
        failed_and_rolled_back(srv, c, import_package(c, w.package), "analytics.read")


def test_failed_tally_stops_the_read_back_and_rolls_back(w):
    # The tally thread fails at its first transaction (as out of memory
    # would): the read-back on the job's thread then stops, instead of
    # reading the rest of the transactions only for the feed to drop them.
    # It is held at the last one (analytics.read), which it must never
    # reach: a read-back that went on would wait there and the job would
    # not end.  The import fails and rolls back.  The read-back can only
    # be ahead of the tally by the feed (640 KiB, under 1,000 of these
    # transactions), so the package must hold well more: not on
    # FerretDB's tenth of the data.
    total = n(2500)
    if total < 2000:
        return
    hold = Hold("analytics.read", from_hit=total)
    spec = "analytics.tally=error@1," + hold.spec
    with Fzipd(store=own_store("tally"), env={"FZIP_FAILPOINTS": spec}) as srv, hold:
        c = Client(srv, unique_user("tally"))
        job = upload(c, w.package)
        final = watch_import(c, job.import_id, timeout=120)
        failed_and_rolled_back(srv, c, final, "analytics.tally")


def test_cancel_while_restoring_beside_the_validation_rolls_back(w):
    # The restore beside the validation is held at its second write; the
    # validation fills the feed and waits (keeping the lease), or ends and
    # waits for the restore.  A cancel stops both, and the rollback leaves
    # the user as empty as before.
    hold = hold_second_write()
    with Fzipd(store=own_store("beside"), env={"FZIP_FAILPOINTS": hold.spec}) as srv, hold:
        c = Client(srv, unique_user("beside"))
        job = upload(c, w.package)
        held = wait_processing(c, job.import_id)
        # The restore after a validation names its kind ("restoring_accounts").
        check(held.current_phase in ("validating", "restoring"),
              "not restoring beside the validation: phase %r" % held.current_phase)
        c.imp.CancelImport(ipb.CancelImportRequest(import_id=job.import_id), metadata=c.md)
        hold.release()
        final = watch_import(c, job.import_id)
        check(final.status == jpb.IMPORT_STATUS_CANCELLED,
              "ended %s: %s" % (jpb.ImportStatus.Name(final.status), final.error.message))
        check(any(e.type == "rolled_back" for e in final.events), "no rollback event")
        check(empty_summary(c), "a cancelled import left data behind")
        c.imp.StartImport(ipb.StartImportRequest(
            import_id=job.import_id, merge_strategy=jpb.MERGE_STRATEGY_FAIL_ON_CONFLICT),
            metadata=c.md)
        final = watch_import(c, job.import_id)
        check(final.status == jpb.IMPORT_STATUS_COMPLETED,
              "restarted, ended %s: %s" % (jpb.ImportStatus.Name(final.status),
                                           final.error.message))


def test_validation_shows_its_total_and_progress_before_it_has_counted(w):
    # A client watching a large import sees how much there is and that the
    # validation has begun, not 0 of 0 until the validation has counted:
    # the job's items_total comes from the manifest's counts as soon as
    # the validation has read it.  The validation is held at its second
    # progress call (the first, "archive", comes before the manifest).
    hold = Hold("import.validating", from_hit=2)
    with Fzipd(store=own_store("vprog"), env={"FZIP_FAILPOINTS": hold.spec}) as srv, hold:
        c = Client(srv, unique_user("vprog"))
        job = upload(c, w.package)
        deadline = time.monotonic() + 60
        held = get_import(c, job.import_id)
        while time.monotonic() < deadline and held.items_total == 0:
            check(held.status not in (jpb.IMPORT_STATUS_COMPLETED, jpb.IMPORT_STATUS_FAILED),
                  "import ended before its validation was held: %s" % held.error.message)
            time.sleep(0.05)
            held = get_import(c, job.import_id)
        check(held.current_phase == "validating" and 1 <= held.progress <= 29,
              "held: phase %r, progress %d" % (held.current_phase, held.progress))
        hold.release()
        final = watch_import(c, job.import_id)
        check(final.status == jpb.IMPORT_STATUS_COMPLETED and final.progress == 100,
              "ended %s, progress %d: %s" % (jpb.ImportStatus.Name(final.status),
                                             final.progress, final.error.message))
        check(held.items_total == final.items_total == final.items_done,
              "items_total %d while validating, %d counted, %d done" % (
                  held.items_total, final.items_total, final.items_done))


# The lease of the first server in the tests below: long enough that no
# other replica on a shared MongoDB takes a job over while FerretDB is slow,
# short enough that the next server takes it over soon after a SIGKILL.
FIRST_LEASE_MS = 8000


def test_failed_rollback_ends_failed_and_is_cleaned_up_later(w):
    # The restore fails and so does its rollback: the job must still end
    # FAILED at once (the client is told), none of the import may be
    # visible meanwhile, and a later claim (here a new fzipd without the
    # failure) finishes the cleanup.
    first = Fzipd(store=own_store("cleanup"),
                  extra_args=["--job-lease-ms", str(FIRST_LEASE_MS)],
                  env={"FZIP_FAILPOINTS":
                       "store.put_tagged=error@4,store.import_rollback=error@1"}).start()
    c = Client(first, unique_user("cleanup"))
    first.seed(c.user, n(2500), seed=31)
    before = state(c)
    job = import_package(c, w.changed, strategy=jpb.MERGE_STRATEGY_OVERWRITE)
    check(job.status == jpb.IMPORT_STATUS_FAILED, "ended %s" % jpb.ImportStatus.Name(job.status))
    check(job.current_phase == "cleanup_pending", "phase %r: %s\n%s"
          % (job.current_phase, job.error.message, log_lines(job.import_id, first, w.srv)))
    check("not finished" in job.error.message or
          any("not finished" in e.message for e in job.events),
          "the client is not told the cleanup is pending: %r" % job.error.message)
    check(job.error.phase.startswith("restoring_"), "error phase %r" % job.error.phase)
    check(state(c) == before, "a failed import with its rollback pending is visible")
    first.stop()
    try:
        with Fzipd(store=first.store, extra_args=["--job-lease-ms", "2000"]) as second:
            c2 = Client(second, c.user)
            deadline = time.monotonic() + 60
            final = get_import(c2, job.import_id)
            while time.monotonic() < deadline and final.current_phase != "cleaned_up":
                time.sleep(0.2)
                final = get_import(c2, job.import_id)
            check(final.current_phase == "cleaned_up", "cleanup never ran: %r"
                  % final.current_phase)
            check(final.status == jpb.IMPORT_STATUS_FAILED, "status %r" % final.status)
            check(state(c2) == before, "the cleanup changed the data")
    finally:
        first.tmp.cleanup()


def wait_phase(c, import_id, phase, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = get_import(c, import_id)
        if job.current_phase == phase:
            return job
        check(job.status not in (jpb.IMPORT_STATUS_COMPLETED, jpb.IMPORT_STATUS_FAILED),
              "import ended before %s: %s" % (phase, job.error.message))
        time.sleep(0.05)
    raise AssertionError("import never reached phase %s" % phase)


def test_kill_inside_the_commit_phase_ends_before_or_after(w):
    # fzipd is killed (SIGKILL) at three points of the commit phase: before
    # the flip, right after it, and in the middle of forgetting the stash.
    # A new fzipd on the same store must end the job COMPLETED or FAILED,
    # and the user's data must equal exactly the state before the import or
    # the state after a clean import of the same package -- never a mix.
    ref = w.fresh("ref")
    w.srv.seed(ref.user, n(2500), seed=31)
    job = import_package(ref, w.changed, strategy=jpb.MERGE_STRATEGY_OVERWRITE)
    check(job.status == jpb.IMPORT_STATUS_COMPLETED, "reference import: %s" % job.error.message)
    after = content(ref)
    # Each kill point is a hold that is never released: fzipd is killed
    # while held there.  The walk over the stash is held at its second
    # document: the kill lands inside the walk, after its first.
    for failpoint, from_hit in [("store.import_flip", 1), ("store.import_forget", 1),
                                ("import.commit_visit", 2)]:
        hold = Hold(failpoint, from_hit)
        # No undo window: the commit forgets the stash at once, which the
        # third kill point is inside of.
        first = Fzipd(store=own_store("killc"),
                      extra_args=["--job-lease-ms", str(FIRST_LEASE_MS),
                                  "--import-undo-window-hours", "0"],
                      env={"FZIP_FAILPOINTS": hold.spec}).start()
        c = Client(first, unique_user("killc"))
        first.seed(c.user, n(2500), seed=31)
        before = content(c)
        job = upload(c, w.changed, strategy=jpb.MERGE_STRATEGY_OVERWRITE)
        try:
            wait_phase(c, job.import_id, "committing")
        except AssertionError as e:
            raise AssertionError("%s\n%s" % (e, log_lines(job.import_id, first, w.srv)))
        first.kill()
        first.channel.close()
        with Fzipd(store=first.store, extra_args=["--job-lease-ms", "2000"]) as second:
            c2 = Client(second, c.user)
            deadline = time.monotonic() + 120
            final = get_import(c2, job.import_id)
            while time.monotonic() < deadline and final.status not in (
                    jpb.IMPORT_STATUS_COMPLETED, jpb.IMPORT_STATUS_FAILED):
                time.sleep(0.2)
                final = get_import(c2, job.import_id)
            check(final.status in (jpb.IMPORT_STATUS_COMPLETED, jpb.IMPORT_STATUS_FAILED),
                  "%s: job still %s" % (failpoint, jpb.ImportStatus.Name(final.status)))
            now = content(c2)
            want = after if final.status == jpb.IMPORT_STATUS_COMPLETED else before
            check(now == want, "%s: ended %s but the data is %s (entries differing from "
                  "after: %s; from before: %s)" % (
                      failpoint, jpb.ImportStatus.Name(final.status),
                      "the state from before" if now == before else
                      "the state after" if now == after else "a mix",
                      sorted(k for k in set(now) | set(after) if now.get(k) != after.get(k)),
                      sorted(k for k in set(now) | set(before) if now.get(k) != before.get(k))))
            # Killed inside the commit phase: the commit decision was made.
            check(final.status == jpb.IMPORT_STATUS_COMPLETED,
                  "%s: a kill after 'committing' was saved rolled back" % failpoint)
        first.stop(expect_clean=False)
        first.tmp.cleanup()
        hold.tmp.cleanup()


def main():
    checks = Checks()
    with Fzipd() as srv:
        w = World(srv)
        for t in [test_round_trip_reproduces_identical_data_entries,
                  test_files_past_two_restore_batches_come_back_byte_for_byte,
                  test_fail_on_conflict_lists_conflicts_and_writes_nothing,
                  test_skip_existing_keeps_existing_and_adds_new,
                  test_overwrite_replaces_existing,
                  test_hostile_packages_are_refused_and_change_nothing,
                  test_design_document_packages_import,
                  test_upload_checks_size_sha_and_order,
                  test_delete_import_removes_the_upload_not_the_data]:
            checks.run(t, w)
        for t in [test_store_failure_mid_restore_rolls_back,
                  test_cancel_mid_restore_rolls_back,
                  test_package_refused_late_into_an_empty_user_is_rolled_back,
                  test_store_failure_while_regenerating_analytics_rolls_back,
                  test_failed_tally_stops_the_read_back_and_rolls_back,
                  test_cancel_while_restoring_beside_the_validation_rolls_back,
                  test_validation_shows_its_total_and_progress_before_it_has_counted,
                  test_killed_server_is_rolled_back_by_the_next_one,
                  test_readers_never_see_an_uncommitted_import,
                  test_full_store_mid_import_ends_failed_with_data_restored,
                  test_failed_rollback_ends_failed_and_is_cleaned_up_later,
                  test_kill_inside_the_commit_phase_ends_before_or_after]:
            checks.run(t, w)
    checks.run(test_upload_limit_is_enforced_while_streaming)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
