"""
RTP data packets (RFC 3550 section 5.1), sans-IO.

Bytes in, L{RtpPacket} out, and back; no sockets, no reactor, no Twisted.
Anything malformed that arrives from the network raises L{RtpParseError},
a C{ValueError} whose message says what is wrong, so the protocol above can
log and drop it.

The RTP fixed header::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |V=2|P|X|  CC   |M|     PT      |       sequence number         |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                           timestamp                           |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |           synchronization source (SSRC) identifier            |
    +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
    |            contributing source (CSRC) identifiers             |
    |                             ....                              |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

The media path handles tens of thousands of packets a second, so
L{RtpPacket} uses C{__slots__}, precompiled C{struct.Struct} objects, and a
parse path that does no work a well-formed packet does not need.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

__all__ = [
    "RTP_VERSION",
    "RtpParseError",
    "HeaderExtension",
    "RtpPacket",
    "isRtcp",
]

#: The only RTP version this module speaks (RFC 3550 section 5.1).
RTP_VERSION = 2

_HEADER = struct.Struct("!BBHII")
_EXTENSION_HEADER = struct.Struct("!HH")
#: C{_CSRCS[n]} packs and unpacks C{n} CSRC identifiers.
_CSRCS = tuple(struct.Struct(f"!{count}I") for count in range(16))
#: C{_PADDING[n]} is the padding for a padding length of C{n}: zeros, then
#: the count itself in the last octet (RFC 3550 section 5.1, P bit).
_PADDING = (b"",) + tuple(bytes(count - 1) + bytes((count,)) for count in range(1, 256))


class RtpParseError(ValueError):
    """
    Bytes that are not a well-formed RTP (or RTCP) packet.

    The message names the field that is wrong and the sizes involved.
    """


class HeaderExtension(NamedTuple):
    """
    An RTP header extension (RFC 3550 section 5.3.1).

    @ivar profile: The 16-bit profile-defined value (for instance C{0xBEDE}
        for RFC 8285 one-byte header extensions).
    @ivar data: The extension body; its length is a multiple of 4 (it is
        carried as a count of 32-bit words).
    """

    profile: int
    data: bytes


class RtpPacket:
    """
    One RTP data packet.

    The version is always 2. The padding bit is not stored on its own: it is
    set exactly when L{paddingLength} is non-zero.

    @ivar marker: The marker bit (C{bool}).
    @ivar payloadType: The payload type, 0-127.
    @ivar sequenceNumber: The 16-bit sequence number.
    @ivar timestamp: The 32-bit RTP timestamp.
    @ivar ssrc: The 32-bit synchronization source identifier.
    @ivar csrcs: The contributing source identifiers, a list of at most 15
        32-bit integers.
    @ivar extension: The header extension, a L{HeaderExtension}, or C{None}.
    @ivar payload: The payload, without padding (C{bytes}).
    @ivar paddingLength: How many padding octets follow the payload, 0-255
        (0: no padding; otherwise the count includes the count octet).
    """

    __slots__ = (
        "marker",
        "payloadType",
        "sequenceNumber",
        "timestamp",
        "ssrc",
        "csrcs",
        "extension",
        "payload",
        "paddingLength",
    )

    #: Always 2; read-only.
    version = RTP_VERSION

    def __init__(
        self,
        payloadType: int = 0,
        sequenceNumber: int = 0,
        timestamp: int = 0,
        ssrc: int = 0,
        payload: bytes = b"",
        marker: bool = False,
        csrcs: list[int] | None = None,
        extension: HeaderExtension | tuple[int, bytes] | None = None,
        paddingLength: int = 0,
    ) -> None:
        """
        Build a packet; the fields are checked by L{serialize}.

        @param extension: A L{HeaderExtension} or a C{(profile, data)} pair.
        """
        self.marker = marker
        self.payloadType = payloadType
        self.sequenceNumber = sequenceNumber
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.csrcs = [] if csrcs is None else list(csrcs)
        self.extension = None if extension is None else HeaderExtension(*extension)
        self.payload = bytes(payload)
        self.paddingLength = paddingLength

    @property
    def padding(self) -> bool:
        """
        The P bit: C{True} when the packet carries padding octets.
        """
        return self.paddingLength > 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """
        Parse one RTP packet.

        @param data: The UDP payload (C{bytes}, C{bytearray} or
            C{memoryview}).
        @return: The packet.
        @raise RtpParseError: If C{data} is shorter than the fixed header,
            its version is not 2, its CSRC list or header extension runs past
            the end, or its padding count is 0 or longer than the payload.
        """
        if type(data) is not bytes:
            data = bytes(data)
        length = len(data)
        if length < 12:
            raise RtpParseError(
                f"RTP packet too short: {length} bytes, the fixed header needs 12"
            )
        first, second, sequenceNumber, timestamp, ssrc = _HEADER.unpack_from(data)
        if first >> 6 != 2:
            raise RtpParseError(f"RTP version is {first >> 6}, expected 2")
        offset = 12
        count = first & 0x0F
        if count:
            offset += 4 * count
            if offset > length:
                raise RtpParseError(
                    f"RTP CSRC count {count} needs {offset} bytes, packet has {length}"
                )
            csrcs = list(_CSRCS[count].unpack_from(data, 12))
        else:
            csrcs = []
        if first & 0x10:
            if offset + 4 > length:
                raise RtpParseError(
                    f"RTP extension header needs {offset + 4} bytes, packet has {length}"
                )
            profile, words = _EXTENSION_HEADER.unpack_from(data, offset)
            start = offset + 4
            offset = start + 4 * words
            if offset > length:
                raise RtpParseError(
                    f"RTP header extension of {words} words needs {offset} bytes,"
                    f" packet has {length}"
                )
            extension = HeaderExtension(profile, data[start:offset])
        else:
            extension = None
        end = length
        paddingLength = 0
        if first & 0x20:
            paddingLength = data[-1]
            if paddingLength == 0:
                raise RtpParseError("RTP padding bit set but padding count is 0")
            end -= paddingLength
            if end < offset:
                raise RtpParseError(
                    f"RTP padding count {paddingLength} exceeds the"
                    f" {length - offset} bytes after the header"
                )
        packet = _new(cls)
        packet.marker = second >= 0x80
        packet.payloadType = second & 0x7F
        packet.sequenceNumber = sequenceNumber
        packet.timestamp = timestamp
        packet.ssrc = ssrc
        packet.csrcs = csrcs
        packet.extension = extension
        packet.payload = data[offset:end]
        packet.paddingLength = paddingLength
        return packet

    def serialize(self) -> bytes:
        """
        Encode this packet.

        Padding octets are zero except the last, which holds the count.

        @return: The packet's bytes.
        @raise ValueError: If a field is out of range (the message names it).
        """
        csrcs = self.csrcs
        count = len(csrcs)
        extension = self.extension
        paddingLength = self.paddingLength
        payloadType = self.payloadType
        if count > 15 or not 0 <= payloadType <= 127 or not 0 <= paddingLength <= 255:
            self._check()
        first = 0x80 | count
        if paddingLength:
            first |= 0x20
        if extension is not None:
            first |= 0x10
        try:
            header = _HEADER.pack(
                first,
                0x80 | payloadType if self.marker else payloadType,
                self.sequenceNumber,
                self.timestamp,
                self.ssrc,
            )
            if first == 0x80:
                return header + self.payload
            parts = [header]
            if count:
                parts.append(_CSRCS[count].pack(*csrcs))
            if extension is not None:
                profile, data = extension
                if len(data) & 3:
                    self._check()
                parts.append(_EXTENSION_HEADER.pack(profile, len(data) >> 2))
                parts.append(data)
        except (struct.error, TypeError):
            self._check()
            raise
        parts.append(self.payload)
        parts.append(_PADDING[paddingLength])
        return b"".join(parts)

    def _check(self) -> None:
        """
        Find the field that makes this packet unencodable.

        @raise ValueError: Naming the first field out of range.
        """
        _checkInt("payloadType", self.payloadType, 0x7F)
        _checkInt("sequenceNumber", self.sequenceNumber, 0xFFFF)
        _checkInt("timestamp", self.timestamp, 0xFFFFFFFF)
        _checkInt("ssrc", self.ssrc, 0xFFFFFFFF)
        _checkInt("paddingLength", self.paddingLength, 0xFF)
        if len(self.csrcs) > 15:
            raise ValueError(f"csrcs has {len(self.csrcs)} entries, at most 15 allowed")
        for csrc in self.csrcs:
            _checkInt("csrcs entry", csrc, 0xFFFFFFFF)
        if self.extension is not None:
            profile, data = self.extension
            _checkInt("extension profile", profile, 0xFFFF)
            if len(data) & 3 or len(data) > 4 * 0xFFFF:
                raise ValueError(
                    f"extension data is {len(data)} bytes, it must be a multiple"
                    " of 4 and at most 262140"
                )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RtpPacket):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]

    def _fields(self) -> tuple:
        return (
            bool(self.marker),
            self.payloadType,
            self.sequenceNumber,
            self.timestamp,
            self.ssrc,
            list(self.csrcs),
            self.extension,
            bytes(self.payload),
            self.paddingLength,
        )

    def __repr__(self) -> str:
        parts = [
            f"payloadType={self.payloadType}",
            f"sequenceNumber={self.sequenceNumber}",
            f"timestamp={self.timestamp}",
            f"ssrc={self.ssrc:#010x}" if isinstance(self.ssrc, int) else f"ssrc={self.ssrc!r}",
        ]
        if self.marker:
            parts.append("marker=True")
        if self.csrcs:
            parts.append(f"csrcs={self.csrcs!r}")
        if self.extension is not None:
            parts.append(f"extension={self.extension!r}")
        if self.paddingLength:
            parts.append(f"paddingLength={self.paddingLength}")
        parts.append(f"payload=<{len(self.payload)} bytes>")
        return f"RtpPacket({', '.join(parts)})"


def _checkInt(name: str, value: object, maximum: int) -> None:
    """
    Check that C{value} is an C{int} in C{0..maximum}.

    @raise ValueError: Naming C{name} if it is not.
    """
    if not isinstance(value, int) or not 0 <= value <= maximum:
        raise ValueError(f"{name} must be an integer in 0..{maximum}, got {value!r}")


_new = object.__new__


def isRtcp(data: bytes) -> bool:
    """
    Tell RTCP from RTP on a multiplexed port (RFC 5761 section 4).

    With rtcp-mux, RTP and RTCP share one port; a packet whose second octet
    (RTP: marker and payload type; RTCP: packet type) is in 192-223 is RTCP.
    This is why RTP payload types 64-95 must not be used with rtcp-mux.

    @param data: A received datagram.
    @return: C{True} if it should be handled as RTCP.
    """
    return len(data) > 1 and 192 <= data[1] <= 223
