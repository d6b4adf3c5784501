"""End to end through fzipd: what the package checks of milestone 2 mean
for an import job (real fzipd on the embedded store, real gRPC client).

- Unknown entity fields (a package's user_id, fields nested in rules and
  assignments) are accepted with schema.unknown_field warnings and are
  never stored: a complete export of the imported user does not have them.
- A package refused for a limit (the Fifield overlap bomb's ratio, an
  over-long entry name) fails its job with RESOURCE_EXHAUSTED; one refused
  for malformed content with FAILED_PRECONDITION; neither writes anything.

The packages come from tests/pkg/make_packages.py, like the validator tests.
The full hostile corpus goes through fzipd in tests/import/test_import_e2e.py.
"""
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from fzipd_harness import Checks, Fzipd, unique_user  # noqa: E402
from fzip_e2e import Client, check, import_package  # noqa: E402

from fzip.v1 import data_service_pb2 as dpb  # noqa: E402
from fzip.v1 import jobs_pb2 as jpb  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
UNKNOWN = ("user_id", "userId", "owner", "debug")


def corpus():
    tmp = tempfile.mkdtemp(prefix="fzip-pkg-e2e-")
    subprocess.run(["/usr/bin/python3", os.path.join(HERE, "..", "pkg", "make_packages.py"), tmp], check=True,
                   capture_output=True)
    return tmp


def package(tmp, name):
    with open(os.path.join(tmp, name + ".fzip"), "rb") as f:
        return f.read()


def keys_deep(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from keys_deep(v)
    elif isinstance(value, list):
        for v in value:
            yield from keys_deep(v)


def test_unknown_fields_are_reported_and_never_stored(srv, tmp):
    # Into an empty user: without options the restore runs beside the
    # validation (the feed carries sanitized entities); with RestoreOptions
    # set (to the defaults) it runs after it and sanitizes what it reads
    # from the spool.
    for options in ({}, {"restore": jpb.RestoreOptions()}):
        c = Client(srv, unique_user("sanitize"))
        job = import_package(c, package(tmp, "good_unknown_entity_fields"), **options)
        check(job.status == jpb.IMPORT_STATUS_COMPLETED,
              "import ended %s: %s" % (jpb.ImportStatus.Name(job.status), job.error.message))
        warned = sorted(i.field for i in job.validation.issues
                        if i.rule == "schema.unknown_field")
        check(warned == sorted(["user_id", "userId", "rules[0].owner", "categories[0].debug"]),
              "warnings %r" % warned)
        check_nothing_unknown_stored(c)


def check_nothing_unknown_stored(c):
    _, _, data = c.export_and_download(export_type=jpb.EXPORT_TYPE_COMPLETE)
    z = zipfile.ZipFile(io.BytesIO(data))
    seen = 0
    for kind in ("accounts", "categories", "transactions"):
        entities = json.loads(z.read("data/%s.json" % kind))[kind]
        seen += len(entities)
        stored = set(keys_deep(entities))
        check(not stored.intersection(UNKNOWN),
              "%s stored unknown fields %r" % (kind, stored.intersection(UNKNOWN)))
    check(seen == 2 + 2 + 3, "the import did not restore everything (%d entities)" % seen)
    # Known fields, nested ones included, are all there.
    cats = json.loads(z.read("data/categories.json"))["categories"]
    rules = [r for cat in cats for r in cat.get("rules", [])]
    check(len(rules) == 2 and all("ruleId" in r and "condition" in r for r in rules),
          "rules lost fields: %r" % rules)


def test_refusal_status_says_limit_or_malformed(srv, tmp):
    c = Client(srv, unique_user("refused"))
    before = c.data.GetDataSummary(dpb.GetDataSummaryRequest(), metadata=c.md).summary
    for name, rule, code in [
            ("bad_fifield_overlap_bomb", "archive.overlap", "RESOURCE_EXHAUSTED"),
            ("bad_archive_ratio_small_entries", "limit.ratio", "RESOURCE_EXHAUSTED"),
            ("bad_entry_name_too_long", "limit.entry_name", "RESOURCE_EXHAUSTED"),
            ("bad_checksum_removed_tampered_data", "checksum.missing", "FAILED_PRECONDITION"),
            ("bad_file_sha256_mismatch", "file.sha256", "FAILED_PRECONDITION")]:
        job = import_package(c, package(tmp, name), strategy=jpb.MERGE_STRATEGY_OVERWRITE)
        check(job.status == jpb.IMPORT_STATUS_VALIDATION_FAILED,
              "%s: ended %s" % (name, jpb.ImportStatus.Name(job.status)))
        errors = [i for i in job.validation.issues
                  if i.severity == jpb.ValidationIssue.SEVERITY_ERROR]
        check(errors and errors[0].rule == rule,
              "%s: first rule %s, want %s" % (name, errors and errors[0].rule, rule))
        check(job.error.code == code, "%s: job error %s, want %s (%s)"
              % (name, job.error.code, code, job.error.message))
        check(errors[0].entry in job.error.message or not errors[0].entry,
              "%s: the job error does not name the entry: %s" % (name, job.error.message))
    now = c.data.GetDataSummary(dpb.GetDataSummaryRequest(), metadata=c.md).summary
    check(now == before, "a refused package changed the data")


def main():
    checks = Checks()
    tmp = corpus()
    try:
        with Fzipd() as srv:
            for t in (test_unknown_fields_are_reported_and_never_stored,
                      test_refusal_status_says_limit_or_malformed):
                checks.run(t, srv, tmp)
    finally:
        subprocess.run(["rm", "-rf", tmp], check=False)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
