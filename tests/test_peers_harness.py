"""
Tests for the real-peer harness, L{tests.peers}, and validation of the SIPp
scenarios of C{tests/sipp/}: each scenario runs against a partner SIPp over
loopback, which proves the file loads, the call flow is consistent and the
harness reports success, failure and per-step counts correctly.

The real-peer tests skip when a peer is missing, or fail under
C{LMEVOIP_REQUIRE_PEERS=1} (see L{tests.support}).
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import time
from pathlib import Path
from xml.etree import ElementTree

from twisted.internet import reactor, task
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.peers import PeerExited, PeerProcess, PeerTimeout, descendantPids, traceDirectory
from tests.peers.ports import (
    PortTimeout,
    freePortBlock,
    freeRtpPair,
    freeTcpPort,
    freeUdpPort,
    processSocketInodes,
    udpPortBound,
    udpSocketInodes,
    waitForUdpPort,
)
from tests.peers.sipp import (
    AUTH_PASSWORD,
    AUTH_REALM,
    AUTH_USERNAME,
    SCENARIO_DIR,
    Sipp,
    loggedMessages,
    parseStatCsv,
    parseTraceCounts,
    scenarioPath,
    verifyDigest,
)
from tests.peers.baresip import (
    MODULE_DIR,
    REMOTE_HANGUP_REASON,
    RTP_TIMEOUT_REASON,
    Baresip,
    BaresipError,
    writeConfig,
)
from tests.peers.tshark import (
    RtpPacketRecord,
    TsharkCapture,
    TsharkError,
    largestGap,
    largestIdleGap,
    malformedCount,
    parseRtpPackets,
    parseRtpStreams,
    parseSipMessages,
    rtpPackets,
    rtpStreams,
    runTshark,
    sipMessages,
)
from tests.support import requireRoot, requireTool


def _pidGone(pid: int) -> bool:
    """
    Is process C{pid} gone (or a zombie no one reaps)?
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2:].startswith("Z")


def headerValues(message: str, name: str) -> list[str]:
    """
    The values of header C{name} in a logged SIP message.
    """
    prefix = name.lower() + ":"
    return [line.split(":", 1)[1].strip() for line in message.splitlines()
            if line.lower().startswith(prefix)]


# -- ports --------------------------------------------------------------------------


class PortPickingTests(SynchronousTestCase):
    """
    L{freeUdpPort}, L{freeRtpPair}, L{freePortBlock} and L{freeTcpPort}.
    """

    def test_freeUdpPortBinds(self) -> None:
        """
        The port returned can be bound on loopback right away.
        """
        port = freeUdpPort()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", port))
        self.assertEqual(sock.getsockname()[1], port)

    def test_freeTcpPortBinds(self) -> None:
        port = freeTcpPort()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", port))
        self.assertEqual(sock.getsockname()[1], port)
        sock.listen(1)

    def test_rtpPairEvenOdd(self) -> None:
        """
        The RTP port is even, RTCP the next one, and both bind.
        """
        rtp, rtcp = freeRtpPair()
        self.assertEqual(rtp % 2, 0)
        self.assertEqual(rtcp, rtp + 1)
        for port in (rtp, rtcp):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.addCleanup(sock.close)
            sock.bind(("127.0.0.1", port))

    def test_blockSkipsTakenPorts(self) -> None:
        """
        A block never contains a port that is taken.
        """
        taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        takenPort = taken.getsockname()[1]
        for _ in range(50):
            base = freePortBlock(4)
            self.assertEqual(base % 2, 0)
            self.assertNotIn(takenPort, range(base, base + 4))

    def test_badBlock(self) -> None:
        self.assertRaises(ValueError, freePortBlock, 0)


class ProcTablesTests(SynchronousTestCase):
    """
    Reading the kernel's socket tables.
    """

    def test_fakeTables(self) -> None:
        """
        L{udpSocketInodes} reads ports and addresses from C{/proc/net/udp}
        and C{udp6}; L{processSocketInodes} reads C{/proc/PID/fd}.
        """
        root = Path(self.mktemp())
        (root / "net").mkdir(parents=True)
        header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n"
        (root / "net" / "udp").write_text(
            header
            + "  1: 0100007F:13C4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 111 2 0 0\n"
            + "  2: 00000000:13C6 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 222 2 0 0\n"
            + "  3: 0200007F:13C4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 333 2 0 0\n")
        (root / "net" / "udp6").write_text(
            header + "  1: 00000000000000000000000001000000:13C8 00000000000000000000000000000000:0000 07 "
            "00000000:00000000 00:00000000 00000000     0        0 444 2 0 0\n")
        self.assertEqual(udpSocketInodes(5060, procRoot=root), {111, 333})
        self.assertEqual(udpSocketInodes(5060, "127.0.0.1", procRoot=root), {111})
        self.assertEqual(udpSocketInodes(5062, "127.0.0.1", procRoot=root), {222})
        self.assertEqual(udpSocketInodes(5064, "::1", procRoot=root), {444})
        self.assertEqual(udpSocketInodes(5066, procRoot=root), set())
        fd = root / "42" / "fd"
        fd.mkdir(parents=True)
        os.symlink("socket:[111]", fd / "3")
        os.symlink("/dev/null", fd / "4")
        self.assertEqual(processSocketInodes(42, procRoot=root), {111})
        self.assertEqual(processSocketInodes(43, procRoot=root), set())

    def test_ownSocket(self) -> None:
        """
        A socket this process binds is seen as bound, by this PID and not by
        another.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self.assertTrue(udpPortBound(port, "127.0.0.1"))
        self.assertTrue(udpPortBound(port, "127.0.0.1", os.getpid()))
        self.assertFalse(udpPortBound(port, "127.0.0.1", 1))
        sock.close()
        self.assertFalse(udpPortBound(port))


class WaitForUdpPortTests(TestCase):
    """
    L{waitForUdpPort} polls on the reactor.
    """

    def test_waitsForLateBind(self) -> None:
        """
        The wait fires once a socket is bound, here 0.1 s after it began.
        """
        port = freeUdpPort()
        sockets = []

        def bind() -> None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", port))
            sockets.append(sock)

        self.addCleanup(lambda: [s.close() for s in sockets])
        reactor.callLater(0.1, bind)
        began = time.monotonic()
        d = waitForUdpPort(port, reactor, timeout=5, host="127.0.0.1", pid=os.getpid())

        def bound(_: object) -> None:
            self.assertEqual(len(sockets), 1)
            self.assertGreaterEqual(time.monotonic() - began, 0.09)

        return d.addCallback(bound)

    def test_timeout(self) -> None:
        """
        A port nobody binds makes the wait fail with L{PortTimeout}.
        """
        d = waitForUdpPort(freeUdpPort(), reactor, timeout=0.2)
        return self.assertFailure(d, PortTimeout)

    def test_otherOwner(self) -> None:
        """
        When a PID is given, a socket of another process does not count.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", 0))
        d = waitForUdpPort(sock.getsockname()[1], reactor, timeout=0.2, pid=1)
        d = self.assertFailure(d, PortTimeout)
        return d.addCallback(lambda e: self.assertIn("another process holds it", str(e)))

    def test_deadProcess(self) -> None:
        """
        C{alive} returning C{False} ends the wait at once.
        """
        # A long timeout: the wait must end because of C{alive}, which the
        # message says, not because the time ran out.
        d = self.assertFailure(waitForUdpPort(freeUdpPort(), reactor, timeout=600, alive=lambda: False),
                               PortTimeout)
        return d.addCallback(lambda e: self.assertIn("ended before binding", str(e)))


