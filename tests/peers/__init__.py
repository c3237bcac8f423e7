"""
Real peers for lmevoip's tests: SIPp, tshark and baresip driven as
subprocesses through the Twisted reactor.

Every peer is a L{PeerProcess}: spawned with C{reactor.spawnProcess}, its
output kept (bounded), its end reported by a Deferred, and stopped by PID
(a polite signal, then C{SIGKILL} after a grace period, children included)
from the test's cleanup, so that no process outlives its test even when the
test fails. See C{docs/testing-with-peers.rst}.

The modules:
  - L{tests.peers.ports}: free loopback ports; wait until a port is bound.
  - L{tests.peers.sipp}: one SIPp instance running a scenario of
    C{tests/sipp/}, with its trace files parsed.
  - L{tests.peers.tshark}: a capture on C{lo} and the analysis of pcaps.
  - L{tests.peers.baresip}: a headless baresip driven over C{ctrl_tcp}.
"""

from __future__ import annotations

import os
import signal as signalModule
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import error
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = [
    "PeerError",
    "PeerExited",
    "PeerTimeout",
    "ProcessExit",
    "PeerProcess",
    "descendantPids",
    "traceDirectory",
]

#: How much of each output stream a L{PeerProcess} keeps (the tail).
OUTPUT_LIMIT = 256 * 1024


class PeerError(Exception):
    """
    A real peer did not behave: it would not start, ended too early, or a
    wait on it timed out. The message carries the tail of its output.
    """


class PeerExited(PeerError):
    """
    The peer's process ended before the condition waited for.
    """


class PeerTimeout(PeerError):
    """
    The condition waited for did not happen in time.
    """


@dataclass(frozen=True)
class ProcessExit:
    """
    How a peer's process ended.

    @ivar exitCode: the exit status, or L{None} when a signal ended it.
    @ivar signal: the number of the signal that ended it, or L{None}.
    @ivar stoppedByHarness: C{True} when the harness stopped it (cleanup or
        L{PeerProcess.stop}): then even exit code 0 says nothing about
        success, since SIPp, for one, exits 0 on C{SIGTERM}.
    """

    exitCode: int | None
    signal: int | None
    stoppedByHarness: bool


def descendantPids(pid: int, procRoot: Path = Path("/proc")) -> list[int]:
    """
    Return the PIDs of the children, grandchildren, ... of C{pid} (tshark
    runs C{dumpcap} as its child, for one), read from C{/proc/PID/stat}.
    """
    parents: dict[int, list[int]] = {}
    for entry in procRoot.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) < 2:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def traceDirectory(testCase: Any, label: str = "peer") -> Path:
    """
    Return a new, empty, absolute directory for one peer's files, from
    C{testCase.mktemp()}.

    trial runs tests in C{_trial_temp} and C{tests/conftest.py} runs a
    pytest session in a temporary folder, so the directory never lands in
    the checkout, and it stays after the run for the post-mortem of a
    failed test.

    @param label: the last part of the name, e.g. C{sipp-uac_options}.
    """
    path = Path(testCase.mktemp()).resolve()
    path = path.with_name(f"{path.name}-{label}")
    path.mkdir(parents=True)
    return path


class _Waiter:
    """
    One pending L{PeerProcess.waitForOutput}.
    """

    def __init__(self, needle: bytes, stream: str, deferred: Deferred[None]) -> None:
        self.needle = needle
        self.stream = stream
        self.deferred = deferred
        self.timer: Any = None


