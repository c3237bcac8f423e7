"""
Tests for L{lmevoip.rtp.gate}: the noise gate ("noise discrimination").
"""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from lmevoip.rtp.audio import AudioFormatError, SilenceSource, ToneSource
from lmevoip.rtp.gate import (
    DEFAULT_DECAY_MS,
    DEFAULT_THRESHOLD,
    DETECTOR_RMS,
    MAX_DECAY_MS,
    MAX_THRESHOLD,
    MIN_THRESHOLD,
    GateConfigError,
    GateState,
    NoiseGate,
)

SILENCE = bytes(320)


def peakFrame(peak, samples=160):
    """
    A frame whose largest absolute sample is exactly C{peak}.
    """
    frame = np.zeros(samples, dtype=np.int16)
    frame[samples // 2] = peak
    return frame.tobytes()


def run(gate, frames, frameMs=20):
    return [gate.process(frame, frameMs) for frame in frames]


class ConfigurationTests(SynchronousTestCase):
    def test_constants(self):
        self.assertEqual((MIN_THRESHOLD, MAX_THRESHOLD), (0, 0x7FFF))
        self.assertTrue(issubclass(GateConfigError, ValueError))

    def test_defaults(self):
        gate = NoiseGate()
        self.assertFalse(gate.enabled)
        self.assertEqual(gate.threshold, DEFAULT_THRESHOLD)
        self.assertEqual(gate.decayMs, DEFAULT_DECAY_MS)
        self.assertEqual(gate.state, GateState.CLOSED)
        self.assertTrue(gate.isOpen)

    def test_thresholdRange(self):
        gate = NoiseGate()
        for bad in [-1, MAX_THRESHOLD + 1, 1.5, "100", None, True]:
            self.assertRaises(GateConfigError, gate.setThreshold, bad)
        self.assertEqual(gate.threshold, DEFAULT_THRESHOLD)
        gate.setThreshold(MIN_THRESHOLD)
        self.assertEqual(gate.threshold, 0)
        gate.setThreshold(np.int16(MAX_THRESHOLD))
        self.assertEqual(gate.threshold, 0x7FFF)
        self.assertRaises(GateConfigError, NoiseGate, threshold=0x8000)

    def test_decayRange(self):
        gate = NoiseGate()
        for bad in [-1, MAX_DECAY_MS + 1, 20.5, "20"]:
            self.assertRaises(GateConfigError, gate.setDecay, bad)
        gate.setDecay(0)
        self.assertEqual(gate.decayMs, 0)
        gate.setDecay(MAX_DECAY_MS)
        self.assertEqual(gate.decayMs, MAX_DECAY_MS)
        self.assertRaises(GateConfigError, NoiseGate, decayMs=-5)

    def test_badDetector(self):
        self.assertRaises(GateConfigError, NoiseGate, detector="loudness")


class ProcessTests(SynchronousTestCase):
    def test_disabledPassesEverything(self):
        gate = NoiseGate(threshold=1000)
        self.assertEqual(run(gate, [SILENCE, peakFrame(5), b"\x00"]), [True] * 3)
        self.assertEqual((gate.framesPassed, gate.framesSuppressed), (3, 0))
        self.assertIsNone(gate.lastLevel)

    def test_silenceSendsNothing(self):
        gate = NoiseGate(enabled=True)
        silence = SilenceSource()
        self.assertEqual(run(gate, [silence.readFrame(160) for _ in range(50)]), [False] * 50)
        self.assertEqual((gate.framesPassed, gate.framesSuppressed), (0, 50))
        self.assertEqual(gate.state, GateState.CLOSED)
        self.assertEqual(gate.openCount, 0)

    def test_burstThenSilence(self):
        """
        A tone burst is sent, then exactly decayMs / frameMs quiet frames,
        then nothing.
        """
        gate = NoiseGate(threshold=1000, enabled=True, decayMs=60)
        tone = ToneSource(440.0, 0.5)
        frames = [SILENCE] * 3 + [tone.readFrame(160) for _ in range(5)] + [SILENCE] * 10
        self.assertEqual(run(gate, frames),
                         [False] * 3 + [True] * 5 + [True] * 3 + [False] * 7)
        self.assertEqual((gate.framesPassed, gate.framesSuppressed), (8, 10))
        self.assertEqual((gate.openCount, gate.closeCount), (1, 1))
        self.assertEqual(gate.state, GateState.CLOSED)

    def test_decayZero(self):
        gate = NoiseGate(threshold=1000, enabled=True, decayMs=0)
        loud = peakFrame(5000)
        self.assertEqual(run(gate, [loud, loud, SILENCE, loud, SILENCE, SILENCE]),
                         [True, True, False, True, False, False])
        self.assertEqual((gate.openCount, gate.closeCount), (2, 2))

    def test_decayNotAMultipleOfFrames(self):
        gate = NoiseGate(threshold=1000, enabled=True, decayMs=50)
        self.assertEqual(run(gate, [peakFrame(2000)] + [SILENCE] * 4),
                         [True, True, True, False, False])

    def test_frameMsDefaultsToSampleCount(self):
        gate = NoiseGate(threshold=1000, enabled=True, decayMs=20)
        frames = [peakFrame(2000, 80)] + [bytes(160)] * 4
        self.assertEqual([gate.process(f) for f in frames], [True, True, True, False, False])

    def test_loudFrameRestartsHangover(self):
        gate = NoiseGate(threshold=1000, enabled=True, decayMs=40)
        loud = peakFrame(1000)
        self.assertEqual(run(gate, [loud, SILENCE, loud, SILENCE, SILENCE, SILENCE]),
                         [True, True, True, True, True, False])
        self.assertEqual(gate.openCount, 1)

    def test_thresholdEdges(self):
        gate = NoiseGate(threshold=1000, enabled=True, decayMs=0)
        self.assertFalse(gate.process(peakFrame(999), 20))
        self.assertFalse(gate.process(peakFrame(-999), 20))
        self.assertTrue(gate.process(peakFrame(1000), 20))
        self.assertEqual(gate.lastLevel, 1000)
        self.assertFalse(gate.process(peakFrame(999), 20))
        self.assertTrue(gate.process(peakFrame(-1000), 20))

    def test_minimumThresholdNeverCloses(self):
        gate = NoiseGate(threshold=MIN_THRESHOLD, enabled=True, decayMs=0)
        self.assertEqual(run(gate, [SILENCE] * 5), [True] * 5)

    def test_thresholdOneGatesOnlyDigitalSilence(self):
        gate = NoiseGate(threshold=1, enabled=True, decayMs=0)
        self.assertEqual(run(gate, [SILENCE, peakFrame(1), SILENCE]), [False, True, False])

    def test_maximumThreshold(self):
        gate = NoiseGate(threshold=MAX_THRESHOLD, enabled=True, decayMs=0)
        self.assertFalse(gate.process(peakFrame(32766), 20))
        self.assertTrue(gate.process(peakFrame(32767), 20))
        self.assertFalse(gate.process(peakFrame(-32767 + 1), 20))
        self.assertTrue(gate.process(peakFrame(-32768), 20))

    def test_rmsDetector(self):
        """
        One click in a silent frame opens a peak gate but not an RMS gate
        with the same threshold; a steady level opens both.
        """
        click = peakFrame(1000)
        peak = NoiseGate(threshold=100, enabled=True, decayMs=0)
        rms = NoiseGate(threshold=100, enabled=True, decayMs=0, detector=DETECTOR_RMS)
        self.assertTrue(peak.process(click, 20))
        self.assertFalse(rms.process(click, 20))
        self.assertAlmostEqual(rms.lastLevel, 1000 / np.sqrt(160))
        steady = np.full(160, -100, dtype=np.int16)
        self.assertTrue(rms.process(steady, 20))
        self.assertFalse(rms.process(np.full(160, 99, dtype=np.int16), 20))

    def test_enableStartsClosedDisableOpens(self):
        gate = NoiseGate(threshold=1000, decayMs=100)
        gate.setEnabled(True)
        self.assertTrue(gate.process(peakFrame(2000), 20))
        self.assertTrue(gate.isOpen)
        gate.setEnabled(False)
        self.assertTrue(gate.isOpen)
        gate.setEnabled(True)
        self.assertEqual(gate.state, GateState.CLOSED)
        self.assertFalse(gate.process(SILENCE, 20))

    def test_settingsTakeEffectAtOnce(self):
        gate = NoiseGate(threshold=1000, enabled=True, decayMs=0)
        self.assertFalse(gate.process(peakFrame(500), 20))
        gate.setThreshold(500)
        self.assertTrue(gate.process(peakFrame(500), 20))
        gate.setDecay(20)
        self.assertEqual(run(gate, [SILENCE, SILENCE]), [True, False])

    def test_badInput(self):
        gate = NoiseGate(enabled=True)
        self.assertRaises(AudioFormatError, gate.process, b"\x00\x00\x00", 20)
        self.assertRaises(ValueError, gate.process, SILENCE, -1)
        self.assertRaises(ValueError, gate.process, SILENCE, float("nan"))
        self.assertEqual(gate.framesPassed + gate.framesSuppressed, 0)

    @settings(max_examples=100, deadline=None)
    @given(levels=st.lists(st.integers(0, 0x7FFF), max_size=60),
           threshold=st.integers(0, 0x7FFF), hangFrames=st.integers(0, 6))
    def test_sendsLoudFramesAndTheirHangover(self, levels, threshold, hangFrames):
        """
        With frames of 20 ms and decay = 20 * k ms, a frame is sent exactly
        when it is loud or one of the k frames before it was loud, and the
        counters add up.
        """
        gate = NoiseGate(threshold=threshold, enabled=True, decayMs=20 * hangFrames)
        sent = run(gate, [peakFrame(level) for level in levels])
        loud = [level >= threshold for level in levels]
        expected = [any(loud[max(0, i - hangFrames):i + 1]) for i in range(len(levels))]
        self.assertEqual(sent, expected)
        self.assertEqual(gate.framesPassed, sum(expected))
        self.assertEqual(gate.framesSuppressed, len(levels) - sum(expected))
