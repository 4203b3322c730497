"""
Cold-start penalty of the robot's layers: one frame at a time vs the profiler's back-to-back.

``python bench/cold_start.py``: runs ``CoInference.device_step`` on 1 torch thread for a few
(exit, split) configurations, one frame every 100 ms (as a camera does, caches cold), and
compares the layers' time with the robot latency model / 4 (the model is the profiler's
1 thread x 4 emulation, timed back to back, warm). The median ratio is the penalty that
``testbed.ROBOT_COMPUTE_SLOWDOWN`` (= 4 / penalty) divides out. Writes
``bench/results/cold_start.csv``. Run it alone (other load changes the result).
"""

from __future__ import annotations

import csv
from pathlib import Path
import statistics
import sys
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CONFIGS = ((5, 3), (5, 6), (5, 12), (5, 20), (3, 8), (1, 10), (2, 10), (4, 13))


def main() -> int:
    """Measure and print the per-configuration ratio and its median."""
    import torch
    torch.set_num_threads(1)
    from edgent_ros.core.artifacts import load_accuracy, read_config
    from edgent_ros.core.weights import load_model
    from edgent_ros.core.datasets import load_sample
    from edgent_ros.core.inference import CoInference
    from edgent_ros.core.optimizer import EdgentProblem, evaluate
    from edgent_ros.core.latency import LatencyModels
    model = load_model()
    model = model[0] if isinstance(model, tuple) else model
    runner = CoInference(model, threads=1)
    cfg = read_config(None)
    problem = EdgentProblem.from_model(cfg, load_accuracy(None, cfg.model_id()),
                                       LatencyModels.load(None, model_id=cfg.model_id()))
    images, _ = load_sample()
    rows = []
    for e, s in CONFIGS:
        layers = []
        for i in range(25):
            layers.append(runner.device_step(images[i], e, s).layers_ms)
            time.sleep(0.1)
        warm = evaluate(problem, 1e6, e, s).device_ms / 4
        live = statistics.median(layers[3:])
        rows.append({'exit': e, 'split': s, 'model_warm_ms': round(warm, 3),
                     'live_layers_ms': round(live, 3), 'penalty': round(live / warm, 3)})
        print(rows[-1], flush=True)
    pen = statistics.median(r['penalty'] for r in rows)
    print(f'median cold-start penalty {pen:.2f} (range {min(r["penalty"] for r in rows):.2f}-'
          f'{max(r["penalty"] for r in rows):.2f}) -> compute_slowdown 4 / {pen:.2f} = '
          f'{4 / pen:.2f}')
    out = ROOT / 'bench' / 'results' / 'cold_start.csv'
    with open(out, 'w', newline='') as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
