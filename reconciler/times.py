"""How times are shown: ISO 8601 with an offset for programs, local time with its zone for people.

Every time the reconciler keeps is UTC (the store puts the zone back where SQLite drops it), so a
time without a zone here is a bug elsewhere; it is still taken as UTC rather than as local time.
"""
from __future__ import annotations

from datetime import UTC, datetime


def aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def iso(value: datetime | None) -> str | None:
    """ISO 8601 with its UTC offset, as in 2026-12-02T03:56:40.037515+00:00; None stays None."""
    return None if value is None else aware(value).astimezone(UTC).isoformat()


def local(value: datetime, *, seconds: bool = True) -> str:
    """The machine's local time with its zone, as in 2026-12-02 04:56:40 CET (or +0530 where the
    zone has no abbreviation)."""
    shown = aware(value).astimezone()
    zone = shown.strftime("%Z")
    if not zone.isalpha():
        zone = shown.strftime("%z")
    return shown.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + " " + zone
