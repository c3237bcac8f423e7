"""
C{twistd -n lmevoip --register ...} as a real daemon against a real
Kamailio registrar (C{tests/kamailio/kamailio.cfg}, driven by
L{tests.peers.kamailio}): alice and carol (passwords on the command line,
registration settings from the TOML configuration file) are registered
with digest authentication, seen in C{kamcmd ul.dump} and in the daemon's
control API; SIGTERM un-registers both before the daemon exits. The passwords appear
nowhere in the daemon's output.

Skipped without kamailio and kamcmd; failed instead under
C{LMEVOIP_REQUIRE_PEERS=1}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.peers import PeerProcess, traceDirectory
from tests.peers.kamailio import TEST_USERS, Kamailio
from tests.peers.ports import freeTcpPort, freeUdpPort
from tests.support import requireTool
from tests.test_control import ApiClient
from tests.test_tap import twistdCommand


class TwistdRegistersWithKamailioTests(TestCase):
    timeout = 40

    @inlineCallbacks
    def waitForRegistered(self, client: ApiClient, names: set[str], timeout: float = 10) -> Any:
        """
        Poll C{GET /api/registrations} until every name is registered.

        @return: A Deferred firing with the states by name.
        """
        deadline = reactor.seconds() + timeout
        while True:
            code, _, body = yield client.request("GET", "/api/registrations")
            self.assertEqual(code, 200, body)
            states = {state["name"]: state for state in body["registrations"]}
            if set(states) == names and all(state["registered"] for state in states.values()):
                return states
            if reactor.seconds() > deadline:
                self.fail(f"not registered after {timeout} s: {states}")
            yield deferLater(reactor, 0.1, lambda: None)

    @inlineCallbacks
    def test_registerAndUnregisterOnStop(self) -> Any:
        """
        The daemon registers alice and carol at start (one 401 challenge
        each, then 200); C{ul.dump} holds each contact at the daemon's SIP
        port and C{GET /api/registrations} shows both Registered with the
        granted expiry; SIGTERM makes the daemon send Expires 0 for both
        and wait for the answers, so that Kamailio holds no contact once
        the daemon has exited.
        """
        for tool in ("kamailio", "kamcmd"):
            requireTool(tool)
        kamailio = yield Kamailio(self).start()
        directory = traceDirectory(self, "twistd")
        config = Path(directory) / "lmevoip.toml"
        # The file's list is replaced by the command line's --register (the
        # command line wins); its other registration settings apply.
        config.write_text(
            "[lmevoip]\n"
            f'register = [{{user = "bob", password = "{TEST_USERS["bob"]}", host = "{kamailio.host}", '
            f"port = {kamailio.port}}}]\n"
            "register-interval = 30\nregister-timeout = 3000\n")
        sipPort, controlPort = freeUdpPort(), freeTcpPort()
        argv = twistdCommand() + [
            "--pidfile=", "-n", "lmevoip", "--config", str(config),
            "--listen", f"127.0.0.1:{sipPort}",
            "--control", f"tcp:{controlPort}:interface=127.0.0.1",
            "--register", f"alice:{TEST_USERS['alice']}@{kamailio.host}:{kamailio.port}",
            "--register", f"carol:{TEST_USERS['carol']}@{kamailio.host}:{kamailio.port}",
        ]
        daemon = PeerProcess(argv, reactor, cwd=directory, name="twistd-lmevoip")
        self.addCleanup(daemon.stop)
        daemon.start()
        yield daemon.waitForOutput(b"control API and status page on", timeout=15)
        client = ApiClient(f"http://127.0.0.1:{controlPort}/")
        states = yield self.waitForRegistered(client, {"alice", "carol"})

        for name in ("alice", "carol"):
            [binding] = yield kamailio.contacts(name)
            self.assertEqual(binding.address, f"sip:{name}@127.0.0.1:{sipPort}")
            first, second = kamailio.registers(name)
            self.assertEqual((first.authenticated, second.authenticated), (False, True))
            self.assertEqual(second.auth, name)
        for name, state in states.items():
            self.assertEqual((state["state"], state["registered"], state["grantedExpires"]),
                             ("Registered", True, 35))
            self.assertEqual(state["registrar"], f"127.0.0.1:{kamailio.port}")
            self.assertEqual(state["aor"], f"sip:{name}@127.0.0.1")

        exit = yield daemon.stop(grace=10)
        self.assertTrue(exit.stoppedByHarness)
        self.assertIn("Server Shut Down.", daemon.stdout, daemon.outputTail())
        for name in ("alice", "carol"):
            self.assertEqual((yield kamailio.contacts(name)), [])
            self.assertEqual(kamailio.registers(name)[-1].expires, "0")
        self.assertEqual(kamailio.registers("bob"), [])
        output = daemon.stdout + daemon.stderr
        self.assertIn("SipUnregisterSuccess", output)
        self.assertNotIn("Traceback", output)
        for password in TEST_USERS.values():
            self.assertNotIn(password, output)
