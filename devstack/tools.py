"""Checks for the host tools the stack needs, with the command that installs each."""

from __future__ import annotations

import re
import shutil
import subprocess

from devstack.errors import StackError

APT = "apt-get install -y --no-install-recommends"


def java() -> str:
    """Path of a Java 17+ ``java``."""
    path = shutil.which("java")
    if not path:
        raise StackError(f"Java 17+ is needed to run Kafka and was not found: {APT} openjdk-17-jre-headless")
    out = subprocess.run([path, "-version"], capture_output=True, text=True, check=False).stderr
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(m.group(1)) if m else 0
    if major == 1 and m and m.group(2):
        major = int(m.group(2))
    if major < 17:
        raise StackError(
            f"Kafka needs Java 17+, found {out.strip().splitlines()[0]!r}: {APT} openjdk-17-jre-headless"
        )
    return path


def maven() -> str:
    path = shutil.which("mvn")
    if not path:
        raise StackError(f"Maven is needed once to fetch the Kafka jars and was not found: {APT} maven")
    return path


def go(min_version: str) -> str:
    """Path of a ``go`` at least ``min_version`` (e.g. ``1.26.4``)."""
    path = shutil.which("go") or ("/usr/local/go/bin/go" if shutil.which("/usr/local/go/bin/go") else None)
    hint = (
        f"Go >= {min_version} is needed once to build daprd and the scheduler: install it "
        "from https://go.dev/dl (or put it on PATH), or put daprd/scheduler of the pinned "
        "version in ~/.dapr/bin (`dapr init`)"
    )
    if not path:
        raise StackError(f"go not found. {hint}")
    out = subprocess.run(
        [path, "env", "GOVERSION"], capture_output=True, text=True, check=False
    ).stdout.strip()
    have = _version_tuple(out.removeprefix("go"))
    if have < _version_tuple(min_version):
        raise StackError(f"found {out or 'an unknown Go'} at {path}. {hint}")
    return path


def _version_tuple(v: str) -> tuple[int, ...]:
    parts = re.findall(r"\d+", v)[:3]
    return tuple(int(p) for p in parts) if parts else (0,)
