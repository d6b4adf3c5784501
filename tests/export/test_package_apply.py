"""End-to-end: `fzip package apply BASE INC... --output FILE` (FORMAT.md 15
"Applying a chain", docs/CLIENT.md), on increments the real fzipd wrote.

A real fzipd on loopback (embedded store, or MongoDB behind the ferretdb
fixture), real gRPC clients and the real `fzip` and `fzipd seed` binaries.
A user with seeded data and an imported set of categories gets a pinned
complete export (the base); then `fzipd seed --mutate` rewrites some
transactions and the import is undone (its categories deleted): a pinned
increment; then more mutations, the categories imported again (deleted,
then back) and another user's accounts, files and transactions imported:
a second pinned increment, and a complete export pinned to the second
increment's timestamp.  `fzip package apply base inc1 inc2` must equal
that complete export byte for byte (sha256), and base + inc1 the complete
export of inc1's moment; the applied package, imported into the user
after DeleteAllData, exported pinned again gives the same bytes.  The
refusals (wrong order, a missing link, a tampered increment, an increment
alone or first) exit 3 (2 for too few packages) and write nothing.  A
sealed chain (--recipient and --passphrase, opened with --identity or
--passphrase) applies to the same complete package as the plain one.
"""
import hashlib
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from fzipd_harness import Checks, Fzipd, unique_user  # noqa: E402

from fzip.v1 import data_service_pb2 as dpb  # noqa: E402
from fzip.v1 import jobs_pb2 as jpb  # noqa: E402
from fzip_e2e import (Client, check, expect, fzip_cli, import_package,  # noqa: E402
                      read_package, undo_and_wait)

SCALE = float(os.environ.get("FZIP_TEST_SCALE", "1"))
SEED_TX = max(200, int(2000 * SCALE))
PIN = 1700000000000
DAY = 86400000
COMPLETE = dict(export_type=jpb.EXPORT_TYPE_COMPLETE, include_analytics=True)
PASSPHRASE = "apply the chain, not the key"


def export(c, path, **kw):
    """A completed export written to `path`; returns its job."""
    final, _, data = c.export_and_download(**kw)
    check(hashlib.sha256(data).hexdigest() == final.package_sha256, "download sha256")
    with open(path, "wb") as f:
        f.write(data)
    return final


def sha_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def imported(c, data, what, **kw):
    job = import_package(c, data, **kw)
    check(job.status == jpb.IMPORT_STATUS_COMPLETED, "import of %s: %s %s"
          % (what, jpb.ImportStatus.Name(job.status), job.error.message))
    return job


def apply(srv, out, *paths, **kw):
    return fzip_cli(srv, None, "package", "apply", *paths, "--output", out, **kw)


def make_chain(srv, d):
    """base, inc1, inc2 and the complete exports of inc1's and inc2's
    moments (full1, full2) in d, each pinned."""
    c = Client(srv, unique_user("apply"))
    donor = Client(srv, unique_user("applycat"))
    other = Client(srv, unique_user("applyacc"))
    srv.seed(c.user, SEED_TX, seed=61)
    srv.seed(donor.user, 40, seed=62)
    srv.seed(other.user, 60, seed=63)
    p = {n: os.path.join(d, n + ".fzip") for n in
         ("cats", "others", "base", "inc1", "full1", "inc2", "full2")}
    export(donor, p["cats"], export_type=jpb.EXPORT_TYPE_CATEGORIES_ONLY)
    export(other, p["others"], **COMPLETE)
    cats = open(p["cats"], "rb").read()
    first = imported(c, cats, "categories", strategy=jpb.MERGE_STRATEGY_SKIP_EXISTING)

    base = export(c, p["base"], pinned_timestamp=PIN, **COMPLETE)
    check(srv.mutate(c.user, 3, seed=71) > 0, "seed --mutate changed nothing")
    undo_and_wait(c, first.import_id)
    inc1 = export(c, p["inc1"], incremental_base_id=base.export_id, pinned_timestamp=PIN + DAY,
                  **COMPLETE)
    export(c, p["full1"], pinned_timestamp=PIN + DAY, **COMPLETE)
    z, _ = read_package(open(p["inc1"], "rb").read())
    check(b'"kind":"categories"' in z.read("data/deletions.json"), "inc1 deletes no category")

    check(srv.mutate(c.user, 2, seed=72) > 0, "seed --mutate changed nothing")
    imported(c, cats, "categories again", strategy=jpb.MERGE_STRATEGY_SKIP_EXISTING)
    imported(c, open(p["others"], "rb").read(), "another user's data",
             strategy=jpb.MERGE_STRATEGY_SKIP_EXISTING)
    export(c, p["inc2"], incremental_base_id=inc1.export_id, pinned_timestamp=PIN + 2 * DAY,
           **COMPLETE)
    export(c, p["full2"], pinned_timestamp=PIN + 2 * DAY, **COMPLETE)
    z, _ = read_package(open(p["inc2"], "rb").read())
    check(any(n.startswith("files/") for n in z.namelist()), "inc2 holds no file bytes")
    return c, p


