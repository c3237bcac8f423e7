"""
Tests for L{lmevoip.ratelimit}.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from lmevoip.ratelimit import LogRateLimiter


class LogRateLimiterTests(SynchronousTestCase):
    def test_onePerInterval(self) -> None:
        """
        The first event of a kind passes; the next ones within the interval
        are held back and counted, and the next one allowed reports them.
        """
        clock = Clock()
        limiter = LogRateLimiter(clock, interval=10)
        self.assertEqual(limiter.allow("unparseable"), 0)
        self.assertEqual([limiter.allow("unparseable") for _ in range(5)], [None] * 5)
        self.assertEqual(limiter.allow("other"), 0)
        clock.advance(9.9)
        self.assertIsNone(limiter.allow("unparseable"))
        clock.advance(0.1)
        self.assertEqual(limiter.allow("unparseable"), 6)
        self.assertIsNone(limiter.allow("unparseable"))

    def test_boundedKinds(self) -> None:
        """
        Beyond C{maxKinds}, new kinds pass and are not remembered.
        """
        clock = Clock()
        limiter = LogRateLimiter(clock, interval=10, maxKinds=2)
        self.assertEqual(limiter.allow("a"), 0)
        self.assertEqual(limiter.allow("b"), 0)
        self.assertEqual([limiter.allow("c") for _ in range(3)], [0, 0, 0])
        self.assertIsNone(limiter.allow("a"))
        self.assertEqual(len(limiter._last), 2)
