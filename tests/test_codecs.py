"""
Tests for L{lmevoip.rtp.codecs} (the PCMU/PCMA registry) and
L{lmevoip.rtp.cn} (RFC 3389 comfort noise), and the runnable examples of
docs/rtp-wire.rst.
"""

import doctest
import math
from pathlib import Path

import numpy as np
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from lmevoip.interfaces import ICodec
from lmevoip.rtp import cn, g711
from lmevoip.rtp.codecs import CODECS, PCMA, PCMU, codecByName, codecByPayloadType
from lmevoip.rtp.packet import RtpParseError

DOCS = Path(__file__).resolve().parent.parent / "docs" / "rtp-wire.rst"


def sine(amplitude, frequency=1000.0, sampleCount=8000, rate=8000):
    """
    A sine of C{amplitude} as an C{int16} array, a whole number of periods
    long.
    """
    times = np.arange(sampleCount) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * frequency * times)).astype(np.int16)


class RegistryTests(SynchronousTestCase):
    """
    Looking codecs up.
    """

    def test_byName(self):
        self.assertIs(codecByName("PCMU"), PCMU)
        self.assertIs(codecByName("pcma"), PCMA)
        self.assertIs(codecByName("Pcmu"), PCMU)

    def test_byPayloadType(self):
        self.assertIs(codecByPayloadType(0), PCMU)
        self.assertIs(codecByPayloadType(8), PCMA)

    def test_unknown(self):
        error = self.assertRaises(KeyError, codecByName, "G729")
        self.assertIn("G729", str(error))
        self.assertRaises(KeyError, codecByPayloadType, 18)
        # Comfort noise is not a codec in this registry.
        self.assertRaises(KeyError, codecByPayloadType, cn.CN_PAYLOAD_TYPE)
        self.assertRaises(KeyError, codecByName, cn.CN_NAME)

    def test_attributes(self):
        self.assertEqual([(c.name, c.payloadType, c.clockRate, c.channels) for c in CODECS],
                         [("PCMU", 0, 8000, 1), ("PCMA", 8, 8000, 1)])
        self.assertEqual(PCMU.rtpmap, "PCMU/8000")
        self.assertEqual(PCMA.rtpmap, "PCMA/8000")

    def test_interface(self):
        for codec in CODECS:
            self.assertTrue(verifyObject(ICodec, codec))


class FrameTests(SynchronousTestCase):
    """
    Frame sizes and silence.
    """

    def test_samplesPerFrame(self):
        for codec in CODECS:
            self.assertEqual(codec.samplesPerFrame(20), 160)
            self.assertEqual(codec.samplesPerFrame(10), 80)
            self.assertEqual(codec.samplesPerFrame(30), 240)
            self.assertEqual(codec.samplesPerFrame(0.5), 4)

    def test_badPtime(self):
        for ptime in (0, -20, 0.01):
            self.assertRaises(ValueError, PCMU.samplesPerFrame, ptime)
            self.assertRaises(ValueError, PCMA.silenceFrame, ptime)

    def test_silenceFrames(self):
        self.assertEqual(PCMU.silenceFrame(20), b"\xff" * 160)
        self.assertEqual(PCMA.silenceFrame(20), b"\xd5" * 160)
        self.assertEqual(PCMU.silenceFrame(30), b"\xff" * 240)

    def test_silenceIsEncodedZero(self):
        zeros = bytes(2 * 160)
        for codec in CODECS:
            self.assertEqual(codec.encode(zeros), codec.silenceFrame(20))

    def test_silenceDecodes(self):
        """
        PCMU silence decodes to exact zeros; PCMA silence to +8, the middle
        of the A-law interval around zero.
        """
        self.assertEqual(PCMU.decode(PCMU.silenceFrame(20)), bytes(320))
        self.assertEqual(PCMA.decodeArray(PCMA.silenceFrame(20)).tolist(), [8] * 160)

    def test_encodeDecode(self):
        pcm = sine(12000, sampleCount=160).astype("<i2").tobytes()
        self.assertEqual(PCMU.encode(pcm), g711.encodePcmu(pcm))
        self.assertEqual(PCMA.encode(pcm), g711.encodePcma(pcm))
        for codec in CODECS:
            decoded = np.frombuffer(codec.decode(codec.encode(pcm)), dtype="<i2").astype(np.int32)
            original = np.frombuffer(pcm, dtype="<i2").astype(np.int32)
            self.assertEqual(len(decoded), 160)
            # G.711 keeps about 3% relative error at this level.
            self.assertLess(int(np.max(np.abs(decoded - original))), 12000 * 0.04)


class ComfortNoisePayloadTests(SynchronousTestCase):
    """
    The CN payload (RFC 3389 section 3).
    """

    def test_levelOnly(self):
        payload = cn.ComfortNoise.parse(b"\x28")
        self.assertEqual(payload.level, 40)
        self.assertEqual(payload.dbov, -40)
        self.assertEqual(payload.reflectionCoefficients, b"")
        self.assertEqual(payload.serialize(), b"\x28")

    def test_coefficients(self):
        data = bytes((50, 127, 0, 254, 191))
        payload = cn.ComfortNoise.parse(data)
        self.assertEqual(payload.coefficients(), [0.0, -127 / 128, 1.0 - 1 / 128, 0.5])
        self.assertEqual(payload.serialize(), data)
        self.assertEqual(payload, cn.ComfortNoise(50, data[1:]))

    def test_quantize(self):
        self.assertEqual(cn.quantizeReflectionCoefficient(0.0), 127)
        self.assertEqual(cn.quantizeReflectionCoefficient(0.5), 191)
        self.assertEqual(cn.quantizeReflectionCoefficient(-1.0), 0)
        self.assertEqual(cn.quantizeReflectionCoefficient(1.0), 254)
        self.assertEqual(cn.quantizeReflectionCoefficient(-5), 0)

    def test_malformed(self):
        error = self.assertRaises(RtpParseError, cn.ComfortNoise.parse, b"")
        self.assertIn("empty", str(error))
        error = self.assertRaises(RtpParseError, cn.ComfortNoise.parse, b"\x80")
        self.assertIn("reserved bit", str(error))

    def test_badLevel(self):
        for level in (128, -1):
            self.assertRaises(ValueError, cn.ComfortNoise(level).serialize)

    def test_constants(self):
        self.assertEqual((cn.CN_PAYLOAD_TYPE, cn.CN_CLOCK_RATE, cn.CN_NAME), (13, 8000, "CN"))


