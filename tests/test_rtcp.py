"""
Tests for L{lmevoip.rtp.rtcp}: RTCP packets, compound packets (RFC 3550
section 6, appendix A.2) and the NTP helpers.
"""

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from lmevoip.rtp.packet import RtpParseError
from lmevoip.rtp.rtcp import (
    SDES_CNAME,
    SDES_PRIV,
    SDES_TOOL,
    App,
    Bye,
    RawRtcpPacket,
    ReceiverReport,
    ReportBlock,
    RtcpParseError,
    SdesChunk,
    SenderReport,
    SourceDescription,
    compactFromSeconds,
    middle32,
    ntpFromUnix,
    ntpToInt,
    parseCompound,
    secondsFromCompact,
    serializeCompound,
    unixFromNtp,
)

# SR with one report block, then SDES with a CNAME: built by hand from the
# RFC 3550 6.4.1 and 6.5 layouts.
SR_SDES = bytes.fromhex(
    # SR: V=2 P=0 RC=1, PT=200, length 12 (13 words)
    "81c8000c"
    "11223344"  # sender SSRC
    "e5a1b2c3" "80000000"  # NTP timestamp, 0.5 s fraction
    "000000a0"  # RTP timestamp
    "0000000a"  # sender's packet count
    "00000640"  # sender's octet count 1600
    # report block
    "55667788"  # SSRC_1
    "19" "fffffd"  # fraction lost 25/256, cumulative lost -3
    "0001ffff"  # extended highest sequence number
    "00000007"  # interarrival jitter
    "b2c38000"  # LSR
    "00010000"  # DLSR, 1 s
    # SDES: V=2 P=0 SC=1, PT=202, length 6 (7 words)
    "81ca0006"
    "11223344"  # SSRC
    "0111" + b"alice@example.com".hex() + "00"  # CNAME, 17 octets; end
)

# RR with one report block, SDES with CNAME and TOOL, BYE with a reason.
RR_SDES_BYE = bytes.fromhex(
    # RR: V=2 P=0 RC=1, PT=201, length 7
    "81c90007"
    "0badcafe"
    "01020304"  # SSRC_1
    "00" "000000"  # nothing lost
    "00000064"  # highest sequence 100
    "00000000"  # jitter
    "00000000"  # LSR: no SR received yet
    "00000000"  # DLSR
    # SDES: SC=1, length 6
    "81ca0006"
    "0badcafe"
    "0108" + b"bob@host".hex()  # CNAME
    + "0607" + b"lmevoip".hex()  # TOOL
    + "00"  # end of items (23 + 1 octets: aligned)
    # BYE: SC=1, length 3
    + "81cb0003"
    "0badcafe"
    "05" + b"going".hex() + "0000"  # reason, padded to 32 bits
)


def srSdes():
    return [
        SenderReport(
            0x11223344,
            (0xE5A1B2C3, 0x80000000),
            160,
            10,
            1600,
            [ReportBlock(0x55667788, 25, -3, 0x1FFFF, 7, 0xB2C38000, 65536)],
        ),
        SourceDescription.fromCname(0x11223344, "alice@example.com"),
    ]


def rrSdesBye():
    return [
        ReceiverReport(0x0BADCAFE, [ReportBlock(0x01020304, highestSequence=100)]),
        SourceDescription([SdesChunk(0x0BADCAFE, [(SDES_CNAME, "bob@host"), (SDES_TOOL, "lmevoip")])]),
        Bye([0x0BADCAFE], "going"),
    ]


class KnownCompoundTests(SynchronousTestCase):
    """
    Hand-built compound packets parse to the right objects and the objects
    serialize to exactly those bytes.
    """

    def test_srSdesSerialize(self):
        self.assertEqual(serializeCompound(srSdes()), SR_SDES)

    def test_srSdesParse(self):
        packets = parseCompound(SR_SDES)
        self.assertEqual(packets, srSdes())
        sr, sdes = packets
        self.assertEqual(sr.ntpTimestamp, 0xE5A1B2C380000000)
        self.assertEqual(sr.reports[0].cumulativeLost, -3)
        self.assertEqual(sr.reports[0].fractionLost, 25)
        self.assertEqual(sdes.chunks[0].cname, "alice@example.com")

    def test_rrSdesByeSerialize(self):
        self.assertEqual(serializeCompound(rrSdesBye()), RR_SDES_BYE)

    def test_rrSdesByeParse(self):
        packets = parseCompound(RR_SDES_BYE)
        self.assertEqual(packets, rrSdesBye())
        self.assertEqual(packets[1].chunks[0].items[1], (SDES_TOOL, b"lmevoip"))
        self.assertEqual(packets[2].reason, b"going")

    def test_lsrIsMiddle32(self):
        """
        The LSR in the vector is the middle of the SR's NTP timestamp.
        """
        self.assertEqual(middle32((0xE5A1B2C3, 0x80000000)), 0xB2C38000)


