#!/usr/bin/env python3
"""
What the emulated robot multiplies: the layers' CPU time of one frame, cold or warm (issue 18).

The testbed's robot camera waits (f - 1) x the CPU time its layers took (``compute_slowdown``
f = 21.5 for resnet64 at robot class 10), so whatever varies in that CPU time varies f-fold in
the robot's time. Here resnet64's prefixes run on 1 torch thread as the camera runs them, one
frame every ``--gap-ms`` (the camera's 50 ms timer: the core idles, or runs other work, between
frames), and per frame both the first pass (what pacing ``add`` times) and a second pass right
after it (what pacing ``warm`` times, ``evaluation.emulated_camera.WarmPass``) are timed; for
reference also back to back, no gap. Per configuration: the median CPU time, the MAPE around it
(the frame-to-frame spread the robot inherits) and p90/p10.

    source scripts/env.sh
    python bench/warm_pass.py          # ~1 min; run it alone: other load changes the result

Writes ``bench/results/warm_pass.json`` and ``.png`` and prints the table BENCHMARKS quotes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import statistics
import sys
import time
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CONFIGS = ((1, 6), (3, 10), (4, 7), (4, 14))   # resnet64 (exit, split): device-only and cuts


def spread(ms: List[float]) -> Dict[str, float]:
    """Return the median, the MAPE around it and p90 / p10 of ``ms``."""
    m = statistics.median(ms)
    xs = sorted(ms)
    return {'median_ms': round(m, 3),
            'mape': round(statistics.mean(abs(x - m) / m for x in ms), 4),
            'p90_over_p10': round(xs[int(0.9 * (len(xs) - 1))] / xs[int(0.1 * (len(xs) - 1))], 3)}


def measure(runner, frame, config, frames: int, gap_s: float) -> Dict[str, Dict[str, float]]:
    """Time ``frames`` frames of ``config``: first and second pass ``gap_s`` apart, then none."""
    first, second, back = [], [], []
    for _ in range(frames):
        first.append(runner.device_step(frame, *config).layers_cpu_ms)
        second.append(runner.device_step(frame, *config).layers_cpu_ms)
        time.sleep(gap_s)
    for _ in range(frames):
        back.append(runner.device_step(frame, *config).layers_cpu_ms)
    return {'first pass (add)': spread(first), 'second pass (warm)': spread(second),
            'back to back': spread(back)}


def table(rows: Dict[str, Dict[str, Dict[str, float]]]) -> str:
    """Return the markdown table of ``measure`` results by configuration."""
    kinds = ('first pass (add)', 'second pass (warm)', 'back to back')
    out = ['| resnet64 (exit/split) | ' + ' | '.join(
        f'{k}: median CPU ms, MAPE' for k in kinds) + ' |', '|---|---|---|---|']
    for name, r in rows.items():
        out.append(f'| {name} | ' + ' | '.join(
            f'{r[k]["median_ms"]:.2f}, {100 * r[k]["mape"]:.1f} %' for k in kinds) + ' |')
    return '\n'.join(out)


def main() -> int:
    """Measure every configuration; write the JSON and PNG; print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--frames', type=int, default=150, help='frames per configuration')
    ap.add_argument('--gap-ms', type=float, default=50.0,
                    help='between frames (default %(default)s: the camera at 20 fps)')
    ap.add_argument('--out', type=Path, default=ROOT / 'bench' / 'results' / 'warm_pass.json')
    a = ap.parse_args()
    if a.frames < 10 or not 0 <= a.gap_ms <= 1000:
        ap.error('--frames must be >= 10 and --gap-ms in [0, 1000]')
    import numpy as np
    import torch
    torch.set_num_threads(1)
    from edgent_ros.core.described import load_described
    from edgent_ros.core.inference import CoInference
    from edgent_ros.core.model_desc import resolve
    runner = CoInference(load_described(resolve('resnet64')), threads=1)
    runner.warm_up()
    frame = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    rows = {}
    for k, c in enumerate(CONFIGS):
        print(f'warm_pass: {c[0]}/{c[1]} ({k + 1} of {len(CONFIGS)})', file=sys.stderr)
        rows[f'{c[0]}/{c[1]}'] = measure(runner, frame, c, a.frames, a.gap_ms / 1e3)
    text = table(rows)
    print(text)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({'frames': a.frames, 'gap_ms': a.gap_ms, 'configs': rows,
                                 'table': text}, indent=1) + '\n')
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.4))
    kinds = list(next(iter(rows.values())))
    width = 0.8 / len(kinds)
    for i, kind in enumerate(kinds):
        ax.bar([j + i * width for j in range(len(rows))],
               [100 * r[kind]['mape'] for r in rows.values()], width, label=kind)
    ax.set_xticks([j + width for j in range(len(rows))], list(rows))
    ax.set_xlabel('resnet64 configuration (exit/split)')
    ax.set_ylabel('CPU time off its median (MAPE, %)')
    ax.set_title(f'layers\' CPU time per frame, one frame every {a.gap_ms:g} ms', fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out.with_suffix('.png'), dpi=110)
    print(f'wrote {a.out} and {a.out.with_suffix(".png")}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
