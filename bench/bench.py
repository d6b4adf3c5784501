#!/usr/bin/env python3
"""bench.py: fzip's benchmark orchestrator (docs/BENCHMARKS.md).

For each store and size it seeds a user with `fzipd seed`, starts a real
`fzipd serve`, and runs each phase while watching fzipd through /proc:
peak RSS (VmHWM, reset before each phase by writing "5" to clear_refs)
and CPU time (utime + stime from /proc/PID/stat).  The timed work is done
by the C programs beside this file -- bench_client (gRPC, on
client/rpc_client.h), bench_floor (the store/zlib/sha256 floor on the
same data), bench_tcp (raw loopback copy) and bench_grpc_floor (raw gRPC
C-core streaming, both directions) -- never by Python, which
only starts them and reads their one-line JSON.

Phases per store and size:
  seed, export (CreateExport -> COMPLETED), download (DownloadExport),
  incremental (fzipd seed --mutate 1, then an increment on that export),
  export floors (single-thread and two-core), blob-read floor, tcp floor,
  gRPC download floor, upload
  (UploadImport), blob-write floor, gRPC upload floor, validate-only, import fail_on_conflict into an empty
  user, import overwrite into the full user, import floor, and on MongoDB
  mongodump/mongorestore when their binaries are given.

A phase that cannot run (the import worker not finished, mongo-tools not
installed) is kept in the results as {"measured": false, "reason": ...}.
--smoke runs tiny sizes and fails on any harness error, for CTest.
"""
import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
import time

# One fzipd launcher for the benchmark and the tests (tests/lib/fzipd_proc.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
import fzipd_proc  # noqa: E402

PAGE_TICKS = os.sysconf("SC_CLK_TCK")
# How long fzipd may take to print its port, and to exit after SIGTERM,
# before the benchmark gives up on it.
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60
STRATEGY = {"fail_on_conflict": 1, "skip_existing": 2, "overwrite": 3}
# Share of the transactions the incremental phase changes (issue 13's 1%).
MUTATE_PERCENT = "1"


# ---- /proc ------------------------------------------------------------------

def proc_status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def proc_cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        # comm may hold spaces: the fields we want follow the last ')'.
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / PAGE_TICKS  # utime, stime


def reset_hwm(pid):
    """Resets VmHWM; where that is not allowed the peak is since fzipd started."""
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class LoadSampler(threading.Thread):
    """Samples the 1-minute load average every few seconds during the run."""

    def __init__(self, every_s=5):
        super().__init__(daemon=True)
        self.every_s = every_s
        self.samples = []
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.is_set():
            with open("/proc/loadavg") as f:
                self.samples.append(float(f.read().split()[0]))
            self.stop_event.wait(self.every_s)

    def summary(self):
        s = self.samples or [0.0]
        return {"samples": len(s), "min": min(s), "mean": round(sum(s) / len(s), 2),
                "max": max(s)}


def machine_info():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu_model": model,
            "mem_total_kib": proc_meminfo("MemTotal"), "kernel": os.uname().release,
            "loadavg_at_start": open("/proc/loadavg").read().split()[:3]}


def proc_meminfo(field):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


# ---- running children ---------------------------------------------------------

TIME_BIN = "/usr/bin/time"


