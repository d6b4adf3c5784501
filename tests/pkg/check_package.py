#!/usr/bin/python3
"""Independent checker of an FZIP package (docs/FORMAT.md), used by the C
tests in tests/pkg and usable by hand:

    check_package.py [--schemas DIR] [--expected FILE] PACKAGE.fzip

It re-derives everything from the zip with Python's zipfile, hashlib and
json (none of fzip's code): entry order, fixed entry metadata, every
checksum in the manifest, every count, safe entry names; with --schemas it
validates manifest.json and each data file against docs/schema/*.json;
with --expected (a JSON file the test wrote from the documents it put in
the store) it checks that each kind holds exactly those entities, in id
order, equal field by field, and that each file entry's bytes hash to the
original's.  Prints "OK" and exits 0, or lists every problem and exits 1.
"""
import argparse
import hashlib
import json
import sys
import zipfile

KINDS = ["accounts", "categories", "file_maps", "transaction_files", "transactions", "analytics"]
ID_FIELDS = {"accounts": "accountId", "categories": "categoryId", "file_maps": "fileMapId",
             "transaction_files": "fileId", "transactions": "transactionId",
             "analytics": "analyticsId"}


def entry_name_problems(name):
    bad = []
    if name.startswith("/") or "\\" in name or ".." in name.split("/"):
        bad.append("unsafe path")
    if any(ord(c) < 0x20 or ord(c) == 0x7f for c in name):
        bad.append("control character")
    if any(part in ("", ".") for part in name.split("/")):
        bad.append("empty or '.' component")
    return bad


def check(args):
    problems = []
    zf = zipfile.ZipFile(args.package)
    infos = zf.infolist()
    names = [i.filename for i in infos]
    if not names or names[0] != "manifest.json":
        problems.append("manifest.json is not the first entry")
        return problems
    manifest = json.loads(zf.read("manifest.json"))

    data_names = [n for n in names[1:] if n.startswith("data/")]
    file_names = [n for n in names[1:] if n.startswith("files/")]
    want_order = ["data/%s.json" % k for k in KINDS if "data/%s.json" % k in data_names]
    if names[1:] != want_order + file_names:
        problems.append("entries out of order: %r" % names)
    for info in infos:
        if info.date_time != (1980, 1, 1, 0, 0, 0):
            problems.append("%s: mtime %r" % (info.filename, info.date_time))
        if info.extra:
            problems.append("%s: has extra fields %r" % (info.filename, info.extra))
        if info.compress_type != zipfile.ZIP_DEFLATED:
            problems.append("%s: not deflated" % info.filename)
        problems += ["%s: %s" % (info.filename, p) for p in entry_name_problems(info.filename)]
    if len(set(names)) != len(names):
        problems.append("duplicate entry names")

    sums = manifest.get("checksums", {})
    if list(sums.keys()) != names[1:]:
        problems.append("checksums keys %r != entries %r" % (list(sums), names[1:]))
    for name in names[1:]:
        got = "sha256:" + hashlib.sha256(zf.read(name)).hexdigest()
        if sums.get(name) != got:
            problems.append("%s: checksum %s, manifest says %s" % (name, got, sums.get(name)))

    data = {}
    for name in data_names:
        kind = name[len("data/"):-len(".json")]
        doc = json.loads(zf.read(name).decode("utf-8"))
        if list(doc.keys()) != [kind]:
            problems.append("%s: top-level keys %r" % (name, list(doc)))
            continue
        data[kind] = doc[kind]
        ids = [e.get(ID_FIELDS[kind]) for e in doc[kind]]
        if ids != sorted(ids) or len(set(ids)) != len(ids):
            problems.append("%s: ids not unique ascending" % name)
    summary = manifest.get("data_summary", {})
    for kind in KINDS:
        if summary.get(kind + "_count") != len(data.get(kind, [])):
            problems.append("%s_count %r but %d in package" %
                            (kind, summary.get(kind + "_count"), len(data.get(kind, []))))
    if summary.get("analytics_included") != ("analytics" in data):
        problems.append("analytics_included disagrees with the entries")
    if summary.get("files_count") != len(file_names):
        problems.append("files_count %r but %d entries" % (summary.get("files_count"), len(file_names)))
    fbytes = sum(zf.getinfo(n).file_size for n in file_names)
    if summary.get("files_bytes") != fbytes:
        problems.append("files_bytes %r but %d" % (summary.get("files_bytes"), fbytes))
    tf_ids = {f["fileId"] for f in data.get("transaction_files", [])}
    for n in file_names:
        parts = n.split("/")
        if len(parts) != 3 or parts[1] not in tf_ids:
            problems.append("%s: not under files/<fileId of the package>/" % n)

    if args.schemas:
        problems += check_schemas(args.schemas, manifest, zf, data_names)
    if args.expected:
        problems += check_expected(args.expected, manifest, data, zf, file_names)
    return problems


def check_schemas(schema_dir, manifest, zf, data_names):
    import jsonschema
    problems = []
    pairs = [("manifest", manifest)]
    pairs += [(n[len("data/"):-len(".json")], json.loads(zf.read(n))) for n in data_names]
    for schema_name, instance in pairs:
        with open("%s/%s.schema.json" % (schema_dir, schema_name)) as f:
            schema = json.load(f)
        v = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
        for err in v.iter_errors(instance):
            problems.append("schema %s: %s at %s" % (schema_name, err.message,
                                                     "/".join(map(str, err.absolute_path))))
            if len(problems) > 20:
                break
    return problems


def same(a, b):
    """JSON equality that also keeps int and float apart (1 vs 1.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a.keys()) == list(b.keys()) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def check_expected(path, manifest, data, zf, file_names):
    problems = []
    with open(path) as f:
        exp = json.load(f)
    for kind in KINDS:
        want = exp["entities"].get(kind)
        got = data.get(kind)
        if want is None:
            if got is not None:
                problems.append("%s present but not expected" % kind)
            continue
        if got is None:
            problems.append("%s expected but absent" % kind)
            continue
        want = sorted(want, key=lambda e: e[ID_FIELDS[kind]])
        if kind == "transaction_files":
            # s3Key is the exporting store's key: the writer leaves it out.
            for g in got:
                if "s3Key" in g:
                    problems.append("transaction file %s exports its s3Key" % g.get("fileId"))
            want = [{k: v for k, v in w.items() if k != "s3Key"} for w in want]
        if len(want) != len(got):
            problems.append("%s: %d entities, expected %d" % (kind, len(got), len(want)))
            continue
        for w, g in zip(want, got):
            if not same(w, g):
                problems.append("%s %s differs:\n  got  %r\n  want %r" %
                                (kind, w[ID_FIELDS[kind]], g, w))
    want_files = exp.get("files", {})
    if sorted(want_files) != sorted(file_names):
        problems.append("file entries %r, expected %r" % (file_names, sorted(want_files)))
    for name, digest in want_files.items():
        if name in file_names and hashlib.sha256(zf.read(name)).hexdigest() != digest:
            problems.append("%s: bytes differ from the stored file" % name)
    for key in ("external_references", "files_missing", "export_type", "filters"):
        if key in exp and not same(exp[key], manifest.get(key)):
            problems.append("%s: %r, expected %r" % (key, manifest.get(key), exp[key]))
    return problems


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--schemas")
    p.add_argument("--expected")
    p.add_argument("package")
    args = p.parse_args()
    problems = check(args)
    for pr in problems:
        print(pr)
    if problems:
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
