"""
Tests for L{lmevoip.sip.registration}: the REGISTER flow of one
address-of-record against a scripted registrar, on a L{task.Clock}, through
a real L{UserAgent} whose socket is a fake datagram transport.

The scripted registrar checks digest answers with its own arithmetic
(hashlib, RFC 7616 section 3.4.1), not with L{lmevoip.sip.auth}.
"""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from lmevoip.interfaces import IRegistrationClient, IRegistrationObserver
from lmevoip.sip.auth import Challenge, Credentials
from lmevoip.sip.message import Request, Response, makeResponse, parse
from lmevoip.sip.registration import (
    MAX_NAT_RETRIES,
    REFRESH_MARGIN,
    TRANSITIONS,
    Backoff,
    RegistrationClient,
    RegistrationConfig,
    RegistrationConfigError,
    RegistrationEventName as E,
    RegistrationState as S,
    refreshDelay,
)
from lmevoip.sip.transaction import stampVia
from lmevoip.sip.transport import SipDatagramProtocol
from lmevoip.sip.useragent import UserAgent, UserAgentConfig

REGISTRAR = ("192.0.2.50", 5060)
LOCAL = ("192.0.2.10", 5062)
REALM = "registrar.test"
PASSWORD = "s3cret-pass"
AUTH_USER = "alice-auth"


@implementer(IRegistrationObserver)
class Recorder:
    """Records every registration event as (name, fields)."""

    def __init__(self):
        self.events = []

    def registrationEvent(self, name, **fields):
        self.events.append((name, fields))

    def names(self):
        return [name for name, _ in self.events]

    def last(self, name):
        found = [fields for event, fields in self.events if event == name]
        return found[-1]


def _hash(algorithm, text):
    name = {"MD5": "md5", "SHA-256": "sha256"}[algorithm]
    return hashlib.new(name, text.encode()).hexdigest()


def verifyCredentials(value, method, password, challenge):
    """
    Recompute a Digest response (RFC 7616 3.4.1, qop=auth or none) and
    check it and the echoed challenge fields.
    """
    c = Credentials.parse(value)
    algorithm = c.algorithm
    if c.realm != challenge.realm or c.nonce != challenge.nonce:
        return False
    if algorithm.upper() != (challenge.algorithm or "MD5").upper():
        return False
    ha1 = _hash(algorithm, f"{c.username}:{c.realm}:{password}")
    ha2 = _hash(algorithm, f"{method}:{c.uri}")
    if c.qop == "auth":
        expected = _hash(algorithm, f"{ha1}:{c.nonce}:{c.params['nc']}:{c.cnonce}:auth:{ha2}")
    else:
        expected = _hash(algorithm, f"{ha1}:{c.nonce}:{ha2}")
    return expected == c.response


class Harness:
    """
    A user agent on a fake datagram transport, a registration client on
    it, and helpers to answer its REGISTERs as a registrar would.
    """

    def __init__(self, test, random=lambda: 0.5, uaConfig=None, **config):
        self.test = test
        self.clock = Clock()
        self.protocol = SipDatagramProtocol()
        self.transport = FakeDatagramTransport()
        self.protocol.makeConnection(self.transport)
        self.uaConfig = uaConfig or UserAgentConfig(host=LOCAL[0], port=LOCAL[1], user="lmevoip")
        self.ua = UserAgent(self.clock, self.protocol.send, self.uaConfig)
        self.protocol.handler = self.ua
        self.recorder = Recorder()
        settings = dict(registrarHost=REGISTRAR[0], name="alice", domain="example.test",
                        password=PASSWORD, authUsername=AUTH_USER, interval=60,
                        timeoutMs=4000)
        settings.update(config)
        self.config = RegistrationConfig(**settings)
        self.client = RegistrationClient(self.ua, self.config, self.recorder, random=random)
        self.nonces = 0

    def take(self):
        """The datagrams sent since the last call: [(message, addr)]."""
        sent, self.transport.written[:] = list(self.transport.written), []
        return [(parse(data), addr) for data, addr in sent]

    def takeRegister(self, destination=REGISTRAR):
        """The one REGISTER sent since the last call."""
        sent = self.take()
        self.test.assertEqual(len(sent), 1, [m.serialize()[:60] for m, _ in sent])
        message, addr = sent[0]
        self.test.assertEqual(message.method, "REGISTER")
        self.test.assertEqual(addr, destination)
        return message

    def respond(self, request, status, source=REGISTRAR, headers=(), contactExpires="asked",
                reason=None):
        """
        Answer C{request} as a registrar at C{source} would: the Via
        stamped with the source we saw (received/rport), a To tag, and for
        a 2xx the Contact with its expires.
        """
        stamped = Request(request.method, request.uri, request.headers.copy())
        stampVia(stamped, *self.seenFrom)
        response = makeResponse(stamped, status, reason, toTag="regtag")
        if 200 <= status < 300 and contactExpires is not None:
            for contact in request.contacts:
                expires = contact.expires
                if expires is None:
                    expires = request.expires
                if contactExpires != "asked":
                    expires = contactExpires if expires else 0
                if expires:
                    response.headers.add("Contact", f"<{contact.uri}>;expires={expires}")
        for name, value in headers:
            response.headers.add(name, value)
        self.protocol.datagramReceived(response.serialize(), source)
        return response

    #: Where the registrar sees our datagrams come from (no NAT by default).
    seenFrom = LOCAL

    def challenge(self, request, algorithm="MD5", qop=("auth",), stale=False, status=401):
        self.nonces += 1
        challenge = Challenge.digest(REALM, f"nonce{self.nonces}", algorithm=algorithm,
                                     qop=qop, stale=stale, opaque="op4que")
        name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
        self.respond(request, status, headers=[(name, str(challenge))])
        return challenge

    def registerWithAuth(self, algorithm="MD5"):
        """Run the first REGISTER through a 401 to a 200; return the two requests."""
        self.client.register()
        first = self.takeRegister()
        challenge = self.challenge(first, algorithm)
        second = self.takeRegister()
        self.test.assertTrue(verifyCredentials(second.headers.get("Authorization"),
                                               "REGISTER", PASSWORD, challenge))
        self.respond(second, 200)
        return first, second

    def sentCount(self):
        return len(self.transport.written)


