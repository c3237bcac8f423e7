"""
Tests for L{lmevoip.rtp.audio}: PCM helpers, sources and sinks.
"""

import math
import struct
import wave

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from lmevoip.interfaces import IAudioSink, IAudioSource
from lmevoip.rtp.audio import (
    MIN_DBOV,
    AudioFormatError,
    CallbackSink,
    DiscardSink,
    EchoSink,
    LevelMeter,
    PushSource,
    SilenceSource,
    ToneSource,
    WavFileSource,
    WavRecorder,
    frameSamples,
    levelDbov,
    pcmToSamples,
    peakLevel,
    resample,
    rmsLevel,
    samplesToPcm,
)


def writeWav(path, samples, rate=8000, channels=1, width=2):
    """
    Write raw integer samples (already interleaved) as a PCM WAV file.
    """
    samples = np.asarray(samples)
    if width == 1:
        raw = samples.astype(np.uint8).tobytes()
    elif width == 2:
        raw = samples.astype("<i2").tobytes()
    elif width == 3:
        raw = b"".join(struct.pack("<i", int(v))[:3] for v in samples)
    else:
        raw = samples.astype("<i4").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)
    return path


def dominantFrequency(samples, rate=8000):
    """
    The frequency of the largest FFT bin (1 Hz resolution for 1 s).
    """
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return np.argmax(spectrum) * rate / len(samples)


class PcmHelperTests(SynchronousTestCase):
    def test_frameSamples(self):
        self.assertEqual(frameSamples(20), 160)
        self.assertEqual(frameSamples(10), 80)
        self.assertEqual(frameSamples(30, 16000), 480)
        self.assertRaises(ValueError, frameSamples, 0.1)
        self.assertRaises(ValueError, frameSamples, 0)

    def test_pcmToSamplesBytes(self):
        samples = pcmToSamples(b"\x01\x00\xff\xff\x00\x80")
        self.assertEqual(samples.tolist(), [1, -1, -32768])

    def test_pcmToSamplesRejects(self):
        self.assertRaises(AudioFormatError, pcmToSamples, b"\x00\x01\x02")
        self.assertRaises(AudioFormatError, pcmToSamples, np.zeros(4, dtype=np.float32))
        self.assertRaises(AudioFormatError, pcmToSamples, np.zeros((2, 2), dtype=np.int16))
        self.assertRaises(AudioFormatError, pcmToSamples, "text")
        self.assertTrue(issubclass(AudioFormatError, ValueError))

    def test_samplesToPcmRoundsAndClips(self):
        pcm = samplesToPcm(np.array([1.4, 1.6, -40000.0, 40000.0]))
        self.assertEqual(pcmToSamples(pcm).tolist(), [1, 2, -32768, 32767])
        self.assertEqual(samplesToPcm(np.array([5, -5], dtype=np.int16)),
                         b"\x05\x00\xfb\xff")

    def test_levels(self):
        self.assertEqual(peakLevel(samplesToPcm(np.array([3, -7, 5]))), 7)
        self.assertEqual(peakLevel(samplesToPcm(np.array([0, -32768]))), 0x7FFF)
        self.assertEqual(peakLevel(b""), 0)
        self.assertAlmostEqual(rmsLevel(samplesToPcm(np.array([3, -4]))), math.sqrt(12.5))
        self.assertEqual(rmsLevel(b""), 0.0)

    def test_levelDbov(self):
        square = np.array([32767, -32767] * 80, dtype=np.int16)
        self.assertAlmostEqual(levelDbov(square), 0.0, places=6)
        self.assertEqual(levelDbov(bytes(320)), MIN_DBOV)
        sine = np.rint(32767 * np.sin(2 * np.pi * np.arange(8000) / 8)).astype(np.int16)
        self.assertAlmostEqual(levelDbov(sine), -3.0103, places=2)


