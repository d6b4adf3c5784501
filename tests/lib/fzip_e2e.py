"""Shared pieces of the Python end-to-end tests: a per-user client over
the generated stubs (exports, downloads, listings) and package checks.
Tests import it after fzipd_harness put the stubs on sys.path."""
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile

sys.path.insert(0, os.path.dirname(__file__))
import fzipd_harness  # noqa: E402,F401  (puts the generated stubs on sys.path)

import grpc  # noqa: E402,F401
from fzip.v1 import data_service_pb2 as dpb  # noqa: E402
from fzip.v1 import data_service_pb2_grpc as dgrpc  # noqa: E402
from fzip.v1 import export_service_pb2 as epb  # noqa: E402
from fzip.v1 import export_service_pb2_grpc as egrpc  # noqa: E402
from fzip.v1 import import_service_pb2 as ipb  # noqa: E402
from fzip.v1 import import_service_pb2_grpc as igrpc  # noqa: E402
from fzip.v1 import jobs_pb2 as jpb  # noqa: E402
from google.rpc import error_details_pb2, status_pb2  # noqa: E402

TERMINAL = {jpb.EXPORT_STATUS_COMPLETED, jpb.EXPORT_STATUS_FAILED,
            jpb.EXPORT_STATUS_CANCELLED, jpb.EXPORT_STATUS_EXPIRED}
IMPORT_ENDS = {jpb.IMPORT_STATUS_COMPLETED, jpb.IMPORT_STATUS_FAILED,
               jpb.IMPORT_STATUS_CANCELLED, jpb.IMPORT_STATUS_VALIDATION_FAILED,
               jpb.IMPORT_STATUS_VALIDATION_PASSED}
CHUNK = 256 * 1024


def fzip_binary():
    """The `fzip` client: $FZIP, else next to $FZIPD in the build tree."""
    if os.environ.get("FZIP"):
        return os.environ["FZIP"]
    return os.path.join(os.path.dirname(os.environ["FZIPD"]), "..", "client", "fzip")


def fzip_cli(srv, user, *args, passphrase=None, tmpdir=None):
    """Runs `fzip ARGS` (with the server's address and a token for `user`
    when user is set) and returns the CompletedProcess; the caller's
    FZIP_* settings are dropped, FZIP_PASSPHRASE set from `passphrase`."""
    env = dict(os.environ)
    for name in ("FZIP_PASSPHRASE", "FZIP_IDENTITY", "FZIP_TOKEN", "FZIP_ADDR"):
        env.pop(name, None)
    if passphrase is not None:
        env["FZIP_PASSPHRASE"] = passphrase
    if tmpdir:
        env["TMPDIR"] = tmpdir
    argv = [fzip_binary()] + list(args)
    if user:
        argv += ["--addr", "127.0.0.1:%d" % srv.port, "--token", srv.token(user)]
    # stdin closed and no terminal: a missing passphrase cannot hang on a prompt
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env,
                          stdin=subprocess.DEVNULL, start_new_session=True)


def expect(r, rc, what):
    """r (from fzip_cli) exited rc, else a failed check showing its output."""
    check(r.returncode == rc, "%s: exit %d, want %d\nstdout: %s\nstderr: %s"
          % (what, r.returncode, rc, r.stdout[-2000:], r.stderr[-2000:]))
    return r


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


SCHEMA_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "schema")


def check_schema(name, instance):
    """instance (parsed JSON) is valid against docs/schema/<name>.schema.json
    (draft 2020-12), else a failed check listing the first errors."""
    import jsonschema
    with open(os.path.join(SCHEMA_DIR, "%s.schema.json" % name)) as f:
        v = jsonschema.Draft202012Validator(json.load(f))
    errors = ["%s at %s" % (e.message, "/".join(map(str, e.absolute_path)))
              for e in v.iter_errors(instance)]
    check(not errors, "%s does not match %s.schema.json: %r" % (name, name, errors[:5]))


METRICS_LOG_WAIT_S = 10


