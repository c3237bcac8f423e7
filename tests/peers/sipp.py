"""
SIPp as a real peer: one SIPp instance running one scenario of
C{tests/sipp/}, spawned through the reactor, with its trace files parsed.

Example (in a C{twisted.trial.unittest.TestCase})::

    @inlineCallbacks
    def test_engineHangsUp(self):
        uas = Sipp(self, "uas_answer_options_bye_local")
        yield uas.start()                 # listening on uas.localPort
        ...                               # the engine calls uas.target
        result = yield uas.finished()
        self.assertEqual(result.exitCode, 0, result.describe())
        self.assertEqual(result.counts.total("BYE", "Recv"), 1)

The instance is registered with C{testCase.addCleanup}, so SIPp is stopped
(SIGTERM, then SIGKILL by PID) even when the test fails. SIPp always runs in
the foreground (C{-bg} is refused) so that the harness owns its PID.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, succeed
from twisted.logger import Logger

from tests.peers import PeerError, PeerProcess, ProcessExit, traceDirectory
from tests.peers.ports import LOOPBACK, freePortBlock, freeUdpPort, waitForUdpPort
from tests.support import requireTool

__all__ = [
    "AUTH_PASSWORD",
    "AUTH_REALM",
    "AUTH_USERNAME",
    "EXIT_MEANINGS",
    "SCENARIO_DIR",
    "Sipp",
    "SippCounts",
    "SippResult",
    "SippStep",
    "loggedMessages",
    "digestParameters",
    "parseStatCsv",
    "parseTraceCounts",
    "scenarioPath",
    "verifyDigest",
]

#: Where the scenarios live.
SCENARIO_DIR = Path(__file__).resolve().parent.parent / "sipp"

#: The credentials C{uas_auth_407.xml} challenges for and verifies.
AUTH_USERNAME = "lmevoip"
AUTH_PASSWORD = "lmevoip-secret"
AUTH_REALM = "lmevoip.test"

#: SIPp's exit codes (see C{sipp -h}, "Signal handling" and "Exit codes").
EXIT_MEANINGS = {
    0: "all calls were successful",
    1: "at least one call failed",
    97: "exit on internal command (calls may have been processed)",
    99: "normal exit without calls processed",
    253: "RTP validation failure",
    254: "fatal error binding a socket",
    255: "fatal error (including -timeout with -timeout_error, or a bad scenario)",
}

#: Seconds past SIPp's own -timeout after which the harness stops it.
WATCHDOG_SLACK = 10.0


def scenarioPath(scenario: str | os.PathLike[str]) -> Path:
    """
    Return the path of a scenario: a name of C{tests/sipp/} (with or
    without C{.xml}) or any existing path.

    @raise FileNotFoundError: there is no such scenario.
    """
    path = Path(scenario)
    if not path.exists():
        name = str(scenario)
        if not name.endswith(".xml"):
            name += ".xml"
        path = SCENARIO_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"no SIPp scenario {scenario!r} (looked in {SCENARIO_DIR})")
    return path.resolve()


# -- trace files ----------------------------------------------------------------


@dataclass(frozen=True)
class SippStep:
    """
    The counters of one scenario step, from C{-trace_counts}.

    @ivar index: the step's index in the scenario (C{<label>}s and hidden
        C{<nop>}s have indices but no counters).
    @ivar name: the method (C{INVITE}), the response code (C{200}), or
        C{Pause} for pauses and visible C{<nop>}s.
    @ivar counters: C{Sent}, C{Recv}, C{Retrans}, C{Timeout}, C{Unexp},
        C{Sessions}, ... whichever SIPp writes for this kind of step.
    """

    index: int
    name: str
    counters: Mapping[str, int]

    def __getitem__(self, kind: str) -> int:
        return self.counters.get(kind, 0)


_COLUMN = re.compile(r"^(\d+)_(.+)_([A-Za-z]+)$")


@dataclass(frozen=True)
class SippCounts:
    """
    The per-step message counts of a SIPp run (the last row of its
    C{-trace_counts} file, i.e. the final counts).
    """

    steps: tuple[SippStep, ...]

    def step(self, index: int) -> SippStep:
        """
        Return the step with scenario index C{index}.

        @raise KeyError: no step has that index.
        """
        for step in self.steps:
            if step.index == index:
                return step
        raise KeyError(f"no counted step {index}; steps: {[s.index for s in self.steps]}")

    def named(self, name: str) -> list[SippStep]:
        """
        Return the steps named C{name} (a method or a response code), in
        scenario order.
        """
        return [step for step in self.steps if step.name == name]

    def total(self, name: str, kind: str) -> int:
        """
        Return counter C{kind} summed over the steps named C{name}; for
        instance C{total("OPTIONS", "Recv")} is the number of OPTIONS
        requests SIPp received (retransmissions excluded).
        """
        return sum(step[kind] for step in self.named(name))

    def asTable(self) -> list[tuple[int, str, dict[str, int]]]:
        """
        The counts as a list of C{(index, name, counters)}, for messages.
        """
        return [(s.index, s.name, dict(s.counters)) for s in self.steps]


def _headerAndLastRow(text: str, start: str, kind: str) -> tuple[list[str], list[str]]:
    """
    Split a C{;}-separated SIPp trace file into its header and its last row.

    @raise ValueError: the text does not start with C{start} or has no row.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or not lines[0].startswith(start):
        raise ValueError(f"not a SIPp {kind} file: {text[:200]!r}")
    return lines[0].rstrip(";").split(";"), lines[-1].rstrip(";").split(";")