# -- the process wrapper --------------------------------------------------------------


class PeerProcessTests(TestCase):
    """
    L{PeerProcess}: spawning, output, stopping by PID.
    """

    def sh(self, script: str, **kwargs: object) -> PeerProcess:
        process = PeerProcess(["/bin/sh", "-c", script], reactor, **kwargs)
        self.addCleanup(process.stop, "KILL", 1)
        process.start()
        return process

    @inlineCallbacks
    def test_outputAndExit(self):
        process = self.sh("echo ready; echo oops >&2; exit 3")
        yield process.waitForOutput(b"ready", "stdout")
        exit = yield process.whenEnded()
        self.assertEqual((exit.exitCode, exit.signal, exit.stoppedByHarness), (3, None, False))
        self.assertIn("oops", process.stderr)

    @inlineCallbacks
    def test_outputLimit(self):
        """
        Only the tail of a stream is kept.
        """
        process = self.sh("i=0; while [ $i -lt 300 ]; do echo line$i; i=$((i+1)); done", outputLimit=100)
        yield process.whenEnded()
        self.assertLessEqual(len(process.stdout), 100)
        self.assertIn("line299", process.stdout)

    def test_waitForOutputEnds(self):
        """
        Waiting for output the process never writes fails when it ends.
        """
        process = self.sh("exit 0")
        return self.assertFailure(process.waitForOutput(b"never", timeout=5), PeerExited)

    def test_waitForOutputTimeout(self):
        process = self.sh("sleep 5")
        return self.assertFailure(process.waitForOutput(b"never", timeout=0.1), PeerTimeout)

    @inlineCallbacks
    def test_stopEscalates(self):
        """
        A process that ignores SIGTERM is killed after the grace period,
        together with its children.
        """
        process = self.sh("trap '' TERM; sleep 30 & echo started; wait")
        yield process.waitForOutput(b"started")
        children = descendantPids(process.pid)
        self.assertTrue(children)
        began = time.monotonic()
        exit = yield process.stop("TERM", grace=0.3)
        self.assertGreaterEqual(time.monotonic() - began, 0.25)
        self.assertEqual(exit.signal, signal.SIGKILL)
        self.assertTrue(exit.stoppedByHarness)
        yield task.deferLater(reactor, 0.1, lambda: None)
        for pid in children:
            self.assertTrue(_pidGone(pid), f"child {pid} survived")

    @inlineCallbacks
    def test_stopTwice(self):
        """
        Stopping an ended process reports how it ended.
        """
        process = self.sh("exit 5")
        yield process.whenEnded()
        exit = yield process.stop()
        self.assertEqual(exit.exitCode, 5)
        self.assertFalse(exit.stoppedByHarness)


class TraceDirectoryTests(SynchronousTestCase):
    def test_fresh(self) -> None:
        """
        Each call gives a new, empty, absolute directory.
        """
        one, two = traceDirectory(self), traceDirectory(self)
        self.assertNotEqual(one, two)
        for path in (one, two):
            self.assertTrue(path.is_absolute())
            self.assertEqual(list(path.iterdir()), [])


# -- SIPp trace parsing -------------------------------------------------------------------


#: A counts file as SIPp 3.6.1 writes it (its CurrentTime field holds tabs).
COUNTS = (
    "CurrentTime;ElapsedTime;0_INVITE_Recv;0_INVITE_Retrans;0_INVITE_Timeout;0_INVITE_Unexp;"
    "1_180_Sent;1_180_Retrans;2_200_Sent;2_200_Retrans;2_200_Timeout;3_ACK_Recv;3_ACK_Retrans;"
    "3_ACK_Timeout;3_ACK_Unexp;4_BYE_Recv;4_BYE_Retrans;4_BYE_Timeout;4_BYE_Unexp;5_200_Sent;"
    "5_200_Retrans;6_Pause_Sessions;6_Pause_Unexp;\n"
    "2026-11-24\t04:24:17.998413\t1795494257.998413;00:00:00:001000;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;\n"
    "2026-11-24\t04:24:22.616274\t1795494262.616274;00:00:04:618000;1;2;0;0;1;0;1;0;0;1;0;0;0;1;0;0;0;1;0;1;0;\n"
)


