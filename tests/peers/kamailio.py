"""
Kamailio as a real peer: a registrar and proxy running
C{tests/kamailio/kamailio.cfg}, spawned through the reactor, queried with
C{kamcmd} over its binrpc control socket.

Example (in a C{twisted.trial.unittest.TestCase})::

    @inlineCallbacks
    def test_registers(self):
        kamailio = Kamailio(self)
        yield kamailio.start()                  # listening on kamailio.port
        ...                                     # register at kamailio.address
        contacts = yield kamailio.contacts("alice")
        self.assertEqual(contacts[0].address, "sip:alice@127.0.0.1:40000")
        self.assertEqual(len(kamailio.registers()), 2)   # 401, then 200

The instance is registered with C{testCase.addCleanup}: Kamailio is
stopped (SIGTERM to its main process, then SIGKILL to it and its worker
processes by PID) even when the test fails. It runs in the foreground
(C{-DD -E}: no daemon, log on standard error) with two workers, its PID
file, runtime directory and configuration copy in a per-test directory,
and its control socket in a short temporary directory (a Unix socket path
is limited to 107 characters).

The configuration logs every REGISTER and every routed request at NOTICE
with a C{LMEVOIP-} tag; L{Kamailio.registers} parses those lines.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import task, utils
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.logger import Logger

from tests.peers import PeerError, PeerProcess, PeerTimeout, traceDirectory
from tests.peers.ports import LOOPBACK, freeUdpPort, waitForUdpPort
from tests.support import requireTool

__all__ = [
    "CONFIG",
    "Kamailio",
    "KamailioError",
    "RegisterLogLine",
    "TEST_USERS",
    "UsrlocContact",
    "parseKamcmd",
    "parseRegisterLog",
    "usrlocContacts",
]

#: The test configuration.
CONFIG = Path(__file__).resolve().parent.parent / "kamailio" / "kamailio.cfg"

#: The fixed users of the configuration and their passwords.
TEST_USERS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}

#: The digest realm of the configuration (unless KAM_REALM is defined).
REALM = "lmevoip.test"

_REGISTER_LINE = re.compile(
    r"LMEVOIP-REGISTER src=(?P<host>[^:\s]+):(?P<port>\d+) user=(?P<user>\S*) "
    r"cseq=(?P<cseq>\d+) callid=(?P<callId>\S*) expires=(?P<expires>.*?) "
    r"contact=(?P<contact>.*?) auth=(?P<auth>\S*) alg=(?P<algorithm>\S*)$", re.M)
#: How much of Kamailio's log is kept (debug=3 is verbose).
OUTPUT_LIMIT = 16 * 1024 * 1024

_PROBE_LINE = re.compile(r"probing packet received from (?P<host>\S+) (?P<port>\d+)")


class KamailioError(PeerError):
    """
    Kamailio would not start, or C{kamcmd} failed.
    """


@dataclass(frozen=True)
class RegisterLogLine:
    """
    One REGISTER as Kamailio logged it on arrival (before authentication).

    @ivar source: C{(host, port)} it came from.
    @ivar user: the To user.
    @ivar cseq: its CSeq number.
    @ivar callId: its Call-ID.
    @ivar expires: its Expires header (text; C{<null>} when absent).
    @ivar contact: its Contact header(s), as Kamailio printed them.
    @ivar auth: the username of its credentials (C{<null>} when none).
    @ivar algorithm: the digest algorithm of its credentials (C{MD5},
        C{SHA-256}), or C{none}.
    """

    source: tuple[str, int]
    user: str
    cseq: int
    callId: str
    expires: str
    contact: str
    auth: str
    algorithm: str

    @property
    def authenticated(self) -> bool:
        """Whether it carried credentials."""
        return self.auth not in ("", "<null>")


def parseRegisterLog(text: str) -> list[RegisterLogLine]:
    """
    The C{LMEVOIP-REGISTER} lines of a Kamailio log, in order.
    """
    lines = []
    for match in _REGISTER_LINE.finditer(text):
        lines.append(RegisterLogLine(
            (match["host"], int(match["port"])), match["user"], int(match["cseq"]),
            match["callId"], match["expires"].strip(), match["contact"].strip(),
            match["auth"], match["algorithm"]))
    return lines


def parseKamcmd(text: str) -> list[tuple[str, Any]]:
    """
    Parse C{kamcmd}'s text output: C{Name: value} lines and C{Name: {}
    blocks, nested by braces (indentation is ignored), into a list of
    C{(name, value)} pairs whose values are text or, for blocks, such
    lists. The outer braces of a struct reply are dropped.

    @raise KamailioError: on unbalanced braces.
    """
    root: list[tuple[str, Any]] = []
    stack = [root]
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line == "{":
            if len(stack) == 1 and not root:
                stack.append(root)  # the outer brace of a struct reply
                continue
            block: list[tuple[str, Any]] = []
            stack[-1].append(("", block))
            stack.append(block)
        elif line == "}":
            if len(stack) == 1:
                raise KamailioError(f"unbalanced '}}' in kamcmd output:\n{text[:2000]}")
            stack.pop()
        elif line.endswith("{") and ":" in line:
            name = line[:line.index(":")].strip()
            block = []
            stack[-1].append((name, block))
            stack.append(block)
        elif ":" in line:
            name, value = line.split(":", 1)
            stack[-1].append((name.strip(), value.strip()))
        else:
            stack[-1].append(("", line))
    if len(stack) != 1:
        raise KamailioError(f"unbalanced '{{' in kamcmd output:\n{text[:2000]}")
    return root


def _children(block: list[tuple[str, Any]], name: str) -> list[Any]:
    return [value for key, value in block if key == name]


def _walk(block: list[tuple[str, Any]], *path: str) -> list[Any]:
    """Every value reached by following C{path} names from C{block}."""
    found: list[Any] = [block]
    for name in path:
        found = [child for parent in found if isinstance(parent, list)
                 for child in _children(parent, name)]
    return found


@dataclass(frozen=True)
class UsrlocContact:
    """
    One contact of an AOR in Kamailio's location table (C{ul.dump}).

    @ivar aor: the address-of-record (the user, with use_domain off).
    @ivar address: the contact URI.
    @ivar expires: seconds left (an int; negative once expired).
    @ivar callId: the Call-ID of the REGISTER that made it.
    @ivar cseq: the CSeq of the last REGISTER that refreshed it.
    @ivar received: the source address stored by fix_nated_register
        (C{sip:host:port}), or L{None}.
    @ivar userAgent: the User-Agent of the REGISTER.
    @ivar fields: every field of the dump, as text.
    """

    aor: str
    address: str
    expires: int
    callId: str
    cseq: int
    received: str | None
    userAgent: str
    fields: Mapping[str, str]


def _int(text: str, default: int = -1) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return default


def usrlocContacts(tree: list[tuple[str, Any]]) -> list[UsrlocContact]:
    """
    The contacts of a parsed C{ul.dump} reply (L{parseKamcmd}).
    """
    contacts = []
    for info in _walk(tree, "Domains", "Domain", "AoRs", "Info"):
        if not isinstance(info, list):
            continue
        aor = next((value for key, value in info if key == "AoR"), "")
        for contact in _walk(info, "Contacts", "Contact"):
            if not isinstance(contact, list):
                continue
            fields = {key: value for key, value in contact if isinstance(value, str)}
            received = fields.get("Received")
            contacts.append(UsrlocContact(
                aor=aor,
                address=fields.get("Address", ""),
                expires=_int(fields.get("Expires", "")),
                callId=fields.get("Call-ID", ""),
                cseq=_int(fields.get("CSeq", "")),
                received=None if received in (None, "", "[not set]") else received,
                userAgent=fields.get("User-Agent", ""),
                fields=fields,
            ))
    return contacts


class Kamailio:
    """
    One Kamailio instance running L{CONFIG}, as a subprocess of the reactor.

    @ivar host: the loopback address it listens on.
    @ivar port: its SIP UDP port.
    @ivar directory: the per-test directory (configuration copy, PID file,
        runtime files).
    @ivar controlSocket: the path of its binrpc Unix socket.
    @ivar process: the L{PeerProcess} once started.
    """

    log = Logger()

    def __init__(
        self,
        testCase: Any,
        *,
        port: int | None = None,
        host: str = LOOPBACK,
        defines: Mapping[str, str | int | None] | None = None,
        debug: int | None = None,
        reactor: Any = None,
        stopGrace: float = 3.0,
    ) -> None:
        """
        @param testCase: the running C{TestCase}: the directory comes from
            it and its cleanup stops Kamailio.
        @param port: the SIP port; a free one by default.
        @param host: the loopback address to listen on.
        @param defines: more C{-A} defines: C{None} values define a bare
            name (C{KAM_SHA256}), others C{NAME=value} (quote strings
            yourself, e.g. C{'"realm"'}).
        @param debug: the log level (C{KAM_DEBUG}); 3 logs, among much
            else, every keep-alive it receives ("probing packet").
        @param reactor: the reactor (the global one by default).
        @param stopGrace: seconds between SIGTERM and SIGKILL.
        """
        if reactor is None:
            from twisted.internet import reactor as globalReactor
            reactor = globalReactor
        self.executable = requireTool("kamailio")
        self.kamcmd = requireTool("kamcmd")
        self.reactor = reactor
        self.host = host
        self.port = port if port is not None else freeUdpPort(host)
        self.stopGrace = stopGrace
        self.directory = traceDirectory(testCase, "kamailio")
        self._socketDirectory = tempfile.mkdtemp(prefix="lmekam-")
        self.controlSocket = os.path.join(self._socketDirectory, "ctl.sock")
        self.config = self.directory / "kamailio.cfg"
        shutil.copyfile(CONFIG, self.config)
        self.pidFile = self.directory / "kamailio.pid"
        allDefines: dict[str, str | int | None] = {"KAM_CTL_SOCKET": f'"unix:{self.controlSocket}"'}
        if debug is not None:
            allDefines["KAM_DEBUG"] = debug
        allDefines.update(defines or {})
        argv = [
            self.executable, "-f", str(self.config),
            "-DD", "-E",
            "-l", f"udp:{host}:{self.port}",
            "-Y", str(self.directory),
            "-P", str(self.pidFile),
            "-w", str(self.directory),
            "-m", "32", "-M", "4",
        ]
        for name, value in allDefines.items():
            argv += ["-A", name if value is None else f"{name}={value}"]
        self.argv = argv
        self.process: PeerProcess | None = None
        testCase.addCleanup(self.stop)

    @property
    def address(self) -> tuple[str, int]:
        """C{(host, port)}: where to send SIP to this Kamailio."""
        return (self.host, self.port)

    @inlineCallbacks
    def start(self, timeout: float = 15.0) -> Any:
        """
        Spawn Kamailio and wait until it listens on its SIP port and its
        control socket answers.

        @return: a Deferred firing with this L{Kamailio}; it fails with
            L{KamailioError} (carrying Kamailio's output) when Kamailio
            ends or does not come up in time.
        """
        process = PeerProcess(self.argv, self.reactor, cwd=self.directory, name="kamailio",
                              outputLimit=OUTPUT_LIMIT)
        self.process = process
        process.start()
        try:
            yield waitForUdpPort(self.port, self.reactor, timeout=timeout, host=self.host,
                                 pid=process.pid, alive=lambda: process.running)
            yield self.waitForControl(process, timeout)
        except Exception as e:
            raise KamailioError(f"kamailio did not start: {e}\n{process.outputTail(4000)}") from e
        return self

    @inlineCallbacks
    def waitForControl(self, process: PeerProcess, timeout: float) -> Any:
        """
        Wait until Kamailio's control socket answers C{core.version}.

        @param process: the running Kamailio, whose end stops the wait.
        @param timeout: seconds to wait at most.
        @return: a Deferred firing with L{None}; it fails with
            L{KamailioError} when Kamailio ends, or L{PeerTimeout}.
        """
        deadline = self.reactor.seconds() + timeout
        while True:
            if not process.running:
                raise KamailioError("kamailio ended while starting")
            if os.path.exists(self.controlSocket):
                _, _, code = yield self._kamcmd("core.version")
                if code == 0:
                    return
            if self.reactor.seconds() > deadline:
                raise PeerTimeout(f"kamailio's control socket did not answer in {timeout}s")
            yield task.deferLater(self.reactor, 0.05, lambda: None)

    def stop(self) -> Deferred:
        """
        Stop Kamailio (SIGTERM, then SIGKILL after the grace period) if it
        runs, and remove the control socket's directory.

        @return: a Deferred firing with the L{tests.peers.ProcessExit}
            (L{None} when never started).
        """
        def removeSocketDirectory(result: Any) -> Any:
            shutil.rmtree(self._socketDirectory, ignore_errors=True)
            if self.process is not None:
                # The log stays beside the configuration for a post-mortem.
                (self.directory / "kamailio.log").write_text(self.output)
            return result

        if self.process is None:
            return succeed(removeSocketDirectory(None))
        return self.process.stop("TERM", self.stopGrace).addBoth(removeSocketDirectory)

    # -- the control socket -----------------------------------------------------

    def _kamcmd(self, *args: str) -> Deferred:
        return utils.getProcessOutputAndValue(
            self.kamcmd, ["-s", f"unix:{self.controlSocket}", *args],
            env=dict(os.environ), reactor=self.reactor)

    @inlineCallbacks
    def rpc(self, *args: str) -> Any:
        """
        Run C{kamcmd -s SOCKET args...}.

        @return: a Deferred firing with its standard output (text); it fails
            with L{KamailioError} when kamcmd exits non-zero.
        """
        output, error, code = yield self._kamcmd(*args)
        text = output.decode("utf-8", "replace")
        if code != 0:
            raise KamailioError(f"kamcmd {' '.join(args)} exited {code}: "
                                f"{error.decode('utf-8', 'replace')}{text}")
        return text

    @inlineCallbacks
    def usrloc(self) -> Any:
        """
        Return (a Deferred firing with) every L{UsrlocContact} of the
        location table (C{ul.dump}).
        """
        text = yield self.rpc("ul.dump")
        return usrlocContacts(parseKamcmd(text))

    @inlineCallbacks
    def contacts(self, aor: str) -> Any:
        """
        Return (a Deferred firing with) the L{UsrlocContact}s of C{aor}
        (the user name; the configuration does not use domains).
        """
        contacts = yield self.usrloc()
        return [contact for contact in contacts if contact.aor == aor]

    # -- the log ---------------------------------------------------------------

    @property
    def output(self) -> str:
        """What Kamailio logged (the tail kept by the L{PeerProcess})."""
        if self.process is None:
            return ""
        return self.process.stderr + self.process.stdout

    def registers(self, user: str | None = None) -> list[RegisterLogLine]:
        """
        The REGISTERs Kamailio received (for C{user} only, when given).
        """
        lines = parseRegisterLog(self.output)
        return [line for line in lines if user is None or line.user == user]

    def keepAlives(self) -> list[tuple[str, int]]:
        """
        The sources of the keep-alives Kamailio received and ignored (its
        "probing packet" lines: only logged with C{debug=3}).

        Kamailio 5.6 prints the source port of those lines through
        C{htons()} although it already is in host order
        (C{core/udp_server.c}), so on a little-endian host the logged
        number has its two bytes swapped: they are swapped back here.
        """
        swap = sys.byteorder == "little"
        sources = []
        for match in _PROBE_LINE.finditer(self.output):
            port = int(match["port"])
            if swap:
                port = ((port & 0xFF) << 8) | (port >> 8)
            sources.append((match["host"], port))
        return sources

    def routed(self, method: str = "INVITE") -> list[str]:
        """
        The C{LMEVOIP-ROUTED} lines for C{method} (requests relayed to a
        registered contact).
        """
        return [line for line in self.output.splitlines()
                if f"LMEVOIP-ROUTED {method} " in line]
