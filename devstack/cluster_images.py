"""Container images for the local cluster, packaged with podman and imported into its containerd.

No registry is needed: each image is ``FROM scratch`` plus binaries built once from their Go
modules (``devstack.cluster_bin``), saved with ``podman save`` and imported with ``ctr images
import``. Names are ``localhost/<name>:<version>``, which pods use with ``imagePullPolicy:
IfNotPresent`` or ``Never``.

- ``localhost/pause`` — the pod sandbox (Kubernetes' ``build/pause``);
- ``localhost/coredns`` — cluster DNS;
- ``localhost/dapr`` — Dapr's control plane and sidecar, laid out like Dapr's own ``dapr``
  image (``/operator``, ``/injector``, ``/sentry``, ``/placement``, ``/scheduler``, ``/daprd``)
  and tagged again under each name the chart asks for (``localhost/operator``, ...), so the Dapr
  Helm chart runs it unchanged with ``global.registry=localhost``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from devstack import cluster_bin, dapr_bin
from devstack.errors import StackError
from devstack.versions import DAPR_VERSION

if TYPE_CHECKING:
    from devstack.cluster import Cluster

#: The image names Dapr's Helm chart asks for (``<registry>/<name>:<tag>``).
DAPR_IMAGE_NAMES = ("operator", "sentry", "placement", "scheduler", "injector", "daprd")
#: Dapr's images run as this non-root user (the chart sets runAsNonRoot).
NONROOT = "65532:65532"


def _podman(*args: str) -> str:
    exe = shutil.which("podman")
    if not exe:
        raise StackError("podman is needed to package the cluster's images: apt-get install -y podman runc")
    out = subprocess.run([exe, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise StackError(f"podman {' '.join(args[:2])} failed: {out.stderr.strip()[-2000:]}")
    return out.stdout


def image_present(cluster: Cluster, ref: str) -> bool:
    return ref in cluster._ctr("images", "ls", "-q", check=False).stdout.split()


def build_and_import(
    cluster: Cluster,
    ref: str,
    files: dict[str, Path],
    *,
    entrypoint: list[str] | None = None,
    user: str | None = None,
    progress: bool = True,
) -> None:
    """Package ``files`` (path in image -> host file) as ``ref`` and import it into containerd."""
    if image_present(cluster, ref):
        return
    if progress:
        print(f"[devstack] packaging image {ref}", flush=True)
    with tempfile.TemporaryDirectory(prefix="devstack-image-") as tmp:
        ctx = Path(tmp)
        lines = ["FROM scratch"]
        for dest, src in files.items():
            shutil.copy2(src, ctx / src.name)
            lines.append(f"COPY {src.name} {dest}")
        if user:
            lines.append(f"USER {user}")
        if entrypoint:
            lines.append("ENTRYPOINT " + str(entrypoint).replace("'", '"'))
        (ctx / "Containerfile").write_text("\n".join(lines) + "\n")
        _podman("build", "--quiet", "-t", ref, "-f", str(ctx / "Containerfile"), str(ctx))
        archive = ctx / "image.tar"
        _podman("save", "--quiet", "-o", str(archive), ref)
        cluster._ctr("images", "import", "--no-unpack=false", str(archive))
    if not image_present(cluster, ref):
        raise StackError(f"image {ref} was imported but containerd does not list it")


def pause_ref() -> str:
    return f"localhost/pause:{cluster_bin.PAUSE.version}"


def coredns_ref() -> str:
    return f"localhost/coredns:{cluster_bin.COREDNS.version}"


def dapr_ref() -> str:
    return f"localhost/dapr:{DAPR_VERSION}"


def ensure_node_images(cluster: Cluster, *, progress: bool = True) -> None:
    """The pause and CoreDNS images (built once), before the kubelet starts."""
    cfg = cluster.cfg
    pause = cluster_bin.ensure(cluster_bin.PAUSE, cfg, progress=progress) / "pause"
    build_and_import(cluster, pause_ref(), {"/pause": pause}, entrypoint=["/pause"], progress=progress)
    coredns = cluster_bin.ensure(cluster_bin.COREDNS, cfg, progress=progress) / "coredns"
    build_and_import(
        cluster, coredns_ref(), {"/coredns": coredns}, entrypoint=["/coredns"], progress=progress
    )


def ensure_dapr_image(cluster: Cluster, *, progress: bool = True) -> None:
    """``localhost/dapr:<version>``: the pinned control plane plus the pinned daprd."""
    cfg = cluster.cfg
    cp = cluster_bin.ensure(cluster_bin.DAPR_CP, cfg, progress=progress)
    bins = dapr_bin.ensure(cfg, progress=progress)
    files = {f"/{name}": cp / name for name in cluster_bin.DAPR_CONTROL_PLANE}
    files["/daprd"] = bins.daprd
    files["/scheduler"] = bins.scheduler
    build_and_import(cluster, dapr_ref(), files, user=NONROOT, progress=progress)
    # The chart names one image per service (operator, sentry, ... and daprd for the sidecar),
    # as Dapr publishes them; here they are all the same image under each name.
    present = set(cluster._ctr("images", "ls", "-q", check=False).stdout.split())
    for name in DAPR_IMAGE_NAMES:
        ref = f"localhost/{name}:{DAPR_VERSION}"
        if ref not in present:
            cluster._ctr("images", "tag", dapr_ref(), ref)
