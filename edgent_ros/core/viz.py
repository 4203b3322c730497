"""
Drawing and statistics behind the visualization node (numpy + OpenCV, no rclpy).

``annotate`` turns a 32x32 RGB frame and its outcome into a BGR image for rviz: the frame
upscaled, the predicted label and confidence, exit/split, latency against the deadline and a
border coloured green (deadline met), red (missed) or grey (dropped). ``VizStats`` aggregates
outcomes for diagnostics and the latency bars.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Deque, Dict, Optional

import numpy as np

GREEN = (60, 180, 60)      # BGR
RED = (40, 40, 220)
GREY = (128, 128, 128)


@dataclass
class OutcomeView:
    """The fields of an ``InferenceResult`` the overlay shows."""

    ok: bool
    label: str = ''
    true_label: str = ''
    confidence: float = 0.0
    exit_index: int = 0
    split_index: int = 0
    end_to_end_ms: float = 0.0
    device_ms: float = 0.0
    uplink_ms: float = 0.0
    edge_ms: float = 0.0
    deadline_ms: float = 0.0
    deadline_met: bool = False
    drop_reason: str = ''
    encoding: str = ''          # how the tensor crossed ('' or 'raw': the paper's)
    requested_exit: int = 0     # > exit_index: a confident side exit stopped the frame early


def colour(o: OutcomeView):
    """Return the BGR colour of an outcome: green met, red missed, grey dropped."""
    if not o.ok:
        return GREY
    return GREEN if o.deadline_met else RED


def annotate(frame_rgb: Optional[np.ndarray], o: OutcomeView, size: int = 256) -> np.ndarray:
    """Return a BGR ``(size + 72, size, 3)`` uint8 image: the frame and its outcome."""
    import cv2
    if frame_rgb is None:
        img = np.zeros((size, size, 3), np.uint8)
    else:
        frame = np.asarray(frame_rgb, dtype=np.uint8)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f'expected an HxWx3 RGB frame, got shape {frame.shape}')
        img = cv2.resize(frame[:, :, ::-1], (size, size), interpolation=cv2.INTER_NEAREST)
    c = colour(o)
    img = cv2.copyMakeBorder(np.ascontiguousarray(img), 6, 6, 6, 6, cv2.BORDER_CONSTANT,
                             value=c)
    img = cv2.resize(img, (size, size))
    panel = np.full((72, size, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    if o.ok:
        truth = f' (true {o.true_label})' if o.true_label else ''
        lines = [f'{o.label} {100 * o.confidence:.0f}%{truth}',
                 f'exit {o.exit_index}'
                 + (f' (of {o.requested_exit})' if o.requested_exit > o.exit_index else '')
                 + f' split {o.split_index}'
                 + (f' {o.encoding}' if o.encoding not in ('', 'raw') else ''),
                 f'{o.end_to_end_ms:.1f} / {o.deadline_ms:.0f} ms '
                 f'{"met" if o.deadline_met else "MISSED"}']
    else:
        lines = ['dropped', o.drop_reason or '?', '']
    for i, text in enumerate(lines):
        cv2.putText(panel, text, (6, 20 + 22 * i), font, 0.5, c if i == 2 or not o.ok
                    else (20, 20, 20), 1, cv2.LINE_AA)
    return np.vstack([img, panel])


@dataclass
class VizStats:
    """Rolling statistics over the last ``window`` outcomes (for /diagnostics and markers)."""

    window: int = 100
    met: Deque[bool] = field(default_factory=deque)
    drops: Counter = field(default_factory=Counter)
    frames: int = 0
    last: Optional[OutcomeView] = None

    def add(self, o: OutcomeView) -> None:
        """Count one outcome."""
        self.frames += 1
        self.last = o
        if o.ok:
            self.met.append(o.deadline_met)
            while len(self.met) > self.window:
                self.met.popleft()
        else:
            self.drops[o.drop_reason or 'unknown'] += 1

    def deadline_met_rate(self) -> Optional[float]:
        """Return the fraction of recent classified frames that met the deadline."""
        return sum(self.met) / len(self.met) if self.met else None

    def summary(self) -> Dict[str, str]:
        """Return key/value strings for a DiagnosticStatus."""
        rate = self.deadline_met_rate()
        d = {'frames': str(self.frames),
             'deadline_met_rate': 'n/a' if rate is None else f'{rate:.3f}',
             'frames_dropped': str(sum(self.drops.values()))}
        d.update({f'dropped:{k}': str(v) for k, v in sorted(self.drops.items())})
        return d


def latency_bars(o: OutcomeView, scale_m_per_ms: float = 0.01) -> Dict[str, float]:
    """Return bar heights (m) of device / uplink / edge time and the deadline line."""
    return {'device': o.device_ms * scale_m_per_ms, 'uplink': o.uplink_ms * scale_m_per_ms,
            'edge': o.edge_ms * scale_m_per_ms, 'deadline': o.deadline_ms * scale_m_per_ms}
