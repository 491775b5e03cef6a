"""Per-user settings (time zone, email, webhook) and who an acting user is.

The zone a user's words are read in comes from, in order: the token's ``zoneinfo`` claim, the
user's saved setting, the deployment default (``TODO_TIMEZONE``), the machine's zone.

The saved zone is remembered for ``zone_ttl`` seconds (default 5) per user, so a request does not
pay a database transaction just to learn it; ``update`` in this process forgets it at once, and a
change made by another replica is seen within ``zone_ttl``.
"""

from __future__ import annotations

import time
from typing import Annotated

from pydantic import BaseModel, Field

from tasks.clock import utc_now, zone
from tasks.errors import InvalidInput
from tasks.inputs import MAX_EMAIL, MAX_TIMEZONE, Text
from tasks.models import UserSettings
from tasks.service import Actor
from tasks.unit_of_work import UnitOfWorkFactory
from tasks.webhooks import MAX_URL, WebhookPolicy


class Profile(BaseModel):
    user_id: str
    timezone: str | None = Field(default=None, description="IANA zone, e.g. Europe/Berlin")
    email: str | None = None
    webhook_url: str | None = None


class ProfileChanges(BaseModel):
    timezone: Annotated[Text, Field(max_length=MAX_TIMEZONE)] | None = None
    email: Annotated[Text, Field(max_length=MAX_EMAIL)] | None = None
    webhook_url: (
        Annotated[
            Text,
            Field(
                max_length=MAX_URL,
                description="http(s) URL that gets each reminder as a JSON POST; it must reach a public "
                "address unless the server allows more (TODO_WEBHOOK_ALLOWED_NETWORKS).",
            ),
        ]
        | None
    ) = None


class Profiles:
    def __init__(
        self, uow_factory: UnitOfWorkFactory, *, default_timezone: str, zone_ttl: float = 5.0,
        webhooks: WebhookPolicy | None = None,
    ) -> None:  # fmt: skip
        self._uow = uow_factory
        self.webhooks = webhooks or WebhookPolicy()
        self.default_timezone = default_timezone
        self._zone_ttl = zone_ttl
        self._zones: dict[str, tuple[float, str | None]] = {}  # user -> (expires, saved zone)

    def get(self, user_id: str) -> Profile:
        with self._uow(read_only=True) as uow:
            row = uow.session.get(UserSettings, user_id)
            if row is None:
                return Profile(user_id=user_id)
            return Profile(
                user_id=user_id, timezone=row.timezone, email=row.email, webhook_url=row.webhook_url
            )

    def update(self, user_id: str, changes: ProfileChanges) -> Profile:
        given = changes.model_fields_set
        if "timezone" in given and changes.timezone:
            zone(changes.timezone)
        if "email" in given and changes.email:
            _check_email(changes.email)
        if "webhook_url" in given and changes.webhook_url:
            self.webhooks.resolve(changes.webhook_url)  # refused: not http(s), or not public
        with self._uow() as uow:
            row = uow.session.get(UserSettings, user_id) or UserSettings(user_id=user_id)
            for name in given:
                setattr(row, name, getattr(changes, name) or None)
            row.updated_at = utc_now()
            uow.session.add(row)
            uow.commit()
        self._zones.pop(user_id, None)
        return self.get(user_id)

    def actor(self, user_id: str, *, token_zone: str | None = None) -> Actor:
        """The acting user with the zone their words are read in."""
        if token_zone:
            try:
                zone(token_zone)
                return Actor(user_id=user_id, timezone=token_zone)
            except InvalidInput:
                pass
        return Actor(user_id=user_id, timezone=self._saved_zone(user_id) or self.default_timezone)

    def _saved_zone(self, user_id: str) -> str | None:
        now = time.monotonic()
        cached = self._zones.get(user_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        saved = self.get(user_id).timezone
        if len(self._zones) > 10_000:  # many users: start over rather than grow without bound
            self._zones.clear()
        self._zones[user_id] = (now + self._zone_ttl, saved)
        return saved


def _check_email(email: str) -> None:
    local, at, domain = email.partition("@")
    if not (at and local and domain) or any(ch.isspace() or ord(ch) < 32 for ch in email):
        raise InvalidInput("email", f"'{email[:80]}' is not an email address; e.g. alice@example.com.")