class SignedCumulativeLostTests(SynchronousTestCase):
    """
    The cumulative number of packets lost is a signed 24-bit field.
    """

    def roundTrip(self, lost):
        data = ReportBlock(1, cumulativeLost=lost).serialize()
        return data, ReportBlock.parse(data).cumulativeLost

    def test_minusOne(self):
        data, lost = self.roundTrip(-1)
        self.assertEqual(data[5:8], b"\xff\xff\xff")
        self.assertEqual(lost, -1)

    def test_extremes(self):
        data, lost = self.roundTrip(-0x800000)
        self.assertEqual(data[5:8], b"\x80\x00\x00")
        self.assertEqual(lost, -0x800000)
        data, lost = self.roundTrip(0x7FFFFF)
        self.assertEqual(data[5:8], b"\x7f\xff\xff")
        self.assertEqual(lost, 0x7FFFFF)

    def test_fractionKeptSeparate(self):
        """
        A negative count does not spill into the fraction-lost octet.
        """
        data = ReportBlock(1, fractionLost=0x42, cumulativeLost=-2).serialize()
        self.assertEqual(data[4:8], b"\x42\xff\xff\xfe")
        self.assertEqual(ReportBlock.parse(data).fractionLost, 0x42)

    def test_outOfRange(self):
        for lost in (0x800000, -0x800001):
            error = self.assertRaises(ValueError, ReportBlock(1, cumulativeLost=lost).serialize)
            self.assertIn("cumulativeLost", str(error))


class RoundTripTests(SynchronousTestCase):
    """
    Packets of every kind survive C{parseCompound(serializeCompound(...))}.
    """

    def assertRoundTrip(self, packets, **kwargs):
        data = serializeCompound(packets)
        self.assertEqual(len(data) % 4, 0)
        self.assertEqual(parseCompound(data, **kwargs), packets)
        return data

    def test_emptyReceiverReport(self):
        data = self.assertRoundTrip([ReceiverReport(7)])
        self.assertEqual(data, bytes.fromhex("80c9000100000007"))

    def test_fullReports(self):
        blocks = [ReportBlock(index, index, -index, index << 16, index, index, index) for index in range(31)]
        self.assertRoundTrip([SenderReport(1, 2, 3, 4, 5, blocks)])
        self.assertRoundTrip([ReceiverReport(1, blocks)])

    def test_profileExtension(self):
        self.assertRoundTrip([ReceiverReport(1, [ReportBlock(2)], b"\x01\x02\x03\x04")])

    def test_sdesVariety(self):
        chunks = [
            SdesChunk(1, []),
            SdesChunk(2, [(SDES_CNAME, "a")]),
            SdesChunk(3, [(SDES_CNAME, "abc"), (SDES_PRIV, b"\x03abcxyz"), (9, b"")]),
            SdesChunk(4, [(SDES_CNAME, "x" * 255)]),
        ]
        data = self.assertRoundTrip([ReceiverReport(1), SourceDescription(chunks)])
        # The empty chunk is its SSRC and four null octets.
        self.assertEqual(data[12:20], bytes.fromhex("0000000100000000"))

    def test_byeVariety(self):
        self.assertRoundTrip([ReceiverReport(1), Bye([])])
        self.assertRoundTrip([ReceiverReport(1), Bye(list(range(31)), b"")])
        self.assertRoundTrip([ReceiverReport(1), Bye([1, 2], "x" * 255)])

    def test_unknownKeptRaw(self):
        """
        A packet type this module does not interpret (RTPFB, 205) is kept as
        a L{RawRtcpPacket} and written back unchanged.
        """
        nack = bytes.fromhex("81cd0003" "00000001" "00000002" "00100000")
        data = SR_SDES[:52] + nack
        packets = parseCompound(data)
        self.assertEqual(packets[1], RawRtcpPacket(205, 1, nack[4:]))
        self.assertEqual(serializeCompound(packets), data)

    def test_appPaddedWhenLast(self):
        """
        APP data that is not a multiple of 32 bits is padded with the P bit,
        which is allowed on the last packet.
        """
        app = App(5, 9, "test", b"xyz")
        data = self.assertRoundTrip([ReceiverReport(1), app])
        self.assertEqual(data[8:], bytes.fromhex("a5cc0003" "00000009") + b"testxyz\x01")

    def test_unalignedNotLast(self):
        error = self.assertRaises(
            ValueError, serializeCompound, [ReceiverReport(1), App(0, 1, "abcd", b"x"), ReceiverReport(2)]
        )
        self.assertIn("only the last packet", str(error))

    def test_singleSerialize(self):
        self.assertEqual(ReceiverReport(7).serialize(), bytes.fromhex("80c9000100000007"))

    def test_reprNamesFields(self):
        self.assertIn("ssrcs=[1]", repr(Bye([1])))