class ToneSourceTests(SynchronousTestCase):
    def test_interface(self):
        verifyObject(IAudioSource, ToneSource())

    def test_matchesDirectComputation(self):
        """
        Frame after frame, the tone is exactly round(A * 32767 * sin(2 pi f n
        / rate)) for the running sample index n.
        """
        tone = ToneSource(frequency=440.0, amplitude=0.5)
        got = np.concatenate([pcmToSamples(tone.readFrame(160)) for _ in range(50)])
        n = np.arange(len(got))
        expected = np.rint(0.5 * 32767 * np.sin(2 * np.pi * 440.0 * n / 8000))
        self.assertLessEqual(int(np.max(np.abs(got - expected))), 1)

    def test_phaseContinuousAcrossFrames(self):
        """
        No click at frame boundaries: frames of odd sizes concatenate to the
        same signal as one long read, and the step across each boundary is no
        bigger than the tone's largest sample-to-sample step.
        """
        sizes = [160, 37, 80, 1, 240, 163]
        tone = ToneSource(frequency=1234.5, amplitude=0.9)
        pieces = [pcmToSamples(tone.readFrame(size)) for size in sizes]
        joined = np.concatenate(pieces).astype(np.int32)
        whole = pcmToSamples(ToneSource(1234.5, 0.9).readFrame(sum(sizes))).astype(np.int32)
        self.assertLessEqual(int(np.max(np.abs(joined - whole))), 1)
        maxStep = 0.9 * 32767 * 2 * math.sin(math.pi * 1234.5 / 8000) + 2
        boundaries = np.cumsum(sizes)[:-1]
        for b in boundaries:
            self.assertLessEqual(abs(int(joined[b]) - int(joined[b - 1])), maxStep)

    def test_longFramesAtAnyPhase(self):
        """
        Frames longer than the precomputed cycle buffer (up to the largest
        frame a source accepts), starting anywhere in the cycle, are the
        same tone as the direct computation.
        """
        for frequency in (440.0, 310.0, 1234.5):
            tone = ToneSource(frequency, 0.7)
            sizes = [37, 5000, 163, 80000, 160]
            got = np.concatenate([pcmToSamples(tone.readFrame(size)) for size in sizes])
            n = np.arange(len(got))
            expected = np.rint(0.7 * 32767 * np.sin(2 * np.pi * frequency * n / 8000))
            self.assertLessEqual(int(np.max(np.abs(got - expected))), 1, frequency)

    def test_exactlyPeriodic(self):
        """
        A tone whose frequency divides into the sample rate repeats exactly:
        440 Hz every 200 samples (11 cycles), so after an hour of 20 ms
        frames the next frame is sample for sample the first one.
        """
        tone = ToneSource(440.0)
        first = tone.readFrame(160)
        for _ in range(3600 * 50 - 1):
            tone.readFrame(160)
        # 180,000 frames of 160 samples: 144,000 whole periods of 200.
        self.assertEqual(tone.readFrame(160), first)

    def test_frequencyWithoutShortPeriod(self):
        """
        A frequency with no short period at 8 kHz (1000/3 Hz) is computed
        frame by frame and is the same tone.
        """
        frequency = 1000.0 / 3
        tone = ToneSource(frequency, 0.5)
        got = np.concatenate([pcmToSamples(tone.readFrame(160)) for _ in range(100)])
        n = np.arange(len(got))
        expected = np.rint(0.5 * 32767 * np.sin(2 * np.pi * frequency * n / 8000))
        self.assertLessEqual(int(np.max(np.abs(got - expected))), 1)

    def test_cycleShared(self):
        """
        Sources of the same tone share one precomputed cycle (immutable
        bytes); each keeps its own position in it.
        """
        a, b = ToneSource(440.0, 0.5), ToneSource(440.0, 0.5)
        self.assertIs(a._cycle, b._cycle)
        self.assertIsNot(a._cycle, ToneSource(440.0, 0.25)._cycle)
        first = a.readFrame(160)
        a.readFrame(160)
        self.assertEqual(b.readFrame(160), first)

    def test_frequencyAndAmplitude(self):
        tone = ToneSource(frequency=1000.0, amplitude=0.25)
        samples = pcmToSamples(tone.readFrame(8000))
        self.assertEqual(dominantFrequency(samples), 1000.0)
        self.assertApproximates(peakLevel(samples), 0.25 * 32767, 1)

    def test_atLevel(self):
        tone = ToneSource.atLevel(-22.0, frequency=1000.0)
        self.assertApproximates(levelDbov(tone.readFrame(8000)), -22.0, 0.01)
        loudest = ToneSource.atLevel(-3.0103)
        self.assertAlmostEqual(loudest.amplitude, 1.0, places=4)
        self.assertRaises(ValueError, ToneSource.atLevel, 0.0)

    def test_badParameters(self):
        self.assertRaises(ValueError, ToneSource, frequency=4001.0)
        self.assertRaises(ValueError, ToneSource, frequency=-1.0)
        self.assertRaises(ValueError, ToneSource, amplitude=1.5)
        tone = ToneSource()
        self.assertRaises(ValueError, tone.readFrame, 0)
        self.assertRaises(ValueError, tone.readFrame, -160)
        self.assertRaises(TypeError, tone.readFrame, 1.5)
        self.assertRaises(TypeError, tone.readFrame, True)

    def test_close(self):
        tone = ToneSource()
        with tone:
            self.assertEqual(len(tone.readFrame(160)), 320)
        self.assertIsNone(tone.readFrame(160))


