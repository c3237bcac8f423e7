"""
The SIP transaction layer (RFC 3261 section 17, with the RFC 6026 corrections
for 2xx responses to INVITE), sans-IO.

Four explicit state machines, one class each, named after the RFC figures:

  - L{ClientInviteTransaction} (17.1.1, RFC 6026 figure 5):
    Calling, Proceeding, Completed, Accepted, Terminated;
  - L{ClientNonInviteTransaction} (17.1.2, figure 6):
    Trying, Proceeding, Completed, Terminated;
  - L{ServerInviteTransaction} (17.2.1, RFC 6026 figure 7):
    Proceeding, Completed, Confirmed, Accepted, Terminated;
  - L{ServerNonInviteTransaction} (17.2.2, figure 8):
    Trying, Proceeding, Completed, Terminated.

L{TransactionLayer} owns the transaction tables, matches incoming messages to
transactions (17.1.3, 17.2.3, and the RFC 2543 rules for branches without the
magic cookie), creates client transactions for the transaction user (TU),
bounds the number of live transactions (answering 503 past the bound) and
removes every transaction the instant it terminates.

Nothing here owns a socket or a reactor: messages leave through an injected
C{send(message, addr)} callable and every timer goes through an injected
C{IReactorTime}.
"""

from __future__ import annotations

import secrets
from enum import Enum
from types import MappingProxyType
from typing import Callable, ClassVar, Iterator, Mapping

from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from lmevoip.interfaces import (
    IClientTransaction,
    IServerTransaction,
    ITransactionLayer,
)
from lmevoip.ratelimit import LogRateLimiter
from lmevoip.sip.headers import Via
from lmevoip.sip.message import (
    Headers,
    Request,
    Response,
    SipParseError,
    makeResponse,
)
from lmevoip.sip.timers import Timer, TimerSettings, retransmitIntervals

#: The RFC 3261 branch prefix (8.1.1.7): a branch that starts with it (and has
#: something after it) is unique per transaction.
MAGIC_COOKIE = "z9hG4bK"

#: Transports that need no retransmissions from the transaction layer.
RELIABLE_TRANSPORTS = frozenset({"TCP", "TLS", "SCTP", "TLS-SCTP", "WS", "WSS"})

Address = tuple[str, int]


class TransactionState(Enum):
    """
    The states of the four transaction state machines (RFC 3261 figures 5-8
    and RFC 6026's Accepted).
    """

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


def _machine(**edges: tuple[TransactionState, ...]) -> Mapping[TransactionState, frozenset]:
    """
    A transition table from C{STATE=(next, ...)} keywords. Every state may
    also move to Terminated (a transport error, or the TU giving up), and
    Terminated goes nowhere.
    """
    table = {TransactionState[name]: frozenset(targets) | {TransactionState.TERMINATED}
             for name, targets in edges.items()}
    table[TransactionState.TERMINATED] = frozenset()
    return MappingProxyType(table)


_S = TransactionState


class TransactionLimitError(Exception):
    """
    The layer already holds C{maxTransactions} live transactions.
    """


class TransactionStateError(Exception):
    """
    The TU asked a transaction for something its state does not allow (for
    example a second final response on a server transaction).
    """


def generateBranch() -> str:
    """
    A fresh RFC 3261 branch: the magic cookie and 80 random bits.
    """
    return MAGIC_COOKIE + secrets.token_hex(10)


def generateTag() -> str:
    """
    A fresh From/To tag (19.3: at least 32 random bits; here 64).
    """
    return secrets.token_hex(8)


def hasMagicCookie(branch: str | None) -> bool:
    """
    Whether C{branch} is an RFC 3261 branch: the magic cookie followed by a
    unique part. A bare C{z9hG4bK} (RFC 4475 3.3.8, badbranch) is not, and is
    matched the RFC 2543 way.
    """
    return branch is not None and branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE)


def isReliable(via: Via) -> bool:
    """
    Whether the transport named in a Via is reliable (no retransmissions,
    zero linger timers). Unknown transports are treated as unreliable.
    """
    return via.transport.upper() in RELIABLE_TRANSPORTS


def _stripBrackets(host: str) -> str:
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    return host


def responseAddress(via: Via) -> Address:
    """
    Where a response goes (RFC 3261 18.2.2 and RFC 3581 section 4), from the
    top Via of the request as the server saw it (see L{stampVia}):

      1. C{maddr}: that address, the sent-by port (5060 by default);
      2. C{received} and C{rport=N}: the received address, port N (the
         source of the request, which is what gets through a NAT);
      3. C{received}: the received address, the sent-by port;
      4. otherwise the sent-by host and port.

    @param via: the top Via of the request (or of the response, which
        copies it).
    @return: C{(host, port)}.
    """
    host, port = via.sentBy
    maddr = via.params.get("maddr")
    if maddr:
        return _stripBrackets(maddr), port
    received = via.received
    if received:
        received = _stripBrackets(received)
        rport = via.rport
        if rport is not None:
            return received, rport
        return received, port
    rport = via.rport
    if rport is not None:
        return _stripBrackets(host), rport
    return _stripBrackets(host), port


def _replaceTopVia(message: Request | Response, via: Via) -> None:
    """
    Replace the top Via value of C{message}, keeping the others in order.
    """
    values = message.headers.getAll("Via")
    values[0] = str(via)
    # set() keeps the position of the first Via field; prepend() inserts
    # before it, so building from the bottom keeps the Vias together and
    # in order.
    message.headers.set("Via", values[-1])
    for value in reversed(values[:-1]):
        message.headers.prepend("Via", value)


