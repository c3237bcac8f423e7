"""
Tests for L{lmevoip.rtp.g711}: G.711 mu-law and A-law, checked over every
input against a scalar reference written from the G.711 segment tables and
against CPython's C{audioop} where it exists.
"""

import warnings

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from lmevoip.rtp import g711

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int32)
ALL_PCM = ALL_SAMPLES.astype("<i2").tobytes()
ALL_CODES = bytes(range(256))


def _importAudioop():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import audioop
    except ImportError:
        return None
    return audioop


audioop = _importAudioop()


# Scalar references, one sample at a time, from the G.711 tables: a sign
# bit, a 3-bit segment and a 4-bit interval within the segment. Negative
# samples use one's complement (as the ITU-T G.191 reference code does).


def _ulawSegment(segment):
    """
    Mu-law segment C{segment} in biased 14-bit units (magnitude + 33):
    its first value and its interval width.
    """
    return 32 << segment, 2 << segment


def referenceUlawEncode(sample):
    magnitude = (~sample if sample < 0 else sample) >> 2
    biased = min(magnitude + 33, 8191)
    segment = 0
    while biased >= 64 << segment:
        segment += 1
    base, step = _ulawSegment(segment)
    interval = (biased - base) // step
    code = 0x7F - ((segment << 4) | interval)
    return code | 0x80 if sample >= 0 else code


