"""grpcurl against a real fzipd, through server reflection only.

No .proto file is given to grpcurl: every service, method and message
it knows comes from fzipd's reflection service.  Checks: `list` shows the
fzip.v1 services and grpc.health.v1.Health; `describe` resolves a
message; authenticated calls (GetDataSummary, ListExports) return what the
store holds; a call without a token is refused; a failed call's
google.rpc.Status details decode (their types come from reflection too).
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from fzipd_harness import Checks, Fzipd, unique_user  # noqa: E402

SEED_TX = 120


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def grpcurl(srv, *args, token=None, data=None, flags=()):
    argv = [os.environ["GRPCURL"], "-plaintext", "-max-time", "30"] + list(flags)
    if token:
        argv += ["-H", "authorization: Bearer " + token]
    if data is not None:
        argv += ["-d", data]
    argv += ["127.0.0.1:%d" % srv.port] + list(args)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_list_shows_all_services(srv, user):
    r = grpcurl(srv, "list")
    check(r.returncode == 0, "list failed: %s" % r.stderr)
    services = set(r.stdout.split())
    for s in ("fzip.v1.ExportService", "fzip.v1.ImportService", "fzip.v1.DataService",
              "fzip.v1.ScheduleService", "grpc.health.v1.Health"):
        check(s in services, "%s missing from %r" % (s, services))


def test_list_methods_of_a_service(srv, user):
    r = grpcurl(srv, "list", "fzip.v1.ExportService")
    check(r.returncode == 0, "list service failed: %s" % r.stderr)
    for m in ("CreateExport", "DownloadExport", "WatchExport"):
        check("fzip.v1.ExportService." + m in r.stdout, "%s missing: %s" % (m, r.stdout))


def test_describe_export_job(srv, user):
    r = grpcurl(srv, "describe", "fzip.v1.ExportJob")
    check(r.returncode == 0, "describe failed: %s" % r.stderr)
    check("message ExportJob" in r.stdout, "not a message description: %s" % r.stdout)
    for field in ("string export_id = 1", ".fzip.v1.ExportStatus status = 2",
                  "string package_sha256 = 17"):
        check(field in r.stdout, "%r missing: %s" % (field, r.stdout))


def test_get_data_summary_with_token(srv, user):
    r = grpcurl(srv, "fzip.v1.DataService/GetDataSummary", token=srv.token(user))
    check(r.returncode == 0, "call failed: %s" % r.stderr)
    summary = json.loads(r.stdout)["summary"]
    # grpcurl prints int64 as JSON strings (protobuf JSON mapping).
    check(int(summary["transactionsCount"]) == SEED_TX, "summary %r" % summary)


def test_list_exports_with_token(srv, user):
    token = srv.token(user)
    r = grpcurl(srv, "fzip.v1.ExportService/CreateExport", token=token,
                data='{"exportType": "EXPORT_TYPE_ACCOUNTS_ONLY", "description": "grpcurl"}')
    check(r.returncode == 0, "create failed: %s" % r.stderr)
    export_id = json.loads(r.stdout)["job"]["exportId"]
    r = grpcurl(srv, "fzip.v1.ExportService/ListExports", token=token, data="{}")
    check(r.returncode == 0, "list failed: %s" % r.stderr)
    jobs = json.loads(r.stdout).get("jobs", [])
    check([j["exportId"] for j in jobs] == [export_id], "jobs %r" % jobs)


def test_call_without_token_is_unauthenticated(srv, user):
    r = grpcurl(srv, "fzip.v1.DataService/GetDataSummary")
    check(r.returncode != 0, "unauthenticated call succeeded")
    check("Unauthenticated" in r.stderr, "unexpected error: %s" % r.stderr)


def test_error_details_decode_through_reflection(srv, user):
    # grpcurl resolves the google.rpc.Status details' Any types through
    # reflection alone (docs/GRPC.md "Error model").
    r = grpcurl(srv, "fzip.v1.ExportService/GetExport", token=srv.token(user),
                data='{"exportId": ""}',
                flags=["-format-error", "-H", "x-request-id: grpcurl-bad-id"])
    check(r.returncode != 0, "a call with no export_id succeeded")
    out = r.stdout + r.stderr
    status = json.loads(out[out.index("{"):])
    check(status["code"] == 3, "status %r" % status)
    by_type = {d["@type"].rsplit("/", 1)[-1]: d for d in status.get("details", [])}
    info = by_type.get("google.rpc.ErrorInfo", {})
    check(info.get("reason") == "INVALID_JOB_ID" and info.get("domain") == "fzip.housef3.io"
          and info.get("metadata", {}).get("request_id") == "grpcurl-bad-id",
          "ErrorInfo not decoded: %r" % status)
    violations = by_type.get("google.rpc.BadRequest", {}).get("fieldViolations", [])
    check([v.get("field") for v in violations] == ["export_id"], "BadRequest %r" % status)


def test_health_check(srv, user):
    r = grpcurl(srv, "grpc.health.v1.Health/Check")
    check(r.returncode == 0 and "SERVING" in r.stdout, "health: %s %s" % (r.stdout, r.stderr))


def main():
    checks = Checks()
    with Fzipd() as srv:
        user = unique_user("grpcurl")
        srv.seed(user, SEED_TX, seed=5)
        for t in (test_list_shows_all_services, test_list_methods_of_a_service,
                  test_describe_export_job, test_get_data_summary_with_token,
                  test_list_exports_with_token, test_call_without_token_is_unauthenticated,
                  test_error_details_decode_through_reflection, test_health_check):
            checks.run(t, srv, user)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
