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

Starting the engine starts all of them; stopping it ends every call (BYE,
CANCEL or 480), closes every RTP session and port, stops every timer and
closes the SIP socket.

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
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from lmevoip.events import EngineEvent, EventDispatcher, EventName
from lmevoip.interfaces import IAudioSink, IAudioSource, ICallObserver, IUserAgentObserver, IVoipMediaEngine
from lmevoip.keepalive.interval import MAX_LOSSES, KeepAliveParameterError, maximumInterval
from lmevoip.keepalive.null import NullKeepAliveService
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
from lmevoip.sip.call import Call, CallEndReason, CallState, StaticMediaHandler
from lmevoip.sip.dialog import uriAddress
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
    @ivar resolve: C{resolve(host) -> Deferred[str]} for
        C{sendSipKeepAlive} host names (default: the reactor's resolver).
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


@implementer(IVoipMediaEngine)
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
        End every call (BYE, CANCEL or 480 first), fail pending waiters,
        stop every child service and close every socket.

        @return: A Deferred firing when every socket is closed.
        """
        for pending in self._pendingHangups:
            if pending.active():
                pending.cancel()
        self._pendingHangups.clear()
        if self.running:
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
        self.log.info("line {line}: incoming call from {remote}", line=entry.index, remote=_remoteParty(call))
        self._refresh(entry)
        self._events.emit(EventName.SipOkToAnswerCall, line=entry.index, callId=call.callId,
                          remoteParty=_remoteParty(call))

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

