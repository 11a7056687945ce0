"""One injected clock for every time-dependent rule.

Caps, windows, quiet hours, fatigue and join windows all read the clock they
are given, so tests and simulations can run days in minutes. Production code
uses :class:`SystemClock`; a decision's "as of" time is only ever fixed by an
explicitly enabled simulation mode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


@dataclass(slots=True)
class ManualClock:
    """A clock that only moves when told to (tests, `nba simulate`)."""

    ms: int = field(default=1_767_225_600_000)  # 2026-01-01T00:00:00Z

    def now_ms(self) -> int:
        return self.ms

    def advance(self, *, seconds: float = 0, minutes: float = 0, hours: float = 0, days: float = 0) -> None:
        self.ms += int(1000 * (seconds + 60 * minutes + 3600 * hours + 86400 * days))
