"""
RTCP packets and compound packets (RFC 3550 section 6 and appendix A.2),
sans-IO.

One class per packet type: L{SenderReport}, L{ReceiverReport} (both carrying
L{ReportBlock}s), L{SourceDescription} (L{SdesChunk}s of items such as the
CNAME), L{Bye} and L{App}; any other packet type (RTPFB, PSFB, XR, ...) is
kept verbatim as a L{RawRtcpPacket}, so a compound packet survives a
parse/serialize round trip even when it carries types this module does not
interpret.

L{parseCompound} applies the header validity checks of RFC 3550 A.2 and
raises L{RtcpParseError} (an L{RtpParseError}, so a C{ValueError}) for
anything that fails them. L{serializeCompound} computes every length field
and pads to 32-bit boundaries.

Text fields (SDES item values, the BYE reason) are kept as C{bytes}: RFC 3550
says they are UTF-8, but what arrives from the network is not always so, and
keeping bytes makes the round trip exact. Constructors accept C{str} too and
encode it as UTF-8.

Also here: the NTP timestamp helpers the sender and receiver reports need
(L{ntpFromUnix}, L{unixFromNtp}, L{middle32}, L{compactFromSeconds},
L{secondsFromCompact}).
"""

from __future__ import annotations

import math
import struct
from typing import ClassVar, Iterable, Sequence

from lmevoip.rtp.packet import RtpParseError

__all__ = [
    "RTCP_SR",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_BYE",
    "RTCP_APP",
    "SDES_END",
    "SDES_CNAME",
    "SDES_NAME",
    "SDES_EMAIL",
    "SDES_PHONE",
    "SDES_LOC",
    "SDES_TOOL",
    "SDES_NOTE",
    "SDES_PRIV",
    "NTP_UNIX_OFFSET",
    "RtcpParseError",
    "RtcpPacket",
    "ReportBlock",
    "SenderReport",
    "ReceiverReport",
    "SdesChunk",
    "SourceDescription",
    "Bye",
    "App",
    "RawRtcpPacket",
    "parseCompound",
    "serializeCompound",
    "ntpFromUnix",
    "unixFromNtp",
    "ntpToInt",
    "middle32",
    "compactFromSeconds",
    "secondsFromCompact",
]

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204

SDES_END = 0
SDES_CNAME = 1
SDES_NAME = 2
SDES_EMAIL = 3
SDES_PHONE = 4
SDES_LOC = 5
SDES_TOOL = 6
SDES_NOTE = 7
SDES_PRIV = 8

#: Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
NTP_UNIX_OFFSET = 2208988800

_COMMON = struct.Struct("!BBH")
_SSRC = struct.Struct("!I")
_SENDER_INFO = struct.Struct("!IQIII")
_REPORT_BLOCK = struct.Struct("!IIIIII")
_APP_HEADER = struct.Struct("!I4s")
#: The most report blocks, chunks or sources the 5-bit count field holds.
_MAX_COUNT = 31


class RtcpParseError(RtpParseError):
    """
    Bytes that are not a valid RTCP compound packet (RFC 3550 A.2).
    """


