#!/usr/bin/python3
"""Writes the package corpus the validator tests run against.

Usage: make_packages.py OUTDIR

Shares no code with fzip: packages are built with Python's zipfile, json
and hashlib, following the design document's examples (snake_case
manifest, {"accounts": [...]} data files, checksums keyed by bare file
names).  OUTDIR receives:
  good_*.fzip     packages that must validate (passed, no error issue);
  bad_*.fzip      broken or hostile packages;
  expected.tsv    one line per bad package: name, rule, entry, field of
                  the first error issue the validator must report ("-"
                  for an empty entry or field).
"""
import base64
import copy
import hashlib
import io
import json
import os
import random
import struct
import sys
import zipfile

T0 = 1705312200000  # 2024-01-15T10:30:00Z
FILE_BYTES = b"Date,Description,Amount\n2024-01-10,TESCO 123,-12.50\n2024-01-11,ALDI,-3.20\n"


def base_data():
    rule = {"ruleId": "rule_00000001", "fieldToMatch": "description", "condition": "contains",
            "value": "MARKET", "caseSensitive": False, "priority": 10, "enabled": True,
            "confidence": 90, "amountMin": "0", "amountMax": "100.00",
            "allowMultipleMatches": True, "autoSuggest": True}
    regex_rule = dict(rule, ruleId="rule_00000002", condition="regex",
                      value="^(TESCO|ALDI)[ 0-9]*$")
    assignment = {"categoryId": "5b1e0c2a-0000-4000-8000-000000000002", "status": "confirmed",
                  "confidence": 0.95, "ruleId": "rule_00000001", "assignedAt": T0}
    acc1 = {"accountId": "2f0c9d4e-0000-4000-8000-000000000001", "accountName": "Everyday",
            "accountType": "checking", "institution": "Bank One", "balance": "1234.56",
            "currency": "USD", "notes": "main account", "isActive": True,
            "defaultFileMapId": "7d3a1b2c-0000-4000-8000-000000000001",
            "lastTransactionDate": T0, "createdAt": T0, "updatedAt": T0}
    acc2 = {"accountId": "2f0c9d4e-0000-4000-8000-000000000002", "accountName": "Savings",
            "accountType": "savings", "balance": "10.00", "currency": "EUR", "isActive": False,
            "createdAt": T0, "updatedAt": T0}
    food = {"categoryId": "5b1e0c2a-0000-4000-8000-000000000001", "name": "Food",
            "type": "EXPENSE", "icon": "cart", "color": "#00ff00", "inheritParentRules": True,
            "ruleInheritanceMode": "additive", "rules": [rule, regex_rule],
            "createdAt": T0, "updatedAt": T0}
    groc = {"categoryId": "5b1e0c2a-0000-4000-8000-000000000002", "name": "Groceries",
            "type": "EXPENSE", "parentCategoryId": food["categoryId"],
            "inheritParentRules": True, "ruleInheritanceMode": "override", "rules": [],
            "createdAt": T0, "updatedAt": T0}
    fmap = {"fileMapId": "7d3a1b2c-0000-4000-8000-000000000001", "name": "Bank CSV",
            "mappings": [{"sourceField": "Date", "targetField": "date"},
                         {"sourceField": "Amount", "targetField": "amount",
                          "transformation": "negate"}],
            "accountId": acc1["accountId"], "reverseAmounts": False,
            "createdAt": T0, "updatedAt": T0}
    tfile = {"fileId": "9c8b7a6d-0000-4000-8000-000000000001", "fileName": "jan.csv",
             "uploadDate": T0, "fileSize": len(FILE_BYTES), "s3Key": "u/file-1",
             "processingStatus": "processed", "fileFormat": "csv",
             "accountId": acc1["accountId"], "fileMapId": fmap["fileMapId"],
             "dateRange": {"startDate": T0, "endDate": T0 + 86400000},
             "createdAt": T0, "updatedAt": T0}
    txns = []
    for i in range(3):
        txns.append({"transactionId": "c0ffee00-0000-4000-8000-00000000000%d" % (i + 1),
                     "accountId": acc1["accountId"], "fileId": tfile["fileId"],
                     "date": T0 + i * 1000, "description": "TESCO %d" % i,
                     "amount": "-12.50", "currency": "USD", "balance": "1000.00",
                     "importOrder": i, "transactionType": "DEBIT", "memo": "",
                     "checkNumber": "", "fitId": "F%d" % i, "status": "posted",
                     "statusDate": "posted#%d" % T0, "transactionHash": -1234567890123,
                     "categories": [copy.deepcopy(assignment)],
                     "primaryCategoryId": assignment["categoryId"],
                     "createdAt": T0, "updatedAt": T0})
    return {"accounts": [acc1, acc2], "categories": [food, groc], "file_maps": [fmap],
            "transaction_files": [tfile], "transactions": txns}


