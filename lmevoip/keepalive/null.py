"""
NULL keep-alives: a single CRLF sent from the SIP socket to a destination
every C{keepAliveSeconds}, the SDK call
C{sendSipKeepAlive(host, port, enableState, keepAliveSeconds)}.

The message is the two octets C{b"\\r\\n"}, the smallest datagram a SIP stack
accepts and ignores (RFC 3261 section 7.5 lets a receiver skip CRLFs before a
message; RFC 5626 section 3.5.1 uses the same CRLF keep-alive on streams).
Sending it from the SIP socket refreshes the NAT binding of that socket
towards the destination.

Decisions:

  - Strictly periodic: real SIP traffic to the same destination does not
    postpone the NULL keep-alive (the SDK promises one "every
    keepAliveSeconds"). The first CRLF goes out at once (on the next reactor
    turn), then one every period.
  - Host names are resolved without blocking through an injected
    C{resolve(host) -> Deferred[str]}, by default the reactor's
    C{nameResolver} (IPv4 addresses). An IP literal is used as is. A failed
    resolution is logged, reported through C{onEvent}, and retried every
    C{resolveRetryDelay} seconds until it succeeds or the destination is
    disabled. A resolved name is resolved again every
    C{reResolveInterval} seconds in the background, keeping the old address
    until a new one arrives (and after a failure).
  - Destinations are independent flows of one L{KeepAliveScheduler}: the
    engine's shared one when given, else a private one this service starts
    and stops.
"""

from __future__ import annotations

import ipaddress
import re
from functools import partial
from typing import Any, Callable, Sequence

from twisted.application.service import Service
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import (
    IDelayedCall,
    IHostResolution,
    IHostnameResolver,
    IReactorPluggableNameResolver,
    IReactorTime,
    IResolutionReceiver,
)
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from lmevoip.interfaces import INullKeepAlive
from lmevoip.keepalive.interval import KeepAliveParameterError, checkInterval
from lmevoip.keepalive.scheduler import KeepAliveFlow, KeepAliveScheduler

__all__ = [
    "CRLF",
    "MIN_KEEPALIVE_SECONDS",
    "MAX_KEEPALIVE_SECONDS",
    "NullKeepAliveService",
    "resolverFromNameResolver",
]

#: The NULL keep-alive message.
CRLF = b"\r\n"

#: The shortest accepted period (a smaller one floods the NAT for nothing).
MIN_KEEPALIVE_SECONDS = 0.1

#: The longest accepted period (one hour, as the longest NAT session time).
MAX_KEEPALIVE_SECONDS = 3600

#: Event names passed to C{onEvent}.
EVENT_RESOLVED = "sipKeepAliveResolved"
EVENT_RESOLUTION_FAILED = "sipKeepAliveResolutionFailed"

Resolve = Callable[[str], "Deferred[str]"]
SendDatagram = Callable[[bytes, "tuple[str, int]"], object]


@implementer(IResolutionReceiver)
class _FirstAddress:
    """
    Collects the addresses of one C{resolveHostName} call and fires a
    Deferred with the first one.
    """

    def __init__(self, host: str) -> None:
        self.host = host
        self.addresses: list[str] = []
        self.deferred: Deferred[str] = Deferred()

    def resolutionBegan(self, resolution: IHostResolution) -> None:
        pass

    def addressResolved(self, address: Any) -> None:
        self.addresses.append(address.host)

    def resolutionComplete(self) -> None:
        if self.addresses:
            self.deferred.callback(self.addresses[0])
        else:
            self.deferred.errback(DNSLookupError(f"no address for {self.host!r}"))


def resolverFromNameResolver(
    nameResolver: IHostnameResolver, addressTypes: Sequence[type] = (IPv4Address,)
) -> Resolve:
    """
    Adapt a reactor's C{nameResolver} to C{resolve(host) -> Deferred[str]}.

    @param nameResolver: An C{IHostnameResolver} (C{reactor.nameResolver}).
    @param addressTypes: The address families wanted (the SIP socket's).
    @return: A function firing with the first address's host, or failing
        with C{DNSLookupError} when there is none.
    """

    def resolve(host: str) -> Deferred[str]:
        receiver = _FirstAddress(host)
        nameResolver.resolveHostName(receiver, host, 0, addressTypes, "UDP")
        return receiver.deferred

    return resolve


