"""End-to-end: scheduled exports (ScheduleService, docs/EXPORT.md
"Schedules and retention").

Real fzipd processes on loopback (embedded store, or MongoDB behind the
ferretdb fixture), real gRPC clients and the real `fzip` binary.  Time is
moved on through fzipd's test-only --test-clock-offset-file (the offset in
ms the scheduler and ScheduleService add to the wall clock), never waited
for: a due schedule runs exactly once with two replicas on one store, and
a replica that takes a run over from one stalled past its lease (failpoint
schedule.run_created) gets the same export back;
missed runs are caught up once after a restart (missed_runs counts the
rest); a paused schedule never runs; update is version-checked; a bad cron
or time zone is INVALID_ARGUMENT naming the field (BadRequest); the
per-user limit; another user's schedule is invisible; CreateSchedule's
request_id; full_every=3 makes complete, incremental, incremental,
complete; ApplyRetention's dry run lists only, and retention runs after a
run (keep_last); a run whose export is refused is recorded once as its
last_error; delete leaves the packages to the normal expiry or, with
delete_packages, deletes them; `fzip schedule ...`.
"""
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from fzipd_harness import Checks, Fzipd, store_uri, unique_user  # noqa: E402

import grpc  # noqa: E402
from fzip.v1 import export_service_pb2 as epb  # noqa: E402
from fzip.v1 import jobs_pb2 as jpb  # noqa: E402
from fzip.v1 import schedule_service_pb2 as spb  # noqa: E402
from fzip.v1 import schedule_service_pb2_grpc as sgrpc  # noqa: E402
from fzip_e2e import Client, check, expect, fzip_cli, status_details, wait_for  # noqa: E402

SCALE = float(os.environ.get("FZIP_TEST_SCALE", "1"))
SEED_TX = max(40, int(300 * SCALE))
HOUR_MS = 3600 * 1000
TICK_MS = 200
SCHEDULES_PER_USER_MAX = 20  # export/svc_schedule.h
RUN_WAIT_S = 120 if os.environ.get("FZIP_TEST_STORE") == "mongodb" else 60


class Clock:
    """The offset file the fzipds read; set() moves their time on."""

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.set(0)

    def set(self, offset_ms):
        self.offset = offset_ms
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % offset_ms)
        os.replace(tmp, self.path)  # never half a number

    def now_ms(self):
        return int(time.time() * 1000) + self.offset

    def past(self, at_ms, by_ms=1000):
        """Moves time to just past at_ms (scheduler time)."""
        self.set(self.offset + max(0, at_ms - self.now_ms()) + by_ms)


def server_args(clock):
    return ["--schedule-tick-ms", str(TICK_MS), "--test-clock-offset-file", clock.path]


class Sched:
    def __init__(self, srv, user):
        self.md = srv.metadata(user)
        self.stub = sgrpc.ScheduleServiceStub(srv.channel)
        self.exports = Client(srv, user)

    def create(self, **spec):
        req = spb.CreateScheduleRequest(spec=spb.ScheduleSpec(**spec))
        return self.stub.CreateSchedule(req, metadata=self.md).schedule

    def get(self, sid):
        return self.stub.GetSchedule(spb.GetScheduleRequest(schedule_id=sid),
                                     metadata=self.md).schedule

    def update(self, sid, version=0, **spec):
        req = spb.UpdateScheduleRequest(schedule_id=sid, spec=spb.ScheduleSpec(**spec),
                                        expected_version=version)
        return self.stub.UpdateSchedule(req, metadata=self.md).schedule

    def delete(self, sid, delete_packages=False):
        self.stub.DeleteSchedule(spb.DeleteScheduleRequest(schedule_id=sid,
                                                           delete_packages=delete_packages),
                                 metadata=self.md)

    def list(self):
        out, token = [], ""
        while True:
            resp = self.stub.ListSchedules(spb.ListSchedulesRequest(page_size=7, page_token=token),
                                           metadata=self.md)
            out.extend(resp.schedules)
            token = resp.next_page_token
            if not token:
                return out

    def exports_of(self, sid):
        """The user's exports the schedule created, oldest first."""
        out, token = [], ""
        while True:
            resp = self.exports.exp.ListExports(epb.ListExportsRequest(page_size=100,
                                                                       page_token=token),
                                                metadata=self.md)
            out.extend(j for j in resp.jobs if j.schedule_id == sid)
            token = resp.next_page_token
            if not token:
                return sorted(out, key=lambda j: (j.created_at, j.export_id))

    def wait_runs(self, sid, runs):
        return wait_for(lambda: (lambda s: s if s.runs >= runs else None)(self.get(sid)),
                        RUN_WAIT_S, "schedule %s to reach %d runs" % (sid, runs))

    def wait_completed(self, export_id):
        final = self.exports.watch(export_id)[-1]
        check(final.status == jpb.EXPORT_STATUS_COMPLETED,
              "scheduled export ended %s: %s" % (jpb.ExportStatus.Name(final.status),
                                                 final.error.message))
        return final


