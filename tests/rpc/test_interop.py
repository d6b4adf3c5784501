"""Python grpcio against the C test server: the rpc layer speaks standard gRPC.

Usage: test_interop.py <test_rpc_server> <dir with fzip_test_pb2*.py>
Calls Echo, Download and Upload (plus one UNAUTHENTICATED check) with the
stock Python client and prints "N passed, N failed" like the C harness.
"""
import hashlib
import os
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
    server = subprocess.Popen([sys.argv[1]], stdout=subprocess.PIPE)
    passed = failed = 0
    try:
        port = int(server.stdout.readline().split()[1])
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=OPTIONS) as channel:
            stub = pb_grpc.TestStub(channel)
            for test in (test_echo, test_echo_without_token_is_unauthenticated,
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
    print(f"{passed} passed, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    sys.exit(main())
