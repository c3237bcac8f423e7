"""
The registration client against a real Kamailio (C{tests/kamailio/
kamailio.cfg}, driven by L{tests.peers.kamailio}): digest registration,
refreshes, 423 and a granted expiry shorter than asked, stale nonces,
un-registration, wrong passwords, NAT auto-detection, an incoming call
routed by Kamailio to the registered user (a SIPp caller), and NULL
keep-alives from the registration's own socket.

Each test runs its own Kamailio on a free loopback port and the lmevoip
side with L{listenSip} on the real reactor. Skipped without kamailio and
kamcmd (failed under C{LMEVOIP_REQUIRE_PEERS=1}).
"""

from __future__ import annotations

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from lmevoip.interfaces import IRegistrationObserver, IUserAgentObserver
from lmevoip.keepalive.null import NullKeepAliveService
from lmevoip.sip.registration import (
    RegistrationClient,
    RegistrationConfig,
    RegistrationEventName as E,
    RegistrationState as S,
)
from lmevoip.sip.transport import SipDatagramProtocol
from lmevoip.sip.useragent import UserAgent, UserAgentConfig, listenSip
from tests.peers.kamailio import REALM, TEST_USERS, Kamailio
from tests.peers.ports import LOOPBACK, freeUdpPort
from tests.support import requireTool


def sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


@implementer(IRegistrationObserver)
class Events:
    """Records registration events; waits for them."""

    def __init__(self):
        self.events = []
        self._waiters = []

    def registrationEvent(self, name, **fields):
        self.events.append((name, fields, reactor.seconds()))
        for waiter in list(self._waiters):
            wanted, count, d, timer = waiter
            if self.count(wanted) >= count:
                self._waiters.remove(waiter)
                timer.cancel()
                d.callback(fields)

    def count(self, name):
        return sum(1 for event, _, _ in self.events if event == name)

    def names(self):
        return [name for name, _, _ in self.events]

    def times(self, name, **match):
        """When the C{name} events whose fields include C{match} happened."""
        return [when for event, fields, when in self.events
                if event == name and all(fields.get(k) == v for k, v in match.items())]

    def waitFor(self, name, count=1, timeout=10.0):
        """A Deferred firing with the fields of the C{count}th C{name} event."""
        d = Deferred()
        if self.count(name) >= count:
            d.callback([f for event, f, _ in self.events if event == name][count - 1])
            return d

        def expire():
            self._waiters.remove(waiter)
            d.errback(AssertionError(f"no {count}x {name} within {timeout}s; got {self.names()}"))

        waiter = (name, count, d, reactor.callLater(timeout, expire))
        self._waiters.append(waiter)
        return d


@implementer(IUserAgentObserver)
class Answerer:
    """Answers every incoming call at once."""

    def __init__(self):
        self.calls = []
        self.addresses = []

    def incomingCall(self, call):
        self.calls.append(call)
        call.answer()

    def publicAddressDiscovered(self, host, port):
        self.addresses.append((host, port))


