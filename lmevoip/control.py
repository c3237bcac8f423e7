"""
What the control API, the status page and the demo know about a running
engine beyond its own API: the B{sends on each NAT flow}, each classified
by why it was sent, and the largest idle gap of each flow.

A I{flow} is a NAT binding: a local socket and the remote address it sends
to. L{FlowMonitor} follows, for every established call on a line,

  - its B{SIP flow}: every datagram the engine's SIP socket sends to the
    call's signalling address (all of them count for the NAT binding:
    ACKs, responses, re-INVITEs, keep-alives);
  - its B{RTP flow}: every RTP packet the call's session sends;

from the moment the call is connected until it ends, and every
C{sendSipKeepAlive} destination (B{NULL flow}) while it is enabled. Each
send is classified (L{SendKind}):

  - RTP: C{voice} (an audio frame the noise gate let through) or
    C{rtp-keepalive} (a silence frame from the RTP keep-alive service),
    told apart with the session's C{keepAlivesSent} counter;
  - SIP: C{crlf-keepalive} (a datagram of CR and LF only: a NULL
    keep-alive, or the keep-alive service's CRLF while an OPTIONS is
    outstanding), C{options-keepalive} (an in-dialog OPTIONS of the SIP
    keep-alive service, told by its C{optionsSent} counter moving) or
    C{signalling} (everything else: ACK, BYE, responses, retransmissions).

Nothing here is estimated: counts and gaps come from the send observers of
the engine's sockets and the engine's own counters, on the engine's clock.
Memory is bounded: per flow, runs of sends (consecutive sends of one kind
less than L{RUN_MERGE_GAP} apart) within L{HISTORY_SECONDS}, at most
L{MAX_RUNS}; ended flows are kept for the last L{MAX_ENDED_FLOWS}.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Any, Deque, Iterable

from twisted.logger import Logger

from lmevoip.events import EngineEvent, EventName
from lmevoip.keepalive.sip import normaliseAddress
from lmevoip.returns import TelephonyReturnValue

__all__ = [
    "FlowMonitor",
    "FlowRecord",
    "SendKind",
    "describeResult",
    "HISTORY_SECONDS",
    "MAX_RUNS",
    "MAX_ENDED_FLOWS",
    "RUN_MERGE_GAP",
    "DEFAULT_REGISTER_INTERVAL",
    "DEFAULT_REGISTER_TIMEOUT_MS",
    "DEFAULT_SIP_PORT",
]

R = TelephonyReturnValue
Address = tuple[str, int]

# -- registration defaults, shared by twistd's options and the control API --

#: Seconds between REGISTERs (C{--register-interval}; C{"interval"}).
DEFAULT_REGISTER_INTERVAL = 300

#: The longest wait for the answer to one REGISTER, in ms
#: (C{--register-timeout}; C{"timeoutMs"}). Shorter than Timer F (32 s) so
#: that stopping the daemon, which waits for the un-REGISTERs, is never held
#: long by a registrar that went away.
DEFAULT_REGISTER_TIMEOUT_MS = 8000

#: A registrar's or proxy's port when none is given.
DEFAULT_SIP_PORT = 5060

#: How far back each flow's timeline goes (s).
HISTORY_SECONDS = 120.0
#: The most runs a flow's timeline holds.
MAX_RUNS = 1024
#: Sends of one kind closer than this (s) join one run of the timeline.
RUN_MERGE_GAP = 0.2
#: How many ended flows are kept.
MAX_ENDED_FLOWS = 32
#: A SIP datagram this short is a CRLF keep-alive (a SIP message never is).
_CRLF_MAX_BYTES = 16

_DESCRIPTIONS = {
    R.SipSuccess: "accepted; the outcome arrives as events",
    R.SipCallFailure: "the request could not be carried out (see the engine log)",
    R.SipInvalidHandle: "no such handle",
    R.SipBadParameter: "an argument is of the wrong type or out of range",
    R.SipBadPhoneLine: "no such phone line",
    R.SipNotEnabled: "the engine is not running",
    R.SipAlreadyOffHook: "the call on this line is already answered (or is outgoing)",
    R.SipCallTimeOut: "the call timed out",
    R.SipLineBusy: "the line already has a call",
    R.SipNoCallOnLine: "the line has no call of the kind this needs",
    R.SipCallNotConnected: "the call is not established yet",
    R.SipAlreadyOnHold: "the call is already on hold",
    R.SipNotOnHold: "the call is not on hold",
    R.SipNoFreeLine: "every line is busy",
    R.SipRemoteBusy: "the far end is busy",
    R.SipCallRejected: "the far end refused the call",
    R.SipCallCancelled: "the call was cancelled",
    R.SipTransportError: "the request could not be sent",
    R.SipResolutionFailure: "the host name did not resolve",
    R.SipBadNameList: "the list of names is malformed",
    R.SipAuthenticationFailure: "the registrar refused our credentials",
    R.SipRegistrationRejected: "the registrar refused the registration",
}


def describeResult(result: TelephonyReturnValue) -> str:
    """
    A short sentence saying what a L{TelephonyReturnValue} means, for error
    messages.
    """
    return _DESCRIPTIONS.get(result, result.name)


class SendKind(enum.StrEnum):
    """
    Why a datagram was sent on a flow.
    """

    #: An RTP audio frame that passed the noise gate.
    VOICE = "voice"
    #: An RTP silence frame of the RTP keep-alive service.
    RTP_KEEPALIVE = "rtp-keepalive"
    #: An in-dialog OPTIONS of the SIP keep-alive service.
    OPTIONS_KEEPALIVE = "options-keepalive"
    #: A CRLF keep-alive from the SIP socket.
    CRLF_KEEPALIVE = "crlf-keepalive"
    #: Any other SIP datagram (ACK, BYE, re-INVITE, responses,
    #: retransmissions).
    SIGNALLING = "signalling"


class FlowRecord:
    """
    The sends on one flow (see the module docstring).

    @ivar id: A stable identifier (C{"line0-sip"}, C{"null-192.0.2.7:5060"}).
    @ivar kind: C{"sip"}, C{"rtp"} or C{"null"}.
    @ivar line: The phone line, or None for a NULL flow.
    @ivar callId: The call's Call-ID, or None.
    @ivar remote: The remote address C{(host, port)} last sent to.
    @ivar since: Clock time the flow started being followed.
    @ivar endedAt: Clock time it stopped (the call ended), or None.
    @ivar lastSend: Clock time of the last send, or None.
    @ivar lastKind: The L{SendKind} of the last classified send, or None.
    @ivar counts: Sends by L{SendKind}.
    @ivar largestGap: The longest time (s) between two sends, or from
        L{since} to the first send.
    @ivar largestGapEnd: Clock time that gap ended.
    @ivar runs: The timeline: C{[start, end, kind, count]} lists, oldest
        first.
    """

    def __init__(self, id: str, kind: str, line: int | None, remote: Address, since: float,
                 callId: str | None = None) -> None:
        self.id = id
        self.kind = kind
        self.line = line
        self.callId = callId
        self.remote = remote
        self.since = since
        self.endedAt: float | None = None
        self.lastSend: float | None = None
        self.lastKind: SendKind | None = None
        self.counts: dict[SendKind, int] = {kind: 0 for kind in SendKind}
        self.largestGap = 0.0
        self.largestGapEnd: float | None = None
        self.runs: Deque[list[Any]] = deque(maxlen=MAX_RUNS)

    @property
    def active(self) -> bool:
        """
        Whether the flow is still followed.
        """
        return self.endedAt is None

    @property
    def total(self) -> int:
        """
        All sends on the flow.
        """
        return sum(self.counts.values())

    def sent(self, now: float) -> None:
        """
        Record the time of a send (classified later by L{classify}).
        """
        previous = self.since if self.lastSend is None else self.lastSend
        gap = now - previous
        if gap > self.largestGap:
            self.largestGap = gap
            self.largestGapEnd = now
        self.lastSend = now

    def classify(self, kind: SendKind, when: float) -> None:
        """
        Count a send of C{kind} made at C{when} and add it to the timeline.
        """
        self.counts[kind] += 1
        self.lastKind = kind
        runs = self.runs
        if runs and runs[-1][2] == kind and when - runs[-1][1] <= RUN_MERGE_GAP:
            runs[-1][1] = when
            runs[-1][3] += 1
        else:
            runs.append([when, when, str(kind), 1])
        horizon = when - HISTORY_SECONDS
        while runs and runs[0][1] < horizon:
            runs.popleft()

    def idleFor(self, now: float) -> float:
        """
        Seconds since the last send (or since the flow started).
        """
        end = now if self.endedAt is None else self.endedAt
        return max(0.0, end - (self.since if self.lastSend is None else self.lastSend))

    def longestIdle(self, now: float) -> float:
        """
        The longest time the flow went without a send: L{largestGap}, or
        the idle time since the last send (until C{now}, or until the flow
        ended) when that is longer. This is what a NAT sees.
        """
        return max(self.largestGap, self.idleFor(now))

    def snapshot(self, now: float) -> dict[str, Any]:
        """
        The flow as a plain dict (JSON-ready).
        """
        host, port = self.remote
        return {
            "id": self.id,
            "kind": self.kind,
            "line": self.line,
            "callId": self.callId,
            "remote": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            "active": self.active,
            "since": self.since,
            "endedAt": self.endedAt,
            "lastSend": self.lastSend,
            "lastKind": None if self.lastKind is None else str(self.lastKind),
            "sends": {str(kind): count for kind, count in self.counts.items()},
            "total": self.total,
            "largestGap": self.largestGap,
            "largestGapEnd": self.largestGapEnd,
            "idleFor": self.idleFor(now),
            "longestIdle": self.longestIdle(now),
            "timeline": [list(run) for run in self.runs],
        }


class _RtpFollower:
    """
    The send observer of one call's RTP session: classifies each packet as
    voice or keep-alive once the session's counter tells (the counter
    moves right after the observer is called).
    """

    def __init__(self, monitor: FlowMonitor, record: FlowRecord, session: Any) -> None:
        self.monitor = monitor
        self.record = record
        self.session = session
        self.pending: tuple[float, int] | None = None

    def __call__(self, addr: Address, nbytes: int) -> None:
        self.settle()
        now = self.monitor.clock.seconds()
        self.record.remote = addr
        self.record.sent(now)
        self.pending = (now, self.session.counters.keepAlivesSent)

    def settle(self) -> None:
        """
        Classify the last packet, now that the session's counter has moved
        (or not).
        """
        if self.pending is None:
            return
        when, before = self.pending
        self.pending = None
        keepAlive = self.session.counters.keepAlivesSent > before
        self.record.classify(SendKind.RTP_KEEPALIVE if keepAlive else SendKind.VOICE, when)

    def detach(self) -> None:
        self.settle()
        try:
            self.session.removeSendObserver(self)
        except ValueError:
            pass


class FlowMonitor:
    """
    Follows the sends on every flow of an engine (see the module
    docstring).

    @ivar engine: The L{VoipMediaEngine}.
    @ivar clock: The engine's clock.
    """

    log = Logger()

    def __init__(self, engine: Any) -> None:
        """
        Start following C{engine}: its SIP socket's sends, its events, and
        the calls already connected.
        """
        self.engine = engine
        self.clock = engine.clock
        self._flows: dict[str, FlowRecord] = {}
        self._ended: Deque[FlowRecord] = deque(maxlen=MAX_ENDED_FLOWS)
        self._rtp: dict[int, _RtpFollower] = {}
        self._sipByAddress: dict[Address, list[FlowRecord]] = {}
        self._optionsSeen: dict[int, int] = {}
        engine.protocol.addSendObserver(self._sipSent)
        engine.addObserver(self._event)
        for line in range(engine.lines):
            status = engine.getLineStatus(line)
            if str(status.state) in ("Connected", "Held"):
                self._follow(line, status.callId)
        self._closed = False

    def close(self) -> None:
        """
        Stop following the engine.
        """
        if self._closed:
            return
        self._closed = True
        self.engine.protocol.removeSendObserver(self._sipSent)
        self.engine.removeObserver(self._event)
        for line in list(self._rtp):
            self._rtp.pop(line).detach()

    # -- reading ------------------------------------------------------------

    def flows(self, includeEnded: bool = True) -> list[FlowRecord]:
        """
        The flows followed now, then (with C{includeEnded}) the ended ones
        kept, oldest first; every pending RTP send classified.
        """
        for follower in self._rtp.values():
            follower.settle()
        active = list(self._flows.values())
        return active + list(self._ended) if includeEnded else active

    def snapshot(self) -> dict[str, Any]:
        """
        Every flow as a plain dict, each with the engine's own keep-alive
        state of the flow under C{"keepAlive"} (None when it has none), and
        the engine's NAT session times.
        """
        now = self.clock.seconds()
        states: dict[str, dict[str, Any]] = {}
        for state in self.engine.getKeepAliveState():
            if state.get("kind") == "null":
                states[_nullId(state["host"], state["port"])] = state
            else:
                states[f"line{state.get('line')}-{state.get('kind')}"] = state
        flows = []
        for record in self.flows():
            snap = record.snapshot(now)
            snap["keepAlive"] = states.get(record.id) if record.active else None
            flows.append(snap)
        return {
            "now": now,
            "natSessionTimeMs": {
                "sip": self.engine.sipKeepAlive.natSessionTimeMs,
                "rtp": self.engine.rtpKeepAlive.natSessionTimeMs,
            },
            "flows": flows,
        }

    # -- following ------------------------------------------------------------

    def _event(self, event: EngineEvent) -> None:
        name = event.name
        if name in (EventName.SipOutgoingCallConnected, EventName.SipIncomingCallConnected):
            self._follow(event.line, event.callId)
        elif name in (EventName.SipCallComplete, EventName.SipCallFailed) and event.line is not None:
            self._unfollow(event.line)
        self.syncNullKeepAlives()

    def _follow(self, line: int, callId: str | None) -> None:
        self._unfollow(line)
        now = self.clock.seconds()
        remote = None
        for state in self.engine.sipKeepAlive.snapshot():
            if state.get("key") == line:
                remote = state.get("remote")
                self._optionsSeen[line] = state.get("optionsSent", 0)
        if remote is not None:
            host, _, port = remote.rpartition(":")
            address = normaliseAddress((host, int(port)))
            record = FlowRecord(f"line{line}-sip", "sip", line, address, now, callId)
            self._add(record)
            self._sipByAddress.setdefault(address, []).append(record)
        call = self.engine.getCall(line)
        session = getattr(getattr(call, "mediaHandler", None), "session", None)
        remoteRtp = None if session is None else session.remoteRtpAddress
        if remoteRtp is not None:
            record = FlowRecord(f"line{line}-rtp", "rtp", line, remoteRtp, now, callId)
            self._add(record)
            follower = _RtpFollower(self, record, session)
            session.addSendObserver(follower)
            self._rtp[line] = follower

    def _unfollow(self, line: int) -> None:
        follower = self._rtp.pop(line, None)
        if follower is not None:
            follower.detach()
        self._optionsSeen.pop(line, None)
        for kind in ("sip", "rtp"):
            record = self._flows.get(f"line{line}-{kind}")
            if record is not None:
                self._end(record)

    def syncNullKeepAlives(self) -> None:
        """
        Follow the NULL keep-alive destinations the engine has now.
        """
        wanted = {}
        for state in self.engine.nullKeepAlive.snapshot():
            address = state.get("address") or state["host"]
            wanted[_nullId(state["host"], state["port"])] = normaliseAddress((address, state["port"]))
        for flowId, record in list(self._flows.items()):
            if record.kind == "null" and (flowId not in wanted or wanted[flowId] != record.remote):
                self._end(record)
        now = self.clock.seconds()
        for flowId, address in wanted.items():
            if flowId not in self._flows:
                record = FlowRecord(flowId, "null", None, address, now)
                self._add(record)
                self._sipByAddress.setdefault(address, []).append(record)

    def _add(self, record: FlowRecord) -> None:
        self._flows[record.id] = record

    def _end(self, record: FlowRecord) -> None:
        if self._flows.get(record.id) is record:
            del self._flows[record.id]
        record.endedAt = self.clock.seconds()
        if record.kind != "rtp":
            address = normaliseAddress(record.remote)
            records = self._sipByAddress.get(address, [])
            if record in records:
                records.remove(record)
            if not records:
                self._sipByAddress.pop(address, None)
        self._ended.append(record)

    def _sipSent(self, addr: Address, nbytes: int) -> None:
        records = self._sipByAddress.get(normaliseAddress(addr))
        if not records:
            if self.engine.nullKeepAlive.snapshot() and nbytes <= _CRLF_MAX_BYTES:
                # A NULL destination just resolved or was just enabled.
                self.syncNullKeepAlives()
                records = self._sipByAddress.get(normaliseAddress(addr))
            if not records:
                return
        now = self.clock.seconds()
        if nbytes <= _CRLF_MAX_BYTES:
            kind = SendKind.CRLF_KEEPALIVE
        elif self._optionsKeepAliveSent(records):
            kind = SendKind.OPTIONS_KEEPALIVE
        else:
            kind = SendKind.SIGNALLING
        for record in records:
            record.sent(now)
            record.classify(kind, now)

    def _optionsKeepAliveSent(self, records: Iterable[FlowRecord]) -> bool:
        """
        Whether the SIP keep-alive service sent an OPTIONS on one of these
        calls' flows since the last look (its counter moves right before it
        sends).
        """
        lines = {record.line for record in records if record.kind == "sip"}
        if not lines:
            return False
        moved = False
        for state in self.engine.sipKeepAlive.snapshot():
            line = state.get("key")
            if line in lines:
                count = state.get("optionsSent", 0)
                if count > self._optionsSeen.get(line, 0):
                    moved = True
                self._optionsSeen[line] = count
        return moved


def _nullId(host: str, port: int) -> str:
    return f"null-{host}:{port}"
