"""
The SIP user agent core (RFC 3261 sections 8, 12-15) over the transaction
layer.

L{UserAgent} is the transaction user of a L{TransactionLayer}: it checks
every new request the way a UAS must (8.2: method, Request-URI scheme,
Require, Content-Type, Accept), answers OPTIONS, matches in-dialog requests
to dialogs (481 when none), creates a L{Call} for each new INVITE and for
each C{call(target)}, sends ACKs for 2xx responses, retries any request
challenged with 401/407 using L{lmevoip.sip.auth.DigestAuthenticator}, and
learns its public address from the C{received}/C{rport} of its Via (RFC
3581).

It is sans-IO like the layers below it: messages leave through an injected
C{send(message, addr)} and every timer runs on an injected C{IReactorTime}.
L{listenSip} wires it to a L{SipDatagramProtocol} on a real reactor.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping, NamedTuple

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from zope.interface import implementer

from lmevoip.interfaces import ISipMessageHandler, ITransactionUser, IUserAgent
from lmevoip.sip._grammar import formatHost
from lmevoip.sip.auth import DigestAuthenticator
from lmevoip.sip.call import (
    AuthenticationFailed,
    Call,
    CallState,
    RequestTimeout,
    StaticMediaHandler,
    TransportFailed,
)
from lmevoip.sip.dialog import CSeqOutOfOrder, Dialog, DialogTable, uriAddress
from lmevoip.sip.headers import NameAddr
from lmevoip.sip.message import Headers, Request, Response, SipParseError, makeResponse
from lmevoip.sip.transaction import (
    TransactionLayer,
    TransactionState,
    generateTag,
    makeCancel,
)
from lmevoip.sip.transport import SipDatagramProtocol
from lmevoip.sip.uri import SipUri, parseUri

Address = tuple[str, int]

#: The methods this user agent accepts (the Allow header).
ALLOWED_METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS")
#: Methods it knows but refuses with 405 (RFC 3261 8.2.1); any other
#: method is answered 501.
KNOWN_METHODS = frozenset(ALLOWED_METHODS + (
    "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"))
#: What a body may be (the Accept header).
ACCEPTED_CONTENT = "application/sdp"


class CallLimitError(Exception):
    """
    C{UserAgent.call} while C{maxCalls} calls (or C{maxDialogs} dialogs)
    are live.
    """


@dataclass
class UserAgentConfig:
    """
    What a user agent needs to know about itself.

    @ivar host: the local IP address put in Via (and in Contact when no
        public address is known); it must be an address the peer can send
        to (not C{0.0.0.0}).
    @ivar port: the local UDP port.
    @ivar user: the user part of our From and Contact URIs.
    @ivar displayName: the display name of our From, or L{None}.
    @ivar domain: the host of our From URI (default: C{host}).
    @ivar publicHost: a fixed public address for Contact (overrides what is
        learned from rport/received), or L{None}.
    @ivar publicPort: the port that goes with C{publicHost} (default:
        C{port}).
    @ivar learnPublicAddress: whether to learn the public address from the
        C{received}/C{rport} of responses (RFC 3581).
    @ivar t1: T1 (s). @ivar t2: T2 (s). @ivar t4: T4 (s).
    @ivar maxTransactions: the transaction bound (503 beyond).
    @ivar maxDialogs: the dialog bound (503 beyond).
    @ivar maxCalls: the call bound (503 beyond).
    @ivar retryAfter: the Retry-After (s) of those 503 responses.
    @ivar authUsername: the digest username, or L{None} for no
        authentication.
    @ivar authPassword: the digest password (never logged or repr'd).
    @ivar supported: the option tags we support: the Supported header and
        the Require check (420 for any other).
    @ivar userAgentHeader: the User-Agent / Server header value, or L{None}.
    @ivar autoRinging: send 180 (Ringing) as soon as an INVITE is offered.
    @ivar ringTimeout: seconds an incoming call may ring unanswered before
        it is refused with 480 (0 for never).
    @ivar timerC: the client INVITE Proceeding backstop (s), or L{None}.
    """

    host: str = "127.0.0.1"
    port: int = 5060
    user: str = "lmevoip"
    displayName: str | None = None
    domain: str | None = None
    publicHost: str | None = None
    publicPort: int | None = None
    learnPublicAddress: bool = True
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    maxTransactions: int = 4096
    maxDialogs: int = 1024
    maxCalls: int = 256
    retryAfter: int = 5
    authUsername: str | None = None
    authPassword: str | None = field(default=None, repr=False)
    supported: tuple[str, ...] = ()
    userAgentHeader: str | None = "lmevoip"
    autoRinging: bool = True
    ringTimeout: float = 180.0
    timerC: float | None = 181.0


class ClientRequest:
    """
    One request we sent, followed through its authentication retries: on a
    401/407 the request is re-sent with credentials (new branch, CSeq + 1,
    RFC 3261 22.1 and 8.1.3.5) and the challenge is not passed on; when the
    authenticator gives up, the 401/407 is passed on with L{authGiveUp} set.

    @ivar request: the request last sent.
    @ivar destination: where it goes.
    @ivar transaction: its current client transaction.
    @ivar dialog: the dialog it belongs to, or L{None}.
    @ivar authGiveUp: the L{lmevoip.sip.auth.AuthGiveUp} when a challenge
        could not be answered, else L{None}.
    @ivar authRetries: how many times it was re-sent with credentials.
    """

    log = Logger()

    def __init__(self, ua: UserAgent, request: Request, destination: Address,
                 handler, dialog: Dialog | None = None) -> None:
        self._ua = ua
        self.request = request
        self.destination = destination
        self.handler = handler
        self.dialog = dialog
        self.transaction = None
        self.authGiveUp = None
        self.authRetries = 0

    def start(self) -> ClientRequest:
        """Send the request in a new client transaction."""
        self.transaction = self._ua._startTransaction(self.request, self.destination, self)
        return self

    def responseReceived(self, response: Response, tx) -> None:
        """A response on one of our transactions (from the UA core)."""
        if tx is not self.transaction:
            return
        if response.status in (401, 407) and self._retryWithCredentials(response):
            return
        self.handler.responseReceived(self, response)

    def _retryWithCredentials(self, response: Response) -> bool:
        authenticator = self._ua.authenticator
        if authenticator is None:
            return False
        outcome = authenticator.challengedResponse(response, self.request)
        if not outcome.retry:
            self.authGiveUp = outcome
            self.log.info("{method} to {dest}: {status}, not retrying ({reason})",
                          method=self.request.method, dest=self.destination,
                          status=response.status, reason=outcome.reason.value)
            return False
        old = self.request
        headers = old.headers.copy()
        # A new Via without branch (the layer adds a fresh one) and CSeq + 1.
        headers.set("Via", self._ua._via())
        seq = self.dialog.nextLocalSeq() if self.dialog is not None else old.cseq.seq + 1
        headers.set("CSeq", f"{seq} {old.method}")
        outcome.apply(headers)
        retry = Request(old.method, old.uri, headers, old.body)
        self.authRetries += 1
        self.log.info("{method} to {dest}: answering {status} (retry {n})",
                      method=old.method, dest=self.destination, status=response.status,
                      n=self.authRetries)
        try:
            self.transaction = self._ua._startTransaction(retry, self.destination, self)
        except Exception as e:
            self.log.warn("authenticated retry not sent: {error}", error=str(e))
            return False
        self.request = retry
        return True

    def timedOut(self, tx) -> None:
        """The transaction timed out (Timer B/F, or Timer C)."""
        if tx is self.transaction:
            self.handler.requestFailed(self, RequestTimeout(
                f"no final response to {self.request.method} from {self.destination}"))

    def transportFailed(self, tx, failure) -> None:
        """The transaction could not send."""
        if tx is self.transaction:
            self.handler.requestFailed(self, TransportFailed(failure.getErrorMessage()))


class _OptionsHandler:
    """Turns an out-of-dialog OPTIONS into a Deferred."""

    def __init__(self) -> None:
        self.deferred = Deferred()

    def responseReceived(self, cr: ClientRequest, response: Response) -> None:
        if response.status < 200 or self.deferred.called:
            return
        if cr.authGiveUp is not None:
            self.deferred.errback(AuthenticationFailed(response, cr.authGiveUp))
        else:
            self.deferred.callback(response)

    def requestFailed(self, cr: ClientRequest, error: Exception) -> None:
        if not self.deferred.called:
            self.deferred.errback(error)


class _ForkHandler:
    """The BYE sent to end an extra forked dialog; nothing to do."""

    def responseReceived(self, cr, response) -> None:
        pass

    def requestFailed(self, cr, error) -> None:
        pass


def _acceptsSdp(accept: list[str]) -> bool:
    for value in accept:
        media = value.split(";", 1)[0].strip().lower()
        if media in ("application/sdp", "application/*", "*/*"):
            return True
    return False


@implementer(ITransactionUser, ISipMessageHandler, IUserAgent)
class UserAgent:
    """
    The user agent core.

    @ivar clock: the C{IReactorTime}.
    @ivar config: the L{UserAgentConfig}.
    @ivar transactions: the L{TransactionLayer}.
    @ivar dialogs: the L{DialogTable}.
    @ivar observer: the L{IUserAgentObserver}, or L{None} (incoming calls
        are then refused with 480).
    @ivar mediaHandlerFactory: C{factory(call)} returning the
        L{ICallMediaHandler} of an incoming call (or of an outgoing one
        placed without one).
    @ivar authenticator: the L{DigestAuthenticator}, or L{None}.
    @ivar learnedAddress: the C{(host, port)} learned from rport/received,
        or L{None}.
    """

    log = Logger()

    def __init__(self, clock, send: Callable[[Request | Response, Address], object],
                 config: UserAgentConfig | None = None, observer=None,
                 mediaHandlerFactory: Callable[[Call], object] | None = None,
                 authenticator: DigestAuthenticator | None = None) -> None:
        """
        @param clock: an C{IReactorTime}.
        @param send: C{send(message, (host, port))}: the transport.
        @param config: the L{UserAgentConfig} (defaults otherwise).
        @param observer: the L{IUserAgentObserver}.
        @param mediaHandlerFactory: see L{mediaHandlerFactory}; by default a
            L{StaticMediaHandler} on C{config.host}, RTP port 9 (discard).
        @param authenticator: a ready L{DigestAuthenticator}; by default one
            is made from C{config.authUsername}/C{authPassword} when set.
        """
        self.clock = clock
        self.config = config = config or UserAgentConfig()
        self.observer = observer
        self.mediaHandlerFactory = mediaHandlerFactory or (
            lambda call: StaticMediaHandler(config.host, 9))
        if authenticator is None and config.authUsername is not None:
            authenticator = DigestAuthenticator(config.authUsername, config.authPassword or "")
        self.authenticator = authenticator
        self.transactions = TransactionLayer(
            clock, send, self, t1=config.t1, t2=config.t2, t4=config.t4,
            maxTransactions=config.maxTransactions, retryAfter=config.retryAfter,
            timerC=config.timerC)
        self.dialogs = DialogTable(config.maxDialogs)
        self.learnedAddress: Address | None = None
        self._calls: dict[str, Call] = {}
        self._pending: dict[object, ClientRequest] = {}
        self._acks: dict[object, tuple[Request, Address]] = {}

    # -- addresses ----------------------------------------------------------

    @property
    def publicAddress(self) -> Address | None:
        """
        The address peers should reach us at: the configured public address,
        else the learned one, else L{None}.
        """
        config = self.config
        if config.publicHost:
            return config.publicHost, config.publicPort or config.port
        return self.learnedAddress

    @property
    def contactAddress(self) -> Address:
        """The host and port of our Contact."""
        return self.publicAddress or (self.config.host, self.config.port)

    @property
    def contactHeader(self) -> str:
        """Our Contact header value."""
        host, port = self.contactAddress
        return f"<sip:{self.config.user}@{formatHost(host)}:{port}>"

    @property
    def fromAddr(self) -> NameAddr:
        """Our From (without tag)."""
        config = self.config
        uri = SipUri("sip", config.user, None, config.domain or config.host)
        return NameAddr(uri, config.displayName)

    def _warning(self, error) -> str:
        """
        The Warning value (20.43) for a L{NegotiationError}: code, our
        host:port as warn-agent, the RFC text.
        """
        agent = f"{formatHost(self.config.host)}:{self.config.port}"
        return f'{error.warningCode} {agent} "{error.warningText}"'

    def _via(self) -> str:
        """A Via value without branch, with rport (RFC 3581)."""
        return f"SIP/2.0/UDP {formatHost(self.config.host)}:{self.config.port};rport"

    # -- tables -------------------------------------------------------------

    @property
    def calls(self) -> Mapping[str, Call]:
        """A read-only view of the live calls by Call-ID."""
        return MappingProxyType(self._calls)

    def _addDialog(self, dialog: Dialog) -> None:
        self.dialogs.add(dialog)

    def _removeDialog(self, dialog: Dialog) -> None:
        self.dialogs.remove(dialog)

    def _callEnded(self, call: Call) -> None:
        if call.dialog is not None:
            self.dialogs.remove(call.dialog)
        if self._calls.get(call.callId) is call:
            del self._calls[call.callId]

    # -- receiving ----------------------------------------------------------

    def messageReceived(self, message: Request | Response, source: Address) -> None:
        """
        A parsed message from the transport: requests and responses go to
        the transaction layer; responses first teach us our public address.
        """
        if message.isRequest:
            self.transactions.receiveRequest(message, source)
        else:
            self._learnAddress(message)
            self.transactions.receiveResponse(message, source)

    def _learnAddress(self, response: Response) -> None:
        if not self.config.learnPublicAddress:
            return
        try:
            top = response.topVia
        except SipParseError:
            return
        if top.received is None and top.rport is None:
            return
        if top.host != self.config.host.strip("[]").lower() or top.sentBy[1] != self.config.port:
            return
        address = (top.received or top.host, top.rport or top.sentBy[1])
        if address != self.learnedAddress:
            self.learnedAddress = address
            self.log.info("public address {host}:{port} learned from rport/received",
                          host=address[0], port=address[1])
            if self.observer is not None:
                try:
                    self.observer.publicAddressDiscovered(*address)
                except Exception:
                    self.log.failure("observer raised in publicAddressDiscovered")

    # -- ITransactionUser ---------------------------------------------------

    def requestReceived(self, request: Request, tx) -> None:
        """A request from the transaction layer (see the module docstring)."""
        method = request.method
        if method == "ACK":
            self._ackReceived(request)
            return
        if tx is None:
            return
        if method == "CANCEL":
            self._cancelReceived(request, tx)
            return
        try:
            refusal = self._check(request)
            if refusal is not None:
                self._refuse(request, tx, *refusal)
                return
            if request.toAddr.tag:
                self._inDialogRequest(request, tx)
            elif method == "INVITE":
                self._newCall(request, tx)
            elif method == "OPTIONS":
                tx.sendResponse(self._optionsAnswer(request, generateTag()))
            else:  # BYE outside any dialog
                self._refuse(request, tx, 481, None, ())
        except SipParseError as e:
            self.log.info("bad {method}: {error}", method=method, error=str(e))
            self._refuse(request, tx, 400, str(e)[:80], ())
        except Exception:
            # A bug must not leave the server transaction waiting forever.
            self.log.failure("error handling {method}", method=method)
            if tx.lastResponse is None or tx.lastResponse.status < 200:
                self._refuse(request, tx, 500, None, ())

    def _check(self, request: Request):
        """
        The UAS checks of RFC 3261 8.2, in the RFC's order; returns
        C{(status, reason, extraHeaders)} to refuse the request, or L{None}.
        """
        method = request.method
        if method not in ALLOWED_METHODS:
            allow = (("Allow", ", ".join(ALLOWED_METHODS)),)
            if method in KNOWN_METHODS:
                return 405, None, allow
            return 501, None, allow
        # 8.2.2.1: a UA handles sip: and sips: only (tel: included).
        if not isinstance(request.uri, SipUri):
            return 416, None, ()
        # 8.2.2.3: Require (Proxy-Require is for proxies; a UAS ignores it).
        unsupported = [tag for tag in request.require if tag not in self.config.supported]
        if unsupported:
            return 420, None, (("Unsupported", ", ".join(unsupported)),)
        # 8.2.3: the body must be something we understand.
        if request.body:
            encoding = request.headers.get("Content-Encoding")
            if request.contentType != ACCEPTED_CONTENT:
                return 415, None, (("Accept", ACCEPTED_CONTENT),)
            if encoding is not None and encoding.strip().lower() != "identity":
                return 415, None, (("Accept-Encoding", "identity"),)
        # An INVITE is answered with SDP: the peer must accept it (21.4.7).
        if method == "INVITE" and "Accept" in request.headers and not _acceptsSdp(request.accept):
            return 406, None, (("Accept", ACCEPTED_CONTENT),)
        return None

    def _refuse(self, request: Request, tx, status: int, reason: str | None,
                extra) -> None:
        dialog = None
        try:
            dialog = self.dialogs.matchRequest(request)
        except SipParseError:
            pass
        response = self._response(request, status, reason,
                                  toTag=dialog.localTag if dialog else generateTag())
        for name, value in extra:
            response.headers.add(name, value)
        try:
            tx.sendResponse(response)
        except Exception as e:
            self.log.info("could not send {status}: {error}", status=status, error=str(e))

    def _inDialogRequest(self, request: Request, tx) -> None:
        dialog = self.dialogs.matchRequest(request)
        if dialog is None or dialog.owner is None:
            self.log.info("{method} for an unknown dialog (call-id {callId}): 481",
                          method=request.method, callId=request.callId)
            self._refuse(request, tx, 481, None, ())
            return
        try:
            dialog.checkRequest(request)
        except CSeqOutOfOrder as e:
            self._refuse(request, tx, 500, "CSeq Out Of Order", ())
            self.log.info("{method} in {dialog}: {error}", method=request.method,
                          dialog=dialog, error=str(e))
            return
        call = dialog.owner
        if request.method == "INVITE":
            call.reinviteReceived(request, tx)
        elif request.method == "BYE":
            call.byeReceived(request, tx)
        else:  # OPTIONS
            tx.sendResponse(self._optionsAnswer(request, dialog.localTag))

    def _optionsAnswer(self, request: Request, toTag: str) -> Response:
        response = self._response(request, 200, toTag=toTag, dialogForming=True)
        response.headers.add("Accept", ACCEPTED_CONTENT)
        return response

    def _newCall(self, request: Request, tx) -> None:
        config = self.config
        callId = request.callId
        if callId in self._calls:
            # 8.2.2.2: a second INVITE for a call we already have (forked to
            # us twice, or a Call-ID clash).
            self._refuse(request, tx, 482, None, ())
            return
        if len(self._calls) >= config.maxCalls or self.dialogs.full:
            self.log.warn("call limit reached ({calls} calls, {dialogs} dialogs): 503 to {callId}",
                          calls=len(self._calls), dialogs=len(self.dialogs), callId=callId)
            self._refuse(request, tx, 503, None, (("Retry-After", str(config.retryAfter)),))
            return
        call = Call(self, False, callId, None)
        try:
            call.mediaHandler = self.mediaHandlerFactory(call)
        except Exception:
            self.log.failure("media handler factory raised")
            self._refuse(request, tx, 500, None, ())
            return
        self._calls[callId] = call
        call._receive(request, tx)
        if call.state is not CallState.INCOMING:
            return
        if self.observer is None:
            call.reject(480, "Temporarily Unavailable")
            return
        try:
            self.observer.incomingCall(call)
        except Exception:
            self.log.failure("observer raised in incomingCall")

    def _ackReceived(self, ack: Request) -> None:
        try:
            dialog = self.dialogs.matchRequest(ack)
        except SipParseError:
            return
        if dialog is not None and dialog.owner is not None:
            dialog.owner.ackReceived(ack)
        else:
            self.log.debug("ACK for no dialog dropped (call-id {callId})", callId=ack.callId)

    def _cancelReceived(self, cancel: Request, tx) -> None:
        invite = self.transactions.matchCancel(cancel)
        call = self._calls.get(cancel.callId) if invite is not None else None
        if invite is None:
            self._refuse(cancel, tx, 481, None, ())
            return
        toTag = call.dialog.localTag if call is not None and call.dialog else generateTag()
        tx.sendResponse(self._response(cancel, 200, toTag=toTag))
        if call is not None and not call.outgoing:
            call.cancelReceived()

    def responseReceived(self, response: Response, tx) -> None:
        """A response from the transaction layer."""
        if tx is None:
            self._stray2xx(response)
            return
        if tx in self._acks and 200 <= response.status < 300:
            ack, destination = self._acks[tx]
            if ack.toAddr.tag == response.toAddr.tag:
                # A 2xx retransmission: the ACK again (13.2.2.4).
                self.transactions.sendAck(ack, destination)
                return
        cr = self._pending.get(tx)
        if cr is not None:
            cr.responseReceived(response, tx)

    def _stray2xx(self, response: Response) -> None:
        """A 2xx to INVITE after its transaction ended: re-ACK it in its dialog."""
        try:
            dialog = self.dialogs.matchResponse(response)
        except SipParseError:
            return
        if dialog is None:
            self.log.info("stray {status} for no dialog dropped (call-id {callId})",
                          status=response.status, callId=response.callId)
            return
        ack, destination = dialog.createRequest("ACK", self._via(), seq=response.cseq.seq)
        self._decorateRequest(ack)
        self.transactions.sendAck(ack, destination)

    def transactionTimedOut(self, tx) -> None:
        """Timer B/F/H (or C) fired."""
        cr = self._pending.get(tx)
        if cr is not None:
            cr.timedOut(tx)

    def transportError(self, tx, failure) -> None:
        """A transaction could not send."""
        cr = self._pending.get(tx)
        if cr is not None:
            cr.transportFailed(tx, failure)

    def transactionTerminated(self, tx) -> None:
        """A transaction left the layer: forget what we kept for it."""
        self._pending.pop(tx, None)
        self._acks.pop(tx, None)

    # -- building and sending -------------------------------------------------

    def _decorateRequest(self, request: Request) -> None:
        """The headers every request we send carries."""
        if self.config.userAgentHeader and request.method != "ACK":
            request.headers.add("User-Agent", self.config.userAgentHeader)
        if request.method == "INVITE":
            request.headers.add("Allow", ", ".join(ALLOWED_METHODS))
            # RFC 3261 11.2 / 13.2.1: Supported SHOULD be present, and an
            # empty value (no extensions) is valid.
            request.headers.add("Supported", ", ".join(self.config.supported))

    def _response(self, request: Request, status: int, reason: str | None = None,
                  toTag: str | None = None, body: bytes = b"",
                  dialogForming: bool = False) -> Response:
        """
        A response to C{request} (8.2.6): Contact, Allow and Supported on
        dialog-forming and OPTIONS responses (101-299), the body as SDP.
        """
        response = makeResponse(request, status, reason, toTag=None if status == 100 else toTag)
        if dialogForming and 100 < status < 300:
            if request.method == "INVITE":
                # 12.1.1: copy every Record-Route of the request, in order,
                # so the caller learns the same route set (behind a
                # record-routing proxy its ACK and BYE take that path).
                for value in request.headers.getAll("Record-Route"):
                    response.headers.add("Record-Route", value)
            response.headers.add("Contact", self.contactHeader)
            response.headers.add("Allow", ", ".join(ALLOWED_METHODS))
            response.headers.add("Supported", ", ".join(self.config.supported))
        if self.config.userAgentHeader:
            response.headers.add("Server", self.config.userAgentHeader)
        if body:
            response.headers.add("Content-Type", ACCEPTED_CONTENT)
            response.body = body
        return response

    def _startTransaction(self, request: Request, destination: Address, cr: ClientRequest):
        """
        Start a client transaction for C{cr}.

        @raise TransportFailed: when the first transmission already failed
            (the transaction is then terminated; the layer logged why).
        @raise lmevoip.sip.transaction.TransactionLimitError: at the bound.
        """
        tx = self.transactions.sendRequest(request, destination)
        if tx.state is TransactionState.TERMINATED:
            raise TransportFailed(f"{request.method} could not be sent to {destination}")
        self._pending[tx] = cr
        return tx

    def _sendRequest(self, request: Request, destination: Address, handler,
                     dialog: Dialog | None = None) -> ClientRequest:
        """Send a request (with authentication retries) for C{handler}."""
        return ClientRequest(self, request, destination, handler, dialog).start()

    def _sendAck(self, cr: ClientRequest, ack: Request, destination: Address) -> None:
        """Send the ACK for a 2xx and keep it for the 2xx retransmissions."""
        self.transactions.sendAck(ack, destination)
        if cr.transaction is not None and cr.transaction.state is not TransactionState.TERMINATED:
            self._acks[cr.transaction] = (ack, destination)

    def _sendCancel(self, cr: ClientRequest, handler) -> None:
        """CANCEL the INVITE of C{cr} (9.1), to the INVITE's destination."""
        cancel = makeCancel(cr.request)
        self._decorateRequest(cancel)
        ClientRequest(self, cancel, cr.destination, handler).start()

    def _ackAndByeFork(self, cr: ClientRequest, response: Response) -> None:
        """
        An extra 2xx from another fork (13.2.2.4): acknowledge it and end
        that dialog with BYE, without keeping it.
        """
        try:
            dialog = Dialog.fromResponse(cr.request, response)
            ack, destination = dialog.createRequest("ACK", self._via(), seq=response.cseq.seq)
            self._decorateRequest(ack)
            self.transactions.sendAck(ack, destination)
            bye, destination = dialog.createRequest("BYE", self._via())
            self._decorateRequest(bye)
            self._sendRequest(bye, destination, _ForkHandler(), dialog)
        except Exception as e:
            self.log.info("could not end the extra dialog of {status}: {error}",
                          status=response.status, error=str(e))

    def _newRequest(self, method: str, target: SipUri, callId: str | None = None,
                    seq: int = 1) -> Request:
        headers = Headers()
        headers.add("Via", self._via())
        headers.add("Max-Forwards", "70")
        headers.add("From", str(self.fromAddr.withTag(generateTag())))
        headers.add("To", f"<{target}>")
        headers.add("Call-ID", callId or f"{secrets.token_hex(12)}@{self.config.host.strip('[]')}")
        headers.add("CSeq", f"{seq} {method}")
        headers.add("Contact", self.contactHeader)
        request = Request(method, target, headers)
        self._decorateRequest(request)
        return request

    # -- public API -----------------------------------------------------------

    def call(self, target: str | SipUri, observer=None, mediaHandler=None,
             destination: Address | None = None) -> Call:
        """
        Place a call: an INVITE with our SDP offer to C{target}.

        @param target: the callee's SIP URI (text or L{SipUri}).
        @param observer: an L{ICallObserver} for the call, or L{None}.
        @param mediaHandler: the call's L{ICallMediaHandler}; by default
            from C{mediaHandlerFactory}.
        @param destination: C{(host, port)} to send to (an outbound proxy);
            by default the target's host and port (an IP address: no DNS).
        @return: the L{Call}, in state Calling.
        @raise CallLimitError: at C{maxCalls} or C{maxDialogs}.
        @raise ValueError: on a target that is not a SIP URI.
        @raise lmevoip.sip.transaction.TransactionLimitError: at
            C{maxTransactions}.
        """
        uri = parseUri(target) if isinstance(target, str) else target
        if not isinstance(uri, SipUri):
            raise ValueError(f"cannot call {target}: not a sip: or sips: URI")
        if len(self._calls) >= self.config.maxCalls or self.dialogs.full:
            self.log.warn("call limit reached: call to {target} refused", target=str(uri))
            raise CallLimitError(f"{len(self._calls)} calls live")
        destination = destination or uriAddress(uri)
        invite = self._newRequest("INVITE", uri, seq=1)
        call = Call(self, True, invite.callId, mediaHandler, [observer])
        if mediaHandler is None:
            call.mediaHandler = self.mediaHandlerFactory(call)
        offer = call.mediaHandler.makeOffer(False)
        invite.headers.add("Content-Type", ACCEPTED_CONTENT)
        invite.body = offer.serialize()
        self._calls[call.callId] = call
        try:
            call._start(invite, destination, offer)
        except Exception:
            del self._calls[call.callId]
            raise
        return call

    def sendOptions(self, target: str | SipUri, destination: Address | None = None) -> Deferred:
        """
        Send an out-of-dialog OPTIONS (a capability query or keep-alive).

        @return: a Deferred firing with the final response, or failing with
            L{RequestTimeout}, L{TransportFailed} or L{AuthenticationFailed}.
        """
        uri = parseUri(target) if isinstance(target, str) else target
        handler = _OptionsHandler()
        try:
            request = self._newRequest("OPTIONS", uri)
            request.headers.add("Accept", ACCEPTED_CONTENT)
            self._sendRequest(request, destination or uriAddress(uri), handler)
        except Exception as e:
            handler.deferred.errback(e)
        return handler.deferred

    def stop(self) -> None:
        """
        Shut down: every call ends (best-effort BYE/CANCEL/480 first, reason
        SHUTDOWN), then every transaction is terminated.
        """
        for call in list(self._calls.values()):
            call._shutdown()
        self.transactions.stop()


class SipStack(NamedTuple):
    """
    What L{listenSip} returns.

    @ivar protocol: the L{SipDatagramProtocol}.
    @ivar userAgent: the L{UserAgent}.
    @ivar port: the C{IListeningPort}.
    """

    protocol: SipDatagramProtocol
    userAgent: UserAgent
    port: object

    def stop(self) -> Deferred:
        """Stop the user agent, then stop listening."""
        self.userAgent.stop()
        return maybeDeferred(self.port.stopListening)


def listenSip(reactor, config: UserAgentConfig, observer=None,
              mediaHandlerFactory=None, authenticator=None) -> SipStack:
    """
    Listen for SIP on UDP C{config.host}:C{config.port} (0 picks a free
    port, written back into C{config.port}) and wire a L{UserAgent} to it.

    @param reactor: an C{IReactorUDP} and C{IReactorTime}.
    @return: a L{SipStack}; C{stack.stop()} shuts it down.
    """
    protocol = SipDatagramProtocol()
    interface = config.host.strip("[]")
    port = reactor.listenUDP(config.port, protocol, interface=interface)
    config.port = port.getHost().port
    ua = UserAgent(reactor, protocol.send, config, observer, mediaHandlerFactory, authenticator)
    protocol.handler = ua
    return SipStack(protocol, ua, port)