KINDS = ["accounts", "categories", "file_maps", "transaction_files", "transactions", "analytics"]


def data_bytes(kind, items):
    return json.dumps({kind: items}, ensure_ascii=False).encode("utf-8")


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


class Pkg:
    """A package being put together: entries in order, then a manifest."""

    def __init__(self, data=None):
        self.data = data if data is not None else base_data()
        self.raw = {}          # kind -> bytes overriding the JSON of data[kind]
        self.files = {"files/9c8b7a6d-0000-4000-8000-000000000001/jan.csv": FILE_BYTES}
        self.extra = []        # (ZipInfo or name, bytes) added after everything
        self.manifest_override = None
        self.summary_patch = {}
        self.checksum_patch = {}
        self.drop_manifest = False
        self.compress = zipfile.ZIP_DEFLATED

    def entries(self):
        out = []
        for kind in KINDS:
            if kind in self.raw:
                out.append(("data/%s.json" % kind, self.raw[kind]))
            elif kind in self.data:
                out.append(("data/%s.json" % kind, data_bytes(kind, self.data[kind])))
        out.extend(self.files.items())
        return out

    def manifest(self, entries):
        summary = {"%s_count" % k: len(self.data.get(k, [])) for k in KINDS[:5]}
        summary["analytics_included"] = "analytics" in self.data
        summary.update(self.summary_patch)
        checksums = {}
        for name, b in entries:
            key = name[5:] if name.startswith("data/") else name  # bare, as the design does
            checksums[key] = sha(b)
        checksums.update(self.checksum_patch)
        return {"export_format_version": "1.0", "export_timestamp": "2024-01-15T10:30:00Z",
                "user_id": "user_12345", "housef3_version": "2.5.0", "data_summary": summary,
                "checksums": checksums,
                "compatibility": {"minimum_version": "2.0.0",
                                  "supported_versions": ["2.0.0", "2.5.0"]}}

    def zip_bytes(self):
        entries = self.entries()
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", self.compress) as z:
            if not self.drop_manifest:
                m = self.manifest_override
                if m is None:
                    m = json.dumps(self.manifest(entries), indent=2).encode()
                z.writestr("manifest.json", m)
            for name, b in entries:
                z.writestr(name, b)
            for info, b in self.extra:
                z.writestr(info, b)
        return buf.getvalue()


def unix_info(name, mode, flag_bits=0):
    zi = zipfile.ZipInfo(name, date_time=(2024, 1, 15, 10, 30, 0))
    zi.create_system = 3
    zi.external_attr = mode << 16
    zi.flag_bits |= flag_bits
    zi.compress_type = zipfile.ZIP_DEFLATED
    return zi


def set_encrypted_flag(zb, name):
    """Sets bit 0 (encrypted) of the general purpose flags of `name` in
    both its local header and its central directory record."""
    b = bytearray(zb)
    nb = name.encode()
    for sig, flag_off, name_off in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        i = 0
        while True:
            i = b.find(sig, i)
            if i < 0:
                break
            nlen = struct.unpack_from("<H", b, i + (26 if sig == b"PK\x03\x04" else 28))[0]
            if bytes(b[i + name_off:i + name_off + nlen]) == nb:
                b[i + flag_off] |= 1
            i += 4
    return bytes(b)


def dup_entry():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate we want
        return mutate(lambda p: p.extra.append(("data/accounts.json", data_bytes("accounts", []))))


def mutate(fn):
    p = Pkg()
    fn(p)
    return p.zip_bytes()


ACC1 = "2f0c9d4e-0000-4000-8000-000000000001"
FILE_ENTRY = "files/9c8b7a6d-0000-4000-8000-000000000001/jan.csv"


