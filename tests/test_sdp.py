"""
Tests for L{lmevoip.sip.sdp}: parsing and serializing session descriptions
(RFC 8866) and the RFC 3264 offer/answer helpers.
"""

import re
from pathlib import Path

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from lmevoip.sip import sdp
from lmevoip.sip.sdp import (
    Connection,
    MediaDescription,
    NegotiationError,
    Origin,
    RtpMap,
    SdpParseError,
    SessionDescription,
    Timing,
    answerOffer,
    holdSession,
    makeOffer,
    negotiateAnswer,
    resumeSession,
    reviseSession,
)

from .support import sharedTestdata


def crlf(text: str) -> bytes:
    """
    Turn a readable, LF-separated literal into CRLF wire bytes.
    """
    return text.strip("\n").replace("\n", "\r\n").encode("utf-8") + b"\r\n"


# A baresip-style offer: opus first, a=ssrc, a=label, a=rtcp-rsize.
BARESIP_OFFER = crlf("""
v=0
o=- 1893204183 3482157036 IN IP4 192.168.1.20
s=-
c=IN IP4 192.168.1.20
t=0 0
m=audio 10466 RTP/AVP 96 9 0 8 101
b=AS:82
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=label:1
a=ssrc:3283419540 cname:8a1b6c33-1b2f-4c08-9d5c-52a2d4c2c1f1
a=rtcp-rsize
a=ptime:20
""")

# An Asterisk-style offer with many codecs, a dynamic G726 and maxptime.
ASTERISK_OFFER = crlf("""
v=0
o=- 1697023658 1697023658 IN IP4 203.0.113.10
s=Asterisk
c=IN IP4 203.0.113.10
t=0 0
m=audio 14056 RTP/AVP 9 0 8 3 111 18 97 101 13
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:3 GSM/8000
a=rtpmap:111 G726-32/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:97 iLBC/8000
a=fmtp:97 mode=30
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=rtpmap:13 CN/8000
a=ptime:20
a=maxptime:150
a=sendrecv
""")

# A Linphone-style offer: session-level rtcp-xr, an a=rtcp with an address,
# three telephone-event rates, and a video section reusing payload type 96.
LINPHONE_OFFER = crlf("""
v=0
o=alice 3211 1765 IN IP4 192.168.0.14
s=Talk
c=IN IP4 192.168.0.14
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
m=audio 7078 RTP/AVP 96 97 98 0 8 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=fmtp:97 vbr=on
a=rtpmap:98 speex/8000
a=fmtp:98 vbr=on
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp:7081 IN IP4 192.168.0.99
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
m=video 9078 RTP/AVP 96 97
a=rtpmap:96 VP8/90000
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=42801F
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:96 nack pli
""")

# IPv6, rtcp-mux, an RFC 3605 a=rtcp with an IPv6 address, sendonly.
IPV6_OFFER = crlf("""
v=0
o=- 2890844526 2890842807 IN IP6 2001:db8::1
s=-
c=IN IP6 2001:db8::1
t=0 0
m=audio 49170 RTP/AVP 0 8 101
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=rtcp:49171 IN IP6 2001:db8::2
a=rtcp-mux
a=sendonly
""")

# Every optional RFC 8866 line type, and lines RFC 8866 does not define
# (GB28181 cameras send y= and f=).
ALL_LINES = crlf("""
v=0
o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5
s=SDP Seminar
i=A Seminar on the session description protocol
u=http://www.example.com/seminars/sdp.pdf
e=j.doe@example.com (Jane Doe)
p=+1 617 555-6011
c=IN IP4 224.2.17.12/127
b=CT:128
t=2873397496 2873404696
r=7d 1h 0 25h
t=0 0
z=2882844526 -1h 2898848070 0
k=clear:secret
a=recvonly
a=tool:testing
m=audio 49170 RTP/AVP 0
i=The audio
c=IN IP4 224.2.17.13/127/2
b=AS:64
k=prompt
a=x-unknown
y=0100000001
f=v/2/4///a///
m=video 51372/2 RTP/AVP 99
a=rtpmap:99 h263-1998/90000
""")


def parse(data: bytes | str) -> SessionDescription:
    return SessionDescription.parse(data)


