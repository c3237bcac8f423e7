"""
The SIP transport over UDP (RFC 3261 section 18), IPv4 and IPv6.

L{SipDatagramProtocol} is deliberately thin, in the twisted.names manner:

  - each datagram is parsed with L{lmevoip.sip.message.parse};
  - a datagram made only of CR and LF octets (C{"\\r\\n"}, C{"\\r\\n\\r\\n"})
    is a keep-alive (RFC 5626 section 3.5.1 uses the double CRLF): it is
    counted in L{SipDatagramProtocol.keepAlivesReceived}, never treated as
    an error;
  - a datagram that does not parse is logged and dropped; when it is a
    request with enough identity to answer (the L{SipParseError} carries a
    C{status} and its recovered headers hold a Via and a CSeq) it is answered
    statelessly with that status (400, 505, ...), to the address its top Via
    names once stamped with the source (RFC 3581). A response is never
    answered;
  - a datagram that looks like STUN (RFC 5389: first two bits zero, 20-octet
    header) goes to L{SipDatagramProtocol.stunHandler} when one is set;
  - everything else goes to the L{ISipMessageHandler} (the user agent) as
    C{messageReceived(message, (host, port))}.

Sending goes through L{SipDatagramProtocol.send}, which accepts a message
or raw bytes and calls every send observer with C{(addr, nbytes)} for each
datagram written: the keep-alive layer uses this to know when a flow last
carried traffic.

L{SipTransportService} makes the protocol a child of a Twisted service
tree: it listens on start and stops listening on stop.
"""

from __future__ import annotations

from typing import Callable

from twisted.application.service import Service
from twisted.internet.defer import maybeDeferred
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from zope.interface import implementer

from lmevoip.interfaces import ISipTransport
from lmevoip.sip.headers import NameAddr
from lmevoip.sip.message import Headers, Request, Response, SipParseError, parse
from lmevoip.ratelimit import LogRateLimiter
from lmevoip.sip.transaction import generateTag, stampVia

Address = tuple[str, int]

#: Octets that make up a CRLF keep-alive.
_CRLF_OCTETS = frozenset(b"\r\n")


class TransportNotConnected(Exception):
    """
    L{SipDatagramProtocol.send} was called while the protocol is not
    listening (no datagram transport).
    """


def isKeepAlive(data: bytes) -> bool:
    """
    Whether a datagram is a CRLF keep-alive: one or more octets, all CR or
    LF (C{"\\r\\n"}, C{"\\r\\n\\r\\n"}, and the bare variants some phones send).
    """
    return bool(data) and len(data) <= 16 and all(octet in _CRLF_OCTETS for octet in data)


def looksLikeStun(data: bytes) -> bool:
    """
    Whether a datagram could be a STUN message (RFC 5389 section 6): at
    least the 20-octet header and the two most significant bits zero. A SIP
    message starts with a printable letter, so the two never collide.
    """
    return len(data) >= 20 and data[0] & 0xC0 == 0


def errorResponse(error: SipParseError, source: Address) -> tuple[Response, Address] | None:
    """
    The stateless answer to a request that failed to parse, or L{None} when
    it cannot be answered.

    A request can be answered when the error carries a status (the message
    layer sets one only for requests) and its recovered headers hold a Via
    and a CSeq: those two are what a client transaction matches a response
    on (17.1.3), so RFC 4475's insuf.dat (no From, To or Call-ID) still gets
    its 400. The response copies every Via (the top one stamped with
    C{received}/C{rport} from the source, RFC 3581) and the first From, To
    (with a tag added when it parses and has none), Call-ID and CSeq that
    are present, verbatim; duplicated single-value fields (multi01.dat) are
    copied once. A header value that cannot be copied (control characters
    the parser recovered but a message may not carry) is left out; without a
    copyable Via and CSeq there is no answer.

    The answer goes back to the datagram's source address, whatever its Via
    says. RFC 3261 18.2.2 would send to the Via's C{maddr} or sent-by, but
    those come from a message we could not even parse: honouring them would
    let anyone reflect our error responses at a third party. A client that
    sent something parseable enough to deserve an answer is, in practice,
    at the source address (RFC 3581 makes that the rule whenever C{rport}
    is present).

    @param error: the parse error.
    @param source: where the datagram came from.
    @return: C{(response, destination)} or L{None}.
    """
    if error.status is None or error.headers is None:
        return None
    raw = error.headers
    vias = raw.getAll("Via")
    if not vias or raw.get("CSeq") is None:
        return None
    headers = Headers()
    try:
        holder = Request("OPTIONS", "sip:invalid.invalid")
        for value in vias:
            holder.headers.add("Via", value)
        stampVia(holder, *source)
        vias = holder.headers.getAll("Via")
    except (SipParseError, ValueError):
        pass
    try:
        for value in vias:
            headers.add("Via", value)
    except ValueError:
        return None
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = raw.get(name)
        if value is None:
            continue
        if name == "To":
            try:
                to = NameAddr.parse(value)
                if to.tag is None:
                    value = str(to.withTag(generateTag()))
            except SipParseError:
                pass
        try:
            headers.add(name, value)
        except ValueError:
            if name == "CSeq":
                return None
    reason = error.reason
    if reason is not None and any(ord(ch) < 32 for ch in reason):
        reason = None
    try:
        return Response(error.status, reason, headers), source
    except ValueError:
        return None


