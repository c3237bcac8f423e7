"""
Tests for the NAT lab, L{tests.natlab}: its names, its nftables ruleset
and its self-check report without root; and, as root, real labs: the
topology, the NAT behaviour (masquerade, replies, timeouts, which
direction refreshes a binding, unsolicited traffic), the self-check
failing on a broken router, conntrack flushing, processes and captures in
the namespaces, teardown, and the hand-run command line.

The real-lab tests skip without root, C{ip} or C{nft}, or fail under
C{LMEVOIP_REQUIRE_PEERS=1} (see L{tests.support}).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import sys
from pathlib import Path
from unittest import SkipTest

from twisted.internet import defer, reactor, task
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorTCP, IReactorTime, IReactorUDP
from twisted.internet.protocol import ClientFactory, DatagramProtocol, Factory, Protocol
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from tests.natlab import lab as labModule
from tests.natlab.lab import (
    LAN_ADDRESS,
    LAN_NETWORK,
    ROUTER_LAN_ADDRESS,
    ROUTER_WAN_ADDRESS,
    WAN_ADDRESS,
    WAN_NETWORK,
    NatCheck,
    NatCheckFailed,
    NatLab,
    NatLabUnavailable,
    UdpRecorder,
    buildRuleset,
    labName,
    listLabs,
    parseLabName,
    removeLab,
    staleLabs,
    startNatLab,
)
from tests.natlab.netns import NETNS_DIR, readSysctl, writeSysctl
from tests.peers import PeerProcess
from tests.peers.ports import PortTimeout
from tests.peers.tshark import parseFields, runTshark
from tests.support import PeerMissing, requireRoot, requireTool

CHECKOUT = Path(__file__).resolve().parent.parent
TIMEOUT_KEYS = ("net.netfilter.nf_conntrack_udp_timeout", "net.netfilter.nf_conntrack_udp_timeout_stream")


def _offlineLab(**options: object) -> NatLab:
    """
    A lab object that is never brought up (so no root is needed).
    """
    return NatLab(name=labName("t", 4194304, 999), **options)  # type: ignore[arg-type]


class NameTests(SynchronousTestCase):
    """
    Lab names, namespace and interface names.
    """

    def test_roundTrip(self) -> None:
        self.assertEqual(parseLabName(labName("t", 1234, 5)), ("t", 1234, 5))
        self.assertEqual(parseLabName(labName("m", 7, 0)), ("m", 7, 0))

    def test_counterWraps(self) -> None:
        self.assertEqual(labName("t", 1, 1005), "lmnat-t1-5")

    def test_notOurs(self) -> None:
        for name in ("lmnat-x1-1", "other", "lmnat-t1-1-lan", "lmnat-t12345678-1", "lmnat-t1-1000"):
            self.assertIsNone(parseLabName(name), name)

    def test_badKind(self) -> None:
        self.assertRaises(ValueError, labName, "x", 1, 1)

    def test_longestNamesFit(self) -> None:
        """
        With the largest PID Linux hands out and the largest counter, every
        interface name stays within IFNAMSIZ - 1 = 15 characters, and the
        names of one lab are distinct.
        """
        lab = _offlineLab()
        interfaces = [lab.lanInterface, lab.routerLanInterface, lab.wanInterface, lab.wanHostInterface]
        for interface in interfaces:
            self.assertLessEqual(len(interface), 15, interface)
        self.assertEqual(len(set(interfaces)), 4)
        self.assertEqual(lab.namespaces, ["lmnat-t4194304-999-lan", "lmnat-t4194304-999-rtr",
                                          "lmnat-t4194304-999-wan"])

    def test_roles(self) -> None:
        lab = _offlineLab()
        self.assertEqual(lab.namespace("lan"), lab.lanNamespace)
        self.assertEqual(lab.namespace("router"), lab.routerNamespace)
        self.assertEqual(lab.namespace(lab.wanNamespace), lab.wanNamespace)
        self.assertRaises(ValueError, lab.namespace, "dmz")

    def test_links(self) -> None:
        lab = _offlineLab()
        self.assertEqual(lab.link("router-wan"),
                         (lab.routerNamespace, lab.wanInterface, ROUTER_WAN_ADDRESS, WAN_ADDRESS))
        self.assertEqual(lab.link(lab.lanInterface),
                         (lab.lanNamespace, lab.lanInterface, LAN_ADDRESS, ROUTER_LAN_ADDRESS))
        self.assertRaises(ValueError, lab.link, "eth0")

    def test_staleLabs(self) -> None:
        names = ["lmnat-t100-0", "lmnat-t200-1", "lmnat-m300-0", "someone-else"]
        alive = {100: True, 200: False, 300: False}.__getitem__
        self.assertEqual(staleLabs(names, alive=alive), ["lmnat-t200-1", "lmnat-m300-0"])
        self.assertEqual(staleLabs(names, kinds="t", alive=alive), ["lmnat-t200-1"])


class ParameterTests(SynchronousTestCase):
    """
    What a lab accepts.
    """

    def test_wholeSeconds(self) -> None:
        self.assertRaises(ValueError, _offlineLab, timeout=2.5)
        self.assertRaises(ValueError, _offlineLab, timeout=0)
        lab = _offlineLab(timeout=3.0)
        self.assertEqual((lab.timeout, type(lab.timeout)), (3, int))

    def test_modes(self) -> None:
        self.assertRaises(ValueError, _offlineLab, refresh="inbound")
        self.assertRaises(ValueError, _offlineLab, portMapping="sequential")

    def test_notALabName(self) -> None:
        self.assertRaises(ValueError, NatLab, name="mylab")

    def test_benchmarkingRangeOnly(self) -> None:
        """
        Every address of the lab is in 198.18.0.0/15, LAN and WAN do not
        overlap, and each address is in its own network.
        """
        benchmarking = ipaddress.ip_network("198.18.0.0/15")
        lan, wan = ipaddress.ip_network(LAN_NETWORK), ipaddress.ip_network(WAN_NETWORK)
        self.assertTrue(lan.subnet_of(benchmarking) and wan.subnet_of(benchmarking))
        self.assertFalse(lan.overlaps(wan))
        for address in (LAN_ADDRESS, ROUTER_LAN_ADDRESS):
            self.assertIn(ipaddress.ip_address(address), lan)
        for address in (ROUTER_WAN_ADDRESS, WAN_ADDRESS):
            self.assertIn(ipaddress.ip_address(address), wan)


class RulesetTests(SynchronousTestCase):
    """
    The router's nftables rules.
    """

    def test_forwardOnlyRepliesInward(self) -> None:
        rules = buildRuleset("rl", "rw", ROUTER_WAN_ADDRESS, 3)
        forward = rules[rules.index("chain forward"):rules.index("chain input")]
        self.assertIn("policy drop", forward)
        self.assertIn('iifname "rl" oifname "rw" accept', forward)
        self.assertIn('iifname "rw" oifname "rl" ct state established,related accept', forward)

    def test_outboundGate(self) -> None:
        rules = buildRuleset("rl", "rw", ROUTER_WAN_ADDRESS, 7, refresh="outbound")
        self.assertIn("timeout 7s", rules)
        self.assertIn("priority srcnat + 10", rules)
        self.assertIn("priority raw", rules)
        self.assertIn(f"ip daddr {ROUTER_WAN_ADDRESS} meta l4proto udp ip saddr . udp sport . udp dport"
                      " != @outbound", rules)
        both = buildRuleset("rl", "rw", ROUTER_WAN_ADDRESS, 7, refresh="both")
        self.assertNotIn("@outbound", both)
        self.assertNotIn("priority raw", both)

    def test_portMapping(self) -> None:
        def masquerade(mode: str) -> str:
            rules = buildRuleset("rl", "rw", ROUTER_WAN_ADDRESS, 3, portMapping=mode)
            return re.search(r'oifname "rw" (masquerade.*)', rules).group(1)  # type: ignore[union-attr]

        self.assertEqual(masquerade("preserve"), "masquerade")
        self.assertEqual(masquerade("random"), "masquerade random")
        self.assertEqual(masquerade("fully-random"), "masquerade fully-random")


class NatCheckTests(SynchronousTestCase):
    """
    The self-check's report.
    """

    def test_passed(self) -> None:
        report = NatCheck("lmnat-t1-0", 3, "outbound", LAN_ADDRESS, 4000, ROUTER_WAN_ADDRESS, 4000)
        self.assertFalse(report.passed)  # nothing checked yet
        report.add("first", True)
        self.assertTrue(report.passed)
        report.add("second", False, "why")
        self.assertFalse(report.passed)
        self.assertTrue(report.portPreserved)
        text = report.format()
        self.assertIn("FAILED", text)
        self.assertIn("[FAIL] second: why", text)
        self.assertIn("[ok] first", text)
        self.assertIn(str(NatCheckFailed(report)), "the NAT lab failed its self-check:\n" + text)

    def test_portChanged(self) -> None:
        report = NatCheck("lmnat-t1-0", 3, "both", LAN_ADDRESS, 4000, ROUTER_WAN_ADDRESS, 5000)
        self.assertFalse(report.portPreserved)
        self.assertIn("port changed", report.format())


# -- real labs -------------------------------------------------------------------------------


def _after(seconds: float) -> defer.Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


def _lanAndWan(lab: NatLab) -> tuple[UdpRecorder, UdpRecorder, tuple[str, int], list]:
    """
    A UDP socket on the LAN host and one on the WAN host; the caller's
    cleanup closes them.
    """
    lan, wan = UdpRecorder(reactor), UdpRecorder(reactor)
    ports = [lab.listenUDP("lan", 0, lan, LAN_ADDRESS), lab.listenUDP("wan", 0, wan, WAN_ADDRESS)]
    return lan, wan, (WAN_ADDRESS, ports[1].getHost().port), ports


class RealLabTests(TestCase):
    """
    Real labs (root).
    """

    def setUp(self) -> None:
        requireRoot()
        self.ip = requireTool("ip")
        requireTool("nft")

    def _closeLater(self, ports: list) -> None:
        self.addCleanup(lambda: defer.gatherResults([p.stopListening() for p in ports]))

    @defer.inlineCallbacks
    def _json(self, lab: NatLab, where: str, *args: str) -> object:
        text = yield lab.run(where, [self.ip, "-j", *args])
        return json.loads(text)

    @defer.inlineCallbacks
    def test_topology(self):
        """
        Three namespaces; C{lo} up in each; the addresses and routes of the
        topology; no IPv6; forwarding on and the conntrack UDP timeouts set
        in the router only (the root namespace keeps its own values); no
        interface of the lab in the root namespace.
        """
        rootBefore = [readSysctl(None, key) for key in TIMEOUT_KEYS]
        lab = yield startNatLab(self, verify=False, timeout=2)
        for namespace in lab.namespaces:
            self.assertTrue((NETNS_DIR / namespace).exists(), namespace)
        self.assertIn(lab.name, listLabs())
        expected = {
            "lan": {"lo": ["127.0.0.1/8"], lab.lanInterface: [f"{LAN_ADDRESS}/24"]},
            "router": {"lo": ["127.0.0.1/8"], lab.routerLanInterface: [f"{ROUTER_LAN_ADDRESS}/24"],
                       lab.wanInterface: [f"{ROUTER_WAN_ADDRESS}/24"]},
            "wan": {"lo": ["127.0.0.1/8"], lab.wanHostInterface: [f"{WAN_ADDRESS}/24"]},
        }
        for where, interfaces in expected.items():
            links = yield self._json(lab, where, "addr")
            seen = {link["ifname"]: [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])]
                    for link in links}
            self.assertEqual(seen, interfaces, where)
            for link in links:
                self.assertIn("UP", link["flags"], (where, link["ifname"]))
        lanRoutes = yield self._json(lab, "lan", "route")
        self.assertIn({"dst": "default", "gateway": ROUTER_LAN_ADDRESS},
                      [{"dst": r["dst"], "gateway": r.get("gateway")} for r in lanRoutes])
        wanRoutes = yield self._json(lab, "wan", "route")
        self.assertEqual([r["dst"] for r in wanRoutes], [WAN_NETWORK])
        self.assertEqual(readSysctl(lab.routerNamespace, "net.ipv4.ip_forward"), "1")
        for key in TIMEOUT_KEYS:
            self.assertEqual(readSysctl(lab.routerNamespace, key), "2")
        self.assertEqual([readSysctl(None, key) for key in TIMEOUT_KEYS], rootBefore)
        rootInterfaces = set(os.listdir("/sys/class/net"))
        self.assertFalse(rootInterfaces & {lab.lanInterface, lab.routerLanInterface,
                                           lab.wanInterface, lab.wanHostInterface})

    @defer.inlineCallbacks
    def test_selfCheck(self):
        """
        The fixture's self-check passes on a default lab (outbound refresh,
        3 s): masquerade to the router's WAN address keeping the port, a
        reply gets in, a WAN datagram 2.5 s after the LAN's last one gets
        in without extending the binding, one 4.5 s after does not.
        """
        lab = yield startNatLab(self)
        report = lab.lastCheck
        self.assertTrue(report.passed, report.format())
        self.assertEqual(report.externalAddress, ROUTER_WAN_ADDRESS)
        self.assertTrue(report.portPreserved, report.format())
        self.assertEqual(len(report.checks), 8)
        self.assertIn("did not extend it", report.format())
        self.assertLess(report.duration, 10)
        lanPort, source = yield lab.probeMapping()
        self.assertEqual(source, (ROUTER_WAN_ADDRESS, lanPort))

    @defer.inlineCallbacks
    def test_parallelLabs(self):
        """
        Two labs at once, with other modes, do not disturb each other and
        both pass the self-check; random and fully-random masquerade change
        the source port (a random pick equal to the LAN port has odds of
        about 1 in 64,000); L{NatLab.attach} reads each lab's modes back.
        """
        both, fully = yield defer.gatherResults([
            startNatLab(self, verify=False, timeout=1, refresh="both", portMapping="random"),
            startNatLab(self, verify=False, timeout=1, portMapping="fully-random"),
        ])
        self.assertNotEqual(both.name, fully.name)
        reports = yield defer.gatherResults([both.verifyNat(), fully.verifyNat()])
        for report in reports:
            self.assertTrue(report.passed, report.format())
            self.assertFalse(report.portPreserved, report.format())
        self.assertEqual([r.refresh for r in reports], ["both", "outbound"])
        for lab in (both, fully):
            lanPort, source = yield lab.probeMapping()
            self.assertEqual(source[0], ROUTER_WAN_ADDRESS)
            self.assertNotEqual(source[1], lanPort)
        for lab in (both, fully):
            attached = yield NatLab.attach(lab.name)
            self.assertEqual((attached.timeout, attached.refresh, attached.portMapping),
                             (lab.timeout, lab.refresh, lab.portMapping))

    @defer.inlineCallbacks
    def _inboundStream(self, lab: NatLab, step: float, count: int):
        """
        The LAN sends once, then only the WAN host sends, every C{step}
        seconds from C{step / 2} on. Return the times (after the LAN's
        datagram, as sent) of the WAN datagrams that got in, and of those
        that did not.
        """
        lan, wan, far, ports = _lanAndWan(lab)
        self._closeLater(ports)
        start = reactor.seconds()
        lan.send(b"out", far)
        external = yield wan.waitFor(b"out", 2.0)
        self.assertIsNotNone(external)
        sent = []
        for k in range(count):
            yield task.deferLater(reactor, max(0.0, start + (k + 0.5) * step - reactor.seconds()),
                                  lambda: None)
            sent.append((reactor.seconds() - start, b"in-%d" % k))
            wan.send(b"in-%d" % k, external)
        yield _after(0.3)
        arrived = [t for t, payload in sent if lan.sources(payload)]
        lost = [t for t, payload in sent if not lan.sources(payload)]
        return arrived, lost

    @defer.inlineCallbacks
    def test_inboundRefresh(self):
        """
        With C{refresh="both"} (conntrack alone) a binding the WAN host
        keeps sending on stays open long after the LAN went quiet; with
        C{refresh="outbound"} it closes one timeout after the LAN's last
        datagram however much the WAN host sends. (Times are those at which
        the datagrams were really sent, so a late reactor cannot make this
        test fail; 0.1 s either side of the timeout is left undecided.)
        """
        both, outbound = yield defer.gatherResults([
            startNatLab(self, verify=False, timeout=2, refresh="both"),
            startNatLab(self, verify=False, timeout=2, refresh="outbound"),
        ])
        (bothIn, bothLost), (outIn, outLost) = yield defer.gatherResults([
            self._inboundStream(both, 0.5, 8), self._inboundStream(outbound, 0.5, 8)])
        self.assertEqual(bothLost, [])
        self.assertGreaterEqual(max(bothIn), 3.5)
        self.assertTrue(len(outIn) >= 2 and all(t < 2.1 for t in outIn), (outIn, outLost))
        self.assertTrue(len(outLost) >= 2 and all(t > 1.9 for t in outLost), (outIn, outLost))
        counters = yield outbound.counters()
        self.assertEqual(counters["gate_dropped"], len(outLost))

    @defer.inlineCallbacks
    def test_selfCheckCatchesLongTimeout(self):
        """
        A router whose conntrack timeout is longer than the lab's (here set
        behind its back) fails the self-check on the late datagram only.
        """
        lab = yield startNatLab(self, verify=False, timeout=1, refresh="both")
        for key in TIMEOUT_KEYS:
            writeSysctl(lab.routerNamespace, key, 30)
        failure = yield self.assertFailure(lab.verifyNat(), NatCheckFailed)
        failed = [description for description, passed, _ in failure.report.checks if not passed]
        self.assertEqual(failed, ["a WAN datagram 2.0s after the last refresh is dropped"])

    @defer.inlineCallbacks
    def test_selfCheckCatchesMissingMasquerade(self):
        """
        Without the masquerade rule the WAN host sees the LAN address, and
        the self-check says so.
        """
        lab = yield startNatLab(self, verify=False)
        yield lab.run("router", [requireTool("nft"), "flush", "chain", "ip", "natlab", "postrouting"])
        failure = yield self.assertFailure(lab.verifyNat(), NatCheckFailed)
        self.assertEqual(failure.report.externalAddress, LAN_ADDRESS)
        self.assertIn("[FAIL] it comes from the router's WAN address", failure.report.format())

    @defer.inlineCallbacks
    def test_flushConntrack(self):
        """
        L{NatLab.flushConntrack} forgets every binding: the conntrack table
        and the gate set are empty, and the WAN host's reply on the old
        binding no longer gets in.
        """
        lab = yield startNatLab(self, verify=False, timeout=5)
        lan, wan, far, ports = _lanAndWan(lab)
        self._closeLater(ports)
        lan.send(b"out", far)
        external = yield wan.waitFor(b"out", 2.0)
        wan.send(b"in-1", external)
        self.assertEqual((yield lan.waitFor(b"in-1", 2.0)), far)
        entries = lab.conntrackEntries()
        lanPort = ports[0].getHost().port
        self.assertTrue([e for e in entries if f"src={LAN_ADDRESS}" in e and f"sport={lanPort}" in e], entries)
        flushed = yield lab.flushConntrack()
        self.assertGreaterEqual(flushed, 1)
        self.assertEqual(lab.conntrackCount(), 0)
        gate = yield lab.run("router", [requireTool("nft"), "list", "set", "ip", "natlab", "outbound"])
        self.assertNotIn("elements", gate)
        wan.send(b"in-2", external)
        self.assertIsNone((yield lan.waitFor(b"in-2", 0.5)))

    @defer.inlineCallbacks
    def test_forwardFilter(self):
        """
        Even with a route to the LAN (the lab's WAN host has none), the
        router forwards nothing inward that conntrack does not know.
        """
        lab = yield startNatLab(self, verify=False)
        yield lab.run("wan", [self.ip, "route", "add", LAN_NETWORK, "via", ROUTER_WAN_ADDRESS])
        lan, wan, far, ports = _lanAndWan(lab)
        self._closeLater(ports)
        self.assertIsNone(wan.send(b"direct", (LAN_ADDRESS, ports[0].getHost().port)))
        self.assertIsNone((yield lan.waitFor(b"direct", 0.5)))
        counters = yield lab.counters()
        self.assertEqual(counters["forward_dropped"], 1)

    @defer.inlineCallbacks
    def test_spawn(self):
        """
        L{NatLab.spawn} runs a program in a namespace: a LAN program's
        datagram reaches the WAN host masqueraded; its output is kept.
        """
        lab = yield startNatLab(self, verify=False)
        wan = UdpRecorder(reactor)
        port = lab.listenUDP("wan", 0, wan, WAN_ADDRESS)
        self._closeLater([port])
        code = ("import json, socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                "s.connect((sys.argv[1], int(sys.argv[2]))); s.send(b'from-lan'); "
                "print(json.dumps({'source': s.getsockname()}))")
        process = lab.spawn("lan", [sys.executable, "-c", code, WAN_ADDRESS, str(port.getHost().port)])
        exit = yield process.whenEnded()
        self.assertEqual(exit.exitCode, 0, process.outputTail())
        source = json.loads(process.stdout)["source"]
        self.assertEqual(source[0], LAN_ADDRESS)
        seen = yield wan.waitFor(b"from-lan", 2.0)
        self.assertEqual(seen, (ROUTER_WAN_ADDRESS, source[1]))

    @defer.inlineCallbacks
    def test_waitForUdpPort(self):
        """
        L{NatLab.waitForUdpPort} reads the socket table of the namespace
        asked for: a WAN program's port is found in the WAN namespace, by
        its PID, and not in the LAN namespace.
        """
        lab = yield startNatLab(self, verify=False)
        code = ("import socket, sys, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                "s.bind((sys.argv[1], 0)); print(s.getsockname()[1], flush=True); time.sleep(60)")
        process = lab.spawn("wan", [sys.executable, "-c", code, WAN_ADDRESS])
        self.addCleanup(process.stop)
        yield process.waitForOutput(b"\n", "stdout")
        port = int(process.stdout)
        yield lab.waitForUdpPort("wan", port, pid=process.pid)
        yield self.assertFailure(lab.waitForUdpPort("lan", port, timeout=0.2), PortTimeout)

    @defer.inlineCallbacks
    def test_reactorIn(self):
        """
        A namespaced reactor provides the reactor's interfaces and makes
        its sockets in the namespace: a LAN address binds there (it would
        not in the root namespace), and a TCP connection from the LAN to
        a WAN server arrives from the router's WAN address.
        """
        lab = yield startNatLab(self, verify=False)
        lanReactor, wanReactor = lab.reactorIn("lan"), lab.reactorIn("wan")
        for interface in (IReactorUDP, IReactorTCP, IReactorTime):
            verifyObject(interface, lanReactor)
        self.assertRaises(CannotListenError, reactor.listenUDP, 0, DatagramProtocol(), LAN_ADDRESS)
        udp = lanReactor.listenUDP(0, DatagramProtocol(), LAN_ADDRESS)
        self.addCleanup(udp.stopListening)

        peers: defer.Deferred[str] = defer.Deferred()

        class Server(Protocol):
            def connectionMade(self) -> None:
                peers.callback(self.transport.getPeer().host)
                self.transport.loseConnection()

        class Client(Protocol):
            def connectionLost(self, reason: object) -> None:
                closed.callback(None)

        closed: defer.Deferred[None] = defer.Deferred()
        listening = wanReactor.listenTCP(0, Factory.forProtocol(Server), interface=WAN_ADDRESS)
        self.addCleanup(listening.stopListening)
        lanReactor.connectTCP(WAN_ADDRESS, listening.getHost().port, ClientFactory.forProtocol(Client))
        self.assertEqual((yield peers), ROUTER_WAN_ADDRESS)
        yield closed

    @defer.inlineCallbacks
    def test_capture(self):
        """
        A capture on the router's WAN side holds the LAN's datagrams with
        the router's WAN address as source, and never the LAN address; one
        on the LAN host's interface, ended by L{NatLab.down}, holds them
        with the LAN address.
        """
        requireTool("tshark")
        lab = yield startNatLab(self, verify=False)
        capture = yield lab.capture().start()
        lanSide = yield lab.capture("lan").start()
        lan, wan, far, ports = _lanAndWan(lab)
        self._closeLater(ports)
        for k in range(3):
            lan.send(b"captured-%d" % k, far)
        external = yield wan.waitFor(b"captured-2", 2.0)
        pcap = yield capture.stop()
        text = yield runTshark(["-r", str(pcap), "-Y", f"udp && {capture.excludeProbes}",
                                "-T", "fields", "-e", "ip.src", "-e", "udp.srcport",
                                "-e", "ip.dst", "-e", "udp.dstport"])
        rows = parseFields(text, 4)
        self.assertEqual(rows, [[ROUTER_WAN_ADDRESS, str(external[1]), *map(str, far)]] * 3)
        leaked = yield runTshark(["-r", str(pcap), "-Y", f"ip.addr == {LAN_ADDRESS}"])
        self.assertEqual(leaked.strip(), "")
        # The LAN-side capture is left to down(), which ends it cleanly.
        yield lab.down()
        self.assertTrue(lanSide.process.exit.stoppedByHarness)
        text = yield runTshark(["-r", str(lanSide.path), "-Y", f"udp && {lanSide.excludeProbes}",
                                "-T", "fields", "-e", "ip.src", "-e", "udp.srcport"])
        self.assertEqual(parseFields(text, 2), [[LAN_ADDRESS, str(ports[0].getHost().port)]] * 3)

    @defer.inlineCallbacks
    def test_down(self):
        """
        L{NatLab.down} stops the processes it started and any other process
        left in the namespaces, removes the namespaces, and can be called
        again.
        """
        lab = NatLab(directory=self.mktemp())
        self.addCleanup(lab.down)
        yield lab.up()
        sleeper = lab.spawn("wan", ["sleep", "60"])
        orphan = lab.spawn("router", ["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"])
        yield orphan.whenEnded()
        orphanPid = int(orphan.stdout)
        self.assertEqual((yield lab.pids("router")), [orphanPid])
        self.assertEqual((yield lab.pids("wan")), [sleeper.pid])
        yield lab.down()
        self.assertIsNotNone(sleeper.exit)
        self.assertTrue(sleeper.exit.stoppedByHarness)
        for _ in range(100):
            if _gone(orphanPid):
                break
            yield _after(0.02)
        self.assertTrue(_gone(orphanPid))
        self.assertNotIn(lab.name, listLabs())
        for namespace in lab.namespaces:
            self.assertFalse((NETNS_DIR / namespace).exists())
        yield lab.down()

    @defer.inlineCallbacks
    def test_unavailable(self):
        """
        Where namespaces cannot be made, the fixture skips with the reason,
        or fails under C{LMEVOIP_REQUIRE_PEERS=1}.
        """
        def refuse(lab: NatLab) -> defer.Deferred[NatLab]:
            return defer.fail(NatLabUnavailable("cannot create network namespaces here: EPERM"))

        self.patch(NatLab, "up", refuse)
        self.patch(labModule, "_reaped", True)
        self.patch(labModule, "REQUIRE_PEERS", False)
        skipped = yield self.assertFailure(startNatLab(self), SkipTest)
        self.assertIn("EPERM", str(skipped))
        self.patch(labModule, "REQUIRE_PEERS", True)
        failed = yield self.assertFailure(startNatLab(self), PeerMissing)
        self.assertIn("LMEVOIP_REQUIRE_PEERS=1", str(failed))

    @defer.inlineCallbacks
    def _cli(self, *args: str):
        env = dict(os.environ, PYTHONPATH=str(CHECKOUT))
        process = PeerProcess([sys.executable, "-m", "tests.natlab", *args], reactor, cwd=CHECKOUT,
                              env=env, name="natlab-cli")
        process.start()
        self.addCleanup(process.stop)
        exit = yield process.whenEnded()
        return exit.exitCode, process.stdout, process.stderr

    @defer.inlineCallbacks
    def test_commandLine(self):
        """
        C{python -m tests.natlab up} leaves a lab up and says how to use
        it; C{status} shows it with its modes; C{down NAME} removes it;
        C{check} of an unknown lab fails with a clear message.
        """
        code, out, err = yield self._cli("up", "--timeout", "2", "--refresh", "both")
        self.assertEqual(code, 0, err)
        name = re.search(r"NAT lab (lmnat-m\d+-\d+):", out).group(1)  # type: ignore[union-attr]
        self.addCleanup(removeLab, name)
        self.assertIn(f"ip netns exec {name}-lan", out)
        self.assertIn(name, listLabs())
        code, out, err = yield self._cli("status", name)
        self.assertEqual(code, 0, err)
        self.assertIn(f"{name}: UDP binding timeout 2s, refresh both, ports preserve (made by hand)", out)
        self.assertIn(f"processes in {name}-lan: none", out)
        code, out, err = yield self._cli("down", name)
        self.assertEqual((code, out.strip()), (0, f"removed {name}: {name}-lan, {name}-rtr, {name}-wan"))
        self.assertNotIn(name, listLabs())
        code, out, err = yield self._cli("check", name)
        self.assertEqual(code, 1)
        self.assertIn(f"no NAT lab {name!r}", err)



def _gone(pid: int) -> bool:
    """
    Has process C{pid} ended? A zombie no one reaped yet counts: it has no
    namespaces any more.
    """
    try:
        os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return True
    return False
