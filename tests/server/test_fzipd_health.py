"""Health that tells the truth: real fzipd, grpc.health.v1 over grpcio.

- Names: "" and each fzip.v1 service follow the store; "liveness" and
  grpc.health.v1.Health say only that the process serves; any other name
  is NOT_FOUND (Check) / SERVICE_UNKNOWN (Watch), as the health spec says.
- Outage (MongoDB only, FZIP_FERRETDB_BIN set): fzipd runs on a FerretDB
  this test starts on a fixed port; killed, "" and the fzip.v1 services
  turn NOT_SERVING within interval + ping timeout (+ slack), every Check
  answering at once, while "liveness" stays SERVING; FerretDB restarted on
  the same port, they turn SERVING again; a Watch of "" sees both changes.
  A call made during the outage gets a message without the database's
  address (docs/GRPC.md "Error model"), and fzipd's log keeps the full one.
  /metrics (fzipd runs with --metrics-listen) answers within
  SCRAPE_BOUND_S all through the outage, and fzip_jobs_queued turns NaN
  (never a stale count) once the background count fails; numbers again
  after the restart.
- Logs: health calls log at debug only (probes would flood info); numbers
  and booleans in fzipd's lines are JSON numbers and booleans.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from fzipd_harness import Checks, Fzipd  # noqa: E402
from fzip_e2e import check, metrics_port  # noqa: E402
from fzip.v1 import data_service_pb2 as dpb  # noqa: E402
from fzip.v1 import data_service_pb2_grpc as dgrpc  # noqa: E402

import grpc  # noqa: E402

# The generated grpc/health/v1 package would be shadowed by the grpc
# package itself, so load the message module directly and call by path.
sys.path.insert(0, os.path.join(os.environ["FZIP_PY_STUBS"], "grpc", "health", "v1"))
import health_pb2  # noqa: E402

INTERVAL_MS = 300
PING_TIMEOUT_MS = 1000  # SVC_HEALTH_PING_TIMEOUT_MS
SLACK_S = 3.0           # scheduling on a loaded 2-core machine
CHANGE_BOUND_S = (INTERVAL_MS + PING_TIMEOUT_MS) / 1000.0 + SLACK_S
CHECK_ANSWER_S = 1.0    # a probe reads a table: never waits on the store
STORE_NAMES = ["", "fzip.v1.ExportService", "fzip.v1.ImportService", "fzip.v1.DataService",
               "fzip.v1.ScheduleService"]
PROCESS_NAMES = ["liveness", "grpc.health.v1.Health"]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


def health_calls(channel):
    check_call = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString)
    watch_call = channel.unary_stream(
        "/grpc.health.v1.Health/Watch",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString)
    return check_call, watch_call


def status_of(check_call, name):
    started = time.monotonic()
    resp = check_call(health_pb2.HealthCheckRequest(service=name), timeout=5)
    took = time.monotonic() - started
    check(took < CHECK_ANSWER_S, "Check(%r) took %.2f s" % (name, took))
    return resp.status


def wait_status(check_call, names, want, bound_s):
    started = time.monotonic()
    while True:
        got = {n: status_of(check_call, n) for n in names}
        if all(s == want for s in got.values()):
            return time.monotonic() - started
        check(time.monotonic() - started < bound_s,
              "not %d within %.1f s: %r" % (want, bound_s, got))
        time.sleep(0.1)


class Watcher:
    """A Watch stream read on a thread: every status it was sent."""

    def __init__(self, watch_call, name):
        self.seen = []
        self.stream = watch_call(health_pb2.HealthCheckRequest(service=name), timeout=120)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            for resp in self.stream:
                self.seen.append(resp.status)
        except grpc.RpcError:
            pass  # cancelled at the end of the test

    def stop(self):
        self.stream.cancel()
        self.thread.join(10)


def test_names_and_unknown_name_on_sqlite(tmp):
    with Fzipd(extra_args=["--health-check-interval-ms", str(INTERVAL_MS)]) as srv:
        check_call, watch_call = health_calls(srv.channel)
        for name in STORE_NAMES + PROCESS_NAMES:
            check(status_of(check_call, name) == SERVING, "%r not SERVING" % name)
        try:
            check_call(health_pb2.HealthCheckRequest(service="fzip.v1.NoSuchService"), timeout=5)
            check(False, "unknown name answered")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.NOT_FOUND, "unknown name: %s" % e.code())
        w = Watcher(watch_call, "fzip.v1.NoSuchService")
        time.sleep(0.5)
        w.stop()
        check(w.seen[:1] == [SERVICE_UNKNOWN], "Watch of an unknown name: %r" % w.seen)


def log_records(srv):
    with open(srv.log_path, encoding="utf-8", errors="replace") as f:
        return [json.loads(line) for line in f if line.startswith("{")]


def test_logs_are_typed_and_probes_are_not_at_info(tmp):
    srv = Fzipd(extra_args=["--health-check-interval-ms", str(INTERVAL_MS)]).start()
    try:
        check_call, _ = health_calls(srv.channel)
        for _ in range(5):
            status_of(check_call, "")
        dgrpc.DataServiceStub(srv.channel).GetDataSummary(
            dpb.GetDataSummaryRequest(), metadata=srv.metadata("log-user"), timeout=10)
        srv.stop()  # every call's line is out once fzipd exited
        recs = log_records(srv)
    finally:
        srv.stop()
        srv.tmp.cleanup()
    done = [r for r in recs if r.get("msg") == "call done"]
    check(not [r for r in done if "grpc.health" in r["method"]],
          "health calls logged at info: %r" % done)
    data = [r for r in done if r["method"].endswith("/GetDataSummary")]
    check(len(data) == 1, "one GetDataSummary line: %r" % done)
    r = data[0]
    check(type(r["grpc_code"]) is int and r["grpc_code"] == 0, "grpc_code: %r" % r)
    check(type(r["duration_ms"]) is int and r["duration_ms"] >= 0, "duration_ms: %r" % r)
    check(r["delivered"] is True, "delivered: %r" % r)
    listening = [r for r in recs if r.get("msg") == "listening"]
    check(listening and type(listening[0]["port"]) is int and listening[0]["tls"] is False,
          "listening line: %r" % listening)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False


class FerretDB:
    """A private FerretDB on a fixed port, so a restart comes back where
    fzipd looks for it."""

    def __init__(self, binary, workdir):
        self.binary = binary
        self.data = os.path.join(workdir, "ferretdb-data")
        os.makedirs(self.data, exist_ok=True)
        self.log = open(os.path.join(workdir, "ferretdb.log"), "ab")
        self.port = free_port()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "-data-dir", self.data, "-listen", "127.0.0.1:%d" % self.port],
            stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while not accepts(self.port):
            check(self.proc.poll() is None, "FerretDB exited at start")
            check(time.monotonic() < deadline, "FerretDB not accepting after 60 s")
            time.sleep(0.1)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def uri(self):
        return "mongodb://127.0.0.1:%d/fzip_health_e2e" % self.port


OUTAGE_CALL_TIMEOUT_S = 60  # the store's retry budget (~10 s) with room
CALL_DONE_WAIT_S = 10


def check_store_error_is_sanitised(srv, db):
    """A call while the store is down: the client's message names neither
    the database's address, a URI nor a path, but does name the request id;
    fzipd's call-done line for that id keeps the full message."""
    rid = "health-outage-call-1"
    stub = dgrpc.DataServiceStub(srv.channel)
    try:
        stub.GetDataSummary(dpb.GetDataSummaryRequest(), timeout=OUTAGE_CALL_TIMEOUT_S,
                            metadata=srv.metadata("outage-user") + (("x-request-id", rid),))
        raise AssertionError("GetDataSummary succeeded with the store down")
    except grpc.RpcError as e:
        code, msg = e.code(), e.details() or ""
    print("client saw %s: %s" % (code, msg), flush=True)
    for leak in ("127.0.0.1", str(db.port), "mongodb://", "/tmp"):
        check(leak not in msg, "client message leaks %r: %r" % (leak, msg))
    check("request id %s" % rid in msg, "client message lacks the request id: %r" % msg)
    # fzipd logs "call done" once the status is sent, which may be after the
    # client has it.
    deadline = time.monotonic() + CALL_DONE_WAIT_S
    while True:
        with open(srv.log_path, encoding="utf-8", errors="replace") as f:
            lines = [json.loads(line) for line in f if line.startswith("{")]
        done = [r for r in lines if r.get("msg") == "call done" and r.get("request_id") == rid]
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    check(len(done) == 1, "call done lines for %s: %r" % (rid, done))
    full = done[0].get("error", "")
    print("fzipd logged: %s" % full, flush=True)
    check(str(db.port) in full, "the log lost the full message (no FerretDB port %d): %r"
          % (db.port, done[0]))