class TraceParsingTests(SynchronousTestCase):
    def test_counts(self) -> None:
        """
        The last row gives each step's counters by index and name.
        """
        counts = parseTraceCounts(COUNTS)
        self.assertEqual([(s.index, s.name) for s in counts.steps],
                         [(0, "INVITE"), (1, "180"), (2, "200"), (3, "ACK"), (4, "BYE"), (5, "200"), (6, "Pause")])
        self.assertEqual(counts.step(0)["Recv"], 1)
        self.assertEqual(counts.step(0)["Retrans"], 2)
        self.assertEqual(counts.step(2)["Sent"], 1)
        self.assertEqual(counts.step(6)["Sessions"], 1)
        self.assertEqual(counts.step(0)["Sent"], 0)
        self.assertEqual(counts.total("200", "Sent"), 2)
        self.assertEqual(counts.total("OPTIONS", "Recv"), 0)
        self.assertRaises(KeyError, counts.step, 9)

    def test_countsInvalid(self) -> None:
        self.assertRaises(ValueError, parseTraceCounts, "")
        self.assertRaises(ValueError, parseTraceCounts, "CurrentTime;ElapsedTime;0_INVITE_Recv;\n")
        self.assertRaises(ValueError, parseTraceCounts, "CurrentTime;ElapsedTime;bad;\nx;y;1;\n")
        self.assertRaises(ValueError, parseTraceCounts, "CurrentTime;ElapsedTime;0_A_Recv;\nx;y;1;2;\n")

    def test_stat(self) -> None:
        stats = parseStatCsv("StartTime;LastResetTime;SuccessfulCall(C);FailedCall(C);\n"
                             "a;b;0;0;\na;b;1;0;\n")
        self.assertEqual(stats["SuccessfulCall(C)"], "1")
        self.assertRaises(ValueError, parseStatCsv, "nonsense")

    def test_loggedMessages(self) -> None:
        log = ("----------------------------------------------- 2026-11-24 04:30:19.967792\n"
               "UDP message sent (30 bytes):\n\nINVITE sip:x SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n\n"
               "----------------------------------------------- 2026-11-24 04:30:19.968187\n"
               "UDP message received [20] bytes :\n\nSIP/2.0 180 Ringing\r\nCSeq: 1 INVITE\r\n\r\n\n")
        self.assertEqual(loggedMessages(log, "sent"), ["INVITE sip:x SIP/2.0\nCSeq: 1 INVITE"])
        self.assertEqual(loggedMessages(log, "received"), ["SIP/2.0 180 Ringing\nCSeq: 1 INVITE"])

    def test_scenarioPath(self) -> None:
        self.assertEqual(scenarioPath("uac_options"), SCENARIO_DIR / "uac_options.xml")
        self.assertEqual(scenarioPath("uac_options.xml"), SCENARIO_DIR / "uac_options.xml")
        self.assertRaises(FileNotFoundError, scenarioPath, "no_such_scenario")

    def test_everyScenarioCommented(self) -> None:
        """
        Every scenario file is well-formed XML whose root is the scenario
        named after the file, and starts with a comment saying what it is
        for (without "--", which SIPp's parser cannot take).
        """
        files = sorted(SCENARIO_DIR.glob("*.xml"))
        self.assertGreaterEqual(len(files), 10)
        for path in files:
            text = path.read_text()
            root = ElementTree.fromstring(text.encode())
            self.assertEqual((root.tag, root.get("name")), ("scenario", path.stem))
            head = text[text.index("<!--") + 4:text.index("<scenario")]
            self.assertLess(text.index("<!--"), 100, path.name)
            self.assertIn(path.stem + " ", head.replace(":", " "), path.name)
            self.assertNotIn("--", head.rstrip().removesuffix("-->"), path.name)


# -- SIPp scenarios against partners -------------------------------------------------------


