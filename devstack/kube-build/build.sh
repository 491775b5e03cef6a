#!/usr/bin/env bash
# Build the pinned Kubernetes commands (kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet, kubectl, kube-proxy) into OUT_DIR from k8s.io/kubernetes on the Go module proxy.
# Usage: build.sh OUT_DIR   (the version is the one go.mod requires)
# Env: KUBE_BUILD_JOBS (go build -p, default 2; use 1 when memory is short).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:?usage: build.sh OUT_DIR}"
version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit} $1 == "require" && $2 == "k8s.io/kubernetes" {print $3; exit}' "$here/go.mod")"
[ -n "$version" ] || { echo "[kube-build] cannot read the kubernetes version from $here/go.mod" >&2; exit 1; }
major="${version#v}"; major="${major%%.*}"
minor="${version#v*.}"; minor="${minor%%.*}"
mkdir -p "$out"
cd "$here"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--buildvcs=false}"
jobs="${KUBE_BUILD_JOBS:-2}"
# The same version stamps hack/lib/version.sh sets; without them --version prints v0.0.0-master.
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
start=$(date +%s)
[ -f go.sum ] || { echo "[kube-build] resolving modules (go mod tidy)"; go mod tidy; }
cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl kube-proxy)
for c in "${cmds[@]}"; do
  t0=$(date +%s)
  echo "[kube-build] building $c $version with -p $jobs"
  go build -p "$jobs" -trimpath -ldflags "$ldflags" -o "$out/$c.tmp" "k8s.io/kubernetes/cmd/$c"
  mv "$out/$c.tmp" "$out/$c"
  echo "[kube-build] $c built in $(( $(date +%s) - t0 ))s"
done
echo "[kube-build] done in $(( $(date +%s) - start ))s -> $out"
