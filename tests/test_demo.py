"""
Tests for L{lmevoip.demo}: the demo on a L{FakeUdpReactor} (its reports,
its summary, and that it reports a failure honestly), and the real
command, C{python -m lmevoip.demo}, run to its summary and stopped with
Ctrl-C.
"""

from __future__ import annotations

import re
import sys

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from lmevoip.demo import PERIOD_SECONDS, TALK_SECONDS, Demo, TalkSpurtSource, parseArguments
from lmevoip.rtp.audio import peakLevel
from lmevoip.testing import FakeUdpReactor
from tests.peers import PeerProcess, traceDirectory

#: A summary row: flow, address, voice, silence, OPTIONS, other, longest idle, verdict.
ROW = re.compile(r"^  (phone|office) (SIP|RTP) +(\S+) +(\S+) +(\S+) +(\S+) +(\S+) +([0-9.]+) s  (.*)$")


def summaryRows(text: str) -> dict[str, dict[str, str]]:
    """
    The summary table of the demo's output, by flow (C{"phone RTP"}).
    """
    rows = {}
    for line in text.splitlines():
        match = ROW.match(line)
        if match:
            who, kind, address, voice, silence, options, other, idle, verdict = match.groups()
            rows[f"{who} {kind}"] = {"voice": voice, "silence": silence, "options": options, "other": other,
                                     "idle": idle, "verdict": verdict, "address": address}
    return rows


class TalkSpurtSourceTests(SynchronousTestCase):
    def test_pattern(self) -> None:
        """
        Silence for the offset, then a tone for TALK_SECONDS at the start of
        every PERIOD_SECONDS.
        """
        source = TalkSpurtSource(offsetSeconds=0.5)
        loud = [peakLevel(source.readFrame(160)) > 5000 for _ in range(int(2 * PERIOD_SECONDS * 50))]
        frames = int(TALK_SECONDS * 50)
        self.assertEqual(loud[:25], [False] * 25)
        self.assertEqual(loud[25:25 + frames], [True] * frames)
        self.assertEqual(sum(loud), 2 * frames)
        source.close()
        self.assertIsNone(source.readFrame(160))


class DemoTests(SynchronousTestCase):
    """
    The demo on a fake network and clock.
    """

    def runDemo(self, seconds: float, **kwargs: object) -> tuple[Demo, list[int], str]:
        fake = FakeUdpReactor()
        output: list[str] = []
        demo = Demo(fake, output.append, control=None, **kwargs)
        codes: list[int] = []
        demo.run().addCallback(codes.append)
        self.addCleanup(demo.finish)
        for _ in range(int(seconds / 0.02)):
            fake.advance(0.02)
            if codes:
                break
        return demo, codes, "".join(output)

    def test_keepAliveShown(self) -> None:
        """
        The reports say what each flow sent and why, and the summary shows
        the phone's flows below the NAT session time, the office's RTP flow
        (keep-alive off) above it; exit code 0.
        """
        demo, codes, text = self.runDemo(25, duration=18)
        self.assertEqual(codes, [0], text)
        self.assertIn("keep-alive ON (SIP and RTP, natSessionTimeMs=3000", text)
        self.assertRegex(text, r"\[  3\.0s\] phone  SIP -> 127\.0\.0\.1:\d+ +\d OPTIONS keep-alives? ")
        self.assertRegex(text, r"phone  RTP -> \S+ +.*silence keep-alives? (each )?after 2\.\d\d s idle")
        self.assertRegex(text, r"phone  RTP -> \S+ +.*\d+ voice packets \(talking\)")
        self.assertIn("idle for 6.0 s: past the NAT session time!", text)
        rows = summaryRows(text)
        self.assertEqual(set(rows), {"phone SIP", "phone RTP", "office SIP", "office RTP"})
        phoneRtp, phoneSip = rows["phone RTP"], rows["phone SIP"]
        # 18 s: three talk spurts of 1 s (+0.2 s of gate hangover) = 180 packets.
        self.assertEqual(int(phoneRtp["voice"]), 180)
        # Two silent stretches of 6.8 s with keep-alives at most 2.3 s apart.
        self.assertGreaterEqual(int(phoneRtp["silence"]), 4)
        self.assertGreaterEqual(int(phoneSip["options"]), 7)
        for row in (phoneRtp, phoneSip, rows["office SIP"]):
            self.assertLess(float(row["idle"]), 3.0)
            self.assertEqual(row["verdict"], "open (< 3 s)")
        self.assertEqual(rows["office RTP"]["voice"], "0")
        self.assertTrue(18.0 <= float(rows["office RTP"]["idle"]) < 18.1, rows["office RTP"])
        self.assertTrue(rows["office RTP"]["verdict"].startswith("EXPIRED"))
        self.assertIn("Keep-alive worked", text)
        self.assertIn("What to try next:", text)
        self.assertFalse(demo.phone.running or demo.office.running)

    def test_failureReported(self) -> None:
        """
        When keep-alive stops mid-call the summary says so and the exit
        code is 1: the verdict comes from the measurements.
        """
        fake = FakeUdpReactor()
        output: list[str] = []
        demo = Demo(fake, output.append, duration=12, control=None)
        codes: list[int] = []
        demo.run().addCallback(codes.append)
        self.addCleanup(demo.finish)
        for _ in range(200):
            fake.advance(0.02)
        demo.phone.enableKeepAliveTransmissions(False, False, 0)
        for _ in range(500):
            fake.advance(0.02)
        text = "".join(output)
        self.assertEqual(codes, [1], text)
        self.assertIn("Keep-alive FAILED", text)
        self.assertTrue(summaryRows(text)["phone SIP"]["verdict"].startswith("EXPIRED"))

    def test_natSessionTimeRefused(self) -> None:
        """
        A NAT session time the engine refuses ends the demo with code 2 and
        a message.
        """
        demo, codes, text = self.runDemo(1, natSessionTimeMs=500)
        self.assertEqual(codes, [2])
        self.assertIn("--nat-session-time 500: the engine refused it (SipBadParameter", text)

    def test_arguments(self) -> None:
        options = parseArguments(["--duration", "5", "--control", "none", "--nat-session-time", "4000"])
        self.assertEqual((options.duration, options.control, options.nat_session_time), (5.0, None, 4000))
        self.assertRaises(SystemExit, parseArguments, ["--duration", "0"])


