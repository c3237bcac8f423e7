"""
Tests for L{lmevoip.rtp.pacer}: the shared media clock.
"""

from twisted.application.service import IService
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from lmevoip.interfaces import IPacer
from lmevoip.rtp.pacer import Pacer, PacerStats


class Recorder:
    """
    A ticker that records (clock time, tick time) of each call.
    """

    def __init__(self, clock, name=""):
        self.clock = clock
        self.name = name
        self.calls = []

    def __call__(self, tickTime):
        self.calls.append((self.clock.seconds(), tickTime))

    def tickTimes(self):
        return [round(tick, 9) for _, tick in self.calls]

    def __repr__(self):
        return f"<Recorder {self.name}>"


def advance(clock, seconds, step=0.001):
    """
    Advance C{clock} by C{seconds} in small steps (as a busy reactor would
    look), ending exactly at the target.
    """
    target = clock.seconds() + seconds
    while clock.seconds() + step < target - 1e-12:
        clock.advance(step)
    clock.advance(target - clock.seconds())


class PacerTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.pacer = Pacer(self.clock)
        self.pacer.startService()

    def test_interfaces(self):
        """
        L{Pacer} provides L{IPacer} and is a service.
        """
        verifyObject(IPacer, self.pacer)
        verifyObject(IService, self.pacer)

    def test_ticksOnTheGrid(self):
        """
        A ticker added at time 0 is called every 20 ms from 0.02 on, with
        the scheduled tick time, at that exact clock time.
        """
        recorder = Recorder(self.clock)
        first = self.pacer.add(recorder, 20)
        self.assertAlmostEqual(first, 0.02, places=9)
        for _ in range(5):
            self.clock.advance(0.02)
        self.assertEqual(recorder.tickTimes(), [0.02, 0.04, 0.06, 0.08, 0.1])
        for actual, scheduled in recorder.calls:
            self.assertAlmostEqual(actual, scheduled, places=9)
        self.assertEqual(self.pacer.stats().missedTicks, 0)

    def test_oneTimerForManyTickers(self):
        """
        However many tickers there are, one reactor timer drives them, and
        each is called once per tick, on its own sub-tick, exactly 20 ms
        apart.
        """
        recorders = [Recorder(self.clock, str(i)) for i in range(200)]
        for recorder in recorders:
            self.pacer.add(recorder, 20)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        for _ in range(3):
            self.clock.advance(0.02)
            self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        for recorder in recorders:
            first = recorder.tickTimes()[0]
            self.assertIn(first, [0.005, 0.01, 0.015, 0.02])
            self.assertEqual(recorder.tickTimes(), [round(first + 0.02 * k, 9) for k in range(3)])
        self.assertEqual(len(self.pacer), 200)
        self.assertEqual(self.pacer.stats().timers, 1)

    def test_subTicksSpread(self):
        """
        The 20 ms tick is divided into 4 sub-ticks 5 ms apart; each new
        ticker goes to the least loaded one (the one on the tick first,
        then the soonest), so each batch holds a quarter of the tickers.
        """
        recorders = [Recorder(self.clock, str(i)) for i in range(8)]
        firsts = [round(self.pacer.add(recorder, 20), 9) for recorder in recorders]
        self.assertEqual(firsts, [0.02, 0.005, 0.01, 0.015] * 2)
        perSubTick = []
        for _ in range(8):
            before = sum(len(r.calls) for r in recorders)
            self.clock.advance(0.005)
            perSubTick.append(sum(len(r.calls) for r in recorders) - before)
        self.assertEqual(perSubTick, [2] * 8)
        for recorder, first in zip(recorders, firsts):
            self.assertEqual(recorder.tickTimes(), [first, round(first + 0.02, 9)])
            for actual, scheduled in recorder.calls:
                self.assertAlmostEqual(actual, scheduled, places=9)

    def test_timerOnlyForOccupiedSubTicks(self):
        """
        The timer is armed only for sub-ticks that have tickers: a single
        20 ms ticker wakes the reactor once per 20 ms, as without phases.
        """
        recorder = Recorder(self.clock)
        self.pacer.add(recorder, 20)
        wakeUps = []
        for _ in range(4):
            [call] = self.clock.getDelayedCalls()
            wakeUps.append(round(call.getTime(), 5))
            self.clock.advance(call.getTime() - self.clock.seconds())
        self.assertEqual(wakeUps, [0.02, 0.04, 0.06, 0.08])
        self.assertEqual(self.pacer.stats().ticks, 4)

    def test_earlierSubTickRearms(self):
        """
        A ticker added to a sub-tick sooner than the one the timer is armed
        for gets its first call on time.
        """
        onTick = Recorder(self.clock)
        self.pacer.add(onTick, 20)             # armed for 0.02
        self.clock.advance(0.001)
        early = Recorder(self.clock)
        self.assertAlmostEqual(self.pacer.add(early, 20), 0.005, places=9)
        self.clock.advance(0.004)
        self.assertEqual(early.calls, [(0.005, 0.005)])
        self.clock.advance(0.015)
        self.assertEqual(onTick.tickTimes(), [0.02])

    def test_onePhaseIsOneBatch(self):
        """
        With C{phases=1} every ticker of a tick runs in one batch on the
        tick.
        """
        pacer = Pacer(self.clock, phases=1)
        pacer.startService()
        recorders = [Recorder(self.clock, str(i)) for i in range(5)]
        self.assertEqual({round(pacer.add(r), 9) for r in recorders}, {0.02})
        self.clock.advance(0.02)
        self.assertEqual([r.tickTimes() for r in recorders], [[0.02]] * 5)

    def test_driftFree(self):
        """
        Each tick is scheduled from the origin, not from the last firing: a
        clock that moves in odd steps (each firing a little late) still
        gets tick k at 0.02 * k, and lateness does not accumulate.
        """
        recorder = Recorder(self.clock)
        self.pacer.add(recorder, 20)
        advance(self.clock, 1.0, step=0.0007)
        self.assertEqual(recorder.tickTimes(), [round(0.02 * k, 9) for k in range(1, 51)])
        for actual, scheduled in recorder.calls:
            self.assertGreaterEqual(actual, scheduled - 1e-6)
            self.assertLess(actual - scheduled, 0.0007 + 1e-9)
        stats = self.pacer.stats()
        self.assertEqual(stats.ticks, 50)
        self.assertEqual(stats.missedTicks, 0)
        self.assertLess(stats.maxEver, 0.0007 + 1e-9)

    def test_missedTicksSkipped(self):
        """
        When the reactor comes back more than a period late, the ticks a
        whole period late or more are skipped (each counted in missedTicks,
        with the lateness it had when given up), the tick less than a
        period late runs, and the grid is kept.
        """
        recorder = Recorder(self.clock)
        self.pacer.add(recorder, 20)
        self.clock.advance(0.02)
        self.clock.advance(0.075)   # now 0.095: ticks 0.04, 0.06, 0.08 are due
        self.assertEqual(recorder.tickTimes(), [0.02, 0.08])
        stats = self.pacer.stats()
        self.assertEqual((stats.ticks, stats.missedTicks), (2, 2))
        self.assertEqual(sorted(round(x, 9) for x in self.pacer._lateness),
                         [0.0, 0.015, 0.035, 0.055])
        self.assertAlmostEqual(stats.max, 0.055, places=9)
        self.clock.advance(0.005)   # 0.1
        self.assertEqual(recorder.tickTimes(), [0.02, 0.08, 0.1])

    def test_slowBatchCountsEveryTick(self):
        """
        Regression: a batch that takes longer than the tick (here a ticker
        that takes 30 ms of a 20 ms tick) used to make the pacer jump to the
        next future tick without counting the ticks in between. Now every
        due tick either runs (caught up at once while less than a period
        late) or is counted in missedTicks, and the lateness recorded is
        the real one: the ticker's calls are up to 10 ms late, the end of
        each batch 30 ms or more after its scheduled time.
        """
        calls = []

        def slow(tickTime):
            calls.append((self.clock.seconds(), tickTime))
            if tickTime < 0.4 - 1e-9:
                self.clock.advance(0.03)

        self.pacer.add(slow, 20)
        while self.clock.seconds() < 0.4 - 1e-9:
            self.clock.advance(0.001)
        self.assertAlmostEqual(self.clock.seconds(), 0.41, places=9)
        due = 20                       # 0.02, 0.04, ..., 0.4
        stats = self.pacer.stats()
        self.assertEqual(stats.ticks, len(calls))
        self.assertGreater(stats.missedTicks, 0)
        self.assertEqual(stats.ticks + stats.missedTicks, due)
        # Two of every three ticks run: 30 ms of work per 20 ms tick.
        self.assertEqual(len(calls), 14)
        for actual, scheduled in calls:
            self.assertLess(actual - scheduled, 0.02)
        self.assertEqual([round(t, 9) for _, t in calls][:4], [0.02, 0.04, 0.08, 0.1])
        self.assertGreaterEqual(stats.max, 0.02 - 1e-9)        # the skipped ones
        self.assertGreaterEqual(stats.finishMax, 0.03 - 1e-9)
        self.assertGreaterEqual(stats.finishP99, 0.03 - 1e-9)

    def test_catchUpWithinAPeriod(self):
        """
        Sub-ticks less than a period late when the timer fires all run, in
        order, at once, each with its own scheduled time; none is skipped.
        """
        recorders = [Recorder(self.clock, str(i)) for i in range(4)]
        for recorder in recorders:
            self.pacer.add(recorder, 20)       # 0.02, 0.005, 0.01, 0.015
        self.clock.advance(0.019)              # 0.005, 0.01, 0.015 due
        self.assertEqual([r.tickTimes() for r in recorders],
                         [[], [0.005], [0.01], [0.015]])
        for recorder in recorders[1:]:
            self.assertAlmostEqual(recorder.calls[0][0], 0.019, places=9)
        stats = self.pacer.stats()
        self.assertEqual((stats.ticks, stats.missedTicks), (3, 0))
        self.assertAlmostEqual(stats.max, 0.014, places=9)

    def test_oneFiringRunsAtMostAPeriod(self):
        """
        While overloaded, one firing runs at most one period of sub-ticks
        and then lets the reactor run other due timers before it catches up
        further.
        """
        order = []
        overloaded = []

        def slow(name):
            def ticker(tickTime):
                order.append(name)
                if overloaded:
                    self.clock.rightNow += 0.006   # busy: no other call runs
            return ticker

        def other():
            order.append("other")
            overloaded.clear()

        for name in "abcd":
            self.pacer.add(slow(name), 20)     # a 0.02, b 0.005, c 0.01, d 0.015
        self.clock.advance(0.015)
        del order[:]
        overloaded.append(True)
        self.clock.callLater(0.005, other)     # due at 0.02, like a
        self.clock.advance(0.005)              # a at 0.02; then b, c, d caught up
        self.assertEqual(order, ["a", "b", "c", "d", "other", "a"])
        self.assertEqual(self.pacer.stats().missedTicks, 0)

    def test_longStallCountedInBulk(self):
        """
        After a stall much longer than the lateness window, every skipped
        tick is counted, the window holds only the most recent ones, and
        ticking resumes on the grid.
        """
        pacer = Pacer(self.clock, window=10)
        pacer.startService()
        recorder = Recorder(self.clock)
        pacer.add(recorder, 20)
        self.clock.advance(0.02)
        self.clock.advance(100.0)              # 100.02: ticks 0.04 .. 100.02 due
        stats = pacer.stats()
        self.assertEqual(stats.ticks, 2)
        self.assertEqual(stats.missedTicks, 4999)
        self.assertEqual(len(pacer._lateness), 10)
        self.assertEqual(recorder.tickTimes(), [0.02, 100.02])
        self.clock.advance(0.02)
        self.assertEqual(recorder.tickTimes(), [0.02, 100.02, 100.04])

    def test_finishLateness(self):
        """
        The lateness of the end of each batch is recorded too: a batch that
        takes 3 ms ends 3 ms after its scheduled time.
        """
        self.pacer.add(lambda tickTime: self.clock.advance(0.003), 20)
        for k in range(1, 11):
            self.clock.advance(0.02 * k - self.clock.seconds())   # each tick on time
        stats = self.pacer.stats()
        self.assertEqual(stats.ticks, 10)
        self.assertAlmostEqual(stats.p99, 0.0, places=9)
        self.assertAlmostEqual(stats.finishP99, 0.003, places=9)
        self.assertAlmostEqual(stats.finishMax, 0.003, places=9)

    def test_latenessPercentiles(self):
        """
        stats() gives p50, p99 and max of actual minus scheduled times.
        """
        recorder = Recorder(self.clock)
        self.pacer.add(recorder, 20)
        # 100 ticks: 98 on time, one 3 ms late and one 7 ms late.
        for k in range(1, 101):
            late = {10: 0.003, 50: 0.007}.get(k, 0.0)
            self.clock.advance(0.02 * k + late - self.clock.seconds())
        stats = self.pacer.stats()
        self.assertIsInstance(stats, PacerStats)
        self.assertEqual(stats.ticks, 100)
        self.assertAlmostEqual(stats.p50, 0.0, places=9)
        self.assertAlmostEqual(stats.p99, 0.003, places=9)
        self.assertAlmostEqual(stats.max, 0.007, places=9)
        self.assertAlmostEqual(stats.maxEver, 0.007, places=9)

    def test_latenessWindowBounded(self):
        """
        The percentiles cover the last C{window} ticks only; maxEver keeps
        the worst since the start.
        """
        pacer = Pacer(self.clock, window=10)
        pacer.startService()
        recorder = Recorder(self.clock)
        pacer.add(recorder, 20)
        self.clock.advance(0.025)   # first tick 5 ms late
        for _ in range(20):
            self.clock.advance(0.02)
        stats = pacer.stats()
        self.assertEqual(len(pacer._lateness), 10)
        self.assertAlmostEqual(stats.max, 0.005, places=9)   # all 5 ms late
        recorder.calls.clear()
        for _ in range(12):
            self.clock.advance(0.02 - 0.005 if not recorder.calls else 0.02)
        self.assertAlmostEqual(pacer.stats().max, 0.0, places=9)
        self.assertAlmostEqual(pacer.stats().maxEver, 0.005, places=9)

    def test_multiplesShareTheTimer(self):
        """
        40 and 60 ms tickers ride on the 20 ms timer, called on every second
        and third tick from their first.
        """
        every20 = Recorder(self.clock)
        every40 = Recorder(self.clock)
        every60 = Recorder(self.clock)
        self.pacer.add(every20, 20)
        self.assertAlmostEqual(self.pacer.add(every40, 40), 0.02, places=9)
        self.assertAlmostEqual(self.pacer.add(every60, 60), 0.02, places=9)
        for _ in range(7):
            self.clock.advance(0.02)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertEqual(every40.tickTimes(), [0.02, 0.06, 0.1, 0.14])
        self.assertEqual(every60.tickTimes(), [0.02, 0.08, 0.14])
        self.assertEqual(len(every20.calls), 7)

    def test_phasesSpread(self):
        """
        Tickers with a multiple of the tick are spread over the ticks (and
        their sub-ticks), so each batch calls about the same number of them.
        With one phase, six 60 ms tickers are two per 20 ms tick.
        """
        pacer = Pacer(self.clock, phases=1)
        pacer.startService()
        recorders = [Recorder(self.clock, str(i)) for i in range(6)]
        firsts = [round(pacer.add(recorder, 60), 9) for recorder in recorders]
        self.assertEqual(firsts, [0.02, 0.04, 0.06, 0.02, 0.04, 0.06])
        perTick = []
        for _ in range(6):
            before = sum(len(r.calls) for r in recorders)
            self.clock.advance(0.02)
            perTick.append(sum(len(r.calls) for r in recorders) - before)
        self.assertEqual(perTick, [2, 2, 2, 2, 2, 2])

    def test_multiplesSpreadOverSubTicks(self):
        """
        With 4 phases a 60 ms ticker has 12 slots 5 ms apart: the ticks
        first, then the sub-ticks between them; each gets its calls 60 ms
        apart.
        """
        recorders = [Recorder(self.clock, str(i)) for i in range(6)]
        firsts = [round(self.pacer.add(recorder, 60), 9) for recorder in recorders]
        self.assertEqual(firsts, [0.02, 0.04, 0.06, 0.005, 0.01, 0.015])
        advance(self.clock, 0.14, step=0.005)
        for recorder, first in zip(recorders, firsts):
            self.assertEqual(recorder.tickTimes(),
                             [round(first + 0.06 * k, 9) for k in range(3)
                              if first + 0.06 * k <= 0.14 + 1e-9])

    def test_otherPtimeGetsItsOwnTimer(self):
        """
        A 30 ms ticker on a 20 ms pacer gets a second timer with a 30 ms
        period (and sub-ticks 7.5 ms apart); a second 30 ms ticker shares
        it, on the next sub-tick.
        """
        a = Recorder(self.clock)
        b = Recorder(self.clock)
        c = Recorder(self.clock)
        self.pacer.add(a, 20)
        self.pacer.add(b, 30)
        self.pacer.add(c, 30)
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)
        advance(self.clock, 0.06, step=0.0025)
        self.assertEqual(b.tickTimes(), [0.03, 0.06])
        self.assertEqual(c.tickTimes(), [0.0075, 0.0375])
        self.assertEqual(a.tickTimes(), [0.02, 0.04, 0.06])
        self.assertEqual(self.pacer.stats().timers, 2)

    def test_removeAndIdle(self):
        """
        Removing the last ticker disarms the timer; a ticker added back
        later lands on the same grid, and with an anchor on its old phase.
        """
        every40 = Recorder(self.clock)
        self.pacer.add(every40, 40)
        self.clock.advance(0.02)
        self.assertTrue(self.pacer.remove(every40))
        self.assertFalse(self.pacer.remove(every40))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(0.21)   # 0.23
        first = self.pacer.add(every40, 40, anchor=0.02)
        # Ticks of phase 0.02 (mod 0.04) after 0.23: 0.26, 0.30, ...
        self.assertAlmostEqual(first, 0.26, places=9)
        for _ in range(5):
            self.clock.advance(0.02)
        self.assertEqual(every40.tickTimes(), [0.02, 0.26, 0.3])

    def test_removeDuringTick(self):
        """
        A ticker may remove itself or another ticker while being called; a
        removed ticker is not called again, even later in the same batch.
        """
        calls = []

        def first(tickTime):
            calls.append("first")
            self.pacer.remove(second)
            self.pacer.remove(first)

        def second(tickTime):
            calls.append("second")

        pacer = Pacer(self.clock, phases=1)    # both in the same batch
        pacer.startService()
        self.pacer = pacer
        pacer.add(first)
        pacer.add(second)
        self.clock.advance(0.02)
        self.clock.advance(0.02)
        self.assertEqual(calls, ["first"])
        self.assertEqual(len(pacer), 0)

    def test_tickerErrorsIsolated(self):
        """
        A ticker that raises is logged and counted; the others are still
        called and the timer keeps running.
        """
        def broken(tickTime):
            raise ZeroDivisionError("boom")

        recorder = Recorder(self.clock)
        self.pacer.add(broken)
        self.pacer.add(recorder)
        for _ in range(3):
            self.clock.advance(0.02)
        self.assertEqual(len(recorder.calls), 3)
        self.assertEqual(self.pacer.stats().errors, 3)
        # Rate limited: one log event per second.
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_notStarted(self):
        """
        Tickers added before the service starts are called from its start;
        stopService disarms the timer and keeps the tickers.
        """
        pacer = Pacer(self.clock)
        recorder = Recorder(self.clock)
        pacer.add(recorder)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(0.1)
        pacer.startService()
        self.clock.advance(0.02)
        self.assertEqual(recorder.tickTimes(), [0.12])
        pacer.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(0.1)
        self.assertEqual(len(recorder.calls), 1)
        self.assertIn(recorder, pacer)

    def test_badArguments(self):
        """
        A ticker cannot be added twice; ptime, tick and phases must be
        positive integers.
        """
        recorder = Recorder(self.clock)
        self.pacer.add(recorder)
        self.assertRaises(ValueError, self.pacer.add, recorder)
        self.assertRaises(ValueError, self.pacer.add, Recorder(self.clock), 0)
        self.assertRaises(ValueError, self.pacer.add, Recorder(self.clock), 12.5)
        self.assertRaises(ValueError, Pacer, self.clock, 0)
        self.assertRaises(ValueError, Pacer, self.clock, 20, 0)
        self.assertRaises(ValueError, Pacer, self.clock, phases=0)
        self.assertRaises(ValueError, Pacer, self.clock, phases=2.5)