class SippScenarioTests(TestCase):
    """
    Each scenario of C{tests/sipp/} against a partner SIPp over loopback.
    """

    timeout = 60

    def setUp(self) -> None:
        requireTool("sipp")

    @inlineCallbacks
    def pair(self, uasScenario, uacScenario, uasOptions=None, uacOptions=None):
        """
        Start C{uasScenario}, wait until it listens, run C{uacScenario}
        against it; return both results.
        """
        uas = self.uas = Sipp(self, uasScenario, **{"timeout": 20, **(uasOptions or {})})
        yield uas.start()
        uac = Sipp(self, uacScenario, remote=uas.target, **{"timeout": 20, **(uacOptions or {})})
        results = yield gatherResults([uas.finished(), uac.run()], consumeErrors=True)
        return results

    def assertSucceeded(self, *results) -> None:
        for result in results:
            self.assertEqual(result.exitCode, 0, result.describe())
            self.assertTrue(result.succeeded)
            self.assertEqual(result.stats.get("FailedCall(C)"), "0", result.describe())

    @inlineCallbacks
    def test_answerOptionsByeLocal(self):
        uas, uac = yield self.pair("uas_answer_options_bye_local", "partner_uac_options_bye")
        self.assertSucceeded(uas, uac)
        counts = uas.counts
        self.assertEqual([(s.name, s["Recv"] or s["Sent"]) for s in counts.steps],
                         [("INVITE", 1), ("100", 1), ("180", 1), ("200", 1), ("ACK", 1),
                          ("OPTIONS", 1), ("200", 1), ("BYE", 1), ("200", 1), ("Pause", 0)])
        self.assertEqual(uac.counts.total("200", "Recv"), 3)
        invite = uas.receivedRequests("INVITE")
        self.assertEqual(len(invite), 1)
        self.assertIn("m=audio", invite[0])
        answer = [m for m in loggedMessages(uac.messages, "received") if "Content-Type: application/sdp" in m]
        self.assertEqual(len(answer), 1)
        self.assertIn(f"m=audio {self.uas.mediaPort} RTP/AVP 0", answer[0])
        self.assertIn("c=IN IP4 127.0.0.1", answer[0])

    @inlineCallbacks
    def test_answerOptionsByeRemote(self):
        uas, uac = yield self.pair("uas_answer_options_bye_remote", "partner_uac_remote_bye")
        self.assertSucceeded(uas, uac)
        self.assertEqual(uac.counts.total("OPTIONS", "Recv"), 1)
        self.assertEqual(uac.counts.total("BYE", "Recv"), 1)
        self.assertEqual(uas.counts.total("200", "Recv"), 2)
        options, = loggedMessages(uas.messages, "sent")[3:4]
        self.assertTrue(options.startswith("OPTIONS sip:partner@127.0.0.1:"), options)
        # The callee's request carries the caller's From (with its tag) as To.
        callerFrom, = headerValues(uas.receivedRequests("INVITE")[0], "From")
        self.assertEqual(headerValues(options, "To"), [callerFrom])

    @inlineCallbacks
    def test_holdLongCountsOptions(self):
        """
        The number of keep-alive OPTIONS shows in the counts.
        """
        uas, uac = yield self.pair("uas_answer_hold_long", "partner_uac_hold",
                                   uacOptions={"variables": {"optcount": 3}})
        self.assertSucceeded(uas, uac)
        self.assertEqual(uas.counts.total("OPTIONS", "Recv"), 3)
        self.assertEqual(uas.counts.total("BYE", "Recv"), 1)
        cseqs = [value for m in uas.receivedRequests("OPTIONS") for value in headerValues(m, "CSeq")]
        self.assertEqual(len(set(cseqs)), 3, cseqs)

    @inlineCallbacks
    def test_holdLongNoOptions(self):
        uas, uac = yield self.pair("uas_answer_hold_long", "partner_uac_hold")
        self.assertSucceeded(uas, uac)
        self.assertEqual(uas.counts.total("OPTIONS", "Recv"), 0)
        self.assertEqual(uas.counts.total("BYE", "Recv"), 1)

    @inlineCallbacks
    def test_auth407(self):
        """
        The 407 flow: SIPp accepts well-formed Proxy-Authorization; the
        digest is checked with L{verifyDigest} on the logged INVITE.
        """
        uas, uac = yield self.pair(
            "uas_auth_407", "partner_uac_auth",
            uacOptions={"authUsername": AUTH_USERNAME, "authPassword": AUTH_PASSWORD})
        self.assertSucceeded(uas, uac)
        self.assertEqual(uas.counts.total("INVITE", "Recv"), 2)
        self.assertEqual(uas.counts.total("407", "Sent"), 1)
        credentials, = uas.authorizations("INVITE", "Proxy-Authorization")
        self.assertIn("qop=auth", credentials)
        self.assertTrue(verifyDigest(credentials, "INVITE", AUTH_PASSWORD, realm=AUTH_REALM))
        self.assertFalse(verifyDigest(credentials, "INVITE", "wrong"))
        self.assertFalse(verifyDigest(credentials, "BYE", AUTH_PASSWORD))

    @inlineCallbacks
    def test_auth407BadForm(self):
        """
        Credentials without the challenge's nonce and opaque fail the call.
        """
        scenario = Path(self.mktemp() + ".xml")
        scenario.write_text(scenarioPath("partner_uac_auth").read_text().replace(
            "[authentication]",
            'Proxy-Authorization: Digest username="lmevoip",realm="lmevoip.test",'
            'nonce="made-up",uri="sip:x",response="00000000000000000000000000000000"'))
        uas, uac = yield self.pair("uas_auth_407", str(scenario))
        self.assertNotEqual(uas.exitCode, 0, uas.describe())
        self.assertEqual(uas.stats.get("FailedCall(C)"), "1", uas.describe())

    @inlineCallbacks
    def test_auth401(self):
        """
        The 401 flow: SIPp's verifyauth accepts the right digest.
        """
        uas, uac = yield self.pair(
            "uas_auth_401", "partner_uac_auth",
            uacOptions={"authUsername": AUTH_USERNAME, "authPassword": AUTH_PASSWORD})
        self.assertSucceeded(uas, uac)
        self.assertEqual(uas.counts.total("401", "Sent"), 1)
        self.assertEqual(uas.counts.total("403", "Sent"), 0)
        credentials, = uas.authorizations("INVITE", "Authorization")
        self.assertTrue(verifyDigest(credentials, "INVITE", AUTH_PASSWORD, realm=AUTH_REALM))

    @inlineCallbacks
    def test_auth401WrongPassword(self):
        """
        A wrong password is answered 403 and fails the call (exit 1).
        """
        uas, uac = yield self.pair(
            "uas_auth_401", "partner_uac_auth",
            uacOptions={"authUsername": AUTH_USERNAME, "authPassword": "wrong"})
        self.assertEqual(uas.exitCode, 1, uas.describe())
        self.assertFalse(uas.succeeded)
        self.assertEqual(uas.stats.get("FailedCall(C)"), "1")
        self.assertEqual(uas.counts.total("403", "Sent"), 1)
        self.assertEqual(uas.counts.total("200", "Sent"), 0)
        self.assertIn("Authorization rejected", uas.logs)
        self.assertEqual(uac.counts.total("403", "Recv"), 1)

    @inlineCallbacks
    def test_ignoreFirstInvite(self):
        uas, uac = yield self.pair("uas_ignore_first_invite", "partner_uac_basic")
        self.assertSucceeded(uas, uac)
        self.assertEqual(uas.counts.step(0)["Recv"], 1)
        self.assertEqual(uas.counts.step(1)["Recv"], 1)
        self.assertEqual(uac.counts.step(0)["Retrans"], 1)
        self.assertEqual(len(uas.receivedRequests("INVITE")), 2)

    @inlineCallbacks
    def test_ignoreFirstOptionsAndCheckAllow(self):
        """
        uas_ignore_first_options answers the retransmission, and
        uac_options accepts its Allow header.
        """
        uas, uac = yield self.pair("uas_ignore_first_options", "uac_options")
        self.assertSucceeded(uas, uac)
        self.assertEqual(uas.counts.step(0)["Recv"], 1)
        self.assertEqual(uas.counts.step(1)["Recv"], 1)
        self.assertEqual(uac.counts.step(0)["Retrans"], 1)
        self.assertIn("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS", uac.logs)

    @inlineCallbacks
    def test_optionsWithoutAllowFails(self):
        """
        uac_options fails the call when the 200's Allow lacks a method.
        """
        scenario = Path(self.mktemp() + ".xml")
        scenario.write_text(scenarioPath("uas_ignore_first_options").read_text()
                            .replace("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS", "Allow: INVITE, ACK, BYE"))
        uas, uac = yield self.pair(str(scenario), "uac_options")
        self.assertSucceeded(uas)
        self.assertEqual(uac.exitCode, 1, uac.describe())
        self.assertEqual(uac.stats.get("FailedCall(C)"), "1")

    @inlineCallbacks
    def test_neverAnswer(self):
        """
        uas_never_answer counts the INVITE retransmissions and ends as a
        success after holdms.
        """
        began = time.monotonic()
        uas, uac = yield self.pair("uas_never_answer", "partner_uac_unanswered",
                                   uasOptions={"variables": {"holdms": 2000}})
        self.assertSucceeded(uas, uac)
        self.assertGreaterEqual(time.monotonic() - began, 1.9)
        self.assertEqual(uas.counts.step(0)["Recv"], 1)
        self.assertEqual(uas.counts.step(0)["Retrans"], 2)
        self.assertEqual(uac.counts.step(0)["Retrans"], 2)
        self.assertEqual(uas.counts.total("100", "Sent") + uas.counts.total("200", "Sent"), 0)

    @inlineCallbacks
    def test_neverAnswerDefaultHold(self):
        """
        Without holdms SIPp holds the call far longer than the run's 2 s
        timeout, which therefore fails it (exit 255).
        """
        uas, uac = yield self.pair("uas_never_answer", "partner_uac_unanswered",
                                   uasOptions={"timeout": 2})
        self.assertSucceeded(uac)
        self.assertEqual(uas.exitCode, 255, uas.describe())
        self.assertIn("timed out", uas.output)

    @inlineCallbacks
    def test_reinviteHoldUnhold(self):
        uas, uac = yield self.pair("partner_uas_reinvite", "uac_call_reinvite_bye")
        self.assertSucceeded(uas, uac)
        self.assertEqual(uas.counts.total("INVITE", "Recv"), 3)
        self.assertEqual(uas.counts.total("ACK", "Recv"), 3)
        self.assertEqual(uas.counts.total("BYE", "Recv"), 1)
        invites = uas.receivedRequests("INVITE")
        self.assertEqual([headerValues(m, "CSeq") for m in invites],
                         [["1 INVITE"], ["2 INVITE"], ["3 INVITE"]])
        self.assertIn("a=sendonly", invites[1])

    @inlineCallbacks
    def test_cancel(self):
        uas, uac = yield self.pair("partner_uas_cancel", "uac_cancel")
        self.assertSucceeded(uas, uac)
        self.assertEqual(uas.counts.total("CANCEL", "Recv"), 1)
        self.assertEqual(uas.counts.total("ACK", "Recv"), 1)
        self.assertEqual(uac.counts.total("487", "Recv"), 1)
        invite, = uas.receivedRequests("INVITE")
        cancel, = uas.receivedRequests("CANCEL")
        self.assertEqual(headerValues(invite, "Via"), headerValues(cancel, "Via"))

    @inlineCallbacks
    def test_cancel487First(self):
        uas, uac = yield self.pair("partner_uas_cancel_487_first", "uac_cancel")
        self.assertSucceeded(uas, uac)
        self.assertEqual(uac.counts.total("487", "Recv"), 1)
        self.assertEqual(uac.counts.total("200", "Recv"), 1)


