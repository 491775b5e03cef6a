"""Helpers for the cluster tests: the deployed system seen from outside the cluster."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import websockets
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from devstack.cluster import Cluster
from devstack.cluster_app import API_NODE_PORT, NAMESPACE
from tests.websocket_tab import Tab


@dataclass
class Deployed:
    """todo-agent on the local cluster: kubectl, the api's NodePort, the stand-in database."""

    cluster: Cluster
    database_url: str
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def api_url(self) -> str:
        return f"http://{self.cluster.ip}:{API_NODE_PORT}"

    def kubectl(self, *args: str, **kw: Any) -> str:
        return self.cluster.kubectl("-n", NAMESPACE, *args, **kw)

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def secret(self, name: str, key: str) -> str:
        data = self.json("get", "secret", name)["data"]
        return base64.b64decode(data[key]).decode()

    def token(self, user: str) -> str:
        now = int(time.time())
        claims = {"sub": user, "aud": "todo-agent", "iat": now, "exp": now + 3600}
        return jwt.encode(claims, self.secret("todo-secrets", "jwt-secret"), algorithm="HS256")

    def http(self, user: str, base_url: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.token(user)}"}
        return httpx.AsyncClient(base_url=base_url or self.api_url, headers=headers, timeout=30)

    def ws_url(self, user: str, base_url: str | None = None) -> str:
        return (base_url or self.api_url).replace("http://", "ws://") + f"/ws?token={self.token(user)}"

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(self.database_url.replace("postgresql://", "postgresql+psycopg://"))
        return self._engine

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params))

    def pods(self, app: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.json("get", "pods", "-l", f"app.kubernetes.io/name={app}")["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def ready_pods(self, app: str) -> list[dict[str, Any]]:
        return [p for p in self.pods(app) if is_ready(p)]

    @contextlib.contextmanager
    def forwarded(self, pod: str, port: int = 8000) -> Iterator[str]:
        """``http://127.0.0.1:<local port>`` reaching ``pod`` itself (``kubectl port-forward``), as
        an operator reaches one replica: a loopback Host header, which the api's edge accepts."""
        process = subprocess.Popen(
            [self.cluster.bin("kubectl"), "--kubeconfig", str(self.cluster.kubeconfig), "-n", NAMESPACE,
             "port-forward", f"pod/{pod}", f":{port}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            assert process.stdout is not None
            line = process.stdout.readline()  # "Forwarding from 127.0.0.1:PORT -> 8000"
            found = re.search(r"127\.0\.0\.1:(\d+)", line)
            if found is None:
                raise AssertionError(
                    f"kubectl port-forward to {pod} failed: {line}{process.stdout.read(2000)}"
                )
            yield f"http://127.0.0.1:{found.group(1)}"
        finally:
            process.terminate()
            process.wait(timeout=10)

    def sidecar_get(self, app: str, path: str) -> Any:
        """GET ``path`` on the daprd sidecar of ``app``'s first pod, from inside the app container
        (the Dapr API is only on the pod's loopback), with the app's Dapr API token."""
        pod = self.ready_pods(app)[0]["metadata"]["name"]
        script = (
            "import os,urllib.request;"
            f"r=urllib.request.Request('http://127.0.0.1:3500{path}',"
            "headers={'dapr-api-token':os.environ['DAPR_API_TOKEN']});"
            "print(urllib.request.urlopen(r,timeout=10).read().decode())"
        )
        return json.loads(self.kubectl("exec", pod, "-c", "app", "--", "python", "-c", script))


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


async def eventually(predicate: Callable[[], bool], what: str, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out after {limit}s waiting for {what}")


@contextlib.asynccontextmanager
async def tab(url: str) -> AsyncIterator[Tab]:
    async with websockets.connect(url) as ws:
        client = Tab(ws)
        await eventually(lambda: bool(client.messages), "the hello message", limit=15)
        assert client.messages[0]["type"] == "hello"
        yield client
