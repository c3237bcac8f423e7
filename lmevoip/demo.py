"""
The keep-alive demo: two engines in one process on loopback, no server
needed, showing NAT keep-alive at work (C{python -m lmevoip.demo}, what
C{sh scripts/run.sh} runs).

  - The B{office} engine answers every call. Its noise gate is on, it plays
    silence and its keep-alive is B{off}: its RTP flow is the control group.
  - The B{phone} engine is "behind a NAT" that forgets an idle UDP binding
    after C{--nat-session-time} (3 s by default). It calls the office, its
    noise gate is on, and it speaks one second in every eight (a tone) and
    is silent otherwise, so its RTP flow goes quiet for seconds at a time.
    Its keep-alive is on for SIP and RTP with that NAT session time.

Every few seconds the terminal shows what each flow sent and why (voice,
an RTP silence keep-alive after so long idle, an OPTIONS keep-alive, other
signalling), with numbers from the engines' own send observers and
counters (L{lmevoip.control.FlowMonitor}). The phone's status page is
served meanwhile. After C{--duration} seconds (30) the phone hangs up and
a summary gives, per flow, the sends by kind and the longest idle time
against the NAT session time: below it, the binding would have survived.
The demo exits 0 when every flow with keep-alive stayed below it, 1 when
one did not (or the call failed). C{--forever} runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from zope.interface import implementer

from lmevoip.control import FlowMonitor, FlowRecord, SendKind
from lmevoip.engine import EngineConfig, LineState, VoipMediaEngine
from lmevoip.events import EngineObserver, EventName
from lmevoip.interfaces import IAudioSource
from lmevoip.keepalive.interval import maximumInterval
from lmevoip.rtp.audio import SilenceSource, ToneSource

__all__ = ["Demo", "TalkSpurtSource", "main"]

#: What the phone says: a tone of TALK_SECONDS at the start of every
#: PERIOD_SECONDS, silence otherwise.
TALK_SECONDS = 1.0
PERIOD_SECONDS = 8.0
#: The phone's noise gate threshold (the tone peaks near 9,800).
GATE_THRESHOLD = 1000

_KEEPALIVE_KINDS = (SendKind.RTP_KEEPALIVE, SendKind.OPTIONS_KEEPALIVE, SendKind.CRLF_KEEPALIVE)

_KIND_TEXT = {
    SendKind.VOICE: ("voice", "voice packets"),
    SendKind.RTP_KEEPALIVE: ("silence keep-alive", "silence keep-alives"),
    SendKind.OPTIONS_KEEPALIVE: ("OPTIONS keep-alive", "OPTIONS keep-alives"),
    SendKind.CRLF_KEEPALIVE: ("CRLF keep-alive", "CRLF keep-alives"),
    SendKind.SIGNALLING: ("other SIP message", "other SIP messages"),
}


@implementer(IAudioSource)
class TalkSpurtSource:
    """
    A tone for C{talkSeconds} at the start of every C{periodSeconds} after
    an initial C{offsetSeconds} of silence, silence otherwise: someone who
    says a word now and then.
    """

    def __init__(self, talkSeconds: float = TALK_SECONDS, periodSeconds: float = PERIOD_SECONDS,
                 offsetSeconds: float = 0.5, sampleRate: int = 8000) -> None:
        self.talkSamples = int(talkSeconds * sampleRate)
        self.periodSamples = int(periodSeconds * sampleRate)
        self.offsetSamples = int(offsetSeconds * sampleRate)
        self.position = 0
        self._tone = ToneSource(440.0, 0.3, sampleRate)
        self._silence = SilenceSource()

    def readFrame(self, samples: int) -> bytes | None:
        """
        The next frame: tone while talking, silence otherwise.
        """
        position = self.position - self.offsetSamples
        self.position += samples
        talking = position >= 0 and position % self.periodSamples < self.talkSamples
        return (self._tone if talking else self._silence).readFrame(samples)

    def close(self) -> None:
        self._tone.close()
        self._silence.close()


class _AutoAnswer(EngineObserver):
    def __init__(self, engine: VoipMediaEngine) -> None:
        self.engine = engine

    def sipOkToAnswerCall(self, event: Any) -> None:
        self.engine.goOffHook(event.line)


class Demo:
    """
    The demo (see the module docstring), on any reactor with UDP and time
    (a L{lmevoip.testing.FakeUdpReactor} in tests).

    @ivar office: The office engine. @ivar phone: The phone engine.
    @ivar flows: C{(label, engine's FlowMonitor)} in report order.
    @ivar exitCode: 0 once the demo showed every kept-alive flow below the
        NAT session time, else 1.
    """

    def __init__(self, reactor: Any, write: Callable[[str], object], duration: float = 30.0,
                 natSessionTimeMs: int = 3000, reportEvery: float = 3.0, forever: bool = False,
                 control: str | None = "tcp:8060:interface=127.0.0.1") -> None:
        self.reactor = reactor
        self.write = write
        self.duration = duration
        self.natSessionTimeMs = natSessionTimeMs
        self.reportEvery = reportEvery
        self.forever = forever
        self.controlDescription = control
        self.control: Any = None
        self.exitCode = 1
        self.connectedAt: float | None = None
        self.office = VoipMediaEngine(EngineConfig(
            sipHost="127.0.0.1", sipPort=0, user="office", noiseGateEnabled=True, noiseThreshold=GATE_THRESHOLD,
            sourceFactory=lambda line: SilenceSource()), reactor)
        self.phone = VoipMediaEngine(EngineConfig(
            sipHost="127.0.0.1", sipPort=0, user="phone", noiseGateEnabled=True, noiseThreshold=GATE_THRESHOLD,
            sourceFactory=lambda line: TalkSpurtSource()), reactor)
        self.office.addObserver(_AutoAnswer(self.office))
        self._monitors: list[tuple[str, FlowMonitor]] = []
        self._reported: dict[int, float] = {}
        self._finishing: Deferred[int] | None = None
        self._report = LoopingCall(self.report)
        self._report.clock = reactor

    def line(self, text: str = "") -> None:
        self.write(text + "\n")

    # -- running ------------------------------------------------------------

    @inlineCallbacks
    def run(self) -> Any:
        """
        Start both engines, call, report until the duration is over (or
        forever), then L{finish}.

        @return: A Deferred firing with the exit code.
        """
        office, phone = self.office, self.phone
        office.startService()
        phone.startService()
        result = phone.enableKeepAliveTransmissions(True, True, self.natSessionTimeMs)
        if not result.succeeded:
            self.line(f"lmevoip demo: --nat-session-time {self.natSessionTimeMs}: the engine refused it "
                      f"({result.name}; it must be 1000-3600000 ms)")
            yield self._stopEngines()
            return 2
        self._monitors = [("phone", FlowMonitor(phone)), ("office", FlowMonitor(office))]
        self._startControl()
        self._introduce()
        host, port = office.sipAddress
        phone.makeCall(0, "office", host, port)
        try:
            status = yield phone.whenLineState(0, LineState.CONNECTED, timeout=10)
        except Exception as e:
            self.line(f"The call did not connect: {e!r}")
            yield self.finish()
            return 1
        self.connectedAt = self.reactor.seconds()
        self.line(f"[{0.0:5.1f}s] phone -> office: call connected ({status.codec}); "
                  f"showing what each flow sends every {self.reportEvery:g} s")
        self._report.start(self.reportEvery, now=False)
        if self.forever:
            yield Deferred()  # until Ctrl-C: finish() runs from the shutdown trigger
        else:
            yield self._sleep(self.duration)
        code = yield self.finish()
        return code

    def _sleep(self, seconds: float) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.reactor.callLater(seconds, d.callback, None)
        return d

    def _startControl(self) -> None:
        if self.controlDescription is None:
            return
        from twisted.internet.error import CannotListenError

        from lmevoip.web import ControlService
        for description in (self.controlDescription, "tcp:0:interface=127.0.0.1"):
            control = ControlService(self.phone, description, reactor=self.reactor)
            try:
                control.startService()
            except CannotListenError:
                control.site.monitor.close()
                continue
            self.control = control
            return

    def _introduce(self) -> None:
        office, phone = self.office.sipAddress, self.phone.sipAddress
        nat = self.natSessionTimeMs / 1000
        self.line("lmevoip keep-alive demo: two SIP engines in this process, on loopback, no server needed.")
        self.line()
        self.line(f"  office  sip:office@{office[0]}:{office[1]:<6} answers; noise gate on; plays silence; "
                  "keep-alive OFF (for comparison);")
        self.line("          its SIP flow only carries its answers to the phone's OPTIONS")
        self.line(f"  phone   sip:phone@{phone[0]}:{phone[1]:<7} behind a NAT that drops a UDP binding idle "
                  f"for {nat:g} s;")
        self.line(f"          keep-alive ON (SIP and RTP, natSessionTimeMs={self.natSessionTimeMs}: a keep-alive "
                  f"after at most {maximumInterval(self.natSessionTimeMs):.2f} s idle);")
        self.line(f"          speaks {TALK_SECONDS:g} s in every {PERIOD_SECONDS:g} s, and its noise gate drops "
                  "the silence in between")
        self.line()
        url = None if self.control is None else self.control.url
        if url is not None:
            self.line(f"  status page (the phone's flows, live): {url}")
            self.line()

    def elapsed(self) -> float:
        """
        Seconds since the call connected.
        """
        return 0.0 if self.connectedAt is None else self.reactor.seconds() - self.connectedAt

    # -- reporting ------------------------------------------------------------

    def _records(self) -> list[tuple[str, FlowRecord]]:
        records = []
        for label, monitor in self._monitors:
            for record in monitor.flows():
                if record.kind in ("sip", "rtp"):
                    records.append((label, record))
        return records

    def report(self) -> None:
        """
        One line per flow: what it sent since the last report, and why.
        """
        now = self.reactor.seconds()
        first = True
        for label, record in self._records():
            if not record.active:
                continue
            since = self._reported.get(id(record), record.since)
            self._reported[id(record)] = now
            prefix = f"[{self.elapsed():5.1f}s]" if first else " " * 8
            first = False
            self.line(f"{prefix} {label:<6} {record.kind.upper():<3} -> {_address(record.remote):<16} "
                      f"{self._describeSends(label, record, since, now)}")

    def _describeSends(self, label: str, record: FlowRecord, since: float, now: float) -> str:
        """
        The sends of C{record} after C{since}, in order: runs of one kind,
        each keep-alive with the idle time that preceded it.
        """
        groups: list[list[Any]] = []  # [kind, count, idle times before each keep-alive]
        previousEnd = record.since
        for start, end, kind, count in record.runs:
            if end > since:
                kind = SendKind(kind)
                if groups and groups[-1][0] is kind:
                    groups[-1][1] += count
                else:
                    groups.append([kind, count, []])
                if kind in _KEEPALIVE_KINDS:
                    groups[-1][2].append(start - previousEnd)
            previousEnd = end
        parts = []
        for kind, count, idles in groups:
            singular, plural = _KIND_TEXT[kind]
            text = f"{count} {singular if count == 1 else plural}"
            if idles:
                shown = list(dict.fromkeys(f"{idle:.2f}" for idle in idles))
                text += f"{' each' if count > 1 and len(shown) == 1 else ''} after {', '.join(shown)} s idle"
            elif kind is SendKind.VOICE:
                text += " (talking)"
            parts.append(text)
        if parts:
            return ", ".join(parts)
        idle = record.idleFor(now)
        why = "silent, keep-alive off" if label == "office" else "silent"
        late = ": past the NAT session time!" if idle * 1000 >= self.natSessionTimeMs else ""
        return f"nothing ({why}); idle for {idle:.1f} s{late}"

    def summary(self) -> bool:
        """
        Print the summary table and the verdict.

        @return: Whether every flow with keep-alive stayed below the NAT
            session time.
        """
        nat = self.natSessionTimeMs / 1000
        now = self.reactor.seconds()
        self.line()
        self.line(f"Summary: {self.elapsed():.1f} s of call; the NAT drops a binding idle for {nat:g} s")
        self.line()
        header = (f"  {'flow':<10} {'to':<16} {'voice':>6} {'silence':>8} {'OPTIONS':>8} {'other':>6}"
                  f" {'longest idle':>13}  verdict")
        self.line(header)
        self.line("  " + "-" * (len(header) - 2))
        proven = True
        for label, record in self._records():
            counts = record.counts
            idle = record.longestIdle(now)
            keptAlive = label == "phone"
            survived = idle < nat
            if keptAlive and not survived:
                proven = False
            verdict = f"open (< {nat:g} s)" if survived else \
                f"EXPIRED: a NAT would have dropped it{'' if keptAlive else ' (keep-alive off)'}"
            rtp = record.kind == "rtp"
            self.line(f"  {label + ' ' + record.kind.upper():<10} {_address(record.remote):<16} "
                      f"{counts[SendKind.VOICE] if rtp else '-':>6} "
                      f"{counts[SendKind.RTP_KEEPALIVE] if rtp else '-':>8} "
                      f"{'-' if rtp else counts[SendKind.OPTIONS_KEEPALIVE]:>8} "
                      f"{'-' if rtp else counts[SendKind.SIGNALLING] + counts[SendKind.CRLF_KEEPALIVE]:>6} "
                      f"{idle:>11.2f} s  {verdict}")
        self.line()
        if proven:
            self.line(f"Keep-alive worked: no flow of the phone went {nat:g} s without a packet, although it was "
                      "silent most of the time.")
        else:
            self.line("Keep-alive FAILED: a flow of the phone stayed idle past the NAT session time.")
        return proven

    def whatNext(self) -> None:
        url = None if self.control is None else self.control.url
        self.line()
        self.line("What to try next:")
        self.line("  sh scripts/run.sh --forever                  run until Ctrl-C and watch the status page"
                  + (f" ({url})" if url else ""))
        self.line("  sh scripts/run.sh --nat-session-time 10000   a NAT with a longer timeout: fewer keep-alives")
        self.line("  .venv/bin/twistd -n lmevoip --auto-answer    the engine as a daemon with its control API")
        self.line("  curl -s http://127.0.0.1:8060/api/flows      (while the daemon runs) see docs/operator.rst")

    # -- the end ----------------------------------------------------------------

    def finish(self) -> Deferred[int]:
        """
        Hang up, print the summary, stop everything. Idempotent (it also
        runs from the reactor's shutdown on Ctrl-C).

        @return: A Deferred firing with the exit code.
        """
        if self._finishing is None:
            self._finishing = Deferred.fromCoroutine(self._finish())
        return self._finishing

    async def _finish(self) -> int:
        if self._report.running:
            self._report.stop()
        if self.connectedAt is not None:
            if self.phone.getLineStatus(0).state is not LineState.IDLE:
                self.phone.terminateCall(0)
                try:
                    await self.phone.whenEvent(EventName.SipCallComplete, line=0, timeout=5)
                except Exception:
                    pass
            proven = self.summary()
            self.exitCode = 0 if proven else 1
            self.whatNext()
        await self._stopEngines()
        return self.exitCode

    async def _stopEngines(self) -> None:
        if self.control is not None:
            await self.control.stopService()
            self.control.site.monitor.close()
        for _, monitor in self._monitors:
            monitor.close()
        for engine in (self.phone, self.office):
            if engine.running:
                await engine.stopService()


def _address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parseArguments(argv: list[str]) -> argparse.Namespace:
    """
    The demo's command line.
    """
    parser = argparse.ArgumentParser(
        prog="python -m lmevoip.demo",
        description="NAT keep-alive demo: two lmevoip engines on loopback, one calling the other.")
    parser.add_argument("--duration", type=float, default=30.0, metavar="SECONDS",
                        help="how long the call lasts (default 30)")
    parser.add_argument("--forever", action="store_true", help="keep the call up until Ctrl-C")
    parser.add_argument("--nat-session-time", type=int, default=3000, metavar="MS",
                        help="the NAT session time keep-alive must beat, 1000-3600000 ms (default 3000)")
    parser.add_argument("--report-every", type=float, default=3.0, metavar="SECONDS",
                        help="seconds between progress reports (default 3)")
    parser.add_argument("--control", default="tcp:8060:interface=127.0.0.1", metavar="ENDPOINT",
                        help="where to serve the status page (a Twisted endpoint; another free port when taken; "
                             "none to disable)")
    parser.add_argument("--verbose", action="store_true", help="log the engines' info messages to stderr")
    options = parser.parse_args(argv)
    if options.duration <= 0 or options.report_every <= 0:
        parser.error("--duration and --report-every must be positive")
    if options.control.lower() == "none":
        options.control = None
    return options


def main(argv: list[str] | None = None) -> int:
    """
    Run the demo on the global reactor and return its exit code.
    """
    options = parseArguments(sys.argv[1:] if argv is None else argv)
    level = LogLevel.info if options.verbose else LogLevel.warn
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(defaultLogLevel=level)])],
        redirectStandardIO=False)
    from twisted.internet import reactor

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    demo = Demo(reactor, write, duration=options.duration, natSessionTimeMs=options.nat_session_time,
                reportEvery=options.report_every, forever=options.forever, control=options.control)
    codes: list[int] = []

    def start() -> None:
        done = demo.run()
        done.addErrback(lambda failure: (failure.printTraceback(), 1)[1])
        done.addCallback(codes.append)
        done.addBoth(lambda _: reactor.stop() if reactor.running else None)

    reactor.addSystemEventTrigger("before", "shutdown", demo.finish)
    reactor.callWhenRunning(start)
    reactor.run()
    return codes[0] if codes else demo.exitCode


if __name__ == "__main__":
    sys.exit(main())