SCRAPE_BOUND_S = 2.0      # a scrape renders only; it never waits on the store
QUEUED_NAN_WAIT_S = 45.0  # QUEUE_GAUGE_INTERVAL_MS + two counts' retry budgets + slack


def queued_samples(port):
    """fzip_jobs_queued's values by kind from one scrape, which must answer
    within SCRAPE_BOUND_S."""
    t0 = time.monotonic()
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                timeout=10 * SCRAPE_BOUND_S) as r:
        text = r.read().decode()
    took = time.monotonic() - t0
    check(took < SCRAPE_BOUND_S, "a scrape took %.2f s" % took)
    out = {}
    for line in text.splitlines():
        if line.startswith("fzip_jobs_queued{"):
            labels, val = line.rsplit(" ", 1)
            out[labels[labels.index("{"):]] = float(val)
    return out


def wait_queued(port, want_nan, bound_s):
    """Scrapes until every fzip_jobs_queued sample is NaN (want_nan) or a
    number; returns the seconds it took."""
    t0 = time.monotonic()
    while True:
        q = queued_samples(port)
        if q and all((v != v) == want_nan for v in q.values()):
            return time.monotonic() - t0
        check(time.monotonic() - t0 < bound_s, "fzip_jobs_queued after %.0f s: %r" % (bound_s, q))
        time.sleep(0.5)