def _ensureBranch(request: Request) -> str:
    """
    Give the top Via of an outgoing request a fresh branch unless it has
    one, and return the branch.
    """
    top = request.topVia
    if top.branch is None:
        _replaceTopVia(request, Via(top.transport, top.host, top.port,
                                    {**top.params, "branch": generateBranch()}))
    return request.topVia.branch


def stampVia(request: Request, sourceHost: str, sourcePort: int) -> Request:
    """
    Record where a request really came from in its top Via, as a server
    transport does on receipt (RFC 3261 18.2.1, RFC 3581 section 4):
    C{received=sourceHost} when the sent-by host differs from the source
    address (always when C{rport} is present), and C{rport=sourcePort} when
    the request carries an empty C{rport}. L{responseAddress} then sends the
    responses back to the source address and port.

    Stamping twice from the same source gives the same Via.

    @param request: the received request; changed in place.
    @param sourceHost: the source IP address of the datagram.
    @param sourcePort: the source port of the datagram.
    @return: C{request}.
    @raise SipParseError: when the request has no parseable top Via.
    """
    top = request.topVia
    sourceHost = _stripBrackets(sourceHost)
    params = dict(top.params)
    changed = False
    if top.hasRport:
        if top.rport != sourcePort:
            params["rport"] = str(sourcePort)
            changed = True
        if top.received != sourceHost:
            params["received"] = sourceHost
            changed = True
    elif _stripBrackets(top.host).lower() != sourceHost.lower() and top.received != sourceHost:
        params["received"] = sourceHost
        changed = True
    if changed:
        _replaceTopVia(request, Via(top.transport, top.host, top.port, params))
    return request


def _sameHopRequest(method: str, invite: Request, to: str) -> Request:
    """
    An ACK or CANCEL that travels the INVITE's hop and branch (17.1.1.3,
    9.1): the INVITE's Request-URI, single top Via, Max-Forwards, From,
    Call-ID, CSeq number and Route headers, with C{method} and To C{to}.
    """
    vias = invite.headers.getAll("Via")
    if not vias:
        raise ValueError(f"{invite.method} request has no Via")
    maxForwards = invite.maxForwards
    headers = Headers()
    headers.add("Via", vias[0])
    headers.add("Max-Forwards", str(70 if maxForwards is None else maxForwards))
    headers.add("From", invite.headers.get("From"))
    headers.add("To", to)
    headers.add("Call-ID", invite.callId)
    headers.add("CSeq", f"{invite.cseq.seq} {method}")
    for route in invite.headers.getAll("Route"):
        headers.add("Route", route)
    return Request(method, invite.uri, headers)


def makeAck(invite: Request, response: Response) -> Request:
    """
    The ACK a client INVITE transaction sends for a 300-699 response
    (RFC 3261 17.1.1.3): the INVITE's Request-URI, Call-ID, From and single
    top Via, the To of the response (with its tag), CSeq with the INVITE's
    number and method ACK, the INVITE's Route headers and Max-Forwards.

    @param invite: the INVITE that created the transaction.
    @param response: the non-2xx final response being acknowledged.
    @return: the ACK request.
    """
    return _sameHopRequest("ACK", invite, response.headers.get("To"))


def makeCancel(invite: Request) -> Request:
    """
    A CANCEL for a pending INVITE (RFC 3261 9.1): the same Request-URI,
    Call-ID, To, From and CSeq number (method CANCEL), a single Via equal to
    the INVITE's top Via (so the CANCEL carries the INVITE's branch and
    reaches the same server transaction), and the INVITE's Route headers.

    Send it with L{TransactionLayer.sendRequest} to the INVITE's destination;
    only once a provisional response has arrived (9.1).

    @param invite: the INVITE request as it was sent (with its branch).
    @return: the CANCEL request.
    """
    if invite.method != "INVITE":
        raise ValueError(f"can only cancel an INVITE, not {invite.method}")
    return _sameHopRequest("CANCEL", invite, invite.headers.get("To"))


def _viaIdentity(via: Via) -> tuple:
    """
    A Via reduced to what RFC 2543 matching compares: everything but the
    received and rport parameters this side adds on receipt.
    """
    params = tuple(sorted((k.lower(), v) for k, v in via.params.items()
                          if k.lower() not in ("received", "rport")))
    host, port = via.sentBy
    return (via.transport.upper(), _stripBrackets(host).lower(), port, params)


def _methodClass(method: str) -> str:
    """ACK belongs to the INVITE transaction (17.2.3)."""
    return "INVITE" if method == "ACK" else method


def serverKey(request: Request, method: str | None = None) -> tuple:
    """
    The server transaction key of a request (RFC 3261 17.2.3).

    With a magic-cookie branch: the branch, the sent-by host and port of the
    top Via and the method (ACK counts as INVITE). Otherwise the RFC 2543
    fields: Request-URI, From tag, Call-ID, CSeq number, method class and the
    top Via; the To tag is compared separately (see
    L{TransactionLayer.findServerTransaction}) because an ACK carries the
    To tag of the response, not of the INVITE.

    @param method: the method to match as, instead of the request's own
        (CANCEL matching uses C{"INVITE"}, 9.2).
    @raise SipParseError: when a header the key needs is malformed.
    """
    top = request.topVia
    methodClass = _methodClass(method or request.method)
    branch = top.branch
    if hasMagicCookie(branch):
        host, port = top.sentBy
        return ("rfc3261", branch, _stripBrackets(host).lower(), port, methodClass)
    key = ("rfc2543", str(request.uri), request.fromAddr.tag, request.callId,
           request.cseq.seq, methodClass, _viaIdentity(top))
    if methodClass != "INVITE":
        # Non-INVITE requests match on their own To tag too.
        key += (request.toAddr.tag,)
    return key


