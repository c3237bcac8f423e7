"""
The engine's keep-alive through a real Linux NAT (the NAT lab of
L{tests.natlab}): with keep-alive on, a call's SIP and RTP flows stay
reachable from the far end through 10 s of silence; with it off, the same
call in an identical lab loses the far end's BYE, or its media.

The engine runs in this process "on the LAN host" (its sockets are made in
the lab's LAN namespace through C{lab.reactorIn("lan")}); the far ends run
on the WAN host: SIPp (spawned in the WAN namespace) for signalling, and a
UDP socket of this process made in the WAN namespace for the far end's RTP.
tshark captures on the router's WAN side, where the NATed traffic is.

Each test runs its "on" and "off" variants at the same time in two labs
(same 3 s binding timeout, outbound refresh, ports preserved), which keeps
the file near 45 s. The figures measured (largest idle gap of each flow on
the wire, packet counts, router drop counters) are logged, and printed,
for C{docs/nat-lab-results.rst}.

Needs root, ip, nft, sipp and tshark: the tests skip without them (fail
under C{LMEVOIP_REQUIRE_PEERS=1}).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import reactor as globalReactor
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from lmevoip.engine import EngineConfig, LineState, VoipMediaEngine
from lmevoip.events import EngineEvent, EventName
from lmevoip.keepalive.interval import maximumInterval
from lmevoip.returns import TelephonyReturnValue
from lmevoip.rtp.packet import RtpPacket
from lmevoip.testing import RecordingEngineObserver
from tests.natlab import NatLab, UdpRecorder, startNatLab
from tests.peers import PeerError
from tests.peers.sipp import WATCHDOG_SLACK, Sipp, SippResult, loggedMessages
from tests.peers.tshark import SipMessageRecord, largestGap, packetTimes, sipMessages
from tests.support import requireTool
from tests.test_engine_sipp import ToneThenSilence

R = TelephonyReturnValue

log = Logger(namespace="tests.test_natlab_keepalive")

#: The lab's UDP binding timeout (s), and the NAT session time the engine
#: is told to survive: keep-alive intervals of 2.07-2.3 s.
NAT_TIMEOUT = 3
NAT_SESSION_TIME_MS = NAT_TIMEOUT * 1000

#: How long the far end stays silent before it speaks (s).
SILENCE = 10.0

#: Ports. Each lab has its own namespaces, so they are fixed.
ENGINE_SIP_PORT = 5060
ENGINE_RTP_LOW, ENGINE_RTP_HIGH = 40000, 40099
FAR_SIP_PORT = 5060
FAR_SIPP_MEDIA_PORT = 6000
FAR_RTP_PORT = 7078

#: The engine's burst of tone at the start of the RTP test (20 ms frames):
#: it opens the RTP binding in both variants, then the gate closes.
TONE_FRAMES = 25

#: RTP packets the far end sends once its silence is over (20 ms apart).
FAR_PACKETS = 50


def sleep(seconds: float) -> Any:
    return deferLater(globalReactor, max(0.0, seconds), lambda: None)


def report(title: str, figures: dict[str, Any]) -> None:
    """
    Log the figures of one run (trial's C{test.log}) and print them (pytest
    shows them with C{-rP} or C{-s}).
    """
    text = f"{title}: " + ", ".join(f"{name}={value}" for name, value in figures.items())
    log.info("{text}", text=text)
    print(text)


@inlineCallbacks
def bothVariants(on: Deferred[Any], off: Deferred[Any]) -> Any:
    """
    Wait until the "on" and "off" variants, run side by side, have both
    finished, even when one fails early (so that nothing of the other is
    still running when the test's cleanup starts).

    @return: a Deferred firing with C{[on result, off result]}, or failing
        with the first variant's failure.
    """
    results = yield DeferredList([on, off], consumeErrors=True)
    for succeeded, value in results:
        if not succeeded:
            value.raiseException()
    return [value for _, value in results]


class LabSipp(Sipp):
    """
    SIPp on the lab's WAN host: the harness's L{Sipp} (argv, trace files,
    result), spawned with C{lab.spawn("wan", ...)} and waited for through
    the WAN namespace's socket table, since L{Sipp.start} spawns in this
    namespace and looks for the port here.
    """

    def __init__(self, testCase: TestCase, lab: NatLab, scenario: str, **kwargs: Any) -> None:
        self.lab = lab
        super().__init__(testCase, scenario, host=lab.wanAddress, localPort=FAR_SIP_PORT,
                         mediaPort=FAR_SIPP_MEDIA_PORT, **kwargs)

    @inlineCallbacks
    def start(self, listenTimeout: float = 10.0) -> Any:
        """
        Spawn SIPp on the WAN host and wait until it listens there.

        @return: a Deferred firing with this L{LabSipp}; it fails with
            SIPp's output if SIPp does not bind its port in time.
        """
        process = self.lab.spawn("wan", self.argv, name=f"wan:sipp[{self.scenario.name}]", cwd=self.directory)
        self.process = process
        if self.timeout is not None:
            self._watchdog = self.reactor.callLater(self.timeout + WATCHDOG_SLACK, self._expired)
        process.whenEnded().addCallback(self._ended)
        try:
            yield self.lab.waitForUdpPort("wan", self.localPort, pid=process.pid, timeout=listenTimeout)
        except Exception as e:
            raise PeerError(f"SIPp did not listen on {self.host}:{self.localPort}: {e}\n"
                            f"{process.outputTail()}") from e
        return self


def publicKeys(lab: NatLab) -> dict[str, str]:
    """
    The SIPp keys for the received/rport of its responses: the engine's
    public address, which (ports preserved) is the router's WAN address and
    the engine's own SIP port. The tests check on the wire that it is.
    """
    return {"public_ip": lab.routerWanAddress, "public_port": str(ENGINE_SIP_PORT)}


@inlineCallbacks
def callCounters(lab: NatLab, before: dict[str, int]) -> Any:
    """
    The router's drop counters since C{before} (the self-check drops a few
    datagrams on purpose before the test starts).
    """
    now = yield lab.counters()
    return {name: count - before.get(name, 0) for name, count in now.items()}


def flowFilter(source: tuple[str, int], destination: tuple[str, int]) -> str:
    """
    A display filter for the UDP datagrams of one direction of a flow.
    """
    return (f"ip.src == {source[0]} && udp.srcport == {source[1]} && "
            f"ip.dst == {destination[0]} && udp.dstport == {destination[1]}")


def between(times: list[float], start: float, end: float) -> list[float]:
    return [t for t in times if start < t < end]


def first(messages: list[SipMessageRecord], method: str, src: str, after: float = 0.0) -> SipMessageRecord:
    """
    The first request C{method} sent from C{src} after C{after}.
    """
    for message in messages:
        if message.isRequest and message.method == method and message.src == src and message.time > after:
            return message
    raise AssertionError(f"no {method} from {src} after {after} in the capture: "
                         + "; ".join(f"{m.src}>{m.dst} {m.firstLine}" for m in messages))


def header(message: str, name: str) -> str:
    """
    The value of header C{name} in a message of SIPp's log ('' if absent).
    """
    prefix = name.lower() + ":"
    for line in message.splitlines():
        if line.lower().startswith(prefix):
            return line.split(":", 1)[1].strip()
    return ""


@dataclass
class CallRun:
    """
    What one variant of a test saw.
    """

    keepAlive: bool
    lab: NatLab
    engine: VoipMediaEngine
    events: RecordingEngineObserver
    sipp: SippResult
    counters: dict[str, int]
    messages: list[SipMessageRecord]
    learned: EngineEvent | None = None
    lineAfter: LineState | None = None
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def engineSip(self) -> str:
        return f"{self.lab.routerWanAddress}:{ENGINE_SIP_PORT}"

    @property
    def farSip(self) -> str:
        return f"{self.lab.wanAddress}:{FAR_SIP_PORT}"


class NatKeepAliveCase(TestCase):
    """
    Labs, engines and far ends for the tests below.
    """

    timeout = 100

    def setUp(self) -> None:
        for tool in ("sipp", "tshark"):
            requireTool(tool)

    def startEngine(self, lab: NatLab, **kwargs: Any) -> tuple[VoipMediaEngine, RecordingEngineObserver]:
        """
        An engine on the lab's LAN host, its noise gate enabled (its own
        side silent), stopped by the test's cleanup before the lab goes.
        """
        config = EngineConfig(sipHost=lab.lanAddress, sipPort=ENGINE_SIP_PORT, rtpPortLow=ENGINE_RTP_LOW,
                              rtpPortHigh=ENGINE_RTP_HIGH, noiseGateEnabled=True, **kwargs)
        engine = VoipMediaEngine(config, reactor=lab.reactorIn("lan"))
        events = RecordingEngineObserver()
        engine.addObserver(events)
        engine.startService()
        self.addCleanup(engine.stopService)
        self.assertEqual(engine.sipAddress, (lab.lanAddress, ENGINE_SIP_PORT))
        return engine, events


class SipKeepAliveThroughNatTests(NatKeepAliveCase):
    """
    The call's signalling flow: the far end's BYE after 10 s of silence.
    """

    @inlineCallbacks
    def holdThenFarEndHangsUp(self, keepAlive: bool) -> Any:
        """
        The engine calls SIPp on the WAN host and puts it on hold; SIPp
        stays silent for L{SILENCE} seconds and hangs up
        (C{natlab_uas_hold_bye.xml}). SIP keep-alive on or off; RTP
        keep-alive off and the engine's audio silent and gated, so only
        the signalling flow matters.
        """
        lab = yield startNatLab(self, timeout=NAT_TIMEOUT)
        engine, events = self.startEngine(lab)
        self.assertIs(engine.enableKeepAliveTransmissions(keepAlive, False, NAT_SESSION_TIME_MS), R.SipSuccess)
        peer = LabSipp(self, lab, "natlab_uas_hold_bye", keys=publicKeys(lab),
                       variables={"silencems": int(SILENCE * 1000)}, timeout=60)
        yield peer.start()
        capture = yield lab.capture("router-wan").start()
        before = yield lab.counters()

        discovered = engine.whenEvent(EventName.SipPublicAddressDiscovered, timeout=10)
        self.assertIs(engine.makeCall(0, "sipp", lab.wanAddress, FAR_SIP_PORT), R.SipSuccess)
        yield engine.whenLineState(0, LineState.CONNECTED, timeout=10)
        learned = yield discovered
        self.assertIs(engine.holdCall(0), R.SipSuccess)
        yield engine.whenEvent(EventName.SipCallHeld, line=0, timeout=10)
        result = yield peer.finished()
        lineAfter = engine.getLineStatus(0).state
        pcap = yield capture.stop()
        counters = yield callCounters(lab, before)
        messages = yield sipMessages(pcap)
        run = CallRun(keepAlive, lab, engine, events, result, counters, messages, learned, lineAfter)

        # The silence on the wire: from the engine's ACK of the hold to
        # SIPp's first BYE, what did the engine send on the call's flow?
        bye = first(messages, "BYE", run.farSip)
        holdAck = [m for m in messages if m.src == run.engineSip and m.firstLine.startswith("ACK")
                   and m.time < bye.time][-1]
        outbound = yield packetTimes(pcap, flowFilter((lab.routerWanAddress, ENGINE_SIP_PORT),
                                                      (lab.wanAddress, FAR_SIP_PORT)))
        quiet = between(outbound, holdAck.time, bye.time)
        run.figures = {
            "silence_s": round(bye.time - holdAck.time, 3),
            "engine_datagrams_in_silence": len(quiet),
            "largest_sip_gap_s": round(largestGap(quiet, holdAck.time, bye.time), 3),
            "interval_ceiling_s": round(maximumInterval(NAT_SESSION_TIME_MS), 3),
            "bye_sent_by_sipp": sum(1 for m in messages if m.src == run.farSip and m.method == "BYE"
                                    and m.isRequest),
            "sipp_exit": result.exitCode,
            "gate_dropped": counters["gate_dropped"],
            "line_after": str(lineAfter),
        }
        report(f"SIP keep-alive {'on' if keepAlive else 'off'}", run.figures)
        return run

    @inlineCallbacks
    def test_farEndByeAfterSilence(self):
        """
        With SIP keep-alive on (NAT session time 3,000 ms = the lab's
        timeout), SIPp's BYE 10 s into the silence reaches the engine: the
        call ends cleanly on both sides (SIPp exits 0, the engine reports
        SipCallComplete, remote-hangup) and the signalling flow was never
        idle for 3 s on the router's WAN side. With it off, the engine sends
        nothing for the 10 s, the binding expires, the NAT drops SIPp's BYE
        and every retransmission, SIPp gives up (exit 1) and the engine
        never hears of it (its line is still held).
        """
        on, off = yield bothVariants(self.holdThenFarEndHangsUp(True), self.holdThenFarEndHangsUp(False))

        # Keep-alive on: the BYE got through, once.
        self.assertEqual(on.sipp.exitCode, 0, on.sipp.describe())
        self.assertEqual(on.sipp.counts.named("BYE")[0]["Retrans"], 0, on.sipp.describe())
        [complete] = on.events.named(EventName.SipCallComplete)
        self.assertEqual((complete.line, complete.reason), (0, "remote-hangup"))
        self.assertEqual(on.lineAfter, LineState.IDLE)
        self.assertGreaterEqual(on.figures["engine_datagrams_in_silence"], math.floor(SILENCE / NAT_TIMEOUT))
        self.assertLess(on.figures["largest_sip_gap_s"], NAT_TIMEOUT)
        self.assertEqual(on.counters["gate_dropped"], 0)
        self.assertEqual(on.events.named(EventName.SipKeepAliveFailure), [])

        # Keep-alive off: the BYE and its retransmissions died in the NAT.
        self.assertEqual(off.sipp.exitCode, 1, off.sipp.describe())
        retransmitted = off.sipp.counts.named("BYE")[0]["Retrans"]
        self.assertGreaterEqual(retransmitted, 2, off.sipp.describe())
        self.assertEqual(off.figures["bye_sent_by_sipp"], 1 + retransmitted)
        self.assertGreaterEqual(off.counters["gate_dropped"], 1 + retransmitted)
        self.assertEqual(off.figures["engine_datagrams_in_silence"], 0)
        self.assertGreaterEqual(off.figures["largest_sip_gap_s"], SILENCE)
        self.assertEqual(off.events.named(EventName.SipCallComplete), [])
        self.assertEqual(off.lineAfter, LineState.HELD)
        self.assertEqual([s for s in off.engine.getKeepAliveState() if s["kind"] == "sip" and s["sendCount"]], [])

        # rport (RFC 3581), in both: the engine learnt its public address
        # from the responses' received/rport, which told the truth (its
        # INVITE left the router from there), put it in the Contact of its
        # next request, the hold re-INVITE, and SIPp's BYE was addressed
        # to it.
        for run in (on, off):
            public = {"host": run.lab.routerWanAddress, "port": ENGINE_SIP_PORT}
            self.assertEqual(dict(run.learned.details), public)
            self.assertEqual(run.engine.publicAddress, (run.lab.routerWanAddress, ENGINE_SIP_PORT))
            invite = first(run.messages, "INVITE", run.engineSip)
            self.assertEqual(invite.dst, run.farSip)
            initial, reinvite = run.sipp.receivedRequests("INVITE")[:2]
            self.assertIn(f"@{run.lab.lanAddress}:{ENGINE_SIP_PORT}>", header(initial, "Contact"))
            self.assertIn(f"@{run.lab.routerWanAddress}:{ENGINE_SIP_PORT}>", header(reinvite, "Contact"))
            [bye] = [m for m in loggedMessages(run.sipp.messages, "sent") if m.startswith("BYE ")][:1]
            self.assertTrue(bye.startswith(f"BYE sip:lmevoip@{run.lab.routerWanAddress}:{ENGINE_SIP_PORT} "),
                            bye.splitlines()[0])


class RtpKeepAliveThroughNatTests(NatKeepAliveCase):
    """
    The call's media flow: the far end's RTP after 10 s of silence.
    """

    @inlineCallbacks
    def sendRtp(self, far: UdpRecorder, target: tuple[str, int], count: int) -> Any:
        """
        Send C{count} PCMU packets (20 ms of silence each, 20 ms apart)
        from the far end's RTP socket to C{target}.

        @return: a Deferred firing with the number of datagrams the kernel
            accepted.
        """
        sequence = itertools.count()
        accepted = []

        def one() -> None:
            n = next(sequence)
            if n >= count:
                loop.stop()
                return
            packet = RtpPacket(payloadType=0, sequenceNumber=1000 + n, timestamp=8000 + 160 * n,
                               ssrc=0x4E41544C, marker=n == 0, payload=b"\xff" * 160)
            if far.send(packet.serialize(), target) is None:
                accepted.append(n)

        loop = LoopingCall(one)
        loop.clock = globalReactor
        yield loop.start(0.02)
        return len(accepted)

    @inlineCallbacks
    def farEndSpeaksAfterSilence(self, keepAlive: bool) -> Any:
        """
        The engine calls SIPp (C{natlab_uas_media.xml}), whose SDP names a
        UDP socket of this test on the WAN host as the far end's RTP
        address. The engine sends half a second of tone (which opens the
        binding) and then silence its gate suppresses. L{SILENCE} seconds
        after that the far end sends L{FAR_PACKETS} RTP packets to where
        the engine's RTP came from (symmetric RTP). SIP keep-alive on in
        both variants, so the call survives; RTP keep-alive on or off.
        """
        lab = yield startNatLab(self, timeout=NAT_TIMEOUT)
        engine, events = self.startEngine(lab, sourceFactory=lambda line: ToneThenSilence(TONE_FRAMES))
        self.assertIs(engine.enableKeepAliveTransmissions(True, keepAlive, NAT_SESSION_TIME_MS), R.SipSuccess)
        far, farRtcp = UdpRecorder(globalReactor), UdpRecorder(globalReactor)
        for recorder, port in ((far, FAR_RTP_PORT), (farRtcp, FAR_RTP_PORT + 1)):
            listening = lab.listenUDP("wan", port, recorder, lab.wanAddress)
            self.addCleanup(listening.stopListening)
        peer = LabSipp(self, lab, "natlab_uas_media", timeout=60,
                       keys={**publicKeys(lab), "rtp_ip": lab.wanAddress, "rtp_port": str(FAR_RTP_PORT)})
        yield peer.start()
        capture = yield lab.capture("router-wan").start()
        before = yield lab.counters()

        self.assertIs(engine.makeCall(0, "sipp", lab.wanAddress, FAR_SIP_PORT), R.SipSuccess)
        yield engine.whenLineState(0, LineState.CONNECTED, timeout=10)
        connectedAt = globalReactor.seconds()
        session = engine.getCall(0).mediaHandler.session
        for _ in range(250):
            if far.received:
                break
            yield sleep(0.02)
        self.assertTrue(far.received, "the engine's tone never reached the far end")
        engineRtp = far.received[0][1]
        toneEnd = connectedAt + TONE_FRAMES * 0.02
        yield sleep(toneEnd + SILENCE + 0.5 - globalReactor.seconds())
        startedAt = globalReactor.seconds()
        sent = yield self.sendRtp(far, engineRtp, FAR_PACKETS)
        yield sleep(1.0)
        counters = session.counters.asDict()
        lineAfter = engine.getLineStatus(0).state
        [rtpState] = [s for s in engine.getKeepAliveState() if s["kind"] == "rtp"]
        self.assertIs(engine.terminateCall(0), R.SipSuccess)
        yield engine.whenEvent(EventName.SipCallComplete, line=0, timeout=10)
        result = yield peer.finished()
        pcap = yield capture.stop()
        routerCounters = yield callCounters(lab, before)
        messages = yield sipMessages(pcap)
        run = CallRun(keepAlive, lab, engine, events, result, routerCounters, messages, lineAfter=lineAfter)

        # The engine's two flows on the router's WAN side, up to its BYE.
        bye = first(messages, "BYE", run.engineSip)
        ack = first(messages, "ACK", run.engineSip)
        rtpOut = yield packetTimes(pcap, flowFilter(engineRtp, (lab.wanAddress, FAR_RTP_PORT)))
        sipOut = yield packetTimes(pcap, flowFilter((lab.routerWanAddress, ENGINE_SIP_PORT),
                                                    (lab.wanAddress, FAR_SIP_PORT)))
        rtpOut = [t for t in rtpOut if t < bye.time]
        run.figures = {
            "engine_rtp_public": f"{engineRtp[0]}:{engineRtp[1]}",
            "engine_rtp_local_port": session.ports.rtpPort,
            "far_rtp_sent": sent,
            "far_rtp_started_after_tone_s": round(startedAt - toneEnd, 2),
            "engine_rtp_received": counters["packetsReceived"],
            "engine_rtp_unknown_source": counters["packetsFromUnknownSource"],
            "rtp_keepalive_frames": rtpState["framesSent"],
            "largest_rtp_gap_s": round(largestGap(rtpOut[1:], rtpOut[0], bye.time), 3),
            "largest_sip_gap_s": round(largestGap(between(sipOut, ack.time, bye.time), ack.time, bye.time), 3),
            "interval_ceiling_s": round(maximumInterval(NAT_SESSION_TIME_MS), 3),
            "gate_dropped": routerCounters["gate_dropped"],
            "sipp_exit": result.exitCode,
        }
        report(f"RTP keep-alive {'on' if keepAlive else 'off'}", run.figures)
        return run

    @inlineCallbacks
    def test_farEndMediaAfterSilence(self):
        """
        With RTP keep-alive on (3,000 ms), the far end's RTP, sent after 10
        s in which neither side sent media (the engine's gate closed), gets
        through the NAT: the engine's session counts every packet, and
        neither of the call's flows (SIP and RTP) was idle for 3 s on the
        router's WAN side. With it off, the same packets are all dropped by
        the NAT (0 received) while the call itself lives on (SIP keep-alive
        on in both) and ends cleanly.
        """
        on, off = yield bothVariants(self.farEndSpeaksAfterSilence(True), self.farEndSpeaksAfterSilence(False))

        for run in (on, off):
            self.assertEqual(run.figures["far_rtp_sent"], FAR_PACKETS)
            self.assertEqual(run.lineAfter, LineState.CONNECTED)
            self.assertEqual(run.sipp.exitCode, 0, run.sipp.describe())
            self.assertEqual(run.figures["engine_rtp_public"],
                             f"{run.lab.routerWanAddress}:{run.figures['engine_rtp_local_port']}")
            self.assertEqual(run.figures["engine_rtp_unknown_source"], 0)
            # SIP keep-alive on in both: the signalling flow never idled.
            self.assertLess(run.figures["largest_sip_gap_s"], NAT_TIMEOUT)

        # Keep-alive on: every packet arrived; the RTP flow never idled.
        self.assertEqual(on.figures["engine_rtp_received"], FAR_PACKETS)
        self.assertGreaterEqual(on.figures["rtp_keepalive_frames"], math.floor(SILENCE / NAT_TIMEOUT))
        self.assertLess(on.figures["largest_rtp_gap_s"], NAT_TIMEOUT)
        self.assertEqual(on.counters["gate_dropped"], 0)

        # Keep-alive off: the RTP flow idled past the timeout and the NAT
        # dropped every packet.
        self.assertEqual(off.figures["engine_rtp_received"], 0)
        self.assertEqual(off.figures["rtp_keepalive_frames"], 0)
        self.assertGreaterEqual(off.figures["largest_rtp_gap_s"], SILENCE)
        self.assertGreaterEqual(off.counters["gate_dropped"], FAR_PACKETS)
