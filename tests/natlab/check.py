"""
The NAT lab's self-check: UDP datagrams between sockets made in the LAN and
WAN namespaces prove that the lab behaves as the NAT it should. See
L{verifyNat} (also L{NatLab.verifyNat}).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from tests.natlab.errors import NatCheckFailed, NatLabError

if TYPE_CHECKING:
    from tests.natlab.lab import NatLab

__all__ = ["NatCheck", "UdpRecorder", "probeMapping", "verifyNat"]

_log = Logger(namespace="tests.natlab.check")


@dataclass
class NatCheck:
    """
    What L{NatLab.verifyNat} saw.

    @ivar lab: the lab's name.
    @ivar timeout: its UDP binding timeout (seconds).
    @ivar refresh: its refresh mode.
    @ivar lanAddress: the LAN host's address.
    @ivar lanPort: the LAN host's source port of the probe.
    @ivar externalAddress: the source address the WAN host saw (the
        router's WAN address when masquerading works), or L{None}.
    @ivar externalPort: the source port the WAN host saw, or L{None}.
    @ivar checks: C{(description, passed, detail)} for each property.
    @ivar duration: seconds the check took.
    """

    lab: str
    timeout: int
    refresh: str
    lanAddress: str
    lanPort: int
    externalAddress: str | None = None
    externalPort: int | None = None
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    duration: float = 0.0

    @property
    def passed(self) -> bool:
        """
        C{True} when every check passed (and there was at least one).
        """
        return bool(self.checks) and all(passed for _, passed, _ in self.checks)

    @property
    def portPreserved(self) -> bool:
        """
        Did the masquerade keep the LAN source port?
        """
        return self.externalPort == self.lanPort

    def add(self, description: str, passed: bool, detail: str = "") -> bool:
        self.checks.append((description, passed, detail))
        return passed

    def format(self) -> str:
        """
        Return a human-readable report, one line per check.
        """
        mapping = (f"{self.lanAddress}:{self.lanPort} -> {self.externalAddress}:{self.externalPort}"
                   f" (port {'kept' if self.portPreserved else 'changed'})")
        lines = [f"NAT self-check of {self.lab} (timeout {self.timeout}s, refresh {self.refresh}):"
                 f" {'passed' if self.passed else 'FAILED'} in {self.duration:.1f}s",
                 f"  mapping {mapping}"]
        for description, passed, detail in self.checks:
            lines.append(f"  [{'ok' if passed else 'FAIL'}] {description}"
                         + (f": {detail}" if detail else ""))
        return "\n".join(lines)


class UdpRecorder(DatagramProtocol):
    """
    A UDP endpoint for tests: keeps every datagram it receives, and wakes
    whoever waits for a given payload. Put it in a namespace with
    C{lab.listenUDP(where, 0, UdpRecorder(reactor), address)}.

    @ivar received: C{(payload, sender)} of every datagram, in order.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self._waiters: list[tuple[bytes, Deferred[Any]]] = []

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append((data, addr))
        for waiter in list(self._waiters):
            if waiter[0] == data:
                self._waiters.remove(waiter)
                waiter[1].callback(addr)

    def sources(self, data: bytes) -> list[tuple[str, int]]:
        """
        The senders of every datagram C{data} received so far.
        """
        return [addr for payload, addr in self.received if payload == data]

    def waitFor(self, data: bytes, timeout: float) -> Deferred[Any]:
        """
        Return a Deferred firing with the sender of C{data} when it arrives,
        or with L{None} after C{timeout} seconds.
        """
        d: Deferred[Any] = Deferred()
        seen = self.sources(data)
        if seen:
            d.callback(seen[0])
            return d
        waiter = (data, d)
        self._waiters.append(waiter)

        def expire() -> None:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
                d.callback(None)

        timer = self.reactor.callLater(timeout, expire)
        d.addBoth(lambda result: (timer.cancel() if timer.active() else None, result)[1])
        return d

    def send(self, data: bytes, addr: tuple[str, int]) -> OSError | None:
        """
        Send C{data} to C{addr}; return the error the kernel gave at once
        (e.g. C{ENETUNREACH}), or L{None}.
        """
        try:
            self.transport.write(data, addr)
        except OSError as e:
            return e
        return None


def _show(addr: tuple[str, int] | None) -> str:
    return "nothing" if addr is None else f"{addr[0]}:{addr[1]}"


def _at(reactor: Any, when: float) -> Deferred[None]:
    return task.deferLater(reactor, max(0.0, when - reactor.seconds()), lambda: None)


@inlineCallbacks
def verifyNat(lab: NatLab, silence: float = 1.0, window: float = 0.5) -> Any:
    """
    Prove with UDP datagrams that C{lab} behaves as the NAT it should:

      1. a LAN datagram reaches the WAN host from the router's WAN
         address (masquerade), on the LAN port or another (reported);
      2. the WAN host's reply reaches the LAN host;
      3. the WAN host has no route to the LAN;
      4. (outbound refresh) a WAN datagram half a second before the
         timeout still gets in, and does not extend the binding;
      5. a WAN datagram after the timeout plus C{silence} seconds does
         not get in;
      6. a datagram from a WAN port the LAN never sent to does not get in;
      7. a new LAN datagram opens the binding again.

    The sockets are made in the namespaces by this process (see
    L{NatLab.reactorIn}); waits run on the reactor. With the default 3 s
    timeout it takes about 5 s.

    @param silence: seconds past the timeout before the late datagram.
    @param window: seconds to wait for datagrams that must not arrive.
    @return: a Deferred firing with the L{NatCheck} (also kept as
        C{lab.lastCheck}).
    @raise NatCheckFailed: a check failed; it carries the report.
    """
    reactor = lab.reactor
    started = reactor.seconds()
    lan, wan, stranger = UdpRecorder(reactor), UdpRecorder(reactor), UdpRecorder(reactor)
    ports = [lab.listenUDP("lan", 0, lan, lab.lanAddress),
             lab.listenUDP("wan", 0, wan, lab.wanAddress),
             lab.listenUDP("wan", 0, stranger, lab.wanAddress)]
    lanPort = ports[0].getHost().port
    far = (lab.wanAddress, ports[1].getHost().port)
    report = NatCheck(lab.name, lab.timeout, lab.refresh, lab.lanAddress, lanPort)
    try:
        yield _checkNat(lab, report, lan, wan, stranger, far, silence, window)
    finally:
        yield gatherResults([port.stopListening() for port in ports])
        report.duration = reactor.seconds() - started
    lab.lastCheck = report
    _log.info("{report}", report=report.format())
    if not report.passed:
        raise NatCheckFailed(report)
    return report


@inlineCallbacks
def _checkNat(lab: NatLab, report: NatCheck, lan: UdpRecorder, wan: UdpRecorder, stranger: UdpRecorder,
              far: tuple[str, int], silence: float, window: float) -> Any:
    reactor = lab.reactor
    lastOutbound = reactor.seconds()
    lan.send(b"natlab-out-1", far)
    source = yield wan.waitFor(b"natlab-out-1", 2.0)
    if not report.add("a LAN datagram reaches the WAN host", source is not None,
                      f"{lab.lanAddress}:{report.lanPort} -> {far[0]}:{far[1]}"):
        return
    report.externalAddress, report.externalPort = source
    if not report.add("it comes from the router's WAN address (masquerade)",
                      source[0] == lab.routerWanAddress, f"source {_show(source)}"):
        return
    wan.send(b"natlab-in-1", source)
    got = yield lan.waitFor(b"natlab-in-1", 2.0)
    report.add("the WAN host's reply reaches the LAN host", got == far, f"from {_show(got)}")
    lastPacket = reactor.seconds()
    # Unsolicited: another WAN port to the binding's external port.
    stranger.send(b"natlab-unsolicited", source)
    refused = stranger.send(b"natlab-direct", (lab.lanAddress, report.lanPort))
    report.add("the WAN host has no route to the LAN",
               refused is not None and refused.errno == errno.ENETUNREACH,
               f"a datagram to {lab.lanAddress} was sent" if refused is None
               else os.strerror(refused.errno or 0))
    if lab.refresh == "outbound":
        # A full second before the timeout: a reactor running late on a busy
        # machine must not turn this into a false failure.
        midAt = lastOutbound + max(lab.timeout - 1.0, lab.timeout / 2)
        yield _at(reactor, midAt)
        sentAfter = reactor.seconds() - lastOutbound
        wan.send(b"natlab-in-mid", source)
        got = yield lan.waitFor(b"natlab-in-mid", window)
        report.add(f"a WAN datagram {midAt - lastOutbound:.1f}s after the last LAN datagram gets in",
                   got is not None, f"from {_show(got)} (sent after {sentAfter:.2f}s)")
        lateAt = lastOutbound + lab.timeout + silence
        # Had it refreshed the binding, the late datagram would get in.
        claim = " (the datagram before the timeout did not extend it)" \
            if midAt + lab.timeout > lateAt + window else ""
    else:
        lateAt = lastPacket + lab.timeout + silence
        claim = ""
    yield _at(reactor, lateAt)
    wan.send(b"natlab-in-late", source)
    yield task.deferLater(reactor, window, lambda: None)
    late = lan.sources(b"natlab-in-late")
    report.add(f"a WAN datagram {lab.timeout + silence:.1f}s after the last refresh is dropped{claim}",
               not late, f"{len(late)} arrived")
    stray = lan.sources(b"natlab-unsolicited") + lan.sources(b"natlab-direct")
    report.add("datagrams from a WAN port the LAN never sent to are dropped", not stray,
               f"{len(stray)} arrived")
    lan.send(b"natlab-out-2", far)
    again = yield wan.waitFor(b"natlab-out-2", 2.0)
    if again is not None:
        wan.send(b"natlab-in-2", again)
    got = yield lan.waitFor(b"natlab-in-2", 2.0)
    report.add("a new LAN datagram opens the binding again", got == far,
               f"mapped to {_show(again)}, reply from {_show(got)}")


@inlineCallbacks
def probeMapping(lab: NatLab, timeout: float = 2.0) -> Any:
    """
    Send one datagram from a new LAN socket of C{lab} to a new WAN socket.

    @return: a Deferred firing with C{(lanPort, (source address, source
        port) the WAN host saw)}.
    @raise NatLabError: it did not arrive within C{timeout} seconds.
    """
    lan, wan = UdpRecorder(lab.reactor), UdpRecorder(lab.reactor)
    ports = [lab.listenUDP("lan", 0, lan, lab.lanAddress),
             lab.listenUDP("wan", 0, wan, lab.wanAddress)]
    lanPort = ports[0].getHost().port
    try:
        lan.send(b"natlab-probe", (lab.wanAddress, ports[1].getHost().port))
        source = yield wan.waitFor(b"natlab-probe", timeout)
    finally:
        yield gatherResults([port.stopListening() for port in ports])
    if source is None:
        raise NatLabError(f"a LAN datagram did not reach the WAN host within {timeout}s")
    return lanPort, source