def test_chain_applies_to_the_complete_export_of_its_moment(srv, c, p, d):
    out = os.path.join(d, "applied2.fzip")
    r = expect(apply(srv, out, p["base"], p["inc1"], p["inc2"]), 0, "apply base inc1 inc2")
    check(sha_of(out) == sha_of(p["full2"]),
          "apply(base, inc1, inc2) differs from the complete export at inc2's moment")
    check(sha_of(out) in r.stdout, "apply output does not name the sha256: %r" % r.stdout)
    out1 = os.path.join(d, "applied1.fzip")
    expect(apply(srv, out1, p["base"], p["inc1"], "--json"), 0, "apply base inc1")
    check(sha_of(out1) == sha_of(p["full1"]),
          "apply(base, inc1) differs from the complete export at inc1's moment")
    expect(fzip_cli(srv, None, "package", "verify", out), 0, "verify the applied package")


def test_applied_package_restores_to_the_same_bytes(srv, c, p, d):
    out = os.path.join(d, "applied2.fzip")
    c.data.DeleteAllData(dpb.DeleteAllDataRequest(confirm="DELETE ALL DATA"), metadata=c.md)
    imported(c, open(out, "rb").read(), "the applied package")
    again = os.path.join(d, "again.fzip")
    export(c, again, pinned_timestamp=PIN + 2 * DAY, **COMPLETE)
    check(sha_of(again) == sha_of(out), "export after restoring the applied package differs")


def test_refusals_write_nothing(srv, c, p, d):
    out = os.path.join(d, "refused.fzip")
    blob = bytearray(open(p["inc1"], "rb").read())
    blob[len(blob) // 3] ^= 0x55  # inside a deflated entry, far from the directory
    tampered = os.path.join(d, "tampered.fzip")
    with open(tampered, "wb") as f:
        f.write(blob)
    for what, paths, rc, text in [
            ("wrong order", (p["base"], p["inc2"], p["inc1"]), 3, "is not an increment of"),
            ("missing link", (p["base"], p["inc2"]), 3, "is not an increment of"),
            ("tampered increment", (p["base"], tampered), 3, "tampered.fzip"),
            ("increment first", (p["inc1"], p["inc2"]), 3, "the first package must be"),
            ("complete twice", (p["base"], p["full1"]), 3, "is a complete package"),
            ("increment alone", (p["inc1"],), 2, "")]:
        r = expect(apply(srv, out, *paths), rc, what)
        check(text in r.stderr, "%s: stderr %r lacks %r" % (what, r.stderr, text))
        check(not os.path.exists(out), "%s: %s was written" % (what, out))
        check(not [n for n in os.listdir(d) if n.startswith(".refused.fzip.")],
              "%s: a temporary file was left" % what)


def test_sealed_chain_applies_with_the_identity(srv, c, p, d):
    e = Client(srv, unique_user("applyenc"))
    srv.seed(e.user, max(100, SEED_TX // 4), seed=64)
    ident = os.path.join(d, "me.key")
    expect(fzip_cli(srv, None, "key", "generate", "-o", ident), 0, "key generate")

    def sealed(path, *args):
        r = expect(fzip_cli(srv, e.user, "export", "create", "--json", "--analytics",
                            "--recipient", ident + ".pub", "--passphrase", *args,
                            passphrase=PASSPHRASE), 0, "sealed export")
        eid = json.loads(r.stdout.splitlines()[-1])["export_id"]
        final = e.watch(eid)[-1]
        check(final.status == jpb.EXPORT_STATUS_COMPLETED, "sealed export: %s"
              % final.error.message)
        expect(fzip_cli(srv, e.user, "export", "download", eid, "-o", path), 0, "download")
        return eid

    base = sealed(os.path.join(d, "sbase.fzip"), "--pin-timestamp", str(PIN))
    check(srv.mutate(e.user, 5, seed=73) > 0, "seed --mutate changed nothing")
    sealed(os.path.join(d, "sinc.fzip"), "--pin-timestamp", str(PIN + DAY),
           "--incremental", base)
    plain = os.path.join(d, "splain.fzip")
    export(e, plain, pinned_timestamp=PIN + DAY, **COMPLETE)
    out = os.path.join(d, "sapplied.fzip")
    tmp = os.path.join(d, "plaintexts")
    os.mkdir(tmp)
    expect(apply(srv, out, os.path.join(d, "sbase.fzip"), os.path.join(d, "sinc.fzip"),
                 tmpdir=tmp), 2, "sealed chain without a key")
    expect(apply(srv, out, os.path.join(d, "sbase.fzip"), os.path.join(d, "sinc.fzip"),
                 "--identity", ident, tmpdir=tmp), 0, "sealed chain with --identity")
    check(sha_of(out) == sha_of(plain), "applied sealed chain differs from the complete export")
    os.unlink(out)
    expect(apply(srv, out, os.path.join(d, "sbase.fzip"), os.path.join(d, "sinc.fzip"),
                 "--passphrase", passphrase=PASSPHRASE, tmpdir=tmp), 0,
           "sealed chain with --passphrase")
    check(sha_of(out) == sha_of(plain), "applied with the passphrase differs")
    check(os.listdir(tmp) == [], "plaintext left behind: %r" % os.listdir(tmp))


def main():
    checks = Checks()
    with Fzipd() as srv, tempfile.TemporaryDirectory(prefix="fzip-apply-") as d:
        c, p = make_chain(srv, d)
        for t in [test_chain_applies_to_the_complete_export_of_its_moment,
                  test_applied_package_restores_to_the_same_bytes,
                  test_refusals_write_nothing,
                  test_sealed_chain_applies_with_the_identity]:
            checks.run(t, srv, c, p, d)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
