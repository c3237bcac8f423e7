"""
Audio sources and sinks: the PCM ends of an RTP media stream.

Everything here is sans-IO media logic: no sockets, no reactor. PCM is 8 kHz
mono signed 16-bit little-endian, as C{bytes} or as a one-dimensional numpy
C{int16} array; a frame is C{ptime} milliseconds of it (20 ms = 160
samples = 320 bytes).

A B{source} (L{IAudioSource<lmevoip.interfaces.IAudioSource>}) is what the
RTP sender pulls a frame from every C{ptime}: C{readFrame(samples)} returns
exactly C{samples * 2} bytes, or C{None} when a finite source has ended or a
live source has nothing right now (the sender then sends nothing for that
frame). A B{sink} (L{IAudioSink<lmevoip.interfaces.IAudioSink>}) is where the
RTP receiver pushes every decoded frame: C{writeFrame(pcm)}. Both have an
idempotent C{close()}; after it a source returns C{None} and a sink ignores
frames. Both are context managers.

All vector work is numpy: no per-sample Python loop.
"""

from __future__ import annotations

import fractions
import functools
import math
import re
import wave
from collections import deque
from os import PathLike
from typing import Callable, Deque, Optional, Union

import numpy as np
from twisted.logger import Logger
from zope.interface import implementer

from lmevoip.interfaces import IAudioSink, IAudioSource

__all__ = [
    "SAMPLE_RATE",
    "BYTES_PER_SAMPLE",
    "FULL_SCALE",
    "MIN_DBOV",
    "AudioFormatError",
    "PcmLike",
    "frameSamples",
    "pcmToSamples",
    "samplesToPcm",
    "peakLevel",
    "rmsLevel",
    "levelDbov",
    "resample",
    "ToneSource",
    "SilenceSource",
    "WavFileSource",
    "PushSource",
    "DiscardSink",
    "WavRecorder",
    "EchoSink",
    "CallbackSink",
    "LevelMeter",
]

#: The sample rate of all PCM in lmevoip (narrowband telephony).
SAMPLE_RATE = 8000

#: Bytes per sample of signed 16-bit PCM.
BYTES_PER_SAMPLE = 2

#: The largest magnitude of a 16-bit sample, the reference of dBov here.
FULL_SCALE = 0x7FFF

#: The level L{levelDbov} gives silence (and anything quieter), as RFC 6464
#: uses 127 for "silence" in its -dBov scale.
MIN_DBOV = -127.0

#: Largest frame a source or sink accepts, in samples (10 s at 8 kHz); a
#: bound so that a wrong argument cannot allocate without limit.
MAX_FRAME_SAMPLES = 10 * SAMPLE_RATE

_PCM_DTYPE = np.dtype("<i2")

PcmLike = Union[bytes, bytearray, memoryview, np.ndarray]

#: WAV format tags that the stdlib C{wave} module refuses, for error messages.
_WAV_FORMAT_NAMES = {
    0x0002: "Microsoft ADPCM",
    0x0003: "IEEE float",
    0x0006: "G.711 A-law",
    0x0007: "G.711 mu-law",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0055: "MPEG layer 3",
    0xFFFE: "WAVE_FORMAT_EXTENSIBLE",
}


class AudioFormatError(ValueError):
    """
    PCM or a WAV file is in a format this module cannot use, or a buffer is
    not whole 16-bit samples. C{str(error)} names the format.
    """


def frameSamples(ptimeMs: float, sampleRate: int = SAMPLE_RATE) -> int:
    """
    The number of samples in one frame of C{ptimeMs} milliseconds.

    @param ptimeMs: the packetisation time in milliseconds (20 for 20 ms).
    @param sampleRate: samples per second.
    @return: C{ptimeMs * sampleRate / 1000}, which must be a whole positive
        number.
    @raise ValueError: when it is not.
    """
    exact = ptimeMs * sampleRate / 1000
    count = int(round(exact))
    if count <= 0 or abs(exact - count) > 1e-9:
        raise ValueError(
            f"ptime {ptimeMs} ms is not a whole number of samples at {sampleRate} Hz")
    return count


