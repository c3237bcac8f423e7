"""
SDP session descriptions (RFC 8866, which obsoletes RFC 4566) and the
RFC 3264 offer/answer model, sans-IO.

L{SessionDescription.parse} turns the bytes of an C{application/sdp} body
into dataclasses and L{SessionDescription.serialize} turns them back into
bytes (CRLF line ends), so that C{parse(serialize(x)) == x}. Nothing here
does I/O, keeps time or imports Twisted; malformed input raises
L{SdpParseError}, a L{ValueError}.

On top of the data model, L{makeOffer}, L{answerOffer} and
L{negotiateAnswer} implement the part of RFC 3264 a single-stream audio user
agent needs and describe the outcome as a L{NegotiatedMedia};
L{reviseSession}, L{holdSession} and L{resumeSession} make the next version
of our own description for a re-INVITE (RFC 3264 section 8).

See C{docs/sdp.rst} for the design decisions and the leniencies.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import secrets
from dataclasses import dataclass, field
from typing import Callable, Iterable

__all__ = [
    "DIRECTIONS",
    "MAX_LINES",
    "MAX_MEDIA",
    "MAX_OCTETS",
    "STATIC_PAYLOAD_TYPES",
    "Connection",
    "MediaDescription",
    "NegotiatedMedia",
    "NegotiationError",
    "Origin",
    "RtpMap",
    "SdpParseError",
    "SessionDescription",
    "Timing",
    "answerOffer",
    "holdSession",
    "makeOffer",
    "negotiateAnswer",
    "resumeSession",
    "reviseSession",
]

#: The most octets L{SessionDescription.parse} accepts (a SIP body over UDP
#: cannot be larger than a datagram anyway).
MAX_OCTETS = 65536
#: The most lines L{SessionDescription.parse} accepts.
MAX_LINES = 2048
#: The most m= sections L{SessionDescription.parse} accepts.
MAX_MEDIA = 64

#: The four direction attributes (RFC 8866 section 6.7), "sendrecv" first
#: because it is the default.
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")

# Line types that may appear in a media section (RFC 8866 section 5); the
# others we know are session-level only.
_MEDIA_TYPES = frozenset("icbka")
_SESSION_ONLY_TYPES = frozenset("vosueptrz")
_LINE_TYPE = re.compile(r"[a-z]")
_SPACES = re.compile(r"[ \t]+")


class SdpParseError(ValueError):
    """
    A session description is malformed.

    C{str(error)} says what was wrong and, when one line is to blame, which.

    @ivar detail: what was wrong, without the location.
    @ivar lineNumber: the 1-based number of the offending line, or L{None}.
    @ivar line: the offending line (possibly truncated), or L{None}.
    """

    def __init__(self, detail: str, lineNumber: int | None = None,
                 line: str | None = None) -> None:
        self.detail = detail
        self.lineNumber = lineNumber
        self.line = None if line is None else line[:80]
        if lineNumber is None:
            message = detail
        else:
            message = f"SDP line {lineNumber}: {detail}: {self.line!r}"
        super().__init__(message)


class NegotiationError(ValueError):
    """
    An offer or an answer leaves no audio stream both sides can use.

    A user agent that received the offer in an INVITE answers it with
    L{status} and L{reason}, and may add a C{Warning} header with
    L{warningCode} and L{warningText} (RFC 3261 section 20.43).

    @ivar status: the SIP status to answer with, 488.
    @ivar reason: its reason phrase.
    @ivar warningCode: 304 (no usable media type) or 305 (no common format).
    @ivar warningText: the RFC 3261 text for L{warningCode}.
    """

    status = 488
    reason = "Not Acceptable Here"

    _WARNINGS = {304: "Media type not available", 305: "Incompatible media format"}

    def __init__(self, message: str, warningCode: int = 305) -> None:
        super().__init__(message)
        self.warningCode = warningCode
        self.warningText = self._WARNINGS[warningCode]


# ---------------------------------------------------------------------------
# Small value types


@dataclass
class Origin:
    """
    The o= line (RFC 8866 section 5.2).

    @ivar sessionId: the numeric session id.
    @ivar sessionVersion: the numeric version, incremented by one for each
        new version of a description (RFC 3264 section 8).
    """

    username: str
    sessionId: int
    sessionVersion: int
    netType: str
    addrType: str
    address: str


@dataclass
class Connection:
    """
    A c= line (RFC 8866 section 5.7).

    @ivar address: the connection address as written, including any
        multicast C{/ttl/count} suffix.
    """

    netType: str
    addrType: str
    address: str

    @property
    def host(self) -> str:
        """
        The address without a multicast C{/ttl} or C{/count} suffix.
        """
        return self.address.split("/", 1)[0]

    @property
    def isUnspecified(self) -> bool:
        """
        Whether the address is C{0.0.0.0} or C{::}: the RFC 2543 way of
        saying "send nothing to me" (RFC 3264 section 8.4).
        """
        try:
            return ipaddress.ip_address(self.host).is_unspecified
        except ValueError:
            return False


@dataclass
class Timing:
    """
    A t= line and the r= lines that follow it (RFC 8866 sections 5.9, 5.10).

    @ivar repeats: the values of the r= lines, as written.
    """

    start: int = 0
    stop: int = 0
    repeats: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RtpMap:
    """
    What an RTP payload type number stands for: an a=rtpmap attribute
    (RFC 8866 section 6.6) or a static assignment of RFC 3551.

    @ivar encodingName: as written (compare case-insensitively).
    @ivar channels: the encoding parameter of audio formats, 1 when absent.
    """

    payloadType: int
    encodingName: str
    clockRate: int
    channels: int = 1

    @classmethod
    def parse(cls, value: str) -> RtpMap:
        """
        Parse the value of an a=rtpmap attribute, such as
        C{"96 opus/48000/2"}.

        @raise SdpParseError: when the value is malformed.
        """
        match = re.fullmatch(
            r"[ \t]*([0-9]{1,3})[ \t]+([^/ \t]+)/([0-9]{1,10})(?:/([0-9]{1,3}))?[ \t]*",
            value)
        if match is None:
            raise SdpParseError(f"malformed rtpmap {value[:80]!r}")
        payloadType, name, clockRate, channels = match.groups()
        if int(payloadType) > 127 or int(clockRate) == 0:
            raise SdpParseError(f"malformed rtpmap {value[:80]!r}")
        return cls(int(payloadType), name, int(clockRate),
                   int(channels) if channels else 1)

    @property
    def encoding(self) -> str:
        """
        C{name/clockRate[/channels]} as written in a=rtpmap (channels only
        when not 1).
        """
        text = f"{self.encodingName}/{self.clockRate}"
        return text if self.channels == 1 else f"{text}/{self.channels}"

    @property
    def attributeValue(self) -> str:
        """
        The value of the a=rtpmap attribute for this mapping.
        """
        return f"{self.payloadType} {self.encoding}"

    def sameCodec(self, other: RtpMap) -> bool:
        """
        Whether C{other} is the same codec, whatever its payload type number:
        same encoding name (case-insensitive, RFC 4855), clock rate and
        channels.
        """
        return self._codecKey() == other._codecKey()

    def _codecKey(self) -> tuple[str, int, int]:
        return (self.encodingName.lower(), self.clockRate, self.channels)


#: The static RTP payload types of RFC 3551 tables 4 and 5.
STATIC_PAYLOAD_TYPES: dict[int, RtpMap] = {
    rtpmap.payloadType: rtpmap for rtpmap in [
        RtpMap(0, "PCMU", 8000), RtpMap(3, "GSM", 8000), RtpMap(4, "G723", 8000),
        RtpMap(5, "DVI4", 8000), RtpMap(6, "DVI4", 16000), RtpMap(7, "LPC", 8000),
        RtpMap(8, "PCMA", 8000), RtpMap(9, "G722", 8000), RtpMap(10, "L16", 44100, 2),
        RtpMap(11, "L16", 44100), RtpMap(12, "QCELP", 8000), RtpMap(13, "CN", 8000),
        RtpMap(14, "MPA", 90000), RtpMap(15, "G728", 8000), RtpMap(16, "DVI4", 11025),
        RtpMap(17, "DVI4", 22050), RtpMap(18, "G729", 8000), RtpMap(25, "CelB", 90000),
        RtpMap(26, "JPEG", 90000), RtpMap(28, "nv", 90000), RtpMap(31, "H261", 90000),
        RtpMap(32, "MPV", 90000), RtpMap(33, "MP2T", 90000), RtpMap(34, "H263", 90000),
    ]
}


# ---------------------------------------------------------------------------
# Attribute helpers shared by the session and the media level


class _Attributes:
    """
    Look-ups in an ordered list of C{(name, value or None)} attributes.
    Attribute names are compared exactly, as written.
    """

    attributes: list[tuple[str, str | None]]

    def attributeValues(self, name: str) -> list[str | None]:
        """
        The values of every attribute called C{name}, in order (L{None} for a
        flag attribute such as C{a=rtcp-mux}).
        """
        return [value for attrName, value in self.attributes if attrName == name]

    def attribute(self, name: str) -> str | None:
        """
        The value of the first attribute called C{name}, or L{None} when
        there is none or it has no value.
        """
        values = self.attributeValues(name)
        return values[0] if values else None

    def hasAttribute(self, name: str) -> bool:
        """
        Whether an attribute called C{name} is present.
        """
        return any(attrName == name for attrName, _ in self.attributes)

    def _ownDirection(self) -> str | None:
        for name, _ in self.attributes:
            if name in DIRECTIONS:
                return name
        return None

    def _ownInteger(self, name: str) -> int | None:
        # ptime-value may be written as a real ("20.0"); anything malformed
        # or not positive counts as absent.
        value = self.attribute(name)
        if value is None:
            return None
        match = re.fullmatch(r"[ \t]*([0-9]{1,6})(?:\.[0-9]{1,6})?[ \t]*", value)
        if match is None or int(match.group(1)) == 0:
            return None
        return int(match.group(1))


@dataclass(kw_only=True)
class MediaDescription(_Attributes):
    """
    One m= section (RFC 8866 section 5.14) and the lines under it.

    The helpers that read attributes (L{direction}, L{ptime}, L{maxptime},
    L{effectiveConnection}) fall back to the session level when the
    description belongs to a L{SessionDescription} (built by it, or added
    with L{SessionDescription.addMedia}).

    @ivar portCount: the C{/number of ports} of the m= line, or L{None}.
    @ivar formats: the format list, as written (payload type numbers for
        RTP).
    @ivar bandwidths: the b= lines as C{(bwtype, bandwidth)}.
    @ivar attributes: the a= lines as C{(name, value or None)}, in order.
    @ivar unknownLines: lines of types RFC 8866 does not define, as
        C{(type letter, value)}, in order; serialized after the attributes.
    """

    media: str = "audio"
    port: int = 0
    portCount: int | None = None
    proto: str = "RTP/AVP"
    formats: list[str] = field(default_factory=list)
    information: str | None = None
    connection: Connection | None = None
    bandwidths: list[tuple[str, int]] = field(default_factory=list)
    encryptionKey: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    unknownLines: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Not a dataclass field: no part of equality, repr or asdict().
        self._session: SessionDescription | None = None

    @property
    def rejected(self) -> bool:
        """
        Whether the stream is disabled or rejected (port 0, RFC 3264 section 6).
        """
        return self.port == 0

    @property
    def rtpmaps(self) -> dict[int, RtpMap]:
        """
        What each RTP payload type of L{formats} stands for, in format
        order: from its a=rtpmap, else from L{STATIC_PAYLOAD_TYPES}. Formats
        that are not payload type numbers, dynamic types without an
        a=rtpmap and malformed a=rtpmap values are left out.
        """
        if "RTP/" not in self.proto.upper():
            return {}
        declared: dict[int, RtpMap] = {}
        for value in self.attributeValues("rtpmap"):
            try:
                rtpmap = RtpMap.parse(value or "")
            except SdpParseError:
                continue
            declared.setdefault(rtpmap.payloadType, rtpmap)
        result: dict[int, RtpMap] = {}
        for fmt in self.formats:
            if not re.fullmatch(r"[0-9]{1,3}", fmt):
                continue
            payloadType = int(fmt)
            rtpmap = declared.get(payloadType, STATIC_PAYLOAD_TYPES.get(payloadType))
            if rtpmap is not None:
                result.setdefault(payloadType, rtpmap)
        return result

    def fmtp(self, payloadType: int) -> str | None:
        """
        The format parameters of a=fmtp for C{payloadType} (C{"0-16"} for
        C{a=fmtp:101 0-16}), or L{None} when there is none.
        """
        for value in self.attributeValues("fmtp"):
            fmt, *parameters = _SPACES.split((value or "").strip(" \t"), 1)
            if fmt == str(payloadType):
                return parameters[0] if parameters else ""
        return None

    @property
    def ptime(self) -> int | None:
        """
        The a=ptime in milliseconds (media level, else session level), or
        L{None}. A real value is truncated to whole milliseconds.
        """
        return self._inherited(lambda owner: owner._ownInteger("ptime"))

    @property
    def maxptime(self) -> int | None:
        """
        The a=maxptime in milliseconds (media level, else session level), or
        L{None}.
        """
        return self._inherited(lambda owner: owner._ownInteger("maxptime"))

    @property
    def direction(self) -> str:
        """
        C{"sendrecv"}, C{"sendonly"}, C{"recvonly"} or C{"inactive"}: the
        media-level direction attribute, else the session-level one, else
        C{"sendrecv"} (RFC 8866 section 6.7).
        """
        return self._inherited(lambda owner: owner._ownDirection()) or "sendrecv"

    def setDirection(self, direction: str) -> None:
        """
        Replace the media-level direction attributes with C{direction}, kept
        where the first one was (appended when there was none).

        @raise ValueError: when C{direction} is not one of L{DIRECTIONS}.
        """
        _checkDirection(direction)
        kept = []
        position = None
        for name, value in self.attributes:
            if name in DIRECTIONS:
                if position is None:
                    position = len(kept)
            else:
                kept.append((name, value))
        kept.insert(len(kept) if position is None else position, (direction, None))
        self.attributes = kept

    @property
    def rtcpPort(self) -> int | None:
        """
        The port of the a=rtcp attribute (RFC 3605), or L{None} when it is
        absent or malformed.
        """
        rtcp = self._rtcp()
        return rtcp[0] if rtcp else None

    @property
    def rtcpAddress(self) -> str | None:
        """
        The address of the a=rtcp attribute (RFC 3605), or L{None} when the
        attribute is absent or gives no address.
        """
        rtcp = self._rtcp()
        return rtcp[1] if rtcp else None

    def _rtcp(self) -> tuple[int, str | None] | None:
        value = self.attribute("rtcp")
        if value is None:
            return None
        tokens = _tokens(value)
        if len(tokens) not in (1, 4) or not re.fullmatch(r"[0-9]{1,5}", tokens[0]):
            return None
        port = int(tokens[0])
        if port > 65535:
            return None
        return (port, tokens[3] if len(tokens) == 4 else None)

    @property
    def rtcpMux(self) -> bool:
        """
        Whether a=rtcp-mux (RFC 5761) is present.
        """
        return self.hasAttribute("rtcp-mux")

    @property
    def effectiveConnection(self) -> Connection | None:
        """
        The media-level c= line, else the session-level one, or L{None}.
        """
        return self._inherited(lambda owner: owner.connection)

    @property
    def connectionAddress(self) -> str | None:
        """
        The host of L{effectiveConnection}, or L{None}.
        """
        connection = self.effectiveConnection
        return None if connection is None else connection.host

    def _inherited(self, read: Callable[[_Attributes], object]):
        value = read(self)
        if value is None and self._session is not None:
            value = read(self._session)
        return value


@dataclass(kw_only=True)
class SessionDescription(_Attributes):
    """
    A whole session description (RFC 8866 section 5).

    Build one with keywords, or with L{parse}; L{serialize} gives the bytes.

    @ivar version: the v= value, always 0.
    @ivar origin: the o= line.
    @ivar sessionName: the s= text (C{"-"} when the line was missing).
    @ivar information: the i= text, or L{None}.
    @ivar uri: the u= text, or L{None}.
    @ivar emails: the e= values.
    @ivar phones: the p= values.
    @ivar connection: the session-level c= line, or L{None}.
    @ivar bandwidths: the session-level b= lines as C{(bwtype, bandwidth)}.
    @ivar timing: the t= lines with their r= lines (C{[Timing(0, 0)]} when
        the input had none).
    @ivar timeZones: the z= value, or L{None}.
    @ivar encryptionKey: the k= value, or L{None}.
    @ivar attributes: the session-level a= lines as C{(name, value or
        None)}, in order.
    @ivar media: the m= sections, in order.
    @ivar unknownLines: session-level lines of types RFC 8866 does not
        define, as C{(type letter, value)}, in order.
    """

    version: int = 0
    origin: Origin
    sessionName: str = "-"
    information: str | None = None
    uri: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    connection: Connection | None = None
    bandwidths: list[tuple[str, int]] = field(default_factory=list)
    timing: list[Timing] = field(default_factory=lambda: [Timing()])
    timeZones: str | None = None
    encryptionKey: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    unknownLines: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for media in self.media:
            media._session = self

    def addMedia(self, media: MediaDescription) -> MediaDescription:
        """
        Append C{media} and let it inherit session-level attributes and c=.

        @return: C{media}.
        """
        media._session = self
        self.media.append(media)
        return media

    @property
    def direction(self) -> str:
        """
        The session-level direction attribute, or C{"sendrecv"}.
        """
        return self._ownDirection() or "sendrecv"

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        """
        Parse a session description.

        Lines may end in CRLF or LF. Text is UTF-8; octets that are not are
        kept (as surrogate escapes) and written back unchanged.

        @raise SdpParseError: when the description is malformed or larger
            than L{MAX_OCTETS}, L{MAX_LINES} or L{MAX_MEDIA}.
        """
        return _Parser(_decode(data)).parse()

    def serialize(self) -> bytes:
        """
        The description as bytes, in RFC 8866 line order, with CRLF line
        ends.

        @raise ValueError: when a value contains CR, LF or NUL (which would
            inject lines).
        """
        lines = [f"v={self.version}", "o=" + _join(
            self.origin.username, self.origin.sessionId, self.origin.sessionVersion,
            self.origin.netType, self.origin.addrType, self.origin.address),
            f"s={self.sessionName}"]
        _optional(lines, "i", self.information)
        _optional(lines, "u", self.uri)
        lines += [f"e={email}" for email in self.emails]
        lines += [f"p={phone}" for phone in self.phones]
        _connectionAndBandwidths(lines, self)
        for timing in self.timing:
            lines.append(f"t={timing.start} {timing.stop}")
            lines += [f"r={repeat}" for repeat in timing.repeats]
        _optional(lines, "z", self.timeZones)
        _optional(lines, "k", self.encryptionKey)
        _attributesAndUnknown(lines, self)
        for media in self.media:
            port = str(media.port) if media.portCount is None else (
                f"{media.port}/{media.portCount}")
            lines.append("m=" + _join(media.media, port, media.proto, *media.formats))
            _optional(lines, "i", media.information)
            _connectionAndBandwidths(lines, media)
            _optional(lines, "k", media.encryptionKey)
            _attributesAndUnknown(lines, media)
        for line in lines:
            if "\r" in line or "\n" in line or "\0" in line:
                raise ValueError(f"SDP value contains CR, LF or NUL: {line[:80]!r}")
        return ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")


# ---------------------------------------------------------------------------
# Serialization helpers


def _join(*parts: object) -> str:
    return " ".join(str(part) for part in parts)


def _optional(lines: list[str], kind: str, value: str | None) -> None:
    if value is not None:
        lines.append(f"{kind}={value}")


def _connectionAndBandwidths(lines: list[str],
                             owner: SessionDescription | MediaDescription) -> None:
    if owner.connection is not None:
        c = owner.connection
        lines.append("c=" + _join(c.netType, c.addrType, c.address))
    lines += [f"b={bwType}:{bandwidth}" for bwType, bandwidth in owner.bandwidths]


def _attributesAndUnknown(lines: list[str],
                          owner: SessionDescription | MediaDescription) -> None:
    lines += [f"a={name}" if value is None else f"a={name}:{value}"
              for name, value in owner.attributes]
    lines += [f"{kind}={value}" for kind, value in owner.unknownLines]


# ---------------------------------------------------------------------------
# Parsing


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        try:
            data = data.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raise SdpParseError("text contains unpaired surrogates") from None
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"SDP must be bytes or str, not {type(data).__name__}")
    if len(data) > MAX_OCTETS:
        raise SdpParseError(f"session description larger than {MAX_OCTETS} octets")
    return bytes(data).decode("utf-8", "surrogateescape")


def _tokens(value: str) -> list[str]:
    value = value.strip(" \t")
    return _SPACES.split(value) if value else []


def _number(text: str, what: str, maximum: int | None = None, digits: int = 20) -> int:
    if not re.fullmatch(f"[0-9]{{1,{digits}}}", text):
        raise SdpParseError(f"{what} is not a number")
    number = int(text)
    if maximum is not None and number > maximum:
        raise SdpParseError(f"{what} is larger than {maximum}")
    return number


def _parseOrigin(value: str) -> Origin:
    tokens = _tokens(value)
    if len(tokens) != 6:
        raise SdpParseError("o= needs 6 fields: username sess-id sess-version "
                            "nettype addrtype address")
    username, sessionId, sessionVersion, netType, addrType, address = tokens
    return Origin(username, _number(sessionId, "sess-id", digits=40),
                  _number(sessionVersion, "sess-version", digits=40),
                  netType, addrType, address)


def _parseConnection(value: str) -> Connection:
    tokens = _tokens(value)
    if len(tokens) != 3:
        raise SdpParseError("c= needs 3 fields: nettype addrtype address")
    return Connection(*tokens)


def _parseBandwidth(value: str) -> tuple[str, int]:
    bwType, colon, bandwidth = value.strip(" \t").partition(":")
    if not colon or not bwType:
        raise SdpParseError("b= needs <bwtype>:<bandwidth>")
    return (bwType, _number(bandwidth, "bandwidth"))


def _parseTiming(value: str) -> Timing:
    tokens = _tokens(value)
    if len(tokens) != 2:
        raise SdpParseError("t= needs 2 fields: start stop")
    return Timing(_number(tokens[0], "start time"), _number(tokens[1], "stop time"))


def _parseAttribute(value: str) -> tuple[str, str | None]:
    name, colon, attrValue = value.partition(":")
    if not name:
        raise SdpParseError("attribute without a name")
    return (name, attrValue if colon else None)


def _parseMedia(value: str) -> MediaDescription:
    # Lenient: an m= line without formats is accepted (RFC 8866 wants one).
    tokens = _tokens(value)
    if len(tokens) < 3:
        raise SdpParseError("m= needs <media> <port> <proto> <fmt> ...")
    media, portText, proto, *formats = tokens
    portText, slash, countText = portText.partition("/")
    port = _number(portText, "port", 65535, digits=5)
    portCount = None
    if slash:
        portCount = _number(countText, "number of ports", 65535, digits=5)
    return MediaDescription(media=media, port=port, portCount=portCount,
                            proto=proto, formats=formats)


class _Parser:
    """
    One parse of one description: a line loop that fills the session level
    until the first m= line and the current media section after it.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.session: dict[str, object] = {
            "emails": [], "phones": [], "bandwidths": [], "timing": [],
            "attributes": [], "media": [], "unknownLines": [],
        }
        self.current: MediaDescription | None = None

    def parse(self) -> SessionDescription:
        if self.text.count("\n") > MAX_LINES:
            raise SdpParseError(f"more than {MAX_LINES} lines")
        first = True
        for number, line in enumerate(self.text.split("\n"), 1):
            if line.endswith("\r"):
                line = line[:-1]
            if not line.strip(" \t"):
                continue
            try:
                kind, value = self._split(line)
                if first and kind != "v":
                    raise SdpParseError("a session description starts with v=")
                first = False
                self._line(kind, value)
            except SdpParseError as error:
                if error.lineNumber is not None:
                    raise
                raise SdpParseError(error.detail, number, line) from None
        if first:
            raise SdpParseError("empty session description")
        session = self.session
        if "origin" not in session:
            raise SdpParseError("no o= line")
        # Lenient: phones omit s= and t=; RFC 8866 defaults stand in.
        session.setdefault("sessionName", "-")
        if not session["timing"]:
            session["timing"] = [Timing()]
        return SessionDescription(**session)

    @staticmethod
    def _split(line: str) -> tuple[str, str]:
        if len(line) < 2 or line[1] != "=" or not _LINE_TYPE.fullmatch(line[0]):
            raise SdpParseError("expected <type>=<value>")
        if "\r" in line or "\0" in line:
            raise SdpParseError("CR or NUL inside a line")
        return line[0], line[2:]

    def _line(self, kind: str, value: str) -> None:
        if kind == "m":
            if len(self.session["media"]) >= MAX_MEDIA:
                raise SdpParseError(f"more than {MAX_MEDIA} media sections")
            self.current = _parseMedia(value)
            self.session["media"].append(self.current)
        elif self.current is not None:
            self._mediaLine(self.current, kind, value)
        else:
            self._sessionLine(kind, value)

    def _sessionLine(self, kind: str, value: str) -> None:
        session = self.session
        once = {"v": "version", "o": "origin", "s": "sessionName", "i": "information",
                "u": "uri", "c": "connection", "z": "timeZones", "k": "encryptionKey"}
        if kind in once:
            if once[kind] in session:
                raise SdpParseError(f"more than one {kind}= line")
            if kind == "v":
                if value != "0":
                    raise SdpParseError("unsupported SDP version (only v=0)")
                parsed: object = 0
            elif kind == "o":
                parsed = _parseOrigin(value)
            elif kind == "c":
                parsed = _parseConnection(value)
            else:
                parsed = value
            session[once[kind]] = parsed
        elif kind == "e":
            session["emails"].append(value)
        elif kind == "p":
            session["phones"].append(value)
        elif kind == "b":
            session["bandwidths"].append(_parseBandwidth(value))
        elif kind == "t":
            session["timing"].append(_parseTiming(value))
        elif kind == "r":
            if not session["timing"]:
                raise SdpParseError("r= before any t=")
            session["timing"][-1].repeats.append(value)
        elif kind == "a":
            session["attributes"].append(_parseAttribute(value))
        else:
            session["unknownLines"].append((kind, value))

    @staticmethod
    def _mediaLine(media: MediaDescription, kind: str, value: str) -> None:
        if kind in _SESSION_ONLY_TYPES:
            raise SdpParseError(f"{kind}= is not allowed in a media section")
        if kind == "a":
            media.attributes.append(_parseAttribute(value))
        elif kind == "b":
            media.bandwidths.append(_parseBandwidth(value))
        elif kind in _MEDIA_TYPES:
            attribute = {"i": "information", "c": "connection", "k": "encryptionKey"}[kind]
            if getattr(media, attribute) is not None:
                raise SdpParseError(f"more than one {kind}= line in a media section")
            setattr(media, attribute, _parseConnection(value) if kind == "c" else value)
        else:
            media.unknownLines.append((kind, value))


