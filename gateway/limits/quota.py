"""Per-key quotas: requests and fuel per UTC day and month.

A deploy's `quota` {"requests_per_day", "fuel_per_day", "requests_per_month",
"fuel_per_month"} (each optional) caps what each key of the API may use. Counts live in the
metadata database (shared by every host when it is PostgreSQL). A call is checked before it
runs and charged after, when its fuel is known: calls running at the same moment can each
pass the check, so a quota can be overshot by the calls in flight when it is reached.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

FIELDS = ("requests_per_day", "fuel_per_day", "requests_per_month", "fuel_per_month")


def periods(now: float | None = None) -> tuple[str, str]:
    """The (day, month) periods a call at `now` counts in."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc)
    return f"day:{moment:%Y-%m-%d}", f"month:{moment:%Y-%m}"


@dataclass(frozen=True)
class Exceeded:
    what: str  # e.g. "requests_per_day"
    limit: int
    used: int
    retry_after_s: int  # until the period ends


def exceeded(quota: dict[str, int], used: dict[str, tuple[int, int]], now: float | None = None) -> Exceeded | None:
    """The first quota this key has used up, if any; `used` maps period -> (requests, fuel)."""
    now = time.time() if now is None else now
    day, month = periods(now)
    for name, period in (("day", day), ("month", month)):
        requests, fuel = used.get(period, (0, 0))
        for kind, value in (("requests", requests), ("fuel", fuel)):
            limit = quota.get(f"{kind}_per_{name}")
            if limit is not None and value >= limit:
                return Exceeded(f"{kind}_per_{name}", limit, value, _seconds_left(name, now))
    return None


def _seconds_left(name: str, now: float) -> int:
    moment = datetime.fromtimestamp(now, timezone.utc)
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if name == "day":
        end = start + timedelta(days=1)
    else:
        end = (start.replace(day=1) + timedelta(days=32)).replace(day=1)
    return max(1, int((end - moment).total_seconds()) + 1)
