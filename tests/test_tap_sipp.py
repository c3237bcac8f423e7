"""
C{twistd -n lmevoip} as a real daemon against SIPp: the options place a
call, keep its signalling flow alive with in-dialog OPTIONS and hang it up
on time, all seen from SIPp's side.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.peers import PeerProcess, traceDirectory
from tests.peers.ports import freeUdpPort
from tests.peers.sipp import Sipp
from tests.support import requireTool
from tests.test_tap import twistdCommand

HANGUP_AFTER = 8
NAT_SESSION_TIME_MS = 2000


class TwistdAgainstSippTests(TestCase):
    timeout = 90

    @inlineCallbacks
    def test_callKeepAliveHangup(self) -> None:
        """
        C{twistd -n lmevoip --call ... --keepalive sip --nat-session-time
        2000 --hangup-after 8 --control none} calls a SIPp UAS, which gets
        at least two in-dialog OPTIONS and then a BYE; the daemon keeps
        running until it is stopped.
        """
        requireTool("sipp")
        uas = Sipp(self, "engine_keepalive_uas", variables={"ringms": 1000}, timeout=40)
        yield uas.start()
        sipPort = freeUdpPort()
        argv = twistdCommand() + [
            "--pidfile=", "-n", "lmevoip",
            "--listen", f"127.0.0.1:{sipPort}",
            "--call", f"sip:sipp@127.0.0.1:{uas.localPort}",
            "--keepalive", "sip", "--nat-session-time", str(NAT_SESSION_TIME_MS),
            "--hangup-after", str(HANGUP_AFTER),
            "--control", "none",
        ]
        daemon = PeerProcess(argv, reactor, cwd=traceDirectory(self, "twistd"), name="twistd-lmevoip")
        self.addCleanup(daemon.stop)
        daemon.start()
        yield daemon.waitForOutput(b"SipOutgoingCallConnected", timeout=20)
        result = yield uas.finished()
        self.assertEqual(result.exitCode, 0, result.describe() + daemon.outputTail())
        self.assertGreaterEqual(result.counts.total("OPTIONS", "Recv"), 2, result.describe())
        self.assertEqual(result.counts.total("BYE", "Recv"), 1, result.describe())
        yield daemon.waitForOutput(b"SipCallComplete", timeout=10)
        self.assertIn(f"--hangup-after {float(HANGUP_AFTER)}s: terminateCall returned SipSuccess", daemon.stdout)
        self.assertTrue(daemon.running, daemon.outputTail())
        exit = yield daemon.stop()
        self.assertTrue(exit.stoppedByHarness)
        self.assertIn("Server Shut Down.", daemon.stdout)
        self.assertNotIn("Traceback", daemon.stdout + daemon.stderr)
