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

The default Pkg is the design document's flavour (no package_format in
the manifest); Pkg(fzip=True) adds package_format "fzip", as fzip's own
writer does.  Hostile archives that zipfile cannot write (overlapping
entries, NUL in names, lying sizes) are built or patched byte by byte
below.  test_pkg_validate.c lists every case it expects by name: a case
added here must be added there too.
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
import zlib

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

    def __init__(self, data=None, fzip=False):
        self.fzip = fzip
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
        for k in [k for k, v in checksums.items() if v is None]:
            del checksums[k]
        m = {"export_format_version": "1.0", "export_timestamp": "2024-01-15T10:30:00Z",
             "user_id": "user_12345", "housef3_version": "2.5.0", "data_summary": summary,
             "checksums": checksums,
             "compatibility": {"minimum_version": "2.0.0",
                               "supported_versions": ["2.0.0", "2.5.0"]}}
        if self.fzip:
            m["package_format"] = "fzip"
        return m

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


def mutate(fn, fzip=False):
    p = Pkg(fzip=fzip)
    fn(p)
    return p.zip_bytes()


# --- byte-level zip surgery -------------------------------------------------

def records(zb, sig):
    """Offsets of every header with signature sig (local b"PK\x03\x04",
    central b"PK\x01\x02") whose name parses, with that name."""
    out = []
    i = 0
    local = sig == b"PK\x03\x04"
    while True:
        i = zb.find(sig, i)
        if i < 0:
            return out
        nlen = struct.unpack_from("<H", zb, i + (26 if local else 28))[0]
        name = zb[i + (30 if local else 46):i + (30 if local else 46) + nlen]
        out.append((i, name))
        i += 4


def patch_header(zb, name, fields):
    """Sets struct fields {offset_in_local: (fmt, value)} in the local header
    and the matching central record of entry `name` (bytes).  Offsets are
    given for the local header; the central one is shifted by 4 for sizes
    and CRC, and name bytes are rewritten in both."""
    b = bytearray(zb)
    for sig, shift, name_off in ((b"PK\x03\x04", 0, 30), (b"PK\x01\x02", 2, 46)):
        for off, n in records(bytes(b), sig):
            if n != name:
                continue
            for lo, spec in fields.items():
                if lo == "name":
                    b[off + name_off:off + name_off + len(spec)] = spec
                else:
                    struct.pack_into(spec[0], b, off + lo + shift, spec[1])
    return bytes(b)


def patch_central(zb, name, off_in_record, fmt, val):
    b = bytearray(zb)
    for off, n in records(zb, b"PK\x01\x02"):
        if n == name:
            struct.pack_into(fmt, b, off + off_in_record, val)
    return bytes(b)


def raw_deflate(data):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def local_header(name, crc, csize, usize):
    return struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, csize, usize,
                       len(name), 0) + name


def central_record(name, crc, csize, usize, offset):
    return struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc, csize,
                       usize, len(name), 0, 0, 0, 0, 0o100644 << 16, offset) + name


def end_record(n, cd_size, cd_offset):
    return struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, n, n, cd_size, cd_offset, 0)


def fifield_bomb(n_files=300, kernel_bytes=1024 * 1024):
    """David Fifield's overlapping-entry bomb ("A better zip bomb", 2019):
    one deflate kernel of zeros shared by every entry, each entry quoting the
    next one's local header in a stored block so that every header and CRC
    is consistent.  Names are format-valid files/ entries; the central
    directory is ordinary."""
    kernel = raw_deflate(b"\0" * kernel_bytes)
    names = [("files/bomb-%03d/x.csv" % i).encode() for i in range(n_files)]
    zeros_crc = zlib.crc32(b"\0" * kernel_bytes)
    # From the last entry back: entry i = quote(LH[i+1]) + data[i+1].
    headers = [None] * n_files
    csize = [0] * n_files
    usize = [0] * n_files
    prefix = [b""] * n_files  # uncompressed bytes before the zeros
    for i in range(n_files - 1, -1, -1):
        if i == n_files - 1:
            csize[i], usize[i], prefix[i] = len(kernel), kernel_bytes, b""
        else:
            nxt = headers[i + 1]
            csize[i] = 5 + len(nxt) + csize[i + 1]
            usize[i] = len(nxt) + usize[i + 1]
            prefix[i] = nxt + prefix[i + 1]
        crc = zlib.crc32(b"\0" * kernel_bytes, zlib.crc32(prefix[i])) if prefix[i] else zeros_crc
        headers[i] = local_header(names[i], crc, csize[i], usize[i])
    body = bytearray()
    offsets = []
    for i in range(n_files):
        offsets.append(len(body))
        body += headers[i]
        if i == n_files - 1:
            body += kernel
        else:
            nxt = headers[i + 1]
            body += struct.pack("<BHH", 0, len(nxt), len(nxt) ^ 0xFFFF)
    cd = bytearray()
    for i in range(n_files):
        crc = struct.unpack_from("<I", headers[i], 14)[0]
        cd += central_record(names[i], crc, csize[i], usize[i], offsets[i])
    return bytes(body) + bytes(cd) + end_record(n_files, len(cd), len(body))


