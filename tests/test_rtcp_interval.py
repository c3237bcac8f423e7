"""
Tests for L{lmevoip.rtp.rtcpinterval}: RFC 3550 section 6.3 / appendix A.7.
"""

import random

from twisted.trial.unittest import SynchronousTestCase

from lmevoip.rtp.rtcpinterval import (
    COMPENSATION,
    RTCP_MIN_TIME,
    RtcpSchedule,
    deterministicInterval,
    rtcpInterval,
)


class FixedRandom:
    """
    A stand-in for C{random.Random} returning queued values from random().
    """

    def __init__(self, *values):
        self.values = list(values)
        self.calls = 0

    def random(self):
        self.calls += 1
        return self.values.pop(0)


class DeterministicIntervalTests(SynchronousTestCase):
    def test_constants(self):
        self.assertEqual(RTCP_MIN_TIME, 5.0)
        self.assertAlmostEqual(COMPENSATION, 1.21828)

    def test_twoPartyCallHitsMinimum(self):
        # 500 octets/s is 5% of G.711 at 20 ms with IP/UDP/RTP headers.
        self.assertEqual(deterministicInterval(2, 2, 500.0, True, 100.0, False), 5.0)
        self.assertEqual(deterministicInterval(2, 2, 500.0, True, 100.0, True), 2.5)

    def test_receiversShareThreeQuarters(self):
        td = deterministicInterval(100, 2, 500.0, False, 100.0, False)
        self.assertAlmostEqual(td, 100.0 * 98 / (500.0 * 0.75))

    def test_sendersShareAQuarter(self):
        td = deterministicInterval(100, 10, 500.0, True, 400.0, False)
        self.assertAlmostEqual(td, 400.0 * 10 / (500.0 * 0.25))

    def test_manySendersShareAll(self):
        # 30 senders > 100 / 4: everyone shares the whole bandwidth.
        td = deterministicInterval(100, 30, 500.0, True, 100.0, False)
        self.assertAlmostEqual(td, 100.0 * 100 / 500.0)

    def test_reducedMinimum(self):
        self.assertEqual(
            deterministicInterval(2, 2, 500.0, True, 100.0, False, minimumInterval=1.0), 1.0)
        self.assertEqual(
            deterministicInterval(2, 2, 500.0, True, 100.0, True, minimumInterval=1.0), 0.5)

    def test_badInputs(self):
        for args in [(0, 0, 500.0, False, 100.0, False),
                     (2, -1, 500.0, False, 100.0, False),
                     (2, 1, 0.0, False, 100.0, False),
                     (2, 1, 500.0, False, 0.0, False)]:
            self.assertRaises(ValueError, deterministicInterval, *args)


class RandomisedIntervalTests(SynchronousTestCase):
    def test_seededExactValue(self):
        """
        Seed 1's first draw in CPython's Mersenne Twister is
        0.13436424411240122, so T = 5 * 0.63436424411240122 / 1.21828.
        """
        self.assertEqual(random.Random(1).random(), 0.13436424411240122)
        t = rtcpInterval(2, 2, 500.0, True, 100.0, False, random.Random(1))
        self.assertAlmostEqual(t, 5 * 0.63436424411240122 / 1.21828, places=12)
        self.assertAlmostEqual(t, 2.6035240015, places=9)

    def test_factorEnds(self):
        low = rtcpInterval(2, 2, 500.0, True, 100.0, False, FixedRandom(0.0))
        self.assertAlmostEqual(low, 2.5 / 1.21828)
        high = rtcpInterval(2, 2, 500.0, True, 100.0, True, FixedRandom(0.999999))
        self.assertAlmostEqual(high, 2.5 * 1.499999 / 1.21828)

    def test_drawsOncePerInterval(self):
        fake = FixedRandom(0.5, 0.25)
        self.assertAlmostEqual(rtcpInterval(2, 2, 500.0, True, 100.0, False, fake),
                               5.0 / 1.21828)
        self.assertEqual(fake.calls, 1)

    def test_boundsAndMean(self):
        rng = random.Random(20240601)
        regular = [rtcpInterval(2, 1, 500.0, False, 120.0, False, rng) for _ in range(2000)]
        initial = [rtcpInterval(2, 1, 500.0, False, 120.0, True, rng) for _ in range(2000)]
        self.assertGreaterEqual(min(regular), 2.5 / COMPENSATION)
        self.assertLess(max(regular), 7.5 / COMPENSATION)
        self.assertGreaterEqual(min(initial), 1.25 / COMPENSATION)
        self.assertLess(max(initial), 3.75 / COMPENSATION)
        self.assertApproximates(sum(regular) / len(regular), 5.0 / COMPENSATION, 0.05)
        # The spread covers most of the range.
        self.assertLess(min(regular), 2.2)
        self.assertGreater(max(regular), 6.0)


