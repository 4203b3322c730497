"""
The edge's bounded frame queue and its batching rule (no rclpy, no torch).

Frames wait in one queue of at most ``max_queue``; a frame that would overflow it pushes the
oldest one out (refused ``queue_full``). ``take`` opens a batch with the oldest frame; frames
already waiting with the same *configuration* (the edge node uses (exit, split, confidence
threshold), from any robot) join it, up to ``max_batch``; with ``batch_window_ms`` > 0 the
batch stays open that long for more (``take`` then returns the seconds to wait). When the batch
closes, its frames that waited longer than ``max_queue_ms`` since arrival are refused
(``stale``) and the rest are returned, each with its waiting time. Frames in an open batch have
left the queue: they no longer count against ``max_queue``.

Not thread-safe: the edge node calls it under its own lock. Time is passed in (``now_s``, any
monotonic clock in seconds).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Hashable, List, Tuple, Union

from .validate import as_count, as_nonneg


@dataclass(frozen=True)
class Refusal:
    """A frame the queue gives up on: ``reason`` (``queue_full``, ``stale``) and a detail."""

    item: Any
    reason: str
    detail: str


@dataclass
class Batch:
    """
    A closed batch: frames of one ``config`` to compute together.

    ``items``: (item, waited_ms) of each frame to compute, oldest first (may be empty when every
    frame was stale); ``refused``: the stale frames.
    """

    config: Hashable
    items: List[Tuple[Any, float]] = field(default_factory=list)
    refused: List[Refusal] = field(default_factory=list)


@dataclass
class _Entry:
    item: Any
    config: Hashable
    arrival_s: float


class BatchQueue:
    """Bounded queue of frames that closes batches of one configuration (see the module)."""

    def __init__(self, max_queue: int = 4, max_queue_ms: float = 1000.0, max_batch: int = 1,
                 batch_window_ms: float = 0.0):
        self.configure(max_queue=max_queue, max_queue_ms=max_queue_ms, max_batch=max_batch,
                       batch_window_ms=batch_window_ms)
        self._queue: Deque[_Entry] = deque()
        self._open: List[_Entry] = []
        self._close_s = 0.0

    def configure(self, **values: Any) -> None:
        """Set ``max_queue``, ``max_queue_ms``, ``max_batch``, ``batch_window_ms`` (any of)."""
        checks = {'max_queue': lambda n, v: as_count(n, v, 1), 'max_queue_ms': as_nonneg,
                  'max_batch': lambda n, v: as_count(n, v, 1), 'batch_window_ms': as_nonneg}
        for name in values:
            if name not in checks:
                raise ValueError(f'unknown batch queue setting {name!r}')
        checked = {name: checks[name](name, value) for name, value in values.items()}
        for name, value in checked.items():
            setattr(self, name, value)

    def __len__(self) -> int:
        """Frames waiting in the queue (not those of an open batch)."""
        return len(self._queue)

    @property
    def batch_open(self) -> bool:
        """Whether a batch is open (``take`` waits for it to fill or its window to end)."""
        return bool(self._open)

    def push(self, item: Any, config: Hashable, now_s: float) -> List[Refusal]:
        """Queue ``item`` of ``config`` arrived at ``now_s``; return the frames pushed out."""
        out = []
        if len(self._queue) >= self.max_queue:
            old = self._queue.popleft()
            out.append(Refusal(old.item, 'queue_full', 'edge queue full, oldest frame dropped'))
        self._queue.append(_Entry(item, config, float(now_s)))
        return out

    def take(self, now_s: float, flush: bool = False) -> Union[Batch, float, None]:
        """
        Return the next closed ``Batch``, or the seconds to wait, or None if nothing is queued.

        With ``flush`` an open batch closes at once (shutting down).
        """
        if not self._open:
            if not self._queue:
                return None
            self._open = [self._queue.popleft()]
            self._close_s = now_s + self.batch_window_ms / 1e3
            if self.max_batch <= 1:
                return self._close(now_s)
        cfg = self._open[0].config
        keep: Deque[_Entry] = deque()
        while self._queue:
            e = self._queue.popleft()
            if len(self._open) < self.max_batch and e.config == cfg:
                self._open.append(e)
            else:
                keep.append(e)
        self._queue = keep
        left = self._close_s - now_s
        if len(self._open) >= self.max_batch or left <= 0 or flush:
            return self._close(now_s)
        return left

    def _close(self, now_s: float) -> Batch:
        batch = Batch(self._open[0].config)
        for e in self._open:
            waited_ms = (now_s - e.arrival_s) * 1e3
            if waited_ms > self.max_queue_ms:
                batch.refused.append(Refusal(e.item, 'stale',
                                             f'waited {waited_ms:.0f} ms in the edge queue'))
            else:
                batch.items.append((e.item, waited_ms))
        self._open = []
        return batch
