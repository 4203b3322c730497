"""
Measure a live camera_node under the robot CPU quota against the robot latency model.

How fast does a live camera_node compute under the testbed's robot CPU quota, compared with the
robot latency model the planner uses? (issue 6, robot CPU emulation)

The robot latency model (``edgent_ros/artifacts/latency_models.json``) is profiled with the
robot emulation ``edgent-ros profile --host robot --emulation factor``: one thread, times x 4
(1 / the 25 % quota). A live camera computes one ~2 ms burst per frame, which a CFS quota hardly
throttles, so the testbed camera gets ``compute_slowdown`` 4: the same emulation. This script
runs the real camera_node on the testbed for a few (exit, split) configurations, in the robot
cgroup and outside it, with ``compute_slowdown`` 1 and with a candidate factor, and compares the
``device_ms`` it reports with the model's prediction (``optimizer.evaluate``).

Run as root, in the ROS environment: ``nice -n 5 python bench/robot_slowdown.py``. Writes
``bench/results/robot_slowdown.csv`` and prints the factor to use.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
import statistics
import sys
import tempfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / 'bench' / 'results'
CONFIGS = ((5, 3), (5, 6), (5, 20), (3, 8), (1, 10))   # (exit, split); split = end: device-only


def main(argv=None) -> int:
    """Measure device_ms per configuration and emulation; print predicted/measured."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument('--frames', type=int, default=16)
    p.add_argument('--fps', type=float, default=4.0)
    p.add_argument('--factor', type=float, default=None,
                   help='also run with this compute_slowdown in the cgroup')
    p.add_argument('--out', type=Path, default=RESULTS / 'robot_slowdown.csv')
    p.add_argument('--no-free', action='store_true', help='skip the run outside the cgroup')
    args = p.parse_args(argv)
    from edgent_ros.core.artifacts import load_accuracy, read_config
    from edgent_ros.core.optimizer import EdgentProblem, evaluate
    from edgent_ros.core.latency import LatencyModels
    from edgent_ros.evaluation.testbed import Testbed, unavailable_reason
    from edgent_ros.evaluation.testbed_session import run_session
    reason = unavailable_reason()
    if reason:
        print(f'robot_slowdown: {reason}', file=sys.stderr)
        return 1
    cfg = read_config(None)
    problem = EdgentProblem.from_model(cfg, load_accuracy(None, cfg.model_id()),
                                       LatencyModels.load(None, model_id=cfg.model_id()))
    runs = [('cgroup', True, 1.0)] + ([] if args.no_free else [('free', False, 1.0)])
    if args.factor:
        runs.append((f'cgroup+slowdown{args.factor:g}', True, args.factor))
    rows = []
    tb = Testbed(name='edgslow', rate_mbps=10.0)
    try:
        tb.setup()
        for exit_index, split in CONFIGS:
            pred = evaluate(problem, 10e6, exit_index, split).device_ms
            for label, in_cgroup, factor in runs:
                with tempfile.TemporaryDirectory() as d:
                    res = run_session(tb, camera={'exit_index': exit_index, 'split_index': split,
                                                  'fps': args.fps, 'max_frames': args.frames,
                                                  'deadline_ms': 5000.0,
                                                  'publish_frames': False},
                                      compute_slowdown=factor, robot_cgroup=in_cgroup,
                                      timeout_s=90.0, logdir=Path(d))
                dev = [o['device_ms'] for o in res['outcomes'] if o['status'] == 0][2:]
                if not dev:
                    print(f'exit {exit_index} split {split} {label}: no frames', flush=True)
                    continue
                med = statistics.median(dev)
                row = {'exit': exit_index, 'split': split, 'emulation': label,
                       'compute_slowdown': factor, 'frames': len(dev),
                       'device_ms_median': round(med, 3),
                       'device_ms_p90': round(sorted(dev)[int(0.9 * (len(dev) - 1))], 3),
                       'predicted_device_ms': round(pred, 3),
                       'predicted_over_measured': round(pred / med, 3) if med > 0 else ''}
                rows.append(row)
                print(f'exit {exit_index} split {split:2d} {label:>18}: measured '
                      f'{med:7.2f} ms (p90 {row["device_ms_p90"]:.2f}), predicted {pred:7.2f} ms,'
                      f' predicted/measured {row["predicted_over_measured"]}', flush=True)
    finally:
        tb.teardown()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, 'w', newline='') as f:
        w = csv.DictWriter(f, list(rows[0]) if rows else ['exit'])
        w.writeheader()
        w.writerows(rows)
    cg = [r['predicted_over_measured'] for r in rows if r['emulation'] == 'cgroup'
          and r['predicted_over_measured'] != '']
    if cg:
        print(f'\ncgroup, compute_slowdown 1: predicted/measured median '
              f'{statistics.median(cg):.2f} (range {min(cg):.2f}-{max(cg):.2f})'
              ' -> use compute_slowdown of about this')
    fac = [r['predicted_over_measured'] for r in rows if r['emulation'].startswith(
        'cgroup+slowdown') and r['predicted_over_measured'] != '']
    if fac:
        print(f'cgroup, compute_slowdown {args.factor:g}: predicted/measured median '
              f'{statistics.median(fac):.2f} (range {min(fac):.2f}-{max(fac):.2f})')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
