"""
The media engine facade: phone lines, calls, noise gate and NAT keep-alive
behind the API of a commercial VoIP media-engine SDK, as one Twisted
service.

L{VoipMediaEngine} is the one place where the layers are wired together::

    VoipMediaEngine (MultiService, IVoipMediaEngine)
     |- SipTransportService      the SIP UDP socket (SipDatagramProtocol)
     |- Pacer                    the shared media clock of every RTP session
     |- KeepAliveScheduler       one timer for every keep-alive flow
     |- NullKeepAliveService     sendSipKeepAlive: CRLF from the SIP socket
     |- SipKeepAliveService      in-dialog OPTIONS for idle signalling flows
     '- RtpKeepAliveService      silence frames for idle RTP flows
    + UserAgent (calls, dialogs, transactions) on the SIP socket
    + PortAllocator and one RtpSession per call
    + one RegistrationClient per registered name (enableSipRegisterServer),
      on the user agent: not children of the service tree, because they
      must un-register before the user agent stops

Starting the engine starts all of them; stopping it un-registers every
name (waiting for the registrar, at most timeOutMs), then ends every call
(BYE, CANCEL or 480), closes every RTP session and port, stops every timer
and closes the SIP socket.

Every API method returns a L{TelephonyReturnValue} at once; outcomes
arrive later as L{EngineEvent}s, to observers (C{addObserver}) or to
Deferreds (C{whenEvent}, C{whenLineState}). See C{docs/engine.rst}.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import ipaddress
import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

from twisted.application.service import MultiService, Service
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, DeferredList, fail, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorPluggableNameResolver, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from lmevoip.events import EngineEvent, EventDispatcher, EventName
from lmevoip.interfaces import (
    IAudioSink,
    IAudioSource,
    ICallObserver,
    IRegistrationControl,
    IRegistrationObserver,
    IUserAgentObserver,
    IVoipMediaEngine,
)
from lmevoip.keepalive.interval import MAX_LOSSES, KeepAliveParameterError, maximumInterval
from lmevoip.keepalive.null import NullKeepAliveService, resolverFromNameResolver
from lmevoip.keepalive.rtp import RtpKeepAliveService
from lmevoip.keepalive.scheduler import KeepAliveScheduler
from lmevoip.keepalive.sip import SipKeepAliveService
from lmevoip.returns import TelephonyError, TelephonyReturnValue
from lmevoip.rtp.audio import DiscardSink, SilenceSource
from lmevoip.rtp.codecs import codecByName
from lmevoip.rtp.gate import DEFAULT_DECAY_MS, MAX_DECAY_MS, MAX_THRESHOLD, MIN_DECAY_MS, MIN_THRESHOLD, NoiseGate
from lmevoip.rtp.pacer import Pacer
from lmevoip.rtp.ports import DEFAULT_HIGH_PORT, DEFAULT_LOW_PORT, PortAllocator
from lmevoip.rtp.rtcpinterval import RTCP_MIN_TIME
from lmevoip.rtp.session import RtpSession, UnsupportedMedia
from lmevoip.sip.auth import DigestAuthenticator
from lmevoip.sip.call import Call, CallEndReason, CallState, StaticMediaHandler
from lmevoip.sip.dialog import uriAddress
from lmevoip.sip.registration import (
    Backoff,
    RegistrationClient,
    RegistrationConfig,
    RegistrationConfigError,
    RegistrationEventName,
)
from lmevoip.sip.sdp import answerOffer, makeOffer, reviseSession
from lmevoip.sip.transport import SipDatagramProtocol, SipTransportService
from lmevoip.sip.uri import SipUri, parseUri
from lmevoip.sip.useragent import UserAgent, UserAgentConfig

__all__ = [
    "EngineConfig",
    "LineState",
    "LineStatus",
    "VoipMediaEngine",
    "DEFAULT_NOISE_THRESHOLD",
]

R = TelephonyReturnValue

#: The engine's default noise gate threshold (16-bit sample units).
DEFAULT_NOISE_THRESHOLD = 512

#: The most phone lines an engine may have.
MAX_LINES = 1024

#: The most names one C{enableSipRegisterServer} call may list (the phone
#: lines' names come on top), and the most names with credentials of their
#: own.
MAX_REGISTERED_NAMES = 256

#: A host name (RFC 1123 labels; the underscore is tolerated as resolvers
#: do).
_LABEL = r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\.?\Z")


class LineState(enum.StrEnum):
    """
    The state of a phone line (a C{StrEnum}: each member equals its value).
    """

    #: No call.
    IDLE = "Idle"
    #: Our INVITE is out; no provisional response yet.
    CALLING = "Calling"
    #: Our call is ringing at the far end (a 180/183 arrived).
    REMOTE_RINGING = "RemoteRinging"
    #: An incoming call rings here: C{goOffHook} or C{abortIncomingCall}.
    INCOMING = "Incoming"
    #: We answered (200 sent); waiting for the caller's ACK.
    ANSWERING = "Answering"
    #: The call is established.
    CONNECTED = "Connected"
    #: The call is established and on hold (by us, the far end, or both).
    HELD = "Held"
    #: The call is ending (BYE or CANCEL sent, waiting for the answer).
    DISCONNECTING = "Disconnecting"


_CALL_TO_LINE = {
    CallState.CALLING: LineState.CALLING,
    CallState.RINGING: LineState.REMOTE_RINGING,
    CallState.CANCELLING: LineState.DISCONNECTING,
    CallState.INCOMING: LineState.INCOMING,
    CallState.ANSWERED: LineState.ANSWERING,
    CallState.CONNECTED: LineState.CONNECTED,
    CallState.TERMINATING: LineState.DISCONNECTING,
    CallState.TERMINATED: LineState.IDLE,
}


@dataclass(frozen=True)
class LineStatus:
    """
    What C{getLineStatus(line)} returns.

    @ivar line: The line number.
    @ivar state: The L{LineState}.
    @ivar direction: C{"outgoing"}, C{"incoming"}, or None when idle.
    @ivar remoteParty: The far end's SIP URI (text), or None.
    @ivar callId: The call's Call-ID, or None.
    @ivar localHold: Whether we hold the far end.
    @ivar remoteHold: Whether the far end holds us.
    @ivar codec: The negotiated codec, or None.
    @ivar since: Clock time the line entered C{state}.
    """

    line: int
    state: LineState
    direction: str | None = None
    remoteParty: str | None = None
    callId: str | None = None
    localHold: bool = False
    remoteHold: bool = False
    codec: str | None = None
    since: float = 0.0

    def asDict(self) -> dict[str, Any]:
        """
        The status as a plain dict.
        """
        values = dataclasses.asdict(self)
        values["state"] = str(self.state)
        return values


def _silence(line: int) -> IAudioSource:
    return SilenceSource()


def _discard(line: int) -> IAudioSink:
    return DiscardSink()


def _ipLiteral(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _isInt(value: object, low: int, high: int) -> bool:
    """
    Whether C{value} is an C{int} (not a C{bool}) within C{[low, high]}.
    """
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _requireInt(name: str, value: object, low: int, high: int) -> None:
    if not _isInt(value, low, high):
        raise TelephonyError(R.SipBadParameter, f"{name}={value!r} is not an int within {low}-{high}")


def _isRegistrationName(name: object) -> bool:
    """
    Whether C{name} can be registered: a non-empty string that is a valid
    SIP user part, by the registration client's own rule.
    """
    if not isinstance(name, str):
        return False
    try:
        RegistrationConfig(registrarHost="127.0.0.1", name=name)
    except RegistrationConfigError:
        return False
    return True


def _hostPort(host: str, port: int) -> str:
    """
    C{host:port}, with an IPv6 address in brackets.
    """
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _isHostName(host: object) -> bool:
    return isinstance(host, str) and _HOSTNAME.match(host) is not None


@dataclass
class EngineConfig:
    """
    The engine's configuration. Check it with L{validate} (the engine does).

    @ivar sipHost: The local IP address the SIP socket binds to and that
        goes in Via and Contact (not C{0.0.0.0}: peers must reach it).
    @ivar sipPort: The SIP UDP port (0 for any free port; the engine's
        C{sipAddress} tells which after start).
    @ivar publicHost: The public address to advertise in Contact and SDP
        instead of C{sipHost} (behind a NAT with a known address), or None.
    @ivar publicPort: The public SIP port going with C{publicHost}.
    @ivar mediaHost: The address RTP sockets bind to (default
        C{sipHost}).
    @ivar rtpPortLow: The first port of the RTP range.
    @ivar rtpPortHigh: The last port of the RTP range.
    @ivar lines: The number of phone lines, numbered from 0.
    @ivar user: The user part of our SIP URI.
    @ivar displayName: Our display name, or None.
    @ivar domain: The host part of our From URI (default C{sipHost}).
    @ivar codecs: The codecs, in our order of preference (C{"PCMU"},
        C{"PCMA"}).
    @ivar ptime: The packet time we ask for, in ms.
    @ivar telephoneEvent: Offer and accept RFC 4733 telephone-event.
    @ivar comfortNoise: Offer and accept RFC 3389 comfort noise, and send
        RTP keep-alives as CN packets where it was negotiated.
    @ivar sourceFactory: C{sourceFactory(line)} returns the
        L{IAudioSource} of each call on C{line} (default: silence). The
        engine closes it when the call ends.
    @ivar sinkFactory: C{sinkFactory(line)} returns the L{IAudioSink} of
        each call on C{line} (default: discard). Closed when the call ends.
    @ivar t1: SIP timer T1 (s). @ivar t2: SIP timer T2 (s).
    @ivar t4: SIP timer T4 (s).
    @ivar ringTimeout: Seconds an incoming call may ring unanswered before
        it is refused 480 (0: never).
    @ivar maxTransactions: The bound on live SIP transactions.
    @ivar authUsername: Digest username for challenged requests, or None.
    @ivar authPassword: Digest password (never logged).
    @ivar userAgentHeader: The User-Agent/Server header, or None.
    @ivar keepAliveLosses: Consecutive keep-alives that may be lost with
        the NAT binding still surviving (0-3): divides the interval.
    @ivar sipKeepAliveMaxFailures: End a call after this many consecutive
        failed SIP keep-alives, or None (default) to only report them.
    @ivar rtpKeepAliveOnHold: Send RTP keep-alives while the call's
        direction does not send (hold). See C{docs/keepalive.rst}.
    @ivar rtcpMinimumInterval: RFC 3550's minimum RTCP interval in
        seconds (5 by default; the first report comes after about half).
    @ivar noiseThreshold: The initial noise gate threshold.
    @ivar noiseGateEnabled: Whether the noise gate starts enabled.
    @ivar silenceDecayMs: The initial noise gate decay (hangover) in ms.
    @ivar resolve: C{resolve(host) -> Deferred[str]} for the host names
        of C{sendSipKeepAlive}, the registrar and the outbound proxy
        (default: the reactor's resolver).
    @ivar lineUsers: The name each phone line registers as with
        C{enableSipRegisterServer(..., registerPhoneLines=True, ...)}, one
        per line, or None for C{user} followed by the line number
        (C{lmevoip0}, C{lmevoip1}, ...).
    @ivar outboundProxy: C{(host, port)} of the outbound proxy that
        C{registerThroughProxy} sends through, or None (see
        C{enableOutboundSipProxyServer}).
    """

    sipHost: str = "127.0.0.1"
    sipPort: int = 5060
    publicHost: str | None = None
    publicPort: int | None = None
    mediaHost: str | None = None
    rtpPortLow: int = DEFAULT_LOW_PORT
    rtpPortHigh: int = DEFAULT_HIGH_PORT
    lines: int = 4
    user: str = "lmevoip"
    displayName: str | None = None
    domain: str | None = None
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    ptime: int = 20
    telephoneEvent: bool = True
    comfortNoise: bool = False
    sourceFactory: Callable[[int], IAudioSource] = _silence
    sinkFactory: Callable[[int], IAudioSink] = _discard
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    ringTimeout: float = 180.0
    maxTransactions: int = 4096
    authUsername: str | None = None
    authPassword: str | None = field(default=None, repr=False)
    userAgentHeader: str | None = "lmevoip"
    keepAliveLosses: int = 0
    sipKeepAliveMaxFailures: int | None = None
    rtpKeepAliveOnHold: bool = True
    rtcpMinimumInterval: float = RTCP_MIN_TIME
    noiseThreshold: int = DEFAULT_NOISE_THRESHOLD
    noiseGateEnabled: bool = False
    silenceDecayMs: int = DEFAULT_DECAY_MS
    resolve: Callable[[str], Deferred[str]] | None = None
    lineUsers: tuple[str, ...] | None = None
    outboundProxy: tuple[str, int] | None = None

    def validate(self) -> None:
        """
        Check every setting.

        @raise ValueError: Naming the first bad setting.
        """
        host = _ipLiteral(self.sipHost)
        if host is None or host.is_unspecified:
            raise ValueError(f"sipHost must be a specific IP address, not {self.sipHost!r}")
        for name in ("sipPort", "rtpPortLow", "rtpPortHigh", "lines", "ptime", "maxTransactions", "keepAliveLosses"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an int, not {value!r}")
        if not 0 <= self.sipPort <= 65535:
            raise ValueError(f"sipPort {self.sipPort} is not within 0-65535")
        if self.publicPort is not None and not 1 <= self.publicPort <= 65535:
            raise ValueError(f"publicPort {self.publicPort} is not within 1-65535")
        if not 1024 <= self.rtpPortLow < self.rtpPortHigh <= 65535:
            raise ValueError(f"RTP port range {self.rtpPortLow}-{self.rtpPortHigh} is not within 1024-65535")
        if not 1 <= self.lines <= MAX_LINES:
            raise ValueError(f"lines must be within 1-{MAX_LINES}, not {self.lines}")
        if not self.user or not isinstance(self.user, str):
            raise ValueError("user must be a non-empty string")
        if not self.codecs:
            raise ValueError("codecs must name at least one codec")
        for codec in self.codecs:
            try:
                codecByName(codec)
            except KeyError:
                raise ValueError(f"codec {codec!r} is not supported") from None
        for name in ("t1", "t2", "t4"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 60:
                raise ValueError(f"{name} must be within (0, 60] seconds, not {value!r}")
        if not 0 <= self.keepAliveLosses <= MAX_LOSSES:
            raise ValueError(f"keepAliveLosses must be within 0-{MAX_LOSSES}")
        if self.sipKeepAliveMaxFailures is not None and (
            isinstance(self.sipKeepAliveMaxFailures, bool)
            or not isinstance(self.sipKeepAliveMaxFailures, int)
            or self.sipKeepAliveMaxFailures < 1
        ):
            raise ValueError("sipKeepAliveMaxFailures must be a positive int or None")
        if isinstance(self.rtcpMinimumInterval, bool) or not isinstance(self.rtcpMinimumInterval, (int, float)) \
                or not 0 < self.rtcpMinimumInterval <= 3600:
            raise ValueError("rtcpMinimumInterval must be within (0, 3600] seconds")
        if not callable(self.sourceFactory) or not callable(self.sinkFactory):
            raise ValueError("sourceFactory and sinkFactory must be callables taking the line number")
        NoiseGate(self.noiseThreshold, self.noiseGateEnabled, self.silenceDecayMs)  # raises GateConfigError
        if self.lineUsers is not None:
            names = self.lineUsers
            if isinstance(names, str) or not isinstance(names, (list, tuple)) or len(names) != self.lines:
                raise ValueError(f"lineUsers must be a sequence of {self.lines} names (one per line)")
            for name in names:
                if not _isRegistrationName(name):
                    raise ValueError(f"lineUsers: {name!r} is not a valid SIP user part")
            if len(set(names)) != len(names):
                raise ValueError("lineUsers must not name a user twice")
        if self.outboundProxy is not None:
            try:
                host, port = self.outboundProxy
            except (TypeError, ValueError):
                raise ValueError("outboundProxy must be (host, port)") from None
            if _ipLiteral(host) is None and not _isHostName(host):
                raise ValueError(f"outboundProxy host {host!r} is not an IP address or a host name")
            if not _isInt(port, 1, 65535):
                raise ValueError(f"outboundProxy port {port!r} is not within 1-65535")

    def lineUser(self, line: int) -> str:
        """
        The name phone line C{line} registers as: C{lineUsers[line]}, else
        C{user} followed by the line number.
        """
        if self.lineUsers is not None:
            return self.lineUsers[line]
        return f"{self.user}{line}"

    @property
    def advertisedHost(self) -> str:
        """
        The address put in SDP: C{publicHost}, else C{mediaHost}, else
        C{sipHost}.
        """
        return self.publicHost or self.mediaHost or self.sipHost


def _api(method: Callable[..., TelephonyReturnValue]) -> Callable[..., TelephonyReturnValue]:
    """
    Turn a L{TelephonyError} raised by an API method into its return
    value, and any other exception into C{SipCallFailure} (logged): the
    engine never raises into the application.
    """

    @functools.wraps(method)
    def wrapper(self: VoipMediaEngine, *args: Any, **kwargs: Any) -> TelephonyReturnValue:
        try:
            return method(self, *args, **kwargs)
        except TelephonyError as e:
            self.log.info("{method}{args!r}: {result}", method=method.__name__, args=args, result=str(e))
            return e.value
        except Exception:
            self.log.failure("{method}{args!r} failed", method=method.__name__, args=args)
            return R.SipCallFailure

    return wrapper


class _LineMedia(StaticMediaHandler):
    """
    The media of one call on a line: SDP from the engine's codecs and the
    call's RTP port, and the RTP session the negotiated media configures.
    """

    def __init__(self, engine: VoipMediaEngine, line: _Line, session: RtpSession, source: Any, sink: Any) -> None:
        config = engine.config
        super().__init__(config.advertisedHost, session.ports.rtpPort, config.codecs, config.telephoneEvent,
                         config.ptime)
        self._engine = engine
        self._line = line
        self.session = session
        self.source = source
        self.sink = sink
        self.comfortNoise = config.comfortNoise

    def makeOffer(self, hold: bool = False):
        """
        As L{StaticMediaHandler.makeOffer}, offering comfort noise too when
        configured.
        """
        if not self.comfortNoise:
            return super().makeOffer(hold)
        direction = "sendonly" if hold else "sendrecv"
        if self.local is None or len(self.local.media) == 1:
            offer = self._nextVersion(makeOffer(
                self.address, self.rtpPort, self.codecs, telephoneEvent=self.telephoneEvent, comfortNoise=True,
                ptime=self.ptime, direction=direction))
        else:
            offer = reviseSession(self.local, direction)
        self.local = offer
        return offer

    def answerOffer(self, offer, hold: bool = False):
        """
        As L{StaticMediaHandler.answerOffer}, accepting comfort noise too
        when configured.
        """
        if not self.comfortNoise:
            return super().answerOffer(offer, hold)
        answer, media = answerOffer(
            offer, self.address, self.rtpPort, self.codecs, telephoneEvent=self.telephoneEvent, comfortNoise=True,
            ptime=self.ptime, direction="sendonly" if hold else "sendrecv")
        self.local = self._nextVersion(answer)
        return answer, media

    def mediaChanged(self, media) -> None:
        """
        Configure and start the RTP session.
        """
        super().mediaChanged(media)
        self._engine._mediaChanged(self._line, self, media)

    def close(self) -> None:
        """
        Stop the RTP session (releasing its ports) and close the source and
        sink. Idempotent.
        """
        if self.closed:
            return
        super().close()
        self._engine._mediaClosed(self)


@implementer(ICallObserver)
class _CallObserver:
    """
    Follows one call on one line for the engine.
    """

    def __init__(self, engine: VoipMediaEngine, line: _Line) -> None:
        self.engine = engine
        self.line = line

    def _mine(self, call: Call) -> bool:
        line = self.line
        if line.observer is not self:
            return False
        if line.call is None:
            line.call = call
        return line.call is call

    def callRinging(self, call, response) -> None:
        if self._mine(call):
            self.engine._callRinging(self.line, call, response.status)

    def callConnected(self, call, media) -> None:
        if self._mine(call):
            self.engine._callConnected(self.line, call)

    def callHeld(self, call, byPeer) -> None:
        if self._mine(call):
            self.engine._callHoldChanged(self.line, call, EventName.SipCallHeld, byPeer)

    def callResumed(self, call, byPeer) -> None:
        if self._mine(call):
            self.engine._callHoldChanged(self.line, call, EventName.SipCallResumed, byPeer)

    def callTerminated(self, call, reason, status) -> None:
        if self._mine(call):
            self.engine._callTerminated(self.line, call, reason, status)


@implementer(IUserAgentObserver)
class _UserAgentObserver:
    """
    What the user agent tells the engine.
    """

    def __init__(self, engine: VoipMediaEngine) -> None:
        self.engine = engine

    def incomingCall(self, call) -> None:
        self.engine._incomingCall(call)

    def publicAddressDiscovered(self, host, port) -> None:
        self.engine._events.emit(EventName.SipPublicAddressDiscovered, details={"host": host, "port": port})


_RE = RegistrationEventName

#: The C{result} of each registration event that has one.
_REGISTRATION_RESULTS = {
    _RE.SipRegisterSuccess: R.SipSuccess,
    _RE.SipUnregisterSuccess: R.SipSuccess,
    _RE.SipRegisterTimeout: R.SipCallTimeOut,
    _RE.SipUnregisterTimeout: R.SipCallTimeOut,
    _RE.SipRegisterNetworkError: R.SipTransportError,
    _RE.SipUnregisterNetworkError: R.SipTransportError,
    _RE.SipRegisterAuthorizationError: R.SipAuthenticationFailure,
    _RE.SipUnregisterAuthorizationError: R.SipAuthenticationFailure,
    _RE.SipRegisterBadCredentials: R.SipAuthenticationFailure,
    _RE.SipUnregisterBadCredentials: R.SipAuthenticationFailure,
    _RE.SipRegisterIntervalError: R.SipRegistrationRejected,
    _RE.SipUnregisterIntervalError: R.SipRegistrationRejected,
    _RE.SipRegisterRejected: R.SipRegistrationRejected,
    _RE.SipUnregisterRejected: R.SipRegistrationRejected,
}

#: The C{reason} of registration events whose fields carry none.
_REGISTRATION_REASONS = {
    _RE.SipRegisterTimeout: "timeout",
    _RE.SipUnregisterTimeout: "timeout",
    _RE.SipRegisterNetworkError: "transport-error",
    _RE.SipUnregisterNetworkError: "transport-error",
    _RE.SipRegisterBadCredentials: "bad-credentials",
    _RE.SipUnregisterBadCredentials: "bad-credentials",
    _RE.SipRegisterIntervalError: "interval-too-brief",
    _RE.SipUnregisterIntervalError: "interval-too-brief",
    _RE.SipRegisterNatDetected: "nat",
}


@dataclass(frozen=True)
class _RegistrationRequest:
    """
    The arguments of the last accepted C{enableSipRegisterServer}, checked.

    @ivar names: C{(name, line)} for every name to register; C{line} is the
        phone line whose name it is, else None.
    @ivar host: The registrar as given (an IP address or a host name).
    @ivar port: The registrar's port.
    @ivar interval: Seconds between REGISTERs.
    @ivar expires: The expiry to ask for, or None for the client's default.
    @ivar timeoutMs: The bound on each REGISTER transaction.
    @ivar natAutoDetect: Re-register with the address the registrar saw.
    @ivar proxy: C{(host, port)} of the outbound proxy as given, or None.
    """

    names: tuple[tuple[str, int | None], ...]
    host: str
    port: int
    interval: float
    expires: int | None
    timeoutMs: int
    natAutoDetect: bool
    proxy: tuple[str, int] | None

    @property
    def hostKey(self) -> str:
        """
        The registrar host as the key of its registrations: an IP address
        in canonical form, a host name in lower case without a final dot.
        """
        address = _ipLiteral(self.host)
        return str(address) if address is not None else self.host.lower().rstrip(".")


class _Registration:
    """
    One registered name: its L{RegistrationClient} once the registrar's
    address is known.
    """

    __slots__ = ("key", "name", "line", "client")

    def __init__(self, key: tuple[str, int, str], name: str, line: int | None) -> None:
        self.key = key
        self.name = name
        self.line = line
        self.client: RegistrationClient | None = None


@implementer(IRegistrationObserver)
class _RegistrationObserver:
    """
    Turns one registration client's events into engine events.
    """

    def __init__(self, engine: VoipMediaEngine, entry: _Registration) -> None:
        self.engine = engine
        self.entry = entry
        self.client: RegistrationClient | None = None

    def registrationEvent(self, name, **fields) -> None:
        self.engine._registrationEvent(self.entry, self.client, name, fields)


class _ResolutionFailed(Exception):
    """
    A registrar or outbound proxy host name did not resolve to a usable
    address.
    """

    def __init__(self, host: str, error: str) -> None:
        super().__init__(f"{host}: {error}")
        self.host = host
        self.error = error


class _Line:
    """
    One phone line's state.
    """

    __slots__ = ("index", "gate", "call", "observer", "media", "outgoing", "announced", "connected", "hangingUp",
                 "state", "since", "holdPending")

    def __init__(self, index: int, gate: NoiseGate) -> None:
        self.index = index
        self.gate = gate
        self.state = LineState.IDLE
        self.since = 0.0
        self.clear()

    def clear(self) -> None:
        self.call: Call | None = None
        self.observer: _CallObserver | None = None
        self.media: _LineMedia | None = None
        self.outgoing = False
        self.announced = False
        self.connected = False
        self.hangingUp = False
        self.holdPending = False

    @property
    def busy(self) -> bool:
        return self.observer is not None


def _remoteParty(call: Call | None) -> str | None:
    if call is None:
        return None
    remote = call.remoteUri
    return None if remote is None else str(remote.uri)


_FAILED_RESULTS = {
    CallEndReason.TIMEOUT: R.SipCallTimeOut,
    CallEndReason.NOT_ANSWERED: R.SipCallTimeOut,
    CallEndReason.CANCELLED: R.SipCallCancelled,
    CallEndReason.REMOTE_CANCELLED: R.SipCallCancelled,
    CallEndReason.REJECTED: R.SipCallRejected,
    CallEndReason.TRANSPORT_ERROR: R.SipTransportError,
}


@implementer(IVoipMediaEngine, IRegistrationControl)
class VoipMediaEngine(MultiService):
    """
    The media engine: see the module docstring and C{docs/engine.rst}.

    @ivar config: The L{EngineConfig}.
    @ivar clock: The reactor (C{IReactorTime}, C{IReactorUDP}).
    @ivar protocol: The L{SipDatagramProtocol} of the SIP socket.
    @ivar userAgent: The L{UserAgent}.
    @ivar pacer: The shared L{Pacer}.
    @ivar portAllocator: The RTP L{PortAllocator}.
    @ivar scheduler: The shared L{KeepAliveScheduler}.
    @ivar nullKeepAlive: The L{NullKeepAliveService} (sendSipKeepAlive).
    @ivar sipKeepAlive: The L{SipKeepAliveService}.
    @ivar rtpKeepAlive: The L{RtpKeepAliveService}.
    @ivar registrations: The L{RegistrationClient} of every registered
        name, by name (a new dict each time; C{getRegistrationState} for
        their state).
    """

    log = Logger()

    def __init__(self, config: EngineConfig | None = None, reactor: Any = None,
                 rng: random.Random | None = None) -> None:
        """
        @param config: The configuration (defaults otherwise).
        @param reactor: Provides C{IReactorTime} and C{IReactorUDP}; the
            global reactor by default (L{lmevoip.testing.FakeUdpReactor} in
            tests).
        @param rng: Randomness for keep-alive jitter and port choice.
        @raise ValueError: On a bad configuration.
        """
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor  # pragma: no cover
        self.config = config = config if config is not None else EngineConfig()
        config.validate()
        self.clock: IReactorTime = reactor
        self._rng = rng if rng is not None else random.Random()
        self._events = EventDispatcher(reactor)
        self.protocol = SipDatagramProtocol()
        uaConfig = UserAgentConfig(
            host=config.sipHost, port=config.sipPort, user=config.user, displayName=config.displayName,
            domain=config.domain, publicHost=config.publicHost, publicPort=config.publicPort,
            t1=config.t1, t2=config.t2, t4=config.t4, maxTransactions=config.maxTransactions,
            maxDialogs=4 * config.lines + 16, maxCalls=2 * config.lines + 8,
            authUsername=config.authUsername, authPassword=config.authPassword,
            userAgentHeader=config.userAgentHeader, ringTimeout=config.ringTimeout)
        self.userAgent = UserAgent(reactor, self.protocol.send, uaConfig, _UserAgentObserver(self),
                                   self._incomingMedia)
        self.protocol.handler = self.userAgent
        self.pacer = Pacer(reactor)
        self.portAllocator = PortAllocator(reactor, config.rtpPortLow, config.rtpPortHigh,
                                           interface=config.mediaHost or config.sipHost,
                                           random=random.Random(self._rng.random()))
        self.scheduler = KeepAliveScheduler(reactor)
        self.nullKeepAlive = NullKeepAliveService(self._sendRaw, reactor, resolve=config.resolve,
                                                  onEvent=self._nullKeepAliveEvent, scheduler=self.scheduler)
        self.sipKeepAlive = SipKeepAliveService(
            self.scheduler, self.protocol, self._rng, onFailure=self._sipKeepAliveFailed,
            maxFailures=config.sipKeepAliveMaxFailures, onFailureLimit=self._sipKeepAliveLimit,
            losses=config.keepAliveLosses)
        self.rtpKeepAlive = RtpKeepAliveService(self.scheduler, self._rng, sendOnHold=config.rtpKeepAliveOnHold,
                                                losses=config.keepAliveLosses)
        self.transportService = SipTransportService(reactor, self.protocol, config.sipPort, config.sipHost)
        for name, child in (("sip-transport", self.transportService), ("pacer", self.pacer),
                            ("keepalive-scheduler", self.scheduler), ("null-keepalive", self.nullKeepAlive),
                            ("sip-keepalive", self.sipKeepAlive), ("rtp-keepalive", self.rtpKeepAlive)):
            child.setName(name)
            child.setServiceParent(self)
        self._gateSettings = (config.noiseThreshold, config.noiseGateEnabled, config.silenceDecayMs)
        self._lines = [_Line(index, NoiseGate(*self._gateSettings)) for index in range(config.lines)]
        self._mediaStops: set[Deferred[Any]] = set()
        self._pendingHangups: set[Any] = set()
        # Registration (enableSipRegisterServer): see the methods.
        if config.resolve is not None:
            self._resolve: Callable[[str], Deferred[str]] | None = config.resolve
        elif IReactorPluggableNameResolver.providedBy(reactor):
            family = IPv6Address if ":" in config.sipHost else IPv4Address
            self._resolve = resolverFromNameResolver(reactor.nameResolver, (family,))
        else:
            self._resolve = None
        self._registrations: dict[tuple[str, int, str], _Registration] = {}
        self._registrationGeneration = 0
        self._resolutionRetry: Any = None
        self._resolutionFailures = 0
        # In-flight un-registrations: (timeout in s, registration key).
        self._unregistrations: dict[Deferred[Any], tuple[float, tuple[str, int, str]]] = {}
        self._credentials: tuple[str, str] | None = None
        if config.authUsername is not None:
            self._credentials = (config.authUsername, config.authPassword or "")
        self._nameCredentials: dict[str, tuple[str, str]] = {}
        self._outboundProxy: tuple[str, int] | None = (
            None if config.outboundProxy is None else (config.outboundProxy[0], config.outboundProxy[1]))
        self._stopping: Deferred[None] | None = None

    # -- service ----------------------------------------------------------

    def startService(self) -> None:
        """
        Bind the SIP socket and start every child service.

        @raise twisted.internet.error.CannotListenError: When the SIP port
            cannot be bound; nothing is left running.
        """
        try:
            MultiService.startService(self)
        except Exception:
            for child in reversed(list(self)):
                if child.running:
                    child.stopService()
            Service.stopService(self)
            raise
        host, port = self.protocol.localAddress
        self.userAgent.config.port = port
        self.log.info("engine started: SIP on {host}:{port}, {lines} lines", host=host, port=port,
                      lines=len(self._lines))

    def stopService(self) -> Deferred[None]:
        """
        Un-register every registered name (Expires 0) and wait for the
        registrar's answers (each bounded by its C{timeOutMs}), then end
        every call (BYE, CANCEL or 480 first), fail pending waiters, stop
        every child service and close every socket. With nothing
        registered, all of it happens before this returns.

        @return: A Deferred firing when every socket is closed.
        """
        if self._stopping is not None:
            waiting: Deferred[None] = Deferred()
            self._stopping.addBoth(lambda result: (waiting.callback(None), result)[1])
            return waiting
        wasRunning = bool(self.running)
        self._dropRegistrations()
        pending = {d: timeout for d, (timeout, _) in self._unregistrations.items() if not d.called}
        if not pending:
            return self._stopNow(wasRunning)
        # Refuse actions and incoming calls while the un-registrations run.
        self.running = 0
        self.log.info("engine stopping: waiting for {count} un-registration(s)", count=len(pending))
        stopping: Deferred[None] = Deferred()
        self._stopping = stopping

        def stopped(result: Any) -> Any:
            self._stopping = None
            return result

        stopping.addBoth(stopped)
        proceeded = []

        def proceed(result: Any = None) -> None:
            if proceeded:
                return
            proceeded.append(True)
            if guard.active():
                guard.cancel()
            self._stopNow(wasRunning).chainDeferred(stopping)

        # Each un-registration ends within its timeOutMs (the client's own
        # timer); the guard is only a backstop one second later.
        guard = self.clock.callLater(max(pending.values()) + 1.0, proceed)
        DeferredList(list(pending), consumeErrors=True).addCallback(proceed)
        return stopping

    def _stopNow(self, wasRunning: bool) -> Deferred[None]:
        """
        The rest of L{stopService}, once nothing is registered.
        """
        for pending in self._pendingHangups:
            if pending.active():
                pending.cancel()
        self._pendingHangups.clear()
        if wasRunning:
            self.userAgent.stop()
        self._events.stop()
        stops = list(self._mediaStops)
        stopped = MultiService.stopService(self)
        self.log.info("engine stopping")
        return DeferredList([stopped, *stops], consumeErrors=True).addCallback(lambda _: None)

    @property
    def sipAddress(self) -> tuple[str, int] | None:
        """
        C{(host, port)} of the SIP socket while running, else None.
        """
        return self.protocol.localAddress

    @property
    def publicAddress(self) -> tuple[str, int] | None:
        """
        The address peers reach us at: the configured public address, else
        the one learned from responses (RFC 3581), else None.
        """
        return self.userAgent.publicAddress

    @property
    def lines(self) -> int:
        """
        The number of phone lines.
        """
        return len(self._lines)

    # -- observers and waiting --------------------------------------------

    def addObserver(self, observer: object) -> TelephonyReturnValue:
        """
        Add an observer: an L{IEngineObserver} (e.g. a
        L{lmevoip.events.EngineObserver} subclass) or a callable taking an
        L{EngineEvent}.

        @return: C{SipSuccess} or C{SipBadParameter}.
        """
        return self._events.addObserver(observer)

    def removeObserver(self, observer: object) -> TelephonyReturnValue:
        """
        Remove an observer.

        @return: C{SipSuccess} or C{SipInvalidHandle} when not added.
        """
        return self._events.removeObserver(observer)

    def whenEvent(self, name: EventName | str | None = None, predicate: Callable[[EngineEvent], bool] | None = None,
                  line: int | None = None, timeout: float | None = None) -> Deferred[EngineEvent]:
        """
        A Deferred firing with the next matching event; see
        L{EventDispatcher.whenEvent}.
        """
        return self._events.whenEvent(name, predicate, line, timeout)

    def whenLineState(self, line: int, state: LineState | str, timeout: float | None = None) -> Deferred[LineStatus]:
        """
        A Deferred firing with the line's L{LineStatus} when it is in
        C{state}: at once when it already is, else when it enters it.

        @return: The Deferred; it fails with L{TelephonyError}
            (C{SipBadPhoneLine}, C{SipBadParameter}), with
            C{twisted.internet.defer.TimeoutError} after C{timeout}
            seconds, or with L{lmevoip.events.EngineStopped}.
        """
        try:
            entry = self._line(line)
            try:
                wanted = LineState(state)
            except ValueError:
                raise TelephonyError(R.SipBadParameter, f"unknown line state {state!r}") from None
        except TelephonyError as e:
            return fail(e)
        if entry.state is wanted:
            return succeed(self._status(entry))
        waiting = self._events.whenEvent(EventName.SipLineStateChanged, line=line, timeout=timeout,
                                         predicate=lambda event: event.details["state"] == wanted)
        return waiting.addCallback(lambda event: self._status(entry))

    # -- lines and calls ----------------------------------------------------

    @_api
    def makeCall(self, line: int, user: str, host: str, port: int) -> TelephonyReturnValue:
        """
        Call C{sip:user@host:port} on C{line}.

        @param host: An IP address of the SIP socket's family (no DNS).
        @param port: 1-65535.
        @return: C{SipSuccess} (then C{SipCallRinging},
            C{SipOutgoingCallConnected} or C{SipCallFailed} follow),
            C{SipNotEnabled}, C{SipBadPhoneLine}, C{SipBadParameter},
            C{SipLineBusy}, C{SipCallFailure}.
        """
        self._requireRunning()
        entry = self._line(line)
        if not isinstance(user, str) or not user or any(ord(ch) < 33 for ch in user):
            raise TelephonyError(R.SipBadParameter, f"user={user!r}")
        if not isinstance(host, str):
            raise TelephonyError(R.SipBadParameter, f"host={host!r}")
        _requireInt("port", port, 1, 65535)
        self._checkHost(host)
        try:
            uri = SipUri("sip", user, None, host, port)
        except ValueError as e:
            raise TelephonyError(R.SipBadParameter, str(e)) from None
        return self._placeCall(entry, uri)

    @_api
    def makeCallUri(self, line: int, uri: str) -> TelephonyReturnValue:
        """
        Call a SIP URI (C{"sip:bob@192.0.2.7:5070"}) on C{line}; its host
        (or C{maddr}) must be an IP address of the SIP socket's family.

        @return: As L{makeCall}.
        """
        self._requireRunning()
        entry = self._line(line)
        if not isinstance(uri, str):
            raise TelephonyError(R.SipBadParameter, f"uri={uri!r}")
        try:
            parsed = parseUri(uri)
        except ValueError as e:
            raise TelephonyError(R.SipBadParameter, str(e)) from None
        if not isinstance(parsed, SipUri) or parsed.scheme != "sip":
            raise TelephonyError(R.SipBadParameter, f"{uri!r} is not a sip: URI")
        self._checkHost(uriAddress(parsed)[0])
        return self._placeCall(entry, parsed)

    @_api
    def goOffHook(self, line: int) -> TelephonyReturnValue:
        """
        Answer the call ringing on C{line} (after C{SipOkToAnswerCall}).

        @return: C{SipSuccess} (then C{SipIncomingCallConnected} follows on
            the ACK), C{SipNotEnabled}, C{SipBadPhoneLine},
            C{SipNoCallOnLine}, C{SipAlreadyOffHook} (already answered, or
            an outgoing call), C{SipCallFailure}.
        """
        self._requireRunning()
        entry = self._line(line)
        call = entry.call
        if call is None or not entry.announced:
            raise TelephonyError(R.SipNoCallOnLine, f"line {line} has no call to answer")
        if entry.outgoing or call.state is not CallState.INCOMING:
            raise TelephonyError(R.SipAlreadyOffHook, f"line {line} is {entry.state}")
        call.answer()
        if call.state is CallState.TERMINATED:
            return R.SipCallFailure
        self._refresh(entry)
        return R.SipSuccess

    @_api
    def abortIncomingCall(self, line: int, code: int = 486, reason: str | None = None) -> TelephonyReturnValue:
        """
        Refuse the call ringing on C{line} with a 300-699 status.

        @return: C{SipSuccess} (then C{SipCallFailed}), C{SipNotEnabled},
            C{SipBadPhoneLine}, C{SipBadParameter}, C{SipNoCallOnLine}.
        """
        self._requireRunning()
        entry = self._line(line)
        _requireInt("code", code, 300, 699)
        if reason is not None and (not isinstance(reason, str) or any(ord(ch) < 32 for ch in reason)):
            raise TelephonyError(R.SipBadParameter, f"reason={reason!r}")
        call = entry.call
        if call is None or entry.outgoing or not entry.announced or call.state is not CallState.INCOMING:
            raise TelephonyError(R.SipNoCallOnLine, f"line {line} has no ringing incoming call")
        call.reject(code, reason)
        return R.SipSuccess

    @_api
    def terminateCall(self, line: int) -> TelephonyReturnValue:
        """
        End the call on C{line} whatever its state: CANCEL an unanswered
        outgoing call, 603 an unanswered incoming one, BYE an established
        one. Harmless on a call already ending.

        @return: C{SipSuccess} (then C{SipCallComplete} or
            C{SipCallFailed}), C{SipNotEnabled}, C{SipBadPhoneLine},
            C{SipNoCallOnLine}.
        """
        self._requireRunning()
        entry = self._line(line)
        call = entry.call
        if call is None:
            raise TelephonyError(R.SipNoCallOnLine, f"line {line} is idle")
        entry.hangingUp = True
        self.sipKeepAlive.unwatch(line)
        self.rtpKeepAlive.unwatch(line)
        call.hangup()
        self._refresh(entry)
        return R.SipSuccess

    @_api
    def holdCall(self, line: int) -> TelephonyReturnValue:
        """
        Put the far end on hold (re-INVITE with a sendonly offer).

        @return: C{SipSuccess} (then C{SipCallHeld} or
            C{SipCallHoldFailed}), C{SipNotEnabled}, C{SipBadPhoneLine},
            C{SipNoCallOnLine}, C{SipCallNotConnected},
            C{SipAlreadyOnHold}, C{SipCallFailure} (a re-INVITE is already
            in progress).
        """
        return self._reinvite(line, hold=True)

    @_api
    def resumeCall(self, line: int) -> TelephonyReturnValue:
        """
        Take the far end off hold (re-INVITE with a sendrecv offer).

        @return: As L{holdCall}, with C{SipNotOnHold} for a call we do not
            hold and C{SipCallResumed} as the success event.
        """
        return self._reinvite(line, hold=False)

    def getLineStatus(self, line: int) -> LineStatus:
        """
        The state of C{line}.

        @raise TelephonyError: C{SipBadPhoneLine} for a bad line number.
        """
        return self._status(self._line(line))

    def getCall(self, line: int) -> Call | None:
        """
        The L{ICall} on C{line}, or None (for Twisted code that wants
        C{call.whenTerminated()} and the like).

        @raise TelephonyError: C{SipBadPhoneLine} for a bad line number.
        """
        return self._line(line).call

    # -- noise gate -------------------------------------------------------

    @_api
    def setNoiseThreshold(self, threshold: int) -> TelephonyReturnValue:
        """
        Set the noise gate threshold of every line, now and for calls to
        come.

        @param threshold: An int within L{getMinNoiseThreshold} (0) -
            L{getMaxNoiseThreshold} (0x7FFF), in 16-bit sample units.
        @return: C{SipSuccess} or C{SipBadParameter}.
        """
        _requireInt("threshold", threshold, MIN_THRESHOLD, MAX_THRESHOLD)
        self._setGates(threshold=threshold)
        return R.SipSuccess

    def getNoiseThreshold(self) -> int:
        """
        The noise gate threshold.
        """
        return self._gateSettings[0]

    def getMinNoiseThreshold(self) -> int:
        """
        The smallest threshold accepted: 0 (every frame is loud).
        """
        return MIN_THRESHOLD

    def getMaxNoiseThreshold(self) -> int:
        """
        The largest threshold accepted: 0x7FFF.
        """
        return MAX_THRESHOLD

    @_api
    def setNoiseDiscriminationEnableState(self, enabled: bool) -> TelephonyReturnValue:
        """
        Enable or disable the noise gate of every line.

        @return: C{SipSuccess} or C{SipBadParameter} (not a bool).
        """
        if not isinstance(enabled, bool):
            raise TelephonyError(R.SipBadParameter, f"enabled={enabled!r}")
        self._setGates(enabled=enabled)
        return R.SipSuccess

    def getNoiseDiscriminationEnableState(self) -> bool:
        """
        Whether the noise gate is enabled.
        """
        return self._gateSettings[1]

    @_api
    def setSilenceDecay(self, decayMs: int) -> TelephonyReturnValue:
        """
        Set how long (ms) quiet frames are still sent after the last loud
        one, on every line.

        @param decayMs: An int within 0-10,000.
        @return: C{SipSuccess} or C{SipBadParameter}.
        """
        _requireInt("decayMs", decayMs, MIN_DECAY_MS, MAX_DECAY_MS)
        self._setGates(decayMs=decayMs)
        return R.SipSuccess

    def getSilenceDecay(self) -> int:
        """
        The noise gate decay in ms.
        """
        return self._gateSettings[2]

    def _setGates(self, threshold: int | None = None, enabled: bool | None = None, decayMs: int | None = None) -> None:
        old = self._gateSettings
        self._gateSettings = (
            old[0] if threshold is None else threshold,
            old[1] if enabled is None else enabled,
            old[2] if decayMs is None else decayMs,
        )
        for entry in self._lines:
            gate = entry.gate
            gate.setThreshold(self._gateSettings[0])
            gate.setDecay(self._gateSettings[2])
            gate.setEnabled(self._gateSettings[1])

    # -- keep-alive ---------------------------------------------------------

    @_api
    def enableKeepAliveTransmissions(self, keepAliveSip: bool, keepAliveRtp: bool,
                                     natSessionTimeMs: int) -> TelephonyReturnValue:
        """
        Turn SIP and RTP keep-alive on or off for every active call and
        every call to come, so that no flow stays idle for
        C{natSessionTimeMs}. Takes effect at once; call again to change or
        disable.

        @param keepAliveSip: In-dialog OPTIONS on idle signalling flows.
        @param keepAliveRtp: Silence frames on idle RTP flows.
        @param natSessionTimeMs: The shortest NAT session time to survive,
            1,000 - 3,600,000 ms (not checked when both are off).
        @return: C{SipSuccess} or C{SipBadParameter} (nothing changed).
        """
        for name, value in (("keepAliveSip", keepAliveSip), ("keepAliveRtp", keepAliveRtp)):
            if not isinstance(value, bool):
                raise TelephonyError(R.SipBadParameter, f"{name}={value!r}")
        if keepAliveSip or keepAliveRtp:
            try:
                maximumInterval(natSessionTimeMs, self.config.keepAliveLosses)
            except KeepAliveParameterError as e:
                raise TelephonyError(R.SipBadParameter, str(e)) from None
        self.sipKeepAlive.setNatSessionTime(natSessionTimeMs if keepAliveSip else None)
        self.rtpKeepAlive.setNatSessionTime(natSessionTimeMs if keepAliveRtp else None)
        return R.SipSuccess

    @_api
    def sendSipKeepAlive(self, host: str, port: int, enableState: bool, keepAliveSeconds: float) -> TelephonyReturnValue:
        """
        Send (or stop sending) a CRLF from the SIP socket to C{host:port}
        every C{keepAliveSeconds}; see L{NullKeepAliveService}.

        @return: C{SipSuccess}, C{SipNotEnabled} or C{SipBadParameter}; a
            host name that fails to resolve is reported later as
            C{SipNullKeepAliveResolutionFailure}.
        """
        self._requireRunning()
        try:
            self.nullKeepAlive.sendSipKeepAlive(host, port, enableState, keepAliveSeconds)
        except KeepAliveParameterError as e:
            raise TelephonyError(R.SipBadParameter, str(e)) from None
        return R.SipSuccess

    def getKeepAliveState(self) -> list[dict[str, Any]]:
        """
        The state of every keep-alive flow, as plain dicts with a C{kind}
        (C{"sip"}, C{"rtp"}, C{"null"}): for call flows C{line}, C{remote},
        C{interval}, C{lastSent}, C{deadline}, C{sendCount},
        C{failureCount}, C{consecutiveFailures} and C{lastRoundTrip} (SIP),
        C{framesSent} (RTP); for NULL keep-alives what
        L{NullKeepAliveService.snapshot} gives.
        """
        states = []
        for service in (self.sipKeepAlive, self.rtpKeepAlive):
            for state in service.snapshot():
                state["line"] = state.pop("key")
                states.append(state)
        for state in self.nullKeepAlive.snapshot():
            states.append({"kind": "null", **state})
        return states

    # -- registration -------------------------------------------------------

    @_api
    def enableSipRegisterServer(self, namesToRegister: list[str], registerPhoneLines: bool,
                                registerThroughProxy: bool, registrationServerAddress: str,
                                registrationServerPort: int, registrationUpdateIntervalSeconds: float,
                                registrationExpireTimeSeconds: int, timeOutMs: int,
                                registerNatAutoDetectEnabled: bool) -> TelephonyReturnValue:
        """
        Register every name of C{namesToRegister} (one REGISTER flow each:
        its own Call-ID and CSeq) with the registrar at once, and refresh
        every C{registrationUpdateIntervalSeconds}. The outcome comes as
        C{SipRegister*} events.

        Calling it again replaces the set of registrations: names no longer
        listed are un-registered; a name whose settings (registrar, proxy,
        interval, expiry, timeout, NAT detection, credentials) are
        unchanged keeps its flow (and is retried at once when it is backing
        off after a failure); a name whose settings changed is
        un-registered, then registered afresh.

        @param namesToRegister: A list of user names (SIP user parts), each
            registered as C{sip:name@registrar} with the contact
            C{sip:name@<our address>}.
        @param registerPhoneLines: Also register each phone line's name
            (C{EngineConfig.lineUser(line)}); the events of those
            registrations carry the line number.
        @param registerThroughProxy: Send the REGISTERs to the outbound
            proxy (C{enableOutboundSipProxyServer}), with a Route header
            naming it.
        @param registrationServerAddress: The registrar: an IP address of
            the SIP socket's family, or a host name (resolved with
            C{EngineConfig.resolve}, without blocking; then it is also the
            domain of the address-of-record).
        @param registrationServerPort: 1-65535.
        @param registrationUpdateIntervalSeconds: Seconds between
            REGISTERs, at least 1.
        @param registrationExpireTimeSeconds: The expiry to ask for, or 0
            for the interval plus 5 seconds. A registrar granting less is
            refreshed before the binding lapses.
        @param timeOutMs: The longest wait for the final answer to one
            REGISTER, at least 1.
        @param registerNatAutoDetectEnabled: Re-register at once with the
            address the registrar saw (RFC 3581 received/rport) when it is
            not our contact's.
        @return: C{SipSuccess}, C{SipNotEnabled}, C{SipBadNameList} (not a
            list of strings, an invalid or repeated name, too many names),
            C{SipBadParameter} (no name at all, a bad address, port,
            interval, expiry or timeout, a flag that is not a C{bool}, no
            outbound proxy to register through).
        """
        self._requireRunning()
        for name, value in (("registerPhoneLines", registerPhoneLines),
                            ("registerThroughProxy", registerThroughProxy),
                            ("registerNatAutoDetectEnabled", registerNatAutoDetectEnabled)):
            if not isinstance(value, bool):
                raise TelephonyError(R.SipBadParameter, f"{name}={value!r} is not a bool")
        names = self._namesToRegister(namesToRegister, registerPhoneLines)
        registrar = self._serverAddress("registrationServerAddress", registrationServerAddress)
        proxy = None
        if registerThroughProxy:
            if self._outboundProxy is None:
                raise TelephonyError(R.SipBadParameter, "registerThroughProxy: no outbound proxy "
                                                        "(enableOutboundSipProxyServer first)")
            proxy = self._outboundProxy
            proxyAddress = self._serverAddress("outbound proxy", proxy[0])
        expires = registrationExpireTimeSeconds
        if expires == 0 and _isInt(expires, 0, 0):
            expires = None
        request = _RegistrationRequest(
            names=names, host=registrationServerAddress, port=registrationServerPort,
            interval=registrationUpdateIntervalSeconds, expires=expires, timeoutMs=timeOutMs,
            natAutoDetect=registerNatAutoDetectEnabled, proxy=proxy)
        # Check every value now with stand-in addresses for host names: the
        # client's own rules, so that nothing can fail once resolved.
        standIn = "::1" if ":" in self.config.sipHost else "127.0.0.1"
        proxyStandIn = None if proxy is None else (proxyAddress or standIn, proxy[1])
        for name, _ in names:
            try:
                self._registrationConfig(request, name, registrar or standIn, proxyStandIn)
            except RegistrationConfigError as e:
                raise TelephonyError(R.SipBadNameList if e.field == "name" else R.SipBadParameter,
                                     str(e)) from None
        self.log.info("registering {names} at {registrar}{via}", names=[name for name, _ in names],
                      registrar=_hostPort(registrationServerAddress, registrationServerPort),
                      via="" if proxy is None else f" through {_hostPort(*proxy)}")
        self._applyRegistrations(request)
        return R.SipSuccess

    @_api
    def disableSipRegisterServer(self) -> TelephonyReturnValue:
        """
        Un-register every name (a REGISTER with Expires 0 removing each
        contact we may have bound) and stop refreshing; the outcome comes
        as C{SipUnregister*} events. Harmless when nothing is registered.

        @return: C{SipSuccess} or C{SipNotEnabled}.
        """
        self._requireRunning()
        if self._registrations:
            self.log.info("un-registering {names}", names=sorted(self._registeredNames()))
        self._dropRegistrations()
        return R.SipSuccess

    def setSipAuthentication(self, user: str | None, password: str | None,
                             name: str | None = None) -> TelephonyReturnValue:
        """
        Set the digest credentials that answer registrars' challenges.

        Without C{name} they are the engine's: every registered name
        without credentials of its own uses them, and they answer
        challenges to our calls too (replacing C{EngineConfig.authUsername}
        and C{authPassword}, the initial engine credentials). With C{name}
        they are that name's only. C{(None, None)} removes them.

        Registrations read their credentials when C{enableSipRegisterServer}
        is called: call it again to apply new ones (only the names whose
        credentials changed register afresh). Neither the user nor the
        password is ever logged, returned or put in an event.

        @param user: The digest username, or None.
        @param password: The password, or None.
        @param name: A name to register (a SIP user part), or None.
        @return: C{SipSuccess} or C{SipBadParameter} (works whether or not
            the engine runs).
        """
        try:
            return self._setSipAuthentication(user, password, name)
        except TelephonyError as e:
            # Not the arguments: they hold the password.
            self.log.info("setSipAuthentication: {result}", result=e.value.name)
            return e.value
        except Exception:
            self.log.failure("setSipAuthentication failed")
            return R.SipCallFailure

    @_api
    def enableOutboundSipProxyServer(self, host: str, port: int) -> TelephonyReturnValue:
        """
        Set the outbound proxy: the REGISTERs of a later
        C{enableSipRegisterServer(..., registerThroughProxy=True, ...)} go
        to it, with C{Route: <sip:host:port;lr>}. Registrations already
        running keep the proxy they had until C{enableSipRegisterServer}
        is called again. Calls are not routed through it.

        @param host: An IP address of the SIP socket's family, or a host
            name (resolved when registering).
        @param port: 1-65535.
        @return: C{SipSuccess} or C{SipBadParameter} (works whether or not
            the engine runs).
        """
        self._serverAddress("host", host)
        _requireInt("port", port, 1, 65535)
        self._outboundProxy = (host, port)
        return R.SipSuccess

    @_api
    def disableOutboundSipProxyServer(self) -> TelephonyReturnValue:
        """
        Forget the outbound proxy (see L{enableOutboundSipProxyServer}).

        @return: C{SipSuccess}.
        """
        self._outboundProxy = None
        return R.SipSuccess

    def getRegistrationState(self) -> list[dict[str, Any]]:
        """
        One plain dict per registered name, in the order they were listed
        (no credentials): C{name}, C{line} (or None), C{aor},
        C{registrar} (C{"host:port"}, the address once resolved),
        C{registrarHost} (as given), C{outboundProxy} (C{"host:port"} or
        None), C{state} (a L{RegistrationState
        <lmevoip.sip.registration.RegistrationState>} value, or
        C{"Resolving"} while the registrar's name resolves),
        C{registered} (a granted binding is in force), C{grantedExpires},
        C{bindingExpiresAt}, C{nextAttemptAt} (clock time of the next
        refresh or retry), C{contact}, C{publicAddress} (C{"host:port"}
        found by NAT detection, or None), C{failures} (consecutive),
        C{attempts}, C{lastEvent}, C{callId}, C{cseq}, C{interval},
        C{askedExpires}.
        """
        states = []
        for entry in self._registrations.values():
            client = entry.client
            host, port, _ = entry.key
            state: dict[str, Any] = {"name": entry.name, "line": entry.line, "registrarHost": host}
            if client is None:
                state.update(aor=None, registrar=_hostPort(host, port), outboundProxy=None, state="Resolving",
                             registered=False, grantedExpires=None, bindingExpiresAt=None, nextAttemptAt=None,
                             contact=None, publicAddress=None, failures=self._resolutionFailures, attempts=0,
                             lastEvent=None, callId=None, cseq=0, interval=None, askedExpires=None)
            else:
                snapshot = client.snapshot()
                config = client.config
                proxy = config.outboundProxy
                public = snapshot["publicAddress"]
                state.update(
                    aor=snapshot["aor"], registrar=_hostPort(config.registrarHost, config.registrarPort),
                    outboundProxy=None if proxy is None else _hostPort(*proxy), state=snapshot["state"],
                    registered=client.isRegistered, grantedExpires=snapshot["grantedExpires"],
                    bindingExpiresAt=snapshot["bindingExpiresAt"], nextAttemptAt=snapshot["nextAttemptAt"],
                    contact=snapshot["contact"], publicAddress=None if public is None else _hostPort(*public),
                    failures=snapshot["failures"], attempts=snapshot["attempts"], lastEvent=snapshot["lastEvent"],
                    callId=snapshot["callId"], cseq=snapshot["cseq"], interval=config.interval,
                    askedExpires=snapshot["askedExpires"])
            states.append(state)
        return states

    @property
    def registrations(self) -> dict[str, RegistrationClient]:
        """
        The L{RegistrationClient} of every registered name whose client
        exists (the registrar's name resolved), by name.
        """
        return {entry.name: entry.client for entry in self._registrations.values() if entry.client is not None}

    # -- internals: checks ------------------------------------------------

    def _requireRunning(self) -> None:
        if not self.running:
            raise TelephonyError(R.SipNotEnabled, "the engine is not running")

    def _line(self, line: object) -> _Line:
        if not _isInt(line, 0, len(self._lines) - 1):
            raise TelephonyError(R.SipBadPhoneLine, f"line {line!r} is not within 0-{len(self._lines) - 1}")
        return self._lines[line]

    def _checkHost(self, host: str) -> None:
        address = _ipLiteral(host)
        if address is None:
            raise TelephonyError(R.SipBadParameter, f"host {host!r} is not an IP address (no DNS)")
        ours = _ipLiteral(self.config.sipHost)
        if address.version != ours.version or address.is_unspecified or address.is_multicast:
            raise TelephonyError(R.SipBadParameter, f"host {host!r} cannot be reached from {self.config.sipHost}")

    # -- internals: lines -------------------------------------------------

    def _status(self, entry: _Line) -> LineStatus:
        call = entry.call
        media = call.media if call is not None else None
        return LineStatus(
            line=entry.index,
            state=entry.state,
            direction=None if call is None else ("outgoing" if entry.outgoing else "incoming"),
            remoteParty=_remoteParty(call),
            callId=None if call is None else call.callId,
            localHold=bool(call is not None and call.localHold),
            remoteHold=bool(call is not None and call.remoteHold),
            codec=None if media is None else media.codec,
            since=entry.since,
        )

    def _computeState(self, entry: _Line) -> LineState:
        call = entry.call
        if call is None or not entry.announced:
            return LineState.IDLE
        state = _CALL_TO_LINE[call.state]
        if state is LineState.CONNECTED and (call.localHold or call.remoteHold):
            return LineState.HELD
        if state is LineState.ANSWERING and entry.hangingUp:
            return LineState.DISCONNECTING
        return state

    def _refresh(self, entry: _Line) -> None:
        """
        Emit C{SipLineStateChanged} when the line's state moved.
        """
        state = self._computeState(entry)
        previous = entry.state
        if state is previous:
            return
        entry.state = state
        entry.since = self.clock.seconds()
        call = entry.call
        self._events.emit(EventName.SipLineStateChanged, line=entry.index,
                          callId=None if call is None else call.callId, remoteParty=_remoteParty(call),
                          details={"state": state, "previous": previous})

    def _freeLine(self) -> _Line | None:
        for entry in self._lines:
            if not entry.busy:
                return entry
        return None

    def _newMedia(self, entry: _Line) -> _LineMedia:
        """
        An RTP session with its ports bound, and the media handler around
        it. Raises what the allocator raises (C{PortsExhausted}).
        """
        config = self.config
        session = RtpSession(self.pacer, gate=entry.gate, clock=self.clock,
                             keepAliveComfortNoise=config.comfortNoise,
                             rtcpMinimumInterval=config.rtcpMinimumInterval)
        session.listen(self.portAllocator, config.mediaHost or config.sipHost)
        source = sink = None
        try:
            source = config.sourceFactory(entry.index)
            sink = config.sinkFactory(entry.index)
        except Exception:
            self._track(session.stop())
            for media in (source, sink):
                if media is not None:
                    media.close()
            raise
        session.source, session.sink = source, sink
        entry.gate.reset()
        return _LineMedia(self, entry, session, source, sink)

    def _track(self, deferred: Deferred[Any]) -> None:
        self._mediaStops.add(deferred)

        def done(result: Any) -> None:
            self._mediaStops.discard(deferred)

        deferred.addBoth(done)

    def _placeCall(self, entry: _Line, uri: SipUri) -> TelephonyReturnValue:
        if entry.busy:
            raise TelephonyError(R.SipLineBusy, f"line {entry.index} is {entry.state}")
        media = self._newMedia(entry)
        observer = _CallObserver(self, entry)
        entry.observer, entry.media, entry.outgoing = observer, media, True
        try:
            call = self.userAgent.call(uri, observer=observer, mediaHandler=media)
        except Exception as e:
            if entry.observer is observer:
                entry.clear()
            media.close()
            if isinstance(e, ValueError):
                raise TelephonyError(R.SipBadParameter, str(e)) from None
            raise TelephonyError(R.SipCallFailure, f"{type(e).__name__}: {e}") from None
        if entry.observer is not observer:
            # Ended already (a transport error on the INVITE); reported.
            return R.SipCallFailure
        entry.call = call
        entry.announced = True
        self.log.info("line {line}: calling {uri}", line=entry.index, uri=str(uri))
        self._refresh(entry)
        return R.SipSuccess

    def _reinvite(self, line: int, hold: bool) -> TelephonyReturnValue:
        self._requireRunning()
        entry = self._line(line)
        call = entry.call
        if call is None or not entry.announced:
            raise TelephonyError(R.SipNoCallOnLine, f"line {line} is idle")
        if call.state is not CallState.CONNECTED or entry.hangingUp:
            raise TelephonyError(R.SipCallNotConnected, f"line {line} is {entry.state}")
        if hold and call.localHold:
            raise TelephonyError(R.SipAlreadyOnHold, f"line {line} is already held")
        if not hold and not call.localHold:
            raise TelephonyError(R.SipNotOnHold, f"line {line} is not held by us")
        if entry.holdPending:
            raise TelephonyError(R.SipCallFailure, "a hold or resume is already in progress")
        operation = "hold" if hold else "resume"
        refused: list[Any] = []
        synchronous = True

        def failed(failure: Any) -> None:
            entry.holdPending = False
            if synchronous:
                refused.append(failure)
                return
            if entry.call is call:
                error = failure.value
                self._events.emit(EventName.SipCallHoldFailed, line=line, callId=call.callId,
                                  remoteParty=_remoteParty(call), status=getattr(error, "status", None),
                                  reason=type(error).__name__, result=R.SipCallFailure,
                                  details={"operation": operation, "error": str(error)})

        def done(result: Any) -> None:
            entry.holdPending = False

        entry.holdPending = True
        (call.hold() if hold else call.unhold()).addCallbacks(done, failed)
        synchronous = False
        if refused:
            raise TelephonyError(R.SipCallFailure, f"{operation} refused: {refused[0].getErrorMessage()}")
        return R.SipSuccess

    # -- internals: media -------------------------------------------------

    def _incomingMedia(self, call: Call) -> Any:
        """
        The user agent's media handler factory, called for each new INVITE:
        reserve the first free line (the call rings there) or, when none is
        free, hand back a handler that binds nothing (the call is refused
        486 in L{_incomingCall}).
        """
        entry = self._freeLine() if self.running else None
        if entry is None:
            return StaticMediaHandler(self.config.advertisedHost, 9, self.config.codecs)
        media = self._newMedia(entry)
        observer = _CallObserver(self, entry)
        entry.observer, entry.media, entry.call, entry.outgoing = observer, media, call, False
        call.addObserver(observer)
        return media

    def _incomingCall(self, call: Call) -> None:
        entry = next((e for e in self._lines if e.call is call), None)
        if entry is None:
            self.log.info("incoming call {callId} from {remote}: every line is busy, 486", callId=call.callId,
                          remote=_remoteParty(call))
            call.reject(486, "Busy Here")
            self._events.emit(EventName.SipIncomingCallRefused, callId=call.callId, remoteParty=_remoteParty(call),
                              status=486, result=R.SipNoFreeLine)
            return
        entry.announced = True
        called = self._calledUser(call)
        self.log.info("line {line}: incoming call from {remote} to {called}", line=entry.index,
                      remote=_remoteParty(call), called=called)
        self._refresh(entry)
        self._events.emit(EventName.SipOkToAnswerCall, line=entry.index, callId=call.callId,
                          remoteParty=_remoteParty(call),
                          details={"calledUser": called, "registered": called in self._registeredNames()})

    def _calledUser(self, call: Call) -> str | None:
        """
        The user an incoming call is for: the Request-URI's user when it is
        a registered name (a registrar routing to the contact we registered
        for that name), else the To URI's user.
        """
        invite = call.invite
        if invite is None:
            return None
        target = getattr(invite.uri, "user", None)
        if target is not None and target in self._registeredNames():
            return target
        try:
            return getattr(invite.toAddr.uri, "user", None)
        except Exception:
            return target

    def _mediaChanged(self, entry: _Line, media: _LineMedia, negotiated: Any) -> None:
        session = media.session
        try:
            session.configure(negotiated)
        except UnsupportedMedia as e:
            self.log.warn("line {line}: unusable media ({error}); hanging up", line=entry.index, error=str(e))
            call = entry.call
            if call is not None:
                # Not from inside the call's own offer/answer handling.
                self._pendingHangups.add(self.clock.callLater(0, self._hangupUnusable, call))
            return
        if not session.running:
            session.start()

    def _hangupUnusable(self, call: Call) -> None:
        self._pendingHangups = {d for d in self._pendingHangups if d.active()}
        call.hangup()

    def _mediaClosed(self, media: _LineMedia) -> None:
        self._track(media.session.stop())
        for part in (media.source, media.sink):
            try:
                part.close()
            except Exception:
                self.log.failure("closing {part!r} raised", part=part)

    # -- internals: call events -------------------------------------------

    def _callRinging(self, entry: _Line, call: Call, status: int) -> None:
        self._refresh(entry)
        self._events.emit(EventName.SipCallRinging, line=entry.index, callId=call.callId,
                          remoteParty=_remoteParty(call), status=status)

    def _callConnected(self, entry: _Line, call: Call) -> None:
        entry.connected = True
        self._refresh(entry)
        line = entry.index
        if not entry.hangingUp:
            self.sipKeepAlive.watch(line, call.sendOptions, functools.partial(_signallingAddress, call),
                                    lambda: call.state is CallState.CONNECTED)
            if entry.media is not None:
                self.rtpKeepAlive.watch(line, entry.media.session)
        name = EventName.SipOutgoingCallConnected if entry.outgoing else EventName.SipIncomingCallConnected
        media = call.media
        self._events.emit(name, line=line, callId=call.callId, remoteParty=_remoteParty(call),
                          details={"codec": None if media is None else media.codec})

    def _callHoldChanged(self, entry: _Line, call: Call, name: EventName, byPeer: bool) -> None:
        self._refresh(entry)
        self._events.emit(name, line=entry.index, callId=call.callId, remoteParty=_remoteParty(call),
                          details={"byPeer": byPeer})

    def _callTerminated(self, entry: _Line, call: Call, reason: CallEndReason, status: int | None) -> None:
        line = entry.index
        self.sipKeepAlive.unwatch(line)
        self.rtpKeepAlive.unwatch(line)
        announced, connected = entry.announced, entry.connected
        if entry.media is not None:
            entry.media.close()
        entry.clear()
        self._refresh(entry)
        if not announced:
            self.log.info("line {line}: call {callId} ended before it was offered ({reason})", line=line,
                          callId=call.callId, reason=reason.value)
            return
        remote = _remoteParty(call)
        detail = call.end.detail if call.end is not None else None
        if connected:
            self._events.emit(EventName.SipCallComplete, line=line, callId=call.callId, remoteParty=remote,
                              status=status, reason=reason.value, result=R.SipSuccess, details={"detail": detail})
            return
        if reason is CallEndReason.FAILED and status in (486, 600):
            result = R.SipRemoteBusy
        elif reason is CallEndReason.FAILED:
            result = R.SipCallRejected
        else:
            result = _FAILED_RESULTS.get(reason, R.SipCallFailure)
        self._events.emit(EventName.SipCallFailed, line=line, callId=call.callId, remoteParty=remote,
                          status=status, reason=reason.value, result=result, details={"detail": detail})

    # -- internals: registration --------------------------------------------

    def _registeredNames(self) -> set[str]:
        return {entry.name for entry in self._registrations.values()}

    def _namesToRegister(self, names: object, registerPhoneLines: bool) -> tuple[tuple[str, int | None], ...]:
        """
        C{(name, line)} for every name to register, checked.
        """
        if isinstance(names, (str, bytes)) or not isinstance(names, (list, tuple)):
            raise TelephonyError(R.SipBadNameList, f"namesToRegister={names!r} is not a list of names")
        if len(names) > MAX_REGISTERED_NAMES:
            raise TelephonyError(R.SipBadNameList, f"{len(names)} names; at most {MAX_REGISTERED_NAMES}")
        for name in names:
            if not _isRegistrationName(name):
                raise TelephonyError(R.SipBadNameList, f"{name!r} is not a SIP user name")
        result: list[tuple[str, int | None]] = [(name, None) for name in names]
        if registerPhoneLines:
            for line in range(len(self._lines)):
                name = self.config.lineUser(line)
                if not _isRegistrationName(name):
                    raise TelephonyError(R.SipBadNameList, f"line {line}'s name {name!r} is not a SIP user name")
                result.append((name, line))
        if not result:
            raise TelephonyError(R.SipBadParameter, "no name to register")
        seen: set[str] = set()
        for name, _ in result:
            if name in seen:
                raise TelephonyError(R.SipBadNameList, f"{name!r} is listed twice")
            seen.add(name)
        return tuple(result)

    def _serverAddress(self, what: str, host: object) -> str | None:
        """
        Check a registrar or proxy host: an IP address of the SIP socket's
        family (returned in canonical form) or a host name that a resolver
        can look up (None is returned).
        """
        if not isinstance(host, str) or not host:
            raise TelephonyError(R.SipBadParameter, f"{what}={host!r} is not a host")
        address = _ipLiteral(host)
        if address is None:
            if not _isHostName(host):
                raise TelephonyError(R.SipBadParameter, f"{what}={host!r} is not an IP address or a host name")
            if self._resolve is None:
                raise TelephonyError(R.SipBadParameter, f"{what}={host!r} is a name and no resolver is configured")
            return None
        self._checkFamily(what, address)
        return str(address)

    def _checkFamily(self, what: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        ours = _ipLiteral(self.config.sipHost)
        if address.version != ours.version or address.is_unspecified or address.is_multicast:
            raise TelephonyError(R.SipBadParameter, f"{what} {address} cannot be reached from {self.config.sipHost}")

    def _setSipAuthentication(self, user: object, password: object, name: object) -> TelephonyReturnValue:
        if name is not None and not _isRegistrationName(name):
            raise TelephonyError(R.SipBadParameter, "name is not a SIP user name")
        if user is None and password is None:
            credentials = None
        else:
            if not isinstance(user, str) or not user or len(user) > 256 or any(
                    ord(ch) < 32 or ord(ch) == 127 for ch in user):
                raise TelephonyError(R.SipBadParameter, "user must be a non-empty string without control characters")
            if not isinstance(password, str) or len(password) > 1024:
                raise TelephonyError(R.SipBadParameter, "password must be a string (at most 1024 characters)")
            credentials = (user, password)
        if name is None:
            self._credentials = credentials
            self.userAgent.authenticator = None if credentials is None else DigestAuthenticator(*credentials)
            self.log.info("engine digest credentials {what}", what="cleared" if credentials is None else "set")
            return R.SipSuccess
        assert isinstance(name, str)
        if credentials is None:
            self._nameCredentials.pop(name, None)
        else:
            if name not in self._nameCredentials and len(self._nameCredentials) >= MAX_REGISTERED_NAMES:
                raise TelephonyError(R.SipBadParameter, f"credentials for more than {MAX_REGISTERED_NAMES} names")
            self._nameCredentials[name] = credentials
        self.log.info("digest credentials of {name} {what}", name=name,
                      what="cleared" if credentials is None else "set")
        return R.SipSuccess

    def _registrationConfig(self, request: _RegistrationRequest, name: str, registrar: str,
                            proxy: tuple[str, int] | None) -> RegistrationConfig:
        """
        The L{RegistrationConfig} of one name, with its credentials (its
        own, else the engine's). Raises L{RegistrationConfigError}.
        """
        credentials = self._nameCredentials.get(name, self._credentials)
        user, password = credentials if credentials is not None else (None, None)
        return RegistrationConfig(
            registrarHost=registrar, registrarPort=request.port, name=name,
            domain=None if _ipLiteral(request.host) is not None else request.host,
            password=password, authUsername=user, interval=request.interval, expires=request.expires,
            timeoutMs=request.timeoutMs, natAutoDetect=request.natAutoDetect, outboundProxy=proxy,
            contactUser=name, displayName=self.config.displayName)

    def _applyRegistrations(self, request: _RegistrationRequest) -> None:
        """
        Make the registrations those of C{request}: un-register the names
        no longer wanted at once, then resolve the registrar's (and the
        proxy's) name and start or update the clients.
        """
        self._registrationGeneration += 1
        self._cancelResolutionRetry()
        self._resolutionFailures = 0
        wanted: dict[tuple[str, int, str], _Registration] = {}
        for name, line in request.names:
            key = (request.hostKey, request.port, name)
            entry = self._registrations.get(key) or _Registration(key, name, line)
            entry.line = line
            wanted[key] = entry
        for key, entry in self._registrations.items():
            if key not in wanted:
                self._retire(entry)
        self._registrations = wanted
        self._resolveRegistrar(request, self._registrationGeneration)

    def _resolveRegistrar(self, request: _RegistrationRequest, generation: int) -> None:
        self._resolutionRetry = None
        hosts = [request.host] + ([] if request.proxy is None else [request.proxy[0]])
        lookups = gatherResults([self._lookup(host) for host in hosts], consumeErrors=True)

        def resolved(addresses: list[str]) -> None:
            if generation != self._registrationGeneration or not self.running:
                return
            self._resolutionFailures = 0
            proxy = None if request.proxy is None else (addresses[1], request.proxy[1])
            try:
                self._installRegistrations(request, addresses[0], proxy)
            except Exception:
                self.log.failure("starting the registrations failed")

        def failed(failure: Any) -> None:
            if generation != self._registrationGeneration or not self.running:
                return
            error = getattr(failure.value, "subFailure", failure).value
            host = getattr(error, "host", request.host)
            self._resolutionFailures += 1
            delay = Backoff().delay(self._resolutionFailures, self._rng.random)
            self.log.info("registrar {host} did not resolve ({error}); again in {delay:.1f} s", host=host,
                          error=str(getattr(error, "error", error)), delay=delay)
            self._resolutionRetry = self.clock.callLater(delay, self._resolveRegistrar, request, generation)
            self._events.emit(EventName.SipRegisterResolutionFailure, result=R.SipResolutionFailure,
                              reason="resolution-failure",
                              details={"host": host, "error": str(getattr(error, "error", error)), "retryIn": delay})

        lookups.addCallbacks(resolved, failed)

    def _lookup(self, host: str) -> Deferred[str]:
        """
        The address of a registrar or proxy host: at once for an IP
        address, else from the resolver (an address of the SIP socket's
        family), failing with L{_ResolutionFailed}.
        """
        address = _ipLiteral(host)
        if address is not None:
            return succeed(str(address))

        def check(result: object) -> str:
            found = _ipLiteral(result) if isinstance(result, str) else None
            if found is None:
                raise _ResolutionFailed(host, f"resolved to {result!r}, not an IP address")
            try:
                self._checkFamily(host, found)
            except TelephonyError as e:
                raise _ResolutionFailed(host, str(e)) from None
            return str(found)

        def wrap(failure: Any) -> None:
            if failure.check(_ResolutionFailed):
                failure.raiseException()
            raise _ResolutionFailed(host, failure.getErrorMessage() or failure.type.__name__)

        return maybeDeferred(self._resolve, host).addCallback(check).addErrback(wrap)

    def _installRegistrations(self, request: _RegistrationRequest, registrar: str,
                              proxy: tuple[str, int] | None) -> None:
        """
        Start a client for every wanted name without one, keep those whose
        configuration is unchanged (C{register()}: a retry at once when
        backing off, nothing when registered), and
        replace the others: the old client un-registers first, so that its
        late Expires 0 cannot remove the new client's binding of the same
        contact.
        """
        for entry in self._registrations.values():
            config = self._registrationConfig(request, entry.name, registrar, proxy)
            old = entry.client
            if old is not None and old.config == config:
                old.register()
                continue
            observer = _RegistrationObserver(self, entry)
            client = RegistrationClient(self.userAgent, config, observer, random=self._rng.random)
            observer.client = client
            entry.client = client
            if old is not None:
                self._unregister(old, entry.key)
            self._registerWhenClear(entry, client)

    def _registerWhenClear(self, entry: _Registration, client: RegistrationClient) -> None:
        """
        Register C{client} once no earlier flow of the same name and
        registrar is un-registering: the registrar would apply a late
        Expires 0 of another Call-ID to the contact we bind (RFC 3261 10.3
        step 7).
        """
        pending = [d for d, (_, key) in self._unregistrations.items() if key == entry.key and not d.called]
        if not pending:
            client.register()
            return

        def clear(result: Any) -> None:
            if self.running and self._registrations.get(entry.key) is entry and entry.client is client:
                client.register()

        DeferredList(pending, consumeErrors=True).addCallback(clear)

    def _retire(self, entry: _Registration) -> None:
        if entry.client is not None:
            self._unregister(entry.client, entry.key)

    def _unregister(self, client: RegistrationClient, key: tuple[str, int, str]) -> None:
        """
        Un-register C{client}, tracking the Deferred for L{stopService} and
        for the next flow of the same C{key}.
        """
        done = client.unregister()
        if done.called:
            return
        self._unregistrations[done] = (client.config.timeoutMs / 1000.0, key)

        def forget(result: Any) -> Any:
            self._unregistrations.pop(done, None)
            return result

        done.addBoth(forget)

    def _dropRegistrations(self) -> None:
        """
        Un-register every name; forget any lookup in progress.
        """
        self._registrationGeneration += 1
        self._cancelResolutionRetry()
        entries, self._registrations = self._registrations, {}
        for entry in entries.values():
            self._retire(entry)

    def _cancelResolutionRetry(self) -> None:
        if self._resolutionRetry is not None and self._resolutionRetry.active():
            self._resolutionRetry.cancel()
        self._resolutionRetry = None

    def _registrationEvent(self, entry: _Registration, client: RegistrationClient | None, name: str,
                           fields: dict[str, Any]) -> None:
        """
        A registration client's event, as the engine event of the same name.
        """
        event = EventName(name)
        config = None if client is None else client.config
        details = {**fields, "name": entry.name,
                   "registrar": None if config is None else _hostPort(config.registrarHost, config.registrarPort)}
        status = fields.get("status")
        reason = fields.get("reason", fields.get("why"))
        self._events.emit(event, line=entry.line, callId=None if client is None else client.callId,
                          status=status if isinstance(status, int) else None,
                          reason=str(reason) if reason is not None else _REGISTRATION_REASONS.get(name),
                          result=_REGISTRATION_RESULTS.get(name), details=details)

    # -- internals: keep-alive --------------------------------------------

    def _sendRaw(self, data: bytes, addr: tuple[str, int]) -> None:
        self.protocol.send(data, addr)

    def _nullKeepAliveEvent(self, name: str, **fields: Any) -> None:
        event = (EventName.SipNullKeepAliveResolved if name == "sipKeepAliveResolved"
                 else EventName.SipNullKeepAliveResolutionFailure)
        result = None if event is EventName.SipNullKeepAliveResolved else R.SipResolutionFailure
        self._events.emit(event, result=result, details=fields)

    def _sipKeepAliveFailed(self, key: Hashable, status: int | None, reason: str, consecutiveFailures: int) -> None:
        entry = self._lines[key]  # type: ignore[index]
        call = entry.call
        result = {"timeout": R.SipCallTimeOut, "transport-error": R.SipTransportError}.get(reason, R.SipCallFailure)
        self._events.emit(EventName.SipKeepAliveFailure, line=entry.index,
                          callId=None if call is None else call.callId, remoteParty=_remoteParty(call),
                          status=status, reason=reason, result=result,
                          details={"consecutiveFailures": consecutiveFailures})

    def _sipKeepAliveLimit(self, key: Hashable) -> None:
        entry = self._lines[key]  # type: ignore[index]
        call = entry.call
        if call is None:
            return
        self.log.warn("line {line}: {count} SIP keep-alives failed in a row; ending the call", line=entry.index,
                      count=self.config.sipKeepAliveMaxFailures)
        entry.hangingUp = True
        self.sipKeepAlive.unwatch(entry.index)
        self.rtpKeepAlive.unwatch(entry.index)
        call.hangup()
        self._refresh(entry)


def _signallingAddress(call: Call) -> tuple[str, int] | None:
    """
    Where the call's in-dialog requests go (RFC 3261 12.2.1.1): the first
    route, else the remote target.
    """
    dialog = call.dialog
    if dialog is None:
        return None
    routes = dialog.routeSet
    try:
        return uriAddress(routes[0].uri if routes else dialog.remoteTarget)
    except ValueError:
        return None

