#!/usr/bin/python3
"""End-to-end: a real fzipd on loopback, called from Python grpcio.

Starts fzipd on port 0 with an SQLite store in a temporary directory and an
HS256 secret file, mints tokens with `fzipd token`, and checks what a client
sees: calls without or with bad credentials fail UNAUTHENTICATED with the
reason (on every method of every fzip.v1 service, from the descriptors), a
good token reaches every handler, health needs no token, and
SIGTERM stops the server with exit status 0.  Also checks that fzipd refuses
to start with no JWT key.  Prints the harness summary "N passed, N failed".
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import fzipd_proc  # noqa: E402

STARTUP_TIMEOUT_S = 20
SHUTDOWN_TIMEOUT_S = 20
CALL_TIMEOUT_S = 10
SECRET = "interop-test-secret-0123456789abcdef0123456789"


class Fzipd:
    """One fzipd process (tests/lib/fzipd_proc.py starts and stops it)."""

    def __init__(self, binary, workdir, extra_args=()):
        self.secret_file = os.path.join(workdir, "secret")
        with open(self.secret_file, "w") as f:
            f.write(SECRET + "\n")
        self.log_path = os.path.join(workdir, "fzipd.log")
        self.log = open(self.log_path, "w")
        args = ["--store", "sqlite:" + os.path.join(workdir, "fzip.db"),
                "--jwt-secret-file", self.secret_file,
                "--jwt-audience", "fzip", "--jwt-issuer", "interop"]
        try:
            self.proc, self.port = fzipd_proc.start(binary, args + list(extra_args), self.log,
                                                    timeout_s=STARTUP_TIMEOUT_S)
        except RuntimeError as e:
            raise RuntimeError("%s; log:\n%s" % (e, open(self.log_path).read()))

    def stop(self):
        try:
            return fzipd_proc.stop(self.proc, timeout_s=SHUTDOWN_TIMEOUT_S)
        finally:
            self.log.close()


def mint(binary, secret_file, user, *extra):
    out = subprocess.run([binary, "token", "--secret-file", secret_file, "--user", user,
                          "--issuer", "interop", "--audience", "fzip", *extra],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


class Ctx:
    pass


def call_error(fn, request, metadata):
    """Returns the grpc.RpcError of a call expected to fail."""
    try:
        resp = fn(request, metadata=metadata, timeout=CALL_TIMEOUT_S)
        # Server streaming: the error shows while iterating.
        if hasattr(resp, "__iter__") and not hasattr(resp, "ListFields"):
            for _ in resp:
                pass
    except ctx.grpc.RpcError as e:  # noqa: F821 (module-level ctx)
        return e
    raise AssertionError("call unexpectedly succeeded")


def test_call_without_token_is_unauthenticated_with_reason():
    e = call_error(ctx.data.GetDataSummary, ctx.pb.GetDataSummaryRequest(), None)
    assert e.code() == ctx.grpc.StatusCode.UNAUTHENTICATED, e.code()
    assert "missing authorization" in e.details(), e.details()


def test_non_bearer_header_is_unauthenticated():
    e = call_error(ctx.data.GetDataSummary, ctx.pb.GetDataSummaryRequest(),
                   [("authorization", "Basic dXNlcjpwYXNz")])
    assert e.code() == ctx.grpc.StatusCode.UNAUTHENTICATED
    assert "not a Bearer" in e.details(), e.details()


def test_malformed_token_is_unauthenticated():
    e = call_error(ctx.data.GetDataSummary, ctx.pb.GetDataSummaryRequest(),
                   [("authorization", "Bearer not.a.token")])
    assert e.code() == ctx.grpc.StatusCode.UNAUTHENTICATED
    assert "malformed" in e.details(), e.details()


def test_token_signed_with_another_secret_is_unauthenticated():
    other = os.path.join(ctx.workdir, "other-secret")
    with open(other, "w") as f:
        f.write("a-completely-different-secret-0123456789abcdef")
    token = mint(ctx.binary, other, "mallory")
    e = call_error(ctx.data.GetDataSummary, ctx.pb.GetDataSummaryRequest(),
                   [("authorization", "Bearer " + token)])
    assert e.code() == ctx.grpc.StatusCode.UNAUTHENTICATED
    assert "bad signature" in e.details(), e.details()


def test_token_for_another_audience_is_unauthenticated():
    out = subprocess.run([ctx.binary, "token", "--secret-file", ctx.server.secret_file,
                          "--user", "alice", "--issuer", "interop", "--audience", "other"],
                         check=True, capture_output=True, text=True)
    e = call_error(ctx.data.GetDataSummary, ctx.pb.GetDataSummaryRequest(),
                   [("authorization", "Bearer " + out.stdout.strip())])
    assert e.code() == ctx.grpc.StatusCode.UNAUTHENTICATED
    assert "wrong audience" in e.details(), e.details()


def test_good_token_reaches_the_data_service():
    resp = ctx.data.GetDataSummary(ctx.pb.GetDataSummaryRequest(),
                                   metadata=[("authorization", "Bearer " + ctx.token)],
                                   timeout=CALL_TIMEOUT_S)
    assert resp is not None


def fzip_v1_methods():
    """Every method of every fzip.v1 service, read from the generated file
    descriptors (so a service or method added to proto/ is covered):
    (path, client_streaming, server_streaming)."""
    import glob
    import importlib
    methods = []
    for path in sorted(glob.glob(os.path.join(ctx.stubs, "fzip", "v1", "*_pb2.py"))):
        module = importlib.import_module("fzip.v1." + os.path.basename(path)[:-3])
        for service in module.DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                methods.append(("/%s/%s" % (service.full_name, m.name),
                                m.client_streaming, m.server_streaming))
    return methods


def call_status(path, client_streaming, server_streaming, metadata):
    """Calls `path` with one empty request message (every request type
    encodes as zero bytes when empty) and returns the status code the call
    ended with, or OK.  A server stream is read only to its first message:
    a message proves the call got past authentication."""
    grpc = ctx.grpc
    kind = {(False, False): ctx.channel.unary_unary, (False, True): ctx.channel.unary_stream,
            (True, False): ctx.channel.stream_unary, (True, True): ctx.channel.stream_stream}
    fn = kind[(client_streaming, server_streaming)](
        path, request_serializer=lambda _: b"", response_deserializer=lambda b: b)
    request = iter([b""]) if client_streaming else b""
    try:
        resp = fn(request, metadata=metadata, timeout=CALL_TIMEOUT_S)
        if server_streaming:
            next(iter(resp), None)
            resp.cancel()
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def test_every_fzip_method_refuses_a_missing_or_badly_signed_token():
    other = os.path.join(ctx.workdir, "other-secret-2")
    with open(other, "w") as f:
        f.write("yet-another-different-secret-0123456789abcdef")
    forged = [("authorization", "Bearer " + mint(ctx.binary, other, "alice"))]
    methods = fzip_v1_methods()
    services = {path.split("/")[1] for path, _, _ in methods}
    assert {"fzip.v1.DataService", "fzip.v1.ExportService",
            "fzip.v1.ImportService", "fzip.v1.ScheduleService"} <= services, services
    wrong = []
    for path, cs, ss in methods:
        for label, metadata in (("no token", None), ("forged token", forged)):
            code = call_status(path, cs, ss, metadata)
            if code != ctx.grpc.StatusCode.UNAUTHENTICATED:
                wrong.append("%s with %s: %s" % (path, label, code))
    assert not wrong, "\n".join(wrong)


def test_good_token_reaches_every_fzip_method():
    # Past authentication, a handler answers the empty request (mostly
    # INVALID_ARGUMENT or NOT_FOUND); UNAUTHENTICATED would be auth refusing a
    # good token, UNIMPLEMENTED a method fzipd does not serve,
    # DEADLINE_EXCEEDED a handler that never answers an empty request.
    good = [("authorization", "Bearer " + ctx.token)]
    refused = (ctx.grpc.StatusCode.UNAUTHENTICATED, ctx.grpc.StatusCode.UNIMPLEMENTED,
               ctx.grpc.StatusCode.DEADLINE_EXCEEDED)
    wrong = []
    for path, cs, ss in fzip_v1_methods():
        code = call_status(path, cs, ss, good)
        if code in refused:
            wrong.append("%s: %s" % (path, code))
    assert not wrong, "\n".join(wrong)


def test_health_needs_no_token_and_reports_serving():
    resp = ctx.health_check(ctx.health_pb.HealthCheckRequest(service=""), timeout=CALL_TIMEOUT_S)
    assert resp.status == ctx.health_pb.HealthCheckResponse.SERVING, resp.status


def test_fzipd_refuses_to_start_without_a_jwt_key():
    env = {k: v for k, v in os.environ.items() if not k.startswith("FZIP_")}
    out = subprocess.run([ctx.binary, "serve", "--listen", "127.0.0.1:0", "--store",
                          "sqlite:" + os.path.join(ctx.workdir, "nokey.db")],
                         capture_output=True, text=True, env=env, timeout=STARTUP_TIMEOUT_S)
    assert out.returncode == 2, out.returncode
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "no JWT key configured" in lines[0], out.stderr


def test_sigterm_stops_fzipd_with_status_zero():
    status = ctx.server.stop()
    assert status == 0, "exit status %r; log:\n%s" % (status, open(ctx.server.log_path).read())
    assert '"msg":"stopped"' in open(ctx.server.log_path).read()


TESTS = [
    test_call_without_token_is_unauthenticated_with_reason,
    test_non_bearer_header_is_unauthenticated,
    test_malformed_token_is_unauthenticated,
    test_token_signed_with_another_secret_is_unauthenticated,
    test_token_for_another_audience_is_unauthenticated,
    test_good_token_reaches_the_data_service,
    test_every_fzip_method_refuses_a_missing_or_badly_signed_token,
    test_good_token_reaches_every_fzip_method,
    test_health_needs_no_token_and_reports_serving,
    test_fzipd_refuses_to_start_without_a_jwt_key,
    test_sigterm_stops_fzipd_with_status_zero,  # last: it stops the server
]

ctx = Ctx()


def setup(args):
    sys.path.insert(0, args.stubs)
    import grpc
    from fzip.v1 import data_service_pb2, data_service_pb2_grpc
    # The generated grpc/health/v1 package would be shadowed by the grpc
    # package itself, so load the message module directly and call by path.
    sys.path.insert(0, os.path.join(args.stubs, "grpc", "health", "v1"))
    import health_pb2
    ctx.grpc = grpc
    ctx.binary = args.fzipd
    ctx.stubs = args.stubs
    ctx.workdir = tempfile.mkdtemp(prefix="fzip-interop-")
    ctx.server = Fzipd(args.fzipd, ctx.workdir)
    ctx.token = mint(args.fzipd, ctx.server.secret_file, "alice")
    channel = grpc.insecure_channel("127.0.0.1:%d" % ctx.server.port)
    ctx.channel = channel
    ctx.pb = data_service_pb2
    ctx.data = data_service_pb2_grpc.DataServiceStub(channel)
    ctx.health_pb = health_pb2
    ctx.health_check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--fzipd", required=True)
    p.add_argument("--stubs", required=True)
    args = p.parse_args()
    passed = failed = 0
    try:
        setup(args)
    except Exception:
        traceback.print_exc()
        print("0 passed, 1 failed", file=sys.stderr)
        return 1
    try:
        for t in TESTS:
            print("RUN  " + t.__name__, file=sys.stderr)
            try:
                t()
                passed += 1
                print("ok   " + t.__name__, file=sys.stderr)
            except Exception:
                traceback.print_exc()
                failed += 1
                print("FAIL " + t.__name__, file=sys.stderr)
    finally:
        if ctx.server.proc.poll() is None:
            ctx.server.proc.kill()
            ctx.server.proc.wait()
        if failed:
            print("kept for the failure: " + ctx.workdir, file=sys.stderr)
        else:
            shutil.rmtree(ctx.workdir, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