class SilenceSourceTests(SynchronousTestCase):
    def test_silence(self):
        source = SilenceSource()
        verifyObject(IAudioSource, source)
        self.assertEqual(source.readFrame(160), bytes(320))
        self.assertEqual(source.readFrame(80), bytes(160))
        source.close()
        source.close()
        self.assertIsNone(source.readFrame(160))


class WavFileSourceTests(SynchronousTestCase):
    def path(self, name="audio.wav"):
        return self.mktemp() + name

    def test_nativeStreamedAndPadded(self):
        data = np.arange(400, dtype=np.int16) * 7
        source = WavFileSource(writeWav(self.path(), data))
        verifyObject(IAudioSource, source)
        self.assertFalse(source.converted)
        self.assertEqual(source.totalSamples, 400)
        frames = [source.readFrame(160) for _ in range(3)]
        self.assertEqual(frames[0], data[:160].tobytes())
        self.assertEqual(frames[1], data[160:320].tobytes())
        self.assertEqual(frames[2], data[320:].tobytes() + bytes(160))
        self.assertIsNone(source.readFrame(160))
        self.assertIsNone(source.readFrame(160))
        source.close()

    def test_loop(self):
        data = np.arange(1, 101, dtype=np.int16)
        with WavFileSource(writeWav(self.path(), data), loop=True) as source:
            got = np.concatenate([pcmToSamples(source.readFrame(160)) for _ in range(5)])
        self.assertEqual(got.tolist(), (list(range(1, 101)) * 8)[:800])
        self.assertIsNone(source.readFrame(160))

    def test_emptyFileEndsEvenWhenLooping(self):
        source = WavFileSource(writeWav(self.path(), np.zeros(0, np.int16)), loop=True)
        self.assertIsNone(source.readFrame(160))
        source.close()

    def test_stereoAveraged(self):
        interleaved = np.array([1000, 3000, -100, -300] * 100)
        source = WavFileSource(writeWav(self.path(), interleaved, channels=2))
        self.assertTrue(source.converted)
        self.assertEqual(source.totalSamples, 200)
        self.assertEqual(pcmToSamples(source.readFrame(4)).tolist(), [2000, -200, 2000, -200])
        source.close()

    def test_8bit(self):
        source = WavFileSource(writeWav(self.path(), [128, 255, 0, 129], width=1))
        self.assertEqual(pcmToSamples(source.readFrame(4)).tolist(), [0, 32512, -32768, 256])
        source.close()

    def test_24bitAnd32bit(self):
        source = WavFileSource(writeWav(self.path(), [0x123456, -0x123456, 0x7FFFFF], width=3))
        self.assertEqual(pcmToSamples(source.readFrame(3)).tolist(),
                         [0x1234, (-0x123456) >> 8, 0x7FFF])
        source.close()
        source = WavFileSource(writeWav(self.path("b.wav"), [0x12345678, -0x80000000], width=4))
        self.assertEqual(pcmToSamples(source.readFrame(2)).tolist(), [0x1234, -0x8000])
        source.close()

    def test_resampledFrom16k(self):
        n = np.arange(16000)
        tone = np.rint(10000 * np.sin(2 * np.pi * 1000 * n / 16000))
        source = WavFileSource(writeWav(self.path(), tone, rate=16000))
        self.assertEqual(source.sourceRate, 16000)
        self.assertEqual(source.totalSamples, 8000)
        got = pcmToSamples(source.readFrame(8000))
        self.assertEqual(dominantFrequency(got), 1000.0)
        self.assertApproximates(rmsLevel(got[200:-200]), 10000 / math.sqrt(2), 100)
        source.close()

    def test_downsamplingIsAntiAliased(self):
        """
        A 7 kHz tone at 48 kHz is above the 4 kHz Nyquist limit of 8 kHz:
        plain decimation would fold it to 1 kHz at full level; the low-pass
        removes it.
        """
        n = np.arange(48000)
        tone = np.rint(16000 * np.sin(2 * np.pi * 7000 * n / 48000))
        naive = tone[::6]
        self.assertGreater(rmsLevel(naive.astype(np.int16)), 10000)
        source = WavFileSource(writeWav(self.path(), tone, rate=48000))
        got = pcmToSamples(source.readFrame(8000))
        self.assertLess(rmsLevel(got[200:-200]), 16000 / math.sqrt(2) / 100)
        source.close()

    def test_resampleFunction(self):
        x = np.arange(100, dtype=np.int16)
        self.assertEqual(resample(x, 8000, 8000).tolist(), x.tolist())
        self.assertEqual(len(resample(np.zeros(44100), 44100)), 8000)
        self.assertEqual(resample(np.array([0, 100]), 4000).tolist(), [0, 50, 100, 100])
        self.assertEqual(len(resample(np.zeros(3), 48000)), 0)
        self.assertRaises(ValueError, resample, x, 0, 8000)

    def test_refusesALawWithItsName(self):
        path = self.path()
        fmt = struct.pack("<HHIIHH", 6, 1, 8000, 8000, 1, 8)
        body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt \
            + b"data" + struct.pack("<I", 4) + b"\xd5\xd5\xd5\xd5"
        with open(path, "wb") as f:
            f.write(b"RIFF" + struct.pack("<I", len(body)) + body)
        error = self.assertRaises(AudioFormatError, WavFileSource, path)
        self.assertIn("A-law", str(error))
        self.assertIn("0x0006", str(error))

    def test_refusesNonWav(self):
        path = self.path()
        with open(path, "wb") as f:
            f.write(b"this is not a RIFF file at all")
        self.assertRaises(AudioFormatError, WavFileSource, path)
        empty = self.path("empty.wav")
        open(empty, "wb").close()
        self.assertRaises(AudioFormatError, WavFileSource, empty)

    def test_refusesLongConversion(self):
        path = writeWav(self.path(), np.zeros(16000), rate=16000)
        error = self.assertRaises(AudioFormatError, WavFileSource, path, maxConvertSeconds=0.5)
        self.assertIn("16000 Hz", str(error))

    def test_missingFile(self):
        self.assertRaises(OSError, WavFileSource, self.path("missing.wav"))


