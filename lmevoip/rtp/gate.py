"""
The noise gate: the SDK's "noise discrimination" on the sending side.

A L{NoiseGate} looks at every outgoing PCM frame and says whether it should
be sent. While the gate is closed nothing is sent: the RTP stream has a gap
(the sequence numbers stay contiguous, the timestamps jump by the silent
time when sending resumes), and it is RTP keep-alive that keeps the NAT
binding open during that gap.

The detector and the threshold
==============================

The level of a frame is, by default, its B{peak}: the largest absolute
sample value, 0..0x7FFF (-32768 counts as 32767; see
L{lmevoip.rtp.audio.peakLevel}). With C{detector="rms"} it is the frame's
root-mean-square value instead, a float in the same 16-bit units.

A frame is B{loud} when C{level >= threshold}, with the threshold an integer
from L{MIN_THRESHOLD} (0) to L{MAX_THRESHOLD} (0x7FFF) in those same
16-bit sample units. So:

  - threshold 0: every frame, digital silence included, is loud: the gate
    never closes;
  - threshold 1: only all-zero frames are quiet;
  - threshold 0x7FFF: only a frame with a full-scale sample (+32767 or
    -32768) is loud.

The decay (hangover)
====================

A loud frame opens the gate at once and is sent. Once the gate is open,
quiet frames keep being sent while the quiet time since the last loud frame,
this frame included, is at most C{decayMs}; the first quiet frame past that
closes the gate and is not sent. With frames of C{frameMs}, exactly
C{floor(decayMs / frameMs)} quiet frames are sent after the last loud one
(decay 0: none). The decay is 0..L{MAX_DECAY_MS} ms.

A disabled gate sends everything and does not run the detector at all
(zero cost); enabling it starts it closed.
"""

from __future__ import annotations

import enum
import math
import numbers
from typing import Optional

from twisted.logger import Logger

from lmevoip.rtp.audio import (
    SAMPLE_RATE,
    PcmLike,
    pcmToSamples,
    peakLevel,
    rmsLevel,
)

__all__ = [
    "MIN_THRESHOLD",
    "MAX_THRESHOLD",
    "DEFAULT_THRESHOLD",
    "MIN_DECAY_MS",
    "MAX_DECAY_MS",
    "DEFAULT_DECAY_MS",
    "DETECTOR_PEAK",
    "DETECTOR_RMS",
    "GateConfigError",
    "GateState",
    "NoiseGate",
]

#: The lowest threshold: every frame is loud, the gate never closes.
MIN_THRESHOLD = 0

#: The highest threshold: only a frame with a full-scale sample is loud.
MAX_THRESHOLD = 0x7FFF

#: The default threshold: a peak of 512 is about -36 dB below full scale,
#: well under speech and well over the noise floor of a quiet microphone.
DEFAULT_THRESHOLD = 512

#: The shortest hangover.
MIN_DECAY_MS = 0

#: The longest hangover (10 s): longer would no longer be a hangover but a
#: gate that practically never closes.
MAX_DECAY_MS = 10_000

#: The default hangover: 200 ms keeps word endings and short pauses.
DEFAULT_DECAY_MS = 200

#: Level = the frame's largest absolute sample value.
DETECTOR_PEAK = "peak"

#: Level = the frame's root-mean-square sample value.
DETECTOR_RMS = "rms"

_DETECTORS = {DETECTOR_PEAK: peakLevel, DETECTOR_RMS: rmsLevel}


class GateConfigError(ValueError):
    """
    A noise-gate setting is out of range or of the wrong type.
    """


class GateState(enum.Enum):
    """
    Whether the gate lets frames through.
    """

    OPEN = "open"
    CLOSED = "closed"


