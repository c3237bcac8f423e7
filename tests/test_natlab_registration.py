"""
Registration through a real Linux NAT (the NAT lab of L{tests.natlab}): a
call addressed to a user the engine registered through the NAT reaches the
engine only while something keeps the NAT binding of its SIP socket open.

The engine runs in this process "on the LAN host" (C{lab.reactorIn("lan")})
and registers C{alice} (digest) with Kamailio (C{tests/kamailio/
kamailio.cfg}) on the WAN host, then idles for L{IDLE} seconds; then SIPp on
the WAN host calls alice through Kamailio (C{reg_uac_call.xml}). Three
variants, each in a lab of its own, side by side:

  - C{null}: a long registration interval (300 s: no refresh in the test)
    and C{sendSipKeepAlive} CRLFs to Kamailio every L{NULL_PERIOD} s: the
    call rings the engine's line, which answers it;
  - C{none}: the same registration, no keep-alive at all: the binding
    expires 3 s after the last REGISTER, the NAT drops Kamailio's INVITE
    and its retransmissions, Kamailio gives up (408) and the engine never
    hears of the call;
  - C{refresh}: no NULL keep-alive, but a registration interval of
    L{SHORT_INTERVAL} s, below the binding timeout: the refreshes keep the
    binding open and the call rings the engine again.

Each also checks rport (RFC 3581) end to end: the REGISTERs leave the
router from its WAN address, and Kamailio's location (C{kamcmd ul.dump})
holds that public address for alice's contact; and, for C{null}, that
the CRLFs leave from the very public port the REGISTERs left from and
reach Kamailio from there. The figures measured are logged and printed
for C{docs/nat-lab-results.rst}.

Needs root, ip, nft, kamailio, kamcmd, sipp and tshark: the test skips
without them (fails under C{LMEVOIP_REQUIRE_PEERS=1}).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet import reactor as globalReactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from lmevoip.engine import LineState, VoipMediaEngine
from lmevoip.events import EventName
from lmevoip.returns import TelephonyReturnValue
from lmevoip.testing import RecordingEngineObserver
from tests.natlab import NatLab, startNatLab
from tests.peers.kamailio import OUTPUT_LIMIT, TEST_USERS, Kamailio, KamailioError, UsrlocContact
from tests.peers.sipp import SippResult, loggedMessages
from tests.peers.tshark import SipMessageRecord, largestGap, packetTimes, sipMessages
from tests.support import requireTool
from tests.test_engine_kamailio import Answerer
from tests.test_natlab_keepalive import (
    ENGINE_SIP_PORT,
    NAT_TIMEOUT,
    LabSipp,
    NatKeepAliveCase,
    between,
    bothVariants,
    callCounters,
    flowFilter,
    header,
    report,
    sleep,
)

R = TelephonyReturnValue
E = EventName

#: Kamailio's SIP port on the WAN host (SIPp, the caller, has 5060 there).
REGISTRAR_PORT = 5090

#: The registered user (a fixed user of the test configuration).
USER = "alice"

#: How long the engine stays silent between registering and the call (s).
IDLE = 10.0

#: The NULL keep-alive period of the C{null} variant (s).
NULL_PERIOD = 1.0

#: The long registration interval of C{null} and C{none} (s): no refresh
#: happens during the test, so only the CRLFs (or nothing) keep the
#: binding open.
LONG_INTERVAL = 300

#: The registration interval of C{refresh} (s), below the lab's 3 s
#: binding timeout, and the expiry it asks for (s): the refresh is due
#: after min(2, 5 - 2.5) = 2 s. The test configuration's min_expires is 1
#: (C{KAM_MIN_EXPIRES}), so Kamailio grants it; a stock Kamailio (60) would
#: answer 423.
SHORT_INTERVAL = 2
SHORT_EXPIRES = 5

#: The bound on each REGISTER transaction (ms).
REGISTER_TIMEOUT_MS = 3000

#: SIPp's global timeout (s): the unreachable call ends with Kamailio's
#: 408 after its fr_timer (10 s).
CALL_TIMEOUT = 40

#: A NULL keep-alive on the wire: a UDP datagram of two octets.
CRLF_FILTER = "udp.length == 10"


@dataclass(frozen=True)
class Variant:
    """
    What keeps the binding open in one run.

    @ivar name: C{null}, C{none} or C{refresh}.
    @ivar nullKeepAlive: whether the engine sends CRLFs to Kamailio.
    @ivar interval: the registration interval (s).
    @ivar expires: the expiry asked for (0: interval + 5).
    """

    name: str
    nullKeepAlive: bool
    interval: int
    expires: int


NULL = Variant("null", True, LONG_INTERVAL, 0)
NONE = Variant("none", False, LONG_INTERVAL, 0)
REFRESH = Variant("refresh", False, SHORT_INTERVAL, SHORT_EXPIRES)


class LabKamailio(Kamailio):
    """
    Kamailio on the lab's WAN host: the harness's L{Kamailio}
    (configuration, argv, C{kamcmd} over its Unix control socket, log
    parsing) spawned with C{lab.spawn("wan", ...)} and waited for through
    the WAN namespace's socket table, since L{Kamailio.start} spawns in
    this namespace and looks for the port here. C{kamcmd} runs in this
    namespace: a Unix socket is reached by its path, whatever the network
    namespace.
    """

    def __init__(self, testCase: TestCase, lab: NatLab, **kwargs: Any) -> None:
        self.lab = lab
        super().__init__(testCase, port=REGISTRAR_PORT, host=lab.wanAddress, **kwargs)

    @inlineCallbacks
    def start(self, timeout: float = 15.0) -> Any:
        """
        Spawn Kamailio on the WAN host and wait until it listens there and
        its control socket answers.

        @return: a Deferred firing with this L{LabKamailio}; it fails with
            L{KamailioError} (carrying Kamailio's output) otherwise.
        """
        process = self.lab.spawn("wan", self.argv, name="wan:kamailio", cwd=self.directory,
                                 outputLimit=OUTPUT_LIMIT)
        self.process = process
        try:
            yield self.lab.waitForUdpPort("wan", self.port, pid=process.pid, timeout=timeout)
            yield self.waitForControl(process, timeout)
        except Exception as e:
            raise KamailioError(f"kamailio did not start on the WAN host: {e}\n"
                                f"{process.outputTail(4000)}") from e
        return self


@dataclass
class RegistrationRun:
    """
    What one variant saw.
    """

    variant: Variant
    lab: NatLab
    engine: VoipMediaEngine
    events: RecordingEngineObserver
    answerer: Answerer
    kamailio: LabKamailio
    registered: Any
    contacts: list[UsrlocContact]
    sipp: SippResult
    counters: dict[str, int]
    messages: list[SipMessageRecord]
    lineAfter: LineState
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def public(self) -> str:
        """The engine's SIP socket as the WAN sees it (ports preserved)."""
        return f"{self.lab.routerWanAddress}:{ENGINE_SIP_PORT}"

    @property
    def registrar(self) -> str:
        return f"{self.lab.wanAddress}:{REGISTRAR_PORT}"

    def responses(self) -> list[str]:
        """The responses SIPp received, whole, in order."""
        return [m for m in loggedMessages(self.sipp.messages, "received") if m.startswith("SIP/2.0 ")]


class RegistrationThroughNatTests(NatKeepAliveCase):
    """
    A call to a user registered through the NAT, after 10 s of idling.
    """

    timeout = 120

    def setUp(self) -> None:
        super().setUp()
        for tool in ("kamailio", "kamcmd"):
            requireTool(tool)

    @inlineCallbacks
    def registerIdleThenCall(self, variant: Variant) -> Any:
        """
        Build a lab, start Kamailio on its WAN host and the engine on its
        LAN host, register L{USER} (NAT auto-detection on), start the NULL
        keep-alive if the variant has it, stay silent for L{IDLE} seconds,
        read Kamailio's location table, then have SIPp call the user
        through Kamailio; the engine answers whatever rings.
        """
        lab = yield startNatLab(self, timeout=NAT_TIMEOUT)
        # Debug level 3 makes Kamailio log the CRLFs it receives.
        kamailio = yield LabKamailio(self, lab, debug=3 if variant.nullKeepAlive else None).start()
        engine, events = self.startEngine(lab)
        answerer = Answerer(engine)
        engine.addObserver(answerer)
        capture = yield lab.capture("router-wan").start()
        before = yield lab.counters()

        self.assertIs(engine.setSipAuthentication(USER, TEST_USERS[USER]), R.SipSuccess)
        registering = engine.whenEvent(E.SipRegisterSuccess, timeout=10)
        self.assertIs(engine.enableSipRegisterServer(
            [USER], False, False, lab.wanAddress, REGISTRAR_PORT, variant.interval, variant.expires,
            REGISTER_TIMEOUT_MS, True), R.SipSuccess)
        registered = yield registering
        registeredAt = globalReactor.seconds()
        if variant.nullKeepAlive:
            self.assertIs(engine.sendSipKeepAlive(lab.wanAddress, REGISTRAR_PORT, True, NULL_PERIOD),
                          R.SipSuccess)
        yield sleep(registeredAt + IDLE - globalReactor.seconds())

        contacts = yield kamailio.contacts(USER)
        caller = LabSipp(self, lab, "reg_uac_call", remote=kamailio.address, service=USER,
                         timeout=CALL_TIMEOUT)
        result = yield caller.run()
        # Let the engine hear the end of an answered call.
        if answerer.rang and not events.named(E.SipCallComplete):
            yield engine.whenEvent(E.SipCallComplete, timeout=10)
        lineAfter = engine.getLineStatus(0).state
        states = engine.getRegistrationState()
        if variant.nullKeepAlive:
            self.assertIs(engine.sendSipKeepAlive(lab.wanAddress, REGISTRAR_PORT, False, NULL_PERIOD),
                          R.SipSuccess)
        pcap = yield capture.stop()
        counters = yield callCounters(lab, before)
        messages = yield sipMessages(pcap)
        run = RegistrationRun(variant, lab, engine, events, answerer, kamailio, registered, contacts, result,
                              counters, messages, lineAfter)

        # The idle time on the wire: from the registration's success to
        # Kamailio's first INVITE to the engine's public address, what did
        # the engine send towards Kamailio?
        invites = [m for m in messages if m.isRequest and m.method == "INVITE" and m.src == run.registrar]
        self.assertTrue(invites, f"{variant.name}: Kamailio never relayed the INVITE")
        inviteAt = invites[0].time
        upstream = flowFilter((lab.routerWanAddress, ENGINE_SIP_PORT), (lab.wanAddress, REGISTRAR_PORT))
        outbound = yield packetTimes(pcap, upstream)
        crlfs = yield packetTimes(pcap, f"{upstream} && {CRLF_FILTER}")
        leaving = yield packetTimes(pcap, f"ip.src == {lab.routerWanAddress} && {CRLF_FILTER}")
        registers = [m for m in messages if m.isRequest and m.method == "REGISTER"]
        quiet = between(outbound, registeredAt, inviteAt)
        [state] = states
        run.figures = {
            "granted_expires_s": registered.details["expires"],
            "refresh_in_s": registered.details["refreshIn"],
            "ul_contact": contacts[0].address if contacts else None,
            "ul_received": contacts[0].received if contacts else None,
            "ul_expires_left_s": contacts[0].expires if contacts else None,
            "register_sources": sorted({m.src for m in registers}),
            "kamailio_saw_registers_from": sorted({f"{h}:{p}" for h, p in
                                                  (line.source for line in kamailio.registers(USER))}),
            "idle_s": round(inviteAt - registeredAt, 3),
            "engine_datagrams_in_idle": len(quiet),
            "registers_in_idle": len(between([m.time for m in registers], registeredAt, inviteAt)),
            "crlfs_in_idle": len(between(crlfs, registeredAt, inviteAt)),
            "crlfs_on_register_flow": len(crlfs),
            "crlfs_leaving_nat": len(leaving),
            "kamailio_keepalives_logged": len(kamailio.keepAlives()),
            "largest_gap_s": round(largestGap(quiet, registeredAt, inviteAt), 3),
            "invites_to_engine": len(invites),
            "kamailio_routed": len(kamailio.routed("INVITE")),
            "rang": len(answerer.rang),
            "sipp_statuses": sorted({response.split(" ")[1] for response in run.responses()}),
            "answer_contact": next((header(response, "Contact") for response in run.responses()
                                    if response.startswith("SIP/2.0 200 ")
                                    and header(response, "CSeq").endswith("INVITE")), None),
            "sipp_exit": result.exitCode,
            "gate_dropped": counters["gate_dropped"],
            "line_after": str(lineAfter),
            "registration_state": state["state"],
        }
        report(f"Registration through the NAT, keep-alive by {variant.name}", run.figures)
        return run

    @inlineCallbacks
    def test_callReachesRegisteredEngineOnlyWhileBindingKept(self):
        """
        After 10 s of silence, a call to the user registered through the
        NAT rings the engine when NULL keep-alives (every 1 s) or
        registration refreshes (every 2 s) kept the binding open, and is
        lost in the NAT when nothing did, although Kamailio still had the
        registration and routed the call to it.
        """
        (null, none), refresh = yield bothVariants(
            bothVariants(self.registerIdleThenCall(NULL), self.registerIdleThenCall(NONE)),
            self.registerIdleThenCall(REFRESH))

        for run in (null, none, refresh):
            name = run.variant.name
            # The registration: granted as asked, still in force at the
            # call, in every variant: a lost call is the NAT's doing.
            asked = run.variant.expires or run.variant.interval + 5
            self.assertEqual(run.registered.details["expires"], asked, name)
            self.assertEqual(run.figures["registration_state"], "Registered", name)
            self.assertEqual(len(run.contacts), 1, f"{name}: {run.contacts}")
            self.assertGreater(run.contacts[0].expires, 0, name)
            self.assertGreaterEqual(run.figures["idle_s"], IDLE, name)
            # Kamailio found the contact and relayed the INVITE to the
            # engine's public address.
            self.assertEqual(run.figures["kamailio_routed"], 1, name)
            self.assertTrue(all(m.dst == run.public for m in run.messages
                                if m.isRequest and m.method == "INVITE" and m.src == run.registrar), name)
            self.assertEqual(run.events.named(E.SipRegisterTimeout), [], name)

            # rport (RFC 3581): every REGISTER left the router from its WAN
            # address, Kamailio saw them from there, and its location
            # table keeps that public address for the contact: as the
            # contact itself (the engine re-registered with the address
            # the 200's Via named) and as the received address
            # (fix_nated_register: the Via still names the LAN address).
            self.assertEqual(run.figures["register_sources"], [run.public], name)
            self.assertEqual(run.figures["kamailio_saw_registers_from"], [run.public], name)
            [contact] = run.contacts
            self.assertEqual(contact.address, f"sip:{USER}@{run.public}", name)
            self.assertEqual(contact.received, f"sip:{run.public}", name)
            [nat] = run.events.named(E.SipRegisterNatDetected)
            self.assertEqual((nat.details["host"], nat.details["port"]),
                             (run.lab.routerWanAddress, ENGINE_SIP_PORT), name)

        # Reached: the line rang once (for alice), was answered, and SIPp's
        # call completed; the engine's flow to Kamailio was never idle for
        # the binding timeout.
        for run in (null, refresh):
            name = run.variant.name
            self.assertEqual(run.sipp.exitCode, 0, f"{name}: {run.sipp.describe()}")
            [ringing] = run.answerer.rang
            self.assertEqual(run.answerer.answers, [R.SipSuccess], name)
            self.assertEqual(ringing.details["calledUser"], USER, name)
            self.assertTrue(ringing.details["registered"], name)
            [ended] = run.events.named(E.SipCallComplete)
            self.assertEqual(ended.reason, "remote-hangup", name)
            self.assertEqual(run.lineAfter, LineState.IDLE, name)
            # The answer's Contact is the public address the registration
            # learnt, so SIPp's ACK and BYE (Kamailio's loose_route sends
            # them to it) got through the NAT too.
            self.assertEqual(run.figures["answer_contact"], f"<sip:lmevoip@{run.public}>", name)
            self.assertLess(run.figures["largest_gap_s"], NAT_TIMEOUT, name)
            self.assertEqual(run.counters["gate_dropped"], 0, name)

        # NULL keep-alive: the CRLFs, and nothing else, filled the idle
        # time; they left the SIP socket's public port, the one the
        # REGISTERs left from (no CRLF to the WAN from anywhere else), and
        # Kamailio received them from there.
        self.assertEqual(null.figures["registers_in_idle"], 0)
        self.assertGreaterEqual(null.figures["crlfs_in_idle"], int(IDLE / NULL_PERIOD) - 1)
        self.assertEqual(null.figures["engine_datagrams_in_idle"], null.figures["crlfs_in_idle"])
        self.assertEqual(null.figures["crlfs_leaving_nat"], null.figures["crlfs_on_register_flow"])
        seen = null.kamailio.keepAlives()
        self.assertGreaterEqual(len(seen), null.figures["crlfs_in_idle"])
        self.assertEqual({f"{host}:{port}" for host, port in seen}, {null.public})

        # Registration refresh: REGISTERs, and nothing else, filled it.
        self.assertGreaterEqual(refresh.figures["registers_in_idle"], int(IDLE / SHORT_INTERVAL) - 1)
        self.assertEqual(refresh.figures["engine_datagrams_in_idle"], refresh.figures["registers_in_idle"])
        self.assertEqual(refresh.figures["crlfs_in_idle"], 0)
        self.assertGreaterEqual(refresh.registered.details["refreshIn"], 1)
        self.assertLessEqual(refresh.registered.details["refreshIn"], SHORT_INTERVAL)

        # Nothing: the engine sent nothing for the whole idle time, the
        # binding expired, and the NAT dropped Kamailio's INVITE and every
        # retransmission of it; Kamailio answered SIPp 408 and the
        # engine's line never rang.
        self.assertEqual(none.figures["engine_datagrams_in_idle"], 0)
        self.assertGreaterEqual(none.figures["largest_gap_s"], IDLE)
        self.assertGreaterEqual(none.figures["invites_to_engine"], 2)
        self.assertGreaterEqual(none.counters["gate_dropped"], none.figures["invites_to_engine"])
        self.assertIn("408", none.figures["sipp_statuses"], none.sipp.describe())
        self.assertNotIn("200", none.figures["sipp_statuses"], none.sipp.describe())
        self.assertEqual(none.sipp.exitCode, 1, none.sipp.describe())
        self.assertEqual(none.answerer.rang, [])
        self.assertEqual(none.events.named(E.SipOkToAnswerCall), [])
        self.assertEqual(none.lineAfter, LineState.IDLE)
        self.assertFalse([m for m in none.messages if m.src == none.public and not m.isRequest
                          and m.method == "INVITE"])