def pcmToSamples(pcm: PcmLike) -> np.ndarray:
    """
    View PCM as a read-only numpy array of little-endian C{int16} samples.

    @param pcm: 16-bit little-endian PCM bytes (or bytearray/memoryview), or
        a one-dimensional C{int16} array (returned as it is).
    @return: a one-dimensional array; it shares memory with C{pcm}.
    @raise AudioFormatError: when C{pcm} is not whole 16-bit samples.
    """
    if isinstance(pcm, np.ndarray):
        if pcm.ndim != 1 or pcm.dtype.kind != "i" or pcm.dtype.itemsize != 2:
            raise AudioFormatError(
                f"PCM arrays must be one-dimensional int16, not {pcm.ndim}-d {pcm.dtype}")
        return pcm
    if not isinstance(pcm, (bytes, bytearray, memoryview)):
        raise AudioFormatError(f"PCM must be bytes or an int16 array, not {type(pcm).__name__}")
    if len(pcm) % BYTES_PER_SAMPLE:
        raise AudioFormatError(
            f"16-bit PCM needs an even number of bytes, got {len(pcm)}")
    return np.frombuffer(pcm, dtype=_PCM_DTYPE)


def samplesToPcm(samples: np.ndarray) -> bytes:
    """
    Serialise samples as 16-bit little-endian PCM bytes.

    @param samples: an integer or float array; floats are rounded to the
        nearest integer and every value is clipped to the C{int16} range.
    @return: C{len(samples) * 2} bytes.
    """
    samples = np.asarray(samples)
    if samples.dtype == _PCM_DTYPE:
        return samples.tobytes()
    if samples.dtype.kind == "f":
        samples = np.rint(samples)
    return np.clip(samples, -0x8000, 0x7FFF).astype(_PCM_DTYPE).tobytes()


def peakLevel(pcm: PcmLike) -> int:
    """
    The peak absolute sample value of C{pcm}, in C{[0, 0x7FFF]}.

    -32768 counts as 32767 so that every level fits the 15-bit range of a
    threshold. An empty buffer has level 0.

    @raise AudioFormatError: when C{pcm} is not whole 16-bit samples.
    """
    samples = pcmToSamples(pcm)
    if not len(samples):
        return 0
    return min(max(int(samples.max()), -int(samples.min())), FULL_SCALE)


def rmsLevel(pcm: PcmLike) -> float:
    """
    The root-mean-square sample value of C{pcm} (0.0 for an empty buffer).

    @raise AudioFormatError: when C{pcm} is not whole 16-bit samples.
    """
    samples = pcmToSamples(pcm)
    if not len(samples):
        return 0.0
    floats = samples.astype(np.float64)
    return math.sqrt(float(np.dot(floats, floats)) / len(floats))


def levelDbov(pcm: PcmLike) -> float:
    """
    The level of C{pcm} in dBov: C{20 * log10(rms / 32767)}.

    0 dBov is the RMS of a full-scale square wave (the overload point, as in
    RFC 6464/6465), so a full-scale sine is -3.01 dBov. Silence, and anything
    quieter than L{MIN_DBOV}, gives L{MIN_DBOV}.

    @raise AudioFormatError: when C{pcm} is not whole 16-bit samples.
    """
    return _dbovFromRms(rmsLevel(pcm))


def _dbovFromRms(rms: float) -> float:
    if rms <= 0.0:
        return MIN_DBOV
    return max(20.0 * math.log10(rms / FULL_SCALE), MIN_DBOV)


def _checkFrameSize(samples: int) -> int:
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)):
        raise TypeError(f"a frame size is an int number of samples, not {samples!r}")
    if not 0 < samples <= MAX_FRAME_SAMPLES:
        raise ValueError(f"a frame is 1..{MAX_FRAME_SAMPLES} samples, not {samples}")
    return int(samples)


def _lowPassTaps(cutoff: float, halfWidth: int) -> np.ndarray:
    """
    A Blackman-windowed sinc low-pass FIR with unity DC gain.

    @param cutoff: cut-off frequency as a fraction of the sample rate
        (0 < cutoff < 0.5).
    @param halfWidth: taps on each side of the centre tap.
    """
    n = np.arange(-halfWidth, halfWidth + 1, dtype=np.float64)
    taps = 2.0 * cutoff * np.sinc(2.0 * cutoff * n) * np.blackman(2 * halfWidth + 1)
    return taps / taps.sum()