def _checkInteger(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise GateConfigError(f"noise gate {name} must be an int, not {value!r}")
    if not low <= int(value) <= high:
        raise GateConfigError(
            f"noise gate {name} {int(value)} is outside {low}..{high}")
    return int(value)


class NoiseGate:
    """
    Decides, frame by frame, whether outgoing audio is sent.

    @ivar framesPassed: frames for which L{process} returned True (a
        disabled gate counts them too).
    @ivar framesSuppressed: frames for which L{process} returned False.
    @ivar lastLevel: the level of the last frame the detector measured
        (None before any, and while disabled nothing is measured).
    @ivar openCount: how many times the gate opened.
    @ivar closeCount: how many times the gate closed.
    """

    log = Logger()

    def __init__(self, threshold: int = DEFAULT_THRESHOLD, enabled: bool = False,
                 decayMs: int = DEFAULT_DECAY_MS, detector: str = DETECTOR_PEAK) -> None:
        """
        @param threshold: see L{setThreshold}.
        @param enabled: see L{setEnabled}; the SDK's default is disabled.
        @param decayMs: see L{setDecay}.
        @param detector: L{DETECTOR_PEAK} or L{DETECTOR_RMS}.
        @raise GateConfigError: for a value out of range.
        """
        if detector not in _DETECTORS:
            raise GateConfigError(
                f"noise gate detector must be one of {sorted(_DETECTORS)}, not {detector!r}")
        self.detector = detector
        self._measure = _DETECTORS[detector]
        self._threshold = _checkInteger("threshold", threshold, MIN_THRESHOLD, MAX_THRESHOLD)
        self._decayMs = _checkInteger("decay", decayMs, MIN_DECAY_MS, MAX_DECAY_MS)
        self._enabled = bool(enabled)
        self._state = GateState.CLOSED
        self._quietMs = 0.0
        self.framesPassed = 0
        self.framesSuppressed = 0
        self.lastLevel: Optional[float] = None
        self.openCount = 0
        self.closeCount = 0

    @property
    def threshold(self) -> int:
        """
        The threshold in 16-bit sample units.
        """
        return self._threshold

    @property
    def decayMs(self) -> int:
        """
        The hangover in milliseconds.
        """
        return self._decayMs

    @property
    def enabled(self) -> bool:
        """
        Whether the gate is active.
        """
        return self._enabled

    @property
    def state(self) -> GateState:
        """
        L{GateState.OPEN} or L{GateState.CLOSED}.
        """
        return self._state

    @property
    def isOpen(self) -> bool:
        """
        Whether frames currently pass (always True while disabled).
        """
        return not self._enabled or self._state is GateState.OPEN

    def setThreshold(self, value: int) -> None:
        """
        Set the level at or above which a frame is loud.

        @param value: an int in C{[MIN_THRESHOLD, MAX_THRESHOLD]}.
        @raise GateConfigError: out of range, or not an int.
        """
        self._threshold = _checkInteger("threshold", value, MIN_THRESHOLD, MAX_THRESHOLD)

    def setDecay(self, ms: int) -> None:
        """
        Set the hangover: how long quiet frames keep being sent after the
        last loud one.

        @param ms: an int in C{[MIN_DECAY_MS, MAX_DECAY_MS]}.
        @raise GateConfigError: out of range, or not an int.
        """
        self._decayMs = _checkInteger("decay", ms, MIN_DECAY_MS, MAX_DECAY_MS)

    def setEnabled(self, enabled: bool) -> None:
        """
        Turn the gate on or off. Turning it on starts it closed (the next
        loud frame opens it at once).
        """
        enabled = bool(enabled)
        if enabled and not self._enabled:
            self.reset()
        self._enabled = enabled

    def reset(self) -> None:
        """
        Close the gate and forget the quiet time (counters are kept).
        """
        self._state = GateState.CLOSED
        self._quietMs = 0.0

    def level(self, pcmFrame: PcmLike) -> float:
        """
        The detector's level of C{pcmFrame} (peak or RMS, in 16-bit units).

        @raise lmevoip.rtp.audio.AudioFormatError: not whole 16-bit samples.
        """
        return float(self._measure(pcmFrame))

    def process(self, pcmFrame: PcmLike, frameMs: Optional[float] = None) -> bool:
        """
        Decide whether C{pcmFrame} is sent, updating the gate's state.

        @param pcmFrame: one frame of 16-bit PCM (bytes or C{int16} array).
        @param frameMs: the frame's duration in ms; by default its sample
            count at 8 kHz.
        @return: True to send the frame, False to send nothing.
        @raise lmevoip.rtp.audio.AudioFormatError: not whole 16-bit samples.
        @raise ValueError: a negative or non-finite C{frameMs}.
        """
        if not self._enabled:
            self.framesPassed += 1
            return True
        samples = pcmToSamples(pcmFrame)
        if frameMs is None:
            frameMs = len(samples) * 1000.0 / SAMPLE_RATE
        elif not (math.isfinite(frameMs) and frameMs >= 0):
            raise ValueError(f"frameMs must be a finite duration >= 0, not {frameMs!r}")
        level = float(self._measure(samples))
        self.lastLevel = level
        if level >= self._threshold:
            self._quietMs = 0.0
            if self._state is GateState.CLOSED:
                self._state = GateState.OPEN
                self.openCount += 1
                self.log.debug("noise gate opened at level {gateLevel}", gateLevel=level)
            send = True
        elif self._state is GateState.OPEN:
            self._quietMs += frameMs
            if self._quietMs <= self._decayMs:
                send = True
            else:
                self._state = GateState.CLOSED
                self.closeCount += 1
                self.log.debug("noise gate closed after {quietMs} ms below {threshold}",
                               quietMs=self._quietMs, threshold=self._threshold)
                send = False
        else:
            send = False
        if send:
            self.framesPassed += 1
        else:
            self.framesSuppressed += 1
        return send
