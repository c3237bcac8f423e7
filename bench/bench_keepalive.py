"""
Benchmark: the keep-alive scheduler against one LoopingCall per flow.

For each flow count N the sender process (this one, on the real reactor)
keeps N flows alive at a fixed interval (20 s by default), their first
deadlines spread uniformly across one interval, each keep-alive a real
2-octet UDP datagram sent on loopback to a drain process that reads and
discards. It measures, over a fixed window after a warm-up:

  - CPU: C{time.process_time()} of this process only (the drain is another
    process), as a percentage of one core over the window's wall time;
  - memory per flow: C{tracemalloc} bytes allocated while building the
    flows (flow objects, names, timers, queue entries), divided by N;
  - lateness of each keep-alive: reactor time at the send minus the
    deadline it serves (p50, p99, max), and sends per second.

The same run measures the baseline (one C{LoopingCall} per flow, started so
that its calls land on the same spread deadlines) and prints the ratios.
Each measurement runs in a fresh interpreter (this script, re-invoked with
C{--run-one MODE N}), so one run's garbage cannot weigh on the next.

Usage::

    .venv/bin/python bench/bench_keepalive.py            # about 3.5 minutes
    .venv/bin/python bench/bench_keepalive.py --quick    # ~25 seconds
    .venv/bin/python bench/bench_keepalive.py --window 30 --sizes 1000,100000
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from array import array

from twisted.internet import defer, task
from twisted.internet.protocol import DatagramProtocol

from lmevoip.keepalive.scheduler import DEFAULT_TOLERANCE, KeepAliveScheduler

CRLF = b"\r\n"

# The drain: a separate process that reads and discards datagrams, then
# prints how many it got when its stdin closes. It empties its socket every
# 20 ms instead of sleeping on it, so that a datagram does not have to wake
# it: waking a local reader would be charged to the sender's sendto, a cost
# a datagram leaving through a network card does not have.
DRAIN = r"""
import select, socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
sock.bind(("127.0.0.1", 0))
sock.setblocking(False)
print(sock.getsockname()[1], flush=True)
count = 0
while not select.select([sys.stdin], [], [], 0.02)[0]:
    while True:
        try:
            sock.recv(64)
        except BlockingIOError:
            break
        count += 1
print(count, flush=True)
"""


class Drain:
    """
    The drain process, started and stopped by PID.
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", DRAIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.address = ("127.0.0.1", int(self.process.stdout.readline()))

    def stop(self) -> int | None:
        """
        Stop the drain; return how many datagrams it read.
        """
        try:
            self.process.stdin.close()
            received = self.process.stdout.readline()
            self.process.wait(timeout=5)
            return int(received) if received.strip() else None
        except (subprocess.TimeoutExpired, ValueError, OSError):
            return None
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


class Meter:
    """
    What the send callables record: lateness while the window is open.
    """

    def __init__(self) -> None:
        self.measuring = False
        self.lateness = array("d")
        self.sends = 0


class BaselineFlow:
    __slots__ = ("name", "interval", "deadline", "loop")


def buildScheduler(reactor, n, interval, deadlines, write, drain, meter, tolerance=DEFAULT_TOLERANCE):
    scheduler = KeepAliveScheduler(reactor, tolerance=tolerance)
    seconds = reactor.seconds
    lateness = meter.lateness

    def send(flow):
        now = seconds()
        if meter.measuring:
            # While send runs, lastSent is the previous send: this is the
            # deadline being served.
            lateness.append(now - (flow.lastSent + flow.interval))
        write(CRLF, drain)

    for index in range(n):
        scheduler.addFlow(f"flow-{index}", interval, send, firstDeadline=deadlines[index])
    scheduler.startService()
    return scheduler, scheduler.stopService


def buildLoopingCalls(reactor, n, interval, deadlines, write, drain, meter, tolerance=None):
    seconds = reactor.seconds
    lateness = meter.lateness

    def send(flow):
        now = seconds()
        if meter.measuring:
            lateness.append(now - flow.deadline)
        flow.deadline += flow.interval
        write(CRLF, drain)

    flows = []
    for index in range(n):
        flow = BaselineFlow()
        flow.name = f"flow-{index}"
        flow.interval = interval
        loop = flow.loop = task.LoopingCall(send, flow)
        loop.clock = reactor
        loop.start(interval, now=False)
        # Move the first call onto this flow's spread deadline, and the
        # loop's phase with it (LoopingCall keeps calls on starttime + k *
        # interval).
        loop.call.reset(deadlines[index] - seconds())
        flow.deadline = loop.call.getTime()
        loop.starttime = flow.deadline - interval
        flows.append(flow)

    def stop():
        for flow in flows:
            flow.loop.stop()
        flows.clear()

    return flows, stop