_HOSTNAME = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}))*\Z")


def _ipLiteral(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _normaliseHost(host: object) -> str:
    if not isinstance(host, str) or not host:
        raise KeepAliveParameterError("host", host, "must be a non-empty host name or IP address")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    literal = _ipLiteral(bare)
    if literal is not None:
        return literal
    name = host.lower().rstrip(".")
    if len(name) > 253 or not _HOSTNAME.match(name):
        raise KeepAliveParameterError("host", host, "is neither an IP address nor a host name")
    return name


def _checkPort(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise KeepAliveParameterError("port", port, "must be an integer within 1-65535")
    return port


def _checkPeriod(keepAliveSeconds: object) -> float:
    period = checkInterval(keepAliveSeconds, "keepAliveSeconds")
    if not MIN_KEEPALIVE_SECONDS <= period <= MAX_KEEPALIVE_SECONDS:
        raise KeepAliveParameterError(
            "keepAliveSeconds",
            keepAliveSeconds,
            f"must be a number of seconds within {MIN_KEEPALIVE_SECONDS}-{MAX_KEEPALIVE_SECONDS}",
        )
    return period


class _Destination:
    """
    The state of one (host, port) NULL keep-alive destination.
    """

    __slots__ = (
        "host",
        "port",
        "period",
        "address",
        "literal",
        "flow",
        "resolution",
        "retryCall",
        "nextResolution",
        "resolutionFailures",
        "lastResolutionError",
    )

    def __init__(self, host: str, port: int, period: float) -> None:
        self.host = host
        self.port = port
        self.period = period
        self.literal = _ipLiteral(host) is not None
        self.address: str | None = host if self.literal else None
        self.flow: KeepAliveFlow | None = None
        self.resolution: Deferred[str] | None = None
        self.retryCall: IDelayedCall | None = None
        self.nextResolution = 0.0
        self.resolutionFailures = 0
        self.lastResolutionError: str | None = None

    @property
    def state(self) -> str:
        if self.flow is not None:
            return "active"
        if self.resolution is not None:
            return "resolving"
        if self.retryCall is not None:
            return "unresolved"
        return "stopped"


@implementer(INullKeepAlive)
class NullKeepAliveService(Service):
    """
    Sends NULL (CRLF) keep-alives from the SIP socket to any number of
    destinations, each at its own period.

    @ivar scheduler: The L{KeepAliveScheduler} the destinations are flows of.
    """

    log = Logger()

    def __init__(
        self,
        send: SendDatagram,
        clock: IReactorTime,
        resolve: Resolve | None = None,
        onEvent: Callable[..., object] | None = None,
        scheduler: KeepAliveScheduler | None = None,
        resolveRetryDelay: float = 30.0,
        reResolveInterval: float = 300.0,
        maxDestinations: int = 1024,
    ) -> None:
        """
        @param send: C{send(data, (host, port))}: the SIP socket's
            C{transport.write}.
        @param clock: The reactor's time.
        @param resolve: C{resolve(host) -> Deferred[str]}. By default, when
            C{clock} is a reactor with a C{nameResolver}, that resolver (IPv4);
            without either only IP literals are accepted.
        @param onEvent: C{onEvent(name, **fields)}, told of
            C{"sipKeepAliveResolved"} (host, port, address) and
            C{"sipKeepAliveResolutionFailed"} (host, port, error, retryIn).
        @param scheduler: A shared scheduler, run by its owner. By default
            the service makes its own and runs it.
        @param resolveRetryDelay: Seconds between attempts to resolve a name
            that failed to resolve.
        @param reResolveInterval: Seconds after which a resolved name is
            resolved again.
        @param maxDestinations: How many destinations may be enabled at
            once; enabling one more is refused with
            L{KeepAliveParameterError} (so memory stays bounded whoever
            drives the API).
        """
        if resolve is None and IReactorPluggableNameResolver.providedBy(clock):
            resolve = resolverFromNameResolver(clock.nameResolver)  # type: ignore[attr-defined]
        self._sendDatagram = send
        self.clock = clock
        self._resolve = resolve
        self._onEvent = onEvent
        self._ownScheduler = scheduler is None
        self.scheduler = KeepAliveScheduler(clock) if scheduler is None else scheduler
        self.resolveRetryDelay = resolveRetryDelay
        self.reResolveInterval = reResolveInterval
        self._destinations: dict[tuple[str, int], _Destination] = {}
        self.maxDestinations = maxDestinations

    # -- the SDK call ---------------------------------------------------

    def sendSipKeepAlive(self, host: str, port: int, enableState: bool, keepAliveSeconds: float) -> None:
        """
        Enable, re-period or disable the NULL keep-alive to C{host:port}.

        Enabling an enabled destination with another period changes the
        period at once (the next CRLF is due one new period after the last
        one); with the same period it does nothing. Disabling an unknown
        destination does nothing, and C{keepAliveSeconds} is then not
        checked.

        @param host: An IP address (IPv6 with or without brackets) or a host
            name; names are compared case-insensitively.
        @param port: 1-65535.
        @param enableState: C{True} to enable, C{False} to disable.
        @param keepAliveSeconds: The period, within
            L{MIN_KEEPALIVE_SECONDS}-L{MAX_KEEPALIVE_SECONDS} seconds.
        @raise KeepAliveParameterError: On a bad argument; nothing changes.
        """
        key = (_normaliseHost(host), _checkPort(port))
        if not isinstance(enableState, (bool, int)) or enableState not in (0, 1):
            raise KeepAliveParameterError("enableState", enableState, "must be True or False")
        if not enableState:
            destination = self._destinations.pop(key, None)
            if destination is not None:
                self._deactivate(destination)
                self.log.info("NULL keep-alive to {host}:{port} disabled", host=key[0], port=key[1])
            return
        period = _checkPeriod(keepAliveSeconds)
        destination = self._destinations.get(key)
        if destination is not None:
            if destination.period != period:
                destination.period = period
                if destination.flow is not None:
                    destination.flow.setInterval(period)
                self.log.info("NULL keep-alive to {host}:{port} every {period}s", host=key[0], port=key[1], period=period)
            return
        if _ipLiteral(key[0]) is None and self._resolve is None:
            raise KeepAliveParameterError("host", host, "is not an IP address and no resolver is configured")
        if len(self._destinations) >= self.maxDestinations:
            raise KeepAliveParameterError(
                "host", host, f"would exceed the limit of {self.maxDestinations} NULL keep-alive destinations")
        destination = self._destinations[key] = _Destination(key[0], key[1], period)
        self.log.info("NULL keep-alive to {host}:{port} every {period}s", host=key[0], port=key[1], period=period)
        if self.running:
            self._activate(destination)

    # -- state ----------------------------------------------------------

    def destination(self, host: str, port: int) -> dict[str, Any] | None:
        """
        The state of one destination (see L{snapshot}), or C{None} when it
        is not enabled.

        @raise KeepAliveParameterError: On a bad host or port.
        """
        destination = self._destinations.get((_normaliseHost(host), _checkPort(port)))
        return None if destination is None else self._describe(destination)

    def snapshot(self) -> list[dict[str, Any]]:
        """
        One plain dict per enabled destination: C{host}, C{port},
        C{keepAliveSeconds}, C{state} (C{"active"}, C{"resolving"},
        C{"unresolved"} or C{"stopped"}), C{address}, C{sendCount},
        C{failureCount}, C{lastSent}, C{lastError} (the send counters start
        again when the service restarts), C{resolutionFailures},
        C{lastResolutionError}.
        """
        return [self._describe(destination) for destination in self._destinations.values()]

    def _describe(self, destination: _Destination) -> dict[str, Any]:
        flow = destination.flow
        return {
            "host": destination.host,
            "port": destination.port,
            "keepAliveSeconds": destination.period,
            "state": destination.state,
            "address": destination.address,
            "sendCount": 0 if flow is None else flow.sendCount,
            "failureCount": 0 if flow is None else flow.failureCount,
            "lastSent": None if flow is None or flow.sendCount == 0 else flow.lastSent,
            "lastError": None if flow is None else flow.lastError,
            "resolutionFailures": destination.resolutionFailures,
            "lastResolutionError": destination.lastResolutionError,
        }

    # -- service --------------------------------------------------------

    def startService(self) -> None:
        """
        Start the private scheduler (if any) and every destination.
        """
        Service.startService(self)
        if self._ownScheduler:
            self.scheduler.startService()
        for destination in self._destinations.values():
            self._activate(destination)

    def stopService(self) -> Deferred[None]:
        """
        Stop sending; the destinations are kept and resume on
        L{startService}.

        @return: An already fired C{Deferred}.
        """
        Service.stopService(self)
        for destination in self._destinations.values():
            self._deactivate(destination)
        if self._ownScheduler:
            return self.scheduler.stopService()
        return succeed(None)

    # -- internals ------------------------------------------------------

    def _activate(self, destination: _Destination) -> None:
        if destination.address is not None:
            self._startFlow(destination)
        else:
            self._startResolution(destination)

    def _deactivate(self, destination: _Destination) -> None:
        if destination.flow is not None:
            self.scheduler.removeFlow(destination.flow)
            destination.flow = None
        if destination.retryCall is not None:
            destination.retryCall.cancel()
            destination.retryCall = None
        resolution, destination.resolution = destination.resolution, None
        if resolution is not None:
            resolution.cancel()  # its callbacks see a stale destination

    def _current(self, destination: _Destination) -> bool:
        return self.running and self._destinations.get((destination.host, destination.port)) is destination

    def _startFlow(self, destination: _Destination) -> None:
        destination.flow = self.scheduler.addFlow(
            f"null:{destination.host}:{destination.port}",
            destination.period,
            partial(self._sendNull, destination),
            firstDeadline=self.clock.seconds(),
        )

    def _sendNull(self, destination: _Destination, flow: KeepAliveFlow) -> None:
        if (
            not destination.literal
            and destination.resolution is None
            and self.clock.seconds() >= destination.nextResolution
        ):
            self._startResolution(destination)
        self._sendDatagram(CRLF, (destination.address, destination.port))

    def _startResolution(self, destination: _Destination) -> None:
        destination.retryCall = None
        # Set before adding callbacks: a resolver that answers at once (a
        # cache, a fake) runs them now, and they clear it.
        resolution = destination.resolution = maybeDeferred(self._resolve, destination.host)
        resolution.addCallbacks(self._resolved, self._resolutionFailed, (destination,), errbackArgs=(destination,))

    def _resolved(self, address: str, destination: _Destination) -> None:
        if not self._current(destination):
            return
        destination.resolution = None
        destination.nextResolution = self.clock.seconds() + self.reResolveInterval
        changed = address != destination.address
        destination.address = address
        if changed:
            self.log.info("NULL keep-alive host {host} resolved to {address}", host=destination.host, address=address)
            self._event(EVENT_RESOLVED, host=destination.host, port=destination.port, address=address)
        if destination.flow is None:
            self._startFlow(destination)

    def _resolutionFailed(self, failure: Failure, destination: _Destination) -> None:
        if not self._current(destination):
            return
        destination.resolution = None
        destination.resolutionFailures += 1
        destination.lastResolutionError = f"{failure.type.__name__}: {failure.value}"
        retryIn = self.resolveRetryDelay
        destination.nextResolution = self.clock.seconds() + retryIn
        self.log.failure(
            "Cannot resolve NULL keep-alive host {host} (retrying in {retryIn}s; "
            "{keeping})",
            failure,
            LogLevel.warn,
            host=destination.host,
            retryIn=retryIn,
            keeping="still sending to " + destination.address if destination.address else "not sending",
        )
        self._event(
            EVENT_RESOLUTION_FAILED,
            host=destination.host,
            port=destination.port,
            error=destination.lastResolutionError,
            retryIn=retryIn,
        )
        if destination.flow is None:
            destination.retryCall = self.clock.callLater(retryIn, self._startResolution, destination)

    def _event(self, name: str, **fields: object) -> None:
        if self._onEvent is None:
            return
        try:
            self._onEvent(name, **fields)
        except Exception:
            self.log.failure("onEvent({name!r}) raised", name=name)