class RealWorldParseTests(SynchronousTestCase):
    """
    Realistic descriptions parse into the data model and serialize back to
    the same bytes.
    """

    def assertRoundTrip(self, data: bytes) -> SessionDescription:
        session = parse(data)
        self.assertEqual(session.serialize(), data)
        self.assertEqual(parse(session.serialize()), session)
        return session

    def test_baresip(self) -> None:
        """
        A baresip-style offer: opus first, fmtp, bandwidth, unknown
        attributes kept in order.
        """
        session = self.assertRoundTrip(BARESIP_OFFER)
        self.assertEqual(session.version, 0)
        self.assertEqual(session.origin, Origin("-", 1893204183, 3482157036,
                                                "IN", "IP4", "192.168.1.20"))
        self.assertEqual(session.sessionName, "-")
        self.assertEqual(session.connection, Connection("IN", "IP4", "192.168.1.20"))
        self.assertEqual(session.timing, [Timing(0, 0)])
        [audio] = session.media
        self.assertEqual((audio.media, audio.port, audio.portCount, audio.proto),
                         ("audio", 10466, None, "RTP/AVP"))
        self.assertEqual(audio.formats, ["96", "9", "0", "8", "101"])
        self.assertEqual(audio.bandwidths, [("AS", 82)])
        self.assertEqual(list(audio.rtpmaps), [96, 9, 0, 8, 101])
        self.assertEqual(audio.rtpmaps[96], RtpMap(96, "opus", 48000, 2))
        self.assertEqual(audio.rtpmaps[101], RtpMap(101, "telephone-event", 8000, 1))
        self.assertEqual(audio.fmtp(96), "stereo=1;sprop-stereo=1")
        self.assertEqual(audio.fmtp(101), "0-15")
        self.assertIsNone(audio.fmtp(0))
        self.assertEqual(audio.ptime, 20)
        self.assertIsNone(audio.maxptime)
        self.assertEqual(audio.direction, "sendrecv")
        self.assertFalse(audio.rtcpMux)
        self.assertIsNone(audio.rtcpPort)
        self.assertEqual(audio.connectionAddress, "192.168.1.20")
        self.assertEqual([name for name, _ in audio.attributes][-4:],
                         ["label", "ssrc", "rtcp-rsize", "ptime"])
        self.assertEqual(audio.attribute("ssrc"),
                         "3283419540 cname:8a1b6c33-1b2f-4c08-9d5c-52a2d4c2c1f1")
        self.assertIsNone(audio.attribute("rtcp-rsize"))
        self.assertTrue(audio.hasAttribute("rtcp-rsize"))

    def test_asterisk(self) -> None:
        """
        An Asterisk-style offer: many codecs in order, a dynamic G726,
        static payload types with their rtpmaps, maxptime.
        """
        session = self.assertRoundTrip(ASTERISK_OFFER)
        self.assertEqual(session.sessionName, "Asterisk")
        [audio] = session.media
        self.assertEqual(
            [(pt, r.encodingName, r.clockRate) for pt, r in audio.rtpmaps.items()],
            [(9, "G722", 8000), (0, "PCMU", 8000), (8, "PCMA", 8000), (3, "GSM", 8000),
             (111, "G726-32", 8000), (18, "G729", 8000), (97, "iLBC", 8000),
             (101, "telephone-event", 8000), (13, "CN", 8000)])
        self.assertEqual(audio.fmtp(18), "annexb=no")
        self.assertEqual(audio.fmtp(97), "mode=30")
        self.assertEqual(audio.maxptime, 150)
        self.assertEqual(audio.ptime, 20)

    def test_linphone(self) -> None:
        """
        A Linphone-style offer: an a=rtcp with port and address, a
        session-level attribute, and a video section whose payload type 96 is
        not the audio section's.
        """
        session = self.assertRoundTrip(LINPHONE_OFFER)
        self.assertEqual(session.attributes[0][0], "rtcp-xr")
        audio, video = session.media
        self.assertEqual(audio.rtcpPort, 7081)
        self.assertEqual(audio.rtcpAddress, "192.168.0.99")
        self.assertEqual(audio.rtpmaps[96].encodingName, "opus")
        self.assertEqual(audio.rtpmaps[100], RtpMap(100, "telephone-event", 8000))
        self.assertEqual(video.rtpmaps[96], RtpMap(96, "VP8", 90000))
        self.assertEqual(video.fmtp(97), "profile-level-id=42801F")
        self.assertIsNone(video.rtcpPort)
        self.assertEqual(video.connectionAddress, "192.168.0.14")
        self.assertEqual(video.attributeValues("rtcp-fb"), ["* trr-int 1000", "96 nack pli"])

    def test_ipv6(self) -> None:
        """
        IPv6 addresses, an IPv6 a=rtcp, rtcp-mux and sendonly; static payload
        types 0 and 8 are implied without a=rtpmap.
        """
        session = self.assertRoundTrip(IPV6_OFFER)
        self.assertEqual(session.origin.addrType, "IP6")
        [audio] = session.media
        self.assertEqual(audio.connectionAddress, "2001:db8::1")
        self.assertEqual(audio.rtcpPort, 49171)
        self.assertEqual(audio.rtcpAddress, "2001:db8::2")
        self.assertTrue(audio.rtcpMux)
        self.assertEqual(audio.direction, "sendonly")
        self.assertEqual(audio.rtpmaps[0], RtpMap(0, "PCMU", 8000))
        self.assertEqual(audio.rtpmaps[8], RtpMap(8, "PCMA", 8000))

    def test_allLineTypes(self) -> None:
        """
        i u e p z k r lines, several t= lines, multicast c= lines, a port
        count, and lines of unknown types are kept and written back.
        """
        session = self.assertRoundTrip(ALL_LINES)
        self.assertEqual(session.information, "A Seminar on the session description protocol")
        self.assertEqual(session.uri, "http://www.example.com/seminars/sdp.pdf")
        self.assertEqual(session.emails, ["j.doe@example.com (Jane Doe)"])
        self.assertEqual(session.phones, ["+1 617 555-6011"])
        self.assertEqual(session.bandwidths, [("CT", 128)])
        self.assertEqual(session.timing, [Timing(2873397496, 2873404696, ["7d 1h 0 25h"]),
                                          Timing(0, 0)])
        self.assertEqual(session.timeZones, "2882844526 -1h 2898848070 0")
        self.assertEqual(session.encryptionKey, "clear:secret")
        self.assertEqual(session.connection.host, "224.2.17.12")
        self.assertEqual(session.direction, "recvonly")
        audio, video = session.media
        self.assertEqual(audio.information, "The audio")
        self.assertEqual(audio.connection.address, "224.2.17.13/127/2")
        self.assertEqual(audio.connectionAddress, "224.2.17.13")
        self.assertEqual(audio.encryptionKey, "prompt")
        self.assertEqual(audio.unknownLines, [("y", "0100000001"), ("f", "v/2/4///a///")])
        self.assertEqual(audio.attributes, [("x-unknown", None)])
        self.assertEqual((video.port, video.portCount), (51372, 2))
        self.assertEqual(video.connectionAddress, "224.2.17.12")
        # Session-level recvonly is inherited by both sections.
        self.assertEqual([m.direction for m in session.media], ["recvonly", "recvonly"])

    def test_rfc4475Bodies(self) -> None:
        """
        The SDP bodies of the RFC 4475 torture messages parse; their
        "a=rtpmap:31 LPC" has no clock rate, so the rtpmaps helper ignores it
        and falls back to the static H261 assignment.
        """
        for name in ["sdp01.dat", "inv2543.dat", "wsinv.dat", "esc01.dat"]:
            data = sharedTestdata("rfc4475", name).read_bytes()
            body = data[data.index(b"\r\n\r\n") + 4:]
            session = self.assertRoundTrip(body)
            self.assertEqual(session.media[0].rtpmaps[0].encodingName, "PCMU", name)
        session = parse(sharedTestdata("rfc4475", "sdp01.dat").read_bytes().split(b"\r\n\r\n", 1)[1])
        video = session.media[1]
        self.assertEqual(video.attributeValues("rtpmap"), ["31 LPC"])
        self.assertEqual(video.rtpmaps, {31: RtpMap(31, "H261", 90000)})
        self.assertEqual(session.media[0].rtpmaps[12], RtpMap(12, "QCELP", 8000))