MODES = {"loopingcall": buildLoopingCalls, "scheduler": buildScheduler}


def timeAddRemove(reactor, mode, n, interval, tolerance):
    """
    Seconds to add n flows and to remove them again (nothing is sent: they
    are removed before the first is due).
    """
    gc.collect()
    noop = lambda *args: None  # noqa: E731
    started = time.perf_counter()
    if mode == "scheduler":
        scheduler = KeepAliveScheduler(reactor, tolerance=tolerance)
        scheduler.startService()
        first = reactor.seconds() + interval / 2
        flows = [scheduler.addFlow(f"flow-{index}", interval, noop, firstDeadline=first) for index in range(n)]
        added = time.perf_counter()
        for flow in flows:
            scheduler.removeFlow(flow)
        scheduler.stopService()
    else:
        loops = []
        for index in range(n):
            loop = task.LoopingCall(noop)
            loop.clock = reactor
            loop.start(interval, now=False)
            loops.append(loop)
        added = time.perf_counter()
        for loop in loops:
            loop.stop()
    return added - started, time.perf_counter() - added


def percentile(values, fraction):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@defer.inlineCallbacks
def runOne(reactor, mode, n, args):
    build = MODES[mode]
    rng = random.Random(n)
    offsets = [rng.uniform(0, args.interval) for _ in range(n)]

    # Memory: a build measured by tracemalloc, torn down before any send.
    gc.collect()
    started = time.perf_counter()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    far = reactor.seconds() + 3600
    built, stop = build(reactor, n, args.interval, [far + o for o in offsets], None, None, Meter(), args.tolerance)
    perFlow = (tracemalloc.get_traced_memory()[0] - before) / n
    tracemalloc.stop()
    stop()
    del built, stop
    gc.collect()
    # The measured build took longer (tracemalloc) than the real one will:
    # first deadlines start after it, spread over one interval.
    margin = time.perf_counter() - started + 0.5

    sender = reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")
    drain = Drain()
    meter = Meter()
    start = reactor.seconds() + margin
    built, stop = build(
        reactor, n, args.interval, [start + o for o in offsets], sender.write, drain.address, meter, args.tolerance
    )
    del offsets
    if reactor.seconds() > start:
        print(f"#   warning: the build overran its {margin:.1f}s margin", file=sys.stderr, flush=True)
    try:
        yield task.deferLater(reactor, max(0.0, start + args.warmup - reactor.seconds()), lambda: None)
        meter.measuring = True
        wall0, cpu0 = time.perf_counter(), time.process_time()
        yield task.deferLater(reactor, args.window, lambda: None)
        meter.measuring = False
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        stop()
        yield sender.stopListening()
        received = drain.stop()
    late = [value * 1000 for value in meter.lateness]
    result = {
        "mode": mode,
        "flows": n,
        "memPerFlow": perFlow,
        "cpu": 100 * cpu / wall,
        "sendsPerSecond": len(late) / wall,
        "p50": statistics.median(late) if late else float("nan"),
        "p99": percentile(late, 0.99),
        "max": max(late) if late else float("nan"),
        "received": received,
    }
    del built, late
    gc.collect()
    return result


def formatRow(r):
    return (
        f"{r['mode']:<12} {r['flows']:>7} {r['memPerFlow']:>9.0f} {r['cpu']:>7.2f} "
        f"{r['sendsPerSecond']:>8.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} {r['max']:>8.2f}"
    )


