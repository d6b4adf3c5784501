#!/usr/bin/python3
"""The error model a client sees (docs/GRPC.md "Error model"), end to end.

A real fzipd (SQLite store) on loopback, called from Python grpcio; the
grpc-status-details-bin trailer is decoded with google.rpc protos generated
by protoc from proto/google/rpc/.  Checks: a failed call carries a
google.rpc.Status whose code and message equal the call's status, with one
ErrorInfo (reason, domain fzip.housef3.io, metadata fzip_domain and
request_id equal to the x-request-id trailer); INVALID_ARGUMENT adds a
BadRequest (the handler's field, or one violation for the whole request);
an OK call has no details; and a store failure (failpoint store.blob_chunk,
an UNAVAILABLE of the store domain) reaches the client as a generic message
naming the request id, while fzipd's "call done" line for that request id
keeps the full message.  Prints the harness summary "N passed, N failed".
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from fzipd_harness import Checks, Fzipd, unique_user  # noqa: E402

import grpc  # noqa: E402
from fzip.v1 import data_service_pb2 as data_pb  # noqa: E402
from fzip.v1 import data_service_pb2_grpc as data_grpc  # noqa: E402
from fzip.v1 import export_service_pb2 as export_pb  # noqa: E402
from fzip.v1 import export_service_pb2_grpc as export_grpc  # noqa: E402
from fzip.v1 import import_service_pb2 as import_pb  # noqa: E402
from fzip.v1 import import_service_pb2_grpc as import_grpc  # noqa: E402

from fzip_e2e import STATUS_DETAILS_KEY as DETAILS_KEY, check, status_details  # noqa: E402

DOMAIN = "fzip.housef3.io"  # RPC_DETAILS_DOMAIN
CALL_TIMEOUT_S = 10


def trailer(e, key):
    values = [v for k, v in (e.trailing_metadata() or ()) if k == key]
    check(len(values) <= 1, "%s sent %d times" % (key, len(values)))
    return values[0] if values else None


def failed_call(fn, request, metadata):
    try:
        fn(request, metadata=metadata, timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as e:
        return e
    raise AssertionError("call succeeded")


def details_of(e):
    """(ErrorInfo, BadRequest or None), after checking the Status matches."""
    st, infos, bad = status_details(e)
    check(st.code == e.code().value[0], "Status.code %d, call %s" % (st.code, e.code()))
    check(st.message == e.details(), "Status.message %r, call %r" % (st.message, e.details()))
    check(len(infos) == 1, "%d ErrorInfo" % len(infos))
    check(len(bad) <= 1, "%d BadRequest" % len(bad))
    info = infos[0]
    check(info.domain == DOMAIN, "domain %r" % info.domain)
    check(info.metadata["request_id"] == trailer(e, "x-request-id"),
          "request_id %r, trailer %r" % (info.metadata["request_id"], trailer(e, "x-request-id")))
    return info, (bad[0] if bad else None)


def test_not_found_carries_error_info_with_the_request_id(srv, user):
    stub = export_grpc.ExportServiceStub(srv.channel)
    e = failed_call(stub.GetExport, export_pb.GetExportRequest(export_id="no-such-export"),
                    srv.metadata(user) + (("x-request-id", "errors-not-found-1"),))
    check(e.code() == grpc.StatusCode.NOT_FOUND, e)
    info, bad = details_of(e)
    check(info.reason == "JOB_NOT_FOUND", "reason %r" % info.reason)
    check(info.metadata["request_id"] == "errors-not-found-1", info)
    check(info.metadata["fzip_domain"] == "job", info)
    check(bad is None, "BadRequest on NOT_FOUND")
    check("no-such-export" in e.details(), "message %r" % e.details())


def test_invalid_id_carries_a_bad_request_naming_the_field(srv, user):
    stub = export_grpc.ExportServiceStub(srv.channel)
    e = failed_call(stub.GetExport, export_pb.GetExportRequest(export_id=""), srv.metadata(user))
    check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, e)
    info, bad = details_of(e)
    check(info.reason == "INVALID_JOB_ID", "reason %r" % info.reason)
    check(bad is not None, "no BadRequest")
    v = bad.field_violations
    check(len(v) == 1 and v[0].field == "export_id" and v[0].description == e.details(),
          "violations %r" % v)


def test_other_invalid_argument_has_one_violation_for_the_request(srv, user):
    stub = data_grpc.DataServiceStub(srv.channel)
    e = failed_call(stub.ListTransactions, data_pb.ListTransactionsRequest(page_size=-1),
                    srv.metadata(user))
    check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, e)
    info, bad = details_of(e)
    check(info.reason == "INVALID_ARGUMENT", "reason %r" % info.reason)
    check(info.metadata["fzip_domain"] == "rpc", info)
    v = bad.field_violations
    check(len(v) == 1 and v[0].field == "" and v[0].description == e.details(),
          "violations %r" % v)


def test_ok_call_has_no_details(srv, user):
    stub = data_grpc.DataServiceStub(srv.channel)
    _, call = stub.GetDataSummary.with_call(data_pb.GetDataSummaryRequest(),
                                            metadata=srv.metadata(user), timeout=CALL_TIMEOUT_S)
    check(trailer(call, DETAILS_KEY) is None, "details on an OK call")
    check(trailer(call, "x-request-id"), "no request id")


def upload_requests():
    yield import_pb.UploadImportRequest(options=import_pb.ImportOptions(file_name="x.fzip"))
    yield import_pb.UploadImportRequest(chunk=b"PK\x03\x04" + b"\0" * 4096)


def call_done_lines(log_path, request_id):
    with open(log_path, encoding="utf-8", errors="replace") as f:
        lines = [json.loads(line) for line in f if line.startswith("{")]
    return [r for r in lines if r.get("msg") == "call done" and r.get("request_id") == request_id]


def test_store_failure_is_sanitised_and_logged_in_full(user):
    rid = "errors-store-down-1"
    with Fzipd(env={"FZIP_FAILPOINTS": "store.blob_chunk=error@1"}) as srv:
        stub = import_grpc.ImportServiceStub(srv.channel)
        try:
            stub.UploadImport(upload_requests(), timeout=CALL_TIMEOUT_S,
                              metadata=srv.metadata(user) + (("x-request-id", rid),))
            raise AssertionError("upload succeeded through a failing store")
        except grpc.RpcError as e:
            err = e
        log_path = srv.log_path
        check(err.code() == grpc.StatusCode.UNAVAILABLE, err)
        want = "storage unavailable; retry later (request id %s)" % rid
        check(err.details() == want, "client message %r, want %r" % (err.details(), want))
        info, bad = details_of(err)
        check(info.reason == "UNAVAILABLE" and info.metadata["fzip_domain"] == "store", info)
        check(bad is None, "BadRequest on UNAVAILABLE")
        srv.stop()
        done = call_done_lines(log_path, rid)
        check(len(done) == 1, "call done lines for %s: %r" % (rid, done))
        check("failpoint store.blob_chunk" in done[0].get("error", ""),
              "the log lost the full message: %r" % done[0])


def main():
    checks = Checks()
    user = unique_user("errors")
    with Fzipd() as srv:
        for t in (test_not_found_carries_error_info_with_the_request_id,
                  test_invalid_id_carries_a_bad_request_naming_the_field,
                  test_other_invalid_argument_has_one_violation_for_the_request,
                  test_ok_call_has_no_details):
            checks.run(t, srv, user)
    checks.run(test_store_failure_is_sanitised_and_logged_in_full, user)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
