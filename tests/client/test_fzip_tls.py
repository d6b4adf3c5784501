"""TLS and mutual TLS between the `fzip` client and fzipd.

Certificates are made here with the openssl CLI: a CA, a server
certificate for 127.0.0.1/localhost, a client certificate, and a second,
unrelated CA.  fzipd is started with --tls-cert/--tls-key (and
--tls-client-ca for mutual TLS).  Checks: the client with --tls-ca round
trips (summary, export, download with the right sha256); a plaintext
client, a client trusting another CA, or one verifying the wrong server
name fails with exit 4 and a one-line UNAVAILABLE error; under mutual TLS
a client without a certificate is refused.
"""
import hashlib
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)
from fzipd_harness import Checks, Fzipd, unique_user  # noqa: E402
from fzip_cli import Cli, check, expect  # noqa: E402


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "2", "-subj", "/CN=%s" % name, "-keyout", name + ".key", "-out",
            name + ".pem", cwd=d)


def make_leaf(d, name, ca, ext):
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write(ext)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj",
            "/CN=%s" % name, "-keyout", name + ".key", "-out", name + ".csr", cwd=d)
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
            "-CAcreateserial", "-days", "2", "-extfile", name + ".ext", "-out", name + ".pem",
            cwd=d)


def make_certs(d):
    make_ca(d, "ca")
    make_ca(d, "otherca")
    make_leaf(d, "server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
              "extendedKeyUsage=serverAuth\n")
    make_leaf(d, "client", "ca", "extendedKeyUsage=clientAuth\n")
    return {n: os.path.join(d, n) for n in ("ca", "otherca", "server", "client")}


class TlsFzipd(Fzipd):
    """fzipd serving TLS: the harness's own readiness probe is plaintext, so
    readiness here is the port line plus a TLS client call."""

    def start(self):
        return self.spawn()


def tls_cli(srv, user, certs, *extra):
    return Cli("127.0.0.1:%d" % srv.port, srv.token(user),
               extra=["--tls-ca", certs["ca"] + ".pem"] + list(extra))


def test_tls_client_round_trips_export_and_download(srv, certs, user):
    cli = tls_cli(srv, user, certs)
    s = expect(cli.run("data", "summary", "--json"), 0).json_lines()[0]
    check(int(s["transactions_count"]) == 50, "summary %r" % s)
    job = expect(cli.run("export", "create", "--wait", "--json"), 0).json_lines()[-1]
    check(job["status"] == "EXPORT_STATUS_COMPLETED", "job %r" % job)
    out = os.path.join(srv.dir, "tls.fzip")
    res = expect(cli.run("export", "download", job["export_id"], "-o", out, "--json"),
                 0).json_lines()[0]
    with open(out, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    check(res["sha256"] == job["package_sha256"] == digest, "sha256 differs over TLS")


def test_tls_server_name_override(srv, certs, user):
    expect(tls_cli(srv, user, certs, "--tls-server-name", "localhost").run("data", "summary"), 0)
    r = expect(tls_cli(srv, user, certs, "--tls-server-name", "evil.example").run(
        "data", "summary"), 4)
    check(r.err.startswith("fzip: UNAVAILABLE: "), "error line: %r" % r)


def test_plaintext_client_against_tls_server_fails_clearly(srv, certs, user):
    r = expect(Cli("127.0.0.1:%d" % srv.port, srv.token(user)).run("data", "summary",
                                                                    "--timeout", "5000"), 4)
    lines = r.err.strip().splitlines()
    check(len(lines) == 1 and lines[0].startswith("fzip: UNAVAILABLE: "), "error: %r" % r)
    check("--tls-ca" in lines[0], "no TLS hint: %r" % r)


def test_client_trusting_another_ca_is_refused(srv, certs, user):
    cli = Cli("127.0.0.1:%d" % srv.port, srv.token(user),
              extra=["--tls-ca", certs["otherca"] + ".pem"])
    expect(cli.run("data", "summary"), 4, stderr_has="fzip: UNAVAILABLE: ")


def test_client_cert_without_ca_is_usage_error(srv, certs, user):
    cli = Cli("127.0.0.1:%d" % srv.port, srv.token(user),
              extra=["--tls-cert", certs["client"] + ".pem", "--tls-key", certs["client"] + ".key"])
    expect(cli.run("data", "summary"), 2, stderr_has="need --tls-ca")


def test_mutual_tls_needs_client_certificate(srv, certs, user):
    with_cert = tls_cli(srv, user, certs, "--tls-cert", certs["client"] + ".pem",
                        "--tls-key", certs["client"] + ".key")
    s = expect(with_cert.run("data", "summary", "--json"), 0).json_lines()[0]
    check(int(s["transactions_count"]) == 50, "summary %r" % s)
    r = expect(tls_cli(srv, user, certs).run("data", "summary"), 4)
    check(r.err.startswith("fzip: UNAVAILABLE: "), "error line: %r" % r)


def run_against(checks, extra, tests, certs):
    with TlsFzipd(extra_args=extra) as srv:
        user = unique_user("tls")
        srv.seed(user, 50, seed=3)
        for t in tests:
            checks.run(t, srv, certs, user)


def main():
    checks = Checks()
    with tempfile.TemporaryDirectory(prefix="fzip-tls-") as d:
        certs = make_certs(d)
        server = ["--tls-cert", certs["server"] + ".pem", "--tls-key", certs["server"] + ".key"]
        run_against(checks, server,
                    (test_tls_client_round_trips_export_and_download,
                     test_tls_server_name_override,
                     test_plaintext_client_against_tls_server_fails_clearly,
                     test_client_trusting_another_ca_is_refused,
                     test_client_cert_without_ca_is_usage_error), certs)
        run_against(checks, server + ["--tls-client-ca", certs["ca"] + ".pem"],
                    (test_mutual_tls_needs_client_certificate,), certs)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
