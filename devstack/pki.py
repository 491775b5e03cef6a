"""The local cluster's certificate authority and certificates, made with the ``openssl`` CLI.

One CA signs every certificate (API server serving, the clients of each control-plane
component, the kubelet); the service-account signing key is a separate RSA pair. Files are
made once and kept: ``cluster up`` after ``down`` reuses them, ``down --purge`` deletes them.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import StackError

DAYS = "3650"


@dataclass(frozen=True)
class Leaf:
    """One certificate signed by the cluster CA: its file stem, subject and uses."""

    name: str
    cn: str
    org: str | None = None
    sans: tuple[str, ...] = ()
    server: bool = False


def _openssl(*args: str, cwd: Path) -> None:
    exe = shutil.which("openssl")
    if not exe:
        raise StackError("openssl is needed to make the cluster's certificates: apt-get install -y openssl")
    out = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise StackError(f"openssl {args[0]} failed: {out.stderr.strip()}")


def ensure_ca(pki: Path) -> None:
    """``ca.crt``/``ca.key`` and the service-account key pair ``sa.key``/``sa.pub``."""
    pki.mkdir(parents=True, exist_ok=True)
    if not (pki / "ca.crt").is_file():
        _openssl("genrsa", "-out", "ca.key", "2048", cwd=pki)
        _openssl(
            "req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", DAYS,
            "-subj", "/CN=todo-agent-devstack-ca",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            "-out", "ca.crt", cwd=pki,
        )  # fmt: skip
    if not (pki / "sa.key").is_file():
        _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
        _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def ensure_leaf(pki: Path, leaf: Leaf) -> None:
    """``<name>.crt``/``<name>.key`` signed by the CA (kept when already there)."""
    if (pki / f"{leaf.name}.crt").is_file():
        return
    subject = f"/CN={leaf.cn}" + (f"/O={leaf.org}" if leaf.org else "")
    ext = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={'serverAuth,clientAuth' if leaf.server else 'clientAuth'}",
    ]
    if leaf.sans:
        ext.append("subjectAltName=" + ",".join(leaf.sans))
    (pki / f"{leaf.name}.ext").write_text("\n".join(ext) + "\n")
    _openssl("genrsa", "-out", f"{leaf.name}.key", "2048", cwd=pki)
    _openssl("req", "-new", "-key", f"{leaf.name}.key", "-subj", subject, "-out", f"{leaf.name}.csr", cwd=pki)
    _openssl(
        "x509", "-req", "-in", f"{leaf.name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", DAYS, "-sha256", "-extfile", f"{leaf.name}.ext",
        "-out", f"{leaf.name}.crt", cwd=pki,
    )  # fmt: skip


def kubeconfig(path: Path, *, server: str, pki: Path, user: str) -> None:
    """A kubeconfig for ``server`` that authenticates with ``<user>.crt``/``<user>.key`` (the file
    is left untouched when it already says this)."""
    text = f"""apiVersion: v1
kind: Config
clusters:
- name: devstack
  cluster:
    server: {server}
    certificate-authority: {pki / "ca.crt"}
users:
- name: {user}
  user:
    client-certificate: {pki / f"{user}.crt"}
    client-key: {pki / f"{user}.key"}
contexts:
- name: devstack
  context: {{cluster: devstack, user: {user}}}
current-context: devstack
"""
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
