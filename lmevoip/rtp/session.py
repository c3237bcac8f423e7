"""
The RTP session of one call: a paced sender, a receiver with symmetric
RTP latching, and RTCP (RFC 3550, RFC 3551, RFC 5761).

Send path, once per packet time, driven by the shared L{Pacer
<lmevoip.rtp.pacer.Pacer>}::

    source.readFrame -> gate.process -> codec.encode -> RTP header -> socket

It is the hot path (50,000 packets a second for 1,000 calls), so it works
from plain attributes cached by L{RtpSession.configure}, packs the header
with one precompiled C{struct} and, on a Twisted UDP port, writes with the
socket's C{sendto}, the destination address having been checked once (see
L{_datagramWriter}).

Receive path, per datagram::

    socket -> RtpPacket.parse -> source check / latch -> ReceiverStatistics
           -> jitter buffer -> (each tick) codec.decode or comfort noise
           -> sink.writeFrame

RTCP (SR or RR, SDES CNAME; BYE on stop) is sent on RFC 3550's randomised
interval, on the RTP port + 1 or on the RTP port with rtcp-mux.

Timing rules
============

Every time and timestamp comes from the clock, never from a running sum:

  - the session's RTP timestamps count from an anchor time C{t0} (its first
    tick): a packet for the tick scheduled at C{t} carries
    C{initialTimestamp + round((t - t0) * clockRate)}, i.e. for the n-th
    frame C{initialTimestamp + n * samplesPerFrame};
  - the sequence number goes up by exactly one per packet sent, whatever
    happened in between;
  - so after a gap (the source gave C{None}, the noise gate closed, the
    call was on hold, ticks were skipped) the timestamp jumps by the time
    elapsed while the sequence number continues by one (RFC 3550 section
    5.1), and the first packet after a gap (and the first packet of all)
    carries the marker bit (RFC 3551 section 4.1: the first packet of a
    talkspurt).

A keep-alive frame (L{RtpSession.sendKeepAliveFrame}) is stamped the same
way with the current clock time; it is a one-packet talkspurt, so it has the
marker bit and the audio after it has the marker bit again.

Symmetric RTP (latching)
========================

RTP is accepted from the negotiated address and from the latched address.
A valid packet (it parses, its payload type is one negotiated, and its SSRC
is the peer's SSRC once that is known) from any other address asks the
observer's C{latchRequested(session, addr)}; when it says yes the session
sends RTP there from then on (and RTCP to the same host, port + 1, until
RTCP arrives from that host and fixes the port). At most C{maxLatches}
latches are allowed per negotiated address (one by default; a new address
from a re-INVITE starts again); refused addresses are remembered (a bounded
set) so the observer is not asked 50 times a second. Everything else is
counted in L{SessionCounters.packetsFromUnknownSource} and dropped before it
reaches statistics, jitter buffer or sink.
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
import socket
import struct
import sys
import time
from collections import OrderedDict, deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from twisted.internet import abstract, udp
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from zope.interface import implementer

from lmevoip.interfaces import IPacer, IPortAllocator, IRtpSession, IRtpSessionObserver
from lmevoip.rtp.cn import CN_PAYLOAD_TYPE, SILENCE_LEVEL, ComfortNoise, ComfortNoiseGenerator
from lmevoip.rtp.codecs import Codec, codecByName
from lmevoip.rtp.jitter import Gap, JitterBuffer
from lmevoip.rtp.packet import RtpPacket, RtpParseError, isRtcp
from lmevoip.rtp.ports import PortPair
from lmevoip.rtp.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpParseError,
    SenderReport,
    SourceDescription,
    middle32,
    ntpFromUnix,
    parseCompound,
    secondsFromCompact,
    serializeCompound,
)
from lmevoip.rtp.rtcpinterval import RTCP_MIN_TIME, RtcpSchedule
from lmevoip.rtp.stats import ReceiverStatistics, SenderStatistics

__all__ = [
    "UDP_IP_OVERHEAD",
    "UnsupportedMedia",
    "SessionCounters",
    "AllowLatching",
    "RefuseLatching",
    "RtpProtocol",
    "RtcpProtocol",
    "RtpSession",
]

#: IPv4 + UDP header octets, counted in RTCP packet sizes (RFC 3550 6.2).
UDP_IP_OVERHEAD = 28

#: IPv4 + UDP + RTP header octets per RTP packet, for the session bandwidth.
_RTP_OVERHEAD = UDP_IP_OVERHEAD + 12

#: How many refused latch addresses are remembered.
_MAX_REFUSED = 16

#: How many comfort-noise packets may wait in the jitter buffer.
_MAX_PENDING_CN = 64

#: A round-trip time above this many seconds is taken as garbage.
_MAX_RTT = 60.0

#: The fixed RTP header (RFC 3550 5.1) of the packets a session sends:
#: V=2, no padding, no extension, no CSRC; M and PT; sequence; timestamp;
#: SSRC. Packed directly on the send path (RtpPacket parses what arrives).
_RTP_HEADER = struct.Struct("!BBHII")
_RTP_VERSION_OCTET = 0x80

Address = Tuple[str, int]
SendObserver = Callable[[Address, int], Any]


class UnsupportedMedia(ValueError):
    """
    A L{NegotiatedMedia <lmevoip.sip.sdp.NegotiatedMedia>} this session
    cannot use (unknown codec, a clock rate or packet time it does not
    support).
    """


class SessionCounters:
    """
    What happened to a session's packets, for the application and for logs.

    @ivar packetsReceived: RTP packets accepted from the peer (before
        sequence validation).
    @ivar packetsFromUnknownSource: RTP packets dropped because they came
        from neither the negotiated nor a latched address.
    @ivar packetsMalformed: datagrams on the RTP port that did not parse.
    @ivar packetsIgnored: RTP packets dropped because the media direction
        does not receive (hold) or the session was not started.
    @ivar packetsUnknownPayloadType: packets with a payload type that was
        not negotiated (counted in statistics, not played).
    @ivar telephoneEventPackets: RFC 4733 packets (counted, ignored).
    @ivar comfortNoisePackets: RFC 3389 packets received.
    @ivar remoteSsrcChanges: times the peer's SSRC changed.
    @ivar latches: latches done.
    @ivar latchRefusals: latches the observer refused.
    @ivar framesPlayed: decoded frames written to the sink.
    @ivar framesConcealed: silence frames written in place of lost packets.
    @ivar comfortNoiseFrames: comfort-noise frames written to the sink.
    @ivar framesNotProduced: ticks on which the source gave no frame.
    @ivar framesSuppressed: frames the noise gate did not let through.
    @ivar keepAlivesSent: keep-alive frames sent.
    @ivar sendErrors: RTP or RTCP writes that raised.
    @ivar sourceErrors: source, gate or sink calls that raised.
    @ivar rtcpReceived: valid RTCP compounds received from the peer.
    @ivar rtcpMalformed: RTCP datagrams that did not parse.
    @ivar rtcpFromUnknownSource: RTCP dropped for its source address.
    @ivar rtcpSent: RTCP compounds sent.
    @ivar byeReceived: RTCP BYEs received for the peer's SSRC.
    """

    __slots__ = (
        "packetsReceived",
        "packetsFromUnknownSource",
        "packetsMalformed",
        "packetsIgnored",
        "packetsUnknownPayloadType",
        "telephoneEventPackets",
        "comfortNoisePackets",
        "remoteSsrcChanges",
        "latches",
        "latchRefusals",
        "framesPlayed",
        "framesConcealed",
        "comfortNoiseFrames",
        "framesNotProduced",
        "framesSuppressed",
        "keepAlivesSent",
        "sendErrors",
        "sourceErrors",
        "rtcpReceived",
        "rtcpMalformed",
        "rtcpFromUnknownSource",
        "rtcpSent",
        "byeReceived",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def asDict(self) -> Dict[str, int]:
        """
        The counters as a plain dict.
        """
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        nonZero = ", ".join(f"{k}={v}" for k, v in self.asDict().items() if v)
        return f"SessionCounters({nonZero})"


@implementer(IRtpSessionObserver)
class AllowLatching:
    """
    The default observer: allow every latch request (the session's
    C{maxLatches} still bounds how many happen).
    """

    def latchRequested(self, session: RtpSession, newAddr: Address) -> bool:
        return True


@implementer(IRtpSessionObserver)
class RefuseLatching:
    """
    An observer that never latches: only the negotiated address is used.
    """

    def latchRequested(self, session: RtpSession, newAddr: Address) -> bool:
        return False


class RtpProtocol(DatagramProtocol):
    """
    The RTP socket of a session: hands every datagram to
    L{RtpSession.rtpReceived}.

    Its C{transport} tells the session when it changes (connected,
    disconnected, replaced), so that the session's send path need not look
    at it on every packet.
    """

    _transport: Any = None

    def __init__(self, session: RtpSession) -> None:
        self.session = session

    @property
    def transport(self) -> Any:
        return self._transport

    @transport.setter
    def transport(self, transport: Any) -> None:
        self._transport = transport
        self.session._rtpTransportChanged()

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.session.rtpReceived(data, addr)


class RtcpProtocol(DatagramProtocol):
    """
    The RTCP socket of a session (not used for sending with rtcp-mux): hands
    every datagram to L{RtpSession.rtcpReceived}.
    """

    def __init__(self, session: RtpSession) -> None:
        self.session = session

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.session.rtcpReceived(data, addr)


class _LogLimiter:
    """
    At most one log event per key per C{interval} seconds; says how many
    were suppressed in between.
    """

    def __init__(self, clock: IReactorTime, interval: float = 10.0) -> None:
        self._clock = clock
        self._interval = interval
        self._last: Dict[str, float] = {}
        self._suppressed: Dict[str, int] = {}

    def allow(self, key: str) -> Optional[int]:
        """
        @return: the number of events suppressed since the last allowed one
            when this one may be logged, else None.
        """
        now = self._clock.seconds()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._suppressed.pop(key, 0)


def _datagramWriter(transport: Any, addr: Address) -> Callable[[bytes, Address], Any]:
    """
    The callable that writes RTP datagrams to C{addr} through C{transport}.

    For a listening (not connected) Twisted UDP port and an IP address of
    the port's family, that is the port's C{socket.sendto}: Twisted's
    C{udp.Port.write} checks the address (three C{inet_pton} calls) on
    every datagram, and a session sends 50 of them a second to the same
    address, so the check is made here, once per destination, instead.
    C{sendto} raises C{OSError} (C{EWOULDBLOCK}, C{ENOBUFS},
    C{ECONNREFUSED}, C{EMSGSIZE}...) where C{write} raised or, for
    C{ECONNREFUSED}, returned quietly; the session counts either as a send
    error. C{EINTR} is retried by Python itself (PEP 475).

    Any other transport (a connected port, a test's recording transport, a
    host name Twisted would refuse) gets its own C{write}, unchanged.
    """
    if isinstance(transport, udp.Port) and getattr(transport, "_connectedAddr", None) is None:
        sock = getattr(transport, "socket", None)
        host = addr[0]
        if transport.addressFamily == socket.AF_INET:
            fits = abstract.isIPAddress(host)
        else:
            fits = abstract.isIPv6Address(host)
        if sock is not None and fits:
            return sock.sendto
    return transport.write


def _normalizeHost(host: str) -> str:
    """
    The textual form the socket layer gives for C{host} (compressed IPv6,
    lower case), so that addresses compare equal; names are left as they
    are. Interned: the sessions of a process mostly talk to few hosts and
    then share one string (one object for C{sendto} to read, not one per
    session).
    """
    try:
        return sys.intern(str(ipaddress.ip_address(host)))
    except ValueError:
        return host


def _without(observers: Tuple[SendObserver, ...],
             observer: SendObserver) -> Tuple[SendObserver, ...]:
    """
    C{observers} less the first C{observer} in it.

    @raise ValueError: when C{observer} is not in it.
    """
    index = observers.index(observer)
    return observers[:index] + observers[index + 1:]


def _defaultCname(rng: Any) -> str:
    """
    A random, short-term persistent CNAME as RFC 7022 recommends: 96 random
    bits in base64.
    """
    return base64.b64encode(rng.getrandbits(96).to_bytes(12, "big")).decode("ascii")


@implementer(IRtpSession)
class RtpSession:
    """
    One call's RTP session. See the module docstring for the media path
    and the timing and latching rules.

    Typical use::

        session = RtpSession(pacer, source=ToneSource(440), sink=DiscardSink())
        session.listen(allocator, "192.0.2.10")      # or connect protocols
        session.configure(negotiatedMedia)           # from the SDP answer
        session.start()
        ...
        session.configure(reInviteMedia)             # hold / resume / move
        ...
        yield session.stop()

    The session does not close its source or sink: they belong to the
    application.

    @ivar pacer: the shared L{IPacer} that ticks the session.
    @ivar clock: the L{IReactorTime} for RTCP timers and arrival times.
    @ivar source: the L{IAudioSource} sent from, or None (send nothing).
    @ivar sink: the L{IAudioSink} received audio goes to, or None.
    @ivar gate: a L{NoiseGate <lmevoip.rtp.gate.NoiseGate>} or None.
    @ivar observer: the L{IRtpSessionObserver} asked about latching.
    @ivar ssrc: our random SSRC.
    @ivar initialSequenceNumber: the random first sequence number.
    @ivar initialTimestamp: the random RTP timestamp of the anchor time.
    @ivar cname: the SDES CNAME sent in every RTCP compound.
    @ivar maxLatches: latches allowed per negotiated address (None: no
        limit, 0: never latch).
    @ivar keepAliveComfortNoise: whether keep-alive frames are CN (when CN
        was negotiated) rather than codec silence.
    @ivar rtpProtocol: the L{RtpProtocol} (its C{transport} sends RTP).
    @ivar rtcpProtocol: the L{RtcpProtocol}.
    @ivar ports: the L{PortPair} from L{listen}, or None.
    @ivar media: the last L{NegotiatedMedia} configured, or None.
    @ivar codec: its L{Codec}, or None.
    @ivar payloadType: the payload type we send (the peer's number).
    @ivar ptime: the packet time in ms.
    @ivar samplesPerFrame: RTP timestamp units per packet.
    @ivar running: between L{start} and L{stop}.
    @ivar negotiatedAddress: the negotiated RTP (host, port), or None.
    @ivar negotiatedRtcpAddress: the negotiated RTCP (host, port), or None.
    @ivar latchedAddress: the latched RTP (host, port), or None.
    @ivar senderStats: L{SenderStatistics} of what we sent.
    @ivar receiverStats: L{ReceiverStatistics} of the peer's current SSRC,
        or None before its first packet.
    @ivar jitterBuffer: the L{JitterBuffer}.
    @ivar counters: the L{SessionCounters}.
    @ivar lastSendTime: clock time the last RTP packet was sent, or None.
    @ivar lastRtcpSendTime: clock time the last RTCP packet was sent, or
        None.
    @ivar roundTripTime: the last RTT from RTCP LSR/DLSR in seconds, or None.
    @ivar remoteReport: the last L{ReportBlock} the peer sent about us, or
        None.
    """

    log = Logger()

    # The attributes the per-tick path reads, as slots: at fixed offsets
    # in the object, a few cache lines, instead of spread over an instance
    # dict of some 70 entries. With 1,000 sessions each session's state has
    # left the CPU caches by its next tick (the process sleeps between
    # batches); in a loop that sleeps like the reactor does, this saved
    # about 1 us of the 7-9 us a tick cost. Every other attribute stays in
    # the instance dict (so anything may still be set on a session).
    __slots__ = (
        "running", "source", "gate", "counters", "samplesPerFrame", "payloadType", "ssrc",
        "initialTimestamp", "clock", "senderStats", "rtpProtocol", "latchedAddress",
        "negotiatedAddress", "lastSendTime", "_mediaSends", "_mediaReceives", "_remoteKnown",
        "_encode", "_clockRate", "_anchor", "_lastOffset", "_lastAudioOffset", "_sequence",
        "_cnLevel", "_playPending", "_writer", "_writerAddress", "_sendObservers",
        "__dict__", "__weakref__",
    )

    def __init__(self, pacer: IPacer, source: Any = None, sink: Any = None, gate: Any = None,
                 observer: Optional[IRtpSessionObserver] = None,
                 clock: Optional[IReactorTime] = None, random: Any = None,
                 cname: Optional[str] = None, maxLatches: Optional[int] = 1,
                 keepAliveComfortNoise: bool = False, jitterDelay: float = 0.06,
                 jitterMaxPackets: int = 50, rtcpBandwidth: Optional[float] = None,
                 rtcpMinimumInterval: float = RTCP_MIN_TIME,
                 wallClock: Optional[Callable[[], float]] = None,
                 maxConcealFrames: int = 5) -> None:
        """
        @param pacer: the shared pacer (its clock is the default C{clock}).
        @param random: the randomness for SSRC, initial sequence number and
            timestamp, CNAME, RTCP interval and comfort noise: an object with
            C{getrandbits} and C{random} (C{random.Random(seed)} in tests);
            default C{secrets.SystemRandom()}.
        @param rtcpBandwidth: RTCP octets per second; default 5% of the
            session bandwidth (RTP payload plus IP/UDP/RTP headers).
        @param rtcpMinimumInterval: RFC 3550's minimum interval (5 s).
        @param wallClock: returns Unix time for RTCP NTP timestamps; default
            C{clock.seconds()} plus the offset of C{time.time()} measured
            once, so NTP times move with the injected clock.
        @param maxConcealFrames: the most silence frames written for one
            gap of lost packets.
        """
        self.pacer = pacer
        self.clock = clock if clock is not None else pacer.clock
        rng = random if random is not None else secrets.SystemRandom()
        self._random = rng
        self.source = source
        self.sink = sink
        self.gate = gate
        self.observer = observer if observer is not None else AllowLatching()
        self.ssrc = rng.getrandbits(32)
        self.initialSequenceNumber = self._sequence = rng.getrandbits(16)
        self.initialTimestamp = rng.getrandbits(32)
        self.cname = cname if cname is not None else _defaultCname(rng)
        if len(self.cname.encode("utf-8")) > 255:
            raise ValueError("an SDES CNAME is at most 255 octets")
        self.maxLatches = maxLatches
        self.keepAliveComfortNoise = keepAliveComfortNoise
        self.rtcpBandwidth = rtcpBandwidth
        self.rtcpMinimumInterval = rtcpMinimumInterval
        self.maxConcealFrames = maxConcealFrames
        if wallClock is None:
            offset = time.time() - self.clock.seconds()
            wallClock = lambda: self.clock.seconds() + offset  # noqa: E731
        self._wallClock = wallClock

        self.rtpProtocol = RtpProtocol(self)
        self.rtcpProtocol = RtcpProtocol(self)
        self.ports: Optional[PortPair] = None
        self._allocator: Optional[IPortAllocator] = None

        self.media: Any = None
        self.codec: Optional[Codec] = None
        self.payloadType: Optional[int] = None
        self.ptime = 20
        self.samplesPerFrame = 160
        self._cnPayloadType: Optional[int] = None
        self._tePayloadType: Optional[int] = None
        self.running = False
        self._stopped = False

        self.negotiatedAddress: Optional[Address] = None
        self.negotiatedRtcpAddress: Optional[Address] = None
        self.latchedAddress: Optional[Address] = None
        self._rtcpLatchedAddress: Optional[Address] = None
        self._latchesLeft = maxLatches
        self._refused: "OrderedDict[Address, None]" = OrderedDict()

        self.senderStats = SenderStatistics()
        self.receiverStats: Optional[ReceiverStatistics] = None
        self.jitterBuffer = JitterBuffer(delay=jitterDelay, maxPackets=jitterMaxPackets)
        self.counters = SessionCounters()
        self._pendingCn: "OrderedDict[int, int]" = OrderedDict()
        self._cnLevel: Optional[int] = None
        # Whether the jitter buffer may hold something to play (set on every
        # push, cleared when a play-out leaves it empty): spares an idle tick
        # a look into the buffer.
        self._playPending = False
        self._cnGenerator = ComfortNoiseGenerator(seed=rng.getrandbits(64))
        self._receivedSinceReport = False

        # Cached by configure() for the per-tick path (media is immutable).
        self._mediaSends = False
        self._mediaReceives = False
        self._remoteKnown = False
        self._encode: Optional[Callable[[bytes], bytes]] = None
        self._clockRate = 8000
        # The writer for the RTP transport and the destination RTP last
        # went to (None: choose again).
        self._writerAddress: Optional[Address] = None
        self._writer: Optional[Callable[[bytes, Address], Any]] = None

        self._ticking = False
        self._anchor: Optional[float] = None
        self._lastOffset = -1
        self._lastAudioOffset: Optional[int] = None
        self.lastSendTime: Optional[float] = None
        self._dataSentNoted: Optional[float] = None
        self.lastRtcpSendTime: Optional[float] = None
        self.roundTripTime: Optional[float] = None
        self.remoteReport: Optional[ReportBlock] = None
        # Tuples, replaced on change: an empty one is the shared empty tuple
        # (nothing per session for the send path to look at), and a
        # notification iterates a snapshot without copying it.
        self._sendObservers: Tuple[SendObserver, ...] = ()
        self._rtcpSendObservers: Tuple[SendObserver, ...] = ()
        self._rtcpSchedule: Optional[RtcpSchedule] = None
        self._rtcpCall: Optional[IDelayedCall] = None
        self._reportTimes: Deque[float] = deque(maxlen=2)
        self._logLimiter = _LogLimiter(self.clock)

    # -- sockets ------------------------------------------------------------

    def listen(self, allocator: IPortAllocator, interface: Optional[str] = None,
               rtcpMux: bool = False) -> PortPair:
        """
        Bind the session's sockets with C{allocator}: the RTP port and,
        unless C{rtcpMux} (known before the offer, e.g. WebRTC-style
        peers), the RTCP port after it. Without C{rtcpMux} both ports stay
        bound until L{stop} even if rtcp-mux is negotiated later (RTCP then
        goes through the RTP port; RTCP still arriving on the RTCP port is
        still accepted).

        @return: the L{PortPair}; C{ports.rtpPort} goes into the SDP.
        @raise lmevoip.rtp.ports.PortsExhausted: no pair could be bound.
        """
        if self.ports is not None:
            raise RuntimeError("the session already has its ports")
        pair = allocator.allocate(lambda: RtpProtocol(self),
                                  None if rtcpMux else (lambda: RtcpProtocol(self)), interface)
        self.rtpProtocol = pair.rtpProtocol
        self._rtpTransportChanged()
        if pair.rtcpProtocol is not None:
            self.rtcpProtocol = pair.rtcpProtocol
        self.ports = pair
        self._allocator = allocator
        return pair

    # -- configuration ------------------------------------------------------

    def configure(self, media: Any) -> None:
        """
        Apply the outcome of an offer/answer: codec, payload types, packet
        time, remote addresses, rtcp-mux and direction. Call it again for
        every new answer (re-INVITE, hold, resume): a changed remote address
        clears the latch; the direction starts or stops sending and
        receiving at once; the RTP timestamp keeps counting from the same
        anchor, so resuming jumps it by the time spent on hold.

        @param media: a L{NegotiatedMedia <lmevoip.sip.sdp.NegotiatedMedia>}.
        @raise UnsupportedMedia: for a codec this package does not have, or
            a clock rate or packet time the codec cannot use.
        """
        try:
            codec = codecByName(media.codec)
        except KeyError as error:
            raise UnsupportedMedia(f"codec {media.codec!r} is not supported") from error
        if media.clockRate != codec.clockRate:
            raise UnsupportedMedia(
                f"{media.codec} at {media.clockRate} Hz is not supported (only "
                f"{codec.clockRate} Hz)")
        try:
            samplesPerFrame = codec.samplesPerFrame(media.ptime)
        except ValueError as error:
            raise UnsupportedMedia(str(error)) from error
        if not 0 <= media.payloadType <= 127:
            raise UnsupportedMedia(f"payload type {media.payloadType!r} is not 0..127")
        retick = self._ticking and media.ptime != self.ptime
        if codec is not self.codec or media.payloadType != self.payloadType:
            self._resetReceiver()   # buffered payloads are of the old codec
        self.media = media
        self.codec = codec
        self.payloadType = media.payloadType
        self.ptime = media.ptime
        self.samplesPerFrame = samplesPerFrame
        self._mediaSends = media.sending and not media.remoteUnspecified
        self._mediaReceives = media.receiving
        self._remoteKnown = not media.remoteUnspecified
        self._encode = codec.encode
        self._clockRate = codec.clockRate
        self.senderStats.clockRate = codec.clockRate
        self._cnPayloadType = media.comfortNoisePayloadType
        self._tePayloadType = media.telephoneEventPayloadType
        address = (_normalizeHost(media.remoteAddress), media.remotePort)
        if address != self.negotiatedAddress:
            if self.latchedAddress is not None:
                self.log.info("RTP session {ssrc:08x}: new remote address {address}, "
                              "latch to {latched} cleared", ssrc=self.ssrc, address=address,
                              latched=self.latchedAddress)
            self.negotiatedAddress = address
            self.latchedAddress = None
            self._rtcpLatchedAddress = None
            self._latchesLeft = self.maxLatches
            self._refused.clear()
        self.negotiatedRtcpAddress = (_normalizeHost(media.remoteRtcpAddress),
                                      media.remoteRtcpPort)
        if not media.receiving:
            self._resetReceiver()
        self._updateTicking(retick)
        self._updateRtcpTimer()

    @property
    def sending(self) -> bool:
        """
        Whether RTP is sent: started, and the direction sends to a real
        address.
        """
        media = self.media
        return (self.running and media is not None and media.sending
                and not media.remoteUnspecified)

    @property
    def receiving(self) -> bool:
        """
        Whether RTP from the peer is accepted (started, direction receives).
        """
        return self.running and self.media is not None and self.media.receiving

    @property
    def rtcpMux(self) -> bool:
        """
        Whether RTCP is multiplexed on the RTP port (RFC 5761).
        """
        return self.media is not None and self.media.rtcpMux

    @property
    def remoteRtpAddress(self) -> Optional[Address]:
        """
        Where RTP goes: the latched address, else the negotiated one; None
        before L{configure} or when the peer's address is unspecified.
        """
        if self.media is None or self.media.remoteUnspecified:
            return None
        return self.latchedAddress or self.negotiatedAddress

    @property
    def remoteRtcpAddress(self) -> Optional[Address]:
        """
        Where RTCP goes: the RTP address with rtcp-mux; else the address
        RTCP came from after a latch, the latched host at port + 1, or the
        negotiated RTCP address.
        """
        if self.media is None or self.media.remoteUnspecified:
            return None
        if self.media.rtcpMux:
            return self.remoteRtpAddress
        if self._rtcpLatchedAddress is not None:
            return self._rtcpLatchedAddress
        if self.latchedAddress is not None:
            host, port = self.latchedAddress
            return (host, port + 1)
        return self.negotiatedRtcpAddress

    @property
    def nextSequenceNumber(self) -> int:
        """
        The sequence number the next RTP packet will carry.
        """
        return self._sequence

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        """
        Start: from the next pacer tick, send and receive as the configured
        direction allows; start the RTCP timer.
        """
        if self._stopped:
            raise RuntimeError("a stopped RtpSession cannot be restarted")
        if self.running:
            return
        self.running = True
        self._updateTicking()
        self._updateRtcpTimer()

    def stop(self, reason: Optional[str] = None) -> Deferred:
        """
        End the session: send an RTCP BYE (with an SR/RR and SDES, when we
        sent any RTP or RTCP, RFC 3550 section 6.3.7), stop ticking and the
        RTCP timer, and release the ports. Idempotent.

        @param reason: the BYE's reason text, or None.
        @return: a Deferred that fires when the sockets are closed.
        """
        if self._stopped:
            return succeed(None)
        if self.running and (self.lastSendTime is not None or self.lastRtcpSendTime is not None):
            self.sendRtcpReport(bye=True, reason=reason)
        self.running = False
        self._stopped = True
        self._updateTicking()
        self._updateRtcpTimer()
        self._resetReceiver()
        if self.ports is not None and self._allocator is not None:
            return self._allocator.release(self.ports)
        return succeed(None)

    def _updateTicking(self, retick: bool = False) -> None:
        want = self.sending or self.receiving
        if self._ticking and (retick or not want):
            self.pacer.remove(self._tick)
            self._ticking = False
        if want and not self._ticking:
            first = self.pacer.add(self._tick, self.ptime, anchor=self._anchor)
            if self._anchor is None:
                self._anchor = first
            self._ticking = True

    def _resetReceiver(self) -> None:
        self.jitterBuffer.reset()
        self._playPending = False
        self._pendingCn.clear()
        self._cnLevel = None

    # -- observers ----------------------------------------------------------

    def addSendObserver(self, observer: SendObserver) -> None:
        """
        Call C{observer(addr, nbytes)} after every RTP packet sent (audio
        and keep-alive frames), with the destination and the datagram size.
        What it raises is logged, never raised into the sender.
        """
        self._sendObservers += (observer,)

    def removeSendObserver(self, observer: SendObserver) -> None:
        """
        Stop calling C{observer} (ValueError if it was not added).
        """
        self._sendObservers = _without(self._sendObservers, observer)

    def addRtcpSendObserver(self, observer: SendObserver) -> None:
        """
        Call C{observer(addr, nbytes)} after every RTCP compound sent. With
        rtcp-mux (L{rtcpMux}) these leave the RTP socket for the RTP address
        and so refresh the same NAT binding as RTP; without it they do not.
        """
        self._rtcpSendObservers += (observer,)

    def removeRtcpSendObserver(self, observer: SendObserver) -> None:
        """
        Stop calling C{observer} (ValueError if it was not added).
        """
        self._rtcpSendObservers = _without(self._rtcpSendObservers, observer)

    def _notify(self, observers: Tuple[SendObserver, ...], addr: Address, size: int) -> None:
        for observer in observers:
            try:
                observer(addr, size)
            except Exception:
                self._fault("observer", "send observer {observer!r} raised", observer=observer)

    def _rtpTransportChanged(self) -> None:
        """
        The RTP protocol got another transport (or lost it): choose the
        writer again at the next packet.
        """
        self._writer = None

    def _fault(self, key: str, format: str, **kwargs: Any) -> None:
        """
        Count and log (rate-limited) an exception from application code.
        """
        self.counters.sourceErrors += 1
        suppressed = self._logLimiter.allow(key)
        if suppressed is not None:
            self.log.failure("RTP session {ssrc:08x}: " + format + " ({suppressed} suppressed)",
                             ssrc=self.ssrc, suppressed=suppressed, **kwargs)

    # -- sending ------------------------------------------------------------

    def _tick(self, tickTime: float) -> None:
        """
        One pacer tick: send this packet time's frame, then play out what
        is due.

        This is the media engine's hot path (50,000 calls a second for
        1,000 sessions), so it reads plain attributes that L{configure}
        caches (C{_mediaSends}, C{_mediaReceives}, C{_encode},
        C{_clockRate}) rather than the L{sending} and L{receiving}
        properties, computes the timestamp offset in line (as L{_offsetAt}
        does), and skips the play-out when there is nothing to play (an
        empty jitter buffer, C{_playPending} false, and no comfort noise).

        Sending, for the tick scheduled at C{tickTime}: read a frame from
        the source (C{None}: no packet), pass it through the noise gate
        (closed: no packet), encode it and send it with the timestamp of
        C{tickTime} and the marker bit when it does not follow the last
        audio frame.
        """
        if not self.running:
            return
        if self._mediaSends:
            pcm = None
            source = self.source
            if source is not None:
                try:
                    pcm = source.readFrame(self.samplesPerFrame)
                except Exception:
                    self._fault("source", "audio source {source!r} raised", source=source)
            if pcm is None:
                self.counters.framesNotProduced += 1
            elif self.gate is None or self._gatePasses(pcm):
                payload = self._encode(pcm)
                if self._anchor is None:
                    self._anchor = tickTime
                offset = round((tickTime - self._anchor) * self._clockRate)
                if offset <= self._lastOffset:
                    offset = self._lastOffset + 1
                last = self._lastAudioOffset
                self._sendRtp(self.payloadType, payload, offset,
                              last is None or offset - last != self.samplesPerFrame)
                self._lastAudioOffset = offset
        if self._mediaReceives and (self._playPending or self._cnLevel is not None):
            self._playout(self.clock.seconds())

    def _gatePasses(self, pcm: bytes) -> bool:
        """
        Whether the noise gate lets C{pcm} through (counted when not; a
        gate that raises is counted as a fault and lets nothing through).
        """
        try:
            passed = self.gate.process(pcm, self.ptime)
        except Exception:
            self._fault("gate", "noise gate raised")
            passed = False
        if not passed:
            self.counters.framesSuppressed += 1
        return passed

    def _offsetAt(self, when: float) -> int:
        """
        The RTP timestamp offset (from L{initialTimestamp}) of clock time
        C{when}, never below the last one sent plus one.
        """
        if self._anchor is None:
            self._anchor = when
        offset = round((when - self._anchor) * self._clockRate)
        if offset <= self._lastOffset:
            offset = self._lastOffset + 1
        return offset

    def sendKeepAliveFrame(self) -> bool:
        """
        Send one RTP keep-alive now (RFC 6263 section 4.6: a packet of the
        negotiated media): C{codec.silenceFrame(ptime)} with the negotiated
        payload type, or, when C{keepAliveComfortNoise} is set and CN was
        negotiated, a CN packet at the silence level (127). Its sequence
        number is the next one, its timestamp comes from the clock like
        every packet's, and it has the marker bit (a one-packet talkspurt;
        the audio after it has the marker bit again). It is sent whatever
        the direction (a keep-alive must also hold the NAT binding of a
        call on hold), but not before L{configure}, after L{stop}, or when
        the peer's address is unspecified. It counts as RTP sent: the send
        observers see it and L{lastSendTime} moves.

        @return: whether a packet was sent.
        """
        if not self.running or self.remoteRtpAddress is None:
            return False
        if self.keepAliveComfortNoise and self._cnPayloadType is not None:
            payloadType = self._cnPayloadType
            payload = ComfortNoise(SILENCE_LEVEL).serialize()
        else:
            payloadType = self.payloadType
            payload = self.codec.silenceFrame(self.ptime)
        sent = self._sendRtp(payloadType, payload, self._offsetAt(self.clock.seconds()), True)
        self._lastAudioOffset = None
        if sent:
            self.counters.keepAlivesSent += 1
        return sent

    def _sendRtp(self, payloadType: int, payload: bytes, offset: int, marker: bool) -> bool:
        """
        Send one RTP packet to L{remoteRtpAddress}: the header packed with
        one precompiled C{struct} (no L{RtpPacket} object per packet), the
        datagram written with the writer L{_datagramWriter} chose for this
        transport and destination (chosen again when the destination
        changes, or when L{RtpProtocol} says its transport did).
        The sequence number is used up even when the write fails.

        @return: whether the packet was written.
        """
        addr = (self.latchedAddress or self.negotiatedAddress) if self._remoteKnown else None
        if addr is None:
            return False
        writer = self._writer
        if writer is None or addr is not self._writerAddress:
            transport = self.rtpProtocol.transport
            if transport is None:
                return False
            writer = self._writer = _datagramWriter(transport, addr)
            self._writerAddress = addr
        sequence = self._sequence
        timestamp = (self.initialTimestamp + offset) & 0xFFFFFFFF
        data = _RTP_HEADER.pack(_RTP_VERSION_OCTET, 0x80 | payloadType if marker else payloadType,
                                sequence, timestamp, self.ssrc) + payload
        self._sequence = (sequence + 1) & 0xFFFF
        self._lastOffset = offset
        try:
            writer(data, addr)
        except Exception:
            self._sendFailed("RTP", addr)
            return False
        now = self.clock.seconds()
        self.senderStats.packetSent(len(payload), timestamp, now)
        self.lastSendTime = now     # the RTCP schedule learns it lazily (_noteDataSent)
        if self._sendObservers:
            self._notify(self._sendObservers, addr, len(data))
        return True

    def _send(self, transport: Any, data: bytes, addr: Address, what: str) -> bool:
        """
        Write one datagram with the transport's C{write}; a write that
        raises (ENOBUFS, EHOSTUNREACH...) is counted and logged
        (rate-limited), never raised.
        """
        try:
            transport.write(data, addr)
        except Exception:
            self._sendFailed(what, addr)
            return False
        return True

    def _sendFailed(self, what: str, addr: Address) -> None:
        """
        Count and log (rate-limited) the write that just raised.
        """
        self.counters.sendErrors += 1
        suppressed = self._logLimiter.allow(what)
        if suppressed is not None:
            self.log.failure("RTP session {ssrc:08x}: sending {what} to {addr} failed "
                             "({suppressed} suppressed)", ssrc=self.ssrc, what=what,
                             addr=addr, suppressed=suppressed)

    # -- receiving ----------------------------------------------------------

    def rtpReceived(self, data: bytes, addr: Any) -> None:
        """
        Handle one datagram that arrived on the RTP port.

        With rtcp-mux, RTCP is told apart by L{isRtcp} (RFC 5761 section
        4). Without it, a datagram whose second octet is 200 or 201 (an
        SR or RR first, as every compound starts; RTP payload types 72-73
        with the marker, which RFC 3551 reserves for this reason) is taken
        as RTCP too: a peer that offered rtcp-mux may send it there before
        the answer, and parsing it as RTP would look like an SSRC change.
        """
        if len(data) > 1 and (data[1] in (200, 201)
                              or (self.media is not None and self.media.rtcpMux
                                  and isRtcp(data))):
            self.rtcpReceived(data, addr)
            return
        counters = self.counters
        try:
            packet = RtpPacket.parse(data)
        except RtpParseError as error:
            counters.packetsMalformed += 1
            self._logDrop("malformed", "malformed RTP from {addr}: {error}", addr, error)
            return
        if self.media is None or not self.running:
            counters.packetsIgnored += 1
            return
        addr = (addr[0], addr[1])
        if not self._fromPeer(packet, addr):
            counters.packetsFromUnknownSource += 1
            self._logDrop("unknown", "RTP from unknown source {addr} dropped", addr)
            return
        if not self.media.receiving:
            counters.packetsIgnored += 1
            return
        counters.packetsReceived += 1
        now = self.clock.seconds()
        stats = self.receiverStats
        if stats is None or stats.ssrc != packet.ssrc:
            if stats is not None:
                counters.remoteSsrcChanges += 1
            stats = self.receiverStats = ReceiverStatistics(packet.ssrc, self.codec.clockRate)
            self._resetReceiver()
            if self._rtcpSchedule is not None:
                self._noteDataSent()
                self._rtcpSchedule.membersChanged(2, int(self._rtcpSchedule.weSent) + 1, now)
        resyncs = stats.resyncs
        deliver = stats.update(packet.sequenceNumber, packet.timestamp, now, len(packet.payload))
        self._receivedSinceReport = True
        if stats.resyncs != resyncs:
            self._resetReceiver()
        if not deliver:
            return
        payloadType = packet.payloadType
        if payloadType == self.payloadType:
            self.jitterBuffer.push(stats.lastExtendedSequence, packet.timestamp, packet.payload,
                                   now)
            self._playPending = True
        elif payloadType == self._tePayloadType:
            counters.telephoneEventPackets += 1
        elif payloadType == self._receivedCnType():
            counters.comfortNoisePackets += 1
            try:
                level = ComfortNoise.parse(packet.payload).level
            except RtpParseError as error:
                counters.packetsMalformed += 1
                self._logDrop("malformed", "malformed CN from {addr}: {error}", addr, error)
                return
            sequence = stats.lastExtendedSequence
            self._playPending = True
            if self.jitterBuffer.push(sequence, packet.timestamp, b"", now):
                self._pendingCn[sequence] = level
                while len(self._pendingCn) > _MAX_PENDING_CN:
                    self._pendingCn.popitem(last=False)
        else:
            counters.packetsUnknownPayloadType += 1

    def _receivedCnType(self) -> int:
        """
        The payload type taken as comfort noise: the negotiated one, else
        the static 13 (some peers send it without offering it).
        """
        return CN_PAYLOAD_TYPE if self._cnPayloadType is None else self._cnPayloadType

    def _logDrop(self, key: str, format: str, addr: Address, error: Any = None) -> None:
        suppressed = self._logLimiter.allow(key)
        if suppressed is not None:
            self.log.info("RTP session {ssrc:08x}: " + format + " ({suppressed} suppressed)",
                          ssrc=self.ssrc, addr=addr, error=error, suppressed=suppressed)

    def _fromPeer(self, packet: RtpPacket, addr: Address) -> bool:
        """
        The source check: whether C{packet} from C{addr} is the peer's,
        latching to C{addr} when it qualifies and the observer agrees.
        """
        if addr == self.negotiatedAddress or addr == self.latchedAddress:
            return True
        if self._latchesLeft is not None and self._latchesLeft <= 0:
            return False
        if addr in self._refused:
            return False
        if packet.payloadType not in (self.payloadType, self._tePayloadType,
                                      self._receivedCnType()):
            return False
        if self.receiverStats is not None and packet.ssrc != self.receiverStats.ssrc:
            return False
        try:
            allowed = bool(self.observer.latchRequested(self, addr))
        except Exception:
            self._fault("observer", "latch observer {observer!r} raised",
                        observer=self.observer)
            allowed = False
        if not allowed:
            self.counters.latchRefusals += 1
            self._refused[addr] = None
            while len(self._refused) > _MAX_REFUSED:
                self._refused.popitem(last=False)
            self.log.info("RTP session {ssrc:08x}: latch to {addr} refused",
                          ssrc=self.ssrc, addr=addr)
            return False
        self.log.info("RTP session {ssrc:08x}: latched from {old} to {addr}",
                      ssrc=self.ssrc, old=self.remoteRtpAddress, addr=addr)
        self.latchedAddress = addr
        self._rtcpLatchedAddress = None
        self.counters.latches += 1
        if self._latchesLeft is not None:
            self._latchesLeft -= 1
        return True

    def _playout(self, now: float) -> None:
        """
        Write to the sink what the jitter buffer has due at C{now}.
        """
        sink = self.sink
        items = self.jitterBuffer.pop(now)
        self._playPending = len(self.jitterBuffer) > 0
        played = False
        for item in items:
            if isinstance(item, Gap):
                self._cnLevel = None
                count = min(item.count, self.maxConcealFrames)
                self.counters.framesConcealed += count
                silence = bytes(2 * self.samplesPerFrame)
                for _ in range(count):
                    self._play(sink, silence)
                continue
            played = True
            level = self._pendingCn.pop(item.sequence, None)
            if level is not None:
                self._cnLevel = level
                self._writeComfortNoise(sink)
            else:
                self._cnLevel = None
                self.counters.framesPlayed += 1
                self._play(sink, self.codec.decode(item.payload))
        if not played and self._cnLevel is not None:
            self._writeComfortNoise(sink)

    def _writeComfortNoise(self, sink: Any) -> None:
        self.counters.comfortNoiseFrames += 1
        self._play(sink, self._cnGenerator.generate(self._cnLevel, self.samplesPerFrame))

    def _play(self, sink: Any, pcm: bytes) -> None:
        if sink is None:
            return
        try:
            sink.writeFrame(pcm)
        except Exception:
            self._fault("sink", "audio sink {sink!r} raised", sink=sink)

    # -- RTCP ---------------------------------------------------------------

    def _updateRtcpTimer(self) -> None:
        want = self.running and self.media is not None and self.media.sendingRtcp
        if not want:
            if self._rtcpCall is not None and self._rtcpCall.active():
                self._rtcpCall.cancel()
            self._rtcpCall = None
            return
        if self._rtcpCall is not None:
            return
        now = self.clock.seconds()
        if self._rtcpSchedule is None:
            bandwidth = self.rtcpBandwidth
            if bandwidth is None:
                packetsPerSecond = 1000.0 / self.ptime
                payload = self.samplesPerFrame * self.codec.channels
                bandwidth = 0.05 * (payload + _RTP_OVERHEAD) * packetsPerSecond
            firstSize = UDP_IP_OVERHEAD + len(self._buildCompound(now, peek=True))
            self._rtcpSchedule = RtcpSchedule(bandwidth, firstSize, random=self._random,
                                              minimumInterval=self.rtcpMinimumInterval)
            self._noteDataSent()
            if self.receiverStats is not None:
                self._rtcpSchedule.membersChanged(2, int(self._rtcpSchedule.weSent) + 1, now)
            delay = self._rtcpSchedule.start(now)
        else:
            delay = max(0.0, self._rtcpSchedule.tn - now)
        self._rtcpCall = self.clock.callLater(delay, self._rtcpTimerFired)

    def _rtcpTimerFired(self) -> None:
        self._rtcpCall = None
        schedule = self._rtcpSchedule
        now = self.clock.seconds()
        try:
            self._noteDataSent()
            delay = schedule.timerExpired(now)
            if delay is None:
                data = self.sendRtcpReport()
                size = len(data) if data else schedule.avgRtcpSize - UDP_IP_OVERHEAD
                self._noteDataSent()
                delay = schedule.packetSent(size + UDP_IP_OVERHEAD, now)
        except Exception:
            self._fault("rtcp", "RTCP timer failed")
            delay = self.rtcpMinimumInterval
        if self.running:
            self._rtcpCall = self.clock.callLater(delay, self._rtcpTimerFired)

    def _noteDataSent(self) -> None:
        """
        Tell the RTCP schedule when RTP was last sent, if it was since the
        schedule was last told (RFC 3550 6.3.8: whether we are a sender).

        The schedule only uses this when it is consulted (its timer, a
        member change), so it is told then, just before, rather than on
        every packet: one call per report instead of 250 (the state is the
        same as after telling it every packet, since only the last send
        time counts).
        """
        sent = self.lastSendTime
        if sent is not None and sent != self._dataSentNoted and self._rtcpSchedule is not None:
            self._rtcpSchedule.dataSent(sent)
            self._dataSentNoted = sent

    def _ntpNow(self) -> int:
        seconds, fraction = ntpFromUnix(self._wallClock())
        return (seconds << 32) | fraction

    def _buildCompound(self, now: float, bye: bool = False, reason: Optional[str] = None,
                       peek: bool = False) -> bytes:
        """
        Our next compound: SR (if we sent RTP in the last two report
        intervals, RFC 3550 section 6.4) or RR, with a report block on the
        peer when it sent RTP since our last report; SDES CNAME; BYE.

        @param peek: build it without closing the report interval (to
            measure its size).
        """
        blocks = []
        stats = self.receiverStats
        if stats is not None and self._receivedSinceReport and not peek:
            values = stats.makeReportBlock(now)
            blocks.append(ReportBlock(values.ssrc, values.fractionLost, values.cumulativeLost,
                                      values.extendedHighestSequence, values.jitter,
                                      values.lastSr, values.delaySinceLastSr))
            self._receivedSinceReport = False
        since = self._reportTimes[0] if len(self._reportTimes) == 2 else None
        lastSend = self.senderStats.lastSendTime
        weSent = lastSend is not None and (since is None or lastSend >= since)
        if weSent:
            sent = self.senderStats
            timestamp = (self.initialTimestamp
                         + round((now - self._anchor) * self.codec.clockRate)) & 0xFFFFFFFF
            report = SenderReport(self.ssrc, self._ntpNow(), timestamp,
                                  sent.packetsSent & 0xFFFFFFFF, sent.octetsSent & 0xFFFFFFFF,
                                  blocks)
        else:
            report = ReceiverReport(self.ssrc, blocks)
        packets = [report, SourceDescription.fromCname(self.ssrc, self.cname)]
        if bye:
            packets.append(Bye([self.ssrc], reason))
        return serializeCompound(packets)

    def sendRtcpReport(self, bye: bool = False, reason: Optional[str] = None) -> Optional[bytes]:
        """
        Build and send one compound RTCP packet now (the RTCP timer calls
        this; tests and applications may too).

        @param bye: append a BYE for our SSRC.
        @param reason: the BYE's reason.
        @return: the datagram sent, or None when it could not be sent (no
            destination or socket, or the write failed).
        """
        if self.media is None or not self.media.sendingRtcp:
            return None
        if self.media.rtcpMux:
            transport = self.rtpProtocol.transport
        else:
            transport = self.rtcpProtocol.transport
        addr = self.remoteRtcpAddress
        if transport is None or addr is None:
            return None
        now = self.clock.seconds()
        data = self._buildCompound(now, bye, reason)
        self._reportTimes.append(now)
        if not self._send(transport, data, addr, "RTCP"):
            return None
        self.counters.rtcpSent += 1
        self.lastRtcpSendTime = now
        if self._rtcpSendObservers:
            self._notify(self._rtcpSendObservers, addr, len(data))
        return data

    def rtcpReceived(self, data: bytes, addr: Any) -> None:
        """
        Handle one RTCP datagram (from the RTCP port, or demultiplexed from
        the RTP port): source check, parse, then note SRs (for our LSR/DLSR),
        report blocks about us (round-trip time) and BYEs.
        """
        counters = self.counters
        if self.media is None or not self.running:
            return
        addr = (addr[0], addr[1])
        if not self._rtcpFromPeer(addr):
            counters.rtcpFromUnknownSource += 1
            self._logDrop("rtcpUnknown", "RTCP from unknown source {addr} dropped", addr)
            return
        try:
            packets = parseCompound(data)
        except RtcpParseError as error:
            counters.rtcpMalformed += 1
            self._logDrop("rtcpMalformed", "malformed RTCP from {addr}: {error}", addr, error)
            return
        counters.rtcpReceived += 1
        now = self.clock.seconds()
        if self._rtcpSchedule is not None:
            self._rtcpSchedule.packetReceived(len(data) + UDP_IP_OVERHEAD)
        stats = self.receiverStats
        for packet in packets:
            if isinstance(packet, SenderReport):
                if stats is not None and packet.ssrc == stats.ssrc:
                    stats.senderReportReceived(packet.ntpTimestamp, now)
                self._reportsReceived(packet.reports)
            elif isinstance(packet, ReceiverReport):
                self._reportsReceived(packet.reports)
            elif isinstance(packet, Bye):
                if stats is not None and stats.ssrc in packet.ssrcs:
                    counters.byeReceived += 1
                    self.log.info("RTP session {ssrc:08x}: peer {peer:08x} sent BYE ({reason})",
                                  ssrc=self.ssrc, peer=stats.ssrc, reason=packet.reason)

    def _rtcpFromPeer(self, addr: Address) -> bool:
        """
        RTCP is accepted from the host of the negotiated RTP or RTCP address
        or of the latched address, on any port (NATs change ports; the
        RTCP port of a peer behind NAT is rarely RTP + 1). After an RTP
        latch, RTCP from the latched host also fixes where our RTCP goes.
        """
        host = addr[0]
        latched = self.latchedAddress
        if latched is not None and host == latched[0]:
            if not self.rtcpMux and addr != self.remoteRtcpAddress:
                self._rtcpLatchedAddress = addr
            return True
        return ((self.negotiatedAddress is not None and host == self.negotiatedAddress[0])
                or (self.negotiatedRtcpAddress is not None
                    and host == self.negotiatedRtcpAddress[0]))

    def _reportsReceived(self, blocks: List[ReportBlock]) -> None:
        for block in blocks:
            if block.ssrc != self.ssrc:
                continue
            self.remoteReport = block
            if block.lastSr:
                arrival = middle32(self._ntpNow())
                value = (arrival - block.lastSr - block.delaySinceLastSr) & 0xFFFFFFFF
                if value >= 0x80000000:
                    value = 0  # a few units below zero: rounding of DLSR
                rtt = secondsFromCompact(value)
                if rtt <= _MAX_RTT:
                    self.roundTripTime = rtt

    # -- statistics ---------------------------------------------------------

    def statistics(self) -> Dict[str, Any]:
        """
        A plain-dict snapshot: counters, what we sent, what we received
        from the peer (its SSRC, packets, expected, lost, jitter), the
        jitter buffer's drops, round-trip time, addresses.
        """
        stats = self.receiverStats
        jitter = self.jitterBuffer
        received: Optional[Dict[str, Any]] = None
        if stats is not None:
            received = {
                "ssrc": stats.ssrc,
                "packets": stats.packetsReceived,
                "octets": stats.octetsReceived,
                "expected": stats.expected,
                "lost": stats.lost,
                "discarded": stats.packetsDiscarded,
                "jitter": stats.jitterSeconds,
                "valid": stats.valid,
            }
        return {
            "ssrc": self.ssrc,
            "sending": self.sending,
            "receiving": self.receiving,
            "remoteRtpAddress": self.remoteRtpAddress,
            "remoteRtcpAddress": self.remoteRtcpAddress,
            "latchedAddress": self.latchedAddress,
            "counters": self.counters.asDict(),
            "sent": {
                "packets": self.senderStats.packetsSent,
                "octets": self.senderStats.octetsSent,
                "lastSendTime": self.lastSendTime,
                "lastRtcpSendTime": self.lastRtcpSendTime,
            },
            "received": received,
            "jitterBuffer": {
                "held": len(jitter),
                "lateDrops": jitter.lateDrops,
                "duplicateDrops": jitter.duplicateDrops,
                "overflowDrops": jitter.overflowDrops,
                "missing": jitter.missing,
            },
            "roundTripTime": self.roundTripTime,
        }

    def __repr__(self) -> str:
        return (f"<RtpSession ssrc={self.ssrc:08x} remote={self.remoteRtpAddress} "
                f"sending={self.sending} receiving={self.receiving}>")