class PeerProcess(ProcessProtocol):
    """
    One real peer's subprocess, spawned through the reactor.

    @ivar argv: the command line.
    @ivar name: a label for logs and error messages.
    @ivar pid: the PID once started, else L{None}.
    @ivar exit: the L{ProcessExit} once the process has ended, else L{None}.
    """

    log = Logger()

    def __init__(
        self,
        argv: Sequence[str],
        reactor: Any,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
        outputLimit: int | None = OUTPUT_LIMIT,
    ) -> None:
        """
        @param argv: the command line; C{argv[0]} is the absolute path of
            the executable.
        @param reactor: an C{IReactorProcess} and C{IReactorTime}.
        @param cwd: the working directory of the process.
        @param env: its environment (this process's environment by default).
        @param name: a label for logs (C{argv[0]}'s basename by default).
        @param outputLimit: bytes of each output stream kept (the tail);
            L{None} keeps everything (for short-lived analysis commands).
        """
        self.argv = list(argv)
        self.reactor = reactor
        self.cwd = None if cwd is None else os.fspath(cwd)
        self.env = dict(os.environ if env is None else env)
        self.name = name or os.path.basename(self.argv[0])
        self.outputLimit = outputLimit
        self.pid: int | None = None
        self.exit: ProcessExit | None = None
        self._stdout = bytearray()
        self._stderr = bytearray()
        self._endWaiters: list[Deferred[ProcessExit]] = []
        self._outputWaiters: list[_Waiter] = []
        self._stopping = False
        self._killTimer: Any = None
        self._children: list[int] = []

    # -- life cycle ---------------------------------------------------------

    def start(self) -> None:
        """
        Spawn the process.

        @raise PeerError: it is already started.
        """
        if self.transport is not None:
            raise PeerError(f"{self.name} already started")
        self.log.info("starting {name}: {argv}", name=self.name, argv=" ".join(self.argv))
        self.reactor.spawnProcess(self, self.argv[0], self.argv, env=self.env, path=self.cwd)
        self.pid = self.transport.pid

    @property
    def running(self) -> bool:
        """
        C{True} between L{start} and the end of the process.
        """
        return self.transport is not None and self.exit is None

    def whenEnded(self) -> Deferred[ProcessExit]:
        """
        Return a Deferred firing with the L{ProcessExit} when the process
        has ended (at once if it has).
        """
        if self.exit is not None:
            return succeed(self.exit)
        d: Deferred[ProcessExit] = Deferred()
        self._endWaiters.append(d)
        return d

    def signal(self, name: str) -> bool:
        """
        Send signal C{name} (C{"TERM"}, C{"INT"}, C{"KILL"}, ...) to the
        process by its PID. Return C{False} when it has already ended.
        """
        if not self.running:
            return False
        try:
            self.transport.signalProcess(name)
        except error.ProcessExitedAlready:
            return False
        return True

    def stop(self, firstSignal: str = "TERM", grace: float = 5.0) -> Deferred[ProcessExit]:
        """
        Stop the process: send C{firstSignal}; if it has not ended after
        C{grace} seconds, C{SIGKILL} it and every process it started. Safe to
        call more than once and after the process ended.

        @return: a Deferred firing with the L{ProcessExit}.
        """
        if self.transport is None:
            return succeed(ProcessExit(None, None, True))
        if self.running and not self._stopping:
            self._stopping = True
            if self.pid is not None:
                self._children = descendantPids(self.pid)
            self.log.info("stopping {name} (pid {pid}) with SIG{sig}", name=self.name,
                          pid=self.pid, sig=firstSignal)
            self.signal(firstSignal)
            if self.running:
                self._killTimer = self.reactor.callLater(grace, self._kill)
        return self.whenEnded()

    def _kill(self) -> None:
        self._killTimer = None
        if not self.running or self.pid is None:
            return
        victims = set(self._children) | set(descendantPids(self.pid))
        self.log.warn("{name} (pid {pid}) ignored its stop signal: SIGKILL to it and {victims}",
                      name=self.name, pid=self.pid, victims=sorted(victims))
        self.signal("KILL")
        for pid in sorted(victims):
            try:
                os.kill(pid, signalModule.SIGKILL)
            except ProcessLookupError:
                pass

    # -- output ---------------------------------------------------------------

    @property
    def stdout(self) -> str:
        """
        The tail of what the process wrote on its standard output.
        """
        return self._stdout.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        """
        The tail of what the process wrote on its standard error.
        """
        return self._stderr.decode("utf-8", "replace")

    def outputTail(self, size: int = 2000) -> str:
        """
        The last C{size} characters of each stream, for error messages.
        """
        return (f"--- {self.name} stdout ---\n{self.stdout[-size:]}\n"
                f"--- {self.name} stderr ---\n{self.stderr[-size:]}")

    def _append(self, buffer: bytearray, data: bytes) -> None:
        buffer += data
        if self.outputLimit is not None and len(buffer) > self.outputLimit:
            del buffer[:len(buffer) - self.outputLimit]

    def outReceived(self, data: bytes) -> None:
        self._append(self._stdout, data)
        self._checkOutput()

    def errReceived(self, data: bytes) -> None:
        self._append(self._stderr, data)
        self._checkOutput()

    def _streamText(self, stream: str) -> bytes:
        if stream == "stdout":
            return bytes(self._stdout)
        if stream == "stderr":
            return bytes(self._stderr)
        return bytes(self._stdout) + b"\n" + bytes(self._stderr)

    def _checkOutput(self) -> None:
        for waiter in list(self._outputWaiters):
            if waiter.needle in self._streamText(waiter.stream):
                self._finishWaiter(waiter, None)

    def _finishWaiter(self, waiter: _Waiter, failure: Failure | None) -> None:
        self._outputWaiters.remove(waiter)
        if waiter.timer is not None and waiter.timer.active():
            waiter.timer.cancel()
        if failure is None:
            waiter.deferred.callback(None)
        else:
            waiter.deferred.errback(failure)

    def waitForOutput(self, needle: bytes, stream: str = "any", timeout: float = 10.0) -> Deferred[None]:
        """
        Wait until the process has written C{needle}.

        @param needle: the bytes to look for (in the kept tail).
        @param stream: C{"stdout"}, C{"stderr"} or C{"any"}.
        @param timeout: seconds before failing with L{PeerTimeout}.
        @return: a Deferred firing with L{None}; it fails with
            L{PeerExited} if the process ends first.
        """
        d: Deferred[None] = Deferred()
        if needle in self._streamText(stream):
            d.callback(None)
            return d
        if self.exit is not None:
            d.errback(PeerExited(f"{self.name} ended ({self.exit}) without writing {needle!r}\n"
                                 + self.outputTail()))
            return d
        waiter = _Waiter(needle, stream, d)
        self._outputWaiters.append(waiter)

        def expire() -> None:
            waiter.timer = None
            self._finishWaiter(waiter, Failure(PeerTimeout(
                f"{self.name} did not write {needle!r} within {timeout}s\n" + self.outputTail())))

        waiter.timer = self.reactor.callLater(timeout, expire)
        return d

    # -- the end --------------------------------------------------------------

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        exitCode = getattr(value, "exitCode", None)
        sig = getattr(value, "signal", None)
        self.exit = ProcessExit(exitCode, sig, self._stopping)
        if self._killTimer is not None and self._killTimer.active():
            self._killTimer.cancel()
        self._killTimer = None
        self.log.info("{name} (pid {pid}) ended: {exit}", name=self.name, pid=self.pid, exit=self.exit)
        for waiter in list(self._outputWaiters):
            self._finishWaiter(waiter, Failure(PeerExited(
                f"{self.name} ended ({self.exit}) without writing {waiter.needle!r}\n"
                + self.outputTail())))
        waiters, self._endWaiters = self._endWaiters, []
        for d in waiters:
            d.callback(self.exit)
