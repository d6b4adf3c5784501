#!/usr/bin/env python3
"""image.oci: the container image of fzipd, built offline, checked and run.

    test_image.py SOURCE_DIR BUILD_DIR

1. scripts/build-image.sh makes an OCI image layout from BUILD_DIR's fzipd
   and fzip (umoci, no network, no Docker engine).
2. The image config and file list are checked: non-root user, entrypoint
   fzipd serve, port 50051, no shell or package manager, every library the
   programs load present.
3. The Dockerfile makes the same image: it runs the same
   scripts/image-rootfs.sh onto an empty base, and its final stage's config
   (user, entrypoint, command, port, environment, working dir) equals the
   offline image's, so the two ways of building it cannot drift apart.
4. The image runs: unpacked with umoci and started with runc (read-only root
   filesystem, uid 65532, tmpfs for /tmp and /var/lib/fzip, as the Helm chart
   runs it), or, where runc cannot start a container, the same root
   filesystem under chroot as uid 65532 (the output says which).  A real
   client then exports a package through it and downloads it.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

UID = 65532
TAG = "0.1.0"
START_TIMEOUT_S = 30
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def run(*cmd, **kw):
    print("+ " + " ".join(cmd))
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def blob(layout, digest):
    algo, hexd = digest.split(":")
    with open(os.path.join(layout, "blobs", algo, hexd), "rb") as f:
        return f.read()


def image_config(layout):
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    ref = [m for m in index["manifests"]
           if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == TAG]
    check(len(ref) == 1, "layout holds fzipd:%s" % TAG)
    manifest = json.loads(blob(layout, ref[0]["digest"]))
    config = json.loads(blob(layout, manifest["config"]["digest"]))
    return manifest, config


def check_config(manifest, config):
    c = config["config"]
    check(c.get("User") == "%d:%d" % (UID, UID), "runs as %d:%d, not root" % (UID, UID))
    check(c.get("Entrypoint") == ["fzipd"] and c.get("Cmd") == ["serve"], "entrypoint fzipd serve")
    check(list(c.get("ExposedPorts", {})) == ["50051/tcp"], "exposes 50051/tcp")
    check(c.get("WorkingDir") == "/var/lib/fzip", "working dir /var/lib/fzip")
    env = dict(e.split("=", 1) for e in c.get("Env", []))
    check(env.get("FZIP_STORE") == "sqlite:/var/lib/fzip/fzip.db", "default store on /var/lib/fzip")
    check(len(manifest["layers"]) == 1, "one layer on an empty base")
    check(config["os"] == "linux" and config["architecture"] == "amd64", "linux/amd64")


def check_rootfs(rootfs, build):
    files = []
    for d, _, names in os.walk(rootfs):
        files += [os.path.relpath(os.path.join(d, n), rootfs) for n in names]
    check("usr/local/bin/fzipd" in files and "usr/local/bin/fzip" in files, "fzipd and fzip in /usr/local/bin")
    check("usr/share/zoneinfo/Europe/London" in files, "IANA zones in /usr/share/zoneinfo (schedules)")
    for absent in ("bin/sh", "usr/bin/sh", "bin/bash", "usr/bin/apt", "usr/bin/dpkg"):
        check(not os.path.lexists(os.path.join(rootfs, absent)), "no /%s in the image" % absent)
    st = os.stat(os.path.join(rootfs, "var/lib/fzip"))
    check(st.st_uid == UID and st.st_gid == UID, "/var/lib/fzip owned by %d" % UID)
    # every library the host loader maps for the programs is in the image
    for prog in ("server/fzipd", "client/fzip"):
        out = run("ldd", os.path.join(build, prog)).stdout
        libs = re.findall(r"=> (/\S+)", out)
        missing = [lib for lib in libs if not os.path.exists(os.path.join(rootfs, lib.lstrip("/")))]
        check(libs and not missing, "%s: all %d libraries present%s" % (
            prog, len(libs), (", missing " + ", ".join(missing)) if missing else ""))
    return len(files)


def dockerfile_config(source):
    """The final stage of the Dockerfile as an image config (the subset both
    builds set): what `docker build` would produce, read without an engine."""
    with open(os.path.join(source, "Dockerfile")) as f:
        text = f.read()
    final = text[text.rindex("\nFROM "):]
    conf = {"base": final.split()[1], "Env": {}}
    for line in final.splitlines():
        word, _, rest = line.partition(" ")
        if word == "USER":
            conf["User"] = rest.strip()
        elif word == "WORKDIR":
            conf["WorkingDir"] = rest.strip()
        elif word == "EXPOSE":
            conf["ExposedPorts"] = rest.split()
        elif word in ("ENTRYPOINT", "CMD"):
            conf["Entrypoint" if word == "ENTRYPOINT" else "Cmd"] = json.loads(rest)
        elif word == "ENV":
            conf["Env"].update(kv.split("=", 1) for kv in rest.split())
    conf["rootfs_script"] = "scripts/image-rootfs.sh /build /rootfs" in text
    return conf


def check_dockerfile(source, config):
    """The Dockerfile and build-image.sh make the same image: same files
    (both run scripts/image-rootfs.sh onto an empty base), same config."""
    d = dockerfile_config(source)
    c = config["config"]
    check(d["base"] == "scratch" and d["rootfs_script"],
          "Dockerfile: image-rootfs.sh onto FROM scratch, as build-image.sh")
    for key in ("User", "WorkingDir", "Entrypoint", "Cmd"):
        check(d.get(key) == c.get(key), "Dockerfile %s %r == offline image's %r"
              % (key, d.get(key), c.get(key)))
    check(d.get("ExposedPorts") == list(c.get("ExposedPorts", {})), "Dockerfile EXPOSE == offline image's")
    env = dict(e.split("=", 1) for e in c.get("Env", []))
    check(d["Env"] == env, "Dockerfile ENV %s == offline image's %s" % (d["Env"], env))


def wait_port(log_path, proc):
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with open(log_path) as f:
            m = re.search(r'"msg":"listening".*"port":"?(\d+)', f.read())
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    with open(log_path) as f:
        print(f.read()[-3000:])
    return None


def serve_with_runc(bundle, secret_dir, log):
    """Starts the image with runc; returns (process, how) or (None, reason)."""
    if not shutil.which("runc"):
        return None, "runc not installed"
    if os.environ.get("FZIP_IMAGE_TEST_NO_RUNC"):  # exercises the fallback
        return None, "FZIP_IMAGE_TEST_NO_RUNC set"
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] += ["--listen", "127.0.0.1:0", "--jwt-secret-file", "/run/fzip/jwt.secret"]
    cfg["root"]["readonly"] = True  # as the chart's readOnlyRootFilesystem
    # the host's loopback, so that the test's client reaches it
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "network"]
    opts = ["nosuid", "nodev", "mode=0750", "uid=%d" % UID, "gid=%d" % UID]
    cfg["mounts"] += [
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": opts},
        {"destination": "/var/lib/fzip", "type": "tmpfs", "source": "tmpfs", "options": opts},
        {"destination": "/run/fzip", "type": "bind", "source": secret_dir, "options": ["rbind", "ro"]},
    ]
    with open(path, "w") as f:
        json.dump(cfg, f)
    name = "fzip-image-test-%d" % os.getpid()
    proc = subprocess.Popen(["runc", "run", "--bundle", bundle, name], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT)
    return proc, name


def serve_with_chroot(rootfs, secret_dir, log):
    os.makedirs(os.path.join(rootfs, "run/fzip"), exist_ok=True)
    shutil.copy(os.path.join(secret_dir, "jwt.secret"), os.path.join(rootfs, "run/fzip/jwt.secret"))
    os.chmod(os.path.join(rootfs, "var/lib/fzip"), 0o770)
    cmd = [shutil.which("chroot") or "/usr/sbin/chroot", "--userspec=%d:%d" % (UID, UID), rootfs, "/usr/local/bin/fzipd", "serve",
           "--listen", "127.0.0.1:0", "--jwt-secret-file", "/run/fzip/jwt.secret",
           "--store", "sqlite:/var/lib/fzip/fzip.db"]
    env = {"PATH": "/usr/local/bin", "HOME": "/nonexistent"}
    return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, cwd="/")


def exercise(port, build, secret_dir, work):
    fzipd, fzip = os.path.join(build, "server/fzipd"), os.path.join(build, "client/fzip")
    token = run(fzipd, "token", "--secret-file", os.path.join(secret_dir, "jwt.secret"),
                "--user", "image-user").stdout.strip()
    base = [fzip, "--addr", "127.0.0.1:%d" % port, "--token", token]
    summary = subprocess.run(base + ["--json", "data", "summary"], capture_output=True, text=True)
    check(summary.returncode == 0, "DataService answers through the image")
    job = subprocess.run(base + ["--json", "-q", "export", "create", "--wait"],
                         capture_output=True, text=True)
    check(job.returncode == 0, "an export completes inside the image (store and temp dir writable)")
    if job.returncode != 0:
        print(job.stdout + job.stderr)
        return
    export_id = json.loads(job.stdout.strip().splitlines()[-1])["export_id"]
    out = os.path.join(work, "backup.fzip")
    dl = subprocess.run(base + ["-q", "export", "download", export_id, "--output", out],
                        capture_output=True, text=True)
    check(dl.returncode == 0 and os.path.getsize(out) > 0, "the package downloads (sha256 verified)")
    verify = subprocess.run([fzip, "package", "verify", out], capture_output=True, text=True)
    check(verify.returncode == 0, "the package verifies offline")


def container_uid(name):
    state = json.loads(run("runc", "state", name).stdout)
    with open("/proc/%d/status" % state["pid"]) as f:
        uid_line = [line for line in f if line.startswith("Uid:")][0]
    return int(uid_line.split()[1])


SKIP = 77  # CTest SKIP_RETURN_CODE


def main():
    source, build = (os.path.abspath(a) for a in sys.argv[1:3])
    missing = [t for t in ("umoci", "ldd") if not shutil.which(t)]
    if missing or os.geteuid() != 0:
        # scripts/setup-deps.sh installs umoci and runc; unpacking an image
        # with its owners and running it as another uid needs root.
        print("SKIP: %s" % ("missing " + ", ".join(missing) if missing else "needs root"))
        return SKIP
    work = tempfile.mkdtemp(prefix="fzip-image-")
    try:
        layout = os.path.join(work, "layout")
        run(os.path.join(source, "scripts/build-image.sh"), build, layout, TAG)
        manifest, config = image_config(layout)
        check_config(manifest, config)
        bundle = os.path.join(work, "bundle")
        run("umoci", "unpack", "--image", "%s:%s" % (layout, TAG), bundle)
        rootfs = os.path.join(bundle, "rootfs")
        print("image files: %d" % check_rootfs(rootfs, build))
        check_dockerfile(source, config)

        secret_dir = os.path.join(work, "secret")
        os.makedirs(secret_dir)
        with open(os.path.join(secret_dir, "jwt.secret"), "w") as f:
            f.write(os.urandom(32).hex())
        os.chmod(secret_dir, 0o755)
        os.chmod(os.path.join(secret_dir, "jwt.secret"), 0o644)
        log_path = os.path.join(work, "fzipd.log")
        with open(log_path, "w") as log:
            proc, name = serve_with_runc(bundle, secret_dir, log)
            port = wait_port(log_path, proc) if proc else None
            how = "runc (read-only root, uid %d, tmpfs /tmp and /var/lib/fzip)" % UID
            if port is None:
                reason = name if proc is None else "runc run exited: see the log above"
                if proc is not None and proc.poll() is None:
                    proc.kill()
                print("runc could not start the container (%s): running the same root "
                      "filesystem under chroot instead" % reason)
                proc = serve_with_chroot(rootfs, secret_dir, log)
                port = wait_port(log_path, proc)
                how, name = "chroot (uid %d)" % UID, None
            check(port is not None, "fzipd from the image listens")
            if port is not None:
                print("image runs with " + how)
                if name:
                    check(container_uid(name) == UID, "the container's process runs as uid %d" % UID)
                exercise(port, build, secret_dir, work)
            if name:
                subprocess.run(["runc", "kill", name, "TERM"], capture_output=True)
            else:
                proc.terminate()
            try:
                check(proc.wait(timeout=20) == 0, "fzipd stops cleanly on SIGTERM")
            finally:
                if proc.poll() is None:
                    proc.kill()
                if name:
                    subprocess.run(["runc", "delete", "--force", name], capture_output=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
