"""
SIP keep-alive for active calls: an in-dialog OPTIONS whenever a call's
signalling flow has been idle for the keep-alive interval.

A call's B{signalling flow} is the NAT binding between our SIP socket and
the address its in-dialog requests go to (the first route, else the remote
target). The rule, per confirmed call::

    whenever nothing has been sent from the SIP socket to that address
    for the interval, send OPTIONS inside the dialog.

Real traffic counts: the service observes every datagram the SIP transport
sends (L{ISipTransport.addSendObserver}) and touches the flow of every call
whose signalling address it went to: requests, responses, retransmissions,
ACKs, NULL keep-alives alike. So a call with busy signalling sends no
keep-alive at all.

The interval comes from the NAT session time (L{lmevoip.keepalive.interval}:
80 % of it, minus a lateness allowance, shortened by a per-flow random
jitter of up to 10 %), and a flow's first keep-alive comes at a random point
of its first interval (or sooner when the flow was already idle), so many
calls never send in the same instant.

Any final response to the OPTIONS (200, 405, 501, even 403) proves the far
end and the binding alive; its round-trip time is recorded. A 481 (the far
end no longer knows the dialog; the call then ends, RFC 3261 12.2.1.2), a
408, or no response within the transaction timeout (64*T1, 32 s by
default), or a transport error, is a B{failure}: it is reported through
C{onFailure}, counted, and, when C{maxFailures} is set, that many
consecutive failures call C{onFailureLimit} (the engine then ends the
call).

At most one OPTIONS per call is outstanding: when the interval elapses
while one is still unanswered (its retransmissions stop at T2 spacing, 4 s
by default, which may exceed the interval), the flow gets a CRLF instead
(the NULL keep-alive datagram, which refreshes the same binding and costs
no transaction).

The module also holds L{CallFlowKeepAlive}, the base this service and the
RTP keep-alive service (L{lmevoip.keepalive.rtp}) share: one flow of the
shared L{KeepAliveScheduler} per watched call, created, re-intervalled and
removed as the NAT session time is set, changed or cleared.
"""

from __future__ import annotations

import ipaddress
import random
from functools import partial
from typing import Any, Callable, Hashable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from lmevoip.interfaces import ISipKeepAlive, ISipTransport
from lmevoip.keepalive.interval import (
    KeepAliveParameterError,
    firstDelay,
    keepAliveInterval,
    maximumInterval,
)
from lmevoip.keepalive.scheduler import KeepAliveFlow, KeepAliveScheduler

__all__ = [
    "CallFlowKeepAlive",
    "KeepAliveFailed",
    "SipKeepAliveService",
    "FAILURE_STATUSES",
    "normaliseAddress",
]

Address = tuple[str, int]

#: Final responses to a keep-alive OPTIONS that count as failures: the
#: dialog is gone (481) or the request timed out (408); RFC 3261 12.2.1.2
#: says a UAC SHOULD terminate the dialog on either.
FAILURE_STATUSES = frozenset({408, 481})

_CRLF = b"\r\n"


def normaliseAddress(address: Address) -> Address:
    """
    C{(host, port)} with an IP literal in its canonical text (brackets
    removed, IPv6 compressed, lower case), so addresses from a URI and from
    the socket layer compare equal. Names are lower-cased.
    """
    host, port = address
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(bare)), int(port)
    except ValueError:
        return bare.lower(), int(port)


class KeepAliveFailed(Exception):
    """
    A keep-alive OPTIONS failed: answered 408/481, timed out, or could not
    be sent.

    @ivar status: The SIP status (408, 481) or None when there was no
        response.
    @ivar reason: A short reason: C{"dialog-gone"}, C{"timeout"},
        C{"transport-error"}, C{"error"}.
    """

    def __init__(self, reason: str, status: int | None = None, detail: str = "") -> None:
        text = reason if status is None else f"{reason} ({status})"
        super().__init__(f"{text}: {detail}" if detail else text)
        self.reason = reason
        self.status = status