class SippHarnessTests(TestCase):
    """
    How L{Sipp} reports failures and cleans up.
    """

    timeout = 60

    def setUp(self) -> None:
        requireTool("sipp")

    @inlineCallbacks
    def test_failureWhenNobodyAnswers(self):
        """
        A UAC calling a port nobody listens on fails: non-zero exit, the
        timeout in the counts.
        """
        uac = Sipp(self, "uac_options", remote=("127.0.0.1", freeUdpPort()), timeout=3)
        result = yield uac.run()
        self.assertFalse(result.stoppedByHarness)
        self.assertNotEqual(result.exitCode, 0)
        self.assertFalse(result.succeeded)
        self.assertIn(result.exitCode, (1, 255))
        self.assertIn("SIPp exit", result.describe())
        self.assertGreaterEqual(result.counts.step(0)["Retrans"], 1)

    def test_brokenScenario(self):
        """
        A scenario SIPp refuses makes start() fail with SIPp's complaint.
        """
        scenario = Path(self.mktemp() + ".xml")
        scenario.write_text('<?xml version="1.0"?><scenario name="x"><recv request="INVITE" '
                            'timeout="soon"/></scenario>')
        d = Sipp(self, str(scenario)).start()
        d = self.assertFailure(d, Exception)
        return d.addCallback(lambda e: self.assertIn("timeout", str(e)))

    @inlineCallbacks
    def test_mediaPortTaken(self):
        """
        When the media port is taken SIPp refuses to start; start() fails
        with SIPp's reason.
        """
        taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", freePortBlock(4)))
        sipp = Sipp(self, "uas_answer_hold_long", mediaPort=taken.getsockname()[1])
        error = yield self.assertFailure(sipp.start(listenTimeout=1), Exception)
        self.assertIn("Unable to bind audio RTP socket", str(error))
        self.assertIn(f"port={sipp.mediaPort}", str(error))

    @inlineCallbacks
    def test_crlfKeepAlivesCounted(self):
        """
        Single-CRLF keep-alives sent to a waiting SIPp are counted from its
        error log, and do not disturb the scenario.
        """
        uas = Sipp(self, "uas_answer_hold_long", timeout=20)
        yield uas.start()
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sender.close)
        for _ in range(3):
            sender.sendto(b"\r\n", uas.target)
        uac = Sipp(self, "partner_uac_hold", remote=uas.target, timeout=20)
        results = yield gatherResults([uas.finished(), uac.run()])
        self.assertEqual([r.exitCode for r in results], [0, 0], results[0].describe())
        self.assertEqual(results[0].nonSipDiscarded, 3)
        self.assertEqual(results[1].nonSipDiscarded, 0)

    def test_backgroundRefused(self):
        self.assertRaises(ValueError, Sipp, self, "uac_options", extraArgs=["-bg"])

    @inlineCallbacks
    def test_stopRunning(self):
        """
        stop() ends a waiting SIPp by PID; the result says it was stopped,
        so its exit 0 is not a success.
        """
        uas = Sipp(self, "uas_answer_hold_long", timeout=30)
        yield uas.start()
        pid = uas.process.pid
        result = yield uas.stop()
        self.assertTrue(result.stoppedByHarness)
        self.assertFalse(result.succeeded)
        self.assertIn("stopped by the harness", result.exitMeaning)
        self.assertTrue(_pidGone(pid))
        self.assertEqual(result.counts.step(0)["Recv"], 0)

    def test_argv(self):
        """
        The command line carries the options the test asked for.
        """
        sipp = Sipp(self, "uac_options", remote=("127.0.0.1", 5099), calls=2, limit=1, rate=5,
                    ratePeriodMs=200, timeout=7.5, recvTimeoutMs=900, keys={"k": "v"},
                    variables={"holdms": 100}, service="svc", authUsername="u", authPassword="p",
                    rtpEcho=True, extraArgs=["-aa"])
        argv = sipp.argv
        for option in (["-m", "2"], ["-l", "1"], ["-r", "5"], ["-rp", "200ms"], ["-timeout", "8s"],
                       ["-recv_timeout", "900ms"], ["-key", "k", "v"], ["-set", "holdms", "100"],
                       ["-s", "svc"], ["-au", "u"], ["-ap", "p"], ["-p", str(sipp.localPort)],
                       ["-mp", str(sipp.mediaPort)], ["-cp", str(sipp.controlPort)]):
            self.assertIn(" ".join(option), " ".join(argv))
        for flag in ("-timeout_error", "-nostdin", "-rtp_echo", "-aa", "-trace_counts", "-trace_err",
                     "-trace_msg", "-trace_stat"):
            self.assertIn(flag, argv)
        self.assertNotIn("-bg", argv)
        self.assertEqual(argv[-1], "127.0.0.1:5099")