class LenientParseTests(SynchronousTestCase):
    """
    Sloppiness real phones show is accepted.
    """

    def test_lfLineEnds(self) -> None:
        """
        LF line ends are accepted; the output has CRLF.
        """
        session = parse(BARESIP_OFFER.replace(b"\r\n", b"\n"))
        self.assertEqual(session.serialize(), BARESIP_OFFER)

    def test_missingSessionNameAndTiming(self) -> None:
        """
        A description without s= and t= (RFC 4475 mismatch02.dat has one)
        gets C{s=-} and C{t=0 0}.
        """
        data = sharedTestdata("rfc4475", "mismatch02.dat").read_bytes()
        session = parse(data[data.index(b"\r\n\r\n") + 4:])
        self.assertEqual(session.sessionName, "-")
        self.assertEqual(session.timing, [Timing(0, 0)])
        self.assertIn(b"\r\ns=-\r\n", session.serialize())
        self.assertIn(b"\r\nt=0 0\r\n", session.serialize())

    def test_blankLinesWhitespaceNoFinalNewline(self) -> None:
        """
        Blank lines are skipped, extra spaces in tokenised lines are
        tolerated, and the last line need not end in a newline.
        """
        session = parse("v=0\r\n\r\no=- 1  2 IN IP4 192.0.2.1 \r\ns=x\r\nc=IN IP4 192.0.2.1\r\n"
                        "t=0 0\r\nm=audio  4000 RTP/AVP 0 8 \r\n\r\na=sendonly")
        self.assertEqual(session.origin.sessionVersion, 2)
        self.assertEqual(session.media[0].formats, ["0", "8"])
        self.assertEqual(session.media[0].direction, "sendonly")

    def test_outOfOrderSessionLines(self) -> None:
        """
        Session-level lines in another order than RFC 8866's (a= before t=,
        as LIVE555 cameras write) are accepted and written in RFC order.
        """
        session = parse("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\na=tool:x\nc=IN IP4 192.0.2.1\n"
                        "t=0 0\nm=audio 4000 RTP/AVP 0\n")
        self.assertEqual(session.attributes, [("tool", "x")])
        self.assertEqual(session.serialize().split(b"\r\n")[3:6],
                         [b"c=IN IP4 192.0.2.1", b"t=0 0", b"a=tool:x"])

    def test_mediaWithoutFormats(self) -> None:
        """
        An m= line without formats is accepted and written back as it was.
        """
        data = crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nm=video 0 RTP/AVP")
        session = parse(data)
        self.assertEqual(session.media[0].formats, [])
        self.assertTrue(session.media[0].rejected)
        self.assertEqual(session.serialize(), data)

    def test_nonUtf8Kept(self) -> None:
        """
        Octets that are not UTF-8 (a Latin-1 session name) are kept and
        written back unchanged; UTF-8 text is decoded.
        """
        data = crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=X\ni=Gr\u00fc\u00dfe\nt=0 0").replace(
            b"s=X", b"s=Caf\xe9")
        session = parse(data)
        self.assertEqual(session.information, "Gr\u00fc\u00dfe")
        self.assertEqual(session.serialize(), data)

    def test_strInput(self) -> None:
        """
        A str parses the same as its UTF-8 bytes.
        """
        self.assertEqual(parse(LINPHONE_OFFER.decode("utf-8")), parse(LINPHONE_OFFER))

    def test_malformedKnownAttributes(self) -> None:
        """
        Malformed values of attributes the helpers read are kept and count as
        absent: bad a=ptime, bad a=rtcp, bad a=rtpmap for a dynamic type.
        """
        session = parse("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n"
                        "m=audio 4000 RTP/AVP 0 96\na=ptime:abc\na=rtcp:99999\n"
                        "a=rtpmap:96 opus\n")
        [audio] = session.media
        self.assertIsNone(audio.ptime)
        self.assertIsNone(audio.rtcpPort)
        self.assertEqual(list(audio.rtpmaps), [0])
        self.assertEqual(audio.attribute("ptime"), "abc")

    def test_realPtime(self) -> None:
        """
        ptime written as a real number counts in whole milliseconds.
        """
        media = MediaDescription(formats=["0"], attributes=[("ptime", "30.0")])
        self.assertEqual(media.ptime, 30)


class InheritanceTests(SynchronousTestCase):
    """
    Media-level helpers fall back to the session level.
    """

    def test_directionOverride(self) -> None:
        """
        The media-level direction overrides the session-level one; a section
        without one inherits it; without either it is sendrecv.
        """
        session = parse("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n"
                        "a=inactive\nm=audio 4000 RTP/AVP 0\nm=audio 4002 RTP/AVP 0\n"
                        "a=sendrecv\n")
        self.assertEqual([m.direction for m in session.media], ["inactive", "sendrecv"])
        session.attributes.clear()
        self.assertEqual(session.media[0].direction, "sendrecv")

    def test_ptimeAndConnection(self) -> None:
        """
        Session-level ptime and c= apply to sections without their own.
        """
        session = parse("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n"
                        "a=ptime:30\nm=audio 4000 RTP/AVP 0\nm=audio 4002 RTP/AVP 0\n"
                        "c=IN IP4 192.0.2.7\na=ptime:40\n")
        first, second = session.media
        self.assertEqual((first.ptime, first.connectionAddress), (30, "192.0.2.1"))
        self.assertEqual((second.ptime, second.connectionAddress), (40, "192.0.2.7"))

    def test_addMedia(self) -> None:
        """
        A section added with L{SessionDescription.addMedia} inherits; one
        that stands alone only sees its own lines.
        """
        session = SessionDescription(origin=Origin("-", 1, 1, "IN", "IP4", "192.0.2.1"),
                                     connection=Connection("IN", "IP4", "192.0.2.1"),
                                     attributes=[("sendonly", None)])
        alone = MediaDescription(port=4000, formats=["0"])
        self.assertEqual((alone.direction, alone.connectionAddress), ("sendrecv", None))
        self.assertIs(session.addMedia(alone), alone)
        self.assertEqual((alone.direction, alone.connectionAddress), ("sendonly", "192.0.2.1"))
        self.assertEqual(parse(session.serialize()), session)

    def test_setDirection(self) -> None:
        """
        L{MediaDescription.setDirection} replaces every direction attribute
        in place of the first.
        """
        media = MediaDescription(attributes=[("rtpmap", "0 PCMU/8000"), ("sendrecv", None),
                                             ("ptime", "20"), ("inactive", None)])
        media.setDirection("recvonly")
        self.assertEqual(media.attributes, [("rtpmap", "0 PCMU/8000"), ("recvonly", None),
                                            ("ptime", "20")])
        self.assertRaises(ValueError, media.setDirection, "send")


