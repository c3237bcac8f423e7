"""
Rate limits for log lines that the network can trigger.

A peer that sends garbage, or floods us past a limit, must not be able to
flood the log as well: each such line goes through a L{LogRateLimiter},
which lets one event of a kind through per interval and says, on the next
one it lets through, how many it held back.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime


class LogRateLimiter:
    """
    At most one log event per kind per C{interval} seconds.

    Kinds are a small fixed vocabulary chosen by the caller (such as
    C{"unparseable"} or C{"transaction-limit"}), never values taken from the
    network, and at most C{maxKinds} are tracked, so memory stays bounded.

    @ivar interval: seconds between two events of the same kind.
    """

    def __init__(self, clock: IReactorTime | None = None, interval: float = 10.0,
                 maxKinds: int = 64) -> None:
        """
        @param clock: the reactor's time; the global reactor when C{None},
            looked up on first use.
        @param interval: seconds between two events of the same kind.
        @param maxKinds: how many kinds are tracked; beyond that new kinds
            are always let through (and not remembered).
        """
        self._clock = clock
        self.interval = interval
        self.maxKinds = maxKinds
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, kind: str) -> int | None:
        """
        Ask whether an event of C{kind} may be logged now.

        @return: C{None} when it must be held back; otherwise how many
            events of that kind were held back since the last one allowed
            (to be included in the log line).
        """
        if self._clock is None:
            from twisted.internet import reactor

            self._clock = reactor  # type: ignore[assignment]
        now = self._clock.seconds()  # type: ignore[union-attr]
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return None
        if last is None and len(self._last) >= self.maxKinds:
            return 0
        self._last[kind] = now
        return self._suppressed.pop(kind, 0)
