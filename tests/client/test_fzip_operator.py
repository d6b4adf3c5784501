"""What an operator expects of the two programs beyond the API.

`--version` on fzip and fzipd (the CMake project version, in
$FZIP_PROJECT_VERSION), `fzip help TOPIC`, and the completion scripts
of `fzip completion bash|zsh`: bash (always on the machine) loads the
script and answers COMP_WORDS/COMP_CWORD lines through the real
`complete -F` function; zsh, when installed, loads it with compinit and
runs its entry point with stubbed compadd/_files (completion widgets need
a terminal), else the script's structure is checked.  All run against
the real binaries ($FZIP, $FZIPD).  Ctrl-C during `export create --wait`
against a real fzipd whose export pauses in its upload phase (failpoint
export.uploading): fzip exits 130 saying how to re-attach, and the job
goes on to completion.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)
from fzipd_harness import Checks, Fzipd, Hold, unique_user  # noqa: E402
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


TOPICS = ("auth", "tls", "output", "exit-codes", "packages", "environment")


def test_help_lists_topics_and_prints_each(_):
    r = expect(Cli().run("help"), 0)
    listed = [line.split()[0].rstrip(",") for line in r.out.splitlines()[1:]]
    check(listed == list(TOPICS), "topics listed: %r" % r)
    for topic in TOPICS + ("json",):
        t = expect(Cli().run("help", topic), 0)
        check(len(t.out.splitlines()) >= 3 and t.err == "", "topic %s: %r" % (topic, t))
    expect(Cli().run("help", "json"), 0, stdout_has="--json")
    expect(Cli().run("help", "exit-codes"), 0, stdout_has="5 not authenticated")
    expect(Cli().run("help", "environment"), 0, stdout_has="FZIP_TLS_SERVER_NAME")


def test_help_unknown_topic_exits_2_with_the_list(_):
    r = expect(Cli().run("help", "nope"), 2, stderr_has="no help topic 'nope'")
    for topic in TOPICS:
        check(topic in r.err, "list lacks %s: %r" % (topic, r))
    check(r.out == "", "stdout not empty: %r" % r)


def test_help_flags_still_work(_):
    expect(Cli().run("--help"), 0, stdout_has="fzip help [TOPIC]")
    expect(Cli().run("help", "--help"), 0, stdout_has="Usage: fzip")
    expect(Cli().run("export", "--help"), 0, stdout_has="fzip export create")
    expect(Cli().run("export", "create", "--help"), 0, stdout_has="Usage: fzip export create")
    expect(Cli().run(), 2, stderr_has="Usage: fzip")


# (words on the line, the last being completed) -> what must be offered
# exactly (a list) or at least (a set).
COMPLETIONS = [
    (["fzip", ""], ["export", "schedule", "retention", "import", "data", "package", "key", "help",
                    "completion"]),
    (["fzip", "ex"], ["export"]),
    (["fzip", "export", ""], ["create", "list", "status", "watch", "download", "delete",
                              "cancel"]),
    (["fzip", "--addr", "h:1", "--json", "import", "up"], ["upload"]),
    (["fzip", "export", "create", "--an"], ["--analytics"]),
    (["fzip", "export", "download", "X", "--"], {"--output", "--chunk-size", "--limit-rate",
                                                  "--addr", "--token", "--json", "--help"}),
    (["fzip", "data", "list", "--l"], ["--limit"]),
    (["fzip", "help", "e"], ["exit-codes", "environment"]),
    (["fzip", "completion", ""], ["bash", "zsh"]),
    (["fzip", "--ver"], ["--version"]),
]


# The completion scripts and the directory of file names to complete;
# removed when the run ends (main).
SCRATCH = tempfile.TemporaryDirectory(prefix="fzip-operator-")


def completion_script(shell):
    r = expect(Cli().run("completion", shell), 0)
    path = os.path.join(SCRATCH.name, "fzip." + shell)
    with open(path, "w") as f:
        f.write(r.out)
    return path


def shell_quote(words):
    return " ".join("'%s'" % w.replace("'", "'\\''") for w in words)


def check_offers(shell, words, got, want):
    if isinstance(want, set):
        check(want <= set(got), "%s %r: missing %r in %r" % (shell, words, want - set(got), got))
    else:
        check(got == want, "%s %r: got %r, want %r" % (shell, words, got, want))


def test_bash_completion_completes_groups_commands_and_options(_):
    script = completion_script("bash")
    # A FILE argument and an option's value complete file names.
    d = os.path.join(SCRATCH.name, "files")
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "backup.fzip"), "w").close()
    cases = COMPLETIONS + [(["fzip", "package", "verify", "back"], ["backup.fzip"]),
                           (["fzip", "export", "download", "X", "-o", "b"], ["backup.fzip"]),
                           # "--output=b" as bash splits it (COMP_WORDBREAKS has "=")
                           (["fzip", "export", "download", "X", "--output", "=", "b"],
                            ["backup.fzip"])]
    lines = ["source '%s' || exit 9" % script,
             "[ \"$(complete -p fzip)\" = 'complete -o filenames -F _fzip fzip' ] || exit 8"]
    for words, _want in cases:
        lines.append("COMP_WORDS=(%s); COMP_CWORD=%d; COMPREPLY=(); _fzip; echo \"${COMPREPLY[*]}\""
                     % (shell_quote(words), len(words) - 1))
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", "\n".join(lines)], cwd=d,
                       capture_output=True, text=True, timeout=60)
    check(p.returncode == 0 and p.stderr == "", "bash: rc=%d %s" % (p.returncode, p.stderr))
    outs = p.stdout.split("\n")
    for (words, want), out in zip(cases, outs):
        check_offers("bash", words, out.split(), want)


def test_zsh_completion_script(_):
    script = completion_script("zsh")
    text = open(script).read()
    check(text.startswith("#compdef fzip\n"), "no #compdef line: %r" % text[:80])
    for fn in ("_fzip_words", "_fzip_options", "_fzip_values", "_fzip_files", "_fzip_scan",
               "_fzip"):
        check(("\n%s() {" % fn) in text, "zsh script lacks %s()" % fn)
    check("compdef _fzip fzip" in text and "compadd" in text, "no compdef/compadd")
    zsh = shutil.which("zsh")
    if not zsh:
        print("zsh not installed: checked the script's structure only")
        return
    p = subprocess.run([zsh, "-n", script], capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, "zsh -n: %s" % p.stderr)
    # Registered through the real compinit/compdef.
    p = subprocess.run([zsh, "-f", "-c", "autoload -U compinit && compinit -u -D && "
                        "source '%s' && print -r -- $_comps[fzip]" % script],
                       capture_output=True, text=True, timeout=60)
    check(p.stdout.strip() == "_fzip", "compdef did not register _fzip: %r %r"
          % (p.stdout, p.stderr))
    # The entry point's answers, with compadd (which filters by the
    # prefix itself) stubbed to print what it was given.
    lines = ["compdef() { :; }",
             "compadd() { [[ $1 == -a ]] && print -r -- \"${(P)2}\" }",
             "_files() { print -r -- '<files>' }",
             "source '%s' || exit 9" % script]
    for words, _want in COMPLETIONS:
        lines.append("words=(%s); CURRENT=%d; _fzip" % (shell_quote(words), len(words)))
    p = subprocess.run([zsh, "-f", "-c", "\n".join(lines)], capture_output=True, text=True,
                       timeout=60)
    check(p.returncode == 0 and p.stderr == "", "zsh: rc=%d %s" % (p.returncode, p.stderr))
    for (words, want), out in zip(COMPLETIONS, p.stdout.split("\n")):
        prefix = words[-1]
        check_offers("zsh", words, [w for w in out.split() if w.startswith(prefix)], want)


def test_completion_of_an_unknown_shell_exits_2(_):
    expect(Cli().run("completion", "fish"), 2, stderr_has="fzip completion bash|zsh")
    expect(Cli().run("completion"), 2, stderr_has="fzip completion bash|zsh")


def job_of(cli, eid):
    r = expect(cli.run("export", "status", eid, "--json"), 0)
    return r.json_lines()[0]


def test_ctrl_c_during_wait_leaves_the_job_running(_):
    hold = Hold("export.uploading")  # the job stays running until released
    with Fzipd(env={"FZIP_FAILPOINTS": hold.spec}) as srv, hold:
        user = unique_user("sigint")
        srv.seed(user, 100, seed=3)
        cli = Cli("127.0.0.1:%d" % srv.port, srv.token(user))
        p = cli.popen("export", "create", "--wait")
        first = p.stderr.readline()
        check(first.startswith("export ") and first.strip().endswith(" created"),
              "no 'export ID created' line: %r" % first)
        eid = first.split()[1]
        deadline = time.monotonic() + 60  # until the job reaches its (paused) upload phase
        while job_of(cli, eid)["status"] != "EXPORT_STATUS_UPLOADING":
            check(time.monotonic() < deadline, "export never reached UPLOADING")
            time.sleep(0.1)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
        check(p.returncode == 130, "want exit 130, got %d: %r" % (p.returncode, err))
        check("fzip export watch %s" % eid in err, "no re-attach command: %r" % err)
        check("continues on the server" in err, "does not say the job continues: %r" % err)
        check("fzip export cancel %s" % eid in err, "no cancel command: %r" % err)
        expect(Cli().run("help", "exit-codes"), 0, stdout_has="130 interrupted")
        check(out == "", "stdout: %r" % out)
        running = job_of(cli, eid)["status"]
        check(running == "EXPORT_STATUS_UPLOADING", "job not running after Ctrl-C: %s" % running)
        hold.release()
        r = expect(cli.run("export", "watch", eid, "--json", timeout=240), 0)
        check(r.json_lines()[-1]["status"] == "EXPORT_STATUS_COMPLETED", "re-attached: %r" % r)


TESTS = (test_fzip_version_prints_the_cmake_version,
         test_fzipd_version_prints_the_cmake_version,
         test_help_lists_topics_and_prints_each,
         test_help_unknown_topic_exits_2_with_the_list,
         test_help_flags_still_work,
         test_bash_completion_completes_groups_commands_and_options,
         test_zsh_completion_script,
         test_completion_of_an_unknown_shell_exits_2,
         test_ctrl_c_during_wait_leaves_the_job_running)


def main():
    checks = Checks()
    try:
        for t in TESTS:
            checks.run(t, None)
    finally:
        SCRATCH.cleanup()
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
