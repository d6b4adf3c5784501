"""Runs the real `fzip` binary (path in $FZIP) for the client tests.

Each call returns a Result with the exit status, stdout and stderr, so
tests assert on exactly what a user or a script would see.
"""
import json
import os
import subprocess


class Result:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def json_lines(self):
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]

    def __repr__(self):
        return "rc=%d\nstdout:\n%s\nstderr:\n%s" % (self.rc, self.out[-3000:], self.err[-3000:])


class Cli:
    """fzip with a fixed server address and token (flags, not environment,
    unless env is given)."""

    def __init__(self, addr=None, token=None, extra=(), env=None):
        self.binary = os.environ["FZIP"]
        self.addr = addr
        self.token = token
        self.extra = list(extra)
        self.env = dict(os.environ, **(env or {}))
        for name in ("FZIP_ADDR", "FZIP_TOKEN", "FZIP_TLS_CA", "FZIP_JSON"):
            if not env or name not in env:
                self.env.pop(name, None)

    def argv(self, args):
        argv = [self.binary] + list(args)
        if self.addr:
            argv += ["--addr", self.addr]
        if self.token:
            argv += ["--token", self.token]
        return argv + self.extra

    def run(self, *args, timeout=300, cwd=None):
        proc = subprocess.run(self.argv(args), capture_output=True, text=True, timeout=timeout,
                              env=self.env, cwd=cwd)
        return Result(proc)

    def popen(self, *args, cwd=None):
        return subprocess.Popen(self.argv(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=self.env, cwd=cwd)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def expect(result, rc, stderr_has=None, stdout_has=None):
    check(result.rc == rc, "want exit %d, got %r" % (rc, result))
    if stderr_has is not None:
        check(stderr_has in result.err, "stderr lacks %r: %r" % (stderr_has, result))
    if stdout_has is not None:
        check(stdout_has in result.out, "stdout lacks %r: %r" % (stdout_has, result))
    return result