def with_fake_end_record(zb):
    """The archive comment holds a second, empty end record: a reader that
    takes the last one it finds sees no entries to check."""
    fake = end_record(0, 0, 0)
    return zb[:-2] + struct.pack("<H", len(fake)) + fake


def with_decoy_directory(zb):
    """A second central directory and end record in the archive comment,
    both consistent: a reader may walk one while libzip reads the other
    (a decoy could hide overlapping entries), so the archive is refused."""
    eocd = zb.rindex(b"PK\5\6")
    count, cd_size, cd_off = struct.unpack_from("<HII", zb, eocd + 10)
    cd = zb[cd_off:cd_off + cd_size]
    decoy_off = eocd + 22  # the comment starts right after the end record
    comment = cd + end_record(count, len(cd), decoy_off)
    return zb[:eocd + 20] + struct.pack("<H", len(comment)) + comment


def to_zip64(zb):
    """The same archive with a zip64 central directory: every record's
    sizes and offset in a zip64 extra field, and zip64 end records, as
    libzip writes for packages over 4 GiB."""
    z = zipfile.ZipFile(io.BytesIO(zb))
    infos = z.infolist()
    cd_start = zb.find(b"PK\x01\x02")
    body = zb[:cd_start]
    cd = bytearray()
    for i in infos:
        name = i.filename.encode()
        y, mo, d, h, mi, sec = i.date_time
        dos_time, dos_date = h << 11 | mi << 5 | sec // 2, (y - 1980) << 9 | mo << 5 | d
        extra = struct.pack("<HHQQQ", 1, 24, i.file_size, i.compress_size, i.header_offset)
        cd += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 45, 45, i.flag_bits,
                          i.compress_type, dos_time, dos_date, i.CRC, 0xFFFFFFFF, 0xFFFFFFFF,
                          len(name),
                          len(extra), 0, 0, 0, i.external_attr, 0xFFFFFFFF) + name + extra
    z64_at = len(body) + len(cd)
    z64 = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, len(infos), len(infos),
                      len(cd), len(body))
    loc = struct.pack("<4sIQI", b"PK\x06\x07", 0, z64_at, 1)
    eocd = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                       0xFFFFFFFF, 0)
    return body + bytes(cd) + z64 + loc + eocd


def shared_header_zip():
    """Two central records pointing at the same local header and data."""
    data = b"Date,Amount\n" + b"2024-01-01,1.00\n" * 100
    comp = raw_deflate(data)
    crc = zlib.crc32(data)
    name = FILE_ENTRY.encode()
    body = local_header(name, crc, len(comp), len(data)) + comp
    cd = (central_record(name, crc, len(comp), len(data), 0) +
          central_record(b"files/other-file/y.csv", crc, len(comp), len(data), 0))
    return body + cd + end_record(2, len(cd), len(body))


ACC1 = "2f0c9d4e-0000-4000-8000-000000000001"
FILE_ENTRY = "files/9c8b7a6d-0000-4000-8000-000000000001/jan.csv"


def txn_id(i):
    return "c0ffee00-0000-4000-8000-%012d" % i


def with_txn_ids(ids):
    """A mutation giving the package one transaction per id, in the order
    given: the format lists them ascending, a reader must not rely on it
    (the validator's duplicate check has a path for either)."""
    def fn(p):
        t = p.data["transactions"][0]
        p.data["transactions"] = [dict(copy.deepcopy(t), transactionId=i, importOrder=n,
                                       fitId="F%d" % n) for n, i in enumerate(ids)]
    return fn


