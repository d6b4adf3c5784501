"""What an operator expects of the two programs beyond the API.

`--version` on fzip and fzipd (the CMake project version, in
$FZIP_PROJECT_VERSION), run against the real binaries ($FZIP, $FZIPD).
"""
import os
import subprocess
import sys

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)
from fzipd_harness import Checks  # noqa: E402
from fzip_cli import Cli, check, expect  # noqa: E402

VERSION = os.environ["FZIP_PROJECT_VERSION"]


def run(argv):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def check_version_text(program, out, libs):
    lines = out.splitlines()
    check(lines and lines[0].split()[:2] == [program, VERSION],
          "first line is not '%s %s': %r" % (program, VERSION, out))
    rows = dict(line.strip().rsplit(None, 1) for line in lines[1:])
    check(rows.get("api") == "fzip.v1", "no api row: %r" % out)
    check(rows.get("package format") == "1.0", "no package format row: %r" % out)
    for lib in libs:
        check(rows.get(lib, "")[:1].isdigit(), "no %s version: %r" % (lib, out))


def test_fzip_version_prints_the_cmake_version(_):
    for argv in (["--version"], ["--json", "--version"]):
        r = expect(Cli().run(*argv), 0)
        check_version_text("fzip", r.out, ("grpc core", "protobuf-c", "libzip"))


def test_fzipd_version_prints_the_cmake_version(_):
    for argv in (["--version"], ["version"]):
        rc, out, err = run([os.environ["FZIPD"]] + argv)
        check(rc == 0, "fzipd %s exited %d: %s" % (argv, rc, err))
        check_version_text("fzipd", out, ("grpc core", "protobuf-c", "libzip", "sqlite", "mongoc"))
    rc, out, _ = run([os.environ["FZIPD"], "--help"])
    check(rc == 0 and "fzipd version" in out, "--help does not mention version: %r" % out)


TESTS = (test_fzip_version_prints_the_cmake_version,
         test_fzipd_version_prints_the_cmake_version)


def main():
    checks = Checks()
    for t in TESTS:
        checks.run(t, None)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
