#!/usr/bin/env bash
# Install/prepare what the test suite needs, non-interactively (CI: root, CI=true, no TTY).
#  - Debian packages: PostgreSQL server, Java 17 (Kafka), Maven (Kafka jars), Chromium (e2e),
#    podman + runc + debootstrap (the image tests build the image), Node.js + npm (the MCP
#    TypeScript SDK test) installed only when missing;
#  - Go checked (needed only to build Dapr when no cached binaries exist);
#  - Dapr daprd + scheduler built once, Kafka jars and Keycloak (OAuth tests) fetched once into
#    ${XDG_CACHE_HOME:-~/.cache}/todo-agent (python -m devstack prepare).
# Idempotent: quick when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
PY="${PYTHON:-.venv/bin/python}"

say() { printf '[test-prereqs] %s\n' "$*"; }
die() { printf '[test-prereqs] error: %s\n' "$*" >&2; exit 1; }

# package -> a file it installs (cheap presence check without dpkg locks)
declare -A PKG_FILES=(
  [postgresql]=/usr/lib/postgresql/15/bin/initdb
  [openjdk-17-jre-headless]=/usr/lib/jvm/java-17-openjdk-amd64/bin/java
  [maven]=/usr/bin/mvn
  [chromium]=/usr/bin/chromium
  [podman]=/usr/bin/podman
  [runc]=/usr/sbin/runc
  [debootstrap]=/usr/sbin/debootstrap
  [nodejs]=/usr/bin/node
  [npm]=/usr/bin/npm
)
missing=()
for pkg in "${!PKG_FILES[@]}"; do
  f="${PKG_FILES[$pkg]}"
  if [ "$pkg" = openjdk-17-jre-headless ] && command -v java >/dev/null 2>&1; then continue; fi
  if [ "$pkg" = postgresql ] && compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then continue; fi
  [ -e "$f" ] || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "missing packages ${missing[*]} and not root: install them with apt-get"
    SUDO="sudo -n"
  fi
  say "installing missing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  say "Debian packages present"
fi

command -v java >/dev/null 2>&1 || die "java not found: apt-get install -y openjdk-17-jre-headless"
command -v mvn >/dev/null 2>&1 || die "mvn not found: apt-get install -y maven"
[ -x "$PY" ] || die "$PY not found: run 'make test' (creates .venv) or set PYTHON=..."

# Go is only needed when the pinned Dapr binaries are not available yet; devstack checks the
# version and prints how to get it. Put a Go in /usr/local/go on PATH if it is there.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi

say "preparing Dapr binaries and Kafka jars (builds once; later runs are instant)"
"$PY" -m devstack prepare
