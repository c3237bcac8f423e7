"""
Benchmark: N concurrent G.711 RTP sending sessions in one process, lmevoip
against a bare batched sendto pacer.

For each session count N this process (on the real reactor) runs, one
after the other:

  - B{bare}: the floor. One reactor timer per 20 ms tick (drift-free:
    tick k is due at t0 + k * 20 ms) that sends a precomputed 172-byte
    RTP packet for each of N flows with C{sock.sendto} in a loop, each
    flow from its own UDP socket;
  - B{lmevoip}: N L{RtpSession}s on one shared L{Pacer} (its default
    phases: the sessions spread over sub-ticks of the 20 ms tick), each
    with a L{ToneSource} encoded to PCMU (payload type 0, 20 ms), bound to
    an RTP/RTCP port pair from a L{PortAllocator} and configured with a
    L{NegotiatedMedia}, so each tick each session reads a frame, encodes
    it, builds the RTP packet and writes it, and RTCP runs on its timer.

Both send to a receiver that drains the RTP port and the RTCP port after
it in a separate process, polling every 5 ms (its CPU is not counted but
is printed; see RECEIVER for why it polls). Over a
fixed window after a warm-up it measures:

  - packets per second sent, against the nominal N * 50;
  - CPU: C{time.process_time()} of this process over the window's wall
    time: microseconds per packet and percent of one core;
  - send lateness: the reactor time a packet is written minus the
    scheduled time of its tick, p50/p99/max in ms. It is sampled on every
    k-th flow (about 100 per tick, the last flow always), so it covers the
    whole batch: the first flows of a batch are as late as the timer, the
    last ones as late as the timer plus the batch. For lmevoip each
    sampled session's own scheduled time is recorded by a wrapper around
    its C{_tick} (the callable the pacer calls: sessions on different
    sub-ticks have different scheduled times) and its sends are seen by
    C{RtpSession.addSendObserver};
  - tick lateness (of a probe ticker registered on the pacer before the
    sessions: the timer of the first sub-tick of each tick), ticks the
    probe never saw, the pacer's own skipped sub-ticks and lateness
    percentiles (C{PacerStats}), and packets lost between sender and
    receiver (whole phase).

It prints the ratios lmevoip / bare and the target at 1,000 sessions
(50,000 packets/s under 60 % of a core, p99 send lateness under 10 ms),
then what one packet's steps cost when timed alone (source, encoder, RTP
packet, Twisted's UDP write, bare sendto).

Where the time goes, measured in place: C{--ablations N} also runs, at N
sessions, variants of the lmevoip sender that leave one part out or put
one back (a precomputed frame instead of the tone generator, C{sendonly}
instead of C{sendrecv}, a precomputed payload instead of the encoder,
Twisted's C{udp.Port.write} instead of the session's C{sendto}); the
difference in CPU per packet is what that part costs in the real loop.
C{--profile N} runs one variant under cProfile instead. C{--phases S}
sets the pacer's sub-ticks per tick (1: one batch per tick).

Usage::

    .venv/bin/python bench/bench_rtp_sessions.py             # about 2.5 minutes
    .venv/bin/python bench/bench_rtp_sessions.py --quick     # ~20 seconds
    .venv/bin/python bench/bench_rtp_sessions.py --sessions 1000 --seconds 30
    .venv/bin/python bench/bench_rtp_sessions.py --sessions 200 --seconds 10 --ablations 200
    .venv/bin/python bench/bench_rtp_sessions.py --sessions 1000 --seconds 10 --phases 1
    .venv/bin/python bench/bench_rtp_sessions.py --profile 300 --variant lm-fixed-sendonly
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import math
import os
import pstats
import socket
import statistics
import struct
import subprocess
import sys
import time
from array import array
from typing import Any

from twisted.internet import defer, task
from twisted.internet.protocol import DatagramProtocol

from lmevoip.rtp.audio import ToneSource
from lmevoip.rtp.codecs import codecByName
from lmevoip.rtp.packet import RtpPacket
from lmevoip.rtp.pacer import Pacer
from lmevoip.rtp.ports import PortAllocator
from lmevoip.rtp.session import RtpSession
from lmevoip.sip.sdp import NegotiatedMedia

LOOPBACK = "127.0.0.1"
PTIME = 0.020
FRAME_SAMPLES = 160
PACKETS_PER_SECOND = 1 / PTIME

#: The target at 1,000 sessions.
TARGET_SESSIONS = 1000
TARGET_CPU_PERCENT = 60.0
TARGET_P99_MS = 10.0

#: About this many lateness samples per tick.
SAMPLES_PER_TICK = 100

# The receiver: a separate process that drains an RTP port and the RTCP port
# after it, and answers "count" on stdin with "rtpPackets rtpOctets
# rtcpPackets cpuSeconds". It prints its RTP port first. It polls: it sleeps
# DRAIN_INTERVAL between drains and never waits on the sockets, so a send
# never has to wake it up. (A receiver blocked in poll() on the socket would
# be woken by nearly every packet of a sender that spreads its sends, and
# the sender's sendto pays for that wake-up: a loopback artefact that a
# packet leaving through a network card does not have, and one that
# penalises the slower sender, since a fast burst finds the receiver
# already awake.)
DRAIN_INTERVAL = 0.005
RECEIVER = r"""
import os, select, socket, sys, time
def bind(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 16 << 20)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    sock.bind(("127.0.0.1", port))
    sock.setblocking(False)
    return sock
