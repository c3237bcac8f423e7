"""
Tests for L{lmevoip.control} (the flow monitor, on a L{FakeUdpReactor},
checked against the datagrams on the fake wire) and L{lmevoip.web} (the
control API end to end over real HTTP with C{twisted.web.client.Agent},
its errors, its security, and the events stream's bound on slow clients).
"""

from __future__ import annotations

import json
import socket
from io import BytesIO
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, FileBodyProducer
from twisted.web.http_headers import Headers
from twisted.web.test.requesthelper import DummyRequest

from lmevoip import tap
from lmevoip.control import MAX_ENDED_FLOWS, FlowMonitor, SendKind, describeResult
from lmevoip.engine import EngineConfig, LineState, VoipMediaEngine
from lmevoip.events import EngineObserver
from lmevoip.keepalive.interval import maximumInterval
from lmevoip.keepalive.null import CRLF
from lmevoip.returns import TelephonyReturnValue
from lmevoip.rtp.audio import SilenceSource, ToneSource
from lmevoip.testing import FakeUdpReactor
from lmevoip.web import ControlService
from lmevoip.web.api import HTTP_STATUS, MAX_BODY_BYTES, ApiError, EventHub, Security, readJson
from tests.peers.ports import freeTcpPort, freeUdpPort
from tests.test_engine_registration import LogCapture, ScriptedRegistrar

R = TelephonyReturnValue
NAT_MS = 2000


def quiet(*components: object) -> None:
    """
    Silence the loggers of expected failures.
    """
    for component in components:
        component.log = Logger(observer=lambda event: None)  # type: ignore[attr-defined]


class AutoAnswer(EngineObserver):
    """
    Answers every call that rings on its engine.
    """

    def __init__(self, engine: VoipMediaEngine) -> None:
        self.engine = engine

    def sipOkToAnswerCall(self, event: Any) -> None:
        self.engine.goOffHook(event.line)


class ResultsTests(SynchronousTestCase):
    def test_everyResultHasAStatusAndText(self) -> None:
        """
        Every return value maps to an HTTP status (200 for success only)
        and has a description.
        """
        for result in TelephonyReturnValue:
            self.assertIn(result, HTTP_STATUS)
            self.assertEqual(HTTP_STATUS[result] == 200, result is R.SipSuccess, result)
            self.assertNotEqual(describeResult(result), result.name)
        self.assertEqual(HTTP_STATUS[R.SipBadParameter], 400)
        self.assertEqual(HTTP_STATUS[R.SipBadPhoneLine], 400)
        self.assertEqual(HTTP_STATUS[R.SipNoCallOnLine], 409)


def jsonRequest(body: bytes, contentType: bytes | None = b"application/json") -> DummyRequest:
    request = DummyRequest([b""])
    request.method = b"POST"
    request.content = BytesIO(body)
    if contentType is not None:
        request.requestHeaders.setRawHeaders(b"content-type", [contentType])
    return request


class ReadJsonTests(SynchronousTestCase):
    fields = {"host": (str,), "port": (int,), "enabled": (bool,), "seconds": (int, float)}

    def refused(self, body: bytes, status: int, code: str, contentType: bytes | None = b"application/json") -> str:
        error = self.assertRaises(ApiError, readJson, jsonRequest(body, contentType), self.fields, ("host",))
        self.assertEqual((error.status, error.code), (status, code))
        return error.message

    def test_accepted(self) -> None:
        body = readJson(jsonRequest(b'{"host": "127.0.0.1", "port": 5060, "seconds": 1.5}'), self.fields)
        self.assertEqual(body, {"host": "127.0.0.1", "port": 5060, "seconds": 1.5})
        self.assertEqual(readJson(jsonRequest(b""), {}), {})

    def test_refused(self) -> None:
        """
        Each kind of bad body is refused with a message naming the problem.
        """
        self.assertIn("not valid JSON", self.refused(b"{nope", 400, "BadJson"))
        self.assertIn("must be a JSON object, not list", self.refused(b"[1]", 400, "BadJson"))
        self.assertIn("unknown field(s) 'colour'", self.refused(b'{"host": "h", "colour": 1}', 400, "UnknownField"))
        self.assertIn("field 'port' must be an integer, not \"5060\"",
                      self.refused(b'{"host": "h", "port": "5060"}', 400, "BadField"))
        self.assertIn("field 'port' must be an integer, not true",
                      self.refused(b'{"host": "h", "port": true}', 400, "BadField"))
        self.assertIn("field 'enabled' must be a boolean, not 1",
                      self.refused(b'{"host": "h", "enabled": 1}', 400, "BadField"))
        self.assertIn("field 'host' must be a string, not null", self.refused(b'{"host": null}', 400, "BadField"))
        self.assertIn("missing field(s) 'host'", self.refused(b'{"port": 1}', 400, "MissingField"))
        self.assertIn("application/json", self.refused(b"{}", 415, "UnsupportedMediaType", b"text/plain"))
        self.assertIn("application/json", self.refused(b"{}", 415, "UnsupportedMediaType", None))

    def test_tooLarge(self) -> None:
        request = jsonRequest(b"{}")
        request.bodyTooLarge = True
        error = self.assertRaises(ApiError, readJson, request, {})
        self.assertEqual(error.status, 413)


