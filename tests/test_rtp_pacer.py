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
        each is called once per tick.
        """
        recorders = [Recorder(self.clock, str(i)) for i in range(200)]
        for recorder in recorders:
            self.pacer.add(recorder, 20)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        for _ in range(3):
            self.clock.advance(0.02)
            self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        for recorder in recorders:
            self.assertEqual(recorder.tickTimes(), [0.02, 0.04, 0.06])
        self.assertEqual(len(self.pacer), 200)
        self.assertEqual(self.pacer.stats().timers, 1)

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
        When the reactor comes back more than a period late, the missed
        ticks are skipped (counted in missedTicks), only the latest due
        tick runs, its lateness is measured from the first missed tick, and
        the grid is kept.
        """
        recorder = Recorder(self.clock)
        self.pacer.add(recorder, 20)
        self.clock.advance(0.02)
        self.clock.advance(0.075)   # now 0.095: ticks 0.04, 0.06, 0.08 are due
        self.assertEqual(recorder.tickTimes(), [0.02, 0.08])
        stats = self.pacer.stats()
        self.assertEqual(stats.missedTicks, 2)
        self.assertAlmostEqual(stats.max, 0.055, places=9)
        self.clock.advance(0.005)   # 0.1
        self.assertEqual(recorder.tickTimes(), [0.02, 0.08, 0.1])

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
        Tickers with a multiple of the tick are spread over the phases, so
        each tick calls about the same number of them.
        """
        recorders = [Recorder(self.clock, str(i)) for i in range(6)]
        firsts = [round(self.pacer.add(recorder, 60), 9) for recorder in recorders]
        self.assertEqual(firsts, [0.02, 0.04, 0.06, 0.02, 0.04, 0.06])
        perTick = []
        for _ in range(6):
            before = sum(len(r.calls) for r in recorders)
            self.clock.advance(0.02)
            perTick.append(sum(len(r.calls) for r in recorders) - before)
        self.assertEqual(perTick, [2, 2, 2, 2, 2, 2])

    def test_otherPtimeGetsItsOwnTimer(self):
        """
        A 30 ms ticker on a 20 ms pacer gets a second timer with a 30 ms
        period; a second 30 ms ticker shares it.
        """
        a = Recorder(self.clock)
        b = Recorder(self.clock)
        c = Recorder(self.clock)
        self.pacer.add(a, 20)
        self.pacer.add(b, 30)
        self.pacer.add(c, 30)
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)
        for _ in range(6):
            self.clock.advance(0.01)
        self.assertEqual(b.tickTimes(), [0.03, 0.06])
        self.assertEqual(c.tickTimes(), [0.03, 0.06])
        self.assertEqual(a.tickTimes(), [0.02, 0.04, 0.06])

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

        self.pacer.add(first)
        self.pacer.add(second)
        self.clock.advance(0.02)
        self.clock.advance(0.02)
        self.assertEqual(calls, ["first"])
        self.assertEqual(len(self.pacer), 0)

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
        A ticker cannot be added twice; ptime and tick must be positive
        integers.
        """
        recorder = Recorder(self.clock)
        self.pacer.add(recorder)
        self.assertRaises(ValueError, self.pacer.add, recorder)
        self.assertRaises(ValueError, self.pacer.add, Recorder(self.clock), 0)
        self.assertRaises(ValueError, self.pacer.add, Recorder(self.clock), 12.5)
        self.assertRaises(ValueError, Pacer, self.clock, 0)
        self.assertRaises(ValueError, Pacer, self.clock, 20, 0)
