"""End-to-end: CSV tables in a package (CreateExportRequest.include_csv).

A real fzipd on loopback (embedded store, or MongoDB behind the ferretdb
fixture) exports seeded users with include_csv; the csv/ entries are parsed
with Python's csv module and every row is compared with the package's own
data/*.json (exact decimal strings, ISO 8601 UTC times, names looked up by
id, the formula guard); the bytes are checked to be RFC 4180 as Python
writes it (CRLF, minimal quoting, doubled quotes) behind a UTF-8 BOM; the
package restores into an empty profile to the same state as the source (the
csv/ entries ignored, without an issue); a pinned export with the option is
byte-identical twice.  docs/FORMAT.md section 13.
"""
import csv
import datetime
import hashlib
import io
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from fzipd_harness import Checks, Fzipd, unique_user  # noqa: E402

from fzip.v1 import jobs_pb2 as jpb  # noqa: E402
from fzip_e2e import (Client, check, check_schema, import_package, read_package,  # noqa: E402
                      rewrite_package, state, unzip_t, verify_checksums)

SCALE = float(os.environ.get("FZIP_TEST_SCALE", "1"))
SEED_TX = max(40, int(1500 * SCALE))
PIN = 1700000000000
BOM = b"\xef\xbb\xbf"
GUARDED = ("=", "+", "-", "@", "\t", "\r")

ACCOUNT_COLS = ["accountId", "accountName", "accountType", "institution", "currency", "balance",
                "isActive", "notes", "defaultFileMapId", "firstTransactionDate",
                "lastTransactionDate", "createdAt", "updatedAt"]
CATEGORY_COLS = ["categoryId", "name", "type", "parentCategoryId", "icon", "color",
                 "inheritParentRules", "ruleInheritanceMode", "ruleCount", "createdAt",
                 "updatedAt"]
TRANSACTION_COLS = ["transactionId", "date", "dateMs", "accountId", "accountName",
                    "description", "amount", "currency", "balance", "transactionType", "memo",
                    "checkNumber", "fitId", "status", "primaryCategoryId",
                    "primaryCategoryName", "categoryIds", "fileId", "importOrder", "createdAt",
                    "updatedAt"]
TIMES = {"firstTransactionDate", "lastTransactionDate", "createdAt", "updatedAt", "date"}
MONEY = {"balance", "amount"}
BOOLS = {"isActive", "inheritParentRules"}


def iso(ms):
    t = datetime.datetime.fromtimestamp(ms // 1000, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (ms % 1000)


def text(v):
    return "'" + v if v and v.startswith(GUARDED) else v


def plain(v):
    return v


def expected_cell(col, e, names):
    """What FORMAT.md 13 says the cell of column `col` holds for entity e."""
    if col == "dateMs":
        return str(e["date"])
    if col == "accountName":
        return text(names["accounts"].get(e.get("accountId"), ""))
    if col == "primaryCategoryName":
        return text(names["categories"].get(e.get("primaryCategoryId"), ""))
    if col == "categoryIds":
        return text(";".join(a["categoryId"] for a in e.get("categories", [])))
    if col == "ruleCount":
        return str(len(e["rules"])) if "rules" in e else ""
    if col not in e:
        return ""
    v = e[col]
    if col in TIMES:
        return iso(v)
    if col in BOOLS:
        return "true" if v else "false"
    if col in MONEY:
        check(isinstance(v, str), "%s is not a decimal string in the JSON" % col)
        return plain(v)
    if isinstance(v, int):
        return str(v)
    return text(v)


def parse_csv(raw, entry):
    """Rows of a csv/ entry, after checking its bytes are what Python's csv
    module writes for them (RFC 4180: CRLF, minimal quoting) behind a BOM."""
    check(raw.startswith(BOM), "%s does not start with a UTF-8 BOM" % entry)
    body = raw[len(BOM):].decode("utf-8")
    rows = list(csv.reader(io.StringIO(body, newline="")))
    again = io.StringIO()
    csv.writer(again, lineterminator="\r\n").writerows(rows)
    check(again.getvalue() == body, "%s is not RFC 4180 as written by Python's csv" % entry)
    return rows


def check_table(z, kind, cols, names):
    entry = "csv/%s.csv" % kind
    rows = parse_csv(z.read(entry), entry)
    data = json.loads(z.read("data/%s.json" % kind))[kind]
    check(rows[0] == cols, "%s header %r" % (entry, rows[0]))
    check(len(rows) - 1 == len(data), "%s: %d rows for %d entities" % (entry, len(rows) - 1,
                                                                      len(data)))
    for row, e in zip(rows[1:], data):
        want = [expected_cell(c, e, names) for c in cols]
        check(row == want, "%s row of %s:\n got  %r\n want %r" % (entry, row[0], row, want))
    return rows


def check_csv_package(data):
    unzip_t(data)
    z, manifest = read_package(data)
    verify_checksums(z, manifest)  # csv/ entries carry a sha256 like every entry
    check_schema("manifest", manifest)
    names = z.namelist()
    for kind in ("accounts", "categories", "transactions"):
        i = names.index("data/%s.json" % kind)
        check(names[i + 1] == "csv/%s.csv" % kind, "csv/%s.csv does not follow its data" % kind)
    check(not [n for n in names if n.startswith("csv/") and n[4:-4] not in
               ("accounts", "categories", "transactions")], "unexpected csv entries")
    accounts = json.loads(z.read("data/accounts.json"))["accounts"]
    categories = json.loads(z.read("data/categories.json"))["categories"]
    lookup = {"accounts": {a["accountId"]: a["accountName"] for a in accounts},
              "categories": {c["categoryId"]: c["name"] for c in categories}}
    check_table(z, "accounts", ACCOUNT_COLS, lookup)
    check_table(z, "categories", CATEGORY_COLS, lookup)
    return z, check_table(z, "transactions", TRANSACTION_COLS, lookup)


def without_analytics(checksums):
    return {k: v for k, v in checksums.items() if k != "data/analytics.json"}


# ---- tests ----------------------------------------------------------------

def test_csv_tables_match_the_data_and_restore(srv):
    c = Client(srv, unique_user("csv"))
    srv.seed(c.user, SEED_TX, seed=13)
    final, info, data = c.export_and_download(export_type=jpb.EXPORT_TYPE_COMPLETE,
                                              include_csv=True, pinned_timestamp=PIN)
    check(final.include_csv, "the job does not say include_csv")
    z, tx_rows = check_csv_package(data)
    check(any(r[6].startswith("-") for r in tx_rows[1:]), "no negative amount to check")
    check(all(not r[6].startswith("'") for r in tx_rows[1:]), "an amount was guarded")
    # Pinned: a second export with the option is the same bytes.
    _, _, again = c.export_and_download(export_type=jpb.EXPORT_TYPE_COMPLETE,
                                        include_csv=True, pinned_timestamp=PIN)
    check(hashlib.sha256(again).hexdigest() == hashlib.sha256(data).hexdigest(),
          "two pinned CSV exports differ")
    # Without the option nothing under csv/.
    _, _, plain_pkg = c.export_and_download(export_type=jpb.EXPORT_TYPE_COMPLETE,
                                            pinned_timestamp=PIN)
    plain_z, _ = read_package(plain_pkg)
    check(not [n for n in plain_z.namelist() if n.startswith("csv/")], "csv/ without the option")
    # The package restores into an empty profile, csv/ ignored without an issue.
    fresh = Client(srv, unique_user("csv-restore"))
    job = import_package(fresh, data)
    check(job.status == jpb.IMPORT_STATUS_COMPLETED,
          "import ended %s: %s" % (jpb.ImportStatus.Name(job.status), job.error.message))
    csv_issues = [i for i in job.validation.issues if i.entry.startswith("csv/")]
    check(not csv_issues, "issues about csv/ entries: %r" % csv_issues)
    # Analytics are regenerated by every import (IMPORT.md): compared apart.
    got, want = without_analytics(state(fresh)), without_analytics(state(c))
    check(got == want, "restored state differs from the source: %r"
          % sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k)))