def bad_cases():
    """(name, rule, entry, field, zip bytes)."""
    cases = []

    def add(name, rule, entry, field, zb):
        cases.append((name, rule, entry or "-", field or "-", zb))

    def d(kind, i=0):
        return lambda p: p.data[kind][i]

    # --- the archive ---
    def bomb(p):
        p.data["analytics"] = []
        p.raw["analytics"] = b'{"analytics":[' + b" " * (24 * 1024 * 1024) + b"]}"
    add("bad_zip_bomb", "archive.ratio", "data/analytics.json", None, mutate(bomb))
    add("bad_dotdot_path", "archive.path", "../evil.txt", None,
        mutate(lambda p: p.extra.append(("../evil.txt", b"x"))))
    add("bad_nested_dotdot", "archive.path", "files/../../etc/passwd", None,
        mutate(lambda p: p.extra.append(("files/../../etc/passwd", b"x"))))
    add("bad_absolute_path", "archive.path", "/etc/evil", None,
        mutate(lambda p: p.extra.append(("/etc/evil", b"x"))))
    add("bad_backslash_path", "archive.path", "data\\evil.json", None,
        mutate(lambda p: p.extra.append(("data\\evil.json", b"x"))))
    add("bad_symlink", "archive.link", "files/9c8b7a6d-0000-4000-8000-000000000002/link", None,
        mutate(lambda p: p.extra.append(
            (unix_info("files/9c8b7a6d-0000-4000-8000-000000000002/link", 0o120777),
             b"/etc/passwd"))))
    add("bad_duplicate_entry", "archive.duplicate_entry", "data/accounts.json", None,
        dup_entry())
    add("bad_encrypted", "archive.encrypted", "data/accounts.json", None,
        set_encrypted_flag(Pkg().zip_bytes(), "data/accounts.json"))

    def bzip(p):
        p.compress = zipfile.ZIP_BZIP2
    add("bad_bzip2_compression", "archive.compression", "manifest.json", None, mutate(bzip))
    good = Pkg().zip_bytes()
    add("bad_truncated_zip", "archive.not_zip", None, None, good[: len(good) * 6 // 10])
    add("bad_not_a_zip", "archive.not_zip", None, None, b"this is not a zip archive\n" * 10)
    add("bad_empty_file", "archive.not_zip", None, None, b"")

    # --- the manifest ---
    def no_manifest(p):
        p.drop_manifest = True
    add("bad_missing_manifest", "manifest.missing", "manifest.json", None, mutate(no_manifest))

    def broken_manifest(p):
        p.manifest_override = b'{"export_format_version": "1.0", '
    add("bad_manifest_json", "manifest.json", "manifest.json", None, mutate(broken_manifest))

    def manifest_array(p):
        p.manifest_override = b'["export_format_version"]'
    add("bad_manifest_not_object", "manifest.json", "manifest.json", None, mutate(manifest_array))

    def version(v):
        def f(p):
            m = p.manifest(p.entries())
            m["export_format_version"] = v
            p.manifest_override = json.dumps(m).encode()
        return f
    add("bad_version_major", "manifest.version", "manifest.json", "export_format_version",
        mutate(version("2.0")))
    add("bad_version_newer_minor", "manifest.version", "manifest.json", "export_format_version",
        mutate(version("1.1")))

    def legacy(p):
        p.manifest_override = json.dumps({"backupFormatVersion": "1.0", "userId": "u",
                                          "dataSummary": {"accountsCount": 1}}).encode()
    add("bad_legacy_manifest", "manifest.legacy", "manifest.json", "backupFormatVersion",
        mutate(legacy))
    add("bad_version_garbage", "manifest.version", "manifest.json", "export_format_version",
        mutate(version("one")))

    def no_version(p):
        m = p.manifest(p.entries())
        del m["export_format_version"]
        p.manifest_override = json.dumps(m).encode()
    add("bad_version_missing", "manifest.version", "manifest.json", "export_format_version",
        mutate(no_version))
    add("bad_count_mismatch", "manifest.count", "manifest.json", "data_summary.accounts_count",
        mutate(lambda p: p.summary_patch.update(accounts_count=5)))
    add("bad_count_missing_kind", "manifest.count", "manifest.json",
        "data_summary.analytics_count",
        mutate(lambda p: p.summary_patch.update(analytics_count=2)))
    add("bad_checksum_data", "checksum.mismatch", "data/transactions.json", None,
        mutate(lambda p: p.checksum_patch.update({"transactions.json": sha(b"other")})))
    add("bad_checksum_file", "checksum.mismatch", FILE_ENTRY, None,
        mutate(lambda p: p.checksum_patch.update({FILE_ENTRY: sha(b"other")})))
    add("bad_checksum_format", "manifest.field", "manifest.json", "checksums.accounts.json",
        mutate(lambda p: p.checksum_patch.update({"accounts.json": "md5:abc"})))
    add("bad_checksum_unknown_entry", "checksum.unknown_entry", "budgets.json",
        "checksums.budgets.json",
        mutate(lambda p: p.checksum_patch.update({"budgets.json": sha(b"x")})))

    def no_bytes(p):
        p.files = {}
    add("bad_file_bytes_missing", "file.bytes_missing", "data/transaction_files.json", "fileId",
        mutate(no_bytes))

    # --- JSON ---
    def raw(kind, b):
        def f(p):
            p.raw[kind] = b
        return f
    add("bad_json_trailing_comma", "json", "data/accounts.json", None,
        mutate(raw("accounts", b'{"accounts": [{"accountId": "a",},]}')))
    add("bad_json_duplicate_key", "json", "data/accounts.json", None,
        mutate(raw("accounts", b'{"accounts": [{"accountId": "a", "accountId": "b"}]}')))
    add("bad_json_wrong_top_key", "json", "data/accounts.json", None,
        mutate(raw("accounts", b'{"acounts": []}')))
    add("bad_json_invalid_utf8", "json", "data/accounts.json", None,
        mutate(raw("accounts", b'{"accounts": [{"accountId": "a", "accountName": "\xff\xfe"}]}')))
    add("bad_json_lone_surrogate", "json", "data/accounts.json", None,
        mutate(raw("accounts", b'{"accounts": [{"accountName": "\\ud800"}]}')))
    add("bad_json_nan", "json", "data/transactions.json", None,
        mutate(raw("transactions", b'{"transactions": [{"amount": NaN}]}')))
    add("bad_json_trailing_data", "json", "data/accounts.json", None,
        mutate(raw("accounts", b'{"accounts": []} {}')))
    add("bad_json_huge_number", "json", "data/transactions.json", None,
        mutate(raw("transactions", b'{"transactions": [{"date": 1e999}]}')))
    add("bad_json_long_number", "limit.json", "data/transactions.json", None,
        mutate(raw("transactions", b'{"transactions": [{"date": 1' + b"0" * 100 + b'}]}')))
    add("bad_json_deep_nesting", "limit.json", "data/analytics.json", None,
        mutate(lambda p: (p.data.__setitem__("analytics", []),
                          raw("analytics", b'{"analytics": [{"data": ' + b"[" * 100 +
                              b"]" * 100 + b"}]}")(p))))

    def huge_string(p):
        # Incompressible, so that it is the string limit that trips, not the ratio one.
        rnd = random.Random(1)
        p.data["transactions"][0]["description"] = base64.b64encode(
            bytes(rnd.getrandbits(8) for _ in range(1600 * 1024))).decode()
    add("bad_json_huge_string", "limit.json", "data/transactions.json", None, mutate(huge_string))

    # --- schema ---
    def setf(kind, field, value, i=0):
        def f(p):
            p.data[kind][i][field] = value
        return f

    def delf(kind, field, i=0):
        def f(p):
            del p.data[kind][i][field]
        return f
    add("bad_wrong_type", "schema.type", "data/accounts.json", "isActive",
        mutate(setf("accounts", "isActive", "yes")))
    add("bad_money_as_number", "schema.type", "data/transactions.json", "amount",
        mutate(setf("transactions", "amount", -12.5)))
    add("bad_missing_required", "schema.required", "data/transactions.json", "amount",
        mutate(delf("transactions", "amount")))
    add("bad_enum", "schema.enum", "data/accounts.json", "accountType",
        mutate(setf("accounts", "accountType", "chequing")))
    add("bad_decimal", "schema.decimal", "data/transactions.json", "amount",
        mutate(setf("transactions", "amount", "12,50")))
    add("bad_timestamp_range", "schema.timestamp", "data/transactions.json", "date",
        mutate(setf("transactions", "date", 99999999999999)))
    add("bad_string_length", "schema.length", "data/accounts.json", "accountName",
        mutate(setf("accounts", "accountName", "n" * 101)))
    add("bad_id_with_slash", "schema.id", "data/accounts.json", "accountId",
        mutate(setf("accounts", "accountId", "../acc", 1)))

    def bad_nested(p):
        p.data["categories"][0]["rules"][0]["condition"] = "looks_like"
    add("bad_nested_enum", "schema.enum", "data/categories.json", "rules[0].condition",
        mutate(bad_nested))

    # --- business rules ---
    def dup_account(p):
        p.data["accounts"][1]["accountId"] = ACC1
    add("bad_duplicate_id", "id.duplicate", "data/accounts.json", "accountId", mutate(dup_account))

    def dup_txn(p):
        p.data["transactions"][2]["transactionId"] = p.data["transactions"][0]["transactionId"]
    add("bad_duplicate_transaction_id", "id.duplicate", "data/transactions.json",
        "transactionId", mutate(dup_txn))
    add("bad_ref_transaction_account", "reference.dangling", "data/transactions.json",
        "accountId", mutate(setf("transactions", "accountId", "acc-x")))
    add("bad_ref_transaction_file", "reference.dangling", "data/transactions.json", "fileId",
        mutate(setf("transactions", "fileId", "file-x")))
    add("bad_ref_transaction_primary_category", "reference.dangling", "data/transactions.json",
        "primaryCategoryId", mutate(setf("transactions", "primaryCategoryId", "cat-x")))

    def bad_assignment(p):
        p.data["transactions"][1]["categories"][0]["categoryId"] = "cat-x"
    add("bad_ref_assignment_category", "reference.dangling", "data/transactions.json",
        "categories[0].categoryId", mutate(bad_assignment))
    add("bad_ref_account_file_map", "reference.dangling", "data/accounts.json",
        "defaultFileMapId", mutate(setf("accounts", "defaultFileMapId", "fm-x")))
    add("bad_ref_file_account", "reference.dangling", "data/transaction_files.json", "accountId",
        mutate(setf("transaction_files", "accountId", "acc-x")))
    add("bad_ref_file_file_map", "reference.dangling", "data/transaction_files.json",
        "fileMapId", mutate(setf("transaction_files", "fileMapId", "fm-x")))
    add("bad_ref_file_map_account", "reference.dangling", "data/file_maps.json", "accountId",
        mutate(setf("file_maps", "accountId", "acc-x")))
    add("bad_ref_category_parent", "reference.dangling", "data/categories.json",
        "parentCategoryId", mutate(setf("categories", "parentCategoryId", "cat-x", 1)))

    def cycle(p):
        p.data["categories"][0]["parentCategoryId"] = p.data["categories"][1]["categoryId"]
    add("bad_category_cycle", "category.cycle", "data/categories.json", "parentCategoryId",
        mutate(cycle))
    add("bad_category_self_parent", "category.cycle", "data/categories.json", "parentCategoryId",
        mutate(setf("categories", "parentCategoryId", "5b1e0c2a-0000-4000-8000-000000000001")))

    def bad_regex(p):
        p.data["categories"][0]["rules"][1]["value"] = "(unclosed"
    add("bad_regex", "rule.regex", "data/categories.json", "rules[1].value", mutate(bad_regex))

    def long_regex(p):
        p.data["categories"][0]["rules"][1]["value"] = "a" * 600
    add("bad_regex_too_long", "rule.regex", "data/categories.json", "rules[1].value",
        mutate(long_regex))

    def dup_rule(p):
        p.data["categories"][0]["rules"][1]["ruleId"] = "rule_00000001"
    add("bad_duplicate_rule_id", "rule.duplicate_id", "data/categories.json", "rules[1].ruleId",
        mutate(dup_rule))
    return cases


def good_cases():
    cases = [("good_design_doc", Pkg().zip_bytes())]

    def full_names(p):
        m = {}
        for name, b in p.entries():
            m[name] = sha(b)
        man = p.manifest(p.entries())
        man["checksums"] = m
        p.manifest_override = json.dumps(man).encode()
    cases.append(("good_full_entry_names", mutate(full_names)))

    def minimal_manifest(p):
        p.manifest_override = b'{"export_format_version": "1.0"}'
    cases.append(("good_minimal_manifest", mutate(minimal_manifest)))

    def accounts_only(p):
        p.data = {"accounts": [p.data["accounts"][1]]}
        p.files = {}
    cases.append(("good_accounts_only", mutate(accounts_only)))

    def with_dirs(p):
        p.extra.append(("files/", b""))
    cases.append(("good_directory_entry", mutate(with_dirs)))
    return cases


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "expected.tsv"), "w") as f:
        for name, rule, entry, field, zb in bad_cases():
            with open(os.path.join(out, name + ".fzip"), "wb") as z:
                z.write(zb)
            f.write("\t".join((name, rule, entry, field)) + "\n")
    for name, zb in good_cases():
        with open(os.path.join(out, name + ".fzip"), "wb") as z:
            z.write(zb)


if __name__ == "__main__":
    main()
