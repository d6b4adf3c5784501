#!/usr/bin/env python3
"""Packages written exactly as the real HouseF3 application writes them.

The app (github.com/mazerunner70/housef3, backend/src/services/fzip_service.py,
s3_file_handler.py ExportPackageBuilder, export_data_processors.py) builds a
directory and zips it with zipfile.ZIP_DEFLATED, compresslevel 6, in os.walk
order:
  manifest.json            json.dump(FZIPManifest.model_dump(by_alias=True),
                           indent=2, default=str) plus processingSummary and
                           exportSummaries; `checksums` always {}
  data/<kind>.json.gz      gzip.open('wt', compresslevel 6) of
                           json.dump(list, indent=2, default=str): a bare
                           array; each entity is model_dump(by_alias=True,
                           exclude_none=True) with decimals as strings, plus
                           the exporters' derived fields (exportMetadata,
                           computedFields, hierarchyInfo, dateFormatted,
                           categoryAssignments, fileStatusInfo, ...)
  files/<fileId>/<fileName> the bytes as stored.
This generator does the same with the standard library, deterministically
(seeded), and also writes hostile variants and, for each good package, the
format 1.0 entities fzip must restore from it (what FORMAT.md "The HouseF3
flavour" says the mapping does), as <name>.expected.json.

Usage: make_housef3_packages.py OUTDIR [--transactions N]
Also importable: build_dataset(), write_package(), expected_entities().
"""
import copy
import gzip
import io
import json
import os
import random
import sys
import uuid
import zipfile

KINDS = ("accounts", "categories", "file_maps", "transaction_files", "transactions", "analytics")
COUNT_KEYS = {"accounts": "accountsCount", "categories": "categoriesCount",
              "file_maps": "fileMapsCount", "transaction_files": "transactionFilesCount",
              "transactions": "transactionsCount"}
EXPORTED_AT = "2025-03-04T05:06:07.123456+00:00"
T0 = 1_600_000_000_000  # epoch ms of the synthetic data
USER = "app-user-1"


def meta(**extra):
    m = {"exportedAt": EXPORTED_AT, "dataVersion": "1.0"}
    m.update(extra)
    return m