# ---------------------------------------------------------------------------
# Offer/answer (RFC 3264)


@dataclass
class NegotiatedMedia:
    """
    The outcome of an offer/answer exchange for the one audio stream, from
    our point of view.

    @ivar codec: the encoding name of the chosen codec, as the peer wrote it.
    @ivar payloadType: the payload type number the peer expects for it (we
        send with it; RFC 3264 section 6.1).
    @ivar clockRate: the RTP clock rate of the codec.
    @ivar remoteAddress: where to send RTP (the host of the peer's c=).
    @ivar remotePort: the peer's RTP port.
    @ivar remoteRtcpAddress: where to send RTCP: the a=rtcp address, else
        L{remoteAddress}.
    @ivar remoteRtcpPort: the a=rtcp port, else the RTP port + 1, or the RTP
        port itself with rtcp-mux.
    @ivar direction: what we may do: C{"sendrecv"}, C{"sendonly"} (send,
        do not expect to receive), C{"recvonly"} or C{"inactive"}. It is
        C{"recvonly"} or C{"inactive"} whenever the peer's address is
        C{0.0.0.0} or C{::}.
    @ivar ptime: the packet time the peer asked for, default 20 ms.
    @ivar channels: the codec's channels.
    @ivar rtcpMux: whether RTP and RTCP share the RTP port (RFC 5761).
    @ivar telephoneEventPayloadType: the peer's payload type for RFC 4733
        telephone-event, or L{None} when not negotiated.
    @ivar comfortNoisePayloadType: the peer's payload type for RFC 3389
        comfort noise, or L{None} when not negotiated.
    @ivar remoteUnspecified: whether the peer's address is C{0.0.0.0} or
        C{::}, to which nothing may be sent (RFC 3264 section 8.4).
    """

    codec: str
    payloadType: int
    clockRate: int
    remoteAddress: str
    remotePort: int
    remoteRtcpAddress: str
    remoteRtcpPort: int
    direction: str = "sendrecv"
    ptime: int = 20
    channels: int = 1
    rtcpMux: bool = False
    telephoneEventPayloadType: int | None = None
    comfortNoisePayloadType: int | None = None
    remoteUnspecified: bool = False

    @property
    def sending(self) -> bool:
        """
        Whether we may send RTP.
        """
        return _canSend(self.direction)

    @property
    def receiving(self) -> bool:
        """
        Whether we should expect RTP.
        """
        return _canReceive(self.direction)

    @property
    def sendingRtcp(self) -> bool:
        """
        Whether we may send RTCP: always (even when inactive, RFC 3264
        section 5.1) unless the peer's address is C{0.0.0.0} or C{::}
        (RFC 3264 section 8.4).
        """
        return not self.remoteUnspecified


