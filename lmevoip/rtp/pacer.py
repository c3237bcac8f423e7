"""
The shared media clock: one reactor timer per packet time for every RTP
session in the process.

A per-session C{LoopingCall} costs one timer, one heap operation and one
trip through the reactor per session per 20 ms; with 1,000 sessions that is
50,000 wake-ups a second. A L{Pacer} instead arms B{one} timer per tick
period and, when it fires, calls every due session's ticker in one batch.

Phases
======

One batch of all sessions per tick makes the last session of the batch
late by the whole batch: 1,000 sessions at 10 microseconds each is 10 ms.
So each tick period is divided into C{phases} sub-ticks (4 by default: 0,
5, 10 and 15 ms into a 20 ms tick), and each ticker belongs to one of
them. A new ticker goes to the least loaded sub-tick, so each batch holds
about C{1 / phases} of the sessions and the lateness of the last session
of a batch is bounded by a quarter of the work. Among equally loaded
sub-ticks the one aligned on the tick (phase 0) comes first, then the
soonest, so a pacer with a single ticker behaves exactly as a pacer
without phases. A ticker still gets exactly one call per packet time,
with its own scheduled time: sessions keep exact 20 ms periods and their
RTP timestamps come from their own grid. The timer is armed only for
sub-ticks that have tickers.

Schedule
========

A schedule with tick period C{P} and C{S} phases has an origin C{t0} (its
clock time when it was first needed) and sub-tick C{k} is due at C{t0 + k *
P / S}, computed by multiplication from the origin, never by adding to the
last firing, so lateness never accumulates (drift-free). A ticker is called
with the I{scheduled} time of its sub-tick (not the reactor's actual time),
so everything a session derives from it (frame index, RTP timestamp) is
exact.

Late ticks: bounded catch-up, then skipping
===========================================

When the timer fires late, or a batch took long enough that the next
sub-ticks are already due, the due sub-ticks are run in order, at once
(catch-up), as long as each is less than one whole tick period late. A
sub-tick one period late or more is B{skipped}: its tickers are not called
for it, it is counted in C{missedTicks}, and its lateness at the moment it
was given up (at least one period: a lower bound, it never ran) is
recorded with the others, so the percentiles see it. Decision: catching
up within one period sends a frame late rather than not at all, which a
receiver's jitter buffer absorbs; a frame later than a whole period would
arrive after the next one of the same session, which only adds delay at
the receiver, so it is dropped instead, and the session's next timestamp
jumps like after any gap (RFC 3550 timestamps come from the clock either
way). A session therefore never gets two calls in one catch-up. One firing
runs at most one period of sub-ticks, then gives the reactor a turn (for
received packets and other timers) before catching up further.

Sessions whose packet time is a multiple of the pacer's tick (40, 60 ms on
a 20 ms pacer) ride on the same timer and are called on every second,
third, ... tick, spread over those ticks' sub-ticks so that the load of
each stays even. A packet time that is not a multiple (30 ms on a 20 ms
pacer) gets a schedule of its own with a period of that packet time (and
the same number of phases): still one timer per packet time, whatever the
number of sessions.

While a schedule has no tickers it arms no timer; its origin is kept, so a
session that leaves and comes back (call hold) lands on the same grid.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from typing import Callable, Deque, Dict, List, Optional, Tuple

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from lmevoip.interfaces import IPacer

__all__ = ["DEFAULT_TICK_MS", "DEFAULT_PHASES", "PacerStats", "Pacer"]

#: The default tick period: the default packet time of RFC 3551 audio.
DEFAULT_TICK_MS = 20

#: The default number of sub-ticks per tick period (5 ms apart at 20 ms).
DEFAULT_PHASES = 4

#: How close to its due time a tick may fire and still count as due,
#: absorbing float rounding between C{t0 + k * P} and a clock that was
#: advanced in steps.
_EPSILON = 1e-6

Ticker = Callable[[float], object]


@dataclasses.dataclass(frozen=True)
class PacerStats:
    """
    How punctual the pacer's ticks were, over the last C{window} sub-ticks
    that were due (all schedules merged; a skipped sub-tick counts with the
    lateness it had when it was given up).

    @ivar ticks: sub-ticks run since the pacer started (only sub-ticks that
        had tickers count).
    @ivar missedTicks: sub-ticks skipped because they were a whole tick
        period late or more.
    @ivar p50: median lateness (actual minus scheduled time of the start of
        the sub-tick's batch) in seconds, over the window.
    @ivar p99: 99th percentile of that lateness, over the window.
    @ivar max: largest such lateness in seconds, over the window.
    @ivar maxEver: largest such lateness since the pacer started.
    @ivar tickers: tickers registered now.
    @ivar timers: schedules (reactor timers) in use now.
    @ivar errors: ticker calls that raised.
    @ivar finishP99: 99th percentile, over the window, of the lateness of
        the I{end} of each sub-tick's batch (when its last ticker
        returned): an upper bound on how late any ticker's work was done.
    @ivar finishMax: the largest lateness of the end of a batch, over the
        window.
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
    finishP99: float = 0.0
    finishMax: float = 0.0