class _Watched:
    """
    One watched call: its key (the engine's line), its flow while keep-alive
    is enabled, and the kind-specific state of a subclass.
    """

    __slots__ = ("key", "flow", "active", "lastUsed")

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.flow: KeepAliveFlow | None = None
        self.active = True
        # Clock time the flow was last seen used (kept while keep-alive is
        # off, so enabling it later knows how long the flow has been idle).
        self.lastUsed: float | None = None


class CallFlowKeepAlive(Service):
    """
    The common part of the per-call keep-alive services: a set of watched
    calls, each with one flow of a shared L{KeepAliveScheduler} while the
    service is running and a NAT session time is set.

    Subclasses define C{kind} (C{"sip"}, C{"rtp"}), C{_remote(watched)} and
    C{_sendKeepAlive(watched, flow)}.

    @ivar scheduler: The shared scheduler (run by its owner).
    @ivar clock: Its clock.
    @ivar natSessionTimeMs: The NAT session time in force, or None while
        disabled.
    @ivar losses: How many consecutive keep-alives may be lost with the
        binding still surviving (see L{lmevoip.keepalive.interval}).
    """

    kind = "call"
    log = Logger()

    def __init__(self, scheduler: KeepAliveScheduler, rng: random.Random | None = None, losses: int = 0) -> None:
        """
        @param scheduler: The shared scheduler.
        @param rng: The randomness for intervals and first deadlines.
        @param losses: See L{losses}; validated when a NAT session time is
            set.
        """
        self.scheduler = scheduler
        self.clock: IReactorTime = scheduler.clock
        self._rng = rng if rng is not None else random.Random()
        self.losses = losses
        self.natSessionTimeMs: int | None = None
        self._watched: dict[Hashable, Any] = {}

    @property
    def enabled(self) -> bool:
        """
        Whether a NAT session time is set (keep-alives are sent while the
        service runs).
        """
        return self.natSessionTimeMs is not None

    def setNatSessionTime(self, natSessionTimeMs: int | None) -> None:
        """
        Enable keep-alive with this NAT session time, change it, or disable
        keep-alive (C{None}). Takes effect at once on every watched call: a
        new interval makes the next keep-alive due at C{lastSent + interval}
        (possibly now); disabling removes every flow.

        @raise KeepAliveParameterError: On a bad value; nothing changes.
        """
        if natSessionTimeMs is not None:
            maximumInterval(natSessionTimeMs, self.losses)  # validates both
        self.natSessionTimeMs = natSessionTimeMs
        for watched in self._watched.values():
            if natSessionTimeMs is None:
                self._removeFlow(watched)
            elif watched.flow is not None:
                watched.flow.setInterval(self._interval())
            elif self.running:
                self._addFlow(watched)
        self.log.info(
            "{kind} keep-alive {state}",
            kind=self.kind,
            state="disabled" if natSessionTimeMs is None else f"for a NAT session time of {natSessionTimeMs} ms",
        )

    def unwatch(self, key: Hashable) -> bool:
        """
        Stop keeping a call's flow alive (the call ended or is ending).

        @return: Whether the key was watched.
        """
        watched = self._watched.pop(key, None)
        if watched is None:
            return False
        watched.active = False
        self._removeFlow(watched)
        self._detach(watched)
        return True

    def watching(self, key: Hashable) -> bool:
        """
        Whether C{key} is watched.
        """
        return key in self._watched

    def flowOf(self, key: Hashable) -> KeepAliveFlow | None:
        """
        The flow of a watched call, or None (not watched, or keep-alive off).
        """
        watched = self._watched.get(key)
        return None if watched is None else watched.flow

    def __len__(self) -> int:
        """
        The number of watched calls.
        """
        return len(self._watched)

    def snapshot(self) -> list[dict[str, Any]]:
        """
        One plain dict per watched call: C{kind}, C{key}, C{remote}
        (C{"host:port"} or None), C{enabled}, the flow's snapshot fields
        (C{interval}, C{lastSent}, C{deadline}, C{sendCount},
        C{failureCount}, C{lastError}, C{lastRoundTrip}; None while
        disabled), and the subclass's own fields.
        """
        states = []
        for watched in self._watched.values():
            remote = self._remote(watched)
            state: dict[str, Any] = {
                "kind": self.kind,
                "key": watched.key,
                "remote": None if remote is None else f"{remote[0]}:{remote[1]}",
                "enabled": watched.flow is not None,
            }
            flow = watched.flow
            for name in ("name", "interval", "lastSent", "deadline", "sendCount", "failureCount", "lastError",
                         "lastRoundTrip"):
                state[name] = None if flow is None else getattr(flow, name)
            state.update(self._describe(watched))
            states.append(state)
        return states

    # -- service --------------------------------------------------------

    def startService(self) -> None:
        """
        Start keeping every watched call alive (when enabled).
        """
        Service.startService(self)
        if self.enabled:
            for watched in self._watched.values():
                if watched.flow is None:
                    self._addFlow(watched)

    def stopService(self) -> Deferred[None]:
        """
        Remove every flow; watched calls are kept.
        """
        Service.stopService(self)
        for watched in self._watched.values():
            self._removeFlow(watched)
        return succeed(None)

    # -- internals ------------------------------------------------------

    def _watch(self, watched: Any) -> None:
        previous = self._watched.pop(watched.key, None)
        if previous is not None:
            previous.active = False
            self._removeFlow(previous)
            self._detach(previous)
        self._watched[watched.key] = watched
        if self.enabled and self.running:
            self._addFlow(watched)

    def _interval(self) -> float:
        assert self.natSessionTimeMs is not None
        return keepAliveInterval(self.natSessionTimeMs, self._rng, self.losses)

    def _addFlow(self, watched: Any) -> None:
        interval = self._interval()
        now = self.clock.seconds()
        delay = firstDelay(interval, self._rng)
        if watched.lastUsed is not None:
            # Already idle for a while: do not wait longer than the rest of
            # its interval.
            delay = min(delay, max(0.0, watched.lastUsed + interval - now))
        remote = self._remote(watched)
        name = f"{self.kind}:{watched.key}"
        if remote is not None:
            name += f":{remote[0]}:{remote[1]}"
        watched.flow = self.scheduler.addFlow(name, interval, partial(self._sendKeepAlive, watched),
                                              firstDeadline=now + delay)

    def _removeFlow(self, watched: Any) -> None:
        if watched.flow is not None:
            self.scheduler.removeFlow(watched.flow)
            watched.flow = None

    def _used(self, watched: Any) -> None:
        """
        Something was just sent on a watched call's flow.
        """
        watched.lastUsed = self.clock.seconds()
        if watched.flow is not None:
            watched.flow.touch(watched.lastUsed)

    def _detach(self, watched: Any) -> None:
        """
        Release what C{_watch} attached (observers).
        """

    def _remote(self, watched: Any) -> Address | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _describe(self, watched: Any) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _sendKeepAlive(self, watched: Any, flow: KeepAliveFlow) -> Deferred[Any] | None:  # pragma: no cover
        raise NotImplementedError


