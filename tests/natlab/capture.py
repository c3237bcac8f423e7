"""
Packet captures in the NAT lab: tshark inside one of its namespaces, made
sure to be live with probe datagrams.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet import task
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.logger import Logger

from tests.natlab.check import UdpRecorder
from tests.natlab.errors import NatLabError
from tests.peers import PeerError, PeerProcess
from tests.support import requireTool

if TYPE_CHECKING:
    from tests.natlab.lab import NatLab

__all__ = ["NatCapture"]


class NatCapture:
    """
    A tshark capture on one of a lab's interfaces (by default the router's
    WAN side, where the far ends' view of the NATed traffic is).

    Like L{tests.peers.tshark.TsharkCapture}, it proves the capture is
    live with probe datagrams: from the interface's address to UDP port
    L{PROBE_PORT} at the other end of the link (where nothing listens).
    L{start} returns once a probe is captured; L{stop} waits until a last
    probe is. The probes stay in the file: analyse with L{excludeProbes}.

    @ivar path: the pcapng file.
    @ivar process: the tshark L{PeerProcess} once started.
    """

    log = Logger()
    PROBE = b"lmevoip-natlab-probe"
    PROBE_PORT = 9

    #: A display filter leaving out the probes (and the ICMP errors they
    #: may cause, whose quoted UDP header tshark also reads).
    excludeProbes = f"!(udp.dstport == {PROBE_PORT})"

    def __init__(self, lab: NatLab, where: str, captureFilter: str | None, path: Path,
                 stopGrace: float = 10.0) -> None:
        self.lab = lab
        self.namespace, self.interface, self.localAddress, self.peerAddress = lab.link(where)
        self.path = path
        self.stopGrace = stopGrace
        bpf = f"udp dst port {self.PROBE_PORT}"
        if captureFilter:
            bpf = f"({captureFilter}) or {bpf}"
        self.argv = [requireTool("tshark"), "-i", self.interface, "-n", "-w", str(path), "-f", bpf,
                     "-P", "-l", "-T", "fields", "-e", "udp.srcport", "-e", "udp.dstport"]
        self.process: PeerProcess | None = None
        self._first: tuple[Any, UdpRecorder] | None = None

    def _listen(self) -> tuple[Any, UdpRecorder]:
        sock = UdpRecorder(self.lab.reactor)
        return self.lab.listenUDP(self.namespace, 0, sock, self.localAddress), sock

    def _probeUntilSeen(self, port: Any, sock: UdpRecorder, timeout: float) -> Deferred[Any]:
        """
        Send probes from C{sock} (bound as C{port}) until tshark prints one.
        """
        assert self.process is not None
        seen = self.process.waitForOutput(f"{port.getHost().port}\t{self.PROBE_PORT}\n".encode(),
                                          "stdout", timeout)
        loop = task.LoopingCall(sock.send, self.PROBE, (self.peerAddress, self.PROBE_PORT))
        loop.clock = self.lab.reactor
        loop.start(0.02)

        def done(result: Any) -> Any:
            if loop.running:
                loop.stop()
            return result

        return seen.addBoth(done)

    @inlineCallbacks
    def start(self, timeout: float = 20.0) -> Any:
        """
        Start capturing.

        @return: a Deferred firing with this capture once a probe has been
            captured; it fails with tshark's output if tshark ends or
            captures nothing in time.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.process = self.lab.spawn(self.namespace, self.argv, name=f"tshark:{self.interface}",
                                      cwd=self.path.parent)
        yield self.process.waitForOutput(b"Capturing on", "stderr", timeout)
        # The first probe socket stays bound until the end, so the last
        # probe's socket cannot get its port (and match its output line).
        self._first = self._listen()
        yield self._probeUntilSeen(*self._first, timeout)
        return self

    @inlineCallbacks
    def stop(self, flushTimeout: float = 20.0) -> Any:
        """
        Stop capturing once a last probe is in the file (so is everything
        sent before it), with SIGINT.

        On a busy machine tshark can fall seconds behind the wire; SIGINT
        then drops what it has not processed yet. So the wait for the last
        probe is generous, and when the probe never shows, the capture is
        reported as incomplete rather than returned truncated (a truncated
        file would look like packets that were never sent).

        @return: a Deferred firing with the L{Path} of the file.
        @raise NatLabError: it was never started, no file was written, or
            the last probe was not captured within C{flushTimeout} seconds.
        """
        if self.process is None:
            raise NatLabError("the capture was never started")
        incomplete = None
        if self.process.running:
            port, sock = self._listen()
            try:
                yield self._probeUntilSeen(port, sock, flushTimeout)
            except PeerError as e:
                incomplete = e
            finally:
                yield port.stopListening()
        exit = yield self.close()
        if not self.path.exists():
            raise NatLabError(f"tshark ended ({exit}) without writing {self.path}\n{self.process.stderr}")
        if incomplete is not None:
            raise NatLabError(f"capture {self.path} is incomplete: tshark did not see the last probe "
                              f"within {flushTimeout} s ({incomplete})")
        return self.path

    @inlineCallbacks
    def close(self) -> Any:
        """
        Stop tshark at once (SIGINT, then SIGKILL after C{stopGrace}) and
        close the probe socket; L{NatLab.down} calls it.

        @return: a Deferred firing with tshark's L{ProcessExit}, or L{None}
            if it never started.
        """
        ended = succeed(None) if self.process is None else self.process.stop("INT", self.stopGrace)
        if self._first is not None:
            port, self._first = self._first[0], None
            yield port.stopListening()
        exit = yield ended
        return exit