def child(args, *what):
    """
    Run one measurement in a fresh interpreter (so that one run's garbage,
    fragmented heap or reactor state cannot weigh on the next) and return
    its JSON result.
    """
    command = [sys.executable, __file__, *what, "--window", str(args.window), "--warmup", str(args.warmup),
               "--interval", str(args.interval), "--tolerance", repr(args.tolerance)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, timeout=args.window + args.warmup + 300)
    done.check_returncode()
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(args):
    results = {}
    plan = [(n, mode) for n in args.sizes for mode in ("loopingcall", "scheduler")
            if mode == "scheduler" or n in args.baselineSizes]
    for n, mode in plan:
        print(f"# {mode} x {n}: warm-up {args.warmup}s, window {args.window}s", file=sys.stderr, flush=True)
        results[mode, n] = child(args, "--run-one", mode, str(n))
        print("#   " + formatRow(results[mode, n]), file=sys.stderr, flush=True)
    churn = {mode: child(args, "--churn", mode, str(max(args.sizes))) for mode in ("loopingcall", "scheduler")}

    print(f"\nkeep-alive interval {args.interval:g} s, window {args.window:g} s after {args.warmup:g} s warm-up, "
          f"scheduler tolerance {args.tolerance * 1000:.2f} ms, reactor {results[plan[0][1], plan[0][0]]['reactor']}, "
          f"each run in its own process")
    print("memory = tracemalloc bytes per flow; CPU = the sender process's process_time over wall time, % of one core;")
    print("lateness = send time minus deadline, ms (negative: sent early, by at most the scheduler's tolerance)\n")
    print(f"{'mode':<12} {'flows':>7} {'B/flow':>9} {'CPU %':>7} {'sends/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for key in sorted(results, key=lambda k: (k[1], k[0])):
        print(formatRow(results[key]))
    print("\nratios scheduler / LoopingCall (same run):")
    print(f"{'flows':>7} {'memory':>8} {'CPU':>8} {'p99':>8}")
    for n in args.sizes:
        if ("loopingcall", n) in results:
            s, b = results["scheduler", n], results["loopingcall", n]
            print(f"{n:>7} {s['memPerFlow'] / b['memPerFlow']:>8.2f} {s['cpu'] / b['cpu']:>8.2f} "
                  f"{s['p99'] / b['p99'] if b['p99'] > 0 else float('nan'):>8.2f}")
    print("\ndatagrams received by the drain per run (all sends, warm-up included):")
    for key in sorted(results, key=lambda k: (k[1], k[0])):
        print(f"  {key[0]:<12} {key[1]:>7}: {results[key]['received']}")
    print(f"\nadding / removing {max(args.sizes)} flows (seconds):")
    for mode, timing in churn.items():
        print(f"  {mode:<12} add {timing['add']:.3f}  remove {timing['remove']:.3f}")
    big = results.get(("scheduler", max(args.sizes)))
    if big is not None:
        print(f"\ntargets at {big['flows']} flows: p99 < 20 ms: {big['p99']:.2f} ms; "
              f"memory < 500 B/flow: {big['memPerFlow']:.0f} B; CPU < 10 %: {big['cpu']:.2f} %")


def parseArgs(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=25.0, help="measurement window, seconds (default 25)")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up before the window, seconds (default 3)")
    parser.add_argument("--interval", type=float, default=20.0, help="keep-alive interval, seconds (default 20)")
    parser.add_argument("--sizes", default="1000,10000,100000", help="flow counts (default 1000,10000,100000)")
    parser.add_argument("--baseline-sizes", dest="baselineSizes", default=None,
                        help="flow counts to run the LoopingCall baseline for (default: all of --sizes)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help=f"scheduler slot width / tolerance, seconds (default {DEFAULT_TOLERANCE:g})")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1000 and 10000 flows, 3 s window")
    parser.add_argument("--run-one", dest="runOne", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--churn", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.window, args.warmup = "1000,10000", 3.0, 1.0
    args.sizes = [int(n) for n in args.sizes.split(",")]
    args.baselineSizes = (
        args.sizes if args.baselineSizes is None else [int(n) for n in args.baselineSizes.split(",") if n]
    )
    return args


@defer.inlineCallbacks
def runChild(reactor, args):
    if args.runOne:
        mode, n = args.runOne
        result = yield runOne(reactor, mode, int(n), args)
        result["reactor"] = type(reactor).__name__
    else:
        mode, n = args.churn
        added, removed = timeAddRemove(reactor, mode, int(n), args.interval, args.tolerance)
        result = {"add": added, "remove": removed}
    print(json.dumps(result))


if __name__ == "__main__":
    options = parseArgs(sys.argv[1:])
    if options.runOne or options.churn:
        task.react(lambda reactor: runChild(reactor, options))
    else:
        main(options)
