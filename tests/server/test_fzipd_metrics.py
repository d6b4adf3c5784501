"""Prometheus metrics: a real fzipd (SQLite) with --metrics-listen 127.0.0.1:0,
real gRPC calls over the generated stubs, /metrics scraped over HTTP and
parsed with prometheus-client's text parser (the PyPI package, from the
tests' venv of PyPI tools that tests/helm's fixture installs).

- fzipd logs the metrics port as a typed JSON number ("metrics listening").
- An export run to completion: fzip_rpc_requests_total{CreateExport, OK}
  moves by exactly 1, the duration histogram's count by the calls made,
  fzip_export_bytes_total by the package's size, the export's transitions
  reach EXPORT_STATUS_COMPLETED and its duration is observed once.
- An UNAUTHENTICATED call is counted with its code; an unknown method is
  counted under "(unknown)", never under the path the client sent.
- An upload (not started) moves fzip_import_bytes_total by its size, counts
  one IMPORT_STATUS_UPLOADED transition and observes no job duration.
- fzip_build_info is 1 with the version label; other paths are 404 and
  other methods 405.
- Queue depth (a second fzipd with one export worker held in its upload
  phase by the export.uploading failpoint): a second export waits, and
  fzip_jobs_queued{kind="export"} reads 1 from the store; 0 once both ran
  (the gauge is refreshed in the background: waits, bounded, for each).
- Counts are awaited until every expected series moved, then checked exact.
"""
import glob
import os
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from fzipd_harness import Checks, Fzipd, Hold, unique_user  # noqa: E402
from fzip_e2e import Client, check, metrics_port, upload, wait_for  # noqa: E402
from fzip.v1 import data_service_pb2 as dpb  # noqa: E402
from fzip.v1 import export_service_pb2 as epb  # noqa: E402
from fzip.v1 import jobs_pb2 as jpb  # noqa: E402

import grpc  # noqa: E402

# prometheus-client lives in the venv (pure Python); appended, so that the
# system's grpcio and protobuf still come first.
for site in glob.glob(os.path.join(os.environ["FZIP_PY_TOOLS_VENV"], "lib", "python3*",
                                   "site-packages")):
    sys.path.append(site)
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

SCRAPE_TIMEOUT_S = 10
SEED_TX = 50
WAIT_S = 30
# fzip_jobs_queued is refreshed every QUEUE_GAUGE_INTERVAL_MS (5 s): the
# first export is held (the one worker stays busy) until the gauge has
# read the second one queued.
EXPORT = "/fzip.v1.ExportService/CreateExport"
SUMMARY = "/fzip.v1.DataService/GetDataSummary"
# (family, labels, amount) the export-and-calls test moves each series by.
EXPECTED_MOVES = [
    ("fzip_rpc_requests_total", {"method": EXPORT, "code": "OK"}, 1),
    ("fzip_rpc_requests_total", {"method": SUMMARY, "code": "OK"}, 1),
    ("fzip_rpc_requests_total", {"method": SUMMARY, "code": "UNAUTHENTICATED"}, 1),
    ("fzip_rpc_requests_total", {"method": "(unknown)", "code": "UNIMPLEMENTED"}, 1),
    ("fzip_rpc_duration_seconds_count", {"method": SUMMARY}, 2),
    ("fzip_job_transitions_total", {"kind": "export", "state": "EXPORT_STATUS_INITIATED"}, 1),
    ("fzip_job_transitions_total", {"kind": "export", "state": "EXPORT_STATUS_COMPLETED"}, 1),
    ("fzip_job_duration_seconds_count", {"kind": "export", "outcome": "EXPORT_STATUS_COMPLETED"},
     1),
]