def parseTraceCounts(text: str) -> SippCounts:
    """
    Parse the content of a SIPp C{-trace_counts} file.

    The file is C{;}-separated: a header (C{CurrentTime;ElapsedTime;} then
    one C{<index>_<name>_<counter>} column per counter) and one row per
    dump, the last being the final counts.

    @raise ValueError: the text is not a counts file.
    """
    header, row = _headerAndLastRow(text, "CurrentTime;", "counts")
    if len(row) != len(header):
        raise ValueError(f"counts row has {len(row)} fields, header {len(header)}")
    steps: dict[int, tuple[str, dict[str, int]]] = {}
    for column, value in zip(header[2:], row[2:]):
        match = _COLUMN.match(column)
        if match is None:
            raise ValueError(f"unexpected counts column {column!r}")
        index = int(match.group(1))
        name, counters = steps.setdefault(index, (match.group(2), {}))
        counters[match.group(3)] = int(value)
    return SippCounts(tuple(SippStep(i, n, c) for i, (n, c) in sorted(steps.items())))


def parseStatCsv(text: str) -> dict[str, str]:
    """
    Parse a SIPp C{-trace_stat} file into C{{column: value}} of its last row
    (columns such as C{SuccessfulCall(C)} and C{FailedCall(C)}).

    @raise ValueError: the text is not a statistics file.
    """
    header, row = _headerAndLastRow(text, "StartTime;", "statistics")
    return dict(zip(header, row))