class PushSourceTests(SynchronousTestCase):
    def frame(self, value, samples=160):
        return np.full(samples, value, dtype=np.int16).tobytes()

    def test_fifo(self):
        source = PushSource()
        verifyObject(IAudioSource, source)
        self.assertIsNone(source.readFrame(160))
        source.push(self.frame(1))
        source.push(np.full(160, 2, dtype=np.int16))
        self.assertEqual(source.queuedSamples, 320)
        self.assertEqual(source.readFrame(160), self.frame(1))
        self.assertEqual(source.readFrame(160), self.frame(2))
        self.assertIsNone(source.readFrame(160))

    def test_chunksOfOtherSizes(self):
        source = PushSource()
        source.push(self.frame(1, 100))
        self.assertIsNone(source.readFrame(160))
        source.push(self.frame(2, 100))
        got = pcmToSamples(source.readFrame(160)).tolist()
        self.assertEqual(got, [1] * 100 + [2] * 60)
        self.assertEqual(source.queuedSamples, 40)

    def test_boundDropsOldest(self):
        source = PushSource(maxFrames=3)
        for value in range(1, 6):
            source.push(self.frame(value))
        self.assertEqual(source.pushed, 5)
        self.assertEqual(source.dropped, 2)
        self.assertEqual(source.droppedSamples, 320)
        self.assertEqual([source.readFrame(160) for _ in range(4)],
                         [self.frame(3), self.frame(4), self.frame(5), None])

    def test_oversizedChunkKeepsItsEnd(self):
        source = PushSource(maxFrames=2)
        source.push(np.arange(1000, dtype=np.int16))
        self.assertEqual(source.queuedSamples, 320)
        self.assertEqual(source.droppedSamples, 680)
        self.assertEqual(pcmToSamples(source.readFrame(320)).tolist(), list(range(680, 1000)))

    def test_rejectsOddBytes(self):
        self.assertRaises(AudioFormatError, PushSource().push, b"\x00")

    def test_close(self):
        source = PushSource()
        source.push(self.frame(1))
        source.close()
        source.push(self.frame(2))
        self.assertIsNone(source.readFrame(160))
        self.assertEqual(source.queuedSamples, 0)

    @settings(max_examples=50, deadline=None)
    @given(st.lists(st.integers(1, 400), max_size=30), st.integers(1, 5))
    def test_boundedAndOrdered(self, sizes, maxFrames):
        """
        Whatever is pushed, the queue never exceeds its bound and what comes
        out is the most recent pushed samples, in order.
        """
        source = PushSource(maxFrames=maxFrames, frameSamples=160)
        pushed = []
        counter = 0
        for size in sizes:
            chunk = np.arange(counter, counter + size) % 30000
            counter += size
            pushed.extend(chunk.tolist())
            source.push(chunk.astype(np.int16))
            self.assertLessEqual(source.queuedSamples, maxFrames * 160)
        queued = source.queuedSamples
        self.assertEqual(source.droppedSamples, len(pushed) - queued)
        out = source.readFrame(queued) if queued else None
        if queued:
            self.assertEqual(pcmToSamples(out).tolist(), pushed[len(pushed) - queued:])


