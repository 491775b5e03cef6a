"""The acting user's saved time zone: read once per ``zone_ttl``, forgotten when changed."""

from __future__ import annotations

from sqlmodel import Session

from tasks.models import UserSettings
from tasks.profiles import ProfileChanges, Profiles
from tasks.service import TaskService
from tasks.unit_of_work import UnitOfWorkFactory


def test_the_saved_zone_is_remembered_briefly_and_forgotten_on_update(
    sqlite_service: tuple[TaskService, UnitOfWorkFactory],
) -> None:
    _, uow = sqlite_service
    profiles = Profiles(uow, default_timezone="UTC", zone_ttl=60)
    assert profiles.actor("alice").timezone == "UTC"
    profiles.update("alice", ProfileChanges(timezone="Asia/Tokyo"))
    assert profiles.actor("alice").timezone == "Asia/Tokyo"  # this process's change: at once
    with Session(uow.engine) as session:  # another replica's change: seen after zone_ttl
        row = session.get(UserSettings, "alice")
        assert row is not None
        row.timezone = "Europe/Berlin"
        session.add(row)
        session.commit()
    assert profiles.actor("alice").timezone == "Asia/Tokyo"
    assert Profiles(uow, default_timezone="UTC", zone_ttl=0).actor("alice").timezone == "Europe/Berlin"
    assert profiles.actor("alice", token_zone="America/Denver").timezone == "America/Denver"
