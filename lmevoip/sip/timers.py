"""
SIP transaction timers (RFC 3261 section 17 and table 4, RFC 6026 section 8).

The values are data: L{TimerSettings} holds T1, T2 and T4 and derives every
timer from them, and L{retransmitIntervals} is the one retransmission
schedule (Timer A doubles without a cap; Timers E and G double up to T2).
L{Timer} is a named, restartable wrapper around one
C{IReactorTime.callLater} call, so a transaction can cancel all of its timers
the instant it terminates.

Nothing here imports a reactor: the clock is always passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

#: RFC 3261 table 4 defaults, in seconds.
DEFAULT_T1 = 0.5
DEFAULT_T2 = 4.0
DEFAULT_T4 = 5.0
#: Timer D for unreliable transports: "at least 32 seconds" (17.1.1.2).
DEFAULT_TIMER_D = 32.0
#: Timer C (16.6, "greater than 3 minutes"). lmevoip applies it to a client
#: INVITE transaction in Proceeding as a backstop against a peer that sends
#: a provisional response and never a final one.
DEFAULT_TIMER_C = 181.0
#: 17.2.1: send 100 (Trying) unless the TU answers within 200 ms.
DEFAULT_TRYING_DELAY = 0.2


def retransmitIntervals(t1: float, cap: float | None = None) -> Iterator[float]:
    """
    The retransmission schedule shared by Timers A, E and G: the intervals
    between successive transmissions, starting at C{t1} and doubling, each
    capped at C{cap} when one is given.

    Timer A (INVITE, 17.1.1.2) has no cap: 0.5, 1, 2, 4, 8, 16 s, so with the
    defaults the INVITE goes out again at 0.5, 1.5, 3.5, 7.5, 15.5 and 31.5 s.
    Timer E (non-INVITE, 17.1.2.2) and Timer G (INVITE final response,
    17.2.1) cap at T2: 0.5, 1, 2, 4, 4, 4, ... s.

    @param t1: the first interval (T1).
    @param cap: the largest interval (T2), or L{None} for no cap.
    @return: an endless iterator of intervals in seconds.
    """
    interval = t1
    while True:
        yield interval if cap is None else min(interval, cap)
        interval *= 2


@dataclass(frozen=True)
class TimerSettings:
    """
    T1, T2 and T4 and every transaction timer derived from them (RFC 3261
    table 4; RFC 6026 Timers L and M).

    The properties named C{timerX} give the value for an unreliable transport
    (UDP); L{forTransport} gives the value a transaction actually uses, zero
    where the RFC says so for reliable transports.

    @ivar t1: RTT estimate, the first retransmission interval (0.5 s).
    @ivar t2: the largest retransmission interval for non-INVITE requests
        and INVITE responses (4 s).
    @ivar t4: how long a message may stay in the network (5 s).
    @ivar timerD: how long a client INVITE transaction absorbs final response
        retransmissions on an unreliable transport (32 s).
    @ivar timerC: how long a client INVITE transaction waits in Proceeding
        for a final response before it reports a timeout, or L{None} to wait
        forever (181 s).
    @ivar tryingDelay: how long a server INVITE transaction waits for the TU
        before it sends 100 (Trying) itself (0.2 s).
    """

    t1: float = DEFAULT_T1
    t2: float = DEFAULT_T2
    t4: float = DEFAULT_T4
    timerD: float = DEFAULT_TIMER_D
    timerC: float | None = DEFAULT_TIMER_C
    tryingDelay: float = DEFAULT_TRYING_DELAY

    def __post_init__(self) -> None:
        if not (self.t1 > 0 and self.t2 >= self.t1 and self.t4 >= 0):
            raise ValueError(
                f"need 0 < T1 <= T2 and T4 >= 0, got T1={self.t1} T2={self.t2} T4={self.t4}")
        if self.timerD < 0 or self.tryingDelay < 0:
            raise ValueError("Timer D and the Trying delay must not be negative")
        if self.timerC is not None and self.timerC <= 0:
            raise ValueError("Timer C must be positive or None")

    @property
    def timerA(self) -> float:
        """INVITE retransmit interval, initial value (T1), doubling."""
        return self.t1

    @property
    def timerB(self) -> float:
        """INVITE transaction timeout (64*T1)."""
        return 64 * self.t1

    @property
    def timerE(self) -> float:
        """Non-INVITE retransmit interval, initial value (T1), doubling to T2."""
        return self.t1

    @property
    def timerF(self) -> float:
        """Non-INVITE transaction timeout (64*T1)."""
        return 64 * self.t1

    @property
    def timerG(self) -> float:
        """INVITE final response retransmit interval, initial (T1), doubling to T2."""
        return self.t1

    @property
    def timerH(self) -> float:
        """Wait time for ACK receipt (64*T1)."""
        return 64 * self.t1

    @property
    def timerI(self) -> float:
        """Wait time for ACK retransmissions (T4)."""
        return self.t4

    @property
    def timerJ(self) -> float:
        """Wait time for non-INVITE request retransmissions (64*T1)."""
        return 64 * self.t1

    @property
    def timerK(self) -> float:
        """Wait time for non-INVITE response retransmissions (T4)."""
        return self.t4

    @property
    def timerL(self) -> float:
        """RFC 6026: server INVITE transaction lingers in Accepted (64*T1)."""
        return 64 * self.t1

    @property
    def timerM(self) -> float:
        """RFC 6026: client INVITE transaction lingers in Accepted (64*T1)."""
        return 64 * self.t1

    def forTransport(self, name: str, reliable: bool) -> float:
        """
        The value of timer C{name} ("A" ... "M") for a transport.

        On a reliable transport Timers D, I, J and K are zero (17.1.1.2,
        17.1.2.2, 17.2.1, 17.2.2); Timers A, E and G are not used there at all
        and asking for them is a L{ValueError}. B, F, H, L and M are the same
        for every transport.

        @raise ValueError: for an unknown timer, or a retransmission timer on
            a reliable transport.
        """
        if name not in "ABCDEFGHIJKLM" or len(name) != 1:
            raise ValueError(f"no SIP transaction timer {name!r}")
        if reliable:
            if name in "AEG":
                raise ValueError(f"Timer {name} is not used on a reliable transport")
            if name in "DIJK":
                return 0.0
        if name == "C":
            if self.timerC is None:
                raise ValueError("Timer C is disabled")
            return self.timerC
        return getattr(self, "timer" + name)

    def table(self) -> list[tuple[str, float, str]]:
        """
        The timer table for these settings (for logs and docs): rows of
        C{(name, seconds on UDP, meaning)}.
        """
        return [
            ("A", self.timerA, "INVITE request retransmit interval (doubles)"),
            ("B", self.timerB, "INVITE transaction timeout"),
            ("D", self.timerD, "wait for response retransmissions (client INVITE)"),
            ("E", self.timerE, "non-INVITE retransmit interval (doubles to T2)"),
            ("F", self.timerF, "non-INVITE transaction timeout"),
            ("G", self.timerG, "INVITE response retransmit interval (doubles to T2)"),
            ("H", self.timerH, "wait for ACK receipt"),
            ("I", self.timerI, "wait for ACK retransmissions"),
            ("J", self.timerJ, "wait for non-INVITE request retransmissions"),
            ("K", self.timerK, "wait for non-INVITE response retransmissions"),
            ("L", self.timerL, "server INVITE lingers in Accepted (RFC 6026)"),
            ("M", self.timerM, "client INVITE lingers in Accepted (RFC 6026)"),
        ]


class Timer:
    """
    One named transaction timer: at most one pending C{callLater} at a time.

    @ivar name: the RFC name ("A", "B", ...), for logs and tests.
    """

    def __init__(self, clock, name: str, callback: Callable[[], None]) -> None:
        """
        @param clock: an C{IReactorTime}.
        @param name: the RFC name of the timer.
        @param callback: called with no arguments when the timer fires.
        """
        self._clock = clock
        self.name = name
        self._callback = callback
        self._call = None

    @property
    def active(self) -> bool:
        """Whether the timer is pending."""
        return self._call is not None and self._call.active()

    def start(self, delay: float) -> None:
        """
        (Re)start the timer to fire after C{delay} seconds, cancelling any
        pending firing first.
        """
        self.cancel()
        self._call = self._clock.callLater(delay, self._fire)

    def cancel(self) -> None:
        """Cancel the timer if it is pending; harmless otherwise."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _fire(self) -> None:
        self._call = None
        self._callback()

    def __repr__(self) -> str:
        return f"<Timer {self.name} {'active' if self.active else 'idle'}>"