def run_measured(argv, timeout_s=None):
    """Runs argv to the end; its output, wall time, peak RSS and CPU.

    Peak RSS and CPU come from GNU time, not from our own wait4(): a child
    forked by Python inherits Python's high-water mark (about 20 MiB), which
    would hide the RSS of small programs such as the floor."""
    fd, stats = tempfile.mkstemp(prefix="bench-time-")
    os.close(fd)
    t0 = time.monotonic()
    # Its own process group, so that a timeout stops the program, not only GNU time.
    # Without GNU time (package "time") the figures are left at 0, the run goes on.
    timed = [TIME_BIN, "-f", "%M %U %S", "-o", stats] if os.access(TIME_BIN, os.X_OK) else []
    p = subprocess.Popen(timed + list(argv),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        err += b"timed out after %d s" % timeout_s
    seconds = time.monotonic() - t0
    try:
        with open(stats) as f:
            fields = f.read().strip().splitlines()[-1].split()
        rss, cpu = int(fields[0]), float(fields[1]) + float(fields[2])
    except (OSError, IndexError, ValueError):
        rss, cpu = 0, 0.0
    finally:
        os.unlink(stats)
    return {"rc": p.returncode, "out": out.decode(errors="replace"),
            "err": err.decode(errors="replace"), "seconds": round(seconds, 4),
            "max_rss_kib": rss, "cpu_s": round(cpu, 3)}


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    return None


# ---- fzipd --------------------------------------------------------------------

class Server:
    def __init__(self, fzipd, store, work):
        self.fzipd = fzipd
        self.store = store
        self.work = work
        self.secret = os.path.join(work, "jwt.secret")
        with open(self.secret, "w") as f:
            f.write(secrets.token_hex(32))
        self.tmp = os.path.join(work, "tmp")
        os.makedirs(self.tmp, exist_ok=True)
        self.log = open(os.path.join(work, "fzipd.log"), "wb")
        try:
            self.proc, self.port = fzipd_proc.start(
                fzipd, ["--store", store, "--jwt-secret-file", self.secret, "--temp-dir",
                        self.tmp, "--log-level", "warn"], self.log, timeout_s=START_TIMEOUT_S)
        except RuntimeError as e:
            raise RuntimeError("%s; see %s/fzipd.log" % (e, work))
        self.target = "127.0.0.1:%d" % self.port
        self.pid = self.proc.pid

    def token(self, user):
        return subprocess.run([self.fzipd, "token", "--secret-file", self.secret, "--user", user,
                               "--ttl-seconds", "86400"],
                              check=True, capture_output=True, text=True).stdout.strip()

    def stop(self):
        fzipd_proc.stop(self.proc, timeout_s=STOP_TIMEOUT_S)
        self.log.close()


class Bench:
    def __init__(self, args):
        self.args = args
        b = args.bin_dir
        self.fzipd = os.path.join(b, "server", "fzipd")
        self.client = os.path.join(b, "bench", "bench_client")
        self.floor = os.path.join(b, "bench", "bench_floor")
        self.tcp = os.path.join(b, "bench", "bench_tcp")
        self.grpc_floor = os.path.join(b, "bench", "bench_grpc_floor")
        self.errors = []
        self.phase_timeout = args.phase_timeout

    def log(self, msg):
        print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)

    def phase(self, srv, argv):
        """Runs one phase against fzipd, measuring fzipd's peak RSS and CPU during it.
        A phase longer than --phase-timeout is stopped and reported as not measured."""
        hwm_reset = reset_hwm(srv.pid)
        cpu0 = proc_cpu_s(srv.pid)
        rss0 = proc_status_kib(srv.pid, "VmRSS")
        r = run_measured(argv, self.phase_timeout)
        res = last_json(r["out"]) or {}
        res.update({"fzipd_peak_rss_kib": proc_status_kib(srv.pid, "VmHWM"),
                    "fzipd_hwm_reset": hwm_reset,
                    "fzipd_rss_before_kib": rss0,
                    "fzipd_cpu_s": round(proc_cpu_s(srv.pid) - cpu0, 3),
                    "client_max_rss_kib": r["max_rss_kib"], "client_cpu_s": r["cpu_s"],
                    "wall_s": r["seconds"], "rc": r["rc"]})
        if r["rc"] != 0 and not res.get("error"):
            res["error"] = r["err"].strip()[-500:]
        res["measured"] = r["rc"] == 0
        return res

    def standalone(self, argv, what):
        """A floor program (no fzipd involved): its own time and rusage."""
        r = run_measured(argv)
        res = last_json(r["out"]) or {}
        res.update({"max_rss_kib": r["max_rss_kib"], "cpu_s": r["cpu_s"], "wall_s": r["seconds"],
                    "measured": r["rc"] == 0})
        if r["rc"] != 0:
            res["reason"] = r["err"].strip()[-500:] or "exit %d" % r["rc"]
            self.errors.append("%s: %s" % (what, res["reason"]))
        return res

    # ---- one store, one size -----------------------------------------------

    def run_guarded(self, store_kind, store_uri, n, work):
        """run_one, but a failure is recorded and the next size still runs."""
        try:
            return self.run_one(store_kind, store_uri, n, work)
        except Exception as e:  # the harness must report, not lose, the other runs
            traceback.print_exc()
            self.errors.append("%s n=%d: %s" % (store_kind, n, e))
            return {"store": store_kind, "transactions": n, "failed": str(e)}

    def run_one(self, store_kind, store_uri, n, work):
        os.makedirs(work, exist_ok=True)
        user, restore_user, floor_user = "bench", "bench-restore", "bench-floor"
        row = {"store": store_kind, "transactions": n}
        self.log("%s n=%d: seeding" % (store_kind, n))
        seed = run_measured([self.fzipd, "seed", "--store", store_uri, "--user", user,
                             "--transactions", str(n), "--seed", "1", "--analytics",
                             "--quiet"])
        row["seed"] = {"seconds": seed["seconds"], "max_rss_kib": seed["max_rss_kib"],
                       "cpu_s": seed["cpu_s"], "measured": seed["rc"] == 0}
        if seed["rc"] != 0:
            raise RuntimeError("fzipd seed failed: " + seed["err"][-500:])
        if store_kind == "mongodb":
            row["mongodump"], row["mongorestore"] = self.mongo_tools(store_uri, work)
        srv = Server(self.fzipd, store_uri, work)
        try:
            self.run_phases(row, srv, store_uri, n, work, user, restore_user, floor_user)
        finally:
            srv.stop()
        return row

    def run_phases(self, row, srv, store_uri, n, work, user, restore_user, floor_user):
        tok, rtok = srv.token(user), srv.token(restore_user)
        pkg = os.path.join(work, "export.fzip")
        c = [self.client, srv.target]

        self.log("export")
        row["export"] = ex = self.phase(srv, c + [tok, "export"])
        if not ex["measured"]:
            self.errors.append("export: %s" % ex.get("error"))
            return
        self.log("export %.2fs, package %d bytes; download" % (ex["seconds"], ex["package_size"]))
        # The package file the later phases read; its time (the client's
        # writes to the page cache included) is reported beside the
        # download's.  The download itself drops the bytes as the gRPC
        # floor's client does, so the two compare the same work.
        row["download_to_file"] = dl = self.phase(
            srv, c + [tok, "download", ex["export_id"], pkg])
        if not dl["measured"]:
            self.errors.append("download: %s" % dl.get("error"))
            return
        row["package_bytes"] = os.path.getsize(pkg)
        row["download"] = self.phase(srv, c + [tok, "download", ex["export_id"], "-"])
        if self.args.streaming_only:
            self.streaming(row, srv, store_uri, c, tok, rtok, ex, pkg)
            self.log("done n=%d (streaming only)" % n)
            return
        self.incremental(row, srv, store_uri, c, tok, user, ex)

        self.log("export floor")
        row["export_floor"] = ef = self.standalone(
            [self.floor, "export", store_uri, user, pkg], "export floor")
        row["json_bytes"] = ef.get("json_bytes")
        if ef.get("measured") and "floor2_s" not in ef:
            self.errors.append("export floor: no two-core floor (floor2_s)")
        # A transfer of the 1M package takes 0.5-2 s on a disk and cores
        # the other phases have just used: one sample against one of its
        # floor spread 0.63x-1.01x on the same code (docs/BENCHMARKS.md,
        # run Z), so every run takes the median of --stream-repeat rounds.
        self.streaming(row, srv, store_uri, c, tok, rtok, ex, pkg,
                       upload=not self.args.export_only)
        if self.args.export_only:
            self.log("done n=%d (export only)" % n)
            return
        up = row["upload"]
        if not up.get("measured"):
            self.errors.append("upload: %s" % up.get("error"))
            return

        # Each import job gets its own upload: a job that ran is not started again.
        self.log("validate-only")
        row["validate_only"] = self.import_phase(srv, c, rtok, up["import_id"],
                                                 "fail_on_conflict", True)
        self.log("import fail_on_conflict into an empty user")
        row["import_empty"] = self.import_phase(srv, c, rtok, self.upload_quiet(c, rtok, pkg),
                                                "fail_on_conflict", False)
        self.log("import floor")
        row["import_floor"] = self.standalone(
            [self.floor, "import", store_uri, user, floor_user, pkg], "import floor")
        # Last: on FerretDB this job has been seen to hang (docs/BENCHMARKS.md),
        # and a phase that times out must not take the others with it.
        self.log("import overwrite into the full user")
        row["import_overwrite"] = self.import_phase(srv, c, tok, self.upload_quiet(c, tok, pkg),
                                                    "overwrite", False)
        self.log("done n=%d" % n)

    def streaming(self, row, srv, store_uri, c, tok, rtok, ex, pkg, upload=True):
        """Download and (unless `upload` is false) upload, each beside its
        floors (blob store, raw TCP, raw gRPC), --stream-repeat times in
        turn; each figure is the median of its samples, the samples are
        kept.  Every upload leaves an uploaded import job (the later
        phases use the median one's)."""
        keys = ["download", "blob_read_floor", "tcp_floor", "grpc_download_floor"]
        if upload:
            keys += ["upload", "blob_write_floor", "grpc_upload_floor"]
        samples = {k: [] for k in keys}
        samples["download"].append(row["download"])
        for i in range(self.args.stream_repeat):
            self.log("streaming, round %d of %d" % (i + 1, self.args.stream_repeat))
            if i > 0:
                samples["download"].append(
                    self.phase(srv, c + [tok, "download", ex["export_id"], "-"]))
            samples["blob_read_floor"].append(self.standalone(
                [self.floor, "blob-read", store_uri, "export-" + ex["export_id"]],
                "blob-read floor"))
            samples["tcp_floor"].append(self.standalone([self.tcp, pkg], "tcp floor"))
            samples["grpc_download_floor"].append(
                self.standalone([self.grpc_floor, "download", pkg], "grpc download floor"))
            if not upload:
                continue
            samples["upload"].append(self.phase(srv, c + [rtok, "upload", pkg]))
            samples["blob_write_floor"].append(self.standalone(
                [self.floor, "blob-write", store_uri, pkg], "blob-write floor"))
            samples["grpc_upload_floor"].append(
                self.standalone([self.grpc_floor, "upload", pkg], "grpc upload floor"))
        for key, runs in samples.items():
            ok = [r for r in runs if r.get("measured", True) and r.get("mib_per_s")]
            if not ok:
                row[key] = runs[-1]
                continue
            ok.sort(key=lambda r: r["mib_per_s"])
            row[key] = dict(ok[len(ok) // 2])
            row[key]["samples_mib_per_s"] = [r.get("mib_per_s") for r in runs]

    def incremental(self, row, srv, store_uri, c, tok, user, ex):
        """1% of the transactions rewritten (fzipd seed --mutate), then an
        incremental export on the full one: its time, CPU and size against
        the full export's (target <= 5% at 1M, issue 13).  The later
        overwrite import then meets a user 1% away from the package."""
        self.log("incremental: seed --mutate %s, then an increment" % MUTATE_PERCENT)
        m = run_measured([self.fzipd, "seed", "--store", store_uri, "--user", user, "--mutate",
                          MUTATE_PERCENT, "--seed", "2"])
        row["mutate"] = {"seconds": m["seconds"], "measured": m["rc"] == 0,
                         "out": m["out"].strip()[-200:]}
        if m["rc"] != 0:
            self.errors.append("seed --mutate: %s" % m["err"][-300:])
            return
        row["incremental"] = inc = self.phase(srv, c + [tok, "export", ex["export_id"]])
        if not inc["measured"]:
            self.errors.append("incremental export: %s" % inc.get("error"))
            return
        for key, a, b in [("seconds_ratio", inc["seconds"], ex["seconds"]),
                          ("cpu_ratio", inc["fzipd_cpu_s"], ex["fzipd_cpu_s"]),
                          ("size_ratio", inc["package_size"], ex["package_size"])]:
            inc[key] = round(a / b, 4) if b else None
        self.log("incremental %.2fs (%.1f%% of the export), %d transactions, %d bytes" % (
            inc["seconds"], 100 * (inc["seconds_ratio"] or 0), inc.get("transactions_count", -1),
            inc["package_size"]))

    def upload_quiet(self, c, tok, pkg):
        r = run_measured(c + [tok, "upload", pkg])
        res = last_json(r["out"]) or {}
        return res.get("import_id") if r["rc"] == 0 else None

    def import_phase(self, srv, c, tok, import_id, strategy, validate_only):
        if not import_id:
            return {"measured": False, "reason": "upload for this job failed"}
        res = self.phase(srv, c + [tok, "import", import_id, str(STRATEGY[strategy]),
                                   "1" if validate_only else "0"])
        if not res["measured"]:
            # Kept in the results with the reason; only --smoke treats it as an error.
            res["reason"] = res.get("error") or "job ended in status %s" % res.get("status")
            if self.args.smoke:
                self.errors.append("import %s%s: %s" % (
                    strategy, " (validate only)" if validate_only else "", res["reason"]))
        return res

    # ---- mongodump / mongorestore ------------------------------------------

    def mongo_tools(self, store_uri, work):
        dump, restore = self.args.mongodump, self.args.mongorestore
        if not dump or not restore:
            why = ("not measured: mongodump/mongorestore not available (pass --mongodump and "
                   "--mongorestore)")
            return {"measured": False, "reason": why}, {"measured": False, "reason": why}
        db = store_uri.rsplit("/", 1)[1]
        archive = os.path.join(work, "dump.archive.gz")
        base = store_uri.rsplit("/", 1)[0]
        d = run_measured([dump, "--uri", base, "--db", db, "--archive=" + archive, "--gzip"])
        dres = {"seconds": d["seconds"], "max_rss_kib": d["max_rss_kib"], "cpu_s": d["cpu_s"],
                "measured": d["rc"] == 0,
                "archive_bytes": os.path.getsize(archive) if os.path.exists(archive) else 0}
        if d["rc"]:
            dres["reason"] = d["err"][-500:]
        r = run_measured([restore, "--uri", base, "--archive=" + archive, "--gzip",
                          "--nsFrom", db + ".*", "--nsTo", db + "_restore.*"])
        rres = {"seconds": r["seconds"], "max_rss_kib": r["max_rss_kib"], "cpu_s": r["cpu_s"],
                "measured": r["rc"] == 0}
        if r["rc"]:
            rres["reason"] = r["err"][-500:]
        return dres, rres


# ---- stores ----------------------------------------------------------------------

def start_ferretdb(args):
    """Builds and starts the test FerretDB (tests/ferretdb/ferretdb.sh); returns base URI."""
    script = os.path.join(args.src_dir, "tests", "ferretdb", "ferretdb.sh")
    binary = os.path.join(args.bin_dir, "ferretdb", "fzip-ferretdb")
    run_dir = os.path.join(args.work_dir, "ferretdb")
    subprocess.run([script, "build", binary], check=True)
    subprocess.run([script, "start", binary, run_dir], check=True)
    with open(os.path.join(run_dir, "uri")) as f:
        return f.read().strip().rstrip("/"), script, run_dir


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", required=True, help="CMake build directory with fzipd and bench/")
    ap.add_argument("--src-dir", default=os.path.dirname(here))
    ap.add_argument("--sizes", default="1000,10000,100000,1000000")
    ap.add_argument("--mongo-sizes", default="1000,10000",
                    help="sizes on MongoDB/FerretDB, which is far slower (default 1000,10000)")
    ap.add_argument("--stores", default="sqlite,mongodb")
    ap.add_argument("--work-dir", default=None)
    ap.add_argument("--out", default="results.json")
    ap.add_argument("--mongodump", default=None)
    ap.add_argument("--mongorestore", default=None)
    ap.add_argument("--phase-timeout", type=int, default=3600,
                    help="seconds one fzipd phase may take before it is reported as not measured")
    ap.add_argument("--mongo-phase-timeout", type=int, default=600,
                    help="the same on MongoDB, where an overwrite import has been seen to hang")
    ap.add_argument("--smoke", action="store_true", help="fail on any harness error (CTest)")
    ap.add_argument("--export-only", action="store_true",
                    help="stop each size after the export phases and floors (no upload/import)")
    ap.add_argument("--streaming-only", action="store_true",
                    help="after the export, only download and upload with their floors "
                         "(blob store, raw TCP, raw gRPC), --stream-repeat rounds, medians")
    ap.add_argument("--stream-repeat", type=int, default=5,
                    help="rounds of the download and upload and their floors, medians "
                         "(default 5)")
    args = ap.parse_args()
    args.work_dir = os.path.abspath(args.work_dir or os.path.join(args.bin_dir, "bench-work"))
    sizes = [int(s) for s in args.sizes.split(",") if s]
    mongo_sizes = [int(s) for s in args.mongo_sizes.split(",") if s]
    stores = [s for s in args.stores.split(",") if s]
    if os.path.isdir(args.work_dir):
        shutil.rmtree(args.work_dir)
    os.makedirs(args.work_dir)

    bench = Bench(args)
    sampler = LoadSampler()
    sampler.start()
    results = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "command": " ".join(sys.argv), "machine": machine_info(), "runs": []}
    t0 = time.monotonic()
    try:
        for store in stores:
            if store == "sqlite":
                for n in sizes:
                    work = os.path.join(args.work_dir, "sqlite-%d" % n)
                    os.makedirs(work, exist_ok=True)
                    uri = "sqlite:" + os.path.join(work, "fzip.db")
                    results["runs"].append(bench.run_guarded("sqlite", uri, n, work))
                    save(args.out, results, sampler, t0, bench)
            elif store == "mongodb":
                # A fresh FerretDB per size: a hung job must not wedge the next size.
                bench.phase_timeout = args.mongo_phase_timeout
                for n in mongo_sizes:
                    base, script, run_dir = start_ferretdb(args)
                    try:
                        work = os.path.join(args.work_dir, "mongodb-%d" % n)
                        uri = "%s/bench_%d" % (base, n)
                        results["runs"].append(bench.run_guarded("mongodb", uri, n, work))
                        save(args.out, results, sampler, t0, bench)
                    finally:
                        subprocess.run([script, "stop", run_dir])
            else:
                raise SystemExit("unknown store %r" % store)
    finally:
        sampler.stop_event.set()
        save(args.out, results, sampler, t0, bench)
    bench.log("results in %s" % args.out)
    if args.smoke and bench.errors:
        print("bench smoke: harness errors:\n  " + "\n  ".join(bench.errors), file=sys.stderr)
        return 1
    return 0


def save(path, results, sampler, t0, bench):
    results["load_during_run"] = sampler.summary()
    results["elapsed_s"] = round(time.monotonic() - t0, 1)
    results["harness_errors"] = bench.errors
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=1)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    sys.exit(main())
