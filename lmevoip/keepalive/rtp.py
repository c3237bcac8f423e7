"""
RTP keep-alive for active calls: a frame of silence whenever a call's RTP
flow has been idle for the keep-alive interval.

A call's B{RTP flow} is the NAT binding between its local RTP socket and
the address its RTP goes to. Audio keeps it open while the call talks; it
goes idle when nothing is sent: the noise gate is closed, the application's
source has nothing, the microphone is muted, or the call is on hold. The
rule, per active call::

    whenever no RTP has been sent on the call's RTP flow for the
    interval, send one keep-alive frame on it.

The frame is what L{IRtpSession.sendKeepAliveFrame} sends: one packet time of silence
in the negotiated codec with the negotiated payload type, or a comfort
noise packet at the silence level when CN was negotiated and the session's
C{keepAliveComfortNoise} is set. Its sequence number is the next one, its
timestamp comes from the clock like every packet's (so it jumps by the idle
time) and it carries the marker bit: to the receiver it is a one-packet
talkspurt of silence, never a discontinuity. RFC 6263 lists several
keep-alive packets and prefers an RTP packet with a payload type that was
not negotiated; a silence frame of the negotiated codec is used instead
because every peer accepts and plays it, and it also satisfies a peer's
own media timeout (a peer that hangs up after N seconds without RTP, such
as baresip's C{rtp_timeout}, may drop unknown payload types before its
timer sees them).

The service observes every RTP packet the session sends
(L{IRtpSession.addSendObserver}) and touches the flow. RTCP counts only
with rtcp-mux (it then leaves the same socket for the same address); on its
own port it refreshes another binding and is ignored.

B{Hold.} By default keep-alive frames are sent whatever the media
direction: when we hold the peer (sendonly) and when the peer holds us
(recvonly or inactive). RFC 3264 says a recvonly or inactive endpoint
does not send media, but the NAT binding must outlive the hold for the
peer's audio to reach us on resume, and keep-alive exists for exactly the
streams that send nothing for a while (RFC 6263); RFC 3264 section 5.1
already keeps RTCP flowing whatever the direction, for the same kind of
reason. One small silent packet per interval is the least intrusive way to
do it: a peer that expects nothing on hold discards or plays silence.
Nothing can be sent to a peer whose address is C{0.0.0.0} (old-style
hold, RFC 3264 section 8.4); those keep-alives are counted as skipped. With
C{sendOnHold=False} the service sends nothing while the session's direction
does not send.
"""

from __future__ import annotations

import random
from typing import Any, Hashable

from twisted.logger import Logger
from zope.interface import implementer

from lmevoip.interfaces import IRtpKeepAlive, IRtpSession
from lmevoip.keepalive.scheduler import KeepAliveFlow, KeepAliveScheduler
from lmevoip.keepalive.sip import CallFlowKeepAlive, _Watched

__all__ = ["RtpKeepAliveService"]

Address = tuple[str, int]


class _RtpWatched(_Watched):
    __slots__ = ("session", "framesSent", "skipped", "touchRtp", "touchRtcp")

    def __init__(self, key: Hashable, session: IRtpSession) -> None:
        super().__init__(key)
        self.session = session
        self.framesSent = 0
        self.skipped = 0
        self.touchRtp: Any = None
        self.touchRtcp: Any = None


@implementer(IRtpKeepAlive)
class RtpKeepAliveService(CallFlowKeepAlive):
    """
    Keep-alive frames for the RTP flows of active calls (see the module
    docstring).

    @ivar sendOnHold: Whether keep-alive frames are sent while the
        session's direction does not send (hold).
    """

    kind = "rtp"
    log = Logger()

    def __init__(
        self,
        scheduler: KeepAliveScheduler,
        rng: random.Random | None = None,
        sendOnHold: bool = True,
        losses: int = 0,
    ) -> None:
        """
        @param scheduler: The shared scheduler.
        @param rng: Randomness for the jitter.
        @param sendOnHold: See L{sendOnHold}.
        @param losses: See L{CallFlowKeepAlive.losses}.
        """
        super().__init__(scheduler, rng, losses)
        self.sendOnHold = bool(sendOnHold)

    def watch(self, key: Hashable, session: IRtpSession) -> None:
        """
        Keep an active call's RTP flow alive (replacing an earlier watch of
        the same key).

        @param key: The call's key (the engine's line number).
        @param session: The call's L{IRtpSession}, configured and started.
        """
        watched = _RtpWatched(key, session)
        # Idle since its last packet, or (nothing sent yet) since now.
        lastSendTime = session.lastSendTime
        watched.lastUsed = self.clock.seconds() if lastSendTime is None else lastSendTime

        def touchRtp(addr: Address, nbytes: int) -> None:
            self._used(watched)

        def touchRtcp(addr: Address, nbytes: int) -> None:
            if session.rtcpMux:
                self._used(watched)

        watched.touchRtp, watched.touchRtcp = touchRtp, touchRtcp
        session.addSendObserver(touchRtp)
        session.addRtcpSendObserver(touchRtcp)
        self._watch(watched)

    # -- internals ------------------------------------------------------

    def _detach(self, watched: _RtpWatched) -> None:
        session = watched.session
        for remove, observer in ((session.removeSendObserver, watched.touchRtp),
                                 (session.removeRtcpSendObserver, watched.touchRtcp)):
            try:
                remove(observer)
            except ValueError:
                pass

    def _remote(self, watched: _RtpWatched) -> Address | None:
        return watched.session.remoteRtpAddress

    def _describe(self, watched: _RtpWatched) -> dict[str, Any]:
        return {"framesSent": watched.framesSent, "skipped": watched.skipped}

    def _sendKeepAlive(self, watched: _RtpWatched, flow: KeepAliveFlow) -> None:
        session = watched.session
        if not self.sendOnHold and not session.sending:
            watched.skipped += 1
            return None
        if session.sendKeepAliveFrame():
            watched.framesSent += 1
        else:
            watched.skipped += 1
            self.log.debug("RTP keep-alive of {key!r} not sent (no remote address, or session stopped)",
                           key=watched.key)
        return None
