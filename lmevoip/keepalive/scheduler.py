"""
The keep-alive scheduler: one reactor timer for any number of NAT bindings.

A I{flow} is one NAT binding to keep open, a (local socket, remote address)
pair: a call's SIP signalling flow, a call's RTP flow, a NULL keep-alive
destination. The rule is::

    whenever nothing has been sent on a flow for its interval,
    send a keep-alive on it.

Real traffic counts: the flow's owner calls L{KeepAliveFlow.touch} whenever
it sends anything on the flow, which moves the next keep-alive to
C{lastSent + interval}. On the wire a flow is therefore never idle for longer
than its interval plus the scheduler's lateness.

Design (see C{docs/keepalive-scheduling.rst} for figures):

  - flows are C{__slots__} objects, no per-flow timer;
  - a calendar queue: time is cut into slots C{tolerance} wide (1/128 s by
    default); a dict maps each occupied slot number to the list of flows due
    in it, and a heap holds the occupied slot numbers. A flow's one I{valid}
    entry is in the list its C{_bucket} points to; other entries of it are
    stale and skipped when their slot comes (lazy deletion);
  - ONE C{IDelayedCall} from C{clock.callLater}, re-armed to the start of the
    earliest occupied slot;
  - L{KeepAliveFlow.touch} is O(1): it only records C{lastSent}. When the
    flow's slot comes, the real deadline C{lastSent + interval} is
    re-checked and the flow moved to a later slot if it moved;
  - L{KeepAliveScheduler.removeFlow} is O(1): it marks the flow, and the
    lists are compacted when stale entries outnumber live ones;
  - when the timer fires, every flow of every slot that has started is sent
    in one pass (so a keep-alive is at most one slot early, never late by
    design), at most C{maxSendsPerTick} of them before yielding to the
    reactor.

Inserting a flow is a dict lookup and a list append (a heap push only for a
newly occupied slot), against a heap push per flow for a plain heap: on
100,000 flows that is both less memory and, with a cold cache between
timer firings, several times less CPU per keep-alive.
"""

from __future__ import annotations

import math
from heapq import heapify, heappop, heappush
from typing import Any, Callable, Iterator

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from lmevoip.interfaces import IKeepAliveFlow, IKeepAliveScheduler
from lmevoip.keepalive.interval import KeepAliveParameterError, checkInterval

__all__ = ["DEFAULT_TOLERANCE", "KeepAliveFlow", "KeepAliveScheduler", "SendCallable"]

#: What a flow sends its keep-alive with: called with the flow, returns
#: C{None} (fire and forget) or a C{Deferred} that fires with the round-trip
#: time in seconds (or anything else, ignored) or fails.
SendCallable = Callable[["KeepAliveFlow"], "Deferred[Any] | None"]

# Compact the slot lists when they hold more than twice the live flows plus
# this many entries.
_COMPACT_SLACK = 1024

#: The default tolerance and slot width: 1/128 s, about 7.8 ms (a power of
#: two, so slot boundaries fall exactly on whole and binary-fraction clock
#: times). The timer fires at most once per slot, so finer slots cost more
#: wake-ups for the same sends: at 100,000 flows every 20 s, 1/1024 s slots
#: fire ~880 times a second, 1/256 s 256, 1/128 s 128 (CPU figures in
#: docs/keepalive-scheduling.rst). Sending a keep-alive 7.8 ms early is
#: irrelevant to a NAT binding timer of seconds.
DEFAULT_TOLERANCE = 2.0**-7


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


