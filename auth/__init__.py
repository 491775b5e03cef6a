"""Identity: who a caller is, from a verified bearer token (a leaf: it imports none of the parts).

- ``auth.tokens``: ``JwtVerifier`` (HS256 or JWKS, audience, issuer, ``exp``; also the MCP SDK's
  token verifier), ``Identity`` (user, zone, scopes, claims), ``InvalidToken``.
- ``auth.requests``: the FastAPI side, used by REST, chat and the WebSocket hub alike:
  ``bearer_token``, ``identify``, ``request_identity``, ``identity_dependency``.

The composition root turns an identity into the acting user (``tasks.service.Actor``).
"""

from auth.requests import bearer_token, identify, identity_dependency, request_identity
from auth.tokens import Identity, InvalidToken, JwtVerifier, identity_of

__all__ = [
    "Identity",
    "InvalidToken",
    "JwtVerifier",
    "bearer_token",
    "identify",
    "identity_dependency",
    "identity_of",
    "request_identity",
]