class InterfaceTests(SynchronousTestCase):

    def test_interfaces(self):
        h = Harness(self)
        self.assertTrue(verifyObject(IRegistrationClient, h.client))
        self.assertTrue(verifyObject(IRegistrationObserver, h.recorder))

    def test_transitionsTableIsClosed(self):
        """Every state has an entry, and every move leads to a state."""
        self.assertEqual(set(TRANSITIONS), set(S))
        for targets in TRANSITIONS.values():
            self.assertLessEqual(targets, set(S))

    def test_illegalMoveRefused(self):
        h = Harness(self)
        self.assertRaises(RuntimeError, h.client._setState, S.REGISTERED)
        self.assertIs(h.client.state, S.UNREGISTERED)


class ConfigTests(SynchronousTestCase):

    def test_defaults(self):
        config = RegistrationConfig("192.0.2.50", "alice")
        self.assertEqual(config.registrarPort, 5060)
        self.assertEqual(config.interval, 300.0)
        self.assertEqual(config.askedExpires, 300 + int(REFRESH_MARGIN))
        self.assertTrue(config.natAutoDetect)

    def test_explicitExpires(self):
        self.assertEqual(RegistrationConfig("192.0.2.50", "alice", expires=90).askedExpires, 90)

    def test_badValues(self):
        bad = [dict(name=""), dict(name="a b"), dict(registrarPort=0), dict(registrarPort=70000),
               dict(registrarPort=True), dict(interval=0), dict(interval=float("nan")),
               dict(expires=0), dict(expires=2 ** 32), dict(timeoutMs=0),
               dict(outboundProxy=("192.0.2.1",)), dict(outboundProxy=("192.0.2.1", 0)),
               dict(registrarHost=""), dict(registrarHost="registrar.example.test"),
               dict(outboundProxy=("proxy.example.test", 5060)),
               dict(authUsername=""), dict(displayName="a\nb")]
        for changes in bad:
            settings = dict(registrarHost="192.0.2.50", name="alice")
            settings.update(changes)
            with self.assertRaises(RegistrationConfigError, msg=repr(changes)) as caught:
                RegistrationConfig(**settings)
            self.assertIsInstance(caught.exception, ValueError)

    def test_badBackoff(self):
        for changes in (dict(initial=0), dict(factor=0.5), dict(maximum=1, initial=2),
                        dict(jitter=1.0), dict(jitter=-0.1)):
            self.assertRaises(RegistrationConfigError, Backoff, **changes)

    def test_passwordHidden(self):
        config = RegistrationConfig("192.0.2.50", "alice", password=PASSWORD,
                                    authUsername=AUTH_USER)
        self.assertNotIn(PASSWORD, repr(config))
        self.assertNotIn(AUTH_USER, repr(config))


class RefreshDelayTests(SynchronousTestCase):

    def test_table(self):
        self.assertEqual(refreshDelay(60, 65), 60)       # granted what we asked
        self.assertEqual(refreshDelay(600, 60), 55)      # granted less: margin before expiry
        self.assertEqual(refreshDelay(600, 4), 2)        # short grant: half of it
        self.assertEqual(refreshDelay(600, 0.5), 0.5)    # never below the floor
        self.assertEqual(refreshDelay(2, 7), 2)

    @given(st.floats(1, 1e6), st.integers(1, 2 ** 32 - 1))
    def test_beforeExpiry(self, interval, granted):
        delay = refreshDelay(interval, granted)
        self.assertLessEqual(delay, interval)
        if granted >= 1:
            self.assertLess(delay, granted)
        self.assertGreaterEqual(delay, 0.5)


class BackoffTests(SynchronousTestCase):

    def test_growthAndCap(self):
        backoff = Backoff(initial=2, factor=2, maximum=30, jitter=0)
        self.assertEqual([backoff.delay(n, lambda: 0.3) for n in range(1, 7)],
                         [2, 4, 8, 16, 30, 30])

    def test_jitterBounds(self):
        backoff = Backoff(initial=2, factor=2, maximum=300, jitter=0.25)
        self.assertEqual(backoff.delay(3, lambda: 0.0), 8)
        self.assertAlmostEqual(backoff.delay(3, lambda: 0.999999), 6.0, places=4)

    @given(st.integers(1, 10_000), st.floats(0, 1, exclude_max=True),
           st.floats(0.01, 10), st.floats(1, 4), st.floats(0, 0.99))
    def test_bounded(self, failures, draw, initial, factor, jitter):
        backoff = Backoff(initial=initial, factor=factor, maximum=initial * 50, jitter=jitter)
        delay = backoff.delay(failures, lambda: draw)
        ceiling = backoff.ceiling(failures)
        self.assertLessEqual(delay, ceiling)
        self.assertLessEqual(ceiling, backoff.maximum)
        self.assertGreaterEqual(delay, ceiling * (1 - jitter) - 1e-9)