@implementer(IKeepAliveFlow)
class KeepAliveFlow:
    """
    One NAT binding kept open by a L{KeepAliveScheduler}.

    Made by L{KeepAliveScheduler.addFlow}. The attributes are for reading;
    change the flow through its methods.

    @ivar name: The label given at creation, used in logs and snapshots.
    @ivar lastSent: Clock time from which the next keep-alive is counted:
        the last L{touch}; the last keep-alive, sent at that time or, when
        the reactor sent it late, the deadline it served (so flows delayed
        together keep their spread; the next gap is then shorter than the
        interval, never longer); at creation, C{firstDeadline - interval}
        or the creation time. While the flow's send callable runs it still
        holds the previous value, so C{flow.deadline} is the deadline being
        served.
    @ivar sendCount: Keep-alives attempted (the send callable was called).
    @ivar failureCount: Keep-alives whose send callable raised or whose
        Deferred failed.
    @ivar lastError: C{"ExceptionType: message"} of the last failure, or
        C{None}.
    @ivar lastRoundTrip: The last round-trip time in seconds reported by a
        send Deferred (SIP OPTIONS), or C{None}.
    """

    __slots__ = (
        "name",
        "lastSent",
        "sendCount",
        "failureCount",
        "lastError",
        "lastRoundTrip",
        "_interval",
        "_send",
        "_scheduler",
        "_bucket",
    )

    def __init__(
        self,
        scheduler: KeepAliveScheduler,
        name: str,
        interval: float,
        send: SendCallable,
        lastSent: float,
    ) -> None:
        self.name = name
        self.lastSent = lastSent
        self.sendCount = 0
        self.failureCount = 0
        self.lastError: str | None = None
        self.lastRoundTrip: float | None = None
        self._interval = interval
        self._send = send
        self._scheduler = scheduler
        # The slot list holding this flow's one valid entry, or None once
        # removed.
        self._bucket: list[KeepAliveFlow] | None = None

    @property
    def interval(self) -> float:
        """
        The keep-alive interval in seconds; change it with L{setInterval}.
        """
        return self._interval

    @property
    def active(self) -> bool:
        """
        C{True} until the flow is removed from its scheduler.
        """
        return self._bucket is not None

    @property
    def deadline(self) -> float:
        """
        When the next keep-alive is due: C{lastSent + interval}.
        """
        return self.lastSent + self._interval

    def touch(self, now: float | None = None) -> None:
        """
        Record that something was just sent on this flow. O(1).

        @param now: The clock time of the send; the scheduler's clock by
            default. A time earlier than C{lastSent} is ignored.
        """
        if now is None:
            now = self._scheduler.clock.seconds()
        if now > self.lastSent:
            self.lastSent = now

    def setInterval(self, interval: float) -> None:
        """
        Change the interval. It takes effect at once: the next keep-alive is
        due at C{lastSent + interval}; if that is already past, it goes out
        at once and the following one an interval later.

        @param interval: Seconds, positive and finite.
        @raise KeepAliveParameterError: On a bad interval.
        """
        self._scheduler._setInterval(self, checkInterval(interval))

    def snapshot(self) -> dict[str, Any]:
        """
        The flow's state as a plain C{dict}: C{name}, C{interval},
        C{lastSent}, C{deadline}, C{sendCount}, C{failureCount},
        C{lastError}, C{lastRoundTrip}, C{active}.
        """
        return {
            "name": self.name,
            "interval": self._interval,
            "lastSent": self.lastSent,
            "deadline": self.deadline,
            "sendCount": self.sendCount,
            "failureCount": self.failureCount,
            "lastError": self.lastError,
            "lastRoundTrip": self.lastRoundTrip,
            "active": self.active,
        }

    def __repr__(self) -> str:
        state = "active" if self.active else "removed"
        return f"<KeepAliveFlow {self.name!r} interval={self._interval:g} {state}>"


