"""Python grpcio against the C test server: the rpc layer speaks standard gRPC.

Usage: test_interop.py <test_rpc_server> <dir with fzip_test_pb2*.py>
Calls Echo, Download and Upload (plus one UNAUTHENTICATED check) with the
stock Python client and prints "N passed, N failed" like the C harness.
x-request-id: the client's id comes back in the trailing metadata (a
missing or unusable one is replaced by a UUID), failed calls included, and
the server's "call done" line of each call carries it, and so does the
Echo handler's own log line (the layer sets it on the worker thread).
"""
import hashlib
import json
import os
import re
import tempfile
import signal
import subprocess
import sys
import time

sys.path.insert(0, sys.argv[2])
import grpc  # noqa: E402
import fzip_test_pb2 as pb  # noqa: E402
import fzip_test_pb2_grpc as pb_grpc  # noqa: E402

MIB = 1024 * 1024
TOKEN = (("authorization", "Bearer good-pyuser"),)
OPTIONS = [("grpc.max_receive_message_length", 4 * MIB + 65536),
           ("grpc.max_send_message_length", 4 * MIB + 65536)]


def test_echo(stub):
    resp = stub.Echo(pb.EchoRequest(text="from python"), metadata=TOKEN, timeout=10)
    assert resp.text == "from python", resp
    assert resp.user_id == "pyuser", resp


def test_echo_without_token_is_unauthenticated(stub):
    try:
        stub.Echo(pb.EchoRequest(text="x"), timeout=10)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e
        return
    raise AssertionError("call without a token succeeded")


REQUEST_ID = "req-Py.interop_42/x"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ids_sent = []  # request ids the server must have logged
HANDLER_LINE_TEXT = "handler line carries the request id"


def trailing_request_id(call_or_error):
    got = [v for k, v in call_or_error.trailing_metadata() if k == "x-request-id"]
    assert len(got) == 1, call_or_error.trailing_metadata()
    return got[0]


def test_request_id_comes_back_in_trailing_metadata(stub):
    _, call = stub.Echo.with_call(pb.EchoRequest(text=HANDLER_LINE_TEXT),
                                  metadata=TOKEN + (("x-request-id", REQUEST_ID),), timeout=10)
    assert trailing_request_id(call) == REQUEST_ID
    ids_sent.append(REQUEST_ID)


def test_missing_or_unusable_request_id_is_replaced_by_a_uuid(stub):
    seen = set()
    for extra in ((), (("x-request-id", "x" * 129),), (("x-request-id", ""),)):
        _, call = stub.Echo.with_call(pb.EchoRequest(text="id"), metadata=TOKEN + extra,
                                      timeout=10)
        rid = trailing_request_id(call)
        assert UUID_RE.match(rid), rid
        seen.add(rid)
        ids_sent.append(rid)
    assert len(seen) == 3, seen
    # The longest id kept as it came: 128 bytes.
    longest = "y" * 128
    _, call = stub.Echo.with_call(pb.EchoRequest(text="id"),
                                  metadata=TOKEN + (("x-request-id", longest),), timeout=10)
    assert trailing_request_id(call) == longest


def test_failed_call_returns_its_request_id(stub):
    try:
        stub.Echo(pb.EchoRequest(text="x"), metadata=(("x-request-id", "req-unauth"),),
                  timeout=10)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e
        assert trailing_request_id(e) == "req-unauth"
        ids_sent.append("req-unauth")
        return
    raise AssertionError("call without a token succeeded")


def check_logged_request_ids(log_text):
    """Every id sent is on exactly one "call done" line, as a string."""
    done = [json.loads(line) for line in log_text.splitlines()
            if line.startswith("{") and '"call done"' in line]
    logged = [r.get("request_id") for r in done]
    for rid in ids_sent:
        assert logged.count(rid) == 1, (rid, logged)
    assert all(isinstance(r, str) and r for r in logged), logged
    # The Echo handler's own line: once, with the call's id, key not doubled.
    echo = [line for line in log_text.splitlines()
            if line.startswith("{") and HANDLER_LINE_TEXT in line]
    assert len(echo) == 1, echo
    assert echo[0].count('"request_id":') == 1, echo
    assert json.loads(echo[0]).get("request_id") == REQUEST_ID, echo


def test_download_64mib(stub):
    total, got, start = 64 * MIB, 0, time.monotonic()
    for chunk in stub.Download(pb.DownloadRequest(total_bytes=total, chunk_bytes=MIB),
                               metadata=TOKEN, timeout=120):
        assert chunk.data[0] == got % 251
        got += len(chunk.data)
    assert got == total, got
    secs = time.monotonic() - start
    print(f"  python download: 64 MiB in {secs * 1000:.0f} ms ({64 / secs:.0f} MiB/s)",
          file=sys.stderr)


def test_upload_64mib_sha256(stub):
    block = bytes(range(256)) * (MIB // 256)
    want = hashlib.sha256()
    for _ in range(64):
        want.update(block)
    start = time.monotonic()
    resp = stub.Upload((pb.Chunk(data=block) for _ in range(64)), metadata=TOKEN, timeout=120)
    secs = time.monotonic() - start
    assert resp.total_bytes == 64 * MIB, resp
    assert resp.sha256 == want.hexdigest(), resp
    print(f"  python upload: 64 MiB in {secs * 1000:.0f} ms ({64 / secs:.0f} MiB/s)",
          file=sys.stderr)


def main():
    log = tempfile.TemporaryFile()
    server = subprocess.Popen([sys.argv[1]], stdout=subprocess.PIPE, stderr=log)
    passed = failed = 0
    try:
        port = int(server.stdout.readline().split()[1])
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=OPTIONS) as channel:
            stub = pb_grpc.TestStub(channel)
            for test in (test_echo, test_echo_without_token_is_unauthenticated,
                         test_request_id_comes_back_in_trailing_metadata,
                         test_missing_or_unusable_request_id_is_replaced_by_a_uuid,
                         test_failed_call_returns_its_request_id,
                         test_download_64mib, test_upload_64mib_sha256):
                print(f"RUN  {test.__name__}", file=sys.stderr)
                try:
                    test(stub)
                    passed += 1
                    print(f"ok   {test.__name__}", file=sys.stderr)
                except Exception as e:  # report every failure, keep going
                    failed += 1
                    print(f"FAIL {test.__name__}: {e!r}", file=sys.stderr)
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
    if code != 0:
        failed += 1
        print(f"FAIL server exit code {code}", file=sys.stderr)
    log.seek(0)
    log_text = log.read().decode(errors="replace")
    try:
        check_logged_request_ids(log_text)
        passed += 1
        print("ok   check_logged_request_ids", file=sys.stderr)
    except Exception as e:
        failed += 1
        print(f"FAIL check_logged_request_ids: {e!r}", file=sys.stderr)
        sys.stderr.write(log_text[-4000:])
    print(f"{passed} passed, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    sys.exit(main())
