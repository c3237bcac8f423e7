"""
The audio codec registry: PCMU and PCMA (RFC 3551 static payload types 0
and 8), looked up by encoding name or by payload type.

A L{Codec} turns 16-bit signed little-endian PCM (C{bytes}) into an RTP
payload and back, knows its clock rate and how many samples a packet time
holds, and gives the payload of a silent frame. Comfort noise (payload type
13) is not a codec here: see L{lmevoip.rtp.cn}.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from zope.interface import implementer

from lmevoip.interfaces import ICodec
from lmevoip.rtp import g711

__all__ = ["Codec", "PCMU", "PCMA", "CODECS", "codecByName", "codecByPayloadType"]


@implementer(ICodec)
class Codec:
    """
    A sample-based audio codec with a static RTP payload type.

    @ivar name: The encoding name, as in SDP C{a=rtpmap} (C{"PCMU"}).
    @ivar payloadType: The static RTP payload type.
    @ivar clockRate: The RTP clock rate in Hz (also the sampling rate).
    @ivar channels: The number of audio channels.
    @ivar silenceOctet: The payload octet of one silent sample.
    """

    __slots__ = (
        "name",
        "payloadType",
        "clockRate",
        "channels",
        "silenceOctet",
        "_encode",
        "_decode",
        "_decodeArray",
        "_silence",
    )

    def __init__(
        self,
        name: str,
        payloadType: int,
        clockRate: int,
        silenceOctet: int,
        encode: Callable[[bytes], bytes],
        decode: Callable[[bytes], bytes],
        decodeArray: Callable[[bytes], np.ndarray],
        channels: int = 1,
    ) -> None:
        """
        @param encode: PCM bytes (or an C{int16} array) to payload bytes.
        @param decode: Payload bytes to PCM bytes.
        @param decodeArray: Payload bytes to an C{int16} array.
        """
        self.name = name
        self.payloadType = payloadType
        self.clockRate = clockRate
        self.channels = channels
        self.silenceOctet = silenceOctet
        self._encode = encode
        self._decode = decode
        self._decodeArray = decodeArray
        self._silence: dict[int, bytes] = {}

    @property
    def rtpmap(self) -> str:
        """
        The SDP rtpmap encoding: C{"PCMU/8000"}.
        """
        return f"{self.name}/{self.clockRate}"

    def samplesPerFrame(self, ptimeMs: int) -> int:
        """
        How many samples (per channel) a packet of C{ptimeMs} carries.

        @param ptimeMs: The packet time in milliseconds (SDP C{a=ptime}).
        @return: C{clockRate * ptimeMs / 1000}: 160 for PCMU at 20 ms.
        @raise ValueError: If C{ptimeMs} is not positive or does not hold a
            whole number of samples.
        """
        samples, remainder = divmod(self.clockRate * ptimeMs, 1000)
        if ptimeMs <= 0 or remainder:
            raise ValueError(
                f"ptime {ptimeMs!r} ms does not hold a whole, positive number of"
                f" samples at {self.clockRate} Hz"
            )
        return int(samples)

    def encode(self, pcm: bytes) -> bytes:
        """
        @param pcm: 16-bit signed little-endian PCM (or an C{int16} array).
        @return: The RTP payload.
        @raise ValueError: If C{pcm} is bytes of odd length.
        """
        return self._encode(pcm)

    def decode(self, payload: bytes) -> bytes:
        """
        @param payload: An RTP payload (every octet is valid).
        @return: 16-bit signed little-endian PCM.
        """
        return self._decode(payload)

    def decodeArray(self, payload: bytes) -> np.ndarray:
        """
        @param payload: An RTP payload.
        @return: The samples as a native C{int16} array.
        """
        return self._decodeArray(payload)

    def silenceFrame(self, ptimeMs: int) -> bytes:
        """
        The payload of a silent packet of C{ptimeMs}.

        @return: C{samplesPerFrame(ptimeMs)} silence octets (0xFF for PCMU,
            0xD5 for PCMA).
        @raise ValueError: As L{samplesPerFrame}.
        """
        frame = self._silence.get(ptimeMs)
        if frame is None:
            frame = bytes((self.silenceOctet,)) * (self.samplesPerFrame(ptimeMs) * self.channels)
            if len(self._silence) < 64:
                self._silence[ptimeMs] = frame
        return frame

    def __repr__(self) -> str:
        return f"<Codec {self.rtpmap} pt={self.payloadType}>"


#: G.711 mu-law, static payload type 0.
PCMU = Codec(
    "PCMU", 0, 8000, g711.PCMU_SILENCE, g711.encodePcmu, g711.decodePcmu, g711.decodePcmuArray
)
#: G.711 A-law, static payload type 8.
PCMA = Codec(
    "PCMA", 8, 8000, g711.PCMA_SILENCE, g711.encodePcma, g711.decodePcma, g711.decodePcmaArray
)
#: Every codec this module provides, in default preference order.
CODECS = (PCMU, PCMA)

_BY_NAME = {codec.name.upper(): codec for codec in CODECS}
_BY_PAYLOAD_TYPE = {codec.payloadType: codec for codec in CODECS}


def codecByName(name: str) -> Codec:
    """
    Look a codec up by encoding name (case-insensitive, as media subtype
    names are).

    @param name: C{"PCMU"}, C{"pcma"}, ...
    @return: The codec.
    @raise KeyError: If no codec has that name.
    """
    try:
        return _BY_NAME[name.upper()]
    except KeyError:
        raise KeyError(f"no codec named {name!r}") from None


def codecByPayloadType(payloadType: int) -> Codec:
    """
    Look a codec up by static RTP payload type.

    @param payloadType: 0 or 8.
    @return: The codec.
    @raise KeyError: If no codec has that static payload type.
    """
    try:
        return _BY_PAYLOAD_TYPE[payloadType]
    except KeyError:
        raise KeyError(f"no codec with static payload type {payloadType!r}") from None