class _Transaction:
    """
    What the four state machines share: the state with its transition table,
    the named timers, sending with transport-error handling (17.1.4,
    17.2.4) and termination.

    @ivar request: the request that created the transaction.
    @ivar key: the key of the transaction in the layer's table.
    @ivar state: the current L{TransactionState}.
    @ivar reliable: whether the transport of the top Via is reliable.
    @ivar lastResponse: the most recent response received (client) or sent
        (server), or L{None}.
    """

    log = Logger()

    #: state -> the states it may move to.
    transitions: ClassVar[Mapping[TransactionState, frozenset[TransactionState]]] = {}
    initialState: ClassVar[TransactionState]

    def __init__(self, layer: TransactionLayer, request: Request, key: tuple) -> None:
        self._layer = layer
        self.request = request
        self.key = key
        self.state = self.initialState
        self.reliable = isReliable(request.topVia)
        self.lastResponse: Response | None = None
        self._timers: dict[str, Timer] = {}

    @property
    def timers(self) -> TimerSettings:
        """The layer's L{TimerSettings}."""
        return self._layer.timers

    @property
    def branch(self) -> str | None:
        """The branch of the creating request's top Via."""
        return self.request.topVia.branch

    def _timer(self, name: str) -> Timer:
        timer = self._timers.get(name)
        if timer is None:
            timer = Timer(self._layer.clock, name, getattr(self, "_timer" + name + "Fired"))
            self._timers[name] = timer
        return timer

    def activeTimers(self) -> list[str]:
        """The names of the timers now pending, sorted (for tests and logs)."""
        return sorted(name for name, timer in self._timers.items() if timer.active)

    def _cancelTimers(self, *names: str) -> None:
        for name in names or list(self._timers):
            timer = self._timers.get(name)
            if timer is not None:
                timer.cancel()

    def _setState(self, new: TransactionState) -> None:
        old = self.state
        if new is old:
            return
        if new not in self.transitions[old]:
            raise TransactionStateError(f"{type(self).__name__}: no transition {old.value} -> {new.value}")
        # No log event per transition: emitting one costs more than the
        # transition itself; timeouts, transport errors and limits are logged.
        self.state = new
        if new is TransactionState.TERMINATED:
            self._cancelTimers()
            self._layer._transactionTerminated(self)

    def _send(self, message: Request | Response, addr: Address) -> bool:
        """
        Hand C{message} to the transport. A transport error terminates the
        transaction and is reported to the TU (17.1.4, 17.2.4).

        @return: whether the transport took the message.
        """
        failure = self._trySend(message, addr)
        if failure is not None:
            self._transportFailed(failure)
            return False
        return True

    def _trySend(self, message: Request | Response, addr: Address) -> Failure | None:
        """
        Hand C{message} to the transport.

        @return: C{None}, or the failure of the transport, logged but not yet
            reported (see L{_transportFailed}).
        """
        try:
            self._layer._transport(message, addr)
        except Exception:
            failure = Failure()
            self.log.warn("{tx}: transport error sending to {addr}: {error}",
                          tx=self, addr=addr, error=failure.getErrorMessage())
            return failure
        return None

    def _transportFailed(self, failure: Failure) -> None:
        """
        Report a transport error to the TU and terminate (17.1.4, 17.2.4).
        """
        if self.state is not TransactionState.TERMINATED:
            self._layer._callTu("transportError", self, failure)
            self._setState(TransactionState.TERMINATED)

    def _linger(self, name: str, delay: float) -> None:
        """
        Start a linger timer (D, I, J, K) or, when its value is zero (a
        reliable transport), terminate at once.
        """
        if self.state is TransactionState.TERMINATED:
            return
        if delay <= 0:
            self._setState(TransactionState.TERMINATED)
        else:
            self._timer(name).start(delay)

    def _timeout(self, timerName: str) -> None:
        self.log.info("{tx}: Timer {timer} fired in {state}: transaction timeout",
                      tx=self, timer=timerName, state=self.state.value)
        self._layer._callTu("transactionTimedOut", self)
        self._setState(TransactionState.TERMINATED)

    def terminate(self) -> None:
        """
        Terminate the transaction now (the TU gives up on it, or the layer
        stops): cancel its timers and remove it from the layer. Every state
        may move to Terminated; harmless when already there.
        """
        self._setState(TransactionState.TERMINATED)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.request.method} branch={self.branch} "
                f"{self.state.value}>")


@implementer(IClientTransaction)
class _ClientTransaction(_Transaction):
    """
    What the client machines share.

    @ivar destination: C{(host, port)} the request (and an ACK) goes to.
    """

    def __init__(self, layer: TransactionLayer, request: Request, key: tuple,
                 destination: Address) -> None:
        super().__init__(layer, request, key)
        self.destination = destination

    def _sendRequest(self) -> bool:
        return self._send(self.request, self.destination)

    def _passUp(self, response: Response) -> None:
        self._layer._callTu("responseReceived", response, self)


