"""Building the project image with podman: ``python -m devstack image build`` (``make image``).

The image is built from ``Dockerfile`` on top of the official ``python:3.11.x-slim-bookworm``
base when a registry serves it, and otherwise on a base made from Debian's archive alone:

1. ``debootstrap --variant=minbase bookworm`` into a folder, trimmed, and kept as a tarball in
   ``${XDG_CACHE_HOME:-~/.cache}/todo-agent/image/`` (a new podman storage re-imports it in seconds);
2. ``podman import`` of that tarball as ``localhost/todo-agent-base/debian:bookworm-minbase``;
3. ``devstack/image-base/Containerfile`` on top (apt installs python3, python3-venv,
   ca-certificates), tagged by the hash of that Containerfile, so editing it rebuilds the base.

Each step is skipped when its result exists. podman runs with ``runc`` and an open-files limit
within the host's hard limit through a ``containers.conf`` this module writes under the cache
(``CONTAINERS_CONF``): the user's own podman configuration is left alone.

Behind a TLS-inspecting proxy, pip inside the build must trust the proxy's CA: the host's CA
bundle is handed to the build as a build secret (mounted read-only at ``/run/secrets/build-ca``
for the RUN steps that download, never stored in a layer); see :func:`ca_bundle`.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from devstack.config import cache_root, repo_root
from devstack.errors import StackError

DOCKERFILE = repo_root() / "Dockerfile"
BASE_CONTAINERFILE = repo_root() / "devstack" / "image-base" / "Containerfile"
DEBIAN_SUITE = "bookworm"
DEBIAN_IMAGE = f"localhost/todo-agent-base/debian:{DEBIAN_SUITE}-minbase"
PYTHON_BASE_REPO = "localhost/todo-agent-base/python"
#: The name the build secret has in the Dockerfile (``RUN --mount=type=secret,id=build-ca``).
CA_SECRET_ID = "build-ca"
#: How long to wait for a registry before falling back to the Debian-built base.
PULL_TIMEOUT_S = 120
#: Where the tools come from when they are missing (as root, non-interactively).
DEBIAN_PACKAGES = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}
#: Documentation, manuals, translations and downloaded packages: not needed in a container.
_ROOTFS_TRIM = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)

Base = Literal["auto", "official", "debian"]


@dataclass(frozen=True)
class BuiltImage:
    names: tuple[str, ...]
    base: str
    size_bytes: int
    seconds: float


def image_dir() -> Path:
    """Cache of the image build: the Debian root file system tarball and containers.conf."""
    return cache_root() / "image"


def project_version() -> str:
    return str(tomllib.loads((repo_root() / "pyproject.toml").read_text())["project"]["version"])


def image_names(version: str | None = None) -> tuple[str, str]:
    """``localhost/todo-agent:V`` (podman's name for ``todo-agent:V``) and
    ``docker.io/library/todo-agent:V``, the name Kubernetes resolves the manifests'
    ``image: todo-agent:V`` to, so the image imported into containerd matches it."""
    v = version or project_version()
    return f"localhost/todo-agent:{v}", f"docker.io/library/todo-agent:{v}"


def official_base() -> str:
    """The Dockerfile's default ``PYTHON_IMAGE`` (``python:3.11.x-slim-bookworm``)."""
    m = re.search(r"^ARG PYTHON_IMAGE=(\S+)", DOCKERFILE.read_text(), re.M)
    if not m:
        raise StackError(f"{DOCKERFILE} has no `ARG PYTHON_IMAGE=...` line")
    return m.group(1)


def python_base_name() -> str:
    """The Debian-built base, tagged by its Containerfile so an edit makes a new one."""
    digest = hashlib.sha256(BASE_CONTAINERFILE.read_bytes()).hexdigest()[:12]
    return f"{PYTHON_BASE_REPO}:3.11-{DEBIAN_SUITE}-{digest}"


def rootfs_tarball() -> Path:
    arch = os.uname().machine
    return image_dir() / f"debian-{DEBIAN_SUITE}-minbase-{arch}.tar"


# -- tools ----------------------------------------------------------------------------------
def ensure_tools(*names: str) -> None:
    """Install the missing ones of podman/runc/debootstrap from Debian (as root), else explain."""
    missing = [n for n in names if not shutil.which(n)]
    if not missing:
        return
    packages = [DEBIAN_PACKAGES[n] for n in missing]
    command = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    if os.geteuid() != 0:
        raise StackError(f"{', '.join(missing)} not found: install with `sudo {' '.join(command)}`")
    _say(f"installing {' '.join(packages)} from Debian")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["apt-get", "update", "-qq"], command):
        done = subprocess.run(step, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise StackError(f"`{' '.join(step)}` failed: {done.stderr.strip()[-2000:]}")


def containers_conf() -> Path:
    """A containers.conf for the devstack's podman: runc, and limits the host lets a container set.

    crun refuses this machine's hybrid cgroup layout, and podman's default open-files and
    processes limits can be above what the host permits (runc: ``error setting rlimit type 7``,
    or type 6 for processes: ``operation not permitted``).
    """
    nofile, nproc = _limit(resource.RLIMIT_NOFILE), _limit(resource.RLIMIT_NPROC)
    text = (
        "# Written by `python -m devstack image build`; used through CONTAINERS_CONF only.\n"
        f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n\n'
        '[engine]\nruntime = "runc"\n'
    )
    path = image_dir() / "containers.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def _limit(kind: int) -> int:
    """This process's hard limit of ``kind``; processes also at most the kernel's pid_max
    (a higher value is refused on some hosts even when the hard limit allows it)."""
    hard = resource.getrlimit(kind)[1]
    value = 1048576 if hard == resource.RLIM_INFINITY else min(hard, 1048576)
    if kind == resource.RLIMIT_NPROC:
        try:
            value = min(value, int(Path("/proc/sys/kernel/pid_max").read_text()))
        except (OSError, ValueError):
            pass
    return value


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(containers_conf())}