class PaddedCompoundTests(SynchronousTestCase):
    """
    Padding on the last packet is removed by the parser.
    """

    def test_paddedLast(self):
        bye = bytes.fromhex("a1cb0002" "00000001" "00000004")
        packets = parseCompound(SR_SDES + bye)
        self.assertEqual(packets[-1], Bye([1]))

    def test_paddedSolePacket(self):
        """
        A lone packet is also the last one, so it may be padded.
        """
        data = bytes.fromhex("a0c90002" "00000007" "00000004")
        self.assertEqual(parseCompound(data), [ReceiverReport(7)])


class InvalidCompoundTests(SynchronousTestCase):
    """
    The RFC 3550 A.2 validity checks and body checks raise
    L{RtcpParseError}, an L{RtpParseError} and a C{ValueError}.
    """

    def assertInvalid(self, data, *words, **kwargs):
        error = self.assertRaises(RtcpParseError, parseCompound, data, **kwargs)
        self.assertIsInstance(error, RtpParseError)
        self.assertIsInstance(error, ValueError)
        for word in words:
            self.assertIn(word, str(error))

    def test_short(self):
        for length in range(4):
            self.assertInvalid(SR_SDES[:length], "too short")

    def test_version(self):
        self.assertInvalid(b"\x41" + SR_SDES[1:], "version is 1")
        self.assertInvalid(SR_SDES[:52] + b"\xc1" + SR_SDES[53:], "packet 2", "version is 3")

    def test_firstNotReport(self):
        sdes = SR_SDES[52:]
        self.assertInvalid(sdes, "starts with packet type 202")
        self.assertEqual(parseCompound(sdes, allowReducedSize=True)[0].chunks[0].ssrc, 0x11223344)

    def test_paddingNotLast(self):
        data = b"\xa1" + SR_SDES[1:]
        self.assertInvalid(data, "padding bit but is not the last")

    def test_paddingCount(self):
        self.assertInvalid(bytes.fromhex("a0c90002" "00000007" "00000000"), "padding count 0")
        self.assertInvalid(bytes.fromhex("a0c90002" "00000007" "00000009"), "padding count 9")

    def test_lengthBeyondDatagram(self):
        self.assertInvalid(SR_SDES[:-4], "packet 2", "length field says 28 bytes, only 24 remain")

    def test_trailingBytes(self):
        self.assertInvalid(SR_SDES + b"\x00\x00", "2 trailing bytes")

    def test_reportBlocksBeyondLength(self):
        self.assertInvalid(bytes.fromhex("82c90008") + SR_SDES[4:32] + bytes(4), "2 report blocks")
        self.assertInvalid(bytes.fromhex("80c80001" "00000001"), "SR needs at least 28")
        self.assertInvalid(bytes.fromhex("80c90000"), "RR needs at least 8")

    def test_sdesItemOverrun(self):
        sdes = bytes.fromhex("81ca0002" "00000001" "0109616200")[:12]
        self.assertInvalid(bytes.fromhex("80c9000100000001") + sdes, "runs past")

    def test_sdesChunkMissing(self):
        sdes = bytes.fromhex("82ca0002" "00000001" "01016100")
        self.assertInvalid(bytes.fromhex("80c9000100000001") + sdes, "chunk 2 of 2 is missing")

    def test_sdesNoTerminator(self):
        sdes = bytes.fromhex("81ca0002" "00000001" "01026162")
        self.assertInvalid(bytes.fromhex("80c9000100000001") + sdes, "runs past")

    def test_sdesExtraBytes(self):
        sdes = bytes.fromhex("81ca0003" "00000001" "01016100" "00000000")
        self.assertInvalid(bytes.fromhex("80c9000100000001") + sdes, "4 bytes after")

    def test_byeOverruns(self):
        rr = bytes.fromhex("80c9000100000001")
        self.assertInvalid(rr + bytes.fromhex("82cb0001" "00000001"), "BYE with 2 sources")
        self.assertInvalid(rr + bytes.fromhex("81cb0002" "00000001" "09616263"), "reason of 9 bytes")

    def test_appShort(self):
        rr = bytes.fromhex("80c9000100000001")
        self.assertInvalid(rr + bytes.fromhex("80cc0001" "00000001"), "APP needs")

    @given(st.binary(max_size=120))
    @settings(max_examples=500, deadline=None)
    def test_fuzz(self, data):
        """
        Arbitrary bytes either parse or raise L{RtcpParseError}.
        """
        try:
            packets = parseCompound(data, allowReducedSize=True)
        except RtcpParseError:
            return
        self.assertEqual(parseCompound(serializeCompound(packets), allowReducedSize=True), packets)

    @given(
        st.integers(0, len(RR_SDES_BYE) - 1),
        st.integers(0, 255),
        st.integers(0, len(RR_SDES_BYE)),
    )
    @settings(max_examples=300, deadline=None)
    def test_fuzzMutations(self, position, value, cut):
        data = bytearray(RR_SDES_BYE)
        data[position] = value
        try:
            packets = parseCompound(bytes(data[:cut]))
        except RtcpParseError:
            return
        self.assertEqual(parseCompound(serializeCompound(packets)), packets)