# -- tshark -------------------------------------------------------------------------------


#: C{tshark -q -z rtp,streams} as tshark 4.0 prints it.
RTP_STREAMS = """\
========================= RTP Streams ========================
   Start time      End time     Src IP addr  Port    Dest IP addr  Port       SSRC          Payload  Pkts         Lost   Min Delta(ms)  Mean Delta(ms)   Max Delta(ms)  Min Jitter(ms) Mean Jitter(ms)  Max Jitter(ms) Problems?
     0.000066      0.994841       127.0.0.1 15202       127.0.0.1 15204 0x12345678            g711U    50     0 (0.0%)          20.185          20.302          21.897           0.012           0.196           0.355 
     1.000000      2.000000       127.0.0.1 15206       127.0.0.1 15208 0x0000abcd  g711U, telephone-event    48    -2 (-4.2%)          0.000          20.000          80.500           0.000           1.500           9.250 X
==============================================================
"""


class TsharkParsingTests(SynchronousTestCase):
    """
    The parsers of tshark's output.
    """

    def test_rtpStreams(self) -> None:
        first, second = parseRtpStreams(RTP_STREAMS)
        self.assertEqual((first.src, first.dst, first.ssrc, first.payload), (
            "127.0.0.1:15202", "127.0.0.1:15204", 0x12345678, "g711U"))
        self.assertEqual((first.packets, first.lost, first.lostPercent, first.problems), (50, 0, 0.0, False))
        self.assertEqual((first.maxDelta, first.meanJitter, first.maxJitter), (21.897, 0.196, 0.355))
        self.assertEqual((second.payload, second.packets, second.lost, second.problems),
                         ("g711U, telephone-event", 48, -2, True))
        self.assertEqual(second.maxDelta, 80.5)

    def test_rtpStreamsEmptyAndBroken(self) -> None:
        self.assertEqual(parseRtpStreams("== RTP Streams ==\n" + "=" * 62 + "\n"), [])
        self.assertRaises(TsharkError, parseRtpStreams, "nothing here")
        self.assertRaises(TsharkError, parseRtpStreams, "== RTP Streams ==\n  garbage row\n" + "=" * 62 + "\n")

    def test_sipMessages(self) -> None:
        text = ("1795494654.5\t127.0.0.1\t\t5060\t127.0.0.1\t\t5062\tOPTIONS sip:x@h SIP/2.0\t\tc1@x\t1 OPTIONS\n"
                "1795494654.6\t\t::1\t5062\t\t::1\t5060\t\tSIP/2.0 200 OK\tc1@x\t1 OPTIONS\n")
        request, response = parseSipMessages(text)
        self.assertEqual((request.src, request.dst, request.firstLine, request.callId, request.cseq),
                         ("127.0.0.1:5060", "127.0.0.1:5062", "OPTIONS sip:x@h SIP/2.0", "c1@x", "1 OPTIONS"))
        self.assertTrue(request.isRequest)
        self.assertEqual(request.method, "OPTIONS")
        self.assertEqual((response.src, response.firstLine, response.isRequest, response.method),
                         ("[::1]:5062", "SIP/2.0 200 OK", False, "OPTIONS"))
        self.assertEqual(response.time, 1795494654.6)

    def test_rtpPackets(self) -> None:
        packet, = parseRtpPackets("1.5\t0x12345678\t1000\t160\t1\t0\t127.0.0.1\t4000\t127.0.0.1\t4002\n")
        self.assertEqual(packet, RtpPacketRecord(1.5, 0x12345678, 1000, 160, True, 0,
                                                 "127.0.0.1:4000", "127.0.0.1:4002"))

    def test_largestGap(self) -> None:
        self.assertEqual(largestGap([3.0, 1.0, 1.5]), 1.5)
        self.assertEqual(largestGap([1.0, 1.5], start=0.0), 1.0)
        self.assertEqual(largestGap([1.0, 1.5], end=4.0), 2.5)
        self.assertEqual(largestGap([], start=0.0, end=2.0), 2.0)
        self.assertRaises(ValueError, largestGap, [1.0])


