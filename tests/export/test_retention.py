"""End-to-end: retention of a schedule's exports (ApplyRetention, `fzip
retention apply`, docs/EXPORT.md "Retention").

A real fzipd on loopback (embedded store, or MongoDB behind the ferretdb
fixture) with a fast reaper, real gRPC clients and the real `fzip`
binary.  Exports are real (packages in the store, one an increment on
another); tests/export/retention_restamp then gives each the schedule id,
completion day and expiry a test needs (as if the schedule had made it
that day: buckets span days and weeks, which a test cannot wait for).

The policy (keep_daily 2, keep_weekly 2) counts days in America/New_York,
where an export made at 04:00 UTC belongs to the day before: in UTC it
would go.  A dry run lists every decision and changes nothing; apply
deletes exactly the export no rule keeps (package gone), keeps the rest
(kept, reasons, expires_at 0, still downloadable), and keeps the complete
base of a kept increment that no rule keeps (reason "base"); the kept
exports outlive their former expiry while the reaper expires an unkept
export with the same one; a later run forgets an export that is no longer
kept; another user cannot apply the schedule; DeleteSchedule returns the
kept exports to the normal expiry.
"""
import hashlib
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from fzipd_harness import Checks, Fzipd, unique_user  # noqa: E402

import grpc  # noqa: E402
from fzip.v1 import export_service_pb2 as epb  # noqa: E402
from fzip.v1 import jobs_pb2 as jpb  # noqa: E402
from fzip.v1 import schedule_service_pb2 as spb  # noqa: E402
from fzip.v1 import schedule_service_pb2_grpc as sgrpc  # noqa: E402
from fzip_e2e import Client, check, expect, fzip_cli, wait_for  # noqa: E402

REAPER_MS = 300
# export/retention.h RETENTION_EXPIRY_GUARD_MS: an export expiring sooner
# is left to the reaper.  The exports expire a little after it, so that
# retention still takes them and the test waits little past it.
GUARD_S = 60
EXPIRY_S = GUARD_S + 20
ZONE = "America/New_York"


def ms(text):
    """'2024-01-09 12:00' UTC as epoch ms."""
    import calendar
    return calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M")) * 1000


# name -> (completed at, UTC; base name).  In New York (UTC-5): D Tue Jan 9,
# E Mon Jan 8 23:00, C Mon Jan 8 07:00, B Wed Jan 3 (ISO week 1), A Jan 1.
PLAN = {
    "A": ("2024-01-01 12:00", None),
    "B": ("2024-01-03 12:00", None),
    "C": ("2024-01-08 12:00", None),
    "D": ("2024-01-09 12:00", "C"),
    "E": ("2024-01-09 04:00", None),
}
# newest first, as the decisions come: (name, keep, reasons)
WANT = [("D", True, ["daily", "weekly"]), ("E", True, ["daily"]), ("C", True, ["base"]),
        ("B", True, ["weekly"]), ("A", False, [])]


def probe(srv, export_id):
    out = subprocess.run([os.environ["FZIP_STORE_PROBE"], srv.store, "packages",
                          "export-" + export_id], capture_output=True, text=True, check=True)
    return out.stdout.strip().startswith("present ")


def restamp(srv, user, export_id, schedule_id, completed_at, expires_at):
    tool = os.path.join(os.path.dirname(os.environ["FZIP_STORE_PROBE"]), "retention_restamp")
    subprocess.run([tool, srv.store, user, export_id, schedule_id, str(completed_at),
                    str(expires_at)], check=True, capture_output=True)


def get(c, export_id):
    return c.exp.GetExport(epb.GetExportRequest(export_id=export_id), metadata=c.md).job


def completed(c, **kw):
    job = c.create(**kw)
    final = c.watch(job.export_id)[-1]
    check(final.status == jpb.EXPORT_STATUS_COMPLETED, "export ended %s: %s"
          % (jpb.ExportStatus.Name(final.status), final.error.message))
    return final


def decisions(resp):
    """ApplyRetentionResponse's decisions as (export id, keep, reasons)."""
    return [(d.export_id, d.keep, list(d.reasons)) for d in resp.decisions]


def json_decisions(js):
    """The same from `fzip --json retention apply` (proto JSON names)."""
    return [(d.get("exportId", d.get("export_id")), bool(d.get("keep")), list(d.get("reasons", [])))
            for d in js.get("decisions", [])]


