"""
Tests for L{lmevoip.tap} and the twistd plugin: the options and their
errors, the configuration file, the service tree, start-up failures (in
process and as a real C{twistd}/C{twist} subprocess), and what the options
make the engine do (on a L{FakeUdpReactor}).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import wave
from pathlib import Path

from twisted.application.service import IServiceMaker, MultiService
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger, LogLevel
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from lmevoip import tap
from lmevoip.engine import EngineConfig, LineState, VoipMediaEngine
from lmevoip.events import EventName
from lmevoip.keepalive.null import CRLF
from lmevoip.rtp.audio import SilenceSource, ToneSource, WavFileSource
from lmevoip.testing import FakeSipPeer, FakeUdpReactor, RecordingEngineObserver
from lmevoip.web import ControlService
from tests.peers import PeerProcess, traceDirectory
from tests.peers.ports import freeUdpPort

#: Every option other tools rely on (the contract of the issue).
CONTRACT_OPTIONS = (
    "--listen", "--public-address", "--rtp-ports", "--lines", "--user", "--auto-answer", "--call",
    "--hangup-after", "--audio", "--record", "--noise-gate", "--keepalive", "--nat-session-time",
    "--null-keepalive", "--control", "--control-token", "--log-format", "--config",
)

TOKEN = "0123456789abcdef-token"


def twistdCommand() -> list[str]:
    """
    The command line that runs C{twistd} with this interpreter.
    """
    script = Path(sys.executable).parent / "twistd"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def parse(*args: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(list(args))
    return options


class PluginTests(SynchronousTestCase):
    def test_pluginRegistered(self) -> None:
        """
        The C{lmevoip} drop-in is found by Twisted's plugin system and points
        at L{lmevoip.tap}.
        """
        makers = {m.tapname: m for m in getPlugins(IServiceMaker)}
        self.assertIn("lmevoip", makers)
        self.assertEqual(makers["lmevoip"].module, "lmevoip.tap")

    def test_twistdHelp(self) -> None:
        """
        C{twistd lmevoip --help} runs from the installed package and lists
        every option of the contract.
        """
        result = subprocess.run(twistdCommand() + ["lmevoip", "--help"], capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        for option in CONTRACT_OPTIONS:
            self.assertIn(option, result.stdout)


class OptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """
        With no options: SIP on 127.0.0.1:5060, keep-alive of both kinds
        for a 30 s NAT, the control API on loopback port 8060.
        """
        options = parse()
        self.assertEqual(options["listen"], ("127.0.0.1", 5060))
        self.assertIsNone(options["public-address"])
        self.assertEqual(options["rtp-ports"], (16384, 32767))
        self.assertEqual(options["keepalive"], (True, True))
        self.assertEqual(options["nat-session-time"], 30000)
        self.assertEqual(options["control"], "tcp:8060:interface=127.0.0.1")
        self.assertEqual(options["null-keepalive"], [])
        self.assertEqual(options["log-level"], LogLevel.info)
        config = options.engineConfig
        self.assertEqual((config.sipHost, config.sipPort, config.lines, config.user), ("127.0.0.1", 5060, 4, "lmevoip"))
        self.assertFalse(config.noiseGateEnabled)
        self.assertIsInstance(config.sourceFactory(0), SilenceSource)

    def test_listenIPv6(self) -> None:
        self.assertEqual(parse("--listen", "[::1]:5070")["listen"], ("::1", 5070))

    def test_values(self) -> None:
        """
        Every value is converted into what the service needs.
        """
        options = parse("--listen", "127.0.0.1:5070", "--public-address", "192.0.2.1:5080", "--rtp-ports",
                        "20000-20099", "--lines", "2", "--user", "office", "--auto-answer", "--call",
                        "sip:bob@127.0.0.1:5090", "--hangup-after", "2.5", "--audio", "tone", "--noise-gate", "700",
                        "--keepalive", "rtp", "--nat-session-time", "2000", "--null-keepalive",
                        "127.0.0.1:5091:15", "--null-keepalive", "[::1]:5092:0.5", "--control", "none",
                        "--log-format", "json")
        self.assertEqual(options["public-address"], ("192.0.2.1", 5080))
        self.assertEqual(options["keepalive"], (False, True))
        self.assertEqual(options["hangup-after"], 2.5)
        self.assertEqual(options["null-keepalive"], [("127.0.0.1", 5091, 15.0), ("::1", 5092, 0.5)])
        self.assertIsNone(options["control"])
        self.assertTrue(options["auto-answer"])
        config = options.engineConfig
        self.assertEqual((config.sipPort, config.publicHost, config.publicPort), (5070, "192.0.2.1", 5080))
        self.assertEqual((config.rtpPortLow, config.rtpPortHigh, config.lines, config.user),
                         (20000, 20099, 2, "office"))
        self.assertEqual((config.noiseGateEnabled, config.noiseThreshold), (True, 700))
        self.assertIsInstance(config.sourceFactory(0), ToneSource)

    def test_publicAddressWithoutPort(self) -> None:
        self.assertEqual(parse("--public-address", "198.51.100.7")["public-address"], ("198.51.100.7", None))

    def test_badOptions(self) -> None:
        """
        Each bad value is a UsageError naming the option and the problem.
        """
        cases = [
            (["--listen", "127.0.0.1:99999"], "out of range"),
            (["--listen", "example.com:5060"], "--listen: 'example.com' is not an IP address"),
            (["--listen", "0.0.0.0:5060"], "--listen: sipHost must be a specific IP address"),
            (["--public-address", "nat.example:5060"], "--public-address: 'nat.example' is not an IP address"),
            (["--public-address", "192.0.2.1:0"], "port 0 cannot be advertised"),
            (["--public-address", "::1", "--listen", "127.0.0.1:5060"], "same address family"),
            (["--rtp-ports", "20000"], "--rtp-ports '20000' is not LOW-HIGH"),
            (["--rtp-ports", "30000-20000"], "--rtp-ports: RTP port range 30000-20000"),
            (["--lines", "many"], "--lines 'many' is not an integer"),
            (["--lines", "0"], "--lines: lines must be within 1-1024"),
            (["--user", "bob smith"], "--user 'bob smith'"),
            (["--call", "bob@127.0.0.1"], "--call 'bob@127.0.0.1'"),
            (["--call", "sips:bob@127.0.0.1"], "only sip: URIs"),
            (["--hangup-after", "soon"], "--hangup-after 'soon' is not a number"),
            (["--hangup-after", "-1"], "must be a positive number"),
            (["--audio", "music"], "--audio 'music': expected tone, silence or a .wav file"),
            (["--audio", "/nonexistent/x.wav"], "--audio /nonexistent/x.wav: cannot be played"),
            (["--record", "/nonexistent"], "--record /nonexistent: not a directory"),
            (["--noise-gate", "loud"], "--noise-gate 'loud' is not an integer"),
            (["--noise-gate", "40000"], "--noise-gate"),
            (["--keepalive", "sip,udp"], "--keepalive 'sip,udp'"),
            (["--keepalive", ""], "--keepalive ''"),
            (["--nat-session-time", "3s"], "--nat-session-time '3s' is not an integer"),
            (["--nat-session-time", "0"], "--nat-session-time 0 must be at least 1"),
            (["--null-keepalive", "127.0.0.1:5060"], "--null-keepalive '127.0.0.1:5060'"),
            (["--null-keepalive", "127.0.0.1:5060:x"], "'x' is not a number of seconds"),
            (["--null-keepalive", "127.0.0.1:0:10"], "port 0 cannot be sent to"),
            (["--null-keepalive", "127.0.0.1:5060:-3"], "positive number of seconds"),
            (["--control", "bogus:1234"], "--control 'bogus:1234' is not a server endpoint"),
            (["--control", "tcp:8060"], "accepts connections from other hosts"),
            (["--control", "tcp:8060:interface=0.0.0.0"], "give --control-token"),
            (["--control", "tcp:8060:interface=192.0.2.1", "--control-token", "short"], "at least 16"),
            (["--log-format", "xml"], "--log-format 'xml'"),
            (["--log-level", "chatty"], "--log-level 'chatty'"),
            (["--no-such-option"], "no-such-option"),
        ]
        for args, expected in cases:
            with self.subTest(args=args):
                error = self.assertRaises(usage.UsageError, parse, *args)
                self.assertIn(expected, str(error))

    def test_controlOffLoopbackWithToken(self) -> None:
        """
        The control API may listen on another interface when it has a
        token; a unix socket and a loopback interface need none.
        """
        self.assertEqual(parse("--control", "tcp:8060", "--control-token", TOKEN)["control-token"], TOKEN)
        self.assertEqual(parse("--control", "unix:/tmp/lmevoip.sock")["control"], "unix:/tmp/lmevoip.sock")
        self.assertEqual(parse("--control", "tcp6:8060:interface=\\:\\:1")["control"], "tcp6:8060:interface=\\:\\:1")

    def test_parseEndpoint(self) -> None:
        """
        Endpoint descriptions split like Twisted's own, with escapes.
        """
        self.assertEqual(tap.parseEndpoint("tcp:8060:interface=127.0.0.1"),
                         ("tcp", ["8060"], {"interface": "127.0.0.1"}))
        self.assertEqual(tap.parseEndpoint("TCP6:port=8060:interface=\\:\\:1"),
                         ("tcp6", [], {"port": "8060", "interface": "::1"}))
        self.assertTrue(tap.endpointIsLocal("tcp6:8060:interface=\\:\\:1"))
        self.assertTrue(tap.endpointIsLocal("tcp:8060:interface=localhost"))
        self.assertFalse(tap.endpointIsLocal("systemd:domain=INET:index=0"))

    def test_audioWav(self) -> None:
        """
        A WAV file is checked when the options are parsed and played looped.
        """
        path = Path(self.mktemp() + ".wav")
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(8000)
            wav.writeframes(b"\x00\x10" * 800)
        options = parse("--audio", str(path))
        source = options.engineConfig.sourceFactory(0)
        self.addCleanup(source.close)
        self.assertIsInstance(source, WavFileSource)
        self.assertTrue(source.loop)
        bad = Path(self.mktemp() + ".wav")
        bad.write_text("not a wav file")
        error = self.assertRaises(usage.UsageError, parse, "--audio", str(bad))
        self.assertIn("cannot be played", str(error))

    def test_record(self) -> None:
        """
        C{--record DIR} gives every call a WAV recorder in DIR.
        """
        directory = Path(self.mktemp())
        directory.mkdir()
        sink = parse("--record", str(directory)).engineConfig.sinkFactory(3)
        sink.close()
        files = list(directory.iterdir())
        self.assertEqual(len(files), 1)
        self.assertTrue(files[0].name.startswith("line3-") and files[0].name.endswith(".wav"), files)


class ConfigFileTests(SynchronousTestCase):
    def write(self, text: str) -> str:
        path = self.mktemp() + ".toml"
        Path(path).write_text(text)
        return path

    def test_values(self) -> None:
        """
        Keys are the long option names; numbers, booleans and a list of
        NULL keep-alives have their TOML types.
        """
        path = self.write('listen = "127.0.0.1:5072"\nlines = 2\nauto-answer = true\nnat-session-time = 4000\n'
                          'hangup-after = 1.5\nkeepalive = "sip"\nnull-keepalive = ["127.0.0.1:5093:20"]\n'
                          'control = "none"\n')
        options = parse("--config", path)
        self.assertEqual(options["listen"], ("127.0.0.1", 5072))
        self.assertEqual(options.engineConfig.lines, 2)
        self.assertTrue(options["auto-answer"])
        self.assertEqual(options["nat-session-time"], 4000)
        self.assertEqual(options["hangup-after"], 1.5)
        self.assertEqual(options["keepalive"], (True, False))
        self.assertEqual(options["null-keepalive"], [("127.0.0.1", 5093, 20.0)])
        self.assertIsNone(options["control"])

    def test_commandLineWins(self) -> None:
        """
        An option given on the command line beats the file, even when it is
        given with its default value; the others come from the file.
        """
        path = self.write('[lmevoip]\nlisten = "127.0.0.1:5072"\nuser = "filed"\nlines = 2\n'
                          'null-keepalive = "127.0.0.1:5093:20"\n')
        options = parse("--listen", "127.0.0.1:5060", "--config", path, "--null-keepalive", "127.0.0.1:5094:5")
        self.assertEqual(options["listen"], ("127.0.0.1", 5060))
        self.assertEqual(options["user"], "filed")
        self.assertEqual(options.engineConfig.lines, 2)
        self.assertEqual(options["null-keepalive"], [("127.0.0.1", 5094, 5.0)])

    def test_errors(self) -> None:
        """
        A missing file, bad TOML, an unknown key, a value of the wrong type
        and a bad value are UsageErrors naming the file and the key.
        """
        cases = [
            (self.mktemp(), "cannot read it"),
            (self.write("listen = \n"), "not valid TOML"),
            (self.write('colour = "blue"\n'), "unknown option 'colour'"),
            (self.write('config = "other.toml"\n'), "unknown option 'config'"),
            (self.write("lines = true\n"), "lines must be a string or int"),
            (self.write("listen = 5060\n"), "listen must be a string"),
            (self.write('auto-answer = "yes"\n'), "auto-answer must be true or false"),
            (self.write("null-keepalive = [1, 2]\n"), "null-keepalive must be a string or a list"),
            (self.write('nat-session-time = "often"\n'), "--nat-session-time 'often' is not an integer"),
        ]
        for path, expected in cases:
            with self.subTest(expected=expected):
                error = self.assertRaises(usage.UsageError, parse, "--config", path)
                self.assertIn(expected, str(error))


class MakeServiceTests(SynchronousTestCase):
    def test_tree(self) -> None:
        """
        makeService builds the root C{lmevoip} with the engine and the
        control service as children, in start order, from the options.
        """
        service = tap.makeService(parse("--listen", "127.0.0.1:5071", "--lines", "3"))
        self.assertIsInstance(service, MultiService)
        self.assertEqual(service.name, "lmevoip")
        self.assertEqual([child.name for child in service], ["engine", "control"])
        engine = service.getServiceNamed("engine")
        self.assertIsInstance(engine, VoipMediaEngine)
        self.assertEqual((engine.config.sipPort, engine.lines), (5071, 3))
        control = service.getServiceNamed("control")
        self.assertIsInstance(control, ControlService)
        self.assertEqual(control.description, "tcp:8060:interface=127.0.0.1")
        self.assertEqual(service.keepAlive, (True, True, 30000))
        self.assertIsNone(service.logObserver)
        self.assertFalse(service.running)

    def test_noControl(self) -> None:
        """
        C{--control none} leaves the control service out.
        """
        service = tap.makeService(parse("--control", "none", "--call", "sip:bob@127.0.0.1:5090"))
        self.assertEqual([child.name for child in service], ["engine"])
        self.assertIsNone(service.control)
        self.assertEqual(service.call, "sip:bob@127.0.0.1:5090")


def quiet(*components: object) -> None:
    for component in components:
        component.log = Logger(observer=lambda event: None)  # type: ignore[attr-defined]


class ServiceTests(SynchronousTestCase):
    """
    L{tap.LmevoipService} with its engine on a L{FakeUdpReactor}.
    """

    def setUp(self) -> None:
        self.reactor = FakeUdpReactor()

    def service(self, **kwargs: object) -> tap.LmevoipService:
        config = kwargs.pop("config", None) or EngineConfig(sipHost="127.0.0.1", sipPort=5060)
        engine = VoipMediaEngine(config, reactor=self.reactor)
        service = tap.LmevoipService(engine, keepAlive=kwargs.pop("keepAlive", (True, True, 30000)), **kwargs)
        quiet(service, engine)
        self.addCleanup(self.stop, service)
        return service

    def stop(self, service: tap.LmevoipService) -> None:
        service.stopService()
        self.reactor.advance(1)

    def advance(self, seconds: float, step: float = 0.02) -> None:
        for _ in range(int(seconds / step)):
            self.reactor.advance(step)

    def test_keepAliveRefused(self) -> None:
        """
        A NAT session time the engine refuses stops the start before any
        socket is bound, with a message naming the option and the reason.
        """
        service = self.service(keepAlive=(True, False, 5))
        error = self.assertRaises(tap.StartupError, service.startService)
        self.assertIn("--nat-session-time 5 (with --keepalive sip)", str(error))
        self.assertIn("SipBadParameter", str(error))
        self.assertIn("1000-3600000", str(error))
        self.assertFalse(service.running)
        self.assertEqual(self.reactor.openPorts, 0)

    def test_keepAliveNoneIgnoresTime(self) -> None:
        """
        With C{--keepalive none} the NAT session time is not checked.
        """
        service = self.service(keepAlive=(False, False, 5))
        service.startService()
        self.assertTrue(service.engine.running)
        self.assertIsNone(service.engine.sipKeepAlive.natSessionTimeMs)

    def test_sipPortTaken(self) -> None:
        """
        A SIP port in use is a start-up error naming C{--listen}.
        """
        FakeSipPeer(self.reactor, "127.0.0.1", 5060)
        service = self.service()
        error = self.assertRaises(tap.StartupError, service.startService)
        self.assertIn("--listen 127.0.0.1:5060: cannot start the SIP socket", str(error))
        self.assertFalse(service.engine.running)

    def test_callRefusedStopsEngine(self) -> None:
        """
        A C{--call} the engine refuses (a host name: it does no DNS) is a
        start-up error, and the engine that had started is stopped again.
        """
        service = self.service(call="sip:bob@example.com")
        error = self.assertRaises(tap.StartupError, service.startService)
        self.assertIn("--call sip:bob@example.com: makeCallUri returned SipBadParameter", str(error))
        self.assertIsNotNone(service.aborted)
        self.reactor.advance(1)
        self.assertEqual(self.successResultOf(service.aborted), None)
        self.assertFalse(service.engine.running)
        self.assertEqual(self.reactor.openPorts, 0)

    def test_callAndHangupAfter(self) -> None:
        """
        C{--call} places a call on line 0 at start; C{--hangup-after} ends
        it that long after it connected; the keep-alive settings are in
        force (OPTIONS reach the peer meanwhile).
        """
        peer = FakeSipPeer(self.reactor, "127.0.0.2", 5060)
        self.addCleanup(peer.stop)
        service = self.service(call="sip:peer@127.0.0.2:5060", hangupAfter=6.0, keepAlive=(True, False, 2000))
        events = RecordingEngineObserver()
        service.engine.addObserver(events)
        service.startService()
        self.advance(1)
        connected = events.last(EventName.SipOutgoingCallConnected)
        self.assertIsNotNone(connected)
        self.advance(4.5)
        self.assertEqual(peer.requests("BYE"), [])
        self.assertGreaterEqual(len(peer.requests("OPTIONS")), 2)
        self.advance(1)
        byes = peer.requests("BYE")
        self.assertEqual(len(byes), 1)
        self.assertTrue(6.0 <= byes[0][0] - connected.time < 6.1, byes[0][0] - connected.time)
        self.assertEqual(events.last(EventName.SipCallComplete).reason, "local-hangup")

    def test_autoAnswer(self) -> None:
        """
        C{--auto-answer} answers a call from another engine.
        """
        service = self.service(autoAnswer=True)
        service.startService()
        caller = VoipMediaEngine(EngineConfig(sipHost="127.0.0.3", sipPort=5060, user="caller"),
                                 reactor=self.reactor)
        quiet(caller)
        caller.startService()
        self.addCleanup(caller.stopService)
        self.assertTrue(caller.makeCall(0, "lmevoip", "127.0.0.1", 5060).succeeded)
        self.advance(1)
        self.assertEqual(service.engine.getLineStatus(0).state, LineState.CONNECTED)
        self.assertEqual(caller.getLineStatus(0).state, LineState.CONNECTED)

    def test_nullKeepAlives(self) -> None:
        """
        C{--null-keepalive} destinations get a CRLF every period.
        """
        service = self.service(nullKeepAlives=[("127.0.0.4", 5070, 1.0)])
        service.startService()
        self.advance(3.5)
        sent = [d for d in self.reactor.sentTo(("127.0.0.4", 5070)) if d.data == CRLF]
        self.assertEqual(len(sent), 4)


class SubprocessTests(TestCase):
    """
    Start-up failures of a real C{twistd} and C{twist}: exit status 1 and
    one clear line on standard error.
    """

    timeout = 60

    @inlineCallbacks
    def runFailing(self, argv: list[str]) -> object:
        process = PeerProcess(argv, reactor, cwd=traceDirectory(self, "lmevoip"), name="lmevoip")
        self.addCleanup(process.stop)
        process.start()
        exit = yield process.whenEnded()
        return process, exit

    @inlineCallbacks
    def test_twistdNatSessionTimeRefused(self) -> None:
        """
        C{twistd -n lmevoip --nat-session-time 5}: the engine refuses the
        NAT session time; twistd exits 1 and says why.
        """
        argv = twistdCommand() + ["--pidfile=", "-n", "lmevoip", "--listen", "127.0.0.1:0", "--control", "none",
                                  "--nat-session-time", "5"]
        process, exit = yield self.runFailing(argv)
        self.assertEqual(exit.exitCode, 1, process.outputTail())
        self.assertIn("lmevoip: cannot start: --nat-session-time 5 (with --keepalive sip,rtp): "
                      "enableKeepAliveTransmissions(True, True, 5) returned SipBadParameter", process.stderr)
        self.assertNotIn("Traceback", process.stderr)

    @inlineCallbacks
    def test_twistSipPortInUse(self) -> None:
        """
        C{python -m twisted lmevoip} on a SIP port another socket holds
        exits 1 naming C{--listen}.
        """
        port = freeUdpPort()
        holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(holder.close)
        holder.bind(("127.0.0.1", port))
        argv = [sys.executable, "-m", "twisted", "lmevoip", "--listen", f"127.0.0.1:{port}", "--control", "none"]
        process, exit = yield self.runFailing(argv)
        self.assertEqual(exit.exitCode, 1, process.outputTail())
        self.assertIn(f"lmevoip: cannot start: --listen 127.0.0.1:{port}: cannot start the SIP socket",
                      process.stderr)
        self.assertNotIn("Traceback", process.stderr)

    @inlineCallbacks
    def test_usageError(self) -> None:
        """
        A bad option: twistd prints the usage and the error and exits 1
        without starting anything.
        """
        process, exit = yield self.runFailing(twistdCommand() + ["--pidfile=", "-n", "lmevoip", "--lines", "x"])
        self.assertEqual(exit.exitCode, 1, process.outputTail())
        self.assertIn("--lines 'x' is not an integer", process.stdout + process.stderr)