def rpc_code(fn):
    try:
        fn()
    except grpc.RpcError as e:
        return e
    raise AssertionError("the call succeeded")


def field_violations(e):
    _, _, bad = status_details(e)
    return [v.field for b in bad for v in b.field_violations]


def test_due_schedule_runs_once_on_two_replicas_and_missed_runs_once(store_dir):
    clock = Clock(os.path.join(store_dir, "clock"))
    user = unique_user("sched")
    store = store_uri(store_dir)  # one store for every fzipd of this test
    a = Fzipd(extra_args=server_args(clock), store=store)
    b = Fzipd(extra_args=server_args(clock), store=store)
    with a, b:
        a.seed(user, SEED_TX)
        s = Sched(a, user)
        sch = s.create(cron="@hourly", description="nightly")
        check(sch.version == 1 and sch.runs == 0 and sch.next_run_at > clock.now_ms(),
              "new schedule: %r" % sch)
        check(sch.next_run_at % HOUR_MS == 0, "@hourly not on the hour: %d" % sch.next_run_at)
        first_due = sch.next_run_at
        clock.past(first_due)
        got = s.wait_runs(sch.schedule_id, 1)
        time.sleep(20 * TICK_MS / 1000)  # both replicas ticked many times since
        got = s.get(sch.schedule_id)
        exports = s.exports_of(sch.schedule_id)
        check(got.runs == 1 and len(exports) == 1,
              "two replicas: %d runs, %d exports (want 1, 1)" % (got.runs, len(exports)))
        check(got.last_run_at == first_due and got.last_export_id == exports[0].export_id,
              "run not recorded: %r" % got)
        check(got.next_run_at == first_due + HOUR_MS and got.missed_runs == 0,
              "next %d missed %d" % (got.next_run_at, got.missed_runs))
        check(exports[0].request_id == "schedule-%s-%d" % (sch.schedule_id, first_due),
              "request_id %r" % exports[0].request_id)
        check(exports[0].description == "nightly", "spec not carried to the export")
        s.wait_completed(exports[0].export_id)

    # No replica for five hours: on restart the first missed due time runs
    # once, the other four are counted.
    clock.set(clock.offset + 5 * HOUR_MS)
    with Fzipd(extra_args=server_args(clock), store=store) as c:
        s = Sched(c, user)
        got = s.wait_runs(sch.schedule_id, 2)
        time.sleep(10 * TICK_MS / 1000)
        got = s.get(sch.schedule_id)
        check(got.runs == 2 and got.missed_runs == 4,
              "catch-up: runs %d missed %d (want 2, 4)" % (got.runs, got.missed_runs))
        check(got.last_run_at == first_due + HOUR_MS, "caught-up run due %d" % got.last_run_at)
        check(got.next_run_at == first_due + 6 * HOUR_MS and got.next_run_at > clock.now_ms(),
              "next after catch-up %d" % got.next_run_at)
        check(len(s.exports_of(sch.schedule_id)) == 2, "catch-up made more than one export")


def log_has(srv, msg):
    return any(json.loads(line).get("msg") == msg
               for line in open(srv.log_path, encoding="utf-8", errors="replace")
               if line.startswith("{"))