class RegisterMessageTests(SynchronousTestCase):

    def test_exactHeaders(self):
        """The first REGISTER, header by header (RFC 3261 10.2)."""
        h = Harness(self)
        h.client.register()
        register = h.takeRegister()
        self.assertEqual(str(register.uri), "sip:example.test")
        names = [name for name, _ in register.headers]
        self.assertEqual(names, ["Via", "Max-Forwards", "From", "To", "Call-ID", "CSeq",
                                 "Contact", "Expires", "Allow", "User-Agent", "Content-Length"])
        via = register.topVia
        self.assertEqual((via.host, via.port), LOCAL)
        self.assertTrue(via.hasRport)
        self.assertTrue(via.branch.startswith("z9hG4bK"))
        self.assertEqual(register.maxForwards, 70)
        self.assertEqual(str(register.fromAddr.uri), "sip:alice@example.test")
        self.assertEqual(register.fromAddr.tag, h.client.fromTag)
        self.assertEqual(register.headers.get("To"), "<sip:alice@example.test>")
        self.assertEqual(register.callId, h.client.callId)
        self.assertEqual((register.cseq.seq, register.cseq.method), (1, "REGISTER"))
        self.assertEqual(register.headers.getAll("Contact"), ["<sip:lmevoip@192.0.2.10:5062>"])
        self.assertEqual(register.expires, 60 + int(REFRESH_MARGIN))
        self.assertEqual(register.headers.getAll("Allow"), ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"])
        self.assertEqual(register.headers.get("User-Agent"), "lmevoip")
        self.assertNotIn("Authorization", register.headers)
        self.assertEqual(register.body, b"")
        self.assertIs(h.client.state, S.REGISTERING)
        self.assertEqual(h.recorder.names(), [E.SipRegisterTrying])
        trying = h.recorder.last(E.SipRegisterTrying)
        self.assertEqual(trying["why"], "initial")
        self.assertEqual(trying["cseq"], 1)
        self.assertEqual(trying["aor"], "sip:alice@example.test")

    def test_registrarAddressIsDomain(self):
        """Without a domain, the AOR is at the registrar and the URI has its port."""
        h = Harness(self, domain=None, registrarPort=5080, displayName="Alice A")
        h.client.register()
        register = h.takeRegister(destination=(REGISTRAR[0], 5080))
        self.assertEqual(str(register.uri), "sip:192.0.2.50:5080")
        self.assertEqual(register.headers.get("To"), '"Alice A" <sip:alice@192.0.2.50>')
        self.assertEqual(register.toAddr.displayName, "Alice A")

    def test_outboundProxy(self):
        proxy = ("192.0.2.60", 5070)
        h = Harness(self, outboundProxy=proxy)
        h.client.register()
        register = h.takeRegister(destination=proxy)
        self.assertEqual(register.headers.getAll("Route"), ["<sip:192.0.2.60:5070;lr>"])
        self.assertEqual(str(register.uri), "sip:example.test")

    def test_contactUser(self):
        h = Harness(self, contactUser="alice-phone")
        h.client.register()
        register = h.takeRegister()
        self.assertEqual(str(register.contacts[0].uri), "sip:alice-phone@192.0.2.10:5062")

    def test_ipv6(self):
        h = Harness(self, registrarHost="2001:db8::50",
                    uaConfig=UserAgentConfig(host="2001:db8::10", port=5062, user="lmevoip"))
        h.client.register()
        register = h.takeRegister(destination=("2001:db8::50", 5060))
        self.assertEqual(register.headers.getAll("Contact"), ["<sip:lmevoip@[2001:db8::10]:5062>"])
        self.assertEqual(register.topVia.host, "2001:db8::10")

    def test_callIdConstantCSeqIncrements(self):
        """One flow: the same Call-ID and From tag, CSeq + 1 per REGISTER."""
        h = Harness(self)
        first, second = h.registerWithAuth()
        h.clock.advance(60)
        third = h.takeRegister()
        h.respond(third, 200)
        h.clock.advance(60)
        fourth = h.takeRegister()
        requests = [first, second, third, fourth]
        self.assertEqual({r.callId for r in requests}, {h.client.callId})
        self.assertEqual({r.fromAddr.tag for r in requests}, {h.client.fromTag})
        self.assertEqual([r.cseq.seq for r in requests], [1, 2, 3, 4])
        self.assertEqual(len({r.topVia.branch for r in requests}), 4)


class RefreshTests(SynchronousTestCase):

    def test_refreshEveryInterval(self):
        """Granted what we asked: a REGISTER every interval, exactly."""
        h = Harness(self, password=None)
        h.client.register()
        h.respond(h.takeRegister(), 200)
        self.assertIs(h.client.state, S.REGISTERED)
        success = h.recorder.last(E.SipRegisterSuccess)
        self.assertEqual((success["expires"], success["refreshIn"]), (65, 60))
        self.assertEqual(h.client.grantedExpires, 65)
        self.assertEqual(h.client.bindingExpiresAt, 65)
        self.assertTrue(h.client.isRegistered)
        h.clock.advance(59.9)
        self.assertEqual(h.sentCount(), 0)
        h.clock.advance(0.1)
        refresh = h.takeRegister()
        self.assertIs(h.client.state, S.REFRESHING)
        self.assertEqual(h.recorder.last(E.SipRegisterTrying)["why"], "refresh")
        h.respond(refresh, 200)
        h.clock.advance(60)
        h.respond(h.takeRegister(), 200)
        self.assertEqual(h.client.cseq, 3)

    def test_grantedShorterThanInterval(self):
        """The registrar grants 40 s of the 605 asked: refresh at 35 s."""
        h = Harness(self, password=None, interval=600)
        h.client.register()
        h.respond(h.takeRegister(), 200, contactExpires=40)
        self.assertEqual(h.recorder.last(E.SipRegisterSuccess)["refreshIn"], 35)
        h.clock.advance(34.9)
        self.assertEqual(h.sentCount(), 0)
        h.clock.advance(0.1)
        refresh = h.takeRegister()
        self.assertEqual(refresh.expires, 605)  # we keep asking for what we want

    def test_veryShortGrant(self):
        h = Harness(self, password=None, interval=600)
        h.client.register()
        h.respond(h.takeRegister(), 200, contactExpires=4)
        self.assertEqual(h.recorder.last(E.SipRegisterSuccess)["refreshIn"], 2)
        h.clock.advance(2)
        self.assertEqual(h.takeRegister().cseq.seq, 2)

    def test_expiresHeaderWhenContactHasNone(self):
        h = Harness(self, password=None, interval=600)
        h.client.register()
        h.respond(h.takeRegister(), 200, contactExpires=None, headers=[("Expires", "30")])
        self.assertEqual(h.client.grantedExpires, 30)
        self.assertEqual(h.recorder.last(E.SipRegisterSuccess)["refreshIn"], 25)

    def test_ourContactAmongOthers(self):
        """Other devices' bindings in the 200 do not decide our expiry."""
        h = Harness(self, password=None, interval=600)
        h.client.register()
        h.respond(h.takeRegister(), 200, contactExpires=100, headers=[
            ("Contact", "<sip:alice@198.51.100.7:5060>;expires=9"),
            ("Expires", "3600")])
        self.assertEqual(h.client.grantedExpires, 100)

    def test_zeroGrantIsAFailure(self):
        """A 2xx that does not keep our contact is no success (and no storm)."""
        h = Harness(self, password=None)
        h.client.register()
        h.respond(h.takeRegister(), 200, contactExpires=None, headers=[("Expires", "0")])
        self.assertIs(h.client.state, S.BACKOFF)
        rejected = h.recorder.last(E.SipRegisterRejected)
        self.assertGreaterEqual(rejected["retryIn"], 60)


class IntervalTooBriefTests(SynchronousTestCase):

    def test_423RetriesWithMinExpires(self):
        h = Harness(self, password=None, expires=30, interval=20)
        h.client.register()
        first = h.takeRegister()
        h.respond(first, 423, headers=[("Min-Expires", "120")])
        second = h.takeRegister()
        self.assertEqual(second.expires, 120)
        self.assertEqual(second.cseq.seq, first.cseq.seq + 1)
        self.assertEqual(second.callId, first.callId)
        error = h.recorder.last(E.SipRegisterIntervalError)
        self.assertEqual((error["asked"], error["minExpires"], error["retrying"]), (30, 120, True))
        h.respond(second, 200)
        self.assertIs(h.client.state, S.REGISTERED)
        self.assertEqual(h.recorder.names(), [E.SipRegisterTrying, E.SipRegisterIntervalError,
                                              E.SipRegisterTrying, E.SipRegisterSuccess])
        self.assertEqual(h.recorder.last(E.SipRegisterSuccess)["refreshIn"], 20)
        h.clock.advance(20)
        self.assertEqual(h.takeRegister().expires, 120)  # remembered for refreshes

    def test_423WithoutUsableMinExpires(self):
        """No Min-Expires (or not above what we asked): no retry storm."""
        for headers in ([], [("Min-Expires", "10")], [("Min-Expires", "soon")]):
            h = Harness(self, password=None, expires=30)
            h.client.register()
            h.respond(h.takeRegister(), 423, headers=headers)
            self.assertEqual(h.sentCount(), 0)
            self.assertIs(h.client.state, S.BACKOFF)
            error = h.recorder.last(E.SipRegisterIntervalError)
            self.assertFalse(error["retrying"])
            self.assertGreaterEqual(error["retryIn"], 60)

    def test_423Bounded(self):
        h = Harness(self, password=None, expires=30)
        h.client.register()
        for minExpires in (60, 120, 240):
            h.respond(h.takeRegister(), 423, headers=[("Min-Expires", str(minExpires))])
        self.assertEqual(h.sentCount(), 0)
        self.assertIs(h.client.state, S.BACKOFF)


class DigestTests(SynchronousTestCase):

    def test_401Md5(self):
        h = Harness(self)
        first, second = h.registerWithAuth("MD5")
        credentials = Credentials.parse(second.headers.get("Authorization"))
        self.assertEqual(credentials.username, AUTH_USER)
        self.assertEqual(credentials.uri, "sip:example.test")
        self.assertEqual(credentials.qop, "auth")
        self.assertEqual(credentials.opaque, "op4que")
        self.assertEqual(second.cseq.seq, 2)
        self.assertNotEqual(second.topVia.branch, first.topVia.branch)
        self.assertEqual(second.headers.getAll("Contact"), first.headers.getAll("Contact"))
        self.assertIs(h.client.state, S.REGISTERED)
        # The authenticated re-send is not a new attempt.
        self.assertEqual(h.recorder.names(), [E.SipRegisterTrying, E.SipRegisterSuccess])

    def test_401Sha256(self):
        h = Harness(self)
        first, second = h.registerWithAuth("SHA-256")
        credentials = Credentials.parse(second.headers.get("Authorization"))
        self.assertEqual(credentials.algorithm, "SHA-256")
        self.assertIs(h.client.state, S.REGISTERED)

    def test_407(self):
        h = Harness(self)
        h.client.register()
        challenge = h.challenge(h.takeRegister(), status=407)
        second = h.takeRegister()
        self.assertNotIn("Authorization", second.headers)
        self.assertTrue(verifyCredentials(second.headers.get("Proxy-Authorization"),
                                          "REGISTER", PASSWORD, challenge))
        h.respond(second, 200)
        self.assertIs(h.client.state, S.REGISTERED)

    def test_refreshReusesNonce(self):
        """Pre-emptive credentials on refreshes: nonce count 2, no 401."""
        h = Harness(self)
        h.registerWithAuth()
        h.clock.advance(60)
        refresh = h.takeRegister()
        credentials = Credentials.parse(refresh.headers.get("Authorization"))
        self.assertEqual((credentials.nonce, credentials.nc), ("nonce1", 2))
        challenge = Challenge.digest(REALM, "nonce1", qop=("auth",), opaque="op4que")
        self.assertTrue(verifyCredentials(refresh.headers.get("Authorization"), "REGISTER",
                                          PASSWORD, challenge))

    def test_staleNonce(self):
        """stale=true: answered at once with the new nonce, still a success."""
        h = Harness(self)
        h.registerWithAuth()
        h.clock.advance(60)
        refresh = h.takeRegister()
        challenge = h.challenge(refresh, stale=True)
        retry = h.takeRegister()
        self.assertTrue(verifyCredentials(retry.headers.get("Authorization"), "REGISTER",
                                          PASSWORD, challenge))
        self.assertEqual(Credentials.parse(retry.headers.get("Authorization")).nc, 1)
        h.respond(retry, 200)
        self.assertIs(h.client.state, S.REGISTERED)
        self.assertNotIn(E.SipRegisterBadCredentials, h.recorder.names())

    def test_staleNonceWithoutPreemptive(self):
        h = Harness(self, preemptiveAuth=False)
        h.registerWithAuth()
        h.clock.advance(60)
        refresh = h.takeRegister()
        self.assertNotIn("Authorization", refresh.headers)
        challenge = h.challenge(refresh)
        retry = h.takeRegister()
        self.assertTrue(verifyCredentials(retry.headers.get("Authorization"), "REGISTER",
                                          PASSWORD, challenge))

    def test_badCredentialsNoStorm(self):
        """
        A fresh challenge to a fresh answer: bad credentials, reported once,
        and the next attempt only one interval later (two REGISTERs per
        interval, never more).
        """
        h = Harness(self, password="wrong", interval=30)
        h.client.register()
        sentAt = []
        for attempt in range(3):
            first = h.takeRegister()
            sentAt.append(h.clock.seconds())
            h.challenge(first)
            second = h.takeRegister()
            h.challenge(second)
            self.assertEqual(h.sentCount(), 0)
            self.assertIs(h.client.state, S.BACKOFF)
            bad = h.recorder.last(E.SipRegisterBadCredentials)
            self.assertEqual((bad["status"], bad["realm"]), (401, REALM))
            self.assertGreaterEqual(bad["retryIn"], 30)
            self.assertEqual(bad["state"], "Backoff")
            # Nothing at all until the retry is due.
            h.clock.advance(bad["retryIn"] - 0.01)
            self.assertEqual(h.sentCount(), 0)
            h.clock.advance(0.02)
        self.assertEqual(h.recorder.names().count(E.SipRegisterBadCredentials), 3)
        gaps = [later - earlier for earlier, later in zip(sentAt, sentAt[1:])]
        self.assertTrue(all(gap >= 30 for gap in gaps), gaps)

    def test_noPassword(self):
        h = Harness(self, password=None)
        h.client.register()
        h.challenge(h.takeRegister())
        self.assertEqual(h.sentCount(), 0)
        error = h.recorder.last(E.SipRegisterAuthorizationError)
        self.assertEqual((error["status"], error["reason"]), (401, "no-credentials"))
        self.assertIs(h.client.state, S.BACKOFF)

    def test_unsupportedAlgorithm(self):
        h = Harness(self)
        h.client.register()
        register = h.takeRegister()
        h.respond(register, 401, headers=[
            ("WWW-Authenticate", f'Digest realm="{REALM}", nonce="n", algorithm=AKAv1-MD5')])
        self.assertEqual(h.sentCount(), 0)
        self.assertEqual(h.recorder.last(E.SipRegisterAuthorizationError)["reason"], "unsupported")

    def test_malformedChallenge(self):
        h = Harness(self)
        h.client.register()
        h.respond(h.takeRegister(), 401, headers=[("WWW-Authenticate", 'Digest realm="x", nonce')])
        self.assertEqual(h.sentCount(), 0)
        self.assertEqual(h.recorder.last(E.SipRegisterAuthorizationError)["reason"], "malformed")


class NatTests(SynchronousTestCase):

    PUBLIC = ("203.0.113.7", 40000)

    def natHarness(self, **config):
        h = Harness(self, password=None, **config)
        h.seenFrom = self.PUBLIC
        return h

    def test_reRegistersWithPublicAddress(self):
        h = self.natHarness()
        h.client.register()
        first = h.takeRegister()
        h.respond(first, 200)
        nat = h.recorder.last(E.SipRegisterNatDetected)
        self.assertEqual((nat["host"], nat["port"]), self.PUBLIC)
        self.assertEqual((nat["previousHost"], nat["previousPort"]), LOCAL)
        second = h.takeRegister()
        self.assertEqual(second.headers.getAll("Contact"),
                         ["<sip:lmevoip@203.0.113.7:40000>", "<sip:lmevoip@192.0.2.10:5062>;expires=0"])
        self.assertEqual(second.expires, 65)
        self.assertEqual(second.cseq.seq, 2)
        self.assertEqual(second.callId, first.callId)
        h.respond(second, 200)
        self.assertEqual(h.sentCount(), 0)  # settled: no third REGISTER
        self.assertIs(h.client.state, S.REGISTERED)
        self.assertEqual(h.client.publicAddress, self.PUBLIC)
        self.assertEqual(h.recorder.names(), [
            E.SipRegisterTrying, E.SipRegisterNatDetected, E.SipRegisterTrying,
            E.SipRegisterSuccess])
        self.assertEqual(h.recorder.last(E.SipRegisterSuccess)["contact"],
                         "sip:lmevoip@203.0.113.7:40000")
        h.clock.advance(60)
        refresh = h.takeRegister()
        self.assertEqual(refresh.headers.getAll("Contact"), ["<sip:lmevoip@203.0.113.7:40000>"])

    def test_disabled(self):
        h = self.natHarness(natAutoDetect=False, uaConfig=UserAgentConfig(
            host=LOCAL[0], port=LOCAL[1], user="lmevoip", learnPublicAddress=False))
        h.client.register()
        h.respond(h.takeRegister(), 200)
        self.assertEqual(h.sentCount(), 0)
        self.assertNotIn(E.SipRegisterNatDetected, h.recorder.names())
        self.assertIsNone(h.client.publicAddress)

    def test_rportOnly(self):
        """Same host, another port (a port-translating NAT)."""
        h = self.natHarness()
        h.seenFrom = (LOCAL[0], 6000)
        h.client.register()
        h.respond(h.takeRegister(), 200)
        second = h.takeRegister()
        self.assertEqual(str(second.contacts[0].uri), "sip:lmevoip@192.0.2.10:6000")

    def test_bounded(self):
        """A NAT that gives a new port every time cannot make us loop."""
        h = self.natHarness()
        h.client.register()
        for port in range(41000, 41000 + MAX_NAT_RETRIES + 1):
            h.seenFrom = (self.PUBLIC[0], port)
            h.respond(h.takeRegister(), 200)
        self.assertEqual(h.sentCount(), 0)
        self.assertIs(h.client.state, S.REGISTERED)
        self.assertEqual(h.recorder.names().count(E.SipRegisterNatDetected), MAX_NAT_RETRIES)

    def test_oldContactsRemovedOnUnregister(self):
        """If the NAT re-REGISTER is lost, un-registration removes both contacts."""
        h = self.natHarness()
        h.client.register()
        h.respond(h.takeRegister(), 200)
        h.take()  # the NAT re-REGISTER, never answered
        d = h.client.unregister()
        unregister = h.takeRegister()
        self.assertEqual(sorted(unregister.headers.getAll("Contact")), [
            "<sip:lmevoip@192.0.2.10:5062>;expires=0",
            "<sip:lmevoip@203.0.113.7:40000>;expires=0"])
        h.respond(unregister, 200)
        self.assertEqual(self.successResultOf(d), E.SipUnregisterSuccess)


class FailureTests(SynchronousTestCase):

    def test_timeoutMsThenBackoffWithJitter(self):
        h = Harness(self, password=None, timeoutMs=4000,
                    backoff=Backoff(initial=2, factor=2, maximum=300, jitter=0.25))
        h.client.register()
        h.takeRegister()
        h.clock.advance(3.99)
        h.take()  # retransmissions (Timer E)
        self.assertIs(h.client.state, S.REGISTERING)
        h.clock.advance(0.01)
        self.assertIs(h.client.state, S.BACKOFF)
        timeout = h.recorder.last(E.SipRegisterTimeout)
        self.assertEqual(timeout["retryIn"], 2 * (1 - 0.25 * 0.5))
        # The abandoned transaction is gone: no more retransmissions.
        self.assertEqual(len(h.ua.transactions), 0)
        h.clock.advance(1.74)
        self.assertEqual(h.sentCount(), 0)
        h.clock.advance(0.01)
        retry = h.takeRegister()
        self.assertEqual(h.recorder.last(E.SipRegisterTrying)["why"], "retry")
        h.clock.advance(4)
        h.take()
        self.assertEqual(h.recorder.last(E.SipRegisterTimeout)["retryIn"], 4 * (1 - 0.25 * 0.5))
        self.assertEqual(h.client.failures, 2)
        h.clock.advance(3.5)
        h.respond(h.takeRegister(), 200)
        self.assertEqual(h.client.failures, 0)
        self.assertIs(h.client.state, S.REGISTERED)
        self.assertIsNot(retry, None)

    def test_jitterDrawsDiffer(self):
        """Two clients with different draws spread their retries."""
        delays = []
        for draw in (0.0, 0.99):
            h = Harness(self, password=None, random=lambda draw=draw: draw)
            h.client.register()
            h.clock.advance(4)
            delays.append(h.recorder.last(E.SipRegisterTimeout)["retryIn"])
        self.assertEqual(delays[0], 2.0)
        self.assertAlmostEqual(delays[1], 2.0 * (1 - 0.25 * 0.99))

    def test_failedRefreshIsRetried(self):
        """A refresh that fails is retried with backoff, never abandoned."""
        h = Harness(self, password=None)
        h.client.register()
        h.respond(h.takeRegister(), 200)
        h.clock.advance(60)
        h.respond(h.takeRegister(), 503, headers=[("Retry-After", "20")])
        rejected = h.recorder.last(E.SipRegisterRejected)
        self.assertEqual((rejected["status"], rejected["retryIn"]), (503, 20))
        self.assertIs(h.client.state, S.BACKOFF)
        self.assertTrue(h.client.isRegistered)  # the old binding still runs
        h.clock.advance(20)
        h.respond(h.takeRegister(), 500)
        self.assertEqual(h.recorder.last(E.SipRegisterRejected)["retryIn"], 4 * (1 - 0.125))
        h.clock.advance(3.5)
        h.respond(h.takeRegister(), 200)
        self.assertIs(h.client.state, S.REGISTERED)

    def test_timerFWhenShorterThanTimeoutMs(self):
        h = Harness(self, password=None, timeoutMs=100_000)
        h.client.register()
        h.clock.advance(32)  # Timer F = 64 * T1
        self.assertIs(h.client.state, S.BACKOFF)
        self.assertIn("no final response", h.recorder.last(E.SipRegisterTimeout)["error"])

    def test_408IsATimeout(self):
        h = Harness(self, password=None)
        h.client.register()
        h.respond(h.takeRegister(), 408)
        self.assertEqual(h.recorder.last(E.SipRegisterTimeout)["status"], 408)
        self.assertLess(h.recorder.last(E.SipRegisterTimeout)["retryIn"], 60)

    def test_forbiddenNotHammered(self):
        h = Harness(self, password=None)
        h.client.register()
        h.respond(h.takeRegister(), 403)
        rejected = h.recorder.last(E.SipRegisterRejected)
        self.assertEqual(rejected["status"], 403)
        self.assertGreaterEqual(rejected["retryIn"], 60)

    def test_networkError(self):
        clock = Clock()

        def refuse(message, addr):
            raise OSError("network unreachable")
        ua = UserAgent(clock, refuse, UserAgentConfig(host=LOCAL[0], port=LOCAL[1]))
        recorder = Recorder()
        client = RegistrationClient(ua, RegistrationConfig(REGISTRAR[0], "alice"), recorder,
                                    random=lambda: 0.0)
        client.register()
        self.assertIs(client.state, S.BACKOFF)
        error = recorder.last(E.SipRegisterNetworkError)
        self.assertEqual(error["retryIn"], 2.0)
        self.assertEqual(len(ua.transactions), 0)
        clock.advance(2)
        self.assertEqual(recorder.names().count(E.SipRegisterNetworkError), 2)
        self.assertEqual(client.snapshot()["failures"], 2)

    def test_registerInBackoffRetriesNow(self):
        h = Harness(self, password=None)
        h.client.register()
        h.respond(h.takeRegister(), 403)
        h.client.register()
        h.takeRegister()
        self.assertIs(h.client.state, S.REGISTERING)
        h.client.register()  # in flight: nothing more
        self.assertEqual(h.sentCount(), 0)

    def test_lateAnswerIgnored(self):
        """An answer to an abandoned REGISTER changes nothing."""
        h = Harness(self, password=None)
        h.client.register()
        first = h.takeRegister()
        h.clock.advance(4)  # timeoutMs: abandoned
        h.respond(first, 200)
        self.assertIs(h.client.state, S.BACKOFF)
        self.assertNotIn(E.SipRegisterSuccess, h.recorder.names())

    def test_malformedAnswer(self):
        h = Harness(self, password=None)
        h.client.register()
        register = h.takeRegister()
        response = makeResponse(register, 200, toTag="t")
        response.headers.add("Contact", "<sip:lmevoip@192.0.2.10:5062>;expires=banana")
        h.protocol.datagramReceived(response.serialize(), REGISTRAR)
        self.assertIs(h.client.state, S.BACKOFF)
        self.assertEqual(h.recorder.last(E.SipRegisterRejected)["status"], 200)

    def test_observerRaising(self):
        class Broken:
            def registrationEvent(self, name, **fields):
                raise RuntimeError("observer bug")
        h = Harness(self, password=None)
        h.client.observer = Broken()
        h.client.register()
        h.respond(h.takeRegister(), 200)
        self.assertIs(h.client.state, S.REGISTERED)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)


