"""
Tests for L{lmevoip.keepalive.scheduler}: one timer, many flows, driven by a
L{task.Clock}.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from lmevoip.interfaces import IKeepAliveFlow, IKeepAliveScheduler
from lmevoip.keepalive.interval import KeepAliveParameterError, firstDelay, keepAliveInterval
from lmevoip.keepalive.scheduler import KeepAliveFlow, KeepAliveScheduler


def advanceTo(clock: task.Clock, when: float) -> None:
    """
    Move C{clock} to C{when}, stopping at each delayed call's exact time on
    the way, as a reactor with no lateness would.
    """
    while True:
        due = min((call.getTime() for call in clock.getDelayedCalls()), default=None)
        if due is None or due > when:
            break
        clock.rightNow = max(clock.rightNow, due)
        clock.advance(0)
    clock.rightNow = max(clock.rightNow, when)
    clock.advance(0)


class Recorder:
    """
    A send callable that records C{(flow name, clock time)}.
    """

    def __init__(self, clock: task.Clock) -> None:
        self.clock = clock
        self.sends: list[tuple[str, float]] = []

    def __call__(self, flow: KeepAliveFlow) -> None:
        self.sends.append((flow.name, self.clock.seconds()))

    def times(self, name: str) -> list[float]:
        return [when for flowName, when in self.sends if flowName == name]


class SchedulerTestsMixin:
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.scheduler = KeepAliveScheduler(self.clock)
        self.events: list[dict] = []
        self.scheduler.log = Logger(observer=self.events.append)
        self.scheduler.startService()
        self.record = Recorder(self.clock)


class InterfaceTests(SchedulerTestsMixin, SynchronousTestCase):
    def test_providers(self) -> None:
        """
        The scheduler and its flows provide their interfaces.
        """
        flow = self.scheduler.addFlow("a", 5, self.record)
        self.assertTrue(verifyObject(IKeepAliveScheduler, self.scheduler))
        self.assertTrue(verifyObject(IKeepAliveFlow, flow))

    def test_badParameters(self) -> None:
        """
        A bad interval, first deadline, send callable or scheduler setting
        raises L{KeepAliveParameterError} (a C{ValueError}) and adds nothing.
        """
        for interval in (0, -1, float("nan"), float("inf"), "5", True, None):
            self.assertRaises(KeepAliveParameterError, self.scheduler.addFlow, "x", interval, self.record)
        self.assertRaises(KeepAliveParameterError, self.scheduler.addFlow, "x", 5, self.record, float("nan"))
        self.assertRaises(KeepAliveParameterError, self.scheduler.addFlow, "x", 5, "not callable")
        self.assertRaises(KeepAliveParameterError, KeepAliveScheduler, self.clock, tolerance=0)
        self.assertRaises(KeepAliveParameterError, KeepAliveScheduler, self.clock, maxSendsPerTick=0)
        self.assertEqual(len(self.scheduler), 0)
        flow = self.scheduler.addFlow("x", 5, self.record)
        error = self.assertRaises(KeepAliveParameterError, flow.setInterval, 0)
        self.assertIsInstance(error, ValueError)
        self.assertEqual(error.parameter, "interval")
        self.assertEqual(flow.interval, 5)


class TimingTests(SchedulerTestsMixin, SynchronousTestCase):
    def test_exactSendTimes(self) -> None:
        """
        Untouched flows get a keep-alive exactly every interval, counted from
        their creation, all from one delayed call.
        """
        self.scheduler.addFlow("five", 5, self.record)
        self.clock.advance(1)
        self.scheduler.addFlow("seven", 7, self.record)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        advanceTo(self.clock, 22)
        self.assertEqual(self.record.times("five"), [5, 10, 15, 20])
        self.assertEqual(self.record.times("seven"), [8, 15, 22])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_firstDeadline(self) -> None:
        """
        C{firstDeadline} sets the first keep-alive; later ones follow every
        interval after it.
        """
        flow = self.scheduler.addFlow("a", 10, self.record, firstDeadline=3)
        self.assertEqual(flow.deadline, 3)
        advanceTo(self.clock, 25)
        self.assertEqual(self.record.times("a"), [3, 13, 23])
        self.assertEqual(flow.sendCount, 3)
        self.assertEqual(flow.lastSent, 23)

    def test_pastFirstDeadlineSendsAtOnce(self) -> None:
        """
        A first deadline already past is served on the next reactor turn.
        """
        self.clock.advance(100)
        self.scheduler.addFlow("late", 10, self.record, firstDeadline=50)
        self.clock.advance(0)
        self.assertEqual(self.record.times("late"), [100])

    def test_lateSendsKeepTheirSpread(self) -> None:
        """
        Keep-alives sent late because the reactor was busy count from the
        deadline they served: flows delayed together do not stay bunched,
        and the next gap is shorter than the interval, never longer.
        """
        a = self.scheduler.addFlow("a", 10, self.record, firstDeadline=2)
        self.scheduler.addFlow("b", 10, self.record, firstDeadline=6)
        self.clock.advance(9)  # the reactor only gets to run at 9
        self.assertEqual(self.record.sends, [("a", 9), ("b", 9)])
        self.assertEqual(a.lastSent, 2)
        advanceTo(self.clock, 26)
        self.assertEqual(self.record.times("a"), [9, 12, 22])
        self.assertEqual(self.record.times("b"), [9, 16, 26])

    def test_stallLongerThanInterval(self) -> None:
        """
        After a stall longer than the interval the keep-alive goes out once,
        and the next one a full interval later.
        """
        self.scheduler.addFlow("a", 10, self.record, firstDeadline=2)
        self.clock.advance(25)
        advanceTo(self.clock, 40)
        self.assertEqual(self.record.times("a"), [25, 35])

    def test_touchPostpones(self) -> None:
        """
        Real traffic (C{touch}) moves the next keep-alive to
        C{lastSent + interval}; a flow kept busy sends no keep-alive.
        """
        flow = self.scheduler.addFlow("a", 10, self.record)
        advanceTo(self.clock, 4)
        flow.touch()
        self.assertEqual(flow.deadline, 14)
        advanceTo(self.clock, 13.5)
        self.scheduler.touch(flow)
        advanceTo(self.clock, 23)
        self.assertEqual(self.record.times("a"), [])
        advanceTo(self.clock, 40)
        self.assertEqual(self.record.times("a"), [23.5, 33.5])

    def test_touchExplicitTime(self) -> None:
        """
        C{touch(now)} records the given time; an earlier time than
        C{lastSent} is ignored.
        """
        flow = self.scheduler.addFlow("a", 10, self.record)
        flow.touch(6)
        flow.touch(2)
        self.assertEqual(flow.lastSent, 6)
        advanceTo(self.clock, 16)
        self.assertEqual(self.record.times("a"), [16])

    def test_setIntervalShorter(self) -> None:
        """
        A shorter interval takes effect at once: a deadline already past is
        served immediately, then every new interval.
        """
        flow = self.scheduler.addFlow("a", 10, self.record)
        advanceTo(self.clock, 3)
        flow.setInterval(2)
        self.clock.advance(0)
        advanceTo(self.clock, 8)
        self.assertEqual(self.record.times("a"), [3, 5, 7])
        flow.setInterval(4)
        advanceTo(self.clock, 11)
        self.assertEqual(self.record.times("a"), [3, 5, 7, 11])

    def test_setIntervalLonger(self) -> None:
        """
        A longer interval postpones the next keep-alive to
        C{lastSent + interval}.
        """
        flow = self.scheduler.addFlow("a", 10, self.record)
        advanceTo(self.clock, 3)
        flow.setInterval(20)
        advanceTo(self.clock, 19.9)
        self.assertEqual(self.record.times("a"), [])
        advanceTo(self.clock, 45)
        self.assertEqual(self.record.times("a"), [20, 40])
        self.assertEqual(flow.interval, 20)

    def test_setIntervalOnRemovedFlow(self) -> None:
        """
        Changing a removed flow's interval sends nothing.
        """
        flow = self.scheduler.addFlow("a", 10, self.record)
        self.scheduler.removeFlow(flow)
        flow.setInterval(1)
        advanceTo(self.clock, 10)
        self.assertEqual(self.record.sends, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_manyFlowsSpreadOut(self) -> None:
        """
        Thousands of flows added at the same instant with the interval rule's
        intervals and first delays spread their keep-alives evenly over the
        first interval, and every flow is served at its deadline.
        """
        rng = random.Random(5060)
        count = 4000
        expected = {}
        for index in range(count):
            interval = keepAliveInterval(30_000, rng)
            expected[f"flow{index}"] = firstDelay(interval, rng)
            self.scheduler.addFlow(f"flow{index}", interval, self.record, firstDeadline=expected[f"flow{index}"])
        self.assertEqual(len(self.scheduler), count)
        advanceTo(self.clock, 23.9)  # the longest possible interval
        first: dict[str, float] = {}
        for name, when in self.record.sends:
            first.setdefault(name, when)
        self.assertEqual(first.keys(), expected.keys())
        # Each flow is served at its deadline, or up to the tolerance early
        # when it falls due in the same pass as another flow.
        early = [expected[name] - when for name, when in first.items()]
        self.assertTrue(all(0 <= e <= self.scheduler.tolerance for e in early), max(early))
        # Intervals are within (21.51, 23.9] s, so first deadlines are close
        # to uniform over the first 21.5 s: each tenth of it holds about
        # 4000 * 2.15 / 22.7 = 379 of them (seeded: no flakiness).
        bins = [0] * 10
        for when in first.values():
            if when < 21.5:
                bins[int(when / 2.15)] += 1
        self.assertTrue(all(300 <= n <= 460 for n in bins), bins)

    def test_batchBoundedPerTick(self) -> None:
        """
        Flows due together are sent in passes of at most C{maxSendsPerTick},
        each followed by a zero-delay re-arm that lets the reactor run.
        """
        scheduler = KeepAliveScheduler(self.clock, maxSendsPerTick=1000)
        scheduler.startService()
        delays: list[float] = []
        callLater = self.clock.callLater

        def countingCallLater(delay, *args, **kw):
            delays.append(delay)
            return callLater(delay, *args, **kw)

        self.clock.callLater = countingCallLater
        for index in range(2500):
            scheduler.addFlow(f"flow{index}", 10, self.record, firstDeadline=5)
        advanceTo(self.clock, 5)
        self.assertEqual(len(self.record.sends), 2500)
        self.assertEqual({when for _, when in self.record.sends}, {5})
        self.assertEqual(delays, [5, 0, 0, 10])


class FailureTests(SchedulerTestsMixin, SynchronousTestCase):
    def test_raisingSend(self) -> None:
        """
        A send that raises is counted and logged with the flow's name; the
        other flows and later keep-alives carry on.
        """

        def broken(flow: KeepAliveFlow) -> None:
            raise OSError(101, "Network is unreachable")

        bad = self.scheduler.addFlow("bad", 5, broken)
        good = self.scheduler.addFlow("good", 5, self.record)
        advanceTo(self.clock, 15)
        self.assertEqual((bad.sendCount, bad.failureCount), (3, 3))
        self.assertEqual(bad.lastError, "OSError: [Errno 101] Network is unreachable")
        self.assertEqual((good.sendCount, good.failureCount), (3, 0))
        self.assertEqual(self.record.times("good"), [5, 10, 15])
        self.assertEqual([event["flowName"] for event in self.events], ["bad", "bad", "bad"])
        self.assertEqual({event["log_failure"].type for event in self.events}, {OSError})

    def test_deferredSend(self) -> None:
        """
        A send returning a Deferred: a numeric result is the round trip, a
        failure (now or later) is counted and logged, and neither blocks the
        next keep-alive.
        """
        pending: list[defer.Deferred] = []

        def options(flow: KeepAliveFlow) -> defer.Deferred:
            pending.append(defer.Deferred())
            return pending[-1]

        flow = self.scheduler.addFlow("options", 5, options)
        advanceTo(self.clock, 10)
        self.assertEqual(len(pending), 2)
        pending[0].callback(0.125)
        self.assertEqual(flow.lastRoundTrip, 0.125)
        pending[1].errback(TimeoutError("Timer F fired"))
        self.assertEqual(flow.failureCount, 1)
        self.assertEqual(flow.lastError, "TimeoutError: Timer F fired")
        advanceTo(self.clock, 15)
        self.assertEqual(flow.sendCount, 3)
        pending[2].callback("not a number")
        self.assertEqual(flow.lastRoundTrip, 0.125)
        self.assertEqual([event["flowName"] for event in self.events], ["options"])

    def test_alreadyFailedDeferred(self) -> None:
        """
        A send returning an already failed Deferred is counted at once.
        """
        flow = self.scheduler.addFlow("f", 5, lambda flow: defer.fail(ConnectionRefusedError()))
        advanceTo(self.clock, 10)
        self.assertEqual((flow.sendCount, flow.failureCount), (2, 2))
        self.assertEqual(len(self.events), 2)

    def test_realLoggerFlagsFailure(self) -> None:
        """
        With the class logger, a failed send reaches the global log as an
        error event carrying the failure.
        """
        del self.scheduler.log  # back to the class-level Logger()
        self.scheduler.addFlow("bad", 5, lambda flow: 1 / 0)
        advanceTo(self.clock, 5)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class LifecycleTests(SchedulerTestsMixin, SynchronousTestCase):
    def test_removeFlowStopsSends(self) -> None:
        """
        A removed flow sends nothing more; removing it again does nothing;
        removing the last flow leaves no delayed call.
        """
        a = self.scheduler.addFlow("a", 5, self.record)
        b = self.scheduler.addFlow("b", 5, self.record)
        advanceTo(self.clock, 5)
        self.scheduler.removeFlow(a)
        self.scheduler.removeFlow(a)
        self.assertFalse(a.active)
        self.assertEqual(len(self.scheduler), 1)
        advanceTo(self.clock, 12)
        self.assertEqual(self.record.times("a"), [5])
        self.assertEqual(self.record.times("b"), [5, 10])
        self.scheduler.removeFlow(b)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(list(self.scheduler.flows()), [])

    def test_removeForeignFlow(self) -> None:
        """
        Removing another scheduler's flow raises C{ValueError}.
        """
        other = KeepAliveScheduler(self.clock)
        flow = other.addFlow("a", 5, self.record)
        self.assertRaises(ValueError, self.scheduler.removeFlow, flow)
        self.assertTrue(flow.active)

    def test_stopServiceLeavesNoTimer(self) -> None:
        """
        C{stopService} cancels the timer and returns a fired Deferred;
        nothing is sent while stopped; on restart, keep-alives missed while
        stopped go out at once.
        """
        self.scheduler.addFlow("a", 5, self.record)
        advanceTo(self.clock, 5)
        result = self.successResultOf(self.scheduler.stopService())
        self.assertIsNone(result)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.scheduler.addFlow("b", 5, self.record)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        advanceTo(self.clock, 30)
        self.assertEqual(self.record.sends, [("a", 5)])
        self.scheduler.startService()
        self.clock.advance(0)
        self.assertEqual(sorted(self.record.sends[1:]), [("a", 30), ("b", 30)])
        advanceTo(self.clock, 35)
        self.assertEqual(self.record.times("a"), [5, 30, 35])

    def test_reentrantSend(self) -> None:
        """
        A send may remove its own flow, remove or add another one, or change
        its interval.
        """
        flows: dict[str, KeepAliveFlow] = {}

        def selfRemoving(flow: KeepAliveFlow) -> None:
            self.record(flow)
            self.scheduler.removeFlow(flow)
            self.scheduler.removeFlow(flows["victim"])
            flows["child"] = self.scheduler.addFlow("child", 1, self.record)

        def speedUp(flow: KeepAliveFlow) -> None:
            self.record(flow)
            flow.setInterval(2)

        flows["first"] = self.scheduler.addFlow("first", 5, selfRemoving)
        flows["victim"] = self.scheduler.addFlow("victim", 5, self.record, firstDeadline=5)
        flows["fast"] = self.scheduler.addFlow("fast", 5, speedUp, firstDeadline=4)
        advanceTo(self.clock, 8.5)
        self.assertEqual(self.record.times("first"), [5])
        self.assertEqual(self.record.times("victim"), [])
        self.assertEqual(self.record.times("child"), [6, 7, 8])
        self.assertEqual(self.record.times("fast"), [4, 6, 8])
        self.assertEqual(len(self.scheduler), 2)

    def test_staleEntriesBounded(self) -> None:
        """
        Removing flows and changing intervals does not let stale queue
        entries pile up: memory stays proportional to the live flows.
        """
        flows = [self.scheduler.addFlow(f"f{i}", 100, self.record) for i in range(6000)]
        for flow in flows[:5000]:
            self.scheduler.removeFlow(flow)
        for _ in range(3):
            for step, flow in enumerate(flows[5000:]):
                flow.setInterval(90 - step * 0.001 - _)
        live = len(self.scheduler)
        self.assertEqual(live, 1000)
        entries = sum(map(len, self.scheduler._slots.values()))
        self.assertLessEqual(entries, 2 * live + 1024)
        self.assertEqual(len(list(self.scheduler.flows())), 1000)

    def test_snapshot(self) -> None:
        """
        Snapshots are plain dicts with the flow's state, ordered by deadline.
        """
        a = self.scheduler.addFlow("a", 5, lambda flow: defer.succeed(0.05))
        self.scheduler.addFlow("b", 3, self.record)
        advanceTo(self.clock, 5)
        a.touch(5.5)
        self.assertEqual(
            self.scheduler.snapshot(),
            [
                {
                    "name": "b",
                    "interval": 3.0,
                    "lastSent": 3.0,
                    "deadline": 6.0,
                    "sendCount": 1,
                    "failureCount": 0,
                    "lastError": None,
                    "lastRoundTrip": None,
                    "active": True,
                },
                {
                    "name": "a",
                    "interval": 5.0,
                    "lastSent": 5.5,
                    "deadline": 10.5,
                    "sendCount": 1,
                    "failureCount": 0,
                    "lastError": None,
                    "lastRoundTrip": 0.05,
                    "active": True,
                },
            ],
        )


class PropertyTests(SynchronousTestCase):
    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.floats(min_value=0.5, max_value=10),
                st.lists(st.floats(min_value=0, max_value=40), max_size=30),
            ),
            min_size=1,
            max_size=6,
        )
    )
    def test_neverIdleLongerThanInterval(self, specs: list[tuple[float, list[float]]]) -> None:
        """
        Whatever the real traffic, no flow goes longer than its interval
        without a send (real or keep-alive), and no keep-alive is sent while
        the flow was used less than an interval (minus the tolerance) ago.
        """
        clock = task.Clock()
        scheduler = KeepAliveScheduler(clock)
        scheduler.startService()
        sends: dict[str, list[tuple[float, str]]] = {}

        def keepAlive(flow: KeepAliveFlow) -> None:
            sends[flow.name].append((clock.seconds(), "keep-alive"))

        flows = {}
        traffic = []
        for index, (interval, touches) in enumerate(specs):
            name = f"flow{index}"
            sends[name] = [(0.0, "created")]
            flows[name] = scheduler.addFlow(name, interval, keepAlive)
            traffic.extend((when, name) for when in touches)
        horizon = 45.0
        for when, name in sorted(traffic):
            advanceTo(clock, when)
            flows[name].touch()
            sends[name].append((clock.seconds(), "traffic"))
        advanceTo(clock, horizon)
        for name, flow in flows.items():
            times = sends[name] + [(horizon, "end")]
            for (before, _), (after, kind) in zip(times, times[1:]):
                self.assertLessEqual(after - before, flow.interval + 1e-9, (name, before, after))
                if kind == "keep-alive":
                    self.assertGreaterEqual(
                        after - before, flow.interval - scheduler.tolerance - 1e-9, (name, before, after)
                    )
