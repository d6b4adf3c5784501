"""`fzip schedule update` against a real fzipd on the embedded store.

UpdateSchedule replaces the stored spec wholesale, so the client must send
the selection it read back with only the named parts changed
(docs/CLIENT.md: "`update ID` changes only what its options name"): a
`--to` keeps `--accounts` and `--from`, an `--accounts` keeps the dates.
"""
import json
import os
import sys

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)
from fzipd_harness import Checks, Fzipd, unique_user  # noqa: E402
from fzip_cli import Cli, check, expect  # noqa: E402

DAY_MS = 86400 * 1000
FROM_MS = 1704067200000          # 2024-01-01T00:00:00Z
TO_MS = 1767225600000 - 1        # 2025-12-31, inclusive end of day
NEW_TO_MS = 1735689600000 - 1    # 2024-12-31, inclusive end of day


def get_spec(cli, sid):
    return json.loads(expect(cli.run("--json", "schedule", "get", sid), 0).out)["spec"]


def filters_of(spec):
    f = spec.get("filters") or {}
    r = f.get("date_range") or {}
    return (sorted(f.get("account_ids") or []), r.get("has_from", False),
            int(r.get("from", 0)), r.get("has_to", False), int(r.get("to", 0)))


def test_update_keeps_the_selection_it_does_not_name(srv):
    user = unique_user("schedsel")
    cli = Cli("127.0.0.1:%d" % srv.port, srv.token(user))
    made = json.loads(expect(cli.run("--json", "schedule", "create", "--cron", "@daily",
                                     "--accounts", "a1,a2", "--from", "2024-01-01",
                                     "--to", "2025-12-31"), 0).out)
    sid = made["schedule_id"]
    check(filters_of(made["spec"]) == (["a1", "a2"], True, FROM_MS, True, TO_MS),
          "created filters: %r" % made["spec"])

    expect(cli.run("schedule", "update", sid, "--to", "2024-12-31"), 0)
    got = filters_of(get_spec(cli, sid))
    check(got == (["a1", "a2"], True, FROM_MS, True, NEW_TO_MS),
          "update --to changed more than the upper bound: %r" % (got,))

    expect(cli.run("schedule", "update", sid, "--accounts", "a3"), 0)
    got = filters_of(get_spec(cli, sid))
    check(got == (["a3"], True, FROM_MS, True, NEW_TO_MS),
          "update --accounts changed the dates: %r" % (got,))

    expect(cli.run("schedule", "update", sid, "--from", "2024-01-02"), 0)
    got = filters_of(get_spec(cli, sid))
    check(got == (["a3"], True, FROM_MS + DAY_MS, True, NEW_TO_MS),
          "update --from changed more than the lower bound: %r" % (got,))

    # A bound past the stored other bound is refused, not sent as an empty range.
    r = expect(cli.run("schedule", "update", sid, "--from", "2025-06-01"), 2)
    check("start after it ends" in r.err, "inverted range: %r" % r)

    # An option that is not a selection leaves the selection alone.
    expect(cli.run("schedule", "update", sid, "--pause"), 0)
    got = filters_of(get_spec(cli, sid))
    check(got == (["a3"], True, FROM_MS + DAY_MS, True, NEW_TO_MS),
          "update --pause changed the selection: %r" % (got,))
    expect(cli.run("schedule", "delete", sid), 0)


def main():
    checks = Checks()
    with Fzipd() as srv:
        checks.run(test_update_keeps_the_selection_it_does_not_name, srv)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
