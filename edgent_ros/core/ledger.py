"""
Frame bookkeeping shared by camera and edge: refusals, sequence tracking, the in-flight ledger.

Every frame ends as exactly one outcome; these classes make that checkable without torch or ROS.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional

# Largest meaningful BranchyNet entropy threshold (nats): far above ln(10) = 2.3, where every
# side exit fires. The camera's parameter range and the edge's frame check both use it.
MAX_THRESHOLD = 100.0


class FrameRefused(ValueError):
    """A frame cannot be processed; ``reason`` is a short code counted by the nodes."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f'{reason}: {detail}')
        self.reason = reason
        self.detail = detail


def check_threshold(threshold: float) -> float:
    """Return a frame's confidence threshold (nats); ``FrameRefused`` unless in [0, max]."""
    t = float(threshold)
    if not 0.0 <= t <= MAX_THRESHOLD:   # NaN fails too
        raise FrameRefused('confidence_threshold', f'confidence_threshold {t} '
                           f'not in [0, {MAX_THRESHOLD}] nats')
    return t


def publisher_key(info) -> str:
    """
    Return the publisher's GID from a message's ``MessageInfo`` as hex ('' when not given).

    A restarted camera has a new publisher GID: keyed by it, its sequence numbers start afresh
    at the edge, whatever the last run reached.
    """
    gid = info.get('publisher_gid') if isinstance(info, dict) else None
    data = gid.get('data') if isinstance(gid, dict) else None
    return bytes(data).hex() if data is not None else ''


class SequenceTracker:
    """
    Refuse duplicate and out-of-order sequence numbers per source.

    A source is one publisher of one camera run (the caller puts ``publisher_key`` in it), so
    a restarted camera's sequence 1 is not "out of order" after the last run's 800. Without a
    publisher key, a sequence far below the last one (more than ``restart_gap``) is still taken
    as a restarted camera and accepted; a restarted camera whose last run sent fewer frames than
    that was refused ``out_of_order`` until it caught up (the chaos soak, BENCHMARKS 20).
    """

    def __init__(self, restart_gap: int = 1000):
        self.restart_gap = restart_gap
        self._last: Dict[str, int] = {}

    def check(self, source: str, seq: int) -> None:
        """Raise ``FrameRefused`` for a duplicate / out-of-order ``seq``; else record it."""
        last = self._last.get(source)
        if last is not None:
            if seq == last:
                raise FrameRefused('duplicate', f'sequence {seq} already received')
            if last - self.restart_gap <= seq < last:
                raise FrameRefused('out_of_order', f'sequence {seq} arrived after {last}')
        self._last[source] = seq


@dataclass
class Pending:
    """A frame sent to the edge and not yet answered."""

    seq: int
    sent_s: float           # robot monotonic clock when published
    capture_s: float
    exit_index: int
    split_index: int
    payload_bytes: int
    device_ms: float
    true_class: int = -1
    deadline_ms: float = 0.0
    stamp_ns: Optional[int] = None   # capture stamp in the frame's header (results echo it)
    edge: str = ''          # the edge it was sent to (core.edges; '' = the one edge)


@dataclass
class FrameLedger:
    """Every produced frame ends as exactly one outcome: a result or a drop with a reason."""

    timeout_s: float = 2.0
    produced: int = 0
    outcomes: Counter = field(default_factory=Counter)
    _pending: 'OrderedDict[int, Pending]' = field(default_factory=OrderedDict)

    def produce(self) -> None:
        """Count one produced frame (call before its outcome is known)."""
        self.produced += 1

    def send(self, p: Pending) -> None:
        """Record a frame now waiting for the edge."""
        self._pending[p.seq] = p

    def finish(self, kind: str) -> None:
        """Count a final outcome: ``ok_edge``, ``ok_device``, ``dropped:<r>``, ``refused:<r>``."""
        self.outcomes[kind] += 1

    def take(self, seq: int, stamp_ns: Optional[int] = None) -> Optional[Pending]:
        """
        Remove and return the pending frame ``seq`` (None if unknown or already expired).

        With ``stamp_ns``, the pending frame must also have that capture stamp: a result for a
        frame of another run with the same sequence number is not taken.
        """
        p = self._pending.get(seq)
        if p is None or (stamp_ns is not None and p.stamp_ns is not None
                         and p.stamp_ns != stamp_ns):
            return None
        return self._pending.pop(seq)

    def expire(self, now_s: float) -> List[Pending]:
        """Remove and return frames older than ``timeout_s`` (counted by the caller)."""
        out = []
        while self._pending:
            seq, p = next(iter(self._pending.items()))
            if now_s - p.sent_s < self.timeout_s:
                break
            out.append(self._pending.pop(seq))
        return out

    def abandon(self, edge: Optional[str] = None) -> List[Pending]:
        """Remove and return the frames in flight to ``edge`` (None: all); caller counts them."""
        out = [p for p in self._pending.values() if edge is None or p.edge == edge]
        for p in out:
            del self._pending[p.seq]
        return out

    @property
    def in_flight(self) -> int:
        """Frames sent and not yet answered."""
        return len(self._pending)

    def accounted(self) -> int:
        """Frames with a final outcome plus frames still in flight."""
        return sum(self.outcomes.values()) + len(self._pending)

    def summary(self) -> Dict[str, int]:
        """Return counts for diagnostics: produced, in_flight and every outcome."""
        d = {'produced': self.produced, 'in_flight': len(self._pending)}
        d.update(sorted(self.outcomes.items()))
        return d