@implementer(ISipTransport)
class SipDatagramProtocol(DatagramProtocol):
    """
    SIP over UDP: parse, count, answer what cannot be parsed, pass the rest
    to a handler; send with observers.

    @ivar handler: the L{ISipMessageHandler} (the user agent), or L{None}
        (messages are then dropped with a log line).
    @ivar stunHandler: C{callable(data, addr)} for datagrams that look like
        STUN, or L{None} (they are then dropped as unparseable).
    @ivar datagramsReceived: datagrams received (int).
    @ivar keepAlivesReceived: CRLF keep-alives received (int).
    @ivar parseErrors: datagrams dropped because they did not parse (int).
    @ivar errorsAnswered: how many of those were answered (int).
    @ivar datagramsSent: datagrams written (int).
    @ivar bytesSent: octets written (int).
    """

    log = Logger()

    def __init__(self, handler=None, clock=None) -> None:
        """
        @param handler: the L{ISipMessageHandler}; may be set later with
            the C{handler} attribute.
        """
        self.handler = handler
        #: Network-triggered log lines go through this (one per kind per
        #: 10 s) so garbage cannot flood the log; counters stay exact.
        self.logLimiter = LogRateLimiter(clock)
        self.stunHandler: Callable[[bytes, Address], object] | None = None
        self._sendObservers: list[Callable[[Address, int], object]] = []
        self.datagramsReceived = 0
        self.keepAlivesReceived = 0
        self.parseErrors = 0
        self.errorsAnswered = 0
        self.datagramsSent = 0
        self.bytesSent = 0

    # -- receiving --------------------------------------------------------

    def datagramReceived(self, data: bytes, addr) -> None:
        """
        Handle one datagram (see the module docstring). Never raises.
        """
        source = (addr[0], addr[1])  # IPv6 addresses come with flow info and scope
        self.datagramsReceived += 1
        if isKeepAlive(data):
            self.keepAlivesReceived += 1
            self.log.debug("keep-alive from {source}", source=source)
            return
        if self.stunHandler is not None and looksLikeStun(data):
            self._safely(self.stunHandler, data, source)
            return
        try:
            message = parse(data)
        except SipParseError as e:
            self.parseErrors += 1
            suppressed = self.logLimiter.allow("unparseable")
            if suppressed is not None:
                self.log.info("dropped unparseable datagram ({size} octets) from {source}: {error}"
                              " ({suppressed} more since the last such line)",
                              size=len(data), source=source, error=str(e), suppressed=suppressed)
            try:
                answer = errorResponse(e, source)
            except Exception:
                self.log.failure("could not build the error answer to {source}", source=source)
                answer = None
            if answer is not None:
                response, destination = answer
                try:
                    self.send(response, destination)
                    self.errorsAnswered += 1
                except Exception as sendError:
                    self.log.info("could not answer {status} to {dest}: {error}",
                                  status=response.status, dest=destination, error=str(sendError))
            return
        if self.handler is None:
            if self.logLimiter.allow("no-handler") is not None:
                self.log.info("no handler: dropped {message} from {source}", message=message, source=source)
            return
        self._safely(self.handler.messageReceived, message, source)

    def _safely(self, function, *args) -> None:
        try:
            function(*args)
        except Exception:
            self.log.failure("SIP handler raised on a datagram from {source}", source=args[-1])

    # -- sending ----------------------------------------------------------

    def addSendObserver(self, observer: Callable[[Address, int], object]) -> None:
        """
        Call C{observer(addr, nbytes)} for every datagram sent from now on
        (messages, keep-alives and stateless error answers alike). An
        observer that raises is logged and kept.
        """
        self._sendObservers.append(observer)

    def removeSendObserver(self, observer: Callable[[Address, int], object]) -> None:
        """
        Stop calling C{observer}; harmless when it was not added.
        """
        if observer in self._sendObservers:
            self._sendObservers.remove(observer)

    def send(self, message: Request | Response | bytes, addr: Address) -> int:
        """
        Send a message (serialized here) or raw bytes (a keep-alive) to
        C{addr}.

        @param addr: C{(host, port)}; the host must be an IP address of the
            socket's family (Twisted's UDP port refuses names).
        @return: the number of octets written.
        @raise TransportNotConnected: when not listening.
        @raise Exception: whatever the socket raises; the transaction layer
            reports it as a transport error (17.1.4).
        """
        data = message if isinstance(message, bytes) else message.serialize()
        if self.transport is None:
            raise TransportNotConnected("the SIP socket is not listening")
        host = addr[0]
        if host.startswith("["):
            host = host[1:-1]
        self.transport.write(data, (host, addr[1]))
        self.datagramsSent += 1
        self.bytesSent += len(data)
        for observer in list(self._sendObservers):
            try:
                observer((host, addr[1]), len(data))
            except Exception:
                self.log.failure("send observer raised")
        return len(data)

    @property
    def localAddress(self) -> Address | None:
        """
        C{(host, port)} the socket is bound to, or L{None} when not
        listening.
        """
        if self.transport is None:
            return None
        host = self.transport.getHost()
        return host.host, host.port


class SipTransportService(Service):
    """
    A service that listens for SIP on a UDP port while it runs.

    @ivar protocol: the L{SipDatagramProtocol}.
    @ivar port: the C{IListeningPort} while running, else L{None}.
    """

    def __init__(self, reactor, protocol: SipDatagramProtocol, port: int,
                 interface: str = "") -> None:
        """
        @param reactor: an C{IReactorUDP}.
        @param protocol: the protocol to listen with.
        @param port: the UDP port (0 for any free one).
        @param interface: the local address (C{"::"} for IPv6).
        """
        self._reactor = reactor
        self.protocol = protocol
        self._portNumber = port
        self._interface = interface
        self.port = None

    def startService(self) -> None:
        """Listen (raises C{CannotListenError} when the port is taken)."""
        self.port = self._reactor.listenUDP(self._portNumber, self.protocol,
                                            interface=self._interface)
        super().startService()

    def stopService(self):
        """
        Stop listening.

        @return: the Deferred of C{stopListening}.
        """
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return None
        return maybeDeferred(port.stopListening)
