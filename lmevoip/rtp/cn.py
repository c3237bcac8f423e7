"""
Comfort noise (RFC 3389), sans-IO: the CN payload, the noise level of a
PCM frame, and comfort noise for the receive side.

A CN payload (static RTP payload type 13, 8000 Hz with G.711) is a noise
level octet, 0-127 meaning 0 to -127 dBov, optionally followed by one octet
per reflection coefficient of an all-pole model of the noise spectrum (the
model order is the number of octets).

dBov is the level relative to the overload point. For 16-bit linear PCM
this module takes a square wave of amplitude 32767 as 0 dBov, so
C{dBov = 10 * log10(mean(x**2) / 32767**2)}: a full-scale sine is about
-3 dBov and digital silence is -infinity, sent as 127.

Reflection coefficients are mapped linearly between an octet C{N} (0-254)
and a coefficient C{k = (N - 127) / 128}; L{ComfortNoise.coefficients} and
L{quantizeReflectionCoefficient} convert.

The generator, L{ComfortNoiseGenerator}, makes white Gaussian noise of the
requested level from a numpy C{Generator} (PCG64) that can be seeded for
reproducible output. It does not shape the spectrum with the reflection
coefficients; RFC 3389 leaves noise synthesis to the implementation, and
white noise at the right level is what most G.711 endpoints play.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from lmevoip.rtp.packet import RtpParseError

__all__ = [
    "CN_PAYLOAD_TYPE",
    "CN_CLOCK_RATE",
    "CN_NAME",
    "SILENCE_LEVEL",
    "FULL_SCALE",
    "ComfortNoise",
    "quantizeReflectionCoefficient",
    "dbovFromPcm",
    "levelFromPcm",
    "ComfortNoiseGenerator",
]

#: The static RTP payload type of CN at 8000 Hz (RFC 3551 table 4).
CN_PAYLOAD_TYPE = 13
#: The clock rate of payload type 13.
CN_CLOCK_RATE = 8000
#: The encoding name in SDP (a=rtpmap:13 CN/8000).
CN_NAME = "CN"
#: The noise level octet for the quietest level, sent for digital silence.
SILENCE_LEVEL = 127
#: The 0 dBov reference amplitude for 16-bit linear PCM.
FULL_SCALE = 32767.0


class ComfortNoise:
    """
    One CN payload (RFC 3389 section 3).

    @ivar level: The noise level magnitude in -dBov, 0-127 (C{40} means
        -40 dBov).
    @ivar reflectionCoefficients: The quantised reflection coefficients,
        one octet each (may be empty).
    """

    __slots__ = ("level", "reflectionCoefficients")

    def __init__(self, level: int, reflectionCoefficients: bytes = b"") -> None:
        self.level = level
        self.reflectionCoefficients = bytes(reflectionCoefficients)

    @classmethod
    def parse(cls, payload: bytes) -> ComfortNoise:
        """
        Parse a CN payload.

        @param payload: The RTP payload of a payload-type-13 packet.
        @return: The payload.
        @raise RtpParseError: If the payload is empty or the reserved most
            significant bit of the level octet is set.
        """
        if not payload:
            raise RtpParseError("CN payload is empty, it needs a noise level octet")
        level = payload[0]
        if level & 0x80:
            raise RtpParseError(f"CN noise level octet {level:#04x} has its reserved bit set")
        return cls(level, payload[1:])

    def serialize(self) -> bytes:
        """
        @return: The payload bytes.
        @raise ValueError: If the level is not in 0-127.
        """
        if not isinstance(self.level, int) or not 0 <= self.level <= 127:
            raise ValueError(f"CN level must be an integer in 0..127, got {self.level!r}")
        return bytes((self.level,)) + self.reflectionCoefficients

    def coefficients(self) -> list[float]:
        """
        @return: The reflection coefficients, each C{(N - 127) / 128}.
        """
        return [(octet - 127) / 128.0 for octet in self.reflectionCoefficients]

    @property
    def dbov(self) -> int:
        """
        The noise level in dBov (0 or negative).
        """
        return -self.level

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ComfortNoise):
            return NotImplemented
        return (self.level, self.reflectionCoefficients) == (
            other.level,
            other.reflectionCoefficients,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ComfortNoise(level={self.level!r}, reflectionCoefficients={self.reflectionCoefficients!r})"


def quantizeReflectionCoefficient(coefficient: float) -> int:
    """
    Quantise one reflection coefficient to its CN payload octet.

    @param coefficient: A reflection coefficient, nominally in (-1, 1).
    @return: C{round(k * 128) + 127}, clamped to 0-254.
    """
    return min(max(round(coefficient * 128.0) + 127, 0), 254)


def _samples(pcm: bytes | bytearray | memoryview | np.ndarray) -> npt.NDArray[np.float64]:
    if isinstance(pcm, np.ndarray):
        return pcm.astype(np.float64)
    if len(pcm) & 1:
        raise ValueError(f"16-bit PCM must have an even length, got {len(pcm)} bytes")
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def dbovFromPcm(pcm: bytes | bytearray | memoryview | np.ndarray) -> float:
    """
    The level of a PCM frame in dBov (RFC 3389 section 3.1).

    @param pcm: 16-bit signed little-endian PCM bytes, or an integer array.
    @return: C{10 * log10(mean(x**2) / 32767**2)}; C{-inf} for silence or an
        empty frame.
    @raise ValueError: If C{pcm} is bytes of odd length.
    """
    samples = _samples(pcm)
    if samples.size == 0:
        return -math.inf
    power = float(np.mean(samples * samples))
    if power == 0.0:
        return -math.inf
    return 10.0 * math.log10(power / (FULL_SCALE * FULL_SCALE))


def levelFromPcm(pcm: bytes | bytearray | memoryview | np.ndarray) -> int:
    """
    The CN noise level octet for a PCM frame.

    @param pcm: 16-bit signed little-endian PCM bytes, or an integer array.
    @return: C{-dBov} rounded to the nearest integer, clamped to 0-127
        (127 for silence).
    @raise ValueError: If C{pcm} is bytes of odd length.
    """
    dbov = dbovFromPcm(pcm)
    if dbov == -math.inf:
        return SILENCE_LEVEL
    return min(max(round(-dbov), 0), SILENCE_LEVEL)


class ComfortNoiseGenerator:
    """
    White Gaussian comfort noise at a CN noise level.

    The samples are C{round(normal(0, sigma))}, clipped to 16 bits, with
    C{sigma = 32767 * 10 ** (-level / 20)}, so the output's level is the
    requested one (to within rounding) from about 3 to 90 -dBov; above
    that, clipping makes it quieter, and below it integer rounding makes
    it slightly louder.

    @ivar random: The C{numpy.random.Generator} used.
    """

    def __init__(self, seed: int | None = None, random: np.random.Generator | None = None) -> None:
        """
        @param seed: Seed for a new PCG64 generator: the same seed gives the
            same noise. C{None} seeds from the operating system.
        @param random: A generator to use instead (C{seed} is then ignored).
        """
        self.random = random if random is not None else np.random.default_rng(seed)

    def generateArray(self, level: int, sampleCount: int) -> npt.NDArray[np.int16]:
        """
        @param level: The CN noise level octet, 0-127 (-dBov).
        @param sampleCount: How many samples.
        @return: A native C{int16} array.
        @raise ValueError: If C{level} is not in 0-127 or C{sampleCount} is
            negative.
        """
        if not 0 <= level <= 127:
            raise ValueError(f"CN level must be in 0..127, got {level!r}")
        if sampleCount < 0:
            raise ValueError(f"sampleCount must not be negative, got {sampleCount!r}")
        sigma = FULL_SCALE * 10.0 ** (-level / 20.0)
        noise = np.rint(self.random.normal(0.0, sigma, sampleCount))
        return np.clip(noise, -32768, 32767).astype(np.int16)

    def generate(self, level: int, sampleCount: int) -> bytes:
        """
        @param level: The CN noise level octet, 0-127 (-dBov).
        @param sampleCount: How many samples.
        @return: 16-bit signed little-endian PCM.
        @raise ValueError: If C{level} is not in 0-127 or C{sampleCount} is
            negative.
        """
        return self.generateArray(level, sampleCount).astype("<i2", copy=False).tobytes()
