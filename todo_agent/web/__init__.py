"""The web app: one HTML page and its static assets (plain CSS and ES modules, no build step).

Served by the ``api`` role (and ``all``, the embedded default) at ``/`` with assets under
``/static/``. The page talks to the REST task API, the chat stream and the ``/ws`` hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR: Final = Path(__file__).parent / "static"
_NO_CACHE: Final = {"Cache-Control": "no-cache"}


class _RevalidatedStaticFiles(StaticFiles):
    """Static files that browsers revalidate (ETag) so a new release is picked up at once."""

    def file_response(self, *args: Any, **kwargs: Any) -> Any:
        response = super().file_response(*args, **kwargs)
        response.headers.update(_NO_CACHE)
        return response


def serve_web_app(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=_NO_CACHE)

    app.mount("/static", _RevalidatedStaticFiles(directory=STATIC_DIR), name="static")
