"""
The shared media clock: one reactor timer per packet time for every RTP
session in the process.

A per-session C{LoopingCall} costs one timer, one heap operation and one
trip through the reactor per session per 20 ms; with 1,000 sessions that is
50,000 wake-ups a second. A L{Pacer} instead arms B{one} timer per tick
period and, when it fires, calls every due session's ticker in one batch.

Schedule
========

A schedule with period C{P} has an origin C{t0} (its clock time when it was
first needed) and tick C{k} is due at C{t0 + k * P}, computed by
multiplication from the origin, never by adding C{P} to the last firing, so
lateness never accumulates (drift-free). When the reactor fires late by one
or more whole periods, the missed ticks are B{skipped}: only the latest due
tick runs, the skipped ones are counted in C{missedTicks}, and the lateness
of the run is measured against the tick that should have run first. A
ticker is called with the I{scheduled} time of its tick (not the reactor's
actual time), so everything a session derives from it (frame index, RTP
timestamp) is exact.

Sessions whose packet time is a multiple of the pacer's tick (40, 60 ms on
a 20 ms pacer) ride on the same timer and are called on every second,
third, ... tick, spread over phases so that the load of each tick stays
even. A packet time that is not a multiple (30 ms on a 20 ms pacer) gets a
schedule of its own with a period of that packet time: still one timer per
packet time, whatever the number of sessions.

While a schedule has no tickers it arms no timer; its origin is kept, so a
session that leaves and comes back (call hold) lands on the same grid.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from typing import Callable, Deque, Dict, List, Optional

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from lmevoip.interfaces import IPacer

__all__ = ["DEFAULT_TICK_MS", "PacerStats", "Pacer"]

#: The default tick period: the default packet time of RFC 3551 audio.
DEFAULT_TICK_MS = 20

#: How close to its due time a tick may fire and still count as due,
#: absorbing float rounding between C{t0 + k * P} and a clock that was
#: advanced in steps.
_EPSILON = 1e-6

Ticker = Callable[[float], object]


@dataclasses.dataclass(frozen=True)
class PacerStats:
    """
    How punctual the pacer's ticks were, over the last C{window} ticks (all
    schedules merged).

    @ivar ticks: ticks run since the pacer started.
    @ivar missedTicks: ticks skipped because the reactor fired more than a
        whole period late.
    @ivar p50: median lateness (actual minus scheduled firing time) in
        seconds, over the window.
    @ivar p99: 99th percentile lateness in seconds, over the window.
    @ivar max: largest lateness in seconds, over the window.
    @ivar maxEver: largest lateness since the pacer started.
    @ivar tickers: tickers registered now.
    @ivar timers: schedules (reactor timers) in use now.
    @ivar errors: ticker calls that raised.
    """

    ticks: int
    missedTicks: int
    p50: float
    p99: float
    max: float
    maxEver: float
    tickers: int
    timers: int
    errors: int


class _Schedule:
    """
    One timer with period C{periodMs} and the tickers it drives, grouped by
    C{multiple} (ptime / period) and phase.
    """

    def __init__(self, pacer: Pacer, periodMs: int) -> None:
        self.pacer = pacer
        self.periodMs = periodMs
        self.period = periodMs / 1000.0
        self.origin: Optional[float] = None
        self.nextIndex = 0
        self.call: Optional[IDelayedCall] = None
        # multiple -> one dict (used as an ordered set) per phase.
        self.groups: Dict[int, List[Dict[Ticker, None]]] = {}
        self.count = 0

    def tickTime(self, index: int) -> float:
        assert self.origin is not None
        return self.origin + index * self.period

    def add(self, ticker: Ticker, multiple: int, anchor: Optional[float]) -> float:
        now = self.pacer.clock.seconds()
        if self.origin is None:
            self.origin = now
            self.nextIndex = 0
        first = self._firstIndexAfter(now)
        buckets = self.groups.get(multiple)
        if buckets is None:
            buckets = self.groups[multiple] = [{} for _ in range(multiple)]
        if anchor is None:
            # The least loaded phase, the soonest among equals.
            phase = min(((first + step) % multiple for step in range(multiple)),
                        key=lambda candidate: len(buckets[candidate]))
        else:
            phase = round((anchor - self.origin) / self.period) % multiple
        buckets[phase][ticker] = None
        self.count += 1
        self.arm()
        first += (phase - first) % multiple
        return self.tickTime(first)

    def _firstIndexAfter(self, now: float) -> int:
        """
        The first tick index still to run at C{now}: the armed one, else the
        first strictly after C{now} (a new schedule's first tick is one
        period after its origin).
        """
        assert self.origin is not None
        if self.call is not None:
            return self.nextIndex
        return max(self.nextIndex,
                   math.floor((now - self.origin) / self.period + _EPSILON) + 1)

    def remove(self, ticker: Ticker) -> bool:
        for buckets in self.groups.values():
            for bucket in buckets:
                if ticker in bucket:
                    del bucket[ticker]
                    self.count -= 1
                    if not self.count:
                        self.disarm()
                        self.groups.clear()
                    return True
        return False

    def arm(self) -> None:
        if self.call is not None or not self.count or not self.pacer.running:
            return
        clock = self.pacer.clock
        now = clock.seconds()
        self.nextIndex = self._firstIndexAfter(now)
        delay = self.tickTime(self.nextIndex) - now
        self.call = clock.callLater(max(0.0, delay - _EPSILON / 2), self.fire)

    def disarm(self) -> None:
        if self.call is not None:
            if self.call.active():
                self.call.cancel()
            self.call = None

    def fire(self) -> None:
        self.call = None
        pacer = self.pacer
        now = pacer.clock.seconds()
        index = self.nextIndex
        scheduled = self.tickTime(index)
        if now < scheduled - _EPSILON:  # pragma: no cover - reactors do not fire early
            self.arm()
            return
        behind = math.floor((now - scheduled) / self.period + _EPSILON)
        if behind > 0:
            pacer._missed += behind
            index += behind
        pacer._recordLateness(max(0.0, now - scheduled))
        self.nextIndex = index + 1
        tickTime = self.tickTime(index)
        try:
            for multiple, buckets in list(self.groups.items()):
                bucket = buckets[index % multiple]
                if bucket:
                    pacer._runBucket(bucket, tickTime)
        finally:
            self.arm()


@implementer(IPacer)
class Pacer(Service):
    """
    The process-wide media clock: calls registered tickers every packet
    time, from one reactor timer per packet time.

    A ticker is any callable taking the scheduled tick time (seconds on
    L{clock}); an exception it raises is logged (rate-limited) and counted,
    and never stops the other tickers or the timer. Tickers can be added
    before the service starts; they are called from when it starts.

    @ivar clock: the L{IReactorTime} every timer is armed on.
    @ivar tickMs: the base tick period in milliseconds.
    @ivar window: how many recent ticks the lateness percentiles cover.
    """

    log = Logger()

    def __init__(self, clock: Optional[IReactorTime] = None, tickMs: int = DEFAULT_TICK_MS,
                 window: int = 3000) -> None:
        """
        @param clock: the reactor time to use (the global reactor when
            C{None}).
        @param tickMs: the base tick period, a positive whole number of
            milliseconds.
        @param window: the number of ticks the percentiles cover (>= 1).
        @raise ValueError: for a bad C{tickMs} or C{window}.
        """
        if clock is None:
            from twisted.internet import reactor as clock  # pragma: no cover
        if not isinstance(tickMs, int) or tickMs <= 0:
            raise ValueError(f"tickMs must be a positive integer, not {tickMs!r}")
        if window < 1:
            raise ValueError(f"window must be >= 1, not {window!r}")
        self.clock = clock
        self.tickMs = tickMs
        self.window = window
        self._schedules: Dict[int, _Schedule] = {}
        self._where: Dict[Ticker, _Schedule] = {}
        self._lateness: Deque[float] = deque(maxlen=window)
        self._ticks = 0
        self._missed = 0
        self._maxEver = 0.0
        self._errors = 0
        self._lastErrorLog: Optional[float] = None

    # -- IService ---------------------------------------------------------

    def startService(self) -> None:
        """
        Start ticking (arms a timer for each schedule that has tickers).
        """
        Service.startService(self)
        for schedule in self._schedules.values():
            schedule.arm()

    def stopService(self):
        """
        Stop ticking; registered tickers stay registered.
        """
        for schedule in self._schedules.values():
            schedule.disarm()
        return Service.stopService(self)

    # -- registration -----------------------------------------------------

    def add(self, ticker: Ticker, ptimeMs: int = DEFAULT_TICK_MS,
            anchor: Optional[float] = None) -> float:
        """
        Call C{ticker(tickTime)} every C{ptimeMs} from the next tick on.

        @param ticker: a hashable callable; a bound method works (equal
            bound methods of the same object are the same ticker).
        @param ptimeMs: its packet time, a positive whole number of ms.
        @param anchor: a clock time the ticker's ticks should fall on (modulo
            C{ptimeMs}), for a ticker coming back after a pause; the phase is
            rounded to the nearest tick. C{None}: the next tick.
        @return: the scheduled time of the first tick C{ticker} will get.
        @raise ValueError: if C{ticker} is already registered or C{ptimeMs}
            is not a positive integer.
        """
        if not isinstance(ptimeMs, int) or ptimeMs <= 0:
            raise ValueError(f"ptimeMs must be a positive integer, not {ptimeMs!r}")
        if ticker in self._where:
            raise ValueError(f"{ticker!r} is already registered")
        periodMs = self.tickMs if ptimeMs % self.tickMs == 0 else ptimeMs
        schedule = self._schedules.get(periodMs)
        if schedule is None:
            schedule = self._schedules[periodMs] = _Schedule(self, periodMs)
        self._where[ticker] = schedule
        return schedule.add(ticker, ptimeMs // periodMs, anchor)

    def remove(self, ticker: Ticker) -> bool:
        """
        Stop calling C{ticker} (it may be the ticker being called now).

        @return: whether it was registered.
        """
        schedule = self._where.pop(ticker, None)
        if schedule is None:
            return False
        return schedule.remove(ticker)

    def __contains__(self, ticker: object) -> bool:
        return ticker in self._where

    def __len__(self) -> int:
        """
        The number of registered tickers.
        """
        return len(self._where)

    # -- running ----------------------------------------------------------

    def _runBucket(self, bucket: Dict[Ticker, None], tickTime: float) -> None:
        for ticker in list(bucket):
            if ticker not in bucket:
                continue  # removed by an earlier ticker of this batch
            try:
                ticker(tickTime)
            except Exception:
                self._errors += 1
                now = self.clock.seconds()
                if self._lastErrorLog is None or now - self._lastErrorLog >= 1.0:
                    self._lastErrorLog = now
                    self.log.failure("pacer ticker {ticker!r} raised ({errors} errors so far)",
                                     ticker=ticker, errors=self._errors)

    def _recordLateness(self, lateness: float) -> None:
        self._ticks += 1
        self._lateness.append(lateness)
        if lateness > self._maxEver:
            self._maxEver = lateness

    def stats(self) -> PacerStats:
        """
        The lateness statistics (see L{PacerStats}).
        """
        ordered = sorted(self._lateness)

        def percentile(fraction: float) -> float:
            if not ordered:
                return 0.0
            return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]

        return PacerStats(
            ticks=self._ticks,
            missedTicks=self._missed,
            p50=percentile(0.5),
            p99=percentile(0.99),
            max=ordered[-1] if ordered else 0.0,
            maxEver=self._maxEver,
            tickers=len(self._where),
            timers=sum(1 for schedule in self._schedules.values() if schedule.call is not None),
            errors=self._errors,
        )