class MalformedTests(SynchronousTestCase):
    """
    Malformed descriptions raise L{SdpParseError} saying what and where.
    """

    VALID = ["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0",
             "m=audio 4000 RTP/AVP 0"]

    def assertMalformed(self, data: bytes | str, lineNumber: int | None = None,
                        detail: str = "") -> SdpParseError:
        error = self.assertRaises(SdpParseError, parse, data)
        self.assertIsInstance(error, ValueError)
        self.assertEqual(error.lineNumber, lineNumber)
        self.assertIn(detail, str(error))
        return error

    def withLine(self, index: int, line: str | None) -> str:
        """
        The valid description with line C{index} replaced (removed when
        C{line} is None, appended when C{index} is past the end).
        """
        lines = list(self.VALID)
        if index >= len(lines):
            lines.append(line)
        elif line is None:
            del lines[index]
        else:
            lines[index] = line
        return "\r\n".join(lines) + "\r\n"

    def test_validBaseline(self) -> None:
        """
        The base of the other tests parses.
        """
        self.assertEqual(parse(self.withLine(99, "a=sendrecv")).media[0].port, 4000)

    def test_empty(self) -> None:
        self.assertMalformed(b"", None, "empty")
        self.assertMalformed(b"\r\n \r\n", None, "empty")

    def test_version(self) -> None:
        """
        v= must come first and be 0, once.
        """
        self.assertMalformed(self.withLine(0, "v=1"), 1, "version")
        self.assertMalformed(self.withLine(0, None), 1, "starts with v=")
        self.assertMalformed(self.withLine(2, "v=0"), 3, "more than one v=")

    def test_origin(self) -> None:
        self.assertMalformed(self.withLine(1, None), None, "no o= line")
        self.assertMalformed(self.withLine(1, "o=- 1 1 IN IP4"), 2, "6 fields")
        self.assertMalformed(self.withLine(1, "o=- abc 1 IN IP4 192.0.2.1"), 2, "sess-id")
        self.assertMalformed(self.withLine(1, "o=- 1 -1 IN IP4 192.0.2.1"), 2, "sess-version")

    def test_mediaLine(self) -> None:
        """
        m= needs media, a numeric port (0-65535, optional /count), proto.
        """
        for line in ["m=audio", "m=audio 4000", "m=audio abc RTP/AVP 0",
                     "m=audio 70000 RTP/AVP 0", "m=audio 4000/x RTP/AVP 0",
                     "m=audio -1 RTP/AVP 0", "m=audio 4_000 RTP/AVP 0",
                     "m=audio \u0663 RTP/AVP 0", "m=audio +4000 RTP/AVP 0"]:
            self.assertMalformed(self.withLine(5, line), 6)

    def test_otherLines(self) -> None:
        cases = [
            (3, "c=IN IP4"), (3, "c=IN IP4 192.0.2.1 extra"), (4, "t=0"), (4, "t=now 0"),
            (99, "b=AS"), (99, "b=AS:fast"), (99, "b=:64"), (99, "a="), (99, "a=:value"),
            (99, "hello"), (99, "V=0"), (99, "vv=0"), (99, "=0"), (99, " a=sendrecv"),
            (99, "a=x\0y"), (99, "a=x\ry"), (99, "1=0"),
        ]
        for index, line in cases:
            number = min(index, len(self.VALID)) + 1
            self.assertMalformed(self.withLine(index, line), number)

    def test_repeatWithoutTiming(self) -> None:
        self.assertMalformed(self.withLine(4, "r=7d 1h 0 25h"), 5, "r= before any t=")

    def test_sessionLineInMedia(self) -> None:
        """
        Session-only lines are refused after m=.
        """
        for line in ["t=0 0", "s=x", "o=- 1 1 IN IP4 192.0.2.1", "v=0", "e=x", "z=0 0"]:
            self.assertMalformed(self.withLine(99, line), 7, "not allowed in a media section")

    def test_duplicates(self) -> None:
        self.assertMalformed(self.withLine(4, "s=again"), 5, "more than one s=")
        self.assertMalformed(self.withLine(4, "c=IN IP4 192.0.2.2"), 5, "more than one c=")
        lines = self.VALID + ["c=IN IP4 192.0.2.2", "c=IN IP4 192.0.2.3"]
        self.assertMalformed("\n".join(lines), 8, "more than one c=")

    def test_surrogates(self) -> None:
        """
        A str with an unpaired surrogate cannot be SDP.
        """
        self.assertMalformed(self.withLine(2, "s=\ud800"), None, "surrogates")

    def test_lineNumberInMessage(self) -> None:
        error = self.assertMalformed(self.withLine(5, "m=audio x RTP/AVP 0"), 6)
        self.assertEqual(str(error), "SDP line 6: port is not a number: 'm=audio x RTP/AVP 0'")
        self.assertEqual(error.detail, "port is not a number")

    def test_bounds(self) -> None:
        """
        Too many lines, too many m= sections or too many octets are refused
        before any more work is done.
        """
        head = "\r\n".join(self.VALID[:5]) + "\r\n"
        self.assertMalformed(head + "a=x\r\n" * sdp.MAX_LINES, None, "lines")
        self.assertMalformed(head + "m=audio 0 RTP/AVP 0\r\n" * (sdp.MAX_MEDIA + 1),
                             sdp.MAX_MEDIA + 6, "media sections")
        self.assertEqual(len(parse(head + "m=audio 0 RTP/AVP 0\r\n" * sdp.MAX_MEDIA).media),
                         sdp.MAX_MEDIA)
        self.assertMalformed(head + "a=" + "x" * sdp.MAX_OCTETS, None, "octets")

    def test_notBytes(self) -> None:
        self.assertRaises(TypeError, parse, 42)


class SerializeTests(SynchronousTestCase):
    def test_injectionRefused(self) -> None:
        """
        Values with CR, LF or NUL are refused rather than written as extra
        lines.
        """
        for name in ["a\r\na=evil", "a\nb", "a\0"]:
            session = SessionDescription(origin=Origin("-", 1, 1, "IN", "IP4", "192.0.2.1"),
                                         sessionName=name)
            self.assertRaises(ValueError, session.serialize)

    def test_built(self) -> None:
        """
        A description built from the dataclasses serializes in RFC 8866
        order with CRLF.
        """
        session = SessionDescription(
            origin=Origin("me", 7, 8, "IN", "IP4", "192.0.2.1"),
            connection=Connection("IN", "IP4", "192.0.2.1"),
            attributes=[("sendonly", None)],
            media=[MediaDescription(port=4000, formats=["0"], bandwidths=[("AS", 64)],
                                    attributes=[("ptime", "20")])])
        self.assertEqual(session.serialize(), crlf("""
v=0
o=me 7 8 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
a=sendonly
m=audio 4000 RTP/AVP 0
b=AS:64
a=ptime:20
"""))


# --- hypothesis ------------------------------------------------------------

_TOKEN_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
tokens = st.text(_TOKEN_CHARS, min_size=1, max_size=8)
texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\0"),
                max_size=12)
numbers = st.integers(min_value=0, max_value=2 ** 64)
attributes = st.lists(st.tuples(tokens.filter(lambda name: ":" not in name),
                                st.none() | texts), max_size=4)
unknownLines = st.lists(st.tuples(st.sampled_from("dfghjlnqwxy"), texts), max_size=2)
bandwidths = st.lists(st.tuples(tokens.filter(lambda name: ":" not in name), numbers),
                      max_size=2)
connections = st.none() | st.builds(Connection, tokens, tokens, tokens)
medias = st.builds(
    MediaDescription, media=tokens, port=st.integers(0, 65535),
    portCount=st.none() | st.integers(0, 65535), proto=tokens,
    formats=st.lists(tokens, max_size=4), information=st.none() | texts,
    connection=connections, bandwidths=bandwidths, encryptionKey=st.none() | texts,
    attributes=attributes, unknownLines=unknownLines)
sessions = st.builds(
    SessionDescription,
    origin=st.builds(Origin, tokens, numbers, numbers, tokens, tokens, tokens),
    sessionName=texts, information=st.none() | texts, uri=st.none() | texts,
    emails=st.lists(texts, max_size=2), phones=st.lists(texts, max_size=2),
    connection=connections, bandwidths=bandwidths,
    timing=st.lists(st.builds(Timing, numbers, numbers, st.lists(texts, max_size=2)),
                    min_size=1, max_size=2),
    timeZones=st.none() | texts, encryptionKey=st.none() | texts, attributes=attributes,
    media=st.lists(medias, max_size=3), unknownLines=unknownLines)

# Lines to build fuzz input from: valid ones, and near misses.
_FUZZ_LINES = (BARESIP_OFFER + LINPHONE_OFFER + ALL_LINES).decode().split("\r\n") + [
    "m=audio", "o=- x 1 IN IP4 1.2.3.4", "v=1", "t=", "r=1", "c=IN", "b=AS:", "a=", "", " ",
    "a=rtpmap:96", "a=rtcp:", "a=ptime:0", "m=audio 0/0 RTP/AVP", "\u00e9=1", "x"]