def test_takeover_mid_run_makes_no_second_export(store_dir):
    """A replica stalls past its lease between creating the run's export
    and recording the run (failpoint): the replica that takes the schedule
    over gets the same export back (its request_id), not a second one."""
    clock = Clock(os.path.join(store_dir, "clock-takeover"))
    user = unique_user("sched")
    store = store_uri(store_dir)
    lease = ["--job-lease-ms", "1000"]
    a = Fzipd(extra_args=server_args(clock) + lease, store=store,
              env={"FZIP_FAILPOINTS": "schedule.run_created=delay:6000"})
    b = Fzipd(extra_args=server_args(clock) + lease, store=store)
    with a:
        a.seed(user, SEED_TX)
        s = Sched(a, user)
        sch = s.create(cron="@hourly")
        clock.past(sch.next_run_at)
        wait_for(lambda: log_has(a, "scheduled export created"), RUN_WAIT_S,
                 "replica A to create the run's export")
        with b:
            sb = Sched(b, user)
            got = sb.wait_runs(sch.schedule_id, 1)
            wait_for(lambda: log_has(b, "scheduled export replayed"), RUN_WAIT_S,
                     "replica B to take the run over and get the same export")
            time.sleep(7)  # A wakes up and records nothing twice
            got = sb.get(sch.schedule_id)
            exports = sb.exports_of(sch.schedule_id)
            check(got.runs == 1 and len(exports) == 1 and
                  got.last_export_id == exports[0].export_id,
                  "takeover: %d runs, %d exports" % (got.runs, len(exports)))
            sb.delete(sch.schedule_id, delete_packages=True)


def test_paused_update_and_version_conflict(srv, clock):
    user = unique_user("sched")
    s = Sched(srv, user)
    sch = s.create(cron="0 3 * * *", time_zone="Europe/London", paused=True)
    check(sch.next_run_at == 0, "paused schedule has next_run_at %d" % sch.next_run_at)
    clock.set(clock.offset + 48 * HOUR_MS)
    time.sleep(10 * TICK_MS / 1000)
    check(s.get(sch.schedule_id).runs == 0, "a paused schedule ran")
    e = rpc_code(lambda: s.update(sch.schedule_id, version=sch.version + 5, cron="@daily"))
    check(e.code() == grpc.StatusCode.ABORTED, "stale version: %s" % e.code())
    up = s.update(sch.schedule_id, version=sch.version, cron="0 3 * * *",
                  time_zone="Europe/London")
    check(up.version == sch.version + 1 and up.next_run_at > clock.now_ms(),
          "resumed: %r" % up)
    check(up.next_run_at - clock.now_ms() <= 25 * HOUR_MS, "next run more than a day away")
    e = rpc_code(lambda: s.update(sch.schedule_id, version=sch.version, cron="@daily"))
    check(e.code() == grpc.StatusCode.ABORTED, "reused version: %s" % e.code())
    s.delete(sch.schedule_id)


def test_bad_specs_name_the_field(srv, clock):
    s = Sched(srv, unique_user("sched"))
    for spec, field in [({"cron": "61 * * * *"}, "spec.cron"),
                        ({"cron": "* * *"}, "spec.cron"),
                        ({"cron": "0 0 30 2 *"}, "spec.cron"),
                        ({"cron": "@daily", "time_zone": "Mars/Olympus"}, "spec.time_zone"),
                        ({"cron": "@daily", "time_zone": "../etc/passwd"}, "spec.time_zone"),
                        ({"cron": "@daily", "full_every": -1}, "spec.full_every"),
                        ({"cron": "@daily", "retention": spb.RetentionPolicy(keep_last=-1)},
                         "spec.retention")]:
        e = rpc_code(lambda: s.create(**spec))
        check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, "%r: %s" % (spec, e.code()))
        check(field in field_violations(e), "%r: violations %r" % (spec, field_violations(e)))
    check(s.list() == [], "a refused spec left a schedule")