class ClientInviteTransaction(_ClientTransaction):
    """
    The client INVITE transaction (RFC 3261 17.1.1, RFC 6026 7.2 and 8.4).

    Calling: the INVITE is retransmitted on Timer A (T1, doubling, unreliable
    transports only) until Timer B (64*T1) reports a timeout. A 1xx moves to
    Proceeding, which stops retransmissions. A 2xx moves to Accepted (Timer
    M, 64*T1), where further 2xx responses are passed to the TU, which sends
    its own ACKs. A 300-699 moves to Completed: the transaction sends the ACK
    itself (L{makeAck}), re-sends it for each retransmitted final response,
    and terminates on Timer D.

    Timer C is an lmevoip backstop: when no provisional or final response
    arrives in Proceeding within C{timerC} of the last provisional one, the
    TU is told of a timeout (it should send a CANCEL), and after a further
    64*T1 the transaction is destroyed (9.1).
    """

    initialState = TransactionState.CALLING
    transitions = _machine(
        CALLING=(_S.PROCEEDING, _S.COMPLETED, _S.ACCEPTED),
        PROCEEDING=(_S.COMPLETED, _S.ACCEPTED),
        COMPLETED=(),
        ACCEPTED=(),
    )

    def __init__(self, layer, request, key, destination) -> None:
        super().__init__(layer, request, key, destination)
        self.ack: Request | None = None
        self._scheduleA: Iterator[float] = retransmitIntervals(self.timers.timerA)
        self._timerCExpired = False

    def start(self) -> None:
        """Send the INVITE and start Timers A and B (Calling)."""
        if not self.reliable:
            self._timer("A").start(next(self._scheduleA))
        self._timer("B").start(self.timers.timerB)
        self._sendRequest()

    def _timerAFired(self) -> None:
        if self.state is TransactionState.CALLING:
            self._timer("A").start(next(self._scheduleA))
            self._sendRequest()

    def _timerBFired(self) -> None:
        if self.state is TransactionState.CALLING:
            self._timeout("B")

    def _timerCFired(self) -> None:
        if self.state is not TransactionState.PROCEEDING:
            return
        if not self._timerCExpired:
            self._timerCExpired = True
            self._timer("C").start(64 * self.timers.t1)
            self.log.info("{tx}: Timer C fired: no final response in Proceeding", tx=self)
            self._layer._callTu("transactionTimedOut", self)
        else:
            self.log.info("{tx}: no final response 64*T1 after Timer C: destroyed", tx=self)
            self._setState(TransactionState.TERMINATED)

    def _timerDFired(self) -> None:
        if self.state is TransactionState.COMPLETED:
            self._setState(TransactionState.TERMINATED)

    def _timerMFired(self) -> None:
        if self.state is TransactionState.ACCEPTED:
            self._setState(TransactionState.TERMINATED)

    def receiveResponse(self, response: Response) -> None:
        """
        Feed a response that matched this transaction (17.1.1.2).
        """
        status = response.status
        state = self.state
        if state in (TransactionState.CALLING, TransactionState.PROCEEDING):
            self.lastResponse = response
            if status < 200:
                if state is TransactionState.CALLING:
                    self._cancelTimers("A", "B")
                    self._setState(TransactionState.PROCEEDING)
                if self.timers.timerC is not None and not self._timerCExpired:
                    # Every provisional response restarts Timer C (16.7).
                    self._timer("C").start(self.timers.timerC)
                self._passUp(response)
            elif status < 300:
                self._cancelTimers("A", "B", "C")
                self._setState(TransactionState.ACCEPTED)
                self._timer("M").start(self.timers.timerM)
                self._passUp(response)
            else:
                self._cancelTimers("A", "B", "C")
                self._setState(TransactionState.COMPLETED)
                self.ack = makeAck(self.request, response)
                # The ACK goes on the wire before the TU hears of the
                # response: a TU that retries at once (401/407 with
                # credentials) must not put its new INVITE ahead of the ACK
                # that completes this one (17.1.1.3). A transport error on
                # the ACK is reported after the response, so the TU still
                # learns the outcome first.
                failure = self._trySend(self.ack, self.destination)
                self._passUp(response)
                if failure is not None:
                    self._transportFailed(failure)
                elif self.state is TransactionState.COMPLETED:
                    self._linger("D", self.timers.forTransport("D", self.reliable))
        elif state is TransactionState.COMPLETED:
            if status >= 300 and self.ack is not None:
                self.log.debug("{tx}: final response retransmission, ACK re-sent", tx=self)
                self._send(self.ack, self.destination)
        elif state is TransactionState.ACCEPTED:
            if 200 <= status < 300:
                self._passUp(response)
            else:
                self.log.info("{tx}: {status} in Accepted dropped", tx=self, status=status)


class ClientNonInviteTransaction(_ClientTransaction):
    """
    The client non-INVITE transaction (RFC 3261 17.1.2).

    Trying: the request is retransmitted on Timer E (T1, doubling, capped at
    T2; unreliable transports only) until Timer F (64*T1) reports a timeout.
    A 1xx moves to Proceeding, where Timer E re-sends every T2. A final
    response moves to Completed, which absorbs response retransmissions
    until Timer K (T4; zero on reliable transports).
    """

    initialState = TransactionState.TRYING
    transitions = _machine(
        TRYING=(_S.PROCEEDING, _S.COMPLETED),
        PROCEEDING=(_S.COMPLETED,),
        COMPLETED=(),
    )

    def __init__(self, layer, request, key, destination) -> None:
        super().__init__(layer, request, key, destination)
        self._scheduleE: Iterator[float] = retransmitIntervals(self.timers.timerE, self.timers.t2)

    def start(self) -> None:
        """Send the request and start Timers E and F (Trying)."""
        if not self.reliable:
            self._timer("E").start(next(self._scheduleE))
        self._timer("F").start(self.timers.timerF)
        self._sendRequest()

    def _timerEFired(self) -> None:
        if self.state is TransactionState.TRYING:
            self._timer("E").start(next(self._scheduleE))
            self._sendRequest()
        elif self.state is TransactionState.PROCEEDING:
            self._timer("E").start(self.timers.t2)
            self._sendRequest()

    def _timerFFired(self) -> None:
        if self.state in (TransactionState.TRYING, TransactionState.PROCEEDING):
            self._timeout("F")

    def _timerKFired(self) -> None:
        if self.state is TransactionState.COMPLETED:
            self._setState(TransactionState.TERMINATED)

    def receiveResponse(self, response: Response) -> None:
        """
        Feed a response that matched this transaction (17.1.2.2).
        """
        if self.state not in (TransactionState.TRYING, TransactionState.PROCEEDING):
            return  # Completed absorbs retransmissions.
        self.lastResponse = response
        if response.status < 200:
            self._setState(TransactionState.PROCEEDING)
            self._passUp(response)
        else:
            self._cancelTimers("E", "F")
            self._setState(TransactionState.COMPLETED)
            self._passUp(response)
            self._linger("K", self.timers.forTransport("K", self.reliable))