@dataclass
class SippResult:
    """
    What one SIPp run did.

    @ivar exitCode: SIPp's exit status (see L{EXIT_MEANINGS}), or L{None}
        when a signal ended it.
    @ivar signal: the signal that ended it, or L{None}.
    @ivar stoppedByHarness: the harness stopped it (test cleanup or
        L{Sipp.stop}); SIPp then exits 0, which does not mean success.
    @ivar counts: the parsed C{-trace_counts} file, or L{None} if SIPp wrote
        none (a scenario that did not load).
    @ivar messages: the C{-trace_msg} log: every message sent and received.
    @ivar errors: the C{-trace_err} log: unexpected messages and errors.
    @ivar stats: the last row of the C{-trace_stat} file (may be empty).
    @ivar logs: the C{-trace_logs} file: what the scenario's C{<log>}
        actions wrote.
    @ivar output: the tail of SIPp's standard output and error (its final
        statistics screen, and why it refused to start).
    @ivar directory: where the trace files are.
    """

    exitCode: int | None
    signal: int | None
    stoppedByHarness: bool
    counts: SippCounts | None
    messages: str
    errors: str
    stats: dict[str, str]
    logs: str
    output: str
    directory: Path

    @property
    def succeeded(self) -> bool:
        """
        Exit 0 without having been stopped by the harness.
        """
        return self.exitCode == 0 and not self.stoppedByHarness

    @property
    def exitMeaning(self) -> str:
        """
        What the exit code means.
        """
        if self.signal is not None:
            return f"killed by signal {self.signal}"
        meaning = EXIT_MEANINGS.get(self.exitCode, "unknown exit code")
        if self.stoppedByHarness:
            meaning += " (stopped by the harness)"
        return meaning

    def receivedRequests(self, method: str) -> list[str]:
        """
        Return the C{method} requests SIPp received, whole (C{\\n} line
        ends), from the message log: for checking what the engine sent.
        Retransmissions appear as often as they arrived.
        """
        return [m for m in loggedMessages(self.messages, "received")
                if m.startswith(method + " ")]

    @property
    def nonSipDiscarded(self) -> int:
        """
        How many datagrams SIPp discarded as "non SIP message": SIPp 3.6.1
        logs each single-CRLF keep-alive (lmevoip's NULL keep-alive) so in
        its error log, and ignores a double CRLF without a trace.
        """
        return self.errors.count("non SIP message discarded")

    def authorizations(self, method: str = "INVITE", header: str = "Proxy-Authorization") -> list[str]:
        """
        Return the values of C{header} in the C{method} requests SIPp
        received, in order (for L{verifyDigest}).
        """
        prefix = header.lower() + ":"
        return [line.split(":", 1)[1].strip()
                for request in self.receivedRequests(method)
                for line in request.splitlines()
                if line.lower().startswith(prefix)]

    def describe(self) -> str:
        """
        A multi-line account of the run for assertion messages: exit code,
        counts, errors and the tail of the message log.
        """
        parts = [f"SIPp exit {self.exitCode}: {self.exitMeaning} (files in {self.directory})"]
        if self.counts is not None:
            for index, name, counters in self.counts.asTable():
                parts.append(f"  step {index} {name}: {counters}")
        if self.errors.strip():
            parts.append("--- errors (tail) ---\n" + self.errors[-3000:])
        if self.messages.strip():
            parts.append("--- messages (tail) ---\n" + self.messages[-3000:])
        if not self.messages.strip() and self.output.strip():
            parts.append("--- output (tail) ---\n" + self.output[-2000:])
        return "\n".join(parts)


_SEPARATOR = re.compile(r"^-{20,}[^\n]*\n", re.M)
_HEAD = re.compile(r"^[^\n]*message (sent|received)[^\n]*\n", re.I)


def loggedMessages(log: str, direction: str) -> list[str]:
    """
    Split a SIPp C{-trace_msg} log into the messages SIPp sent or received.

    @param log: the log's text.
    @param direction: C{"sent"} or C{"received"}.
    @return: the messages, in order, with C{\\n} line ends.
    """
    found: list[str] = []
    for chunk in _SEPARATOR.split(log):
        head = _HEAD.match(chunk)
        if head is not None and head.group(1).lower() == direction:
            found.append(chunk[head.end():].replace("\r\n", "\n").strip("\n"))
    return found