def test_per_user_limit_and_other_users(srv, clock):
    user, other = unique_user("sched"), unique_user("sched")
    s, o = Sched(srv, user), Sched(srv, other)
    made = [s.create(cron="%d * * * *" % i) for i in range(SCHEDULES_PER_USER_MAX)]
    e = rpc_code(lambda: s.create(cron="@daily"))
    check(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, "limit: %s" % e.code())
    listed = s.list()
    check(sorted(x.schedule_id for x in listed) == sorted(x.schedule_id for x in made),
          "list (pages of 7) differs from what was created")
    check(o.list() == [], "another user's schedules are listed")
    sid = made[0].schedule_id
    for call in (lambda: o.get(sid), lambda: o.update(sid, cron="@daily"),
                 lambda: o.delete(sid),
                 lambda: o.stub.ApplyRetention(spb.ApplyRetentionRequest(schedule_id=sid),
                                               metadata=o.md)):
        check(rpc_code(call).code() == grpc.StatusCode.NOT_FOUND, "another user reached it")
    s.delete(sid)
    check(rpc_code(lambda: s.get(sid)).code() == grpc.StatusCode.NOT_FOUND, "deleted schedule")
    s.create(cron="@daily")  # room again
    for x in s.list():
        s.delete(x.schedule_id)
    # request_id: a retried create returns the same schedule; other
    # parameters under the same key are refused.
    req = spb.CreateScheduleRequest(spec=spb.ScheduleSpec(cron="@weekly"), request_id="rid-1")
    one = s.stub.CreateSchedule(req, metadata=s.md).schedule
    two = s.stub.CreateSchedule(req, metadata=s.md).schedule
    check(one.schedule_id == two.schedule_id and len(s.list()) == 1, "request_id replay")
    req.spec.cron = "@daily"
    e = rpc_code(lambda: s.stub.CreateSchedule(req, metadata=s.md))
    check(e.code() == grpc.StatusCode.ALREADY_EXISTS, "reused request_id: %s" % e.code())
    s.delete(one.schedule_id)


def run_once(s, clock, sid, runs):
    """Moves time past the schedule's next run and waits for it and its export."""
    clock.past(s.get(sid).next_run_at)
    got = s.wait_runs(sid, runs)
    check(not got.HasField("last_error"), "run %d failed: %s" % (runs, got.last_error.message))
    return s.wait_completed(got.last_export_id)


def test_full_every_three_makes_complete_inc_inc_complete(srv, clock):
    user = unique_user("sched")
    srv.seed(user, SEED_TX)
    s = Sched(srv, user)
    sch = s.create(cron="@hourly", full_every=3)
    jobs = [run_once(s, clock, sch.schedule_id, n) for n in range(1, 5)]
    kinds = [j.chain_length for j in jobs]
    check(kinds == [0, 1, 2, 0], "chain lengths %r, want [0, 1, 2, 0]" % kinds)
    check(jobs[1].base_export_id == jobs[0].export_id and
          jobs[2].base_export_id == jobs[1].export_id and jobs[3].base_export_id == "",
          "bases %r" % [j.base_export_id for j in jobs])
    s.delete(sch.schedule_id, delete_packages=True)


def test_retention_after_runs_and_delete(srv, clock):
    user = unique_user("sched")
    srv.seed(user, SEED_TX)
    s = Sched(srv, user)
    sch = s.create(cron="@hourly", retention=spb.RetentionPolicy(keep_last=1))
    first = run_once(s, clock, sch.schedule_id, 1)
    second = run_once(s, clock, sch.schedule_id, 2)
    # A dry run only lists (the scheduler may already have applied it).
    dry = s.stub.ApplyRetention(spb.ApplyRetentionRequest(schedule_id=sch.schedule_id,
                                                          dry_run=True), metadata=s.md)
    by_id = {d.export_id: d for d in dry.decisions}
    check(dry.deleted == 0 and by_id[second.export_id].keep and
          list(by_id[second.export_id].reasons) == ["last"] and
          all(not d.keep for i, d in by_id.items() if i != second.export_id),
          "dry run: %r" % dry)
    # The scheduler comes back for the ended export's retention.
    clock.set(clock.offset + 11 * 1000)

    def only_second_kept():
        ids = [j.export_id for j in s.exports_of(sch.schedule_id)]
        return ids == [second.export_id]
    wait_for(only_second_kept, RUN_WAIT_S, "retention to forget the first run's export")
    kept = s.exports.exp.GetExport(epb.GetExportRequest(export_id=second.export_id),
                                   metadata=s.md).job
    check(kept.kept and list(kept.kept_reasons) == ["last"] and kept.expires_at == 0,
          "kept export: kept %s reasons %r expires %d"
          % (kept.kept, list(kept.kept_reasons), kept.expires_at))
    check(first.export_id not in [j.export_id for j in s.exports_of(sch.schedule_id)],
          "first export still there")
    # Deleting the schedule gives its kept export back to the normal expiry.
    s.delete(sch.schedule_id)
    after = s.exports.exp.GetExport(epb.GetExportRequest(export_id=second.export_id),
                                    metadata=s.md).job
    check(not after.kept and after.expires_at > 0, "released export: kept %s expires %d"
          % (after.kept, after.expires_at))
    # With delete_packages the exports go with it.
    sch = s.create(cron="@hourly")
    made = run_once(s, clock, sch.schedule_id, 1)
    s.delete(sch.schedule_id, delete_packages=True)
    e = rpc_code(lambda: s.exports.exp.GetExport(epb.GetExportRequest(export_id=made.export_id),
                                                 metadata=s.md))
    check(e.code() == grpc.StatusCode.NOT_FOUND, "delete_packages left the export")


