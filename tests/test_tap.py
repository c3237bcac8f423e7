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
from lmevoip.returns import TelephonyReturnValue
from lmevoip.testing import FakeSipPeer, FakeUdpReactor, RecordingEngineObserver
from lmevoip.web import ControlService
from tests.peers import PeerProcess, traceDirectory
from tests.peers.ports import freeUdpPort
from tests.test_engine_registration import LogCapture, ScriptedRegistrar

#: Every option other tools rely on (the contract of the issue).
CONTRACT_OPTIONS = (
    "--listen", "--public-address", "--rtp-ports", "--lines", "--user", "--auto-answer", "--call",
    "--hangup-after", "--audio", "--record", "--noise-gate", "--keepalive", "--nat-session-time",
    "--null-keepalive", "--control", "--control-token", "--log-format", "--config",
    "--register", "--register-interval", "--register-expires", "--outbound-proxy",
)

#: A password distinctive enough to be searched for in messages and logs.
SECRET = "Pw-9zq@x:secret"

TOKEN = "0123456789abcdef-token"


R = TelephonyReturnValue


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
        self.assertIn("prefer the --config file", " ".join(result.stdout.split()))


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


class RegistrationOptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """
        Without C{--register} nothing is registered; the registration
        settings have their defaults.
        """
        options = parse()
        self.assertIsNone(options.registration)
        self.assertEqual(options["register"], [])
        self.assertIsNone(options["outbound-proxy"])
        self.assertEqual((options["register-interval"], options["register-expires"], options["register-timeout"]),
                         (300.0, 0, tap.DEFAULT_REGISTER_TIMEOUT_MS))

    def test_values(self) -> None:
        """
        Several names at one registrar become one L{RegistrationSettings}:
        passwords may hold C{:} and C{@}, the port defaults to 5060, a
        host name is kept (the engine resolves it), IPv6 goes in brackets.
        """
        options = parse("--register", f"alice:{SECRET}@127.0.0.2", "--register", "bob@127.0.0.2:5060",
                        "--register-interval", "60", "--register-expires", "120", "--register-timeout", "2000",
                        "--outbound-proxy", "127.0.0.3", "--no-register-nat-detect")
        settings = options.registration
        self.assertEqual(settings.names, ["alice", "bob"])
        self.assertEqual((settings.host, settings.port), ("127.0.0.2", 5060))
        self.assertEqual([r.password for r in settings.registrations], [SECRET, None])
        self.assertEqual((settings.interval, settings.expires, settings.timeoutMs, settings.natDetect),
                         (60.0, 120, 2000, False))
        self.assertEqual(options["outbound-proxy"], ("127.0.0.3", 5060))
        self.assertEqual(settings.describe(), "alice:***@127.0.0.2:5060, bob@127.0.0.2:5060")
        self.assertNotIn(SECRET, repr(settings))
        self.assertEqual(tap.parseRegistration("carol@Sip.Example.COM:5080"),
                         tap.Registration("carol", "sip.example.com", 5080))
        six = parse("--listen", "[::1]:5060", "--register", "dave:pw@[::1]:5070").registration
        self.assertEqual((six.host, six.port, six.registrations[0].registrar), ("::1", 5070, "[::1]:5070"))
        self.assertTrue(parse("--register", "erin@127.0.0.2").registration.natDetect)

    def test_badRegistrations(self) -> None:
        """
        Each bad value is a UsageError naming the option and the problem,
        and none shows the password.
        """
        cases = [
            (["alice:password"], "is not USER[:PASSWORD]@HOST[:PORT]"),
            (["alice"], "--register 'alice' is not USER[:PASSWORD]@HOST[:PORT]"),
            ([f"alice:{SECRET}"], "what follows the last '@' is not HOST[:PORT] (not shown"),
            ([f"alice:{SECRET}@"], "what follows the last '@' is not HOST[:PORT]"),
            (["alice@"], "--register 'alice@': '' has no host"),
            ([f":{SECRET}@127.0.0.2"], "has no user"),
            (["alice:@127.0.0.2"], "the password after ':' is empty"),
            ([f"al ice:{SECRET}@127.0.0.2"], "'al ice' is not a SIP user name"),
            ([f"alice:{SECRET}@127.0.0.2:0"], "port 0 cannot be registered with"),
            ([f"alice:{SECRET}@127.0.0.2:99999"], "what follows the last '@' is not HOST[:PORT]"),
            (["alice@127.0.0.2:99999"], "port 99999 is out of range"),
            (["alice@bad_host"], "'bad_host' is not an IP address or a host name"),
            ([f"alice:{SECRET}@[::1]"], "not of the address family of --listen"),
            ([f"alice:{SECRET}@127.0.0.2", "alice@127.0.0.2"], "'alice' is given twice"),
            ([f"alice:{SECRET}@127.0.0.2", "bob@127.0.0.9"], "every name must use the same registrar"),
            ([f"alice:{SECRET}@127.0.0.2", "bob@127.0.0.2:5070"], "not 127.0.0.2:5060 and 127.0.0.2:5070"),
        ]
        for values, expected in cases:
            args = [arg for value in values for arg in ("--register", value)]
            with self.subTest(args=args):
                error = self.assertRaises(usage.UsageError, parse, *args)
                self.assertIn(expected, str(error))
                self.assertIn("--register", str(error))
                self.assertNotIn(SECRET, str(error))
                self.assertNotIn("secret", str(error))

    def test_badSettings(self) -> None:
        cases = [
            (["--register-interval", "0.5"], "--register-interval 0.5 must be at least 1 second"),
            (["--register-interval", "often"], "--register-interval 'often' is not a number"),
            (["--register-expires", "-1"], "--register-expires -1 must be at least 0"),
            (["--register-timeout", "0"], "--register-timeout 0 must be at least 1"),
            (["--outbound-proxy", "127.0.0.3:0"], "--outbound-proxy '127.0.0.3:0': port 0"),
            (["--outbound-proxy", "bad_proxy:5060"], "'bad_proxy' is not an IP address or a host name"),
            (["--outbound-proxy", "[::1]:5060"], "not of the address family of --listen"),
        ]
        for args, expected in cases:
            with self.subTest(args=args):
                error = self.assertRaises(usage.UsageError, parse, *args)
                self.assertIn(expected, str(error))

    def test_helpHidesPasswords(self) -> None:
        """
        The usage text twistd prints with an error never holds the
        password that was given.
        """
        options = tap.Options()
        self.assertRaises(usage.UsageError, options.parseOptions,
                          ["--register", f"alice:{SECRET}@127.0.0.2", "--lines", "x"])
        self.assertIn("--register", str(options))
        self.assertNotIn(SECRET, str(options))


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

    def test_registration(self) -> None:
        """
        C{register} is a string, a table or a list of them (a table keeps a
        password with any characters); the other registration settings
        have their TOML types. The command line's C{--register} replaces
        the file's list and keeps its settings.
        """
        path = self.write(f'register = ["alice:{SECRET}@127.0.0.2", {{user = "bob", password = "p@ss:w", '
                          'host = "127.0.0.2"}, {user = "carol", host = "127.0.0.2", port = 5060}]\n'
                          'register-interval = 45.5\nregister-expires = 90\nregister-timeout = 3000\n'
                          'outbound-proxy = "127.0.0.3:5070"\nno-register-nat-detect = true\n')
        settings = parse("--config", path).registration
        self.assertEqual(settings.names, ["alice", "bob", "carol"])
        self.assertEqual([r.password for r in settings.registrations], [SECRET, "p@ss:w", None])
        self.assertEqual((settings.interval, settings.expires, settings.timeoutMs, settings.natDetect),
                         (45.5, 90, 3000, False))
        options = parse("--config", path, "--register", "dave@127.0.0.2")
        self.assertEqual(options.registration.names, ["dave"])
        self.assertEqual(options.registration.interval, 45.5)
        self.assertEqual(options["outbound-proxy"], ("127.0.0.3", 5070))
        six = self.write('listen = "[::1]:5060"\nregister = {user = "erin", host = "::1", port = 5070}\n')
        self.assertEqual(parse("--config", six).registration.registrations[0].registrar, "[::1]:5070")

    def test_registrationErrors(self) -> None:
        """
        Bad C{register} entries name the problem, never the password.
        """
        cases = [
            (f'register = 5\n', "register must be a string"),
            (f'register = [{{user = "a", password = "{SECRET}"}}]\n', "a table needs 'host'"),
            (f'register = [{{user = "a", password = "{SECRET}", host = "127.0.0.2", colour = 1}}]\n',
             "unknown key(s) 'colour'"),
            (f'register = [{{user = "a", password = 7, host = "127.0.0.2"}}]\n', "password must be a string"),
            (f'register = [{{user = "a", host = "127.0.0.2", port = "x"}}]\n', "port must be an integer"),
            (f'register = [{{user = "a@b", password = "{SECRET}", host = "127.0.0.2"}}]\n', "'a@b' is not"),
            (f'register = [{{user = "a", password = "", host = "127.0.0.2"}}]\n', "password after ':' is empty"),
            (f'register = ["a:{SECRET}@127.0.0.2", "b:{SECRET}@127.0.0.3"]\n', "the same registrar"),
            ('no-register-nat-detect = "yes"\n', "no-register-nat-detect must be true or false"),
            ('register-expires = 1.5\n', "register-expires must be a string or int"),
        ]
        for text, expected in cases:
            with self.subTest(expected=expected):
                error = self.assertRaises(usage.UsageError, parse, "--config", self.write(text))
                self.assertIn(expected, str(error))
                self.assertNotIn(SECRET, str(error))

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