@implementer(IServerTransaction)
class _ServerTransaction(_Transaction):
    """
    What the server machines share.

    @ivar source: C{(host, port)} the creating request came from.
    @ivar responseDestination: C{(host, port)} responses go to, from the
        top Via (L{responseAddress}).
    """

    def __init__(self, layer: TransactionLayer, request: Request, key: tuple,
                 source: Address) -> None:
        super().__init__(layer, request, key)
        self.source = source
        self.responseDestination = responseAddress(request.topVia)

    def _sendResponse(self, response: Response) -> bool:
        self.lastResponse = response
        return self._send(response, self.responseDestination)

    def _resendLast(self) -> None:
        if self.lastResponse is not None:
            self._send(self.lastResponse, self.responseDestination)

    def _checkResponse(self, response: Response) -> None:
        if self.state is TransactionState.TERMINATED:
            raise TransactionStateError(f"{self!r}: terminated, cannot send {response.status}")


class ServerInviteTransaction(_ServerTransaction):
    """
    The server INVITE transaction (RFC 3261 17.2.1, RFC 6026 7.1 and 8.7).

    Proceeding: 100 (Trying) goes out after C{tryingDelay} unless the TU
    answers first; retransmitted INVITEs get the latest provisional response.
    A 2xx from the TU moves to Accepted (Timer L, 64*T1): the transaction
    never retransmits the 2xx itself (the TU does, see
    L{Invite2xxRetransmitter}), absorbs INVITE retransmissions and passes
    ACKs to the TU. A 300-699 moves to Completed: the response is re-sent on
    Timer G (T1 doubling to T2, unreliable transports) and for each INVITE
    retransmission; an ACK moves to Confirmed (Timer I, T4) and Timer H
    (64*T1) without an ACK is reported to the TU as a timeout.
    """

    initialState = TransactionState.PROCEEDING
    transitions = _machine(
        PROCEEDING=(_S.COMPLETED, _S.ACCEPTED),
        COMPLETED=(_S.CONFIRMED,),
        CONFIRMED=(),
        ACCEPTED=(),
    )

    def __init__(self, layer, request, key, source) -> None:
        super().__init__(layer, request, key, source)
        self._scheduleG: Iterator[float] = retransmitIntervals(self.timers.timerG, self.timers.t2)

    def start(self) -> None:
        """Arm the 100 (Trying) timer (17.2.1)."""
        self._timer("Trying").start(self.timers.tryingDelay)

    def _sendTrying(self) -> None:
        trying = makeResponse(self.request, 100)
        timestamp = self.request.headers.get("Timestamp")
        if timestamp is not None:
            trying.headers.add("Timestamp", timestamp)  # 8.2.6.1
        self._sendResponse(trying)

    def _timerTryingFired(self) -> None:
        if self.state is TransactionState.PROCEEDING and self.lastResponse is None:
            self._sendTrying()

    def _timerGFired(self) -> None:
        if self.state is TransactionState.COMPLETED:
            self._timer("G").start(next(self._scheduleG))
            self._resendLast()

    def _timerHFired(self) -> None:
        if self.state is TransactionState.COMPLETED:
            self._timeout("H")

    def _timerIFired(self) -> None:
        if self.state is TransactionState.CONFIRMED:
            self._setState(TransactionState.TERMINATED)

    def _timerLFired(self) -> None:
        if self.state is TransactionState.ACCEPTED:
            self._setState(TransactionState.TERMINATED)

    def sendResponse(self, response: Response) -> None:
        """
        Send a response from the TU through the transaction.

        @raise TransactionStateError: for a response the state does not allow
            (anything after a non-2xx final; anything but a 2xx in Accepted).
        """
        self._checkResponse(response)
        self._cancelTimers("Trying")
        status = response.status
        if self.state is TransactionState.PROCEEDING:
            if status < 200:
                self._sendResponse(response)
            elif status < 300:
                self._setState(TransactionState.ACCEPTED)
                self._timer("L").start(self.timers.timerL)
                self._sendResponse(response)
            else:
                self._setState(TransactionState.COMPLETED)
                if not self.reliable:
                    self._timer("G").start(next(self._scheduleG))
                self._timer("H").start(self.timers.timerH)
                self._sendResponse(response)
        elif self.state is TransactionState.ACCEPTED and 200 <= status < 300:
            self._sendResponse(response)
        else:
            raise TransactionStateError(f"{self!r}: cannot send {status} in {self.state.value}")

    def receiveRequest(self, request: Request) -> None:
        """
        Feed a request that matched this transaction: a retransmitted INVITE
        or an ACK (17.2.1).
        """
        state = self.state
        if request.method == "ACK":
            if state is TransactionState.COMPLETED:
                self._cancelTimers("G", "H")
                self._setState(TransactionState.CONFIRMED)
                self._linger("I", self.timers.forTransport("I", self.reliable))
            elif state is TransactionState.ACCEPTED:
                self._layer._callTu("requestReceived", request, self)
            # Confirmed absorbs ACK retransmissions; an ACK in Proceeding
            # acknowledges nothing.
            return
        if state is TransactionState.PROCEEDING:
            if self.lastResponse is None:
                self._cancelTimers("Trying")
                self._sendTrying()
            else:
                self._resendLast()
        elif state is TransactionState.COMPLETED:
            self._resendLast()
        # Confirmed and Accepted absorb INVITE retransmissions.