class UnregisterTests(SynchronousTestCase):

    def test_unregister(self):
        h = Harness(self)
        h.registerWithAuth()
        d = h.client.unregister()
        self.assertNoResult(d)
        self.assertIs(h.client.state, S.UNREGISTERING)
        request = h.takeRegister()
        self.assertEqual(request.headers.getAll("Contact"), ["<sip:lmevoip@192.0.2.10:5062>;expires=0"])
        self.assertEqual(request.expires, 0)
        self.assertEqual(request.cseq.seq, 3)
        self.assertEqual(request.callId, h.client.callId)
        self.assertIn("Authorization", request.headers)  # the cached nonce, pre-emptively
        h.respond(request, 200)
        self.assertEqual(self.successResultOf(d), E.SipUnregisterSuccess)
        self.assertIs(h.client.state, S.UNREGISTERED)
        self.assertFalse(h.client.isRegistered)
        self.assertEqual(h.recorder.names()[-2:], [E.SipUnregisterTrying, E.SipUnregisterSuccess])
        self.assertEqual(h.recorder.last(E.SipUnregisterSuccess)["state"], "Unregistered")
        # No refresh any more, and every timer runs out.
        h.clock.advance(120)
        self.assertEqual(h.sentCount(), 0)
        for _ in range(20):
            h.clock.advance(1)
        self.assertEqual(h.clock.getDelayedCalls(), [])
        self.assertEqual(len(h.ua.transactions), 0)

    def test_unregisterChallenged(self):
        h = Harness(self, preemptiveAuth=False)
        h.registerWithAuth()
        d = h.client.unregister()
        challenge = h.challenge(h.takeRegister())
        retry = h.takeRegister()
        self.assertTrue(verifyCredentials(retry.headers.get("Authorization"), "REGISTER",
                                          PASSWORD, challenge))
        self.assertEqual(retry.expires, 0)
        h.respond(retry, 200)
        self.assertEqual(self.successResultOf(d), E.SipUnregisterSuccess)

    def test_unregisterBadCredentials(self):
        h = Harness(self, preemptiveAuth=False)
        h.registerWithAuth()
        d = h.client.unregister()
        h.challenge(h.takeRegister())
        h.challenge(h.takeRegister())
        self.assertEqual(self.successResultOf(d), E.SipUnregisterBadCredentials)
        self.assertEqual(h.sentCount(), 0)
        self.assertIs(h.client.state, S.UNREGISTERED)

    def test_unregisterTimesOut(self):
        h = Harness(self, password=None)
        h.client.register()
        h.respond(h.takeRegister(), 200)
        d = h.client.unregister()
        h.takeRegister()
        h.clock.advance(3.99)
        self.assertNoResult(d)
        self.assertEqual({m.cseq.seq for m, _ in h.take()}, {2})  # retransmissions
        h.clock.advance(0.01)
        self.assertEqual(self.successResultOf(d), E.SipUnregisterTimeout)
        self.assertIs(h.client.state, S.UNREGISTERED)
        h.clock.advance(600)
        self.assertEqual([m.method for m, _ in h.take()], [])
        # The contact may still be bound: a second unregister() tries again.
        again = h.client.unregister()
        request = h.takeRegister()
        self.assertEqual((request.expires, request.cseq.seq), (0, 3))
        h.respond(request, 200)
        self.assertEqual(self.successResultOf(again), E.SipUnregisterSuccess)
        self.assertIsNone(self.successResultOf(h.client.unregister()))

    def test_unregisterRejected(self):
        h = Harness(self, password=None)
        h.client.register()
        h.respond(h.takeRegister(), 200)
        d = h.client.unregister()
        h.respond(h.takeRegister(), 500)
        self.assertEqual(self.successResultOf(d), E.SipUnregisterRejected)

    def test_nothingToUnregister(self):
        h = Harness(self)
        self.assertIsNone(self.successResultOf(h.client.unregister()))
        self.assertEqual(h.sentCount(), 0)

    def test_refusedRegistrationNeedsNoUnregister(self):
        h = Harness(self, password=None)
        h.client.register()
        h.respond(h.takeRegister(), 403)
        self.assertIsNone(self.successResultOf(h.client.unregister()))
        self.assertEqual(h.sentCount(), 0)
        self.assertIs(h.client.state, S.UNREGISTERED)
        h.clock.advance(600)
        self.assertEqual(h.sentCount(), 0)

    def test_unregisterWhileRegistering(self):
        """The REGISTER in flight is abandoned; its late 200 is ignored."""
        h = Harness(self, password=None)
        h.client.register()
        first = h.takeRegister()
        d = h.client.unregister()
        unregister = h.takeRegister()
        self.assertEqual(unregister.expires, 0)
        self.assertEqual(unregister.cseq.seq, 2)
        h.respond(first, 200)
        self.assertIs(h.client.state, S.UNREGISTERING)
        h.respond(unregister, 200)
        self.assertEqual(self.successResultOf(d), E.SipUnregisterSuccess)

    def test_unregisterTwice(self):
        h = Harness(self, password=None)
        h.client.register()
        h.respond(h.takeRegister(), 200)
        first = h.client.unregister()
        second = h.client.unregister()
        h.respond(h.takeRegister(), 200)
        self.assertEqual(self.successResultOf(first), E.SipUnregisterSuccess)
        self.assertEqual(self.successResultOf(second), E.SipUnregisterSuccess)

    def test_registerAgainAfterUnregister(self):
        h = Harness(self, password=None)
        h.client.register()
        h.respond(h.takeRegister(), 200)
        h.client.unregister()
        h.client.register()  # queued until the un-registration is over
        h.respond(h.takeRegister(), 200)
        again = h.takeRegister()
        self.assertEqual(again.expires, 65)
        self.assertEqual(again.cseq.seq, 3)
        self.assertEqual(again.callId, h.client.callId)

    def test_service(self):
        h = Harness(self, password=None)
        h.client.startService()
        self.assertTrue(h.client.running)
        h.respond(h.takeRegister(), 200)
        d = h.client.stopService()
        self.assertFalse(h.client.running)
        h.respond(h.takeRegister(), 200)
        self.assertEqual(self.successResultOf(d), E.SipUnregisterSuccess)

    def test_stop(self):
        h = Harness(self, password=None)
        h.client.register()
        h.respond(h.takeRegister(), 200)
        d = h.client.stop()
        self.assertEqual(h.takeRegister().expires, 0)
        self.assertNoResult(d)