# 40 unique transaction ids in an order of their own (seeded: the corpus
# is the same on every run), the 13th first; test_pkg_validate.c validates
# these packages with runs of 4 ids, so they span several sorted runs.
OUT_OF_ORDER_IDS = [txn_id(13)] + [txn_id(i) for i in random.Random(11).sample(
    [i for i in range(1, 41) if i != 13], 39)]


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
    add("bad_zip_bomb", "limit.ratio", "data/analytics.json", None, mutate(bomb))
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
    # The HouseF3 app's manifest over format 1.0's {"<kind>": [...]} data
    # files: the app's data files are bare arrays (FORMAT.md, "The HouseF3
    # flavour"), so the flavours are mixed.  The app's own packages:
    # make_housef3_packages.py.
    add("bad_legacy_manifest", "json", "data/accounts.json", None, mutate(legacy))
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
    add("bad_checksums_absent", "checksum.missing", "manifest.json", "checksums",
        mutate(lambda p: setattr(p, "manifest_override", b'{"export_format_version": "1.0"}')))

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
    # The same duplicate in each of the ways the check meets it: right
    # after itself in ascending order; far apart in a package out of order;
    # out of order after an ascending prefix that holds its first copy.
    add("bad_duplicate_transaction_id_adjacent", "id.duplicate", "data/transactions.json",
        "transactionId", mutate(with_txn_ids([txn_id(1), txn_id(1), txn_id(2)])))
    add("bad_duplicate_transaction_id_far", "id.duplicate", "data/transactions.json",
        "transactionId", mutate(with_txn_ids(OUT_OF_ORDER_IDS + [txn_id(13)])))
    add("bad_duplicate_transaction_id_after_sorted_prefix", "id.duplicate",
        "data/transactions.json", "transactionId",
        mutate(with_txn_ids([txn_id(i) for i in range(1, 31)] + [txn_id(7)] +
                            [txn_id(i) for i in range(31, 41)])))
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
    integrity_cases(add)
    return cases


FILE_ID2 = "9c8b7a6d-0000-4000-8000-000000000009"


