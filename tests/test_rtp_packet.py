"""
Tests for L{lmevoip.rtp.packet}: RTP packet parse/serialize (RFC 3550 5.1)
and rtcp-mux demultiplexing (RFC 5761 4).
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from lmevoip.rtp.packet import HeaderExtension, RtpPacket, RtpParseError, isRtcp

# A packet built by hand from the RFC 3550 5.1 field layout: no CSRC, no
# extension, no padding, PCMU silence.
MINIMAL = bytes.fromhex(
    "80"  # V=2 P=0 X=0 CC=0
    "00"  # M=0 PT=0
    "1234"  # sequence number
    "000000a0"  # timestamp 160
    "deadbeef"  # SSRC
) + b"\xff" * 160

# Every optional part at once.
FULL = bytes.fromhex(
    "b2"  # V=2 P=1 X=1 CC=2
    "88"  # M=1 PT=8
    "ffff"  # sequence number 65535
    "ffffffff"  # timestamp 2**32-1
    "01020304"  # SSRC
    "0a0b0c0d"  # CSRC 1
    "11121314"  # CSRC 2
    "bede"  # extension profile (RFC 8285 one-byte)
    "0001"  # extension length: 1 word
    "10aa0000"  # extension body: ID 1, L=0, value 0xaa, padding
    "d5d5"  # payload: two PCMA silence octets
    "000003"  # padding, count 3
)


def packets():
    """
    A hypothesis strategy for valid L{RtpPacket}s.
    """
    extension = st.none() | st.builds(
        HeaderExtension,
        st.integers(0, 0xFFFF),
        st.integers(0, 8).flatmap(lambda words: st.binary(min_size=4 * words, max_size=4 * words)),
    )
    return st.builds(
        RtpPacket,
        payloadType=st.integers(0, 127),
        sequenceNumber=st.integers(0, 0xFFFF),
        timestamp=st.integers(0, 0xFFFFFFFF),
        ssrc=st.integers(0, 0xFFFFFFFF),
        payload=st.binary(max_size=300),
        marker=st.booleans(),
        csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
        extension=extension,
        paddingLength=st.integers(0, 255),
    )


class KnownVectorTests(SynchronousTestCase):
    """
    Packets built by hand from the RFC field layout parse to the right
    fields and serialize to exactly the same bytes.
    """

    def test_minimalParse(self):
        packet = RtpPacket.parse(MINIMAL)
        self.assertEqual(packet.version, 2)
        self.assertFalse(packet.padding)
        self.assertFalse(packet.marker)
        self.assertEqual(packet.payloadType, 0)
        self.assertEqual(packet.sequenceNumber, 0x1234)
        self.assertEqual(packet.timestamp, 160)
        self.assertEqual(packet.ssrc, 0xDEADBEEF)
        self.assertEqual(packet.csrcs, [])
        self.assertIsNone(packet.extension)
        self.assertEqual(packet.paddingLength, 0)
        self.assertEqual(packet.payload, b"\xff" * 160)

    def test_minimalSerialize(self):
        packet = RtpPacket(
            payloadType=0, sequenceNumber=0x1234, timestamp=160, ssrc=0xDEADBEEF,
            payload=b"\xff" * 160,
        )
        self.assertEqual(packet.serialize(), MINIMAL)

    def test_fullParse(self):
        packet = RtpPacket.parse(FULL)
        self.assertTrue(packet.padding)
        self.assertTrue(packet.marker)
        self.assertEqual(packet.payloadType, 8)
        self.assertEqual(packet.sequenceNumber, 0xFFFF)
        self.assertEqual(packet.timestamp, 0xFFFFFFFF)
        self.assertEqual(packet.ssrc, 0x01020304)
        self.assertEqual(packet.csrcs, [0x0A0B0C0D, 0x11121314])
        self.assertEqual(packet.extension, HeaderExtension(0xBEDE, b"\x10\xaa\x00\x00"))
        self.assertEqual(packet.payload, b"\xd5\xd5")
        self.assertEqual(packet.paddingLength, 3)

    def test_fullSerialize(self):
        packet = RtpPacket(
            payloadType=8,
            sequenceNumber=0xFFFF,
            timestamp=0xFFFFFFFF,
            ssrc=0x01020304,
            payload=b"\xd5\xd5",
            marker=True,
            csrcs=[0x0A0B0C0D, 0x11121314],
            extension=(0xBEDE, b"\x10\xaa\x00\x00"),
            paddingLength=3,
        )
        self.assertEqual(packet.serialize(), FULL)

    def test_acceptsBuffers(self):
        """
        C{bytearray} and C{memoryview} parse like C{bytes}, and the payload
        comes back as C{bytes}.
        """
        for data in (bytearray(FULL), memoryview(FULL)):
            packet = RtpPacket.parse(data)
            self.assertEqual(packet, RtpPacket.parse(FULL))
            self.assertIsInstance(packet.payload, bytes)

    def test_paddingConsumesWholePayload(self):
        """
        Padding may take every octet after the header: an empty payload.
        """
        data = bytes.fromhex("a0000001000000020000000300000004")
        packet = RtpPacket.parse(data)
        self.assertEqual(packet.payload, b"")
        self.assertEqual(packet.paddingLength, 4)
        self.assertEqual(packet.serialize(), data)


class RoundTripTests(SynchronousTestCase):
    """
    C{parse(serialize(p)) == p}.
    """

    def test_csrcs(self):
        packet = RtpPacket(96, 1, 2, 3, b"x", csrcs=list(range(1, 16)))
        data = packet.serialize()
        self.assertEqual(data[0] & 0x0F, 15)
        self.assertEqual(len(data), 12 + 15 * 4 + 1)
        self.assertEqual(RtpPacket.parse(data), packet)

    def test_emptyExtension(self):
        """
        An extension with no words still sets X and carries its 4-byte
        header.
        """
        packet = RtpPacket(0, 1, 2, 3, b"abc", extension=(0x1000, b""))
        data = packet.serialize()
        self.assertEqual(data[12:16], b"\x10\x00\x00\x00")
        self.assertEqual(RtpPacket.parse(data), packet)

    def test_maximumPadding(self):
        packet = RtpPacket(0, 1, 2, 3, b"abc", paddingLength=255)
        data = packet.serialize()
        self.assertEqual(len(data), 12 + 3 + 255)
        self.assertEqual(data[-1], 255)
        self.assertEqual(RtpPacket.parse(data), packet)

    @given(packets())
    @settings(max_examples=300, deadline=None)
    def test_generated(self, packet):
        data = packet.serialize()
        self.assertEqual(RtpPacket.parse(data), packet)
        self.assertEqual(RtpPacket.parse(data).serialize(), data)


class MalformedTests(SynchronousTestCase):
    """
    Malformed input raises L{RtpParseError} naming the problem.
    """

    def assertParseError(self, data, *words):
        error = self.assertRaises(RtpParseError, RtpPacket.parse, data)
        self.assertIsInstance(error, ValueError)
        for word in words:
            self.assertIn(word, str(error))

    def test_short(self):
        for length in range(12):
            self.assertParseError(MINIMAL[:length], "too short", str(length))

    def test_version(self):
        for version in (0, 1, 3):
            data = bytes((version << 6,)) + MINIMAL[1:]
            self.assertParseError(data, "version", str(version))

    def test_csrcCountBeyondData(self):
        data = bytes((0x83,)) + MINIMAL[1:12] + b"\x00" * 11
        self.assertParseError(data, "CSRC count 3")

    def test_extensionHeaderBeyondData(self):
        data = bytes((0x90,)) + MINIMAL[1:12] + b"\xbe\xde"
        self.assertParseError(data, "extension header")

    def test_extensionBodyBeyondData(self):
        data = bytes((0x90,)) + MINIMAL[1:12] + b"\xbe\xde\x00\x02" + b"\x00" * 7
        self.assertParseError(data, "extension of 2 words")

    def test_paddingZero(self):
        data = bytes((0xA0,)) + MINIMAL[1:12] + b"\x01\x02\x00"
        self.assertParseError(data, "padding count is 0")

    def test_paddingBeyondPayload(self):
        data = bytes((0xA0,)) + MINIMAL[1:12] + b"\x01\x02\x04"
        self.assertParseError(data, "padding count 4")

    def test_paddingOverlapsExtension(self):
        """
        Padding is counted back from the end and must not reach into the
        header extension.
        """
        data = bytes((0xB0,)) + MINIMAL[1:12] + b"\xbe\xde\x00\x01\x00\x00\x00\x05"
        self.assertParseError(data, "padding count 5")

    @given(st.binary(max_size=200))
    @settings(max_examples=500, deadline=None)
    def test_fuzz(self, data):
        """
        Arbitrary bytes either parse or raise L{RtpParseError}; what parses
        survives a round trip.
        """
        try:
            packet = RtpPacket.parse(data)
        except RtpParseError:
            return
        self.assertEqual(RtpPacket.parse(packet.serialize()), packet)

    @given(st.integers(0, len(FULL) - 1), st.integers(0, 255), st.integers(0, len(FULL)))
    @settings(max_examples=300, deadline=None)
    def test_fuzzMutations(self, position, value, cut):
        """
        A valid packet with one octet changed and the tail cut still only
        ever raises L{RtpParseError}.
        """
        data = bytearray(FULL)
        data[position] = value
        try:
            packet = RtpPacket.parse(bytes(data[:cut]))
        except RtpParseError:
            return
        self.assertEqual(RtpPacket.parse(packet.serialize()), packet)


class SerializeValidationTests(SynchronousTestCase):
    """
    L{RtpPacket.serialize} rejects out-of-range fields with a C{ValueError}
    naming the field.
    """

    def assertInvalid(self, field, **fields):
        packet = RtpPacket(**fields)
        error = self.assertRaises(ValueError, packet.serialize)
        self.assertIn(field, str(error))

    def test_fields(self):
        self.assertInvalid("payloadType", payloadType=128)
        self.assertInvalid("payloadType", payloadType=-1)
        self.assertInvalid("sequenceNumber", sequenceNumber=0x10000)
        self.assertInvalid("timestamp", timestamp=-1)
        self.assertInvalid("ssrc", ssrc=1 << 32)
        self.assertInvalid("paddingLength", paddingLength=256)
        self.assertInvalid("csrcs", csrcs=[0] * 16)
        self.assertInvalid("csrcs entry", csrcs=[1 << 32])
        self.assertInvalid("extension data", extension=(1, b"abc"))
        self.assertInvalid("extension profile", extension=(0x10000, b""))

    def test_mutatedField(self):
        """
        Fields set after construction are checked too.
        """
        packet = RtpPacket(0, 1, 2, 3)
        packet.sequenceNumber = 70000
        self.assertRaises(ValueError, packet.serialize)


class PacketObjectTests(SynchronousTestCase):
    """
    Equality, the read-only version and the padding property.
    """

    def test_equality(self):
        packet = RtpPacket.parse(FULL)
        self.assertEqual(packet, RtpPacket.parse(FULL))
        other = RtpPacket.parse(FULL)
        other.marker = False
        self.assertNotEqual(packet, other)
        self.assertNotEqual(packet, FULL)

    def test_versionReadOnly(self):
        packet = RtpPacket()
        self.assertRaises(AttributeError, setattr, packet, "version", 3)

    def test_repr(self):
        text = repr(RtpPacket.parse(FULL))
        self.assertIn("payloadType=8", text)
        self.assertIn("paddingLength=3", text)


class IsRtcpTests(SynchronousTestCase):
    """
    L{isRtcp} separates RTCP from RTP on a multiplexed port by the second
    octet (RFC 5761 section 4).
    """

    def test_rtcpTypes(self):
        for packetType in (200, 201, 202, 203, 204, 205, 206, 207):
            self.assertTrue(isRtcp(bytes((0x80, packetType, 0, 1))), packetType)

    def test_rangeEdges(self):
        self.assertTrue(isRtcp(b"\x80\xc0"))  # 192
        self.assertTrue(isRtcp(b"\x80\xdf"))  # 223
        self.assertFalse(isRtcp(b"\x80\xbf"))  # 191: PT 63 with marker
        self.assertFalse(isRtcp(b"\x80\xe0"))  # 224: PT 96 with marker

    def test_rtp(self):
        for payloadType in (0, 8, 13, 96, 101, 127):
            for marker in (False, True):
                data = RtpPacket(payloadType, marker=marker).serialize()
                self.assertFalse(isRtcp(data), (payloadType, marker))

    def test_short(self):
        self.assertFalse(isRtcp(b""))
        self.assertFalse(isRtcp(b"\x80"))
