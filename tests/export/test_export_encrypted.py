"""End-to-end: encrypted exports (CreateExportRequest.encryption, the
FZIPENC1 envelope of docs/FORMAT.md "Encrypted packages").

A real fzipd on loopback (embedded store, or MongoDB behind the ferretdb
fixture) and the real `fzip` binary ($FZIP): `fzip key generate` makes a
key pair; `fzip export create --recipient KEY.pub --passphrase` seals a
seeded user's export for the key and a passphrase (FZIP_PASSPHRASE); the
job shows the two recipients (public material only, no passphrase
anywhere in the record); the downloaded bytes are the envelope (no zip
entry name in clear) and match the job's size and sha256; `fzip package
verify` opens it with the key and with the passphrase and refuses a wrong
key, a wrong passphrase, no key, a flipped byte and a cut file (exit 3,
nothing left in the temporary directory); `fzip import upload --identity`
restores it into an empty profile to the same state as a plain export of
the source, while the envelope uploaded as it is fails validation; the
server refuses malformed recipients; an export without the
option is still a plain, pinned, byte-identical package.
"""
import hashlib
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from fzipd_harness import Checks, Fzipd, unique_user  # noqa: E402

import grpc  # noqa: E402
from fzip.v1 import export_service_pb2 as epb  # noqa: E402
from fzip.v1 import jobs_pb2 as jpb  # noqa: E402
from fzip_e2e import Client, check, expect, import_package, read_package, state  # noqa: E402
from fzip_e2e import fzip_cli as fzip  # noqa: E402

SCALE = float(os.environ.get("FZIP_TEST_SCALE", "1"))
SEED_TX = max(40, int(1500 * SCALE))
PIN = 1700000000000
PASSPHRASE = "tr0ub4dor & 3, an e2e passphrase"
MAGIC = b"FZIPENC1"


def without_analytics(checksums):
    return {k: v for k, v in checksums.items() if k != "data/analytics.json"}


def keys(srv, d):
    ident = os.path.join(d, "me.key")
    r = expect(fzip(srv, None, "key", "generate", "-o", ident), 0, "key generate")
    with open(ident + ".pub") as f:
        pub = f.read()
    check(r.stdout == pub and pub.startswith("fzip-x25519-public:"), "public key %r" % r.stdout)
    check(os.stat(ident).st_mode & 0o077 == 0, "secret key readable by others")
    expect(fzip(srv, None, "key", "generate", "-o", ident), 1, "key generate over a key")
    other = os.path.join(d, "other.key")
    expect(fzip(srv, None, "key", "generate", "-o", other), 0, "second key")
    return ident, other