def test_retention(srv):
    user = unique_user("ret")
    srv.seed(user, 40, seed=7)
    c = Client(srv, user)
    sched = sgrpc.ScheduleServiceStub(srv.channel)
    policy = spb.RetentionPolicy(keep_daily=2, keep_weekly=2)
    schedule = sched.CreateSchedule(spb.CreateScheduleRequest(spec=spb.ScheduleSpec(
        cron="@daily", time_zone=ZONE, paused=True, retention=policy)), metadata=c.md).schedule
    sid = schedule.schedule_id

    ids = {}
    for name in ("A", "B", "C", "E"):
        ids[name] = completed(c).export_id
    ids["D"] = completed(c, incremental_base_id=ids["C"]).export_id
    ids["N"] = completed(c).export_id  # a client's export, not the schedule's
    expires = int(time.time() * 1000) + EXPIRY_S * 1000
    for name, (at, _) in PLAN.items():
        restamp(srv, user, ids[name], sid, ms(at), expires)
    restamp(srv, user, ids["N"], "", ms("2024-01-02 12:00"), expires)
    want = [(ids[n], keep, reasons) for n, keep, reasons in WANT]

    # Dry run: every decision, nothing changed.
    r = expect(fzip_cli(srv, user, "--json", "retention", "apply", sid, "--dry-run"), 0, "dry run")
    js = json.loads(r.stdout)
    check(json_decisions(js) == want, "dry run decisions %s, want %s" % (json_decisions(js), want))
    check(int(js.get("kept", 0)) == 4 and int(js.get("deleted", 0)) == 0, "dry run counts %s" % js)
    for name in PLAN:
        job = get(c, ids[name])
        check(not job.kept and job.expires_at == expires and job.status ==
              jpb.EXPORT_STATUS_COMPLETED, "dry run changed %s: %s" % (name, job))
        check(probe(srv, ids[name]), "dry run deleted %s's package" % name)
    base = [d for d in js["decisions"] if d.get("exportId", d.get("export_id")) == ids["D"]][0]
    check(base.get("baseExportId", base.get("base_export_id")) == ids["C"], "D names its base")

    # Apply: A goes with its package, the rest are kept and never expire.
    r = expect(fzip_cli(srv, user, "retention", "apply", sid), 0, "apply")
    check("4 kept, 1 deleted" in r.stdout, "apply output: %s" % r.stdout)
    check(ids["C"] in r.stdout and "base" in r.stdout, "apply lists the base: %s" % r.stdout)
    try:
        get(c, ids["A"])
        check(False, "A survived retention")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.NOT_FOUND, "A: %s" % e.code())
    check(not probe(srv, ids["A"]), "A's package survived retention")
    for name, keep, reasons in WANT[:4]:
        job = get(c, ids[name])
        check(job.kept and list(job.kept_reasons) == reasons and job.expires_at == 0 and
              job.status == jpb.EXPORT_STATUS_COMPLETED and job.schedule_id == sid,
              "%s after apply: kept %s reasons %s expires %d status %s" % (
                  name, job.kept, list(job.kept_reasons), job.expires_at,
                  jpb.ExportStatus.Name(job.status)))
    _, data = c.download(ids["C"])
    check(hashlib.sha256(data).hexdigest() == get(c, ids["C"]).package_sha256,
          "the kept base downloads whole")

    # Past the expiry they had: the reaper expires N, never a kept export.
    def n_expired():
        return get(c, ids["N"]).status == jpb.EXPORT_STATUS_EXPIRED and not probe(srv, ids["N"])
    wait_for(n_expired, EXPIRY_S + 60, "the reaper to expire the unkept export")
    check(time.time() * 1000 > expires, "waited past the former expiry")
    for name, _, _ in WANT[:4]:
        job = get(c, ids[name])
        check(job.status == jpb.EXPORT_STATUS_COMPLETED and probe(srv, ids[name]),
              "kept %s expired: %s" % (name, jpb.ExportStatus.Name(job.status)))

    # A later run (F, Wed Jan 10): E is no longer kept and goes.
    ids["F"] = completed(c).export_id
    restamp(srv, user, ids["F"], sid, ms("2024-01-10 12:00"), int(time.time() * 1000) + 86400000)
    resp = sched.ApplyRetention(spb.ApplyRetentionRequest(schedule_id=sid), metadata=c.md)
    got = decisions(resp)
    want2 = [(ids["F"], True, ["daily", "weekly"]), (ids["D"], True, ["daily"]),
             (ids["E"], False, []), (ids["C"], True, ["base"]), (ids["B"], True, ["weekly"])]
    check(got == want2 and resp.kept == 4 and resp.deleted == 1,
          "second apply %s (kept %d deleted %d), want %s" % (got, resp.kept, resp.deleted, want2))
    check(not probe(srv, ids["E"]), "E's package survived")
    check(list(get(c, ids["D"]).kept_reasons) == ["daily"], "D's reasons follow the policy")

    # Another user sees no such schedule.
    other = Client(srv, unique_user("ret-other"))
    try:
        sched.ApplyRetention(spb.ApplyRetentionRequest(schedule_id=sid, dry_run=True),
                             metadata=other.md)
        check(False, "another user applied the schedule")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.NOT_FOUND, "another user: %s" % e.code())

    # DeleteSchedule: the kept exports go back to the normal expiry.
    sched.DeleteSchedule(spb.DeleteScheduleRequest(schedule_id=sid), metadata=c.md)
    now = time.time() * 1000
    for name in ("F", "D", "C", "B"):
        job = get(c, ids[name])
        check(not job.kept and not job.kept_reasons and job.expires_at > now and
              job.status == jpb.EXPORT_STATUS_COMPLETED,
              "%s after DeleteSchedule: kept %s expires %d" % (name, job.kept, job.expires_at))


def main():
    checks = Checks()
    with Fzipd(extra_args=["--reaper-interval-ms", str(REAPER_MS)]) as srv:
        checks.run(test_retention, srv)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
