"""The verifier remembers tokens that verified, until their own expiry and never for long."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from auth import tokens as auth
from auth.tokens import InvalidToken, JwtVerifier

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens whose signature was actually checked, in order."""
    seen: list[str] = []
    real: Callable[..., Any] = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)  # the module auth.tokens calls
    return seen


def test_a_verified_token_is_checked_once_while_it_is_remembered(decodes: list[str]) -> None:
    verifier = JwtVerifier(secret=SECRET)
    token = verifier.issue("alice", ttl=600, zoneinfo="Europe/Berlin")

    first, second = verifier.verify(token), verifier.verify(token)

    assert first == second
    assert (second.user_id, second.timezone) == ("alice", "Europe/Berlin")
    assert decodes == [token]


def test_a_remembered_token_past_its_exp_is_refused() -> None:
    verifier = JwtVerifier(secret=SECRET, leeway=0)
    token = verifier.issue("alice", ttl=1)
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert verifier.verify(token).user_id == "alice"

    time.sleep(max(0.0, expires - time.time()) + 0.05)

    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)


def test_a_token_is_remembered_no_longer_than_the_cache_ttl(decodes: list[str]) -> None:
    verifier = JwtVerifier(secret=SECRET, cache_ttl=0.05)
    token = verifier.issue("alice", ttl=600)
    verifier.verify(token)

    time.sleep(0.1)
    verifier.verify(token)

    assert decodes == [token, token]


def test_a_different_token_string_is_verified_afresh(decodes: list[str]) -> None:
    verifier = JwtVerifier(secret=SECRET)
    token = verifier.issue("alice", ttl=600)
    verifier.verify(token)
    header, payload, _signature = token.split(".")
    forged = f"{header}.{payload}.{'A' * 43}"

    with pytest.raises(InvalidToken):
        verifier.verify(forged)
    another = verifier.issue("alice", ttl=900)
    assert verifier.verify(another).claims["exp"] != verifier.verify(token).claims["exp"]
    assert decodes == [token, forged, another]


def test_tokens_of_two_users_never_mix() -> None:
    verifier = JwtVerifier(secret=SECRET)
    alice = verifier.issue("alice", ttl=600, zoneinfo="Europe/Berlin")
    bob = verifier.issue("bob", ttl=600, zoneinfo="America/New_York")

    for _ in range(3):
        assert (verifier.verify(alice).user_id, verifier.verify(alice).timezone) == ("alice", "Europe/Berlin")
        assert (verifier.verify(bob).user_id, verifier.verify(bob).timezone) == ("bob", "America/New_York")


def test_a_refused_token_is_never_remembered(decodes: list[str]) -> None:
    verifier = JwtVerifier(secret=SECRET)
    other = JwtVerifier(secret=SECRET, audience="someone-else").issue("alice", ttl=600)

    for _ in range(2):
        with pytest.raises(InvalidToken, match="not meant for this service"):
            verifier.verify(other)

    assert len(verifier.verified) == 0
    assert decodes == [other, other]


def test_the_least_recently_used_token_is_forgotten_first(decodes: list[str]) -> None:
    verifier = JwtVerifier(secret=SECRET, cache_size=2)
    a, b, c = (verifier.issue(user, ttl=600) for user in ("a", "b", "c"))
    verifier.verify(a)
    verifier.verify(b)
    verifier.verify(a)  # a is now the most recently used
    verifier.verify(c)  # forgets b

    verifier.verify(a)
    verifier.verify(b)

    assert len(verifier.verified) == 2
    assert decodes == [a, b, c, b]


def test_changing_a_returned_identity_does_not_change_the_remembered_one() -> None:
    verifier = JwtVerifier(secret=SECRET)
    token = verifier.issue("alice", ttl=600)
    verifier.verify(token).claims["sub"] = "mallory"

    assert verifier.verify(token).claims["sub"] == "alice"


async def test_the_mcp_hook_answers_from_the_remembered_tokens(decodes: list[str]) -> None:
    verifier = JwtVerifier(secret=SECRET)
    token = verifier.issue("alice", ttl=600)

    first, second = await verifier.verify_token(token), await verifier.verify_token(token)

    assert first is not None and second is not None
    assert (second.subject, second.client_id, second.expires_at) == ("alice", "alice", first.expires_at)
    assert await verifier.verify_token(token + "x") is None
    assert decodes == [token, token + "x"]


async def test_the_scopes_a_token_grants_reach_its_identity_and_the_mcp_access_token() -> None:
    verifier = JwtVerifier(secret=SECRET)
    spaced = verifier.issue("alice", ttl=600, scope="tasks:read tasks:write")
    listed = verifier.issue("bob", ttl=600, scp=["tasks:read", 7])
    plain = verifier.issue("carol", ttl=600)

    assert verifier.verify(spaced).scopes == {"tasks:read", "tasks:write"}
    assert verifier.verify(listed).scopes == {"tasks:read"}  # what is not text is no scope
    assert verifier.verify(plain).scopes == frozenset()
    access = await verifier.verify_token(spaced)
    assert access is not None and access.scopes == ["tasks:read", "tasks:write"]
    assert auth.identity_of(access).scopes == {"tasks:read", "tasks:write"}