def referenceUlawDecode(code):
    inverted = 0xFF - code
    base, step = _ulawSegment((inverted >> 4) & 7)
    # The middle of the interval, unbiased, back to 16 bits.
    magnitude = (base + (inverted & 0x0F) * step + step // 2 - 33) * 4
    return -magnitude if inverted & 0x80 else magnitude


def _alawSegment(segment):
    """
    A-law segment C{segment} in 12-bit magnitude units: its first value and
    its interval width.
    """
    if segment == 0:
        return 0, 1
    return 16 << (segment - 1), 1 << max(segment - 1, 0)


def referenceAlawEncode(sample):
    magnitude = (~sample if sample < 0 else sample) >> 4
    segment = 0
    while segment < 7 and magnitude >= _alawSegment(segment + 1)[0]:
        segment += 1
    base, step = _alawSegment(segment)
    code = (segment << 4) | ((magnitude - base) // step)
    if sample >= 0:
        code |= 0x80
    return code ^ 0x55


def referenceAlawDecode(code):
    plain = code ^ 0x55
    base, step = _alawSegment((plain >> 4) & 7)
    # The middle of the interval (step / 2 in 16-bit units is step * 8).
    magnitude = (base + (plain & 0x0F) * step) * 16 + step * 8
    return magnitude if plain & 0x80 else -magnitude


class ReferenceTests(SynchronousTestCase):
    """
    The vectorised tables equal the scalar G.711 reference for every input.
    """

    def test_ulawEncode(self):
        expected = bytes(referenceUlawEncode(int(x)) for x in ALL_SAMPLES)
        self.assertEqual(g711.encodePcmu(ALL_PCM), expected)

    def test_alawEncode(self):
        expected = bytes(referenceAlawEncode(int(x)) for x in ALL_SAMPLES)
        self.assertEqual(g711.encodePcma(ALL_PCM), expected)

    def test_ulawDecode(self):
        self.assertEqual(g711.PCMU_DECODE_TABLE.tolist(), [referenceUlawDecode(c) for c in range(256)])

    def test_alawDecode(self):
        self.assertEqual(g711.PCMA_DECODE_TABLE.tolist(), [referenceAlawDecode(c) for c in range(256)])


class StandardValueTests(SynchronousTestCase):
    """
    The well-known G.711 bit patterns.
    """

    def test_ulaw(self):
        encode = lambda x: g711.encodePcmu(np.array([x], dtype=np.int16))[0]
        self.assertEqual(encode(0), 0xFF)
        self.assertEqual(encode(-1), 0x7F)
        self.assertEqual(encode(32767), 0x80)
        self.assertEqual(encode(-32768), 0x00)
        self.assertEqual(g711.decodePcmuArray(b"\xff\x7f\x80\x00\xfe").tolist(), [0, 0, 32124, -32124, 8])

    def test_alaw(self):
        encode = lambda x: g711.encodePcma(np.array([x], dtype=np.int16))[0]
        self.assertEqual(encode(0), 0xD5)
        self.assertEqual(encode(-1), 0x55)
        self.assertEqual(encode(32767), 0xAA)
        self.assertEqual(encode(-32768), 0x2A)
        self.assertEqual(g711.decodePcmaArray(b"\xd5\x55\xaa\x2a").tolist(), [8, -8, 32256, -32256])

    def test_silenceConstants(self):
        self.assertEqual(g711.encodePcmu(bytes(320)), bytes([g711.PCMU_SILENCE]) * 160)
        self.assertEqual(g711.encodePcma(bytes(320)), bytes([g711.PCMA_SILENCE]) * 160)


class PropertyTests(SynchronousTestCase):
    """
    Round trips, symmetry and monotonicity over every input.
    """

    def test_ulawCodesRoundTrip(self):
        """
        Every code decodes to a value that encodes back to it, except
        negative zero (0x7F), which decodes to 0 like 0xFF.
        """
        back = g711.encodePcmu(g711.decodePcmu(ALL_CODES))
        mismatched = [code for code in range(256) if back[code] != code]
        self.assertEqual(mismatched, [0x7F])
        self.assertEqual(back[0x7F], 0xFF)

    def test_alawCodesRoundTrip(self):
        self.assertEqual(g711.encodePcma(g711.decodePcma(ALL_CODES)), ALL_CODES)

    def test_symmetry(self):
        """
        C{x} and C{-1 - x} get codes that differ only in the sign bit.
        """
        for encode in (g711.encodePcmu, g711.encodePcma):
            codes = np.frombuffer(encode(ALL_PCM), dtype=np.uint8)
            self.assertTrue(np.array_equal(codes ^ 0x80, codes[::-1]))

    def test_monotonic(self):
        """
        Decoding the encoding never goes down as the input goes up, and
        stays within one segment-7 interval of the input.
        """
        for encode, decode in ((g711.encodePcmu, g711.decodePcmuArray), (g711.encodePcma, g711.decodePcmaArray)):
            values = decode(encode(ALL_PCM)).astype(np.int32)
            self.assertTrue(np.all(np.diff(values) >= 0))
            self.assertLessEqual(int(np.max(np.abs(values - ALL_SAMPLES))), 1024)


class AudioopOracleTests(SynchronousTestCase):
    """
    Comparison with CPython's C{audioop} (Python 3.12 and older).
    """

    def setUp(self):
        if audioop is None:
            raise self.skipTest("audioop is not available (removed in Python 3.13)")

    def test_decodeTablesMatch(self):
        self.assertEqual(g711.decodePcmu(ALL_CODES), audioop.ulaw2lin(ALL_CODES, 2))
        self.assertEqual(g711.decodePcma(ALL_CODES), audioop.alaw2lin(ALL_CODES, 2))

    def test_alawEncodeMatches(self):
        self.assertEqual(g711.encodePcma(ALL_PCM), audioop.lin2alaw(ALL_PCM, 2))

    def test_ulawEncodeDifference(self):
        """
        C{audioop.lin2ulaw} agrees for non-negative samples and is one
        14-bit step (4 units) off for negative ones:
        C{lin2ulaw(x) == encodePcmu(x - 4)}. This is the intentional,
        documented difference (G.191 one's complement versus audioop's
        two's complement after an arithmetic shift).
        """
        theirs = np.frombuffer(audioop.lin2ulaw(ALL_PCM, 2), dtype=np.uint8)
        ours = np.frombuffer(g711.encodePcmu(ALL_PCM), dtype=np.uint8)
        nonNegative = ALL_SAMPLES >= 0
        self.assertTrue(np.array_equal(theirs[nonNegative], ours[nonNegative]))
        shifted = np.maximum(ALL_SAMPLES - 4, -32768).astype(np.int16)
        oursShifted = np.frombuffer(g711.encodePcmu(shifted), dtype=np.uint8)
        self.assertTrue(np.array_equal(theirs[~nonNegative], oursShifted[~nonNegative]))
        # The difference is real (so the relation above is not vacuous) and
        # lies only at quantisation thresholds.
        differing = int(np.count_nonzero(theirs != ours))
        self.assertGreater(differing, 0)
        self.assertLess(differing, 1024)


class InputTypeTests(SynchronousTestCase):
    """
    Bytes-like and numpy inputs.
    """

    def test_arrays(self):
        samples = np.array([0, 1000, -1000, 32767, -32768], dtype=np.int16)
        for encode in (g711.encodePcmu, g711.encodePcma):
            self.assertEqual(encode(samples), encode(samples.astype("<i2").tobytes()))
            self.assertEqual(encode(samples.astype(">i2")), encode(samples))
            self.assertEqual(encode(samples[::2]), encode(samples[::2].copy()))

    def test_bufferTypes(self):
        pcm = np.arange(-500, 500, 7, dtype="<i2").tobytes()
        for encode in (g711.encodePcmu, g711.encodePcma):
            self.assertEqual(encode(bytearray(pcm)), encode(pcm))
            self.assertEqual(encode(memoryview(pcm)), encode(pcm))

    def test_wrongDtype(self):
        self.assertRaises(TypeError, g711.encodePcmu, np.zeros(4, dtype=np.int32))
        self.assertRaises(TypeError, g711.encodePcma, np.zeros(4, dtype=np.float32))

    def test_oddLength(self):
        error = self.assertRaises(ValueError, g711.encodePcmu, b"\x00\x00\x00")
        self.assertIn("even length", str(error))

    def test_decodeOutputs(self):
        payload = b"\x00\x7f\x80\xff"
        array = g711.decodePcmuArray(payload)
        self.assertEqual(array.dtype, np.int16)
        self.assertEqual(g711.decodePcmu(payload), array.astype("<i2").tobytes())
        self.assertEqual(g711.decodePcma(bytearray(payload)), g711.decodePcmaArray(payload).astype("<i2").tobytes())
        self.assertEqual(g711.decodePcmu(b""), b"")

    def test_tablesReadOnly(self):
        for table in (g711.PCMU_ENCODE_TABLE, g711.PCMA_ENCODE_TABLE, g711.PCMU_DECODE_TABLE, g711.PCMA_DECODE_TABLE):
            self.assertRaises(ValueError, table.__setitem__, 0, 1)
        self.assertEqual(g711.PCMU_ENCODE_TABLE.shape, (65536,))
        self.assertEqual(g711.PCMA_DECODE_TABLE.shape, (256,))