def podman(*args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """``podman --runtime runc ARGS`` with the devstack's containers.conf; output captured."""
    command = ["podman", "--runtime", "runc", *args]
    try:
        done = subprocess.run(
            command, env=podman_env(), capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"`{' '.join(command)}` did not finish in {timeout}s") from exc
    if check and done.returncode != 0:
        raise StackError(f"`{' '.join(command)}` failed: {(done.stderr or done.stdout).strip()[-3000:]}")
    return done


def podman_streamed(args: Sequence[str], log: Path) -> None:
    """A long podman step (a build) with its output appended to ``log``."""
    command = ["podman", "--runtime", "runc", *args]
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        rc = subprocess.run(
            command, env=podman_env(), stdout=out, stderr=subprocess.STDOUT, check=False
        ).returncode
    if rc != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise StackError(f"`{' '.join(command[:4])} ...` failed (exit {rc}); log {log}:\n{tail}")


def image_exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


# -- the CA bundle for TLS-inspecting proxies -------------------------------------------------
def ca_bundle(choice: str) -> Path | None:
    """The CA bundle handed to the build: ``none``; a file path; or ``auto`` (the default),
    the host's bundle as pip and requests on the host see it (``PIP_CERT``,
    ``REQUESTS_CA_BUNDLE``, ``SSL_CERT_FILE``, else Debian's ``/etc/ssl/certs/ca-certificates.crt``).
    The host's system bundle holds the public CAs too, so handing it over is harmless where
    nothing inspects TLS."""
    if choice == "none":
        return None
    if choice != "auto":
        path = Path(choice)
        if not path.is_file():
            raise StackError(f"--ca-bundle {choice}: no such file (give a PEM bundle, `auto` or `none`)")
        return path.resolve()
    candidates = [os.environ.get(v) for v in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")]
    candidates.append("/etc/ssl/certs/ca-certificates.crt")
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate).resolve()
    return None


# -- bases ----------------------------------------------------------------------------------
def ensure_debian_image(log: Path) -> str:
    """``localhost/todo-agent-base/debian:bookworm-minbase``: present, re-imported from the
    cached tarball, or made with debootstrap first."""
    if image_exists(DEBIAN_IMAGE):
        return DEBIAN_IMAGE
    tarball = rootfs_tarball()
    if not tarball.is_file():
        _debootstrap(tarball, log)
    _say(f"importing {tarball.name} as {DEBIAN_IMAGE}")
    podman("import", "--change", 'CMD ["/bin/bash"]', str(tarball), DEBIAN_IMAGE)
    return DEBIAN_IMAGE


def _debootstrap(tarball: Path, log: Path) -> None:
    ensure_tools("debootstrap")
    mirror = os.environ.get("TODO_DEBIAN_MIRROR", "http://deb.debian.org/debian")
    _say(f"debootstrap --variant=minbase {DEBIAN_SUITE} from {mirror} (once; about 2-4 min)")
    with tempfile.TemporaryDirectory(dir=image_dir(), prefix="rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        command = ["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(rootfs), mirror]
        with open(log, "a") as out:
            out.write(f"\n$ {' '.join(command)}\n")
            out.flush()
            rc = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
        if rc != 0:
            raise StackError(f"debootstrap failed (exit {rc}); log {log}")
        for relative in _ROOTFS_TRIM:
            _empty(rootfs / relative)
        partial = tarball.with_suffix(".tar.partial")
        with tarfile.open(partial, "w") as tar:
            tar.add(rootfs, arcname=".")
        partial.rename(tarball)


def _empty(folder: Path) -> None:
    if not folder.is_dir():
        return
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def ensure_python_base(log: Path) -> str:
    """The Debian-built Python base for ``--build-arg PYTHON_IMAGE``."""
    name = python_base_name()
    if image_exists(name):
        return name
    debian = ensure_debian_image(log)
    _say(f"building {name} (apt-get install python3 ...)")
    podman_streamed(
        [
            "build",
            "--network=host",
            "--build-arg",
            f"DEBIAN_IMAGE={debian}",
            "-f",
            str(BASE_CONTAINERFILE),
            "-t",
            name,
            str(BASE_CONTAINERFILE.parent),
        ],
        log,
    )
    return name


def official_base_available(name: str) -> bool:
    """True when the official base is in local storage or a registry serves it now."""
    if image_exists(name):
        return True
    _say(f"pulling {name}")
    try:
        pulled = podman("pull", "--quiet", name, check=False, timeout=PULL_TIMEOUT_S)
    except StackError:
        return False
    if pulled.returncode != 0:
        _say(f"no registry serves {name} ({_last_line(pulled.stderr)}): using the Debian-built base")
    return pulled.returncode == 0


def choose_base(base: Base, log: Path) -> str:
    official = official_base()
    if base == "official":
        if not official_base_available(official):
            raise StackError(f"{official} could not be pulled; use --base debian (or auto)")
        return official
    if base == "auto" and official_base_available(official):
        return official
    return ensure_python_base(log)


# -- the project image ----------------------------------------------------------------------
def build(*, base: Base = "auto", ca: str = "auto", version: str | None = None) -> BuiltImage:
    """Build (podman's layer cache makes an unchanged rebuild take seconds) and tag the image."""
    ensure_tools("podman", "runc")
    image_dir().mkdir(parents=True, exist_ok=True)
    log = image_dir() / "build.log"
    with _locked():
        started = time.monotonic()
        python_image = choose_base(base, log)
        names = image_names(version)
        # The docker format keeps the HEALTHCHECK (the OCI format has no place for it).
        args = ["build", "--format=docker", "--network=host", "--build-arg", f"PYTHON_IMAGE={python_image}"]
        bundle = ca_bundle(ca)
        if bundle:
            args += ["--secret", f"id={CA_SECRET_ID},src={bundle}"]
        for name in names:
            args += ["-t", name]
        args += ["-f", str(DOCKERFILE), str(repo_root())]
        _say(f"building {names[0]} FROM {python_image}" + (f" (CA bundle {bundle})" if bundle else ""))
        previous = image_id(names[0])
        podman_streamed(args, log)
        seconds = time.monotonic() - started
        if previous and previous != image_id(names[0]):
            _drop_untagged(previous)
    size = int(podman("image", "inspect", "--format", "{{.Size}}", names[0]).stdout.strip() or 0)
    return BuiltImage(names=names, base=python_image, size_bytes=size, seconds=seconds)


def image_id(name: str) -> str | None:
    done = podman("image", "inspect", "--format", "{{.Id}}", name, check=False)
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def _drop_untagged(image: str) -> None:
    """Remove the image this build replaced (by its id, once no name points at it any more):
    its runtime layer holds a copy of the whole virtual environment, about 200 MB. An image
    a container still uses stays."""
    tags = podman("image", "inspect", "--format", "{{.RepoTags}}", image, check=False).stdout.strip()
    if tags in ("[]", ""):
        podman("rmi", image, check=False)


@contextmanager
def _locked() -> Iterator[None]:
    """One image build at a time on this machine; a waiter then reuses what the first built."""
    with open(image_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _say(message: str) -> None:
    print(f"[devstack] {message}", file=sys.stderr, flush=True)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][-300:] if lines else "no output"
