"""A private PostgreSQL cluster under the stack folder (Debian's ``postgresql`` package).

``initdb`` refuses to run as root, so as root the cluster belongs to the ``postgres`` OS user
(created when absent) and its commands run through ``runuser``. Auth is ``trust`` on
127.0.0.1 only. After the first start there is a superuser role ``todo`` (password ``todo``)
and a database ``todo``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from devstack.component import ComponentStatus
from devstack.config import StackConfig
from devstack.errors import StackError
from devstack.procs import port_open, require_free, stop_pid, wait_until
from devstack.versions import POSTGRES_MAJOR

PG_USER = "postgres"
INSTALL_HINT = "install it with `apt-get install -y postgresql` (or run scripts/test-prereqs.sh)"


def libpq_url(url: str) -> str:
    """``postgresql+psycopg://...`` → ``postgresql://...`` (what psycopg/libpq accept)."""
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url)


def sqlalchemy_url(url: str) -> str:
    """``postgresql://...`` → ``postgresql+psycopg://...``."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql+psycopg://", url)


def find_bindir() -> Path:
    preferred = Path(f"/usr/lib/postgresql/{POSTGRES_MAJOR}/bin")
    candidates = [preferred] + sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    raise StackError(f"PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL_HINT}")


class Postgres:
    name = "postgres"

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        #: ``<state>/postgres``; a link to a folder under /tmp when, as root, the postgres OS
        #: user cannot reach the stack folder (see :meth:`_place_home`).
        self.link = cfg.state_dir / "postgres"
        #: the link in ``<state>/logs`` to the server log, which lives beside the cluster
        self.log_link = cfg.log_dir / "postgres.log"

    @property
    def home(self) -> Path:
        return self.link.resolve()

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def log(self) -> Path:
        return self.home / "postgres.log"

    # -- helpers ----------------------------------------------------------------------
    @property
    def external(self) -> bool:
        return self.cfg.external_database_url is not None

    def _as_pg_user(self, args: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return args
        return ["runuser", "-u", PG_USER, "--", *args]

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self._as_pg_user(args), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise StackError(
                f"`{' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}; "
                f"log {self.log}"
            )
        return proc

    def _ensure_os_user(self) -> None:
        if os.geteuid() != 0:
            return
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
                check=True,
            )

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            pw = pwd.getpwnam(PG_USER)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _pg_user_can(self, test_flag: str, path: Path) -> bool:
        if os.geteuid() != 0:
            return True
        probe = subprocess.run(self._as_pg_user(["test", test_flag, str(path)]), check=False)
        return probe.returncode == 0

    def _place_home(self) -> None:
        """Create the cluster folder where the postgres OS user can reach it.

        As root the cluster belongs to the postgres user. When a parent of the stack folder is
        private (a checkout under /root, say), the cluster lives in a world-traversable folder
        under the temp dir instead, linked from ``<state>/postgres``.
        """
        self.cfg.state_dir.mkdir(parents=True, exist_ok=True)
        if self.link.is_symlink() or self._pg_user_can("-x", self.cfg.state_dir):
            self.home.mkdir(parents=True, exist_ok=True)
            return
        digest = hashlib.sha1(str(self.cfg.state_dir).encode()).hexdigest()[:10]
        outside = Path(tempfile.gettempdir()) / f"todo-devstack-{digest}"
        outside.mkdir(exist_ok=True)
        outside.chmod(0o755)
        (outside / "postgres").mkdir(exist_ok=True)
        if self.link.exists():  # a cluster its owner can never reach is of no use
            shutil.rmtree(self.link)
        self.link.symlink_to(outside / "postgres")

    def purge(self) -> None:
        """Delete the cluster folder (when it lives outside the stack folder)."""
        if self.link.is_symlink():
            outside = self.home.parent  # <tmp>/todo-devstack-<digest>, made by _place_home
            if outside.name.startswith("todo-devstack-"):
                shutil.rmtree(outside, ignore_errors=True)

    def pid(self) -> int | None:
        """The postmaster's pid from ``postmaster.pid`` when it runs."""
        try:
            first = (self.data / "postmaster.pid").read_text().splitlines()[0]
        except (OSError, IndexError):
            return None
        if not first.strip().isdigit():
            return None
        pid = int(first)
        from devstack.procs import pid_alive

        return pid if pid_alive(pid) else None

    def _healthy(self, url: str) -> bool:
        import psycopg

        try:
            with psycopg.connect(libpq_url(url), connect_timeout=2) as conn:
                conn.execute("select 1")
            return True
        except psycopg.Error:
            return False

    def admin_url(self) -> str:
        """A superuser URL (libpq form) for creating databases."""
        if self.cfg.external_database_url:
            return libpq_url(self.cfg.external_database_url)
        return f"postgresql://todo:todo@127.0.0.1:{self.cfg.pg_port}/todo"

    # -- lifecycle --------------------------------------------------------------------
    def up(self) -> None:
        if self.external:
            if not self._healthy(self.admin_url()):
                raise StackError(
                    "TODO_TEST_DATABASE_URL is set but that PostgreSQL does not answer: "
                    "fix the URL or unset it to let the stack start its own"
                )
            return
        if self.pid() is not None:
            wait_until(
                lambda: self._healthy(self.admin_url()) or self._healthy(self._root_url()),
                what="postgres",
                timeout=30,
                log_path=self.log,
            )
            self._bootstrap_roles()
            return
        if port_open(self.cfg.pg_port) and self._healthy(self.admin_url()):
            return  # another stack folder's cluster (same ports): reuse it, never stop it
        bindir = find_bindir()
        require_free(self.cfg.pg_port, "PostgreSQL", "TODO_STACK_PG_PORT")
        self._ensure_os_user()
        self._place_home()
        self._chown(self.home)
        self.log.touch()
        self._chown(self.log)
        self.cfg.log_dir.mkdir(parents=True, exist_ok=True)
        if not self.log_link.is_symlink():
            self.log_link.unlink(missing_ok=True)
            self.log_link.symlink_to(self.log)
        if not self._pg_user_can("-w", self.home):
            raise StackError(
                f"the {PG_USER} OS user cannot write {self.home}: set TODO_STACK_DIR to a folder it can reach"
            )
        if not (self.data / "PG_VERSION").exists():
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(self.data)
            self._run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    PG_USER,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-instructions",
                ]
            )
            with open(self.data / "postgresql.conf", "a") as conf:
                conf.write(
                    "\n# devstack: loopback only, fast and disposable\n"
                    "listen_addresses = '127.0.0.1'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "max_connections = 200\n"
                )
        listen = "127.0.0.1" if self.cfg.listen_host == "127.0.0.1" else f"127.0.0.1,{self.cfg.listen_host}"
        if listen != "127.0.0.1":
            self._allow_password_clients()
        opts = f"-p {self.cfg.pg_port} -k {self.home} -c listen_addresses={listen}"
        self._run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-o",
                opts,
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        wait_until(lambda: self._healthy(self._root_url()), what="postgres", timeout=30, log_path=self.log)
        self._bootstrap_roles()

    def _allow_password_clients(self) -> None:
        """Let clients on this machine's networks in with a password (``TODO_STACK_LISTEN_HOST``)."""
        hba = self.data / "pg_hba.conf"
        line = "host all all samenet scram-sha-256\n"
        if line not in hba.read_text():
            with open(hba, "a") as f:
                f.write("# devstack: clients of TODO_STACK_LISTEN_HOST (the local cluster's pods)\n" + line)

    def _root_url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.cfg.pg_port}/postgres"

    def _bootstrap_roles(self) -> None:
        import psycopg

        if self._healthy(self.admin_url()):
            return
        with psycopg.connect(self._root_url(), autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_roles where rolname = 'todo'").fetchone()
            if not exists:
                conn.execute("create role todo with login superuser password 'todo'")
            db = conn.execute("select 1 from pg_database where datname = 'todo'").fetchone()
            if not db:
                conn.execute("create database todo owner todo")

    def down(self) -> None:
        if self.external:
            return
        pid = self.pid()
        if pid is None:
            return
        try:
            self._run(
                [str(find_bindir() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop"]
            )
        except StackError:
            pass
        import signal

        stop_pid(pid, sig=signal.SIGINT, timeout=15)

    def version(self) -> str | None:
        try:
            out = subprocess.run(
                [str(find_bindir() / "postgres"), "--version"], capture_output=True, text=True, check=False
            ).stdout
        except (StackError, OSError):
            return None
        m = re.search(r"(\d+(?:\.\d+)*)", out)
        return m.group(1) if m else None

    def status(self) -> ComponentStatus:
        if self.external:
            healthy = self._healthy(self.admin_url())
            return ComponentStatus(
                self.name, None, None, None, healthy, "external (TODO_TEST_DATABASE_URL)", external=True
            )
        pid = self.pid()
        healthy = port_open(self.cfg.pg_port) and self._healthy(self.admin_url())
        if pid:
            detail = f"{self.admin_url()} data={self.data}"
        else:
            detail = "running, not from this stack folder" if healthy else "not running"
        return ComponentStatus(self.name, pid, self.cfg.pg_port, self.version(), healthy, detail)