class HypothesisTests(SynchronousTestCase):
    def assertStable(self, session: SessionDescription) -> None:
        """
        What parsed serializes to bytes that parse to the same thing.
        """
        data = session.serialize()
        self.assertEqual(parse(data), session)
        self.assertEqual(parse(data).serialize(), data)

    @given(sessions)
    def test_roundTrip(self, session: SessionDescription) -> None:
        """
        C{parse(serialize(x)) == x} for generated descriptions.
        """
        self.assertEqual(parse(session.serialize()), session)

    @given(st.binary(max_size=400))
    def test_fuzzBytes(self, data: bytes) -> None:
        """
        Arbitrary octets raise nothing but L{SdpParseError}.
        """
        try:
            session = parse(data)
        except SdpParseError:
            return
        self.assertStable(session)

    @given(st.text(max_size=300))
    def test_fuzzText(self, data: str) -> None:
        try:
            session = parse("v=0\n" + data)
        except SdpParseError:
            return
        self.assertStable(session)

    @settings(max_examples=300)
    @given(st.lists(st.sampled_from(_FUZZ_LINES), max_size=25),
           st.sampled_from(["\r\n", "\n"]))
    def test_fuzzLines(self, lines: list[str], newline: str) -> None:
        """
        Shuffled real and near-miss lines raise nothing but
        L{SdpParseError}; whatever parses is stable, and its helpers work.
        """
        try:
            session = parse(newline.join(["v=0"] + lines))
        except SdpParseError:
            return
        self.assertStable(session)
        for media in session.media:
            for payloadType in media.rtpmaps:
                media.fmtp(payloadType)
            (media.ptime, media.direction, media.rtcpPort, media.rtcpAddress,
             media.connectionAddress)
        try:
            answerOffer(session, "192.0.2.9", 5000, supportedCodecs=("PCMU", "opus"))
        except NegotiationError:
            pass


# --- offer/answer ----------------------------------------------------------


def offer(*mediaLines: str, session: str = "", address: str = "192.0.2.1") -> SessionDescription:
    """
    A parsed offer from c= at session level, optional session lines, and
    media sections given as LF-separated text.
    """
    text = (f"v=0\no=- 1 1 IN IP4 {address}\ns=-\nc=IN IP4 {address}\nt=0 0\n{session}"
            + "".join(line.strip("\n") + "\n" for line in mediaLines))
    return parse(text)


PCMU_PCMA = "m=audio 4000 RTP/AVP 0 8\na=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000"


class MakeOfferTests(SynchronousTestCase):
    def test_default(self) -> None:
        """
        The default offer: PCMU, PCMA, telephone-event 101 with 0-16,
        ptime 20, sendrecv, IPv4.
        """
        session = makeOffer("192.0.2.1", 4000, sessionId=1234)
        self.assertEqual(session.serialize(), crlf("""
v=0
o=lmevoip 1234 1234 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 4000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
"""))
        self.assertEqual(parse(session.serialize()), session)

    def test_ipv6AndOptions(self) -> None:
        """
        IPv6, comfort noise as 13, dynamic codecs from 96 skipping 101,
        rtcp-mux, an a=rtcp, another direction and no ptime.
        """
        session = makeOffer("2001:db8::5", 4000, codecs=("opus", "G722", "L16/16000",
                                                         "speex/8000", "PCMU"),
                            comfortNoise=True, rtcpMux=True, rtcpPort=4011, ptime=None,
                            direction="recvonly", username="bob", sessionId=9)
        self.assertEqual(session.origin, Origin("bob", 9, 9, "IN", "IP6", "2001:db8::5"))
        self.assertEqual(session.connection, Connection("IN", "IP6", "2001:db8::5"))
        [audio] = session.media
        self.assertEqual(audio.formats, ["96", "9", "97", "98", "0", "101", "13"])
        self.assertEqual(audio.rtpmaps[96], RtpMap(96, "opus", 48000, 2))
        self.assertEqual(audio.rtpmaps[97], RtpMap(97, "L16", 16000))
        self.assertEqual(audio.rtpmaps[13], RtpMap(13, "CN", 8000))
        self.assertIsNone(audio.ptime)
        self.assertTrue(audio.rtcpMux)
        self.assertEqual(audio.rtcpPort, 4011)
        self.assertEqual(audio.direction, "recvonly")

    def test_staticByName(self) -> None:
        """
        A codec written name/rate that has a static number keeps it;
        duplicates are dropped; telephone-event can be left out.
        """
        session = makeOffer("192.0.2.1", 4000, codecs=("pcma/8000", "PCMA", "G729"),
                            telephoneEvent=False)
        self.assertEqual(session.media[0].formats, ["8", "18"])

    def test_randomSessionId(self) -> None:
        """
        Without a session id a random one below 2**62 - 1 is used (RFC 3264
        section 5), and the version starts equal to it.
        """
        first, second = makeOffer("192.0.2.1", 4000), makeOffer("192.0.2.1", 4000)
        self.assertNotEqual(first.origin.sessionId, second.origin.sessionId)
        for session in (first, second):
            self.assertLess(session.origin.sessionId, 2 ** 62 - 1)
            self.assertEqual(session.origin.sessionVersion, session.origin.sessionId)

    def test_badArguments(self) -> None:
        for kwargs in [dict(rtpPort=0), dict(rtpPort=70000), dict(direction="send"),
                       dict(codecs=()), dict(codecs=("nosuch",)), dict(codecs=("x/y",)),
                       dict(codecs=("telephone-event/8000",)), dict(codecs=("CN",)),
                       dict(address="192.0.2.1 x"), dict(address="::zz"), dict(ptime=0),
                       dict(sessionId=-1), dict(username="a b"), dict(rtcpPort=0)]:
            arguments = dict(address="192.0.2.1", rtpPort=4000) | kwargs
            self.assertRaises(ValueError, makeOffer, **arguments)

    def test_hostName(self) -> None:
        """
        A host name is an IP4 address type.
        """
        self.assertEqual(makeOffer("pbx.example.com", 4000).connection,
                         Connection("IN", "IP4", "pbx.example.com"))


