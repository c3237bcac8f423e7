"""
Calls: the INVITE session of RFC 3261 section 13 and 14, one explicit state
machine per call.

A L{Call} is created by the user agent core (L{lmevoip.sip.useragent}):
C{ua.call(target)} for an outgoing call, or an incoming INVITE. It never
touches a socket: it sends through the core (which owns the transaction
layer and the dialog table) and hands every SDP to an application-provided
L{ICallMediaHandler}. The application follows it through
L{ICallObserver} events and the L{Call.whenConnected} /
L{Call.whenTerminated} Deferreds.

The states (L{CallState}) and the events that move between them::

    outgoing                                incoming
    --------                                --------
    Calling --1xx--> Ringing                Incoming --answer()/200--> Answered
      |  \\            |  \\                   |   \\                        |
      |   2xx+ACK      |   2xx+ACK           reject(), CANCEL,            ACK
      |   \\            |    \\                ring timeout, BYE            |
      |    +-----------+-----> Connected <------|-----------------------------+
      | hangup()       | hangup()   |           |      (no ACK in 64*T1: BYE)
      V                V            | BYE sent  |
    Cancelling ---487----+          V           |
      |                  |      Terminating     |
      | 2xx (race):      |          | response  |
      | ACK, BYE ------->+--------->|  or timeout
      V                             V           V
    ---------------------------- Terminated -----------------

    3xx-6xx (or timeout) in Calling/Ringing: Terminated (FAILED);
    BYE received in Answered/Connected/Terminating: Terminated (REMOTE_HANGUP).

Hold and resume (re-INVITE, RFC 3264 section 8.4) happen inside Connected,
in either direction; an overlapping re-INVITE is refused with 491 and ours
is retried once after the random delay of RFC 3261 14.1.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from lmevoip.interfaces import ICall, ICallMediaHandler, ICallObserver
from lmevoip.sip.dialog import Dialog, DialogError, DialogLimitError, DialogState
from lmevoip.sip.message import Request, Response, SipParseError
from lmevoip.sip.sdp import (
    NegotiatedMedia,
    NegotiationError,
    SdpParseError,
    SessionDescription,
    answerOffer,
    makeOffer,
    negotiateAnswer,
    reviseSession,
)
from lmevoip.sip.timers import Timer
from lmevoip.sip.transaction import Invite2xxRetransmitter, TransactionState, generateTag

if TYPE_CHECKING:  # pragma: no cover
    from lmevoip.sip.useragent import ClientRequest, UserAgent


# ---------------------------------------------------------------------------
# States, reasons, errors


class CallState(Enum):
    """
    The states of a call (see the module docstring).
    """

    #: Outgoing: INVITE sent, no provisional response yet.
    CALLING = "Calling"
    #: Outgoing: a provisional response arrived (early dialog).
    RINGING = "Ringing"
    #: Outgoing: hangup() before the answer; CANCEL sent (or waiting for the
    #: first provisional response to send it, RFC 3261 9.1).
    CANCELLING = "Cancelling"
    #: Incoming: INVITE received, offered to the application.
    INCOMING = "Incoming"
    #: Incoming: 2xx sent, retransmitted until the ACK.
    ANSWERED = "Answered"
    #: The session is established.
    CONNECTED = "Connected"
    #: BYE sent, waiting for its response.
    TERMINATING = "Terminating"
    #: Over; the call has left the user agent's tables.
    TERMINATED = "Terminated"


_S = CallState
#: state -> the states it may move to.
TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    _S.CALLING: frozenset({_S.RINGING, _S.CANCELLING, _S.CONNECTED, _S.TERMINATING, _S.TERMINATED}),
    _S.RINGING: frozenset({_S.CANCELLING, _S.CONNECTED, _S.TERMINATING, _S.TERMINATED}),
    _S.CANCELLING: frozenset({_S.TERMINATING, _S.TERMINATED}),
    _S.INCOMING: frozenset({_S.ANSWERED, _S.TERMINATED}),
    _S.ANSWERED: frozenset({_S.CONNECTED, _S.TERMINATING, _S.TERMINATED}),
    _S.CONNECTED: frozenset({_S.TERMINATING, _S.TERMINATED}),
    _S.TERMINATING: frozenset({_S.TERMINATED}),
    _S.TERMINATED: frozenset(),
}


class CallEndReason(Enum):
    """
    Why a call ended.
    """

    #: We sent BYE.
    LOCAL_HANGUP = "local-hangup"
    #: The peer sent BYE.
    REMOTE_HANGUP = "remote-hangup"
    #: We cancelled our unanswered call (487, or ACK+BYE after a racing 2xx).
    CANCELLED = "cancelled"
    #: The caller cancelled the incoming call.
    REMOTE_CANCELLED = "remote-cancelled"
    #: We refused the incoming call (reject()).
    REJECTED = "rejected"
    #: The incoming call was not answered in time (480 sent).
    NOT_ANSWERED = "not-answered"
    #: The peer refused our call with 3xx-6xx (status says which).
    FAILED = "failed"
    #: A 401/407 we could not answer (no, wrong or unsupported credentials).
    AUTH_FAILED = "auth-failed"
    #: No final response (Timer B) or, for our BYE, none at all.
    TIMEOUT = "timeout"
    #: Our 2xx was never acknowledged (64*T1); we sent BYE.
    NO_ACK = "no-ack"
    #: The offer/answer exchange failed (488, or an unusable answer).
    MEDIA_FAILED = "media-failed"
    #: The network refused to carry a request.
    TRANSPORT_ERROR = "transport-error"
    #: The peer no longer knows the dialog (481, or 408 to a re-INVITE).
    DIALOG_GONE = "dialog-gone"
    #: The user agent stopped.
    SHUTDOWN = "shutdown"


@dataclass(frozen=True)
class CallEnd:
    """
    How a call ended.

    @ivar reason: the L{CallEndReason}.
    @ivar status: the SIP status concerned, or L{None}.
    @ivar detail: a human-readable explanation, or L{None}.
    """

    reason: CallEndReason
    status: int | None = None
    detail: str | None = None


class CallError(Exception):
    """
    The call cannot do that in its current state.
    """


class CallFailed(Exception):
    """
    The call ended before it was connected (L{Call.whenConnected}).

    @ivar end: the L{CallEnd}.
    """

    def __init__(self, end: CallEnd) -> None:
        super().__init__(f"call ended: {end.reason.value} ({end.status})")
        self.end = end


class RequestFailed(Exception):
    """
    A request in the call got a final non-2xx response.

    @ivar response: the response.
    @ivar status: its status.
    """

    def __init__(self, response: Response, detail: str | None = None) -> None:
        super().__init__(f"{response.status} {response.reason}" + (f": {detail}" if detail else ""))
        self.response = response
        self.status = response.status


class DialogGone(RequestFailed):
    """
    The peer answered 481 (Call/Transaction Does Not Exist): it no longer
    knows the dialog, and the call has been terminated.
    """


class AuthenticationFailed(RequestFailed):
    """
    A 401/407 could not be answered.

    @ivar giveUp: the L{lmevoip.sip.auth.AuthGiveUp}.
    """

    def __init__(self, response: Response, giveUp) -> None:
        super().__init__(response, giveUp.reason.value)
        self.giveUp = giveUp


class RequestTimeout(Exception):
    """
    A request got no final response before its transaction timed out
    (Timer B or F: 64*T1).
    """


class TransportFailed(Exception):
    """
    The transport refused to send a request (RFC 3261 17.1.4).
    """


# ---------------------------------------------------------------------------
# Media and observers


def _offerIsHold(offer: SessionDescription) -> bool:
    """
    Whether an offer puts us on hold (RFC 3264 8.4): its first audio stream
    does not want to receive (sendonly or inactive) or is addressed to
    0.0.0.0 / ::.
    """
    for media in offer.media:
        if media.media.lower() != "audio" or media.rejected:
            continue
        if media.direction in ("sendonly", "inactive"):
            return True
        connection = media.effectiveConnection
        return connection is not None and connection.isUnspecified
    return False


@implementer(ICallMediaHandler)
class StaticMediaHandler:
    """
    A media handler that allocates nothing: it offers and answers with a
    fixed address and RTP port given at construction, using
    L{lmevoip.sip.sdp}. For tests and for applications that run their RTP
    elsewhere.

    @ivar local: the last SessionDescription we sent, or L{None}.
    @ivar media: the NegotiatedMedia in force, or L{None}.
    @ivar history: the last L{HISTORY_LENGTH} NegotiatedMedia given to
        L{mediaChanged} (bounded: a peer re-INVITEing forever must not grow
        memory).
    @ivar closed: whether L{close} was called.
    """

    #: How many past NegotiatedMedia L{history} keeps.
    HISTORY_LENGTH = 16

    def __init__(self, address: str, rtpPort: int, codecs=("PCMU", "PCMA"),
                 telephoneEvent: bool = True, ptime: int | None = 20) -> None:
        """
        @param address: our address for o= and c=.
        @param rtpPort: our RTP port.
        @param codecs: the codecs, in our order of preference.
        @param telephoneEvent: offer/accept RFC 4733 telephone-event.
        @param ptime: the a=ptime to ask for.
        """
        self.address = address
        self.rtpPort = rtpPort
        self.codecs = tuple(codecs)
        self.telephoneEvent = telephoneEvent
        self.ptime = ptime
        self.local: SessionDescription | None = None
        self.media: NegotiatedMedia | None = None
        self.history: deque[NegotiatedMedia] = deque(maxlen=self.HISTORY_LENGTH)
        self.closed = False

    def _nextVersion(self, description: SessionDescription) -> SessionDescription:
        if self.local is not None:
            description.origin.sessionId = self.local.origin.sessionId
            description.origin.sessionVersion = self.local.origin.sessionVersion + 1
        return description

    def makeOffer(self, hold: bool = False) -> SessionDescription:
        """
        Our initial offer, or the next version of our description with the
        direction C{sendonly} (hold) or C{sendrecv}.
        """
        direction = "sendonly" if hold else "sendrecv"
        if self.local is None or len(self.local.media) == 1:
            # A fresh offer lists every codec again (an answer listed one).
            offer = self._nextVersion(makeOffer(
                self.address, self.rtpPort, self.codecs, telephoneEvent=self.telephoneEvent,
                ptime=self.ptime, direction=direction))
        else:
            # Keep the m= lines of the previous description (RFC 3264 8).
            offer = reviseSession(self.local, direction)
        self.local = offer
        return offer

    def answerOffer(self, offer: SessionDescription, hold: bool = False):
        """
        Answer with L{lmevoip.sip.sdp.answerOffer}; the o= line continues
        our previous description (same id, next version).
        """
        answer, media = answerOffer(
            offer, self.address, self.rtpPort, self.codecs, telephoneEvent=self.telephoneEvent,
            ptime=self.ptime, direction="sendonly" if hold else "sendrecv")
        self.local = self._nextVersion(answer)
        return answer, media

    def offerAnswered(self, offer: SessionDescription, answer: SessionDescription) -> NegotiatedMedia:
        """L{lmevoip.sip.sdp.negotiateAnswer}."""
        return negotiateAnswer(offer, answer)

    def mediaChanged(self, media: NegotiatedMedia) -> None:
        """Record the media in force."""
        self.media = media
        self.history.append(media)

    def close(self) -> None:
        """Mark closed."""
        self.closed = True


@implementer(ICallObserver)
class CallObserver:
    """
    An L{ICallObserver} that does nothing: subclass it and override what you
    need.
    """

    def callRinging(self, call, response) -> None:
        """A provisional response arrived."""

    def callConnected(self, call, media) -> None:
        """The call is established."""

    def callHeld(self, call, byPeer) -> None:
        """The call was put on hold."""

    def callResumed(self, call, byPeer) -> None:
        """The call was taken off hold."""

    def callTerminated(self, call, reason, status) -> None:
        """The call ended."""


# ---------------------------------------------------------------------------
# The call


class _Reinvite:
    """Our outstanding re-INVITE."""

    def __init__(self, hold: bool, deferred: Deferred) -> None:
        self.hold = hold
        self.deferred = deferred
        self.request: ClientRequest | None = None
        self.offer: SessionDescription | None = None
        self.attempts = 0


@implementer(ICall)
class Call:
    """
    One call (an INVITE session). Created by the user agent, never directly.

    @ivar callId: the Call-ID.
    @ivar outgoing: whether we placed the call.
    @ivar state: the L{CallState}.
    @ivar dialog: the L{Dialog}, or L{None} before one exists.
    @ivar mediaHandler: the L{ICallMediaHandler}.
    @ivar media: the NegotiatedMedia in force, or L{None}.
    @ivar localHold: whether we put the peer on hold.
    @ivar remoteHold: whether the peer put us on hold.
    @ivar invite: the INVITE that created the call (for an outgoing call,
        the latest one sent, after authentication retries).
    @ivar end: the L{CallEnd} once terminated.
    @ivar lastResponse: the last final response to our INVITE, or L{None}.
    """

    log = Logger()

    def __init__(self, ua: UserAgent, outgoing: bool, callId: str, mediaHandler,
                 observers=()) -> None:
        self._ua = ua
        self.outgoing = outgoing
        self.callId = callId
        self.mediaHandler = mediaHandler
        self._observers = [o for o in observers if o is not None]
        self.state = CallState.CALLING if outgoing else CallState.INCOMING
        self.dialog: Dialog | None = None
        self.media: NegotiatedMedia | None = None
        self.localHold = False
        self.remoteHold = False
        self.invite: Request | None = None
        self.end: CallEnd | None = None
        self.lastResponse: Response | None = None
        # outgoing
        self._inviteRequest: ClientRequest | None = None
        self._offer: SessionDescription | None = None
        self._cancelSent = False
        self._cancelReason = CallEndReason.CANCELLED
        self._provisional = False
        # incoming (and re-INVITEs received)
        self._serverTx = None
        self._serverRequest: Request | None = None
        self._pendingAnswer: SessionDescription | None = None
        self._pendingMedia: NegotiatedMedia | None = None
        self._offerInOk: SessionDescription | None = None
        self._ackSeq: int | None = None
        self._retransmitter: Invite2xxRetransmitter | None = None
        self._byeAfterAck = False
        self._ringTimer = Timer(ua.clock, "ring", self._ringTimedOut)
        # both
        self._reinvite: _Reinvite | None = None
        self._glareTimer = Timer(ua.clock, "491", self._retryReinvite)
        self._bye: ClientRequest | None = None
        self._byeEnd: CallEnd | None = None
        self._options: dict[ClientRequest, Deferred] = {}
        self._connectedWaiters: list[Deferred] = []
        self._terminatedWaiters: list[Deferred] = []

    def __repr__(self) -> str:
        direction = "out" if self.outgoing else "in"
        return f"<Call {direction} {self.callId} {self.state.value}>"

    # -- public API ---------------------------------------------------------

    @property
    def endReason(self) -> CallEndReason | None:
        """The L{CallEndReason} once terminated."""
        return self.end.reason if self.end else None

    @property
    def endStatus(self) -> int | None:
        """The status that ended the call, or L{None}."""
        return self.end.status if self.end else None

    @property
    def remoteUri(self):
        """The peer's URI (a NameAddr), from the INVITE."""
        if self.invite is None:
            return None
        return self.invite.toAddr if self.outgoing else self.invite.fromAddr

    def addObserver(self, observer) -> None:
        """Add an L{ICallObserver}."""
        if observer not in self._observers:
            self._observers.append(observer)

    def removeObserver(self, observer) -> None:
        """Remove an observer; harmless when absent."""
        if observer in self._observers:
            self._observers.remove(observer)

    def whenConnected(self) -> Deferred:
        """
        A Deferred that fires with the NegotiatedMedia once the call is
        connected (at once when it already is), or fails with L{CallFailed}
        when the call ends before.
        """
        if self.state is CallState.TERMINATED:
            return fail(CallFailed(self.end))
        if self.state is CallState.CONNECTED or (self.media is not None and
                                                 self.state is CallState.TERMINATING):
            return succeed(self.media)
        d = Deferred()
        self._connectedWaiters.append(d)
        return d

    def whenTerminated(self) -> Deferred:
        """A Deferred that fires with the L{CallEnd} once the call ends."""
        if self.state is CallState.TERMINATED:
            return succeed(self.end)
        d = Deferred()
        self._terminatedWaiters.append(d)
        return d

    def ring(self) -> None:
        """
        Send 180 (Ringing) for an incoming call (the user agent does this
        itself unless C{autoRinging} is off).
        """
        self._requireState(CallState.INCOMING)
        self._respondInvite(180)

    def answer(self) -> None:
        """
        Accept an incoming call: 200 with the SDP answer (or an offer when the
        INVITE had none); the 200 is retransmitted until the ACK.

        @raise CallError: when the call is not Incoming.
        """
        self._requireState(CallState.INCOMING)
        self._ringTimer.cancel()
        if self._pendingAnswer is not None:
            body = self._pendingAnswer
            self.media = self._pendingMedia
        else:
            try:
                body = self._offerInOk = self.mediaHandler.makeOffer(False)
            except Exception as e:
                self.log.failure("media handler could not make an offer")
                self._rejectWith(500, CallEndReason.MEDIA_FAILED, str(e))
                return
        self.dialog.confirm()
        ok = self._respondInvite(200, body=body.serialize())
        if ok is None:
            return
        self._setState(CallState.ANSWERED)
        self._startRetransmitting(ok, self._serverRequest.cseq.seq)
        if self.media is not None:
            self._mediaChanged(self.media)

    def reject(self, status: int = 486, reason: str | None = None) -> None:
        """
        Refuse an incoming call (486 Busy Here, 603 Decline, 480, ...).

        @raise CallError: when the call is not Incoming.
        @raise ValueError: for a status outside 300-699.
        """
        self._requireState(CallState.INCOMING)
        if not 300 <= status <= 699:
            raise ValueError(f"reject needs a 300-699 status, not {status}")
        self._rejectWith(status, CallEndReason.REJECTED, reason)

    def cancel(self) -> None:
        """
        Cancel our unanswered call (RFC 3261 9.1); the CANCEL waits for the
        first provisional response if none has come yet.

        @raise CallError: when the call is not an outgoing unanswered one.
        """
        self._requireState(CallState.CALLING, CallState.RINGING)
        self._setState(CallState.CANCELLING)
        if self._provisional:
            self._sendCancel()

    def hangup(self) -> None:
        """
        End the call whatever its state: CANCEL an unanswered outgoing call,
        603 an unanswered incoming one, BYE an established one (after the
        ACK, for an incoming call still waiting for it). Harmless when the
        call is already ending.
        """
        state = self.state
        if state in (CallState.CALLING, CallState.RINGING):
            self.cancel()
        elif state is CallState.INCOMING:
            self._rejectWith(603, CallEndReason.REJECTED, None)
        elif state is CallState.ANSWERED:
            # 15: no BYE before the ACK (or its timeout).
            self._byeAfterAck = True
        elif state is CallState.CONNECTED:
            self._sendBye(CallEnd(CallEndReason.LOCAL_HANGUP))

    def hold(self) -> Deferred:
        """
        Put the peer on hold (re-INVITE with a sendonly offer).

        @return: a Deferred firing with the new NegotiatedMedia, or failing
            with L{RequestFailed} (the session is then unchanged),
            L{RequestTimeout} or L{CallError}.
        """
        return self._startReinvite(True)

    def unhold(self) -> Deferred:
        """
        Take the peer off hold (re-INVITE with a sendrecv offer); as L{hold}.
        """
        return self._startReinvite(False)

    def sendOptions(self) -> Deferred:
        """
        Send OPTIONS inside the dialog (a SIP keep-alive for the call).

        @return: a Deferred firing with the final response (any status but
            481), or failing with L{DialogGone} (481: the call is then
            terminated), L{RequestTimeout}, L{TransportFailed} or
            L{CallError} (no dialog to send in).
        """
        if self.dialog is None or self.state not in (CallState.CONNECTED, CallState.ANSWERED):
            return fail(CallError(f"no established dialog in {self.state.value}"))
        d = Deferred()
        try:
            request = self._inDialogRequest("OPTIONS")
            request.headers.add("Accept", "application/sdp")
            self._options[self._send(request)] = d
        except Exception as e:
            return fail(e)
        return d

    # -- state helpers ------------------------------------------------------

    def _requireState(self, *states: CallState) -> None:
        if self.state not in states:
            raise CallError(f"{self!r}: not allowed in {self.state.value}")

    def _setState(self, new: CallState) -> None:
        old = self.state
        if new is old:
            return
        if new not in TRANSITIONS[old]:
            raise CallError(f"{self!r}: no transition {old.value} -> {new.value}")
        self.state = new
        self.log.debug("{call} {old} -> {new}", call=self, old=old.value, new=new.value)

    def _notify(self, name: str, *args) -> None:
        for observer in list(self._observers):
            method = getattr(observer, name, None)
            if method is None:
                continue
            try:
                method(self, *args)
            except Exception:
                self.log.failure("call observer raised in {event}", event=name)

    def _mediaChanged(self, media: NegotiatedMedia) -> None:
        self.media = media
        try:
            self.mediaHandler.mediaChanged(media)
        except Exception:
            self.log.failure("media handler raised in mediaChanged")

    def _closeMedia(self) -> None:
        try:
            self.mediaHandler.close()
        except Exception:
            self.log.failure("media handler raised in close")

    def _connected(self) -> None:
        self._setState(CallState.CONNECTED)
        self._notify("callConnected", self.media)
        waiters, self._connectedWaiters = self._connectedWaiters, []
        for d in waiters:
            d.callback(self.media)

    def _terminate(self, end: CallEnd) -> None:
        """Terminated: timers stopped, media closed, tables left, events fired."""
        if self.state is CallState.TERMINATED:
            return
        self._setState(CallState.TERMINATED)
        self.end = end
        self._ringTimer.cancel()
        self._glareTimer.cancel()
        if self._retransmitter is not None:
            self._retransmitter.stop()
        self._closeMedia()
        self._ua._callEnded(self)
        self.log.info("{call} ended: {reason} {status}", call=self,
                      reason=end.reason.value, status=end.status)
        self._notify("callTerminated", end.reason, end.status)
        waiters, self._connectedWaiters = self._connectedWaiters, []
        for d in waiters:
            d.errback(CallFailed(end))
        if self._reinvite is not None:
            reinvite, self._reinvite = self._reinvite, None
            reinvite.deferred.errback(CallError(f"call ended: {end.reason.value}"))
        options, self._options = self._options, {}
        for d in options.values():
            d.errback(CallError(f"call ended: {end.reason.value}"))
        waiters, self._terminatedWaiters = self._terminatedWaiters, []
        for d in waiters:
            d.callback(end)

    # -- sending ------------------------------------------------------------

    def _send(self, request: Request, destination=None) -> ClientRequest:
        if destination is None:
            destination = self._destination
        return self._ua._sendRequest(request, destination, self, self.dialog)

    def _inDialogRequest(self, method: str, body: bytes = b"") -> Request:
        contact = self._ua.contactHeader if method == "INVITE" else None
        request, self._destination = self.dialog.createRequest(
            method, self._ua._via(), contact=contact, body=body)
        self._ua._decorateRequest(request)
        return request

    def _sendBye(self, end: CallEnd) -> None:
        """BYE (RFC 3261 15.1.1): Terminating until its response."""
        self._setState(CallState.TERMINATING)
        self._byeEnd = end
        self._ringTimer.cancel()
        if self._retransmitter is not None:
            self._retransmitter.stop()
        self._closeMedia()
        try:
            self._bye = self._send(self._inDialogRequest("BYE"))
        except Exception as e:
            self.log.warn("{call}: BYE not sent: {error}", call=self, error=str(e))
            self._terminate(end)

    def _sendCancel(self) -> None:
        if self._cancelSent or self._inviteRequest is None:
            return
        self._cancelSent = True
        try:
            self._ua._sendCancel(self._inviteRequest, self)
        except Exception as e:
            self.log.warn("{call}: CANCEL not sent: {error}", call=self, error=str(e))

    def _sendAck(self, response: Response, cr: ClientRequest) -> None:
        """The ACK for a 2xx (13.2.2.4): built by the dialog, same credentials."""
        ack = self._ackRequest(response.cseq.seq, cr.request)
        self._ua._sendAck(cr, ack, self._ackDestination)

    def _ackRequest(self, seq: int, invite: Request) -> Request:
        ack, self._ackDestination = self.dialog.createRequest("ACK", self._ua._via(), seq=seq)
        for name in ("Authorization", "Proxy-Authorization"):
            for value in _rawAll(invite, name):
                ack.headers.add(name, value)
        return ack

    # -- outgoing INVITE ------------------------------------------------------

    def _start(self, invite: Request, destination, offer: SessionDescription) -> None:
        """Send the initial INVITE (called by the user agent)."""
        self.invite = invite
        self._offer = offer
        self._destination = destination
        self._inviteRequest = self._ua._sendRequest(invite, destination, self, None)

    def responseReceived(self, cr: ClientRequest, response: Response) -> None:
        """
        A response to one of our requests (called by the user agent's
        L{ClientRequest}).
        """
        if cr is self._inviteRequest:
            self.invite = cr.request
            self._inviteResponse(cr, response)
        elif self._reinvite is not None and cr is self._reinvite.request:
            self._reinviteResponse(cr, response)
        elif cr is self._bye:
            if response.status >= 200:
                self._terminate(self._byeEnd)
        elif cr in self._options:
            if response.status >= 200:
                self._optionsResponse(cr, response)
        # CANCEL responses and stale requests need nothing.

    def requestFailed(self, cr: ClientRequest, error: Exception) -> None:
        """
        One of our requests timed out or could not be sent (called by the
        user agent's L{ClientRequest}).
        """
        timeout = isinstance(error, RequestTimeout)
        reason = CallEndReason.TIMEOUT if timeout else CallEndReason.TRANSPORT_ERROR
        if cr is self._inviteRequest:
            if timeout and cr.transaction is not None and \
                    cr.transaction.state is TransactionState.PROCEEDING:
                # Timer C: still ringing after minutes; cancel (9.1).
                if self.state in (CallState.CALLING, CallState.RINGING):
                    self._cancelReason = CallEndReason.TIMEOUT
                    self.cancel()
                return
            if self.state in (CallState.CALLING, CallState.RINGING, CallState.CANCELLING):
                if self.state is CallState.CANCELLING:
                    reason = self._cancelReason
                self._dropEarlyDialog()
                self._terminate(CallEnd(reason, 408 if timeout else None, str(error)))
        elif self._reinvite is not None and cr is self._reinvite.request:
            reinvite, self._reinvite = self._reinvite, None
            reinvite.deferred.errback(error)
            if self.state is CallState.CONNECTED:
                # 14.1: a timeout to a re-INVITE ends the dialog.
                self._sendBye(CallEnd(CallEndReason.TIMEOUT, 408, "re-INVITE timed out"))
        elif cr is self._bye:
            self._terminate(self._byeEnd)
        elif cr in self._options:
            self._options.pop(cr).errback(error)

    def _dropEarlyDialog(self) -> None:
        if self.dialog is not None and self.state is not CallState.CONNECTED:
            self._ua._removeDialog(self.dialog)

    def _inviteResponse(self, cr: ClientRequest, response: Response) -> None:
        status = response.status
        if status < 200:
            self._inviteProvisional(cr, response)
        elif status < 300:
            self._invite2xx(cr, response)
        else:
            self._inviteFailed(cr, response)

    def _inviteProvisional(self, cr: ClientRequest, response: Response) -> None:
        if self.state not in (CallState.CALLING, CallState.RINGING, CallState.CANCELLING):
            return
        self._provisional = True
        if self.state is CallState.CANCELLING:
            self._sendCancel()
            return
        if response.status == 100:
            return
        if self.dialog is None and response.toAddr.tag:
            try:
                dialog = Dialog.fromResponse(cr.request, response)
                self._ua._addDialog(dialog)
                dialog.owner = self
                self.dialog = dialog
            except (DialogError, SipParseError) as e:
                self.log.info("{call}: no early dialog: {error}", call=self, error=str(e))
        self._setState(CallState.RINGING)
        self._notify("callRinging", response)

    def _invite2xx(self, cr: ClientRequest, response: Response) -> None:
        tag = response.toAddr.tag
        if self.state in (CallState.CONNECTED, CallState.TERMINATING, CallState.TERMINATED) \
                or (self.dialog is not None and self.dialog.state is DialogState.CONFIRMED
                    and self.dialog.remoteTag != tag):
            # A second fork answered: acknowledge and end that dialog (13.2.2.4).
            self._ua._ackAndByeFork(cr, response)
            return
        self.lastResponse = response
        if self.dialog is not None and self.dialog.remoteTag == tag:
            self.dialog.confirm(response)
        else:
            if self.dialog is not None:
                self._ua._removeDialog(self.dialog)
                self.dialog = None
            try:
                dialog = Dialog.fromResponse(cr.request, response)
                self._ua._addDialog(dialog)
            except (DialogError, SipParseError, DialogLimitError) as e:
                self.log.warn("{call}: cannot create the dialog for {status}: {error}",
                              call=self, status=response.status, error=str(e))
                self._ua._ackAndByeFork(cr, response)
                self._terminate(CallEnd(CallEndReason.FAILED, response.status, str(e)))
                return
            dialog.owner = self
            self.dialog = dialog
        self._sendAck(response, cr)
        if self.state is CallState.CANCELLING:
            # CANCEL and 200 crossed (9.1): the call was answered; end it.
            self._sendBye(CallEnd(self._cancelReason, response.status,
                                  "answered while cancelling"))
            return
        try:
            answer = _sdpBody(response)
            if answer is None:
                raise NegotiationError("the 2xx carries no SDP answer", 304)
            media = self.mediaHandler.offerAnswered(self._offer, answer)
        except (SdpParseError, NegotiationError) as e:
            self.log.info("{call}: unusable answer: {error}", call=self, error=str(e))
            self._sendBye(CallEnd(CallEndReason.MEDIA_FAILED, getattr(e, "status", 400), str(e)))
            return
        self._mediaChanged(media)
        self._connected()

    def _inviteFailed(self, cr: ClientRequest, response: Response) -> None:
        self.lastResponse = response
        if self.state not in (CallState.CALLING, CallState.RINGING, CallState.CANCELLING):
            return
        self._dropEarlyDialog()
        if self.state is CallState.CANCELLING:
            reason = self._cancelReason
        elif cr.authGiveUp is not None:
            reason = CallEndReason.AUTH_FAILED
        else:
            reason = CallEndReason.FAILED
        detail = cr.authGiveUp.reason.value if cr.authGiveUp is not None else response.reason
        self._terminate(CallEnd(reason, response.status, detail))

    # -- incoming INVITE ------------------------------------------------------

    def _receive(self, request: Request, tx) -> None:
        """
        The initial INVITE (called by the user agent, which checked it):
        dialog, offer, 100, 180.
        """
        self.invite = self._serverRequest = request
        self._serverTx = tx
        dialog = Dialog.fromRequest(request, generateTag())
        self._ua._addDialog(dialog)
        dialog.owner = self
        self.dialog = dialog
        self._destination = None
        try:
            offer = _sdpBody(request)
            if offer is not None:
                self._pendingAnswer, self._pendingMedia = self.mediaHandler.answerOffer(offer, False)
                self.remoteHold = _offerIsHold(offer)
        except SdpParseError as e:
            self._rejectWith(400, CallEndReason.MEDIA_FAILED, "Malformed SDP", str(e))
            return
        except NegotiationError as e:
            self._rejectWith(488, CallEndReason.MEDIA_FAILED, None, str(e), warning=e)
            return
        trying = self._ua._response(request, 100)
        timestamp = request.headers.get("Timestamp")
        if timestamp is not None:
            trying.headers.add("Timestamp", timestamp)
        self._sendServerResponse(trying)
        if self._ua.config.autoRinging and self.state is CallState.INCOMING:
            self._respondInvite(180)
        if self._ua.config.ringTimeout and self.state is CallState.INCOMING:
            self._ringTimer.start(self._ua.config.ringTimeout)

    def _ringTimedOut(self) -> None:
        if self.state is CallState.INCOMING:
            self._rejectWith(480, CallEndReason.NOT_ANSWERED, "Temporarily Unavailable")

    def _sendServerResponse(self, response: Response) -> bool:
        try:
            self._serverTx.sendResponse(response)
            return True
        except Exception as e:
            self.log.warn("{call}: {status} not sent: {error}", call=self,
                          status=response.status, error=str(e))
            return False

    def _respondInvite(self, status: int, reason: str | None = None, body: bytes = b"",
                       warning: NegotiationError | None = None) -> Response | None:
        response = self._ua._response(self._serverRequest, status, reason,
                                      toTag=self.dialog.localTag if self.dialog else generateTag(),
                                      body=body, dialogForming=status < 300)
        if warning is not None:
            response.headers.add("Warning", self._ua._warning(warning))
        return response if self._sendServerResponse(response) else None

    def _rejectWith(self, status: int, reason: CallEndReason, phrase: str | None,
                    detail: str | None = None, warning: NegotiationError | None = None) -> None:
        self._ringTimer.cancel()
        self._respondInvite(status, phrase, warning=warning)
        self._terminate(CallEnd(reason, status, detail or phrase))

    def _startRetransmitting(self, ok: Response, seq: int) -> None:
        """13.3.1.4: re-send the 2xx (T1 doubling to T2) until the ACK."""
        if self._retransmitter is not None:
            self._retransmitter.stop()
        layer = self._ua.transactions
        timers = layer.timers
        self._ackSeq = seq
        self._retransmitter = Invite2xxRetransmitter(
            self._ua.clock, lambda: layer.sendResponse(ok), self._noAck, timers.t1, timers.t2)
        self._retransmitter.start()

    def _noAck(self) -> None:
        self.log.info("{call}: no ACK for the 2xx within 64*T1; sending BYE", call=self)
        self._retransmitter = None
        if self.state in (CallState.ANSWERED, CallState.CONNECTED):
            self._sendBye(CallEnd(CallEndReason.NO_ACK, None, "no ACK for the 2xx"))

    def ackReceived(self, ack: Request) -> None:
        """An ACK for one of our 2xx responses (called by the user agent)."""
        if self._retransmitter is None or ack.cseq.seq != self._ackSeq:
            return
        self._retransmitter.ackReceived()
        self._retransmitter = None
        offerInOk, self._offerInOk = self._offerInOk, None
        if offerInOk is not None:
            # We offered in the 2xx: the ACK carries the answer (13.2.1).
            try:
                answer = _sdpBody(ack)
                if answer is None:
                    raise NegotiationError("the ACK carries no SDP answer", 304)
                self._mediaChanged(self.mediaHandler.offerAnswered(offerInOk, answer))
            except (SdpParseError, NegotiationError) as e:
                self.log.info("{call}: unusable answer in ACK: {error}", call=self, error=str(e))
                if self.state is CallState.ANSWERED:
                    self._setState(CallState.CONNECTED)
                self._sendBye(CallEnd(CallEndReason.MEDIA_FAILED, None, str(e)))
                return
        if self.state is CallState.ANSWERED:
            self._connected()
            if self._byeAfterAck:
                self._sendBye(CallEnd(CallEndReason.LOCAL_HANGUP))

    def cancelReceived(self) -> None:
        """
        The caller cancelled (the user agent answered the CANCEL 200): 487
        when the INVITE is still unanswered (9.2).
        """
        if self.state is CallState.INCOMING:
            self._rejectWith(487, CallEndReason.REMOTE_CANCELLED, None)

    def byeReceived(self, request: Request, tx) -> None:
        """BYE from the peer (15.1.2): 200, and the call ends."""
        tx.sendResponse(self._ua._response(request, 200))
        if self.state is CallState.INCOMING:
            self._respondInvite(487)
        end = self._byeEnd if self.state is CallState.TERMINATING else \
            CallEnd(CallEndReason.REMOTE_HANGUP)
        self._terminate(end)

    # -- re-INVITE received -------------------------------------------------

    def reinviteReceived(self, request: Request, tx) -> None:
        """
        A re-INVITE (14.2): 491 when one is already in progress either way,
        else the offer is answered (or, without one, we offer in the 2xx).
        """
        # Ours waiting out its 491 delay is not in progress (14.1).
        ours = self._reinvite is not None and not self._glareTimer.active
        busy = self.state is not CallState.CONNECTED or ours or self._retransmitter is not None
        if busy:
            tx.sendResponse(self._ua._response(request, 491))
            return
        try:
            offer = _sdpBody(request)
            if offer is not None:
                answer, media = self.mediaHandler.answerOffer(offer, self.localHold)
                body = answer
            else:
                media = None
                body = self._offerInOk = self.mediaHandler.makeOffer(self.localHold)
        except SdpParseError as e:
            tx.sendResponse(self._ua._response(request, 400, "Malformed SDP"))
            self.log.info("{call}: malformed SDP in re-INVITE: {error}", call=self, error=str(e))
            return
        except NegotiationError as e:
            response = self._ua._response(request, 488)
            response.headers.add("Warning", self._ua._warning(e))
            tx.sendResponse(response)
            return
        self.dialog.refreshTarget(request)
        ok = self._ua._response(request, 200, body=body.serialize(), dialogForming=True)
        tx.sendResponse(ok)
        self._startRetransmitting(ok, request.cseq.seq)
        if offer is not None:
            self._mediaChanged(media)
            held = _offerIsHold(offer)
            if held != self.remoteHold:
                self.remoteHold = held
                self._notify("callHeld" if held else "callResumed", True)

    # -- re-INVITE sent -------------------------------------------------------

    def _startReinvite(self, hold: bool) -> Deferred:
        if self.state is not CallState.CONNECTED:
            return fail(CallError(f"cannot re-INVITE in {self.state.value}"))
        if self._reinvite is not None or self._retransmitter is not None:
            return fail(CallError("a re-INVITE is already in progress"))
        self._reinvite = _Reinvite(hold, Deferred())
        d = self._reinvite.deferred
        self._sendReinvite()
        return d

    def _sendReinvite(self) -> None:
        reinvite = self._reinvite
        reinvite.attempts += 1
        try:
            reinvite.offer = self.mediaHandler.makeOffer(reinvite.hold)
            request = self._inDialogRequest("INVITE", reinvite.offer.serialize())
            reinvite.request = self._send(request)
        except Exception as e:
            self._reinvite = None
            reinvite.deferred.errback(e)

    def _retryReinvite(self) -> None:
        if self._reinvite is None or self.state is not CallState.CONNECTED:
            return
        if self._retransmitter is not None:
            # The peer's re-INVITE is still waiting for its ACK: a moment more.
            self._glareTimer.start(self._ua.config.t1)
            return
        self._sendReinvite()

    def _reinviteResponse(self, cr: ClientRequest, response: Response) -> None:
        status = response.status
        reinvite = self._reinvite
        if status < 200:
            return
        if status < 300:
            self._sendAck(response, cr)
            self._reinvite = None
            self.dialog.refreshTarget(response)
            try:
                answer = _sdpBody(response)
                if answer is None:
                    raise NegotiationError("the 2xx carries no SDP answer", 304)
                media = self.mediaHandler.offerAnswered(reinvite.offer, answer)
            except (SdpParseError, NegotiationError) as e:
                reinvite.deferred.errback(RequestFailed(response, f"unusable answer: {e}"))
                self._sendBye(CallEnd(CallEndReason.MEDIA_FAILED, None, str(e)))
                return
            self._mediaChanged(media)
            if reinvite.hold != self.localHold:
                self.localHold = reinvite.hold
                self._notify("callHeld" if reinvite.hold else "callResumed", False)
            reinvite.deferred.callback(media)
            return
        if status == 491 and reinvite.attempts < 2:
            # 14.1: glare; try again after a random delay (2.1-4 s when we
            # own the Call-ID, i.e. placed the call, else 0-2 s).
            delay = random.uniform(2.1, 4.0) if self.outgoing else random.uniform(0.0, 2.0)
            self._glareTimer.start(delay)
            return
        self._reinvite = None
        if status == 481 or status == 408:
            error = DialogGone(response) if status == 481 else RequestFailed(response)
            reinvite.deferred.errback(error)
            # 12.2.1.2 / 14.1: the dialog is gone.
            if status == 481:
                self._terminate(CallEnd(CallEndReason.DIALOG_GONE, 481))
            else:
                self._sendBye(CallEnd(CallEndReason.DIALOG_GONE, 408))
            return
        if cr.authGiveUp is not None:
            reinvite.deferred.errback(AuthenticationFailed(response, cr.authGiveUp))
        else:
            reinvite.deferred.errback(RequestFailed(response))

    # -- OPTIONS in the dialog ----------------------------------------------

    def _optionsResponse(self, cr: ClientRequest, response: Response) -> None:
        d = self._options.pop(cr)
        if response.status == 481:
            d.errback(DialogGone(response))
            self._terminate(CallEnd(CallEndReason.DIALOG_GONE, 481, "OPTIONS answered 481"))
        elif cr.authGiveUp is not None:
            d.errback(AuthenticationFailed(response, cr.authGiveUp))
        else:
            d.callback(response)

    # -- shutdown ---------------------------------------------------------------

    def _shutdown(self) -> None:
        """The user agent is stopping: best-effort BYE/CANCEL/480, then end."""
        end = CallEnd(CallEndReason.SHUTDOWN)
        try:
            if self.state is CallState.INCOMING:
                self._respondInvite(480)
            elif self.state in (CallState.CALLING, CallState.RINGING) and self._provisional:
                self._sendCancel()
            elif self.state in (CallState.CONNECTED, CallState.ANSWERED):
                self._sendBye(end)
        except Exception:
            self.log.failure("{call}: error while shutting down", call=self)
        self._terminate(end)


def _rawAll(message, name: str) -> list[str]:
    """Every raw value of header C{name}, one per field line."""
    return [value for field, value in message.headers if field.lower() == name.lower()]


def _sdpBody(message: Request | Response) -> SessionDescription | None:
    """
    The SDP body of a message, or L{None} when it has none.

    @raise SdpParseError: on a malformed body or a non-SDP Content-Type.
    """
    if not message.body:
        return None
    contentType = message.contentType
    if contentType not in (None, "application/sdp"):
        raise SdpParseError(f"body is {contentType}, not application/sdp")
    return SessionDescription.parse(message.body)
