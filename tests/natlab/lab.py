"""
The NAT lab: a real Linux NAT built from three network namespaces, for
tests that prove keep-alive keeps SIP and RTP flows reachable through a NAT
(and that without keep-alive they break). See C{docs/nat-lab.rst}.

Topology (all addresses from 198.18.0.0/15, the benchmarking range)::

    LAN host              router                          WAN host
    198.18.1.2 --veth-- 198.18.1.1 | 198.19.1.1 --veth-- 198.19.1.2
    (the engine)          masquerade, conntrack            (SIPp, Kamailio,
    default via .1.1      UDP timeout T                    baresip; no route
                                                           to 198.18.0.0/15)

The router masquerades the LAN behind 198.19.1.1 and forwards inward only
what conntrack knows (established/related). Its conntrack UDP timeouts are
T seconds, set in its own namespace. By default (C{refresh="outbound"}) an
nftables set also closes each binding T seconds after the last I{outbound}
datagram, as RFC 4787 NATs do, because Linux conntrack alone lets inbound
packets refresh a binding too (C{refresh="both"}).

Use in a trial test::

    from tests.natlab import startNatLab

    class KeepAliveThroughNat(TestCase):
        @inlineCallbacks
        def test_bindingSurvives(self):
            lab = yield startNatLab(self, timeout=3)   # up, verified, torn down by cleanup
            engine = lab.spawn("lan", [sys.executable, "-c", CODE])
            capture = yield lab.capture().start()     # tshark on the router's WAN side
            ...
            pcap = yield capture.stop()
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from unittest import SkipTest

from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.logger import Logger

from tests.natlab.capture import NatCapture
from tests.natlab.check import NatCheck, UdpRecorder, probeMapping, verifyNat
from tests.natlab.errors import NatCheckFailed, NatLabError, NatLabUnavailable
from tests.natlab.netns import (
    NETNS_DIR,
    NamespacedReactor,
    flushConntrack,
    inNamespace,
    readSysctl,
    writeSysctl,
)
from tests.peers import OUTPUT_LIMIT, PeerProcess, traceDirectory
from tests.peers.ports import PortTimeout, processSocketInodes, udpSocketInodes
from tests.support import REQUIRE_PEERS, PeerMissing, requireRoot, requireTool

__all__ = [
    "LAB_PREFIX",
    "LAN_ADDRESS",
    "LAN_NETWORK",
    "NatCapture",
    "NatCheck",
    "NatCheckFailed",
    "NatLab",
    "NatLabError",
    "NatLabUnavailable",
    "ROUTER_LAN_ADDRESS",
    "ROUTER_WAN_ADDRESS",
    "UdpRecorder",
    "WAN_ADDRESS",
    "WAN_NETWORK",
    "buildRuleset",
    "labName",
    "listLabs",
    "parseLabName",
    "removeLab",
    "staleLabs",
    "startNatLab",
]

#: Every namespace of ours starts with this.
LAB_PREFIX = "lmnat-"

LAN_NETWORK = "198.18.1.0/24"
WAN_NETWORK = "198.19.1.0/24"
LAN_ADDRESS = "198.18.1.2"
ROUTER_LAN_ADDRESS = "198.18.1.1"
ROUTER_WAN_ADDRESS = "198.19.1.1"
WAN_ADDRESS = "198.19.1.2"

#: The nftables table on the router.
TABLE = "natlab"

#: How the masquerade picks the external source port.
PORT_MAPPINGS = ("preserve", "random", "fully-random")

#: Which packets refresh a binding.
REFRESH_MODES = ("outbound", "both")

#: The role suffixes of a lab's namespaces.
_ROLES = {"lan": "lan", "router": "rtr", "wan": "wan"}

_NAME = re.compile(r"^lmnat-([tm])(\d{1,7})-(\d{1,3})$")

_counter = itertools.count()



# -- names --------------------------------------------------------------------------


def labName(kind: str, pid: int, number: int) -> str:
    """
    Return the name of a lab: C{lmnat-KIND PID-NUMBER}, e.g. C{lmnat-t4242-0}.

    The name is the prefix of its three namespaces (C{NAME-lan}, C{NAME-rtr},
    C{NAME-wan}); without C{lmnat-} it is the prefix of its interfaces,
    which stay within Linux's 15 characters (C{t4194304-999rw}).

    @param kind: C{"t"} for a test's lab, C{"m"} for one made by hand.
    @param pid: the process that made it (a test lab whose process is gone
        is a leftover: see L{staleLabs}).
    @param number: a counter, so one process can have several labs (taken
        modulo 1000).
    """
    if kind not in ("t", "m"):
        raise ValueError(f"lab kind must be 't' or 'm', not {kind!r}")
    return f"{LAB_PREFIX}{kind}{pid}-{number % 1000}"


def parseLabName(name: str) -> tuple[str, int, int] | None:
    """
    Return C{(kind, pid, number)} of a lab name, or L{None} when C{name} is
    not one of ours.
    """
    match = _NAME.match(name)
    if match is None:
        return None
    return match.group(1), int(match.group(2)), int(match.group(3))


def _namespaceNames(name: str) -> list[str]:
    return [f"{name}-{suffix}" for suffix in _ROLES.values()]


def _existingNamespaces() -> set[str]:
    try:
        return {entry.name for entry in NETNS_DIR.iterdir()}
    except FileNotFoundError:
        return set()


def listLabs() -> list[str]:
    """
    Return the names of the labs that have at least one namespace on this
    machine, sorted.
    """
    labs = set()
    for namespace in _existingNamespaces():
        base, _, role = namespace.rpartition("-")
        if role in _ROLES.values() and parseLabName(base) is not None:
            labs.add(base)
    return sorted(labs)


def _pidAlive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def staleLabs(names: Iterable[str], kinds: str = "tm",
              alive: Callable[[int], bool] = _pidAlive) -> list[str]:
    """
    Return the labs among C{names} whose creating process is gone.

    A hand-made lab (kind C{m}) is always "stale" in that sense (its
    C{up} command has ended): pass C{kinds="t"} to leave those alone.

    @param kinds: which kinds of lab to consider.
    @param alive: tells whether a PID is running.
    """
    stale = []
    for name in names:
        parsed = parseLabName(name)
        if parsed is None or parsed[0] not in kinds:
            continue
        if not alive(parsed[1]):
            stale.append(name)
    return stale


def _newName(kind: str) -> str:
    existing = {n.rpartition("-")[0] for n in _existingNamespaces()}
    for _ in range(1000):
        name = labName(kind, os.getpid(), next(_counter))
        if name not in existing:
            return name
    raise NatLabError("no free lab name: remove leftovers with `python -m tests.natlab down`")


# -- running commands ----------------------------------------------------------------


def _reactorOrGlobal(reactor: Any) -> Any:
    if reactor is None:
        from twisted.internet import reactor as globalReactor
        return globalReactor
    return reactor


@inlineCallbacks
def _command(argv: Sequence[str], reactor: Any, timeout: float = 30.0,
             track: list[PeerProcess] | None = None) -> Any:
    """
    Run C{argv} to completion through the reactor.

    @return: a Deferred firing with its standard output (str).
    @raise NatLabError: it exited non-zero or did not end in time; the
        message has its standard error.
    """
    process = PeerProcess(argv, reactor, name=os.path.basename(argv[0]), outputLimit=None)
    process.start()
    if track is not None:
        track.append(process)
    timer = reactor.callLater(timeout, process.stop, "TERM", 2.0)
    exit = yield process.whenEnded()
    if timer.active():
        timer.cancel()
    if track is not None and process in track:
        track.remove(process)
    if exit.stoppedByHarness or exit.exitCode != 0:
        how = f"did not end within {timeout}s" if exit.stoppedByHarness else f"failed ({exit})"
        raise NatLabError(f"`{' '.join(argv)}` {how}: {process.stderr.strip()}")
    return process.stdout


@inlineCallbacks
def removeLab(name: str, reactor: Any = None) -> Any:
    """
    Remove lab C{name}: SIGKILL every process still in its namespaces (by
    PID), then delete the namespaces, which destroys their interfaces.

    @return: a Deferred firing with the list of namespaces removed.
    """
    reactor = _reactorOrGlobal(reactor)
    ip = requireTool("ip")
    removed = []
    existing = _existingNamespaces()
    for namespace in _namespaceNames(name):
        if namespace not in existing:
            continue
        pids = yield _command([ip, "netns", "pids", namespace], reactor)
        for pid in pids.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        yield _command([ip, "netns", "del", namespace], reactor)
        removed.append(namespace)
    return removed


# -- the router's rules ----------------------------------------------------------------


def _checkModes(refresh: str, portMapping: str) -> None:
    if refresh not in REFRESH_MODES:
        raise ValueError(f"refresh must be one of {REFRESH_MODES}, not {refresh!r}")
    if portMapping not in PORT_MAPPINGS:
        raise ValueError(f"portMapping must be one of {PORT_MAPPINGS}, not {portMapping!r}")


def buildRuleset(lanInterface: str, wanInterface: str, wanAddress: str, timeout: int,
                 refresh: str = "outbound", portMapping: str = "preserve") -> str:
    """
    Return the router's nftables ruleset (for C{nft -f}).

    @param lanInterface: the router's interface on the LAN.
    @param wanInterface: the router's interface on the WAN.
    @param wanAddress: the router's WAN address (the masquerade address).
    @param timeout: seconds a UDP binding lives after its last refresh.
    @param refresh: C{"outbound"}: only LAN-to-WAN datagrams keep a UDP
        binding open (the gate set); C{"both"}: conntrack alone, where
        datagrams either way do.
    @param portMapping: C{"preserve"} (plain masquerade: the LAN source port
        is kept when free), C{"random"} or C{"fully-random"}.
    """
    _checkModes(refresh, portMapping)
    masquerade = "masquerade" if portMapping == "preserve" else f"masquerade {portMapping}"
    lines = [
        f"table ip {TABLE} {{",
        "    counter forward_dropped { }",
        "    counter unsolicited_dropped { }",
        "    counter gate_dropped { }",
        "",
        "    # LAN to WAN: everything. WAN to LAN: only replies conntrack knows.",
        "    chain forward {",
        "        type filter hook forward priority filter; policy drop;",
        f'        iifname "{lanInterface}" oifname "{wanInterface}" accept',
        f'        iifname "{wanInterface}" oifname "{lanInterface}" ct state established,related accept',
        '        counter name "forward_dropped" drop',
        "    }",
        "",
        "    # The router runs nothing: unsolicited UDP to it is dropped",
        "    # silently, as a home NAT does, instead of an ICMP error.",
        "    chain input {",
        "        type filter hook input priority filter; policy accept;",
        f'        iifname "{wanInterface}" meta l4proto udp counter name "unsolicited_dropped" drop',
        "    }",
        "",
        "    # An empty dstnat chain: some kernels translate replies only when",
        "    # both NAT hooks are registered.",
        "    chain prerouting {",
        "        type nat hook prerouting priority dstnat; policy accept;",
        "    }",
        "",
        "    chain postrouting {",
        "        type nat hook postrouting priority srcnat; policy accept;",
        f'        oifname "{wanInterface}" {masquerade}',
        "    }",
    ]
    if refresh == "outbound":
        lines += [
            "",
            "    # Outbound refresh (RFC 4787 REQ-6): a binding stays open for",
            "    # the timeout after its last LAN-to-WAN datagram only. The set",
            "    # holds remote address . remote port . external port, keyed after",
            "    # the masquerade (priority srcnat + 10), refreshed by each",
            "    # outbound datagram; inbound datagrams are checked before",
            "    # conntrack sees (and would refresh) them.",
            "    set outbound {",
            "        type ipv4_addr . inet_service . inet_service",
            "        flags dynamic, timeout",
            f"        timeout {timeout}s",
            "    }",
            "    chain track {",
            "        type filter hook postrouting priority srcnat + 10; policy accept;",
            f'        oifname "{wanInterface}" meta l4proto udp'
            f" update @outbound {{ ip daddr . udp dport . udp sport timeout {timeout}s }}",
            "    }",
            "    chain gate {",
            "        type filter hook prerouting priority raw; policy accept;",
            f'        iifname "{wanInterface}" ip daddr {wanAddress} meta l4proto udp'
            ' ip saddr . udp sport . udp dport != @outbound counter name "gate_dropped" drop',
            "    }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- the lab -------------------------------------------------------------------------------


class NatLab:
    """
    One NAT lab: three network namespaces (LAN host, router, WAN host) and
    two veth pairs, with the router masquerading the LAN.

    Build it with L{up}, remove it with L{down} (in a test: use
    L{startNatLab}, which does both and verifies the NAT). Where a method
    takes C{where}, give a role (C{"lan"}, C{"router"}, C{"wan"}) or a
    namespace name.

    @ivar name: the lab's name (see L{labName}).
    @ivar timeout: seconds a UDP binding lives after its last refresh.
    @ivar refresh: C{"outbound"} or C{"both"} (see L{buildRuleset}).
    @ivar portMapping: C{"preserve"}, C{"random"} or C{"fully-random"}.
    @ivar lanAddress: the LAN host's address (where the engine runs).
    @ivar routerLanAddress: the router's LAN address (the LAN's gateway).
    @ivar routerWanAddress: the router's WAN address: the LAN's public face.
    @ivar wanAddress: the WAN host's address (where the far ends run).
    @ivar lanNamespace: the LAN host's namespace.
    @ivar routerNamespace: the router's namespace.
    @ivar wanNamespace: the WAN host's namespace.
    @ivar lanInterface: the LAN host's interface.
    @ivar routerLanInterface: the router's interface on the LAN.
    @ivar wanInterface: the router's interface on the WAN (where captures
        see the NATed traffic).
    @ivar wanHostInterface: the WAN host's interface.
    @ivar directory: where the ruleset and captures are written.
    @ivar lastCheck: the L{NatCheck} of the last L{verifyNat}, or L{None}.
    """

    log = Logger()

    lanAddress = LAN_ADDRESS
    routerLanAddress = ROUTER_LAN_ADDRESS
    routerWanAddress = ROUTER_WAN_ADDRESS
    wanAddress = WAN_ADDRESS
    lanNetwork = LAN_NETWORK
    wanNetwork = WAN_NETWORK

    def __init__(
        self,
        timeout: float = 3,
        refresh: str = "outbound",
        portMapping: str = "preserve",
        reactor: Any = None,
        directory: str | os.PathLike[str] | None = None,
        name: str | None = None,
        kind: str = "t",
    ) -> None:
        """
        @param timeout: the UDP binding timeout in whole seconds (the
            conntrack sysctls take whole seconds), at least 1.
        @param refresh: C{"outbound"} (default) or C{"both"}.
        @param portMapping: C{"preserve"} (default), C{"random"} or
            C{"fully-random"}.
        @param reactor: the reactor (the global one by default).
        @param directory: where to write the ruleset and captures (a new
            temporary directory by default).
        @param name: the lab's name (a new one by default: see L{labName}).
        @param kind: C{"t"} (a test's lab) or C{"m"} (made by hand).
        @raise ValueError: a parameter is out of range.
        """
        if timeout != int(timeout) or timeout < 1:
            raise ValueError(f"timeout must be a whole number of seconds >= 1 "
                             f"(the conntrack sysctls are in seconds), not {timeout!r}")
        _checkModes(refresh, portMapping)
        self.timeout = int(timeout)
        self.refresh = refresh
        self.portMapping = portMapping
        self.reactor = _reactorOrGlobal(reactor)
        self.name = name or _newName(kind)
        parsed = parseLabName(self.name)
        if parsed is None:
            raise ValueError(f"{self.name!r} is not a lab name (see labName)")
        tag = self.name[len(LAB_PREFIX):]
        self.lanNamespace, self.routerNamespace, self.wanNamespace = _namespaceNames(self.name)
        self.lanInterface = f"{tag}lh"
        self.routerLanInterface = f"{tag}rl"
        self.wanInterface = f"{tag}rw"
        self.wanHostInterface = f"{tag}wh"
        self.directory = None if directory is None else Path(directory)
        self.lastCheck: NatCheck | None = None
        self._ip: str | None = None
        self._processes: list[PeerProcess] = []
        self._captures: list[NatCapture] = []
        self._files = itertools.count()
        self._down = False

    def __repr__(self) -> str:
        return f"<NatLab {self.name} timeout={self.timeout}s refresh={self.refresh} ports={self.portMapping}>"

    def describe(self) -> str:
        """
        Return the lab's topology and how to run things in it, for people.
        """
        lan, router, wan = self.namespaces
        return "\n".join([
            f"NAT lab {self.name}: UDP binding timeout {self.timeout}s, refresh {self.refresh},"
            f" ports {self.portMapping}",
            f"  LAN host  {lan}  {self.lanInterface} {self.lanAddress}/24,"
            f" default via {self.routerLanAddress}",
            f"  router    {router}  {self.routerLanInterface} {self.routerLanAddress}/24 (LAN),"
            f" {self.wanInterface} {self.routerWanAddress}/24 (WAN, masquerade)",
            f"  WAN host  {wan}  {self.wanHostInterface} {self.wanAddress}/24, no route to the LAN",
            "Run things inside it:",
            f"  ip netns exec {lan} .venv/bin/twistd -n lmevoip ...     # the engine",
            f"  ip netns exec {wan} sipp -sn uas -i {self.wanAddress} -p 5060   # a far end",
            f"  ip netns exec {router} tshark -i {self.wanInterface} -f udp   # the NATed traffic",
            f"  ip netns exec {router} nft list ruleset",
            f"  ip netns exec {router} cat /proc/net/nf_conntrack",
            f"Check it:  python -m tests.natlab check {self.name}",
            f"Remove it: python -m tests.natlab down {self.name}",
        ])

    @property
    def namespaces(self) -> list[str]:
        """
        The lab's namespaces: LAN host, router, WAN host.
        """
        return [self.lanNamespace, self.routerNamespace, self.wanNamespace]

    def namespace(self, where: str) -> str:
        """
        Return the namespace of role C{where} (C{"lan"}, C{"router"},
        C{"wan"}), or C{where} itself when it is one of this lab's
        namespaces.

        @raise ValueError: neither.
        """
        roles = dict(zip(_ROLES, self.namespaces))
        if where in roles:
            return roles[where]
        if where in self.namespaces:
            return where
        raise ValueError(f"{where!r} is neither a role ({', '.join(roles)}) nor a namespace of {self.name}")

    def _workDirectory(self) -> Path:
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        return self.directory

    def _ipTool(self) -> str:
        if self._ip is None:
            self._ip = requireTool("ip")
        return self._ip

    def _cmd(self, argv: Sequence[str], timeout: float = 30.0) -> Deferred[Any]:
        return _command(argv, self.reactor, timeout, self._processes)

    # -- building and removing ----------------------------------------------------------

    @inlineCallbacks
    def up(self) -> Any:
        """
        Build the lab.

        @return: a Deferred firing with this lab once built.
        @raise NatLabUnavailable: this machine cannot host it (no network
            namespaces, veth or nftables); the message says which.
        @raise NatLabError: any other step failed. Either way, call
            L{down} to remove what was built.
        """
        ip = self._ipTool()
        nft = requireTool("nft")
        started = time.monotonic()
        lan, router, wan = self.namespaces
        for namespace in self.namespaces:
            try:
                yield self._cmd([ip, "netns", "add", namespace])
            except NatLabError as e:
                raise NatLabUnavailable(f"cannot create network namespaces here: {e}") from e
        for namespace in self.namespaces:
            # No IPv6: it would add router solicitations and MLD to captures.
            for key in ("net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"):
                try:
                    writeSysctl(namespace, key, 1)
                except FileNotFoundError:
                    pass
        try:
            yield self._cmd([ip, "link", "add", self.lanInterface, "netns", lan, "type", "veth",
                             "peer", "name", self.routerLanInterface, "netns", router])
            yield self._cmd([ip, "link", "add", self.wanInterface, "netns", router, "type", "veth",
                             "peer", "name", self.wanHostInterface, "netns", wan])
        except NatLabError as e:
            raise NatLabUnavailable(f"cannot create veth pairs here: {e}") from e
        steps = [["-n", namespace, "link", "set", "lo", "up"] for namespace in self.namespaces]
        steps += [
            ["-n", lan, "addr", "add", f"{self.lanAddress}/24", "dev", self.lanInterface],
            ["-n", lan, "link", "set", self.lanInterface, "up"],
            ["-n", lan, "route", "add", "default", "via", self.routerLanAddress],
            ["-n", router, "addr", "add", f"{self.routerLanAddress}/24", "dev", self.routerLanInterface],
            ["-n", router, "link", "set", self.routerLanInterface, "up"],
            ["-n", router, "addr", "add", f"{self.routerWanAddress}/24", "dev", self.wanInterface],
            ["-n", router, "link", "set", self.wanInterface, "up"],
            ["-n", wan, "addr", "add", f"{self.wanAddress}/24", "dev", self.wanHostInterface],
            ["-n", wan, "link", "set", self.wanHostInterface, "up"],
        ]
        for step in steps:
            yield self._cmd([ip, *step])
        rules = self._workDirectory() / f"{self.name}.nft"
        rules.write_text(buildRuleset(self.routerLanInterface, self.wanInterface, self.routerWanAddress,
                                      self.timeout, self.refresh, self.portMapping))
        try:
            yield self._cmd([ip, "netns", "exec", router, nft, "-f", str(rules)])
        except NatLabError as e:
            raise NatLabUnavailable(f"cannot load the router's nftables rules here: {e}") from e
        writeSysctl(router, "net.ipv4.ip_forward", 1)
        for key in ("net.netfilter.nf_conntrack_udp_timeout", "net.netfilter.nf_conntrack_udp_timeout_stream"):
            try:
                writeSysctl(router, key, self.timeout)
                value = readSysctl(router, key)
            except OSError as e:
                raise NatLabUnavailable(f"cannot set {key} in the router's namespace: {e}") from e
            if value != str(self.timeout):
                raise NatLabError(f"{key} reads {value} in {router} after writing {self.timeout}")
        self.log.info("NAT lab {name} up in {elapsed:.2f}s", name=self.name,
                      elapsed=time.monotonic() - started)
        return self

    @inlineCallbacks
    def down(self) -> Any:
        """
        Remove the lab: stop running captures (so their files are
        complete), stop every process started through L{spawn} (SIGTERM,
        then SIGKILL after 3 s), SIGKILL anything else left in the
        namespaces, and delete the namespaces (their interfaces go with
        them). Safe to call more than once, and after a failed L{up}.

        @return: a Deferred firing with L{None}.
        """
        if self._down:
            return None
        self._down = True
        stops = [capture.close() for capture in self._captures]
        stops += [p.stop("TERM", 3.0) for p in self._processes]
        yield gatherResults(stops, consumeErrors=True)
        removed = yield removeLab(self.name, self.reactor)
        self.log.info("NAT lab {name} down: {removed}", name=self.name, removed=removed)
        return None

    # -- processes --------------------------------------------------------------------------

    def spawn(
        self,
        where: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        name: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        outputLimit: int | None = OUTPUT_LIMIT,
    ) -> PeerProcess:
        """
        Start C{argv} inside namespace C{where} (C{ip netns exec NS argv};
        C{ip} execs the command, so its PID is the command's). It is
        stopped by L{down} if still running.

        @param argv: the command line; C{argv[0]} is looked up on C{PATH}.
        @param env: its environment (this process's by default).
        @param name: a label for logs (C{ROLE:program} by default).
        @param cwd: its working directory.
        @param outputLimit: bytes of each output stream kept (the tail).
        @return: the started L{PeerProcess}: C{whenEnded()}, C{stdout},
            C{stderr}, C{waitForOutput()}, C{stop()}.
        """
        namespace = self.namespace(where)
        role = namespace.rpartition("-")[2]
        process = PeerProcess([self._ipTool(), "netns", "exec", namespace, *argv], self.reactor,
                              cwd=cwd, env=env, name=name or f"{role}:{os.path.basename(argv[0])}",
                              outputLimit=outputLimit)
        process.start()
        self._processes.append(process)
        return process

    def run(self, where: str, argv: Sequence[str], timeout: float = 30.0) -> Deferred[Any]:
        """
        Run a short command inside namespace C{where} to completion.

        @return: a Deferred firing with its standard output (str).
        @raise NatLabError: it exited non-zero or did not end in time.
        """
        return self._cmd([self._ipTool(), "netns", "exec", self.namespace(where), *argv], timeout)

    @inlineCallbacks
    def pids(self, where: str) -> Any:
        """
        The PIDs of the processes in namespace C{where} (C{ip netns pids}).

        @return: a Deferred firing with a list of ints.
        """
        text = yield self._cmd([self._ipTool(), "netns", "pids", self.namespace(where)])
        return [int(pid) for pid in text.split()]

    def reactorIn(self, where: str) -> NamespacedReactor:
        """
        Return this lab's reactor wrapped so that C{listenUDP},
        C{listenTCP} and C{connectTCP} create their sockets in namespace
        C{where}: code taking an injected reactor (the engine, a keep-alive
        service) then runs in this process as if on that host.
        """
        return NamespacedReactor(self.namespace(where), self.reactor)

    def listenUDP(self, where: str, port: int, protocol: Any, interface: str = "") -> Any:
        """
        C{reactor.listenUDP} with the socket in namespace C{where}.
        """
        return self.reactorIn(where).listenUDP(port, protocol, interface)

    def waitForUdpPort(self, where: str, port: int, pid: int | None = None,
                       timeout: float = 10.0, interval: float = 0.02) -> Deferred[None]:
        """
        Wait until UDP C{port} is bound in namespace C{where} (by process
        C{pid} when given), reading that namespace's socket table.

        @return: a Deferred firing with L{None}; it fails with
            L{PortTimeout} after C{timeout} seconds.
        """
        namespace = self.namespace(where)
        deadline = self.reactor.seconds() + timeout

        def poll() -> Deferred[None] | None:
            with inNamespace(namespace):
                inodes = udpSocketInodes(port, procRoot=Path("/proc/thread-self"))
            if pid is not None:
                inodes &= processSocketInodes(pid)
            if inodes:
                return None
            if self.reactor.seconds() >= deadline:
                owner = f" by process {pid}" if pid is not None else ""
                raise PortTimeout(f"UDP port {port} not bound{owner} in {namespace} within {timeout}s")
            return task.deferLater(self.reactor, interval, poll)

        return task.deferLater(self.reactor, 0, poll)

    # -- the router's state -------------------------------------------------------------------

    def conntrackCount(self) -> int:
        """
        The number of conntrack entries in the router's namespace.
        """
        return int(readSysctl(self.routerNamespace, "net.netfilter.nf_conntrack_count"))

    def conntrackEntries(self) -> list[str]:
        """
        The router's conntrack entries, one line each as in
        C{/proc/net/nf_conntrack} (e.g. C{ipv4 2 udp 17 2 src=198.18.1.2
        dst=198.19.1.2 sport=... dport=... src=198.19.1.2 dst=198.19.1.1 ...}).

        @raise NatLabError: the kernel has no C{/proc/net/nf_conntrack}.
        """
        try:
            with inNamespace(self.routerNamespace):
                text = Path("/proc/thread-self/net/nf_conntrack").read_text()
        except FileNotFoundError as e:
            raise NatLabError("this kernel has no /proc/net/nf_conntrack "
                              "(CONFIG_NF_CONNTRACK_PROCFS); use conntrackCount()") from e
        return [line for line in text.splitlines() if line.strip()]

    @inlineCallbacks
    def flushConntrack(self) -> Any:
        """
        Forget every binding: flush the router's conntrack table (ctnetlink,
        as C{conntrack -F} does; no C{conntrack} tool needed) and, in
        outbound-refresh mode, the gate set. Call it between two tests
        sharing a lab so the second starts with no NAT state.

        @return: a Deferred firing with the number of conntrack entries
            there were.
        """
        before = self.conntrackCount()
        flushConntrack(self.routerNamespace)
        if self.refresh == "outbound":
            yield self.run("router", [requireTool("nft"), "flush", "set", "ip", TABLE, "outbound"])
        return before

    @inlineCallbacks
    def counters(self) -> Any:
        """
        Read the router's drop counters.

        @return: a Deferred firing with a dict of packet counts:
            C{forward_dropped} (WAN-to-LAN packets conntrack did not know),
            C{unsolicited_dropped} (UDP to the router itself), and
            C{gate_dropped} (inbound UDP after its binding's outbound
            timeout; always 0 with C{refresh="both"}).
        """
        text = yield self.run("router", [requireTool("nft"), "list", "counters", "table", "ip", TABLE])
        counts = {"forward_dropped": 0, "unsolicited_dropped": 0, "gate_dropped": 0}
        for name, packets in re.findall(r"counter (\w+) \{\s*packets (\d+)", text):
            counts[name] = int(packets)
        return counts

    # -- captures -----------------------------------------------------------------------------

    def link(self, where: str) -> tuple[str, str, str, str]:
        """
        Describe interface C{where}: C{"router-wan"} (the router's WAN
        side), C{"router-lan"}, C{"lan"} (the LAN host's) or C{"wan"} (the
        WAN host's), or the interface's name.

        @return: C{(namespace, interface, its address, the address at the
            other end of the link)}.
        @raise ValueError: no such interface in this lab.
        """
        links = {
            "router-wan": (self.routerNamespace, self.wanInterface, self.routerWanAddress, self.wanAddress),
            "router-lan": (self.routerNamespace, self.routerLanInterface, self.routerLanAddress,
                           self.lanAddress),
            "lan": (self.lanNamespace, self.lanInterface, self.lanAddress, self.routerLanAddress),
            "wan": (self.wanNamespace, self.wanHostInterface, self.wanAddress, self.routerWanAddress),
        }
        if where in links:
            return links[where]
        for link in links.values():
            if link[1] == where:
                return link
        raise ValueError(f"{where!r} is not an interface of {self.name} ({', '.join(links)})")

    def capture(self, where: str = "router-wan", captureFilter: str | None = "udp",
                path: str | os.PathLike[str] | None = None) -> NatCapture:
        """
        Prepare a tshark capture on interface C{where} (see L{link}); call
        its C{start()}. L{down} stops it if still running.

        @param captureFilter: a BPF capture filter (L{None}: everything).
        @param path: the pcapng file (in the lab's directory by default).
        """
        requireTool("tshark")
        if path is None:
            path = self._workDirectory() / f"capture-{next(self._files)}-{where}.pcapng"
        capture = NatCapture(self, where, captureFilter, Path(path))
        self._captures.append(capture)
        return capture

    # -- the self-check -------------------------------------------------------------------------

    def verifyNat(self, silence: float = 1.0, window: float = 0.5) -> Deferred[Any]:
        """
        Prove with UDP datagrams that this lab behaves as the NAT it should
        (about 5 s with a 3 s timeout): see L{tests.natlab.check.verifyNat}.

        @return: a Deferred firing with the L{NatCheck} (also kept as
            L{lastCheck}).
        @raise NatCheckFailed: a check failed; it carries the report.
        """
        return verifyNat(self, silence, window)

    def probeMapping(self, timeout: float = 2.0) -> Deferred[Any]:
        """
        Send one datagram from a new LAN socket to a new WAN socket.

        @return: a Deferred firing with C{(lanPort, (source address, source
            port) the WAN host saw)}.
        @raise NatLabError: it did not arrive within C{timeout} seconds.
        """
        return probeMapping(self, timeout)

    # -- reattaching ----------------------------------------------------------------------------

    @classmethod
    @inlineCallbacks
    def attach(cls, name: str, reactor: Any = None) -> Any:
        """
        Return a L{NatLab} for lab C{name}, already up (made by another
        process, e.g. C{python -m tests.natlab up}), reading its timeout,
        refresh mode and port mapping from the router. Its L{down} removes
        it.

        @return: a Deferred firing with the L{NatLab}.
        @raise NatLabError: no such lab.
        """
        if name not in listLabs():
            raise NatLabError(f"no NAT lab {name!r} here (labs: {', '.join(listLabs()) or 'none'})")
        kind = parseLabName(name)[0]  # type: ignore[index]
        router = _namespaceNames(name)[1]
        timeout = int(readSysctl(router, "net.netfilter.nf_conntrack_udp_timeout"))
        lab = cls(timeout=timeout, reactor=reactor, name=name, kind=kind)
        rules = yield lab.run("router", [requireTool("nft"), "list", "table", "ip", TABLE])
        lab.refresh = "outbound" if "chain gate" in rules else "both"
        mapping = re.search(r"masquerade( fully-random| random)?", rules)
        lab.portMapping = mapping.group(1).strip() if mapping and mapping.group(1) else "preserve"
        return lab


# -- the trial fixture ----------------------------------------------------------------------


_reaped = False


@inlineCallbacks
def startNatLab(testCase: Any, verify: bool = True, **options: Any) -> Any:
    """
    Build a NAT lab for a trial test: skip (fail under
    C{LMEVOIP_REQUIRE_PEERS=1}) without root, C{ip}, C{nft} or namespace
    support; remove it in the test's cleanup, even when the test fails;
    and, unless C{verify} is false, run L{NatLab.verifyNat} first (about
    5 s with a 3 s timeout). Leftover labs of test processes that are gone
    are removed first (once per process).

    @param testCase: the running C{TestCase}.
    @param options: for L{NatLab} (C{timeout}, C{refresh}, C{portMapping}).
    @return: a Deferred firing with the L{NatLab}, up.
    """
    global _reaped
    requireRoot()
    requireTool("ip")
    requireTool("nft")
    options.setdefault("directory", traceDirectory(testCase, "natlab"))
    lab = NatLab(**options)
    if not _reaped:
        _reaped = True
        for name in staleLabs(listLabs(), kinds="t"):
            yield removeLab(name, lab.reactor)
    testCase.addCleanup(lab.down)
    try:
        yield lab.up()
    except NatLabUnavailable as e:
        if REQUIRE_PEERS:
            raise PeerMissing(f"{e} (LMEVOIP_REQUIRE_PEERS=1 makes this a failure)") from e
        raise SkipTest(str(e)) from e
    if verify:
        yield lab.verifyNat()
    return lab
