"""A generated Python client (grpcio stubs from protoc --python_out /
--grpc_python_out, built by tests/interop) doing a full round trip.

Export a seeded user's data (CreateExport, WatchExport to the end),
download it in chunks (DownloadExport) and check size and sha256 against
the info message and the job; then UploadImport into a fresh user with
expected size and sha256, WatchImport to COMPLETED, and compare the two
users' GetDataSummary (analytics aside: the import regenerates them from
the transactions, so the target has them and the source need not).
"""
import hashlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from fzipd_harness import Fzipd, unique_user  # noqa: E402

import grpc  # noqa: E402
from fzip.v1 import data_service_pb2 as dpb  # noqa: E402
from fzip.v1 import data_service_pb2_grpc as dgrpc  # noqa: E402
from fzip.v1 import export_service_pb2 as epb  # noqa: E402
from fzip.v1 import export_service_pb2_grpc as egrpc  # noqa: E402
from fzip.v1 import import_service_pb2 as ipb  # noqa: E402
from fzip.v1 import import_service_pb2_grpc as igrpc  # noqa: E402
from fzip.v1 import jobs_pb2 as jpb  # noqa: E402

SEED_TX = 250
CHUNK = 256 * 1024


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def export_and_download(srv, user):
    md = srv.metadata(user)
    exp = egrpc.ExportServiceStub(srv.channel)
    job = exp.CreateExport(epb.CreateExportRequest(description="python client"), metadata=md).job
    last = None
    for resp in exp.WatchExport(epb.WatchExportRequest(export_id=job.export_id), metadata=md,
                                timeout=300):
        last = resp.job
    check(last and last.status == jpb.EXPORT_STATUS_COMPLETED, "export ended %r" % last)
    info, data = None, bytearray()
    for resp in exp.DownloadExport(epb.DownloadExportRequest(export_id=job.export_id, chunk_size=65536),
                                   metadata=md, timeout=300):
        if resp.WhichOneof("payload") == "info":
            info = resp.info
        else:
            data += resp.chunk
    check(info is not None and info.size == len(data) == last.package_size, "size mismatch")
    digest = hashlib.sha256(data).hexdigest()
    check(digest == info.sha256 == last.package_sha256, "sha256 mismatch")
    print("export + download ok: %d bytes, sha256 %s" % (len(data), digest), flush=True)
    return bytes(data), digest


def upload_requests(data, digest):
    yield ipb.UploadImportRequest(options=ipb.ImportOptions(
        merge_strategy=jpb.MERGE_STRATEGY_FAIL_ON_CONFLICT, start=True,
        expected_size=len(data), expected_sha256=digest, file_name="python.fzip"))
    for i in range(0, len(data), CHUNK):
        yield ipb.UploadImportRequest(chunk=data[i:i + CHUNK])


def import_package(srv, user, data, digest):
    md = srv.metadata(user)
    imp = igrpc.ImportServiceStub(srv.channel)
    job = imp.UploadImport(upload_requests(data, digest), metadata=md, timeout=300).job
    last = None
    for resp in imp.WatchImport(ipb.WatchImportRequest(import_id=job.import_id), metadata=md,
                                timeout=300):
        last = resp.job
    check(last and last.status == jpb.IMPORT_STATUS_COMPLETED, "import ended %r" % last)
    return last


def summary(srv, user):
    data = dgrpc.DataServiceStub(srv.channel)
    return data.GetDataSummary(dpb.GetDataSummaryRequest(), metadata=srv.metadata(user)).summary


def main():
    with Fzipd() as srv:
        source, target = unique_user("py-src"), unique_user("py-dst")
        srv.seed(source, SEED_TX, seed=13)
        data, digest = export_and_download(srv, source)
        job = import_package(srv, target, data, digest)
        a, b = summary(srv, source), summary(srv, target)
        check(job.result.analytics_regenerated and b.analytics_count > 0,
              "analytics were not regenerated: %r" % job.result)
        b.analytics_count = a.analytics_count
        check(a == b, "summaries differ after the round trip:\n%s\nvs\n%s" % (a, b))
        print("round trip ok: %d transactions restored" % b.transactions_count, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
