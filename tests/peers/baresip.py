"""
baresip as a real peer: a headless baresip (Debian's 1.0.0) with its own
configuration directory, driven through its C{ctrl_tcp} module (netstring
framed JSON over TCP): commands in, responses and call events out.

Example (in a C{twisted.trial.unittest.TestCase})::

    @inlineCallbacks
    def test_engineCallsBaresip(self):
        peer = Baresip(self, rtpTimeout=2)     # answers automatically
        yield peer.start()
        ...                                    # the engine calls peer.uri
        yield peer.waitForEvent("CALL_ESTABLISHED")
        closed = yield peer.waitForEvent("CALL_CLOSED", timeout=30)
        self.assertEqual(closed.param, RTP_TIMEOUT_REASON)

What Debian's baresip 1.0.0 ships and how this uses it:
  - no UI module runs (no C{stdio}/C{cons}): C{ctrl_tcp} carries commands
    and events; C{menu} provides the commands (C{dial}, C{hangup},
    C{accept}, C{answermode}, C{listcalls}, C{quit}).
  - audio: C{ausine} as the source (a 440 Hz tone; it only runs at 48 kHz
    stereo, hence C{ausrc_srate 48000} and C{ausrc_channels 2}, baresip
    resamples for PCMU), C{aubridge} as the player (plays nowhere), codec
    C{g711} (PCMU, PCMA).
  - C{net_interface 127.0.0.1} (the name C{lo} is refused by 1.0.0: "could
    not get IPv4 address"), C{-4}, and C{dns_server 127.0.0.1:53}, so that
    nothing leaves the loopback interface.
  - C{rtp_timeout N} (seconds) is a global setting in 1.0.0; a call whose
    RTP stops (or never starts) for N seconds is closed with the reason
    L{RTP_TIMEOUT_REASON} (C{"rtp stream error"}), and baresip sends BYE.
  - the account C{<sip:USER@127.0.0.1:PORT>;regint=0;answermode=auto}: no
    registration; incoming calls answered at once (C{answermode=manual}
    waits for L{Baresip.accept}).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError
from twisted.logger import Logger
from twisted.protocols.basic import NetstringReceiver

from tests.peers import PeerError, PeerExited, PeerProcess, PeerTimeout, traceDirectory
from tests.peers.ports import LOOPBACK, freePortBlock, freeTcpPort, waitForUdpPort
from tests.support import requireTool

__all__ = [
    "MODULE_DIR",
    "REMOTE_HANGUP_REASON",
    "RTP_TIMEOUT_REASON",
    "Baresip",
    "BaresipError",
    "BaresipEvent",
    "BaresipResponse",
    "ControlProtocol",
    "writeConfig",
]

#: Where Debian's baresip keeps its modules.
MODULE_DIR = Path("/usr/lib/baresip/modules")

#: C{CALL_CLOSED}'s param when baresip's RTP timeout ended the call (1.0.0).
RTP_TIMEOUT_REASON = "rtp stream error"

#: C{CALL_CLOSED}'s param when the other side hung up with BYE (1.0.0).
REMOTE_HANGUP_REASON = "Connection reset by peer"

#: The modules the harness loads; all ship with Debian's baresip 1.0.0.
MODULES = ("g711.so", "ausine.so", "aubridge.so", "ctrl_tcp.so")
TEMPORARY_MODULES = ("uuid.so", "account.so")
APPLICATION_MODULES = ("menu.so",)


class BaresipError(PeerError):
    """
    baresip refused a command or did not do what was waited for.
    """


@dataclass(frozen=True)
class BaresipEvent:
    """
    One event baresip reported over C{ctrl_tcp}.

    @ivar type: e.g. C{CALL_INCOMING}, C{CALL_ESTABLISHED}, C{CALL_CLOSED},
        C{CALL_RTPESTAB}, C{CALL_REMOTE_SDP}.
    @ivar eventClass: C{call}, C{other}, C{application}, ...
    @ivar param: the event's parameter: for C{CALL_CLOSED} the reason
        (L{RTP_TIMEOUT_REASON}, L{REMOTE_HANGUP_REASON}, ...).
    @ivar callId: the SIP Call-ID of the call, if any.
    @ivar peerUri: the other party's URI, if any.
    @ivar direction: C{incoming} or C{outgoing}, if a call event.
    @ivar time: reactor time the event arrived.
    @ivar raw: the whole JSON object.
    """

    type: str
    eventClass: str
    param: str
    callId: str
    peerUri: str
    direction: str
    time: float
    raw: dict[str, Any] = field(compare=False, repr=False)


@dataclass(frozen=True)
class BaresipResponse:
    """
    baresip's response to one command.

    @ivar ok: whether the command succeeded.
    @ivar data: the command's text output.
    """

    ok: bool
    data: str


class ControlProtocol(NetstringReceiver):
    """
    The client side of baresip's C{ctrl_tcp}: netstrings of JSON. Commands
    carry a token; responses are matched to their command by it; events are
    handed to C{onEvent}.
    """

    log = Logger()
    MAX_LENGTH = 1024 * 1024

    def __init__(self, onEvent: Callable[[dict[str, Any]], None]) -> None:
        self.onEvent = onEvent
        self.pending: dict[str, Deferred[BaresipResponse]] = {}
        self.counter = 0
        self.closed: Deferred[None] = Deferred()

    def command(self, command: str, params: str = "") -> Deferred[BaresipResponse]:
        """
        Send C{command} with C{params}; return a Deferred firing with the
        L{BaresipResponse}.
        """
        self.counter += 1
        token = f"lmevoip-{self.counter}"
        d: Deferred[BaresipResponse] = Deferred()
        self.pending[token] = d
        payload = {"command": command, "params": params, "token": token}
        self.sendString(json.dumps(payload).encode("utf-8"))
        return d

    def stringReceived(self, string: bytes) -> None:
        try:
            message = json.loads(string.decode("utf-8", "replace"))
        except ValueError:
            self.log.warn("undecodable ctrl_tcp message {data!r}", data=string[:200])
            return
        if not isinstance(message, dict):
            return
        if message.get("response"):
            d = self.pending.pop(str(message.get("token")), None)
            if d is not None:
                d.callback(BaresipResponse(bool(message.get("ok")), str(message.get("data", ""))))
        elif message.get("event"):
            self.onEvent(message)

    def connectionLost(self, reason: Any = None) -> None:
        pending, self.pending = self.pending, {}
        for d in pending.values():
            d.errback(BaresipError("baresip closed the control connection"))
        if not self.closed.called:
            self.closed.callback(None)


def writeConfig(
    directory: Path,
    sipPort: int,
    ctrlPort: int,
    user: str = "baresip",
    answerMode: str = "auto",
    rtpTimeout: int | None = None,
    extraConfig: Iterable[str] = (),
    accountParams: str = "",
    host: str = LOOPBACK,
) -> str:
    """
    Write a headless baresip configuration (C{config}, C{accounts},
    C{contacts}) into C{directory}.

    @param rtpTimeout: seconds without RTP before baresip closes a call
        (L{None}: never).
    @param extraConfig: more C{config} lines.
    @param accountParams: more C{;name=value} account parameters.
    @return: the account's URI.
    """
    lines = [
        "poll_method\t\tepoll",
        f"sip_listen\t\t{host}:{sipPort}",
        f"net_interface\t\t{host}",
        f"dns_server\t\t{host}:53",
        "call_local_timeout\t120",
        "call_max_calls\t\t4",
        "audio_player\t\taubridge,nil",
        "audio_alert\t\taubridge,nil",
        "audio_source\t\tausine,440",
        "ausrc_srate\t\t48000",
        "ausrc_channels\t\t2",
        "audio_level\t\tno",
        "rtp_stats\t\tno",
        f"module_path\t\t{MODULE_DIR}",
        *(f"module\t\t\t{m}" for m in MODULES),
        *(f"module_tmp\t\t{m}" for m in TEMPORARY_MODULES),
        *(f"module_app\t\t{m}" for m in APPLICATION_MODULES),
        f"ctrl_tcp_listen\t\t{host}:{ctrlPort}",
    ]
    if rtpTimeout is not None:
        lines.append(f"rtp_timeout\t\t{int(rtpTimeout)}")
    lines += list(extraConfig)
    (directory / "config").write_text("\n".join(lines) + "\n")
    uri = f"sip:{user}@{host}:{sipPort}"
    (directory / "accounts").write_text(
        f"<{uri}>;regint=0;answermode={answerMode};audio_codecs=pcmu,pcma{accountParams}\n")
    (directory / "contacts").write_text("")
    return uri


class Baresip:
    """
    One headless baresip, spawned through the reactor and driven over
    C{ctrl_tcp}.

    @ivar uri: the account's URI (where to call it).
    @ivar sipPort: its SIP port (UDP and TCP; TLS takes the next port).
    @ivar ctrlPort: its C{ctrl_tcp} port.
    @ivar directory: its configuration directory.
    @ivar events: every L{BaresipEvent} received, in order.
    @ivar process: the L{PeerProcess} once started.
    """

    log = Logger()

    def __init__(
        self,
        testCase: Any,
        *,
        user: str = "baresip",
        answerMode: str = "auto",
        rtpTimeout: int | None = None,
        sipPort: int | None = None,
        extraConfig: Iterable[str] = (),
        accountParams: str = "",
        reactor: Any = None,
        host: str = LOOPBACK,
        stopGrace: float = 5.0,
        maxEvents: int = 10000,
    ) -> None:
        """
        @param testCase: the running C{TestCase}: the configuration goes in
            its directory and its cleanup stops baresip.
        @param user: the user part of the account.
        @param answerMode: C{auto} (answer at once), C{manual} (wait for
            L{accept}) or C{early}.
        @param rtpTimeout: seconds without RTP before baresip closes a call.
        @param sipPort: the SIP port (a free one by default).
        @param extraConfig: more C{config} lines.
        @param accountParams: more C{;name=value} account parameters.
        @param reactor: the reactor (the global one by default).
        @param stopGrace: seconds between SIGTERM and SIGKILL when stopping.
        @param maxEvents: events kept (the oldest are dropped beyond).
        """
        if reactor is None:
            from twisted.internet import reactor as globalReactor
            reactor = globalReactor
        self.executable = requireTool("baresip")
        self.reactor = reactor
        self.host = host
        self.stopGrace = stopGrace
        self.maxEvents = maxEvents
        # baresip listens on UDP and TCP at sipPort, and TLS (TCP) at sipPort + 1.
        self.sipPort = sipPort if sipPort is not None else freePortBlock(
            2, host, align=1, kinds=(socket.SOCK_DGRAM, socket.SOCK_STREAM))
        self.ctrlPort = freeTcpPort(host)
        self.directory = traceDirectory(testCase, "baresip")
        self.uri = writeConfig(self.directory, self.sipPort, self.ctrlPort, user, answerMode,
                               rtpTimeout, extraConfig, accountParams, host)
        self.argv = [self.executable, "-4", "-f", str(self.directory)]
        self.events: list[BaresipEvent] = []
        self.process: PeerProcess | None = None
        self.control: ControlProtocol | None = None
        self._eventWaiters: list[tuple[Callable[[BaresipEvent], bool], Deferred[BaresipEvent]]] = []
        testCase.addCleanup(self.stop)

    @inlineCallbacks
    def start(self, timeout: float = 15.0) -> Any:
        """
        Spawn baresip, connect to its C{ctrl_tcp} and wait until it answers
        a command.

        @return: a Deferred firing with this L{Baresip}; it fails with
            baresip's output if baresip ends or does not get ready in time.
        """
        process = PeerProcess(self.argv, self.reactor, cwd=self.directory, name="baresip")
        self.process = process
        process.start()
        deadline = self.reactor.seconds() + timeout
        endpoint = TCP4ClientEndpoint(self.reactor, self.host, self.ctrlPort, timeout=2)
        while True:
            if not process.running:
                raise PeerExited(f"baresip ended ({process.exit}) while starting\n" + process.outputTail())
            try:
                self.control = yield connectProtocol(endpoint, ControlProtocol(self._eventReceived))
                break
            except ConnectError:
                if self.reactor.seconds() > deadline:
                    raise PeerTimeout(f"baresip's ctrl_tcp (port {self.ctrlPort}) did not accept "
                                      f"within {timeout}s\n" + process.outputTail()) from None
                yield task.deferLater(self.reactor, 0.05, lambda: None)
        try:
            yield waitForUdpPort(self.sipPort, self.reactor, timeout=max(1.0, deadline - self.reactor.seconds()),
                                 host=self.host, pid=process.pid, alive=lambda: process.running)
        except Exception as e:
            raise PeerTimeout(f"baresip did not bind SIP port {self.sipPort}: {e}\n" + process.outputTail()) from e
        response = yield self.command("listcalls")
        if not response.ok:
            raise BaresipError(f"baresip is not ready: {response.data}")
        return self

    def command(self, command: str, params: str = "", timeout: float = 10.0) -> Deferred[BaresipResponse]:
        """
        Send a command (one of C{menu}'s: C{dial}, C{hangup}, C{accept},
        C{answermode}, C{listcalls}, ...).

        @return: a Deferred firing with the L{BaresipResponse}; it fails
            with L{PeerTimeout} if baresip does not answer in time.
        """
        if self.control is None:
            raise BaresipError("start() baresip first")
        self.log.info("baresip command {command} {params}", command=command, params=params)
        d = self.control.command(command, params)

        def timedOut(result: Any, seconds: float) -> Any:
            raise PeerTimeout(f"baresip did not answer {command!r} within {seconds}s")

        d.addTimeout(timeout, self.reactor, onTimeoutCancel=timedOut)
        return d

    def _checked(self, command: str, params: str = "") -> Deferred[BaresipResponse]:
        def check(response: BaresipResponse) -> BaresipResponse:
            if not response.ok:
                raise BaresipError(f"baresip refused {command} {params}: {response.data}")
            return response
        return self.command(command, params).addCallback(check)

    def dial(self, uri: str) -> Deferred[BaresipResponse]:
        """
        Call C{uri} (baresip's C{dial} command).
        """
        return self._checked("dial", uri)

    def hangup(self) -> Deferred[BaresipResponse]:
        """
        Hang up the current call (baresip's C{hangup} command).
        """
        return self._checked("hangup")

    def accept(self) -> Deferred[BaresipResponse]:
        """
        Answer the ringing incoming call (baresip's C{accept} command; with
        C{answerMode="manual"}).
        """
        return self._checked("accept")

    answer = accept

    def setAnswerMode(self, mode: str) -> Deferred[BaresipResponse]:
        """
        Switch the answer mode (C{auto}, C{manual} or C{early}).
        """
        return self._checked("answermode", mode)

    # -- events -------------------------------------------------------------------

    def _eventReceived(self, message: dict[str, Any]) -> None:
        event = BaresipEvent(
            type=str(message.get("type", "")),
            eventClass=str(message.get("class", "")),
            param=str(message.get("param", "")),
            callId=str(message.get("id", "")),
            peerUri=str(message.get("peeruri", "")),
            direction=str(message.get("direction", "")),
            time=self.reactor.seconds(),
            raw=message,
        )
        self.log.info("baresip event {type} {param}", type=event.type, param=event.param)
        self.events.append(event)
        if len(self.events) > self.maxEvents:
            del self.events[:len(self.events) - self.maxEvents]
        for waiter in list(self._eventWaiters):
            matches, d = waiter
            if matches(event):
                self._eventWaiters.remove(waiter)
                d.callback(event)

    def eventsOfType(self, type: str) -> list[BaresipEvent]:
        """
        Return the events of C{type} received so far.
        """
        return [event for event in self.events if event.type == type]

    def waitForEvent(
        self,
        type: str,
        predicate: Callable[[BaresipEvent], bool] | None = None,
        timeout: float = 10.0,
        includePast: bool = True,
    ) -> Deferred[BaresipEvent]:
        """
        Wait for an event of C{type} (and matching C{predicate}).

        @param includePast: an event already received counts (the first
            one that matches); C{False} waits for a new one.
        @return: a Deferred firing with the L{BaresipEvent}; it fails with
            L{PeerTimeout} (listing the events seen) after C{timeout}
            seconds, or with L{PeerExited} if baresip ends first.
        """
        def matches(event: BaresipEvent) -> bool:
            return event.type == type and (predicate is None or predicate(event))

        d: Deferred[BaresipEvent] = Deferred()
        if includePast:
            for event in self.events:
                if matches(event):
                    d.callback(event)
                    return d
        waiter = (matches, d)
        self._eventWaiters.append(waiter)

        def expire(result: Any, seconds: float) -> Any:
            if waiter in self._eventWaiters:
                self._eventWaiters.remove(waiter)
            seen = ", ".join(f"{e.type}({e.param})" for e in self.events[-20:])
            raise PeerTimeout(f"no baresip event {type} within {seconds}s; seen: {seen}")

        d.addTimeout(timeout, self.reactor, onTimeoutCancel=expire)
        if self.process is not None:
            def ended(exit: Any) -> None:
                if not d.called:
                    if waiter in self._eventWaiters:
                        self._eventWaiters.remove(waiter)
                    d.errback(PeerExited(f"baresip ended ({exit}) before event {type}\n"
                                         + self.process.outputTail()))
            self.process.whenEnded().addCallback(ended)
        return d

    # -- the end ------------------------------------------------------------------

    def stop(self) -> Deferred[Any]:
        """
        Stop baresip (SIGTERM, then SIGKILL after the grace period) and close
        the control connection.

        @return: a Deferred firing with the L{tests.peers.ProcessExit}, or
            L{None} if baresip was never started.
        """
        if self.control is not None and self.control.transport is not None:
            self.control.transport.loseConnection()
        if self.process is None:
            from twisted.internet.defer import succeed
            return succeed(None)
        return self.process.stop("TERM", self.stopGrace)
