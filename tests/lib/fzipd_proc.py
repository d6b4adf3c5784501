"""Starting and stopping one `fzipd serve` process: the part every harness
shares (tests/lib/fzipd_harness.py, bench/bench.py, the interop and TLS
tests).  Standard library only, so that the benchmark can use it under any
Python.

fzipd listens on 127.0.0.1:0 and prints "port=N" on stdout once it serves;
everything else it says goes to the log file.
"""
import re
import signal
import subprocess
import time

PORT_LINE = re.compile(r"port=(\d+)")


def start(binary, args, log, env=None, timeout_s=30):
    """Runs `binary serve --listen 127.0.0.1:0 ARGS` with stderr to `log`
    (a file opened for writing in binary mode) and returns (proc, port) once
    the port line came.  RuntimeError if fzipd exits or stays silent for
    timeout_s; `proc` is then killed."""
    proc = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0"] + list(args),
                            stdout=subprocess.PIPE, stderr=log, env=env)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode(errors="replace")
        m = PORT_LINE.match(line)
        if m:
            return proc, int(m.group(1))
        if not line and proc.poll() is not None:
            proc.stdout.close()
            raise RuntimeError("fzipd exited at start with status %d" % proc.returncode)
    proc.kill()
    proc.wait()
    proc.stdout.close()
    raise RuntimeError("fzipd did not report its port within %d s" % timeout_s)


def stop(proc, timeout_s=30):
    """SIGTERM and wait: fzipd's exit status, or None if it had to be
    killed after timeout_s."""
    status = proc.poll()
    if status is None:
        proc.send_signal(signal.SIGTERM)
        try:
            status = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            status = None
    if proc.stdout:
        proc.stdout.close()
    return status