def build_dataset(n_transactions=40, seed=7, analytics=True):
    """Entities as the app's exporters serialise them, and file bytes."""
    rnd = random.Random(seed)

    def uid():
        return str(uuid.UUID(int=rnd.getrandbits(128), version=4))

    def money():
        return "%d.%02d" % (rnd.randint(-5000, 5000), rnd.randint(0, 99))

    fm_ids = [uid(), uid()]
    accounts = []
    for i, (atype, cur) in enumerate((("checking", "USD"), ("credit_card", "EUR"), ("savings", "JPY"))):
        a = {"accountId": uid(), "userId": USER, "accountName": "Account %d ü" % i,
             "accountType": atype, "institution": "Bank %d" % i, "balance": money(),
             "currency": cur, "notes": "notes \"%d\"\n" % i, "isActive": i != 2}
        if i < 2:
            a["defaultFileMapId"] = fm_ids[i]
        a.update({"firstTransactionDate": T0, "lastTransactionDate": T0 + 86_400_000 * 30,
                  "importsStartDate": T0, "importsEndDate": T0 + 86_400_000 * 30,
                  "createdAt": T0 - 1000, "updatedAt": T0 + i})
        a["exportMetadata"] = meta()
        a["computedFields"] = {"hasTransactions": True, "isRecentlyActive": None, "accountAge": 1500}
        accounts.append(a)

    categories = []
    parent = None
    for i, ctype in enumerate(("EXPENSE", "EXPENSE", "INCOME", "TRANSFER")):
        c = {"categoryId": uid(), "userId": USER, "name": "Category %d" % i, "type": ctype}
        if parent and i == 1:
            c["parentCategoryId"] = parent
        c.update({"icon": "icon-%d" % i, "color": "#00%02x00" % i, "inheritParentRules": True,
                  "ruleInheritanceMode": ("additive", "override", "disabled", "additive")[i],
                  "rules": [{"ruleId": "rule_%08x" % rnd.getrandbits(32), "fieldToMatch": "description",
                             "condition": "contains", "value": "shop %d" % i, "caseSensitive": False,
                             "priority": i, "enabled": True, "confidence": 90,
                             "allowMultipleMatches": True, "autoSuggest": True},
                            {"ruleId": "rule_%08x" % rnd.getrandbits(32), "fieldToMatch": "amount",
                             "condition": "amount_between", "value": "", "caseSensitive": False,
                             "priority": 0, "enabled": True, "confidence": 100, "amountMin": "1.00",
                             "amountMax": "250.5", "allowMultipleMatches": False,
                             "autoSuggest": False}] if i < 3 else [],
                  "createdAt": T0, "updatedAt": T0 + 5})
        c["exportMetadata"] = meta(ruleCount=len(c["rules"]))
        c["hierarchyInfo"] = {"depth": 1 if i == 1 else 0, "hasChildren": i == 0, "childrenCount": 0,
                              "isRoot": i != 1, "fullPath": [c["categoryId"]]}
        c["computedFields"] = {"ruleCount": len(c["rules"]), "hasRules": bool(c["rules"]),
                               "inheritanceEnabled": True, "lastModified": T0 + 5}
        parent = parent or c["categoryId"]
        categories.append(c)

    file_maps = []
    for i, fid in enumerate(fm_ids):
        mappings = [{"sourceField": "Date", "targetField": "date"},
                    {"sourceField": "Amount", "targetField": "amount", "transformation": "negate"},
                    {"sourceField": "Payee", "targetField": "description"}]
        for m in mappings:
            m["validationInfo"] = {"isRequired": False, "hasTransformation": "transformation" in m,
                                   "fieldType": "string"}
        fmap = {"fileMapId": fid, "userId": USER, "name": "Map %d" % i, "mappings": mappings,
                "accountId": accounts[i]["accountId"], "description": "csv map",
                "reverseAmounts": i == 1, "createdAt": T0, "updatedAt": T0}
        fmap["exportMetadata"] = meta(mappingCount=len(mappings))
        fmap["computedFields"] = {"mappingCount": 3, "hasAccountAssociation": True,
                                  "reversesAmounts": i == 1, "isComplete": True}
        file_maps.append(fmap)

    files, file_bytes = [], {}
    for i in range(3):
        fid = uid()
        name = ("statement %d.csv" % i, "export:%d?.ofx" % i, "../odd name %d.qif" % i)[i]
        body = ("Date,Amount,Payee\n" + "".join("2020-09-%02d,%s,shop %d\n" % (d + 1, money(), d)
                                                 for d in range(20 + i))).encode()
        if i == 2:
            body += bytes(range(256))  # any bytes travel unchanged
        f = {"fileId": fid, "userId": USER, "fileName": name, "uploadDate": T0 + i,
             "fileSize": len(body), "s3Key": "%s/%s" % (USER, fid),
             "processingStatus": ("processed", "error", "pending")[i], "processedDate": T0 + 10,
             "fileFormat": ("csv", "ofx", "qif")[i], "accountId": accounts[i % 2]["accountId"],
             "fileMapId": fm_ids[i % 2], "recordCount": 20 + i,
             "dateRange": {"startDate": T0, "endDate": T0 + 86_400_000}}
        if i == 1:
            f["errorMessage"] = "bad row 3"
        f.update({"openingBalance": money(), "closingBalance": money(), "currency": "USD",
                  "duplicateCount": i, "transactionCount": 0, "createdAt": T0, "updatedAt": T0 + 1,
                  "uploadDateFormatted": "2020-09-13T12:26:40+00:00",
                  "processedDateFormatted": "2020-09-13T12:26:40.010000+00:00",
                  "fileStatusInfo": {"isProcessed": f["processingStatus"], "hasTransactions": True,
                                     "hasDuplicates": i > 0, "hasErrors": i == 1},
                  "exportMetadata": meta(includeFileContent=False),
                  "computedFields": {"fileSizeFormatted": "1.0 KB", "fileAgeInDays": 1600,
                                     "transactionDensity": 1.5, "duplicatePercentage": 0.0,
                                     "hasDateRange": True}})
        files.append(f)
        file_bytes[fid] = body

    transactions = []
    for i in range(n_transactions):
        acc = accounts[i % 3]
        f = files[i % 3]
        f["transactionCount"] += 1
        date = T0 + 86_400_000 * (i % 30)
        t = {"userId": USER, "fileId": f["fileId"], "transactionId": uid(),
             "accountId": acc["accountId"], "date": date,
             "description": "shop %d caf\u00e9 \U0001F600 \"q\"" % i, "amount": money(),
             "currency": acc["currency"], "balance": money(), "importOrder": i,
             "transactionType": "DEBIT", "memo": "memo %d" % i, "checkNumber": str(1000 + i),
             "fitId": "FIT%06d" % i, "status": "cleared", "statusDate": "cleared#%d" % date,
             "createdAt": T0 + i, "updatedAt": T0 + i,
             # int(sha256(...)[:16], 16): half of them above 2^63 - 1
             "transactionHash": rnd.getrandbits(64) | (1 << 63 if i % 2 else 0)}
        cats = []
        if i % 4:
            cats.append({"categoryId": categories[i % 3]["categoryId"], "status": "confirmed",
                         "confidence": 100, "isManual": True, "assignedAt": T0 + i,
                         "confirmedAt": T0 + i + 1})
        if i % 4 == 3:
            cats.append({"categoryId": categories[3]["categoryId"], "status": "suggested",
                         "confidence": 75, "isManual": False, "assignedAt": T0 + i,
                         "ruleId": categories[0]["rules"][0]["ruleId"]})
        t["categories"] = cats
        if cats:
            t["primaryCategoryId"] = cats[0]["categoryId"]
        t["dateFormatted"] = "2020-09-13T12:26:40+00:00"
        if cats:
            t["categoryAssignments"] = [{"categoryId": c["categoryId"], "status": c["status"],
                                         "confidence": c["confidence"], "isManual": c["isManual"],
                                         "assignedAt": c["assignedAt"], "ruleId": c.get("ruleId")}
                                        for c in cats]
        t["exportMetadata"] = meta()
        transactions.append(t)

    data = {"accounts": accounts, "categories": categories, "file_maps": file_maps,
            "transaction_files": files, "transactions": transactions}
    if analytics:
        data["analytics"] = [
            {"userId": USER, "analyticType": "cash_flow", "timePeriod": "2020-09",
             "data": {"income": "10.00", "expenses": "5.25", "series": [1, 2.5]},
             "computedDate": "2020-10-01 03:04:05.250000+00:00", "dataThroughDate": "2020-09-30",
             "ttl": 1700000000},
            {"userId": USER, "analyticType": "category_trends", "timePeriod": "2020-Q3",
             "accountId": accounts[0]["accountId"], "data": {"top": "Category 0"},
             "computedDate": "2020-10-01T03:04:05+00:00", "dataThroughDate": "2020-09-30"}]
    return data, file_bytes