class KamailioRegistrationTests(TestCase):

    timeout = 40

    def setUp(self):
        requireTool("kamailio")
        requireTool("kamcmd")

    @inlineCallbacks
    def startKamailio(self, **kw):
        kamailio = Kamailio(self, **kw)
        yield kamailio.start()
        return kamailio

    def listen(self, user="lmevoip", observer=None):
        stack = listenSip(reactor, UserAgentConfig(host=LOOPBACK, port=0, user=user),
                          observer=observer)
        self.addCleanup(stack.stop)
        return stack

    def client(self, ua, kamailio, name="alice", password=None, **config):
        events = Events()
        settings = dict(registrarHost=kamailio.host, registrarPort=kamailio.port, name=name,
                        password=TEST_USERS[name] if password is None else password,
                        interval=30, timeoutMs=3000)
        settings.update(config)
        client = RegistrationClient(ua, RegistrationConfig(**settings), events)
        self.addCleanup(client.unregister)
        return client, events

    @inlineCallbacks
    def test_registerRefreshUnregister(self):
        """
        Digest registration (401, then credentials), refreshes every 2 s
        with the nonce re-used (one REGISTER each, CSeq + 1 in ul.dump),
        and un-registration removing the contact.
        """
        kamailio = yield self.startKamailio()
        stack = self.listen()
        client, events = self.client(stack.userAgent, kamailio, interval=2)
        client.register()
        success = yield events.waitFor(E.SipRegisterSuccess)
        self.assertEqual(success["expires"], 7)
        self.assertEqual(success["refreshIn"], 2)
        contact = f"sip:lmevoip@127.0.0.1:{stack.userAgent.config.port}"
        [binding] = yield kamailio.contacts("alice")
        self.assertEqual(binding.address, contact)
        self.assertEqual(binding.callId, client.callId)
        self.assertEqual(binding.cseq, 2)
        self.assertLessEqual(binding.expires, 7)
        self.assertEqual(binding.userAgent, "lmevoip")
        first, second = kamailio.registers("alice")
        self.assertFalse(first.authenticated)
        self.assertTrue(second.authenticated)
        self.assertEqual(first.source, ("127.0.0.1", stack.userAgent.config.port))

        # Two refreshes, 2 s apart, each one REGISTER (pre-emptive digest).
        yield events.waitFor(E.SipRegisterSuccess, count=3, timeout=8)
        [binding] = yield kamailio.contacts("alice")
        self.assertEqual(binding.cseq, 4)
        self.assertEqual(binding.callId, client.callId)
        registers = kamailio.registers("alice")
        self.assertEqual([r.cseq for r in registers], [1, 2, 3, 4])
        self.assertTrue(all(r.authenticated for r in registers[1:]))
        sent = events.times(E.SipRegisterSuccess)[:1] + events.times(E.SipRegisterTrying,
                                                                      why="refresh")
        gaps = [b - a for a, b in zip(sent, sent[1:])]
        self.assertEqual(len(gaps), 2)
        for gap in gaps:
            # The refresh timer's 2 s; the bounds only absorb scheduling.
            self.assertTrue(1.9 <= gap <= 3.0, gaps)

        result = yield client.unregister()
        self.assertEqual(result, E.SipUnregisterSuccess)
        self.assertIs(client.state, S.UNREGISTERED)
        self.assertEqual((yield kamailio.contacts("alice")), [])
        last = kamailio.registers("alice")[-1]
        self.assertEqual(last.expires, "0")
        self.assertEqual(last.cseq, 5)

    @inlineCallbacks
    def test_intervalTooBriefShortGrantStaleNonce(self):
        """
        SHA-256 challenges; 423 with Min-Expires 3 (we asked 2), then a
        grant of 3 s (max_expires) however long the interval, so refreshes
        every 1.5 s; a nonce living 2 s goes stale on the way and is
        answered without any bad-credentials report.
        """
        kamailio = yield self.startKamailio(defines={
            "KAM_SHA256": None, "KAM_MIN_EXPIRES": 3, "KAM_MAX_EXPIRES": 3,
            "KAM_NONCE_EXPIRE": 2})
        stack = self.listen()
        client, events = self.client(stack.userAgent, kamailio, name="bob", interval=30,
                                     expires=2)
        client.register()
        interval = yield events.waitFor(E.SipRegisterIntervalError)
        self.assertEqual((interval["asked"], interval["minExpires"]), (2, 3))
        success = yield events.waitFor(E.SipRegisterSuccess)
        self.assertEqual(success["expires"], 3)
        self.assertEqual(success["refreshIn"], 1.5)
        # Refreshes at 1.5 s, 3 s, 4.5 s: the nonce (2 s) goes stale.
        yield events.waitFor(E.SipRegisterSuccess, count=4, timeout=10)
        self.assertIn("code=-4", kamailio.output)  # Kamailio saw the stale nonce
        self.assertNotIn(E.SipRegisterBadCredentials, events.names())
        self.assertNotIn(E.SipRegisterAuthorizationError, events.names())
        [binding] = yield kamailio.contacts("bob")
        self.assertLessEqual(binding.expires, 3)
        registers = kamailio.registers("bob")
        self.assertEqual(registers[0].algorithm, "none")
        self.assertEqual({r.algorithm for r in registers[1:]}, {"SHA-256"})
        self.assertEqual(registers[0].expires, "2")
        self.assertEqual({r.expires for r in registers[2:]}, {"3"})

    @inlineCallbacks
    def test_wrongPasswordNoStorm(self):
        """Bad credentials: one report, two REGISTERs, then silence."""
        kamailio = yield self.startKamailio()
        stack = self.listen()
        client, events = self.client(stack.userAgent, kamailio, password="not-the-password",
                                     interval=30)
        client.register()
        bad = yield events.waitFor(E.SipRegisterBadCredentials)
        self.assertEqual((bad["status"], bad["realm"]), (401, REALM))
        self.assertGreaterEqual(bad["retryIn"], 30)
        yield sleep(3)
        self.assertEqual(len(kamailio.registers("alice")), 2)
        self.assertEqual(events.count(E.SipRegisterBadCredentials), 1)
        self.assertIs(client.state, S.BACKOFF)
        self.assertEqual((yield kamailio.contacts("alice")), [])
        # Nothing was bound, so there is nothing to un-register.
        self.assertIsNone((yield client.unregister()))
        self.assertEqual(len(kamailio.registers("alice")), 2)

    @inlineCallbacks
    def test_natAutoDetect(self):
        """
        A UA whose Via and Contact name 127.0.0.2 and a port nobody
        listens on, behind a socket on 127.0.0.1: Kamailio answers the
        source with received/rport; the client re-registers with that
        address and removes the unreachable contact.
        """
        kamailio = yield self.startKamailio()
        protocol = SipDatagramProtocol()
        port = reactor.listenUDP(0, protocol, interface=LOOPBACK)
        self.addCleanup(port.stopListening)
        realPort = port.getHost().port
        fakePort = freeUdpPort("127.0.0.2")
        ua = UserAgent(reactor, protocol.send,
                       UserAgentConfig(host="127.0.0.2", port=fakePort, user="lmevoip"))
        protocol.handler = ua
        self.addCleanup(ua.stop)
        client, events = self.client(ua, kamailio, name="carol")
        client.register()
        nat = yield events.waitFor(E.SipRegisterNatDetected)
        self.assertEqual((nat["host"], nat["port"]), ("127.0.0.1", realPort))
        self.assertEqual((nat["previousHost"], nat["previousPort"]), ("127.0.0.2", fakePort))
        success = yield events.waitFor(E.SipRegisterSuccess)
        self.assertEqual(success["contact"], f"sip:lmevoip@127.0.0.1:{realPort}")
        [binding] = yield kamailio.contacts("carol")
        self.assertEqual(binding.address, f"sip:lmevoip@127.0.0.1:{realPort}")
        self.assertEqual(binding.callId, client.callId)
        last = kamailio.registers("carol")[-1]
        self.assertIn(f"<sip:lmevoip@127.0.0.2:{fakePort}>;expires=0", last.contact)
        self.assertEqual(client.state, S.REGISTERED)

    @inlineCallbacks
    def test_incomingCallThroughKamailio(self):
        """
        SIPp calls alice at Kamailio; lookup("location") sends the INVITE
        to our registered contact; the UA answers; ACK and BYE follow the
        Record-Route through Kamailio.
        """
        requireTool("sipp")
        from tests.peers.sipp import Sipp
        kamailio = yield self.startKamailio()
        answerer = Answerer()
        stack = self.listen(observer=answerer)
        client, events = self.client(stack.userAgent, kamailio)
        client.register()
        yield events.waitFor(E.SipRegisterSuccess)
        caller = Sipp(self, "reg_uac_call", remote=kamailio.address, service="alice",
                      timeout=15)
        result = yield caller.run()
        self.assertEqual(result.exitCode, 0, result.describe())
        [call] = answerer.calls
        self.assertEqual(str(call.invite.uri), f"sip:lmevoip@127.0.0.1:{stack.userAgent.config.port}")
        self.assertEqual(str(call.invite.toAddr.uri), f"sip:alice@127.0.0.1:{kamailio.port}")
        self.assertEqual(call.invite.recordRoutes[0].uri.port, kamailio.port)
        # Our own in-dialog requests would go through Kamailio too.
        self.assertEqual([route.uri.port for route in call.dialog.routeSet], [kamailio.port])
        end = yield call.whenTerminated()
        self.assertEqual(end.reason.value, "remote-hangup")
        self.assertEqual(len(kamailio.routed("INVITE")), 1)
        self.assertEqual(result.counts.total("BYE", "Sent"), 1)

    @inlineCallbacks
    def test_nullKeepAliveFromRegistrationSocket(self):
        """
        NULL keep-alives (CRLF) to Kamailio leave the SIP socket that
        registered: Kamailio logs them from the registration's source
        address and port, and a capture on lo shows the same.
        """
        from tests.peers.tshark import TsharkCapture, runTshark
        kamailio = yield self.startKamailio(debug=3)
        stack = self.listen()
        sipPort = stack.userAgent.config.port
        capture = TsharkCapture(self, ports=[kamailio.port])
        yield capture.start()
        client, events = self.client(stack.userAgent, kamailio)
        client.register()
        yield events.waitFor(E.SipRegisterSuccess)
        keepAlive = NullKeepAliveService(stack.protocol.send, reactor)
        keepAlive.startService()
        self.addCleanup(keepAlive.stopService)
        keepAlive.sendSipKeepAlive(kamailio.host, kamailio.port, True, 0.4)
        yield sleep(1.5)
        keepAlive.sendSipKeepAlive(kamailio.host, kamailio.port, False, 0.4)
        pcap = yield capture.stop()

        registrationSources = {line.source for line in kamailio.registers("alice")}
        self.assertEqual(registrationSources, {("127.0.0.1", sipPort)})
        seenByKamailio = kamailio.keepAlives()
        self.assertGreaterEqual(len(seenByKamailio), 3)
        self.assertEqual(set(seenByKamailio), {("127.0.0.1", sipPort)})

        text = yield runTshark(["-r", str(pcap), "-Y",
                                f"udp.dstport == {kamailio.port} && udp.length == 10",
                                "-T", "fields", "-e", "udp.srcport", "-e", "udp.payload"])
        rows = [line.split("\t") for line in text.splitlines() if line.strip()]
        self.assertGreaterEqual(len(rows), 3)
        self.assertEqual({(int(port), payload) for port, payload in rows}, {(sipPort, "0d0a")})
        text = yield runTshark(["-r", str(pcap), "-Y",
                                f"sip.Method == \"REGISTER\" && udp.dstport == {kamailio.port}",
                                "-T", "fields", "-e", "udp.srcport"])
        self.assertEqual({int(port) for port in text.split()}, {sipPort})