for _ in range(200):
    rtp = bind(0)
    port = rtp.getsockname()[1]
    if port % 2 or port >= 65535:
        rtp.close()
        continue
    try:
        rtcp = bind(port + 1)
    except OSError:
        rtp.close()
        continue
    break
print(port, flush=True)
interval = float(sys.argv[1])
counts = {rtp: [0, 0], rtcp: [0, 0]}
buffer = bytearray(2048)
control = select.poll()
control.register(sys.stdin, select.POLLIN)
while True:
    time.sleep(interval)
    for sock in (rtp, rtcp):
        count = counts[sock]
        recv = sock.recv_into
        try:
            while True:
                count[1] += recv(buffer)
                count[0] += 1
        except BlockingIOError:
            pass
    if control.poll(0):
        line = sys.stdin.readline()
        if not line or line.strip() == "quit":
            sys.exit(0)
        times = os.times()
        print(counts[rtp][0], counts[rtp][1], counts[rtcp][0], times.user + times.system,
              flush=True)
"""


class Receiver:
    """
    The receiver process, started and stopped by PID.

    @ivar port: its RTP port (RTCP is C{port + 1}).
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", RECEIVER, str(DRAIN_INTERVAL)],
                                        stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line.strip():
            self.stop()
            raise RuntimeError("the receiver did not start")
        self.port = int(line)

    def counts(self) -> tuple[int, int, int, float]:
        """
        C{(rtpPackets, rtpOctets, rtcpPackets, cpuSeconds)} so far.
        """
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        rtp, octets, rtcp, cpu = self.process.stdout.readline().split()
        return int(rtp), int(octets), int(rtcp), float(cpu)

    def stop(self) -> None:
        try:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
            self.process.wait(timeout=5)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


class Meter:
    """
    What a phase records: the scheduled time of the tick being run, and,
    while the window is open, the lateness of sampled sends and of ticks.
    """

    def __init__(self, seconds: Any) -> None:
        self.seconds = seconds
        self.measuring = False
        self.tickTime = 0.0
        self.sendLateness = array("d")
        self.tickLateness = array("d")

    def tick(self, tickTime: float) -> None:
        self.tickTime = tickTime
        if self.measuring:
            self.tickLateness.append(self.seconds() - tickTime)

    def scheduled(self, tickTime: float) -> None:
        """
        A sampled session's own tick is about to run (with phases, sessions
        tick at different offsets of the period: each send is measured
        against its own session's scheduled time).
        """
        self.tickTime = tickTime

    def sent(self, addr: Any = None, size: int = 0) -> None:
        if self.measuring:
            self.sendLateness.append(self.seconds() - self.tickTime)


