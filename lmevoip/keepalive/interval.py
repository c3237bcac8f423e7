"""
The keep-alive interval rule: from a NAT session time to a per-flow interval.

A NAT forgets an idle UDP binding after its session time C{T}. A flow that
the keep-alive scheduler serves is never idle on the wire for longer than its
interval plus the scheduler's lateness, so the interval is chosen as::

    ceiling  = (SAFETY_FACTOR * T - LATENESS_ALLOWANCE) / (losses + 1)
    interval = ceiling * (1 - JITTER * u)          u uniform in [0, 1)

with C{SAFETY_FACTOR = 0.8}, C{LATENESS_ALLOWANCE = 0.1 s} and
C{JITTER = 0.1}. The jitter only ever shortens the interval, so every flow
satisfies C{interval + LATENESS_ALLOWANCE <= 0.8 * T < T} (no loss
tolerance) and C{(losses + 1) * interval + LATENESS_ALLOWANCE <= 0.8 * T}
when C{losses} consecutive keep-alives may be lost before the NAT.

A flow's first keep-alive is due at a uniformly random point of its first
interval (L{firstDelay}), so thousands of flows created at the same instant
spread their sends over one interval instead of sending together.

Everything here is pure: no Twisted, no clock, randomness from an injected
C{random.Random} so tests can seed it.
"""

from __future__ import annotations

import math
import random

__all__ = [
    "KeepAliveParameterError",
    "MIN_NAT_SESSION_TIME_MS",
    "MAX_NAT_SESSION_TIME_MS",
    "MAX_LOSSES",
    "SAFETY_FACTOR",
    "LATENESS_ALLOWANCE",
    "JITTER",
    "validateNatSessionTime",
    "maximumInterval",
    "keepAliveInterval",
    "firstDelay",
    "checkInterval",
]

#: The shortest NAT session time accepted, in milliseconds (1 s: short
#: enough for tests; no real NAT forgets a binding faster).
MIN_NAT_SESSION_TIME_MS = 1_000

#: The longest NAT session time accepted, in milliseconds (one hour; a longer
#: value is almost certainly a unit mistake, seconds passed as milliseconds
#: the other way round, and would leave bindings unrefreshed for hours).
MAX_NAT_SESSION_TIME_MS = 3_600_000

#: The most consecutive lost keep-alives the rule can be asked to survive.
MAX_LOSSES = 3

#: Fraction of the NAT session time that the wire gap may use at most.
SAFETY_FACTOR = 0.8

#: Seconds reserved for scheduling lateness (reactor busy, GC pause).
LATENESS_ALLOWANCE = 0.1

#: Largest fraction by which a flow's interval is shortened at random.
JITTER = 0.1


class KeepAliveParameterError(ValueError):
    """
    A keep-alive parameter is of the wrong type or out of range.

    The engine maps this error to C{SipBadParameter}. C{str(error)} names the
    parameter, the value and the accepted range.

    @ivar parameter: The name of the offending parameter.
    @ivar value: The value that was refused.
    """

    def __init__(self, parameter: str, value: object, reason: str) -> None:
        super().__init__(f"{parameter}={value!r}: {reason}")
        self.parameter = parameter
        self.value = value


def validateNatSessionTime(natSessionTimeMs: object) -> int:
    """
    Check a NAT session time.

    @param natSessionTimeMs: The NAT session time in milliseconds, an C{int}
        (not a C{bool}) in
        [L{MIN_NAT_SESSION_TIME_MS}, L{MAX_NAT_SESSION_TIME_MS}].
    @return: C{natSessionTimeMs} unchanged.
    @raise KeepAliveParameterError: When it is not an integer or out of range.
    """
    if isinstance(natSessionTimeMs, bool) or not isinstance(natSessionTimeMs, int):
        raise KeepAliveParameterError(
            "natSessionTimeMs", natSessionTimeMs, "must be an integer number of milliseconds"
        )
    if not MIN_NAT_SESSION_TIME_MS <= natSessionTimeMs <= MAX_NAT_SESSION_TIME_MS:
        raise KeepAliveParameterError(
            "natSessionTimeMs",
            natSessionTimeMs,
            f"must be within {MIN_NAT_SESSION_TIME_MS}-{MAX_NAT_SESSION_TIME_MS} ms",
        )
    return natSessionTimeMs


def _validateLosses(losses: object) -> int:
    if isinstance(losses, bool) or not isinstance(losses, int) or not 0 <= losses <= MAX_LOSSES:
        raise KeepAliveParameterError("losses", losses, f"must be an integer within 0-{MAX_LOSSES}")
    return losses


def maximumInterval(natSessionTimeMs: int, losses: int = 0) -> float:
    """
    The un-jittered interval ceiling for a NAT session time.

    @param natSessionTimeMs: The NAT session time in milliseconds (see
        L{validateNatSessionTime}).
    @param losses: How many consecutive keep-alives may be lost on the way to
        the NAT with the binding still surviving (0 to L{MAX_LOSSES}).
    @return: C{(SAFETY_FACTOR * T - LATENESS_ALLOWANCE) / (losses + 1)} in
        seconds, always positive for valid arguments.
    @raise KeepAliveParameterError: On an invalid argument.
    """
    sessionTime = validateNatSessionTime(natSessionTimeMs) / 1000.0
    return (SAFETY_FACTOR * sessionTime - LATENESS_ALLOWANCE) / (_validateLosses(losses) + 1)


def keepAliveInterval(natSessionTimeMs: int, rng: random.Random, losses: int = 0) -> float:
    """
    Choose one flow's keep-alive interval.

    The interval is L{maximumInterval} shortened by a random fraction below
    L{JITTER}; it is never longer than the ceiling.

    @param natSessionTimeMs: The NAT session time in milliseconds.
    @param rng: The source of randomness (one draw).
    @param losses: See L{maximumInterval}.
    @return: The interval in seconds, in
        C{((1 - JITTER) * ceiling, ceiling]}.
    @raise KeepAliveParameterError: On an invalid argument.
    """
    ceiling = maximumInterval(natSessionTimeMs, losses)
    return ceiling * (1.0 - JITTER * rng.random())


def firstDelay(interval: float, rng: random.Random) -> float:
    """
    Choose how long after its creation a flow sends its first keep-alive.

    Uniform over C{(0, interval]}: a flow created now is never left idle
    longer than one interval, and flows created together spread their sends
    evenly over that interval.

    @param interval: The flow's interval in seconds, positive and finite.
    @param rng: The source of randomness (one draw).
    @return: The delay in seconds.
    @raise KeepAliveParameterError: When C{interval} is not positive and
        finite.
    """
    # random() is in [0, 1); 1 - random() is in (0, 1].
    return checkInterval(interval) * (1.0 - rng.random())


def checkInterval(interval: object, parameter: str = "interval") -> float:
    """
    Check a keep-alive interval given in seconds.

    @param interval: A positive, finite C{int} or C{float} (not a C{bool}).
    @param parameter: The parameter name to put in the error.
    @return: C{interval} as a C{float}.
    @raise KeepAliveParameterError: When it is not a positive finite number.
    """
    if (
        isinstance(interval, bool)
        or not isinstance(interval, (int, float))
        or not math.isfinite(interval)
        or interval <= 0
    ):
        raise KeepAliveParameterError(parameter, interval, "must be a positive finite number of seconds")
    return float(interval)
