#!/bin/sh
# install_kubernetes_validate.sh DIR VERSION: a venv in DIR with the PyPI
# package kubernetes-validate==VERSION, which ships the Kubernetes OpenAPI
# schemas of every minor version (no cluster needed).  Idempotent: a venv
# that already has that version is kept.
set -eu
dir=$1 version=$2
if [ -x "$dir/bin/kubernetes-validate" ] &&
  "$dir/bin/pip" show kubernetes-validate 2>/dev/null | grep -qx "Version: $version"; then
  exit 0
fi
rm -rf "$dir"
/usr/bin/python3 -m venv "$dir"
"$dir/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$version"
"$dir/bin/kubernetes-validate" --version
