"""Who is calling an HTTP request or WebSocket: the FastAPI side of sign-in, the same on every
surface (REST, chat, ``/ws``; ``/mcp`` reaches the same verifier through the MCP SDK).

    identity = identify(verifier, token)        # None: sign-in is off; raises InvalidToken
    identity = request_identity(request, verifier)   # in a dependency; raises HTTP 401
    dependency = identity_dependency(verifier)       # Depends(dependency) -> Identity | None

``None`` means sign-in is off (no verifier): the caller is whoever the app acts for without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from fastapi import HTTPException, Request, status
from starlette.requests import HTTPConnection

from auth.tokens import Identity, InvalidToken, JwtVerifier

#: The challenge a 401 carries (RFC 6750).
CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="todo-agent"'}
SIGN_IN: Final = "Sign in: this server needs 'Authorization: Bearer <token>'."


def bearer_token(connection: HTTPConnection) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if there is one."""
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def identify(verifier: JwtVerifier | None, token: str | None) -> Identity | None:
    """The identity ``token`` stands for; ``None`` without sign-in. Raises ``InvalidToken``
    (a message safe to show) for a missing or bad token when sign-in is on."""
    if verifier is None:
        return None
    if not token:
        raise InvalidToken(SIGN_IN)
    return verifier.verify(token)


def request_identity(request: HTTPConnection, verifier: JwtVerifier | None) -> Identity | None:
    """The caller of ``request``: the identity the edge guard verified before the body was read
    (``request.state.identity``), else its bearer token's; ``None`` without sign-in. A missing
    or bad token is an ``HTTPException`` 401 with the reason and the Bearer challenge."""
    verified = getattr(request.state, "identity", None)
    if isinstance(verified, Identity):
        return verified
    try:
        return identify(verifier, bearer_token(request))
    except InvalidToken as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=str(exc), headers=CHALLENGE) from exc


def identity_dependency(verifier: JwtVerifier | None) -> Callable[[Request], Identity | None]:
    """A FastAPI dependency: the request's identity (``request_identity``) under ``verifier``."""

    def acting_identity(request: Request) -> Identity | None:
        return request_identity(request, verifier)

    return acting_identity