def _canSend(direction: str) -> bool:
    return direction in ("sendrecv", "sendonly")


def _canReceive(direction: str) -> bool:
    return direction in ("sendrecv", "recvonly")


def _directionOf(send: bool, receive: bool) -> str:
    return {(True, True): "sendrecv", (True, False): "sendonly",
            (False, True): "recvonly", (False, False): "inactive"}[(send, receive)]


def _checkDirection(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")


def _checkPort(port: int, what: str = "rtpPort") -> None:
    if not isinstance(port, int) or not 0 < port <= 65535:
        raise ValueError(f"{what} must be 1..65535, not {port!r}")


# Codecs named without a clock rate in makeOffer/answerOffer: the static
# audio types whose name is unambiguous, and opus (RFC 7587).
_WELL_KNOWN_CODECS = {
    rtpmap.encodingName.lower(): rtpmap for rtpmap in STATIC_PAYLOAD_TYPES.values()
    if rtpmap.clockRate == 8000 and rtpmap.encodingName not in ("DVI4", "CN")
}
_WELL_KNOWN_CODECS["opus"] = RtpMap(-1, "opus", 48000, 2)

_TELEPHONE_EVENT = RtpMap(101, "telephone-event", 8000)
_TELEPHONE_EVENT_FMTP = "0-16"
_COMFORT_NOISE = STATIC_PAYLOAD_TYPES[13]
_FIRST_DYNAMIC = 96
# Formats that go along with a codec rather than being one.
_AUXILIARY = ("telephone-event", "cn")


def _codecSpec(spec: str) -> RtpMap:
    """
    Resolve C{"PCMU"} or C{"name/clockRate[/channels]"} to an L{RtpMap}
    whose payload type is the static one, or -1 for a dynamic type.
    """
    if "/" not in spec:
        known = _WELL_KNOWN_CODECS.get(spec.lower())
        if known is None:
            raise ValueError(f"unknown codec {spec!r}: write it as name/clockRate[/channels]")
        return known
    try:
        rtpmap = RtpMap.parse(f"0 {spec}")
    except SdpParseError:
        raise ValueError(f"malformed codec {spec!r}: expected name/clockRate[/channels]") from None
    if rtpmap.encodingName.lower() in _AUXILIARY:
        raise ValueError(f"{spec!r} is not a codec: use telephoneEvent= or comfortNoise=")
    for static in STATIC_PAYLOAD_TYPES.values():
        if static.sameCodec(rtpmap):
            return static
    return RtpMap(-1, rtpmap.encodingName, rtpmap.clockRate, rtpmap.channels)


def _offerRtpMaps(codecs: Iterable[str], telephoneEvent: bool,
                  comfortNoise: bool) -> list[RtpMap]:
    specs: list[RtpMap] = []
    for spec in codecs:
        rtpmap = _codecSpec(spec)
        if not any(rtpmap.sameCodec(chosen) for chosen in specs):
            specs.append(rtpmap)
    if not specs:
        raise ValueError("at least one codec is needed")
    dynamic = iter(pt for pt in range(_FIRST_DYNAMIC, 128) if pt != _TELEPHONE_EVENT.payloadType)
    rtpmaps = []
    for rtpmap in specs:
        if rtpmap.payloadType < 0:
            try:
                payloadType = next(dynamic)
            except StopIteration:
                raise ValueError("too many dynamic codecs") from None
            rtpmap = RtpMap(payloadType, rtpmap.encodingName, rtpmap.clockRate, rtpmap.channels)
        rtpmaps.append(rtpmap)
    if telephoneEvent:
        rtpmaps.append(_TELEPHONE_EVENT)
    if comfortNoise:
        rtpmaps.append(_COMFORT_NOISE)
    return rtpmaps


def _connectionFor(address: str) -> Connection:
    try:
        version = ipaddress.ip_address(address).version
    except ValueError:
        if ":" in address or not address or any(c in address for c in " \t\r\n\0"):
            raise ValueError(f"not an IP address or host name: {address!r}") from None
        version = 4  # a host name; RFC 8866 allows an FQDN here
    return Connection("IN", f"IP{version}", address)


def _newSession(address: str, username: str, sessionId: int | None,
                media: list[MediaDescription],
                timing: list[Timing] | None = None) -> SessionDescription:
    if sessionId is None:
        # RFC 3264 section 5: the version must start below 2**62 - 1.
        sessionId = secrets.randbelow(2 ** 62 - 1)
    if not isinstance(sessionId, int) or sessionId < 0:
        raise ValueError(f"sessionId must be a non-negative integer, not {sessionId!r}")
    if not username or any(c in username for c in " \t\r\n\0"):
        raise ValueError(f"username must be a non-empty token, not {username!r}")
    connection = _connectionFor(address)
    return SessionDescription(
        origin=Origin(username, sessionId, sessionId, connection.netType,
                      connection.addrType, address),
        sessionName="-", connection=connection,
        timing=copy.deepcopy(timing) if timing else [Timing()], media=media)


def _audioMedia(rtpPort: int, rtpmaps: list[RtpMap], fmtps: dict[int, str],
                ptime: int | None, rtcpMux: bool, rtcpPort: int | None,
                direction: str) -> MediaDescription:
    attributes: list[tuple[str, str | None]] = []
    for rtpmap in rtpmaps:
        attributes.append(("rtpmap", rtpmap.attributeValue))
        if rtpmap.payloadType in fmtps:
            attributes.append(("fmtp", f"{rtpmap.payloadType} {fmtps[rtpmap.payloadType]}"))
    if ptime is not None:
        if not isinstance(ptime, int) or ptime <= 0:
            raise ValueError(f"ptime must be a positive integer, not {ptime!r}")
        attributes.append(("ptime", str(ptime)))
    if rtcpPort is not None:
        _checkPort(rtcpPort, "rtcpPort")
        attributes.append(("rtcp", str(rtcpPort)))
    if rtcpMux:
        attributes.append(("rtcp-mux", None))
    attributes.append((direction, None))
    return MediaDescription(media="audio", port=rtpPort, proto="RTP/AVP",
                            formats=[str(rtpmap.payloadType) for rtpmap in rtpmaps],
                            attributes=attributes)


def makeOffer(address: str, rtpPort: int, codecs: Iterable[str] = ("PCMU", "PCMA"),
              telephoneEvent: bool = True, comfortNoise: bool = False,
              ptime: int | None = 20, direction: str = "sendrecv",
              rtcpMux: bool = False, sessionId: int | None = None,
              username: str = "lmevoip", rtcpPort: int | None = None,
              ) -> SessionDescription:
    """
    Make an initial offer (RFC 3264 section 5) with one audio stream.

    @param address: our IPv4 or IPv6 address (or host name) for o= and c=.
    @param rtpPort: our RTP port.
    @param codecs: codecs in our order of preference: C{"PCMU"}, C{"PCMA"},
        C{"G722"}, C{"GSM"}, C{"G729"}, C{"opus"}, ... or
        C{"name/clockRate[/channels]"}. Static payload types keep their
        number; the others get dynamic numbers from 96 (skipping 101).
    @param telephoneEvent: offer RFC 4733 telephone-event/8000 as payload
        type 101 with C{a=fmtp:101 0-16}.
    @param comfortNoise: offer RFC 3389 comfort noise as payload type 13.
    @param ptime: the a=ptime to ask for, or L{None} for none.
    @param direction: one of L{DIRECTIONS}.
    @param rtcpMux: offer a=rtcp-mux (RFC 5761).
    @param sessionId: the o= session id (and first version); random when
        L{None}.
    @param username: the o= username.
    @param rtcpPort: when given, an a=rtcp attribute (RFC 3605) with it.
    @return: the offer.
    @raise ValueError: on a bad argument.
    """
    _checkPort(rtpPort)
    _checkDirection(direction)
    rtpmaps = _offerRtpMaps(codecs, telephoneEvent, comfortNoise)
    fmtps = {_TELEPHONE_EVENT.payloadType: _TELEPHONE_EVENT_FMTP} if telephoneEvent else {}
    media = _audioMedia(rtpPort, rtpmaps, fmtps, ptime, rtcpMux, rtcpPort, direction)
    return _newSession(address, username, sessionId, [media])


def _usableAudio(media: MediaDescription) -> bool:
    return (media.media.lower() == "audio" and not media.rejected
            and media.proto.upper() == "RTP/AVP" and media.connectionAddress is not None)


def _pickAuxiliary(rtpmaps: dict[int, RtpMap], name: str, clockRate: int) -> RtpMap | None:
    """
    The offered C{name} format (telephone-event, CN) with C{clockRate},
    else the first one offered at another rate.
    """
    candidates = [r for r in rtpmaps.values() if r.encodingName.lower() == name.lower()]
    for rtpmap in candidates:
        if rtpmap.clockRate == clockRate:
            return rtpmap
    return candidates[0] if candidates else None


def _negotiated(remote: MediaDescription, chosen: RtpMap, direction: str,
                rtcpMux: bool, telephoneEvent: RtpMap | None,
                comfortNoise: RtpMap | None) -> NegotiatedMedia:
    connection = remote.effectiveConnection  # not None: see _usableAudio
    unspecified = connection.isUnspecified
    if unspecified:
        direction = _directionOf(False, _canReceive(direction))
    if rtcpMux:
        rtcpAddress, rtcpPort = connection.host, remote.port
    elif remote.rtcpPort is not None:
        rtcpAddress, rtcpPort = remote.rtcpAddress or connection.host, remote.rtcpPort
    else:
        rtcpAddress, rtcpPort = connection.host, min(remote.port + 1, 65535)
    return NegotiatedMedia(
        codec=chosen.encodingName, payloadType=chosen.payloadType,
        clockRate=chosen.clockRate, channels=chosen.channels,
        remoteAddress=connection.host, remotePort=remote.port,
        remoteRtcpAddress=rtcpAddress, remoteRtcpPort=rtcpPort,
        direction=direction, ptime=remote.ptime or 20, rtcpMux=rtcpMux,
        telephoneEventPayloadType=telephoneEvent.payloadType if telephoneEvent else None,
        comfortNoisePayloadType=comfortNoise.payloadType if comfortNoise else None,
        remoteUnspecified=unspecified)


def _rejected(offered: MediaDescription) -> MediaDescription:
    return MediaDescription(media=offered.media, port=0, proto=offered.proto,
                            formats=list(offered.formats))


def answerOffer(offer: SessionDescription, address: str, rtpPort: int,
                supportedCodecs: Iterable[str] = ("PCMU", "PCMA"),
                telephoneEvent: bool = True, comfortNoise: bool = False,
                ptime: int | None = 20, direction: str = "sendrecv",
                rtcpMux: bool = False, sessionId: int | None = None,
                username: str = "lmevoip", rtcpPort: int | None = None,
                ) -> tuple[SessionDescription, NegotiatedMedia]:
    """
    Answer an offer (RFC 3264 section 6) by accepting one audio stream.

    The first offered m=audio RTP/AVP stream with a codec in common is
    accepted; every other m= line is answered with port 0, so the answer has
    the offer's m= lines in the offer's order. In the accepted stream:

      - the codec is the first of the offer's formats that is in
        C{supportedCodecs} (the offerer's preference wins), with the
        offerer's payload type number, and it is the only codec listed;
      - telephone-event and CN are listed, with the offerer's numbers, only
        when offered and enabled;
      - the direction mirrors the offer's (sendonly -> recvonly, recvonly ->
        sendonly, inactive -> inactive) limited by C{direction}; an offer
        with c=0.0.0.0 counts as one that does not receive;
      - a=rtcp-mux only when offered and C{rtcpMux} is true (RFC 8035).

    @param offer: the offer.
    @param address: our IPv4 or IPv6 address (or host name).
    @param rtpPort: our RTP port.
    @param supportedCodecs: as C{codecs} of L{makeOffer}; the order does not
        matter.
    @param direction: what we want, one of L{DIRECTIONS}.
    @return: the answer and the negotiated stream.
    @raise NegotiationError: when no audio stream can be accepted (status
        488, warning 304 when there is no usable audio stream, 305 when no
        codec is in common).
    @raise ValueError: on a bad argument.
    """
    _checkPort(rtpPort)
    _checkDirection(direction)
    ours = [_codecSpec(spec) for spec in supportedCodecs]
    answerMedia: list[MediaDescription] = []
    negotiated: NegotiatedMedia | None = None
    sawAudio = False
    for offered in offer.media:
        if negotiated is not None or not _usableAudio(offered):
            answerMedia.append(_rejected(offered))
            continue
        sawAudio = True
        rtpmaps = offered.rtpmaps
        chosen = next((r for r in rtpmaps.values()
                       if any(r.sameCodec(codec) for codec in ours)), None)
        if chosen is None:
            answerMedia.append(_rejected(offered))
            continue
        event = _pickAuxiliary(rtpmaps, "telephone-event", chosen.clockRate) \
            if telephoneEvent else None
        noise = _pickAuxiliary(rtpmaps, "CN", chosen.clockRate) if comfortNoise else None
        # An offer to 0.0.0.0 / :: does not receive (RFC 3264 section 8.4).
        offerCanReceive = (_canReceive(offered.direction)
                           and not offered.effectiveConnection.isUnspecified)
        answerDirection = _directionOf(offerCanReceive and _canSend(direction),
                                       _canSend(offered.direction) and _canReceive(direction))
        mux = rtcpMux and offered.rtcpMux
        listed = [r for r in (chosen, event, noise) if r is not None]
        fmtps = {event.payloadType: _TELEPHONE_EVENT_FMTP} if event else {}
        answerMedia.append(_audioMedia(rtpPort, listed, fmtps, ptime, mux, rtcpPort,
                                       answerDirection))
        negotiated = _negotiated(offered, chosen, answerDirection, mux, event, noise)
    if negotiated is None:
        if sawAudio:
            raise NegotiationError("no audio codec in common with the offer", 305)
        raise NegotiationError("the offer has no usable RTP/AVP audio stream", 304)
    answer = _newSession(address, username, sessionId, answerMedia, offer.timing)
    return answer, negotiated


def negotiateAnswer(offer: SessionDescription, answer: SessionDescription) -> NegotiatedMedia:
    """
    What an answer to our offer means for us, the offerer (RFC 3264
    section 7).

    The stream is the first offered audio stream the answer accepted; the
    codec is the first format of the answer's list that we offered (matched
    by name, clock rate and channels, so a renumbered payload type is
    understood); payload type numbers are the answer's.

    @raise NegotiationError: when the answer has a different number of m=
        lines or accepts no audio stream with a codec we offered.
    """
    if len(answer.media) != len(offer.media):
        raise NegotiationError(f"the answer has {len(answer.media)} m= lines, "
                               f"the offer {len(offer.media)}", 304)
    for ours, theirs in zip(offer.media, answer.media):
        if ours.rejected or ours.media.lower() != "audio" or not _usableAudio(theirs):
            continue
        offered = list(ours.rtpmaps.values())
        accepted = theirs.rtpmaps
        chosen = next((r for r in accepted.values()
                       if r.encodingName.lower() not in _AUXILIARY
                       and any(r.sameCodec(o) for o in offered)), None)
        if chosen is None:
            continue

        def auxiliary(name: str) -> RtpMap | None:
            if not any(o.encodingName.lower() == name.lower() for o in offered):
                return None
            return _pickAuxiliary(accepted, name, chosen.clockRate)

        direction = _directionOf(_canSend(ours.direction) and _canReceive(theirs.direction),
                                 _canReceive(ours.direction) and _canSend(theirs.direction))
        return _negotiated(theirs, chosen, direction, ours.rtcpMux and theirs.rtcpMux,
                           auxiliary("telephone-event"), auxiliary("CN"))
    raise NegotiationError("the answer accepts no audio stream with a codec we offered", 305)


# ---------------------------------------------------------------------------
# Subsequent offers (RFC 3264 section 8)


def _revise(previous: SessionDescription,
            change: Callable[[str], str]) -> SessionDescription:
    revised = copy.deepcopy(previous)
    revised.origin.sessionVersion += 1
    directions = [change(media.direction) for media in revised.media]
    # Media-level attributes become authoritative: drop the session-level ones.
    revised.attributes = [(name, value) for name, value in revised.attributes
                          if name not in DIRECTIONS]
    for media, direction in zip(revised.media, directions):
        if not media.rejected:
            media.setDirection(direction)
    return revised


def reviseSession(previous: SessionDescription,
                  direction: str | None = None) -> SessionDescription:
    """
    The next version of our description (RFC 3264 section 8): a copy whose
    o= version is one higher, every accepted stream set to C{direction} when
    given.

    @param previous: the description we sent last.
    @raise ValueError: when C{direction} is not one of L{DIRECTIONS}.
    """
    if direction is None:
        return _revise(previous, lambda current: current)
    _checkDirection(direction)
    return _revise(previous, lambda current: direction)


def holdSession(previous: SessionDescription) -> SessionDescription:
    """
    The next version of our description putting the peer on hold (RFC 3264
    section 8.4): sendrecv streams become sendonly, recvonly ones inactive.
    """
    return _revise(previous, lambda current: _directionOf(_canSend(current), False))


def resumeSession(previous: SessionDescription) -> SessionDescription:
    """
    The next version of our description taking the peer off hold: sendonly
    streams become sendrecv again, inactive ones recvonly.
    """
    return _revise(previous, lambda current: _directionOf(_canSend(current), True))