class SecurityTests(SynchronousTestCase):
    def request(self, **headers: str) -> DummyRequest:
        request = DummyRequest([b""])
        for name, value in headers.items():
            request.requestHeaders.setRawHeaders(name.encode(), [value.encode()])
        return request

    def test_loopbackHosts(self) -> None:
        """
        Without a token only loopback Host names are served (DNS
        rebinding), and a foreign Origin is refused.
        """
        security = Security(None)
        for host in ("127.0.0.1:8060", "localhost:8060", "[::1]:8060", "127.0.0.2", "LOCALHOST"):
            security.check(self.request(host=host))
        for host in ("evil.example:8060", "192.0.2.1:8060", ""):
            self.assertEqual(self.assertRaises(ApiError, security.check, self.request(host=host)).status, 403)
        error = self.assertRaises(ApiError, security.check,
                                  self.request(host="127.0.0.1:8060", origin="http://evil.example"))
        self.assertEqual((error.status, error.code), (403, "ForbiddenOrigin"))
        security.check(self.request(host="127.0.0.1:8060", origin="http://127.0.0.1:8060"))

    def test_token(self) -> None:
        """
        With a token any Host is served, but only with the right bearer
        token.
        """
        security = Security("s3cret-token-0123456789")
        security.check(self.request(host="phone.example:8060", authorization="Bearer s3cret-token-0123456789"))
        for value in (None, "Bearer wrong", "Basic s3cret-token-0123456789", "Bearer s3cret-token-012345678"):
            headers = {"host": "127.0.0.1"} if value is None else {"host": "127.0.0.1", "authorization": value}
            error = self.assertRaises(ApiError, security.check, self.request(**headers))
            self.assertEqual(error.status, 401)