class ServerNonInviteTransaction(_ServerTransaction):
    """
    The server non-INVITE transaction (RFC 3261 17.2.2).

    Trying absorbs request retransmissions; a 1xx from the TU moves to
    Proceeding, where retransmissions get the latest provisional response; a
    final response moves to Completed, which re-sends it for every
    retransmission until Timer J (64*T1; zero on reliable transports).
    """

    initialState = TransactionState.TRYING
    transitions = _machine(
        TRYING=(_S.PROCEEDING, _S.COMPLETED),
        PROCEEDING=(_S.COMPLETED,),
        COMPLETED=(),
    )

    def start(self) -> None:
        """Nothing to arm: Trying waits for the TU."""

    def _timerJFired(self) -> None:
        if self.state is TransactionState.COMPLETED:
            self._setState(TransactionState.TERMINATED)

    def sendResponse(self, response: Response) -> None:
        """
        Send a response from the TU through the transaction.

        @raise TransactionStateError: after the final response.
        """
        self._checkResponse(response)
        if self.state is TransactionState.COMPLETED:
            raise TransactionStateError(f"{self!r}: final response already sent")
        if response.status < 200:
            self._setState(TransactionState.PROCEEDING)
            self._sendResponse(response)
        else:
            self._setState(TransactionState.COMPLETED)
            if self._sendResponse(response):
                self._linger("J", self.timers.forTransport("J", self.reliable))

    def receiveRequest(self, request: Request) -> None:
        """
        Feed a retransmission of the request (17.2.2): absorbed in Trying,
        answered with the last response in Proceeding and Completed.
        """
        if self.state in (TransactionState.PROCEEDING, TransactionState.COMPLETED):
            self._resendLast()


