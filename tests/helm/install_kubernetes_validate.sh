#!/bin/sh
# install_kubernetes_validate.sh DIR VERSION [PROMETHEUS_CLIENT_VERSION]:
# the tests' one venv of PyPI tools, in DIR: kubernetes-validate==VERSION,
# which ships the Kubernetes OpenAPI schemas of every minor version (no
# cluster needed), and, when given, prometheus-client at that version,
# whose text parser server.metrics reads fzipd's /metrics with.
# Idempotent: a venv that already has those versions is kept.
set -eu
dir=$1 version=$2 prom=${3:-}
has() { "$dir/bin/pip" show "$1" 2>/dev/null | grep -qx "Version: $2"; }
if [ -x "$dir/bin/kubernetes-validate" ] && has kubernetes-validate "$version" &&
  { [ -z "$prom" ] || has prometheus-client "$prom"; }; then
  exit 0
fi
rm -rf "$dir"
/usr/bin/python3 -m venv "$dir"
"$dir/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$version" \
  ${prom:+"prometheus-client==$prom"}
"$dir/bin/kubernetes-validate" --version