def test_store_outage_turns_not_serving_and_back(tmp):
    binary = os.environ.get("FZIP_FERRETDB_BIN")
    if not binary:
        print("skip: FZIP_FERRETDB_BIN not set (the MongoDB variant runs the outage)")
        return
    db = FerretDB(binary, tmp)
    db.start()
    try:
        with Fzipd(store=db.uri(),
                   extra_args=["--health-check-interval-ms", str(INTERVAL_MS),
                               "--metrics-listen", "127.0.0.1:0"]) as srv:
            check_call, watch_call = health_calls(srv.channel)
            mport = metrics_port(srv)
            wait_queued(mport, False, QUEUED_NAN_WAIT_S)
            wait_status(check_call, STORE_NAMES + PROCESS_NAMES, SERVING, CHANGE_BOUND_S)
            w = Watcher(watch_call, "")
            db.kill()
            took = wait_status(check_call, STORE_NAMES, NOT_SERVING, CHANGE_BOUND_S)
            print("NOT_SERVING %.2f s after the kill" % took, flush=True)
            for name in PROCESS_NAMES:
                check(status_of(check_call, name) == SERVING, "%r followed the store" % name)
            check_store_error_is_sanitised(srv, db)
            took = wait_queued(mport, True, QUEUED_NAN_WAIT_S)
            print("fzip_jobs_queued NaN %.2f s later; every scrape < %.1f s"
                  % (took, SCRAPE_BOUND_S), flush=True)
            db.start()
            took = wait_status(check_call, STORE_NAMES, SERVING, CHANGE_BOUND_S)
            print("SERVING %.2f s after the restart" % took, flush=True)
            wait_queued(mport, False, QUEUED_NAN_WAIT_S)
            time.sleep(2 * SVC_WATCH_POLL_S)
            w.stop()
            check(w.seen == [SERVING, NOT_SERVING, SERVING], "Watch saw %r" % w.seen)
            with open(srv.log_path, encoding="utf-8", errors="replace") as f:
                log = f.read()  # read_log() keeps only the tail
            check("store unreachable" in log and "store reachable again" in log,
                  "transitions not logged: %s" % log)
    finally:
        db.kill()


SVC_WATCH_POLL_S = 0.1  # SVC_HEALTH_WATCH_POLL_MS


def main():
    checks = Checks()
    with tempfile.TemporaryDirectory(prefix="fzip-health-") as tmp:
        for t in [test_names_and_unknown_name_on_sqlite,
                  test_logs_are_typed_and_probes_are_not_at_info,
                  test_store_outage_turns_not_serving_and_back]:
            checks.run(t, tmp)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
