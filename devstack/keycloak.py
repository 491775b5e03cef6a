"""Keycloak (the identity provider of the OAuth tests) from its server distribution on Maven Central.

``org.keycloak:keycloak-quarkus-dist:<version>:tar.gz`` is fetched once with Maven and unpacked
into ``${XDG_CACHE_HOME:-~/.cache}/todo-agent/keycloak/<version>/keycloak-<version>``. It runs
in development mode (``kc.sh start-dev``: plain HTTP, an H2 database) on loopback, with its
database under the stack folder and a bootstrap administrator (``admin``/``admin``) that tests
use to create their realms through the admin REST API. Java 17 or newer runs it.

It is not part of ``python -m devstack up``: it is heavy (a JVM with up to 512 MiB of heap, slow
to start, slower the first time) and only the OAuth tests need it. They start it through
``Keycloak(cfg).up()`` and stop it when they started it; ``python -m devstack keycloak up|down``
does the same by hand.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tarfile
import urllib.request
from pathlib import Path
from typing import Final

from devstack.component import ComponentStatus
from devstack.config import StackConfig
from devstack.errors import StackError
from devstack.procs import ManagedProcess, PidFile, port_open, require_free
from devstack.tools import java, maven

ARTIFACT: Final = "org.keycloak:keycloak-quarkus-dist"
ADMIN_USER: Final = "admin"
ADMIN_PASSWORD: Final = "admin"
START_TIMEOUT: Final = 300.0  # the first start builds ("augments") the server: minutes on 2 cores


def ensure_dist(cfg: StackConfig, *, progress: bool = True) -> Path:
    """The unpacked distribution of ``cfg.keycloak_version``, fetched with Maven when missing."""
    home = cfg.keycloak_home
    marker = home / "bin" / "kc.sh"
    if marker.exists():
        return home
    mvn = maven()
    home.parent.mkdir(parents=True, exist_ok=True)
    log = home.parent / "fetch.log"
    with open(home.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return home
        download = home.parent / "download"
        shutil.rmtree(download, ignore_errors=True)
        if progress:
            print(
                f"[devstack] fetching Keycloak {cfg.keycloak_version} with Maven (once; log {log})",
                flush=True,
            )
        with open(log, "wb") as out:
            rc = subprocess.run(
                [
                    mvn, "-q", "-B", "dependency:copy",
                    f"-Dartifact={ARTIFACT}:{cfg.keycloak_version}:tar.gz",
                    f"-DoutputDirectory={download}",
                ],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False, cwd=home.parent,
            ).returncode  # fmt: skip
        archives = list(download.glob("*.tar.gz"))
        if rc != 0 or not archives:
            raise StackError(f"fetching Keycloak {cfg.keycloak_version} with Maven failed; log {log}")
        unpacked = home.parent / "unpack.tmp"
        shutil.rmtree(unpacked, ignore_errors=True)
        with tarfile.open(archives[0]) as archive:
            archive.extractall(unpacked, filter="data")
        shutil.rmtree(home, ignore_errors=True)
        (unpacked / home.name).rename(home)
        shutil.rmtree(unpacked, ignore_errors=True)
        shutil.rmtree(download, ignore_errors=True)
        os.chmod(marker, 0o755)
    return home


class Keycloak(ManagedProcess):
    name = "keycloak"
    stop_timeout = 30.0

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.data = cfg.state_dir / "keycloak"
        self.db_arg = f"--db-url=jdbc:h2:file:{self.data / 'h2' / 'keycloakdb'};NON_KEYWORDS=VALUE"
        super().__init__(
            PidFile(cfg.run_dir / "keycloak.pid", marker=self.db_arg), cfg.log_dir / "keycloak.log"
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.cfg.keycloak_port}"

    def _healthy(self) -> bool:
        if not port_open(self.cfg.keycloak_port):
            return False
        try:
            with urllib.request.urlopen(f"{self.url}/realms/master", timeout=3) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def _command(self, home: Path) -> list[str]:
        return [
            str(home / "bin" / "kc.sh"), "start-dev",
            "--http-host=127.0.0.1", f"--http-port={self.cfg.keycloak_port}",
            f"--http-management-port={self.cfg.keycloak_management_port}",
            self.db_arg,
        ]  # fmt: skip

    def up(self) -> None:
        """Start Keycloak unless it runs (this stack's, or one already on the port)."""
        if self.running(timeout=START_TIMEOUT):
            return
        home = ensure_dist(self.cfg)
        java()  # a clear message when Java 17+ is missing
        require_free(self.cfg.keycloak_port, "Keycloak", "TODO_STACK_KEYCLOAK_PORT")
        require_free(
            self.cfg.keycloak_management_port,
            "Keycloak's management port",
            "TODO_STACK_KEYCLOAK_MANAGEMENT_PORT",
        )
        self.data.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "KC_BOOTSTRAP_ADMIN_USERNAME": ADMIN_USER,
            "KC_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "JAVA_OPTS_KC_HEAP": "-Xms64m -Xmx512m",
        }
        self.start(self._command(home), env=env, cwd=self.data, timeout=START_TIMEOUT)

    def status(self) -> ComponentStatus:
        pid = self.pidfile.read()
        healthy = self._healthy()
        detail = self.url if pid else ("running, not from this stack folder" if healthy else "not running")
        if not (self.cfg.keycloak_home / "bin" / "kc.sh").exists():
            detail += " (distribution not fetched yet)"
        return ComponentStatus(
            self.name, pid, self.cfg.keycloak_port, self.cfg.keycloak_version, healthy, detail
        )
