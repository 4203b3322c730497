"""
Time the online decision (``optimizer.decide``) on the shipped 5-exit AlexNet problem.

The problem has the real branch lengths (10, 10, 12, 13, 20 layers: 70 configurations) and
payloads of ``edgent_ros.core.arch``; layer latencies come from a FLOP-rate stand-in (robot
2 GFLOP/s, edge 50 GFLOP/s, plus a fixed per-layer cost), since only the shape of the problem
matters for the cost of a decision. Accuracies come from the shipped table when present.

Run: ``PYTHONPATH=. python bench/bench_optimizer.py`` (add ``nice -n 10`` on a busy machine).
Prints mean / p50 / p99 / max microseconds per call and writes ``bench/results/
optimizer_bench.json``. Target: < 1 ms per decision.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
import platform
import random
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgent_ros.core.arch import layer_table, NUM_EXITS, SHIPPED_CONFIG  # noqa: E402
from edgent_ros.core.optimizer import (brute_force, decide, decide_policy,  # noqa: E402
                                       EdgentProblem, POLICIES)

RESULTS = Path(__file__).resolve().parent / 'results' / 'optimizer_bench.json'
PLACEHOLDER_ACCURACY = {1: 0.62, 2: 0.70, 3: 0.75, 4: 0.78, 5: 0.82}


class FlopsLatency:
    """Per-layer latency (ms) = FLOPs / rate + fixed cost; the ``branch_layer_ms`` interface."""

    def __init__(self, rates: Dict[str, Tuple[float, float]]):
        self.rates = rates   # host -> (FLOP/s, per-layer ms)

    def branch_layer_ms(self, host: str, cfg, exit_index: int) -> List[float]:
        """Return the predicted per-layer latency (ms) of branch ``exit_index`` on ``host``."""
        rate, fixed = self.rates[host]
        return [r.flops / rate * 1e3 + fixed for r in layer_table(cfg, exit_index)]


def load_accuracy() -> Tuple[Dict[int, float], str]:
    """Return the shipped accuracy table, or the placeholder when there is none yet."""
    try:
        from edgent_ros.core.artifacts import load_accuracy as load
        return load(model_id=SHIPPED_CONFIG.model_id()), 'artifact'
    except Exception:  # noqa: B902 - any missing/garbled artifact: the bench needs only shapes
        return dict(PLACEHOLDER_ACCURACY), 'placeholder'


def time_calls(fn: Callable[[float, float], object], pairs: Sequence[Tuple[float, float]],
               warmup: int = 200) -> Dict[str, float]:
    """Call ``fn(bw, deadline)`` once per pair; return per-call statistics in microseconds."""
    for bw, d in pairs[:warmup]:
        fn(bw, d)
    us = np.empty(len(pairs))
    clock = time.perf_counter_ns
    for k, (bw, d) in enumerate(pairs):
        t0 = clock()
        fn(bw, d)
        us[k] = (clock() - t0) / 1e3
    return {'calls': len(pairs), 'mean_us': float(us.mean()),
            'p50_us': float(np.percentile(us, 50)), 'p99_us': float(np.percentile(us, 99)),
            'max_us': float(us.max())}


def main(argv: Optional[List[str]] = None) -> int:
    """Run the benchmark and write the JSON report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--calls', type=int, default=20000, help='decisions timed (default 20000)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out', type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    accuracy, acc_source = load_accuracy()
    try:   # the shipped regression models; a FLOP-rate stand-in before they exist
        from edgent_ros.core.latency import LatencyModels
        lat = LatencyModels.load(model_id=SHIPPED_CONFIG.model_id())
        lat_source = 'shipped regression models (edgent_ros/artifacts/latency_models.json)'
    except Exception:  # noqa: B902 - missing/garbled artifact: the bench needs only shapes
        lat = FlopsLatency({'robot': (2e9, 0.05), 'edge': (50e9, 0.01)})
        lat_source = ('FLOP rate: robot 2 GFLOP/s + 0.05 ms/layer, '
                      'edge 50 GFLOP/s + 0.01 ms/layer')
    problem = EdgentProblem.from_model(SHIPPED_CONFIG, accuracy, lat, overhead_ms=1.0)
    rng = random.Random(args.seed)
    pairs = []
    for _ in range(args.calls):
        # 5 % dead link; otherwise 0.1 .. 1000 Mbit/s log-uniform; deadline 1 .. 100 ms
        bw = 0.0 if rng.random() < 0.05 else 10 ** rng.uniform(5, 9)
        pairs.append((bw, rng.uniform(1.0, 100.0)))

    results = {'decide': time_calls(lambda b, d: decide(problem, b, d), pairs)}
    for policy in POLICIES[1:]:
        results[policy] = time_calls(
            lambda b, d, p=policy: decide_policy(problem, p, b, d), pairs[:5000])
    results['brute_force'] = time_calls(lambda b, d: brute_force(problem, b, d), pairs[:2000])
    n_variants = 0
    try:   # the third dimension (issue 9): every encoding, from the measured table
        from edgent_ros.core.artifacts import load_encodings
        enc_problem = EdgentProblem.from_model(
            SHIPPED_CONFIG, accuracy, lat, overhead_ms=1.0,
            encodings=('raw', 'fp16', 'int8', 'int8-zlib', 'compressed', 'png', 'jpeg'),
            encoding_table=load_encodings(model_id=SHIPPED_CONFIG.model_id()))
        n_variants = sum(len(v) for v in enc_problem.variants.values())
        results['decide_encodings'] = time_calls(lambda b, d: decide(enc_problem, b, d), pairs)
    except Exception as exc:  # noqa: B902 - no encoding table: skip that row
        print(f'no encodings row: {exc}', file=sys.stderr)
    outcomes = [decide(problem, b, d) for b, d in pairs[:5000]]

    report = {
        'benchmark': 'optimizer.decide',
        'problem': {'model_id': SHIPPED_CONFIG.model_id(), 'exits': NUM_EXITS,
                    'branch_layers': [problem.branch_len(e) for e in problem.exits],
                    'configurations': sum(problem.branch_len(e) + 1 for e in problem.exits),
                    'encoded_variants': n_variants,
                    'accuracy_source': acc_source,
                    'latency_model': lat_source,
                    'overhead_ms': problem.overhead_ms},
        'inputs': {'bandwidth_bps': '5 % zero, else log-uniform 1e5..1e9',
                   'deadline_ms': 'uniform 1..100', 'seed': args.seed},
        'results': results,
        'feasible_fraction': sum(o.feasible for o in outcomes) / len(outcomes),
        'target_us': 1000.0,
        'meets_target': results['decide']['p99_us'] < 1000.0,
        'host': {'python': platform.python_version(), 'numpy': np.__version__,
                 'machine': platform.machine(), 'cpus': os.cpu_count(),
                 'loadavg_1m': os.getloadavg()[0] if hasattr(os, 'getloadavg') else math.nan,
                 'niceness': os.nice(0) if hasattr(os, 'nice') else None},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + '\n')
    for name, r in results.items():
        print(f'{name:<15} {r["calls"]:>6} calls  mean {r["mean_us"]:8.1f} us  '
              f'p50 {r["p50_us"]:8.1f} us  p99 {r["p99_us"]:8.1f} us  max {r["max_us"]:8.1f} us')
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