class ScheduleTests(SynchronousTestCase):
    def test_firstReportIsInitial(self):
        schedule = RtcpSchedule(500.0, 100.0, random=random.Random(3))
        reference = random.Random(3)
        delay = schedule.start(now=100.0)
        self.assertAlmostEqual(delay, 2.5 * (reference.random() + 0.5) / COMPENSATION)
        self.assertEqual((schedule.tp, schedule.tn), (100.0, 100.0 + delay))
        self.assertTrue(schedule.initial)

    def test_timerReconsideration(self):
        # start: T = 2.5 * 1.0 / C; at expiry, a larger draw pushes tn later.
        schedule = RtcpSchedule(500.0, 100.0, random=FixedRandom(0.5, 0.9, 0.1))
        first = schedule.start(0.0)
        self.assertAlmostEqual(first, 2.5 / COMPENSATION)
        again = schedule.timerExpired(first)
        self.assertAlmostEqual(again, 2.5 * 1.4 / COMPENSATION - first)
        self.assertIsNone(schedule.timerExpired(first + again))

    def test_packetSentAveragesAndLeavesInitial(self):
        schedule = RtcpSchedule(500.0, 100.0, random=FixedRandom(0.5, 0.5))
        schedule.start(0.0)
        delay = schedule.packetSent(260.0, now=2.0)
        self.assertEqual(schedule.avgRtcpSize, 260.0 / 16 + 100.0 * 15 / 16)
        self.assertFalse(schedule.initial)
        self.assertAlmostEqual(delay, 5.0 / COMPENSATION)
        self.assertEqual(schedule.tp, 2.0)
        schedule.packetReceived(420.0)
        self.assertEqual(schedule.avgRtcpSize, 420.0 / 16 + 110.0 * 15 / 16)
        self.assertRaises(ValueError, schedule.packetReceived, 0)

    def test_largeAverageSizeLengthensInterval(self):
        schedule = RtcpSchedule(100.0, 1000.0, random=FixedRandom(0.5))
        schedule.membersChanged(3, 0, 0.0)
        # Receivers get 75 octets/s; 3 members of 1000 octets: 40 s.
        self.assertAlmostEqual(schedule.deterministicInterval(), 40.0)
        self.assertAlmostEqual(schedule.interval(), 40.0 / COMPENSATION)

    def test_weSentExpires(self):
        schedule = RtcpSchedule(500.0, 100.0, random=FixedRandom(*[0.5] * 4))
        schedule.start(0.0)
        schedule.dataSent(0.5)
        self.assertEqual((schedule.weSent, schedule.senders), (True, 1))
        schedule.dataSent(0.6)
        self.assertEqual(schedule.senders, 1)
        schedule.packetSent(100.0, now=2.0)
        self.assertTrue(schedule.weSent)
        # No RTP since 0.6; two intervals of 4.1 s later we stop being a sender.
        schedule.packetSent(100.0, now=20.0)
        self.assertEqual((schedule.weSent, schedule.senders), (False, 0))

    def test_reverseReconsideration(self):
        schedule = RtcpSchedule(500.0, 100.0, random=FixedRandom(*[0.5] * 3))
        self.assertIsNone(schedule.membersChanged(4, 1, now=0.0))
        schedule.start(0.0)
        schedule.packetSent(100.0, now=1.0)
        self.assertEqual(schedule.pmembers, 4)
        tn = schedule.tn
        delay = schedule.membersChanged(2, 1, now=3.0)
        self.assertAlmostEqual(schedule.tn, 3.0 + 0.5 * (tn - 3.0))
        self.assertAlmostEqual(schedule.tp, 3.0 - 0.5 * (3.0 - 1.0))
        self.assertAlmostEqual(delay, schedule.tn - 3.0)
        self.assertEqual(schedule.pmembers, 2)
        self.assertRaises(ValueError, schedule.membersChanged, 0, 0, 3.0)
