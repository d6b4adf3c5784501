"""Test harness for end-to-end tests: a real fzipd on loopback.

Used by the Python end-to-end tests (tests/export, tests/import, ...):
starts `fzipd serve` on a free port with a fresh store (an SQLite file in
a temporary directory, or a MongoDB URI such as the FerretDB fixture's),
mints tokens with `fzipd token`, seeds users with `fzipd seed`, and stops
the server with SIGTERM, checking that it exits cleanly.

Environment (set by CTest): FZIPD = path of the fzipd binary, FZIP_PY_STUBS
= directory of the generated Python stubs, FZIP_TEST_STORE = "sqlite"
(default) or "mongodb", which uses FZIP_TEST_MONGODB_URI (set by the
ferretdb fixture's with-uri.sh).
"""
import os
import re
import secrets
import subprocess
import sys
import tempfile

sys.path.insert(0, os.environ.get("FZIP_PY_STUBS", ""))

import fzipd_proc  # noqa: E402
import grpc  # noqa: E402

START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30


def store_uri(tmpdir):
    """The store the test runs on: sqlite by default, or the FerretDB URI."""
    spec = os.environ.get("FZIP_TEST_STORE", "sqlite")
    if spec == "sqlite":
        return "sqlite:" + os.path.join(tmpdir, "fzip.db")
    if spec == "mongodb":
        return os.environ["FZIP_TEST_MONGODB_URI"]
    raise ValueError("FZIP_TEST_STORE must be sqlite or mongodb, not %r" % spec)


def sqlite_blob_file(store):
    """The blob file of an embedded store ("sqlite:PATH[?...]" or PATH):
    PATH-blobs, where the SQLite backend keeps the blobs and blob_chunks
    tables (docs/STORAGE.md "Blob file")."""
    path = store[len("sqlite:"):] if store.startswith("sqlite:") else store
    return path.split("?", 1)[0] + "-blobs"


class Hold:
    """A failpoint that holds fzipd at a known point until the test says go
    (core/fzip_failpoint.h: "name=hold:PATH@N" waits until PATH exists).
    A test that must act while a job is mid-way holds it there, acts, and
    releases it; a timed delay instead leaves a window a loaded machine
    can miss.  `spec` goes into FZIP_FAILPOINTS.  As a context manager it
    releases on exit, so list it after the Fzipd it holds
    (`with Fzipd(...) as srv, hold:`): a server stopped while held would
    wait for the release.  `from_hit` = N holds the N-th and later hits.
    Keep the object while the server runs: its directory holds the file."""

    def __init__(self, name, from_hit=1):
        self.tmp = tempfile.TemporaryDirectory(prefix="fzip-hold-")
        self.path = os.path.join(self.tmp.name, "release")
        self.spec = "%s=hold:%s@%d" % (name, self.path, from_hit)
        # fzip_failpoint.c ignores an entry of FAILPOINT_SPEC_MAX (512) bytes
        # or more: a hold that silently never holds would race again.
        if len(self.spec) >= 512 or "," in self.spec or "@" in self.path:
            raise ValueError("failpoint entry too long, or a comma or @ in its path: %r"
                             % self.spec)

    def release(self):
        open(self.path, "w").close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        # Released for good: the file stays while this object lives (its
        # directory goes with it), since any later hit would wait again.
        self.release()


