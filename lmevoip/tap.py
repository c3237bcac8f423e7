"""
C{twistd lmevoip}: command-line options, the configuration file and the
service tree.

C{twistd -n lmevoip} with no options runs an engine on loopback::

    LmevoipService "lmevoip" (MultiService)
     |- VoipMediaEngine "engine"     SIP on 127.0.0.1:5060, 4 lines
     '- ControlService  "control"    JSON API and status page on
                                     http://127.0.0.1:8060/

and, around them, what the options ask for: keep-alive settings applied
before the engine starts, NULL keep-alives and a first call placed once
it runs, automatic answering, and hanging up a set time after a call
connects. Every option is described in C{docs/operator.rst}.

Start-up is all or nothing: an option the engine refuses (its
L{TelephonyReturnValue} is not C{SipSuccess}), a SIP port that cannot be
bound or a control endpoint that cannot listen raises L{StartupError} from
L{LmevoipService.startService}, after whatever had started is stopped
again. C{twistd} (and C{twist}) call C{startService} before they run the
reactor and let the exception end the process with exit status 1; the
hook L{makeService} installs prints a L{StartupError} as one clear line
(C{lmevoip: cannot start: ...}) instead of a traceback.
"""

from __future__ import annotations

import ipaddress
import itertools
import math
import os
import re
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    InvalidLogLevelError,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    jsonFileLogObserver,
    textFileLogObserver,
)
from twisted.python import usage
from twisted.python.components import Componentized

from lmevoip.control import DEFAULT_REGISTER_INTERVAL, DEFAULT_REGISTER_TIMEOUT_MS, DEFAULT_SIP_PORT, describeResult
from lmevoip.engine import EngineConfig, VoipMediaEngine
from lmevoip.events import EngineEvent, EventName
from lmevoip.interfaces import IAudioSink, IAudioSource
from lmevoip.keepalive.interval import KeepAliveParameterError, maximumInterval
from lmevoip.returns import TelephonyReturnValue
from lmevoip.sip.registration import RegistrationConfig, RegistrationConfigError
from lmevoip.rtp.audio import AudioFormatError, DiscardSink, SilenceSource, ToneSource, WavFileSource, WavRecorder
from lmevoip.sip.uri import SipUri, parseUri

__all__ = [
    "DEFAULT_CONTROL",
    "DEFAULT_REGISTER_INTERVAL",
    "DEFAULT_REGISTER_TIMEOUT_MS",
    "Options",
    "Registration",
    "RegistrationSettings",
    "parseRegistration",
    "LmevoipService",
    "StartupError",
    "makeService",
    "twistdLogObserver",
    "parseEndpoint",
    "parseHostPort",
    "parseKeepAliveKinds",
    "parseNullKeepAlive",
    "parsePortRange",
    "parseSeconds",
    "endpointIsLocal",
    "loadConfigFile",
]

R = TelephonyReturnValue

#: Where the control API listens by default.
DEFAULT_CONTROL = "tcp:8060:interface=127.0.0.1"

#: The default NAT session time (ms): many home and carrier NATs drop an
#: idle UDP binding after 30 s, well below the 2 minutes RFC 4787 asks for.
DEFAULT_NAT_SESSION_TIME_MS = 30_000

#: The tone C{--audio tone} plays: 440 Hz at a quarter of full scale.
TONE_FREQUENCY = 440.0
TONE_AMPLITUDE = 0.25

#: The longest recording of one call with C{--record}.
MAX_RECORD_SECONDS = 3600.0

