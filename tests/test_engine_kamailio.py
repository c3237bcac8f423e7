"""
The engine's registration against a real Kamailio (C{tests/kamailio/
kamailio.cfg}, driven by L{tests.peers.kamailio}), on the real reactor:
digest registration of two names through C{enableSipRegisterServer}, seen
in C{ul.dump}; C{disableSipRegisterServer} and C{stopService} removing the
contacts; a SIPp caller reaching a registered name through Kamailio and
the engine's line ringing and answering; NULL keep-alives
(C{sendSipKeepAlive}) leaving the socket that registered.

Each test runs its own Kamailio on a free loopback port. Skipped without
kamailio and kamcmd (and sipp for the call); failed instead under
C{LMEVOIP_REQUIRE_PEERS=1}.
"""

from __future__ import annotations

from twisted.internet import reactor, task
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from lmevoip.engine import EngineConfig, LineState, VoipMediaEngine
from lmevoip.events import EngineObserver, EventName
from lmevoip.returns import TelephonyReturnValue
from tests.peers.kamailio import TEST_USERS, Kamailio
from tests.peers.ports import LOOPBACK, freePortBlock
from tests.support import requireTool

R = TelephonyReturnValue
E = EventName


def sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


class Answerer(EngineObserver):
    """
    Answers every call that rings (goOffHook from SipOkToAnswerCall) and
    keeps what it saw.
    """

    def __init__(self, engine):
        self.engine = engine
        self.rang = []
        self.answers = []

    def sipOkToAnswerCall(self, event):
        self.rang.append(event)
        self.answers.append(self.engine.goOffHook(event.line))


class EngineKamailioTests(TestCase):

    timeout = 40

    def startKamailio(self, **kw):
        """Kamailio on a free loopback port: a Deferred firing with it."""
        for tool in ("kamailio", "kamcmd"):
            requireTool(tool)
        return Kamailio(self, **kw).start()

    def startEngine(self, **kw):
        low = freePortBlock(8, LOOPBACK)
        engine = VoipMediaEngine(EngineConfig(sipHost=LOOPBACK, sipPort=0, user="desk", lines=2,
                                              rtpPortLow=low, rtpPortHigh=low + 7, **kw), reactor)
        engine.startService()
        self.addCleanup(engine.stopService)
        return engine

    def enable(self, engine, kamailio, names=("alice",), interval=30):
        return engine.enableSipRegisterServer(list(names), False, False, kamailio.host, kamailio.port, interval, 0,
                                              3000, True)

    @inlineCallbacks
    def registered(self, engine, count=1):
        """Wait for C{count} SipRegisterSuccess events in all."""
        for _ in range(count):
            yield engine.whenEvent(E.SipRegisterSuccess, timeout=10)

    @inlineCallbacks
    def test_registerAndUnregister(self):
        """
        Two names with their own digest credentials, registered by the
        engine: ul.dump shows each contact with the flow's Call-ID;
        disableSipRegisterServer removes them.
        """
        kamailio = yield self.startKamailio()
        engine = self.startEngine()
        port = engine.sipAddress[1]
        self.assertIs(engine.setSipAuthentication("alice", TEST_USERS["alice"]), R.SipSuccess)
        self.assertIs(engine.setSipAuthentication("bob", TEST_USERS["bob"], name="bob"), R.SipSuccess)
        waiting = self.registered(engine, 2)
        self.assertIs(self.enable(engine, kamailio, names=("alice", "bob")), R.SipSuccess)
        yield waiting
        states = {state["name"]: state for state in engine.getRegistrationState()}
        for name in ("alice", "bob"):
            [binding] = yield kamailio.contacts(name)
            self.assertEqual(binding.address, f"sip:{name}@127.0.0.1:{port}")
            self.assertEqual(binding.callId, states[name]["callId"])
            self.assertEqual(states[name]["state"], "Registered")
            self.assertEqual(states[name]["grantedExpires"], 35)
            first, second = kamailio.registers(name)
            self.assertFalse(first.authenticated)
            self.assertTrue(second.authenticated)
            self.assertEqual(second.source, ("127.0.0.1", port))

        unregistered = engine.whenEvent(E.SipUnregisterSuccess, timeout=10)
        self.assertIs(engine.disableSipRegisterServer(), R.SipSuccess)
        yield unregistered
        yield sleep(0.3)  # the second name's answer
        for name in ("alice", "bob"):
            self.assertEqual((yield kamailio.contacts(name)), [])
            self.assertEqual(kamailio.registers(name)[-1].expires, "0")
        self.assertEqual(engine.getRegistrationState(), [])

    @inlineCallbacks
    def test_incomingCallThroughKamailio(self):
        """
        SIPp calls alice at Kamailio, which routes the INVITE to the
        contact the engine registered; the engine's line rings
        (SipOkToAnswerCall naming alice), is answered with goOffHook, and
        SIPp's BYE through Kamailio ends the call. Stopping the engine then
        un-registers alice.
        """
        requireTool("sipp")
        from tests.peers.sipp import Sipp
        kamailio = yield self.startKamailio()
        engine = self.startEngine()
        answerer = Answerer(engine)
        engine.addObserver(answerer)
        engine.setSipAuthentication("alice", TEST_USERS["alice"])
        waiting = self.registered(engine)
        self.assertIs(self.enable(engine, kamailio), R.SipSuccess)
        yield waiting
        connected = engine.whenEvent(E.SipIncomingCallConnected, timeout=15)
        complete = engine.whenEvent(E.SipCallComplete, timeout=15)
        caller = Sipp(self, "reg_uac_call", remote=kamailio.address, service="alice", timeout=15)
        result = yield caller.run()
        self.assertEqual(result.exitCode, 0, result.describe())
        [ringing] = answerer.rang
        self.assertEqual(answerer.answers, [R.SipSuccess])
        self.assertEqual(ringing.line, 0)
        self.assertEqual(ringing.details["calledUser"], "alice")
        self.assertTrue(ringing.details["registered"])
        yield connected
        ended = yield complete
        self.assertEqual(ended.reason, "remote-hangup")
        self.assertEqual(engine.getLineStatus(0).state, LineState.IDLE)
        self.assertEqual(len(kamailio.routed("INVITE")), 1)

        self.assertEqual(len((yield kamailio.contacts("alice"))), 1)
        yield engine.stopService()
        self.assertEqual((yield kamailio.contacts("alice")), [])
        self.assertEqual(kamailio.registers("alice")[-1].expires, "0")

    @inlineCallbacks
    def test_keepAliveFromRegistrationSocket(self):
        """
        sendSipKeepAlive towards Kamailio: the CRLFs Kamailio logs come
        from the address and port the engine registered from.
        """
        kamailio = yield self.startKamailio(debug=3)
        engine = self.startEngine()
        port = engine.sipAddress[1]
        engine.setSipAuthentication("alice", TEST_USERS["alice"])
        waiting = self.registered(engine)
        self.assertIs(self.enable(engine, kamailio), R.SipSuccess)
        yield waiting
        self.assertIs(engine.sendSipKeepAlive(kamailio.host, kamailio.port, True, 0.4), R.SipSuccess)
        yield sleep(1.5)
        self.assertIs(engine.sendSipKeepAlive(kamailio.host, kamailio.port, False, 0.4), R.SipSuccess)
        self.assertEqual({line.source for line in kamailio.registers("alice")}, {("127.0.0.1", port)})
        seen = kamailio.keepAlives()
        self.assertGreaterEqual(len(seen), 3)
        self.assertEqual(set(seen), {("127.0.0.1", port)})
