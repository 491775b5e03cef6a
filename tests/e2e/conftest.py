"""Browser tests: the real ``todo-agent run`` server in a subprocess, driven through Debian's Chromium.

Each server gets a free port and a temporary SQLite database and is stopped by its pid. Chromium
comes from the ``chromium`` Debian package (``playwright install`` cannot download browsers here);
it is installed on first use when missing and we run as root.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from auth.tokens import JwtVerifier

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling home, which floods a closed network.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SERVER_ZONE = "Europe/Berlin"
JWT_SECRET = "e2e-test-secret-that-is-long-enough-for-hs256"
_ENV_TO_DROP = (
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "DAPR_HTTP_PORT", "DAPR_GRPC_PORT", "TODO_DATABASE_URL",
    "TODO_JWT_SECRET", "TODO_JWKS_URL", "TODO_JWT_ISSUER", "TODO_MODEL", "TODO_ENVIRONMENT",
)  # fmt: skip


def _ensure_chromium() -> None:
    if CHROMIUM.exists():
        return
    how = "apt-get install -y --no-install-recommends chromium (or run scripts/test-prereqs.sh)"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(f"{CHROMIUM} is missing and cannot be installed from here; as root run: {how}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        result = subprocess.run(install, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            pytest.fail(f"installing chromium failed ({how}):\n{result.stderr[-2000:]}")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is still missing after installing the package; {how}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """One ``todo-agent run`` process; ``restart()`` keeps its port and database."""

    data_dir: Path
    port: int
    secret: str | None = None
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self, user: str) -> str:
        assert self.secret, "this server runs without authentication"
        return JwtVerifier(secret=self.secret).issue(user, ttl=3600)

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in _ENV_TO_DROP}
        env.update(
            TODO_DATA_DIR=str(self.data_dir),
            TODO_DATABASE_URL=f"sqlite:///{self.data_dir / 'todo.db'}",
            TODO_TIMEZONE=SERVER_ZONE,
            TODO_LOG_LEVEL="WARNING",
        )
        if self.secret:
            env["TODO_JWT_SECRET"] = self.secret
        command = [sys.executable, "-m", "todo_agent.cli", "run", "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self._wait_until_ready()

    def _wait_until_ready(self, timeout: float = 45.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"todo-agent run exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        pytest.fail(f"todo-agent run did not become ready in {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def api(self, method: str, path: str, *, user: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(user)}"} if user else {}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=10, **kwargs)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(*, secret: str | None = None) -> Server:
        data_dir = tmp_path / f"server-{len(servers)}"
        data_dir.mkdir()
        server = Server(data_dir=data_dir, port=_free_port(), secret=secret)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(start_server: Callable[..., Server]) -> Server:
    """The embedded default: no sign-in, one local user."""
    return start_server()


@pytest.fixture
def auth_server(start_server: Callable[..., Server]) -> Server:
    """Token mode: every call needs a JWT signed with ``JWT_SECRET``."""
    return start_server(secret=JWT_SECRET)


@pytest.fixture(scope="module")  # a running Playwright keeps an event loop in this thread
def browser() -> Iterator[Any]:
    _ensure_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright (Python) is missing: .venv/bin/pip install -e '.[dev]'")
    from playwright.sync_api import expect

    expect.set_options(timeout=10_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """Open the app in a fresh browser context (its own storage: another tab, device or user)."""
    contexts: list[Any] = []

    def open_page(
        url: str, *, width: int = 1366, height: int = 860, scheme: str = "light", init_script: str = ""
    ) -> Any:
        context = browser.new_context(
            viewport={"width": width, "height": height},
            timezone_id=SERVER_ZONE,
            locale="en-GB",
            color_scheme=scheme,
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        if init_script:
            context.add_init_script(init_script)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.page_errors = errors
        page.goto(url)
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