def sampleStride(n: int) -> int:
    return max(1, n // SAMPLES_PER_TICK)


def isSampled(index: int, n: int) -> bool:
    """
    Whether flow C{index} of C{n} is sampled: every stride-th, and the last.
    """
    stride = sampleStride(n)
    return index % stride == stride - 1 or index == n - 1


# -- the two senders ---------------------------------------------------------------------


class BarePacer:
    """
    The floor: one drift-free timer per tick, a precomputed packet per flow,
    C{sendto} in a loop.
    """

    def __init__(self, reactor: Any, n: int, destination: tuple[str, int], meter: Meter) -> None:
        self.reactor = reactor
        self.meter = meter
        self.destination = destination
        self.sockets = []
        self.packets = []
        for index in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((LOOPBACK, 0))
            sock.setblocking(False)
            self.sockets.append(sock)
            header = struct.pack("!BBHII", 0x80, 0, index & 0xFFFF, 0, 0x10000 + index)
            self.packets.append(header + bytes([0xFF]) * FRAME_SAMPLES)
        assert len(self.packets[0]) == 172
        # Sends grouped so that one lateness sample follows each group; the
        # group boundaries are the sampled flows.
        stride = sampleStride(n)
        self.groups = []
        for start in range(0, n, stride):
            stop = min(n, start + stride)
            self.groups.append([(s.sendto, p) for s, p in
                                zip(self.sockets[start:stop], self.packets[start:stop])])
        self.packetsSent = 0
        self.missedTicks = 0
        self.origin = 0.0
        self.index = 0
        self.call: Any = None

    def start(self) -> None:
        self.origin = self.reactor.seconds()
        self.index = 1
        self.call = self.reactor.callLater(PTIME, self.fire)

    def fire(self) -> None:
        seconds = self.reactor.seconds
        now = seconds()
        scheduled = self.origin + self.index * PTIME
        behind = math.floor((now - scheduled) / PTIME)
        if behind > 0:
            self.missedTicks += behind
            self.index += behind
            scheduled = self.origin + self.index * PTIME
        meter = self.meter
        meter.tick(scheduled)
        destination = self.destination
        sent = 0
        for group in self.groups:
            for sendto, packet in group:
                sendto(packet, destination)
            sent += len(group)
            meter.sent()
        self.packetsSent += sent
        self.index += 1
        self.call = self.reactor.callLater(max(0.0, self.origin + self.index * PTIME - seconds()),
                                           self.fire)

    def counters(self) -> tuple[int, int]:
        return self.packetsSent, self.missedTicks

    def stop(self) -> Any:
        if self.call is not None and self.call.active():
            self.call.cancel()
        for sock in self.sockets:
            sock.close()
        return defer.succeed(None)


class FixedFrameSource:
    """
    An audio source that returns the same precomputed tone frame every
    time (for the ablation runs: lmevoip without the tone generator).
    """

    def __init__(self, frequency: float) -> None:
        self.frame = ToneSource(frequency).readFrame(FRAME_SAMPLES)

    def readFrame(self, samples: int) -> bytes:
        return self.frame

    def close(self) -> None:
        pass


class SampledTick:
    """
    Stands in for a sampled session's C{_tick} (the callable the pacer
    calls): tells the meter the session's scheduled tick time, then runs
    the session's own tick, whose send the meter's send observer sees.
    """

    def __init__(self, session: RtpSession, meter: Meter) -> None:
        self.tick = session._tick
        self.meter = meter

    def __call__(self, tickTime: float) -> None:
        self.meter.scheduled(tickTime)
        self.tick(tickTime)


class TwistedWrite:
    """
    Stands in for a session's RTP transport in the ablation runs: writes
    with Twisted's C{udp.Port.write}, which checks the address on every
    datagram (the session's own fast path writes with the socket's
    C{sendto}, the address checked once; it only takes that path for a
    real C{udp.Port}, so this wrapper keeps it off).
    """

    def __init__(self, port: Any) -> None:
        self.write = port.write


class FixedPayload:
    """
    Stands in for a session's encoder in the ablation runs: returns one
    precomputed PCMU payload (what is left is the session, the pacer and
    the socket). It replaces the private C{_encode} that C{configure}
    caches, so it must be set after C{configure}.
    """

    def __init__(self) -> None:
        self.payload = codecByName("PCMU").encode(ToneSource(440.0).readFrame(FRAME_SAMPLES))

    def __call__(self, pcm: bytes) -> bytes:
        return self.payload


#: The lmevoip variants: (source, direction, Twisted's write, encode).
VARIANTS = {
    "lmevoip": ("tone", None, False, True),
    "lm-sendonly": ("tone", "sendonly", False, True),
    "lm-fixed": ("fixed", None, False, True),
    "lm-fixed-sendonly": ("fixed", "sendonly", False, True),
    "lm-fixed-sendonly-twisted": ("fixed", "sendonly", True, True),
    "lm-fixed-sendonly-noencode": ("fixed", "sendonly", False, False),
}


class LmevoipSessions:
    """
    N RtpSessions with tone sources on one shared pacer.
    """

    def __init__(self, reactor: Any, n: int, destination: tuple[str, int], meter: Meter,
                 direction: str, source: str = "tone", twistedWrite: bool = False,
                 encode: bool = True, phases: int | None = None) -> None:
        self.pacer = Pacer(reactor) if phases is None else Pacer(reactor, phases=phases)
        self.pacer.add(meter.tick)  # first: the timer of the tick's first sub-tick
        self.allocator = PortAllocator(reactor, interface=LOOPBACK)
        host, port = destination
        media = NegotiatedMedia("PCMU", 0, 8000, host, port, host, port + 1, direction=direction)
        makeSource = ToneSource if source == "tone" else FixedFrameSource
        self.sessions = []
        for index in range(n):
            session = RtpSession(self.pacer, source=makeSource(300.0 + 10 * (index % 100)))
            session.listen(self.allocator, LOOPBACK)
            session.configure(media)
            if twistedWrite:
                session.rtpProtocol.transport = TwistedWrite(session.ports.rtpListener)
            if not encode:
                session._encode = FixedPayload()
            if isSampled(index, n):
                session._tick = SampledTick(session, meter)
                session.addSendObserver(meter.sent)
            self.sessions.append(session)

    def start(self) -> None:
        self.pacer.startService()
        for session in self.sessions:
            session.start()

    def counters(self) -> tuple[int, int]:
        return (sum(s.senderStats.packetsSent for s in self.sessions),
                self.pacer.stats().missedTicks)

    def pacerStats(self) -> Any:
        return self.pacer.stats()

    @defer.inlineCallbacks
    def stop(self) -> Any:
        yield defer.gatherResults([s.stop() for s in self.sessions], consumeErrors=True)
        self.pacer.stopService()
        self.sessions.clear()


# -- a phase ---------------------------------------------------------------------------


def percentile(values: Any, fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


@defer.inlineCallbacks
def runPhase(reactor: Any, kind: str, n: int, receiver: Receiver, args: Any,
             profile: cProfile.Profile | None = None) -> Any:
    """
    Run one sender for its warm-up and window; return its figures.
    """
    gc.collect()
    meter = Meter(reactor.seconds)
    destination = (LOOPBACK, receiver.port)
    received0 = receiver.counts()
    built = time.perf_counter()
    if kind == "bare":
        sender: Any = BarePacer(reactor, n, destination, meter)
    else:
        source, direction, twistedWrite, encode = VARIANTS[kind]
        sender = LmevoipSessions(reactor, n, destination, meter, direction or args.direction,
                                 source, twistedWrite, encode, args.phases)
    built = time.perf_counter() - built
    sender.start()
    try:
        yield task.deferLater(reactor, args.warmup, lambda: None)
        sent0, missed0 = sender.counters()
        meter.measuring = True
        rx0 = receiver.counts()
        if profile is not None:
            profile.enable()
        wall0, cpu0, times0 = time.perf_counter(), time.process_time(), os.times()
        yield task.deferLater(reactor, args.seconds, lambda: None)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        kernel = os.times().system - times0.system
        if profile is not None:
            profile.disable()
        meter.measuring = False
        # No reactor turn happens between here and stop(): sent1 is every
        # packet of the phase.
        sent1, missed1 = sender.counters()
        pacerStats = sender.pacerStats() if kind != "bare" else None
        rx1 = receiver.counts()
    finally:
        yield sender.stop()
    yield task.deferLater(reactor, 0.5, lambda: None)
    received1 = receiver.counts()
    packets = sent1 - sent0
    late = [value * 1000 for value in meter.sendLateness]
    ticks = [value * 1000 for value in meter.tickLateness]
    return {
        "kind": kind,
        "sessions": n,
        "seconds": wall,
        "buildSeconds": built,
        "packetsPerSecond": packets / wall,
        "nominalPerSecond": n * PACKETS_PER_SECOND,
        "cpuPercent": 100 * cpu / wall,
        "cpuMicrosPerPacket": 1e6 * cpu / packets if packets else float("nan"),
        "systemMicrosPerPacket": 1e6 * kernel / packets if packets else float("nan"),
        "p50": statistics.median(late) if late else float("nan"),
        "p99": percentile(late, 0.99),
        "max": max(late) if late else float("nan"),
        "tickP50": statistics.median(ticks) if ticks else float("nan"),
        "tickP99": percentile(ticks, 0.99),
        "samples": len(late),
        # Ticks the window should have had minus those that ran (the probe
        # sees every tick that runs).
        "missedTicks": max(0, round(wall / PTIME) - len(ticks)),
        "pacerMissedTicks": missed1 - missed0,
        # The pacer's own view (its last `window` sub-ticks, in ms).
        "pacerP99": pacerStats.p99 * 1000 if pacerStats else float("nan"),
        "pacerFinishP99": (getattr(pacerStats, "finishP99", float("nan")) * 1000
                           if pacerStats else float("nan")),
        "lost": sent1 - (received1[0] - received0[0]),
        "rtcpPackets": received1[2] - received0[2],
        "receiverCpuPercent": 100 * (rx1[3] - rx0[3]) / wall,
    }


# -- what one packet's steps cost ------------------------------------------------------------


def stepCosts(reactor: Any, receiver: Receiver, repeat: int = 20000) -> list[tuple[str, float]]:
    """
    Time each step of one lmevoip packet alone, in microseconds (best of
    three runs of C{repeat}).
    """
    destination = (LOOPBACK, receiver.port)
    tone = ToneSource(440.0)
    codec = codecByName("PCMU")
    pcm = tone.readFrame(FRAME_SAMPLES)
    payload = codec.encode(pcm)
    data = RtpPacket(0, 1, 160, 0x1234, payload, False).serialize()
    port = reactor.listenUDP(0, DatagramProtocol(), interface=LOOPBACK)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    sock.setblocking(False)
    write, sendto = port.write, sock.sendto

    def best(step: Any) -> float:
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            for index in range(repeat):
                step(index)
            runs.append((time.perf_counter() - started) / repeat * 1e6)
        return min(runs)

    costs = [
        ("ToneSource.readFrame(160)", best(lambda i: tone.readFrame(FRAME_SAMPLES))),
        ("PCMU encode (codec.encode)", best(lambda i: codec.encode(pcm))),
        ("RtpPacket(...).serialize()", best(lambda i: RtpPacket(0, i & 0xFFFF, i * 160 & 0xFFFFFFFF,
                                                                0x1234, payload, False).serialize())),
        ("Twisted udp.Port.write(data, addr)", best(lambda i: write(data, destination))),
        ("bare socket.sendto(data, addr)", best(lambda i: sendto(data, destination))),
    ]
    port.stopListening()
    sock.close()
    return costs


# -- output ---------------------------------------------------------------------------------


HEADER = (f"{'sender':<22} {'N':>5} {'pkt/s':>8} {'nominal':>8} {'CPU us/pkt':>10} {'(sys)':>6} {'CPU %':>7} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'tick p99':>8} {'missed':>6} {'lost':>6} "
          f"{'rx CPU%':>7}")


def formatRow(r: dict[str, Any]) -> str:
    return (f"{r['kind']:<22} {r['sessions']:>5} {r['packetsPerSecond']:>8.0f} "
            f"{r['nominalPerSecond']:>8.0f} {r['cpuMicrosPerPacket']:>10.2f} "
            f"{r['systemMicrosPerPacket']:>6.2f} {r['cpuPercent']:>7.1f} "
            f"{r['p50']:>7.2f} {r['p99']:>7.2f} {r['max']:>7.2f} {r['tickP99']:>8.2f} "
            f"{r['missedTicks']:>6} {r['lost']:>6} {r['receiverCpuPercent']:>7.1f}")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def report(results: dict[tuple[str, int], dict[str, Any]], costs: list[tuple[str, float]],
           args: Any, reactor: Any) -> None:
    print(f"\nG.711 PCMU, 20 ms, {args.seconds:g} s window after {args.warmup:g} s warm-up, "
          f"sessions {args.direction}, reactor {type(reactor).__name__}, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("CPU = this process's process_time over the window, per packet sent and in % of one "
          "core; (sys) = its kernel part;")
    print("the receiver is another process, its CPU in 'rx CPU%';")
    print("lateness = write time minus the tick's scheduled time, sampled across the batch (ms); "
          "lost = sent - received, whole phase\n")
    print(HEADER)
    for key in sorted(results, key=lambda k: (k[1], k[0])):
        print(formatRow(results[key]))
    print("\nratios lmevoip / bare (same run):")
    print(f"{'N':>5} {'pkt/s':>7} {'CPU/pkt':>8} {'CPU %':>7} {'p99':>7}")
    for n in args.sessions:
        if ("bare", n) in results and ("lmevoip", n) in results:
            lm, bare = results["lmevoip", n], results["bare", n]
            print(f"{n:>5} {ratio(lm['packetsPerSecond'], bare['packetsPerSecond']):>7.2f} "
                  f"{ratio(lm['cpuMicrosPerPacket'], bare['cpuMicrosPerPacket']):>8.2f} "
                  f"{ratio(lm['cpuPercent'], bare['cpuPercent']):>7.2f} "
                  f"{ratio(lm['p99'], bare['p99']):>7.2f}")
    if args.ablations and ("lmevoip", args.ablations) in results:
        full = results["lmevoip", args.ablations]
        print(f"\nablations at N={args.ablations}: CPU per packet, and what leaving the part out "
              f"saved against the full session (us/packet):")
        for kind in ("bare", *VARIANTS):
            r = results.get((kind, args.ablations))
            if r is not None:
                print(f"  {kind:<22} {r['cpuMicrosPerPacket']:>7.2f}   "
                      f"{full['cpuMicrosPerPacket'] - r['cpuMicrosPerPacket']:>+7.2f}")
    target = results.get(("lmevoip", TARGET_SESSIONS))
    if target is not None:
        # The CPU the nominal rate would take at the measured cost per packet:
        # a sender that skips ticks uses less CPU because it sends less.
        needed = target["cpuMicrosPerPacket"] * target["nominalPerSecond"] / 1e4
        cpuOk = needed < TARGET_CPU_PERCENT and target["cpuPercent"] < TARGET_CPU_PERCENT
        p99Ok = target["p99"] < TARGET_P99_MS
        rateOk = target["packetsPerSecond"] >= 0.99 * target["nominalPerSecond"]
        print(f"\ntarget at {TARGET_SESSIONS} sessions ({target['nominalPerSecond']:.0f} packets/s "
              f"in one process):")
        print(f"  packets/s: {target['packetsPerSecond']:.0f} "
              f"({'met' if rateOk else 'MISSED'}: {target['missedTicks']} ticks skipped; "
              f"the pacer's own missedTicks counted {target['pacerMissedTicks']} sub-ticks)")
        print(f"  CPU < {TARGET_CPU_PERCENT:g} % of a core: {target['cpuPercent']:.1f} % measured, "
              f"{needed:.0f} % at the nominal rate ({target['cpuMicrosPerPacket']:.1f} us/packet): "
              f"{'met' if cpuOk else 'MISSED'}")
        print(f"  p99 send lateness < {TARGET_P99_MS:g} ms: {target['p99']:.2f} ms: "
              f"{'met' if p99Ok else 'MISSED'}")
        print(f"  (the pacer's own stats: start of batch p99 {target['pacerP99']:.2f} ms, "
              f"end of batch p99 {target['pacerFinishP99']:.2f} ms)")
        bare = results.get(("bare", TARGET_SESSIONS))
        if bare is not None:
            print(f"  (bare pacer, same run: {bare['cpuPercent']:.1f} % of a core, "
                  f"{bare['cpuMicrosPerPacket']:.1f} us/packet, p99 {bare['p99']:.2f} ms)")
    if costs:
        print("\none packet's steps timed alone (us, best of 3):")
        for name, micros in costs:
            print(f"  {name:<36} {micros:>7.2f}")
        lm = [r for k, r in results.items() if k[0] == "lmevoip"]
        if lm:
            biggest = max(lm, key=lambda r: r["sessions"])
            steps = sum(m for name, m in costs if not name.startswith("bare"))
            print(f"  {'sum of the lmevoip steps':<36} {steps:>7.2f}")
            print(f"  {'lmevoip CPU per packet at N=' + str(biggest['sessions']):<36} "
                  f"{biggest['cpuMicrosPerPacket']:>7.2f}  (the rest: session, pacer, RTCP, reactor)")


def printProfile(profile: cProfile.Profile, limit: int = 30) -> None:
    stream = io.StringIO()
    stats = pstats.Stats(profile, stream=stream)
    stats.sort_stats("tottime").print_stats(limit)
    print("\ncProfile of the lmevoip window, by own time (cProfile inflates every call):")
    print(stream.getvalue())
    stream = io.StringIO()
    stats = pstats.Stats(profile, stream=stream)
    stats.sort_stats("cumulative").print_stats(25)
    print("\nby cumulative time:")
    print(stream.getvalue())


@defer.inlineCallbacks
def main(reactor: Any, args: Any) -> Any:
    receiver = Receiver()
    results: dict[tuple[str, int], dict[str, Any]] = {}
    try:
        if args.profile:
            profile = cProfile.Profile()
            print(f"# profiling {args.variant} x {args.profile}: warm-up {args.warmup}s, "
                  f"window {args.seconds}s", file=sys.stderr, flush=True)
            result = yield runPhase(reactor, args.variant, args.profile, receiver, args, profile)
            print(HEADER)
            print(formatRow(result) + "   (under cProfile)")
            printProfile(profile)
            costs = stepCosts(reactor, receiver)
            for name, micros in costs:
                print(f"  {name:<36} {micros:>7.2f} us")
            return
        plan = [(n, kind) for n in args.sessions for kind in ("bare", "lmevoip")]
        if args.ablations:
            plan += [(args.ablations, kind) for kind in ("bare", *VARIANTS)
                     if (args.ablations, kind) not in plan]
        for n, kind in plan:
            print(f"# {kind} x {n}: warm-up {args.warmup}s, window {args.seconds}s",
                  file=sys.stderr, flush=True)
            results[kind, n] = yield runPhase(reactor, kind, n, receiver, args)
            print("#   " + formatRow(results[kind, n]), file=sys.stderr, flush=True)
        costs = stepCosts(reactor, receiver, repeat=5000 if args.quick else 20000)
    finally:
        receiver.stop()
    report(results, costs, args, reactor)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"args": {"sessions": args.sessions, "seconds": args.seconds,
                                "warmup": args.warmup, "direction": args.direction},
                       "loadavg": os.getloadavg(),
                       "results": list(results.values()),
                       "stepCosts": dict(costs)}, out, indent=1)