def manifest_for(data, backup_type="complete", job_id="5f0c7a52-5c8e-4f7e-9d2a-000000000001"):
    summary = {COUNT_KEYS[k]: len(data.get(k, [])) for k in COUNT_KEYS}
    summary["analyticsIncluded"] = bool(data.get("analytics"))
    # FZIPDataSummary's field order
    summary = {k: summary[k] for k in ("accountsCount", "transactionsCount", "categoriesCount",
                                       "fileMapsCount", "transactionFilesCount", "analyticsIncluded")}
    return {"backupFormatVersion": "1.0", "backupTimestamp": EXPORTED_AT, "userId": USER,
            "housef3Version": "2.5.0", "packageFormat": "fzip", "dataSummary": summary,
            "checksums": {}, "compatibility": {"minimumVersion": "2.0.0",
                                               "supportedVersions": ["2.0.0", "2.5.0"]},
            "jobId": job_id, "backupType": backup_type, "includeAnalytics": bool(data.get("analytics")),
            "processingSummary": {"data_files_created": 6, "transaction_files_processed": 3,
                                  "transaction_files_failed": 0, "total_original_size": 1234,
                                  "total_compressed_size": 0, "compression_ratio": 100.0,
                                  "processing_time": 0.5},
            "exportSummaries": {"accounts": {"entity_type": "account", "processed_count": 3,
                                             "error_count": 0, "warnings": []}}}


def gz_json(value):
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as g:
        g.write(json.dumps(value, indent=2, default=str).encode("utf-8"))
    return buf.getvalue()


def package_entries(data, file_bytes, manifest=None, gzipped=True):
    """[(entry name, bytes)] in the order the app's os.walk gives."""
    out = [("manifest.json", json.dumps(manifest or manifest_for(data), indent=2,
                                        default=str).encode())]
    for kind in ("accounts", "transactions", "categories", "file_maps", "transaction_files", "analytics"):
        if kind == "analytics" and not data.get("analytics"):
            continue
        raw = data.get(kind, [])
        if gzipped:
            out.append(("data/%s.json.gz" % kind, gz_json(raw)))
        else:
            out.append(("data/%s.json" % kind, json.dumps(raw, indent=2, default=str).encode()))
    for f in data.get("transaction_files", []):
        if f["fileId"] in file_bytes:
            out.append(("files/%s/%s" % (f["fileId"], f["fileName"].replace("/", "_")),
                        file_bytes[f["fileId"]]))
    return out


