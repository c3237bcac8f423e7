"""
Fakes for testing applications built on lmevoip, without sockets or real
time.

  - L{FakeUdpReactor}: a C{task.Clock} that also provides C{listenUDP}:
    datagrams between its own ports are delivered after a small latency on
    the same clock, so two engines (or an engine and a L{FakeSipPeer}) talk
    to each other while the test drives time with C{advance()}. Datagrams
    can be logged and dropped to simulate loss.
  - L{RecordingEngineObserver}: an L{IEngineObserver} that keeps every
    event.
  - L{FakeSipPeer}: a scripted SIP far end (a user agent server) on a
    L{FakeUdpReactor}: answers INVITE, OPTIONS and BYE as told, records
    what it receives, and can hang up.

Example::

    reactor = FakeUdpReactor()
    peer = FakeSipPeer(reactor, "127.0.0.2", 5060)
    engine = VoipMediaEngine(EngineConfig(sipHost="127.0.0.1"), reactor=reactor)
    events = RecordingEngineObserver()
    engine.addObserver(events)
    engine.startService()
    engine.makeCall(0, "bob", "127.0.0.2", 5060)
    reactor.pump([0.01] * 10)    # advance in steps: each hop takes latency
    assert events.names()[-1] == "SipOutgoingCallConnected"
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorUDP
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from zope.interface import implementer

from lmevoip.events import EngineEvent, EventName
from lmevoip.interfaces import IEngineObserver
from lmevoip.sip.message import Request, Response, SipParseError, makeResponse, parse
from lmevoip.sip.sdp import SessionDescription, answerOffer

__all__ = ["Datagram", "FakeUdpReactor", "FakeSipPeer", "RecordingEngineObserver"]

Address = tuple[str, int]


@dataclass(frozen=True)
class Datagram:
    """
    One datagram sent on a L{FakeUdpReactor}.

    @ivar time: The clock time it was sent.
    @ivar source: C{(host, port)} it was sent from.
    @ivar destination: C{(host, port)} it was sent to.
    @ivar data: Its octets.
    @ivar dropped: Whether a drop rule discarded it.
    """

    time: float
    source: Address
    destination: Address
    data: bytes
    dropped: bool = False


def _canonical(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return host


class _FakeDatagramTransport:
    """
    The transport of one bound fake port.
    """

    def __init__(self, reactor: FakeUdpReactor, port: _FakePort) -> None:
        self._reactor = reactor
        self._port = port

    def write(self, data: bytes, addr: Address) -> None:
        if self._port.closed:
            raise OSError("write on a closed fake UDP port")
        if not isinstance(data, bytes):
            raise TypeError("data must be bytes")
        host = addr[0]
        if _canonical(host) == host and not _isIp(host):
            raise ValueError(f"{host!r} is not an IP address")
        self._reactor._send(self._port, data, (_canonical(host), int(addr[1])))

    def getHost(self) -> IPv4Address | IPv6Address:
        return self._port.getHost()

    def loseConnection(self) -> None:
        self._port.stopListening()


def _isIp(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


@implementer(IListeningPort)
class _FakePort:
    """
    A UDP port bound on a L{FakeUdpReactor}.
    """

    def __init__(self, reactor: FakeUdpReactor, protocol: DatagramProtocol, host: str, port: int) -> None:
        self._reactor = reactor
        self.protocol = protocol
        self.host = host
        self.port = port
        self.closed = False

    def startListening(self) -> None:
        self.protocol.makeConnection(_FakeDatagramTransport(self._reactor, self))

    def stopListening(self) -> Deferred[None]:
        if not self.closed:
            self.closed = True
            self._reactor._unbind(self)
            self.protocol.doStop()
            self.protocol.transport = None
        return succeed(None)

    def getHost(self) -> IPv4Address | IPv6Address:
        kind = IPv6Address if ":" in self.host else IPv4Address
        return kind("UDP", self.host, self.port)


@implementer(IReactorUDP)
class FakeUdpReactor(Clock):
    """
    A L{task.Clock} with UDP: ports bound with L{listenUDP} exchange
    datagrams, each delivered C{latency} seconds after it was sent (on this
    clock: call C{advance}). Binding C{""}, C{"0.0.0.0"} or C{"::"}
    receives for any address. A datagram to an address nothing is bound to
    is lost silently, as UDP would.

    @ivar latency: One-way delay in seconds.
    @ivar datagrams: The last C{logSize} datagrams sent (L{Datagram}s).
    @ivar openPorts: How many ports are bound now.
    """

    def __init__(self, latency: float = 0.001, logSize: int = 100_000) -> None:
        super().__init__()
        self.latency = latency
        self.datagrams: Deque[Datagram] = deque(maxlen=logSize)
        self._ports: dict[Address, _FakePort] = {}
        self._dropRules: list[Callable[[Datagram], bool]] = []
        self._nextEphemeral = 40000

    @property
    def openPorts(self) -> int:
        return len(self._ports)

    def listenUDP(self, port: int, protocol: DatagramProtocol, interface: str = "",
                  maxPacketSize: int = 8192) -> _FakePort:
        """
        Bind C{protocol} to C{interface:port} (port 0: a free port).

        @raise CannotListenError: When the address is taken.
        """
        host = _canonical(interface) if interface else "0.0.0.0"
        if port == 0:
            while (host, self._nextEphemeral) in self._ports:
                self._nextEphemeral += 1
            port = self._nextEphemeral
            self._nextEphemeral += 1
        key = (host, port)
        wildcard = host in ("0.0.0.0", "::")
        if key in self._ports or any(p == port and (wildcard or h in ("0.0.0.0", "::")) for h, p in self._ports):
            raise CannotListenError(interface, port, OSError(98, "Address already in use"))
        listener = _FakePort(self, protocol, host, port)
        self._ports[key] = listener
        listener.startListening()
        return listener

    def dropIf(self, rule: Callable[[Datagram], bool]) -> Callable[[], None]:
        """
        Drop every datagram for which C{rule(datagram)} is true (it is still
        logged, with C{dropped=True}).

        @return: A function that removes the rule.
        """
        self._dropRules.append(rule)
        return lambda: self._dropRules.remove(rule) if rule in self._dropRules else None

    def sentTo(self, destination: Address, since: float = float("-inf")) -> list[Datagram]:
        """
        The datagrams logged to C{destination} at or after C{since}.
        """
        destination = (_canonical(destination[0]), destination[1])
        return [d for d in self.datagrams if d.destination == destination and d.time >= since]

    def _unbind(self, port: _FakePort) -> None:
        if self._ports.get((port.host, port.port)) is port:
            del self._ports[(port.host, port.port)]

    def _send(self, port: _FakePort, data: bytes, destination: Address) -> None:
        source = (port.host, port.port)
        if port.host in ("0.0.0.0", "::"):
            source = ("127.0.0.1" if port.host == "0.0.0.0" else "::1", port.port)
        datagram = Datagram(self.seconds(), source, destination, data)
        if any(rule(datagram) for rule in self._dropRules):
            self.datagrams.append(Datagram(datagram.time, source, destination, data, True))
            return
        self.datagrams.append(datagram)
        self.callLater(self.latency, self._deliver, datagram)

    def _deliver(self, datagram: Datagram) -> None:
        host, port = datagram.destination
        target = self._ports.get((host, port))
        if target is None:
            target = self._ports.get(("::" if ":" in host else "0.0.0.0", port))
        if target is not None and not target.closed:
            target.protocol.datagramReceived(datagram.data, datagram.source)


@implementer(IEngineObserver)
class RecordingEngineObserver:
    """
    Keeps every engine event it is given.

    @ivar events: The L{EngineEvent}s, oldest first.
    """

    def __init__(self) -> None:
        self.events: list[EngineEvent] = []

    def engineEvent(self, event: EngineEvent) -> None:
        """
        Record C{event}.
        """
        self.events.append(event)

    def names(self, line: int | None = None, withLineStates: bool = False) -> list[str]:
        """
        The names of the recorded events (of one line), without the
        C{SipLineStateChanged} ones unless asked.
        """
        return [str(e.name) for e in self.events
                if (line is None or e.line == line)
                and (withLineStates or e.name is not EventName.SipLineStateChanged)]

    def named(self, name: EventName | str) -> list[EngineEvent]:
        """
        The recorded events called C{name}.
        """
        return [e for e in self.events if e.name == name]

    def last(self, name: EventName | str) -> EngineEvent | None:
        """
        The latest event called C{name}, or None.
        """
        found = self.named(name)
        return found[-1] if found else None

    def lineStates(self, line: int) -> list[str]:
        """
        The states C{line} went through, from C{SipLineStateChanged}.
        """
        return [str(e.details["state"]) for e in self.events
                if e.name is EventName.SipLineStateChanged and e.line == line]

    def clear(self) -> None:
        """
        Forget everything recorded.
        """
        self.events.clear()


class FakeSipPeer(DatagramProtocol):
    """
    A scripted SIP user agent server on a L{FakeUdpReactor}: enough of a
    far end to test calls and keep-alive without a real peer.

    It answers an INVITE with 100, then (after C{ringDelay}) 180 when
    C{ring} is set, then after C{answerDelay} the C{inviteStatus} (200 with
    an SDP answer from PCMU on C{rtpPort}, or a failure); the ACK is
    recorded; OPTIONS get C{optionsStatus} (None: no answer at all); BYE
    gets 200. Responses go back to the source address. L{hangUp} sends a
    BYE for the last call. Every request received is kept in L{received}
    with its arrival time.

    @ivar received: C{(time, Request)} for every request received.
    """

    def __init__(self, reactor: FakeUdpReactor, host: str = "127.0.0.2", port: int = 5060, rtpPort: int = 30000,
                 inviteStatus: int = 200, answerDelay: float = 0.0, ring: bool = True,
                 optionsStatus: int | None = 200, listen: bool = True) -> None:
        self.reactor = reactor
        self.host = host
        self.port = port
        self.rtpPort = rtpPort
        self.inviteStatus = inviteStatus
        self.answerDelay = answerDelay
        self.ring = ring
        self.optionsStatus = optionsStatus
        self.received: list[tuple[float, Request]] = []
        self.responsesReceived: list[tuple[float, Response]] = []
        self._dialog: tuple[Request, Address, str] | None = None
        self._cseq = 100
        self.listening = reactor.listenUDP(port, self, interface=host) if listen else None
        self._pending: list[Any] = []

    def requests(self, method: str) -> list[tuple[float, Request]]:
        """
        The C{(time, request)} received with C{method}.
        """
        return [(t, r) for t, r in self.received if r.method == method]

    def stop(self) -> None:
        """
        Cancel pending answers and unbind.
        """
        for _, call in self._pending:
            if call.active():
                call.cancel()
        self._pending.clear()
        if self.listening is not None:
            self.listening.stopListening()

    def datagramReceived(self, data: bytes, addr: Address) -> None:
        try:
            message = parse(data)
        except SipParseError:
            return
        now = self.reactor.seconds()
        if isinstance(message, Response):
            self.responsesReceived.append((now, message))
            return
        self.received.append((now, message))
        method = message.method
        if method == "INVITE":
            self._invite(message, addr)
        elif method == "OPTIONS":
            if self.optionsStatus is not None:
                self._respond(message, self.optionsStatus, addr)
        elif method == "BYE":
            self._respond(message, 200, addr)
        elif method == "CANCEL":
            self._respond(message, 200, addr)
            self._cancelled(message, addr)
        # ACK: nothing.

    def _respond(self, request: Request, status: int, addr: Address, body: bytes = b"",
                 toTag: str = "peer-tag") -> None:
        response = makeResponse(request, status, toTag=None if status == 100 else toTag)
        if 100 < status < 300:
            response.headers.add("Contact", f"<sip:peer@{self.host}:{self.port}>")
        if body:
            response.headers.add("Content-Type", "application/sdp")
            response.body = body
        if self.transport is not None:
            self.transport.write(response.serialize(), addr)

    def _cancelled(self, cancel: Request, addr: Address) -> None:
        """
        A CANCEL for an INVITE not answered yet: 487 for the INVITE.
        """
        for invite, pending in list(self._pending):
            if pending.active() and invite.callId == cancel.callId:
                pending.cancel()
                self._pending.remove((invite, pending))
                self._respond(invite, 487, addr)

    def _invite(self, request: Request, addr: Address) -> None:
        self._respond(request, 100, addr)
        if request.toAddr.tag is not None:  # re-INVITE: answer at once
            self._answer(request, addr, 200)
            return
        if self.ring:
            self._respond(request, 180, addr)
        self._pending.append((request, self.reactor.callLater(
            self.answerDelay, self._answer, request, addr, self.inviteStatus)))

    def _answer(self, request: Request, addr: Address, status: int) -> None:
        body = b""
        if 200 <= status < 300 and request.body:
            answer, _ = answerOffer(SessionDescription.parse(request.body), self.host, self.rtpPort, ("PCMU", "PCMA"))
            body = answer.serialize()
            self._dialog = (request, addr, "peer-tag")
        self._respond(request, status, addr, body)

    def hangUp(self) -> bool:
        """
        Send a BYE in the last answered call's dialog.

        @return: Whether there was a call to hang up.
        """
        if self._dialog is None or self.transport is None:
            return False
        invite, addr, tag = self._dialog
        self._dialog = None
        self._cseq += 1
        contact = invite.contacts[0].uri if invite.contacts else invite.fromAddr.uri
        bye = Request("BYE", contact)
        bye.headers.add("Via", f"SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK-peer-{self._cseq}")
        bye.headers.add("Max-Forwards", "70")
        bye.headers.add("From", f"{invite.headers.get('To')};tag={tag}")
        bye.headers.add("To", invite.headers.get("From"))
        bye.headers.add("Call-ID", invite.callId)
        bye.headers.add("CSeq", f"{self._cseq} BYE")
        bye.headers.add("Content-Length", "0")
        self.transport.write(bye.serialize(), addr)
        return True