@implementer(ITransactionLayer)
class TransactionLayer:
    """
    The transaction layer: the tables of live transactions, matching, and
    the bound on how many there may be.

    @ivar clock: the C{IReactorTime} every timer uses.
    @ivar timers: the L{TimerSettings}.
    @ivar maxTransactions: the bound on live client plus server transactions.
    @ivar retryAfter: the Retry-After value (seconds) of the 503 sent past
        the bound.
    @ivar deliverStray2xx: whether a 2xx to INVITE that matches no client
        transaction goes to the TU (C{responseReceived(response, None)});
        every other stray response is dropped and logged.
    """

    log = Logger()

    def __init__(self, clock, send: Callable[[Request | Response, Address], object], tu,
                 t1: float = 0.5, t2: float = 4.0, t4: float = 5.0,
                 maxTransactions: int = 4096, retryAfter: int = 5,
                 timerD: float = 32.0, timerC: float | None = 181.0,
                 tryingDelay: float = 0.2, deliverStray2xx: bool = True) -> None:
        """
        @param clock: an C{IReactorTime}.
        @param send: C{send(message, (host, port))}, the transport; raising
            means a transport error.
        @param tu: the L{ITransactionUser}.
        @param t1: T1, seconds.
        @param t2: T2, seconds.
        @param t4: T4, seconds.
        @param maxTransactions: the bound on live transactions.
        @param retryAfter: Retry-After of the 503 past the bound, seconds.
        @param timerD: Timer D on unreliable transports (at least 32 s).
        @param timerC: the client INVITE Proceeding backstop, or L{None}.
        @param tryingDelay: how long the server INVITE transaction waits
            before sending 100 (Trying) itself.
        @param deliverStray2xx: pass stray 2xx-to-INVITE responses to the TU.
        """
        if maxTransactions < 1:
            raise ValueError("maxTransactions must be at least 1")
        self.clock = clock
        self._logLimiter = LogRateLimiter(clock)
        self._transport = send
        self.tu = tu
        self.timers = TimerSettings(t1=t1, t2=t2, t4=t4, timerD=timerD, timerC=timerC,
                                    tryingDelay=tryingDelay)
        self.maxTransactions = maxTransactions
        self.retryAfter = retryAfter
        self.deliverStray2xx = deliverStray2xx
        self._clients: dict[tuple, _ClientTransaction] = {}
        self._servers: dict[tuple, _ServerTransaction] = {}

    # -- tables ---------------------------------------------------------

    @property
    def clientTransactions(self) -> Mapping[tuple, _ClientTransaction]:
        """A read-only view of the live client transactions by key."""
        return MappingProxyType(self._clients)

    @property
    def serverTransactions(self) -> Mapping[tuple, _ServerTransaction]:
        """A read-only view of the live server transactions by key."""
        return MappingProxyType(self._servers)

    def __len__(self) -> int:
        return len(self._clients) + len(self._servers)

    def _transactionTerminated(self, tx: _Transaction) -> None:
        table = self._clients if isinstance(tx, _ClientTransaction) else self._servers
        if table.get(tx.key) is tx:
            del table[tx.key]
        self._callTu("transactionTerminated", tx)

    def _callTu(self, name: str, *args) -> None:
        try:
            getattr(self.tu, name)(*args)
        except Exception:
            self.log.failure("transaction user raised in {callback}", callback=name)

    def stop(self) -> None:
        """
        Terminate every live transaction (shutdown): timers cancelled,
        tables emptied.
        """
        for tx in list(self._clients.values()) + list(self._servers.values()):
            tx.terminate()

    # -- client side ----------------------------------------------------

    def sendRequest(self, request: Request, addr: Address) -> _ClientTransaction:
        """
        Start a client transaction for C{request} towards C{addr}.

        The request must carry a top Via (the transport's sent-by); a
        branch is generated (C{z9hG4bK} + random) when it has none. A
        transport error on the first transmission is reported to the TU
        before this returns, and the returned transaction is then already
        Terminated.

        @return: the L{ClientInviteTransaction} or
            L{ClientNonInviteTransaction}.
        @raise ValueError: for an ACK (send it with L{sendAck}), a request
            without Via, a CSeq method that is not the request's, or a branch
            already in use for this method.
        @raise TransactionLimitError: at C{maxTransactions}.
        """
        if request.method == "ACK":
            raise ValueError("ACK is not sent through a client transaction; use sendAck()")
        if len(self) >= self.maxTransactions:
            self.log.warn("transaction limit {limit} reached; {method} not sent",
                          limit=self.maxTransactions, method=request.method)
            raise TransactionLimitError(f"{self.maxTransactions} transactions live")
        if not request.vias:
            raise ValueError(f"{request.method} request has no Via")
        if request.cseq.method != request.method:
            raise ValueError(f"CSeq method {request.cseq.method} is not {request.method}")
        key = (_ensureBranch(request), request.method)
        if key in self._clients:
            raise ValueError(f"a {request.method} transaction with branch {key[0]} exists")
        cls = ClientInviteTransaction if request.method == "INVITE" else ClientNonInviteTransaction
        tx = cls(self, request, key, addr)
        self._clients[key] = tx
        tx.start()
        return tx

    def sendAck(self, ack: Request, addr: Address) -> bool:
        """
        Send an ACK for a 2xx outside any transaction (13.2.2.4: the UA core
        does this), generating a branch when the top Via has none.

        @return: whether the transport took it (a failure is logged).
        """
        _ensureBranch(ack)
        return self._sendStateless(ack, addr)

    def receiveResponse(self, response: Response, source: Address) -> _ClientTransaction | None:
        """
        Route a received response to its client transaction (17.1.3: the
        top Via branch and the CSeq method). A response matching none is
        stray: a 2xx to INVITE goes to the TU when C{deliverStray2xx}, any
        other is dropped with a log line.

        @return: the matching transaction, or L{None}.
        """
        # 18.1.2: a response for us carries exactly our Via. Count the raw
        # values first: validating every Via of a response that is dropped
        # anyway would be wasted work.
        count = len(response.headers.getAll("Via"))
        if count != 1:
            self.log.info("dropped {status} from {source}: {count} Via values",
                          status=response.status, source=source, count=count)
            return None
        try:
            branch = response.topVia.branch
            method = response.cseq.method
        except SipParseError as e:
            self.log.info("dropped response from {source}: {error}", source=source, error=str(e))
            return None
        tx = self._clients.get((branch, method))
        if tx is not None:
            tx.receiveResponse(response)
            return tx
        if self.deliverStray2xx and method == "INVITE" and 200 <= response.status < 300:
            self.log.debug("stray {status} to INVITE from {source} passed to the TU",
                           status=response.status, source=source)
            self._callTu("responseReceived", response, None)
        else:
            self.log.info("dropped stray {status} {method} response from {source}",
                          status=response.status, method=method, source=source)
        return None

    # -- server side ----------------------------------------------------

    def findServerTransaction(self, request: Request, method: str | None = None
                              ) -> _ServerTransaction | None:
        """
        The server transaction C{request} matches (17.2.3), or L{None}.

        For RFC 2543 keys the To tag is compared here: an INVITE
        retransmission (or a CANCEL) carries the To tag of the INVITE, an
        ACK the To tag of the response the transaction sent.

        @param method: match as this method (9.2: C{"INVITE"} for CANCEL).
        @raise SipParseError: when a header the key needs is malformed.
        """
        key = serverKey(request, method)
        tx = self._servers.get(key)
        if tx is None or key[0] == "rfc3261" or _methodClass(method or request.method) != "INVITE":
            return tx
        toTag = request.toAddr.tag
        if request.method == "ACK" and method is None:
            sent = tx.lastResponse
            return tx if sent is not None and sent.toAddr.tag == toTag else None
        return tx if tx.request.toAddr.tag == toTag else None

    def matchCancel(self, cancel: Request) -> ServerInviteTransaction | None:
        """
        The server INVITE transaction a received CANCEL cancels (9.2): the
        one the CANCEL would match were its method INVITE. The UA core
        answers the CANCEL 200 (481 when this is L{None}) and, when the
        INVITE transaction is still Proceeding, the INVITE 487.
        """
        try:
            tx = self.findServerTransaction(cancel, "INVITE")
        except SipParseError:
            return None
        return tx if isinstance(tx, ServerInviteTransaction) else None

    def receiveRequest(self, request: Request, source: Address) -> _ServerTransaction | None:
        """
        Route a received request: stamp its top Via with the source
        (L{stampVia}), then hand it to the server transaction it matches or
        create one and pass the request to the TU
        (C{requestReceived(request, transaction)}). An ACK matching no
        transaction goes to the TU with transaction L{None}. Past
        C{maxTransactions} a new request is answered 503 with Retry-After
        (an ACK never is). A request whose Via, CSeq, Call-ID, From or To is
        malformed is answered 400 where it can be, else dropped.

        @param source: C{(host, port)} the request came from.
        @return: the server transaction, or L{None}.
        """
        try:
            stampVia(request, *source)
            _ = (request.callId, request.fromAddr, request.toAddr)  # validate them
            cseq = request.cseq
            if cseq.method != request.method:
                raise SipParseError(f"CSeq method {cseq.method} does not match {request.method}")
            tx = self.findServerTransaction(request)
        except SipParseError as e:
            self.log.info("bad {method} from {source}: {error}", method=request.method,
                          source=source, error=str(e))
            if request.method != "ACK":
                self._answerStatelessly(request, 400, str(e)[:100] or None)
            return None
        if tx is not None:
            tx.receiveRequest(request)
            return tx
        if request.method == "ACK":
            self._callTu("requestReceived", request, None)
            return None
        if len(self) >= self.maxTransactions:
            suppressed = self._logLimiter.allow("transaction-limit")
            if suppressed is not None:
                self.log.warn("transaction limit {limit} reached: 503 to {method} from {source}"
                              " ({suppressed} more since the last such line)",
                              limit=self.maxTransactions, method=request.method, source=source,
                              suppressed=suppressed)
            self._answerStatelessly(request, 503, None, (("Retry-After", str(self.retryAfter)),))
            return None
        key = serverKey(request)
        if key in self._servers:
            # RFC 2543 keys only: same fields as a live INVITE transaction
            # but another To tag. One table slot per key; drop it.
            self.log.info("{method} from {source} collides with a live RFC 2543 transaction; dropped",
                          method=request.method, source=source)
            return None
        cls = ServerInviteTransaction if request.method == "INVITE" else ServerNonInviteTransaction
        tx = cls(self, request, key, source)
        self._servers[key] = tx
        tx.start()
        self._callTu("requestReceived", request, tx)
        return tx

    # -- stateless sending ----------------------------------------------

    def sendResponse(self, response: Response) -> bool:
        """
        Send a response outside any transaction, to the address its top Via
        names (L{responseAddress}); the UA core's 2xx retransmissions
        (L{Invite2xxRetransmitter}) can go this way.

        @return: whether the transport took it (a failure is logged).
        """
        try:
            addr = responseAddress(response.topVia)
        except SipParseError as e:
            self.log.info("response {status} not sent: {error}", status=response.status, error=str(e))
            return False
        return self._sendStateless(response, addr)

    def _sendStateless(self, message: Request | Response, addr: Address) -> bool:
        try:
            self._transport(message, addr)
        except Exception as e:
            self.log.warn("transport error sending statelessly to {addr}: {error}",
                          addr=addr, error=str(e) or type(e).__name__)
            return False
        return True

    def _answerStatelessly(self, request: Request, status: int, reason: str | None,
                           extra: tuple[tuple[str, str], ...] = ()) -> None:
        try:
            # Without a usable top Via there is nowhere a response may go
            # (18.2.2), so nothing is sent.
            addr = responseAddress(request.topVia)
            response = makeResponse(request, status, reason, toTag=generateTag())
            for name, value in extra:
                response.headers.add(name, value)
        except (SipParseError, ValueError, TypeError) as e:
            self.log.info("cannot answer {status}: {error}", status=status, error=str(e))
            return
        self._sendStateless(response, addr)


