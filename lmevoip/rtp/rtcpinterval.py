"""
The RTCP transmission interval of RFC 3550 section 6.3, sans-IO.

L{rtcpInterval} is appendix A.7's C{rtcp_interval()}; L{RtcpSchedule} keeps
the state of section 6.3 (members, senders, average RTCP packet size,
C{initial}, C{we_sent}, C{tp}, C{tn}, C{pmembers}) and turns it into timer
delays, with timer reconsideration (6.3.6) and reverse reconsideration
(6.3.4). Randomness comes from an injected C{random.Random}, so tests can
seed it; time is plain floats of seconds passed in by the caller, who owns
the actual timer (a C{reactor.callLater}).

What is left out: BYE reconsideration (6.3.7) and the member/sender
timeouts of 6.3.5 (the caller's member table does those; L{RtcpSchedule}
gives it L{deterministicInterval} to time them out at C{5 * Td}).
"""

from __future__ import annotations

import random as _random
from typing import Optional

__all__ = [
    "RTCP_MIN_TIME",
    "RTCP_SENDER_BW_FRACTION",
    "RTCP_RCVR_BW_FRACTION",
    "COMPENSATION",
    "deterministicInterval",
    "rtcpInterval",
    "RtcpSchedule",
]

#: The minimum interval between reports, in seconds (halved before the
#: first report).
RTCP_MIN_TIME = 5.0

#: The share of the RTCP bandwidth for senders when they are few.
RTCP_SENDER_BW_FRACTION = 0.25

#: The share for receivers.
RTCP_RCVR_BW_FRACTION = 1 - RTCP_SENDER_BW_FRACTION

#: Divides the randomised interval to compensate for timer reconsideration
#: converging below the intended average: e - 3/2, as appendix A.7 writes it.
COMPENSATION = 2.71828 - 1.5


def deterministicInterval(members: int, senders: int, rtcpBandwidth: float, weSent: bool,
                          avgRtcpSize: float, initial: bool,
                          minimumInterval: float = RTCP_MIN_TIME) -> float:
    """
    The deterministic calculated interval Td of RFC 3550 section 6.3.1:
    the interval before randomisation and compensation.

    When senders are at most a quarter of the members, senders share a
    quarter of the RTCP bandwidth and receivers the rest; otherwise everyone
    shares all of it. Td is C{avgRtcpSize * n / bandwidth} for the C{n}
    participants sharing our part, and at least C{minimumInterval}
    (half of it before our first report).

    @param members: participants, ourselves included (at least 1).
    @param senders: participants that sent RTP recently, us included if
        C{weSent}.
    @param rtcpBandwidth: the RTCP bandwidth in octets per second (usually
        5% of the session bandwidth), > 0.
    @param weSent: whether we sent RTP in the last two report intervals.
    @param avgRtcpSize: the average compound RTCP packet size in octets,
        lower-layer (UDP/IP) headers included.
    @param initial: whether we have not yet sent an RTCP packet.
    @param minimumInterval: RTCP_MIN_TIME, or a smaller reduced minimum
        (section 6.2 suggests 360 / session bandwidth in kbit/s).
    @return: Td in seconds.
    """
    if members < 1 or senders < 0 or not rtcpBandwidth > 0 or not avgRtcpSize > 0 \
            or not minimumInterval >= 0:
        raise ValueError(
            f"bad RTCP interval inputs: members={members} senders={senders} "
            f"rtcpBandwidth={rtcpBandwidth} avgRtcpSize={avgRtcpSize} "
            f"minimumInterval={minimumInterval}")
    minimum = minimumInterval / 2 if initial else minimumInterval
    n = members
    bandwidth = rtcpBandwidth
    if senders <= members * RTCP_SENDER_BW_FRACTION:
        if weSent:
            bandwidth *= RTCP_SENDER_BW_FRACTION
            n = senders
        else:
            bandwidth *= RTCP_RCVR_BW_FRACTION
            n -= senders
    return max(avgRtcpSize * n / bandwidth, minimum)


def rtcpInterval(members: int, senders: int, rtcpBandwidth: float, weSent: bool,
                 avgRtcpSize: float, initial: bool, random: _random.Random,
                 minimumInterval: float = RTCP_MIN_TIME) -> float:
    """
    The randomised RTCP transmission interval T of RFC 3550 appendix A.7:
    C{Td * U(0.5, 1.5) / (e - 3/2)}.

    With the default minimum, T lies in C{[5 * 0.5, 5 * 1.5) / 1.21828}
    = [2.052, 6.157) s when Td is the minimum, and in [1.026, 3.078) s
    before the first report.

    @param random: the source of the uniform factor; C{random.random()} is
        drawn exactly once.
    @return: T in seconds.
    @see: L{deterministicInterval} for the other parameters.
    """
    td = deterministicInterval(members, senders, rtcpBandwidth, weSent, avgRtcpSize,
                               initial, minimumInterval)
    return td * (random.random() + 0.5) / COMPENSATION


