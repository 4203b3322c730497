#!/usr/bin/env python3
"""
The robot's compute, back to back against paced like a camera's frames (issue 18, item 6).

Runs the device-side layers of each ``--configs`` (exit/split, device-only by default) of the
shipped AlexNet in this one process, 1 torch thread, no nodes beside it: ``--frames`` frames back
to back, then as many with ``--gap-ms`` of sleep between frames (a camera at 10 frames/s), after
``--warmup`` frames each. Reports per configuration and pacing the median of the layers' thread
CPU time (what ``compute_slowdown`` multiplies) and its frame-to-frame spread: the mean absolute
deviation from the median as a share of each frame (the MAPE of the median as a predictor), the
coefficient of variation and p90/p10. Writes ``bench/results/paced_compute.json`` and
``.png``. ~40 s.

    python bench/paced_compute.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import statistics
import sys
import time

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgent_ros.core.inference import CoInference  # noqa: E402
from edgent_ros.core.weights import load_model  # noqa: E402


def spread(ms):
    """Return median, MAPE of the median, coefficient of variation and p90/p10 of ``ms``."""
    m = statistics.median(ms)
    return {'median_ms': round(m, 3),
            'mape_of_median': round(statistics.mean(abs(x - m) / x for x in ms), 4),
            'cv': round(statistics.pstdev(ms) / statistics.mean(ms), 4),
            'p90_over_p10': round(float(np.percentile(ms, 90) / np.percentile(ms, 10)), 3),
            'frames': len(ms)}


def measure(runner, frame, exit_index, split, frames, warmup, gap_s):
    """Return the layers' thread CPU ms of ``frames`` frames after ``warmup``, ``gap_s`` apart."""
    out = []
    for i in range(warmup + frames):
        o = runner.device_step(frame, exit_index, split)
        if i >= warmup:
            out.append(o.layers_cpu_ms)
        if gap_s:
            time.sleep(gap_s)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--configs', nargs='+', default=['1/10', '5/20'],
                    help='exit/split pairs (default: device-only exits 1 and 5)')
    ap.add_argument('--frames', type=int, default=150)
    ap.add_argument('--warmup', type=int, default=20)
    ap.add_argument('--gap-ms', type=float, default=100.0)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out', type=Path, default=ROOT / 'bench' / 'results' / 'paced_compute.json')
    a = ap.parse_args()
    runner = CoInference(load_model(None), threads=1)
    frame = np.random.default_rng(a.seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    rows = []
    for c in a.configs:
        e, s = (int(x) for x in c.split('/'))
        for gap in (0.0, a.gap_ms):
            ms = measure(runner, frame, e, s, a.frames, a.warmup, gap / 1e3)
            row = {'config': c, 'gap_ms': gap, **spread(ms)}
            rows.append(row)
            print(f'{c} gap {gap:g} ms: median {row["median_ms"]:.2f} ms CPU, '
                  f'MAPE of the median {100 * row["mape_of_median"]:.1f} %, cv {row["cv"]:.2f}',
                  flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({'threads': 1, 'rows': rows}, indent=1) + '\n')
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.2))
    labels = [f'{r["config"]}\n{"paced" if r["gap_ms"] else "back to back"}' for r in rows]
    ax.bar(range(len(rows)), [r['median_ms'] for r in rows], color=[
        'tab:orange' if r['gap_ms'] else 'tab:blue' for r in rows])
    for i, r in enumerate(rows):
        ax.text(i, r['median_ms'], f'{100 * r["mape_of_median"]:.0f} %', ha='center',
                va='bottom', fontsize=8)
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel('layers CPU ms (median)')
    ax.set_title(f'device-side layers, back to back vs {a.gap_ms:g} ms apart '
                 '(label: MAPE of the median)', fontsize=9)
    fig.tight_layout()
    fig.savefig(a.out.with_suffix('.png'), dpi=110)
    print(f'wrote {a.out} and {a.out.with_suffix(".png")}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