def _percentile(ordered: List[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


class _Schedule:
    """
    One timer with tick period C{periodMs} divided into C{phases}
    sub-ticks, and the tickers it drives: per C{multiple} (ptime / period),
    one bucket per slot, C{multiple * phases} slots, a ticker in slot C{s}
    being called on sub-tick C{k} when C{k % (multiple * phases) == s}.

    @ivar nextIndex: every sub-tick before it has been dealt with (run,
        skipped, or had no tickers).
    @ivar armedIndex: the sub-tick the armed timer is for.
    """

    def __init__(self, pacer: Pacer, periodMs: int, phases: int) -> None:
        self.pacer = pacer
        self.periodMs = periodMs
        self.phases = phases
        self.period = periodMs / 1000.0
        self.subPeriod = periodMs / (1000.0 * phases)
        self.origin: Optional[float] = None
        self.nextIndex = 0
        self.armedIndex = 0
        self.call: Optional[IDelayedCall] = None
        self.firing = False
        # multiple -> one dict (used as an ordered set) per slot.
        self.groups: Dict[int, List[Dict[Ticker, None]]] = {}
        self.slotOf: Dict[Ticker, Tuple[int, int]] = {}

    def tickTime(self, index: int) -> float:
        assert self.origin is not None
        return self.origin + index * self.subPeriod

    def _indexAt(self, when: float) -> int:
        """
        The last sub-tick due at C{when}.
        """
        assert self.origin is not None
        return math.floor((when - self.origin) / self.subPeriod + _EPSILON)

    def add(self, ticker: Ticker, multiple: int, anchor: Optional[float]) -> float:
        now = self.pacer.clock.seconds()
        if self.origin is None:
            self.origin = now
            self.nextIndex = 0
        first = max(self.nextIndex, self._indexAt(now) + 1)
        slots = multiple * self.phases
        buckets = self.groups.get(multiple)
        if buckets is None:
            buckets = self.groups[multiple] = [{} for _ in range(slots)]
        if anchor is None:
            # The least loaded slot; among equals the one on the tick
            # (phase 0), then the soonest.
            phases = self.phases
            slot = min(((first + step) % slots for step in range(slots)),
                       key=lambda candidate: (len(buckets[candidate]),
                                              candidate % phases != 0,
                                              (candidate - first) % slots))
        else:
            slot = round((anchor - self.origin) / self.subPeriod) % slots
        buckets[slot][ticker] = None
        self.slotOf[ticker] = (multiple, slot)
        first += (slot - first) % slots
        if not self.firing:     # a firing re-arms when it is done
            if self.call is not None and first < self.armedIndex:
                self.disarm()   # armed for a later sub-tick: re-arm for this one
            if self.call is None:
                self.nextIndex = max(self.nextIndex, self._indexAt(now) + 1)
                self.arm()
        return self.tickTime(first)

    def remove(self, ticker: Ticker) -> bool:
        where = self.slotOf.pop(ticker, None)
        if where is None:
            return False
        multiple, slot = where
        del self.groups[multiple][slot][ticker]
        if not self.slotOf:
            self.disarm()
            self.groups.clear()
        return True

    def _occupied(self, index: int) -> bool:
        for buckets in self.groups.values():
            if buckets[index % len(buckets)]:
                return True
        return False

    def _nextOccupied(self, index: int) -> int:
        """
        The first sub-tick at or after C{index} that has tickers (the
        schedule has some).
        """
        limit = index + max(len(buckets) for buckets in self.groups.values())
        while index < limit and not self._occupied(index):
            index += 1
        return index

    def _countOccupied(self, start: int, stop: int) -> int:
        """
        How many sub-ticks in C{[start, stop)} have tickers, counted over
        whole cycles of the slots (for a long stall).
        """
        cycle = math.lcm(*(len(buckets) for buckets in self.groups.values()))
        occupied = [self._occupied(index) for index in range(cycle)]
        whole, rest = divmod(stop - start, cycle)
        return whole * sum(occupied) + sum(occupied[(start + k) % cycle] for k in range(rest))

    def arm(self) -> None:
        """
        Arm the timer for the first sub-tick with tickers from
        L{nextIndex} on (at once when it is already due).
        """
        if self.call is not None or not self.slotOf or not self.pacer.running:
            return
        clock = self.pacer.clock
        self.armedIndex = self._nextOccupied(self.nextIndex)
        delay = self.tickTime(self.armedIndex) - clock.seconds()
        self.call = clock.callLater(max(0.0, delay - _EPSILON / 2), self.fire)

    def disarm(self) -> None:
        if self.call is not None:
            if self.call.active():
                self.call.cancel()
            self.call = None

    def _skipStalled(self, now: float) -> None:
        """
        After a stall much longer than the lateness window: count in bulk
        the skipped sub-ticks too old for the window, and move past them
        (the rest are skipped one by one, their lateness recorded).
        """
        pacer = self.pacer
        cycle = math.lcm(*(len(buckets) for buckets in self.groups.values()))
        # Every cycle has a sub-tick with tickers, so this leaves at least
        # a window of them to be recorded.
        oldest = self._indexAt(now - self.period) + 1 - pacer.window * cycle
        if self.nextIndex < oldest:
            pacer._missed += self._countOccupied(self.nextIndex, oldest)
            self.nextIndex = oldest

    def fire(self) -> None:
        self.call = None
        self.firing = True
        try:
            self._runDue()
        finally:
            self.firing = False
            self.arm()

    def _runDue(self) -> None:
        """
        Run the due sub-ticks in order, skipping those a period late or
        more, at most one period of them.
        """
        pacer = self.pacer
        clock = pacer.clock
        period = self.period
        if self.slotOf:
            self._skipStalled(clock.seconds())
        runs = 0
        while self.slotOf and pacer.running:
            index = self._nextOccupied(self.nextIndex)
            scheduled = self.tickTime(index)
            now = clock.seconds()
            if now < scheduled - _EPSILON:
                break           # not due yet
            lateness = now - scheduled
            self.nextIndex = index + 1
            if lateness >= period - _EPSILON:
                pacer._tickSkipped(lateness)
                continue
            if runs == self.phases:
                self.nextIndex = index   # a period's work done: reactor turn first
                break
            runs += 1
            for buckets in list(self.groups.values()):
                bucket = buckets[index % len(buckets)]
                if bucket:
                    pacer._runBucket(bucket, scheduled)
            pacer._tickRun(max(0.0, lateness), max(0.0, clock.seconds() - scheduled))


@implementer(IPacer)
class Pacer(Service):
    """
    The process-wide media clock: calls registered tickers every packet
    time, from one reactor timer per packet time, spread over C{phases}
    sub-ticks of each tick (see the module docstring).

    A ticker is any callable taking the scheduled tick time (seconds on
    L{clock}); an exception it raises is logged (rate-limited) and counted,
    and never stops the other tickers or the timer. Tickers can be added
    before the service starts; they are called from when it starts.

    @ivar clock: the L{IReactorTime} every timer is armed on.
    @ivar tickMs: the base tick period in milliseconds.
    @ivar phases: the sub-ticks per tick period.
    @ivar window: how many recent sub-ticks the lateness percentiles cover.
    """

    log = Logger()

    def __init__(self, clock: Optional[IReactorTime] = None, tickMs: int = DEFAULT_TICK_MS,
                 window: int = 3000, phases: int = DEFAULT_PHASES) -> None:
        """
        @param clock: the reactor time to use (the global reactor when
            C{None}).
        @param tickMs: the base tick period, a positive whole number of
            milliseconds.
        @param window: the number of sub-ticks the percentiles cover (>= 1).
        @param phases: sub-ticks per tick period (>= 1; 1 puts every
            ticker of a tick in one batch).
        @raise ValueError: for a bad C{tickMs}, C{window} or C{phases}.
        """
        if clock is None:
            from twisted.internet import reactor as clock  # pragma: no cover
        if not isinstance(tickMs, int) or tickMs <= 0:
            raise ValueError(f"tickMs must be a positive integer, not {tickMs!r}")
        if window < 1:
            raise ValueError(f"window must be >= 1, not {window!r}")
        if not isinstance(phases, int) or phases < 1:
            raise ValueError(f"phases must be a positive integer, not {phases!r}")
        self.clock = clock
        self.tickMs = tickMs
        self.phases = phases
        self.window = window
        self._schedules: Dict[int, _Schedule] = {}
        self._where: Dict[Ticker, _Schedule] = {}
        self._lateness: Deque[float] = deque(maxlen=window)
        self._finishLateness: Deque[float] = deque(maxlen=window)
        self._ticks = 0
        self._missed = 0
        self._maxEver = 0.0
        self._errors = 0
        self._removals = 0
        self._lastErrorLog: Optional[float] = None

    # -- IService ---------------------------------------------------------

    def startService(self) -> None:
        """
        Start ticking (arms a timer for each schedule that has tickers).
        """
        Service.startService(self)
        now = self.clock.seconds()
        for schedule in self._schedules.values():
            if schedule.origin is not None:
                schedule.nextIndex = max(schedule.nextIndex, schedule._indexAt(now) + 1)
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
        Call C{ticker(tickTime)} every C{ptimeMs} from its first sub-tick
        on.

        @param ticker: a hashable callable; a bound method works (equal
            bound methods of the same object are the same ticker).
        @param ptimeMs: its packet time, a positive whole number of ms.
        @param anchor: a clock time the ticker's ticks should fall on (modulo
            C{ptimeMs}), for a ticker coming back after a pause; the phase is
            rounded to the nearest sub-tick. C{None}: the least loaded
            sub-tick (see the module docstring).
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
            schedule = self._schedules[periodMs] = _Schedule(self, periodMs, self.phases)
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
        self._removals += 1
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
        removals = self._removals
        for ticker in list(bucket):
            # A ticker removed by an earlier ticker of this batch is not
            # called (looked up only when something was removed: hashing a
            # bound method per call is not free at 50,000 calls a second).
            if self._removals != removals and ticker not in bucket:
                continue
            try:
                ticker(tickTime)
            except Exception:
                self._tickerFailed(ticker)

    def _tickerFailed(self, ticker: Ticker) -> None:
        self._errors += 1
        now = self.clock.seconds()
        if self._lastErrorLog is None or now - self._lastErrorLog >= 1.0:
            self._lastErrorLog = now
            self.log.failure("pacer ticker {ticker!r} raised ({errors} errors so far)",
                             ticker=ticker, errors=self._errors)

    def _tickRun(self, lateness: float, finishLateness: float) -> None:
        """
        Record a sub-tick that ran: the lateness of its start and of its end.
        """
        self._ticks += 1
        self._record(lateness, finishLateness)

    def _tickSkipped(self, lateness: float) -> None:
        """
        Record a sub-tick given up C{lateness} seconds after it was due.
        """
        self._missed += 1
        self._record(lateness, lateness)

    def _record(self, lateness: float, finishLateness: float) -> None:
        self._lateness.append(lateness)
        self._finishLateness.append(finishLateness)
        if lateness > self._maxEver:
            self._maxEver = lateness

    def stats(self) -> PacerStats:
        """
        The lateness statistics (see L{PacerStats}).
        """
        ordered = sorted(self._lateness)
        finished = sorted(self._finishLateness)
        return PacerStats(
            ticks=self._ticks,
            missedTicks=self._missed,
            p50=_percentile(ordered, 0.5),
            p99=_percentile(ordered, 0.99),
            max=ordered[-1] if ordered else 0.0,
            maxEver=self._maxEver,
            tickers=len(self._where),
            timers=sum(1 for schedule in self._schedules.values() if schedule.call is not None),
            errors=self._errors,
            finishP99=_percentile(finished, 0.99),
            finishMax=finished[-1] if finished else 0.0,
        )