def reportBlocks():
    return st.builds(
        ReportBlock,
        st.integers(0, 0xFFFFFFFF),
        st.integers(0, 255),
        st.integers(-0x800000, 0x7FFFFF),
        st.integers(0, 0xFFFFFFFF),
        st.integers(0, 0xFFFFFFFF),
        st.integers(0, 0xFFFFFFFF),
        st.integers(0, 0xFFFFFFFF),
    )


def firstPackets():
    words = st.integers(0, 3).flatmap(lambda count: st.binary(min_size=4 * count, max_size=4 * count))
    return st.builds(
        SenderReport,
        st.integers(0, 0xFFFFFFFF),
        st.integers(0, 0xFFFFFFFFFFFFFFFF),
        st.integers(0, 0xFFFFFFFF),
        st.integers(0, 0xFFFFFFFF),
        st.integers(0, 0xFFFFFFFF),
        st.lists(reportBlocks(), max_size=4),
        words,
    ) | st.builds(ReceiverReport, st.integers(0, 0xFFFFFFFF), st.lists(reportBlocks(), max_size=4), words)


def otherPackets():
    items = st.lists(st.tuples(st.integers(1, 255), st.binary(max_size=40)), max_size=4)
    return (
        st.builds(SourceDescription, st.lists(st.builds(SdesChunk, st.integers(0, 0xFFFFFFFF), items), max_size=4))
        | st.builds(Bye, st.lists(st.integers(0, 0xFFFFFFFF), max_size=31), st.none() | st.binary(max_size=255))
        | st.builds(
            App,
            st.integers(0, 31),
            st.integers(0, 0xFFFFFFFF),
            st.binary(min_size=4, max_size=4),
            st.integers(0, 4).map(lambda count: bytes(4 * count)),
        )
        | st.builds(
            RawRtcpPacket,
            st.integers(205, 255),
            st.integers(0, 31),
            st.integers(0, 4).map(lambda count: b"\x01" * (4 * count)),
        )
    )


class GeneratedCompoundTests(SynchronousTestCase):
    """
    Generated compounds survive a round trip.
    """

    @given(firstPackets(), st.lists(otherPackets(), max_size=5))
    @settings(max_examples=200, deadline=None)
    def test_roundTrip(self, first, others):
        packets = [first] + others
        data = serializeCompound(packets)
        self.assertEqual(parseCompound(data), packets)
        self.assertEqual(serializeCompound(parseCompound(data)), data)