@implementer(IKeepAliveScheduler)
class KeepAliveScheduler(Service):
    """
    Sends keep-alives on many flows from one reactor timer.

    A C{twisted.application.service.Service}: L{startService} arms the timer,
    L{stopService} cancels it. Flows may be added and removed whether or not
    the service is running; a stopped scheduler sends nothing and leaves no
    delayed call behind.

    A failing send (the callable raises, or its Deferred fails) is logged
    with the flow's name and counted on the flow; it never stops the
    scheduler. A failed attempt still counts as a send for scheduling: the
    next attempt comes one interval later, not at once.

    @ivar clock: The C{IReactorTime} every deadline is measured on.
    @ivar tolerance: The slot width in seconds: a keep-alive is sent when
        its slot starts, so up to this much before its deadline (never
        after it, but for the reactor's own lateness).
    @ivar maxSendsPerTick: The most keep-alives sent in one pass before the
        scheduler yields to the reactor (and continues at once after).
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        tolerance: float = DEFAULT_TOLERANCE,
        maxSendsPerTick: int = 1000,
    ) -> None:
        """
        @param clock: The reactor's time (C{task.Clock} in tests).
        @param tolerance: See L{tolerance}; positive, at most 1 s. A power
            of two keeps slot boundaries on exact clock times.
        @param maxSendsPerTick: See L{maxSendsPerTick}; at least 1.
        @raise KeepAliveParameterError: On a bad C{tolerance} or
            C{maxSendsPerTick}.
        """
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 < tolerance <= 1:
            raise KeepAliveParameterError("tolerance", tolerance, "must be a number of seconds within (0, 1]")
        if isinstance(maxSendsPerTick, bool) or not isinstance(maxSendsPerTick, int) or maxSendsPerTick < 1:
            raise KeepAliveParameterError("maxSendsPerTick", maxSendsPerTick, "must be a positive integer")
        self.clock = clock
        self.tolerance = float(tolerance)
        self.maxSendsPerTick = maxSendsPerTick
        self._perSecond = 1.0 / self.tolerance
        # slot number -> flows due in that slot (valid and stale entries).
        self._slots: dict[int, list[KeepAliveFlow]] = {}
        # The occupied slot numbers, each once.
        self._slotHeap: list[int] = []
        self._entries = 0
        self._active = 0
        self._timer: IDelayedCall | None = None
        self._timerSlot = 0
        self._ticking = False

    def __len__(self) -> int:
        """
        The number of flows (not yet removed).
        """
        return self._active

    # -- flows ----------------------------------------------------------

    def addFlow(
        self,
        name: str,
        interval: float,
        send: SendCallable,
        firstDeadline: float | None = None,
    ) -> KeepAliveFlow:
        """
        Start keeping a flow alive. O(1) (O(log n) when it is the first flow
        of its slot).

        @param name: A label for logs and snapshots.
        @param interval: Seconds without any send after which a keep-alive is
            sent; positive and finite.
        @param send: Called with the flow to send one keep-alive; see
            L{SendCallable}.
        @param firstDeadline: Clock time of the first keep-alive. By default
            C{now + interval}: a new flow counts as just used. Pass
            C{now + firstDelay(interval, rng)} (from
            L{lmevoip.keepalive.interval}) to spread flows created together.
        @return: The new flow.
        @raise KeepAliveParameterError: On a bad interval or first deadline.
        """
        interval = checkInterval(interval)
        if not callable(send):
            raise KeepAliveParameterError("send", send, "must be callable")
        if firstDeadline is None:
            lastSent = self.clock.seconds()
            due = lastSent + interval
        else:
            if isinstance(firstDeadline, bool) or not isinstance(firstDeadline, (int, float)) or not math.isfinite(
                firstDeadline
            ):
                raise KeepAliveParameterError("firstDeadline", firstDeadline, "must be a finite clock time")
            due = float(firstDeadline)
            lastSent = due - interval
        flow = KeepAliveFlow(self, name, interval, send, lastSent)
        self._active += 1
        self._insert(flow, math.floor(due * self._perSecond))
        return flow

    def removeFlow(self, flow: KeepAliveFlow) -> None:
        """
        Stop keeping a flow alive. O(1) amortised; removing a removed flow
        does nothing.

        @raise ValueError: When the flow belongs to another scheduler.
        """
        if flow._scheduler is not self:
            raise ValueError(f"{flow!r} does not belong to this scheduler")
        if flow._bucket is None:
            return
        flow._bucket = None
        self._active -= 1
        if self._active == 0:
            self._slots.clear()
            self._slotHeap.clear()
            self._entries = 0
            self._cancelTimer()
        else:
            self._compactIfSparse()

    def touch(self, flow: KeepAliveFlow, now: float | None = None) -> None:
        """
        Record that something was just sent on C{flow}; same as
        C{flow.touch(now)}.
        """
        flow.touch(now)

    def flows(self) -> Iterator[KeepAliveFlow]:
        """
        Iterate over the flows, in no particular order. (Called from a send
        callable, it misses the flows of the slot being served that are not
        served yet.)
        """
        seen: set[int] = set()
        for bucket in list(self._slots.values()):
            for flow in bucket:
                if flow._bucket is bucket and id(flow) not in seen:
                    seen.add(id(flow))
                    yield flow

    def snapshot(self) -> list[dict[str, Any]]:
        """
        The state of every flow, as plain dicts (see
        L{KeepAliveFlow.snapshot}), ordered by next deadline.
        """
        return sorted((flow.snapshot() for flow in self.flows()), key=lambda state: state["deadline"])

    # -- service --------------------------------------------------------

    def startService(self) -> None:
        """
        Arm the timer for the earliest flow.
        """
        Service.startService(self)
        if self._slotHeap:
            self._arm(self._slotHeap[0])

    def stopService(self) -> Deferred[None]:
        """
        Cancel the timer; flows are kept and resume on L{startService}.

        @return: An already fired C{Deferred}.
        """
        Service.stopService(self)
        self._cancelTimer()
        return succeed(None)

    # -- internals ------------------------------------------------------

    def _insert(self, flow: KeepAliveFlow, slot: int) -> None:
        bucket = self._slots.get(slot)
        if bucket is None:
            bucket = self._slots[slot] = [flow]
            heappush(self._slotHeap, slot)
            self._arm(slot)
        else:
            bucket.append(flow)
        flow._bucket = bucket
        self._entries += 1

    def _setInterval(self, flow: KeepAliveFlow, interval: float) -> None:
        flow._interval = interval
        now = self.clock.seconds()
        if flow.lastSent + interval < now:
            # Already idle longer than the new interval: due now, not in the
            # past (which would read as reactor lateness and keep a phase).
            flow.lastSent = now - interval
        if flow._bucket is not None:
            # A new entry for the new deadline; the old one turns stale.
            self._insert(flow, math.floor((flow.lastSent + interval) * self._perSecond))
            self._compactIfSparse()

    def _compactIfSparse(self) -> None:
        if self._entries > 2 * self._active + _COMPACT_SLACK:
            slots = self._slots
            for slot, bucket in list(slots.items()):
                bucket[:] = [flow for flow in bucket if flow._bucket is bucket]
                if not bucket:
                    del slots[slot]
            self._slotHeap[:] = slots
            heapify(self._slotHeap)
            self._entries = sum(map(len, slots.values()))

    def _arm(self, slot: int) -> None:
        if not self.running or self._ticking:
            return
        if self._timer is not None:
            if self._timerSlot <= slot:
                return
            self._timer.cancel()
        self._timerSlot = slot
        self._timer = self.clock.callLater(max(0.0, slot * self.tolerance - self.clock.seconds()), self._tick)

    def _cancelTimer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self._timer = None
        now = self.clock.seconds()
        perSecond = self._perSecond
        floor = math.floor
        # Serve every slot that has started; the armed slot at least, even
        # if rounding puts `now` a hair before its start.
        current = max(floor(now * perSecond), self._timerSlot)
        slots = self._slots
        slotHeap = self._slotHeap
        budget = self.maxSendsPerTick
        self._ticking = True
        try:
            while slotHeap and slotHeap[0] <= current:
                slot = heappop(slotHeap)
                bucket = slots.pop(slot)
                self._entries -= len(bucket)
                for index, flow in enumerate(bucket):
                    if flow._bucket is not bucket:
                        continue  # stale: removed, or superseded by setInterval
                    deadline = flow.lastSent + flow._interval
                    nextSlot = floor(deadline * perSecond)
                    if nextSlot > current:
                        # Touched since it was queued: move it, send nothing.
                        self._insert(flow, nextSlot)
                        continue
                    if budget == 0 or not self.running:
                        self._putBack(slot, bucket, index)
                        return
                    budget -= 1
                    # Sent late (the reactor was busy): count from the
                    # deadline, so flows delayed together keep their spread
                    # instead of staying bunched. Never more than an
                    # interval back, so a long stall does not send twice.
                    sentAt = deadline if now - flow._interval < deadline < now else now
                    self._insert(flow, max(floor((sentAt + flow._interval) * perSecond), current + 1))
                    self._sendOne(flow, sentAt)
        finally:
            self._ticking = False
            if slotHeap:
                self._arm(current if budget == 0 else slotHeap[0])

    def _putBack(self, slot: int, bucket: list[KeepAliveFlow], index: int) -> None:
        # Requeue the unserved rest of a bucket under its slot.
        del bucket[:index]
        existing = self._slots.get(slot)
        if existing is None:
            self._slots[slot] = bucket
            heappush(self._slotHeap, slot)
        else:
            existing.extend(bucket)
            for flow in bucket:
                if flow._bucket is bucket:
                    flow._bucket = existing
        self._entries += len(bucket)

    def _sendOne(self, flow: KeepAliveFlow, sentAt: float) -> None:
        flow.sendCount += 1
        try:
            result = flow._send(flow)
        except Exception:
            self._failed(Failure(), flow)
        else:
            if isinstance(result, Deferred):
                result.addCallbacks(self._succeeded, self._failed, callbackArgs=(flow,), errbackArgs=(flow,))
        if flow.lastSent < sentAt:  # unless the send callable touched it
            flow.lastSent = sentAt

    def _succeeded(self, result: object, flow: KeepAliveFlow) -> None:
        if isinstance(result, (int, float)) and not isinstance(result, bool):
            flow.lastRoundTrip = float(result)

    def _failed(self, failure: Failure, flow: KeepAliveFlow) -> None:
        flow.failureCount += 1
        flow.lastError = _describe(failure.value)
        self.log.failure(
            "Keep-alive send on flow {flowName!r} failed ({failureCount} failures)",
            failure,
            LogLevel.warn,
            flowName=flow.name,
            failureCount=flow.failureCount,
        )
