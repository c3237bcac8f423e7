"""
Tests for L{lmevoip.keepalive.null}, NULL (CRLF) keep-alives: the SDK's
C{sendSipKeepAlive}.
"""

from __future__ import annotations

from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.error import DNSLookupError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from lmevoip.interfaces import INullKeepAlive
from lmevoip.keepalive.interval import KeepAliveParameterError
from lmevoip.keepalive.null import CRLF, NullKeepAliveService, resolverFromNameResolver
from lmevoip.keepalive.scheduler import KeepAliveScheduler
from tests.test_keepalive_scheduler import advanceTo


class FakeResolver:
    """
    C{resolve(host)} returning Deferreds the test fires.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[str, defer.Deferred]] = []
        self.cancelled: list[str] = []

    def __call__(self, host: str) -> defer.Deferred:
        self.pending.append((host, defer.Deferred(lambda d: self.cancelled.append(host))))
        return self.pending[-1][1]


class ServiceTestsMixin:
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.datagrams: list[tuple[float, bytes, tuple[str, int]]] = []
        self.events: list[tuple[str, dict]] = []
        self.resolver = FakeResolver()
        self.service = NullKeepAliveService(
            self.send,
            self.clock,
            resolve=self.resolver,
            onEvent=lambda name, **fields: self.events.append((name, fields)),
        )
        self.logged: list[dict] = []
        self.service.log = Logger(observer=self.logged.append)
        self.service.startService()

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        self.datagrams.append((self.clock.seconds(), data, addr))

    def sent(self, addr: tuple[str, int]) -> list[float]:
        """
        The times of the CRLFs sent to C{addr}.
        """
        times = []
        for when, data, to in self.datagrams:
            self.assertEqual(data, CRLF)
            if to == addr:
                times.append(when)
        return times


class PeriodTests(ServiceTestsMixin, SynchronousTestCase):
    def test_provides(self) -> None:
        """
        The service provides L{INullKeepAlive}.
        """
        self.assertTrue(verifyObject(INullKeepAlive, self.service))

    def test_periodicCrlf(self) -> None:
        """
        Enabling sends a CRLF at once, then one every C{keepAliveSeconds}, to
        the right address, from the given send callable.
        """
        self.service.sendSipKeepAlive("192.0.2.10", 5060, True, 15)
        self.clock.advance(0)
        self.assertEqual(self.datagrams, [(0, b"\r\n", ("192.0.2.10", 5060))])
        advanceTo(self.clock, 46)
        self.assertEqual(self.sent(("192.0.2.10", 5060)), [0, 15, 30, 45])
        self.assertEqual(
            self.service.destination("192.0.2.10", 5060),
            {
                "host": "192.0.2.10",
                "port": 5060,
                "keepAliveSeconds": 15.0,
                "state": "active",
                "address": "192.0.2.10",
                "sendCount": 4,
                "failureCount": 0,
                "lastSent": 45,
                "lastError": None,
                "resolutionFailures": 0,
                "lastResolutionError": None,
            },
        )

    def test_recallChangesPeriod(self) -> None:
        """
        Calling again for the same destination changes the period at once:
        the next CRLF is due one new period after the last one (or now, if
        that is already past); the same period changes nothing.
        """
        self.service.sendSipKeepAlive("192.0.2.10", 5060, True, 15)
        advanceTo(self.clock, 17)
        self.service.sendSipKeepAlive("192.0.2.10", 5060, True, 4)
        advanceTo(self.clock, 20)
        self.service.sendSipKeepAlive("192.0.2.10", 5060, True, 4)
        advanceTo(self.clock, 28)
        self.assertEqual(self.sent(("192.0.2.10", 5060)), [0, 15, 19, 23, 27])
        self.service.sendSipKeepAlive("192.0.2.10", 5060, True, 30)
        advanceTo(self.clock, 100)
        self.assertEqual(self.sent(("192.0.2.10", 5060)), [0, 15, 19, 23, 27, 57, 87])

    def test_shorterPeriodAlreadyDue(self) -> None:
        """
        A new period shorter than the time since the last CRLF sends at once.
        """
        self.service.sendSipKeepAlive("192.0.2.10", 5060, True, 30)
        advanceTo(self.clock, 12)
        self.service.sendSipKeepAlive("192.0.2.10", 5060, True, 5)
        self.clock.advance(0)
        self.assertEqual(self.sent(("192.0.2.10", 5060)), [0, 12])

    def test_disableStops(self) -> None:
        """
        Disabling stops the CRLFs, forgets the destination and leaves no
        delayed call; disabling an unknown destination does nothing.
        """
        self.service.sendSipKeepAlive("192.0.2.10", 5060, True, 10)
        advanceTo(self.clock, 10)
        self.service.sendSipKeepAlive("192.0.2.10", 5060, False, 0)
        advanceTo(self.clock, 100)
        self.assertEqual(self.sent(("192.0.2.10", 5060)), [0, 10])
        self.assertIsNone(self.service.destination("192.0.2.10", 5060))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.service.sendSipKeepAlive("192.0.2.99", 5060, False, 0)
        self.assertEqual(self.service.snapshot(), [])

    def test_severalDestinations(self) -> None:
        """
        Destinations are independent: their own period; disabling one leaves
        the others; the same host on another port is another destination.
        """
        self.service.sendSipKeepAlive("192.0.2.10", 5060, True, 10)
        self.service.sendSipKeepAlive("192.0.2.10", 5080, True, 25)
        self.service.sendSipKeepAlive("[2001:DB8::1]", 5060, True, 7)
        advanceTo(self.clock, 15)
        self.service.sendSipKeepAlive("2001:db8::1", 5060, False, 0)
        advanceTo(self.clock, 50)
        self.assertEqual(self.sent(("192.0.2.10", 5060)), [0, 10, 20, 30, 40, 50])
        self.assertEqual(self.sent(("192.0.2.10", 5080)), [0, 25, 50])
        self.assertEqual(self.sent(("2001:db8::1", 5060)), [0, 7, 14])
        self.assertEqual(
            sorted((d["host"], d["port"]) for d in self.service.snapshot()),
            [("192.0.2.10", 5060), ("192.0.2.10", 5080)],
        )

    def test_badArguments(self) -> None:
        """
        Bad arguments raise L{KeepAliveParameterError} (a C{ValueError}
        naming the parameter) and change nothing.
        """
        cases = [
            (("", 5060, True, 10), "host"),
            ((None, 5060, True, 10), "host"),
            (("bad host", 5060, True, 10), "host"),
            (("[example.com]", 5060, True, 10), "host"),
            (("a..b", 5060, True, 10), "host"),
            (("192.0.2.1", 0, True, 10), "port"),
            (("192.0.2.1", 65536, True, 10), "port"),
            (("192.0.2.1", "5060", True, 10), "port"),
            (("192.0.2.1", True, True, 10), "port"),
            (("192.0.2.1", 5060, True, 0), "keepAliveSeconds"),
            (("192.0.2.1", 5060, True, -5), "keepAliveSeconds"),
            (("192.0.2.1", 5060, True, 0.01), "keepAliveSeconds"),
            (("192.0.2.1", 5060, True, 86400 * 365), "keepAliveSeconds"),
            (("192.0.2.1", 5060, True, float("nan")), "keepAliveSeconds"),
            (("192.0.2.1", 5060, True, "10"), "keepAliveSeconds"),
            (("192.0.2.1", 5060, "yes", 10), "enableState"),
            (("192.0.2.1", 5060, 2, 10), "enableState"),
        ]
        for args, parameter in cases:
            error = self.assertRaises(KeepAliveParameterError, self.service.sendSipKeepAlive, *args)
            self.assertIsInstance(error, ValueError)
            self.assertEqual(error.parameter, parameter, args)
        self.service.sendSipKeepAlive("192.0.2.1", 5060, True, 10)
        self.assertRaises(KeepAliveParameterError, self.service.sendSipKeepAlive, "192.0.2.1", 5060, True, 0)
        self.assertEqual(self.service.destination("192.0.2.1", 5060)["keepAliveSeconds"], 10)
        self.assertEqual(len(self.service.snapshot()), 1)

    def test_noResolverRefusesNames(self) -> None:
        """
        Without a resolver (a plain clock, no C{resolve}), a host name is
        refused; IP literals work.
        """
        service = NullKeepAliveService(self.send, self.clock)
        error = self.assertRaises(KeepAliveParameterError, service.sendSipKeepAlive, "proxy.example", 5060, True, 10)
        self.assertEqual(error.parameter, "host")
        service.sendSipKeepAlive("127.0.0.1", 5060, True, 10)

    def test_sendFailureCounted(self) -> None:
        """
        A send that raises (a socket error) is counted on the destination and
        the CRLFs carry on.
        """
        failures = [OSError(101, "Network is unreachable")]

        def send(data: bytes, addr: tuple[str, int]) -> None:
            if failures:
                raise failures.pop()
            self.send(data, addr)

        service = NullKeepAliveService(send, self.clock)
        service.scheduler.log = Logger(observer=self.logged.append)
        service.startService()
        service.sendSipKeepAlive("192.0.2.10", 5060, True, 10)
        advanceTo(self.clock, 20)
        state = service.destination("192.0.2.10", 5060)
        self.assertEqual((state["sendCount"], state["failureCount"]), (3, 1))
        self.assertEqual(state["lastError"], "OSError: [Errno 101] Network is unreachable")
        self.assertEqual(self.sent(("192.0.2.10", 5060)), [10, 20])
        self.assertEqual(self.logged[0]["flowName"], "null:192.0.2.10:5060")

    def test_stopAndRestart(self) -> None:
        """
        Stopping the service stops every CRLF and leaves no delayed call;
        starting it again resumes every destination at once.
        """
        self.service.sendSipKeepAlive("192.0.2.10", 5060, True, 10)
        advanceTo(self.clock, 10)
        self.assertIsNone(self.successResultOf(self.service.stopService()))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.service.destination("192.0.2.10", 5060)["state"], "stopped")
        advanceTo(self.clock, 55)
        self.service.startService()
        advanceTo(self.clock, 65)
        self.assertEqual(self.sent(("192.0.2.10", 5060)), [0, 10, 55, 65])

    def test_enableWhileStopped(self) -> None:
        """
        A destination enabled while the service is stopped starts with it.
        """
        self.service.stopService()
        self.service.sendSipKeepAlive("192.0.2.10", 5060, True, 10)
        advanceTo(self.clock, 30)
        self.assertEqual(self.datagrams, [])
        self.service.startService()
        self.clock.advance(0)
        self.assertEqual(self.sent(("192.0.2.10", 5060)), [30])

    def test_sharedScheduler(self) -> None:
        """
        With a shared scheduler the destinations are its flows; the service
        neither starts nor stops it, and removes its flows when stopped.
        """
        shared = KeepAliveScheduler(self.clock)
        shared.startService()
        other = shared.addFlow("rtp", 20, lambda flow: None)
        service = NullKeepAliveService(self.send, self.clock, scheduler=shared)
        service.startService()
        service.sendSipKeepAlive("192.0.2.10", 5060, True, 10)
        self.assertEqual(sorted(flow.name for flow in shared.flows()), ["null:192.0.2.10:5060", "rtp"])
        service.stopService()
        self.assertTrue(shared.running)
        self.assertEqual(list(shared.flows()), [other])


class ResolutionTests(ServiceTestsMixin, SynchronousTestCase):
    def test_resolvesNames(self) -> None:
        """
        A host name is resolved through the resolver (lower-cased, without a
        trailing dot) before the first CRLF, which goes to the address.
        """
        self.service.sendSipKeepAlive("Proxy.Example.", 5060, True, 10)
        self.assertEqual([host for host, _ in self.resolver.pending], ["proxy.example"])
        self.assertEqual(self.service.destination("proxy.example", 5060)["state"], "resolving")
        advanceTo(self.clock, 2)
        self.assertEqual(self.datagrams, [])
        self.resolver.pending[0][1].callback("198.51.100.7")
        self.clock.advance(0)
        advanceTo(self.clock, 12)
        self.assertEqual(self.sent(("198.51.100.7", 5060)), [2, 12])
        self.assertEqual(
            self.events, [("sipKeepAliveResolved", {"host": "proxy.example", "port": 5060, "address": "198.51.100.7"})]
        )
        self.assertEqual(self.service.destination("PROXY.example", 5060)["address"], "198.51.100.7")

    def test_resolutionFailureRetries(self) -> None:
        """
        A failed resolution is logged and reported as an event, sends
        nothing, and is retried every C{resolveRetryDelay} seconds until it
        succeeds.
        """
        self.service.sendSipKeepAlive("proxy.example", 5060, True, 10)
        self.resolver.pending[0][1].errback(DNSLookupError("proxy.example"))
        self.assertEqual(
            self.events,
            [
                (
                    "sipKeepAliveResolutionFailed",
                    {
                        "host": "proxy.example",
                        "port": 5060,
                        "error": "DNSLookupError: DNS lookup failed: proxy.example.",
                        "retryIn": 30.0,
                    },
                )
            ],
        )
        state = self.service.destination("proxy.example", 5060)
        self.assertEqual((state["state"], state["resolutionFailures"]), ("unresolved", 1))
        failures = [event["log_failure"].type for event in self.logged if "log_failure" in event]
        self.assertEqual(failures, [DNSLookupError])
        advanceTo(self.clock, 29.9)
        self.assertEqual(len(self.resolver.pending), 1)
        advanceTo(self.clock, 30)
        self.assertEqual(len(self.resolver.pending), 2)
        self.resolver.pending[1][1].errback(DNSLookupError("proxy.example"))
        advanceTo(self.clock, 60)
        self.resolver.pending[2][1].callback("198.51.100.7")
        advanceTo(self.clock, 70)
        self.assertEqual(self.sent(("198.51.100.7", 5060)), [60, 70])
        self.assertEqual(self.service.destination("proxy.example", 5060)["resolutionFailures"], 2)

    def test_reResolution(self) -> None:
        """
        A resolved name is resolved again after C{reResolveInterval}, in the
        background: CRLFs keep going to the old address meanwhile and after
        a failure, and move to a new address when one arrives.
        """
        service = NullKeepAliveService(self.send, self.clock, resolve=self.resolver, reResolveInterval=100)
        service.log = Logger(observer=self.logged.append)
        service.startService()
        service.sendSipKeepAlive("proxy.example", 5060, True, 40)
        self.resolver.pending[0][1].callback("198.51.100.7")
        advanceTo(self.clock, 110)
        self.assertEqual(len(self.resolver.pending), 1)
        self.assertEqual(self.sent(("198.51.100.7", 5060)), [0, 40, 80])
        advanceTo(self.clock, 120)  # the first send after 100 s resolves again
        self.assertEqual(len(self.resolver.pending), 2)
        self.resolver.pending[1][1].errback(DNSLookupError("proxy.example"))
        advanceTo(self.clock, 160)
        self.assertEqual(self.sent(("198.51.100.7", 5060)), [0, 40, 80, 120, 160])
        self.assertEqual(len(self.resolver.pending), 3)  # the first send 30 s after the failure
        self.resolver.pending[2][1].callback("198.51.100.8")
        advanceTo(self.clock, 200)
        self.assertEqual(self.sent(("198.51.100.8", 5060)), [200])

    def test_disableWhileResolving(self) -> None:
        """
        Disabling a destination whose name is being resolved cancels the
        resolution: nothing is sent, no event, no delayed call.
        """
        self.service.sendSipKeepAlive("proxy.example", 5060, True, 10)
        self.service.sendSipKeepAlive("proxy.example", 5060, False, 10)
        self.assertEqual(self.resolver.cancelled, ["proxy.example"])
        advanceTo(self.clock, 100)
        self.assertEqual((self.datagrams, self.events, self.clock.getDelayedCalls()), ([], [], []))

    def test_disableWhileWaitingToRetry(self) -> None:
        """
        Disabling a destination waiting to retry its resolution cancels the
        retry.
        """
        self.service.sendSipKeepAlive("proxy.example", 5060, True, 10)
        self.resolver.pending[0][1].errback(DNSLookupError("proxy.example"))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.service.sendSipKeepAlive("proxy.example", 5060, False, 10)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_resolverRaises(self) -> None:
        """
        A resolver that raises instead of failing its Deferred counts as a
        failed resolution.
        """

        def resolve(host: str) -> defer.Deferred:
            raise RuntimeError("resolver broken")

        service = NullKeepAliveService(self.send, self.clock, resolve=resolve, onEvent=self.service._onEvent)
        service.log = Logger(observer=self.logged.append)
        service.startService()
        service.sendSipKeepAlive("proxy.example", 5060, True, 10)
        self.assertEqual(self.events[0][1]["error"], "RuntimeError: resolver broken")
        self.assertEqual(service.destination("proxy.example", 5060)["state"], "unresolved")

    def test_onEventRaises(self) -> None:
        """
        An C{onEvent} that raises is logged and changes nothing.
        """

        def onEvent(name: str, **fields: object) -> None:
            raise ValueError("application bug")

        self.service._onEvent = onEvent
        self.service.sendSipKeepAlive("proxy.example", 5060, True, 10)
        self.resolver.pending[0][1].callback("198.51.100.7")
        self.clock.advance(0)
        self.assertEqual(self.sent(("198.51.100.7", 5060)), [0])
        self.assertEqual(self.logged[-1]["log_failure"].type, ValueError)

    def test_nameResolverAdapter(self) -> None:
        """
        L{resolverFromNameResolver} asks an C{IHostnameResolver} for UDP
        addresses of the wanted types and fires with the first one, or
        fails with C{DNSLookupError} when there is none.
        """
        calls = []

        class FakeNameResolver:
            def __init__(self, answers):
                self.answers = answers

            def resolveHostName(self, receiver, hostName, portNumber=0, addressTypes=None, transportSemantics="TCP"):
                calls.append((hostName, portNumber, tuple(addressTypes), transportSemantics))
                receiver.resolutionBegan(None)
                for address in self.answers:
                    receiver.addressResolved(IPv4Address("UDP", address, 0))
                receiver.resolutionComplete()

        resolve = resolverFromNameResolver(FakeNameResolver(["203.0.113.5", "203.0.113.6"]))
        self.assertEqual(self.successResultOf(resolve("proxy.example")), "203.0.113.5")
        self.assertEqual(calls, [("proxy.example", 0, (IPv4Address,), "UDP")])
        self.failureResultOf(resolverFromNameResolver(FakeNameResolver([]))("nowhere.example"), DNSLookupError)


class Collector(DatagramProtocol):
    def __init__(self, clock) -> None:
        self.clock = clock
        self.received: list[tuple[float, bytes, tuple[str, int]]] = []

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append((self.clock.seconds(), data, addr))


class RealSocketTests(TestCase):
    timeout = 10

    @defer.inlineCallbacks
    def test_crlfOverLoopback(self):
        """
        Over real UDP sockets on 127.0.0.1: CRLFs arrive every 0.2 s from
        the SIP socket's port, resolved through the reactor's resolver, and
        stop once disabled.
        """
        from twisted.internet import reactor

        receiver = Collector(reactor)
        receiverPort = reactor.listenUDP(0, receiver, interface="127.0.0.1")
        self.addCleanup(receiverPort.stopListening)
        sipPort = reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")
        self.addCleanup(sipPort.stopListening)
        service = NullKeepAliveService(sipPort.write, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        target = receiverPort.getHost().port
        enabledAt = reactor.seconds()
        service.sendSipKeepAlive("localhost", target, True, 0.2)
        yield task.deferLater(reactor, 0.75, lambda: None)
        service.sendSipKeepAlive("localhost", target, False, 0)
        enabledFor = reactor.seconds() - enabledAt
        arrived = len(receiver.received)
        yield task.deferLater(reactor, 0.45, lambda: None)
        self.assertEqual(len(receiver.received), arrived)
        # One at once, then one per 0.2 s (the reactor may run late under
        # load; the schedule keeps its phase, so count, do not time, them).
        self.assertTrue(3 <= arrived <= enabledFor / 0.2 + 1, (arrived, enabledFor))
        self.assertEqual({data for _, data, _ in receiver.received}, {b"\r\n"})
        self.assertEqual({addr for _, _, addr in receiver.received}, {("127.0.0.1", sipPort.getHost().port)})
        times = [when for when, _, _ in receiver.received]
        meanGap = (times[-1] - times[0]) / (arrived - 1)
        self.assertTrue(0.15 <= meanGap <= 0.25, times)


class DestinationLimitTests(SynchronousTestCase):
    def test_limit(self):
        """
        Enabling more destinations than C{maxDestinations} is refused with
        L{KeepAliveParameterError} and changes nothing; re-configuring or
        disabling an existing one still works, and frees a place.
        """
        from twisted.internet.task import Clock

        from lmevoip.keepalive.interval import KeepAliveParameterError
        from lmevoip.keepalive.null import NullKeepAliveService

        clock = Clock()
        sent = []
        service = NullKeepAliveService(lambda data, addr: sent.append(addr), clock, maxDestinations=2)
        service.startService()
        self.addCleanup(service.stopService)
        service.sendSipKeepAlive("192.0.2.1", 5060, True, 10)
        service.sendSipKeepAlive("192.0.2.2", 5060, True, 10)
        self.assertRaises(KeepAliveParameterError, service.sendSipKeepAlive, "192.0.2.3", 5060, True, 10)
        self.assertEqual(len(service.snapshot()), 2)
        service.sendSipKeepAlive("192.0.2.2", 5060, True, 5)
        service.sendSipKeepAlive("192.0.2.1", 5060, False, 10)
        service.sendSipKeepAlive("192.0.2.3", 5060, True, 10)
        self.assertEqual(sorted(entry["host"] for entry in service.snapshot()), ["192.0.2.2", "192.0.2.3"])