class SerializeValidationTests(SynchronousTestCase):
    """
    Fields that do not fit raise C{ValueError} naming them.
    """

    def assertInvalid(self, packets, word):
        error = self.assertRaises(ValueError, serializeCompound, packets)
        self.assertIn(word, str(error))

    def test_tooManyReports(self):
        self.assertInvalid([ReceiverReport(1, [ReportBlock(2)] * 32)], "reports has 32")

    def test_fields(self):
        self.assertInvalid([ReceiverReport(1 << 32)], "ssrc")
        self.assertInvalid([ReceiverReport(1, [ReportBlock(1, fractionLost=256)])], "fractionLost")
        self.assertInvalid([SenderReport(1, 1 << 64)], "ntpTimestamp")
        self.assertInvalid([SenderReport(1, 0, packetCount=-1)], "packetCount")
        self.assertInvalid([ReceiverReport(1), SourceDescription([SdesChunk(1, [(0, b"x")])])], "item type")
        self.assertInvalid([ReceiverReport(1), SourceDescription([SdesChunk(1, [(1, b"x" * 256)])])], "256 bytes")
        self.assertInvalid([ReceiverReport(1), Bye([1], b"x" * 256)], "BYE reason")
        self.assertInvalid([ReceiverReport(1), Bye(range(32))], "ssrcs has 32")
        self.assertInvalid([ReceiverReport(1), App(32, 1, "abcd")], "subtype")
        self.assertInvalid([ReceiverReport(1), App(1, 1, "abc")], "4 octets")
        self.assertInvalid([ReceiverReport(1), RawRtcpPacket(256)], "packetType")


class NtpTests(SynchronousTestCase):
    """
    NTP timestamp helpers.
    """

    def test_unixEpoch(self):
        self.assertEqual(ntpFromUnix(0), (2208988800, 0))

    def test_fraction(self):
        self.assertEqual(ntpFromUnix(1.5), (2208988801, 0x80000000))
        self.assertEqual(ntpFromUnix(1.25), (2208988801, 0x40000000))

    def test_eraWrap(self):
        """
        NTP seconds wrap to 0 in February 2036 (era 1).
        """
        wrap = (1 << 32) - 2208988800
        self.assertEqual(ntpFromUnix(wrap), (0, 0))
        self.assertEqual(ntpFromUnix(wrap - 1), (0xFFFFFFFF, 0))

    def test_inverse(self):
        for seconds in (0.0, 1.5, 1700000000.123456, 2000000000.75):
            self.assertAlmostEqual(unixFromNtp(ntpFromUnix(seconds)), seconds, places=5)

    def test_forms(self):
        self.assertEqual(ntpToInt((0x12345678, 0x9ABCDEF0)), 0x123456789ABCDEF0)
        self.assertEqual(ntpToInt(0x123456789ABCDEF0), 0x123456789ABCDEF0)
        self.assertEqual(middle32(0x123456789ABCDEF0), 0x56789ABC)
        self.assertEqual(middle32((0x12345678, 0x9ABCDEF0)), 0x56789ABC)

    def test_senderReportTakesPair(self):
        self.assertEqual(SenderReport(1, (1, 2)).ntpTimestamp, (1 << 32) | 2)

    def test_compact(self):
        self.assertEqual(compactFromSeconds(1.5), 98304)
        self.assertEqual(compactFromSeconds(-1), 0)
        self.assertEqual(compactFromSeconds(1e9), 0xFFFFFFFF)
        self.assertEqual(secondsFromCompact(98304), 1.5)

    def test_roundTripTime(self):
        """
        RFC 3550 6.4.1: RTT = A - LSR - DLSR, all in the compact unit.
        """
        sent = ntpFromUnix(1000.0)
        lastSr = middle32(sent)
        delay = compactFromSeconds(0.25)
        arrival = middle32(ntpFromUnix(1000.0 + 0.25 + 0.1))
        rtt = secondsFromCompact((arrival - lastSr - delay) & 0xFFFFFFFF)
        self.assertAlmostEqual(rtt, 0.1, places=4)

    def test_wireLayout(self):
        data = serializeCompound([SenderReport(1, ntpFromUnix(1.5))])
        self.assertEqual(struct.unpack("!II", data[8:16]), (2208988801, 0x80000000))