class _Sink(DatagramProtocol):
    """
    Counts what it receives.
    """

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagramReceived(self, data: bytes, addr: object) -> None:
        self.received.append(data)


def rtpPacket(seq: int, timestamp: int, ssrc: int, marker: bool = False, payloadType: int = 0) -> bytes:
    """
    An RTP packet (RFC 3550 section 5.1) of 20 ms of PCMU silence.
    """
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | payloadType,
                       seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc) + b"\xff" * 160


def sipOptions(number: int, port: int) -> bytes:
    return (f"OPTIONS sip:probe@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-harness-{number}\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:harness@127.0.0.1>;tag=h1\r\n"
            f"To: <sip:probe@127.0.0.1:{port}>\r\n"
            f"Call-ID: harness-{number}@127.0.0.1\r\n"
            f"CSeq: {number} OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n").encode()


class TsharkCaptureTests(TestCase):
    """
    A real capture of traffic the test generates on the reactor.
    """

    timeout = 60

    def setUp(self) -> None:
        requireTool("tshark")
        requireRoot()

    def listen(self, port: int = 0) -> tuple[_Sink, int]:
        sink = _Sink()
        listening = reactor.listenUDP(port, sink, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        return sink, listening.getHost().port

    @inlineCallbacks
    def test_sipRtpAndMalformed(self):
        """
        Three SIP OPTIONS, 50 PCMU packets at 20 ms and one broken packet:
        tshark sees valid SIP, one RTP stream without loss and exactly the
        broken packet as malformed when told it is RTP.
        """
        sipSink, sipPort = self.listen()
        rtpSink, rtpPort = self.listen(freeRtpPair()[0])
        junkSink, junkPort = self.listen()
        sender = _Sink()
        sending = reactor.listenUDP(0, sender, interface="127.0.0.1")
        self.addCleanup(sending.stopListening)
        senderPort = sending.getHost().port

        capture = TsharkCapture(self, ports=[sipPort, rtpPort, junkPort])
        yield capture.start()
        began = time.time()
        for number in (1, 2, 3):
            sending.write(sipOptions(number, sipPort), ("127.0.0.1", sipPort))

        ssrc, sent = 0x1234ABCD, []

        def sendRtp() -> None:
            n = len(sent)
            sending.write(rtpPacket(1000 + n, 160 * n, ssrc, marker=(n == 0)), ("127.0.0.1", rtpPort))
            sent.append(n)
            if len(sent) == 50:
                loop.stop()

        loop = task.LoopingCall(sendRtp)
        yield loop.start(0.020)
        sending.write(b"\x80\x00\x01", ("127.0.0.1", junkPort))
        yield task.deferLater(reactor, 0.2, lambda: None)
        pcap = yield capture.stop()
        self.assertEqual((len(sipSink.received), len(rtpSink.received), len(junkSink.received)), (3, 50, 1))

        messages = yield sipMessages(pcap)
        self.assertEqual([m.firstLine for m in messages], [f"OPTIONS sip:probe@127.0.0.1:{sipPort} SIP/2.0"] * 3)
        self.assertEqual([m.cseq for m in messages], ["1 OPTIONS", "2 OPTIONS", "3 OPTIONS"])
        self.assertEqual([m.callId for m in messages], [f"harness-{n}@127.0.0.1" for n in (1, 2, 3)])
        self.assertEqual({(m.src, m.dst) for m in messages},
                         {(f"127.0.0.1:{senderPort}", f"127.0.0.1:{sipPort}")})
        self.assertTrue(all(began - 1 < m.time < time.time() for m in messages))

        streams = yield rtpStreams(pcap)
        stream, = streams
        self.assertEqual((stream.src, stream.dst, stream.ssrc, stream.payload),
                         (f"127.0.0.1:{senderPort}", f"127.0.0.1:{rtpPort}", ssrc, "g711U"))
        self.assertEqual((stream.packets, stream.lost), (50, 0))
        self.assertGreater(stream.maxDelta, 0)

        packets = yield rtpPackets(pcap)
        self.assertEqual([p.seq for p in packets], list(range(1000, 1050)))
        self.assertEqual([p.timestamp for p in packets], [160 * n for n in range(50)])
        self.assertEqual([p.marker for p in packets], [True] + [False] * 49)
        self.assertEqual({(p.ssrc, p.payloadType) for p in packets}, {(ssrc, 0)})

        self.assertEqual((yield malformedCount(pcap)), 0)
        self.assertEqual((yield malformedCount(pcap, decodeAs=[f"udp.port=={junkPort},rtp"])), 1)

        gap = yield largestIdleGap(pcap, f"udp.dstport == {rtpPort}")
        self.assertGreater(gap, 0.010)
        self.assertLess(gap, 1.0)
        lead = yield largestIdleGap(pcap, f"udp.dstport == {rtpPort}", start=packets[0].time - 5)
        self.assertGreaterEqual(lead, 5.0)

    @inlineCallbacks
    def test_stopEndsTsharkAndDumpcap(self):
        """
        stop() ends tshark and the dumpcap it runs; the empty capture reads.
        """
        capture = TsharkCapture(self, ports=[freeUdpPort()])
        yield capture.start()
        pids = [capture.process.pid, *descendantPids(capture.process.pid)]
        self.assertGreaterEqual(len(pids), 2)
        pcap = yield capture.stop()
        self.assertTrue(capture.process.exit.stoppedByHarness)
        self.assertEqual((yield sipMessages(pcap)), [])
        yield task.deferLater(reactor, 0.1, lambda: None)
        for pid in pids:
            self.assertTrue(_pidGone(pid), f"{pid} survived")

    def test_errorWithoutRootWarning(self):
        """
        A failing tshark gives a L{TsharkError} without the root warning.
        """
        d = self.assertFailure(runTshark(["-r", "/nonexistent.pcap"]), TsharkError)
        return d.addCallback(lambda e: self.assertNotIn("Running as user", str(e)))


# -- baresip ------------------------------------------------------------------------------


class BaresipConfigTests(SynchronousTestCase):
    def test_headlessConfig(self) -> None:
        """
        The configuration loads only modules Debian's baresip ships, binds
        loopback only and sets the account up without registration.
        """
        directory = Path(self.mktemp())
        directory.mkdir(parents=True)
        uri = writeConfig(directory, 5070, 4444, user="peer", answerMode="manual", rtpTimeout=3)
        self.assertEqual(uri, "sip:peer@127.0.0.1:5070")
        config = (directory / "config").read_text().splitlines()
        settings = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in config}
        self.assertEqual(settings["sip_listen"], "127.0.0.1:5070")
        self.assertEqual(settings["ctrl_tcp_listen"], "127.0.0.1:4444")
        self.assertEqual(settings["net_interface"], "127.0.0.1")
        self.assertEqual(settings["rtp_timeout"], "3")
        modules = [line.split()[1] for line in config if line.split()[0].startswith("module") and
                   line.split()[0] != "module_path"]
        self.assertIn("ctrl_tcp.so", modules)
        if MODULE_DIR.is_dir():
            for module in modules:
                self.assertTrue((MODULE_DIR / module).exists(), module)
        account = (directory / "accounts").read_text()
        self.assertIn("<sip:peer@127.0.0.1:5070>;regint=0;answermode=manual", account)
        directory = Path(self.mktemp())
        directory.mkdir(parents=True)
        writeConfig(directory, 5070, 4444)
        self.assertNotIn("rtp_timeout", (directory / "config").read_text())
        self.assertIn("answermode=auto", (directory / "accounts").read_text())