class FakeReactorCase(SynchronousTestCase):
    """
    A L{FakeUdpReactor} and the helpers to drive services on it.

    @ivar stopTime: Seconds the reactor is advanced after a service is
        stopped (un-registrations wait for the registrar).
    """

    stopTime = 1.0

    def setUp(self) -> None:
        self.reactor = FakeUdpReactor()

    def stop(self, service: tap.LmevoipService) -> None:
        service.stopService()
        self.reactor.advance(self.stopTime)

    def advance(self, seconds: float, step: float = 0.02) -> None:
        for _ in range(int(seconds / step)):
            self.reactor.advance(step)


class ServiceTests(FakeReactorCase):
    """
    L{tap.LmevoipService} with its engine on a L{FakeUdpReactor}.
    """

    def service(self, **kwargs: object) -> tap.LmevoipService:
        config = kwargs.pop("config", None) or EngineConfig(sipHost="127.0.0.1", sipPort=5060)
        engine = VoipMediaEngine(config, reactor=self.reactor)
        service = tap.LmevoipService(engine, keepAlive=kwargs.pop("keepAlive", (True, True, 30000)), **kwargs)
        quiet(service, engine)
        self.addCleanup(self.stop, service)
        return service

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


class RegistrationServiceTests(FakeReactorCase):
    """
    C{--register} and its companions through L{tap.makeService}, with the
    engine on a L{FakeUdpReactor} and a scripted registrar that
    challenges alice at 127.0.0.2:5060.
    """

    stopTime = 10.0

    def setUp(self) -> None:
        super().setUp()
        self.registrar = ScriptedRegistrar(self.reactor, users={"alice": ("alice", SECRET)}, maxExpires=120)
        self.addCleanup(self.registrar.port.stopListening)
        self.logs = LogCapture(self)

    def service(self, *args: str) -> tap.LmevoipService:
        service = tap.makeService(parse("--control", "none", *args), reactor=self.reactor)
        quiet(service, service.engine)
        self.events = RecordingEngineObserver()
        service.engine.addObserver(self.events)
        self.addCleanup(self.stop, service)
        return service

    def test_registerWithCredentials(self) -> None:
        """
        At start every name is registered with the registrar: the first
        REGISTER of alice (AOR C{sip:alice@127.0.0.2}, contact at our SIP
        address, the expiry asked for) is challenged, the second answers
        with her password; bob, who has no password, is not challenged.
        Stopping the service un-registers both (Expires 0). The password
        is never logged.
        """
        service = self.service("--register", f"alice:{SECRET}@127.0.0.2", "--register", "bob@127.0.0.2",
                               "--register-interval", "60", "--register-expires", "100")
        service.startService()
        self.advance(1)
        first, second = self.registrar.registers("alice")
        for register in (first, second):
            self.assertEqual(str(register.uri), "sip:127.0.0.2")
            self.assertEqual(str(register.toAddr.uri), "sip:alice@127.0.0.2")
            self.assertEqual([str(c.uri) for c in register.contacts], ["sip:alice@127.0.0.1:5060"])
            self.assertEqual(register.expires, 100)
        self.assertIsNone(first.headers.get("Authorization"))
        self.assertIn('username="alice"', second.headers.get("Authorization"))
        self.assertEqual(len(self.registrar.registers("bob")), 1)
        self.assertEqual(set(self.registrar.bindings), {"alice", "bob"})
        states = {state["name"]: state for state in service.engine.getRegistrationState()}
        self.assertEqual({name: (s["state"], s["grantedExpires"]) for name, s in states.items()},
                         {"alice": ("Registered", 100), "bob": ("Registered", 100)})
        self.assertEqual(len(self.events.named(EventName.SipRegisterSuccess)), 2)

        service.stopService()
        self.advance(1)
        self.assertEqual(self.registrar.bindings, {})
        self.assertEqual(self.registrar.registers("alice")[-1].expires, 0)
        self.assertFalse(service.engine.running)
        self.assertEqual(self.reactor.openPorts, 1)  # the registrar's
        self.assertTrue(self.logs.lines)
        self.assertFalse([line for line in self.logs.lines if SECRET in line])

    def test_refreshEveryInterval(self) -> None:
        """
        C{--register-interval} is the time between REGISTERs.
        """
        service = self.service("--register", f"alice:{SECRET}@127.0.0.2", "--register-interval", "30")
        service.startService()
        self.advance(100)
        times = self.registrar.times("alice")
        refreshes = [later - earlier for earlier, later in zip(times[1:], times[2:])]
        self.assertEqual(len(refreshes), 3)
        for gap in refreshes:
            self.assertTrue(29.9 <= gap <= 30.2, refreshes)

    def test_outboundProxy(self) -> None:
        """
        With C{--outbound-proxy} the REGISTERs go to the proxy with a Route
        naming it; the AOR stays the registrar's.
        """
        proxy = ScriptedRegistrar(self.reactor, ("127.0.0.3", 5070), users={"alice": ("alice", SECRET)})
        self.addCleanup(proxy.port.stopListening)
        service = self.service("--register", f"alice:{SECRET}@127.0.0.2", "--outbound-proxy", "127.0.0.3:5070")
        service.startService()
        self.advance(1)
        self.assertEqual(self.registrar.registers(), [])
        register = proxy.registers("alice")[-1]
        self.assertEqual(register.headers.get("Route"), "<sip:127.0.0.3:5070;lr>")
        self.assertEqual(str(register.toAddr.uri), "sip:alice@127.0.0.2")
        self.assertIn("alice", proxy.bindings)

    def test_refusedRegistrationStopsEngine(self) -> None:
        """
        An C{enableSipRegisterServer} the engine refuses (a registrar host
        name and no resolver on this reactor) is a start-up error naming
        C{--register} without the password; the engine is stopped again.
        """
        service = self.service("--register", f"alice:{SECRET}@registrar.example")
        error = self.assertRaises(tap.StartupError, service.startService)
        self.assertEqual(str(error), "--register alice:***@registrar.example:5060: enableSipRegisterServer "
                                     f"returned SipBadParameter ({tap.describeResult(R.SipBadParameter)})")
        self.reactor.advance(1)
        self.assertIsNone(self.successResultOf(service.aborted))
        self.assertFalse(service.engine.running)
        self.assertFalse([line for line in self.logs.lines if SECRET in line])

    def test_refusedCredentials(self) -> None:
        """
        A password the engine refuses (over 1024 characters) stops the
        start before any socket is bound.
        """
        service = self.service("--register", "alice:" + "x" * 2000 + "@127.0.0.2")
        error = self.assertRaises(tap.StartupError, service.startService)
        self.assertIn("--register alice:***@127.0.0.2:5060: setSipAuthentication returned SipBadParameter",
                      str(error))
        self.assertNotIn("xxx", str(error))
        self.assertEqual(self.reactor.openPorts, 1)

    def test_authenticationFailureIsAnEvent(self) -> None:
        """
        A wrong password is not a start-up error (the registrar answers
        later): the daemon runs and reports C{SipRegisterBadCredentials}.
        """
        service = self.service("--register", "alice:wrong@127.0.0.2")
        service.startService()
        self.advance(1)
        self.assertTrue(service.engine.running)
        self.assertIsNotNone(self.events.last(EventName.SipRegisterBadCredentials))
        self.assertNotIn("alice", self.registrar.bindings)


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