def integrity_cases(add):
    """Milestone 2, items 2-4: overlapping entries and ratios, checksums on
    every entry, file records against their bytes, entries outside the
    format, limits, manifest keys and hex spelling."""
    good = Pkg().zip_bytes()

    # --- item 2: zip bombs ---
    add("bad_fifield_overlap_bomb", "archive.overlap", "files/bomb-001/x.csv", None,
        fifield_bomb())
    add("bad_fifield_bomb_fake_end_record", "archive.overlap", "files/bomb-001/x.csv", None,
        with_fake_end_record(fifield_bomb()))
    add("bad_decoy_central_directory", "archive.corrupt", None, None,
        with_decoy_directory(good))
    add("bad_fifield_bomb_zip64", "archive.overlap", "files/bomb-001/x.csv", None,
        to_zip64(fifield_bomb(n_files=20)))
    add("bad_overlap_shared_local_header", "archive.overlap", "files/other-file/y.csv", None,
        shared_header_zip())

    def small_bombs(p):
        # 40 entries just under PKG_RATIO_MIN_BYTES each: no entry is checked
        # alone, the archive as a whole is 40 MiB from ~50 KiB.
        for i in range(40):
            p.files["files/pad-%02d/z.csv" % i] = b"\0" * (1024 * 1024 - 1)
    add("bad_archive_ratio_small_entries", "limit.ratio", None, None, mutate(small_bombs))
    acc_bytes = data_bytes("accounts", base_data()["accounts"])
    add("bad_size_lie_inflates_more", "archive.size", "data/accounts.json", None,
        patch_header(good, b"data/accounts.json", {22: ("<I", len(acc_bytes) - 10)}))
    add("bad_size_lie_inflates_less", "archive.size", FILE_ENTRY, None,
        patch_header(good, FILE_ENTRY.encode(), {22: ("<I", len(FILE_BYTES) + 10)}))
    add("bad_local_header_missing", "archive.corrupt", "data/accounts.json", None,
        patch_central(good, b"data/accounts.json", 42, "<I",
                      records(good, b"PK\x03\x04")[1][0] + 1))
    stored = mutate(lambda p: setattr(p, "compress", zipfile.ZIP_STORED))
    at = stored.find(FILE_BYTES)
    add("bad_crc_corrupt_file", "archive.corrupt", FILE_ENTRY, None,
        stored[:at + 30] + bytes([stored[at + 30] ^ 1]) + stored[at + 31:])
    add("bad_data_past_end", "archive.corrupt", FILE_ENTRY, None,
        patch_header(good, FILE_ENTRY.encode(), {18: ("<I", 0x7FFFFFF0)}))

    # --- item 3: every entry carries a sha256 ---
    def drop_sum(key):
        return lambda p: p.checksum_patch.update({key: None})
    add("bad_checksum_removed_data", "checksum.missing", "data/transactions.json", "checksums",
        mutate(drop_sum("transactions.json")))

    def tamper_and_drop(p):
        p.data["transactions"][0]["amount"] = "-999999.00"
        p.checksum_patch["transactions.json"] = None
    add("bad_checksum_removed_tampered_data", "checksum.missing", "data/transactions.json",
        "checksums", mutate(tamper_and_drop))
    add("bad_checksum_removed_file_fzip", "checksum.missing", FILE_ENTRY, "checksums",
        mutate(drop_sum(FILE_ENTRY), fzip=True))

    def tamper_file_drop_sum(p):
        p.files[FILE_ENTRY] = FILE_BYTES.replace(b"-12.50", b"-99.50")
        p.checksum_patch[FILE_ENTRY] = None
    add("bad_checksum_removed_tampered_file_fzip", "checksum.missing", FILE_ENTRY, "checksums",
        mutate(tamper_file_drop_sum, fzip=True))
    add("bad_design_file_no_checksum_anywhere", "checksum.missing", FILE_ENTRY, "sha256",
        mutate(drop_sum(FILE_ENTRY)))

    def record_sha(value):
        def f(p):
            p.data["transaction_files"][0]["sha256"] = value
            p.checksum_patch[FILE_ENTRY] = None
        return f
    add("bad_design_file_record_sha_mismatch", "file.sha256", FILE_ENTRY, "sha256",
        mutate(record_sha(hashlib.sha256(b"other").hexdigest())))
    add("bad_checksums_empty", "checksum.missing", "data/accounts.json", "checksums",
        mutate(lambda p: p.checksum_patch.update({k: None for k in
                                                   ["accounts.json", "categories.json",
                                                    "file_maps.json", "transaction_files.json",
                                                    "transactions.json", FILE_ENTRY]})))
    add("bad_checksum_bare_hex", "manifest.field", "manifest.json", "checksums.accounts.json",
        mutate(lambda p: p.checksum_patch.update(
            {"accounts.json": hashlib.sha256(acc_bytes).hexdigest()})))
    add("bad_checksum_upper_hex", "manifest.field", "manifest.json", "checksums.accounts.json",
        mutate(lambda p: p.checksum_patch.update(
            {"accounts.json": "sha256:" + hashlib.sha256(acc_bytes).hexdigest().upper()})))

    # --- item 4: file records, entries, limits, manifest keys ---
    def tfile(field, value):
        def f(p):
            p.data["transaction_files"][0][field] = value
        return f
    add("bad_file_size_mismatch", "file.size", FILE_ENTRY, "fileSize",
        mutate(tfile("fileSize", len(FILE_BYTES) + 1)))
    add("bad_file_sha256_mismatch", "file.sha256", FILE_ENTRY, "sha256",
        mutate(tfile("sha256", hashlib.sha256(b"other").hexdigest())))
    add("bad_file_sha256_upper_hex", "schema.sha256", "data/transaction_files.json", "sha256",
        mutate(tfile("sha256", hashlib.sha256(FILE_BYTES).hexdigest().upper())))
    add("bad_unknown_entry", "archive.unknown_entry", "notes.txt", None,
        mutate(lambda p: p.extra.append(("notes.txt", b"hello"))))
    add("bad_unknown_data_kind", "archive.unknown_entry", "data/budgets.json", None,
        mutate(lambda p: p.extra.append(("data/budgets.json", b'{"budgets":[]}'))))
    add("bad_files_nested_path", "archive.unknown_entry", "files/%s/sub/x.csv" % FILE_ID2, None,
        mutate(lambda p: p.extra.append(("files/%s/sub/x.csv" % FILE_ID2, b"x"))))
    add("bad_directory_entry", "archive.directory", "files/", None,
        mutate(lambda p: p.extra.append(("files/", b""))))
    add("bad_directory_data", "archive.directory", "data/", None,
        mutate(lambda p: p.extra.append(("data/", b""))))
    nul_name = "files/%s/evil.csv#.exe" % FILE_ID2
    add("bad_nul_in_name", "archive.path", "files/%s/evil.csv" % FILE_ID2, None,
        patch_header(mutate(lambda p: p.extra.append((nul_name, b"x"))), nul_name.encode(),
                     {"name": nul_name.replace("#", "\0").encode()}))
    long_name = "files/%s/%s.csv" % (FILE_ID2, "a" * 400)
    add("bad_entry_name_too_long", "limit.entry_name", long_name, None,
        mutate(lambda p: p.extra.append((long_name, b"x"))))

    def manifest_patch(fn):
        def f(p):
            m = p.manifest(p.entries())
            fn(m)
            p.manifest_override = json.dumps(m).encode()
        return f
    add("bad_manifest_unknown_key", "manifest.unknown_key", "manifest.json", "signature",
        mutate(manifest_patch(lambda m: m.update(signature="trust me"))))
    add("bad_manifest_unknown_summary_key", "manifest.unknown_key", "manifest.json",
        "data_summary.budgets_count",
        mutate(manifest_patch(lambda m: m["data_summary"].update(budgets_count=0))))
    add("bad_manifest_unknown_external_kind", "manifest.unknown_key", "manifest.json",
        "external_references.transactions",
        mutate(manifest_patch(lambda m: m.update(
            external_references={"accounts": [], "transactions": []}))))
    add("bad_manifest_unknown_filters_key", "manifest.unknown_key", "manifest.json",
        "filters.user", mutate(manifest_patch(lambda m: m.update(filters={
            "account_ids": [], "date_from": None, "date_to": None, "user": "x"}))))
    add("bad_manifest_unknown_compatibility_key", "manifest.unknown_key", "manifest.json",
        "compatibility.maximum_version",
        mutate(manifest_patch(lambda m: m["compatibility"].update(maximum_version="9.9"))))
    add("bad_manifest_package_format", "manifest.field", "manifest.json", "package_format",
        mutate(manifest_patch(lambda m: m.update(package_format="zip"))))
    add("bad_external_refs_over_limit", "limit.ids", "manifest.json",
        "external_references.accounts",
        mutate(manifest_patch(lambda m: m.update(external_references={
            "accounts": ["acc-%05d" % i for i in range(10001)]}))))


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

    def accounts_only(p):
        p.data = {"accounts": [p.data["accounts"][1]]}
        p.files = {}
    cases.append(("good_accounts_only", mutate(accounts_only)))
    cases.append(("good_fzip_flavour", Pkg(fzip=True).zip_bytes()))
    cases.append(("good_zip64_directory", to_zip64(Pkg(fzip=True).zip_bytes())))

    def record_vouches(p):
        # Design flavour, no manifest checksum for the file: the record's
        # sha256 (and fileSize) are checked against the bytes instead.
        p.data["transaction_files"][0]["sha256"] = hashlib.sha256(FILE_BYTES).hexdigest()
        p.checksum_patch[FILE_ENTRY] = None
    cases.append(("good_design_file_checksum_from_record", mutate(record_vouches)))

    def unknown_fields(p):
        # Accepted with schema.unknown_field warnings; never stored.
        p.data["accounts"][0]["user_id"] = "user_12345"
        p.data["accounts"][0]["userId"] = "user_12345"
        p.data["categories"][0]["rules"][0]["owner"] = "someone"
        p.data["transactions"][0]["categories"][0]["debug"] = {"x": 1}
    cases.append(("good_unknown_entity_fields", mutate(unknown_fields)))
    cases.append(("good_transactions_out_of_order", mutate(with_txn_ids(OUT_OF_ORDER_IDS))))
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