class BaresipTests(TestCase):
    """
    A real baresip driven over ctrl_tcp, called by and calling SIPp.
    """

    timeout = 60

    def setUp(self) -> None:
        requireTool("baresip")
        requireTool("sipp")

    @inlineCallbacks
    def test_autoAnswerAndRemoteHangup(self):
        """
        SIPp calls baresip, which answers by itself; RTP flows both ways
        (SIPp echoes it); SIPp hangs up after 3 s.
        """
        peer = Baresip(self)
        yield peer.start()
        caller = Sipp(self, "partner_uac_to_baresip", remote=(peer.host, peer.sipPort),
                      service="baresip", rtpEcho=True, timeout=20)
        result = yield caller.run()
        self.assertEqual(result.exitCode, 0, result.describe())
        established = yield peer.waitForEvent("CALL_ESTABLISHED")
        closed = yield peer.waitForEvent("CALL_CLOSED")
        self.assertEqual(closed.param, REMOTE_HANGUP_REASON)
        self.assertEqual(established.callId, closed.callId)
        self.assertEqual(established.direction, "incoming")
        self.assertTrue(peer.eventsOfType("CALL_RTPESTAB"), peer.events)
        self.assertGreaterEqual(closed.time - established.time, 2.5)
        self.assertEqual(result.receivedRequests("BYE"), [])

    @inlineCallbacks
    def test_manualAnswerAndRtpTimeout(self):
        """
        With answermode=manual baresip waits for accept; without RTP its
        rtp_timeout closes the call and it sends BYE.
        """
        peer = Baresip(self, answerMode="manual", rtpTimeout=1)
        yield peer.start()
        caller = Sipp(self, "partner_uac_wait_bye", remote=(peer.host, peer.sipPort),
                      service="baresip", timeout=20)
        finished = caller.run()
        incoming = yield peer.waitForEvent("CALL_INCOMING")
        self.assertEqual(peer.eventsOfType("CALL_ESTABLISHED"), [])
        yield peer.accept()
        established = yield peer.waitForEvent("CALL_ESTABLISHED")
        closed = yield peer.waitForEvent("CALL_CLOSED", timeout=10)
        self.assertEqual(closed.param, RTP_TIMEOUT_REASON)
        self.assertEqual(incoming.callId, established.callId)
        result = yield finished
        self.assertEqual(result.exitCode, 0, result.describe())
        self.assertEqual(result.counts.total("BYE", "Recv"), 1)

    @inlineCallbacks
    def test_dialAndHangup(self):
        """
        baresip dials SIPp and hangs up on command.
        """
        peer = Baresip(self)
        yield peer.start()
        callee = Sipp(self, "uas_answer_hold_long", timeout=20)
        yield callee.start()
        yield peer.dial(callee.uri)
        established = yield peer.waitForEvent("CALL_ESTABLISHED")
        self.assertEqual(established.direction, "outgoing")
        yield peer.hangup()
        closed = yield peer.waitForEvent("CALL_CLOSED")
        result = yield callee.finished()
        self.assertEqual(result.exitCode, 0, result.describe())
        self.assertEqual(result.counts.total("OPTIONS", "Recv"), 0)
        self.assertEqual(result.counts.total("BYE", "Recv"), 1)
        self.assertEqual(closed.callId, established.callId)

    @inlineCallbacks
    def test_refusedCommand(self):
        """
        A command baresip rejects fails with L{BaresipError}; cleanup stops
        baresip by PID.
        """
        peer = Baresip(self)
        yield peer.start()
        error = yield self.assertFailure(peer.setAnswerMode("bogus"), BaresipError)
        self.assertIn("Invalid answer mode", str(error))
        response = yield peer.command("nosuchcommand")
        self.assertFalse(response.ok)
        yield peer.setAnswerMode("manual")
        pid = peer.process.pid
        exit = yield peer.stop()
        self.assertTrue(exit.stoppedByHarness)
        self.assertTrue(_pidGone(pid))
