"""
A small fixed-delay jitter buffer, sans-IO.

This buffer is deliberately simple: a fixed playout delay, no adaptation
beyond re-anchoring, no time stretching, no packet-loss concealment of its
own. It puts packets back in sequence order, holds each one until its
playout time, drops what comes too late or twice, never holds more than a
fixed number of packets, and tells the decoder where frames are missing so
that it can insert silence or concealment there.

Playout schedule
================

The first packet I{anchors} the schedule: a packet with RTP timestamp C{ts}
is due at::

    anchorArrival + delay + (ts - anchorTimestamp) / clockRate

(the timestamp difference taken modulo 2**32, signed). So packets leave at
the pace the sender stamped them, C{delay} after the anchor packet arrived,
whatever jitter the network added, as long as that jitter is below
C{delay}.

The schedule is re-anchored on the arriving packet when:

  - the buffer is empty and the packet is already overdue when it arrives (the
    network delay grew, the sender's clock is slow, or the sender stopped
    and restarted): it gets the full C{delay} again;
  - the packet would be due more than C{delay + maxAhead} after it
    arrived (a timestamp jump, or a sender clock running fast).

Loss, lateness, duplicates, bounds
==================================

A packet whose extended sequence number is at or below the last one played
out (or declared missing) is B{late}: dropped and counted in L{lateDrops}.
A packet already in the buffer is a B{duplicate}: dropped and counted in
L{duplicateDrops}. When a packet is played out after a hole, the hole comes
first as a L{Gap} (first missing sequence number and count), so the decoder
knows how many frames to conceal. A packet more than C{restartWindow}
sequence numbers I{behind} the playout point means the source restarted (its
extended sequence numbers started again): the buffer is cleared and starts
over. At most C{maxPackets} packets are held; beyond that the
lowest-numbered one is dropped (L{overflowDrops}) and shows up as a gap.
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import Dict, List, Optional, Union

from lmevoip.rtp.stats import timestampDifference

__all__ = ["JitterFrame", "Gap", "JitterBuffer"]

_TS_MOD = 1 << 32


@dataclasses.dataclass(frozen=True)
class JitterFrame:
    """
    One packet played out.

    @ivar sequence: its extended sequence number.
    @ivar timestamp: its RTP timestamp.
    @ivar payload: its payload bytes, still encoded.
    @ivar arrivalTime: when it arrived, in seconds.
    """

    sequence: int
    timestamp: int
    payload: bytes
    arrivalTime: float


@dataclasses.dataclass(frozen=True)
class Gap:
    """
    Packets that never came (or came too late) before the next frame.

    @ivar firstSequence: the first missing extended sequence number.
    @ivar count: how many consecutive sequence numbers are missing.
    """

    firstSequence: int
    count: int


class JitterBuffer:
    """
    Reorders and delays received packets for playout.

    Call L{push} for every packet delivered by the receive statistics and
    L{pop} every frame time (or whenever convenient): it returns, in order,
    the L{JitterFrame}s and L{Gap}s whose time has come.

    @ivar delay: the playout delay in seconds.
    @ivar clockRate: the RTP clock rate in Hz.
    @ivar maxPackets: the most packets held.
    @ivar accepted: packets taken into the buffer.
    @ivar played: frames returned by L{pop} or L{flush}.
    @ivar missing: sequence numbers reported in gaps.
    @ivar lateDrops: packets dropped because their turn had passed.
    @ivar duplicateDrops: packets dropped because they were already held.
    @ivar overflowDrops: packets dropped to keep within C{maxPackets}.
    @ivar reanchors: how many times the schedule was re-anchored.
    @ivar restarts: how many times a sequence restart cleared the buffer.
    """

    def __init__(self, delay: float = 0.06, clockRate: int = 8000, maxPackets: int = 50,
                 maxAhead: float = 1.0, restartWindow: int = 3000) -> None:
        """
        @param delay: the playout delay in seconds (typically 0.04 to 0.06).
        @param clockRate: the RTP clock rate in Hz.
        @param maxPackets: the hard bound on packets held (at least 1).
        @param maxAhead: how far past its arrival plus C{delay} a packet may
            be scheduled before the schedule is re-anchored, in seconds.
        @param restartWindow: how far behind the playout point a sequence
            number must be to count as a source restart, not a late packet.
        """
        if not delay >= 0 or clockRate <= 0 or maxPackets < 1 or not maxAhead >= 0 \
                or restartWindow < 1:
            raise ValueError(
                f"bad jitter buffer settings: delay={delay} clockRate={clockRate} "
                f"maxPackets={maxPackets} maxAhead={maxAhead} restartWindow={restartWindow}")
        self.delay = float(delay)
        self.clockRate = clockRate
        self.maxPackets = maxPackets
        self.maxAhead = float(maxAhead)
        self.restartWindow = restartWindow
        self._sequences: List[int] = []
        self._packets: Dict[int, JitterFrame] = {}
        self._anchorTime: Optional[float] = None
        self._anchorTimestamp = 0
        self._nextSequence: Optional[int] = None
        self.accepted = 0
        self.played = 0
        self.missing = 0
        self.lateDrops = 0
        self.duplicateDrops = 0
        self.overflowDrops = 0
        self.reanchors = 0
        self.restarts = 0

    def __len__(self) -> int:
        """
        The number of packets held.
        """
        return len(self._sequences)

    @property
    def nextSequence(self) -> Optional[int]:
        """
        The extended sequence number due next (None before the first
        playout).
        """
        return self._nextSequence

    def dueTime(self, timestamp: int) -> Optional[float]:
        """
        When a packet with RTP timestamp C{timestamp} is due, on the current
        schedule (None before the first packet).
        """
        if self._anchorTime is None:
            return None
        offset = timestampDifference(timestamp, self._anchorTimestamp)
        return self._anchorTime + offset / self.clockRate

    def _anchor(self, timestamp: int, arrivalTime: float) -> None:
        self._anchorTime = arrivalTime + self.delay
        self._anchorTimestamp = timestamp

    def push(self, extendedSeq: int, timestamp: int, payload: bytes,
             arrivalTime: float) -> bool:
        """
        Offer one received packet.

        @param extendedSeq: its extended sequence number (see
            L{ReceiverStatistics.lastExtendedSequence
            <lmevoip.rtp.stats.ReceiverStatistics.lastExtendedSequence>}).
        @param timestamp: its 32-bit RTP timestamp.
        @param payload: its payload.
        @param arrivalTime: when it arrived, in seconds.
        @return: whether it was kept (False: late, duplicate, or itself the
            lowest-numbered packet of a full buffer).
        """
        if extendedSeq < 0 or not 0 <= timestamp < _TS_MOD:
            raise ValueError(f"bad packet: sequence {extendedSeq} timestamp {timestamp}")
        if self._nextSequence is not None and extendedSeq < self._nextSequence:
            if extendedSeq >= self._nextSequence - self.restartWindow:
                self.lateDrops += 1
                return False
            self.reset()
            self.restarts += 1
        if extendedSeq in self._packets:
            self.duplicateDrops += 1
            return False
        due = self.dueTime(timestamp)
        if due is None:
            self._anchor(timestamp, arrivalTime)
        elif (due < arrivalTime and not self._sequences) \
                or due > arrivalTime + self.delay + self.maxAhead:
            self._anchor(timestamp, arrivalTime)
            self.reanchors += 1
        frame = JitterFrame(extendedSeq, timestamp, bytes(payload), arrivalTime)
        bisect.insort(self._sequences, extendedSeq)
        self._packets[extendedSeq] = frame
        self.accepted += 1
        if len(self._sequences) > self.maxPackets:
            dropped = self._sequences.pop(0)
            del self._packets[dropped]
            self.overflowDrops += 1
            return dropped != extendedSeq
        return True

    def _release(self, out: List[Union[JitterFrame, Gap]]) -> None:
        sequence = self._sequences.pop(0)
        frame = self._packets.pop(sequence)
        if self._nextSequence is not None and sequence > self._nextSequence:
            count = sequence - self._nextSequence
            out.append(Gap(self._nextSequence, count))
            self.missing += count
        out.append(frame)
        self.played += 1
        self._nextSequence = sequence + 1

    def pop(self, now: float) -> List[Union[JitterFrame, Gap]]:
        """
        Everything due at C{now}, in sequence order: L{JitterFrame}s, each
        preceded by a L{Gap} where sequence numbers are missing.
        """
        out: List[Union[JitterFrame, Gap]] = []
        while self._sequences:
            due = self.dueTime(self._packets[self._sequences[0]].timestamp)
            if due is None or due > now:
                break
            self._release(out)
        return out

    def flush(self) -> List[Union[JitterFrame, Gap]]:
        """
        Everything held, in order, due or not (for example at the end of a
        call).
        """
        out: List[Union[JitterFrame, Gap]] = []
        while self._sequences:
            self._release(out)
        return out

    def reset(self) -> None:
        """
        Forget every packet and the schedule (counters are kept); call it
        when the source restarts or changes SSRC.
        """
        self._sequences.clear()
        self._packets.clear()
        self._anchorTime = None
        self._nextSequence = None