def resample(samples: np.ndarray, fromRate: int, toRate: int = SAMPLE_RATE) -> np.ndarray:
    """
    Resample mono audio: anti-aliased linear interpolation.

    Downsampling first low-pass filters with a Blackman-windowed sinc FIR
    whose cut-off is 45% of the target rate (so 3.6 kHz for 8 kHz, past the
    3.4 kHz telephone band; about 16 input periods of the target rate on each
    side), then takes samples at the target instants by linear interpolation
    (C{numpy.interp}). Upsampling only interpolates (linear interpolation is
    itself a mild low-pass). The output has C{floor(len * toRate / fromRate)}
    samples, time-aligned with the input's first sample.

    This is good enough for prompts and test tones on a telephone channel;
    it is not a mastering-grade resampler.

    @param samples: the input, any numeric dtype.
    @param fromRate: the input's sample rate in Hz.
    @param toRate: the output's sample rate in Hz.
    @return: C{int16} samples, rounded and clipped.
    """
    if fromRate <= 0 or toRate <= 0:
        raise ValueError(f"sample rates must be positive, not {fromRate} -> {toRate}")
    x = np.asarray(samples, dtype=np.float64)
    if fromRate == toRate:
        return np.clip(np.rint(x), -0x8000, 0x7FFF).astype(np.int16)
    if fromRate > toRate and len(x):
        ratio = fromRate / toRate
        taps = _lowPassTaps(0.45 / ratio, int(math.ceil(16 * ratio)))
        if len(taps) <= len(x):
            x = np.convolve(x, taps, mode="same")
        else:
            x = np.convolve(x, taps, mode="full")[len(taps) // 2:len(taps) // 2 + len(x)]
    count = len(x) * toRate // fromRate
    if count == 0:
        return np.zeros(0, dtype=np.int16)
    instants = np.arange(count, dtype=np.float64) * (fromRate / toRate)
    y = np.interp(instants, np.arange(len(x), dtype=np.float64), x)
    return np.clip(np.rint(y), -0x8000, 0x7FFF).astype(np.int16)


class _Closing:
    """
    Context-manager support for sources and sinks: C{with} closes them.
    """

    __slots__ = ()

    def close(self) -> None:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *excInfo) -> None:
        self.close()


#: The longest tone cycle L{ToneSource} precomputes, in samples (2 s at
#: 8 kHz, 32 KiB of PCM): every frequency in whole or half hertz repeats
#: within it at 8 kHz.
_MAX_TONE_CYCLE = 16000

#: How many samples past one cycle the precomputed buffer runs, so that any
#: frame up to this size is one slice of it (256 ms at 8 kHz).
_TONE_SLACK = 2048