class RtcpSchedule:
    """
    When to send our next compound RTCP packet (RFC 3550 section 6.3).

    Use: L{start} gives the delay to the first report; when that timer
    fires call L{timerExpired}: C{None} means "send now" (then call
    L{packetSent}, which gives the next delay), a number means "not yet,
    wait this long" (timer reconsideration). Call L{packetReceived} for
    every RTCP packet received, L{dataSent} when we send RTP, and
    L{membersChanged} when the member table changes.

    @ivar rtcpBandwidth: octets per second for RTCP.
    @ivar avgRtcpSize: the running average compound packet size, octets.
    @ivar members: the member count, ourselves included.
    @ivar senders: the sender count.
    @ivar pmembers: the member count when C{tn} was last computed.
    @ivar weSent: whether we count as a sender.
    @ivar initial: True until our first RTCP packet is sent.
    @ivar tp: when we last sent RTCP (or started), in seconds.
    @ivar tn: when the next report is scheduled, in seconds.
    @ivar lastInterval: the last T computed.
    """

    def __init__(self, rtcpBandwidth: float, firstPacketSize: float,
                 random: Optional[_random.Random] = None,
                 minimumInterval: float = RTCP_MIN_TIME) -> None:
        """
        @param rtcpBandwidth: octets per second for RTCP (> 0).
        @param firstPacketSize: the size of the first compound packet we
            will send, UDP/IP headers included: the initial average.
        @param random: the randomisation source (a fresh, unseeded
            C{random.Random()} when not given).
        @param minimumInterval: see L{deterministicInterval}.
        """
        if not rtcpBandwidth > 0 or not firstPacketSize > 0:
            raise ValueError(f"rtcpBandwidth {rtcpBandwidth} and packet size "
                             f"{firstPacketSize} must be positive")
        self.rtcpBandwidth = float(rtcpBandwidth)
        self.avgRtcpSize = float(firstPacketSize)
        self.random = random if random is not None else _random.Random()
        self.minimumInterval = minimumInterval
        self.members = 1
        self.pmembers = 1
        self.senders = 0
        self.weSent = False
        self.initial = True
        self.tp = 0.0
        self.tn = 0.0
        self.lastInterval = 0.0
        self._lastDataSent: Optional[float] = None

    def interval(self) -> float:
        """
        Draw a fresh randomised interval T for the current state.
        """
        self.lastInterval = rtcpInterval(
            self.members, self.senders, self.rtcpBandwidth, self.weSent, self.avgRtcpSize,
            self.initial, self.random, self.minimumInterval)
        return self.lastInterval

    def deterministicInterval(self) -> float:
        """
        Td for the current state (members time out after 5 Td, 6.3.5).
        """
        return deterministicInterval(
            self.members, self.senders, self.rtcpBandwidth, self.weSent, self.avgRtcpSize,
            self.initial, self.minimumInterval)

    def start(self, now: float) -> float:
        """
        Begin: C{tp = now}, schedule the first report.

        @return: the delay until the first timer expiry.
        """
        self.tp = now
        self.tn = now + self.interval()
        return self.tn - now

    def timerExpired(self, now: float) -> Optional[float]:
        """
        The transmission timer fired at C{now} (6.3.6): recompute T; if
        C{tp + T} has passed, send now, otherwise wait until then.

        @return: None to send a report now (then call L{packetSent}), or
            the delay to re-arm the timer with.
        """
        self.tn = self.tp + self.interval()
        if self.tn <= now:
            return None
        return self.tn - now

    def packetSent(self, packetSize: float, now: float) -> float:
        """
        We sent a compound RTCP packet of C{packetSize} octets (UDP/IP
        headers included) at C{now}.

        @return: the delay until the next timer expiry.
        """
        self._average(packetSize)
        if self.weSent and (self._lastDataSent is None
                            or self._lastDataSent < now - 2 * self.lastInterval):
            # 6.3.8: no RTP sent in the last two intervals: not a sender.
            self.weSent = False
            self.senders = max(0, self.senders - 1)
        self.tp = now
        self.initial = False
        self.pmembers = self.members
        self.tn = now + self.interval()
        return self.tn - now

    def packetReceived(self, packetSize: float) -> None:
        """
        An RTCP compound packet of C{packetSize} octets (UDP/IP headers
        included) arrived: fold it into the average size.
        """
        self._average(packetSize)

    def dataSent(self, now: float) -> None:
        """
        We sent an RTP data packet at C{now}: we are a sender.
        """
        self._lastDataSent = now
        if not self.weSent:
            self.weSent = True
            self.senders += 1

    def membersChanged(self, members: int, senders: int, now: float) -> Optional[float]:
        """
        The member table now has C{members} members (us included) and
        C{senders} senders. When members decreased, reverse reconsideration
        (6.3.4) brings C{tn} and C{tp} closer to C{now}.

        @return: the new delay to re-arm the timer with when C{tn} moved,
            else None.
        """
        if members < 1 or senders < 0:
            raise ValueError(f"members {members} must be >= 1 and senders {senders} >= 0")
        self.members = members
        self.senders = senders
        if members < self.pmembers:
            ratio = members / self.pmembers
            self.tn = now + ratio * (self.tn - now)
            self.tp = now - ratio * (now - self.tp)
            self.pmembers = members
            return max(0.0, self.tn - now)
        return None

    def _average(self, packetSize: float) -> None:
        if not packetSize > 0:
            raise ValueError(f"an RTCP packet size must be positive, not {packetSize}")
        self.avgRtcpSize = packetSize / 16.0 + self.avgRtcpSize * 15.0 / 16.0