_HOST_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}\Z){_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?\Z")


class StartupError(Exception):
    """
    The service could not start: an option the engine refused, a port that
    could not be bound. C{str(error)} is the message for the operator.
    """


# -- option value parsers (each raises usage.UsageError naming the problem) ----


def parseHostPort(value: str, defaultPort: int | None = None) -> tuple[str, int]:
    """
    Parse C{HOST:PORT} (C{[v6]:PORT} for IPv6).

    @param defaultPort: The port when C{value} has none, or None to require
        one.
    @raise usage.UsageError: with a message naming what is wrong.
    """
    host, sep, port = value.rpartition(":")
    if not sep or (host.count(":") and not host.startswith("[")) or (value.startswith("[") and value.endswith("]")):
        if defaultPort is None:
            raise usage.UsageError(f"{value!r} is not HOST:PORT")
        host, port = value, str(defaultPort)
    host = host.strip("[]")
    if not host:
        raise usage.UsageError(f"{value!r} has no host")
    try:
        number = int(port)
    except ValueError:
        raise usage.UsageError(f"{value!r}: port {port!r} is not a number") from None
    if not 0 <= number <= 65535:
        raise usage.UsageError(f"{value!r}: port {number} is out of range 0-65535")
    return host, number


def _ipAddress(option: str, host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise usage.UsageError(f"{option}: {host!r} is not an IP address (the engine does no DNS)") from None


def parsePortRange(value: str) -> tuple[int, int]:
    """
    Parse C{LOW-HIGH}.

    @raise usage.UsageError: When it is not two integers with a dash.
    """
    low, sep, high = value.partition("-")
    try:
        if not sep:
            raise ValueError
        return int(low), int(high)
    except ValueError:
        raise usage.UsageError(f"--rtp-ports {value!r} is not LOW-HIGH (e.g. 16384-32767)") from None


def parseKeepAliveKinds(value: str) -> tuple[bool, bool]:
    """
    Parse C{--keepalive}: C{sip,rtp}, C{sip}, C{rtp} or C{none}.

    @return: C{(sip, rtp)}.
    @raise usage.UsageError: On anything else.
    """
    kinds = {part.strip().lower() for part in value.split(",") if part.strip()}
    if kinds == {"none"}:
        return False, False
    if not kinds or not kinds <= {"sip", "rtp"}:
        raise usage.UsageError(f"--keepalive {value!r}: expected sip,rtp, sip, rtp or none")
    return "sip" in kinds, "rtp" in kinds


def parseNullKeepAlive(value: str) -> tuple[str, int, float]:
    """
    Parse C{--null-keepalive HOST:PORT:SECONDS} (C{[v6]:PORT:SECONDS}).

    @return: C{(host, port, seconds)}.
    @raise usage.UsageError: When it is not of that form.
    """
    rest, sep, seconds = value.rpartition(":")
    if not sep:
        raise usage.UsageError(f"--null-keepalive {value!r} is not HOST:PORT:SECONDS")
    try:
        host, port = parseHostPort(rest)
    except usage.UsageError as e:
        raise usage.UsageError(f"--null-keepalive {value!r} is not HOST:PORT:SECONDS ({e})") from None
    if not 1 <= port:
        raise usage.UsageError(f"--null-keepalive {value!r}: port 0 cannot be sent to")
    return host, port, parseSeconds(f"--null-keepalive {value!r}: {seconds!r}", seconds)


def parseSeconds(what: str, value: Any) -> float:
    """
    Parse a positive, finite number of seconds.

    @param what: How the error names the value (C{"--hangup-after 'x'"}).
    @raise usage.UsageError: When it is not one.
    """
    try:
        number = float(value)
    except ValueError:
        raise usage.UsageError(f"{what} is not a number of seconds") from None
    if not math.isfinite(number) or number <= 0:
        raise usage.UsageError(f"{what} must be a positive number of seconds")
    return number


@dataclass(frozen=True)
class Registration:
    """
    One C{--register USER[:PASSWORD]@HOST[:PORT]}.

    @ivar user: The name registered (the SIP user part of the
        address-of-record, also the digest username).
    @ivar host: The registrar: an IP address (canonical form) or a host
        name (lower case; the engine resolves it).
    @ivar port: The registrar's port.
    @ivar password: The digest password, or None; never part of C{repr}
        or of L{describe}.
    """

    user: str
    host: str
    port: int
    password: str | None = field(default=None, repr=False)

    @property
    def registrar(self) -> str:
        """
        C{host:port} (C{[v6]:port}).
        """
        return _hostPort(self.host, self.port)

    def describe(self) -> str:
        """
        The registration as error and log messages show it: the password
        replaced by C{***}.
        """
        return f"{self.user}{':***' if self.password is not None else ''}@{self.registrar}"


@dataclass(frozen=True)
class RegistrationSettings:
    """
    What C{--register} and its companions ask the engine for: one
    C{enableSipRegisterServer} call with every name, at one registrar.

    @ivar registrations: The names, in command-line order (at least one;
        all with the same C{host} and C{port}).
    @ivar interval: C{--register-interval} (seconds).
    @ivar expires: C{--register-expires} (seconds; 0: interval + 5).
    @ivar timeoutMs: C{--register-timeout}.
    @ivar natDetect: Re-register with the address the registrar saw.
    """

    registrations: tuple[Registration, ...]
    interval: float = DEFAULT_REGISTER_INTERVAL
    expires: int = 0
    timeoutMs: int = DEFAULT_REGISTER_TIMEOUT_MS
    natDetect: bool = True

    @property
    def names(self) -> list[str]:
        return [registration.user for registration in self.registrations]

    @property
    def host(self) -> str:
        return self.registrations[0].host

    @property
    def port(self) -> int:
        return self.registrations[0].port

    def describe(self) -> str:
        """
        Every C{--register} as L{Registration.describe} shows it.
        """
        return ", ".join(registration.describe() for registration in self.registrations)


def _hostPort(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _maskRegistration(value: str) -> str:
    """
    A C{--register} value with whatever may be a password replaced by
    C{***}, for error messages: the part between the first C{:} and the
    last C{@} (everything after the first C{:} when there is no C{@}).
    """
    left, at, right = value.rpartition("@")
    if not at:
        left, right = value, ""
    user, colon, _ = left.partition(":")
    return f"{user}{':***' if colon else ''}{at}{right}"


def _serverHost(what: str, host: str) -> str:
    """
    A registrar or proxy host: an IP address (canonical form) or a host
    name (lower case).
    """
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOST_NAME.match(host):
        raise usage.UsageError(f"{what}: {host!r} is not an IP address or a host name")
    return host.lower().rstrip(".")


def parseRegistration(value: str) -> Registration:
    """
    Parse C{--register USER[:PASSWORD]@HOST[:PORT]} (C{[v6]} for an IPv6
    registrar; port 5060 by default). The password runs from the first
    C{:} to the last C{@}, so it may hold both; the user may hold neither.

    @raise usage.UsageError: Naming the value with its password hidden.
    """
    shown = f"--register {_maskRegistration(value)!r}"
    left, at, hostPort = value.rpartition("@")
    if not at:
        raise usage.UsageError(f"{shown} is not USER[:PASSWORD]@HOST[:PORT]")
    user, colon, password = left.partition(":")
    if not user:
        raise usage.UsageError(f"{shown} has no user")
    if colon and not password:
        raise usage.UsageError(f"{shown}: the password after ':' is empty (leave the ':' out for none)")
    try:
        RegistrationConfig(registrarHost="127.0.0.1", name=user)
    except RegistrationConfigError:
        raise usage.UsageError(f"{shown}: {user!r} is not a SIP user name") from None
    try:
        host, port = parseHostPort(hostPort, DEFAULT_SIP_PORT)
        host = _serverHost(shown, host)
    except usage.UsageError as e:
        if colon:
            # A password holding '@' without the @HOST part puts the end of
            # the password here: do not show it.
            raise usage.UsageError(f"--register '{user}:***@...': what follows the last '@' is not "
                                   "HOST[:PORT] (not shown: it may be part of the password)") from None
        raise usage.UsageError(f"{shown}: {e}") from None
    if port == 0:
        raise usage.UsageError(f"{shown}: port 0 cannot be registered with")
    return Registration(user, host, port, password if colon else None)


def parseEndpoint(description: str) -> tuple[str, list[str], dict[str, str]]:
    """
    Split a Twisted endpoint description (C{tcp:8060:interface=127.0.0.1})
    into its type, positional arguments and keyword arguments, with the
    grammar of C{twisted.internet.endpoints.serverFromString}: parts
    separated by colons, C{key=value} for keywords, a backslash escaping
    the next character.
    """
    kind, args, kwargs = "", [], {}
    for index, (value, keywordValue) in enumerate(_splitDescription(description)):
        if index == 0:
            kind = value
        elif keywordValue is not None:
            kwargs[value] = keywordValue
        else:
            args.append(value)
    return kind.lower(), args, kwargs


def _splitDescription(description: str) -> list[tuple[str, str | None]]:
    """
    The parts of an endpoint description: C{(value, None)} for a positional
    part, C{(key, value)} for a keyword part; escapes removed.
    """
    result: list[tuple[str, str | None]] = []
    current: list[str] = []
    key: str | None = None
    chars = iter(description)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == ":":
            result.append((key, "".join(current)) if key is not None else ("".join(current), None))
            current, key = [], None
        elif char == "=" and key is None:
            key, current = "".join(current), []
        else:
            current.append(char)
    result.append((key, "".join(current)) if key is not None else ("".join(current), None))
    return result


def endpointIsLocal(description: str) -> bool:
    """
    Whether a server endpoint description only accepts local connections: a
    C{tcp}, C{tcp6} or C{ssl} endpoint whose C{interface} is a loopback
    address, or a C{unix} socket (guarded by file permissions). Any other
    endpoint, and one listening on every interface (no C{interface}), is
    not.
    """
    kind, _, kwargs = parseEndpoint(description)
    if kind == "unix":
        return True
    if kind not in ("tcp", "tcp6", "ssl"):
        return False
    interface = kwargs.get("interface")
    if interface is None:
        return False
    try:
        return ipaddress.ip_address(interface.strip("[]")).is_loopback
    except ValueError:
        return interface.lower() == "localhost"


# -- the configuration file (TOML) --------------------------------------------------

#: The TOML types a configuration file key may have besides a string
#: (C{auto-answer} is a boolean, C{null-keepalive} a string or a list).
_CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "lines": (int,),
    "nat-session-time": (int,),
    "noise-gate": (int,),
    "hangup-after": (int, float),
    "register-interval": (int, float),
    "register-expires": (int,),
    "register-timeout": (int,),
}

#: Options given as a list on the command line by repeating them; in a
#: configuration file, a string or a list.
_REPEATABLE = ("null-keepalive", "register")


def loadConfigFile(path: str) -> dict[str, Any]:
    """
    Read a TOML configuration file whose keys are the long option names
    (C{listen = "127.0.0.1:5060"}, C{auto-answer = true},
    C{null-keepalive = ["192.0.2.7:5060:15"]}), optionally under an
    C{[lmevoip]} table.

    @return: The keys and values, values turned into the strings the
        command line would give (flags as bools, C{null-keepalive} as a list
        of strings).
    @raise usage.UsageError: When the file cannot be read, is not TOML, or
        holds a key that is not an option or a value of the wrong type.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise usage.UsageError(f"--config {path}: cannot read it: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise usage.UsageError(f"--config {path}: not valid TOML: {e}") from None
    if set(data) == {"lmevoip"} and isinstance(data["lmevoip"], dict):
        data = data["lmevoip"]
    known = Options.configurableOptions()
    flags = {flag[0] for flag in Options.optFlags}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise usage.UsageError(f"--config {path}: unknown option {key!r} (known: {', '.join(sorted(known))})")
        allowed = _CONFIG_TYPES.get(key, ())
        if key in flags:
            if not isinstance(value, bool):
                raise usage.UsageError(f"--config {path}: {key} must be true or false, not {value!r}")
        elif key == "register":
            value = [_configRegistration(path, item) for item in (value if isinstance(value, list) else [value])]
        elif key in _REPEATABLE:
            items = value if isinstance(value, list) else [value]
            if not all(isinstance(item, str) for item in items):
                raise usage.UsageError(f"--config {path}: {key} must be a string or a list of strings "
                                       f"HOST:PORT:SECONDS")
            value = list(items)
        elif isinstance(value, bool) or not isinstance(value, (str, *allowed)):
            kinds = " or ".join(["a string", *(t.__name__ for t in allowed)])
            raise usage.UsageError(f"--config {path}: {key} must be {kinds}, not {value!r}")
        else:
            value = str(value)
        values[key] = value
    return values


def _configRegistration(path: str, item: Any) -> str:
    """
    One C{register} entry of a configuration file as the command line
    would give it: a string C{USER[:PASSWORD]@HOST[:PORT]}, or a table
    C{{user = "...", password = "...", host = "...", port = 5060}}
    (C{password} and C{port} optional). The password is never shown.
    """
    if isinstance(item, str):
        return item
    where = f"--config {path}: register"
    if not isinstance(item, dict):
        raise usage.UsageError(f"{where} must be a string USER[:PASSWORD]@HOST[:PORT], a table with user, "
                               f"host, port and password, or a list of them")
    unknown = sorted(set(item) - {"user", "password", "host", "port"})
    if unknown:
        raise usage.UsageError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))} in a table "
                               f"(known: host, password, port, user)")
    for name, kinds in (("user", (str,)), ("host", (str,)), ("password", (str,)), ("port", (int,))):
        if name in ("user", "host") and name not in item:
            raise usage.UsageError(f"{where}: a table needs {name!r}")
        if name in item and (isinstance(item[name], bool) or not isinstance(item[name], kinds)):
            what = "a string" if kinds == (str,) else "an integer"
            raise usage.UsageError(f"{where}: {name} must be {what}")
    if "@" in item["user"] or ":" in item["user"]:
        raise usage.UsageError(f"{where}: user {item['user']!r} is not a SIP user name")
    host = item["host"]
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    password = f":{item['password']}" if "password" in item else ""
    port = f":{item['port']}" if "port" in item else ""
    return f"{item['user']}{password}@{host}{port}"


# -- options -----------------------------------------------------------------------------


class Options(usage.Options):
    """
    Options of C{twistd lmevoip}. Every value is checked in
    L{postOptions}; a bad one is a C{usage.UsageError} naming the option.

    After parsing, C{self.engineConfig} is the validated L{EngineConfig}
    and the option values are typed: C{listen} and C{public-address} are
    C{(host, port)} (the public port may be None), C{rtp-ports}
    C{(low, high)}, C{keepalive} C{(sip, rtp)}, C{null-keepalive} a list of
    C{(host, port, seconds)}, C{control} the endpoint description or None.
    """

    synopsis = "[options]"
    longdesc = (
        "Run the lmevoip SIP/RTP media engine, with its JSON control API and live status page. "
        "Options may also come from a TOML file (--config); the command line wins. "
        "See docs/operator.rst."
    )

    optFlags = [
        ["auto-answer", None, "Answer every incoming call."],
        ["no-register-nat-detect", None,
         "Do not re-register with the address a registrar saw (RFC 3581 received/rport)."],
    ]

    optParameters = [
        ["config", None, None, "Read options from this TOML file (keys are the long option names)."],
        ["listen", None, "127.0.0.1:5060", "SIP UDP address to listen on, HOST:PORT (an IP address; port 0: any)."],
        ["public-address", None, None, "Address to advertise in Contact and SDP, HOST[:PORT] (behind a NAT)."],
        ["rtp-ports", None, "16384-32767", "RTP port range, LOW-HIGH."],
        ["lines", None, "4", "Number of phone lines."],
        ["user", None, "lmevoip", "User part of our SIP URI."],
        ["call", None, None, "Place one call to this SIP URI on line 0 at start."],
        ["hangup-after", None, None, "End every call this many SECONDS after it connects."],
        ["audio", None, "silence", "What calls play: tone, silence or FILE.wav (looped)."],
        ["record", None, None, "Record what every call receives into WAV files in DIR."],
        ["noise-gate", None, None, "Turn the noise gate on at this THRESHOLD (0-32767)."],
        ["keepalive", None, "sip,rtp", "Keep-alive kinds: sip,rtp | sip | rtp | none."],
        ["nat-session-time", None, str(DEFAULT_NAT_SESSION_TIME_MS),
         "NAT session time in MS that keep-alive must beat (1000-3600000)."],
        ["control", None, DEFAULT_CONTROL,
         "Control API and status page: a Twisted server endpoint, or none."],
        ["control-token", None, None,
         "Require 'Authorization: Bearer TOKEN' on the control API (needed off loopback)."],
        ["log-format", None, "text", "Log format: text or json."],
        ["log-level", None, "info", "Least important log events written: debug, info, warn, error, critical."],
        ["register-interval", None, str(DEFAULT_REGISTER_INTERVAL),
         "SECONDS between REGISTERs of every --register name (at least 1)."],
        ["register-expires", None, "0", "Expiry in SECONDS to ask the registrar for (0: the interval + 5)."],
        ["register-timeout", None, str(DEFAULT_REGISTER_TIMEOUT_MS),
         "Longest wait in MS for the answer to one REGISTER (also bounds un-registering at stop)."],
        ["outbound-proxy", None, None, "Send the REGISTERs through this proxy, HOST[:PORT] (port 5060 by default)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["null-keepalive"] = []
        self["register"] = []
        self._given: set[str] = set()
        self._recording = False
        self.engineConfig: EngineConfig | None = None
        self.registration: RegistrationSettings | None = None

    @classmethod
    def configurableOptions(cls) -> set[str]:
        """
        The option names a configuration file may set (every option but
        C{config}).
        """
        names = {flag[0] for flag in cls.optFlags} | {param[0] for param in cls.optParameters}
        return (names | set(_REPEATABLE)) - {"config"}

    def opt_null_keepalive(self, value: str) -> None:
        """
        Send a CRLF keep-alive from the SIP socket to HOST:PORT every SECONDS
        (HOST:PORT:SECONDS; repeatable).
        """
        self["null-keepalive"].append(value)
        self._given.add("null-keepalive")

    def opt_register(self, value: str) -> None:
        """
        Register USER[:PASSWORD]@HOST[:PORT] with that registrar (port 5060 by
        default; repeatable, one registrar for all). A password on the command
        line is visible to every local user (ps): prefer the --config file.
        """
        self["register"].append(value)
        self._given.add("register")

    def __setitem__(self, key: str, value: Any) -> None:
        if self._recordingNow():
            self._given.add(key)
        super().__setitem__(key, value)

    def _recordingNow(self) -> bool:
        return self.__dict__.get("_recording", False)

    def parseOptions(self, options: list[str] | None = None) -> None:
        """
        Parse the command line (remembering which options it gave, so that
        they win over the configuration file), then L{postOptions}.
        """
        self._given = set()
        self._recording = True
        try:
            super().parseOptions(options)
        finally:
            self._recording = False

    def givenOnCommandLine(self, name: str) -> bool:
        """
        Whether option C{name} was given on the command line.
        """
        return name in self._given

    def postOptions(self) -> None:
        """
        Merge the configuration file under the command line and check and
        convert every value.
        """
        self._recording = False
        if self["config"]:
            for key, value in loadConfigFile(self["config"]).items():
                if key not in self._given:
                    self[key] = value
        self._check()

    def _check(self) -> None:
        listenHost, listenPort = parseHostPort(self["listen"], 5060)
        self["listen"] = (_ipAddress("--listen", listenHost), listenPort)

        public = self["public-address"]
        if public:
            publicHost, publicPort = parseHostPort(public, defaultPort=0)
            if publicPort == 0:
                if public.endswith(":0"):
                    raise usage.UsageError(f"--public-address {public!r}: port 0 cannot be advertised")
                publicPort = None
            self["public-address"] = (_ipAddress("--public-address", publicHost), publicPort)
        else:
            self["public-address"] = None

        self["rtp-ports"] = parsePortRange(self["rtp-ports"])
        self["lines"] = self._integer("lines", self["lines"])
        user = self["user"]
        if not user or any(ord(ch) <= 32 or ord(ch) == 127 for ch in user):
            raise usage.UsageError(f"--user {user!r}: must be a non-empty name without spaces or control characters")

        if self["call"] is not None:
            try:
                uri = parseUri(self["call"])
            except ValueError as e:
                raise usage.UsageError(f"--call {self['call']!r} is not a SIP URI: {e}") from None
            if not isinstance(uri, SipUri) or uri.scheme != "sip":
                raise usage.UsageError(f"--call {self['call']!r}: only sip: URIs can be called")

        if self["hangup-after"] is not None:
            self["hangup-after"] = parseSeconds(f"--hangup-after {self['hangup-after']!r}", self["hangup-after"])

        self["audio"] = self._audio(self["audio"])
        if self["record"] is not None:
            record = Path(self["record"])
            if not record.is_dir():
                raise usage.UsageError(f"--record {self['record']}: not a directory")
            if not os.access(record, os.W_OK | os.X_OK):
                raise usage.UsageError(f"--record {self['record']}: the directory is not writable")
            self["record"] = record

        if self["noise-gate"] is not None:
            self["noise-gate"] = self._integer("noise-gate", self["noise-gate"], minimum=0)
        self["keepalive"] = parseKeepAliveKinds(self["keepalive"])
        self["nat-session-time"] = self._integer("nat-session-time", self["nat-session-time"], minimum=1)
        self["null-keepalive"] = [parseNullKeepAlive(value) for value in self["null-keepalive"]]
        self._checkRegistration()

        self._checkControl()
        if self["log-format"] not in ("text", "json"):
            raise usage.UsageError(f"--log-format {self['log-format']!r}: expected text or json")
        try:
            self["log-level"] = LogLevel.levelWithName(self["log-level"])
        except InvalidLogLevelError:
            raise usage.UsageError(f"--log-level {self['log-level']!r}: expected debug, info, warn, error "
                                   "or critical") from None
        self._applyLogFormat()
        self.engineConfig = self._engineConfig()

    def _checkRegistration(self) -> None:
        """
        Check C{--register}, C{--register-*} and C{--outbound-proxy}; set
        L{registration}.
        """
        interval = parseSeconds(f"--register-interval {self['register-interval']!r}", self["register-interval"])
        if interval < 1:
            raise usage.UsageError(f"--register-interval {interval:g} must be at least 1 second")
        self["register-interval"] = interval
        self["register-expires"] = self._integer("register-expires", self["register-expires"], minimum=0)
        self["register-timeout"] = self._integer("register-timeout", self["register-timeout"], minimum=1)
        listenFamily = ipaddress.ip_address(self["listen"][0]).version
        proxy = self["outbound-proxy"]
        if proxy is not None:
            host, port = parseHostPort(proxy, DEFAULT_SIP_PORT)
            if port == 0:
                raise usage.UsageError(f"--outbound-proxy {proxy!r}: port 0 cannot be sent to")
            host = _serverHost(f"--outbound-proxy {proxy!r}", host)
            self._checkFamily(f"--outbound-proxy {proxy!r}", host, listenFamily)
            self["outbound-proxy"] = (host, port)
        registrations = [parseRegistration(value) for value in self["register"]]
        self["register"] = registrations
        if not registrations:
            self.registration = None
            return
        seen: set[str] = set()
        for registration in registrations:
            if registration.user in seen:
                raise usage.UsageError(f"--register: {registration.user!r} is given twice")
            seen.add(registration.user)
            self._checkFamily(f"--register {registration.describe()!r}", registration.host, listenFamily)
        registrars = sorted({registration.registrar for registration in registrations})
        if len(registrars) > 1:
            raise usage.UsageError(
                f"--register: every name must use the same registrar, not {' and '.join(registrars)} "
                "(the engine registers with one registrar at a time: enableSipRegisterServer replaces "
                "the whole set of registrations)")
        self.registration = RegistrationSettings(
            registrations=tuple(registrations), interval=interval, expires=self["register-expires"],
            timeoutMs=self["register-timeout"], natDetect=not self["no-register-nat-detect"])

    @staticmethod
    def _checkFamily(what: str, host: str, family: int) -> None:
        try:
            version = ipaddress.ip_address(host).version
        except ValueError:
            return  # a host name: resolved to an address of the SIP socket's family
        if version != family:
            raise usage.UsageError(f"{what}: {host} is not of the address family of --listen")

    def _integer(self, name: str, value: Any, minimum: int | None = None) -> int:
        try:
            number = int(str(value), 10)
        except ValueError:
            raise usage.UsageError(f"--{name} {value!r} is not an integer") from None
        if minimum is not None and number < minimum:
            raise usage.UsageError(f"--{name} {number} must be at least {minimum}")
        return number

    def _audio(self, value: str) -> str | Path:
        if value in ("tone", "silence"):
            return value
        path = Path(value)
        if path.suffix.lower() != ".wav":
            raise usage.UsageError(f"--audio {value!r}: expected tone, silence or a .wav file")
        try:
            WavFileSource(path).close()
        except (OSError, AudioFormatError) as e:
            raise usage.UsageError(f"--audio {value}: cannot be played: {e}") from None
        return path

    def _checkControl(self) -> None:
        control = self["control"]
        if control is None or control.strip().lower() == "none":
            self["control"] = None
            return
        from twisted.internet import reactor
        from twisted.internet.endpoints import serverFromString
        try:
            serverFromString(reactor, control)
        except (ValueError, TypeError, KeyError) as e:
            raise usage.UsageError(f"--control {control!r} is not a server endpoint description: {e}") from None
        token = self["control-token"]
        if token is not None and (len(token) < 16 or any(ord(ch) <= 32 or ord(ch) >= 127 for ch in token)):
            raise usage.UsageError("--control-token must be at least 16 printable ASCII characters without spaces")
        if not endpointIsLocal(control) and token is None:
            raise usage.UsageError(
                f"--control {control!r} accepts connections from other hosts: "
                "give --control-token TOKEN (or bind it to 127.0.0.1, e.g. tcp:8060:interface=127.0.0.1)")

    def _applyLogFormat(self) -> None:
        """
        Under C{twist}, whose own options choose the log observer and level,
        set them when C{--log-format} or C{--log-level} was given; under
        C{twistd} the service gives the application its observer
        (L{LmevoipService.setServiceParent}).
        """
        parent = getattr(self, "parent", None)
        if parent is None or "fileLogObserverFactory" not in parent:
            return
        if self.givenOnCommandLine("log-format"):
            parent["fileLogObserverFactory"] = jsonFileLogObserver if self["log-format"] == "json" else \
                textFileLogObserver
        if self.givenOnCommandLine("log-level"):
            parent["logLevel"] = self["log-level"]

    def _engineConfig(self) -> EngineConfig:
        sipHost, sipPort = self["listen"]
        publicHost, publicPort = self["public-address"] or (None, None)
        low, high = self["rtp-ports"]
        gate = self["noise-gate"]
        config = EngineConfig(
            sipHost=sipHost, sipPort=sipPort, publicHost=publicHost, publicPort=publicPort,
            rtpPortLow=low, rtpPortHigh=high, lines=self["lines"], user=self["user"],
            sourceFactory=sourceFactory(self["audio"]),
            sinkFactory=sinkFactory(self["record"]),
            noiseGateEnabled=gate is not None,
        )
        if gate is not None:
            config.noiseThreshold = gate
        if publicHost is not None and ipaddress.ip_address(publicHost).version != \
                ipaddress.ip_address(sipHost).version:
            raise usage.UsageError("--public-address and --listen must be of the same address family")
        try:
            config.validate()
        except ValueError as e:
            raise usage.UsageError(_optionForConfigError(str(e))) from None
        return config


_CONFIG_OPTION = {
    "sipHost": "--listen", "sipPort": "--listen", "publicPort": "--public-address",
    "RTP port range": "--rtp-ports", "lines": "--lines", "user": "--user", "threshold": "--noise-gate",
}


def _optionForConfigError(message: str) -> str:
    """
    Prefix an L{EngineConfig.validate} message with the option it is about.
    """
    for needle, option in _CONFIG_OPTION.items():
        if needle in message:
            return f"{option}: {message}"
    return message


def sourceFactory(audio: str | Path) -> Callable[[int], IAudioSource]:
    """
    The engine's C{sourceFactory} for C{--audio}: C{"tone"}, C{"silence"} or
    the path of a WAV file (looped).
    """
    if audio == "tone":
        return lambda line: ToneSource(TONE_FREQUENCY, TONE_AMPLITUDE)
    if audio == "silence":
        return lambda line: SilenceSource()
    return lambda line: WavFileSource(audio, loop=True)


def sinkFactory(record: Path | None) -> Callable[[int], IAudioSink]:
    """
    The engine's C{sinkFactory} for C{--record DIR}: a L{WavRecorder} per
    call, named C{line<N>-<YYYYmmdd-HHMMSS>-<K>.wav}, or a discarding sink.
    """
    if record is None:
        return lambda line: DiscardSink()
    counter = itertools.count(1)

    def recorder(line: int) -> IAudioSink:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return WavRecorder(record / f"line{line}-{stamp}-{next(counter)}.wav", maxSeconds=MAX_RECORD_SECONDS)

    return recorder


# -- the service -----------------------------------------------------------------------------


class _CallAutomation:
    """
    The engine observer of the daemon: logs every event, answers incoming
    calls (C{--auto-answer}) and ends calls C{hangupAfter} seconds after
    they connect (C{--hangup-after}).
    """

    log = Logger(namespace="lmevoip.tap")

    def __init__(self, engine: VoipMediaEngine, autoAnswer: bool, hangupAfter: float | None) -> None:
        self.engine = engine
        self.autoAnswer = autoAnswer
        self.hangupAfter = hangupAfter
        self._timers: dict[int, Any] = {}

    def __call__(self, event: EngineEvent) -> None:
        self._logEvent(event)
        name = event.name
        if name is EventName.SipOkToAnswerCall and self.autoAnswer and event.line is not None:
            result = self.engine.goOffHook(event.line)
            self.log.info("line {line}: auto-answer: goOffHook returned {result}", line=event.line,
                          result=result.name)
        elif name in (EventName.SipOutgoingCallConnected, EventName.SipIncomingCallConnected):
            if self.hangupAfter is not None and event.line is not None:
                self._cancel(event.line)
                self._timers[event.line] = self.engine.clock.callLater(
                    self.hangupAfter, self._hangup, event.line, event.callId)
        elif name in (EventName.SipCallComplete, EventName.SipCallFailed) and event.line is not None:
            self._cancel(event.line)

    def _logEvent(self, event: EngineEvent) -> None:
        fields = event.asDict()
        parts = [f"{key}={fields[key]}" for key in ("remoteParty", "status", "reason", "result")
                 if fields[key] is not None]
        parts += [f"{key}={value}" for key, value in fields["details"].items()]
        self.log.info("line {line}: {eventName} {summary}", line=event.line, eventName=str(event.name),
                      summary=" ".join(parts), event=fields)

    def _hangup(self, line: int, callId: str | None) -> None:
        self._timers.pop(line, None)
        try:
            status = self.engine.getLineStatus(line)
        except Exception:
            self.log.failure("--hangup-after: line {line} status", line=line)
            return
        if status.callId != callId:
            return
        result = self.engine.terminateCall(line)
        self.log.info("line {line}: --hangup-after {seconds}s: terminateCall returned {result}", line=line,
                      seconds=self.hangupAfter, result=result.name)

    def _cancel(self, line: int) -> None:
        timer = self._timers.pop(line, None)
        if timer is not None and timer.active():
            timer.cancel()

    def stop(self) -> None:
        """
        Cancel every pending hang-up.
        """
        for line in list(self._timers):
            self._cancel(line)


class LmevoipService(MultiService):
    """
    The root of C{twistd lmevoip}'s service tree (see the module
    docstring).

    @ivar engine: The L{VoipMediaEngine} child C{"engine"}.
    @ivar control: The control service child C{"control"}, or None.
    @ivar keepAlive: C{(sip, rtp, natSessionTimeMs)} applied at start.
    @ivar nullKeepAlives: C{(host, port, seconds)} destinations enabled at
        start.
    @ivar call: The SIP URI called on line 0 at start, or None.
    @ivar registration: The L{RegistrationSettings} applied at start, or
        None.
    @ivar outboundProxy: C{(host, port)} of the outbound proxy set at start
        (the REGISTERs go through it), or None.
    @ivar logObserver: The log observer to give the twistd application
        (L{twistdLogObserver}), or None for twistd's own.
    @ivar aborted: After a failed start, a Deferred firing once whatever
        had started has stopped again; else None.
    """

    log = Logger(namespace="lmevoip.tap")

    def __init__(self, engine: VoipMediaEngine, keepAlive: tuple[bool, bool, int],
                 nullKeepAlives: list[tuple[str, int, float]] = (), call: str | None = None,
                 autoAnswer: bool = False, hangupAfter: float | None = None,
                 logObserver: Any = None, registration: RegistrationSettings | None = None,
                 outboundProxy: tuple[str, int] | None = None) -> None:
        super().__init__()
        self.setName("lmevoip")
        self.engine = engine
        engine.setName("engine")
        engine.setServiceParent(self)
        self.control: Any = None
        self.keepAlive = keepAlive
        self.nullKeepAlives = list(nullKeepAlives)
        self.call = call
        self.registration = registration
        self.outboundProxy = outboundProxy
        self.logObserver = logObserver
        self.aborted: Deferred[None] | None = None
        self.automation = _CallAutomation(engine, autoAnswer, hangupAfter)
        engine.addObserver(self.automation)

    def setControl(self, control: Any) -> None:
        """
        Add the control service as child C{"control"} (started after the
        engine).
        """
        control.setName("control")
        control.setServiceParent(self)
        self.control = control

    def setServiceParent(self, parent: Any) -> None:
        """
        Attach to C{parent}; when it is the C{twistd} application and a
        log observer was chosen (L{twistdLogObserver}), give it to the
        application: C{twistd} uses an application's C{ILogObserver}
        component as its log observer.
        """
        if self.logObserver is not None and isinstance(parent, Componentized) and \
                parent.getComponent(ILogObserver, None) is None:
            parent.setComponent(ILogObserver, self.logObserver)
        super().setServiceParent(parent)

    def startService(self) -> None:
        """
        Apply the keep-alive settings, the outbound proxy and the
        registration passwords, start the engine and the control service,
        then enable the NULL keep-alives, register and place the first
        call.

        @raise StartupError: When any of it fails; what had started is
            stopped again (see L{aborted}).
        """
        sip, rtp, natSessionTimeMs = self.keepAlive
        result = self.engine.enableKeepAliveTransmissions(sip, rtp, natSessionTimeMs)
        if not result.succeeded:
            raise self._failed(self._keepAliveError(result))
        self._applyRegistrationSettings()
        try:
            MultiService.startService(self)
        except Exception as e:
            raise self._failed(self._listenError(e)) from None
        self.log.info("lmevoip running: SIP on {host}:{port}; keep-alive sip={sip} rtp={rtp} "
                      "natSessionTimeMs={nat}", host=self.engine.sipAddress[0], port=self.engine.sipAddress[1],
                      sip=sip, rtp=rtp, nat=natSessionTimeMs)
        for host, port, seconds in self.nullKeepAlives:
            result = self.engine.sendSipKeepAlive(host, port, True, seconds)
            if not result.succeeded:
                raise self._failed(f"--null-keepalive {host}:{port}:{seconds:g}: sendSipKeepAlive returned "
                                   f"{result.name} ({describeResult(result)})")
        self._register()
        if self.call is not None:
            result = self.engine.makeCallUri(0, self.call)
            if not result.succeeded:
                raise self._failed(f"--call {self.call}: makeCallUri returned {result.name} "
                                   f"({describeResult(result)})")

    def _applyRegistrationSettings(self) -> None:
        """
        Before the engine starts: set the outbound proxy and each
        registered name's digest credentials (C{setSipAuthentication(user,
        password, name=user)}: the engine reads them when registering).
        """
        if self.outboundProxy is not None:
            host, port = self.outboundProxy
            result = self.engine.enableOutboundSipProxyServer(host, port)
            if not result.succeeded:
                raise self._failed(f"--outbound-proxy {_hostPort(host, port)}: enableOutboundSipProxyServer "
                                   f"returned {result.name} ({describeResult(result)})")
        if self.registration is None:
            return
        for registration in self.registration.registrations:
            if registration.password is None:
                continue
            result = self.engine.setSipAuthentication(registration.user, registration.password,
                                                      name=registration.user)
            if not result.succeeded:
                raise self._failed(f"--register {registration.describe()}: setSipAuthentication returned "
                                   f"{result.name} ({describeResult(result)})")

    def _register(self) -> None:
        """
        Once the engine runs: one C{enableSipRegisterServer} for every
        C{--register} name.
        """
        settings = self.registration
        if settings is None:
            return
        result = self.engine.enableSipRegisterServer(
            settings.names, False, self.outboundProxy is not None, settings.host, settings.port,
            settings.interval, settings.expires, settings.timeoutMs, settings.natDetect)
        if not result.succeeded:
            raise self._failed(f"--register {settings.describe()}: enableSipRegisterServer returned "
                               f"{result.name} ({describeResult(result)})")
        self.log.info("registering {names} with {registrar} every {interval:g} s{via}", names=settings.names,
                      registrar=settings.registrations[0].registrar, interval=settings.interval,
                      via="" if self.outboundProxy is None else f" through {_hostPort(*self.outboundProxy)}")

    def stopService(self) -> Deferred[None]:
        """
        Cancel pending hang-ups and stop the children (the engine
        un-registers every name and ends every call first).
        """
        self.automation.stop()
        if not self.running:
            return succeed(None)
        return MultiService.stopService(self)

    def _keepAliveError(self, result: TelephonyReturnValue) -> str:
        sip, rtp, natSessionTimeMs = self.keepAlive
        kinds = ",".join(kind for kind, on in (("sip", sip), ("rtp", rtp)) if on) or "none"
        message = (f"--nat-session-time {natSessionTimeMs} (with --keepalive {kinds}): "
                   f"enableKeepAliveTransmissions({sip}, {rtp}, {natSessionTimeMs}) returned {result.name}")
        try:
            maximumInterval(natSessionTimeMs, self.engine.config.keepAliveLosses)
        except KeepAliveParameterError as e:
            return f"{message}: {e}"
        return f"{message} ({describeResult(result)})"

    def _listenError(self, error: Exception) -> str:
        if self.engine.running:
            return f"--control: cannot listen: {error}"
        host, port = self.engine.config.sipHost, self.engine.config.sipPort
        return f"--listen {host}:{port}: cannot start the SIP socket: {error}"

    def _failed(self, message: str) -> StartupError:
        """
        Log the failure, stop what had started, and return the error to
        raise.
        """
        self.log.critical("lmevoip cannot start: {message}", message=message)
        self.automation.stop()
        stops = [child.stopService() for child in reversed(list(self)) if child.running]
        self.running = 0
        self.aborted = DeferredList([d for d in stops if isinstance(d, Deferred)],
                                    consumeErrors=True).addCallback(lambda _: None)
        return StartupError(message)


def twistdLogObserver(parentOptions: Any, logFormat: str, level: LogLevel) -> Any:
    """
    The log observer C{twistd lmevoip} gives the application: text or JSON,
    written where C{twistd} would write its own log (C{--logfile}; standard
    output with C{-n} and no log file), keeping events of C{level} and
    above. None (twistd's own) under C{--syslog}.
    """
    if parentOptions.get("syslog"):
        return None
    logfile = parentOptions.get("logfile")
    if logfile == "-" or (not logfile and parentOptions.get("nodaemon")):
        output: Any = sys.stdout
    else:
        from twisted.python.logfile import LogFile
        output = LogFile.fromFullPath(logfile or "twistd.log")
    observer = jsonFileLogObserver(output) if logFormat == "json" else textFileLogObserver(output)
    return FilteringLogObserver(observer, [LogLevelFilterPredicate(defaultLogLevel=level)])


def _printStartupErrors() -> None:
    """
    Make an uncaught L{StartupError} (raised out of C{twistd}) print as one
    line on standard error instead of a traceback; other exceptions keep
    the hook they had.
    """
    previous = sys.excepthook
    if getattr(previous, "_lmevoipStartup", False):
        return

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if isinstance(value, StartupError):
            sys.__stderr__.write(f"lmevoip: cannot start: {value}\n")
            sys.__stderr__.flush()
        else:
            previous(kind, value, tb)

    hook._lmevoipStartup = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def makeService(config: Options, reactor: Any = None) -> LmevoipService:
    """
    Build the service tree from parsed options (see the module docstring).

    @param reactor: The reactor (the global one by default; a
        L{FakeUdpReactor <lmevoip.testing.FakeUdpReactor>} in tests, with
        C{--control none}).
    """
    if reactor is None:
        from twisted.internet import reactor

    engine = VoipMediaEngine(config.engineConfig, reactor)
    parent = getattr(config, "parent", None)
    underTwistd = parent is not None and "fileLogObserverFactory" not in parent
    sip, rtp = config["keepalive"]
    service = LmevoipService(
        engine,
        keepAlive=(sip, rtp, config["nat-session-time"]),
        nullKeepAlives=config["null-keepalive"],
        call=config["call"],
        autoAnswer=bool(config["auto-answer"]),
        hangupAfter=config["hangup-after"],
        registration=config.registration,
        outboundProxy=config["outbound-proxy"],
        logObserver=twistdLogObserver(parent, config["log-format"], config["log-level"]) if underTwistd else None,
    )
    if config["control"] is not None:
        from lmevoip.web import ControlService
        service.setControl(ControlService(engine, config["control"], token=config["control-token"],
                                          reactor=reactor))
    _printStartupErrors()
    return service