class Invite2xxRetransmitter:
    """
    The UAS core's 2xx retransmission for an INVITE (RFC 3261 13.3.1.4): the
    2xx is re-sent after T1, then at intervals doubling up to T2, until the
    ACK arrives (L{ackReceived}) or 64*T1 pass, when C{onTimeout} is called
    (the UAS should then end the session with BYE).

    The first transmission is the caller's (through
    L{ServerInviteTransaction.sendResponse}); this object only schedules the
    retransmissions.

    @ivar retransmissions: how many times the 2xx was re-sent.
    """

    log = Logger()

    def __init__(self, clock, resend: Callable[[], object],
                 onTimeout: Callable[[], object] | None = None,
                 t1: float = 0.5, t2: float = 4.0) -> None:
        """
        @param clock: an C{IReactorTime}.
        @param resend: re-sends the 2xx, e.g.
            C{lambda: layer.sendResponse(ok)}.
        @param onTimeout: called when no ACK came within 64*T1.
        """
        self._schedule = retransmitIntervals(t1, t2)
        self._retransmit = Timer(clock, "2xx", self._fire)
        self._giveUp = Timer(clock, "2xx-timeout", self._timedOut)
        self._resend = resend
        self._onTimeout = onTimeout
        self._t1 = t1
        self.retransmissions = 0

    @property
    def active(self) -> bool:
        """Whether retransmissions are still scheduled."""
        return self._giveUp.active

    def start(self) -> None:
        """Schedule the retransmissions (call right after sending the 2xx)."""
        self._retransmit.start(next(self._schedule))
        self._giveUp.start(64 * self._t1)

    def ackReceived(self) -> None:
        """The ACK arrived: stop retransmitting."""
        self.stop()

    def stop(self) -> None:
        """Stop retransmitting without calling C{onTimeout}."""
        self._retransmit.cancel()
        self._giveUp.cancel()

    def _fire(self) -> None:
        self._retransmit.start(next(self._schedule))
        self.retransmissions += 1
        try:
            self._resend()
        except Exception:
            self.log.failure("2xx retransmission failed")

    def _timedOut(self) -> None:
        self._retransmit.cancel()
        self.log.info("no ACK for the 2xx within 64*T1")
        if self._onTimeout is not None:
            self._onTimeout()