class DemoCommandTests(TestCase):
    """
    C{python -m lmevoip.demo} as a real process.
    """

    timeout = 90

    def start(self, *args: str) -> PeerProcess:
        process = PeerProcess([sys.executable, "-m", "lmevoip.demo", *args], reactor,
                              cwd=traceDirectory(self, "demo"), name="lmevoip-demo")
        self.addCleanup(process.stop)
        process.start()
        return process

    @inlineCallbacks
    def test_runsToSummary(self) -> None:
        """
        The command runs a 12 s call, prints the status page URL, the
        reports and the summary proving keep-alive, and exits 0.
        """
        process = self.start("--duration", "12", "--control", "tcp:0:interface=127.0.0.1")
        exit = yield process.whenEnded()
        text = process.stdout
        self.assertEqual(exit.exitCode, 0, process.outputTail())
        self.assertRegex(text, r"status page \(the phone's flows, live\): http://127\.0\.0\.1:\d+/")
        self.assertIn("[ 12.0s]", text)
        rows = summaryRows(text)
        self.assertEqual(len(rows), 4, text)
        for flow in ("phone SIP", "phone RTP"):
            self.assertLess(float(rows[flow]["idle"]), 3.0, text)
        self.assertGreater(int(rows["phone RTP"]["voice"]), 0)
        self.assertGreater(int(rows["phone RTP"]["silence"]), 0)
        self.assertGreater(int(rows["phone SIP"]["options"]), 0)
        self.assertIn("Keep-alive worked", text)
        self.assertEqual(process.stderr, "")

    @inlineCallbacks
    def test_foreverUntilCtrlC(self) -> None:
        """
        C{--forever} keeps the call up until SIGINT (Ctrl-C), then prints
        the summary and exits 0.
        """
        process = self.start("--forever", "--control", "none", "--report-every", "1")
        yield process.waitForOutput(b"[  2.0s]", timeout=20)
        process.signal("INT")
        exit = yield process.whenEnded()
        self.assertEqual(exit.exitCode, 0, process.outputTail())
        self.assertIn("Summary:", process.stdout)
        self.assertIn("Keep-alive worked", process.stdout)