class _SipWatched(_Watched):
    __slots__ = (
        "sendOptions",
        "address",
        "isActive",
        "outstanding",
        "consecutiveFailures",
        "optionsSent",
        "nullSent",
        "failures",
        "lastStatus",
        "lastRoundTrip",
        "registeredAddress",
    )

    def __init__(self, key: Hashable, sendOptions: Callable[[], Deferred[Any]],
                 address: Callable[[], Address | None], isActive: Callable[[], bool]) -> None:
        super().__init__(key)
        self.sendOptions = sendOptions
        self.address = address
        self.isActive = isActive
        self.outstanding: Deferred[Any] | None = None
        self.consecutiveFailures = 0
        self.optionsSent = 0
        self.nullSent = 0
        self.failures = 0
        self.lastStatus: int | None = None
        self.lastRoundTrip: float | None = None
        self.registeredAddress: Address | None = None


@implementer(ISipKeepAlive)
class SipKeepAliveService(CallFlowKeepAlive):
    """
    In-dialog OPTIONS keep-alive for confirmed calls (see the module
    docstring).

    @ivar transport: The L{ISipTransport} whose sends are observed and
        through which CRLFs go.
    @ivar maxFailures: Consecutive failures after which C{onFailureLimit}
        is called, or None for never.
    """

    kind = "sip"
    log = Logger()

    def __init__(
        self,
        scheduler: KeepAliveScheduler,
        transport: ISipTransport,
        rng: random.Random | None = None,
        onFailure: Callable[..., object] | None = None,
        maxFailures: int | None = None,
        onFailureLimit: Callable[[Hashable], object] | None = None,
        losses: int = 0,
    ) -> None:
        """
        @param scheduler: The shared scheduler.
        @param transport: The SIP transport (L{ISipTransport}).
        @param rng: Randomness for the jitter.
        @param onFailure: C{onFailure(key, status=, reason=,
            consecutiveFailures=)} for every failed keep-alive.
        @param maxFailures: See L{maxFailures}: a positive int or None.
        @param onFailureLimit: C{onFailureLimit(key)}, called once when a
            call reaches C{maxFailures} consecutive failures.
        @param losses: See L{CallFlowKeepAlive.losses}.
        @raise KeepAliveParameterError: On a bad C{maxFailures}.
        """
        if maxFailures is not None and (
            isinstance(maxFailures, bool) or not isinstance(maxFailures, int) or maxFailures < 1
        ):
            raise KeepAliveParameterError("maxFailures", maxFailures, "must be a positive integer or None")
        super().__init__(scheduler, rng, losses)
        self.transport = transport
        self.maxFailures = maxFailures
        self._onFailure = onFailure
        self._onFailureLimit = onFailureLimit
        self._byAddress: dict[Address, list[_SipWatched]] = {}
        self._observing = False

    def watch(
        self,
        key: Hashable,
        sendOptions: Callable[[], Deferred[Any]],
        address: Callable[[], Address | None],
        isActive: Callable[[], bool] | None = None,
    ) -> None:
        """
        Keep a confirmed call's signalling flow alive (replacing an earlier
        watch of the same key).

        @param key: The call's key (the engine's line number).
        @param sendOptions: Sends OPTIONS in the call's dialog; returns a
            Deferred firing with the final response (an object with a
            C{status}) or failing (L{ICall.sendOptions}).
        @param address: Returns where the call's in-dialog requests go now,
            C{(host, port)}, or None; asked at every keep-alive, so a target
            refresh moves the flow.
        @param isActive: Returns whether the call is still confirmed and not
            ending; nothing is sent while it returns false.
        """
        watched = _SipWatched(key, sendOptions, address, isActive or (lambda: True))
        # A call is watched when it is confirmed: its 2xx or ACK just went
        # out on the flow.
        watched.lastUsed = self.clock.seconds()
        self._register(watched)
        self._watch(watched)

    def startService(self) -> None:
        """
        Observe the transport and start the flows.
        """
        if not self._observing:
            self.transport.addSendObserver(self._datagramSent)
            self._observing = True
        CallFlowKeepAlive.startService(self)

    def stopService(self) -> Deferred[None]:
        """
        Stop observing the transport and remove the flows.
        """
        if self._observing:
            self.transport.removeSendObserver(self._datagramSent)
            self._observing = False
        return CallFlowKeepAlive.stopService(self)

    # -- internals ------------------------------------------------------

    def _datagramSent(self, addr: Address, nbytes: int) -> None:
        watchers = self._byAddress.get(normaliseAddress(addr))
        if watchers:
            for watched in watchers:
                self._used(watched)

    def _currentAddress(self, watched: _SipWatched) -> Address | None:
        try:
            address = watched.address()
        except Exception:
            self.log.failure("SIP keep-alive: address of {key!r} raised", key=watched.key)
            return None
        return None if address is None else normaliseAddress(address)

    def _register(self, watched: _SipWatched) -> None:
        """
        File the call under its current signalling address (moving it when
        the address changed).
        """
        address = self._currentAddress(watched) if watched.active else None
        old = watched.registeredAddress
        if address == old:
            return
        if old is not None:
            watchers = self._byAddress.get(old, [])
            if watched in watchers:
                watchers.remove(watched)
            if not watchers:
                self._byAddress.pop(old, None)
        watched.registeredAddress = address
        if address is not None:
            self._byAddress.setdefault(address, []).append(watched)

    def _detach(self, watched: _SipWatched) -> None:
        self._register(watched)  # inactive: files it nowhere

    def _remote(self, watched: _SipWatched) -> Address | None:
        return watched.registeredAddress

    def _describe(self, watched: _SipWatched) -> dict[str, Any]:
        return {
            "optionsSent": watched.optionsSent,
            "nullSent": watched.nullSent,
            "failures": watched.failures,
            "consecutiveFailures": watched.consecutiveFailures,
            "lastStatus": watched.lastStatus,
            "lastRoundTrip": watched.lastRoundTrip,
            "outstanding": watched.outstanding is not None,
        }

    def _sendKeepAlive(self, watched: _SipWatched, flow: KeepAliveFlow) -> Deferred[Any] | None:
        try:
            active = watched.isActive()
        except Exception:
            self.log.failure("SIP keep-alive: isActive of {key!r} raised", key=watched.key)
            active = False
        if not active:
            return None
        self._register(watched)
        if watched.outstanding is not None:
            address = watched.registeredAddress
            if address is not None:
                watched.nullSent += 1
                self.transport.send(_CRLF, address)
            return None
        sentAt = self.clock.seconds()
        watched.optionsSent += 1
        deferred = maybeDeferred(watched.sendOptions)
        # Set before the callbacks: a Deferred that has already fired (the
        # call refused at once) runs them now, and they clear it.
        watched.outstanding = deferred
        deferred.addCallbacks(self._answered, self._failed, (watched, deferred, sentAt), None, (watched, deferred))
        return deferred

    def _clearOutstanding(self, watched: _SipWatched, deferred: Deferred[Any]) -> None:
        if watched.outstanding is deferred:
            watched.outstanding = None

    def _answered(self, response: Any, watched: _SipWatched, deferred: Deferred[Any], sentAt: float) -> float | None:
        self._clearOutstanding(watched, deferred)
        if not watched.active:
            return None
        status = getattr(response, "status", None)
        watched.lastStatus = status
        if status in FAILURE_STATUSES:
            reason = "dialog-gone" if status == 481 else "timeout"
            return self._failed(Failure(KeepAliveFailed(reason, status, "OPTIONS answered")), watched, deferred)
        roundTrip = self.clock.seconds() - sentAt
        watched.lastRoundTrip = roundTrip
        watched.consecutiveFailures = 0
        self.log.debug("SIP keep-alive of {key!r} answered {status} in {rtt:.3f}s", key=watched.key, status=status,
                       rtt=roundTrip)
        return roundTrip

    def _failed(self, failure: Failure, watched: _SipWatched, deferred: Deferred[Any]) -> Failure | None:
        self._clearOutstanding(watched, deferred)
        if not watched.active:
            # The call ended meanwhile: its outstanding OPTIONS failing is
            # no keep-alive failure.
            return None
        error = failure.value
        if isinstance(error, KeepAliveFailed):
            failed = error
        else:
            status = getattr(error, "status", None)
            name = type(error).__name__
            if status == 481:
                reason = "dialog-gone"
            elif name == "RequestTimeout":
                reason = "timeout"
            elif name == "TransportFailed":
                reason = "transport-error"
            else:
                reason = "error"
            failed = KeepAliveFailed(reason, status, str(error))
            failure = Failure(failed)
        watched.failures += 1
        watched.consecutiveFailures += 1
        if failed.status is not None:
            watched.lastStatus = failed.status
        self.log.info("SIP keep-alive of {key!r} failed: {error} ({count} in a row)", key=watched.key, error=str(failed),
                      count=watched.consecutiveFailures)
        self._report(watched, failed)
        return failure

    def _report(self, watched: _SipWatched, failed: KeepAliveFailed) -> None:
        if self._onFailure is not None:
            try:
                self._onFailure(watched.key, status=failed.status, reason=failed.reason,
                                consecutiveFailures=watched.consecutiveFailures)
            except Exception:
                self.log.failure("SIP keep-alive onFailure raised")
        if (
            self.maxFailures is not None
            and watched.consecutiveFailures == self.maxFailures
            and self._onFailureLimit is not None
            and watched.active
        ):
            try:
                self._onFailureLimit(watched.key)
            except Exception:
                self.log.failure("SIP keep-alive onFailureLimit raised")