class SinkTests(SynchronousTestCase):
    def test_interfaces(self):
        for sink in [DiscardSink(), EchoSink(), CallbackSink(lambda pcm: None), LevelMeter()]:
            verifyObject(IAudioSink, sink)
        recorder = WavRecorder(self.mktemp())
        verifyObject(IAudioSink, recorder)
        recorder.close()

    def test_discard(self):
        sink = DiscardSink()
        sink.writeFrame(bytes(320))
        sink.writeFrame(np.zeros(80, dtype=np.int16))
        self.assertEqual((sink.frames, sink.samples), (2, 240))
        self.assertRaises(AudioFormatError, sink.writeFrame, b"\x00")
        sink.close()
        sink.writeFrame(bytes(320))
        self.assertEqual(sink.frames, 2)

    def test_recorderRoundTrip(self):
        path = self.mktemp()
        tone = ToneSource(1000.0)
        frames = [tone.readFrame(160) for _ in range(3)]
        with WavRecorder(path) as recorder:
            for frame in frames:
                recorder.writeFrame(frame)
            self.assertAlmostEqual(recorder.duration, 0.06)
        recorder.close()
        with wave.open(path, "rb") as w:
            self.assertEqual((w.getnchannels(), w.getsampwidth(), w.getframerate()),
                             (1, 2, 8000))
            self.assertEqual(w.getnframes(), 480)
            self.assertEqual(w.readframes(480), b"".join(frames))

    def test_recorderBound(self):
        path = self.mktemp()
        recorder = WavRecorder(path, maxSeconds=0.05)
        for value in range(4):
            recorder.writeFrame(np.full(160, value, dtype=np.int16))
        recorder.close()
        self.assertEqual(recorder.samplesWritten, 400)
        self.assertTrue(recorder.full)
        self.assertEqual((recorder.framesWritten, recorder.framesDropped), (3, 2))
        recorder.writeFrame(bytes(320))
        with wave.open(path, "rb") as w:
            data = pcmToSamples(w.readframes(1000))
        self.assertEqual(data.tolist(), [0] * 160 + [1] * 160 + [2] * 80)
        self.assertRaises(ValueError, WavRecorder, self.mktemp(), maxSeconds=0)

    def test_recorderReadableBySource(self):
        path = self.mktemp()
        with WavRecorder(path) as recorder:
            recorder.writeFrame(np.arange(160, dtype=np.int16))
        with WavFileSource(path) as source:
            self.assertEqual(pcmToSamples(source.readFrame(160)).tolist(), list(range(160)))

    def test_echo(self):
        sink = EchoSink()
        frame = np.arange(160, dtype=np.int16).tobytes()
        sink.writeFrame(frame)
        self.assertEqual(sink.source.readFrame(160), frame)
        shared = PushSource(maxFrames=1)
        sink = EchoSink(shared)
        sink.writeFrame(frame)
        sink.writeFrame(frame)
        self.assertEqual(shared.dropped, 1)
        sink.close()
        sink.writeFrame(frame)
        self.assertEqual(shared.pushed, 2)

    def test_callback(self):
        got = []
        sink = CallbackSink(got.append)
        sink.writeFrame(np.array([1, 2], dtype=np.int16))
        self.assertEqual(got, [b"\x01\x00\x02\x00"])

    def test_callbackErrorLoggedNotRaised(self):
        def broken(pcm):
            raise ZeroDivisionError("broken application")

        sink = CallbackSink(broken)
        sink.writeFrame(bytes(320))
        sink.writeFrame(bytes(320))
        self.assertEqual(sink.errors, 2)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)

    def test_levelMeter(self):
        meter = LevelMeter()
        meter.writeFrame(np.array([100, -300, 200], dtype=np.int16))
        self.assertEqual(meter.lastPeak, 300)
        self.assertAlmostEqual(meter.lastRms, math.sqrt((100**2 + 300**2 + 200**2) / 3))
        self.assertAlmostEqual(meter.lastDbov, 20 * math.log10(meter.lastRms / 32767))
        meter.writeFrame(bytes(320))
        self.assertEqual((meter.frames, meter.lastPeak, meter.maxPeak), (2, 0, 300))
        self.assertEqual(meter.lastDbov, MIN_DBOV)
