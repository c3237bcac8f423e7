"""
lmevoip's SIP user agent against SIPp, over UDP on the loopback, on the
real reactor.

Each test runs one SIPp scenario of C{tests/sipp/} (through
L{tests.peers.sipp.Sipp}, stopped by PID in the test's cleanup) against a
user agent made by L{listenSip} (stopped in cleanup too). The verdict is
SIPp's: its exit code (0: every call of the scenario went as written, each
regexp check included), its per-step C{-trace_counts} and the messages it
logged; what the user agent reports is checked as well, not instead.

  - outgoing calls to a SIPp UAS that answers, takes an in-dialog OPTIONS
    and ends with our BYE or its BYE;
  - incoming calls from a SIPp UAC: CANCEL while ringing, and a call
    answered by an observer, put on hold and resumed by re-INVITEs;
  - out-of-dialog OPTIONS from SIPp, answered 200 with the capabilities;
  - digest authentication: 407 (the digest recomputed here from SIPp's
    log) and 401 (SIPp's verifyauth checks it);
  - retransmissions: an INVITE and an OPTIONS whose first copy SIPp
    ignores, and Timer B / Timer F against a SIPp that never answers (T1
    shortened to 50 ms, T2 to 400 ms);
  - C{docs/examples/call_sipp.py} run as a subprocess against SIPp;
  - a tshark capture of one call: every frame is well-formed SIP and every
    Via we send has C{rport}.

A test blocked by a user agent bug is skipped with a reason naming it
(L{NO_SUPPORTED_BUG}).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.trial.unittest import TestCase

from lmevoip.sip.call import (
    CallEndReason,
    CallObserver,
    CallState,
    RequestTimeout,
    StaticMediaHandler,
)
from lmevoip.sip.useragent import ALLOWED_METHODS, UserAgentConfig, listenSip
from tests.peers import PeerProcess, traceDirectory
from tests.peers.sipp import (
    AUTH_PASSWORD,
    AUTH_REALM,
    AUTH_USERNAME,
    Sipp,
    digestParameters,
    loggedMessages,
    verifyDigest,
)
from tests.peers.tshark import TsharkCapture, malformedCount, parseFields, runTshark, sipMessages
from tests.support import requireTool

LOOPBACK = "127.0.0.1"

#: The RTP port our SDP advertises (nothing is sent: SIPp does no media here).
RTP_PORT = 40000

#: Shortened timers for the retransmission tests: Timer B = F = 64*T1 = 3.2 s.
SHORT_T1 = 0.05
SHORT_T2 = 0.4

#: SIPp's -timeout for the scenarios (seconds): far above what they need.
SIPP_TIMEOUT = 15

#: The runnable example of the docs.
EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "call_sipp.py"


# -- reading SIPp's message log --------------------------------------------------------


def headerValues(message: str, name: str) -> list[str]:
    """
    The values of header C{name} (case-insensitive) in a message as SIPp
    logged it; one entry per header line, the body excluded.
    """
    head = message.split("\n\n", 1)[0]
    prefix = name.lower() + ":"
    return [line.split(":", 1)[1].strip() for line in head.splitlines()[1:]
            if line.lower().startswith(prefix)]


def topVia(message: str) -> str:
    """The first Via value of a logged message."""
    return headerValues(message, "Via")[0].split(",")[0].strip()


def viaParams(via: str) -> dict[str, str | None]:
    """The parameters of one Via value: C{{"rport": None, "branch": "z9..."}}."""
    params: dict[str, str | None] = {}
    for part in via.split(";")[1:]:
        name, sep, value = part.strip().partition("=")
        params[name.lower()] = value if sep else None
    return params


def responsesTo(messages: list[str], method: str) -> list[str]:
    """The responses among C{messages} whose CSeq names C{method}."""
    return [m for m in messages if m.startswith("SIP/2.0 ")
            and headerValues(m, "CSeq")[0].split()[-1] == method]


# -- user agent side -------------------------------------------------------------------


class Callee(CallObserver):
    """
    The user agent's observer for incoming calls: keeps them, answers them
    when told to, and records every event.

    @ivar calls: the incoming calls, in order.
    @ivar events: C{(event, detail)} tuples in order.
    """

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.calls: list = []
        self.events: list[tuple[str, object]] = []
        self._incoming: list[Deferred] = []

    def whenIncoming(self) -> Deferred:
        """A Deferred firing with the first incoming call."""
        if self.calls:
            return succeed(self.calls[0])
        d = Deferred()
        self._incoming.append(d)
        return d

    def incomingCall(self, call) -> None:
        self.calls.append(call)
        call.addObserver(self)
        self.events.append(("incoming", call.state))
        if self.answer:
            call.answer()
        waiting, self._incoming = self._incoming, []
        for d in waiting:
            d.callback(call)

    def publicAddressDiscovered(self, host, port) -> None:
        self.events.append(("public", (host, port)))

    def callConnected(self, call, media) -> None:
        self.events.append(("connected", media.codec))

    def callHeld(self, call, byPeer) -> None:
        self.events.append(("held", byPeer))

    def callResumed(self, call, byPeer) -> None:
        self.events.append(("resumed", byPeer))

    def callTerminated(self, call, reason, status) -> None:
        self.events.append(("terminated", reason))


class SippTestCase(TestCase):
    """
    Shared set-up: a user agent on a free loopback port, stopped in cleanup,
    and the checks every SIPp run gets.
    """

    timeout = 40

    def setUp(self) -> None:
        requireTool("sipp")

    def listen(self, observer=None, **config):
        """
        Start a user agent on 127.0.0.1 (a free port) with C{config}
        overriding L{UserAgentConfig}'s defaults; it is stopped in cleanup.

        @return: the L{lmevoip.sip.useragent.SipStack}.
        """
        stack = listenSip(reactor, UserAgentConfig(host=LOOPBACK, port=0, user="lmevoip", **config),
                          observer=observer,
                          mediaHandlerFactory=lambda call: StaticMediaHandler(LOOPBACK, RTP_PORT))
        self.addCleanup(stack.stop)
        return stack

    @staticmethod
    def address(stack) -> tuple[str, int]:
        return (LOOPBACK, stack.userAgent.config.port)

    @inlineCallbacks
    def callAndHangUp(self, scenario: str, duringCall=None, **config):
        """
        Start a SIPp UAS running C{scenario}, call it from a user agent
        with C{config}, wait until connected, run C{duringCall(call)} (may
        return a Deferred), hang up; check that the call ended LOCAL_HANGUP
        and that SIPp succeeded.

        @return: a Deferred firing with C{(uas, stack, call, result)}.
        """
        uas = Sipp(self, scenario, timeout=SIPP_TIMEOUT)
        yield uas.start()
        stack = self.listen(**config)
        call = stack.userAgent.call(uas.uri)
        yield call.whenConnected()
        if duringCall is not None:
            yield duringCall(call)
        call.hangup()
        end = yield call.whenTerminated()
        self.assertEqual(end.reason, CallEndReason.LOCAL_HANGUP)
        result = yield uas.finished()
        self.assertSippSucceeded(result)
        return uas, stack, call, result

    def assertSippSucceeded(self, result) -> None:
        """
        SIPp exited 0 by itself (every call of the scenario succeeded), and
        no step counted an unexpected message or a timeout.
        """
        self.assertTrue(result.succeeded, result.describe())
        self.assertIsNotNone(result.counts, result.describe())
        for step in result.counts.steps:
            self.assertEqual((step["Unexp"], step["Timeout"]), (0, 0),
                             f"step {step.index} {step.name}\n{result.describe()}")

    def assertEngineVias(self, result) -> None:
        """
        Every request SIPp received from the engine has a top Via with an
        empty C{rport} (RFC 3581) and a C{z9hG4bK} branch.
        """
        requests = [m for m in loggedMessages(result.messages, "received")
                    if not m.startswith("SIP/2.0 ")]
        self.assertTrue(requests, result.describe())
        for request in requests:
            params = viaParams(topVia(request))
            self.assertIn("rport", params, request)
            self.assertIsNone(params["rport"], request)
            self.assertTrue((params.get("branch") or "").startswith("z9hG4bK"), request)


# -- calls ------------------------------------------------------------------------------


class OutgoingCallTests(SippTestCase):
    """We call a SIPp UAS that answers; an in-dialog OPTIONS; a BYE."""

    @inlineCallbacks
    def test_localBye(self):
        """
        uas_answer_options_bye_local: connected on SIPp's PCMU answer, our
        in-dialog OPTIONS answered 200, our BYE ends the call; SIPp saw
        INVITE, ACK, OPTIONS and BYE exactly once each.
        """
        @inlineCallbacks
        def probe(call):
            self.assertEqual((call.media.codec, call.media.remoteAddress), ("PCMU", LOOPBACK))
            response = yield call.sendOptions()
            self.assertEqual(response.status, 200)

        uas, stack, call, result = yield self.callAndHangUp("uas_answer_options_bye_local", probe)
        self.assertEqual(call.media.remotePort, uas.mediaPort)
        for method in ("INVITE", "ACK", "OPTIONS", "BYE"):
            self.assertEqual(result.counts.total(method, "Recv"), 1, f"{method}\n{result.describe()}")
        self.assertEqual(result.counts.total("INVITE", "Retrans"), 0, result.describe())
        self.assertEngineVias(result)
        # The in-dialog requests carry SIPp's To tag and go to its Contact.
        invite, ack, options, bye = result.receivedRequests("INVITE") + \
            result.receivedRequests("ACK") + result.receivedRequests("OPTIONS") + \
            result.receivedRequests("BYE")
        contact = f"sip:sipp@{LOOPBACK}:{uas.localPort};transport=UDP"
        for request in (ack, options, bye):
            self.assertTrue(request.startswith(f"{request.split()[0]} {contact} SIP/2.0"), request)
            self.assertIn("SIPpTag01", headerValues(request, "To")[0], request)
        cseqs = [headerValues(m, "CSeq")[0] for m in (invite, ack, options, bye)]
        self.assertEqual(cseqs, ["1 INVITE", "1 ACK", "2 OPTIONS", "3 BYE"])
        self.assertEqual(len(stack.userAgent.calls), 0)

    @inlineCallbacks
    def test_remoteBye(self):
        """
        uas_answer_options_bye_remote: SIPp's in-dialog OPTIONS gets our 200
        (with Allow and Accept), SIPp's BYE ends the call REMOTE_HANGUP.
        """
        uas = Sipp(self, "uas_answer_options_bye_remote", timeout=SIPP_TIMEOUT)
        yield uas.start()
        stack = self.listen()
        call = stack.userAgent.call(uas.uri)
        yield call.whenConnected()
        end = yield call.whenTerminated()
        self.assertEqual(end.reason, CallEndReason.REMOTE_HANGUP)

        result = yield uas.finished()
        self.assertSippSucceeded(result)
        self.assertEqual(result.counts.total("200", "Recv"), 2, result.describe())
        received = loggedMessages(result.messages, "received")
        (optionsOk,) = responsesTo(received, "OPTIONS")
        (byeOk,) = responsesTo(received, "BYE")
        self.assertTrue(optionsOk.startswith("SIP/2.0 200"), optionsOk)
        self.assertTrue(byeOk.startswith("SIP/2.0 200"), byeOk)
        allow = {m.strip() for v in headerValues(optionsOk, "Allow") for m in v.split(",")}
        self.assertEqual(allow, set(ALLOWED_METHODS))
        self.assertEqual(headerValues(optionsOk, "Accept"), ["application/sdp"])
        self.assertEqual(len(stack.userAgent.calls), 0)


class IncomingCallTests(SippTestCase):
    """A SIPp UAC calls us."""

    @inlineCallbacks
    def test_cancelWhileRinging(self):
        """
        uac_cancel: we ring (100, 180) without answering; SIPp's CANCEL is
        answered 200 and the INVITE 487; the call ends REMOTE_CANCELLED.
        """
        callee = Callee(answer=False)
        stack = self.listen(callee)
        uac = Sipp(self, "uac_cancel", remote=self.address(stack), timeout=SIPP_TIMEOUT)
        yield uac.start()
        call = yield callee.whenIncoming()
        end = yield call.whenTerminated()
        self.assertEqual((end.reason, end.status), (CallEndReason.REMOTE_CANCELLED, 487))

        result = yield uac.finished()
        self.assertSippSucceeded(result)
        self.assertEqual(result.counts.total("180", "Recv"), 1, result.describe())
        self.assertEqual(result.counts.total("200", "Recv"), 1, result.describe())
        self.assertEqual(result.counts.total("487", "Recv"), 1, result.describe())
        received = loggedMessages(result.messages, "received")
        self.assertFalse([m for m in responsesTo(received, "INVITE") if m.startswith("SIP/2.0 2")],
                         "a cancelled call must never be answered 2xx")
        self.assertEqual(callee.events, [("incoming", CallState.INCOMING),
                                         ("terminated", CallEndReason.REMOTE_CANCELLED)])
        self.assertEqual(len(stack.userAgent.calls), 0)

    @inlineCallbacks
    def test_answerHoldResume(self):
        """
        uac_call_reinvite_bye: the observer answers; SIPp's sendonly
        re-INVITE is answered recvonly/inactive (SIPp checks) and reported
        as held by the peer, the sendrecv one as resumed; SIPp's BYE ends
        the call.
        """
        callee = Callee(answer=True)
        stack = self.listen(callee)
        uac = Sipp(self, "uac_call_reinvite_bye", remote=self.address(stack), timeout=SIPP_TIMEOUT)
        yield uac.start()
        call = yield callee.whenIncoming()
        end = yield call.whenTerminated()
        self.assertEqual(end.reason, CallEndReason.REMOTE_HANGUP)

        result = yield uac.finished()
        self.assertSippSucceeded(result)
        self.assertEqual(result.counts.total("200", "Recv"), 4, result.describe())
        self.assertEqual(callee.events, [
            ("incoming", CallState.INCOMING),
            ("connected", "PCMU"),
            ("held", True),
            ("resumed", True),
            ("terminated", CallEndReason.REMOTE_HANGUP),
        ])
        self.assertFalse(call.remoteHold)
        # Our answers, as SIPp received them: the hold answer does not send.
        oks = [m for m in responsesTo(loggedMessages(result.messages, "received"), "INVITE")
               if m.startswith("SIP/2.0 200")]
        self.assertEqual([headerValues(m, "CSeq")[0] for m in oks],
                         ["1 INVITE", "2 INVITE", "3 INVITE"])
        self.assertRegex(oks[1], r"(?m)^a=(recvonly|inactive)$")
        self.assertNotRegex(oks[2], r"(?m)^a=(sendonly|recvonly|inactive)$")
        # One SDP session, its version one higher in each answer (RFC 3264 8).
        origins = [re.search(r"(?m)^o=(\S+) (\d+) (\d+) ", ok).groups() for ok in oks]
        self.assertEqual(len({origin[:2] for origin in origins}), 1, origins)
        versions = [int(origin[2]) for origin in origins]
        self.assertEqual(versions, [versions[0], versions[0] + 1, versions[0] + 2])
        for ok in oks:
            self.assertEqual(headerValues(ok, "Contact"),
                             [f"<sip:lmevoip@{LOOPBACK}:{stack.userAgent.config.port}>"])
        self.assertEqual(len(stack.userAgent.calls), 0)


class OptionsTests(SippTestCase):
    """Out-of-dialog OPTIONS from SIPp."""

    @inlineCallbacks
    def test_optionsAnswered(self):
        """
        uac_options: 200 with Allow (SIPp checks every method), Accept and
        Contact; no call is created.
        """
        stack = self.listen()
        uac = Sipp(self, "uac_options", remote=self.address(stack), timeout=SIPP_TIMEOUT)
        result = yield uac.run()
        self.assertSippSucceeded(result)
        (ok,) = responsesTo(loggedMessages(result.messages, "received"), "OPTIONS")
        self.assertTrue(ok.startswith("SIP/2.0 200"), ok)
        allow = {m.strip() for v in headerValues(ok, "Allow") for m in v.split(",")}
        self.assertEqual(allow, set(ALLOWED_METHODS))
        self.assertEqual(headerValues(ok, "Accept"), ["application/sdp"])
        self.assertEqual(len(headerValues(ok, "Contact")), 1, ok)
        self.assertIn("Allow: ", result.logs)
        self.assertEqual(len(stack.userAgent.calls), 0)

    @inlineCallbacks
    def test_optionsAdvertisesSupported(self):
        """
        With option tags configured, the 200 to OPTIONS lists them in
        Supported (RFC 3261 11.2).
        """
        stack = self.listen(supported=("path",))
        uac = Sipp(self, "uac_options", remote=self.address(stack), timeout=SIPP_TIMEOUT)
        result = yield uac.run()
        self.assertSippSucceeded(result)
        (ok,) = responsesTo(loggedMessages(result.messages, "received"), "OPTIONS")
        self.assertEqual(headerValues(ok, "Supported"), ["path"])

    @inlineCallbacks
    def test_optionsSupportedWhenNone(self):
        """
        Without option tags, the 200 to OPTIONS still has a (then empty)
        Supported header: RFC 3261 11.2 and docs/sip-user-agent.rst.
        """
        stack = self.listen()
        uac = Sipp(self, "uac_options", remote=self.address(stack), timeout=SIPP_TIMEOUT)
        result = yield uac.run()
        self.assertSippSucceeded(result)
        (ok,) = responsesTo(loggedMessages(result.messages, "received"), "OPTIONS")
        self.assertEqual(headerValues(ok, "Supported"), [""], ok)



class AuthenticationTests(SippTestCase):
    """A SIPp UAS challenges our INVITE."""

    @inlineCallbacks
    def authenticatedCall(self, scenario: str, challenge: str, credentials: str):
        """
        Call a SIPp running C{scenario}, which challenges with C{challenge}
        and wants C{credentials}; hang up once connected. Returns the SIPp
        result after checking the flow.
        """
        _, _, _, result = yield self.callAndHangUp(
            scenario, authUsername=AUTH_USERNAME, authPassword=AUTH_PASSWORD)
        first, retry = result.receivedRequests("INVITE")
        self.assertEqual(headerValues(first, credentials), [])
        self.assertEqual([headerValues(m, "CSeq")[0] for m in (first, retry)],
                         ["1 INVITE", "2 INVITE"])
        self.assertEqual(headerValues(first, "Call-ID"), headerValues(retry, "Call-ID"))
        self.assertEqual(headerValues(first, "From"), headerValues(retry, "From"))
        self.assertNotEqual(viaParams(topVia(first))["branch"], viaParams(topVia(retry))["branch"])
        (challengeResponse,) = [m for m in loggedMessages(result.messages, "sent")
                                if m.startswith("SIP/2.0 40")]
        nonce = digestParameters(headerValues(challengeResponse, challenge)[0])["nonce"]
        (authorization,) = result.authorizations("INVITE", credentials)
        self.assertTrue(verifyDigest(authorization, "INVITE", AUTH_PASSWORD, realm=AUTH_REALM,
                                     nonce=nonce), authorization)
        self.assertFalse(verifyDigest(authorization, "INVITE", "wrong", realm=AUTH_REALM))
        # The ACK for the challenge has no credentials, the ACK for the 2xx
        # carries the INVITE's (RFC 3261 13.2.2.4).
        nonTwoXxAck, twoXxAck = result.receivedRequests("ACK")
        self.assertEqual(headerValues(nonTwoXxAck, credentials), [])
        self.assertEqual(viaParams(topVia(nonTwoXxAck))["branch"], viaParams(topVia(first))["branch"])
        self.assertEqual(headerValues(twoXxAck, credentials), [authorization])
        return result

    @inlineCallbacks
    def test_proxyAuthenticate407(self):
        """
        uas_auth_407: the INVITE is re-sent with Proxy-Authorization (SIPp
        checks its form; the digest is recomputed here from the password
        and the nonce SIPp sent).
        """
        yield self.authenticatedCall("uas_auth_407", "Proxy-Authenticate", "Proxy-Authorization")

    @inlineCallbacks
    def test_wwwAuthenticate401(self):
        """
        uas_auth_401: the INVITE is re-sent with Authorization, and SIPp's
        verifyauth accepts the digest (a wrong one would fail the call).
        """
        result = yield self.authenticatedCall("uas_auth_401", "WWW-Authenticate", "Authorization")
        self.assertEqual(result.counts.total("403", "Sent"), 0, result.describe())


# -- retransmissions ----------------------------------------------------------------


class RetransmissionTests(SippTestCase):
    """
    Timers A, B, E and F against SIPp, with T1 = 50 ms and T2 = 400 ms so
    that Timer B = Timer F = 64*T1 = 3.2 s.
    """

    def listenShort(self, **config):
        return self.listen(t1=SHORT_T1, t2=SHORT_T2, **config)

    def assertRetransmissionsOf(self, copies: list[str]) -> None:
        """The copies are one request retransmitted: byte-identical."""
        self.assertGreaterEqual(len(copies), 2)
        self.assertEqual(len(set(copies)), 1, "retransmissions must repeat the request exactly")

    @inlineCallbacks
    def assertOnlyRetransmitted(self, uas, method: str, retransmissions: tuple[int, ...]):
        """
        Once C{uas} (a never-answering scenario) has ended: it succeeded,
        got one C{method} and then only identical copies of it, as many as
        one of C{retransmissions}, and nothing else.
        """
        result = yield uas.finished()
        self.assertSippSucceeded(result)
        step = result.counts.step(0)
        self.assertEqual(step["Recv"], 1, result.describe())
        self.assertIn(step["Retrans"], retransmissions, result.describe())
        self.assertRetransmissionsOf(result.receivedRequests(method))
        self.assertEqual(len(loggedMessages(result.messages, "received")), 1 + step["Retrans"])

    @inlineCallbacks
    def test_inviteRetransmitted(self):
        """
        uas_ignore_first_invite: SIPp drops the first INVITE and answers the
        retransmission (Timer A); the call connects and ends normally.
        """
        _, _, _, result = yield self.callAndHangUp("uas_ignore_first_invite",
                                                   t1=SHORT_T1, t2=SHORT_T2)
        self.assertEqual(result.counts.step(0)["Recv"], 1, result.describe())
        self.assertEqual(result.counts.step(1)["Recv"], 1, result.describe())
        self.assertRetransmissionsOf(result.receivedRequests("INVITE"))
        self.assertEqual(result.counts.total("BYE", "Recv"), 1, result.describe())

    @inlineCallbacks
    def test_optionsRetransmitted(self):
        """
        uas_ignore_first_options: SIPp drops the first OPTIONS and answers
        the retransmission (Timer E); our Deferred fires with the 200.
        """
        uas = Sipp(self, "uas_ignore_first_options", timeout=SIPP_TIMEOUT)
        yield uas.start()
        stack = self.listenShort()
        response = yield stack.userAgent.sendOptions(uas.uri)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers.get("Supported"), "replaces")

        result = yield uas.finished()
        self.assertSippSucceeded(result)
        self.assertEqual(result.counts.step(0)["Recv"], 1, result.describe())
        self.assertEqual(result.counts.step(1)["Recv"], 1, result.describe())
        self.assertRetransmissionsOf(result.receivedRequests("OPTIONS"))

    @inlineCallbacks
    def test_timerB(self):
        """
        uas_never_answer: the INVITE is retransmitted at T1, 2*T1, 4*T1, ...
        (not capped by T2: 6 copies within 64*T1) and the call ends TIMEOUT
        408 after Timer B; no CANCEL or other request follows.
        """
        uas = Sipp(self, "uas_never_answer", variables={"holdms": 4000}, timeout=SIPP_TIMEOUT)
        yield uas.start()
        stack = self.listenShort()
        started = reactor.seconds()
        call = stack.userAgent.call(uas.uri)
        end = yield call.whenTerminated()
        elapsed = reactor.seconds() - started
        self.assertEqual((end.reason, end.status), (CallEndReason.TIMEOUT, 408))
        self.assertGreaterEqual(elapsed, 64 * SHORT_T1 - 0.01)

        # 50+100+200+400+800+1600 ms: the 6th copy leaves at 3.15 s, 50 ms
        # before Timer B; a scheduler late by that much drops it.
        yield self.assertOnlyRetransmitted(uas, "INVITE", (5, 6))

    @inlineCallbacks
    def test_timerF(self):
        """
        ua_never_answer_options: the OPTIONS is retransmitted at T1, 2*T1,
        ... capped at T2 (10 copies within 64*T1) and the Deferred fails
        with RequestTimeout after Timer F.
        """
        uas = Sipp(self, "ua_never_answer_options", variables={"holdms": 4000},
                   timeout=SIPP_TIMEOUT)
        yield uas.start()
        stack = self.listenShort()
        started = reactor.seconds()
        yield self.assertFailure(stack.userAgent.sendOptions(uas.uri), RequestTimeout)
        elapsed = reactor.seconds() - started
        self.assertGreaterEqual(elapsed, 64 * SHORT_T1 - 0.01)

        # 50, 100, 200, then every 400 ms: copies at 0.05, 0.15, 0.35, 0.75,
        # ..., 3.15 s (the last 50 ms before Timer F).
        yield self.assertOnlyRetransmitted(uas, "OPTIONS", (9, 10))


# -- the runnable example -------------------------------------------------------------


class ExampleTests(SippTestCase):
    """docs/examples/call_sipp.py, as a user would run it."""

    @inlineCallbacks
    def runExample(self, *args: str):
        """
        Run the example with C{args} (and C{--host 127.0.0.1}) in this
        interpreter's environment; it is stopped in cleanup if it hangs.

        @return: a Deferred firing with the ended L{PeerProcess}.
        """
        argv = [sys.executable, str(EXAMPLE), "--host", LOOPBACK, *args]
        example = PeerProcess(argv, reactor, cwd=traceDirectory(self, "example"),
                              name="call_sipp.py")
        self.addCleanup(example.stop, "TERM", 3.0)
        example.start()
        yield example.whenEnded().addTimeout(20, reactor)
        return example

    @inlineCallbacks
    def test_exampleCallsSipp(self):
        """
        The example calls a SIPp UAS (uas_answer_hold_long), hangs up after
        its --seconds and exits 0; SIPp got its BYE and exits 0.
        """
        uas = Sipp(self, "uas_answer_hold_long", timeout=SIPP_TIMEOUT)
        yield uas.start()
        example = yield self.runExample(f"sip:service@{LOOPBACK}:{uas.localPort}",
                                        "--seconds", "0.3")
        output = example.outputTail()
        self.assertEqual((example.exit.exitCode, example.exit.stoppedByHarness), (0, False), output)
        lines = example.stdout.splitlines()
        self.assertRegex(lines[0], r"^listening on 127\.0\.0\.1:\d+$")
        self.assertEqual(lines[1:], [f"connected: PCMU to {LOOPBACK}:{uas.mediaPort}",
                                     "terminated: local-hangup", "ended: local-hangup"], output)

        result = yield uas.finished()
        self.assertSippSucceeded(result)
        self.assertEqual(result.counts.total("BYE", "Recv"), 1, result.describe())
        self.assertEngineVias(result)

    @inlineCallbacks
    def test_exampleFailsWhenRejected(self):
        """
        Against a SIPp that refuses the call with 486 (ua_reject_busy), the
        example says why and exits 1; SIPp got the ACK for its 486.
        """
        uas = Sipp(self, "ua_reject_busy", timeout=SIPP_TIMEOUT)
        yield uas.start()
        example = yield self.runExample(f"sip:service@{LOOPBACK}:{uas.localPort}")
        output = example.outputTail()
        self.assertEqual((example.exit.exitCode, example.exit.stoppedByHarness), (1, False), output)
        self.assertEqual(example.stdout.splitlines()[1:],
                         ["terminated: failed 486", "call failed: failed 486"], output)

        result = yield uas.finished()
        self.assertSippSucceeded(result)
        self.assertEqual(result.counts.total("ACK", "Recv"), 1, result.describe())


# -- on the wire ------------------------------------------------------------------------


class WireTests(SippTestCase):
    """A tshark capture of a call (needs root to capture on lo)."""

    @inlineCallbacks
    def test_wireIsValidSip(self):
        """
        A call with OPTIONS and BYE (uas_answer_options_bye_local) captured
        on lo: every UDP frame between the two SIP ports is SIP, none is
        malformed, and every request we sent has a Via with rport.
        """
        requireTool("tshark")
        uas = Sipp(self, "uas_answer_options_bye_local", timeout=SIPP_TIMEOUT)
        # SIPp first: the ports it chose are free only until it binds them,
        # and the capture's probe sockets take ephemeral ports too.
        yield uas.start()
        stack = self.listen()
        ours = stack.userAgent.config.port
        capture = TsharkCapture(self, ports=[ours, uas.localPort])
        yield capture.start()
        call = stack.userAgent.call(uas.uri)
        yield call.whenConnected()
        yield call.sendOptions()
        call.hangup()
        yield call.whenTerminated()
        result = yield uas.finished()
        self.assertSippSucceeded(result)
        pcap = yield capture.stop()

        between = (f"udp and ((udp.srcport == {ours} and udp.dstport == {uas.localPort}) or "
                   f"(udp.srcport == {uas.localPort} and udp.dstport == {ours}))")
        udpFrames = parseFields((yield runTshark(
            ["-r", str(pcap), "-Y", between, "-T", "fields", "-e", "frame.number"])), 1)
        messages = yield sipMessages(pcap)
        messages = [m for m in messages if {m.src, m.dst} == {f"{LOOPBACK}:{ours}",
                                                               f"{LOOPBACK}:{uas.localPort}"}]
        self.assertEqual(len(messages), len(udpFrames))
        firstLines = [m.firstLine.split(" ")[0] if m.isRequest else m.firstLine.split(" ")[1]
                      for m in messages]
        # INVITE 100 180 200 (retransmitted until the ACK) ACK OPTIONS 200 BYE 200.
        self.assertEqual([f for f in firstLines if f != "200"][:4], ["INVITE", "100", "180", "ACK"])
        for method in ("INVITE", "ACK", "OPTIONS", "BYE"):
            self.assertEqual(firstLines.count(method), 1, firstLines)
        self.assertEqual((yield malformedCount(pcap)), 0)

        vias = parseFields((yield runTshark(
            ["-r", str(pcap), "-Y", f"sip.Request-Line and udp.srcport == {ours}",
             "-T", "fields", "-E", "occurrence=f", "-e", "sip.Request-Line", "-e", "sip.Via"])), 2)
        self.assertEqual(len(vias), 4, vias)
        for requestLine, via in vias:
            self.assertIsNotNone(re.search(r";\s*rport(;|$)", via), f"{requestLine}: {via}")
            self.assertIn(f"{LOOPBACK}:{ours}", via)
