"""Finding (or building) the pinned ``daprd`` and ``scheduler`` binaries.

Order: ``PATH`` and ``~/.dapr/bin`` when ``--version`` matches the pinned version; else the
cache ``${XDG_CACHE_HOME:-~/.cache}/todo-agent/dapr/<version>/``; else a build from Dapr's Go
module through ``devstack/dapr-build`` (the first build takes tens of minutes).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from devstack.config import StackConfig, repo_root
from devstack.errors import StackError
from devstack.tools import go

BUILD_DIR = repo_root() / "devstack" / "dapr-build"


@dataclass(frozen=True)
class DaprBinaries:
    daprd: Path
    scheduler: Path
    version: str


def binary_version(path: Path) -> str | None:
    """What ``path --version`` prints (e.g. ``1.18.1``), or None when it does not run."""
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"\d+\.\d+\.\d+\S*", out.stdout + out.stderr)
    return m.group(0) if m else None


def _candidates(name: str, cfg: StackConfig) -> list[Path]:
    found = [shutil.which(name), str(Path.home() / ".dapr" / "bin" / name), str(cfg.dapr_cache / name)]
    seen: list[Path] = []
    for f in found:
        if f and Path(f).is_file() and os.access(f, os.X_OK) and Path(f) not in seen:
            seen.append(Path(f))
    return seen


def find(name: str, cfg: StackConfig) -> Path | None:
    """The first ``name`` binary of the pinned version, without building.

    ``daprd`` reports its version (``--version``); the scheduler has no such flag, so it is
    taken from the folder of a matching ``daprd`` (``~/.dapr/bin`` and the cache hold both
    from one release).
    """
    for daprd in _candidates("daprd", cfg):
        if binary_version(daprd) != cfg.dapr_version:
            continue
        if name == "daprd":
            return daprd
        sibling = daprd.parent / name
        if sibling.is_file() and os.access(sibling, os.X_OK):
            return sibling
    return None


def build_log(cfg: StackConfig) -> Path:
    return cfg.dapr_cache / "build.log"


def _go_min_version() -> str:
    m = re.search(r"^go (\S+)", (BUILD_DIR / "go.mod").read_text(), re.M)
    return m.group(1) if m else "1.26"


def ensure(cfg: StackConfig, *, build: bool = True, progress: bool = True) -> DaprBinaries:
    """The pinned binaries, building them once into the cache when none are found."""
    daprd, scheduler = find("daprd", cfg), find("scheduler", cfg)
    if daprd and scheduler:
        return DaprBinaries(daprd, scheduler, cfg.dapr_version)
    if not build:
        raise StackError(
            f"daprd/scheduler {cfg.dapr_version} not found on PATH, in ~/.dapr/bin or in "
            f"{cfg.dapr_cache}: run `python -m devstack up` or scripts/test-prereqs.sh to build them"
        )
    _build(cfg, progress=progress)
    daprd, scheduler = find("daprd", cfg), find("scheduler", cfg)
    if not (daprd and scheduler):
        raise StackError(
            f"the Dapr build finished but the binaries do not report version "
            f"{cfg.dapr_version}; log {build_log(cfg)}"
        )
    return DaprBinaries(daprd, scheduler, cfg.dapr_version)


def pinned_version() -> str:
    """The dapr version ``devstack/dapr-build/go.mod`` requires."""
    m = re.search(
        r"^\s*(?:require\s+)?github\.com/dapr/dapr v(\S+)", (BUILD_DIR / "go.mod").read_text(), re.M
    )
    return m.group(1) if m else "?"


def _build(cfg: StackConfig, *, progress: bool) -> None:
    if pinned_version() != cfg.dapr_version:
        raise StackError(
            f"devstack/dapr-build/go.mod builds dapr {pinned_version()} but {cfg.dapr_version} "
            "is wanted: keep devstack/versions.py and go.mod in sync"
        )
    gobin = go(_go_min_version())
    out = cfg.dapr_cache
    out.mkdir(parents=True, exist_ok=True)
    log = build_log(cfg)
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; a waiter reuses the result
        if binary_version(out / "daprd") == cfg.dapr_version and (out / "scheduler").is_file():
            return
        if progress:
            print(
                f"[devstack] building Dapr {cfg.dapr_version} daprd + scheduler from source "
                f"(first time only: roughly 15-30 min and ~4 GB of Go caches); log {log}",
                flush=True,
            )
        env = dict(os.environ)
        env["PATH"] = f"{Path(gobin).parent}{os.pathsep}{env.get('PATH', '')}"
        started = time.monotonic()
        with open(log, "ab") as f:
            rc = subprocess.run(
                ["bash", str(BUILD_DIR / "build.sh"), str(out)],
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                check=False,
            ).returncode
        if rc != 0:
            raise StackError(f"building Dapr {cfg.dapr_version} failed (exit {rc}); log {log}")
        if progress:
            print(f"[devstack] Dapr built in {time.monotonic() - started:.0f}s", flush=True)