def metrics_port(srv):
    """The port from fzipd's "metrics listening" line (a JSON number), for
    an fzipd started with --metrics-listen 127.0.0.1:0."""
    deadline = time.monotonic() + METRICS_LOG_WAIT_S
    while time.monotonic() < deadline:
        with open(srv.log_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("msg") == "metrics listening":
                    check(isinstance(rec["port"], int), "port is not a JSON number: %r" % rec)
                    return rec["port"]
        time.sleep(0.1)
    raise AssertionError("no 'metrics listening' line: " + srv.read_log())


STATUS_DETAILS_KEY = "grpc-status-details-bin"


def status_details(e):
    """The google.rpc.Status a failed call (grpc.RpcError) sent in its
    grpc-status-details-bin trailer: (Status, [ErrorInfo], [BadRequest]).
    AssertionError when there is no such trailer, or more than one, or a
    detail of another type."""
    raw = [v for k, v in (e.trailing_metadata() or ()) if k == STATUS_DETAILS_KEY]
    check(len(raw) == 1, "%d %s trailers" % (len(raw), STATUS_DETAILS_KEY))
    st = status_pb2.Status()
    st.ParseFromString(raw[0])
    infos, bad = [], []
    for any_msg in st.details:
        if any_msg.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            infos.append(error_details_pb2.ErrorInfo())
            any_msg.Unpack(infos[-1])
        elif any_msg.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad.append(error_details_pb2.BadRequest())
            any_msg.Unpack(bad[-1])
        else:
            raise AssertionError("unexpected detail %s" % any_msg.type_url)
    return st, infos, bad


def wait_for(pred, timeout, what):
    """Polls pred() every 0.2 s until it returns something true, and returns
    that; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


class Client:
    def __init__(self, srv, user):
        self.srv = srv
        self.user = user
        self.md = srv.metadata(user)
        self.exp = egrpc.ExportServiceStub(srv.channel)
        self.imp = igrpc.ImportServiceStub(srv.channel)
        self.data = dgrpc.DataServiceStub(srv.channel)

    def create(self, **kw):
        return self.exp.CreateExport(epb.CreateExportRequest(**kw), metadata=self.md).job

    def watch(self, export_id, timeout=300):
        """Follows WatchExport to the end; checks progress never goes back."""
        last = -1
        snapshots = []
        for resp in self.exp.WatchExport(epb.WatchExportRequest(export_id=export_id),
                                         metadata=self.md, timeout=timeout):
            job = resp.job
            check(job.progress >= last, "progress went backwards: %d -> %d"
                  % (last, job.progress))
            last = job.progress
            snapshots.append(job)
        check(snapshots and snapshots[-1].status in TERMINAL, "watch ended before the job did")
        return snapshots

    def download(self, export_id, offset=0, chunk_size=0):
        info = None
        buf = io.BytesIO()
        for resp in self.exp.DownloadExport(
                epb.DownloadExportRequest(export_id=export_id, offset=offset,
                                          chunk_size=chunk_size),
                metadata=self.md, timeout=300):
            if resp.WhichOneof("payload") == "info":
                check(info is None, "two info messages")
                info = resp.info
            else:
                check(info is not None, "chunk before info")
                buf.write(resp.chunk)
        return info, buf.getvalue()

    def list_all(self, method, field, **kw):
        out, token = [], ""
        while True:
            resp = getattr(self.data, method)(
                getattr(dpb, method + "Request")(page_size=1000, page_token=token, **kw),
                metadata=self.md)
            out.extend(getattr(resp, field))
            token = resp.next_page_token
            if not token:
                return out

    def export_and_download(self, **kw):
        job = self.create(**kw)
        final = self.watch(job.export_id)[-1]
        check(final.status == jpb.EXPORT_STATUS_COMPLETED,
              "export ended %s: %s" % (jpb.ExportStatus.Name(final.status), final.error.message))
        info, data = self.download(job.export_id)
        return final, info, data


def read_package(data):
    z = zipfile.ZipFile(io.BytesIO(data))
    manifest = json.loads(z.read("manifest.json"))
    return z, manifest


def verify_checksums(z, manifest):
    names = set(z.namelist())
    for entry, digest in manifest["checksums"].items():
        check(entry in names, "manifest names a missing entry %s" % entry)
        got = "sha256:" + hashlib.sha256(z.read(entry)).hexdigest()
        check(got == digest, "checksum mismatch for %s" % entry)
    for name in names:
        if name != "manifest.json" and not name.endswith("/"):
            check(name in manifest["checksums"], "entry %s has no checksum" % name)


def unzip_t(data):
    with tempfile.NamedTemporaryFile(suffix=".fzip") as f:
        f.write(data)
        f.flush()
        r = subprocess.run(["unzip", "-t", f.name], capture_output=True, text=True)
        check(r.returncode == 0, "unzip -t failed: " + r.stdout[-500:] + r.stderr[-500:])



def upload_requests(data, **options):
    yield ipb.UploadImportRequest(options=ipb.ImportOptions(**options))
    for i in range(0, len(data), CHUNK):
        yield ipb.UploadImportRequest(chunk=data[i:i + CHUNK])


def upload(c, data, strategy=jpb.MERGE_STRATEGY_FAIL_ON_CONFLICT, start=True,
           validate_only=False, with_checksum=True, **extra):
    opts = dict(merge_strategy=strategy, start=start, validate_only=validate_only,
                file_name="test.fzip", **extra)
    if with_checksum:
        opts.setdefault("expected_size", len(data))
        opts.setdefault("expected_sha256", hashlib.sha256(data).hexdigest())
    return c.imp.UploadImport(upload_requests(data, **opts), metadata=c.md, timeout=300).job


def watch_import(c, import_id, timeout=300):
    last = None
    progress = -1
    for resp in c.imp.WatchImport(ipb.WatchImportRequest(import_id=import_id), metadata=c.md,
                                  timeout=timeout):
        last = resp.job
        check(last.progress >= progress, "import progress went backwards")
        progress = last.progress
    check(last is not None and last.status in IMPORT_ENDS, "watch ended early: %r" % last)
    return last


def import_package(c, data, **kw):
    job = upload(c, data, **kw)
    return watch_import(c, job.import_id)


def undo_and_wait(c, import_id, timeout=300):
    """UndoImport, then polls GetImport until the job is UNDONE and returns
    it; AssertionError on any other status than COMPLETED (the undo not
    begun yet) or UNDOING, or after `timeout` seconds."""
    c.imp.UndoImport(ipb.UndoImportRequest(import_id=import_id), metadata=c.md)

    def undone():
        job = c.imp.GetImport(ipb.GetImportRequest(import_id=import_id), metadata=c.md).job
        check(job.status in (jpb.IMPORT_STATUS_UNDONE, jpb.IMPORT_STATUS_UNDOING,
                             jpb.IMPORT_STATUS_COMPLETED),
              "undo: %s %s" % (jpb.ImportStatus.Name(job.status), job.error.message))
        return job if job.status == jpb.IMPORT_STATUS_UNDONE else None
    return wait_for(undone, timeout, "the undo of import " + import_id)


def state(c):
    """Everything the user has, by content: the checksums of a complete
    export (with analytics) pinned to a fixed timestamp, which cover every
    entity and every stored file byte."""
    job = c.create(export_type=jpb.EXPORT_TYPE_COMPLETE, include_analytics=True,
                   pinned_timestamp=1000000000000)
    final = c.watch(job.export_id)[-1]
    check(final.status == jpb.EXPORT_STATUS_COMPLETED, "state export failed: %r" % final.error)
    _, data = c.download(job.export_id)
    c.exp.DeleteExport(epb.DeleteExportRequest(export_id=job.export_id), metadata=c.md)
    _, manifest = read_package(data)
    return manifest["checksums"]


def rewrite_package(data, edit):
    """A copy of a package with `edit(name, entries)` applied to its parsed
    data files (dict name -> parsed JSON) and the manifest's checksums and
    counts brought up to date, entry order kept."""
    z = zipfile.ZipFile(io.BytesIO(data))
    names = z.namelist()
    raw = {n: z.read(n) for n in names}
    parsed = {n: json.loads(raw[n]) for n in names if n.startswith("data/")}
    edit(parsed)
    manifest = json.loads(raw["manifest.json"])
    for n, doc in parsed.items():
        raw[n] = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        manifest["checksums"][n] = "sha256:" + hashlib.sha256(raw[n]).hexdigest()
        key = n[len("data/"):-len(".json")]
        if key + "_count" in manifest.get("data_summary", {}):
            manifest["data_summary"][key + "_count"] = len(doc[key])
    raw["manifest.json"] = json.dumps(manifest).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as w:
        for n in names:
            w.writestr(n, raw[n])
    return out.getvalue()
