"""Bearer-token verification (JWT: HS256 secret or JWKS; audience and issuer checked).

verifier = JwtVerifier(secret="...", audience="todo-agent")
identity = verifier.verify(token)          # raises InvalidToken with a reason
token = verifier.issue("alice", ttl=300)   # HS256 only: tests and short-lived agent tokens

One rule on every surface (REST, chat, ``/ws``, ``/mcp``): a token is good until its ``exp``, to
the second; ``leeway`` (clock skew) only excuses an ``iat`` or ``nbf`` slightly in the future.

A token that verified is remembered (up to ``cache_size`` tokens, by the full token string)
until its own ``exp`` and for at most ``cache_ttl`` seconds, so a client sending the same token
on every request pays for the signature check about once a minute. Refused tokens are never
remembered.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import jwt
from mcp.server.auth.provider import AccessToken
from starlette.requests import HTTPConnection as Request

#: User ids are stored in columns of 200 characters.
MAX_SUBJECT: Final = 200
_ALGORITHMS: Final = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]


class InvalidToken(Exception):
    """The token cannot be trusted; the message says why (safe to show to the caller)."""


@dataclass(frozen=True)
class Identity:
    user_id: str
    timezone: str | None = None
    claims: dict[str, Any] = field(default_factory=dict)


class VerifiedTokens:
    """A bounded LRU of tokens that verified: token -> identity, each until its own ``exp``
    and never for longer than ``max_age`` seconds after it was verified."""

    def __init__(self, *, size: int, max_age: float) -> None:
        self._size = size
        self._max_age = max_age
        self._entries: OrderedDict[str, tuple[float, Identity]] = OrderedDict()
        self._lock = threading.Lock()  # verify runs on the loop and in worker threads

    def get(self, token: str) -> Identity | None:
        with self._lock:
            entry = self._entries.get(token)
            if entry is None:
                return None
            if entry[0] <= time.time():
                del self._entries[token]
                return None
            self._entries.move_to_end(token)
        known = entry[1]  # a copy of the claims: a caller changing its own cannot reach the cache
        return Identity(known.user_id, known.timezone, dict(known.claims))

    def put(self, token: str, identity: Identity) -> None:
        try:
            expires = float(identity.claims["exp"])
        except (KeyError, TypeError, ValueError):
            return
        now = time.time()
        until = min(expires, now + self._max_age)
        if self._size <= 0 or until <= now:
            return
        with self._lock:
            self._entries[token] = (
                until,
                Identity(identity.user_id, identity.timezone, dict(identity.claims)),
            )
            self._entries.move_to_end(token)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class JwtVerifier:
    """Verifies JWTs and doubles as the MCP SDK's ``TokenVerifier``."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        jwks_url: str | None = None,
        audience: str = "todo-agent",
        issuer: str | None = None,
        leeway: int = 30,
        cache_size: int = 1024,
        cache_ttl: float = 60.0,
    ) -> None:
        if not secret and not jwks_url:
            raise ValueError("JwtVerifier needs a secret (HS256) or a JWKS URL.")
        self._secret = secret
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=600) if jwks_url else None
        self.audience = audience
        self.issuer = issuer
        self._leeway = leeway
        self.verified = VerifiedTokens(size=cache_size, max_age=cache_ttl)

    def verify(self, token: str) -> Identity:
        """The identity ``token`` stands for; raises ``InvalidToken`` with a reason."""
        return self.verified.get(token) or self._verify_afresh(token)

    async def verify_async(self, token: str) -> Identity:
        """``verify`` without blocking the loop: a JWKS key set may be fetched in a thread."""
        identity = self.verified.get(token)
        if identity is None and self._jwks is None:
            identity = self._verify_afresh(token)  # HS256: tens of microseconds, no I/O
        elif identity is None:  # may fetch the key set over the network
            identity = await anyio.to_thread.run_sync(self._verify_afresh, token)
        return identity

    def _verify_afresh(self, token: str) -> Identity:
        identity = self._decode(token)
        self.verified.put(token, identity)
        return identity

    def _decode(self, token: str) -> Identity:
        try:
            if self._jwks is not None:
                key: Any = self._jwks.get_signing_key_from_jwt(token).key
                algorithms = _ALGORITHMS
            else:
                key, algorithms = self._secret, ["HS256"]
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self._leeway,
                options={"require": ["exp", "sub", "aud"], "verify_exp": False},
            )
            _refuse_expired(claims)
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("The token has expired; sign in again.") from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidToken(
                f"The token is not meant for this service (audience '{self.audience}')."
            ) from exc
        except jwt.InvalidIssuerError as exc:
            raise InvalidToken("The token was issued by an issuer this service does not trust.") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"The token is not valid: {exc}.") from exc
        subject = str(claims.get("sub", "")).strip()
        if not subject:
            raise InvalidToken("The token names no user (empty 'sub').")
        if len(subject) > MAX_SUBJECT or not subject.isprintable():
            raise InvalidToken(
                f"The token's 'sub' must be printable text of at most {MAX_SUBJECT} characters."
            )
        zone = claims.get("zoneinfo")
        return Identity(user_id=subject, timezone=zone if isinstance(zone, str) else None, claims=claims)

    def issue(self, user_id: str, *, ttl: int = 300, zoneinfo: str | None = None, **extra: Any) -> str:
        """Sign a short-lived HS256 token for ``user_id`` (only with a shared secret)."""
        if not self._secret:
            raise RuntimeError("Tokens can only be issued with TODO_JWT_SECRET (HS256).")
        now = int(time.time())
        claims: dict[str, Any] = {"sub": user_id, "aud": self.audience, "iat": now, "exp": now + ttl}
        if self.issuer:
            claims["iss"] = self.issuer
        if zoneinfo:
            claims["zoneinfo"] = zoneinfo
        claims.update(extra)
        return jwt.encode(claims, self._secret, algorithm="HS256")

    async def verify_token(self, token: str) -> AccessToken | None:
        """MCP SDK hook: ``None`` makes the transport answer 401."""
        try:
            identity = await self.verify_async(token)
        except InvalidToken:
            return None
        return AccessToken(
            token=token,
            client_id=identity.user_id,
            scopes=[],
            expires_at=identity.claims.get("exp"),
            subject=identity.user_id,
            claims=identity.claims,
        )


def _refuse_expired(claims: dict[str, Any]) -> None:
    """``exp`` without leeway (PyJWT's leeway would stretch it as well as ``iat``/``nbf``)."""
    try:
        expires = float(claims["exp"])
    except (TypeError, ValueError) as exc:
        raise jwt.DecodeError("the 'exp' claim is not a number") from exc
    if not math.isfinite(expires):
        raise jwt.DecodeError("the 'exp' claim is not a number")
    if expires <= time.time():
        raise jwt.ExpiredSignatureError("Signature has expired")


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if there is one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def identity_of(access: AccessToken) -> Identity:
    claims = access.claims or {}
    zone = claims.get("zoneinfo")
    return Identity(
        user_id=access.subject or access.client_id,
        timezone=zone if isinstance(zone, str) else None,
        claims=claims,
    )