class FlowMonitorTests(SynchronousTestCase):
    """
    A phone (keep-alive on, noise gate on) calls an office that answers, on
    a fake network; the monitor's counts and gaps are checked against the
    datagrams on the wire and the engine's own counters.
    """

    def setUp(self) -> None:
        self.reactor = FakeUdpReactor()

    def engines(self, source: Any) -> tuple[VoipMediaEngine, VoipMediaEngine]:
        phone = VoipMediaEngine(EngineConfig(sipHost="127.0.0.1", sipPort=5060, user="phone",
                                             sourceFactory=lambda line: source, noiseGateEnabled=True,
                                             noiseThreshold=1000), reactor=self.reactor)
        office = VoipMediaEngine(EngineConfig(sipHost="127.0.0.2", sipPort=5060, user="office"),
                                 reactor=self.reactor)
        quiet(phone, office, phone.scheduler, phone.sipKeepAlive)
        office.addObserver(AutoAnswer(office))
        for engine in (phone, office):
            engine.startService()
            self.addCleanup(engine.stopService)
        self.assertIs(phone.enableKeepAliveTransmissions(True, True, NAT_MS), R.SipSuccess)
        return phone, office

    def advance(self, seconds: float, step: float = 0.02) -> None:
        for _ in range(round(seconds / step)):
            self.reactor.advance(step)

    def wire(self, source: tuple[str, int], destination: tuple[str, int], since: float) -> list[float]:
        return [d.time for d in self.reactor.sentTo(destination, since) if d.source == source and d.time > since]

    def test_silentCall(self) -> None:
        """
        Silence behind a closed noise gate: the RTP flow carries only
        keep-alive frames, the SIP flow the ACK and OPTIONS keep-alives;
        each count equals the wire and the engine's counters, and no gap
        reaches the NAT session time.
        """
        phone, office = self.engines(SilenceSource())
        monitor = FlowMonitor(phone)
        self.addCleanup(monitor.close)
        self.assertTrue(phone.makeCall(0, "office", "127.0.0.2", 5060).succeeded)
        self.advance(12)
        flows = {record.id: record for record in monitor.flows()}
        self.assertEqual(set(flows), {"line0-sip", "line0-rtp"})
        sip, rtp = flows["line0-sip"], flows["line0-rtp"]
        state = {s["kind"]: s for s in phone.getKeepAliveState()}

        self.assertEqual(rtp.counts[SendKind.VOICE], 0)
        self.assertEqual(rtp.counts[SendKind.RTP_KEEPALIVE], state["rtp"]["framesSent"])
        self.assertGreaterEqual(rtp.counts[SendKind.RTP_KEEPALIVE], 12 // maximumInterval(NAT_MS))
        session = phone.getCall(0).mediaHandler.session
        rtpWire = self.wire(("127.0.0.1", session.ports.rtpPort), rtp.remote, rtp.since)
        self.assertEqual(rtp.total, len(rtpWire))

        self.assertEqual(sip.counts[SendKind.OPTIONS_KEEPALIVE], state["sip"]["optionsSent"])
        self.assertGreaterEqual(sip.counts[SendKind.OPTIONS_KEEPALIVE], 4)
        # The flow is followed from the moment the call is connected: the
        # ACK went just before.
        self.assertEqual(sip.counts[SendKind.SIGNALLING], 0)
        self.assertEqual(sip.total, len(self.wire(("127.0.0.1", 5060), ("127.0.0.2", 5060), sip.since)))

        for record in (sip, rtp):
            self.assertLess(record.largestGap, NAT_MS / 1000)
            self.assertLessEqual(record.largestGap, maximumInterval(NAT_MS) + 0.05)
        snapshot = monitor.snapshot()
        self.assertEqual(snapshot["natSessionTimeMs"], {"sip": NAT_MS, "rtp": NAT_MS})
        byId = {flow["id"]: flow for flow in snapshot["flows"]}
        self.assertEqual(byId["line0-rtp"]["keepAlive"]["framesSent"], rtp.counts[SendKind.RTP_KEEPALIVE])
        self.assertEqual(byId["line0-sip"]["remote"], "127.0.0.2:5060")
        self.assertEqual(byId["line0-sip"]["sends"]["options-keepalive"], state["sip"]["optionsSent"])
        kinds = {run[2] for run in byId["line0-rtp"]["timeline"]}
        self.assertEqual(kinds, {"rtp-keepalive"})

        phone.terminateCall(0)
        self.advance(1)
        ended = {record.id: record for record in monitor.flows()}
        self.assertFalse(ended["line0-rtp"].active)
        self.assertEqual(monitor.flows(includeEnded=False), [])
        self.assertEqual(ended["line0-sip"].counts[SendKind.SIGNALLING], 1)  # the BYE

    def test_voice(self) -> None:
        """
        A tone through the gate: every RTP packet is voice (50 a second),
        no keep-alive is needed.
        """
        phone, office = self.engines(ToneSource(440, 0.5))
        monitor = FlowMonitor(phone)
        self.addCleanup(monitor.close)
        phone.makeCall(0, "office", "127.0.0.2", 5060)
        self.advance(4)
        rtp = next(record for record in monitor.flows() if record.kind == "rtp")
        self.assertEqual(rtp.counts[SendKind.RTP_KEEPALIVE], 0)
        self.assertGreater(rtp.counts[SendKind.VOICE], 150)
        self.assertLess(rtp.largestGap, 0.1)
        self.assertEqual(len(rtp.runs), 1)
        self.assertEqual(rtp.runs[0][3], rtp.counts[SendKind.VOICE])

    def test_nullKeepAlive(self) -> None:
        """
        A C{sendSipKeepAlive} destination is a flow of CRLF keep-alives; it
        ends when disabled.
        """
        phone, office = self.engines(SilenceSource())
        monitor = FlowMonitor(phone)
        self.addCleanup(monitor.close)
        self.assertTrue(phone.sendSipKeepAlive("127.0.0.9", 5070, True, 1.0).succeeded)
        self.advance(5.5)
        record = next(record for record in monitor.flows() if record.kind == "null")
        self.assertEqual(record.id, "null-127.0.0.9:5070")
        sent = [d for d in self.reactor.sentTo(("127.0.0.9", 5070)) if d.data == CRLF]
        self.assertEqual(record.counts[SendKind.CRLF_KEEPALIVE], len(sent))
        self.assertEqual(record.total, len(sent))
        phone.sendSipKeepAlive("127.0.0.9", 5070, False, 1.0)
        monitor.syncNullKeepAlives()
        self.assertFalse(record.active)

    def test_endedFlowsBounded(self) -> None:
        """
        Only the last L{MAX_ENDED_FLOWS} ended flows are kept.
        """
        phone, office = self.engines(SilenceSource())
        monitor = FlowMonitor(phone)
        self.addCleanup(monitor.close)
        for _ in range(MAX_ENDED_FLOWS):
            phone.makeCall(0, "office", "127.0.0.2", 5060)
            self.advance(0.2)
            phone.terminateCall(0)
            self.advance(0.2)
        self.assertEqual(len(monitor.flows()), MAX_ENDED_FLOWS)


# -- the events stream, with a fake request --------------------------------------------


class FakeChannel:
    def __init__(self) -> None:
        self.transport = StringTransport()


class FakeStreamRequest(DummyRequest):
    """
    A request that records the producer it gets and can be told its
    transport is full.
    """

    def __init__(self) -> None:
        super().__init__([b""])
        self.channel = FakeChannel()
        self.producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None


class EventHubTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = FakeUdpReactor()
        self.engine = VoipMediaEngine(EngineConfig(sipHost="127.0.0.1", sipPort=5060), reactor=self.reactor)
        self.hub = EventHub(self.engine, self.reactor, maxClients=2, maxQueued=4, heartbeat=15)
        quiet(self.hub)
        self.hub.start()
        self.addCleanup(self.hub.stop)

    def events(self, request: FakeStreamRequest) -> list[dict[str, Any]]:
        text = b"".join(request.written).decode()
        return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]

    def test_stream(self) -> None:
        """
        A client gets every engine event as an SSE C{data:} line and a
        heartbeat comment every 15 s.
        """
        request = FakeStreamRequest()
        self.hub.connect(request)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"),
                         [b"text/event-stream; charset=utf-8"])
        self.engine.setNoiseThreshold(100)  # no event
        self.engine.startService()
        self.addCleanup(self.engine.stopService)
        self.engine.makeCall(0, "bob", "127.0.0.5", 5060)
        names = [event["name"] for event in self.events(request)]
        self.assertEqual(names, ["SipLineStateChanged"])
        self.reactor.advance(15)
        self.assertIn(b": heartbeat\n\n", request.written)

    def test_slowClientDropped(self) -> None:
        """
        While the transport is full events are queued; past C{maxQueued}
        the client is dropped (its connection aborted), the others keep
        getting events, and a paused client that catches up gets the
        queue in order.
        """
        slow, fast = FakeStreamRequest(), FakeStreamRequest()
        self.hub.connect(slow)
        self.hub.connect(fast)
        slow.producer.pauseProducing()
        for index in range(3):
            self.hub.broadcast(f"data: {index}\n\n".encode())
        self.assertNotIn(b"data: 0\n\n", slow.written)
        slow.producer.resumeProducing()
        self.assertEqual([w for w in slow.written if w.startswith(b"data")],
                         [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"])
        slow.producer.pauseProducing()
        for index in range(5):
            self.hub.broadcast(f"data: {index}\n\n".encode())
        self.assertEqual(self.hub.dropped, 1)
        self.assertEqual(self.hub.clients, {fast.producer})
        self.assertTrue(slow.channel.transport.disconnecting or slow.channel.transport.disconnected)
        self.assertEqual(len([w for w in fast.written if w.startswith(b"data")]), 8)

    def test_tooManyClients(self) -> None:
        self.hub.connect(FakeStreamRequest())
        self.hub.connect(FakeStreamRequest())
        error = self.assertRaises(ApiError, self.hub.connect, FakeStreamRequest())
        self.assertEqual(error.status, 503)

    def test_stopFinishesClients(self) -> None:
        request = FakeStreamRequest()
        self.hub.connect(request)
        self.hub.stop()
        self.assertEqual(request.finished, 1)
        self.assertEqual(self.hub.clients, set())


# -- over real HTTP -------------------------------------------------------------------------


class EventCollector(Protocol):
    """
    Reads a server-sent events body.
    """

    def __init__(self) -> None:
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        self.ended: Deferred[None] = Deferred()
        self.waiters: list[tuple[str, Deferred[dict[str, Any]]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n\n" in self.buffer:
            chunk, self.buffer = self.buffer.split(b"\n\n", 1)
            for line in chunk.decode().splitlines():
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    self.events.append(event)
                    for waiter in list(self.waiters):
                        if waiter[0] == event["name"]:
                            self.waiters.remove(waiter)
                            waiter[1].callback(event)

    def waitFor(self, name: str) -> Deferred[dict[str, Any]]:
        for event in self.events:
            if event["name"] == name:
                return succeed(event)
        d: Deferred[dict[str, Any]] = Deferred()
        self.waiters.append((name, d))
        return d.addTimeout(10, reactor)

    def connectionLost(self, reason: Any) -> None:
        self.ended.callback(None)


class _BodyCollector(Protocol):
    def __init__(self, done: Deferred[bytes]) -> None:
        self.done = done
        self.data: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.data.append(data)

    def connectionLost(self, reason: Any) -> None:
        self.done.callback(b"".join(self.data))


def readAll(response: Any) -> Deferred[bytes]:
    """
    A response's whole body (C{readBody} without its deprecation warning
    about transports lacking C{abortConnection}).
    """
    done: Deferred[bytes] = Deferred()
    response.deliverBody(_BodyCollector(done))
    return done


class ApiClient:
    """
    JSON requests to a control service with C{Agent}.
    """

    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base.rstrip("/")
        self.agent = Agent(reactor)
        self.token = token

    def headers(self, extra: dict[str, str] | None = None, json: bool = True) -> Headers:
        headers = Headers()
        if json:
            headers.setRawHeaders(b"content-type", [b"application/json"])
        if self.token is not None:
            headers.setRawHeaders(b"authorization", [f"Bearer {self.token}".encode()])
        for name, value in (extra or {}).items():
            headers.setRawHeaders(name.encode(), [value.encode()])
        return headers

    @inlineCallbacks
    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
                headers: dict[str, str] | None = None, json_: bool = True) -> Any:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        producer = None if data is None else FileBodyProducer(BytesIO(data))
        response = yield self.agent.request(method.encode(), (self.base + path).encode(),
                                            self.headers(headers, json_), producer)
        content = yield readAll(response)
        try:
            parsed = json.loads(content)
        except ValueError:
            parsed = content
        return response.code, response.headers, parsed

    @inlineCallbacks
    def events(self) -> Any:
        response = yield self.agent.request(b"GET", (self.base + "/api/events").encode(), self.headers(json=False))
        collector = EventCollector()
        response.deliverBody(collector)
        return response, collector


class ControlServiceCase(TestCase):
    """
    An engine controlled over HTTP ("office", port 0) and a peer engine
    that answers every call, on the real reactor.
    """

    timeout = 60
    token: str | None = None

    @inlineCallbacks
    def setUp(self) -> Any:
        self.engine = VoipMediaEngine(EngineConfig(sipHost="127.0.0.1", sipPort=0, user="office",
                                                   noiseGateEnabled=True), reactor)
        self.peer = VoipMediaEngine(EngineConfig(sipHost="127.0.0.1", sipPort=0, user="peer"), reactor)
        self.peer.addObserver(AutoAnswer(self.peer))
        quiet(self.engine, self.peer)
        for engine in (self.engine, self.peer):
            engine.startService()
        self.control = ControlService(self.engine, "tcp:0:interface=127.0.0.1", token=self.token, reactor=reactor)
        self.control.startService()
        self.addCleanup(self.stopAll)
        for _ in range(50):
            if self.control.url:
                break
            yield deferLater(reactor, 0.01, lambda: None)
        self.client = ApiClient(self.control.url, self.token)

    @inlineCallbacks
    def stopAll(self) -> Any:
        yield self.control.stopService()
        yield self.engine.stopService()
        yield self.peer.stopService()
        self.control.site.monitor.close()


class ControlApiTests(ControlServiceCase):
    @inlineCallbacks
    def test_callLifecycle(self) -> None:
        """
        End to end: status, a call placed through the API and read back,
        keep-alive changed, flows listed, the call hung up, and every step
        seen on the events stream.
        """
        response, stream = yield self.client.events()
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"text/event-stream; charset=utf-8"])

        code, _, status = yield self.client.request("GET", "/api/status")
        self.assertEqual(code, 200)
        self.assertEqual(status["sipAddress"], {"host": "127.0.0.1", "port": self.engine.sipAddress[1]})
        self.assertEqual((status["lines"], status["busyLines"], status["user"]), (4, [], "office"))
        self.assertEqual(status["eventClients"], 1)

        host, port = self.peer.sipAddress
        code, _, body = yield self.client.request("POST", "/api/lines/0/call",
                                                  {"user": "peer", "host": host, "port": port})
        self.assertEqual((code, body["result"]), (200, "SipSuccess"), body)
        connected = yield stream.waitFor("SipOutgoingCallConnected")
        self.assertEqual(connected["line"], 0)

        code, _, line = yield self.client.request("GET", "/api/lines/0")
        self.assertEqual((code, line["state"], line["direction"], line["codec"]), (200, "Connected", "outgoing", "PCMU"))
        self.assertEqual(line["remoteParty"], f"sip:peer@127.0.0.1:{port}")
        code, _, lines = yield self.client.request("GET", "/api/lines")
        self.assertEqual([entry["state"] for entry in lines["lines"]], ["Connected", "Idle", "Idle", "Idle"])

        code, _, body = yield self.client.request("PUT", "/api/keepalive",
                                                  {"sip": True, "rtp": False, "natSessionTimeMs": 4000})
        self.assertEqual((code, body["result"]), (200, "SipSuccess"))
        self.assertEqual(self.engine.sipKeepAlive.natSessionTimeMs, 4000)
        self.assertIsNone(self.engine.rtpKeepAlive.natSessionTimeMs)
        code, _, keepAlive = yield self.client.request("GET", "/api/keepalive")
        self.assertEqual(keepAlive, {"sip": True, "rtp": False, "natSessionTimeMs": 4000})

        code, _, flows = yield self.client.request("GET", "/api/flows")
        byId = {flow["id"]: flow for flow in flows["flows"]}
        self.assertEqual(set(byId), {"line0-sip", "line0-rtp"})
        self.assertEqual(byId["line0-sip"]["keepAlive"]["enabled"], True)
        self.assertEqual(byId["line0-sip"]["remote"], f"127.0.0.1:{port}")
        self.assertFalse(byId["line0-rtp"]["keepAlive"]["enabled"])  # RTP keep-alive was just turned off

        code, _, body = yield self.client.request("POST", "/api/lines/0/hangup")
        self.assertEqual((code, body["result"]), (200, "SipSuccess"))
        complete = yield stream.waitFor("SipCallComplete")
        self.assertEqual(complete["reason"], "local-hangup")
        names = [event["name"] for event in stream.events]
        self.assertLess(names.index("SipOutgoingCallConnected"), names.index("SipCallComplete"))
        code, _, body = yield self.client.request("POST", "/api/lines/0/hangup")
        self.assertEqual((code, body["result"]), (409, "SipNoCallOnLine"))

    @inlineCallbacks
    def test_engineRefusals(self) -> None:
        """
        Engine return values other than success map to their HTTP status
        with a body naming them.
        """
        host, port = self.peer.sipAddress
        cases = [
            ("POST", "/api/lines/9/answer", {}, 400, "SipBadPhoneLine"),
            ("GET", "/api/lines/9", None, 400, "SipBadPhoneLine"),
            ("POST", "/api/lines/0/answer", {}, 409, "SipNoCallOnLine"),
            ("POST", "/api/lines/0/hold", {}, 409, "SipNoCallOnLine"),
            ("POST", "/api/lines/0/reject", {"code": 200}, 400, "SipBadParameter"),
            ("POST", "/api/lines/0/call", {"uri": "sip:bob@example.com"}, 400, "SipBadParameter"),
            ("PUT", "/api/keepalive", {"sip": True, "natSessionTimeMs": 5}, 400, "SipBadParameter"),
            ("PUT", "/api/noise-gate", {"threshold": 40000}, 400, "SipBadParameter"),
            ("POST", "/api/null-keepalive", {"host": "127.0.0.1", "port": 0, "seconds": 5}, 400, "SipBadParameter"),
        ]
        for method, path, body, status, result in cases:
            code, _, answer = yield self.client.request(method, path, body)
            self.assertEqual((code, answer.get("result")), (status, result), (method, path, answer))
            self.assertTrue(answer["message"])
        yield self.client.request("POST", "/api/lines/0/call", {"user": "peer", "host": host, "port": port})
        code, _, answer = yield self.client.request("POST", "/api/lines/0/call",
                                                    {"user": "peer", "host": host, "port": port})
        self.assertEqual((code, answer["result"]), (409, "SipLineBusy"))
        yield self.engine.whenLineState(0, LineState.CONNECTED, timeout=5)
        self.assertEqual(self.engine.getNoiseThreshold(), 512)

    @inlineCallbacks
    def test_badRequests(self) -> None:
        """
        Requests the API refuses itself: JSON errors naming the problem.
        """
        cases = [
            ("POST", "/api/lines/0/call", b"{not json", {}, True, 400, "BadJson"),
            ("POST", "/api/lines/0/call", b'{"uri": "sip:a@127.0.0.1", "colour": 1}', {}, True, 400,
             "UnknownField"),
            ("POST", "/api/lines/0/call", b'{"user": "a", "host": "127.0.0.1", "port": "5060"}', {}, True, 400,
             "BadField"),
            ("POST", "/api/lines/0/call", b'{"user": "a"}', {}, True, 400, "MissingField"),
            ("POST", "/api/lines/0/call", b'{"uri": "sip:a@127.0.0.1", "port": 5}', {}, True, 400, "BadField"),
            ("POST", "/api/lines/0/hangup", b"", {}, False, 415, "UnsupportedMediaType"),
            ("PUT", "/api/keepalive", b'{"sip": "yes"}', {}, True, 400, "BadField"),
            ("POST", "/api/lines/0/call", b"{" + b" " * (MAX_BODY_BYTES + 1) + b"}", {}, True, 413, "BodyTooLarge"),
            ("GET", "/api/nothing", None, {}, True, 404, "NotFound"),
            ("GET", "/api/lines/x", None, {}, True, 404, "NotFound"),
            ("GET", "/api/lines/0/sing", None, {}, True, 404, "NotFound"),
            ("DELETE", "/api/lines", None, {}, True, 405, "MethodNotAllowed"),
            ("GET", "/api/lines/0/hangup", None, {}, True, 405, "MethodNotAllowed"),
            ("GET", "/api/status", None, {"origin": "http://evil.example"}, True, 403, "ForbiddenOrigin"),
            ("GET", "/api/status", None, {"host": "evil.example"}, True, 403, "ForbiddenHost"),
        ]
        for method, path, raw, headers, asJson, status, error in cases:
            code, responseHeaders, answer = yield self.client.request(method, path, raw=raw, headers=headers,
                                                                      json_=asJson)
            self.assertEqual((code, answer.get("error")), (status, error), (method, path, answer))
            self.assertTrue(answer["message"])
        code, headers, _ = yield self.client.request("DELETE", "/api/lines")
        self.assertEqual(headers.getRawHeaders(b"allow"), [b"GET"])

    @inlineCallbacks
    def test_settings(self) -> None:
        """
        The noise gate and NULL keep-alives through the API.
        """
        code, _, gate = yield self.client.request("GET", "/api/noise-gate")
        self.assertEqual(gate, {"enabled": True, "threshold": 512, "decayMs": 200, "minThreshold": 0,
                                "maxThreshold": 32767})
        code, _, body = yield self.client.request("PUT", "/api/noise-gate", {"enabled": False, "threshold": 900})
        self.assertEqual((code, body["noiseGate"]["enabled"], body["noiseGate"]["threshold"]), (200, False, 900))
        self.assertFalse(self.engine.getNoiseDiscriminationEnableState())
        code, _, body = yield self.client.request("PUT", "/api/noise-gate", {"threshold": 100, "decayMs": 99999})
        self.assertEqual((code, body["result"], body["field"]), (400, "SipBadParameter", "decayMs"))
        self.assertEqual(self.engine.getNoiseThreshold(), 900)

        code, _, body = yield self.client.request("POST", "/api/null-keepalive",
                                                  {"host": "127.0.0.1", "port": 9, "seconds": 0.5})
        self.assertEqual((code, body["result"]), (200, "SipSuccess"))
        self.assertEqual([(d["host"], d["port"]) for d in body["destinations"]], [("127.0.0.1", 9)])
        yield deferLater(reactor, 1.2, lambda: None)
        code, _, flows = yield self.client.request("GET", "/api/flows")
        null = next(flow for flow in flows["flows"] if flow["kind"] == "null")
        self.assertGreaterEqual(null["sends"]["crlf-keepalive"], 2)
        code, _, body = yield self.client.request("POST", "/api/null-keepalive",
                                                  {"host": "127.0.0.1", "port": 9, "enabled": False})
        self.assertEqual((code, body["destinations"]), (200, []))
        code, _, body = yield self.client.request("POST", "/api/null-keepalive", {"host": "127.0.0.1", "port": 9})
        self.assertEqual((code, body["error"]), (400, "MissingField"))

    @inlineCallbacks
    def test_statusPageFiles(self) -> None:
        """
        C{/} serves the page with a same-origin-only policy, C{/static/}
        its script and style; anything else is 404.
        """
        for path, kind in (("/", b"text/html"), ("/static/status.js", b"text/javascript"),
                           ("/static/status.css", b"text/css")):
            code, headers, body = yield self.client.request("GET", path)
            self.assertEqual(code, 200, path)
            self.assertTrue(headers.getRawHeaders(b"content-type")[0].startswith(kind))
            self.assertIn(b"default-src 'none'", headers.getRawHeaders(b"content-security-policy")[0])
        for path in ("/static/x.js", "/static", "/favicon.ico", "/static/status.js/x"):
            code, _, _ = yield self.client.request("GET", path)
            self.assertEqual(code, 404, path)


class RegistrationApiTests(ControlServiceCase):
    """
    The registration endpoints end to end: a scripted registrar (and a
    second one as outbound proxy) on real loopback sockets challenges
    alice, whose password is set through C{PUT /api/credentials}.
    """

    secret = "api-Secret-4711"

    def setUp(self) -> Any:
        self.registrar = ScriptedRegistrar(reactor, ("127.0.0.1", freeUdpPort()),
                                           users={"alice": ("alice-auth", self.secret)})
        self.addCleanup(self.registrar.port.stopListening)
        self.logs = LogCapture(self)
        return super().setUp()

    @inlineCallbacks
    def test_registerThroughApi(self) -> None:
        """
        Credentials, registration, its state, its events on the stream,
        the outbound proxy and un-registration, all over HTTP; the
        password is in no response and no log line.
        """
        host, port = self.registrar.port.getHost().host, self.registrar.port.getHost().port
        response, stream = yield self.client.events()
        code, _, body = yield self.client.request("GET", "/api/registrations")
        self.assertEqual((code, body["registrations"]), (200, []))
        code, _, body = yield self.client.request("GET", "/api")
        self.assertTrue({"/api/registrations", "/api/credentials", "/api/outbound-proxy"} <= set(body["endpoints"]))

        code, _, body = yield self.client.request("PUT", "/api/credentials",
                                                  {"user": "alice-auth", "password": self.secret, "name": "alice"})
        self.assertEqual((code, body["result"], body["name"]), (200, "SipSuccess", "alice"))
        code, _, body = yield self.client.request("POST", "/api/registrations",
                                                  {"names": ["alice", "bob"], "host": host, "port": port,
                                                   "interval": 30, "expires": 60, "timeoutMs": 2000})
        self.assertEqual((code, body["result"]), (200, "SipSuccess"), body)
        self.assertEqual([state["name"] for state in body["registrations"]], ["alice", "bob"])
        yield stream.waitFor("SipRegisterSuccess")
        for _ in range(50):
            code, _, body = yield self.client.request("GET", "/api/registrations")
            states = {state["name"]: state for state in body["registrations"]}
            if all(state["registered"] for state in states.values()):
                break
            yield deferLater(reactor, 0.05, lambda: None)
        for name in ("alice", "bob"):
            state = states[name]
            self.assertEqual((state["state"], state["grantedExpires"], state["registrar"], state["aor"]),
                             ("Registered", 60, f"127.0.0.1:{port}", f"sip:{name}@127.0.0.1"))
            self.assertEqual(state["contact"], f"sip:{name}@127.0.0.1:{self.engine.sipAddress[1]}")
            self.assertGreater(state["nextAttemptAt"], body["now"])
        self.assertEqual(set(self.registrar.bindings), {"alice", "bob"})
        self.assertIn('username="alice-auth"', self.registrar.registers("alice")[-1].headers.get("Authorization"))
        success = [event for event in stream.events if event["name"] == "SipRegisterSuccess"]
        self.assertEqual(sorted(event["details"]["name"] for event in success), ["alice", "bob"])
        self.assertEqual(success[0]["result"], "SipSuccess")

        # Through an outbound proxy: the flows start afresh there.
        proxy = ScriptedRegistrar(reactor, ("127.0.0.1", freeUdpPort()))
        self.addCleanup(proxy.port.stopListening)
        proxyPort = proxy.port.getHost().port
        code, _, body = yield self.client.request("PUT", "/api/outbound-proxy", {"host": "127.0.0.1",
                                                                                "port": proxyPort})
        self.assertEqual((code, body["outboundProxy"]), (200, {"host": "127.0.0.1", "port": proxyPort}))
        code, _, body = yield self.client.request("POST", "/api/registrations",
                                                  {"names": ["bob"], "host": host, "port": port,
                                                   "throughProxy": True, "timeoutMs": 2000})
        self.assertEqual((code, body["result"]), (200, "SipSuccess"))
        for _ in range(50):
            if proxy.registers("bob"):
                break
            yield deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(proxy.registers("bob")[0].headers.get("Route"), f"<sip:127.0.0.1:{proxyPort};lr>")
        code, _, body = yield self.client.request("DELETE", "/api/outbound-proxy")
        self.assertEqual((code, body["result"], body["outboundProxy"]), (200, "SipSuccess", None))

        code, _, body = yield self.client.request("DELETE", "/api/registrations")
        self.assertEqual((code, body["result"], body["registrations"]), (200, "SipSuccess", []))
        yield stream.waitFor("SipUnregisterSuccess")
        code, _, body = yield self.client.request("DELETE", "/api/credentials?name=alice")
        self.assertEqual((code, body["result"]), (200, "SipSuccess"))
        yield deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(proxy.bindings, {})
        self.assertNotIn("alice", self.registrar.bindings)

        self.assertNotIn(self.secret, json.dumps(stream.events))
        self.assertTrue(self.logs.lines)
        self.assertEqual([line for line in self.logs.lines if self.secret in line], [])

    @inlineCallbacks
    def test_registrationRefusals(self) -> None:
        """
        Requests the API or the engine refuse: 4xx with a JSON body naming
        the problem, and the password never echoed.
        """
        cases = [
            ("POST", "/api/registrations", {"names": ["alice"]}, 400, "MissingField"),
            ("POST", "/api/registrations", {"host": "127.0.0.1"}, 400, "MissingField"),
            ("POST", "/api/registrations", {"names": "alice", "host": "127.0.0.1"}, 400, "BadField"),
            ("POST", "/api/registrations", {"names": ["alice"], "host": "127.0.0.1", "natDetect": 1}, 400,
             "BadField"),
            ("POST", "/api/registrations", {"names": ["alice"], "host": "127.0.0.1", "colour": 1}, 400,
             "UnknownField"),
            ("POST", "/api/registrations", {"names": ["al ice"], "host": "127.0.0.1"}, 400, "SipBadNameList"),
            ("POST", "/api/registrations", {"names": ["alice", "alice"], "host": "127.0.0.1"}, 400,
             "SipBadNameList"),
            ("POST", "/api/registrations", {"names": ["alice"], "host": "127.0.0.1", "port": 0}, 400,
             "SipBadParameter"),
            ("POST", "/api/registrations", {"names": ["alice"], "host": "127.0.0.1", "throughProxy": True}, 400,
             "SipBadParameter"),
            ("POST", "/api/registrations", {"names": ["alice"], "host": "::1"}, 400, "SipBadParameter"),
            ("PUT", "/api/credentials", {"user": "alice"}, 400, "MissingField"),
            ("PUT", "/api/credentials", {"user": "alice", "password": self.secret, "name": "a b"}, 400,
             "SipBadParameter"),
            ("PUT", "/api/credentials", {"user": "", "password": self.secret}, 400, "SipBadParameter"),
            ("PUT", "/api/outbound-proxy", {"host": "127.0.0.1", "port": 0}, 400, "SipBadParameter"),
            ("PUT", "/api/outbound-proxy", {"port": 5060}, 400, "MissingField"),
            ("GET", "/api/credentials", None, 405, "MethodNotAllowed"),
            ("PUT", "/api/registrations", {}, 405, "MethodNotAllowed"),
        ]
        for method, path, body, status, error in cases:
            code, _, answer = yield self.client.request(method, path, body)
            self.assertEqual((code, answer.get("error", answer.get("result"))), (status, error),
                             (method, path, answer))
            self.assertTrue(answer["message"])
            self.assertNotIn(self.secret, json.dumps(answer))
        self.assertEqual(self.engine.getRegistrationState(), [])
        self.assertEqual([line for line in self.logs.lines if self.secret in line], [])


class TokenTests(ControlServiceCase):
    token = "test-token-0123456789abcdef"

    @inlineCallbacks
    def test_tokenRequired(self) -> None:
        """
        With a token the API answers only requests that carry it; the page
        itself (no data) is served without it.
        """
        code, _, status = yield self.client.request("GET", "/api/status")
        self.assertEqual((code, status["tokenRequired"]), (200, True))
        anonymous = ApiClient(self.control.url)
        code, headers, body = yield anonymous.request("GET", "/api/status")
        self.assertEqual((code, body["error"]), (401, "Unauthorized"))
        self.assertEqual(headers.getRawHeaders(b"www-authenticate"), [b'Bearer realm="lmevoip"'])
        code, _, body = yield ApiClient(self.control.url, "wrong-token-0123456789abc").request(
            "POST", "/api/lines/0/hangup")
        self.assertEqual(code, 401)
        code, _, _ = yield anonymous.request("GET", "/")
        self.assertEqual(code, 200)


class ControlStartupTests(TestCase):
    @inlineCallbacks
    def test_controlPortInUse(self) -> None:
        """
        A control endpoint that cannot listen fails the daemon's start with
        a StartupError naming C{--control}, after stopping the engine.
        """
        port = freeTcpPort()
        holder = socket.socket()
        self.addCleanup(holder.close)
        holder.bind(("127.0.0.1", port))
        holder.listen(1)
        engine = VoipMediaEngine(EngineConfig(sipHost="127.0.0.1", sipPort=0), reactor)
        service = tap.LmevoipService(engine, keepAlive=(True, True, 30000))
        control = ControlService(engine, f"tcp:{port}:interface=127.0.0.1", reactor=reactor)
        service.setControl(control)
        quiet(service, engine)
        self.addCleanup(control.site.monitor.close)
        error = self.assertRaises(tap.StartupError, service.startService)
        self.assertIn("--control: cannot listen", str(error))
        yield service.aborted
        self.assertFalse(engine.running)
        self.assertIsNone(engine.sipAddress)


class SlowEventClientTests(ControlServiceCase):
    @inlineCallbacks
    def test_clientThatStopsReadingIsDropped(self) -> None:
        """
        Over a real TCP connection: a client that opens the events stream
        and stops reading fills its socket buffers; the server then queues
        a bounded number of events and aborts the connection, while a
        client that reads keeps its stream.
        """
        hub = self.control.site.hub
        port = int(self.control.url.rsplit(":", 1)[1].strip("/"))
        slow = socket.socket()
        self.addCleanup(slow.close)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", port))
        slow.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        response, reader = yield self.client.events()
        for _ in range(100):
            if len(hub.clients) == 2:
                break
            yield deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(len(hub.clients), 2)
        payload = b'data: {"name": "Flood", "padding": "' + b"x" * 4096 + b'"}\n\n'
        sent = 0
        # Slowly enough for the reading client (in this same reactor) to
        # keep up: a few events per reactor turn.
        while hub.dropped == 0 and sent < 20_000:
            for _ in range(8):
                hub.broadcast(payload)
            sent += 8
            yield deferLater(reactor, 0.001, lambda: None)
        self.assertEqual(hub.dropped, 1, f"{sent} events of 4 KiB sent")
        self.assertEqual(len(hub.clients), 1)
        # The reading client is still served.
        code, _, _ = yield self.client.request("POST", "/api/lines/0/call", {"uri": "sip:nobody@127.0.0.1:9"})
        self.assertEqual(code, 200)
        event = yield reader.waitFor("SipLineStateChanged")
        self.assertEqual(event["line"], 0)