def test_hostile_text_is_quoted_and_guarded(srv):
    """Text that would break a row or run as a formula, restored into a
    profile and exported again with CSV."""
    src = Client(srv, unique_user("csv-src"))
    srv.seed(src.user, 40, seed=5)
    _, _, data = src.export_and_download(export_type=jpb.EXPORT_TYPE_COMPLETE)
    hostile = ['=HYPERLINK("http://x","y")', "+1", "-x", "@SUM(A1)", "\tpad", "\rcr",
               'a "quoted", comma', "two\r\nlines", "Café ☕ 東京", "plain"]

    def edit(parsed):
        txs = parsed["data/transactions.json"]["transactions"]
        for i, t in enumerate(txs[:len(hostile)]):
            t["description"] = hostile[i]
            t["memo"] = hostile[-1 - i]
        parsed["data/accounts.json"]["accounts"][0]["accountName"] = "=cmd|' /C calc'!A0"
        parsed["data/categories.json"]["categories"][0]["name"] = "-2+3"

    c = Client(srv, unique_user("csv-hostile"))
    job = import_package(c, rewrite_package(data, edit))
    check(job.status == jpb.IMPORT_STATUS_COMPLETED, "hostile import: %s" % job.error.message)
    _, _, out = c.export_and_download(export_type=jpb.EXPORT_TYPE_COMPLETE, include_csv=True)
    z, tx_rows = check_csv_package(out)
    got = {r[5] for r in tx_rows[1:]}
    for h in hostile:
        want = "'" + h if h.startswith(GUARDED) else h
        check(want in got, "description %r not written as %r" % (h, want))
    raw = z.read("csv/accounts.csv").decode("utf-8")
    check("'=cmd|' /C calc'!A0" in raw, "account name not guarded")


def test_transactions_only_has_its_tables(srv):
    c = Client(srv, unique_user("csv-tx"))
    srv.seed(c.user, 60, seed=9)
    _, _, data = c.export_and_download(export_type=jpb.EXPORT_TYPE_CATEGORIES_ONLY,
                                       include_csv=True)
    z, _ = read_package(data)
    verify_checksums(z, json.loads(z.read("manifest.json")))
    csvs = [n for n in z.namelist() if n.startswith("csv/")]
    check(csvs == ["csv/categories.csv"], "categories_only csv entries: %r" % csvs)


def main():
    checks = Checks()
    with Fzipd() as srv:
        for t in [test_csv_tables_match_the_data_and_restore,
                  test_hostile_text_is_quoted_and_guarded,
                  test_transactions_only_has_its_tables]:
            checks.run(t, srv)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
