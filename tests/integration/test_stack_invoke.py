"""Service invocation through daprd reaches the other app, with API tokens enforced:
``APP_API_TOKEN`` (daprd -> app, header ``dapr-api-token``) and ``DAPR_API_TOKEN``
(caller -> daprd)."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request

pytestmark = pytest.mark.integration


def _callee(app_token: str) -> FastAPI:
    app = FastAPI()

    @app.post("/tasks/echo")
    async def echo(request: Request) -> dict[str, Any]:
        if request.headers.get("dapr-api-token") != app_token:
            raise HTTPException(status_code=401, detail="missing or wrong dapr-api-token")
        return {"echo": await request.json(), "caller": request.headers.get("dapr-caller-app-id")}

    return app


async def test_invocation_reaches_the_other_app_with_tokens_enforced(
    sidecar_factory: Any, app_server_factory: Any, session_id: str
) -> None:
    app_token, dapr_token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    callee_id, caller_id = f"stack-callee-{session_id}", f"stack-caller-{session_id}"
    server = app_server_factory(_callee(app_token))
    sidecar_factory(callee_id, server.port, app_api_token=app_token, wait_for="app")
    caller = sidecar_factory(caller_id, dapr_api_token=dapr_token)

    async with httpx.AsyncClient(timeout=30) as client:
        # The app itself refuses calls that do not come through its daprd.
        direct = await client.post(f"{server.url}/tasks/echo", json={"n": 1})
        assert direct.status_code == 401

        url = f"{caller.http_url}/v1.0/invoke/{callee_id}/method/tasks/echo"
        # The caller's daprd refuses requests without its API token ...
        refused = await client.post(url, json={"n": 1})
        assert refused.status_code == 401, refused.text
        # ... and with it, the call reaches the other app, which sees daprd's app token.
        resp = await client.post(url, json={"n": 1}, headers={"dapr-api-token": dapr_token})
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"echo": {"n": 1}, "caller": caller_id}
