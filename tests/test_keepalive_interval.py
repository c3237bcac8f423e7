"""
Tests for L{lmevoip.keepalive.interval}, the NAT session time to keep-alive
interval rule.
"""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from lmevoip.keepalive import interval as rule
from lmevoip.keepalive.interval import (
    KeepAliveParameterError,
    checkInterval,
    firstDelay,
    keepAliveInterval,
    maximumInterval,
    validateNatSessionTime,
)


class FixedRandom(random.Random):
    """
    A C{random.Random} whose C{random()} returns a fixed value.
    """

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


class ValidationTests(SynchronousTestCase):
    def test_range(self) -> None:
        """
        1,000 ms to 3,600,000 ms are accepted and returned unchanged.
        """
        for value in (1_000, 1_001, 30_000, 3_600_000):
            self.assertEqual(validateNatSessionTime(value), value)

    def test_outOfRange(self) -> None:
        """
        Values outside the range, non-integers and booleans raise
        L{KeepAliveParameterError}, a C{ValueError} naming the parameter.
        """
        for value in (999, 0, -30_000, 3_600_001, 10**12, 30_000.0, "30000", None, True):
            error = self.assertRaises(KeepAliveParameterError, validateNatSessionTime, value)
            self.assertIsInstance(error, ValueError)
            self.assertEqual(error.parameter, "natSessionTimeMs")
            self.assertEqual(error.value, value)
            self.assertIn("natSessionTimeMs=", str(error))

    def test_badLosses(self) -> None:
        """
        C{losses} must be an integer within 0 to C{MAX_LOSSES}.
        """
        for losses in (-1, rule.MAX_LOSSES + 1, 1.0, True):
            error = self.assertRaises(KeepAliveParameterError, maximumInterval, 30_000, losses)
            self.assertEqual(error.parameter, "losses")

    def test_checkInterval(self) -> None:
        """
        Intervals are positive finite numbers, returned as floats.
        """
        self.assertEqual(checkInterval(2), 2.0)
        self.assertIsInstance(checkInterval(2), float)
        for value in (0, -0.5, float("nan"), float("inf"), "1", None, False):
            self.assertRaises(KeepAliveParameterError, checkInterval, value)
        self.assertEqual(self.assertRaises(KeepAliveParameterError, checkInterval, 0, "period").parameter, "period")


class RuleTests(SynchronousTestCase):
    def test_workedExamples(self) -> None:
        """
        The documented examples: ceiling = 0.8 T - 0.1 s, and the jitter
        shortens it by at most 10 %.
        """
        for sessionMs, ceiling in ((1_000, 0.7), (10_000, 7.9), (30_000, 23.9)):
            self.assertAlmostEqual(maximumInterval(sessionMs), ceiling)
            self.assertAlmostEqual(keepAliveInterval(sessionMs, FixedRandom(0.0)), ceiling)
            self.assertAlmostEqual(keepAliveInterval(sessionMs, FixedRandom(0.5)), ceiling * 0.95)
            self.assertGreater(keepAliveInterval(sessionMs, FixedRandom(0.999999)), ceiling * 0.9)

    def test_lossTolerance(self) -> None:
        """
        Surviving C{losses} lost keep-alives divides the ceiling by
        C{losses + 1}.
        """
        self.assertAlmostEqual(maximumInterval(30_000, losses=1), 23.9 / 2)
        self.assertAlmostEqual(maximumInterval(1_000, losses=3), 0.7 / 4)

    @given(
        st.integers(min_value=rule.MIN_NAT_SESSION_TIME_MS, max_value=rule.MAX_NAT_SESSION_TIME_MS),
        st.integers(min_value=0, max_value=rule.MAX_LOSSES),
        st.integers(min_value=0, max_value=2**32),
    )
    def test_bindingNeverExpires(self, sessionMs: int, losses: int, seed: int) -> None:
        """
        For every valid session time, loss tolerance and random draw, the
        longest wire gap ((losses + 1) intervals plus the lateness allowance)
        stays within 80 % of the NAT session time, and the jitter never
        lengthens the interval.
        """
        interval = keepAliveInterval(sessionMs, random.Random(seed), losses)
        ceiling = maximumInterval(sessionMs, losses)
        self.assertGreater(interval, 0)
        self.assertLessEqual(interval, ceiling)
        self.assertGreater(interval, ceiling * (1 - rule.JITTER))
        worstGap = (losses + 1) * interval + rule.LATENESS_ALLOWANCE
        self.assertLessEqual(worstGap, rule.SAFETY_FACTOR * sessionMs / 1000 + 1e-9)

    def test_jitterSpreadsIntervals(self) -> None:
        """
        Flows get different intervals, spread over the whole jitter band.
        """
        rng = random.Random(42)
        intervals = [keepAliveInterval(30_000, rng) for _ in range(2000)]
        self.assertGreater(len(set(intervals)), 1990)
        self.assertLess(min(intervals), 23.9 * 0.91)
        self.assertGreater(max(intervals), 23.9 * 0.99)


class FirstDelayTests(SynchronousTestCase):
    def test_bounds(self) -> None:
        """
        The first delay is within (0, interval]: never zero, never more than
        one interval.
        """
        self.assertEqual(firstDelay(10, FixedRandom(0.0)), 10)
        self.assertGreater(firstDelay(10, FixedRandom(0.9999999)), 0)
        self.assertAlmostEqual(firstDelay(10, FixedRandom(0.25)), 7.5)

    def test_uniformSpread(self) -> None:
        """
        Many flows created together get first delays spread evenly over the
        interval.
        """
        rng = random.Random(7)
        delays = [firstDelay(20, rng) for _ in range(10_000)]
        bins = [0] * 10
        for delay in delays:
            bins[min(9, int(delay / 2))] += 1
        self.assertTrue(all(900 <= n <= 1100 for n in bins), bins)

    def test_badInterval(self) -> None:
        """
        A non-positive interval is refused.
        """
        self.assertRaises(KeepAliveParameterError, firstDelay, 0, random.Random(1))