def get(port, path, method="GET"):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method,
                                 data=b"x" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=SCRAPE_TIMEOUT_S) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def scrape(port):
    """{(sample name, frozenset(labels)): value} and {family: type}, parsed
    by the real Prometheus text parser (which raises on malformed text)."""
    status, ctype, text = get(port, "/metrics")
    check(status == 200, "GET /metrics: %d" % status)
    check(ctype.startswith("text/plain") and "version=0.0.4" in ctype, "content type " + ctype)
    samples, types = {}, {}
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, types


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_export_and_calls_move_the_counters_by_the_right_amounts(srv, port):
    c = Client(srv, unique_user("metrics"))
    srv.seed(c.user, SEED_TX, seed=3)
    before, types = scrape(port)
    check(types.get("fzip_rpc_requests") == "counter", "types: %r" % types)
    check(types.get("fzip_rpc_duration_seconds") == "histogram", "types: %r" % types)
    check(types.get("fzip_jobs_queued") == "gauge", "types: %r" % types)

    final, info, data = c.export_and_download(export_type=jpb.EXPORT_TYPE_COMPLETE)
    c.data.GetDataSummary(dpb.GetDataSummaryRequest(), metadata=c.md)
    try:
        c.data.GetDataSummary(dpb.GetDataSummaryRequest(),
                              metadata=(("authorization", "Bearer not-a-token"),))
        raise AssertionError("a bad token was accepted")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.UNAUTHENTICATED, "bad token: %s" % e.code())
    try:
        srv.channel.unary_unary("/no.such.Service/Call%d" % os.getpid())(b"", timeout=10)
        raise AssertionError("an unknown method answered")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.UNIMPLEMENTED, "unknown method: %s" % e.code())

    # Calls are counted as their status goes out (the client may see it
    # first) and the queue gauge is refreshed every few seconds: wait until
    # every series checked below has moved by its amount (bounded), then
    # assert the exact values, so that a late count fails as an excess.
    moved = [(name, labels, n) for name, labels, n in EXPECTED_MOVES] + [
        ("fzip_export_bytes_total", {}, len(data))]

    def settled():
        s, _ = scrape(port)
        if all(value(s, name, **labels) - value(before, name, **labels) >= n
               for name, labels, n in moved) and all(
                   s.get(("fzip_jobs_queued", frozenset({("kind", k)}))) == 0
                   for k in ("export", "import")):
            return s
        return None
    after = wait_for(settled, WAIT_S, "every expected series to move")

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    check(delta("fzip_rpc_requests_total", method=EXPORT, code="OK") == 1,
          "CreateExport OK moved by %r" % delta("fzip_rpc_requests_total", method=EXPORT,
                                                 code="OK"))
    check(delta("fzip_rpc_requests_total", method=SUMMARY, code="OK") == 1, "summary OK")
    check(delta("fzip_rpc_requests_total", method=SUMMARY, code="UNAUTHENTICATED") == 1,
          "UNAUTHENTICATED not counted with its code")
    check(delta("fzip_rpc_requests_total", method="(unknown)", code="UNIMPLEMENTED") == 1,
          "unknown method not counted under (unknown)")
    check(not any("no.such.Service" in dict(k[1]).get("method", "") for k in after),
          "a client-sent path became a label")
    check(delta("fzip_rpc_duration_seconds_count", method=SUMMARY) == 2,
          "summary histogram count %r" % delta("fzip_rpc_duration_seconds_count",
                                               method=SUMMARY))
    check(value(after, "fzip_rpc_duration_seconds_bucket", method=SUMMARY, le="+Inf")
          == value(after, "fzip_rpc_duration_seconds_count", method=SUMMARY), "+Inf != count")
    check(delta("fzip_export_bytes_total") == len(data) == final.package_size,
          "export bytes %r, package %d" % (delta("fzip_export_bytes_total"), len(data)))
    check(delta("fzip_job_transitions_total", kind="export", state="EXPORT_STATUS_COMPLETED")
          == 1, "export transitions did not reach COMPLETED once")
    check(delta("fzip_job_transitions_total", kind="export", state="EXPORT_STATUS_INITIATED")
          == 1, "export creation not counted")
    check(delta("fzip_job_duration_seconds_count", kind="export",
                outcome="EXPORT_STATUS_COMPLETED") == 1, "export duration not observed once")
    for kind in ("export", "import"):
        key = ("fzip_jobs_queued", frozenset({("kind", kind)}))
        check(key in after and after[key] == 0, "%s queue: %r" % (kind, after.get(key)))

    job = upload(c, data, start=False)
    check(job.import_id, "no import id")
    final_scrape, _ = scrape(port)
    check(value(final_scrape, "fzip_import_bytes_total") - value(after, "fzip_import_bytes_total")
          == len(data), "import bytes")

    # An upload's record is created in UPLOADED: counted once, and its
    # creation is no end (no ~0 s duration observed at upload begin).
    def moved(name, **labels):
        return value(final_scrape, name, **labels) - value(after, name, **labels)
    check(moved("fzip_job_transitions_total", kind="import", state="IMPORT_STATUS_UPLOADED") == 1,
          "import creation not counted once at IMPORT_STATUS_UPLOADED")
    check(moved("fzip_job_duration_seconds_count", kind="import",
                outcome="IMPORT_STATUS_UPLOADED") == 0,
          "an upload's creation observed a job duration")