def test_sealed_export_opens_only_with_its_keys_and_restores(srv):
    c = Client(srv, unique_user("enc"))
    srv.seed(c.user, SEED_TX, seed=21)
    with tempfile.TemporaryDirectory(prefix="fzip-enc-") as d:
        ident, other = keys(srv, d)
        r = expect(fzip(srv, c.user, "export", "create", "--json", "--recipient", ident + ".pub",
                        "--passphrase", "--pin-timestamp", str(PIN), passphrase=PASSPHRASE),
                   0, "export create")
        eid = json.loads(r.stdout.splitlines()[-1])["export_id"]
        final = c.watch(eid)[-1]
        check(final.status == jpb.EXPORT_STATUS_COMPLETED, "export ended %s: %s"
              % (jpb.ExportStatus.Name(final.status), final.error.message))
        rs = final.encryption.recipients
        check(len(rs) == 2 and len(rs[0].x25519_public_key) == 32 and not rs[0].passphrase_salt
              and len(rs[1].passphrase_salt) == 16 and rs[1].argon2_opslimit > 0,
              "recipients on the job: %r" % final.encryption)
        check(PASSPHRASE.encode() not in final.SerializeToString(), "passphrase in the job")
        sealed = os.path.join(d, "sealed.fzip")
        expect(fzip(srv, c.user, "export", "download", eid, "-o", sealed), 0, "download")
        with open(sealed, "rb") as f:
            blob = f.read()
        check(blob.startswith(MAGIC), "not an envelope: %r" % blob[:16])
        check(b"manifest.json" not in blob and b"data/" not in blob, "entry names in clear")
        check(len(blob) == final.package_size
              and hashlib.sha256(blob).hexdigest() == final.package_sha256,
              "the job's size/sha256 are not the envelope's")

        tmp = os.path.join(d, "tmp")
        os.mkdir(tmp)
        expect(fzip(srv, None, "package", "verify", sealed, "--identity", ident, tmpdir=tmp),
               0, "verify with the key")
        expect(fzip(srv, None, "package", "verify", sealed, "--passphrase",
                    passphrase=PASSPHRASE, tmpdir=tmp), 0, "verify with the passphrase")
        r = expect(fzip(srv, None, "package", "inspect", sealed, "--json", "--identity", ident,
                        tmpdir=tmp), 0, "inspect with the key")
        check(json.loads(r.stdout)["export_type"] == "complete", "inspect: %r" % r.stdout)
        expect(fzip(srv, None, "package", "verify", sealed, "--identity", other, tmpdir=tmp),
               3, "verify with another key")
        expect(fzip(srv, None, "package", "verify", sealed, "--passphrase",
                    passphrase=PASSPHRASE + "!", tmpdir=tmp), 3, "verify, wrong passphrase")
        expect(fzip(srv, None, "package", "verify", sealed, tmpdir=tmp), 2, "verify, no key")
        expect(fzip(srv, None, "package", "verify", sealed, "--passphrase", tmpdir=tmp),
               2, "verify, --passphrase without a terminal or FZIP_PASSPHRASE")
        for name, bad in [("flipped", blob[:len(blob) // 2] + bytes([blob[len(blob) // 2] ^ 1])
                           + blob[len(blob) // 2 + 1:]),
                          ("cut", blob[:-100]),
                          ("appended", blob + b"\0")]:
            path = os.path.join(d, name + ".fzip")
            with open(path, "wb") as f:
                f.write(bad)
            expect(fzip(srv, None, "package", "verify", path, "--identity", ident, tmpdir=tmp),
                   3, "verify, " + name)
        check(os.listdir(tmp) == [], "plaintext left behind: %r" % os.listdir(tmp))

        # Upload with decryption on the client: the same state as the source.
        fresh = Client(srv, unique_user("enc-restore"))
        expect(fzip(srv, fresh.user, "import", "upload", sealed, "--identity", ident, "--wait",
                    tmpdir=tmp), 0, "import upload --identity")
        expect(fzip(srv, fresh.user, "import", "upload", sealed, "--identity", other,
                    tmpdir=tmp), 3, "import upload, wrong key")
        expect(fzip(srv, fresh.user, "import", "upload", sealed, tmpdir=tmp), 2,
               "import upload, no key")
        check(os.listdir(tmp) == [], "plaintext left behind by upload: %r" % os.listdir(tmp))
        # The server does not decrypt: the envelope itself is not a package.
        raw = import_package(fresh, blob, validate_only=True)
        check(raw.status == jpb.IMPORT_STATUS_VALIDATION_FAILED, "raw envelope upload: %s %s"
              % (jpb.ImportStatus.Name(raw.status), raw.error.message))
        got, want = without_analytics(state(fresh)), without_analytics(state(c))
        check(got == want, "restored state differs from the source: %r"
              % sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k)))


def test_plain_exports_are_unchanged_and_bad_recipients_refused(srv):
    c = Client(srv, unique_user("enc-plain"))
    srv.seed(c.user, 40, seed=22)
    one, _, a = c.export_and_download(export_type=jpb.EXPORT_TYPE_ACCOUNTS_ONLY,
                                      pinned_timestamp=PIN)
    _, _, b = c.export_and_download(export_type=jpb.EXPORT_TYPE_ACCOUNTS_ONLY,
                                    pinned_timestamp=PIN)
    check(a == b and not one.HasField("encryption"), "plain pinned exports differ or say sealed")
    read_package(a)
    bad = [jpb.EncryptionOptions(),
           jpb.EncryptionOptions(recipients=[jpb.EncryptionRecipient(x25519_public_key=bytes(32))]),
           jpb.EncryptionOptions(recipients=[jpb.EncryptionRecipient(x25519_public_key=b"x" * 31)]),
           jpb.EncryptionOptions(recipients=[jpb.EncryptionRecipient(
               x25519_public_key=b"x" * 32, passphrase_salt=b"s" * 16, argon2_opslimit=2,
               argon2_memlimit=1 << 40)]),
           jpb.EncryptionOptions(recipients=[jpb.EncryptionRecipient(x25519_public_key=b"k" * 32)]
                                 * 17)]
    for enc in bad:
        try:
            c.create(export_type=jpb.EXPORT_TYPE_ACCOUNTS_ONLY, encryption=enc)
            raise AssertionError("accepted %r" % enc)
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, "%r: %s" % (enc, e))
    # The recipients are part of an idempotent request's parameters.
    rid = "enc-" + c.user
    enc = jpb.EncryptionOptions(recipients=[jpb.EncryptionRecipient(x25519_public_key=b"k" * 32)])
    first = c.create(export_type=jpb.EXPORT_TYPE_ACCOUNTS_ONLY, encryption=enc, request_id=rid)
    again = c.create(export_type=jpb.EXPORT_TYPE_ACCOUNTS_ONLY, encryption=enc, request_id=rid)
    check(first.export_id == again.export_id, "a replay made a new job")
    try:
        c.create(export_type=jpb.EXPORT_TYPE_ACCOUNTS_ONLY, request_id=rid)
        raise AssertionError("the same request_id without encryption was accepted")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.ALREADY_EXISTS, "%s" % e)
    c.exp.DeleteExport(epb.DeleteExportRequest(export_id=first.export_id), metadata=c.md)


def main():
    checks = Checks()
    with Fzipd() as srv:
        for t in [test_sealed_export_opens_only_with_its_keys_and_restores,
                  test_plain_exports_are_unchanged_and_bad_recipients_refused]:
            checks.run(t, srv)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
