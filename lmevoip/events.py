"""
Engine events: their names, the record each one is, and the machinery that
delivers them to observers and to Deferred waiters.

The engine's API calls return a L{TelephonyReturnValue
<lmevoip.returns.TelephonyReturnValue>} at once; what happens afterwards
(the far end rings, answers, hangs up, a keep-alive fails) is an
L{EngineEvent}. An application receives events in either of two styles:

  - B{observers}, the SDK style: an object providing
    L{IEngineObserver <lmevoip.interfaces.IEngineObserver>} (one method,
    C{engineEvent(event)}), a subclass of L{EngineObserver} (one method per
    event, named after it in camelCase: C{sipCallRinging(event)}), or any
    callable taking the event;
  - B{Deferreds}, the Twisted style: C{engine.whenEvent(name, predicate)}
    fires with the next matching event.

Delivery is synchronous, in the order observers were added, from the
reactor thread, right after the engine's state changed (so an observer
that calls back into the engine sees the new state). An observer that
raises is logged and kept; it never stops delivery to the others nor
breaks the engine.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from lmevoip.interfaces import IEngineObserver
from lmevoip.returns import TelephonyError, TelephonyReturnValue

__all__ = [
    "EventName",
    "EngineEvent",
    "EngineObserver",
    "EngineStopped",
    "EventDispatcher",
    "observerMethodName",
]


class EventName(enum.StrEnum):
    """
    The names of the engine's events. A C{StrEnum}: each member equals its
    own name as a string (C{EventName.SipCallRinging == "SipCallRinging"}).

    Every call placed or received on a line ends with exactly one of
    L{SipCallComplete} (it had been connected) or L{SipCallFailed} (it never
    was).
    """

    #: The state of C{line} changed (C{details["state"]} and
    #: C{details["previous"]}: L{LineState <lmevoip.engine.LineState>}
    #: values). C{engine.whenLineState} waits for these.
    SipLineStateChanged = "SipLineStateChanged"
    #: An incoming call rings on C{line}: answer with C{goOffHook(line)} or
    #: refuse with C{abortIncomingCall(line, code, reason)}.
    #: C{details["calledUser"]} is the user called (the Request-URI's user
    #: when it is a registered name, else the To URI's) and
    #: C{details["registered"]} whether it is a registered name.
    SipOkToAnswerCall = "SipOkToAnswerCall"
    #: An incoming call found every line busy and was answered 486
    #: (C{line} is None, C{result} is C{SipNoFreeLine}).
    SipIncomingCallRefused = "SipIncomingCallRefused"
    #: Our call got a provisional response (C{status}: 180, 183, ...).
    SipCallRinging = "SipCallRinging"
    #: Our call was answered; media flows.
    SipOutgoingCallConnected = "SipOutgoingCallConnected"
    #: The incoming call we answered is confirmed (the ACK arrived).
    SipIncomingCallConnected = "SipIncomingCallConnected"
    #: The call was put on hold (C{details["byPeer"]} says by whom).
    SipCallHeld = "SipCallHeld"
    #: The call was taken off hold (C{details["byPeer"]}).
    SipCallResumed = "SipCallResumed"
    #: Our C{holdCall} or C{resumeCall} failed (C{details["operation"]};
    #: the session is unchanged unless the call ended).
    SipCallHoldFailed = "SipCallHoldFailed"
    #: A connected call ended (C{reason}: who hung up, C{status}).
    SipCallComplete = "SipCallComplete"
    #: A call ended before it was connected (C{result}: C{SipCallTimeOut},
    #: C{SipRemoteBusy}, C{SipCallRejected}, C{SipCallCancelled}, ...).
    SipCallFailed = "SipCallFailed"
    #: A SIP OPTIONS keep-alive of the call on C{line} timed out or was
    #: answered 408 or 481 (C{status}, C{details["consecutiveFailures"]}).
    SipKeepAliveFailure = "SipKeepAliveFailure"
    #: The address the network sees us at was learned or changed
    #: (C{details["host"]}, C{details["port"]}; RFC 3581).
    SipPublicAddressDiscovered = "SipPublicAddressDiscovered"
    #: A C{sendSipKeepAlive} host name was resolved (C{details["host"]},
    #: C{details["port"]}, C{details["address"]}).
    SipNullKeepAliveResolved = "SipNullKeepAliveResolved"
    #: A C{sendSipKeepAlive} host name did not resolve (C{details["host"]},
    #: C{details["port"]}, C{details["error"]}, C{details["retryIn"]}).
    SipNullKeepAliveResolutionFailure = "SipNullKeepAliveResolutionFailure"

    # -- registration (C{enableSipRegisterServer}) ------------------------
    #
    # The names below are those of
    # L{lmevoip.sip.registration.RegistrationEventName}, unchanged. Every
    # one carries C{callId} (the REGISTER flow's Call-ID), C{line} (the
    # phone line whose name is registered, else None) and C{details}:
    # C{name}, C{registrar} (C{"host:port"}), C{aor}, C{state} (the
    # registration's state after the event) and the fields listed here.
    # Credentials never appear in them.

    #: A REGISTER goes out (not the re-send with credentials): C{reason}
    #: and C{details["why"]} (C{initial}, C{refresh}, C{retry}, C{nat},
    #: C{interval}), C{details["expires"]} asked, C{["contact"]},
    #: C{["attempt"]}, C{["cseq"]}.
    SipRegisterTrying = "SipRegisterTrying"
    #: The registrar accepted (C{result} C{SipSuccess}):
    #: C{details["expires"]} is the expiry it granted (s),
    #: C{details["refreshIn"]} when the refresh goes out,
    #: C{details["contact"]} the bound contact.
    SipRegisterSuccess = "SipRegisterSuccess"
    #: No final answer within C{timeOutMs}, or a 408 (C{result}
    #: C{SipCallTimeOut}); C{details["retryIn"]}.
    SipRegisterTimeout = "SipRegisterTimeout"
    #: A challenge we cannot answer (no password, unsupported algorithm,
    #: malformed, stale loop; C{result} C{SipAuthenticationFailure}):
    #: C{status}, C{reason}, C{details["realm"]}, C{["retryIn"]}.
    SipRegisterAuthorizationError = "SipRegisterAuthorizationError"
    #: The registrar refused our credentials (C{result}
    #: C{SipAuthenticationFailure}): C{status}, C{details["realm"]},
    #: C{["retryIn"]}.
    SipRegisterBadCredentials = "SipRegisterBadCredentials"
    #: The REGISTER could not be sent (C{result} C{SipTransportError}):
    #: C{details["error"]}, C{["retryIn"]}.
    SipRegisterNetworkError = "SipRegisterNetworkError"
    #: 423 Interval Too Brief (C{result} C{SipRegistrationRejected}):
    #: C{details["asked"]}, C{["minExpires"]}, C{["retrying"]},
    #: C{["retryIn"]}.
    SipRegisterIntervalError = "SipRegisterIntervalError"
    #: Another final refusal (C{result} C{SipRegistrationRejected}):
    #: C{status}, C{reason}, C{details["retryIn"]}.
    SipRegisterRejected = "SipRegisterRejected"
    #: The registrar saw us at another address; a REGISTER binding it
    #: follows at once: C{details["host"]}, C{["port"]},
    #: C{["previousHost"]}, C{["previousPort"]}.
    SipRegisterNatDetected = "SipRegisterNatDetected"
    #: The un-registration (Expires 0) goes out: C{details["contacts"]}.
    SipUnregisterTrying = "SipUnregisterTrying"
    #: The registrar removed our bindings (C{result} C{SipSuccess}).
    SipUnregisterSuccess = "SipUnregisterSuccess"
    #: No final answer to the un-registration in time.
    SipUnregisterTimeout = "SipUnregisterTimeout"
    #: A challenge to the un-registration we cannot answer.
    SipUnregisterAuthorizationError = "SipUnregisterAuthorizationError"
    #: Our credentials were refused on un-registration.
    SipUnregisterBadCredentials = "SipUnregisterBadCredentials"
    #: The un-registration could not be sent.
    SipUnregisterNetworkError = "SipUnregisterNetworkError"
    #: A 423 to the un-registration.
    SipUnregisterIntervalError = "SipUnregisterIntervalError"
    #: Another refusal of the un-registration: C{status}, C{reason}.
    SipUnregisterRejected = "SipUnregisterRejected"
    #: The registrar's (or the outbound proxy's) host name did not resolve
    #: (C{result} C{SipResolutionFailure}): C{details["host"]},
    #: C{["error"]}, C{["retryIn"]} (the engine tries again then). Not a
    #: L{RegistrationEventName <lmevoip.sip.registration.RegistrationEventName>}:
    #: the engine resolves names before any client exists.
    SipRegisterResolutionFailure = "SipRegisterResolutionFailure"


def observerMethodName(name: EventName | str) -> str:
    """
    The L{EngineObserver} method for an event: its name with the first
    letter lower-cased (C{"SipCallRinging"} -> C{"sipCallRinging"}).
    """
    return name[:1].lower() + name[1:]


@dataclass(frozen=True)
class EngineEvent:
    """
    One thing that happened in the engine.

    @ivar name: The L{EventName}.
    @ivar time: The engine clock's time when it happened.
    @ivar line: The phone line concerned (0-based), or None.
    @ivar callId: The SIP Call-ID of the call concerned, or None.
    @ivar remoteParty: The far end's address (a SIP URI, as text), or None.
    @ivar status: The SIP status concerned (486, 408, ...), or None.
    @ivar reason: A short machine-readable reason (a call's end reason such
        as C{"remote-hangup"}, C{"timeout"}), or None.
    @ivar result: A L{TelephonyReturnValue} summarising the outcome (for
        C{SipCallFailed}, C{SipKeepAliveFailure}, ...), or None.
    @ivar details: Anything else, read-only (see each L{EventName}).
    """

    name: EventName
    time: float
    line: int | None = None
    callId: str | None = None
    remoteParty: str | None = None
    status: int | None = None
    reason: str | None = None
    result: TelephonyReturnValue | None = None
    details: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def asDict(self) -> dict[str, Any]:
        """
        The event as a plain dict (names and enums as strings), for logs and
        JSON.
        """
        return {
            "name": str(self.name),
            "time": self.time,
            "line": self.line,
            "callId": self.callId,
            "remoteParty": self.remoteParty,
            "status": self.status,
            "reason": self.reason,
            "result": None if self.result is None else self.result.name,
            "details": dict(self.details),
        }


@implementer(IEngineObserver)
class EngineObserver:
    """
    An L{IEngineObserver} that calls one method per event: subclass it and
    define the methods you need, named after the events in camelCase
    (C{sipOkToAnswerCall(self, event)}, C{sipCallComplete(self, event)},
    ...; see L{observerMethodName}). Events without a method go to
    L{unhandledEvent}, which ignores them.
    """

    def engineEvent(self, event: EngineEvent) -> None:
        """
        Call the method named after C{event}, or L{unhandledEvent}.
        """
        method = getattr(self, observerMethodName(event.name), None)
        if method is None:
            self.unhandledEvent(event)
        else:
            method(event)

    def unhandledEvent(self, event: EngineEvent) -> None:
        """
        An event this observer has no method for; does nothing.
        """


class EngineStopped(Exception):
    """
    The engine stopped while a C{whenEvent} or C{whenLineState} Deferred
    was waiting.
    """


Observer = Callable[[EngineEvent], object]


class _Waiter:
    __slots__ = ("predicate", "deferred")

    def __init__(self, predicate: Callable[[EngineEvent], bool], deferred: Deferred[EngineEvent]) -> None:
        self.predicate = predicate
        self.deferred = deferred


def _checkName(name: object) -> EventName:
    try:
        return EventName(name)
    except ValueError:
        raise TelephonyError(TelephonyReturnValue.SipBadParameter, f"unknown event name {name!r}") from None


class EventDispatcher:
    """
    Delivers L{EngineEvent}s to observers and waiters.

    @ivar clock: The C{IReactorTime} events are stamped with and waiter
        timeouts run on.
    @ivar delivered: How many events were emitted (int).
    @ivar observerErrors: How many observer calls raised (int).
    """

    log = Logger()

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._observers: list[tuple[object, Observer]] = []
        self._waiters: list[_Waiter] = []
        self.delivered = 0
        self.observerErrors = 0

    # -- observers --------------------------------------------------------

    def addObserver(self, observer: object) -> TelephonyReturnValue:
        """
        Add an observer: an L{IEngineObserver} provider or a callable taking
        the event. Adding one twice does nothing more.

        @return: C{SipSuccess}, or C{SipBadParameter} when C{observer} is
            neither.
        """
        if IEngineObserver.providedBy(observer):
            deliver = observer.engineEvent  # type: ignore[attr-defined]
        elif callable(observer):
            deliver = observer
        else:
            return TelephonyReturnValue.SipBadParameter
        if not any(existing is observer for existing, _ in self._observers):
            self._observers.append((observer, deliver))
        return TelephonyReturnValue.SipSuccess

    def removeObserver(self, observer: object) -> TelephonyReturnValue:
        """
        Remove an observer.

        @return: C{SipSuccess}, or C{SipInvalidHandle} when it was not
            added.
        """
        for index, (existing, _) in enumerate(self._observers):
            if existing is observer:
                del self._observers[index]
                return TelephonyReturnValue.SipSuccess
        return TelephonyReturnValue.SipInvalidHandle

    def __len__(self) -> int:
        """
        The number of observers.
        """
        return len(self._observers)

    # -- emitting ---------------------------------------------------------

    def emit(self, name: EventName, **fields: Any) -> EngineEvent:
        """
        Make an event stamped with the clock's time and deliver it to every
        observer, then to the waiters it satisfies.

        @param fields: L{EngineEvent} fields; C{details} may be a plain dict.
        @return: The event.
        """
        details = fields.pop("details", None)
        event = EngineEvent(
            name=name,
            time=self.clock.seconds(),
            details=MappingProxyType(dict(details or {})),
            **fields,
        )
        self.delivered += 1
        self.log.debug("engine event {event}", event=event.asDict())
        for observer, deliver in list(self._observers):
            try:
                deliver(event)
            except Exception:
                self.observerErrors += 1
                self.log.failure("engine observer {observer!r} raised on {eventName}", observer=observer,
                                 eventName=str(name))
        if self._waiters:
            self._wake(event)
        return event

    def _wake(self, event: EngineEvent) -> None:
        due = []
        for waiter in list(self._waiters):
            try:
                matched = waiter.predicate(event)
            except Exception:
                self._waiters.remove(waiter)
                waiter.deferred.errback(Failure())
                continue
            if matched:
                self._waiters.remove(waiter)
                due.append(waiter)
        for waiter in due:
            waiter.deferred.callback(event)

    # -- waiting ----------------------------------------------------------

    def whenEvent(
        self,
        name: EventName | str | None = None,
        predicate: Callable[[EngineEvent], bool] | None = None,
        line: int | None = None,
        timeout: float | None = None,
    ) -> Deferred[EngineEvent]:
        """
        A Deferred firing with the next event that matches.

        @param name: The event name (an L{EventName} or its string), or None
            for any.
        @param predicate: Also required to return true for the event; what
            it raises fails the Deferred.
        @param line: Only events of this line.
        @param timeout: Seconds after which the Deferred fails with
            C{twisted.internet.defer.TimeoutError}, or None to wait forever.
        @return: The Deferred; cancelling it stops the wait. It fails with
            L{TelephonyError} (C{SipBadParameter}) on an unknown name or a
            bad timeout, and with L{EngineStopped} when the engine stops.
        """
        try:
            wanted = None if name is None else _checkName(name)
            if timeout is not None and (
                isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0
            ):
                raise TelephonyError(TelephonyReturnValue.SipBadParameter, f"timeout={timeout!r}")
        except TelephonyError as e:
            return fail(e)

        def matches(event: EngineEvent) -> bool:
            if wanted is not None and event.name is not wanted:
                return False
            if line is not None and event.line != line:
                return False
            return predicate is None or bool(predicate(event))

        return self.waitFor(matches, timeout)

    def waitFor(
        self, predicate: Callable[[EngineEvent], bool], timeout: float | None = None
    ) -> Deferred[EngineEvent]:
        """
        A Deferred firing with the next event for which C{predicate} is true
        (the engine builds C{whenLineState} on this).
        """

        def cancel(deferred: Deferred[EngineEvent]) -> None:
            self._waiters[:] = [w for w in self._waiters if w.deferred is not deferred]

        deferred: Deferred[EngineEvent] = Deferred(cancel)
        self._waiters.append(_Waiter(predicate, deferred))
        if timeout is not None:
            deferred.addTimeout(timeout, self.clock)
        return deferred

    @property
    def pendingWaiters(self) -> int:
        """
        How many Deferreds are waiting.
        """
        return len(self._waiters)

    def stop(self) -> None:
        """
        Fail every waiting Deferred with L{EngineStopped} (their timeouts are
        cancelled with them).
        """
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.deferred.errback(EngineStopped("the engine stopped"))

