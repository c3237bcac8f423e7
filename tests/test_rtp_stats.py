"""
Tests for L{lmevoip.rtp.stats}: RFC 3550 appendix A.1, A.3 and A.8.
"""

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from lmevoip.rtp.stats import (
    MAX_DROPOUT,
    MAX_MISORDER,
    ReceiverStatistics,
    ReportBlockValues,
    SenderInfoValues,
    SenderStatistics,
    timestampDifference,
)


def feed(stats, seqs, start=0.0, step=0.02, payloadSize=160):
    """
    Feed sequence numbers (timestamps 160 per seq, arrivals every C{step}).
    """
    return [stats.update(seq, (seq * 160) % (1 << 32), start + i * step, payloadSize)
            for i, seq in enumerate(seqs)]


class ValidationTests(SynchronousTestCase):
    def test_probation(self):
        stats = ReceiverStatistics(0x1234)
        self.assertFalse(stats.valid)
        self.assertEqual(feed(stats, [100, 101, 102]), [False, True, True])
        self.assertTrue(stats.valid)
        self.assertEqual((stats.packetsReceived, stats.expected, stats.lost), (2, 2, 0))
        self.assertEqual(stats.packetsDiscarded, 1)
        self.assertEqual(stats.lastExtendedSequence, 102)

    def test_minSequentialOneDeliversFirst(self):
        stats = ReceiverStatistics(1, minSequential=1)
        self.assertEqual(feed(stats, [0, 1]), [True, True])
        self.assertEqual((stats.expected, stats.packetsReceived), (2, 2))

    def test_probationRestartsOnGap(self):
        stats = ReceiverStatistics(1, minSequential=3)
        self.assertEqual(feed(stats, [10, 11, 13, 14, 15, 16]),
                         [False, False, False, False, True, True])
        self.assertEqual((stats.expected, stats.packetsReceived), (2, 2))

    def test_probationAcrossWrap(self):
        """
        Unlike the C code's int promotion, 65535 then 0 counts as in
        sequence.
        """
        stats = ReceiverStatistics(1)
        self.assertEqual(feed(stats, [65535, 0, 1]), [False, True, True])
        self.assertEqual(stats.extendedHighestSequence, 1)

    def test_lossAndFraction(self):
        stats = ReceiverStatistics(7)
        feed(stats, [0, 1, 2, 3, 5, 6, 9, 10])
        self.assertEqual((stats.expected, stats.packetsReceived, stats.lost), (10, 7, 3))
        block = stats.makeReportBlock(now=1.0)
        self.assertEqual(block.fractionLost, (3 << 8) // 10)
        self.assertEqual(block.cumulativeLost, 3)
        self.assertEqual(block.extendedHighestSequence, 10)
        self.assertEqual(block.ssrc, 7)
        # Nothing new: the interval is empty.
        self.assertEqual(stats.makeReportBlock(now=2.0).fractionLost, 0)
        # Ten in a row, all received: no loss this interval, cumulative stays.
        feed(stats, range(11, 21), start=3.0)
        block = stats.makeReportBlock(now=4.0)
        self.assertEqual((block.fractionLost, block.cumulativeLost), (0, 3))
        # 21..40 with 21..25 lost: 5 of 20.
        feed(stats, range(26, 41), start=5.0)
        block = stats.makeReportBlock(now=6.0)
        self.assertEqual((block.fractionLost, block.cumulativeLost), ((5 << 8) // 20, 8))

    def test_duplicatesMakeLossNegative(self):
        stats = ReceiverStatistics(7)
        self.assertEqual(feed(stats, [0, 1, 2, 2, 3, 3]), [False] + [True] * 5)
        self.assertEqual((stats.expected, stats.packetsReceived, stats.lost), (3, 5, -2))
        block = stats.makeReportBlock(0.0)
        self.assertEqual((block.fractionLost, block.cumulativeLost), (0, -2))

    def test_reorder(self):
        stats = ReceiverStatistics(7)
        extended = []
        for seq in [0, 1, 2, 4, 3, 5]:
            stats.update(seq, seq * 160, 0.0, 10)
            extended.append(stats.lastExtendedSequence)
        self.assertEqual(extended, [None, 1, 2, 4, 3, 5])
        self.assertEqual((stats.expected, stats.lost, stats.extendedHighestSequence), (5, 0, 5))
        self.assertEqual(stats.octetsReceived, 50)

    def test_wrap(self):
        stats = ReceiverStatistics(7)
        extended = []
        for seq in [65533, 65534, 65535, 0, 1, 65535, 2]:
            stats.update(seq, 0, 0.0, 0)
            extended.append(stats.lastExtendedSequence)
        self.assertEqual(extended, [None, 65534, 65535, 65536, 65537, 65535, 65538])
        self.assertEqual(stats.extendedHighestSequence, 65538)
        self.assertEqual(stats.expected, 65538 - 65534 + 1)
        self.assertEqual(stats.packetsReceived, 6)
        self.assertEqual(stats.lost, -1)
        self.assertEqual(stats.makeReportBlock(0.0).extendedHighestSequence, 65538)

    def test_bigJumpResyncs(self):
        stats = ReceiverStatistics(7)
        feed(stats, range(0, 11))
        self.assertFalse(stats.update(5000, 0, 1.0, 160))
        self.assertEqual(stats.packetsDiscarded, 2)
        self.assertEqual(stats.resyncs, 0)
        self.assertTrue(stats.update(5001, 160, 1.02, 160))
        self.assertEqual(stats.resyncs, 1)
        self.assertEqual((stats.packetsReceived, stats.expected, stats.lost), (1, 1, 0))
        self.assertEqual(stats.extendedHighestSequence, 5001)
        self.assertEqual(stats.lastExtendedSequence, 5001)
        self.assertTrue(stats.update(5002, 320, 1.04, 160))
        self.assertEqual(stats.makeReportBlock(2.0).cumulativeLost, 0)

    def test_bigJumpNotFollowedIsIgnored(self):
        stats = ReceiverStatistics(7)
        feed(stats, range(0, 11))
        self.assertFalse(stats.update(40000, 0, 1.0, 160))
        self.assertTrue(stats.update(11, 0, 1.02, 160))
        self.assertFalse(stats.update(40002, 0, 1.04, 160))
        self.assertTrue(stats.update(12, 0, 1.06, 160))
        self.assertEqual((stats.resyncs, stats.extendedHighestSequence, stats.lost), (0, 12, 0))

    def test_dropoutAndMisorderBoundaries(self):
        stats = ReceiverStatistics(7)
        feed(stats, [9, 10])
        self.assertTrue(stats.update(10 + MAX_DROPOUT - 1, 0, 0.1, 0))
        self.assertEqual(stats.lost, MAX_DROPOUT - 2)
        top = 10 + MAX_DROPOUT - 1
        self.assertFalse(stats.update(top + MAX_DROPOUT, 0, 0.2, 0))
        self.assertTrue(stats.update(top - (MAX_MISORDER - 1), 0, 0.3, 0))
        self.assertFalse(stats.update(top - MAX_MISORDER, 0, 0.4, 0))
        self.assertEqual(stats.extendedHighestSequence, top)

    def test_lostClampedTo24Bits(self):
        stats = ReceiverStatistics(7, minSequential=1)
        seq = 0
        stats.update(seq, 0, 0.0, 0)
        extended = 0
        while extended - stats.packetsReceived < 0x7FFFFF + 5000:
            seq = (seq + MAX_DROPOUT - 1) & 0xFFFF
            extended += MAX_DROPOUT - 1
            self.assertTrue(stats.update(seq, 0, 0.0, 0))
        self.assertEqual(stats.extendedHighestSequence, extended)
        self.assertEqual(stats.lost, 0x7FFFFF)
        self.assertEqual(stats.makeReportBlock(0.0).cumulativeLost, 0x7FFFFF)

    def test_badArguments(self):
        stats = ReceiverStatistics(7)
        self.assertRaises(ValueError, stats.update, 65536, 0, 0.0, 0)
        self.assertRaises(ValueError, stats.update, 1, 1 << 32, 0.0, 0)
        self.assertRaises(ValueError, stats.update, 1, 0, 0.0, -1)
        self.assertRaises(ValueError, ReceiverStatistics, 1 << 32)
        self.assertRaises(ValueError, ReceiverStatistics, 1, minSequential=0)
        self.assertRaises(ValueError, ReceiverStatistics, 1, clockRate=0)

    def test_emptyReport(self):
        block = ReceiverStatistics(99).makeReportBlock(5.0)
        self.assertEqual(block, ReportBlockValues(99, 0, 0, 0, 0, 0, 0))

    @settings(max_examples=100, deadline=None)
    @given(start=st.integers(0, 65535),
           steps=st.lists(st.integers(1, MAX_DROPOUT - 1), min_size=1, max_size=80))
    def test_inOrderWithGaps(self, start, steps):
        """
        For any in-order stream with gaps (wrapping or not), the highest
        extended sequence is the last one sent and the loss is the number of
        numbers skipped.
        """
        stats = ReceiverStatistics(1, minSequential=1)
        stats.update(start, 0, 0.0, 0)
        extended = start
        for step in steps:
            extended += step
            self.assertTrue(stats.update(extended & 0xFFFF, 0, 0.0, 0))
            self.assertEqual(stats.lastExtendedSequence, extended)
        self.assertEqual(stats.extendedHighestSequence, extended)
        self.assertEqual(stats.lost, sum(step - 1 for step in steps))
        lost = sum(step - 1 for step in steps)
        expected = extended - start + 1
        self.assertEqual(stats.makeReportBlock(0.0).fractionLost, (lost << 8) // expected)


class TimestampDifferenceTests(SynchronousTestCase):
    def test_wrap(self):
        self.assertEqual(timestampDifference(100, 40), 60)
        self.assertEqual(timestampDifference(40, 100), -60)
        self.assertEqual(timestampDifference(60, (1 << 32) - 100), 160)
        self.assertEqual(timestampDifference((1 << 32) - 100, 60), -160)
        self.assertEqual(timestampDifference(1 << 31, 0), -(1 << 31))


class JitterTests(SynchronousTestCase):
    def directJitter(self, timestamps, arrivals, clockRate=8000):
        """
        RFC 3550 A.8 done directly, in exact fractions.
        """
        jitter = Fraction(0)
        for i in range(1, len(timestamps)):
            d = (Fraction(arrivals[i]) - Fraction(arrivals[i - 1])) * clockRate \
                - (timestamps[i] - timestamps[i - 1])
            jitter += (abs(d) - jitter) / 16
        return jitter

    def test_handMadeSchedule(self):
        offsets = [0.0, 0.005, -0.002, 0.010, 0.0, 0.030, 0.001, -0.004, 0.002, 0.0,
                   0.012, 0.003, 0.0, 0.007, -0.001, 0.020]
        timestamps = [1000 + 160 * i for i in range(len(offsets))]
        arrivals = [100.0 + 0.02 * i + offset for i, offset in enumerate(offsets)]
        stats = ReceiverStatistics(1, minSequential=1)
        for i, (ts, arrival) in enumerate(zip(timestamps, arrivals)):
            stats.update(i, ts, arrival, 160)
        expected = self.directJitter(timestamps, arrivals)
        self.assertEqual(stats.jitter, int(expected))
        self.assertApproximates(stats.jitterSeconds, float(expected) / 8000, 1e-9)
        self.assertEqual(stats.makeReportBlock(101.0).jitter, int(expected))

    def test_firstSteps(self):
        stats = ReceiverStatistics(1, minSequential=1)
        stats.update(0, 0, 0.0, 160)
        self.assertEqual(stats.jitter, 0)
        stats.update(1, 160, 0.025, 160)  # 5 ms late: |D| = 40
        self.assertEqual(stats.jitterSeconds * 8000, 2.5)
        stats.update(2, 320, 0.040, 160)  # back on time: |D| = 40
        self.assertEqual(stats.jitterSeconds * 8000, 2.5 + (40 - 2.5) / 16)
        self.assertEqual(stats.jitter, 4)

    def test_constantDelayIsNoJitterEvenAcrossTimestampWrap(self):
        stats = ReceiverStatistics(1, minSequential=1)
        base = (1 << 32) - 800
        for i in range(20):
            stats.update(i, (base + 160 * i) % (1 << 32), 1.7e9 + 0.02 * i, 160)
        self.assertEqual(stats.jitter, 0)
        self.assertLess(stats.jitterSeconds, 1e-6)

    def test_silenceSuppressionGapIsNotJitter(self):
        """
        A talkspurt gap moves timestamps and arrivals alike: no jitter.
        """
        stats = ReceiverStatistics(1, minSequential=1)
        feed(stats, [0, 1, 2])
        stats.update(3, 160 * 3 + 8000, 0.06 + 1.0, 160)
        self.assertEqual(stats.jitter, 0)


class SenderReportTests(SynchronousTestCase):
    def test_lsrAndDlsr(self):
        stats = ReceiverStatistics(5)
        feed(stats, [0, 1])
        stats.senderReportReceived((0x12345678 << 32) | 0x9ABCDEF0, arrivalTime=10.0)
        block = stats.makeReportBlock(now=10.5)
        self.assertEqual(block.lastSr, 0x56789ABC)
        self.assertEqual(block.delaySinceLastSr, 32768)
        self.assertEqual(stats.makeReportBlock(now=13.25).delaySinceLastSr, 3 * 65536 + 16384)
        self.assertRaises(ValueError, stats.senderReportReceived, 1 << 64, 0.0)

    def test_noSenderReport(self):
        stats = ReceiverStatistics(5)
        feed(stats, [0, 1])
        block = stats.makeReportBlock(now=10.5)
        self.assertEqual((block.lastSr, block.delaySinceLastSr), (0, 0))


class SenderStatisticsTests(SynchronousTestCase):
    def test_counts(self):
        stats = SenderStatistics()
        for i in range(3):
            stats.packetSent(160, 1000 + 160 * i, 5.0 + 0.02 * i)
        self.assertEqual((stats.packetsSent, stats.octetsSent), (3, 480))
        info = stats.senderInfo(now=5.54)
        self.assertEqual(info, SenderInfoValues(1320 + 4000, 3, 480))

    def test_wrap(self):
        stats = SenderStatistics()
        stats.packetSent(1 << 31, (1 << 32) - 100, 1.0)
        stats.packetSent(1 << 31, (1 << 32) - 100, 1.0)
        stats.packetSent(1 << 31, (1 << 32) - 100, 1.0)
        info = stats.senderInfo(now=1.5)
        self.assertEqual((info.rtpTimestamp, info.octetCount), (3900, 1 << 31))

    def test_sentSinceAndReset(self):
        stats = SenderStatistics()
        self.assertFalse(stats.sentSince(0.0))
        self.assertRaises(ValueError, stats.senderInfo, 0.0)
        stats.packetSent(10, 0, 7.0)
        self.assertTrue(stats.sentSince(7.0))
        self.assertFalse(stats.sentSince(7.5))
        stats.reset()
        self.assertEqual((stats.packetsSent, stats.octetsSent, stats.lastSendTime), (0, 0, None))
        self.assertRaises(ValueError, stats.packetSent, -1, 0, 0.0)
