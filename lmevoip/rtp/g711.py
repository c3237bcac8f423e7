"""
ITU-T G.711 companding: PCMU (mu-law) and PCMA (A-law), vectorised.

Linear audio is 16-bit signed PCM, little-endian when given or returned as
C{bytes} (the usual "s16le" of sound cards and WAV files), or a numpy
C{int16} array. Companded audio is C{bytes}, one octet per sample, as it is
carried in RTP payload types 0 (PCMU) and 8 (PCMA).

Both directions are one numpy table lookup. The tables are built once, at
import, from the G.711 segment rules (not hard-coded), by vectorised
arithmetic over every input:

  - encoding: a 65536-entry table indexed by the 16-bit sample's bit
    pattern, giving the code octet;
  - decoding: a 256-entry C{int16} table indexed by the code octet.

Quantisation follows the ITU-T G.191 reference (STL) implementation of
G.711: mu-law takes the 14 most significant bits of the sample, A-law the
13 most significant bits, and a negative sample is reduced to its magnitude
by one's complement (C{~x}), which makes the characteristic exactly
symmetric (C{x} and C{-1 - x} get mirror-image codes). The decoded value of
each code is the middle of its quantisation interval (the G.711 tables);
mu-law decodes to -32124..32124 and A-law to -32256..32256.

CPython's C{audioop} (and the Sun reference code it derives from) encodes
mu-law negative samples with two's complement after an arithmetic shift,
which puts every negative decision threshold 4 linear units (one 14-bit
step) away from the G.191 one: C{audioop.lin2ulaw(x) == encodePcmu(x - 4)}
for negative C{x}. The test suite checks that relation over all 65536
inputs; A-law encoding and both decode tables agree with C{audioop}
exactly.

Silence is the code for a zero sample: 0xFF in PCMU and 0xD5 in PCMA (which
decodes to +8, the middle of the A-law interval 0..15).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "PCMU_SILENCE",
    "PCMA_SILENCE",
    "PCMU_ENCODE_TABLE",
    "PCMU_DECODE_TABLE",
    "PCMA_ENCODE_TABLE",
    "PCMA_DECODE_TABLE",
    "encodePcmu",
    "decodePcmu",
    "decodePcmuArray",
    "encodePcma",
    "decodePcma",
    "decodePcmaArray",
]

#: The PCMU code of a zero sample.
PCMU_SILENCE = 0xFF
#: The PCMA code of a zero sample.
PCMA_SILENCE = 0xD5

_LITTLE_INT16 = np.dtype("<i2")


def _allSamples() -> npt.NDArray[np.int32]:
    """
    Every 16-bit sample, ordered by its unsigned bit pattern (so that index
    C{x & 0xFFFF} holds C{x}).
    """
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _bitLength(values: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    """
    C{int.bit_length} of each positive value (exact: values are below 2**24).
    """
    return np.frexp(values.astype(np.float64))[1].astype(np.int32)


def _buildPcmuEncode() -> npt.NDArray[np.uint8]:
    samples = _allSamples()
    magnitude = np.where(samples < 0, ~samples, samples) >> 2  # 14-bit, 0..8191
    # Add the mu-law bias (33 in 14-bit units) so segment boundaries fall on
    # powers of two, and saturate at the top of segment 7.
    biased = np.minimum(magnitude + 33, 0x1FFF)
    segment = _bitLength(biased) - 6  # 0..7
    mantissa = (biased >> (segment + 1)) & 0x0F
    code = ~((segment << 4) | mantissa) & 0x7F
    code |= np.where(samples >= 0, 0x80, 0)
    return code.astype(np.uint8)


def _buildPcmuDecode() -> npt.NDArray[np.int16]:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF  # mu-law codes are sent inverted
    segment = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = ((2 * mantissa + 33) << (segment + 2)) - 132
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)


def _buildPcmaEncode() -> npt.NDArray[np.uint8]:
    samples = _allSamples()
    magnitude = np.where(samples < 0, ~samples, samples) >> 4  # 0..2047
    segment = np.maximum(_bitLength(np.maximum(magnitude, 1)) - 4, 0)  # 0..7
    mantissa = np.where(segment == 0, magnitude, magnitude >> np.maximum(segment - 1, 0))
    code = (segment << 4) | (mantissa & 0x0F)
    code |= np.where(samples >= 0, 0x80, 0)
    return (code ^ 0x55).astype(np.uint8)  # even bits are inverted on the line


def _buildPcmaDecode() -> npt.NDArray[np.int16]:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    segment = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(
        segment == 0,
        (mantissa << 4) + 8,
        (2 * mantissa + 33) << (segment + 2),
    )
    return np.where(codes & 0x80, magnitude, -magnitude).astype(np.int16)


def _frozen(table: np.ndarray) -> np.ndarray:
    table.flags.writeable = False
    return table


#: Code octet for each sample, indexed by the sample's unsigned bit pattern.
PCMU_ENCODE_TABLE = _frozen(_buildPcmuEncode())
#: Linear value (C{int16}) of each PCMU code octet.
PCMU_DECODE_TABLE = _frozen(_buildPcmuDecode())
#: Code octet for each sample, indexed by the sample's unsigned bit pattern.
PCMA_ENCODE_TABLE = _frozen(_buildPcmaEncode())
#: Linear value (C{int16}) of each PCMA code octet.
PCMA_DECODE_TABLE = _frozen(_buildPcmaDecode())

_PCMU_DECODE_LE = _frozen(PCMU_DECODE_TABLE.astype(_LITTLE_INT16))
_PCMA_DECODE_LE = _frozen(PCMA_DECODE_TABLE.astype(_LITTLE_INT16))


#: Built once: constructing a dtype from its string on every frame costs
#: about as much as the table lookup itself.
_LITTLE_ENDIAN_U16 = np.dtype("<u2")


def _indices(pcm: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """
    The unsigned 16-bit patterns of C{pcm}'s samples, to index an encode
    table.

    @raise ValueError: If C{pcm} is bytes of odd length.
    @raise TypeError: If C{pcm} is an array that is not 16-bit signed.
    """
    if isinstance(pcm, np.ndarray):
        if pcm.dtype.kind != "i" or pcm.dtype.itemsize != 2:
            raise TypeError(f"PCM array must be int16, got {pcm.dtype}")
        return pcm.astype(np.int16, copy=False).view(np.uint16)
    if len(pcm) & 1:
        raise ValueError(f"16-bit PCM must have an even length, got {len(pcm)} bytes")
    return np.frombuffer(pcm, dtype=_LITTLE_ENDIAN_U16)


def encodePcmu(pcm: bytes | bytearray | memoryview | np.ndarray) -> bytes:
    """
    Encode linear PCM as PCMU (G.711 mu-law).

    @param pcm: 16-bit signed little-endian PCM bytes, or an C{int16} array.
    @return: One code octet per sample.
    @raise ValueError: If C{pcm} is bytes of odd length.
    @raise TypeError: If C{pcm} is an array that is not C{int16}.
    """
    # take() skips fancy indexing's generality: same result, half the time.
    return PCMU_ENCODE_TABLE.take(_indices(pcm)).tobytes()


def encodePcma(pcm: bytes | bytearray | memoryview | np.ndarray) -> bytes:
    """
    Encode linear PCM as PCMA (G.711 A-law).

    @param pcm: 16-bit signed little-endian PCM bytes, or an C{int16} array.
    @return: One code octet per sample.
    @raise ValueError: If C{pcm} is bytes of odd length.
    @raise TypeError: If C{pcm} is an array that is not C{int16}.
    """
    return PCMA_ENCODE_TABLE.take(_indices(pcm)).tobytes()


def decodePcmu(payload: bytes | bytearray | memoryview) -> bytes:
    """
    Decode PCMU to linear PCM.

    @param payload: PCMU code octets (any octet is valid).
    @return: 16-bit signed little-endian PCM, two bytes per octet.
    """
    return _PCMU_DECODE_LE[np.frombuffer(payload, dtype=np.uint8)].tobytes()


def decodePcma(payload: bytes | bytearray | memoryview) -> bytes:
    """
    Decode PCMA to linear PCM.

    @param payload: PCMA code octets (any octet is valid).
    @return: 16-bit signed little-endian PCM, two bytes per octet.
    """
    return _PCMA_DECODE_LE[np.frombuffer(payload, dtype=np.uint8)].tobytes()


def decodePcmuArray(payload: bytes | bytearray | memoryview) -> npt.NDArray[np.int16]:
    """
    Decode PCMU to a new native C{int16} array.
    """
    return PCMU_DECODE_TABLE[np.frombuffer(payload, dtype=np.uint8)]


def decodePcmaArray(payload: bytes | bytearray | memoryview) -> npt.NDArray[np.int16]:
    """
    Decode PCMA to a new native C{int16} array.
    """
    return PCMA_DECODE_TABLE[np.frombuffer(payload, dtype=np.uint8)]