# A real "kamcmd ul.dump" reply of the test Kamailio (two contacts, one AOR
# with a received address) and two log lines, for the harness's parsers.
UL_DUMP = """{
\tDomains: {
\t\tDomain: {
\t\t\tDomain: location
\t\t\tSize: 1024
\t\t\tAoRs: {
\t\t\t\tInfo: {
\t\t\t\t\tAoR: alice
\t\t\t\t\tHashID: 1834153949
\t\t\t\t\tContacts: {
\t\t\t\t\t\tContact: {
\t\t\t\t\t\t\tAddress: sip:alice@127.0.0.1:42991
\t\t\t\t\t\t\tExpires: 6
\t\t\t\t\t\t\tCall-ID: 1192f8ee6c7dea2ef77a20b0@127.0.0.1
\t\t\t\t\t\t\tCSeq: 3
\t\t\t\t\t\t\tUser-Agent: lmevoip
\t\t\t\t\t\t\tReceived: [not set]
\t\t\t\t\t\t}
\t\t\t\t\t\tContact: {
\t\t\t\t\t\t\tAddress: sip:lmevoip@127.0.0.2:5062
\t\t\t\t\t\t\tExpires: 50
\t\t\t\t\t\t\tCall-ID: other@127.0.0.2
\t\t\t\t\t\t\tCSeq: 9
\t\t\t\t\t\t\tUser-Agent: phone
\t\t\t\t\t\t\tReceived: sip:127.0.0.1:40000
\t\t\t\t\t\t}
\t\t\t\t\t}
\t\t\t\t}
\t\t\t\tInfo: {
\t\t\t\t\tAoR: bob
\t\t\t\t\tContacts: {
\t\t\t\t\t\tContact: {
\t\t\t\t\t\t\tAddress: sip:bob@127.0.0.1:5070
\t\t\t\t\t\t\tExpires: 20
\t\t\t\t\t\t}
\t\t\t\t\t}
\t\t\t\t}
\t\t\t}
\t\t\tStats: {
\t\t\t\tRecords: 2
\t\t\t}
\t\t}
\t}
}
"""