class Fzipd:
    """One fzipd process; use as a context manager."""

    def __init__(self, extra_args=(), store=None, env=None):
        self.tmp = tempfile.TemporaryDirectory(prefix="fzip-e2e-")
        self.dir = self.tmp.name
        self.secret_file = os.path.join(self.dir, "jwt.secret")
        with open(self.secret_file, "w") as f:
            f.write(secrets.token_hex(32))
        self.store = store or store_uri(self.dir)
        self.binary = os.environ["FZIPD"]
        self.extra_args = list(extra_args)
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.port = None
        self.channel = None
        self.log_path = os.path.join(self.dir, "fzipd.log")

    def spawn(self):
        """The process, up to its port line (no readiness probe)."""
        self.log = open(self.log_path, "wb")
        try:
            self.proc, self.port = fzipd_proc.start(
                self.binary, ["--store", self.store, "--jwt-secret-file", self.secret_file]
                + self.extra_args, self.log, env=self.env, timeout_s=START_TIMEOUT_S)
        except RuntimeError as e:
            raise RuntimeError("%s: %s" % (e, self.read_log()))
        return self

    def start(self):
        self.spawn()
        opts = [("grpc.max_receive_message_length", 8 << 20)]
        self.channel = grpc.insecure_channel("127.0.0.1:%d" % self.port, options=opts)
        grpc.channel_ready_future(self.channel).result(timeout=10)
        return self

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, expect_clean=True):
        """SIGTERM if it still runs; then it must exit, with status 0 when
        expect_clean.  A server that had already died (kill()) is not
        judged."""
        if self.channel:
            self.channel.close()
        if self.proc:
            running = self.proc.poll() is None
            rc = fzipd_proc.stop(self.proc, timeout_s=STOP_TIMEOUT_S)
            if running and rc is None:
                raise RuntimeError("fzipd did not stop within %d s of SIGTERM" % STOP_TIMEOUT_S)
            if running and expect_clean and rc != 0:
                raise RuntimeError("fzipd exited %d: %s" % (rc, self.read_log()))
        if hasattr(self, "log"):
            self.log.close()

    def kill(self):
        """SIGKILL: a crash, for recovery tests."""
        self.proc.kill()
        self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop(expect_clean=exc[0] is None)
        self.tmp.cleanup()

    def token(self, user):
        out = subprocess.run(
            [self.binary, "token", "--secret-file", self.secret_file, "--user", user,
             "--ttl-seconds", "3600"],
            check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def metadata(self, user):
        return (("authorization", "Bearer " + self.token(user)),)

    def seed(self, user, transactions, seed=1, extra=()):
        subprocess.run(
            [self.binary, "seed", "--store", self.store, "--user", user,
             "--transactions", str(transactions), "--seed", str(seed)] + list(extra),
            check=True, capture_output=True)

    def mutate(self, user, percent, seed=1, seeded=None):
        """`fzipd seed --mutate PERCENT`: rewrites that share of the user's
        transactions (each write a new change seq); returns how many it
        rewrote.  With `seeded`, checks the user had that many."""
        r = subprocess.run(
            [self.binary, "seed", "--store", self.store, "--user", user, "--mutate",
             str(percent), "--seed", str(seed)], capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError("seed --mutate: %s" % r.stderr[-500:])
        m = re.search(r": (\d+) of (\d+) transactions", r.stdout)
        if m is None:
            raise AssertionError("seed --mutate said %r" % r.stdout)
        if seeded is not None and int(m.group(2)) != seeded:
            raise AssertionError("seed --mutate read %s transactions, not %d"
                                 % (m.group(2), seeded))
        return int(m.group(1))


def unique_user(prefix="user"):
    return "%s-%s" % (prefix, secrets.token_hex(6))


def own_store(name):
    """A store of the test's own: on MongoDB a database of its own; None
    (the harness makes a fresh SQLite file) otherwise.  Servers on one
    MongoDB database are replicas of one job queue, so a test server with
    failpoints next to another on the shared database (an e2e file's
    World) could see that one claim its job and run it without them."""
    if os.environ.get("FZIP_TEST_STORE", "sqlite") != "mongodb":
        return None
    base = os.environ["FZIP_TEST_MONGODB_URI"]
    return "%s/%s_%s" % (base.rsplit("/", 1)[0], name, unique_user("db").replace("-", "_"))


class Checks:
    """Minimal named-test runner printing the 'N passed, N failed' line."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def run(self, fn, *args):
        flt = os.environ.get("FZIP_TEST_FILTER")
        if flt and flt not in fn.__name__:
            return
        print("RUN  %s" % fn.__name__, flush=True)
        try:
            fn(*args)
        except Exception as e:  # a failed check or an unexpected error
            import traceback
            traceback.print_exc()
            print("FAIL %s: %s" % (fn.__name__, e), flush=True)
            self.failed += 1
            return
        print("ok   %s" % fn.__name__, flush=True)
        self.passed += 1

    def summary(self):
        print("%d passed, %d failed" % (self.passed, self.failed), flush=True)
        return 1 if self.failed else 0