def test_refused_run_is_recorded_once(srv, clock):
    """A run whose export the server refuses (a recipient with a 5-byte key:
    CreateSchedule does not check it, CreateExport does) is recorded as that
    run's last_error, not retried: runs 1, next_run_at moved on, no export."""
    user = unique_user("sched")
    s = Sched(srv, user)
    bad = jpb.EncryptionOptions(recipients=[jpb.EncryptionRecipient(x25519_public_key=b"short")])
    sch = s.create(cron="@hourly", encryption=bad)
    due = sch.next_run_at
    clock.past(due)
    got = s.wait_runs(sch.schedule_id, 1)
    time.sleep(10 * TICK_MS / 1000)  # many ticks: a retried run would show
    got = s.get(sch.schedule_id)
    check(got.runs == 1 and got.last_run_at == due and got.last_export_id == "",
          "refused run: runs %d last_run_at %d export %r" % (got.runs, got.last_run_at,
                                                              got.last_export_id))
    check(got.last_error.code == "INVALID_ARGUMENT" and "recipient" in got.last_error.message
          and got.last_error.phase == "create", "last_error %r" % got.last_error)
    check(got.next_run_at == due + HOUR_MS, "next_run_at %d, want %d" % (got.next_run_at,
                                                                       due + HOUR_MS))
    check(s.exports_of(sch.schedule_id) == [], "a refused run made an export")
    s.delete(sch.schedule_id)


def test_cli_schedule_commands(srv, clock):
    user = unique_user("sched")
    r = expect(fzip_cli(srv, user, "--json", "schedule", "create", "--cron", "30 2 * * *",
                        "--time-zone", "Europe/London", "--keep-daily", "7",
                        "--keep-within", "36h", "--full-every", "7"), 0, "schedule create")
    made = json.loads(r.stdout)
    sid = made["schedule_id"]
    spec = made["spec"]
    check(spec["cron"] == "30 2 * * *" and spec["time_zone"] == "Europe/London",
          "created spec %r" % spec)
    r = expect(fzip_cli(srv, user, "schedule", "update", sid, "--pause"), 0, "schedule update")
    got = Sched(srv, user).get(sid)
    check(got.spec.paused and got.next_run_at == 0 and got.spec.cron == "30 2 * * *" and
          got.spec.retention.keep_daily == 7 and got.spec.retention.keep_within_ms == 36 * HOUR_MS
          and got.spec.full_every == 7, "update --pause changed more than paused: %r" % got)
    r = expect(fzip_cli(srv, user, "schedule", "list"), 0, "schedule list")
    check(sid in r.stdout and "paused" in r.stdout, "list: %r" % r.stdout)
    r = expect(fzip_cli(srv, user, "schedule", "create", "--cron", "99 * * * *"), 1,
               "bad cron")  # INVALID_ARGUMENT: exit 1
    check("minute" in r.stderr, "bad cron message: %r" % r.stderr)
    expect(fzip_cli(srv, user, "schedule", "delete", sid), 0, "schedule delete")
    r = expect(fzip_cli(srv, user, "schedule", "get", sid), 1, "get deleted")
    check("NOT_FOUND" in r.stderr, "get deleted: %r" % r.stderr)


def main():
    checks = Checks()
    with tempfile.TemporaryDirectory(prefix="fzip-sched-") as d:
        checks.run(test_due_schedule_runs_once_on_two_replicas_and_missed_runs_once, d)
        checks.run(test_takeover_mid_run_makes_no_second_export, d)
        clock = Clock(os.path.join(d, "clock1"))
        with Fzipd(extra_args=server_args(clock)) as srv:
            for t in (test_paused_update_and_version_conflict, test_bad_specs_name_the_field,
                      test_per_user_limit_and_other_users,
                      test_full_every_three_makes_complete_inc_inc_complete,
                      test_retention_after_runs_and_delete, test_refused_run_is_recorded_once,
                      test_cli_schedule_commands):
                checks.run(t, srv, clock)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
