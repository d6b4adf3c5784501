#!/usr/bin/env python3
"""report.py: turns bench.py results (one or more JSON files) into the
Markdown tables of docs/BENCHMARKS.md: absolute figures, ratios to the
floor measured in the same run, growth from the smallest to the largest
size, and each target with whether it is met.

    python3 bench/report.py results.json [more.json ...] > report.md
"""
import json
import sys

MIB = 1024.0


def get(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def measured(d):
    return isinstance(d, dict) and d.get("measured", False)


def fmt_s(x):
    return "-" if x is None else ("%.3f" % x if x < 10 else "%.1f" % x)


def fmt_ratio(a, b):
    if a is None or not b:
        return "-"
    return "%.2fx" % (a / b)


def mib(kib):
    return "-" if not kib else "%.1f" % (kib / MIB)


def why(d):
    r = str(get(d, "reason") or get(d, "error") or "not run")
    if not r.startswith("not measured"):
        r = "not measured: " + r
    return r.replace("|", "/").replace("\n", " ")[:140]


def job_seconds(d):
    """Job time from the client's polls (create/start until terminal)."""
    return get(d, "seconds") if measured(d) else None


def export_table(runs):
    out = ["| transactions | export job s | single-thread floor s (scan + blobs + deflate + "
           "sha256) | ratio | two-core floor s | ratio | µs / transaction | fzipd peak RSS MiB | "
           "fzipd CPU s | package bytes | JSON bytes |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        n, ex, fl = r["transactions"], r.get("export"), r.get("export_floor")
        if not measured(ex):
            out.append("| %d | %s |||||||||| " % (n, why(ex)))
            continue
        s, f, f2 = job_seconds(ex), get(fl, "floor_s"), get(fl, "floor2_s")
        out.append("| %d | %s | %s (%s + %s + %s + %s) | %s | %s | %s | %.1f | %s | %s | %s | %s |"
                   % (n, fmt_s(s), fmt_s(f), fmt_s(get(fl, "scan_s")),
                      fmt_s(get(fl, "blob_read_s")), fmt_s(get(fl, "deflate_s")),
                      fmt_s(get(fl, "sha256_s")), fmt_ratio(s, f), fmt_s(f2), fmt_ratio(s, f2),
                      s / n * 1e6, mib(get(ex, "fzipd_peak_rss_kib")), get(ex, "fzipd_cpu_s"),
                      r.get("package_bytes", "-"), r.get("json_bytes", "-")))
    return out


def stream_table(runs):
    """Streaming against two floors each: the raw gRPC C-core stream of the
    same bytes (bench_grpc_floor, the ceiling of any gRPC service) and the
    blob store read/written in-process."""
    out = ["| transactions | package MiB | download MiB/s | gRPC floor MiB/s | ratio | "
           "download to a file MiB/s | "
           "blob read MiB/s | ratio | upload MiB/s | gRPC floor MiB/s | ratio | "
           "blob write MiB/s | ratio | raw TCP MiB/s | fzipd peak RSS MiB (down / up) |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        dl, up = r.get("download"), r.get("upload")
        to_file = get(r, "download_to_file", "mib_per_s") or "-"
        br, bw, tcp = r.get("blob_read_floor"), r.get("blob_write_floor"), r.get("tcp_floor")
        gd, gu = get(r, "grpc_download_floor", "mib_per_s"), get(r, "grpc_upload_floor", "mib_per_s")
        d, u = get(dl, "mib_per_s"), get(up, "mib_per_s")
        out.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s |" % (
            r["transactions"], "%.1f" % (r.get("package_bytes", 0) / 1048576.0),
            d if measured(dl) else why(dl), gd, fmt_ratio(d, gd), to_file,
            get(br, "mib_per_s"), fmt_ratio(d, get(br, "mib_per_s")),
            u if measured(up) else why(up), gu, fmt_ratio(u, gu),
            get(bw, "mib_per_s"), fmt_ratio(u, get(bw, "mib_per_s")), get(tcp, "mib_per_s"),
            mib(get(dl, "fzipd_peak_rss_kib")), mib(get(up, "fzipd_peak_rss_kib"))))
    return out


def import_table(runs):
    out = ["| transactions | validate-only s | import into empty s | import floor s "
           "(put + blobs + inflate + sha256) | ratio | overwrite into full s | ratio | "
           "µs / transaction (empty) | fzipd peak RSS MiB (validate / empty / overwrite) |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        n = r["transactions"]
        v, e, o, fl = (r.get("validate_only"), r.get("import_empty"), r.get("import_overwrite"),
                       r.get("import_floor"))
        f = get(fl, "floor_s")
        es, os_ = job_seconds(e), job_seconds(o)
        out.append("| %d | %s | %s | %s (%s + %s + %s + %s) | %s | %s | %s | %s | %s / %s / %s |" % (
            n, fmt_s(job_seconds(v)) if measured(v) else why(v),
            fmt_s(es) if measured(e) else why(e), fmt_s(f), fmt_s(get(fl, "put_s")),
            fmt_s(get(fl, "blob_write_s")), fmt_s(get(fl, "inflate_s")),
            fmt_s(get(fl, "sha256_s")), fmt_ratio(es, f),
            fmt_s(os_) if measured(o) else why(o), fmt_ratio(os_, f),
            "%.1f" % (es / n * 1e6) if es else "-",
            mib(get(v, "fzipd_peak_rss_kib")), mib(get(e, "fzipd_peak_rss_kib")),
            mib(get(o, "fzipd_peak_rss_kib"))))
    return out


def incremental_table(runs):
    out = ["| transactions | export s | incremental s (1% changed) | time ratio | fzipd CPU "
           "ratio | package bytes (full / incremental) | transactions in the increment |",
           "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        ex, inc = r.get("export"), r.get("incremental")
        if not measured(inc):
            out.append("| %d | %s | %s ||||| " % (r["transactions"], fmt_s(job_seconds(ex)),
                                                 why(inc)))
            continue
        out.append("| %d | %s | %s | %s | %s | %s / %s | %s |" % (
            r["transactions"], fmt_s(job_seconds(ex)), fmt_s(job_seconds(inc)),
            fmt_ratio(job_seconds(inc), job_seconds(ex)),
            fmt_ratio(get(inc, "fzipd_cpu_s"), get(ex, "fzipd_cpu_s")),
            get(ex, "package_size"), get(inc, "package_size"), get(inc, "transactions_count")))
    return out


def mongo_tools_table(runs):
    out = ["| transactions | fzip export + download s | mongodump --archive --gzip s | "
           "peak RSS MiB (fzipd / mongodump) | fzip upload + import s | mongorestore s | "
           "peak RSS MiB (fzipd / mongorestore) |",
           "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        # mongodump writes its archive to a file: the download that does too.
        ex, up, im = r.get("export"), r.get("upload"), r.get("import_empty")
        dl = r.get("download_to_file") or r.get("download")
        d, rs = r.get("mongodump"), r.get("mongorestore")
        ours_out = (job_seconds(ex) + get(dl, "seconds")) if measured(ex) and measured(dl) else None
        ours_in = (get(up, "seconds") + job_seconds(im)) if measured(up) and measured(im) else None
        out.append("| %d | %s | %s | %s / %s | %s | %s | %s / %s |" % (
            r["transactions"], fmt_s(ours_out), fmt_s(get(d, "seconds")) if measured(d) else why(d),
            mib(get(ex, "fzipd_peak_rss_kib")), mib(get(d, "max_rss_kib")), fmt_s(ours_in),
            fmt_s(get(rs, "seconds")) if measured(rs) else why(rs),
            mib(get(im, "fzipd_peak_rss_kib")), mib(get(rs, "max_rss_kib"))))
    return out


# Import into an empty user at 1M transactions before issue 11
# (docs/BENCHMARKS.md, run B): the issue asks for >= 3x faster.
RUN_B_IMPORT_1M_S = 162.0


def targets(runs):
    """Issue 11's targets (docs/BENCHMARKS.md, "Issue 11's targets after
    run Y"), judged on the embedded store's runs of one JSON file."""
    rs = sorted((r for r in runs if r["store"] == "sqlite" and "failed" not in r),
                key=lambda r: r["transactions"])
    if len(rs) < 2:
        return ["(needs at least two sqlite sizes)"]
    small, big = rs[0], rs[-1]
    mid = rs[-2]
    lines = ["| target | figure | met |", "|---|---|---|"]

    def row(name, figure, ok):
        lines.append("| %s | %s | %s |" % (name, figure, "-" if ok is None else
                                           ("yes" if ok else "**no**")))

    ex, fl = job_seconds(big.get("export")), get(big, "export_floor", "floor_s")
    fl2 = get(big, "export_floor", "floor2_s")
    row("export <= 1.2x of the two-core floor at %d" % big["transactions"],
        fmt_ratio(ex, fl2), ex / fl2 <= 1.2 if ex and fl2 else None)
    row("export < 0.7x of the same run's single-thread zlib-6 floor at %d" % big["transactions"],
        fmt_ratio(ex, fl), ex / fl < 0.7 if ex and fl else None)
    inc = job_seconds(big.get("incremental"))
    row("incremental export of 1%% changed <= 5%% of a full export at %d" % big["transactions"],
        fmt_ratio(inc, ex) if inc else why(big.get("incremental")),
        inc / ex <= 0.05 if inc and ex else None)
    im, ifl = job_seconds(big.get("import_empty")), get(big, "import_floor", "floor_s")
    row("import (empty user) <= 1.5x of the import floor at %d" % big["transactions"],
        fmt_ratio(im, ifl) if im else why(big.get("import_empty")),
        im / ifl <= 1.5 if im and ifl else None)
    if big["transactions"] == 1000000:
        row("import (empty user) >= 3x faster than run B's %.0f s at 1000000" % RUN_B_IMPORT_1M_S,
            "%s s (%.2fx)" % (fmt_s(im), RUN_B_IMPORT_1M_S / im) if im
            else why(big.get("import_empty")),
            RUN_B_IMPORT_1M_S / im >= 3 if im else None)
    for key, label in [("export", "export"), ("validate_only", "validate-only"),
                       ("import_empty", "import")]:
        a, b = get(small, key, "fzipd_peak_rss_kib"), get(big, key, "fzipd_peak_rss_kib")
        if a and b and measured(big.get(key)):
            g = (b - a) / MIB
            row("fzipd peak RSS growth <= 16 MiB, %s, %d -> %d" % (
                label, small["transactions"], big["transactions"]),
                "%.1f MiB (%s -> %s)" % (g, mib(a), mib(b)), g <= 16)
        else:
            row("fzipd peak RSS growth <= 16 MiB, %s" % label, why(big.get(key)), None)
    for key, floor, label in [("download", "grpc_download_floor", "download >= 0.8x of the "
                               "raw gRPC C-core streaming floor"),
                              ("upload", "blob_write_floor", "upload >= 0.8x of blob write")]:
        a, b = get(big, key, "mib_per_s"), get(big, floor, "mib_per_s")
        rounds = len(get(big, key, "samples_mib_per_s") or []) or 1
        row("%s at %d" % (label, big["transactions"]),
            "%s (%s vs %s MiB/s, %s)" % (fmt_ratio(a, b), a, b,
                                         "medians of %d" % rounds if rounds > 1 else "one transfer"),
            a / b >= 0.8 if a and b else None)
    for key, label, floor_key, floor in [("export", "export", "export_floor", "floor2_s"),
                                         ("import_empty", "import", "import_floor", "floor_s")]:
        a, b = job_seconds(mid.get(key)), job_seconds(big.get(key))
        if a and b:
            pa, pb = a / mid["transactions"] * 1e6, b / big["transactions"] * 1e6
            row("%s time per transaction flat within 20%%, %d -> %d" % (
                label, mid["transactions"], big["transactions"]),
                "%.1f -> %.1f µs (%+.0f%%)" % (pa, pb, 100 * (pb - pa) / pa),
                abs(pb - pa) / pa <= 0.2)
            # Not a target: whether the growth is fzip's or its floor's
            # too (the data and the store at that size; BENCHMARKS.md
            # "What grows from 100k to 1M").
            fa, fb = get(mid, floor_key, floor), get(big, floor_key, floor)
            if fa and fb:
                row("(%s against its floor, %d -> %d: what fzip adds)" % (
                    label, mid["transactions"], big["transactions"]),
                    "%.2fx -> %.2fx; the floor per transaction %+.0f%%" % (
                        a / fa, b / fb, 100 * (fb / big["transactions"] - fa / mid["transactions"])
                        / (fa / mid["transactions"])), None)
        else:
            row("%s time per transaction flat within 20%%" % label, "-", None)
    mongo = [r for r in runs if r["store"] == "mongodb" and "failed" not in r]
    if mongo:
        m = max(mongo, key=lambda r: r["transactions"])
        d, rs_ = m.get("mongodump"), m.get("mongorestore")
        ours_out = (job_seconds(m.get("export")) or 0) + (
            get(m, "download_to_file", "seconds") or get(m, "download", "seconds") or 0)
        ours_in = (get(m, "upload", "seconds") or 0) + (job_seconds(m.get("import_empty")) or 0)
        row("faster than mongodump (MongoDB, %d)" % m["transactions"],
            "%s vs %s s" % (fmt_s(ours_out), fmt_s(get(d, "seconds"))) if measured(d) else why(d),
            ours_out < get(d, "seconds") if measured(d) else None)
        row("faster than mongorestore (MongoDB, %d)" % m["transactions"],
            "%s vs %s s" % (fmt_s(ours_in), fmt_s(get(rs_, "seconds"))) if measured(rs_)
            else why(rs_), ours_in < get(rs_, "seconds") if measured(rs_) and ours_in else None)
    return lines


def main():
    docs = [json.load(open(p)) for p in sys.argv[1:]]
    runs = [r for d in docs for r in d["runs"]]
    print("## Machine and load\n")
    for p, d in zip(sys.argv[1:], docs):
        m = d["machine"]
        print("- `%s`: %d CPUs (%s), %.1f GiB RAM, kernel %s; started %s, %.0f s; "
              "1-min load during the run: min %s / mean %s / max %s (%d samples); command `%s`" % (
                  p, m["nproc"], m["cpu_model"],
                  m["mem_total_kib"] / 1048576.0, m["kernel"], d.get("started_at"),
                  d.get("elapsed_s", 0), d["load_during_run"]["min"],
                  d["load_during_run"]["mean"], d["load_during_run"]["max"],
                  d["load_during_run"]["samples"], d["command"]))
        if d.get("harness_errors"):
            print("  - harness errors: %s" % "; ".join(d["harness_errors"]))
    for store in ("sqlite", "mongodb"):
        rs = sorted((r for r in runs if r["store"] == store and "failed" not in r),
                    key=lambda r: r["transactions"])
        failed = [r for r in runs if r["store"] == store and "failed" in r]
        if not rs and not failed:
            continue
        print("\n## %s\n" % store)
        for r in failed:
            print("- n=%d failed: %s" % (r["transactions"], r["failed"]))
        if not rs:
            continue
        print("\n### Seed\n")
        print("| transactions | seed s | seed peak RSS MiB |\n|---:|---:|---:|")
        for r in rs:
            print("| %d | %s | %s |" % (r["transactions"], fmt_s(get(r, "seed", "seconds")),
                                        mib(get(r, "seed", "max_rss_kib"))))
        for title, table in [("Export", export_table), ("Incremental export", incremental_table),
                             ("Streaming", stream_table), ("Import", import_table)]:
            print("\n### %s\n" % title)
            print("\n".join(table(rs)))
        if store == "mongodb":
            print("\n### Against mongodump / mongorestore\n")
            print("\n".join(mongo_tools_table(rs)))
    print("\n## Targets\n")
    print("\n".join(targets(runs)))


if __name__ == "__main__":
    main()