class AnswerOfferTests(SynchronousTestCase):
    def answer(self, offerSdp: SessionDescription, **kwargs):
        answer, negotiated = answerOffer(offerSdp, "192.0.2.9", 5000, sessionId=77, **kwargs)
        self.assertEqual(parse(answer.serialize()), answer)
        self.assertEqual(len(answer.media), len(offerSdp.media))
        return answer, negotiated

    def test_offerOrderWins(self) -> None:
        """
        The codec is the first of the offer's list we support, whatever our
        order, with the offer's payload type number; only it is listed.
        """
        answer, negotiated = self.answer(offer("m=audio 4000 RTP/AVP 8 0"),
                                         supportedCodecs=("PCMU", "PCMA"), telephoneEvent=False)
        self.assertEqual((negotiated.codec, negotiated.payloadType, negotiated.clockRate),
                         ("PCMA", 8, 8000))
        self.assertEqual(answer.media[0].formats, ["8"])
        self.assertEqual(answer.serialize(), crlf("""
v=0
o=lmevoip 77 77 IN IP4 192.0.2.9
s=-
c=IN IP4 192.0.2.9
t=0 0
m=audio 5000 RTP/AVP 8
a=rtpmap:8 PCMA/8000
a=ptime:20
a=sendrecv
"""))

    def test_onlyPcmaCommon(self) -> None:
        answer, negotiated = self.answer(offer("m=audio 4000 RTP/AVP 0 8 9"),
                                         supportedCodecs=("PCMA",))
        self.assertEqual((negotiated.codec, negotiated.payloadType), ("PCMA", 8))

    def test_asteriskOffer(self) -> None:
        """
        Against the many-codec Asterisk offer, G722 (offered first) wins when
        supported; telephone-event 101 and CN 13 are echoed when enabled.
        """
        answer, negotiated = self.answer(parse(ASTERISK_OFFER),
                                         supportedCodecs=("PCMU", "G722"), comfortNoise=True)
        self.assertEqual(negotiated.codec, "G722")
        self.assertEqual(answer.media[0].formats, ["9", "101", "13"])
        self.assertEqual(answer.media[0].fmtp(101), "0-16")
        self.assertEqual((negotiated.telephoneEventPayloadType,
                          negotiated.comfortNoisePayloadType), (101, 13))
        self.assertEqual((negotiated.remoteAddress, negotiated.remotePort), ("203.0.113.10", 14056))
        self.assertEqual((negotiated.remoteRtcpAddress, negotiated.remoteRtcpPort),
                         ("203.0.113.10", 14057))

    def test_dynamicCodec(self) -> None:
        """
        A dynamic codec is matched by name and rate and answered with the
        offer's number.
        """
        answer, negotiated = self.answer(parse(BARESIP_OFFER), supportedCodecs=("opus", "PCMU"))
        self.assertEqual((negotiated.codec, negotiated.payloadType, negotiated.clockRate,
                          negotiated.channels), ("opus", 96, 48000, 2))
        self.assertEqual(answer.media[0].rtpmaps[96], RtpMap(96, "opus", 48000, 2))

    def test_noCommonCodec(self) -> None:
        """
        No codec in common: a L{NegotiationError} suggesting 488 with warning
        305.
        """
        error = self.assertRaises(NegotiationError, answerOffer,
                                  offer("m=audio 4000 RTP/AVP 0 101\n"
                                        "a=rtpmap:101 telephone-event/8000"),
                                  "192.0.2.9", 5000, supportedCodecs=("PCMA", "G722"))
        self.assertIsInstance(error, ValueError)
        self.assertEqual((error.status, error.reason), (488, "Not Acceptable Here"))
        self.assertEqual((error.warningCode, error.warningText),
                         (305, "Incompatible media format"))

    def test_noAudio(self) -> None:
        """
        An offer without a usable RTP/AVP audio stream (video only, SRTP
        audio, a disabled audio stream, audio without an address): 488 with
        warning 304.
        """
        offers = [
            offer("m=video 4000 RTP/AVP 31"),
            offer("m=audio 4000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x"),
            offer("m=audio 0 RTP/AVP 0"),
            parse("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\n"),
            offer(),
        ]
        for offerSdp in offers:
            error = self.assertRaises(NegotiationError, answerOffer, offerSdp, "192.0.2.9", 5000)
            self.assertEqual((error.status, error.warningCode), (488, 304))

    def test_telephoneEventEcho(self) -> None:
        """
        telephone-event is answered with the offerer's payload type, and only
        when offered and enabled.
        """
        eventOffer = offer("m=audio 4000 RTP/AVP 0 96\na=rtpmap:96 telephone-event/8000\n"
                           "a=fmtp:96 0-15")
        answer, negotiated = self.answer(eventOffer)
        self.assertEqual(answer.media[0].formats, ["0", "96"])
        self.assertEqual(answer.media[0].rtpmaps[96].encodingName, "telephone-event")
        self.assertEqual(negotiated.telephoneEventPayloadType, 96)
        answer, negotiated = self.answer(eventOffer, telephoneEvent=False)
        self.assertEqual(answer.media[0].formats, ["0"])
        self.assertIsNone(negotiated.telephoneEventPayloadType)
        answer, negotiated = self.answer(offer("m=audio 4000 RTP/AVP 0"))
        self.assertEqual(answer.media[0].formats, ["0"])
        self.assertIsNone(negotiated.telephoneEventPayloadType)

    def test_telephoneEventRate(self) -> None:
        """
        Of several telephone-event formats, the one at the codec's clock rate
        is chosen (Linphone offers three).
        """
        _, negotiated = self.answer(parse(LINPHONE_OFFER), supportedCodecs=("PCMU",))
        self.assertEqual(negotiated.telephoneEventPayloadType, 100)
        _, negotiated = self.answer(parse(LINPHONE_OFFER), supportedCodecs=("opus",))
        self.assertEqual(negotiated.telephoneEventPayloadType, 101)

    def test_comfortNoise(self) -> None:
        """
        CN is answered only when offered and enabled.
        """
        offered = offer("m=audio 4000 RTP/AVP 0 13")
        answer, negotiated = self.answer(offered, comfortNoise=True)
        self.assertEqual((answer.media[0].formats, negotiated.comfortNoisePayloadType),
                         (["0", "13"], 13))
        answer, negotiated = self.answer(offered)
        self.assertEqual((answer.media[0].formats, negotiated.comfortNoisePayloadType),
                         (["0"], None))
        answer, negotiated = self.answer(offer("m=audio 4000 RTP/AVP 0"), comfortNoise=True)
        self.assertIsNone(negotiated.comfortNoisePayloadType)

    # RFC 3264 section 6.1: (offer direction, what we want) -> answer direction.
    DIRECTION_TABLE = {
        ("sendrecv", "sendrecv"): "sendrecv", ("sendrecv", "sendonly"): "sendonly",
        ("sendrecv", "recvonly"): "recvonly", ("sendrecv", "inactive"): "inactive",
        ("sendonly", "sendrecv"): "recvonly", ("sendonly", "sendonly"): "inactive",
        ("sendonly", "recvonly"): "recvonly", ("sendonly", "inactive"): "inactive",
        ("recvonly", "sendrecv"): "sendonly", ("recvonly", "sendonly"): "sendonly",
        ("recvonly", "recvonly"): "inactive", ("recvonly", "inactive"): "inactive",
        ("inactive", "sendrecv"): "inactive", ("inactive", "sendonly"): "inactive",
        ("inactive", "recvonly"): "inactive", ("inactive", "inactive"): "inactive",
    }
    SENDING = {"sendrecv": True, "sendonly": True, "recvonly": False, "inactive": False}
    RECEIVING = {"sendrecv": True, "sendonly": False, "recvonly": True, "inactive": False}

    def test_directionTable(self) -> None:
        """
        The answer's direction follows RFC 3264 section 6.1, limited by
        ours; L{NegotiatedMedia} says whether we send and receive.
        """
        for (offered, wanted), expected in self.DIRECTION_TABLE.items():
            answer, negotiated = self.answer(offer(f"m=audio 4000 RTP/AVP 0\na={offered}"),
                                             direction=wanted)
            self.assertEqual(answer.media[0].direction, expected, (offered, wanted))
            self.assertEqual(negotiated.direction, expected)
            self.assertEqual((negotiated.sending, negotiated.receiving),
                             (self.SENDING[expected], self.RECEIVING[expected]))
            self.assertTrue(negotiated.sendingRtcp)

    def test_hold(self) -> None:
        """
        A hold offer (sendonly, here at session level) is answered recvonly:
        we receive and do not send.
        """
        answer, negotiated = self.answer(offer(PCMU_PCMA, session="a=sendonly\n"))
        self.assertEqual(answer.media[0].direction, "recvonly")
        self.assertFalse(negotiated.sending)
        self.assertTrue(negotiated.receiving)

    def test_oldStyleHold(self) -> None:
        """
        c=0.0.0.0 (RFC 2543 hold): we send neither RTP nor RTCP to it, and
        answer recvonly.
        """
        answer, negotiated = self.answer(offer(PCMU_PCMA, address="0.0.0.0"))
        self.assertEqual(answer.media[0].direction, "recvonly")
        self.assertEqual(negotiated.remoteAddress, "0.0.0.0")
        self.assertEqual(negotiated.direction, "recvonly")
        self.assertFalse(negotiated.sending)
        self.assertFalse(negotiated.sendingRtcp)
        self.assertTrue(negotiated.receiving)

    def test_rejectVideo(self) -> None:
        """
        A video m= line is answered with port 0 and its formats, keeping the
        m= lines' number and order.
        """
        offered = parse(LINPHONE_OFFER)
        answer, negotiated = self.answer(offered)
        audio, video = answer.media
        self.assertEqual((audio.media, audio.port), ("audio", 5000))
        self.assertEqual((video.media, video.port, video.proto, video.formats, video.attributes),
                         ("video", 0, "RTP/AVP", ["96", "97"], []))
        answer, _ = self.answer(offer("m=video 6000 RTP/AVP 31", PCMU_PCMA))
        self.assertEqual([(m.media, m.port) for m in answer.media], [("video", 0), ("audio", 5000)])

    def test_secondAudioStream(self) -> None:
        """
        A disabled audio stream and one without a common codec are answered
        with port 0; the next audio stream is accepted; audio streams after
        the accepted one are rejected.
        """
        answer, negotiated = self.answer(offer("m=audio 0 RTP/AVP 0", "m=audio 4000 RTP/AVP 9",
                                               "m=audio 4100 RTP/AVP 8", "m=audio 4200 RTP/AVP 0"))
        self.assertEqual([m.port for m in answer.media], [0, 0, 5000, 0])
        self.assertEqual((negotiated.remotePort, negotiated.codec), (4100, "PCMA"))

    def test_rtcpMux(self) -> None:
        """
        a=rtcp-mux is answered only when offered and wanted; RTCP then goes
        to the RTP port.
        """
        muxOffer = offer(PCMU_PCMA + "\na=rtcp-mux")
        answer, negotiated = self.answer(muxOffer, rtcpMux=True)
        self.assertTrue(answer.media[0].rtcpMux)
        self.assertTrue(negotiated.rtcpMux)
        self.assertEqual((negotiated.remoteRtcpAddress, negotiated.remoteRtcpPort),
                         ("192.0.2.1", 4000))
        answer, negotiated = self.answer(muxOffer)
        self.assertFalse(answer.media[0].rtcpMux)
        self.assertEqual((negotiated.rtcpMux, negotiated.remoteRtcpPort), (False, 4001))
        answer, negotiated = self.answer(offer(PCMU_PCMA), rtcpMux=True)
        self.assertFalse(answer.media[0].rtcpMux)
        self.assertFalse(negotiated.rtcpMux)

    def test_rtcpAttribute(self) -> None:
        """
        The offer's a=rtcp gives the RTCP port, and its address when it has
        one.
        """
        _, negotiated = self.answer(parse(LINPHONE_OFFER))
        self.assertEqual((negotiated.remoteAddress, negotiated.remotePort,
                          negotiated.remoteRtcpAddress, negotiated.remoteRtcpPort),
                         ("192.168.0.14", 7078, "192.168.0.99", 7081))
        _, negotiated = self.answer(offer(PCMU_PCMA + "\na=rtcp:4100"))
        self.assertEqual((negotiated.remoteRtcpAddress, negotiated.remoteRtcpPort),
                         ("192.0.2.1", 4100))

    def test_ipv6Offer(self) -> None:
        """
        An IPv6 sendonly offer with rtcp-mux: addresses from c= and the
        muxed port.
        """
        answer, negotiated = self.answer(parse(IPV6_OFFER), rtcpMux=True)
        self.assertEqual(answer.media[0].direction, "recvonly")
        self.assertEqual((negotiated.remoteAddress, negotiated.remoteRtcpAddress,
                          negotiated.remoteRtcpPort), ("2001:db8::1", "2001:db8::1", 49170))

    def test_timingAndPtime(self) -> None:
        """
        The answer's t= equals the offer's (RFC 3264 section 6); the peer's
        ptime is what we send with, 20 ms without one; ours is in the answer.
        """
        offered = parse("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\n"
                        "t=3034423619 3042462419\nm=audio 4000 RTP/AVP 0\na=ptime:30\n")
        answer, negotiated = self.answer(offered, ptime=40)
        self.assertEqual(answer.timing, [Timing(3034423619, 3042462419)])
        self.assertEqual(negotiated.ptime, 30)
        self.assertEqual(answer.media[0].ptime, 40)
        _, negotiated = self.answer(offer(PCMU_PCMA))
        self.assertEqual(negotiated.ptime, 20)

    def test_badArguments(self) -> None:
        for kwargs in [dict(rtpPort=0), dict(direction="hold"), dict(supportedCodecs=("x",))]:
            arguments = dict(offer=offer(PCMU_PCMA), address="192.0.2.9", rtpPort=5000) | kwargs
            self.assertRaises(ValueError, answerOffer, **arguments)


class NegotiateAnswerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.offer = makeOffer("192.0.2.1", 4000, sessionId=1)

    def answerText(self, *mediaLines: str, address: str = "192.0.2.9") -> SessionDescription:
        return offer(*mediaLines, address=address)

    def test_firstOfAnswerList(self) -> None:
        """
        The codec is the first of the answer's formats that we offered.
        """
        negotiated = negotiateAnswer(self.offer, self.answerText(
            "m=audio 5000 RTP/AVP 18 8 0 101\na=rtpmap:101 telephone-event/8000"))
        self.assertEqual((negotiated.codec, negotiated.payloadType), ("PCMA", 8))
        self.assertEqual(negotiated.telephoneEventPayloadType, 101)
        self.assertEqual((negotiated.remoteAddress, negotiated.remotePort,
                          negotiated.remoteRtcpPort), ("192.0.2.9", 5000, 5001))
        self.assertEqual(negotiated.direction, "sendrecv")

    def test_renumbered(self) -> None:
        """
        An answer that renumbers a codec is understood; we send with its
        numbers.
        """
        negotiated = negotiateAnswer(self.offer, self.answerText(
            "m=audio 5000 RTP/AVP 0 97\na=rtpmap:97 telephone-event/8000"))
        self.assertEqual(negotiated.telephoneEventPayloadType, 97)
        offered = makeOffer("192.0.2.1", 4000, codecs=("opus",))
        negotiated = negotiateAnswer(offered, self.answerText(
            "m=audio 5000 RTP/AVP 111\na=rtpmap:111 OPUS/48000/2"))
        self.assertEqual((negotiated.codec, negotiated.payloadType), ("OPUS", 111))

    def test_directions(self) -> None:
        """
        Our direction mirrors the answer's, limited by our offer's; an
        answer with c=0.0.0.0 means we may not send.
        """
        cases = [("sendrecv", "recvonly", "sendonly"), ("sendrecv", "sendonly", "recvonly"),
                 ("sendonly", "recvonly", "sendonly"), ("recvonly", "sendonly", "recvonly"),
                 ("sendrecv", "inactive", "inactive"), ("inactive", "inactive", "inactive")]
        for ours, theirs, expected in cases:
            offered = makeOffer("192.0.2.1", 4000, direction=ours)
            negotiated = negotiateAnswer(offered, self.answerText(
                f"m=audio 5000 RTP/AVP 0\na={theirs}"))
            self.assertEqual(negotiated.direction, expected, (ours, theirs))
        negotiated = negotiateAnswer(self.offer, self.answerText("m=audio 5000 RTP/AVP 0",
                                                                 address="0.0.0.0"))
        self.assertEqual((negotiated.direction, negotiated.sending, negotiated.sendingRtcp),
                         ("recvonly", False, False))

    def test_rtcpMux(self) -> None:
        """
        rtcp-mux needs both sides; an answer that adds it unasked is ignored
        (RFC 8035).
        """
        muxOffer = makeOffer("192.0.2.1", 4000, rtcpMux=True)
        negotiated = negotiateAnswer(muxOffer, self.answerText("m=audio 5000 RTP/AVP 0\na=rtcp-mux"))
        self.assertEqual((negotiated.rtcpMux, negotiated.remoteRtcpPort), (True, 5000))
        negotiated = negotiateAnswer(self.offer, self.answerText("m=audio 5000 RTP/AVP 0\na=rtcp-mux"))
        self.assertEqual((negotiated.rtcpMux, negotiated.remoteRtcpPort), (False, 5001))

    def test_failures(self) -> None:
        """
        A rejected stream, a codec we did not offer, or another number of m=
        lines: L{NegotiationError}.
        """
        for answer in [self.answerText("m=audio 0 RTP/AVP 0"),
                       self.answerText("m=audio 5000 RTP/AVP 18 101\n"
                                       "a=rtpmap:101 telephone-event/8000"),
                       self.answerText("m=audio 5000 RTP/AVP 0", "m=video 0 RTP/AVP 31"),
                       self.answerText()]:
            error = self.assertRaises(NegotiationError, negotiateAnswer, self.offer, answer)
            self.assertEqual(error.status, 488)

    def test_endToEnd(self) -> None:
        """
        makeOffer, answerOffer and negotiateAnswer agree: each side sends to
        the other's address with the same codec and event payload type.
        """
        offered = makeOffer("2001:db8::1", 4000, codecs=("G722", "PCMU"), comfortNoise=True,
                            rtcpMux=True)
        answer, answerer = answerOffer(parse(offered.serialize()), "2001:db8::2", 6000,
                                       supportedCodecs=("PCMU", "G722"), comfortNoise=True,
                                       rtcpMux=True)
        offerer = negotiateAnswer(offered, parse(answer.serialize()))
        self.assertEqual((offerer.codec, answerer.codec), ("G722", "G722"))
        self.assertEqual((offerer.remoteAddress, offerer.remotePort), ("2001:db8::2", 6000))
        self.assertEqual((answerer.remoteAddress, answerer.remotePort), ("2001:db8::1", 4000))
        for negotiated in (offerer, answerer):
            self.assertEqual((negotiated.telephoneEventPayloadType,
                              negotiated.comfortNoisePayloadType, negotiated.rtcpMux),
                             (101, 13, True))


