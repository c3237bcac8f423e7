"""
Tests for the engine's registration API (L{VoipMediaEngine.enableSipRegisterServer}
and its companions): return values, the REGISTER flows against a scripted
registrar on a L{FakeUdpReactor}, refreshes, un-registration on disable and
on stop, events in both styles, credentials, the outbound proxy, phone line
names, host name resolution and incoming calls to a registered name.

The scripted registrar checks digest answers with its own arithmetic
(L{tests.test_sip_registration.verifyCredentials}, hashlib), not with
L{lmevoip.sip.auth}.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet import defer
from twisted.internet.error import DNSLookupError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

import tests.test_sip_registration as scripted
from lmevoip.engine import MAX_REGISTERED_NAMES, EngineConfig, LineState, VoipMediaEngine
from lmevoip.events import EngineObserver, EventName
from lmevoip.interfaces import IRegistrationControl, IRegistrationObserver, IVoipMediaEngine
from lmevoip.returns import TelephonyReturnValue
from lmevoip.sip.auth import Challenge
from lmevoip.sip.message import Request, SipParseError, makeResponse, parse
from lmevoip.sip.registration import RegistrationEventName
from lmevoip.sip.transaction import stampVia
from lmevoip.testing import FakeUdpReactor, RecordingEngineObserver

R = TelephonyReturnValue
E = EventName
LOCAL = ("127.0.0.1", 5060)
REGISTRAR = ("127.0.0.2", 5060)
PROXY = ("127.0.0.3", 5070)
REALM = "registrar.test"
#: Credentials distinctive enough to be searched for in logs and state.
AUTH_USER = "zq-auth-user-77"
PASSWORD = "pw-Xy7-secret-41"


class ScriptedRegistrar(DatagramProtocol):
    """
    A registrar (or a proxy that registers itself) on a L{FakeUdpReactor}:
    challenges every REGISTER of a user in C{users} without valid
    credentials (one nonce, re-usable: refreshes answer pre-emptively),
    grants at most C{maxExpires}, keeps the bindings and answers the
    source address with its Via stamped (received/rport) as seen from
    C{seenFrom} (default: the real source).

    @ivar requests: C{(time, Request, source)} of every request received.
    @ivar keepAlives: C{(time, source)} of every CRLF keep-alive.
    @ivar bindings: user -> {contact URI: expires}.
    @ivar silent: When set, nothing is answered.
    @ivar status: When set, every REGISTER is refused with it.
    """

    def __init__(self, reactor: FakeUdpReactor, address: tuple[str, int] = REGISTRAR,
                 users: dict[str, tuple[str, str]] | None = None, maxExpires: int = 3600,
                 seenFrom: tuple[str, int] | None = None) -> None:
        self.reactor = reactor
        self.users = users if users is not None else {}
        self.maxExpires = maxExpires
        self.seenFrom = seenFrom
        self.requests: list[tuple[float, Request, tuple[str, int]]] = []
        self.keepAlives: list[tuple[float, tuple[str, int]]] = []
        self.bindings: dict[str, dict[str, int]] = {}
        self.silent = False
        self.status: int | None = None
        self.challenge = Challenge.digest(REALM, "nonce-1", algorithm="MD5", qop=("auth",), opaque="op")
        self.port = reactor.listenUDP(address[1], self, interface=address[0])

    def registers(self, user: str | None = None) -> list[Request]:
        return [r for _, r, _ in self.requests
                if r.method == "REGISTER" and (user is None or r.toAddr.uri.user == user)]

    def times(self, user: str | None = None) -> list[float]:
        return [t for t, r, _ in self.requests
                if r.method == "REGISTER" and (user is None or r.toAddr.uri.user == user)]

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        now = self.reactor.seconds()
        if not data.strip():
            self.keepAlives.append((now, addr))
            return
        try:
            message = parse(data)
        except SipParseError:
            return
        if not message.isRequest:
            return
        self.requests.append((now, message, addr))
        if self.silent or message.method != "REGISTER":
            return
        if self.status is not None:
            self._answer(message, addr, self.status)
            return
        user = message.toAddr.uri.user
        if user in self.users:
            authUser, password = self.users[user]
            value = message.headers.get("Authorization")
            if value is None or not scripted.verifyCredentials(value, "REGISTER", password, self.challenge) \
                    or f'username="{authUser}"' not in value:
                self._answer(message, addr, 401, [("WWW-Authenticate", str(self.challenge))])
                return
        bound = self.bindings.setdefault(user, {})
        contacts = []
        for contact in message.contacts:
            expires = contact.expires if contact.expires is not None else message.expires
            uri = str(contact.uri)
            if not expires:
                bound.pop(uri, None)
            else:
                bound[uri] = min(expires, self.maxExpires)
                contacts.append(("Contact", f"<{uri}>;expires={bound[uri]}"))
        if not bound:
            del self.bindings[user]
        self._answer(message, addr, 200, contacts)

    def _answer(self, request: Request, addr: tuple[str, int], status: int,
                headers: list[tuple[str, str]] = ()) -> None:
        stamped = Request(request.method, request.uri, request.headers.copy())
        stampVia(stamped, *(self.seenFrom or addr))
        response = makeResponse(stamped, status, toTag="regtag")
        for name, value in headers:
            response.headers.add(name, value)
        self.transport.write(response.serialize(), addr)


def registrationEvents(recorder: RecordingEngineObserver) -> list[str]:
    """
    The names of the registration events recorded.
    """
    return [name for name in recorder.names() if name.startswith(("SipRegister", "SipUnregister"))]


class LogCapture:
    """
    Every log event published while installed, formatted.
    """

    def __init__(self, test: SynchronousTestCase) -> None:
        self.lines: list[str] = []
        globalLogPublisher.addObserver(self)
        test.addCleanup(globalLogPublisher.removeObserver, self)

    def __call__(self, event: dict[str, Any]) -> None:
        self.lines.append(f"{formatEvent(event)} {event!r}")


class RegistrationTestsMixin:
    """
    An engine at 127.0.0.1:5060 (user C{desk}, two lines) and a scripted
    registrar at 127.0.0.2:5060 that challenges alice and bob.
    """

    users = {"alice": (AUTH_USER, PASSWORD), "bob": ("bob-auth", "bob-pass")}

    def setUp(self) -> None:
        self.reactor = FakeUdpReactor()
        self.registrar = ScriptedRegistrar(self.reactor, users=dict(self.users))
        self.addCleanup(self.registrar.port.stopListening)
        self.engine = self.makeEngine()
        self.events = RecordingEngineObserver()
        self.engine.addObserver(self.events)

    def makeEngine(self, start: bool = True, host: str = LOCAL[0], **kwargs: Any) -> VoipMediaEngine:
        settings = dict(sipHost=host, sipPort=5060, user="desk", lines=2)
        settings.update(kwargs)
        engine = VoipMediaEngine(EngineConfig(**settings), reactor=self.reactor, rng=random.Random(3))
        if start:
            engine.startService()
            self.addCleanup(self.stop, engine)
        return engine

    def stop(self, engine: VoipMediaEngine) -> None:
        """Stop the engine, letting un-registrations finish on the clock."""
        done = engine.stopService()
        for _ in range(400):
            if done.called:
                break
            self.reactor.advance(0.05)
        self.assertTrue(done.called)

    def enable(self, names: Any = ("alice",), lines: bool = False, proxy: bool = False, host: Any = REGISTRAR[0],
               port: Any = REGISTRAR[1], interval: Any = 30, expires: Any = 0, timeoutMs: Any = 2000,
               nat: Any = True, engine: VoipMediaEngine | None = None) -> TelephonyReturnValue:
        engine = engine or self.engine
        if isinstance(names, tuple):
            names = list(names)
        return engine.enableSipRegisterServer(names, lines, proxy, host, port, interval, expires, timeoutMs, nat)

    def runFor(self, seconds: float, step: float = 0.01) -> None:
        end = self.reactor.seconds() + seconds
        while self.reactor.seconds() < end - 1e-9:
            self.reactor.advance(min(step, end - self.reactor.seconds()))

    def register(self, names: Any = ("alice",), **kwargs: Any) -> None:
        """Register with the engine's credentials set to alice's; check success."""
        self.engine.setSipAuthentication(AUTH_USER, PASSWORD)
        self.engine.setSipAuthentication("bob-auth", "bob-pass", name="bob")
        self.assertIs(self.enable(names, **kwargs), R.SipSuccess)
        self.runFor(0.1)
        states = {state["name"]: state["state"] for state in self.engine.getRegistrationState()}
        self.assertEqual(set(states.values()), {"Registered"}, states)

    def sentToRegistrar(self) -> int:
        return len(self.reactor.sentTo(REGISTRAR))


class InterfaceTests(RegistrationTestsMixin, SynchronousTestCase):
    def test_providers(self) -> None:
        """
        The engine provides IRegistrationControl beside IVoipMediaEngine;
        what it hands each client provides IRegistrationObserver.
        """
        self.assertTrue(verifyObject(IRegistrationControl, self.engine))
        self.assertTrue(verifyObject(IVoipMediaEngine, self.engine))
        self.register()
        client = self.engine.registrations["alice"]
        self.assertTrue(verifyObject(IRegistrationObserver, client.observer))

    def test_eventNames(self) -> None:
        """
        Every registration event name is an engine event name, unchanged,
        and the engine's resolution failure is one more.
        """
        self.assertEqual(len(RegistrationEventName), 17)
        for name in RegistrationEventName:
            self.assertEqual(EventName(name.value).value, name.value)
        self.assertEqual(E.SipRegisterResolutionFailure, "SipRegisterResolutionFailure")

    def test_newReturnValues(self) -> None:
        """
        The new return values are distinct members with new numbers.
        """
        self.assertIsNot(R.SipBadNameList, R.SipBadParameter)
        self.assertEqual([R.SipBadNameList.value, R.SipAuthenticationFailure.value,
                          R.SipRegistrationRejected.value], [19, 20, 21])


class ReturnValueTests(RegistrationTestsMixin, SynchronousTestCase):
    def test_notRunning(self) -> None:
        """
        Registering and un-registering need a running engine; nothing is
        sent.
        """
        engine = self.makeEngine(start=False, host="127.0.0.5")
        self.assertIs(self.enable(engine=engine), R.SipNotEnabled)
        self.assertIs(engine.disableSipRegisterServer(), R.SipNotEnabled)
        engine.startService()
        engine.stopService()
        self.assertIs(self.enable(engine=engine), R.SipNotEnabled)
        self.assertEqual(self.reactor.datagrams, type(self.reactor.datagrams)())

    def test_badParameters(self) -> None:
        """
        Each bad argument is SipBadParameter, and nothing changes: no
        REGISTER, no registration state.
        """
        cases = [
            dict(interval=0), dict(interval=-5), dict(interval=True), dict(interval="30"),
            dict(names=[]),
            dict(port=0), dict(port=65536), dict(port="5060"), dict(port=True), dict(port=None),
            dict(expires=-1), dict(expires=True), dict(expires=2 ** 32),
            dict(timeoutMs=0), dict(timeoutMs=1.5), dict(timeoutMs=True),
            dict(lines=1), dict(proxy=None), dict(nat="yes"),
            dict(host=""), dict(host="0.0.0.0"), dict(host="::1"), dict(host="224.0.0.1"), dict(host=42),
            dict(host="bad host!"), dict(host="registrar.test"),  # a name, but no resolver
            dict(proxy=True),  # no outbound proxy configured
        ]
        for case in cases:
            self.assertIs(self.enable(**case), R.SipBadParameter, case)
        self.assertEqual(self.sentToRegistrar(), 0)
        self.assertEqual(self.engine.getRegistrationState(), [])
        self.assertEqual(self.engine.registrations, {})

    def test_badNameList(self) -> None:
        """
        A malformed name list has its own return value, SipBadNameList:
        not a list, a name that is no SIP user part, a name twice (a phone
        line's name too), too many names.
        """
        cases = ["alice", b"alice", {"alice"}, None, ["alice", "alice"], ["al ice"], ["alice@example.test"],
                 ["al<ice"], [""], [1], ["alice", None], ["bob", b"bytes"],
                 [f"user{n}" for n in range(MAX_REGISTERED_NAMES + 1)]]
        for names in cases:
            self.assertIs(self.enable(names=names), R.SipBadNameList, names)
        self.assertIs(self.enable(names=["desk1"], lines=True), R.SipBadNameList)
        self.assertEqual(self.sentToRegistrar(), 0)
        # The longest list allowed is fine.
        self.assertIs(self.enable(names=[f"user{n}" for n in range(MAX_REGISTERED_NAMES)]), R.SipSuccess)

    def test_proxyParameters(self) -> None:
        """
        enableOutboundSipProxyServer checks its host and port, running or
        not.
        """
        engine = self.makeEngine(start=False)
        for host, port in (("", 5060), ("0.0.0.0", 5060), ("::1", 5060), ("x y", 5060), (None, 5060),
                           (PROXY[0], 0), (PROXY[0], 70000), (PROXY[0], "5070"), ("proxy.test", 5060)):
            self.assertIs(engine.enableOutboundSipProxyServer(host, port), R.SipBadParameter, (host, port))
        self.assertIs(engine.enableOutboundSipProxyServer(*PROXY), R.SipSuccess)
        self.assertIs(engine.disableOutboundSipProxyServer(), R.SipSuccess)

    def test_authenticationParameters(self) -> None:
        """
        setSipAuthentication checks its arguments, running or not, and
        never logs them.
        """
        logs = LogCapture(self)
        engine = self.makeEngine(start=False)
        bad = [(None, PASSWORD, None), ("", PASSWORD, None), ("user\r\n", PASSWORD, None), (AUTH_USER, None, None),
               (AUTH_USER, 5, None), (AUTH_USER, PASSWORD, "bad name"), (AUTH_USER, PASSWORD, 7),
               (5, PASSWORD, None), (AUTH_USER, "x" * 2000, None)]
        for user, password, name in bad:
            self.assertIs(engine.setSipAuthentication(user, password, name), R.SipBadParameter, (user, name))
        self.assertIs(engine.setSipAuthentication(AUTH_USER, PASSWORD), R.SipSuccess)
        self.assertIs(engine.setSipAuthentication(AUTH_USER, PASSWORD, "alice"), R.SipSuccess)
        self.assertIs(engine.setSipAuthentication(None, None, "alice"), R.SipSuccess)
        self.assertIs(engine.setSipAuthentication(None, None), R.SipSuccess)
        self.assertTrue(logs.lines)
        for line in logs.lines:
            self.assertNotIn(PASSWORD, line)
            self.assertNotIn(AUTH_USER, line)

    def test_disableWithNothingRegistered(self) -> None:
        """
        Disabling when nothing is registered succeeds and sends nothing.
        """
        self.assertIs(self.engine.disableSipRegisterServer(), R.SipSuccess)
        self.assertEqual(self.sentToRegistrar(), 0)


class RegisterFlowTests(RegistrationTestsMixin, SynchronousTestCase):
    def test_registersAtOnceWithDigest(self) -> None:
        """
        The first REGISTER leaves before enableSipRegisterServer returns;
        the 401 is answered with the credentials of setSipAuthentication;
        the success event carries the granted expiry and the state shows
        it.
        """
        self.engine.setSipAuthentication(AUTH_USER, PASSWORD)
        self.assertIs(self.enable(interval=30), R.SipSuccess)
        [sent] = self.reactor.sentTo(REGISTRAR)
        self.assertEqual(sent.time, 0)
        self.assertEqual(sent.source, LOCAL)
        self.runFor(0.1)
        first, second = self.registrar.registers("alice")
        self.assertIsNone(first.headers.get("Authorization"))
        self.assertTrue(scripted.verifyCredentials(second.headers.get("Authorization"), "REGISTER", PASSWORD,
                                                   self.registrar.challenge))
        self.assertEqual(str(first.uri), "sip:127.0.0.2")
        self.assertEqual(str(first.toAddr.uri), "sip:alice@127.0.0.2")
        self.assertEqual([str(c.uri) for c in second.contacts], ["sip:alice@127.0.0.1:5060"])
        self.assertEqual(second.expires, 35)
        self.assertEqual(self.registrar.bindings, {"alice": {"sip:alice@127.0.0.1:5060": 35}})

        self.assertEqual(registrationEvents(self.events)[:2], ["SipRegisterTrying", "SipRegisterSuccess"])
        success = self.events.last(E.SipRegisterSuccess)
        self.assertEqual(success.details["expires"], 35)
        self.assertEqual(success.details["name"], "alice")
        self.assertEqual(success.details["registrar"], "127.0.0.2:5060")
        self.assertIs(success.result, R.SipSuccess)
        self.assertIsNone(success.line)
        self.assertEqual(self.events.last(E.SipRegisterTrying).reason, "initial")

        [state] = self.engine.getRegistrationState()
        self.assertEqual(state["name"], "alice")
        self.assertEqual(state["registrar"], "127.0.0.2:5060")
        self.assertEqual(state["state"], "Registered")
        self.assertTrue(state["registered"])
        self.assertEqual(state["grantedExpires"], 35)
        self.assertAlmostEqual(state["nextAttemptAt"], success.time + 30)
        self.assertEqual(state["contact"], "sip:alice@127.0.0.1:5060")
        self.assertIsNone(state["publicAddress"])
        self.assertEqual(state["failures"], 0)
        self.assertEqual(state["callId"], success.callId)

    def test_refreshAtInterval(self) -> None:
        """
        The binding is refreshed every registrationUpdateIntervalSeconds:
        one REGISTER each (pre-emptive credentials), same Call-ID, CSeq up
        by one.
        """
        self.register(interval=20)
        self.runFor(65, step=0.05)
        refreshes = [e for e in self.events.named(E.SipRegisterTrying) if e.reason == "refresh"]
        successes = self.events.named(E.SipRegisterSuccess)
        self.assertEqual(len(refreshes), 3)
        for success, refresh in zip(successes, refreshes):
            # Each refresh 20 s after the success before it; the step of
            # runFor is the only slack.
            self.assertTrue(0 <= refresh.time - (success.time + 20) < 0.06, (success.time, refresh.time))
        registers = self.registrar.registers("alice")
        self.assertEqual(len(registers), 5)  # 401 round trip, then one per refresh
        self.assertEqual({r.callId for r in registers}, {refreshes[0].callId})
        self.assertEqual([r.cseq.seq for r in registers], [1, 2, 3, 4, 5])
        self.assertEqual(len(self.events.named(E.SipRegisterSuccess)), 4)

    def test_disableUnregisters(self) -> None:
        """
        disableSipRegisterServer sends Expires 0 for the bound contact,
        reports the outcome, forgets the state and stops refreshing.
        """
        self.register()
        self.assertIs(self.engine.disableSipRegisterServer(), R.SipSuccess)
        self.assertEqual(self.engine.getRegistrationState(), [])
        self.runFor(0.1)
        last = self.registrar.registers("alice")[-1]
        self.assertEqual(last.expires, 0)
        self.assertEqual([(str(c.uri), c.expires) for c in last.contacts], [("sip:alice@127.0.0.1:5060", 0)])
        self.assertEqual(self.registrar.bindings, {})
        self.assertEqual(registrationEvents(self.events)[-2:], ["SipUnregisterTrying", "SipUnregisterSuccess"])
        self.assertIs(self.events.last(E.SipUnregisterSuccess).result, R.SipSuccess)
        count = len(self.registrar.registers())
        self.runFor(120, step=1)
        self.assertEqual(len(self.registrar.registers()), count)

    def test_stopUnregisters(self) -> None:
        """
        Stopping the engine un-registers first: the stop waits for the
        registrar's answer, then closes the socket, leaving no timer.
        """
        self.register(names=("alice", "bob"))
        stopping = self.engine.stopService()
        self.assertFalse(stopping.called)
        self.assertFalse(self.engine.running)
        self.assertIsNotNone(self.engine.sipAddress)
        self.runFor(0.1)
        self.assertTrue(stopping.called)
        self.assertIsNone(self.engine.sipAddress)
        self.assertEqual(self.registrar.bindings, {})
        self.assertEqual(len(self.events.named(E.SipUnregisterSuccess)), 2)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        # Stopping again is harmless.
        self.assertTrue(self.engine.stopService().called)

    def test_stopBoundedBySilentRegistrar(self) -> None:
        """
        A registrar that stops answering delays the stop by timeOutMs only.
        """
        self.register(timeoutMs=1500)
        self.registrar.silent = True
        stopping = self.engine.stopService()
        second = self.engine.stopService()
        self.runFor(1.4)
        self.assertFalse(stopping.called)
        self.runFor(0.2)
        self.assertTrue(stopping.called)
        self.assertTrue(second.called)
        self.assertIsNotNone(self.events.last(E.SipUnregisterTimeout))
        self.assertIs(self.events.last(E.SipUnregisterTimeout).result, R.SipCallTimeOut)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stopWithNothingBound(self) -> None:
        """
        When every REGISTER was refused nothing can be bound: the stop is
        immediate, as without registration.
        """
        self.registrar.status = 403
        self.assertIs(self.enable(), R.SipSuccess)
        self.runFor(0.1)
        rejected = self.events.last(E.SipRegisterRejected)
        self.assertEqual((rejected.status, rejected.result), (403, R.SipRegistrationRejected))
        self.assertTrue(self.engine.stopService().called)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_timeoutAndRetry(self) -> None:
        """
        timeOutMs bounds each REGISTER; the failure is reported with
        retryIn and counted in the state; enabling again with the same
        settings retries at once on the same flow.
        """
        self.registrar.silent = True
        self.engine.setSipAuthentication(AUTH_USER, PASSWORD)
        self.assertIs(self.enable(timeoutMs=1000), R.SipSuccess)
        self.runFor(0.9)
        self.assertIsNone(self.events.last(E.SipRegisterTimeout))
        self.runFor(0.2)
        timeout = self.events.last(E.SipRegisterTimeout)
        self.assertIs(timeout.result, R.SipCallTimeOut)
        self.assertGreater(timeout.details["retryIn"], 1)
        [state] = self.engine.getRegistrationState()
        self.assertEqual((state["state"], state["failures"]), ("Backoff", 1))
        self.assertAlmostEqual(state["nextAttemptAt"], timeout.time + timeout.details["retryIn"])
        callId = state["callId"]

        self.registrar.silent = False
        sent = len(self.registrar.registers())
        self.assertIs(self.enable(timeoutMs=1000), R.SipSuccess)
        self.runFor(0.1)
        self.assertGreater(len(self.registrar.registers()), sent)
        [state] = self.engine.getRegistrationState()
        self.assertEqual((state["state"], state["callId"], state["failures"]), ("Registered", callId, 0))

    def test_enableAgainSameSettings(self) -> None:
        """
        Enabling again with the same settings keeps the flow and sends
        nothing while registered.
        """
        self.register()
        client = self.engine.registrations["alice"]
        count = len(self.registrar.registers())
        self.assertIs(self.enable(), R.SipSuccess)
        self.runFor(0.1)
        self.assertIs(self.engine.registrations["alice"], client)
        self.assertEqual(len(self.registrar.registers()), count)

    def test_enableAgainChangedSettings(self) -> None:
        """
        Changed settings: the old flow un-registers, and only after its
        answer does a new flow (new Call-ID) register. A name left out is
        un-registered; a new one registered.
        """
        self.register()
        old = self.engine.registrations["alice"].callId
        self.assertIs(self.enable(names=("alice", "bob"), interval=60), R.SipSuccess)
        self.runFor(0.1)
        alice = self.registrar.registers("alice")
        unregister = next(r for r in alice if r.expires == 0)
        self.assertEqual(unregister.callId, old)
        after = alice[alice.index(unregister) + 1:]
        self.assertTrue(after)
        self.assertEqual({r.callId for r in after} & {old}, set())
        self.assertEqual(after[-1].expires, 65)
        self.assertEqual(set(self.registrar.bindings), {"alice", "bob"})

        self.assertIs(self.enable(names=("bob",), interval=60), R.SipSuccess)
        self.runFor(0.1)
        self.assertEqual(set(self.registrar.bindings), {"bob"})
        self.assertEqual([s["name"] for s in self.engine.getRegistrationState()], ["bob"])

    def test_quickChangesWaitForUnregistration(self) -> None:
        """
        Settings changed twice, or a name dropped and listed again, before
        the registrar answered the un-registration: the new flow still
        waits for that answer, so the late Expires 0 of the old Call-ID
        cannot remove its binding.
        """
        self.register()
        old = self.engine.registrations["alice"].callId
        self.registrar.silent = True
        self.assertIs(self.enable(interval=60), R.SipSuccess)
        self.assertIs(self.enable(names=("bob",), interval=90), R.SipSuccess)
        self.assertIs(self.enable(names=("alice", "bob"), interval=90), R.SipSuccess)
        self.runFor(0.1)
        self.assertEqual([(r.callId, r.expires) for r in self.registrar.registers("alice")][-1], (old, 0))
        self.assertEqual(len(self.registrar.registers("alice")), 3)  # 401, 200, and the Expires 0
        self.registrar.silent = False
        self.runFor(2)  # a retransmission of the Expires 0 is answered; then alice registers anew
        unregistered = self.events.last(E.SipUnregisterSuccess)
        self.assertEqual(unregistered.callId, old)
        newFlow = [t for t, r, _ in self.registrar.requests if r.toAddr.uri.user == "alice" and r.callId != old]
        self.assertGreater(newFlow[0], unregistered.time)
        alice = self.registrar.registers("alice")
        self.assertNotEqual(alice[-1].callId, old)
        self.assertEqual(alice[-1].expires, 95)
        self.assertEqual(set(self.registrar.bindings), {"alice", "bob"})
        self.assertEqual({s["state"] for s in self.engine.getRegistrationState()}, {"Registered"})

    def test_natDetected(self) -> None:
        """
        A registrar that sees us elsewhere: SipRegisterNatDetected, then the
        public contact is bound and shown in the state.
        """
        self.registrar.seenFrom = ("127.0.0.9", 40000)
        self.register()
        nat = self.events.last(E.SipRegisterNatDetected)
        self.assertEqual((nat.details["host"], nat.details["port"]), ("127.0.0.9", 40000))
        [state] = self.engine.getRegistrationState()
        self.assertEqual(state["publicAddress"], "127.0.0.9:40000")
        self.assertEqual(state["contact"], "sip:alice@127.0.0.9:40000")
        self.assertEqual(self.registrar.bindings, {"alice": {"sip:alice@127.0.0.9:40000": 35}})

    def test_natDetectionOff(self) -> None:
        """
        With registerNatAutoDetectEnabled false the contact stays ours.
        """
        self.registrar.seenFrom = ("127.0.0.9", 40000)
        self.register(nat=False)
        self.assertIsNone(self.events.last(E.SipRegisterNatDetected))
        self.assertEqual(self.engine.getRegistrationState()[0]["publicAddress"], None)

    def test_expiresAsked(self) -> None:
        """
        registrationExpireTimeSeconds is the expiry asked; a registrar
        granting less is refreshed before the binding lapses.
        """
        self.registrar.maxExpires = 10
        self.register(interval=60, expires=120)
        self.assertEqual(self.registrar.registers("alice")[-1].expires, 120)
        success = self.events.last(E.SipRegisterSuccess)
        self.assertEqual(success.details["expires"], 10)
        self.assertEqual(success.details["refreshIn"], 5)


class EventTests(RegistrationTestsMixin, SynchronousTestCase):
    def test_observerMethodsAndWhenEvent(self) -> None:
        """
        Registration events reach EngineObserver methods named after them
        and whenEvent, by name or string.
        """

        class Observer(EngineObserver):
            def __init__(self) -> None:
                self.successes: list[Any] = []

            def sipRegisterSuccess(self, event: Any) -> None:
                self.successes.append(event)

        observer = Observer()
        self.engine.addObserver(observer)
        byName = self.engine.whenEvent(E.SipRegisterSuccess)
        byString = self.engine.whenEvent("SipRegisterTrying")
        unregistered = self.engine.whenEvent(E.SipUnregisterSuccess, timeout=5)
        self.register()
        self.assertEqual(len(observer.successes), 1)
        self.assertIs(self.successResultOf(byName), observer.successes[0])
        self.assertEqual(self.successResultOf(byString).name, E.SipRegisterTrying)
        self.engine.disableSipRegisterServer()
        self.runFor(0.1)
        self.assertEqual(self.successResultOf(unregistered).details["name"], "alice")

    def test_credentialsFailures(self) -> None:
        """
        No credentials: an authorization error; wrong ones: bad
        credentials; both SipAuthenticationFailure, and one report per
        interval.
        """
        self.assertIs(self.enable(names=("alice",), interval=30), R.SipSuccess)
        self.runFor(0.1)
        error = self.events.last(E.SipRegisterAuthorizationError)
        self.assertEqual((error.status, error.reason, error.result),
                         (401, "no-credentials", R.SipAuthenticationFailure))
        self.engine.setSipAuthentication(AUTH_USER, "wrong-password")
        self.assertIs(self.enable(names=("alice",), interval=30), R.SipSuccess)
        self.runFor(0.1)
        bad = self.events.last(E.SipRegisterBadCredentials)
        self.assertEqual((bad.status, bad.result, bad.details["realm"]), (401, R.SipAuthenticationFailure, REALM))
        count = len(self.registrar.registers())
        self.runFor(25, step=0.5)
        self.assertEqual(len(self.registrar.registers()), count)


class CredentialTests(RegistrationTestsMixin, SynchronousTestCase):
    def test_perNameCredentials(self) -> None:
        """
        A name with credentials of its own uses them; the others use the
        engine's.
        """
        self.engine.setSipAuthentication(AUTH_USER, PASSWORD)
        self.engine.setSipAuthentication("bob-auth", "bob-pass", name="bob")
        self.assertIs(self.enable(names=("alice", "bob")), R.SipSuccess)
        self.runFor(0.1)
        self.assertEqual(set(self.registrar.bindings), {"alice", "bob"})
        self.assertIn('username="bob-auth"', self.registrar.registers("bob")[-1].headers.get("Authorization"))
        self.assertIn(f'username="{AUTH_USER}"', self.registrar.registers("alice")[-1].headers.get("Authorization"))

    def test_configCredentials(self) -> None:
        """
        EngineConfig.authUsername/authPassword are the engine's initial
        credentials.
        """
        engine = self.makeEngine(host="127.0.0.5", authUsername=AUTH_USER, authPassword=PASSWORD)
        self.assertIs(self.enable(engine=engine), R.SipSuccess)
        self.runFor(0.1)
        self.assertEqual(self.registrar.bindings, {"alice": {"sip:alice@127.0.0.5:5060": 35}})

    def test_newCredentialsApplyOnEnable(self) -> None:
        """
        New credentials are read by the next enableSipRegisterServer, which
        registers the name afresh.
        """
        self.engine.setSipAuthentication(AUTH_USER, "wrong-password")
        self.assertIs(self.enable(), R.SipSuccess)
        self.runFor(0.1)
        self.assertIsNotNone(self.events.last(E.SipRegisterBadCredentials))
        self.engine.setSipAuthentication(AUTH_USER, PASSWORD, name="alice")
        self.runFor(0.1)
        self.assertEqual(self.registrar.bindings, {})
        self.assertIs(self.enable(), R.SipSuccess)
        self.runFor(0.1)
        self.assertEqual(self.registrar.bindings, {"alice": {"sip:alice@127.0.0.1:5060": 35}})

    def test_credentialsNeverShown(self) -> None:
        """
        Neither the password nor the digest username appears in any log
        event, engine event or registration state, through success, a
        wrong password and un-registration.
        """
        logs = LogCapture(self)
        self.register()
        self.engine.setSipAuthentication(AUTH_USER, "wrong-" + PASSWORD)
        self.enable(interval=31)
        self.runFor(0.2)
        self.assertIsNotNone(self.events.last(E.SipRegisterBadCredentials))
        states = repr(self.engine.getRegistrationState())
        self.engine.disableSipRegisterServer()
        self.runFor(0.2)
        shown = [states, repr(self.engine.registrations), repr(self.engine.config)]
        shown += [repr(event.asDict()) for event in self.events.events]
        shown += logs.lines
        self.assertGreater(len(logs.lines), 5)
        for text in shown:
            self.assertNotIn(PASSWORD, text)
            self.assertNotIn(AUTH_USER, text)


class ProxyTests(RegistrationTestsMixin, SynchronousTestCase):
    def test_throughProxy(self) -> None:
        """
        registerThroughProxy sends the REGISTERs to the outbound proxy with
        a Route naming it; the Request-URI and AOR stay the registrar's.
        Without it they go straight to the registrar again.
        """
        proxy = ScriptedRegistrar(self.reactor, PROXY, users=dict(self.users))
        self.addCleanup(proxy.port.stopListening)
        self.assertIs(self.engine.enableOutboundSipProxyServer(*PROXY), R.SipSuccess)
        self.register(proxy=True)
        self.assertEqual(self.sentToRegistrar(), 0)
        register = proxy.registers("alice")[-1]
        self.assertEqual(register.headers.get("Route"), "<sip:127.0.0.3:5070;lr>")
        self.assertEqual(str(register.uri), "sip:127.0.0.2")
        self.assertEqual(str(register.toAddr.uri), "sip:alice@127.0.0.2")
        [state] = self.engine.getRegistrationState()
        self.assertEqual((state["registrar"], state["outboundProxy"]), ("127.0.0.2:5060", "127.0.0.3:5070"))

        self.assertIs(self.enable(proxy=False), R.SipSuccess)
        self.runFor(0.1)
        self.assertEqual(proxy.registers("alice")[-1].expires, 0)
        self.assertEqual(self.registrar.bindings, {"alice": {"sip:alice@127.0.0.1:5060": 35}})
        self.assertIsNone(self.registrar.registers("alice")[-1].headers.get("Route"))

    def test_proxyFromConfig(self) -> None:
        """
        EngineConfig.outboundProxy is the initial outbound proxy; disabling
        it makes registerThroughProxy a bad parameter.
        """
        engine = self.makeEngine(host="127.0.0.5", outboundProxy=PROXY)
        proxy = ScriptedRegistrar(self.reactor, PROXY)
        self.addCleanup(proxy.port.stopListening)
        self.assertIs(self.enable(names=("carol",), proxy=True, engine=engine), R.SipSuccess)
        self.runFor(0.1)
        self.assertEqual(proxy.bindings, {"carol": {"sip:carol@127.0.0.5:5060": 35}})
        self.assertIs(engine.disableOutboundSipProxyServer(), R.SipSuccess)
        self.assertIs(self.enable(names=("carol",), proxy=True, engine=engine), R.SipBadParameter)
        self.assertRaises(ValueError, EngineConfig(outboundProxy=("127.0.0.3", 0)).validate)
        self.assertRaises(ValueError, EngineConfig(outboundProxy="127.0.0.3").validate)


class PhoneLineTests(RegistrationTestsMixin, SynchronousTestCase):
    def test_lineNames(self) -> None:
        """
        registerPhoneLines registers <user><line> for every line, its
        events carrying the line; listed names come first.
        """
        self.assertIs(self.enable(names=("carol",), lines=True), R.SipSuccess)
        lineOne = self.engine.whenEvent(E.SipRegisterSuccess, line=1)
        self.runFor(0.1)
        self.assertEqual(set(self.registrar.bindings), {"carol", "desk0", "desk1"})
        self.assertEqual(self.registrar.bindings["desk1"], {"sip:desk1@127.0.0.1:5060": 35})
        self.assertEqual(self.successResultOf(lineOne).details["name"], "desk1")
        self.assertEqual([(s["name"], s["line"]) for s in self.engine.getRegistrationState()],
                         [("carol", None), ("desk0", 0), ("desk1", 1)])

    def test_lineUsersConfig(self) -> None:
        """
        EngineConfig.lineUsers names the lines; it is checked.
        """
        engine = self.makeEngine(host="127.0.0.5", lineUsers=("front", "back"))
        self.assertIs(self.enable(names=[], lines=True, engine=engine), R.SipSuccess)
        self.runFor(0.1)
        self.assertEqual(set(self.registrar.bindings), {"front", "back"})
        for bad in (("front",), ("front", "front"), ("front", "b ack"), "ab"):
            self.assertRaises(ValueError, EngineConfig(lines=2, lineUsers=bad).validate)
        self.assertEqual(EngineConfig(user="pbx").lineUser(3), "pbx3")


class ResolutionTests(RegistrationTestsMixin, SynchronousTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.lookups: list[tuple[str, defer.Deferred[str]]] = []
        self.engine = self.makeEngine(host="127.0.0.5", resolve=self.resolve)
        self.engine.addObserver(self.events)

    def resolve(self, host: str) -> defer.Deferred[str]:
        d: defer.Deferred[str] = defer.Deferred()
        self.lookups.append((host, d))
        return d

    def test_registrarName(self) -> None:
        """
        A registrar host name is resolved without blocking; meanwhile the
        state says Resolving; the name is the AOR's domain.
        """
        self.assertIs(self.enable(host="registrar.test"), R.SipSuccess)
        self.assertEqual([s["state"] for s in self.engine.getRegistrationState()], ["Resolving"])
        [(host, lookup)] = self.lookups
        self.assertEqual(host, "registrar.test")
        self.assertEqual(self.sentToRegistrar(), 0)
        lookup.callback(REGISTRAR[0])
        [register] = [parse(d.data) for d in self.reactor.sentTo(REGISTRAR)]
        self.assertEqual(str(register.uri), "sip:registrar.test")
        self.assertEqual(str(register.toAddr.uri), "sip:alice@registrar.test")

    def test_resolutionFailureRetried(self) -> None:
        """
        A name that does not resolve is reported and tried again after
        retryIn; a later enable cancels the retry.
        """
        self.assertIs(self.enable(host="registrar.test"), R.SipSuccess)
        self.lookups[0][1].errback(DNSLookupError("no such name"))
        failure = self.events.last(E.SipRegisterResolutionFailure)
        self.assertIs(failure.result, R.SipResolutionFailure)
        self.assertEqual(failure.details["host"], "registrar.test")
        self.assertIn("no such name", failure.details["error"])
        self.runFor(failure.details["retryIn"] + 0.01, step=0.1)
        self.assertEqual(len(self.lookups), 2)
        self.lookups[1][1].callback("::1")  # the wrong family: a failure too
        self.assertEqual(len(self.events.named(E.SipRegisterResolutionFailure)), 2)
        self.assertEqual(self.engine.getRegistrationState()[0]["failures"], 2)
        self.assertIs(self.engine.disableSipRegisterServer(), R.SipSuccess)
        self.runFor(400, step=5)
        self.assertEqual(len(self.lookups), 2)
        self.assertEqual(self.sentToRegistrar(), 0)

    def test_staleResolutionIgnored(self) -> None:
        """
        An answer to the lookup of a replaced request is ignored.
        """
        self.assertIs(self.enable(host="registrar.test"), R.SipSuccess)
        self.assertIs(self.enable(host=REGISTRAR[0], names=("bob",)), R.SipSuccess)
        self.lookups[0][1].callback(REGISTRAR[0])
        self.runFor(0.1)
        self.assertEqual({r.toAddr.uri.user for r in self.registrar.registers()}, {"bob"})


class IncomingCallTests(RegistrationTestsMixin, SynchronousTestCase):
    def test_callToRegisteredName(self) -> None:
        """
        A call whose Request-URI is the contact registered for a name rings
        on a free line, and SipOkToAnswerCall names the called user.
        """
        self.register(names=("alice",))
        contact = self.engine.getRegistrationState()[0]["contact"]
        caller = self.makeEngine(host="127.0.0.6", user="caller")
        self.assertIs(caller.makeCallUri(0, contact), R.SipSuccess)
        self.runFor(0.1)
        ringing = self.events.last(E.SipOkToAnswerCall)
        self.assertEqual(ringing.line, 0)
        self.assertEqual(ringing.details, {"calledUser": "alice", "registered": True})
        self.assertIs(self.engine.goOffHook(0), R.SipSuccess)
        self.runFor(0.1)
        self.assertEqual(self.engine.getLineStatus(0).state, LineState.CONNECTED)
        self.assertEqual(caller.getLineStatus(0).state, LineState.CONNECTED)

    def test_callToOtherUser(self) -> None:
        """
        A call for a user that is not registered still rings (the engine
        answers any user); the event says so.
        """
        self.register(names=("alice",))
        caller = self.makeEngine(host="127.0.0.6", user="caller")
        self.assertIs(caller.makeCall(0, "someone", *LOCAL), R.SipSuccess)
        self.runFor(0.1)
        ringing = self.events.last(E.SipOkToAnswerCall)
        self.assertEqual(ringing.details, {"calledUser": "someone", "registered": False})
