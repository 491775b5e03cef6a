"""Building (once) and finding the binaries and images the local Kubernetes cluster runs.

Every piece comes from a registry that serves source: the Go module proxy (Kubernetes, Helm,
CoreDNS, Dapr's control plane) and Debian (gcc for the ``pause`` program). Each is built once
into ``${XDG_CACHE_HOME:-~/.cache}/todo-agent/<name>/<version>/`` under a lock, the same way
``devstack.dapr_bin`` builds daprd, and found there afterwards. A folder counts as built when
its ``.built`` stamp exists (written after every binary of the folder is in place).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack.config import StackConfig, repo_root
from devstack.errors import StackError
from devstack.tools import go
from devstack.versions import (
    COREDNS_VERSION,
    DAPR_VERSION,
    HELM_VERSION,
    KUBERNETES_VERSION,
    PAUSE_VERSION,
)

DEVSTACK = repo_root() / "devstack"
KUBE_COMMANDS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kubectl",
    "kube-proxy",
)
#: Dapr's control-plane commands, as the Helm chart runs them (``/operator``, ``/injector``...).
DAPR_CONTROL_PLANE = {
    "operator": "operator",
    "injector": "injector",
    "sentry": "sentry",
    "placement": "placement",
}


@dataclass(frozen=True)
class Build:
    """One cached build: what it is called, its version, which files it produces."""

    name: str
    version: str
    files: tuple[str, ...]

    def folder(self, cfg: StackConfig) -> Path:
        return cfg.cache_dir / self.name / self.version

    def log(self, cfg: StackConfig) -> Path:
        return self.folder(cfg) / "build.log"

    def built(self, cfg: StackConfig) -> bool:
        d = self.folder(cfg)
        return (d / ".built").is_file() and all((d / f).is_file() for f in self.files)

    def path(self, cfg: StackConfig, file: str) -> Path:
        return self.folder(cfg) / file


KUBERNETES = Build("kubernetes", KUBERNETES_VERSION, KUBE_COMMANDS)
HELM = Build("helm", HELM_VERSION, ("helm",))
COREDNS = Build("coredns", COREDNS_VERSION, ("coredns",))
PAUSE = Build("pause", PAUSE_VERSION, ("pause",))
DAPR_CP = Build("dapr-control-plane", DAPR_VERSION, tuple(DAPR_CONTROL_PLANE))
ALL = (KUBERNETES, HELM, COREDNS, PAUSE, DAPR_CP)


def _go_env() -> dict[str, str]:
    gobin = go("1.24")
    env = dict(os.environ)
    env["PATH"] = f"{Path(gobin).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(GOTOOLCHAIN="local", CGO_ENABLED="0")
    env.setdefault("GOFLAGS", "-buildvcs=false")
    # The Dapr wrapper's go.sum pins a module missing from the checksum database served here
    # (see devstack/dapr-build/go.mod).
    nosum = "github.com/diagridio/go-etcd-cron"
    env["GONOSUMDB"] = f"{env['GONOSUMDB']},{nosum}" if env.get("GONOSUMDB") else nosum
    return env


def _jobs() -> str:
    return os.environ.get("KUBE_BUILD_JOBS", "2")


def _go_build(module: Path, out: Path, package: str, ldflags: str, tags: str = "") -> list[str]:
    cmd = ["go", "build", "-p", _jobs(), "-trimpath", "-ldflags", ldflags, "-o", str(out)]
    return [*cmd, *(["-tags", tags] if tags else []), package]


def _commands(build: Build, out: Path) -> list[tuple[Sequence[str], Path]]:
    """The shell commands (and their working folders) that produce ``build`` in ``out``."""
    if build is KUBERNETES:
        return [(["bash", "build.sh", str(out)], DEVSTACK / "kube-build")]
    if build is HELM:
        ld = f"-s -w -X helm.sh/helm/v3/internal/version.version=v{HELM_VERSION}"
        return [
            (
                _go_build(DEVSTACK / "helm-build", out / "helm", "helm.sh/helm/v3/cmd/helm", ld),
                DEVSTACK / "helm-build",
            )
        ]
    if build is COREDNS:
        module = DEVSTACK / "coredns-build"
        return [(_go_build(module, out / "coredns", "github.com/coredns/coredns", "-s -w"), module)]
    if build is PAUSE:
        source = _kubernetes_source() / "build" / "pause" / "linux" / "pause.c"
        cc = ["gcc", "-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{PAUSE_VERSION}-devstack"]
        return [([*cc, "-o", str(out / "pause"), str(source)], out)]
    if build is DAPR_CP:
        module = DEVSTACK / "dapr-build"
        ld = f"-s -w -X github.com/dapr/dapr/pkg/buildinfo.version={DAPR_VERSION}"
        return [
            (_go_build(module, out / name, f"github.com/dapr/dapr/cmd/{cmd}", ld), module)
            for name, cmd in DAPR_CONTROL_PLANE.items()
        ]
    raise StackError(f"no recipe for {build.name}")


def _kubernetes_source() -> Path:
    """The k8s.io/kubernetes module folder in the Go module cache (downloaded when missing)."""
    env = _go_env()
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"k8s.io/kubernetes@v{KUBERNETES_VERSION}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=DEVSTACK / "kube-build",
        check=False,
    )
    import json

    try:
        return Path(json.loads(out.stdout)["Dir"])
    except (ValueError, KeyError) as exc:
        raise StackError(
            f"cannot download k8s.io/kubernetes v{KUBERNETES_VERSION}: {out.stderr.strip()}"
        ) from exc


def ensure(build: Build, cfg: StackConfig, *, progress: bool = True) -> Path:
    """The folder holding ``build``'s files, building them once when they are missing."""
    if build.built(cfg):
        return build.folder(cfg)
    out = build.folder(cfg)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; a waiter reuses the result
        if build.built(cfg):
            return out
        log = build.log(cfg)
        if progress:
            print(
                f"[devstack] building {build.name} {build.version} (first time only); log {log}", flush=True
            )
        started = time.monotonic()
        env = _go_env()
        with open(log, "ab") as f:
            for cmd, cwd in _commands(build, out):
                f.write(f"\n--- {time.strftime('%H:%M:%S')} {' '.join(cmd)}\n".encode())
                f.flush()
                rc = subprocess.run(
                    list(cmd),
                    stdout=f,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    cwd=cwd,
                    check=False,
                ).returncode
                if rc != 0:
                    raise StackError(f"building {build.name} {build.version} failed (exit {rc}); log {log}")
        missing = [name for name in build.files if not (out / name).is_file()]
        if missing:
            raise StackError(f"building {build.name} left out {', '.join(missing)}; log {log}")
        (out / ".built").write_text(f"{build.version} built in {time.monotonic() - started:.0f}s\n")
        if progress:
            print(f"[devstack] {build.name} built in {time.monotonic() - started:.0f}s", flush=True)
    return out