def parseArgs(argv: list[str]) -> Any:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", default="100,500,1000",
                        help="session counts N (default 100,500,1000)")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="measurement window per sender and N, seconds (default 20)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="warm-up before each window, seconds (default 2)")
    parser.add_argument("--direction", default="sendrecv", choices=["sendrecv", "sendonly"],
                        help="the sessions' negotiated direction (default sendrecv: each tick "
                             "also runs the receive play-out, with nothing received)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 50 and 200 sessions, 3 s windows")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="instead: run lmevoip with N sessions under cProfile and print "
                             "the hot spots")
    parser.add_argument("--ablations", type=int, default=0, metavar="N",
                        help="also run, at N sessions, lmevoip variants that leave parts out "
                             f"({', '.join(list(VARIANTS)[1:])}) to show what each costs")
    parser.add_argument("--phases", type=int, default=None, metavar="S",
                        help="sub-ticks per 20 ms tick of the lmevoip pacer (default: the "
                             "Pacer's own default)")
    parser.add_argument("--variant", default="lmevoip", choices=list(VARIANTS),
                        help="the lmevoip variant --profile runs (default lmevoip)")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.sessions, args.seconds, args.warmup = "50,200", 3.0, 1.0
    args.sessions = [int(n) for n in str(args.sessions).split(",") if n]
    if any(n < 1 for n in args.sessions) or args.seconds <= 0 or args.warmup < 0:
        parser.error("session counts and --seconds must be positive, --warmup not negative")
    return args


if __name__ == "__main__":
    options = parseArgs(sys.argv[1:])
    task.react(lambda reactor: main(reactor, options))