LOG = (
    ' 1(17110) NOTICE: <script>: {REGISTER 1 REGISTER abc} LMEVOIP-REGISTER src=127.0.0.1:49609'
    ' user=alice cseq=1 callid=abc expires=7 contact=<sip:alice@127.0.0.1:49609> auth=<null>'
    ' alg=none\n'
    ' 2(17111) NOTICE: <script>: {REGISTER 2 REGISTER abc} LMEVOIP-REGISTER src=127.0.0.1:49609'
    ' user=alice cseq=2 callid=abc expires=0 contact=<sip:a@127.0.0.1:1>;expires=0,'
    '<sip:a@127.0.0.2:2> auth=alice alg=SHA-256\n'
    ' 2(17111) DEBUG: <core> [core/udp_server.c:517]: udp_rcv_loop(): probing packet received'
    ' from 127.0.0.1 51649\n')


class KamailioHarnessParsingTests(SynchronousTestCase):
    """The harness's parsers, on captured output (no Kamailio needed)."""

    def test_usrloc(self):
        from tests.peers.kamailio import parseKamcmd, usrlocContacts
        contacts = usrlocContacts(parseKamcmd(UL_DUMP))
        self.assertEqual([(c.aor, c.address, c.expires, c.cseq) for c in contacts], [
            ("alice", "sip:alice@127.0.0.1:42991", 6, 3),
            ("alice", "sip:lmevoip@127.0.0.2:5062", 50, 9),
            ("bob", "sip:bob@127.0.0.1:5070", 20, -1)])
        self.assertEqual(contacts[0].callId, "1192f8ee6c7dea2ef77a20b0@127.0.0.1")
        self.assertIsNone(contacts[0].received)
        self.assertEqual(contacts[1].received, "sip:127.0.0.1:40000")
        self.assertEqual(contacts[1].userAgent, "phone")

    def test_emptyTable(self):
        from tests.peers.kamailio import parseKamcmd, usrlocContacts
        text = "{\n\tDomains: {\n\t\tDomain: {\n\t\t\tAoRs: {\n\t\t\t}\n\t\t}\n\t}\n}\n"
        self.assertEqual(usrlocContacts(parseKamcmd(text)), [])

    def test_unbalanced(self):
        from tests.peers.kamailio import KamailioError, parseKamcmd
        self.assertRaises(KamailioError, parseKamcmd, "{\n\tA: {\n\t\tB: 1\n}\n")
        self.assertRaises(KamailioError, parseKamcmd, "A: 1\n}\n")

    def test_registerLog(self):
        from tests.peers.kamailio import parseRegisterLog
        first, second = parseRegisterLog(LOG)
        self.assertEqual((first.source, first.user, first.cseq, first.callId, first.expires),
                         (("127.0.0.1", 49609), "alice", 1, "abc", "7"))
        self.assertFalse(first.authenticated)
        self.assertEqual(first.algorithm, "none")
        self.assertTrue(second.authenticated)
        self.assertEqual(second.algorithm, "SHA-256")
        self.assertEqual(second.contact, "<sip:a@127.0.0.1:1>;expires=0,<sip:a@127.0.0.2:2>")

    def test_keepAlivePortByteOrder(self):
        """Kamailio 5.6 logs 49609 (0xC1C9) as 51649 (0xC9C1) on little-endian hosts."""
        import sys
        from tests.peers.kamailio import Kamailio

        class Logged:
            output = LOG
        sources = Kamailio.keepAlives(Logged())
        expected = 49609 if sys.byteorder == "little" else 51649
        self.assertEqual(sources, [("127.0.0.1", expected)])