_DIGEST_PARAM = re.compile(r'([A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def digestParameters(header: str) -> dict[str, str]:
    """
    Parse the parameters of a C{Digest} credentials or challenge value
    (C{Digest username="a", nc=00000001, ...}) into a dict with lowercase
    names.

    @raise ValueError: the value is not a Digest one.
    """
    value = header.split(":", 1)[1] if re.match(r"^[A-Za-z-]+\s*:", header) else header
    value = value.strip()
    if not value.lower().startswith("digest"):
        raise ValueError(f"not Digest credentials: {header!r}")
    return {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
            for m in _DIGEST_PARAM.finditer(value[len("digest"):])}


def verifyDigest(header: str, method: str, password: str, body: bytes = b"",
                 realm: str | None = None, nonce: str | None = None) -> bool:
    """
    Check Digest credentials (RFC 2617 section 3.2.2, as SIP uses them in
    RFC 3261 22.4): recompute C{response} from the password.

    SIPp 3.6.1 cannot check C{Proxy-Authorization} itself, so tests of the
    407 flow call this on the header the engine sent.

    @param header: the C{Authorization} or C{Proxy-Authorization} header,
        with or without its name.
    @param method: the request's method.
    @param password: the shared secret.
    @param body: the request's body (for C{qop=auth-int}).
    @param realm: when given, the credentials must name this realm.
    @param nonce: when given, the credentials must carry this nonce.
    @return: C{True} when the response matches (and realm and nonce, if
        given); C{False} otherwise, including for an unsupported algorithm.
    @raise ValueError: the header is not Digest credentials.
    """
    params = digestParameters(header)
    required = ("username", "realm", "nonce", "uri", "response")
    if any(name not in params for name in required):
        return False
    if realm is not None and params["realm"] != realm:
        return False
    if nonce is not None and params["nonce"] != nonce:
        return False
    algorithm = params.get("algorithm", "MD5").upper()
    if algorithm not in ("MD5", "MD5-SESS"):
        return False

    def md5(text: str | bytes) -> str:
        return hashlib.md5(text if isinstance(text, bytes) else text.encode("utf-8")).hexdigest()

    ha1 = md5(f"{params['username']}:{params['realm']}:{password}")
    qop = params.get("qop")
    if algorithm == "MD5-SESS":
        ha1 = md5(f"{ha1}:{params['nonce']}:{params.get('cnonce', '')}")
    if qop == "auth-int":
        ha2 = md5(f"{method}:{params['uri']}:{md5(body)}")
    else:
        ha2 = md5(f"{method}:{params['uri']}")
    if qop in ("auth", "auth-int"):
        if "nc" not in params or "cnonce" not in params:
            return False
        expected = md5(f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:{qop}:{ha2}")
    else:
        expected = md5(f"{ha1}:{params['nonce']}:{ha2}")
    return expected == params["response"].lower()


# -- the runner -----------------------------------------------------------------


class Sipp:
    """
    One SIPp instance running one scenario, as a subprocess of the reactor.

    @ivar scenario: the scenario file.
    @ivar host: the loopback address SIPp binds and puts in its messages.
    @ivar localPort: SIPp's SIP port (C{-p}).
    @ivar mediaPort: SIPp's media port (C{-mp}, C{[media_port]}); the block
        C{mediaPort} .. C{mediaPort + 3} was free when chosen (SIPp binds
        the port and the port + 2).
    @ivar controlPort: SIPp's UDP control port (C{-cp}).
    @ivar directory: the per-instance directory holding the trace files.
    @ivar process: the L{PeerProcess} once started.
    @ivar result: the L{SippResult} once SIPp has ended.
    """

    log = Logger()

    def __init__(
        self,
        testCase: Any,
        scenario: str | os.PathLike[str],
        remote: str | tuple[str, int] | None = None,
        *,
        calls: int | None = 1,
        localPort: int | None = None,
        mediaPort: int | None = None,
        limit: int | None = None,
        rate: float | None = None,
        ratePeriodMs: int | None = None,
        timeout: float | None = 30.0,
        recvTimeoutMs: int | None = None,
        keys: Mapping[str, str] | None = None,
        variables: Mapping[str, str | int | float] | None = None,
        service: str | None = None,
        authUsername: str | None = None,
        authPassword: str | None = None,
        rtpEcho: bool = False,
        extraArgs: Sequence[str] = (),
        reactor: Any = None,
        host: str = LOOPBACK,
        stopGrace: float = 3.0,
    ) -> None:
        """
        @param testCase: the running C{TestCase}: SIPp's directory comes from
            it and its cleanup stops SIPp.
        @param scenario: a scenario name of C{tests/sipp/} or a path.
        @param remote: where a UAC scenario sends (C{"host:port"} or a
            tuple); L{None} for a UAS.
        @param calls: C{-m}: stop after this many calls (L{None}: no limit).
        @param localPort: C{-p}; a free port by default.
        @param mediaPort: C{-mp}; a free block by default.
        @param limit: C{-l}: simultaneous calls.
        @param rate: C{-r}: calls per rate period.
        @param ratePeriodMs: C{-rp} in milliseconds.
        @param timeout: C{-timeout} (seconds, rounded up) with
            C{-timeout_error}, so that a run that outlives it fails (exit
            255); L{None} for no global timeout. The harness also stops SIPp
            L{WATCHDOG_SLACK} seconds after it.
        @param recvTimeoutMs: C{-recv_timeout}: the default timeout of every
            C{<recv>} without its own.
        @param keys: C{-key NAME VALUE} pairs, used as C{[NAME]} in messages.
        @param variables: C{-set NAME VALUE} pairs: global variables such as
            C{holdms} of C{uas_never_answer.xml}.
        @param service: C{-s}, the user part of the Request-URI of a UAC.
        @param authUsername: C{-au}, for C{[authentication]}.
        @param authPassword: C{-ap}, for C{[authentication]}.
        @param rtpEcho: C{-rtp_echo}: echo RTP received on C{mediaPort}.
        @param extraArgs: more SIPp options (never C{-bg}).
        @param reactor: the reactor (the global one by default).
        @param host: the loopback address to use.
        @param stopGrace: seconds between SIGTERM and SIGKILL when stopping.
        @raise ValueError: C{-bg} in C{extraArgs}.
        """
        if reactor is None:
            from twisted.internet import reactor as globalReactor
            reactor = globalReactor
        if "-bg" in extraArgs:
            raise ValueError("SIPp must stay in the foreground (-bg) so that the harness owns its PID")
        self.executable = requireTool("sipp")
        self.testCase = testCase
        self.reactor = reactor
        self.scenario = scenarioPath(scenario)
        self.host = host
        self.localPort = localPort if localPort is not None else freeUdpPort(host)
        self.mediaPort = mediaPort if mediaPort is not None else freePortBlock(4, host, align=2)
        self.controlPort = freeUdpPort("0.0.0.0")
        self.remote = f"{remote[0]}:{remote[1]}" if isinstance(remote, tuple) else remote
        self.timeout = timeout
        self.stopGrace = stopGrace
        self.directory = traceDirectory(testCase, "sipp-" + self.scenario.stem)
        self.messageFile = self.directory / "messages.log"
        self.errorFile = self.directory / "errors.log"
        self.statFile = self.directory / "stat.csv"
        self.logFile = self.directory / "actions.log"
        self.process: PeerProcess | None = None
        self.result: SippResult | None = None
        self._watchdog: Any = None

        argv = [
            self.executable, "-sf", str(self.scenario),
            "-i", host, "-p", str(self.localPort),
            "-mi", host, "-mp", str(self.mediaPort),
            "-cp", str(self.controlPort),
            "-nostdin",
            "-trace_err", "-error_file", str(self.errorFile),
            "-trace_msg", "-message_file", str(self.messageFile),
            "-trace_counts",
            "-trace_stat", "-stf", str(self.statFile),
            "-trace_logs", "-log_file", str(self.logFile),
        ]
        if calls is not None:
            argv += ["-m", str(calls)]
        if limit is not None:
            argv += ["-l", str(limit)]
        if rate is not None:
            argv += ["-r", _number(rate)]
        if ratePeriodMs is not None:
            argv += ["-rp", f"{ratePeriodMs}ms"]
        if timeout is not None:
            argv += ["-timeout", f"{max(1, math.ceil(timeout))}s", "-timeout_error"]
        if recvTimeoutMs is not None:
            argv += ["-recv_timeout", f"{recvTimeoutMs}ms"]
        for name, value in (keys or {}).items():
            argv += ["-key", name, str(value)]
        for name, value in (variables or {}).items():
            argv += ["-set", name, _number(value) if isinstance(value, (int, float)) else value]
        if service is not None:
            argv += ["-s", service]
        if authUsername is not None:
            argv += ["-au", authUsername]
        if authPassword is not None:
            argv += ["-ap", authPassword]
        if rtpEcho:
            argv += ["-rtp_echo"]
        argv += list(extraArgs)
        if self.remote is not None:
            argv.append(self.remote)
        self.argv = argv
        testCase.addCleanup(self.stop)

    @property
    def target(self) -> tuple[str, int]:
        """
        C{(host, localPort)}: where to send SIP to this SIPp.
        """
        return (self.host, self.localPort)

    @property
    def uri(self) -> str:
        """
        A SIP URI that reaches this SIPp.
        """
        return f"sip:sipp@{self.host}:{self.localPort}"

    def start(self, listenTimeout: float = 10.0) -> Deferred[Sipp]:
        """
        Spawn SIPp and wait until it listens on its SIP port.

        @return: a Deferred firing with this L{Sipp} once its UDP port is
            bound by its process; it fails (with SIPp's output) if SIPp ends
            first, which is how a broken scenario shows up.
        """
        process = PeerProcess(self.argv, self.reactor, cwd=self.directory,
                              name=f"sipp[{self.scenario.name}]")
        self.process = process
        process.start()
        if self.timeout is not None:
            self._watchdog = self.reactor.callLater(self.timeout + WATCHDOG_SLACK, self._expired)
        process.whenEnded().addCallback(self._ended)
        return self.waitUntilListening(listenTimeout).addCallback(lambda _: self)

    def waitUntilListening(self, timeout: float = 10.0) -> Deferred[None]:
        """
        Wait until SIPp's process has bound its SIP UDP port and its media
        port, so that a test may send to it (a UAS scenario, or RTP for
        C{-rtp_echo}). If a port is taken SIPp exits at once and the wait
        fails with SIPp's own reason (e.g. "Unable to bind audio RTP
        socket").
        """
        process = self.process
        if process is None:
            raise RuntimeError("start() SIPp first")
        waits = [waitForUdpPort(port, self.reactor, timeout=timeout, host=self.host,
                                pid=process.pid, alive=lambda: process.running)
                 for port in (self.localPort, self.mediaPort)]

        def explain(failure: Any) -> Any:
            # The first wait to fail ends this one: stop the other's polling.
            for wait in waits:
                wait.cancel()
            failure = failure.value.subFailure if hasattr(failure.value, "subFailure") else failure
            raise PeerError(f"{failure.getErrorMessage()}\n{process.outputTail()}")

        return gatherResults(waits, consumeErrors=True).addCallbacks(lambda _: None, explain)

    @inlineCallbacks
    def run(self) -> Any:
        """
        Start SIPp and wait for it to end.

        @return: a Deferred firing with the L{SippResult}.
        """
        if self.process is None:
            try:
                yield self.start()
            except Exception:
                if self.process is None or self.process.running:
                    raise
        result = yield self.finished()
        return result

    def finished(self) -> Deferred[SippResult]:
        """
        Return a Deferred firing with the L{SippResult} when SIPp has ended
        (by itself, by its -timeout, or stopped).
        """
        if self.process is None:
            raise RuntimeError("start() SIPp first")
        if self.result is not None:
            return succeed(self.result)
        return self.process.whenEnded().addCallback(lambda _: self._collect())

    def stop(self) -> Deferred[SippResult | None]:
        """
        Stop SIPp (SIGTERM, then SIGKILL after the grace period) if it runs.

        @return: a Deferred firing with the L{SippResult} (L{None} if SIPp
            was never started).
        """
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        if self.process is None:
            return succeed(None)
        return self.process.stop("TERM", self.stopGrace).addCallback(lambda _: self._collect())

    def _expired(self) -> None:
        self._watchdog = None
        self.log.warn("{name} outlived its -timeout by {slack}s: stopping it",
                      name=self.process.name if self.process else "sipp", slack=WATCHDOG_SLACK)
        self.stop()

    def _ended(self, exit: ProcessExit) -> ProcessExit:
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None
        return exit

    def _collect(self) -> SippResult:
        """
        Build (once) the result from the exit status and the trace files.
        """
        if self.result is not None:
            return self.result
        process = self.process
        assert process is not None and process.exit is not None
        counts: SippCounts | None = None
        countFiles = sorted(self.directory.glob("*_counts.csv"))
        if countFiles:
            try:
                counts = parseTraceCounts(_read(countFiles[-1]))
            except ValueError as e:
                self.log.warn("unreadable counts file {path}: {error}", path=countFiles[-1], error=e)
        stats: dict[str, str] = {}
        statText = _read(self.statFile)
        if statText:
            try:
                stats = parseStatCsv(statText)
            except ValueError:
                stats = {}
        self.result = SippResult(
            exitCode=process.exit.exitCode,
            signal=process.exit.signal,
            stoppedByHarness=process.exit.stoppedByHarness,
            counts=counts,
            messages=_read(self.messageFile),
            errors=_read(self.errorFile),
            stats=stats,
            logs=_read(self.logFile),
            output=process.stdout[-20000:] + process.stderr[-5000:],
            directory=self.directory,
        )
        self.log.info("{name} ended: exit {code} ({meaning})", name=process.name,
                      code=self.result.exitCode, meaning=self.result.exitMeaning)
        return self.result


def _number(value: float | int) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""