class SecrecyTests(SynchronousTestCase):

    def test_credentialsNeverLogged(self):
        """No log event, event field, repr or snapshot shows the secrets."""
        logged = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        h = Harness(self, interval=10)
        h.registerWithAuth()
        h.clock.advance(10)
        h.challenge(h.takeRegister())
        h.challenge(h.takeRegister())  # bad credentials
        h.client.unregister()
        texts = [formatEvent(event) for event in logged]
        texts += [repr(event) for event in logged]
        texts += [repr(h.client), repr(h.config), repr(h.client.snapshot()),
                  repr(h.recorder.events)]
        self.assertTrue(any("SipRegisterBadCredentials" in text for text in texts))
        for text in texts:
            self.assertNotIn(PASSWORD, text)
            self.assertNotIn(AUTH_USER, text)

    def test_snapshot(self):
        h = Harness(self, password=None)
        h.client.register()
        h.respond(h.takeRegister(), 200)
        snapshot = h.client.snapshot()
        self.assertEqual(snapshot["state"], "Registered")
        self.assertEqual(snapshot["aor"], "sip:alice@example.test")
        self.assertEqual(snapshot["grantedExpires"], 65)
        self.assertEqual(snapshot["nextAttemptAt"], 60)
        self.assertEqual(snapshot["contact"], "sip:lmevoip@192.0.2.10:5062")
        self.assertEqual(snapshot["lastEvent"], "SipRegisterSuccess")