def test_build_info_and_other_paths_and_methods(srv, port):
    samples, _ = scrape(port)
    infos = [k for k in samples if k[0] == "fzip_build_info"]
    check(len(infos) == 1 and samples[infos[0]] == 1, "build info %r" % infos)
    check(dict(infos[0][1]).get("version"), "build info without a version")
    status, _, _ = get(port, "/")
    check(status == 404, "GET / answered %d" % status)
    status, _, _ = get(port, "/metrics/x")
    check(status == 404, "GET /metrics/x answered %d" % status)
    status, _, _ = get(port, "/metrics", method="POST")
    check(status == 405, "POST /metrics answered %d" % status)


def test_queue_depth_counts_a_waiting_export():
    hold = Hold("export.uploading")
    with Fzipd(extra_args=["--metrics-listen", "127.0.0.1:0", "--export-workers", "1"],
               env={"FZIP_FAILPOINTS": hold.spec}) as srv, hold:
        port = metrics_port(srv)
        c = Client(srv, unique_user("queue"))
        srv.seed(c.user, SEED_TX, seed=5)
        first = c.create(export_type=jpb.EXPORT_TYPE_COMPLETE)

        def first_claimed():
            job = c.exp.GetExport(epb.GetExportRequest(export_id=first.export_id),
                                  metadata=c.md).job
            return job.status != jpb.EXPORT_STATUS_INITIATED
        wait_for(first_claimed, WAIT_S, "the first export to be claimed")
        second = c.create(export_type=jpb.EXPORT_TYPE_COMPLETE)
        wait_for(lambda: value(scrape(port)[0], "fzip_jobs_queued", kind="export") == 1, WAIT_S,
                 "fzip_jobs_queued{kind=export} to read 1")
        hold.release()
        for job in (first, second):
            check(c.watch(job.export_id)[-1].status == jpb.EXPORT_STATUS_COMPLETED,
                  "export did not complete")
        wait_for(lambda: value(scrape(port)[0], "fzip_jobs_queued", kind="export") == 0, WAIT_S,
                 "fzip_jobs_queued{kind=export} to read 0 at the end")


def main():
    checks = Checks()
    with Fzipd(extra_args=["--metrics-listen", "127.0.0.1:0"]) as srv:
        port = metrics_port(srv)
        check(port != srv.port, "metrics share the gRPC port")
        checks.run(test_export_and_calls_move_the_counters_by_the_right_amounts, srv, port)
        checks.run(test_build_info_and_other_paths_and_methods, srv, port)
    checks.run(test_queue_depth_counts_a_waiting_export)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