@functools.lru_cache(maxsize=128)
def _toneCycle(cyclesNumerator: int, cycleSamples: int, peak: float) -> bytes:
    """
    One exact cycle of a sine tone as 16-bit PCM, followed by its first
    L{_TONE_SLACK} samples again (the cycle repeated as often as that
    takes), so that a frame starting anywhere in the cycle is one slice.

    Sample C{n} is C{round(peak * sin(2 pi * cyclesNumerator * n /
    cycleSamples))}: the tone advances C{cyclesNumerator / cycleSamples}
    cycles per sample, so C{cycleSamples} samples hold a whole number of
    cycles and the sequence repeats from there exactly. The phase of each
    sample is computed from the integer C{cyclesNumerator * n mod
    cycleSamples}, so it carries no rounding from earlier samples.

    Shared (bounded cache) between sources of the same tone: the bytes are
    immutable.
    """
    n = np.arange(cycleSamples, dtype=np.int64)
    phase = (n * cyclesNumerator) % cycleSamples
    cycle = samplesToPcm(np.sin(2.0 * np.pi * phase / cycleSamples) * peak)
    repeats = 1 + -(-_TONE_SLACK // cycleSamples)
    return (cycle * repeats)[:(cycleSamples + _TONE_SLACK) * BYTES_PER_SAMPLE]


@implementer(IAudioSource)
class ToneSource(_Closing):
    """
    An endless sine tone, phase-continuous across frames.

    Sample C{n} of the tone (counted from the first sample read) is
    C{round(amplitude * 32767 * sin(2 pi * frequency * n / sampleRate))},
    so frames of any sizes join without a click: the concatenation of
    frames equals one long tone.

    The tone is periodic in samples whenever C{frequency / sampleRate} is a
    fraction C{p / q} with a small C{q} (C{q} = 200 for 440 Hz at 8 kHz; at
    most 8000 for any whole-hertz frequency at 8 kHz). Then one cycle of
    C{q} samples is computed once, as PCM bytes (shared between sources of
    the same tone), and C{readFrame} is a slice of it at a sample index
    that wraps modulo C{q}: no trigonometry per frame, about a
    microsecond per 20 ms frame instead of about ten. A frequency without
    such a period (C{q} above 16000 samples) is computed frame by frame,
    from the same integer sample index.

    @ivar frequency: the tone's frequency in Hz.
    @ivar amplitude: the peak as a fraction of full scale (0..1).
    @ivar sampleRate: samples per second.
    """

    # Slots: a source is read on every tick of its session, and a compact
    # object stays in fewer cache lines (see RtpSession.__slots__).
    __slots__ = ("frequency", "amplitude", "sampleRate", "_cyclesNumerator", "_cycleSamples",
                 "_cyclesPerSample", "_peak", "_cycle", "_index", "_closed", "__weakref__")

    def __init__(self, frequency: float = 440.0, amplitude: float = 0.5,
                 sampleRate: int = SAMPLE_RATE) -> None:
        """
        @param frequency: Hz, from 0 up to the Nyquist frequency.
        @param amplitude: peak as a fraction of full scale (32767), 0..1.
        @param sampleRate: samples per second.
        @raise ValueError: for a value out of those ranges.
        """
        if sampleRate <= 0:
            raise ValueError(f"sample rate must be positive, not {sampleRate}")
        if not 0.0 <= frequency <= sampleRate / 2:
            raise ValueError(
                f"tone frequency {frequency} Hz is outside 0..{sampleRate / 2} Hz")
        if not 0.0 <= amplitude <= 1.0:
            raise ValueError(f"tone amplitude {amplitude} is outside 0..1 of full scale")
        self.frequency = float(frequency)
        self.amplitude = float(amplitude)
        self.sampleRate = int(sampleRate)
        # Cycles per sample as an exact fraction (a float is a dyadic
        # rational, so this is exact).
        step = fractions.Fraction(self.frequency) / self.sampleRate
        self._cyclesNumerator = step.numerator
        self._cycleSamples = step.denominator
        self._cyclesPerSample = self.frequency / self.sampleRate
        self._peak = self.amplitude * FULL_SCALE
        self._cycle: Optional[bytes] = None
        if self._cycleSamples <= _MAX_TONE_CYCLE:
            self._cycle = _toneCycle(self._cyclesNumerator, self._cycleSamples, self._peak)
        # The index of the next sample, modulo the period: an integer, so it
        # never loses precision however long the tone runs.
        self._index = 0
        self._closed = False

    @classmethod
    def atLevel(cls, dbov: float, frequency: float = 440.0,
                sampleRate: int = SAMPLE_RATE) -> "ToneSource":
        """
        A tone whose RMS level is C{dbov} (see L{levelDbov}).

        A sine's RMS is its peak divided by sqrt(2), so the peak is
        C{32767 * sqrt(2) * 10 ** (dbov / 20)}; the loudest sine that does
        not clip is -3.01 dBov. The ITU-T G.115/RFC 7874 speech level of
        -19 dBm0 is about an RMS of 2600, i.e. -22 dBov.

        @raise ValueError: when the tone would clip (dbov > -3.0103).
        """
        amplitude = math.sqrt(2.0) * 10.0 ** (dbov / 20.0)
        if amplitude > 1.0 + 1e-12:
            raise ValueError(f"a sine at {dbov} dBov would clip (the maximum is -3.01 dBov)")
        return cls(frequency, min(amplitude, 1.0), sampleRate)

    def readFrame(self, samples: int) -> Optional[bytes]:
        """
        The next C{samples} samples of the tone (C{None} once closed).
        """
        if samples.__class__ is not int:
            samples = _checkFrameSize(samples)
        elif not 0 < samples <= MAX_FRAME_SAMPLES:
            _checkFrameSize(samples)
        if self._closed:
            return None
        index = self._index
        period = self._cycleSamples
        self._index = (index + samples) % period
        cycle = self._cycle
        if cycle is not None:
            start = index * BYTES_PER_SAMPLE
            end = start + samples * BYTES_PER_SAMPLE
            if end <= len(cycle):
                return cycle[start:end]
            # Longer than the slack: whole cycles from the start of one.
            whole = cycle[:period * BYTES_PER_SAMPLE]
            rotated = whole[start:] + whole[:start]
            return (rotated * (1 + samples // period))[:samples * BYTES_PER_SAMPLE]
        # No short period: compute the frame, from the exact phase of its
        # first sample (integer arithmetic, then one correctly rounded
        # division) plus float steps within the frame.
        first = (index * self._cyclesNumerator % period) / period
        cycles = first + np.arange(samples, dtype=np.float64) * self._cyclesPerSample
        return samplesToPcm(np.sin(2.0 * np.pi * cycles) * self._peak)

    def close(self) -> None:
        self._closed = True


@implementer(IAudioSource)
class SilenceSource(_Closing):
    """
    Endless digital silence (all-zero samples) until closed.
    """

    def __init__(self) -> None:
        self._closed = False

    def readFrame(self, samples: int) -> Optional[bytes]:
        samples = _checkFrameSize(samples)
        if self._closed:
            return None
        return bytes(samples * BYTES_PER_SAMPLE)

    def close(self) -> None:
        self._closed = True


def _wavFormatError(path: str, error: Exception) -> AudioFormatError:
    """
    Turn the C{wave} module's complaint into an L{AudioFormatError} that names
    the format when C{wave} said which format tag it refused.
    """
    match = re.search(r"unknown format: (\d+)", str(error))
    if match:
        tag = int(match.group(1))
        name = _WAV_FORMAT_NAMES.get(tag, "an unsupported encoding")
        return AudioFormatError(
            f"{path}: WAV format tag 0x{tag:04X} ({name}) is not supported; "
            f"only integer PCM WAV files are read")
    return AudioFormatError(f"{path}: not a WAV file this reader can use ({error})")


@implementer(IAudioSource)
class WavFileSource(_Closing):
    """
    Audio from a PCM WAV file, optionally looped.

    8 kHz mono 16-bit files (the wire format) are streamed from the file
    frame by frame, whatever their length. Any other B{integer PCM} WAV is
    converted once, at open, into 8 kHz mono 16-bit held in memory:

      - more than one channel: the channels are averaged;
      - 8-bit (unsigned) samples: re-centred and scaled to 16 bits;
        24- and 32-bit samples: their top 16 bits are kept;
      - another sample rate: L{resample} (anti-aliased linear
        interpolation).

    A file needing conversion must not be longer than C{maxConvertSeconds}
    (so a huge file cannot fill memory). Every other encoding the C{wave}
    module cannot read (IEEE float, A-law and mu-law WAV, ADPCM, MP3 and, on
    Python 3.11, C{WAVE_FORMAT_EXTENSIBLE}) is refused with an
    L{AudioFormatError} naming the format tag.

    When the file ends, the last frame is padded with silence and the next
    C{readFrame} returns C{None}; with C{loop=True} reading wraps to the start
    instead (a file with no samples ends at once even when looping).

    @ivar path: the file's path.
    @ivar loop: whether reading wraps to the start at the end.
    @ivar sourceRate: the file's own sample rate.
    @ivar sourceChannels: the file's own channel count.
    @ivar sourceSampleWidth: the file's own bytes per sample.
    @ivar converted: whether the file had to be converted.
    @ivar totalSamples: the length in 8 kHz samples.
    """

    def __init__(self, path: Union[str, PathLike], loop: bool = False,
                 maxConvertSeconds: float = 600.0) -> None:
        """
        @param path: the WAV file to read.
        @param loop: wrap to the start at the end, forever.
        @param maxConvertSeconds: the longest file that is converted in
            memory (8 kHz mono 16-bit files are streamed and unbounded).
        @raise AudioFormatError: the file is not a WAV file this source
            reads, or needs converting and is too long.
        @raise OSError: the file cannot be opened.
        """
        self.path = str(path)
        self.loop = bool(loop)
        self._closed = False
        self._ended = False
        self._position = 0
        self._pcm: Optional[bytes] = None
        try:
            self._wav: Optional[wave.Wave_read] = wave.open(self.path, "rb")
        except (wave.Error, EOFError) as e:
            raise _wavFormatError(self.path, e) from e
        try:
            self._probe(maxConvertSeconds)
        except BaseException:
            self._wav.close()
            raise

    def _probe(self, maxConvertSeconds: float) -> None:
        wav = self._wav
        self.sourceChannels = wav.getnchannels()
        self.sourceSampleWidth = wav.getsampwidth()
        self.sourceRate = wav.getframerate()
        frames = wav.getnframes()
        if self.sourceChannels < 1 or self.sourceSampleWidth not in (1, 2, 3, 4) \
                or self.sourceRate <= 0:
            raise AudioFormatError(
                f"{self.path}: {self.sourceChannels} channel(s) of "
                f"{self.sourceSampleWidth * 8}-bit PCM at {self.sourceRate} Hz "
                f"is not a layout this reader converts")
        self.converted = (self.sourceChannels, self.sourceSampleWidth, self.sourceRate) \
            != (1, BYTES_PER_SAMPLE, SAMPLE_RATE)
        if not self.converted:
            self.totalSamples = frames
            return
        if frames > maxConvertSeconds * self.sourceRate:
            raise AudioFormatError(
                f"{self.path}: {frames / self.sourceRate:.1f} s of "
                f"{self.sourceChannels}-channel {self.sourceSampleWidth * 8}-bit PCM at "
                f"{self.sourceRate} Hz needs converting and is longer than the "
                f"{maxConvertSeconds} s limit")
        samples = self._decode(wav.readframes(frames))
        self._pcm = samplesToPcm(resample(samples, self.sourceRate, SAMPLE_RATE))
        self.totalSamples = len(self._pcm) // BYTES_PER_SAMPLE
        wav.close()
        self._wav = None

    def _decode(self, raw: bytes) -> np.ndarray:
        """
        Integer PCM of any width and channel count to mono float samples on
        the 16-bit scale.
        """
        width, channels = self.sourceSampleWidth, self.sourceChannels
        usable = len(raw) - len(raw) % (width * channels)
        data = np.frombuffer(raw, dtype=np.uint8, count=usable)
        if width == 1:
            values = (data.astype(np.float64) - 128.0) * 256.0
        elif width == 2:
            values = data.view("<i2").astype(np.float64)
        elif width == 3:
            triples = data.reshape(-1, 3)
            values = (triples[:, 1].astype(np.uint16)
                      | (triples[:, 2].astype(np.uint16) << 8)).view(np.int16).astype(np.float64)
        else:
            values = (data.view("<i4") >> 16).astype(np.float64)
        return values.reshape(-1, channels).mean(axis=1)

    def _readRaw(self, samples: int) -> bytes:
        if self._pcm is not None:
            start = self._position * BYTES_PER_SAMPLE
            chunk = self._pcm[start:start + samples * BYTES_PER_SAMPLE]
        else:
            chunk = self._wav.readframes(samples)
        self._position += len(chunk) // BYTES_PER_SAMPLE
        return chunk

    def _rewind(self) -> None:
        self._position = 0
        if self._wav is not None:
            self._wav.rewind()

    def readFrame(self, samples: int) -> Optional[bytes]:
        """
        The next C{samples} samples, the last frame padded with silence;
        C{None} once the file has ended (never, when looping a non-empty
        file) or the source is closed.
        """
        samples = _checkFrameSize(samples)
        if self._closed or self._ended:
            return None
        need = samples * BYTES_PER_SAMPLE
        out = bytearray()
        while len(out) < need:
            chunk = self._readRaw((need - len(out)) // BYTES_PER_SAMPLE)
            if chunk:
                out += chunk
            elif self.loop and self.totalSamples > 0:
                self._rewind()
            else:
                self._ended = True
                break
        if not out:
            return None
        if len(out) < need:
            out += bytes(need - len(out))
        return bytes(out)

    def close(self) -> None:
        """
        Close the file (idempotent).
        """
        self._closed = True
        self._pcm = None
        if self._wav is not None:
            self._wav.close()
            self._wav = None


@implementer(IAudioSource)
class PushSource(_Closing):
    """
    Frames pushed by the application, read by the RTP sender: a bounded
    FIFO of samples.

    C{push} may be given chunks of any whole number of samples;
    C{readFrame(n)} returns the oldest C{n} queued samples, or C{None} when
    fewer than C{n} are queued (which the sender takes to mean "the
    application produced nothing": no packet, or silence). The queue holds
    at most C{maxFrames * frameSamples} samples; pushing beyond that drops
    the oldest audio, so a producer faster than the sender delays speech by
    at most C{maxFrames} frames and never grows memory.

    @ivar maxFrames: the bound in frames.
    @ivar frameSamples: the frame size that bound is counted in.
    @ivar pushed: chunks pushed.
    @ivar dropped: pushed chunks dropped, wholly or partly, by the bound.
    @ivar droppedSamples: samples dropped by the bound.
    """

    def __init__(self, maxFrames: int = 50, frameSamples: int = 160) -> None:
        """
        @param maxFrames: how many frames the queue holds (at least 1).
        @param frameSamples: samples per frame (160 for 20 ms at 8 kHz).
        """
        if maxFrames < 1 or frameSamples < 1:
            raise ValueError(f"maxFrames and frameSamples must be >= 1, not "
                             f"{maxFrames} and {frameSamples}")
        self.maxFrames = maxFrames
        self.frameSamples = frameSamples
        self._capacity = maxFrames * frameSamples * BYTES_PER_SAMPLE
        self._chunks: Deque[bytes] = deque()
        self._headOffset = 0
        self._queued = 0
        self._closed = False
        self.pushed = 0
        self.dropped = 0
        self.droppedSamples = 0

    @property
    def queuedSamples(self) -> int:
        """
        How many samples are waiting to be read.
        """
        return self._queued // BYTES_PER_SAMPLE

    def push(self, pcm: PcmLike) -> None:
        """
        Queue PCM for sending; silently ignored once closed.

        @param pcm: 16-bit PCM bytes or an C{int16} array, any whole number
            of samples.
        @raise AudioFormatError: when C{pcm} is not whole 16-bit samples.
        """
        data = pcmToSamples(pcm).astype(_PCM_DTYPE, copy=False).tobytes()
        if self._closed or not data:
            return
        self.pushed += 1
        self._chunks.append(data)
        self._queued += len(data)
        excess = self._queued - self._capacity
        while excess > 0:
            head = self._chunks[0]
            available = len(head) - self._headOffset
            self.dropped += 1
            if available <= excess:
                self._chunks.popleft()
                self._headOffset = 0
                taken = available
            else:
                self._headOffset += excess
                taken = excess
            self._queued -= taken
            self.droppedSamples += taken // BYTES_PER_SAMPLE
            excess -= taken

    def readFrame(self, samples: int) -> Optional[bytes]:
        """
        The oldest C{samples} queued samples, or C{None} when fewer are
        queued or the source is closed.
        """
        samples = _checkFrameSize(samples)
        need = samples * BYTES_PER_SAMPLE
        if self._closed or self._queued < need:
            return None
        parts = []
        remaining = need
        while remaining:
            head = self._chunks[0]
            end = min(len(head), self._headOffset + remaining)
            parts.append(head[self._headOffset:end])
            remaining -= end - self._headOffset
            if end == len(head):
                self._chunks.popleft()
                self._headOffset = 0
            else:
                self._headOffset = end
        self._queued -= need
        return b"".join(parts)

    def clear(self) -> None:
        """
        Drop everything queued (not counted as drops).
        """
        self._chunks.clear()
        self._headOffset = 0
        self._queued = 0

    def close(self) -> None:
        self._closed = True
        self.clear()


@implementer(IAudioSink)
class DiscardSink(_Closing):
    """
    Throws frames away, counting them.

    @ivar frames: frames written.
    @ivar samples: samples written.
    """

    def __init__(self) -> None:
        self.frames = 0
        self.samples = 0
        self._closed = False

    def writeFrame(self, pcm: PcmLike) -> None:
        """
        @raise AudioFormatError: when C{pcm} is not whole 16-bit samples.
        """
        count = len(pcmToSamples(pcm))
        if self._closed:
            return
        self.frames += 1
        self.samples += count

    def close(self) -> None:
        self._closed = True


@implementer(IAudioSink)
class WavRecorder(_Closing):
    """
    Records frames to an 8 kHz mono 16-bit WAV file, up to a maximum
    duration.

    Audio past C{maxSeconds} is dropped (the frame that crosses the limit is
    cut at it) and counted, so a long call cannot fill the disk. C{close()}
    writes the final header; the recorder is also a context manager.

    @ivar path: the file being written.
    @ivar maxSamples: the bound in samples.
    @ivar samplesWritten: samples in the file so far.
    @ivar framesWritten: frames written (wholly or partly).
    @ivar framesDropped: frames dropped (wholly or partly) by the bound.
    """

    def __init__(self, path: Union[str, PathLike], maxSeconds: float = 3600.0) -> None:
        """
        @param path: the file to create (replaced if it exists).
        @param maxSeconds: the longest recording, in seconds (> 0).
        @raise OSError: the file cannot be created.
        """
        if not maxSeconds > 0:
            raise ValueError(f"maxSeconds must be positive, not {maxSeconds}")
        self.path = str(path)
        self.maxSamples = int(maxSeconds * SAMPLE_RATE)
        self.samplesWritten = 0
        self.framesWritten = 0
        self.framesDropped = 0
        self._wav: Optional[wave.Wave_write] = wave.open(self.path, "wb")
        self._wav.setnchannels(1)
        self._wav.setsampwidth(BYTES_PER_SAMPLE)
        self._wav.setframerate(SAMPLE_RATE)

    @property
    def duration(self) -> float:
        """
        Seconds recorded so far.
        """
        return self.samplesWritten / SAMPLE_RATE

    @property
    def full(self) -> bool:
        """
        Whether the maximum duration has been reached.
        """
        return self.samplesWritten >= self.maxSamples

    def writeFrame(self, pcm: PcmLike) -> None:
        """
        Append a frame (ignored once closed).

        @raise AudioFormatError: when C{pcm} is not whole 16-bit samples.
        """
        samples = pcmToSamples(pcm)
        if self._wav is None or not len(samples):
            return
        room = self.maxSamples - self.samplesWritten
        if room < len(samples):
            self.framesDropped += 1
        if room <= 0:
            return
        kept = samples[:room]
        self._wav.writeframesraw(kept.astype(_PCM_DTYPE, copy=False).tobytes())
        self.samplesWritten += len(kept)
        self.framesWritten += 1

    def close(self) -> None:
        """
        Finish the file's header and close it (idempotent).
        """
        if self._wav is not None:
            wav, self._wav = self._wav, None
            wav.close()


@implementer(IAudioSink)
class EchoSink(_Closing):
    """
    Hands every received frame to a L{PushSource}, so that a stream whose
    source is that L{PushSource} sends the received audio back (an echo
    test).

    @ivar source: the L{PushSource} the frames go to.
    """

    def __init__(self, source: Optional[PushSource] = None, maxFrames: int = 50) -> None:
        """
        @param source: where frames go; a new C{PushSource(maxFrames)} when
            not given.
        """
        self.source = source if source is not None else PushSource(maxFrames)
        self._closed = False

    def writeFrame(self, pcm: PcmLike) -> None:
        """
        @raise AudioFormatError: when C{pcm} is not whole 16-bit samples.
        """
        if not self._closed:
            self.source.push(pcm)

    def close(self) -> None:
        """
        Stop echoing (the L{PushSource} stays open for its own owner).
        """
        self._closed = True


@implementer(IAudioSink)
class CallbackSink(_Closing):
    """
    Calls C{callback(pcm)} with every frame as C{bytes}.

    An exception from the callback is logged and counted, never raised into
    the RTP receiver (a broken application callback must not stop the
    media stream).

    @ivar errors: how many calls raised.
    """

    log = Logger()

    def __init__(self, callback: Callable[[bytes], object]) -> None:
        self._callback = callback
        self._closed = False
        self.errors = 0

    def writeFrame(self, pcm: PcmLike) -> None:
        """
        @raise AudioFormatError: when C{pcm} is not whole 16-bit samples.
        """
        data = pcmToSamples(pcm).astype(_PCM_DTYPE, copy=False).tobytes()
        if self._closed:
            return
        try:
            self._callback(data)
        except Exception:
            self.errors += 1
            self.log.failure("audio callback {callback!r} raised", callback=self._callback)

    def close(self) -> None:
        self._closed = True


@implementer(IAudioSink)
class LevelMeter(_Closing):
    """
    Measures the level of every frame: a sink for monitoring and tests.

    @ivar frames: frames measured.
    @ivar lastPeak: peak absolute sample of the last frame (see
        L{peakLevel}).
    @ivar lastRms: RMS of the last frame.
    @ivar lastDbov: level of the last frame in dBov (see L{levelDbov}).
    @ivar maxPeak: the largest peak seen.
    """

    def __init__(self) -> None:
        self.frames = 0
        self.lastPeak = 0
        self.lastRms = 0.0
        self.lastDbov = MIN_DBOV
        self.maxPeak = 0
        self._closed = False

    def writeFrame(self, pcm: PcmLike) -> None:
        """
        @raise AudioFormatError: when C{pcm} is not whole 16-bit samples.
        """
        samples = pcmToSamples(pcm)
        if self._closed:
            return
        self.frames += 1
        self.lastPeak = peakLevel(samples)
        self.lastRms = rmsLevel(samples)
        self.lastDbov = _dbovFromRms(self.lastRms)
        self.maxPeak = max(self.maxPeak, self.lastPeak)

    def close(self) -> None:
        self._closed = True