class NoiseLevelTests(SynchronousTestCase):
    """
    dBov of PCM frames, relative to a 16-bit full-scale square wave.
    """

    def test_silence(self):
        self.assertEqual(cn.dbovFromPcm(bytes(320)), -math.inf)
        self.assertEqual(cn.levelFromPcm(bytes(320)), 127)
        self.assertEqual(cn.levelFromPcm(b""), 127)

    def test_fullScaleSine(self):
        """
        A full-scale sine is 10*log10(1/2), about -3.01 dBov.
        """
        frame = sine(32767)
        self.assertAlmostEqual(cn.dbovFromPcm(frame), 10 * math.log10(0.5), places=2)
        self.assertAlmostEqual(cn.dbovFromPcm(frame), -3.01, places=2)
        self.assertEqual(cn.levelFromPcm(frame), 3)
        self.assertEqual(cn.levelFromPcm(frame.astype("<i2").tobytes()), 3)

    def test_squareWave(self):
        square = np.tile(np.array([32767, -32767], dtype=np.int16), 80)
        self.assertAlmostEqual(cn.dbovFromPcm(square), 0.0, places=6)
        self.assertEqual(cn.levelFromPcm(square), 0)

    def test_quieterSines(self):
        for attenuation in (10, 20, 40, 60):
            frame = sine(32767 * 10 ** (-attenuation / 20))
            self.assertAlmostEqual(cn.dbovFromPcm(frame), -3.01 - attenuation, places=1)
            self.assertEqual(cn.levelFromPcm(frame), 3 + attenuation)

    def test_quietestSample(self):
        """
        A lone 1 in a 20 ms frame is about -112 dBov; the level clamps at
        127 below that.
        """
        frame = np.zeros(160, dtype=np.int16)
        frame[0] = 1
        self.assertEqual(cn.levelFromPcm(frame), round(-10 * math.log10(1 / 160 / 32767**2)))

    def test_oddLength(self):
        self.assertRaises(ValueError, cn.levelFromPcm, b"\x00")


class ComfortNoiseGeneratorTests(SynchronousTestCase):
    """
    Generated noise has the requested level and is reproducible when seeded.
    """

    def test_levels(self):
        generator = cn.ComfortNoiseGenerator(seed=1)
        for level in (10, 30, 50, 70, 80):
            noise = generator.generateArray(level, 8000)
            self.assertEqual(noise.dtype, np.int16)
            self.assertLessEqual(abs(cn.dbovFromPcm(noise) + level), 0.5, level)

    def test_roundTripThroughPayload(self):
        """
        Measure a frame, send its level, regenerate: the level survives.
        """
        original = sine(32767 * 10 ** (-37 / 20))
        payload = cn.ComfortNoise.parse(cn.ComfortNoise(cn.levelFromPcm(original)).serialize())
        noise = cn.ComfortNoiseGenerator(seed=3).generate(payload.level, 8000)
        self.assertEqual(cn.levelFromPcm(noise), cn.levelFromPcm(original))

    def test_seeded(self):
        first = cn.ComfortNoiseGenerator(seed=42).generate(40, 160)
        second = cn.ComfortNoiseGenerator(seed=42).generate(40, 160)
        other = cn.ComfortNoiseGenerator(seed=43).generate(40, 160)
        self.assertEqual(first, second)
        self.assertNotEqual(first, other)
        self.assertEqual(len(first), 320)

    def test_injectedGenerator(self):
        random = np.random.default_rng(7)
        generator = cn.ComfortNoiseGenerator(random=random)
        self.assertIs(generator.random, random)
        self.assertEqual(generator.generate(40, 80), cn.ComfortNoiseGenerator(seed=7).generate(40, 80))

    def test_silentLevel(self):
        noise = cn.ComfortNoiseGenerator(seed=1).generateArray(127, 160)
        self.assertEqual(int(np.count_nonzero(noise)), 0)

    def test_loudestClips(self):
        noise = cn.ComfortNoiseGenerator(seed=1).generateArray(0, 8000)
        self.assertEqual(int(noise.max()), 32767)
        self.assertEqual(int(noise.min()), -32768)

    def test_badArguments(self):
        generator = cn.ComfortNoiseGenerator(seed=1)
        self.assertRaises(ValueError, generator.generate, 128, 160)
        self.assertRaises(ValueError, generator.generate, -1, 160)
        self.assertRaises(ValueError, generator.generate, 40, -1)


class DocumentationTests(SynchronousTestCase):
    """
    The examples in docs/rtp-wire.rst run and print what the page says.
    """

    def test_examples(self):
        result = doctest.testfile(
            str(DOCS),
            module_relative=False,
            optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
            verbose=False,
            report=False,
        )
        self.assertGreater(result.attempted, 10)
        self.assertEqual(result.failed, 0)
