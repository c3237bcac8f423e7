"""
Tests for L{lmevoip.rtp.jitter}: the fixed-delay jitter buffer.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from lmevoip.rtp.jitter import Gap, JitterBuffer, JitterFrame

FRAME = 0.02


def sequences(items):
    """
    The played-out items as (seq) for frames and ("gap", first, count).
    """
    return [item.sequence if isinstance(item, JitterFrame)
            else ("gap", item.firstSequence, item.count) for item in items]


def push(buffer, seq, arrival, timestamp=None, payload=None):
    if timestamp is None:
        timestamp = seq * 160
    if payload is None:
        payload = bytes([seq % 256])
    return buffer.push(seq, timestamp, payload, arrival)


class ScheduleTests(SynchronousTestCase):
    def test_inOrderPlayoutTimes(self):
        """
        Each frame is due delay after the first arrival plus its timestamp
        offset, not a moment earlier.
        """
        buffer = JitterBuffer(delay=0.04)
        for i in range(5):
            self.assertTrue(push(buffer, i, 10.0 + FRAME * i))
        self.assertEqual(buffer.pop(10.039), [])
        first = buffer.pop(10.04)
        self.assertEqual(first, [JitterFrame(0, 0, b"\x00", 10.0)])
        self.assertEqual(sequences(buffer.pop(10.0799)), [1])
        self.assertEqual(sequences(buffer.pop(10.12)), [2, 3, 4])
        self.assertEqual(buffer.dueTime(4 * 160), 10.04 + 4 * FRAME)
        self.assertEqual((buffer.accepted, buffer.played, len(buffer)), (5, 5, 0))

    def test_reorderedWithinDelay(self):
        buffer = JitterBuffer(delay=0.06)
        push(buffer, 1, 0.0)
        push(buffer, 3, 0.02)
        push(buffer, 2, 0.05)
        push(buffer, 4, 0.06)
        self.assertEqual(sequences(buffer.pop(1.0)), [1, 2, 3, 4])
        self.assertEqual((buffer.missing, buffer.lateDrops), (0, 0))

    def test_gapReportedThenLateDropped(self):
        buffer = JitterBuffer(delay=0.04)
        push(buffer, 1, 0.0)
        push(buffer, 2, 0.02)
        push(buffer, 5, 0.08)
        self.assertEqual(sequences(buffer.pop(0.2)), [1, 2, ("gap", 3, 2), 5])
        self.assertEqual(buffer.missing, 2)
        self.assertFalse(push(buffer, 4, 0.21))
        self.assertFalse(push(buffer, 5, 0.21))
        self.assertEqual(buffer.lateDrops, 2)
        self.assertEqual(buffer.nextSequence, 6)

    def test_duplicateDropped(self):
        buffer = JitterBuffer()
        self.assertTrue(push(buffer, 1, 0.0))
        self.assertFalse(push(buffer, 1, 0.001, payload=b"other"))
        self.assertEqual(buffer.duplicateDrops, 1)
        self.assertEqual(buffer.flush(), [JitterFrame(1, 160, b"\x01", 0.0)])

    def test_bound(self):
        buffer = JitterBuffer(delay=0.06, maxPackets=5)
        for seq in range(1, 9):
            push(buffer, seq, 0.0)
        self.assertEqual(len(buffer), 5)
        self.assertEqual(buffer.overflowDrops, 3)
        self.assertFalse(push(buffer, 2, 0.0))
        self.assertEqual(len(buffer), 5)
        self.assertEqual(sequences(buffer.pop(1.0)), [4, 5, 6, 7, 8])
        self.assertEqual(buffer.nextSequence, 9)

    def test_boundGapAfterPlayout(self):
        buffer = JitterBuffer(delay=0.06, maxPackets=3)
        push(buffer, 1, 0.0)
        self.assertEqual(sequences(buffer.pop(0.06)), [1])
        for seq in range(2, 7):
            push(buffer, seq, 0.02)
        self.assertEqual(sequences(buffer.pop(1.0)), [("gap", 2, 2), 4, 5, 6])

    def test_reanchorWhenStreamComesBackLate(self):
        """
        After a 200 ms stall the first packet back is overdue and the buffer
        empty: the schedule moves so it gets the full delay again.
        """
        buffer = JitterBuffer(delay=0.04)
        for i in range(3):
            push(buffer, i, FRAME * i)
        self.assertEqual(sequences(buffer.pop(0.1)), [0, 1, 2])
        push(buffer, 3, 0.26)
        self.assertEqual(buffer.reanchors, 1)
        self.assertEqual(buffer.dueTime(3 * 160), 0.26 + 0.04)
        self.assertEqual(buffer.pop(0.29), [])
        self.assertEqual(sequences(buffer.pop(0.30)), [3])

    def test_noReanchorWhileBuffered(self):
        buffer = JitterBuffer(delay=0.04)
        push(buffer, 0, 0.0)
        push(buffer, 2, 0.04)
        push(buffer, 1, 0.08)  # overdue, but the buffer is not empty
        self.assertEqual(buffer.reanchors, 0)
        self.assertEqual(sequences(buffer.pop(0.08)), [0, 1, 2])

    def test_reanchorOnTimestampJump(self):
        buffer = JitterBuffer(delay=0.04, maxAhead=1.0)
        push(buffer, 0, 0.0)
        push(buffer, 1, 0.02, timestamp=160 + 8000 * 10)
        self.assertEqual(buffer.reanchors, 1)
        self.assertEqual(buffer.dueTime(160 + 80000), 0.06)
        self.assertEqual(sequences(buffer.pop(0.06)), [0, 1])

    def test_silenceGapKeepsSchedule(self):
        """
        A closed gate at the far end: sequence numbers continue, timestamps
        and arrivals jump by the same second. No gap, no re-anchor.
        """
        buffer = JitterBuffer(delay=0.04)
        push(buffer, 0, 0.0)
        push(buffer, 1, 1.02, timestamp=160 + 8000)
        self.assertEqual(sequences(buffer.pop(0.05)), [0])
        self.assertEqual(buffer.pop(1.05), [])
        self.assertEqual(sequences(buffer.pop(1.06)), [1])
        self.assertEqual((buffer.reanchors, buffer.missing), (0, 0))

    def test_timestampWrap(self):
        buffer = JitterBuffer(delay=0.04)
        base = (1 << 32) - 320
        for i in range(4):
            push(buffer, i, FRAME * i, timestamp=(base + 160 * i) % (1 << 32))
        self.assertEqual(buffer.dueTime(160), 0.04 + 3 * FRAME)
        self.assertEqual(sequences(buffer.pop(0.0999)), [0, 1, 2])
        self.assertEqual(sequences(buffer.pop(0.1)), [3])
        self.assertEqual(buffer.reanchors, 0)

    def test_sourceRestart(self):
        buffer = JitterBuffer(delay=0.04, restartWindow=3000)
        push(buffer, 5000, 0.0)
        self.assertEqual(sequences(buffer.pop(0.04)), [5000])
        self.assertFalse(push(buffer, 2001, 0.05))
        self.assertTrue(push(buffer, 10, 0.06))
        self.assertEqual((buffer.restarts, buffer.lateDrops), (1, 1))
        self.assertEqual(sequences(buffer.pop(0.1)), [10])

    def test_flushAndReset(self):
        buffer = JitterBuffer(delay=0.5)
        push(buffer, 1, 0.0)
        push(buffer, 3, 0.0)
        self.assertEqual(sequences(buffer.flush()), [1, ("gap", 2, 1), 3])
        push(buffer, 4, 0.0)
        buffer.reset()
        self.assertEqual((len(buffer), buffer.nextSequence, buffer.dueTime(0)), (0, None, None))
        self.assertTrue(push(buffer, 1, 1.0))

    def test_badArguments(self):
        self.assertRaises(ValueError, JitterBuffer, delay=-0.01)
        self.assertRaises(ValueError, JitterBuffer, maxPackets=0)
        buffer = JitterBuffer()
        self.assertRaises(ValueError, buffer.push, -1, 0, b"", 0.0)
        self.assertRaises(ValueError, buffer.push, 1, 1 << 32, b"", 0.0)

    @settings(max_examples=100, deadline=None)
    @given(jitters=st.lists(st.floats(0.0, 0.0599), min_size=1, max_size=60),
           popStep=st.sampled_from([0.005, 0.01, 0.02]))
    def test_jitterBelowDelayIsAbsorbed(self, jitters, popStep):
        """
        Whatever the network jitter, as long as it stays below the delay
        every frame plays exactly once, in order, with no gap and no drop,
        and never before its due time.
        """
        delay = 0.06
        buffer = JitterBuffer(delay=delay)
        arrivals = sorted((FRAME * i + jitter, i) for i, jitter in enumerate(jitters))
        played = []
        now = 0.0
        index = 0
        end = FRAME * len(jitters) + 2 * delay
        while now <= end:
            while index < len(arrivals) and arrivals[index][0] <= now:
                arrival, seq = arrivals[index]
                self.assertTrue(push(buffer, seq, arrival))
                index += 1
            for item in buffer.pop(now):
                self.assertIsInstance(item, JitterFrame)
                self.assertLessEqual(buffer.dueTime(item.timestamp), now)
                played.append(item.sequence)
            now += popStep
        self.assertEqual(played, list(range(len(jitters))))
        self.assertEqual((buffer.missing, buffer.lateDrops, buffer.reanchors), (0, 0, 0))

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 200), st.floats(0.0, 5.0)), max_size=120))
    def test_arbitraryInputStaysBoundedAndOrdered(self, packets):
        """
        Any packets at all: the buffer never holds more than its bound, and
        what plays out is strictly increasing, with gaps accounting exactly
        for the numbers skipped.
        """
        buffer = JitterBuffer(delay=0.05, maxPackets=10)
        out = []
        for seq, arrival in sorted(packets, key=lambda p: p[1]):
            push(buffer, seq, arrival)
            self.assertLessEqual(len(buffer), 10)
            out.extend(buffer.pop(arrival))
        out.extend(buffer.flush())
        expectedNext = None
        for item in out:
            if isinstance(item, Gap):
                self.assertEqual(item.firstSequence, expectedNext)
                self.assertGreater(item.count, 0)
                expectedNext = item.firstSequence + item.count
            else:
                if expectedNext is not None:
                    self.assertEqual(item.sequence, expectedNext)
                expectedNext = item.sequence + 1
        self.assertEqual(buffer.played, sum(isinstance(i, JitterFrame) for i in out))
