"""
tshark as a real peer: a packet capture on the loopback interface while a
test runs, and the analysis of the resulting pcap with C{tshark -r}.

Example (in a C{twisted.trial.unittest.TestCase})::

    @inlineCallbacks
    def test_keepAlives(self):
        capture = TsharkCapture(self, ports=[sipPort, rtpPort])
        yield capture.start()            # returns once tshark captures
        ...                              # the traffic under test
        pcap = yield capture.stop()      # SIGINT; the file is complete
        messages = yield sipMessages(pcap)
        streams = yield rtpStreams(pcap)
        gap = yield largestIdleGap(pcap, f"udp.srcport == {rtpPort}")

Capturing needs root (or dumpcap's capabilities): L{TsharkCapture} calls
C{requireRoot()}. RTP on arbitrary ports is found by tshark's C{rtp_udp}
heuristic (C{--enable-heuristic rtp_udp}), or forced with decode-as specs
such as C{"udp.port==40000,rtp"}. tshark run as root writes a warning on
standard error; it is dropped from error messages.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from tests.peers import PeerError, PeerProcess, traceDirectory
from tests.peers.ports import LOOPBACK
from tests.support import requireRoot, requireTool

__all__ = [
    "RtpPacketRecord",
    "RtpStream",
    "SipMessageRecord",
    "TsharkCapture",
    "TsharkError",
    "largestGap",
    "largestIdleGap",
    "malformedCount",
    "packetTimes",
    "parseFields",
    "parseRtpPackets",
    "parseRtpStreams",
    "parseSipMessages",
    "rtpPackets",
    "rtpStreams",
    "runTshark",
    "sipMessages",
]

_log = Logger(namespace="tests.peers.tshark")

#: What tshark writes on standard error when run as root.
_ROOT_WARNING = re.compile(r'^Running as user "root" and group "root"\. This could be dangerous\.\n?', re.M)

#: The display filter of "frames tshark found malformed or in error".
MALFORMED_FILTER = "_ws.malformed or _ws.expert.severity >= error"


class TsharkError(PeerError):
    """
    tshark failed (bad filter, unreadable file) or its output made no sense.
    """


def _cleanStderr(text: str) -> str:
    return _ROOT_WARNING.sub("", text).strip()


# -- capturing ------------------------------------------------------------------


class TsharkCapture:
    """
    A capture with C{tshark -i lo -w FILE} while a test runs.

    tshark says C{Capturing on} some 20 ms before packets really reach the
    file, and at C{SIGINT} packets still in the kernel's buffer may be lost.
    So the capture also takes UDP port L{probePort}, where the harness sends
    itself small probe datagrams, and has tshark print each packet's UDP
    ports (C{-P -l -T fields}): L{start} returns once a probe has been
    captured, and L{stop} first waits until a last probe, sent after the
    test's traffic, has been captured. The probes (C{lmevoip-tshark-probe})
    stay in the file; they are neither SIP nor RTP.

    @ivar path: the capture file (pcapng) in the test's directory.
    @ivar captureFilter: the BPF capture filter given (L{None}: all).
    @ivar probePort: the UDP port of the probes.
    @ivar process: the L{PeerProcess} once started.
    """

    log = Logger()
    PROBE = b"lmevoip-tshark-probe"

    def __init__(
        self,
        testCase: Any,
        ports: Iterable[int] = (),
        captureFilter: str | None = None,
        interface: str = "lo",
        reactor: Any = None,
        stopGrace: float = 10.0,
    ) -> None:
        """
        @param testCase: the running C{TestCase}: the file goes in its
            directory and its cleanup stops the capture.
        @param ports: capture UDP traffic to or from these ports
            (C{udp port X or udp port Y}).
        @param captureFilter: a BPF filter instead of C{ports}.
        @param interface: the interface (loopback only, by the project's
            rules).
        @param reactor: the reactor (the global one by default).
        @param stopGrace: seconds between SIGINT and SIGKILL when stopping.
        """
        if reactor is None:
            from twisted.internet import reactor as globalReactor
            reactor = globalReactor
        self.executable = requireTool("tshark")
        requireRoot()
        ports = list(ports)
        if captureFilter is None and ports:
            captureFilter = " or ".join(f"udp port {port}" for port in ports)
        self.captureFilter = captureFilter
        self.reactor = reactor
        self.stopGrace = stopGrace
        self.path = traceDirectory(testCase, "tshark") / "capture.pcapng"
        self._probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._probe.bind((LOOPBACK, 0))
        self._probe.setblocking(False)
        self.probePort: int = self._probe.getsockname()[1]
        bpf = f"udp port {self.probePort}"
        if captureFilter:
            bpf = f"({captureFilter}) or {bpf}"
        self.argv = [self.executable, "-i", interface, "-n", "-w", str(self.path), "-f", bpf,
                     "-P", "-l", "-T", "fields", "-e", "udp.srcport", "-e", "udp.dstport"]
        self.process: PeerProcess | None = None
        testCase.addCleanup(self._cleanup)

    def _sendProbe(self, sock: socket.socket) -> None:
        try:
            sock.sendto(self.PROBE, (LOOPBACK, self.probePort))
        except OSError as e:  # pragma: no cover - loopback sends do not fail
            self.log.warn("probe not sent: {error}", error=e)

    @inlineCallbacks
    def _probeUntilSeen(self, sock: socket.socket, timeout: float) -> Any:
        """
        Send probes from C{sock} to the probe port until tshark prints one.
        """
        assert self.process is not None
        seen = self.process.waitForOutput(f"{sock.getsockname()[1]}\t{self.probePort}\n".encode(),
                                          "stdout", timeout)
        loop = task.LoopingCall(self._sendProbe, sock)
        loop.clock = self.reactor
        loop.start(0.02)
        try:
            yield seen
        finally:
            loop.stop()

    @inlineCallbacks
    def start(self, timeout: float = 20.0) -> Any:
        """
        Start capturing.

        @return: a Deferred firing with this capture once a probe sent to
            the capture has been captured (so the test's packets sent from
            then on are in the file); it fails with tshark's output if
            tshark ends or captures nothing in time.
        """
        self.process = PeerProcess(self.argv, self.reactor, cwd=self.path.parent, name="tshark")
        self.process.start()
        yield self.process.waitForOutput(b"Capturing on", "stderr", timeout)
        yield self._probeUntilSeen(self._probe, timeout)
        return self

    @inlineCallbacks
    def stop(self, flushTimeout: float = 5.0) -> Any:
        """
        Stop capturing: wait until a last probe is captured (everything sent
        before it is then in the file), then SIGINT and wait for tshark and
        its dumpcap to end.

        @return: a Deferred firing with the L{Path} of the capture file.
        @raise TsharkError: the file was not written.
        """
        if self.process is None:
            raise TsharkError("the capture was never started")
        if self.process.running:
            barrier = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            barrier.bind((LOOPBACK, 0))
            barrier.setblocking(False)
            try:
                yield self._probeUntilSeen(barrier, flushTimeout)
            except PeerError as e:
                self.log.warn("the last probe was not captured: {error}", error=e)
            finally:
                barrier.close()
        exit = yield self.process.stop("INT", self.stopGrace)
        self._probe.close()
        if not self.path.exists():
            raise TsharkError(f"tshark ended ({exit}) without writing {self.path}\n"
                              + _cleanStderr(self.process.stderr))
        return self.path

    def _cleanup(self) -> Deferred[Any] | None:
        self._probe.close()
        if self.process is None:
            return None
        return self.process.stop("INT", self.stopGrace)


# -- running tshark -r ------------------------------------------------------------


@inlineCallbacks
def runTshark(args: Sequence[str], reactor: Any = None, timeout: float = 60.0) -> Any:
    """
    Run C{tshark -n ARGS} to completion through the reactor.

    @param args: the arguments after C{-n}.
    @param reactor: the reactor (the global one by default).
    @param timeout: seconds before tshark is stopped and this fails.
    @return: a Deferred firing with tshark's standard output (str).
    @raise TsharkError: tshark exited non-zero or timed out.
    """
    if reactor is None:
        from twisted.internet import reactor as globalReactor
        reactor = globalReactor
    executable = requireTool("tshark")
    process = PeerProcess([executable, "-n", *args], reactor, name="tshark -r", outputLimit=None)
    process.start()
    timer = reactor.callLater(timeout, process.stop, "TERM", 2.0)
    exit = yield process.whenEnded()
    if timer.active():
        timer.cancel()
    if exit.stoppedByHarness:
        raise TsharkError(f"tshark {' '.join(args)} did not finish within {timeout}s")
    if exit.exitCode != 0:
        raise TsharkError(f"tshark {' '.join(args)} failed ({exit}): {_cleanStderr(process.stderr)}")
    return process.stdout


def _readArgs(pcap: str | Path, decodeAs: Iterable[str]) -> list[str]:
    args = ["-r", str(pcap), "--enable-heuristic", "rtp_udp"]
    for spec in decodeAs:
        args += ["-d", spec]
    return args


def parseFields(text: str, count: int) -> list[list[str]]:
    """
    Split C{tshark -T fields} output (tab-separated) into rows of C{count}
    fields, padding short rows with empty strings.
    """
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split("\t")
        rows.append((fields + [""] * count)[:count])
    return rows


# -- SIP -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SipMessageRecord:
    """
    One SIP message of a capture.

    @ivar time: capture time (seconds since the epoch).
    @ivar src: C{"ip:port"} of the sender.
    @ivar dst: C{"ip:port"} of the receiver.
    @ivar firstLine: the request line or status line.
    @ivar callId: the Call-ID (empty if tshark found none).
    @ivar cseq: the CSeq value, e.g. C{"1 OPTIONS"}.
    """

    time: float
    src: str
    dst: str
    firstLine: str
    callId: str
    cseq: str

    @property
    def isRequest(self) -> bool:
        return not self.firstLine.startswith("SIP/")

    @property
    def method(self) -> str:
        """
        The request's method, or the CSeq method of a response.
        """
        if self.isRequest:
            return self.firstLine.split(" ", 1)[0]
        return self.cseq.split(" ")[-1]


_SIP_FIELDS = ["frame.time_epoch", "ip.src", "ipv6.src", "udp.srcport", "ip.dst", "ipv6.dst",
               "udp.dstport", "sip.Request-Line", "sip.Status-Line", "sip.Call-ID", "sip.CSeq"]


def _fieldArgs(fields: Sequence[str]) -> list[str]:
    args = ["-T", "fields", "-E", "separator=/t", "-E", "occurrence=f"]
    for name in fields:
        args += ["-e", name]
    return args


def _address(ip4: str, ip6: str, port: str) -> str:
    if ip6 and not ip4:
        return f"[{ip6}]:{port}"
    return f"{ip4}:{port}"


def parseSipMessages(text: str) -> list[SipMessageRecord]:
    """
    Parse the output of C{tshark -Y sip} with the fields of L{sipMessages}.
    """
    records = []
    for row in parseFields(text, len(_SIP_FIELDS)):
        time, ip4s, ip6s, sport, ip4d, ip6d, dport, requestLine, statusLine, callId, cseq = row
        records.append(SipMessageRecord(
            time=float(time),
            src=_address(ip4s, ip6s, sport),
            dst=_address(ip4d, ip6d, dport),
            firstLine=requestLine or statusLine,
            callId=callId,
            cseq=cseq,
        ))
    return records


def sipMessages(pcap: str | Path, reactor: Any = None) -> Deferred[list[SipMessageRecord]]:
    """
    Return the SIP messages of a capture (over UDP, any port: tshark's SIP
    heuristic finds them).

    @return: a Deferred firing with a list of L{SipMessageRecord}, in
        capture order.
    """
    args = ["-r", str(pcap), "-Y", "sip", *_fieldArgs(_SIP_FIELDS)]
    return runTshark(args, reactor).addCallback(parseSipMessages)


# -- malformed frames --------------------------------------------------------------


def malformedCount(pcap: str | Path, decodeAs: Iterable[str] = (), reactor: Any = None) -> Deferred[int]:
    """
    Count the frames tshark finds malformed or flags with an expert error.

    @param decodeAs: decode-as specs (C{"udp.port==40000,rtp"}) so that
        tshark checks those ports as that protocol; RTP is otherwise found
        by heuristic only, which never flags a broken packet.
    @return: a Deferred firing with the count.
    """
    args = [*_readArgs(pcap, decodeAs), "-Y", MALFORMED_FILTER, *_fieldArgs(["frame.number"])]
    return runTshark(args, reactor).addCallback(lambda text: len(parseFields(text, 1)))


# -- RTP -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RtpStream:
    """
    One row of C{tshark -z rtp,streams}.

    @ivar src: C{"ip:port"} of the sender.
    @ivar dst: C{"ip:port"} of the receiver.
    @ivar ssrc: the SSRC.
    @ivar payload: tshark's payload name(s), e.g. C{"g711U"}.
    @ivar packets: packets in the stream.
    @ivar lost: packets missing by sequence number (negative: duplicates).
    @ivar lostPercent: C{lost} as a percentage.
    @ivar maxDelta: the largest interval between packets (ms).
    @ivar meanJitter: the mean RFC 3550 jitter (ms).
    @ivar maxJitter: the largest RFC 3550 jitter (ms).
    @ivar problems: tshark marked the stream as having problems
        (sequence errors, wrong timestamps, ...).
    @ivar start: relative time of the first packet (s).
    @ivar end: relative time of the last packet (s).
    """

    src: str
    dst: str
    ssrc: int
    payload: str
    packets: int
    lost: int
    lostPercent: float
    maxDelta: float
    meanJitter: float
    maxJitter: float
    problems: bool
    start: float
    end: float


_NUMBER = r"-?[\d.]+"
_STREAM_ROW = re.compile(
    rf"^\s*(?P<start>{_NUMBER})\s+(?P<end>{_NUMBER})\s+"
    r"(?P<srcIp>\S+)\s+(?P<srcPort>\d+)\s+(?P<dstIp>\S+)\s+(?P<dstPort>\d+)\s+"
    r"(?P<ssrc>0x[0-9a-fA-F]+)\s+(?P<payload>.+?)\s+(?P<packets>\d+)\s+"
    rf"(?P<lost>-?\d+)\s+\((?P<lostPercent>{_NUMBER})%\)\s+"
    rf"(?P<minDelta>{_NUMBER})\s+(?P<meanDelta>{_NUMBER})\s+(?P<maxDelta>{_NUMBER})\s+"
    rf"(?P<minJitter>{_NUMBER})\s+(?P<meanJitter>{_NUMBER})\s+(?P<maxJitter>{_NUMBER})"
    r"\s*(?P<problems>X)?\s*$"
)


def parseRtpStreams(text: str) -> list[RtpStream]:
    """
    Parse the table C{tshark -q -z rtp,streams} prints.

    @raise TsharkError: the table is missing or a row does not parse.
    """
    lines = text.splitlines()
    try:
        begin = next(i for i, line in enumerate(lines) if "RTP Streams" in line)
    except StopIteration:
        raise TsharkError(f"no RTP streams table in tshark's output: {text[:300]!r}") from None
    streams = []
    for line in lines[begin + 1:]:
        if line.startswith("====="):
            break
        if not line.strip() or "Src IP addr" in line:
            continue
        match = _STREAM_ROW.match(line)
        if match is None:
            raise TsharkError(f"unparsable RTP stream row: {line!r}")
        g = match.groupdict()
        streams.append(RtpStream(
            src=f"{g['srcIp']}:{g['srcPort']}",
            dst=f"{g['dstIp']}:{g['dstPort']}",
            ssrc=int(g["ssrc"], 16),
            payload=g["payload"],
            packets=int(g["packets"]),
            lost=int(g["lost"]),
            lostPercent=float(g["lostPercent"]),
            maxDelta=float(g["maxDelta"]),
            meanJitter=float(g["meanJitter"]),
            maxJitter=float(g["maxJitter"]),
            problems=g["problems"] is not None,
            start=float(g["start"]),
            end=float(g["end"]),
        ))
    return streams


def rtpStreams(pcap: str | Path, decodeAs: Iterable[str] = (), reactor: Any = None) -> Deferred[list[RtpStream]]:
    """
    Return the RTP streams of a capture (C{tshark -q -z rtp,streams}).

    @param decodeAs: decode-as specs for RTP the heuristic misses.
    @return: a Deferred firing with a list of L{RtpStream}.
    """
    args = [*_readArgs(pcap, decodeAs), "-q", "-z", "rtp,streams"]
    return runTshark(args, reactor).addCallback(parseRtpStreams)


@dataclass(frozen=True)
class RtpPacketRecord:
    """
    One RTP packet of a capture.

    @ivar time: capture time (seconds since the epoch).
    @ivar ssrc: the SSRC.
    @ivar seq: the sequence number.
    @ivar timestamp: the RTP timestamp.
    @ivar marker: the marker bit.
    @ivar payloadType: the payload type.
    @ivar src: C{"ip:port"} of the sender.
    @ivar dst: C{"ip:port"} of the receiver.
    """

    time: float
    ssrc: int
    seq: int
    timestamp: int
    marker: bool
    payloadType: int
    src: str
    dst: str


_RTP_FIELDS = ["frame.time_epoch", "rtp.ssrc", "rtp.seq", "rtp.timestamp", "rtp.marker",
               "rtp.p_type", "ip.src", "udp.srcport", "ip.dst", "udp.dstport"]


def parseRtpPackets(text: str) -> list[RtpPacketRecord]:
    """
    Parse the output of C{tshark -Y rtp} with the fields of L{rtpPackets}.
    """
    records = []
    for row in parseFields(text, len(_RTP_FIELDS)):
        time, ssrc, seq, timestamp, marker, payloadType, srcIp, srcPort, dstIp, dstPort = row
        records.append(RtpPacketRecord(
            time=float(time),
            ssrc=int(ssrc, 0),
            seq=int(seq),
            timestamp=int(timestamp),
            marker=marker in ("1", "True"),
            payloadType=int(payloadType),
            src=f"{srcIp}:{srcPort}",
            dst=f"{dstIp}:{dstPort}",
        ))
    return records


def rtpPackets(pcap: str | Path, decodeAs: Iterable[str] = (), displayFilter: str = "rtp",
               reactor: Any = None) -> Deferred[list[RtpPacketRecord]]:
    """
    Return the RTP packets of a capture.

    @param displayFilter: which packets (e.g. C{"rtp and udp.srcport == 40000"}).
    @return: a Deferred firing with a list of L{RtpPacketRecord}.
    """
    args = [*_readArgs(pcap, decodeAs), "-Y", displayFilter, *_fieldArgs(_RTP_FIELDS)]
    return runTshark(args, reactor).addCallback(parseRtpPackets)


# -- gaps ---------------------------------------------------------------------------------


def packetTimes(pcap: str | Path, displayFilter: str, decodeAs: Iterable[str] = (),
                reactor: Any = None) -> Deferred[list[float]]:
    """
    Return the capture times (seconds since the epoch) of the packets that
    match C{displayFilter}.
    """
    args = [*_readArgs(pcap, decodeAs), "-Y", displayFilter, *_fieldArgs(["frame.time_epoch"])]
    return runTshark(args, reactor).addCallback(
        lambda text: [float(row[0]) for row in parseFields(text, 1)])


def largestGap(times: Iterable[float], start: float | None = None, end: float | None = None) -> float:
    """
    Return the longest interval without a packet.

    @param times: packet times, in any order.
    @param start: when given, the interval from C{start} to the first packet
        counts too (the time the flow was idle before its first packet).
    @param end: when given, the interval from the last packet to C{end}
        counts too.
    @return: the interval in seconds; with no packet, C{end - start} if
        both are given.
    @raise ValueError: fewer than two instants to measure between.
    """
    instants = sorted(times)
    if start is not None:
        instants.insert(0, start)
    if end is not None:
        instants.append(end)
    if len(instants) < 2:
        raise ValueError("need at least two instants (packets or bounds) to measure a gap")
    return max(later - earlier for earlier, later in zip(instants, instants[1:]))


def largestIdleGap(pcap: str | Path, displayFilter: str, start: float | None = None,
                   end: float | None = None, decodeAs: Iterable[str] = (),
                   reactor: Any = None) -> Deferred[float]:
    """
    Return the longest interval without a packet matching C{displayFilter}
    (for keep-alive checks: "never more than N s without a keep-alive").

    @param start: epoch time the window opens (see L{largestGap}).
    @param end: epoch time the window closes.
    @return: a Deferred firing with the gap in seconds.
    """
    return packetTimes(pcap, displayFilter, decodeAs, reactor).addCallback(
        lambda times: largestGap(times, start, end))