def _checkInt(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")


def _checkCount(name: str, items: Sequence[object]) -> None:
    if len(items) > _MAX_COUNT:
        raise ValueError(f"{name} has {len(items)} entries, at most {_MAX_COUNT} fit")


def _text(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _padTo32(data: bytes) -> bytes:
    """
    Append null octets up to the next 32-bit boundary.
    """
    return data + bytes(-len(data) & 3)


# --------------------------------------------------------------------------
# NTP time


def ntpFromUnix(seconds: float) -> tuple[int, int]:
    """
    Convert Unix time to an NTP timestamp.

    @param seconds: Seconds since the Unix epoch, as C{time.time()} gives.
    @return: C{(seconds, fraction)}: whole seconds since 1900 (modulo 2**32,
        so the 2036 era wrap is handled) and the fraction in units of
        1/2**32 s.
    """
    whole = math.floor(seconds)
    fraction = int((seconds - whole) * 4294967296.0)
    if fraction > 0xFFFFFFFF:
        fraction = 0xFFFFFFFF
    return (whole + NTP_UNIX_OFFSET) & 0xFFFFFFFF, fraction


def ntpToInt(ntp: int | tuple[int, int]) -> int:
    """
    The 64-bit integer form of an NTP timestamp.

    @param ntp: A 64-bit integer or a C{(seconds, fraction)} pair.
    @return: C{seconds << 32 | fraction}.
    """
    if isinstance(ntp, tuple):
        seconds, fraction = ntp
        return (seconds << 32) | fraction
    return ntp


def unixFromNtp(ntp: int | tuple[int, int]) -> float:
    """
    Convert an NTP timestamp to Unix time (era 0, 1900-2036).

    @param ntp: A 64-bit integer or a C{(seconds, fraction)} pair.
    @return: Seconds since the Unix epoch.
    """
    value = ntpToInt(ntp)
    return (value >> 32) - NTP_UNIX_OFFSET + (value & 0xFFFFFFFF) / 4294967296.0


def middle32(ntp: int | tuple[int, int]) -> int:
    """
    The middle 32 bits of an NTP timestamp, as carried in the LSR field of
    a report block (RFC 3550 section 6.4.1).

    @param ntp: A 64-bit integer or a C{(seconds, fraction)} pair.
    @return: The low 16 bits of the seconds and the high 16 bits of the
        fraction.
    """
    return (ntpToInt(ntp) >> 16) & 0xFFFFFFFF


def compactFromSeconds(seconds: float) -> int:
    """
    Seconds to the 16.16 fixed-point unit of DLSR (and of LSR differences).

    @param seconds: A non-negative duration.
    @return: C{seconds * 65536}, rounded down and clamped to 32 bits.
    """
    return min(max(int(seconds * 65536.0), 0), 0xFFFFFFFF)


def secondsFromCompact(value: int) -> float:
    """
    The 16.16 fixed-point unit of DLSR back to seconds.

    @param value: A DLSR value, or a round-trip time C{A - LSR - DLSR}
        computed modulo 2**32.
    @return: Seconds.
    """
    return value / 65536.0


# --------------------------------------------------------------------------
# Packets


class RtcpPacket:
    """
    Base of the RTCP packet classes.

    Subclasses set L{packetType}, list their fields in C{__slots__}, and
    implement L{_encodeBody} and L{_decodeBody}.

    @cvar packetType: The RTCP packet type (PT field).
    """

    __slots__ = ()
    packetType: ClassVar[int]

    def _encodeBody(self) -> tuple[int, bytes]:
        """
        @return: The 5-bit count field and the body after the common header.
        @raise ValueError: If a field is out of range.
        """
        raise NotImplementedError()

    @classmethod
    def _decodeBody(cls, count: int, body: bytes) -> RtcpPacket:
        """
        @param count: The 5-bit count field.
        @param body: The bytes after the common header, without padding.
        @raise RtcpParseError: If the body is malformed.
        """
        raise NotImplementedError()

    def serialize(self) -> bytes:
        """
        Encode this packet alone (a compound packet needs
        L{serializeCompound}).

        @return: The packet's bytes, padded (P bit) to 32 bits if needed.
        @raise ValueError: If a field is out of range.
        """
        return serializeCompound([self])

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class ReportBlock:
    """
    One reception report block (RFC 3550 section 6.4.1).

    @ivar ssrc: The source this block reports on.
    @ivar fractionLost: Fraction lost since the last report, in 1/256 (0-255).
    @ivar cumulativeLost: Packets lost since the start, a I{signed} 24-bit
        integer (duplicates can make it negative).
    @ivar highestSequence: The extended highest sequence number received
        (cycles << 16 | sequence), 32 bits.
    @ivar jitter: The interarrival jitter in timestamp units, 32 bits.
    @ivar lastSr: LSR: the middle 32 bits of the NTP timestamp of the last
        sender report from this source (see L{middle32}), or 0.
    @ivar delaySinceLastSr: DLSR: the delay since that sender report, in
        units of 1/65536 s, or 0.
    """

    __slots__ = (
        "ssrc",
        "fractionLost",
        "cumulativeLost",
        "highestSequence",
        "jitter",
        "lastSr",
        "delaySinceLastSr",
    )

    def __init__(
        self,
        ssrc: int,
        fractionLost: int = 0,
        cumulativeLost: int = 0,
        highestSequence: int = 0,
        jitter: int = 0,
        lastSr: int = 0,
        delaySinceLastSr: int = 0,
    ) -> None:
        self.ssrc = ssrc
        self.fractionLost = fractionLost
        self.cumulativeLost = cumulativeLost
        self.highestSequence = highestSequence
        self.jitter = jitter
        self.lastSr = lastSr
        self.delaySinceLastSr = delaySinceLastSr

    def serialize(self) -> bytes:
        """
        @return: The 24-byte block.
        @raise ValueError: If a field is out of range.
        """
        _checkInt("fractionLost", self.fractionLost, 0, 0xFF)
        _checkInt("cumulativeLost", self.cumulativeLost, -0x800000, 0x7FFFFF)
        for name in ("ssrc", "highestSequence", "jitter", "lastSr", "delaySinceLastSr"):
            _checkInt(name, getattr(self, name), 0, 0xFFFFFFFF)
        return _REPORT_BLOCK.pack(
            self.ssrc,
            (self.fractionLost << 24) | (self.cumulativeLost & 0xFFFFFF),
            self.highestSequence,
            self.jitter,
            self.lastSr,
            self.delaySinceLastSr,
        )

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> ReportBlock:
        """
        Decode the 24-byte block at C{offset}; the caller checks the length.
        """
        ssrc, lossWord, highest, jitter, lastSr, delay = _REPORT_BLOCK.unpack_from(
            data, offset
        )
        cumulative = lossWord & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        return cls(ssrc, lossWord >> 24, cumulative, highest, jitter, lastSr, delay)

    __eq__ = RtcpPacket.__eq__
    __hash__ = None  # type: ignore[assignment]
    __repr__ = RtcpPacket.__repr__


def _encodeReports(reports: Sequence[ReportBlock]) -> bytes:
    _checkCount("reports", reports)
    return b"".join(block.serialize() for block in reports)


def _decodeReports(
    kind: str, count: int, body: bytes, offset: int
) -> tuple[list[ReportBlock], bytes]:
    """
    Decode C{count} report blocks from C{offset}; what follows them is the
    profile-specific extension.
    """
    end = offset + 24 * count
    if end > len(body):
        raise RtcpParseError(
            f"{kind} with {count} report blocks needs {end + 4} bytes, has {len(body) + 4}"
        )
    reports = [ReportBlock.parse(body, offset + 24 * index) for index in range(count)]
    return reports, body[end:]


class SenderReport(RtcpPacket):
    """
    SR: sender report (RFC 3550 section 6.4.1).

    @ivar ssrc: The sender's SSRC.
    @ivar ntpTimestamp: The wallclock time of this report as a 64-bit NTP
        timestamp (the constructor also takes a C{(seconds, fraction)} pair).
    @ivar rtpTimestamp: The same instant in RTP timestamp units.
    @ivar packetCount: RTP data packets sent since starting (32 bits).
    @ivar octetCount: Payload octets sent since starting (32 bits).
    @ivar reports: A list of L{ReportBlock}, at most 31.
    @ivar profileExtension: Profile-specific bytes after the report blocks
        (a multiple of 4 long; usually empty).
    """

    __slots__ = (
        "ssrc",
        "ntpTimestamp",
        "rtpTimestamp",
        "packetCount",
        "octetCount",
        "reports",
        "profileExtension",
    )
    packetType = RTCP_SR

    def __init__(
        self,
        ssrc: int,
        ntpTimestamp: int | tuple[int, int] = 0,
        rtpTimestamp: int = 0,
        packetCount: int = 0,
        octetCount: int = 0,
        reports: Iterable[ReportBlock] = (),
        profileExtension: bytes = b"",
    ) -> None:
        self.ssrc = ssrc
        self.ntpTimestamp = ntpToInt(ntpTimestamp)
        self.rtpTimestamp = rtpTimestamp
        self.packetCount = packetCount
        self.octetCount = octetCount
        self.reports = list(reports)
        self.profileExtension = bytes(profileExtension)

    def _encodeBody(self) -> tuple[int, bytes]:
        ntp = ntpToInt(self.ntpTimestamp)
        _checkInt("ssrc", self.ssrc, 0, 0xFFFFFFFF)
        _checkInt("ntpTimestamp", ntp, 0, 0xFFFFFFFFFFFFFFFF)
        for name in ("rtpTimestamp", "packetCount", "octetCount"):
            _checkInt(name, getattr(self, name), 0, 0xFFFFFFFF)
        info = _SENDER_INFO.pack(
            self.ssrc, ntp, self.rtpTimestamp, self.packetCount, self.octetCount
        )
        return len(self.reports), info + _encodeReports(self.reports) + self.profileExtension

    @classmethod
    def _decodeBody(cls, count: int, body: bytes) -> SenderReport:
        if len(body) < 24:
            raise RtcpParseError(f"SR needs at least 28 bytes, has {len(body) + 4}")
        ssrc, ntp, rtpTimestamp, packetCount, octetCount = _SENDER_INFO.unpack_from(body)
        reports, extension = _decodeReports("SR", count, body, 24)
        return cls(ssrc, ntp, rtpTimestamp, packetCount, octetCount, reports, extension)


class ReceiverReport(RtcpPacket):
    """
    RR: receiver report (RFC 3550 section 6.4.2).

    @ivar ssrc: The SSRC of the reporting receiver.
    @ivar reports: A list of L{ReportBlock}, at most 31.
    @ivar profileExtension: Profile-specific bytes after the report blocks.
    """

    __slots__ = ("ssrc", "reports", "profileExtension")
    packetType = RTCP_RR

    def __init__(
        self, ssrc: int, reports: Iterable[ReportBlock] = (), profileExtension: bytes = b""
    ) -> None:
        self.ssrc = ssrc
        self.reports = list(reports)
        self.profileExtension = bytes(profileExtension)

    def _encodeBody(self) -> tuple[int, bytes]:
        _checkInt("ssrc", self.ssrc, 0, 0xFFFFFFFF)
        body = _SSRC.pack(self.ssrc) + _encodeReports(self.reports) + self.profileExtension
        return len(self.reports), body

    @classmethod
    def _decodeBody(cls, count: int, body: bytes) -> ReceiverReport:
        if len(body) < 4:
            raise RtcpParseError(f"RR needs at least 8 bytes, has {len(body) + 4}")
        (ssrc,) = _SSRC.unpack_from(body)
        reports, extension = _decodeReports("RR", count, body, 4)
        return cls(ssrc, reports, extension)


class SdesChunk:
    """
    One SDES chunk: a source and its items (RFC 3550 section 6.5).

    @ivar ssrc: The SSRC or CSRC described.
    @ivar items: A list of C{(itemType, value)} pairs in wire order;
        C{itemType} is 1-255 (L{SDES_CNAME}, ...), C{value} is at most 255
        bytes. PRIV values are kept whole (prefix length, prefix, value).
    """

    __slots__ = ("ssrc", "items")

    def __init__(self, ssrc: int, items: Iterable[tuple[int, bytes | str]] = ()) -> None:
        self.ssrc = ssrc
        self.items = [(itemType, _text(value)) for itemType, value in items]

    @property
    def cname(self) -> str | None:
        """
        The first CNAME item decoded as UTF-8 (undecodable bytes replaced),
        or C{None} if the chunk has none.
        """
        for itemType, value in self.items:
            if itemType == SDES_CNAME:
                return value.decode("utf-8", "replace")
        return None

    def serialize(self) -> bytes:
        """
        @return: The chunk, its item list ended by at least one null octet
            and padded to 32 bits.
        @raise ValueError: If a field is out of range.
        """
        _checkInt("ssrc", self.ssrc, 0, 0xFFFFFFFF)
        parts = [_SSRC.pack(self.ssrc)]
        for itemType, value in self.items:
            _checkInt("SDES item type", itemType, 1, 255)
            if len(value) > 255:
                raise ValueError(f"SDES item {itemType} is {len(value)} bytes, at most 255")
            parts.append(bytes((itemType, len(value))))
            parts.append(value)
        parts.append(b"\x00")
        return _padTo32(b"".join(parts))

    __eq__ = RtcpPacket.__eq__
    __hash__ = None  # type: ignore[assignment]
    __repr__ = RtcpPacket.__repr__


class SourceDescription(RtcpPacket):
    """
    SDES: source description (RFC 3550 section 6.5).

    @ivar chunks: A list of L{SdesChunk}, at most 31.
    """

    __slots__ = ("chunks",)
    packetType = RTCP_SDES

    def __init__(self, chunks: Iterable[SdesChunk] = ()) -> None:
        self.chunks = list(chunks)

    @classmethod
    def fromCname(cls, ssrc: int, cname: bytes | str) -> SourceDescription:
        """
        The usual SDES: one chunk with just a CNAME.
        """
        return cls([SdesChunk(ssrc, [(SDES_CNAME, cname)])])

    def _encodeBody(self) -> tuple[int, bytes]:
        _checkCount("chunks", self.chunks)
        return len(self.chunks), b"".join(chunk.serialize() for chunk in self.chunks)

    @classmethod
    def _decodeBody(cls, count: int, body: bytes) -> SourceDescription:
        chunks = []
        offset = 0
        end = len(body)
        for index in range(count):
            if offset + 4 > end:
                raise RtcpParseError(f"SDES chunk {index + 1} of {count} is missing")
            (ssrc,) = _SSRC.unpack_from(body, offset)
            offset += 4
            items = []
            while True:
                if offset >= end:
                    raise RtcpParseError(
                        f"SDES chunk {index + 1} item list runs past the packet end"
                    )
                itemType = body[offset]
                if itemType == SDES_END:
                    # The terminating null, then nulls to the next 32-bit
                    # boundary (chunks start 32-bit aligned).
                    offset = (offset + 4) & ~3
                    break
                if offset + 2 > end or offset + 2 + body[offset + 1] > end:
                    raise RtcpParseError(
                        f"SDES item type {itemType} in chunk {index + 1} runs past"
                        " the packet end"
                    )
                length = body[offset + 1]
                items.append((itemType, body[offset + 2 : offset + 2 + length]))
                offset += 2 + length
            chunks.append(SdesChunk(ssrc, items))
        if offset > end:
            raise RtcpParseError("SDES chunk padding runs past the packet end")
        if offset != end:
            raise RtcpParseError(
                f"SDES has {end - offset} bytes after its {count} chunks"
            )
        return cls(chunks)


class Bye(RtcpPacket):
    """
    BYE: goodbye (RFC 3550 section 6.6).

    @ivar ssrcs: The sources leaving, at most 31.
    @ivar reason: The reason for leaving (at most 255 bytes), or C{None}
        when the packet has none.
    """

    __slots__ = ("ssrcs", "reason")
    packetType = RTCP_BYE

    def __init__(self, ssrcs: Iterable[int], reason: bytes | str | None = None) -> None:
        self.ssrcs = list(ssrcs)
        self.reason = None if reason is None else _text(reason)

    def _encodeBody(self) -> tuple[int, bytes]:
        _checkCount("ssrcs", self.ssrcs)
        for ssrc in self.ssrcs:
            _checkInt("ssrcs entry", ssrc, 0, 0xFFFFFFFF)
        body = struct.pack(f"!{len(self.ssrcs)}I", *self.ssrcs)
        if self.reason is not None:
            if len(self.reason) > 255:
                raise ValueError(f"BYE reason is {len(self.reason)} bytes, at most 255")
            body += _padTo32(bytes((len(self.reason),)) + self.reason)
        return len(self.ssrcs), body

    @classmethod
    def _decodeBody(cls, count: int, body: bytes) -> Bye:
        end = 4 * count
        if end > len(body):
            raise RtcpParseError(
                f"BYE with {count} sources needs {end + 4} bytes, has {len(body) + 4}"
            )
        ssrcs = list(struct.unpack_from(f"!{count}I", body))
        reason = None
        if end < len(body):
            length = body[end]
            if end + 1 + length > len(body):
                raise RtcpParseError(
                    f"BYE reason of {length} bytes runs past the packet end"
                )
            reason = body[end + 1 : end + 1 + length]
        return cls(ssrcs, reason)


class App(RtcpPacket):
    """
    APP: application-defined (RFC 3550 section 6.7).

    @ivar subtype: The 5-bit subtype carried in the count field.
    @ivar ssrc: The source.
    @ivar name: The 4-octet ASCII name.
    @ivar data: Application-dependent data.
    """

    __slots__ = ("subtype", "ssrc", "name", "data")
    packetType = RTCP_APP

    def __init__(self, subtype: int, ssrc: int, name: bytes | str, data: bytes = b"") -> None:
        self.subtype = subtype
        self.ssrc = ssrc
        self.name = _text(name)
        self.data = bytes(data)

    def _encodeBody(self) -> tuple[int, bytes]:
        _checkInt("subtype", self.subtype, 0, 31)
        _checkInt("ssrc", self.ssrc, 0, 0xFFFFFFFF)
        if len(self.name) != 4:
            raise ValueError(f"APP name must be 4 octets, got {self.name!r}")
        return self.subtype, _APP_HEADER.pack(self.ssrc, self.name) + self.data

    @classmethod
    def _decodeBody(cls, count: int, body: bytes) -> App:
        if len(body) < 8:
            raise RtcpParseError(f"APP needs at least 12 bytes, has {len(body) + 4}")
        ssrc, name = _APP_HEADER.unpack_from(body)
        return cls(count, ssrc, name, body[8:])


class RawRtcpPacket(RtcpPacket):
    """
    An RTCP packet of a type this module does not interpret, kept verbatim.

    @ivar packetType: The PT field.
    @ivar count: The 5-bit count/format field.
    @ivar body: The bytes after the 4-byte common header, without padding.
    """

    __slots__ = ("packetType", "count", "body")

    def __init__(self, packetType: int, count: int = 0, body: bytes = b"") -> None:
        self.packetType = packetType
        self.count = count
        self.body = bytes(body)

    def _encodeBody(self) -> tuple[int, bytes]:
        _checkInt("packetType", self.packetType, 0, 255)
        _checkInt("count", self.count, 0, 31)
        return self.count, self.body


_DECODERS: dict[int, type[RtcpPacket]] = {
    RTCP_SR: SenderReport,
    RTCP_RR: ReceiverReport,
    RTCP_SDES: SourceDescription,
    RTCP_BYE: Bye,
    RTCP_APP: App,
}


# --------------------------------------------------------------------------
# Compound packets


def parseCompound(data: bytes, allowReducedSize: bool = False) -> list[RtcpPacket]:
    """
    Parse an RTCP compound packet, with the validity checks of RFC 3550
    appendix A.2.

    Checked: every packet is version 2; the first is an SR or RR (unless
    C{allowReducedSize}, for RFC 5506 reduced-size RTCP); only the last
    packet has the padding bit, and its padding count is neither 0 nor
    longer than the packet; the packet lengths add up exactly to the
    datagram. A lone packet is both first and last, so it may be padded.

    @param data: The UDP payload.
    @param allowReducedSize: Accept a compound that does not start with an
        SR or RR.
    @return: The packets, in order.
    @raise RtcpParseError: If any check fails or a packet body is malformed.
    """
    if type(data) is not bytes:
        data = bytes(data)
    total = len(data)
    if total < 4:
        raise RtcpParseError(f"RTCP packet too short: {total} bytes, the header needs 4")
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < total:
        if total - offset < 4:
            raise RtcpParseError(
                f"{total - offset} trailing bytes after RTCP packet {len(packets)}"
            )
        first, packetType, words = _COMMON.unpack_from(data, offset)
        index = len(packets) + 1
        if first >> 6 != 2:
            raise RtcpParseError(f"RTCP packet {index}: version is {first >> 6}, expected 2")
        if index == 1 and not allowReducedSize and packetType not in (RTCP_SR, RTCP_RR):
            raise RtcpParseError(
                f"RTCP compound starts with packet type {packetType}, not SR or RR"
            )
        end = offset + 4 * (words + 1)
        if end > total:
            raise RtcpParseError(
                f"RTCP packet {index}: length field says {end - offset} bytes,"
                f" only {total - offset} remain"
            )
        bodyEnd = end
        if first & 0x20:
            if end != total:
                raise RtcpParseError(
                    f"RTCP packet {index} has the padding bit but is not the last packet"
                )
            padding = data[end - 1]
            if padding == 0 or padding > end - offset - 4:
                raise RtcpParseError(
                    f"RTCP packet {index}: padding count {padding} is invalid for a"
                    f" {end - offset - 4}-byte body"
                )
            bodyEnd -= padding
        count = first & 0x1F
        body = data[offset + 4 : bodyEnd]
        decoder = _DECODERS.get(packetType)
        if decoder is None:
            packets.append(RawRtcpPacket(packetType, count, body))
        else:
            packets.append(decoder._decodeBody(count, body))
        offset = end
    return packets


def serializeCompound(packets: Sequence[RtcpPacket]) -> bytes:
    """
    Encode packets as one compound packet.

    Each length field is computed here. SDES and BYE bodies are padded to
    32 bits with null octets as their formats require; a body of another
    type that is not a multiple of 32 bits (APP data or a raw body) is padded
    with the padding bit, which RFC 3550 allows only on the last packet.

    Nothing checks that the compound starts with an SR or RR: a sender of
    reduced-size RTCP (RFC 5506) may send other packets alone.

    @param packets: L{RtcpPacket}s, in order.
    @return: The datagram payload.
    @raise ValueError: If a field is out of range, a count exceeds 31, or a
        packet other than the last needs padding.
    """
    parts = []
    last = len(packets) - 1
    for index, packet in enumerate(packets):
        count, body = packet._encodeBody()
        padding = -len(body) & 3
        if padding:
            if index != last:
                raise ValueError(
                    f"{type(packet).__name__} body is {len(body)} bytes, not a multiple"
                    " of 4; only the last packet of a compound may be padded"
                )
            body += bytes(padding - 1) + bytes((padding,))
        words = len(body) // 4
        if words > 0xFFFF:
            raise ValueError(f"{type(packet).__name__} is {len(body) + 4} bytes, too long")
        first = 0xA0 | count if padding else 0x80 | count
        parts.append(_COMMON.pack(first, packet.packetType, words))
        parts.append(body)
    return b"".join(parts)
