"""
Edge batching cost: how much one batched forward of b frames costs against one frame (no rclpy).

``edgent-ros profile-batch`` times ``CoInference.edge_batch`` on the real model's suffixes for
batch sizes 1..8 (warm-up, repeats, median), fits ``T_b / T_1 = 1 + beta * (b - 1)`` by least
squares through the origin (beta = 1: no gain; beta < 1: each extra frame costs beta of one),
writes the rows (CSV), a plot (PNG) and merges ``{'beta', ...}`` into the latency models'
``hosts[host].batch`` (run it after ``edgent-ros fit``, which writes a fresh file). The planner
scales predicted edge time by ``LatencyModels.batch_factor`` of the batch size the edge
reports; a frame in a batch of b waits for the whole batch, so batching pays under load (b
frames done in less than b single forwards) and is wasted when frames arrive one at a time.
"""

from __future__ import annotations

from pathlib import Path
import statistics
import time
from typing import Dict, List, Sequence, Tuple

import numpy as np

BATCH_SIZES = (1, 2, 3, 4, 6, 8)


# (exit, split) suffixes the edge runs in practice: the raw frame for every exit, and cuts
# after pool1 / pool2 / conv5 and in the classifier.
CONFIGS = ((1, 0), (3, 0), (5, 0), (5, 3), (5, 6), (5, 13), (5, 15))


def measure(runner, configs: Sequence[Tuple[int, int]] = CONFIGS,
            sizes: Sequence[int] = BATCH_SIZES, repeats: int = 30,
            progress=None) -> List[Dict]:
    """Return ``{exit, split, batch, ms, ratio}`` rows: median time of a batch over one frame's."""
    rng = np.random.default_rng(0)
    rows = []
    for e, s in configs:
        shape = runner.expected_shape(e, s)
        if s == 0:
            one = rng.integers(0, 256, size=shape, dtype=np.uint8)
        else:
            one = np.maximum(rng.standard_normal(shape).astype(np.float32), 0)
        base = None
        for b in sizes:
            frames = [one.copy() for _ in range(b)]
            for _ in range(3):
                runner.edge_batch(frames, e, s)
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                runner.edge_batch(frames, e, s)
                ts.append((time.perf_counter() - t0) * 1e3)
            ms = statistics.median(ts)
            base = ms if b == 1 else base
            rows.append({'exit': e, 'split': s, 'batch': b, 'ms': round(ms, 4),
                         'ratio': round(ms / base, 4)})
        if progress:
            progress()
    return rows


def fit_beta(rows: Sequence[Dict]) -> float:
    """Least-squares ``beta`` of ``ratio - 1 = beta * (batch - 1)`` over all rows."""
    x = np.asarray([r['batch'] - 1 for r in rows], dtype=float)
    y = np.asarray([r['ratio'] - 1 for r in rows], dtype=float)
    if not (x > 0).any():
        raise ValueError('need batch sizes > 1 to fit the batch cost')
    return float(np.clip((x * y).sum() / (x * x).sum(), 0.01, 2.0))


def plot(rows: Sequence[Dict], beta: float, path: Path) -> Path:
    """Draw ratio vs batch size per configuration, with the fit and the no-gain line."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = sorted({r['batch'] for r in rows})
    for cfg in sorted({(r['exit'], r['split']) for r in rows}):
        pts = [(r['batch'], r['ratio']) for r in rows if (r['exit'], r['split']) == cfg]
        ax.plot(*zip(*pts), 'o-', ms=3, lw=1, label=f'exit {cfg[0]} split {cfg[1]}')
    ax.plot(sizes, sizes, 'k:', label='b frames one by one')
    ax.plot(sizes, [1 + beta * (b - 1) for b in sizes], 'k--', lw=2,
            label=f'fit 1 + {beta:.2f} (b - 1)')
    ax.set_xlabel('batch size b')
    ax.set_ylabel('batch time / one frame')
    ax.set_title('edge: cost of a batched forward')
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
