"""
RTP reception and sending statistics (RFC 3550), sans-IO.

L{ReceiverStatistics} keeps, for one remote source (SSRC), what RFC 3550
appendix A keeps: sequence-number validation (A.1), the expected and lost
packet counts and the fraction lost per report interval (A.3), and the
interarrival jitter (A.8); plus what it needs to fill an RTCP report block
for that source (LSR/DLSR of section 6.4.1). L{SenderStatistics} counts what
we sent, for the sender info of an SR.

Times are plain floats of seconds on any monotonic clock (for example
C{reactor.seconds()}); nothing here touches a reactor or a socket.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

__all__ = [
    "RTP_SEQ_MOD",
    "MAX_DROPOUT",
    "MAX_MISORDER",
    "MIN_SEQUENTIAL",
    "timestampDifference",
    "ReportBlockValues",
    "SenderInfoValues",
    "ReceiverStatistics",
    "SenderStatistics",
]

#: Sequence numbers are 16 bits.
RTP_SEQ_MOD = 1 << 16

#: A forward jump of fewer packets than this is loss, not a restart (A.1).
MAX_DROPOUT = 3000

#: A backward step of up to this many packets is a reordered or duplicate
#: packet, not a restart (A.1).
MAX_MISORDER = 100

#: Sequential packets needed before a new source is valid (A.1).
MIN_SEQUENTIAL = 2

_TS_MOD = 1 << 32
_LOST_MAX = 0x7FFFFF
_LOST_MIN = -0x800000


def _signed16(value: int) -> int:
    value &= 0xFFFF
    return value - RTP_SEQ_MOD if value >= 0x8000 else value


def timestampDifference(later: int, earlier: int) -> int:
    """
    C{later - earlier} for 32-bit RTP timestamps, modulo 2**32, as a signed
    value in C{[-2**31, 2**31)}: correct across the timestamp wrap.
    """
    value = (later - earlier) & 0xFFFFFFFF
    return value - _TS_MOD if value >= 0x80000000 else value


@dataclasses.dataclass(frozen=True)
class ReportBlockValues:
    """
    The fields of one RTCP reception report block (RFC 3550 section 6.4.1),
    as plain ints ready to encode.

    @ivar ssrc: the source this block reports on.
    @ivar fractionLost: packets lost in the interval since the previous
        report, as a fixed-point fraction with the binary point at the left
        (0..255).
    @ivar cumulativeLost: expected minus received since the start, signed,
        clamped to 24 bits (-0x800000..0x7FFFFF).
    @ivar extendedHighestSequence: cycles * 65536 + highest sequence number.
    @ivar jitter: the interarrival jitter in timestamp units.
    @ivar lastSr: the middle 32 bits of the NTP timestamp of the last SR
        from the source, or 0.
    @ivar delaySinceLastSr: seconds since that SR arrived, in units of
        1/65536 s, or 0 when no SR has arrived.
    """

    ssrc: int
    fractionLost: int
    cumulativeLost: int
    extendedHighestSequence: int
    jitter: int
    lastSr: int
    delaySinceLastSr: int


@dataclasses.dataclass(frozen=True)
class SenderInfoValues:
    """
    The counters of an RTCP SR's sender info (RFC 3550 section 6.4.1); the
    NTP timestamp is the caller's wallclock.

    @ivar rtpTimestamp: the RTP timestamp corresponding to the report time.
    @ivar packetCount: RTP data packets sent, modulo 2**32.
    @ivar octetCount: payload octets sent, modulo 2**32.
    """

    rtpTimestamp: int
    packetCount: int
    octetCount: int


class ReceiverStatistics:
    """
    RFC 3550 reception statistics for one source.

    Feed every RTP packet from the source to L{update}; deliver it only when
    L{update} returns True. Call L{senderReportReceived} for each SR from the
    source, and L{makeReportBlock} each time an RTCP report is built.

    Sequence validation is RFC 3550 appendix A.1: a new source is on
    probation until C{minSequential} packets in sequence have arrived
    (those packets are not delivered, except the last); after that, a jump
    forward of less than C{maxDropout} is loss, a step back of at most
    C{maxMisorder} is a duplicate or reordered packet (delivered and
    counted), and anything else is a "very large jump": dropped, unless the
    next packet follows it, in which case the source is taken to have
    restarted and the statistics start again from it (L{resyncs} counts
    this). One deliberate difference from the C code: the probation test
    C{seq == max_seq + 1} is done modulo 2**16, so a source starting at
    65535 or 0 validates like any other.

    @ivar ssrc: the source's SSRC.
    @ivar clockRate: the RTP clock rate of its payload, in Hz.
    @ivar packetsReceived: packets counted by A.1 (delivered packets,
        duplicates included; reset by a resync).
    @ivar octetsReceived: payload octets of those packets.
    @ivar packetsDiscarded: packets for which L{update} returned False
        (probation and very large jumps).
    @ivar resyncs: how many times the source restarted (the jitter buffer
        should then be reset).
    @ivar lastExtendedSequence: the extended sequence number of the last
        delivered packet (its place among the cycles; a reordered packet
        gets its own, lower, number), or None.
    """

    def __init__(self, ssrc: int, clockRate: int = 8000,
                 minSequential: int = MIN_SEQUENTIAL, maxDropout: int = MAX_DROPOUT,
                 maxMisorder: int = MAX_MISORDER) -> None:
        """
        @param ssrc: the source's SSRC (0..2**32-1).
        @param clockRate: the RTP clock rate in Hz (8000 for G.711).
        @param minSequential: packets in sequence to validate a new source
            (at least 1; 1 delivers the very first packet).
        @param maxDropout: see the class docstring.
        @param maxMisorder: see the class docstring.
        """
        if not 0 <= ssrc < _TS_MOD:
            raise ValueError(f"SSRC {ssrc} is not a 32-bit unsigned value")
        if clockRate <= 0:
            raise ValueError(f"clock rate must be positive, not {clockRate}")
        if minSequential < 1:
            raise ValueError(f"minSequential must be >= 1, not {minSequential}")
        if not 0 < maxDropout < RTP_SEQ_MOD - maxMisorder or maxMisorder < 0:
            raise ValueError(f"maxDropout {maxDropout} / maxMisorder {maxMisorder} "
                             f"do not split the sequence space")
        self.ssrc = ssrc
        self.clockRate = clockRate
        self.minSequential = minSequential
        self.maxDropout = maxDropout
        self.maxMisorder = maxMisorder
        self._started = False
        self._probation = 0
        self._initSeq(0)
        self.packetsDiscarded = 0
        self.resyncs = 0
        self.lastExtendedSequence: Optional[int] = None
        # A.8: float jitter in timestamp units, and the previous packet's
        # arrival time and timestamp (None until a delivered packet).
        self._jitter = 0.0
        self._lastArrival: Optional[float] = None
        self._lastTimestamp = 0
        self._lastSr = 0
        self._lastSrArrival: Optional[float] = None

    # -- A.1 ------------------------------------------------------------------

    def _initSeq(self, seq: int) -> None:
        self._baseSeq = seq
        self._maxSeq = seq
        self._badSeq = RTP_SEQ_MOD + 1
        self._cycles = 0
        self.packetsReceived = 0
        self.octetsReceived = 0
        self._receivedPrior = 0
        self._expectedPrior = 0

    def _updateSeq(self, seq: int) -> bool:
        udelta = (seq - self._maxSeq) & 0xFFFF
        if self._probation:
            if seq == (self._maxSeq + 1) & 0xFFFF:
                self._probation -= 1
                self._maxSeq = seq
                if self._probation == 0:
                    self._initSeq(seq)
                    return True
            else:
                self._probation = self.minSequential - 1
                self._maxSeq = seq
            return False
        if udelta < self.maxDropout:
            if seq < self._maxSeq:
                self._cycles += RTP_SEQ_MOD
            self._maxSeq = seq
        elif udelta <= RTP_SEQ_MOD - self.maxMisorder:
            if seq == self._badSeq:
                self._initSeq(seq)
                self.resyncs += 1
                self._lastArrival = None
            else:
                self._badSeq = (seq + 1) & 0xFFFF
                return False
        # else: a duplicate or reordered packet, delivered and counted.
        return True

    def update(self, seq: int, rtpTimestamp: int, arrivalTime: float,
               payloadSize: int) -> bool:
        """
        Account for one RTP packet from this source.

        @param seq: its 16-bit sequence number.
        @param rtpTimestamp: its 32-bit RTP timestamp.
        @param arrivalTime: when it arrived, in seconds.
        @param payloadSize: its payload length in octets.
        @return: whether the packet should be delivered (False while the
            source is on probation and for a very large jump).
        @raise ValueError: a field out of its range.
        """
        if not 0 <= seq < RTP_SEQ_MOD or not 0 <= rtpTimestamp < _TS_MOD or payloadSize < 0:
            raise ValueError(f"RTP fields out of range: seq={seq} "
                             f"timestamp={rtpTimestamp} payloadSize={payloadSize}")
        if not self._started:
            self._started = True
            self._initSeq(seq)
            self._maxSeq = (seq - 1) & 0xFFFF
            self._probation = self.minSequential
        if not self._updateSeq(seq):
            self.packetsDiscarded += 1
            self.lastExtendedSequence = None
            return False
        self.packetsReceived += 1
        self.octetsReceived += payloadSize
        self.lastExtendedSequence = self._cycles + self._maxSeq + _signed16(seq - self._maxSeq)
        self._updateJitter(rtpTimestamp, arrivalTime)
        return True

    # -- A.8 ------------------------------------------------------------------

    def _updateJitter(self, rtpTimestamp: int, arrivalTime: float) -> None:
        if self._lastArrival is not None:
            # D(i-1, i) = (R_i - R_{i-1}) - (S_i - S_{i-1}), in timestamp
            # units; the arrival difference is taken in seconds first so a
            # large clock value loses no precision, the timestamp difference
            # modulo 2**32.
            d = ((arrivalTime - self._lastArrival) * self.clockRate
                 - timestampDifference(rtpTimestamp, self._lastTimestamp))
            self._jitter += (abs(d) - self._jitter) / 16.0
        self._lastArrival = arrivalTime
        self._lastTimestamp = rtpTimestamp

    @property
    def jitter(self) -> int:
        """
        The interarrival jitter in timestamp units, as reported (truncated).
        """
        return int(self._jitter)

    @property
    def jitterSeconds(self) -> float:
        """
        The interarrival jitter in seconds.
        """
        return self._jitter / self.clockRate

    # -- A.3 ------------------------------------------------------------------

    @property
    def valid(self) -> bool:
        """
        Whether the source has passed probation.
        """
        return self._started and self._probation == 0

    @property
    def extendedHighestSequence(self) -> int:
        """
        The highest sequence number received, extended with the cycle count.
        """
        return self._cycles + self._maxSeq

    @property
    def expected(self) -> int:
        """
        Packets expected since the (re)start: extended highest - base + 1.
        """
        if not self.valid:
            return 0
        return self.extendedHighestSequence - self._baseSeq + 1

    @property
    def lost(self) -> int:
        """
        Cumulative packets lost: expected - received, negative when
        duplicates arrived, clamped to the 24-bit signed range.
        """
        return max(_LOST_MIN, min(_LOST_MAX, self.expected - self.packetsReceived))

    def _fractionLost(self) -> int:
        expected = self.expected
        expectedInterval = expected - self._expectedPrior
        self._expectedPrior = expected
        receivedInterval = self.packetsReceived - self._receivedPrior
        self._receivedPrior = self.packetsReceived
        lostInterval = expectedInterval - receivedInterval
        if expectedInterval <= 0 or lostInterval <= 0:
            return 0
        return min(255, (lostInterval << 8) // expectedInterval)

    # -- LSR / DLSR -------------------------------------------------------------

    def senderReportReceived(self, ntpTimestamp: int, arrivalTime: float) -> None:
        """
        Note an RTCP SR from this source.

        @param ntpTimestamp: the SR's 64-bit NTP timestamp (seconds in the
            high 32 bits, fraction in the low 32).
        @param arrivalTime: when the SR arrived, in seconds.
        """
        if not 0 <= ntpTimestamp < 1 << 64:
            raise ValueError(f"NTP timestamp {ntpTimestamp} is not 64-bit unsigned")
        self._lastSr = (ntpTimestamp >> 16) & 0xFFFFFFFF
        self._lastSrArrival = arrivalTime

    def makeReportBlock(self, now: float) -> ReportBlockValues:
        """
        The report block for this source, closing the current report
        interval (the next fraction lost counts from here).

        @param now: the time the report is sent, in seconds (for DLSR).
        """
        if self._lastSrArrival is None:
            lastSr = delay = 0
        else:
            lastSr = self._lastSr
            delay = max(0, min(0xFFFFFFFF, int((now - self._lastSrArrival) * 65536)))
        return ReportBlockValues(
            ssrc=self.ssrc,
            fractionLost=self._fractionLost(),
            cumulativeLost=self.lost,
            extendedHighestSequence=self.extendedHighestSequence & 0xFFFFFFFF
            if self.valid else 0,
            jitter=min(self.jitter, 0xFFFFFFFF),
            lastSr=lastSr,
            delaySinceLastSr=delay,
        )


class SenderStatistics:
    """
    What we sent on one SSRC, for the sender info of RTCP SRs.

    @ivar clockRate: the RTP clock rate in Hz.
    @ivar packetsSent: RTP data packets sent.
    @ivar octetsSent: payload octets sent (not headers or padding, as
        RFC 3550 section 6.4.1 says).
    @ivar lastTimestamp: the RTP timestamp of the last packet sent, or None.
    @ivar lastSendTime: when it was sent, in seconds, or None.
    """

    def __init__(self, clockRate: int = 8000) -> None:
        if clockRate <= 0:
            raise ValueError(f"clock rate must be positive, not {clockRate}")
        self.clockRate = clockRate
        self.packetsSent = 0
        self.octetsSent = 0
        self.lastTimestamp: Optional[int] = None
        self.lastSendTime: Optional[float] = None

    def packetSent(self, payloadSize: int, rtpTimestamp: int, now: float) -> None:
        """
        Count one RTP data packet sent.

        @param payloadSize: its payload length in octets.
        @param rtpTimestamp: its RTP timestamp.
        @param now: when it was sent, in seconds.
        """
        if payloadSize < 0 or not 0 <= rtpTimestamp < _TS_MOD:
            raise ValueError(f"payloadSize={payloadSize} timestamp={rtpTimestamp} out of range")
        self.packetsSent += 1
        self.octetsSent += payloadSize
        self.lastTimestamp = rtpTimestamp
        self.lastSendTime = now

    def sentSince(self, since: float) -> bool:
        """
        Whether a data packet was sent at or after C{since} (for RTCP's
        C{we_sent}, which covers the last two report intervals).
        """
        return self.lastSendTime is not None and self.lastSendTime >= since

    def rtpTimestampAt(self, now: float) -> int:
        """
        The RTP timestamp that corresponds to C{now}: the last one sent,
        advanced by the time elapsed since at the clock rate (RFC 3550
        section 6.4.1: the SR's timestamp need not match any packet's).

        @raise ValueError: nothing has been sent yet.
        """
        if self.lastTimestamp is None or self.lastSendTime is None:
            raise ValueError("no RTP packet has been sent yet")
        elapsed = round((now - self.lastSendTime) * self.clockRate)
        return (self.lastTimestamp + elapsed) % _TS_MOD

    def senderInfo(self, now: float) -> SenderInfoValues:
        """
        The SR sender-info counters at C{now}.

        @raise ValueError: nothing has been sent yet.
        """
        return SenderInfoValues(
            rtpTimestamp=self.rtpTimestampAt(now),
            packetCount=self.packetsSent % _TS_MOD,
            octetCount=self.octetsSent % _TS_MOD,
        )

    def reset(self) -> None:
        """
        Start counting again (RFC 3550: when the SSRC changes).
        """
        self.packetsSent = 0
        self.octetsSent = 0
        self.lastTimestamp = None
        self.lastSendTime = None
