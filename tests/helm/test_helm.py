#!/usr/bin/env python3
"""Renders helm/fzip with `helm template` and checks the result.

    HELM=path/to/helm CHART=helm/fzip test_helm.py CASE

CASE is one of the keys of CASES at the end (lint, sqlite, mongodb-tls, ...;
k8s-schemas validates every rendering with kubernetes-validate, the tool's
path in KUBERNETES_VALIDATE, for each Kubernetes version it names).  The valid cases parse the YAML with PyYAML when
it is importable and otherwise fall back to text checks (grep-like) on the
rendered output.  Exit 0 = pass, 1 = fail.
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VALUES = os.path.join(HERE, "values")
HELM = os.environ.get("HELM", "helm")
# A helm built by plain `go install` lacks the Makefile's ldflags and assumes
# Kubernetes v1.20; render for a current cluster instead.
KUBE_VERSION = os.environ.get("KUBE_VERSION", "1.30.0")
CHART = os.environ.get("CHART", os.path.join(HERE, "..", "..", "helm", "fzip"))

try:
    import yaml  # python3-yaml
except ImportError:  # pragma: no cover - depends on the machine
    yaml = None

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL: " + what)


def helm(*args):
    cmd = [HELM] + list(args)
    print("+ " + " ".join(cmd))
    return subprocess.run(cmd, capture_output=True, text=True)


def render(values_file, *extra, kube_version=KUBE_VERSION):
    r = helm("template", "fzip", CHART, "--namespace", "backup", "--kube-version",
             kube_version, "-f", os.path.join(VALUES, values_file), *extra)
    if r.returncode != 0:
        print(r.stdout + r.stderr)
        sys.exit("helm template %s failed (exit %d)" % (values_file, r.returncode))
    return r.stdout


def docs(text):
    out = {}
    for d in yaml.safe_load_all(text):
        if d:
            out[(d["kind"], d["metadata"]["name"])] = d
    return out


def container_env(dep):
    c = dep["spec"]["template"]["spec"]["containers"][0]
    env = {}
    for e in c.get("env", []):
        env[e["name"]] = e.get("value", e.get("valueFrom"))
    return c, env


def common(objs, replicas):
    dep = objs[("Deployment", "fzip")]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    c, env = container_env(dep)
    check(spec["replicas"] == replicas, "replicas == %d" % replicas)
    check(c["command"] == ["fzipd"] and c["args"][0] == "serve", "fzipd serve")
    check(env.get("FZIP_LISTEN") == "0.0.0.0:50051", "FZIP_LISTEN 0.0.0.0:50051")
    check(c["ports"] == [{"name": "grpc", "containerPort": 50051, "protocol": "TCP"},
                         {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
          "containerPorts 50051 named grpc, 9090 named metrics")
    check(env.get("FZIP_METRICS_LISTEN") == "0.0.0.0:9090", "FZIP_METRICS_LISTEN 0.0.0.0:9090")
    # security
    sc = c["securityContext"]
    check(sc.get("readOnlyRootFilesystem") is True, "read-only root filesystem")
    check(sc.get("runAsNonRoot") is True and pod["securityContext"].get("runAsNonRoot") is True,
          "runAsNonRoot")
    check(sc.get("allowPrivilegeEscalation") is False, "no privilege escalation")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities dropped")
    check(pod["automountServiceAccountToken"] is False, "no service account token")
    # temp dir is a writable emptyDir
    tmp_path = env.get("FZIP_TEMP_DIR")
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    check(tmp_path and mounts.get("tmp", {}).get("mountPath") == tmp_path,
          "FZIP_TEMP_DIR is the tmp mount")
    check("emptyDir" in vols.get("tmp", {}), "tmp is an emptyDir")
    check(env.get("TMPDIR") == tmp_path, "TMPDIR follows FZIP_TEMP_DIR")
    # graceful termination
    grace_ms = int(env["FZIP_SHUTDOWN_GRACE_MS"])
    check(pod["terminationGracePeriodSeconds"] * 1000 > grace_ms,
          "terminationGracePeriodSeconds > shutdown grace")
    # every int env is a plain integer string
    for k in ("FZIP_WORKERS", "FZIP_EXPORT_WORKERS", "FZIP_EXPORT_TTL_SECONDS",
              "FZIP_MAX_UPLOAD_BYTES", "FZIP_JOB_LEASE_MS", "FZIP_REAPER_INTERVAL_MS",
              "FZIP_SCHEDULE_TICK_MS"):
        check(isinstance(env.get(k), str) and env[k].isdigit(), "%s is an integer string" % k)
    # JWT from a Secret
    check("jwt" in vols and "secret" in vols["jwt"], "jwt volume from a Secret")
    check(mounts.get("jwt", {}).get("readOnly") is True, "jwt mounted read-only")
    # service
    svc = objs[("Service", "fzip")]
    port = svc["spec"]["ports"][0]
    check(svc["spec"]["type"] == "ClusterIP", "Service ClusterIP")
    check(port["port"] == 50051 and port["appProtocol"] == "grpc" and port["targetPort"] == "grpc",
          "Service port 50051 appProtocol grpc")
    check([p["name"] for p in svc["spec"]["ports"]] == ["grpc"],
          "the gRPC Service has no metrics port (it follows service.type)")
    check(svc["spec"]["selector"] == spec["selector"]["matchLabels"], "Service selects the pods")
    # metrics: a Service of their own, ClusterIP whatever service.type says
    msvc = objs[("Service", "fzip-metrics")]
    check(msvc["spec"]["type"] == "ClusterIP", "metrics Service ClusterIP")
    check(msvc["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics",
                                     "protocol": "TCP", "appProtocol": "http"}],
          "metrics Service port 9090 named metrics")
    check(msvc["spec"]["selector"] == spec["selector"]["matchLabels"],
          "metrics Service selects the pods")
    lb = docs(render("sqlite-default.yaml", "--set", "service.type=LoadBalancer"))
    check(lb[("Service", "fzip")]["spec"]["type"] == "LoadBalancer"
          and [p["name"] for p in lb[("Service", "fzip")]["spec"]["ports"]] == ["grpc"]
          and lb[("Service", "fzip-metrics")]["spec"]["type"] == "ClusterIP",
          "service.type=LoadBalancer exposes gRPC only; metrics stay ClusterIP")
    # PDB
    pdb = objs.get(("PodDisruptionBudget", "fzip"))
    check(pdb is not None and pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"],
          "PodDisruptionBudget selects the pods")
    return dep, pod, c, env, mounts, vols


def probes_are(c, kind):
    for p in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = c.get(p, {})
        if kind == "grpc":
            # Readiness follows the store; liveness and startup must not.
            service = "" if p == "readinessProbe" else "liveness"
            check(probe.get("grpc") == {"port": 50051, "service": service},
                  "%s is grpc on 50051 asking %r" % (p, service))
        else:
            check(probe.get("tcpSocket") == {"port": "grpc"}, "%s is tcpSocket" % p)


def case_sqlite():
    text = render("sqlite-default.yaml")
    if yaml is None:
        return text_checks(text, ["FZIP_STORE", "sqlite:/var/lib/fzip/fzip.db", "grpc:",
                                  "port: 50051", "appProtocol: grpc", "readOnlyRootFilesystem: true",
                                  "kind: PersistentVolumeClaim", "type: Recreate"])
    objs = docs(text)
    dep, pod, c, env, mounts, vols = common(objs, 1)
    check(c["image"] == "registry.example.test/fzip/fzipd:0.1.0-test", "image repository:tag")
    check(env.get("FZIP_STORE") == "sqlite:/var/lib/fzip/fzip.db", "sqlite store URI")
    check(env.get("FZIP_JWT_SECRET_FILE") == "/etc/fzip/jwt/jwt.secret", "HS256 secret file")
    check("FZIP_JWT_PUBLIC_KEY_FILE" not in env, "no public key file")
    check(vols["jwt"]["secret"]["secretName"] == "fzip-jwt", "jwt Secret fzip-jwt")
    check(not any(k.startswith("FZIP_TLS") for k in env), "no TLS by default")
    probes_are(c, "grpc")
    check(dep["spec"]["strategy"] == {"type": "Recreate"}, "Recreate strategy for SQLite")
    check(mounts["data"]["mountPath"] == "/var/lib/fzip", "data mounted at the SQLite dir")
    check(vols["data"]["persistentVolumeClaim"]["claimName"] == "fzip-data", "data is the PVC")
    pvc = objs.get(("PersistentVolumeClaim", "fzip-data"))
    check(pvc is not None and pvc["spec"]["resources"]["requests"]["storage"] == "10Gi", "PVC 10Gi")
    check(pvc["metadata"]["annotations"].get("helm.sh/resource-policy") == "keep", "PVC kept")
    check(env["FZIP_MAX_UPLOAD_BYTES"] == "4294967296", "max upload 4 GiB printed in full")
    check(env["FZIP_EXPORT_WORKERS"] == "2" and env["FZIP_EXPORT_TTL_SECONDS"] == "86400",
          "export workers / TTL defaults")
    check(env["FZIP_MAX_QUEUED_JOBS_PER_USER"] == "16", "queued jobs cap default")
    check(env["FZIP_LOG_LEVEL"] == "info", "log level")
    check(not any(k[0] == "Secret" for k in objs), "no chart-made Secret by default")
    check(not any(k[0] == "NetworkPolicy" for k in objs), "no NetworkPolicy by default")
    check("lifecycle" not in c, "no preStop hook by default")
    check("topologySpreadConstraints" not in pod, "no spread constraints for one replica")
    check(not any(k[0] == "Ingress" for k in objs), "no Ingress by default")
    check(not any(k[0] == "ServiceMonitor" for k in objs), "no ServiceMonitor by default")


def case_mongodb_tls():
    text = render("mongodb-3-tls.yaml")
    if yaml is None:
        return text_checks(text, ["replicas: 3", "name: fzip-mongo", "FZIP_TLS_CERT",
                                  "FZIP_TLS_CLIENT_CA", "tcpSocket:", "kind: NetworkPolicy"],
                           absent=["sqlite:", "kind: PersistentVolumeClaim"])
    objs = docs(text)
    dep, pod, c, env, mounts, vols = common(objs, 3)
    check(env.get("FZIP_STORE") == {"secretKeyRef": {"name": "fzip-mongo", "key": "uri"}},
          "store URI from Secret fzip-mongo")
    check(env.get("FZIP_STORE_DATABASE") == "fzipprod", "store database")
    check(env.get("FZIP_JWT_PUBLIC_KEY_FILE") == "/etc/fzip/jwt/jwt.pub", "public key file")
    check("FZIP_JWT_SECRET_FILE" not in env, "no HS256 secret file")
    check(env.get("FZIP_JWT_ISSUER") == "https://auth.example.test/" and
          env.get("FZIP_JWT_AUDIENCE") == "fzip", "issuer / audience")
    check(vols["jwt"]["secret"]["secretName"] == "fzip-jwt-pub", "jwt Secret")
    check(env.get("FZIP_TLS_CERT") == "/etc/fzip/tls/tls.crt" and
          env.get("FZIP_TLS_KEY") == "/etc/fzip/tls/tls.key", "TLS cert/key")
    check(env.get("FZIP_TLS_CLIENT_CA") == "/etc/fzip/client-ca/ca.crt", "client CA")
    check(vols["tls"]["secret"]["secretName"] == "fzip-tls", "TLS Secret")
    check(vols["client-ca"]["secret"]["secretName"] == "fzip-client-ca", "client CA Secret")
    check(mounts["tls"]["readOnly"] and mounts["client-ca"]["readOnly"], "TLS mounts read-only")
    probes_are(c, "tcp")  # the kubelet's grpc probe cannot do TLS
    check(env["FZIP_EXPORT_WORKERS"] == "4" and env["FZIP_EXPORT_TTL_SECONDS"] == "3600" and
          env["FZIP_JOB_LEASE_MS"] == "30000" and env["FZIP_LOG_LEVEL"] == "warn",
          "export workers / TTL / lease / log level from values")
    check(env["FZIP_MAX_UPLOAD_BYTES"] == "8589934592", "8 GiB upload limit printed in full")
    check(pod["terminationGracePeriodSeconds"] == 50, "grace = 5 + 30 + 15 s")
    check(c["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}, "preStop sleep 5 s")
    spread = pod.get("topologySpreadConstraints", [])
    check([t["topologyKey"] for t in spread] ==
          ["kubernetes.io/hostname", "topology.kubernetes.io/zone"] and
          all(t["maxSkew"] == 1 and t["whenUnsatisfiable"] == "ScheduleAnyway" and
              t["labelSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
              for t in spread), "3 replicas spread over nodes and zones by default")
    check(dep["spec"]["strategy"]["type"] == "RollingUpdate" and
          dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, "rolling update")
    check("data" not in vols and not any(k[0] == "PersistentVolumeClaim" for k in objs),
          "no SQLite volume with MongoDB")
    check(not any(k[0] == "Secret" for k in objs), "existing Secrets only")
    np = objs.get(("NetworkPolicy", "fzip"))
    check(np is not None, "NetworkPolicy rendered")
    if np:
        check(np["spec"]["policyTypes"] == ["Ingress", "Egress"], "ingress + egress policy")
        check(np["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] ==
              {"kubernetes.io/metadata.name": "housef3"}, "ingress peers")
        check(np["spec"]["ingress"][1] == {"ports": [{"port": "metrics", "protocol": "TCP"}]},
              "metrics port open to any scraper (metricsFrom empty)")
        ports = [p["port"] for rule in np["spec"]["egress"] for p in rule["ports"]]
        check(27017 in ports and 27018 in ports and 53 in ports, "egress DNS + MongoDB")
    check(objs[("PodDisruptionBudget", "fzip")]["spec"].get("maxUnavailable") == 1,
          "PDB maxUnavailable 1")


def case_mongodb_plain():
    text = render("mongodb-3-plain.yaml")
    if yaml is None:
        return text_checks(text, ["replicas: 3", "name: fzip-store", "grpc:", "minAvailable: 2"])
    objs = docs(text)
    dep, pod, c, env, mounts, vols = common(objs, 3)
    check(c["image"] == "fzipd:0.1.0", "default image = fzipd:appVersion")
    check(env.get("FZIP_STORE") == {"secretKeyRef": {"name": "fzip-store", "key": "uri"}},
          "store URI from the chart's Secret")
    store = objs.get(("Secret", "fzip-store"))
    jwt = objs.get(("Secret", "fzip-jwt"))
    check(store is not None and "uri" in store["data"], "chart made the store Secret")
    check(jwt is not None and "jwt.secret" in jwt["data"], "chart made the JWT Secret")
    check("checksum/jwt" in dep["spec"]["template"]["metadata"]["annotations"],
          "pods roll when the JWT secret changes")
    probes_are(c, "grpc")
    check(objs[("PodDisruptionBudget", "fzip")]["spec"] == {
        "minAvailable": 2, "selector": dep["spec"]["selector"]}, "PDB minAvailable 2")


def expect_failure(values_file, needle):
    r = helm("template", "fzip", CHART, "--kube-version", KUBE_VERSION, "-f",
             os.path.join(VALUES, values_file))
    print(r.stdout[-2000:] + r.stderr[-2000:])
    check(r.returncode != 0, "%s must fail to render" % values_file)
    check(needle in r.stderr, "%s: error mentions %r" % (values_file, needle))


def text_checks(text, present, absent=()):
    print("PyYAML not available: text checks only")
    for s in present:
        check(s in text, "rendered output contains %r" % s)
    for s in absent:
        check(s not in text, "rendered output lacks %r" % s)


def case_lint():
    r = helm("lint", CHART, "--strict")
    print(r.stdout + r.stderr)
    check(r.returncode == 0, "helm lint --strict (default values)")
    for f in ("sqlite-default.yaml", "mongodb-3-tls.yaml", "mongodb-3-plain.yaml"):
        r = helm("lint", CHART, "--strict", "-f", os.path.join(VALUES, f))
        print(r.stdout + r.stderr)
        check(r.returncode == 0, "helm lint --strict -f %s" % f)
    # helm lint reports a template's `fail` as "[INFO] Fail: ..." without
    # failing itself (helm template does fail, see invalid-sqlite).
    r = helm("lint", CHART, "-f", os.path.join(VALUES, "invalid-sqlite-3-replicas.yaml"))
    print(r.stdout + r.stderr)
    check("embedded SQLite store is one file on one node" in r.stdout + r.stderr,
          "helm lint reports the sqlite + 3 replicas refusal")


def case_extras():
    import base64
    objs = docs(render("sqlite-extras.yaml"))
    dep, pod, c, env, mounts, vols = common(objs, 1)
    jwt = objs.get(("Secret", "fzip-jwt"))
    check(jwt is not None, "generate: the chart makes the JWT Secret")
    if jwt:
        secret = base64.b64decode(jwt["data"]["jwt.secret"]).decode()
        check(len(secret) == 64 and secret.isalnum(), "generated secret: 64 random characters")
        check(jwt["metadata"]["annotations"].get("helm.sh/resource-policy") == "keep",
              "generated secret survives uninstall")
        again = docs(render("sqlite-extras.yaml")).get(("Secret", "fzip-jwt"))
        check(again["data"]["jwt.secret"] != jwt["data"]["jwt.secret"],
              "without a cluster to look up, each rendering draws a new secret")
    check(vols["jwt"]["secret"]["secretName"] == "fzip-jwt", "pods mount the generated Secret")
    ing = objs.get(("Ingress", "fzip"))
    check(ing is not None, "Ingress rendered")
    if ing:
        rule = ing["spec"]["rules"][0]
        backend = rule["http"]["paths"][0]["backend"]["service"]
        check(rule["host"] == "fzip.example.test" and backend == {"name": "fzip", "port": {"name": "grpc"}},
              "Ingress routes the host to the grpc port")
        check(ing["spec"]["tls"] == [{"hosts": ["fzip.example.test"], "secretName": "fzip-ingress-tls"}],
              "Ingress TLS")
        check(ing["spec"]["ingressClassName"] == "nginx" and
              ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC",
              "Ingress class and gRPC backend")
    check(c["lifecycle"]["preStop"] == {"sleep": {"seconds": 3}}, "preStop sleep on 1.30")
    check_service_monitor(objs)
    off = docs(render("sqlite-extras.yaml", "--set", "metrics.enabled=false"))
    c_off, env_off = container_env(off[("Deployment", "fzip")])
    check([p["name"] for p in c_off["ports"]] == ["grpc"] and "FZIP_METRICS_LISTEN" not in env_off
          and ("Service", "fzip-metrics") not in off
          and ("ServiceMonitor", "fzip") not in off, "metrics.enabled=false: no port, no monitor")
    old = docs(render("sqlite-extras.yaml", kube_version="1.29.0"))
    c_old = container_env(old[("Deployment", "fzip")])[0]
    check("lifecycle" not in c_old, "no preStop sleep on 1.29 (the API has no native sleep before 1.30)")
    check(old[("Deployment", "fzip")]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] ==
          pod["terminationGracePeriodSeconds"], "grace period the same on both versions")


def check_service_monitor(objs):
    """A CRD: kubernetes-validate has no schema for it, so its shape is
    checked here: it selects the metrics Service (only) and scrapes port
    "metrics"."""
    sm = objs.get(("ServiceMonitor", "fzip"))
    check(sm is not None, "ServiceMonitor rendered")
    if not sm:
        return
    svc = objs[("Service", "fzip-metrics")]
    grpc_svc = objs[("Service", "fzip")]
    check(sm["apiVersion"] == "monitoring.coreos.com/v1", "ServiceMonitor apiVersion")
    want = sm["spec"]["selector"]["matchLabels"]
    check(want and all(svc["metadata"]["labels"].get(k) == v for k, v in want.items()),
          "ServiceMonitor selects the metrics Service's labels")
    check(not all(grpc_svc["metadata"]["labels"].get(k) == v for k, v in want.items()),
          "ServiceMonitor does not select the gRPC Service")
    check(sm["spec"]["namespaceSelector"] == {"matchNames": ["backup"]}, "release namespace")
    check(sm["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "scheme": "http",
                                       "interval": "15s", "scrapeTimeout": "10s"}],
          "ServiceMonitor scrapes port metrics at /metrics every 15s")
    check([p["name"] for p in svc["spec"]["ports"]] == ["metrics"],
          "the metrics Service has the metrics port")
    check(sm["metadata"]["labels"].get("release") == "kube-prometheus", "ServiceMonitor labels")


# Custom resources kubernetes-validate has no schema for (their shape is
# checked by the render cases instead).
CRD_API_PREFIXES = ("monitoring.coreos.com/",)


def without_crds(text):
    kept = [d for d in yaml.safe_load_all(text)
            if d and not d.get("apiVersion", "").startswith(CRD_API_PREFIXES)]
    return yaml.safe_dump_all(kept)


# Kubernetes versions the chart is validated against (kubernetes-validate
# ships the schemas, so this needs no cluster and no network).
SCHEMA_VERSIONS = ["1.%d.0" % minor for minor in range(27, 35)]
SCHEMA_VALUES = ["sqlite-default.yaml", "sqlite-extras.yaml", "mongodb-3-tls.yaml",
                 "mongodb-3-plain.yaml"]


def case_k8s_schemas():
    import tempfile
    tool = os.environ["KUBERNETES_VALIDATE"]
    with tempfile.TemporaryDirectory() as tmp:
        for version in SCHEMA_VERSIONS:
            for values_file in SCHEMA_VALUES:
                path = os.path.join(tmp, "%s-%s" % (version, values_file))
                with open(path, "w", encoding="utf-8") as f:
                    f.write(without_crds(render(values_file, kube_version=version)))
                r = subprocess.run([tool, "--strict", "--no-warn", "-k", version, path],
                                   capture_output=True, text=True)
                out = r.stdout + r.stderr
                bad = [line for line in out.splitlines() if "passed for resource" not in line]
                with open(path, encoding="utf-8") as f:
                    resources = sum(1 for d in yaml.safe_load_all(f) if d)
                check(r.returncode == 0, "Kubernetes %s schemas accept %s: %s"
                      % (version, values_file, " | ".join(bad[:5])))
                check(out.count("passed for resource") == resources,
                      "Kubernetes %s: each of the %d resources of %s validated"
                      % (version, resources, values_file))


CASES = {
    "extras": case_extras,
    "k8s-schemas": case_k8s_schemas,
    "invalid-no-jwt": lambda: expect_failure("invalid-no-jwt.yaml",
                                             "auth.jwt: fzipd needs its JWT key material"),
    "invalid-jwt-twice": lambda: expect_failure("invalid-jwt-twice.yaml",
                                                "set only one of existingSecret, value and generate"),
    "lint": case_lint,
    "sqlite": case_sqlite,
    "mongodb-tls": case_mongodb_tls,
    "mongodb-plain": case_mongodb_plain,
    "invalid-sqlite": lambda: expect_failure("invalid-sqlite-3-replicas.yaml",
                                             "embedded SQLite store is one file on one node"),
    "invalid-grace": lambda: expect_failure("invalid-grace.yaml", "terminationGracePeriodSeconds"),
    "invalid-tls": lambda: expect_failure("invalid-tls-no-secret.yaml", "tls.existingSecret"),
}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        sys.exit("usage: test_helm.py {%s}" % ",".join(CASES))
    CASES[sys.argv[1]]()
    if failures:
        print("%d check(s) failed" % len(failures))
        sys.exit(1)
    print("ok")