def write_zip(path, entries, method=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", method, compresslevel=6 if method == zipfile.ZIP_DEFLATED else None) as z:
        for name, raw in entries:
            z.writestr(zipfile.ZipInfo(name, (2025, 3, 4, 5, 6, 8)), raw, compress_type=method)


def set_crc(path, name, crc):
    """Rewrites the CRC-32 of entry `name` in its local header and its
    central directory record (so the archive stays consistent)."""
    import struct
    with zipfile.ZipFile(path) as z:
        off, cd = z.getinfo(name).header_offset, z.start_dir
    raw = bytearray(open(path, "rb").read())
    new = struct.pack("<I", crc)
    raw[off + 14:off + 18] = new
    while raw[cd:cd + 4] == b"PK\x01\x02":
        n, m, k = struct.unpack("<HHH", raw[cd + 28:cd + 34])
        if raw[cd + 46:cd + 46 + n] == name.encode():
            raw[cd + 16:cd + 20] = new
        cd += 46 + n + m + k
    open(path, "wb").write(bytes(raw))


def write_package(path, data, file_bytes, **kw):
    write_zip(path, package_entries(data, file_bytes, **kw))


DERIVED = {"userId", "exportMetadata", "computedFields"}
DERIVED_KIND = {"categories": {"hierarchyInfo"}, "transactions": {"dateFormatted", "categoryAssignments"},
                "transaction_files": {"uploadDateFormatted", "processedDateFormatted", "fileStatusInfo"},
                "analytics": {"ttl"}}


def iso_ms(s):
    from datetime import datetime, timezone
    if len(s) == 10:
        s += "T00:00:00+00:00"
    d = datetime.fromisoformat(s)
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return int(d.timestamp() * 1000) if d.microsecond % 1000 == 0 else int(d.timestamp()) * 1000 + d.microsecond // 1000


def expected_entities(data):
    """The format 1.0 entities fzip restores from the app's entities."""
    out = {}
    for kind in KINDS:
        ents = []
        for e in data.get(kind, []):
            e = {k: copy.deepcopy(v) for k, v in e.items()
                 if k not in DERIVED and k not in DERIVED_KIND.get(kind, ())}
            if kind == "file_maps":
                for m in e["mappings"]:
                    m.pop("validationInfo", None)
            if kind == "transactions" and e.get("transactionHash", 0) >= 1 << 63:
                e["transactionHash"] -= 1 << 64
            if kind == "analytics":
                e["analyticsId"] = "#".join([e["analyticType"], e["timePeriod"]] +
                                            ([e["accountId"]] if "accountId" in e else []))
                e["computedDate"] = iso_ms(e["computedDate"])
                e["dataThroughDate"] = iso_ms(e["dataThroughDate"])
            ents.append(e)
        if ents:
            out[kind] = ents
    return out


# ---- the corpus ------------------------------------------------------------

def gzip_bomb(n=64 * 1024 * 1024):
    """A valid gzip of a bare array padded with n spaces: ~1000x."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as g:
        g.write(b"[")
        chunk = b" " * (1024 * 1024)
        for _ in range(n // len(chunk)):
            g.write(chunk)
        g.write(b"]")
    return buf.getvalue()


def replace(entries, name, raw):
    return [(n, raw if n == name else r) for n, r in entries]


def corpus(out, n_transactions=40):
    """Writes the good and hostile packages; returns {name: (rule or None)}."""
    data, fb = build_dataset(n_transactions)
    made = {}

    def put(name, entries, rule=None, expected=None):
        write_zip(os.path.join(out, name + ".fzip"), entries)
        made[name] = rule
        if expected is not None:
            with open(os.path.join(out, name + ".expected.json"), "w") as f:
                json.dump(expected, f)

    good = package_entries(data, fb)
    put("hf_good_complete", good, expected=expected_entities(data))
    no_an = {k: v for k, v in data.items() if k != "analytics"}
    put("hf_good_no_analytics", package_entries(no_an, fb), expected=expected_entities(no_an))
    put("hf_good_plain_json", package_entries(no_an, fb, gzipped=False), expected=expected_entities(no_an))
    # Above 50 MB of transaction files the app's zipfile writes every entry
    # with LZMA (method 14).
    put_lzma = lambda name, entries, rule=None, expected=None: (
        write_zip(os.path.join(out, name + ".fzip"), entries, zipfile.ZIP_LZMA),
        made.__setitem__(name, rule),
        expected is not None and json.dump(expected, open(os.path.join(out, name + ".expected.json"), "w")))
    put_lzma("hf_good_lzma", good, expected=expected_entities(data))
    put_lzma("hf_bad_lzma_crc", good, "archive.corrupt")
    f0 = data["transaction_files"][0]
    set_crc(os.path.join(out, "hf_bad_lzma_crc.fzip"),
            "files/%s/%s" % (f0["fileId"], f0["fileName"]), 0x12345678)
    put_lzma("hf_bad_lzma_in_fzip", [("manifest.json", json.dumps(
        {"export_format_version": "1.0", "package_format": "fzip", "checksums": {}}).encode()),
        ("data/accounts.json", b'{"accounts":[]}')], "archive.compression")
    # A file whose download failed at export: the app leaves its bytes out
    # and lists it nowhere; fzip restores the record with a warning.
    f2 = data["transaction_files"][2]
    missing = [(n, r) for n, r in good if not n.startswith("files/%s/" % f2["fileId"])]
    put("hf_good_file_bytes_missing", missing, expected=expected_entities(data))
    # Only transactionHash is read as a wrapped uint64; another integer
    # above 2^63 - 1 (here in analytics data) stays a double, as in 1.0.
    big = copy.deepcopy(data)
    big["analytics"][0]["data"].update({"big": (1 << 64) - 1, "nested": {"n": [1 << 63]}})
    want = expected_entities(big)
    want["analytics"][0]["data"].update({"big": float((1 << 64) - 1),
                                         "nested": {"n": [float(1 << 63)]}})
    put("hf_good_big_numbers", package_entries(big, fb), expected=want)
    empty = {k: [] for k in KINDS if k != "analytics"}
    put("hf_good_empty", package_entries(empty, {}), expected={})

    acc = "data/accounts.json.gz"
    bomb = gzip_bomb()
    put("hf_bad_gzip_bomb", replace(good, acc, bomb), "limit.json")
    put("hf_bad_gzip_truncated", replace(good, acc, gz_json(data["accounts"])[:-40]), "archive.corrupt")
    crc = bytearray(gz_json(data["accounts"]))
    crc[-8] ^= 0xFF  # the CRC-32 of the trailer
    put("hf_bad_gzip_crc", replace(good, acc, bytes(crc)), "archive.corrupt")
    put("hf_bad_gzip_not_gzip", replace(good, acc, json.dumps(data["accounts"]).encode()), "archive.corrupt")
    put("hf_bad_gzip_trailing", replace(good, acc, gz_json(data["accounts"]) + b"junk"), "archive.corrupt")
    put("hf_bad_not_array", replace(good, acc, gz_json({"accounts": data["accounts"]})), "json")
    put("hf_bad_both_plain_and_gz",
        good + [("data/accounts.json", json.dumps(data["accounts"]).encode())], "archive.duplicate_data")
    fzip_manifest = {"export_format_version": "1.0", "package_format": "fzip",
                     "checksums": {}, "data_summary": {}}
    put("hf_bad_mixed_flavours", replace(good, "manifest.json", json.dumps(fzip_manifest).encode()),
        "archive.flavour")
    m = manifest_for(data)
    m["dataSummary"]["transactionsCount"] += 1
    put("hf_bad_count_mismatch", replace(good, "manifest.json", json.dumps(m, indent=2).encode()),
        "manifest.count")
    m = manifest_for(data)
    m["backupFormatVersion"] = "2.0"
    put("hf_bad_version", replace(good, "manifest.json", json.dumps(m, indent=2).encode()),
        "manifest.version")
    bad_size = copy.deepcopy(data)
    bad_size["transaction_files"][0]["fileSize"] += 1
    put("hf_bad_file_size", package_entries(bad_size, fb), "file.size")
    bad_ref = copy.deepcopy(data)
    bad_ref["transactions"][0]["accountId"] = str(uuid.UUID(int=1))
    put("hf_bad_dangling_account", package_entries(bad_ref, fb), "reference.dangling")
    # An integer field above 2^63 - 1 other than transactionHash is a
    # double, which an integer field refuses (as in a 1.0 package).
    bad_order = copy.deepcopy(data)
    bad_order["transactions"][0]["importOrder"] = (1 << 64) - 1
    put("hf_bad_import_order_u64", package_entries(bad_order, fb), "schema.type")
    # A date that does not exist is not read as the next month's.
    bad_date = copy.deepcopy(data)
    bad_date["analytics"][0]["dataThroughDate"] = "2024-02-31"
    put("hf_bad_impossible_date", package_entries(bad_date, fb), "schema.type")
    return made


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    n = int(argv[argv.index("--transactions") + 1]) if "--transactions" in argv else 40
    os.makedirs(argv[1], exist_ok=True)
    made = corpus(argv[1], n)
    with open(os.path.join(argv[1], "hf_index.json"), "w") as f:
        json.dump(made, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
