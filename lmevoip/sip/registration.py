"""
The SIP registration client (RFC 3261 section 10), a usage of its own on
top of the user agent, as PJSIP keeps its C{regc} beside the INVITE
session.

One L{RegistrationClient} keeps one address-of-record (AOR) registered
with one registrar: one REGISTER flow, so one Call-ID, one From tag and one
CSeq sequence for its whole life (RFC 3261 10.2: the same Call-ID for every
REGISTER to the same registrar, CSeq incremented by one each time). An
application with several accounts makes one client per AOR; they may share
one L{UserAgent}.

It is sans-socket like the layers below it: requests leave through the
user agent's transaction layer (a L{ClientRequest}), every timer runs on
the user agent's injected C{IReactorTime}, and backoff jitter comes from an
injected C{random()}. Its state machine (L{RegistrationState})::

                 register()
  Unregistered ------------> Registering --2xx--> Registered
       ^                      |   ^  |               |  ^
       |                      |   |  | 401/407,      |  | 2xx
       |           failure    |   |  | 423, NAT:     |  |
       |      (timeout, 4xx,  |   |  | new REGISTER  | refresh timer
       |        5xx, auth)    |   |  +-----<         v  |
       |                      v   |  retry timer    Refreshing
       |                     Backoff <------------------+ failure
       |
       +-------- final answer or timeout --- Unregistering <-- unregister()
                                                      (from any state while
                                                   a binding may exist)

Refresh rule: a registration granted C{granted} seconds (the C{expires}
parameter of our Contact in the 2xx, else its Expires header, else what
we asked) is refreshed after C{min(interval, granted - margin)} seconds,
where C{margin = min(REFRESH_MARGIN, granted / 2)}. By default we ask for
C{interval + REFRESH_MARGIN} seconds, so that a registrar that grants what
we ask sees a REGISTER every C{interval} seconds exactly, and one that
grants less is refreshed before the binding lapses.

Failures are retried, never abandoned: after a timeout, a transport error,
a 408 or a 5xx, at the next exponential L{Backoff} delay (with bounded
jitter, the Retry-After of a 503 as a floor); after an authentication
failure or another 4xx/6xx, not before the next refresh interval either,
so wrong credentials cost two REGISTERs per interval and never a storm.

Events go to an L{lmevoip.interfaces.IRegistrationObserver} as
C{registrationEvent(name, **fields)} with the names of
L{RegistrationEventName}. Passwords and authentication usernames never
appear in logs, events or C{repr()}.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import random as randomModule
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from lmevoip.interfaces import IRegistrationClient
from lmevoip.sip._grammar import formatHost
from lmevoip.sip.auth import AuthAnswer, AuthGiveUp, DigestAuthenticator, GiveUpReason
from lmevoip.sip.call import RequestTimeout
from lmevoip.sip.headers import NameAddr
from lmevoip.sip.message import Headers, Request, Response, SipParseError
from lmevoip.sip.transaction import TransactionState, generateTag
from lmevoip.sip.uri import SipUri
from lmevoip.sip.useragent import ALLOWED_METHODS, ClientRequest

__all__ = [
    "Backoff",
    "REFRESH_MARGIN",
    "RegistrationClient",
    "RegistrationConfig",
    "RegistrationConfigError",
    "RegistrationEventName",
    "RegistrationState",
    "TRANSITIONS",
    "refreshDelay",
]

Address = tuple[str, int]

#: Seconds before the granted expiry at which a refresh is due at the
#: latest (halved for registrations shorter than twice this).
REFRESH_MARGIN = 5.0
#: The shortest delay between two REGISTERs of a refresh schedule.
MIN_REFRESH_DELAY = 0.5
#: How many 423 (Interval Too Brief) answers one attempt follows.
MAX_INTERVAL_RETRIES = 2
#: How many times one attempt re-registers because the registrar saw
#: another address than our Contact (a NAT that keeps changing our port
#: must not make us loop).
MAX_NAT_RETRIES = 2
#: A backstop on authenticated re-sends per attempt (the authenticator
#: itself allows at most two per realm).
MAX_AUTH_RETRIES = 4
#: The most contacts we remember as possibly bound (each one is removed
#: with expires=0 on the next REGISTER or the un-registration).
MAX_TRACKED_CONTACTS = 8
#: The largest delta-seconds value SIP allows (RFC 3261 25.1).
MAX_DELTA_SECONDS = 2 ** 32 - 1

_DIGITS = re.compile(r"\s*(\d{1,10})")
_USER_CHARS = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+\Z")


class RegistrationConfigError(ValueError):
    """
    A L{RegistrationConfig} value is out of range or malformed.

    @ivar field: the name of the offending field.
    """

    def __init__(self, field: str, value: object, why: str) -> None:
        shown = "<hidden>" if field == "password" else repr(value)
        super().__init__(f"registration {field}={shown}: {why}")
        self.field = field


class RegistrationState(enum.Enum):
    """
    The states of a L{RegistrationClient} (see the module docstring).
    """

    #: No binding and nothing in flight.
    UNREGISTERED = "Unregistered"
    #: A REGISTER (first one, retry, or re-REGISTER after a 401/407, 423 or
    #: a NAT discovery) is in flight.
    REGISTERING = "Registering"
    #: The binding is in force; the refresh timer runs.
    REGISTERED = "Registered"
    #: The refresh REGISTER is in flight.
    REFRESHING = "Refreshing"
    #: The last attempt failed; the retry timer runs.
    BACKOFF = "Backoff"
    #: The REGISTER with expires 0 is in flight.
    UNREGISTERING = "Unregistering"


_S = RegistrationState

#: The allowed moves between states (self-moves, such as Registering ->
#: Registering for a re-REGISTER after a 401, are not listed: they are no
#: move).
TRANSITIONS: Mapping[RegistrationState, frozenset[RegistrationState]] = {
    # Unregistered -> Unregistering: un-registering again after an
    # un-registration that got no answer (its contacts may still be bound).
    _S.UNREGISTERED: frozenset({_S.REGISTERING, _S.UNREGISTERING}),
    _S.REGISTERING: frozenset({_S.REGISTERED, _S.BACKOFF, _S.UNREGISTERING}),
    _S.REGISTERED: frozenset({_S.REFRESHING, _S.UNREGISTERING}),
    _S.REFRESHING: frozenset({_S.REGISTERED, _S.REGISTERING, _S.BACKOFF, _S.UNREGISTERING}),
    _S.BACKOFF: frozenset({_S.REGISTERING, _S.UNREGISTERING, _S.UNREGISTERED}),
    _S.UNREGISTERING: frozenset({_S.UNREGISTERED}),
}


class RegistrationEventName(enum.StrEnum):
    """
    The names of the events a L{RegistrationClient} reports. Every event
    carries C{aor} (the address-of-record, text) and C{state} (the
    L{RegistrationState} value after the event); the others are listed
    with each name.
    """

    #: A REGISTER goes out (not counting re-sends with credentials):
    #: C{attempt}, C{why} (initial, refresh, retry, nat, interval),
    #: C{expires} asked, C{contact}, C{cseq}.
    SipRegisterTrying = "SipRegisterTrying"
    #: The registrar accepted: C{expires} granted (s), C{contact},
    #: C{refreshIn} (s).
    SipRegisterSuccess = "SipRegisterSuccess"
    #: No final answer within C{timeOutMs} (or Timer F), or a 408:
    #: C{retryIn}.
    SipRegisterTimeout = "SipRegisterTimeout"
    #: A 401/407 we cannot answer (no credentials, unsupported algorithm,
    #: malformed challenge, stale nonce loop): C{status}, C{reason} (a
    #: L{GiveUpReason} value), C{realm}, C{retryIn}.
    SipRegisterAuthorizationError = "SipRegisterAuthorizationError"
    #: Our credentials were refused (a fresh challenge to a fresh answer):
    #: C{status}, C{realm}, C{retryIn}.
    SipRegisterBadCredentials = "SipRegisterBadCredentials"
    #: The request could not be sent: C{error}, C{retryIn}.
    SipRegisterNetworkError = "SipRegisterNetworkError"
    #: 423 Interval Too Brief: C{asked}, C{minExpires} (None when absent),
    #: C{retrying} (True: re-sent at once with Min-Expires), C{retryIn}.
    SipRegisterIntervalError = "SipRegisterIntervalError"
    #: Another final failure (403, 404, 503, ...): C{status}, C{reason},
    #: C{retryIn}.
    SipRegisterRejected = "SipRegisterRejected"
    #: The registrar saw us at another address (received/rport of our
    #: Via): C{host}, C{port}, C{previousHost}, C{previousPort}; a
    #: REGISTER with that address in the Contact follows at once.
    SipRegisterNatDetected = "SipRegisterNatDetected"
    #: The un-registration (expires 0) goes out: C{cseq}, C{contacts}.
    SipUnregisterTrying = "SipUnregisterTrying"
    #: The registrar removed our bindings.
    SipUnregisterSuccess = "SipUnregisterSuccess"
    #: No final answer to the un-registration in time.
    SipUnregisterTimeout = "SipUnregisterTimeout"
    #: A challenge to the un-registration we cannot answer: C{status},
    #: C{reason}, C{realm}.
    SipUnregisterAuthorizationError = "SipUnregisterAuthorizationError"
    #: Our credentials were refused on un-registration: C{status},
    #: C{realm}.
    SipUnregisterBadCredentials = "SipUnregisterBadCredentials"
    #: The un-registration could not be sent: C{error}.
    SipUnregisterNetworkError = "SipUnregisterNetworkError"
    #: A 423 to the un-registration (a broken registrar): C{minExpires}.
    SipUnregisterIntervalError = "SipUnregisterIntervalError"
    #: Another final failure of the un-registration: C{status}, C{reason}.
    SipUnregisterRejected = "SipUnregisterRejected"


_E = RegistrationEventName

#: Outcome kind -> (registration event, un-registration event).
_OUTCOMES = {
    "trying": (_E.SipRegisterTrying, _E.SipUnregisterTrying),
    "success": (_E.SipRegisterSuccess, _E.SipUnregisterSuccess),
    "timeout": (_E.SipRegisterTimeout, _E.SipUnregisterTimeout),
    "authorization": (_E.SipRegisterAuthorizationError, _E.SipUnregisterAuthorizationError),
    "credentials": (_E.SipRegisterBadCredentials, _E.SipUnregisterBadCredentials),
    "network": (_E.SipRegisterNetworkError, _E.SipUnregisterNetworkError),
    "interval": (_E.SipRegisterIntervalError, _E.SipUnregisterIntervalError),
    "rejected": (_E.SipRegisterRejected, _E.SipUnregisterRejected),
}


@dataclass(frozen=True)
class Backoff:
    """
    The retry delays after failed attempts: exponential, capped, with
    bounded jitter (the delay after the C{n}th consecutive failure lies in
    C{[(1 - jitter) * d, d]} with C{d = min(maximum, initial * factor **
    (n - 1))}, so it never exceeds C{maximum}).

    @ivar initial: the first delay (s).
    @ivar factor: the growth per failure.
    @ivar maximum: the cap (s).
    @ivar jitter: the fraction of the delay that may be taken off at
        random, in C{[0, 1)}.
    """

    initial: float = 2.0
    factor: float = 2.0
    maximum: float = 300.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if not (self.initial > 0 and math.isfinite(self.initial)):
            raise RegistrationConfigError("backoff.initial", self.initial, "must be > 0")
        if not (self.factor >= 1 and math.isfinite(self.factor)):
            raise RegistrationConfigError("backoff.factor", self.factor, "must be >= 1")
        if not (self.maximum >= self.initial and math.isfinite(self.maximum)):
            raise RegistrationConfigError("backoff.maximum", self.maximum, "must be >= initial")
        if not 0 <= self.jitter < 1:
            raise RegistrationConfigError("backoff.jitter", self.jitter, "must be in [0, 1)")

    def ceiling(self, failures: int) -> float:
        """
        The delay before jitter after C{failures} consecutive failures.
        """
        exponent = min(max(failures, 1) - 1, 64)
        return min(self.maximum, self.initial * self.factor ** exponent)

    def delay(self, failures: int, random: Callable[[], float]) -> float:
        """
        The delay after C{failures} consecutive failures (1 for the first).

        @param random: returns a float in C{[0, 1)}.
        """
        ceiling = self.ceiling(failures)
        draw = min(max(random(), 0.0), 1.0)
        return ceiling * (1.0 - self.jitter * draw)


def refreshDelay(interval: float, granted: float, margin: float = REFRESH_MARGIN) -> float:
    """
    When to refresh a binding granted C{granted} seconds ago, asked to be
    refreshed every C{interval} seconds: C{min(interval, granted - m)}
    with C{m = min(margin, granted / 2)}, and never sooner than
    L{MIN_REFRESH_DELAY}.
    """
    guard = min(margin, granted / 2.0)
    return max(MIN_REFRESH_DELAY, min(interval, granted - guard))


def _checkUser(fieldName: str, value: object) -> str:
    if not isinstance(value, str) or not value or not _USER_CHARS.match(value):
        raise RegistrationConfigError(fieldName, value, "must be a non-empty SIP user part")
    return value


def _checkHost(fieldName: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip("[]"):
        raise RegistrationConfigError(fieldName, value, "must be a host")
    try:
        return SipUri("sip", None, None, value.strip("[]")).host
    except ValueError as e:
        raise RegistrationConfigError(fieldName, value, str(e)) from None


def _checkAddress(fieldName: str, value: object) -> str:
    """An IP address (the transport sends to addresses only: no DNS here)."""
    host = _checkHost(fieldName, value)
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise RegistrationConfigError(fieldName, value,
                                      "must be an IP address (resolve names first)") from None


def _checkPort(fieldName: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise RegistrationConfigError(fieldName, value, "must be a port (1-65535)")
    return value


@dataclass
class RegistrationConfig:
    """
    What one registration needs to know (the arguments of the SDK's
    C{enableSipRegisterServer}).

    @ivar registrarHost: the registrar's IP address (no DNS here).
    @ivar name: the user part of the address-of-record.
    @ivar registrarPort: the registrar's UDP port.
    @ivar domain: the host of the AOR and of the Request-URI; by default
        C{registrarHost} (and the Request-URI then carries the port).
    @ivar password: the digest password, or L{None} (a challenge is then
        an authorization error). Never logged or repr'd.
    @ivar authUsername: the digest username (default: C{name}). Never
        logged.
    @ivar interval: seconds between REGISTERs (the SDK's
        C{registrationUpdateIntervalSeconds}); a registrar granting a
        shorter expiry is refreshed sooner (see L{refreshDelay}).
    @ivar expires: the expiry asked for (s); default C{ceil(interval) +
        REFRESH_MARGIN}.
    @ivar timeoutMs: the longest wait for the final answer of one REGISTER
        transaction (the SDK's C{timeOutMs}); the transaction's own Timer F
        (64*T1) still applies when shorter.
    @ivar natAutoDetect: re-register at once with the address the
        registrar saw (the received/rport of our Via) when it differs from
        our Contact.
    @ivar outboundProxy: C{(host, port)} to send the REGISTERs to (with a
        Route header naming it, loose routing), or L{None} for the
        registrar itself.
    @ivar contactUser: the user part of our Contact (default: the user
        agent's C{config.user}).
    @ivar displayName: the display name of To and From, or L{None}.
    @ivar backoff: the L{Backoff} retry policy.
    @ivar preemptiveAuth: re-use the last challenge for refreshes
        (credentials on the first send, no 401 round trip).
    """

    registrarHost: str
    name: str
    registrarPort: int = 5060
    domain: str | None = None
    password: str | None = field(default=None, repr=False)
    authUsername: str | None = field(default=None, repr=False)
    interval: float = 300.0
    expires: int | None = None
    timeoutMs: int = 32000
    natAutoDetect: bool = True
    outboundProxy: Address | None = None
    contactUser: str | None = None
    displayName: str | None = None
    backoff: Backoff = field(default_factory=Backoff)
    preemptiveAuth: bool = True

    def __post_init__(self) -> None:
        self.registrarHost = _checkAddress("registrarHost", self.registrarHost)
        _checkPort("registrarPort", self.registrarPort)
        _checkUser("name", self.name)
        if self.domain is not None:
            self.domain = _checkHost("domain", self.domain)
        if self.contactUser is not None:
            _checkUser("contactUser", self.contactUser)
        if self.password is not None and not isinstance(self.password, str):
            raise RegistrationConfigError("password", self.password, "must be a string")
        if self.authUsername is not None and (not isinstance(self.authUsername, str)
                                              or not self.authUsername):
            raise RegistrationConfigError("authUsername", "<hidden>", "must be a non-empty string")
        if (isinstance(self.interval, bool) or not isinstance(self.interval, (int, float))
                or not math.isfinite(self.interval) or self.interval < 1):
            raise RegistrationConfigError("interval", self.interval, "must be >= 1 second")
        if self.expires is not None and (isinstance(self.expires, bool)
                                         or not isinstance(self.expires, int)
                                         or not 1 <= self.expires <= MAX_DELTA_SECONDS):
            raise RegistrationConfigError("expires", self.expires, "must be 1 .. 2**32-1 seconds")
        if (isinstance(self.timeoutMs, bool) or not isinstance(self.timeoutMs, int)
                or self.timeoutMs < 1):
            raise RegistrationConfigError("timeoutMs", self.timeoutMs, "must be >= 1 ms")
        if self.outboundProxy is not None:
            try:
                host, port = self.outboundProxy
            except (TypeError, ValueError):
                raise RegistrationConfigError("outboundProxy", self.outboundProxy,
                                              "must be (host, port)") from None
            self.outboundProxy = (_checkAddress("outboundProxy", host),
                                  _checkPort("outboundProxy", port))
        if self.displayName is not None and any(ord(ch) < 32 for ch in self.displayName):
            raise RegistrationConfigError("displayName", self.displayName,
                                          "must not hold control characters")

    @property
    def askedExpires(self) -> int:
        """The expiry asked for: C{expires}, or C{ceil(interval) + REFRESH_MARGIN}."""
        if self.expires is not None:
            return self.expires
        return min(MAX_DELTA_SECONDS, math.ceil(self.interval) + int(REFRESH_MARGIN))


def _address(host: str, port: int) -> Address:
    """C{(host, port)} with the host in one canonical spelling (IPv6 compressed)."""
    host = host.strip("[]").lower()
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        pass
    return host, port


class _RegisterRequest(ClientRequest):
    """
    A L{ClientRequest} whose 401/407 responses go to the registration,
    which answers them with its own account's authenticator (the user
    agent's would use the user agent's credentials) and its own CSeq.
    """

    def responseReceived(self, response: Response, tx) -> None:
        if tx is self.transaction:
            self.handler.responseReceived(self, response)


@dataclass
class _Pending:
    """
    The REGISTER in flight and what it asked.

    @ivar request: the L{ClientRequest}.
    @ivar expires: the Expires it carries.
    @ivar contact: the contact URI it binds (None when un-registering).
    @ivar removed: the contact URIs it removes (expires=0).
    @ivar timer: the C{timeoutMs} timer.
    """

    request: ClientRequest
    expires: int
    contact: str | None
    removed: tuple[str, ...]
    timer: Any = None


@implementer(IRegistrationClient)
class RegistrationClient(Service):
    """
    Keeps one address-of-record registered (see the module docstring).

    A C{twisted.application.service.Service}: C{startService} registers,
    C{stopService} un-registers and returns the Deferred of L{unregister}.

    @ivar config: the L{RegistrationConfig}.
    @ivar userAgent: the L{UserAgent} the REGISTERs go through.
    @ivar observer: the L{IRegistrationObserver}, or L{None}.
    @ivar clock: the user agent's C{IReactorTime}.
    @ivar state: the L{RegistrationState}.
    @ivar aor: the address-of-record (L{SipUri}).
    @ivar requestUri: the Request-URI of our REGISTERs (L{SipUri}).
    @ivar callId: the Call-ID of every REGISTER of this flow.
    @ivar cseq: the CSeq number of the last REGISTER sent (0 before).
    @ivar askedExpires: the expiry asked in REGISTERs (raised by a 423).
    @ivar grantedExpires: the expiry the registrar last granted, or None.
    @ivar bindingExpiresAt: the clock time at which the last granted
        binding lapses, or None.
    @ivar publicAddress: C{(host, port)} the registrar saw us at, when NAT
        auto-detection found it different from our Contact, else None.
    @ivar attempts: REGISTER attempts started (auth re-sends not counted).
    @ivar failures: consecutive failed attempts (0 after a success).
    @ivar lastEvent: the name of the last event reported, or None.
    """

    log = Logger()

    def __init__(self, userAgent, config: RegistrationConfig, observer=None,
                 authenticator: DigestAuthenticator | None = None,
                 random: Callable[[], float] = randomModule.random) -> None:
        """
        @param userAgent: the L{lmevoip.sip.useragent.UserAgent}; its clock
            drives every timer here.
        @param config: the L{RegistrationConfig}.
        @param observer: an L{IRegistrationObserver}.
        @param authenticator: the account's L{DigestAuthenticator}; by
            default one is made from C{config.authUsername or config.name}
            and C{config.password} (none without a password).
        @param random: the jitter source, returning floats in C{[0, 1)}.
        """
        self.userAgent = userAgent
        self.config = config
        self.observer = observer
        self.clock = userAgent.clock
        self._random = random
        if authenticator is None and config.password is not None:
            authenticator = DigestAuthenticator(config.authUsername or config.name,
                                                config.password,
                                                preemptive=config.preemptiveAuth, log=self.log)
        self.authenticator = authenticator
        domain = config.domain or config.registrarHost
        self.aor = SipUri("sip", config.name, None, domain)
        if config.domain is None and config.registrarPort != 5060:
            self.requestUri = SipUri("sip", None, None, domain, config.registrarPort)
        else:
            self.requestUri = SipUri("sip", None, None, domain)
        self.state = RegistrationState.UNREGISTERED
        self.callId = f"{secrets.token_hex(12)}@{userAgent.config.host.strip('[]')}"
        self.fromTag = generateTag()
        self.cseq = 0
        self.askedExpires = config.askedExpires
        self.grantedExpires: int | None = None
        self.bindingExpiresAt: float | None = None
        self.publicAddress: Address | None = None
        self.attempts = 0
        self.failures = 0
        self.lastEvent: RegistrationEventName | None = None
        self._pending: _Pending | None = None
        self._timer: Any = None
        self._authRetries = 0
        self._intervalRetries = 0
        self._natRetries = 0
        # Contact URI -> True when a 2xx confirmed it, False when sent but
        # unconfirmed (it may be bound: the answer may have been lost).
        self._contacts: dict[str, bool] = {}
        self._unregisterWaiters: list[Deferred] = []
        self._registerAfterUnregister = False

    def __repr__(self) -> str:
        return f"<RegistrationClient {self.aor} {self.state.value} cseq={self.cseq}>"

    # -- addresses ------------------------------------------------------------

    @property
    def destination(self) -> Address:
        """Where our REGISTERs go: the outbound proxy, else the registrar."""
        if self.config.outboundProxy is not None:
            return self.config.outboundProxy
        return self.config.registrarHost, self.config.registrarPort

    @property
    def contactAddress(self) -> Address:
        """
        The host and port of our Contact: what the registrar saw when NAT
        auto-detection found it, else the user agent's contact address.
        """
        if self.config.natAutoDetect and self.publicAddress is not None:
            return self.publicAddress
        return self.userAgent.contactAddress

    @property
    def contact(self) -> str:
        """Our contact URI, as text."""
        host, port = self.contactAddress
        user = self.config.contactUser or self.userAgent.config.user
        return str(SipUri("sip", user, None, host.strip("[]"), port))

    @property
    def isRegistered(self) -> bool:
        """Whether a binding granted by the registrar is still in force."""
        return self.bindingExpiresAt is not None and self.clock.seconds() < self.bindingExpiresAt

    def snapshot(self) -> dict[str, Any]:
        """A plain dict describing the registration (no credentials)."""
        return {
            "aor": str(self.aor),
            "state": self.state.value,
            "registrar": self.destination,
            "contact": self.contact,
            "callId": self.callId,
            "cseq": self.cseq,
            "askedExpires": self.askedExpires,
            "grantedExpires": self.grantedExpires,
            "bindingExpiresAt": self.bindingExpiresAt,
            "publicAddress": self.publicAddress,
            "attempts": self.attempts,
            "failures": self.failures,
            "nextAttemptAt": self._timer.getTime() if self._timer is not None else None,
            "lastEvent": self.lastEvent.value if self.lastEvent is not None else None,
        }

    # -- public API -----------------------------------------------------------

    def register(self) -> None:
        """
        Start registering (at once), or retry at once while backing off.
        Does nothing while a registration is in force or in flight; during
        an un-registration, registers again once it is over.
        """
        state = self.state
        if state is RegistrationState.UNREGISTERING:
            self._registerAfterUnregister = True
        elif state in (RegistrationState.UNREGISTERED, RegistrationState.BACKOFF):
            self._startAttempt("initial" if state is RegistrationState.UNREGISTERED else "retry")

    def unregister(self) -> Deferred:
        """
        Remove our bindings (a REGISTER with Expires 0 and each contact we
        may have bound with expires=0) and stop refreshing. What is in
        flight is abandoned (a late answer to it is ignored; the registrar
        discards it by its lower CSeq).

        @return: a Deferred firing, never failing, once the registrar has
            answered or the request timed out, with the name of the last
            event (a L{RegistrationEventName}), or with L{None} at once when
            no binding can exist (nothing was ever sent, or every REGISTER
            was refused).
        """
        self._registerAfterUnregister = False
        if self.state is RegistrationState.UNREGISTERING:
            d: Deferred = Deferred()
            self._unregisterWaiters.append(d)
            return d
        self._cancelTimer()
        self._abandonPending()
        contacts = list(self._contacts)
        if not contacts:
            self._setState(RegistrationState.UNREGISTERED)
            return succeed(None)
        d = Deferred()
        self._unregisterWaiters.append(d)
        self._setState(RegistrationState.UNREGISTERING)
        self._authRetries = 0
        request = self._build(0, None, tuple(contacts))
        self._event("trying", cseq=self.cseq, contacts=contacts)
        self._send(request, 0, None, tuple(contacts))
        return d

    def stop(self) -> Deferred:
        """Un-register (see L{unregister}); the SDK's disable call."""
        return self.unregister()

    def startService(self) -> None:
        """Register (the service starts)."""
        Service.startService(self)
        self.register()

    def stopService(self) -> Deferred:
        """Un-register; the Deferred fires when that is over."""
        Service.stopService(self)
        return self.unregister()

    # -- the state machine ----------------------------------------------------

    def _setState(self, new: RegistrationState) -> None:
        old = self.state
        if new is old:
            return
        if new not in TRANSITIONS[old]:
            raise RuntimeError(f"registration of {self.aor}: no move {old.value} -> {new.value}")
        self.state = new
        self.log.debug("registration {aor}: {old} -> {new}", aor=str(self.aor),
                       old=old.value, new=new.value)

    def _event(self, kind: str, **fields: Any) -> None:
        name = _OUTCOMES[kind][self.state is RegistrationState.UNREGISTERING]
        self._report(name, **fields)

    def _report(self, name: RegistrationEventName, **fields: Any) -> None:
        self.lastEvent = name
        fields = {"aor": str(self.aor), "state": self.state.value, **fields}
        self.log.info("registration {aor}: {event} {fields}", aor=fields["aor"], event=name.value,
                      fields={k: v for k, v in fields.items() if k not in ("aor",)})
        if self.observer is None:
            return
        try:
            self.observer.registrationEvent(name, **fields)
        except Exception:
            self.log.failure("registration observer raised on {event}", event=name.value)

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _schedule(self, delay: float, function: Callable[[], None]) -> None:
        self._cancelTimer()

        def fire() -> None:
            self._timer = None
            try:
                function()
            except Exception:
                # A bug must not end the registration: log and back off.
                self.log.failure("registration {aor}: timer raised", aor=str(self.aor))
                if self.state in (RegistrationState.REGISTERING, RegistrationState.REFRESHING):
                    self._abandonPending()
                    self._attemptFailed("network", transient=True, error="internal error")

        self._timer = self.clock.callLater(delay, fire)

    def _startAttempt(self, why: str) -> None:
        self._cancelTimer()
        self._abandonPending()
        self.attempts += 1
        self._authRetries = 0
        self._intervalRetries = 0
        self._natRetries = 0
        self._setState(RegistrationState.REFRESHING if why == "refresh"
                       else RegistrationState.REGISTERING)
        self._sendRegister(why)

    def _sendRegister(self, why: str) -> None:
        """A new REGISTER binding our current contact (same attempt)."""
        contact = self.contact
        removed = tuple(uri for uri in self._contacts if uri != contact)
        request = self._build(self.askedExpires, contact, removed)
        self._event("trying", attempt=self.attempts, why=why, expires=self.askedExpires,
                    contact=contact, cseq=self.cseq)
        self._send(request, self.askedExpires, contact, removed)

    def _build(self, expires: int, contact: str | None, removed: tuple[str, ...],
               answer: AuthAnswer | None = None) -> Request:
        """
        A REGISTER of this flow: new CSeq, our Call-ID and From tag, the
        contact with C{expires} (the Expires header) and each removed one
        with expires=0, and the credentials of C{answer} (the answer to a
        challenge), else pre-emptive ones when we have them.
        """
        ua = self.userAgent
        config = self.config
        self.cseq += 1
        headers = Headers()
        headers.add("Via", f"SIP/2.0/UDP {formatHost(ua.config.host.strip('[]'))}:"
                           f"{ua.config.port};rport")
        headers.add("Max-Forwards", "70")
        if config.outboundProxy is not None:
            proxy = SipUri("sip", None, None, config.outboundProxy[0], config.outboundProxy[1],
                           {"lr": None})
            headers.add("Route", f"<{proxy}>")
        address = NameAddr(self.aor, config.displayName)
        headers.add("From", str(address.withTag(self.fromTag)))
        headers.add("To", str(address))
        headers.add("Call-ID", self.callId)
        headers.add("CSeq", f"{self.cseq} REGISTER")
        if contact is not None:
            headers.add("Contact", f"<{contact}>")
        for uri in removed:
            headers.add("Contact", f"<{uri}>;expires=0")
        headers.add("Expires", str(expires))
        headers.add("Allow", ", ".join(ALLOWED_METHODS))
        if ua.config.userAgentHeader:
            headers.add("User-Agent", ua.config.userAgentHeader)
        if answer is None and self.authenticator is not None:
            answer = self.authenticator.preemptiveAnswer("REGISTER", str(self.requestUri))
        if answer is not None:
            answer.apply(headers)
        return Request("REGISTER", self.requestUri, headers)

    def _send(self, request: Request, expires: int, contact: str | None,
              removed: tuple[str, ...]) -> None:
        cr = _RegisterRequest(self.userAgent, request, self.destination, self)
        pending = _Pending(cr, expires, contact, removed)
        self._pending = pending
        if contact is not None and contact not in self._contacts:
            self._contacts[contact] = False
            self._trimContacts()
        pending.timer = self.clock.callLater(self.config.timeoutMs / 1000.0, self._timedOut, pending)
        try:
            cr.start()
        except Exception as e:
            if self._pending is pending:
                self._finishPending()
                self._failure("network", transient=True, error=str(e) or type(e).__name__)

    def _trimContacts(self) -> None:
        while len(self._contacts) > MAX_TRACKED_CONTACTS:
            unconfirmed = [uri for uri, confirmed in self._contacts.items() if not confirmed]
            victim = unconfirmed[0] if unconfirmed else next(iter(self._contacts))
            del self._contacts[victim]

    def _finishPending(self) -> _Pending | None:
        pending, self._pending = self._pending, None
        if pending is not None and pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        return pending

    def _abandonPending(self) -> None:
        """Forget the REGISTER in flight and stop its retransmissions."""
        pending = self._finishPending()
        if pending is None:
            return
        tx = pending.request.transaction
        if tx is not None and tx.state is not TransactionState.TERMINATED:
            tx.terminate()

    # -- answers --------------------------------------------------------------

    def responseReceived(self, cr: ClientRequest, response: Response) -> None:
        """A response to one of our REGISTERs (from the L{ClientRequest})."""
        pending = self._pending
        if pending is None or cr is not pending.request or response.status < 200:
            return
        self._finishPending()
        try:
            self._finalResponse(pending, response)
        except SipParseError as e:
            self.log.info("registration {aor}: unusable {status}: {error}", aor=str(self.aor),
                          status=response.status, error=str(e))
            self._failure("rejected", transient=True, status=response.status,
                          reason=f"malformed response: {str(e)[:80]}")

    def _finalResponse(self, pending: _Pending, response: Response) -> None:
        status = response.status
        if 200 <= status < 300:
            if self.state is RegistrationState.UNREGISTERING:
                self._contacts.clear()
                self.grantedExpires = None
                self.bindingExpiresAt = None
                self._unregistered("success")
            else:
                self._registered(pending, response)
            return
        if status in (401, 407):
            self._challenged(pending, response)
            return
        if pending.contact is not None and not self._contacts.get(pending.contact, True):
            # A final refusal: the registrar did not bind the new contact.
            del self._contacts[pending.contact]
        if status == 423:
            self._intervalTooBrief(pending, response)
        elif status == 408:
            self._failure("timeout", transient=True, status=status)
        else:
            self._failure("rejected", transient=status >= 500 and status < 600,
                          minDelay=_retryAfter(response), status=status,
                          reason=response.reason)

    def _registered(self, pending: _Pending, response: Response) -> None:
        contact = pending.contact
        assert contact is not None
        for uri in pending.removed:
            self._contacts.pop(uri, None)
        self._contacts[contact] = True
        granted = _grantedExpires(response, contact, pending.expires)
        now = self.clock.seconds()
        if granted <= 0:
            self.log.info("registration {aor}: the registrar answered {status} without keeping "
                          "our contact", aor=str(self.aor), status=response.status)
            self._contacts.pop(contact, None)
            self._failure("rejected", transient=False, status=response.status,
                          reason="contact not bound")
            return
        self.grantedExpires = granted
        self.bindingExpiresAt = now + granted
        if self._natDetected(response, contact):
            return
        self.failures = 0
        self._setState(RegistrationState.REGISTERED)
        delay = refreshDelay(self.config.interval, granted)
        self._schedule(delay, self._refresh)
        self._event("success", expires=granted, contact=contact, refreshIn=delay)

    def _natDetected(self, response: Response, contact: str) -> bool:
        """
        RFC 3581: when the registrar saw us elsewhere than our Contact, bind
        that address instead (the old contact is removed with expires=0 in
        the same REGISTER). Returns whether a REGISTER was sent.
        """
        if not self.config.natAutoDetect or self._natRetries >= MAX_NAT_RETRIES:
            return False
        via = response.topVia
        if via.received is None and via.rport is None:
            return False
        seen = _address(via.received or via.host, via.rport or via.sentBy[1])
        ours = SipUri.parse(contact)
        sent = _address(ours.host, ours.port or 5060)
        if seen == sent:
            return False
        self._natRetries += 1
        self.publicAddress = seen
        self._report(_E.SipRegisterNatDetected, host=seen[0], port=seen[1],
                     previousHost=sent[0], previousPort=sent[1])
        self._setState(RegistrationState.REGISTERING)
        self._sendRegister("nat")
        return True

    def _challenged(self, pending: _Pending, response: Response) -> None:
        request = pending.request.request
        if self.authenticator is None:
            outcome = AuthGiveUp(GiveUpReason.NO_CREDENTIALS, None, "no password configured")
        else:
            outcome = self.authenticator.challengedResponse(response, request)
        if outcome.retry and self._authRetries < MAX_AUTH_RETRIES:
            self._authRetries += 1
            retry = self._build(pending.expires, pending.contact, pending.removed, outcome)
            self._send(retry, pending.expires, pending.contact, pending.removed)
            return
        if outcome.retry:
            outcome = AuthGiveUp(GiveUpReason.STALE_LOOP, None, "too many authenticated retries")
        if pending.contact is not None and not self._contacts.get(pending.contact, True):
            del self._contacts[pending.contact]
        if outcome.reason is GiveUpReason.BAD_CREDENTIALS:
            self._failure("credentials", transient=False, status=response.status,
                          realm=outcome.realm)
        else:
            self._failure("authorization", transient=False, status=response.status,
                          reason=outcome.reason.value, realm=outcome.realm)

    def _intervalTooBrief(self, pending: _Pending, response: Response) -> None:
        minExpires = _deltaSeconds(response.headers.get("Min-Expires"))
        asked = pending.expires
        if (self.state is not RegistrationState.UNREGISTERING and minExpires is not None
                and minExpires > asked and self._intervalRetries < MAX_INTERVAL_RETRIES):
            self._intervalRetries += 1
            self.askedExpires = minExpires
            self._event("interval", asked=asked, minExpires=minExpires, retrying=True, retryIn=0)
            self._sendRegister("interval")
            return
        self._failure("interval", transient=False, asked=asked, minExpires=minExpires,
                      retrying=False)

    def requestFailed(self, cr: ClientRequest, error: Exception) -> None:
        """Timer F or a transport error (from the L{ClientRequest})."""
        pending = self._pending
        if pending is None or cr is not pending.request:
            return
        self._finishPending()
        kind = "timeout" if isinstance(error, RequestTimeout) else "network"
        self._failure(kind, transient=True, error=str(error))

    def _timedOut(self, pending: _Pending) -> None:
        """C{timeoutMs} passed without a final answer."""
        pending.timer = None
        if self._pending is not pending:
            return
        self._abandonPending()
        self._failure("timeout", transient=True,
                      error=f"no final answer in {self.config.timeoutMs} ms")

    # -- outcomes -------------------------------------------------------------

    def _failure(self, kind: str, transient: bool, minDelay: float = 0.0, **fields: Any) -> None:
        if self.state is RegistrationState.UNREGISTERING:
            fields.pop("retrying", None)
            self._unregistered(kind, **fields)
        else:
            self._attemptFailed(kind, transient, minDelay, **fields)

    def _attemptFailed(self, kind: str, transient: bool, minDelay: float = 0.0,
                       **fields: Any) -> None:
        """
        Back off: the exponential delay; for a non-transient failure (auth,
        4xx, 6xx) never sooner than the refresh interval, so that a refusal
        is not hammered.
        """
        self.failures += 1
        delay = self.config.backoff.delay(self.failures, self._random)
        if not transient:
            delay = max(delay, float(self.config.interval))
        delay = max(delay, minDelay)
        self._setState(RegistrationState.BACKOFF)
        self._schedule(delay, self._retry)
        self._event(kind, retryIn=delay, **fields)

    def _refresh(self) -> None:
        self._startAttempt("refresh")

    def _retry(self) -> None:
        self._startAttempt("retry")

    def _unregistered(self, kind: str, **fields: Any) -> None:
        name = _OUTCOMES[kind][1]
        self._setState(RegistrationState.UNREGISTERED)
        self._report(name, **fields)
        waiters, self._unregisterWaiters = self._unregisterWaiters, []
        for d in waiters:
            d.callback(name)
        if self._registerAfterUnregister:
            self._registerAfterUnregister = False
            self.register()


def _deltaSeconds(value: str | None) -> int | None:
    """A delta-seconds header value (Min-Expires, Retry-After), or None."""
    if value is None:
        return None
    match = _DIGITS.match(value)
    if match is None:
        return None
    return min(int(match.group(1)), MAX_DELTA_SECONDS)


def _retryAfter(response: Response) -> float:
    return float(_deltaSeconds(response.headers.get("Retry-After")) or 0)


def _grantedExpires(response: Response, contact: str, asked: int) -> int:
    """
    The expiry the registrar granted our contact (RFC 3261 10.2.4): the
    C{expires} parameter of our Contact in the 2xx, else its Expires
    header, else what we asked.
    """
    ours = SipUri.parse(contact)
    for address in response.contacts:
        if address.uri == ours and address.expires is not None:
            return address.expires
    if response.expires is not None:
        return response.expires
    return asked