class ReviseTests(SynchronousTestCase):
    """
    New versions of our description for re-INVITE (RFC 3264 section 8).
    """

    def setUp(self) -> None:
        self.offer = makeOffer("192.0.2.1", 4000, sessionId=500)

    def test_holdAndResume(self) -> None:
        """
        Hold makes sendrecv sendonly, resume makes it sendrecv again; each
        step adds one to the version and keeps the session id; the previous
        description is left alone.
        """
        held = holdSession(self.offer)
        self.assertEqual(held.media[0].direction, "sendonly")
        self.assertEqual((held.origin.sessionId, held.origin.sessionVersion), (500, 501))
        self.assertEqual(self.offer.media[0].direction, "sendrecv")
        self.assertEqual(self.offer.origin.sessionVersion, 500)
        resumed = resumeSession(held)
        self.assertEqual(resumed.media[0].direction, "sendrecv")
        self.assertEqual(resumed.origin.sessionVersion, 502)
        self.assertIn(b"o=lmevoip 500 502 IN IP4 192.0.2.1\r\n", resumed.serialize())
        self.assertEqual(resumed.media, self.offer.media)

    def test_holdRecvonly(self) -> None:
        """
        A recvonly stream goes inactive on hold and back to recvonly.
        """
        held = holdSession(makeOffer("192.0.2.1", 4000, direction="recvonly"))
        self.assertEqual(held.media[0].direction, "inactive")
        self.assertEqual(resumeSession(held).media[0].direction, "recvonly")

    def test_sessionLevelDirection(self) -> None:
        """
        A session-level direction is replaced by media-level ones; rejected
        streams are left as they are.
        """
        previous = offer(PCMU_PCMA, "m=video 0 RTP/AVP 31", session="a=recvonly\n")
        held = holdSession(previous)
        self.assertEqual(held.attributes, [])
        self.assertEqual(held.media[0].direction, "inactive")
        self.assertEqual(held.media[1].attributes, [])
        self.assertEqual(held.media[1].port, 0)

    def test_revise(self) -> None:
        """
        L{reviseSession} adds one to the version and, given a direction,
        sets it on every accepted stream; the copy parses back equal.
        """
        same = reviseSession(self.offer)
        self.assertEqual(same.origin.sessionVersion, 501)
        same.origin.sessionVersion = 500
        self.assertEqual(same, self.offer)
        inactive = reviseSession(self.offer, direction="inactive")
        self.assertEqual(inactive.media[0].direction, "inactive")
        self.assertEqual(parse(inactive.serialize()), inactive)
        self.assertRaises(ValueError, reviseSession, self.offer, direction="hold")


class DocumentationTests(SynchronousTestCase):
    def test_examplesRun(self) -> None:
        """
        The Python examples in docs/sdp.rst run (they assert what they show).
        """
        page = Path(__file__).resolve().parent.parent / "docs" / "sdp.rst"
        blocks = re.findall(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", page.read_text())
        self.assertTrue(blocks)
        namespace: dict[str, object] = {}
        for block in blocks:
            exec(compile("\n".join(line[4:] for line in block.splitlines()), str(page), "exec"),
                 namespace)
