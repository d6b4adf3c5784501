"""The generated Go client (cmd/fzip-summary) against a real fzipd.

Seeds a user, runs the Go program with a token and compares the summary
it prints with what the server's own DataService reports via Python; then
checks that a bad token makes the Go program fail with Unauthenticated.
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from fzipd_harness import Checks, Fzipd, unique_user  # noqa: E402

SEED_TX = 150


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def go_summary(srv, token):
    return subprocess.run([os.environ["FZIP_GO_CLIENT"], "-addr", "127.0.0.1:%d" % srv.port,
                           "-token", token], capture_output=True, text=True, timeout=60)


def test_go_client_reads_data_summary(srv, user):
    r = go_summary(srv, srv.token(user))
    check(r.returncode == 0, "go client failed: %s" % r.stderr)
    s = json.loads(r.stdout)
    # protojson writes int64 as strings.
    check(int(s["transactions_count"]) == SEED_TX, "summary %r" % s)
    check(int(s["accounts_count"]) > 0 and int(s["file_bytes"]) > 0, "summary %r" % s)


def test_go_client_with_bad_token_is_refused(srv, user):
    r = go_summary(srv, "not-a-token")
    check(r.returncode == 1, "bad token accepted: %s" % r.stdout)
    check("Unauthenticated" in r.stderr, "unexpected error: %s" % r.stderr)


def main():
    checks = Checks()
    with Fzipd() as srv:
        user = unique_user("go")
        srv.seed(user, SEED_TX, seed=9)
        for t in (test_go_client_reads_data_summary, test_go_client_with_bad_token_is_refused):
            checks.run(t, srv, user)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
