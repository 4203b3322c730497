"""
Several robots on one edge: bounded edge queueing, drops with reasons, latency per robot.

Starts one ``edge_node`` serving ``robot1..robotN`` and N ``camera_node`` processes (one per
namespace) at a fixed exit/split and frame rate, listens to every robot's ``edgent/outcome`` for
a fixed time, and writes ``bench/results/load.json`` and ``load.png``: per robot the frames,
results, drops per reason, end-to-end p50/p95/p99 and the edge queue wait. Isolated on its own
ROS_DOMAIN_ID with localhost discovery. Needs the built package (``source scripts/env.sh``).
"""

import argparse
from collections import Counter
import json
import os
from pathlib import Path
import random
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'test'))
RESULTS = Path(__file__).resolve().parent / 'results'


def run(robots: int, fps: float, seconds: float, exit_index: int, split_index: int,
        max_queue: int) -> dict:
    """Run one load point; return its per-robot statistics."""
    from ros_helpers import Listener, Procs   # the test suite's process / listener helpers
    from edgent_ros import qos
    from edgent_ros.msg import InferenceResult
    names = [f'robot{i + 1}' for i in range(robots)]
    procs = Procs(Path(tempfile.mkdtemp(prefix='edgent-load-')))
    listener = Listener()
    try:
        for ns in names:
            listener.listen(InferenceResult, f'/{ns}/edgent/outcome', qos.RESULT)
        procs.start('edge_node', robot_namespaces=names, max_queue=max_queue,
                    max_queue_ms=500.0)
        for ns in names:
            procs.start('camera_node', name=f'camera_{ns}', ns=ns, fps=fps,
                        exit_index=exit_index, split_index=split_index, max_in_flight=2,
                        result_timeout_s=2.0, threads=1)
        listener.spin_until(lambda: all(len(listener.msgs(f'/{n}/edgent/outcome')) > 5
                                        for n in names), 60.0)
        t0 = {n: len(listener.msgs(f'/{n}/edgent/outcome')) for n in names}
        listener.spin_until(lambda: False, seconds)
        out = {}
        for n in names:
            got = listener.msgs(f'/{n}/edgent/outcome')[t0[n]:]
            ok = [o for o in got if o.status == InferenceResult.STATUS_OK]
            lat = np.array([o.end_to_end_ms for o in ok]) if ok else np.zeros(1)
            out[n] = {
                'frames': len(got), 'results': len(ok),
                'drops': dict(Counter(o.drop_reason for o in got
                                      if o.status != InferenceResult.STATUS_OK)),
                'p50_ms': float(np.percentile(lat, 50)), 'p95_ms': float(np.percentile(lat, 95)),
                'p99_ms': float(np.percentile(lat, 99)),
                'edge_queue_ms_mean': float(np.mean([o.edge_queue_ms for o in ok])) if ok
                else 0.0,
                'deadline_met': float(np.mean([o.deadline_met for o in ok])) if ok else 0.0,
            }
        return out
    finally:
        procs.stop_all()
        listener.close()


def main(argv=None) -> int:
    """Sweep the number of robots and write the report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--robots', type=int, nargs='+', default=[1, 2, 4])
    ap.add_argument('--fps', type=float, default=30.0, help='frames/s per robot')
    ap.add_argument('--seconds', type=float, default=20.0, help='measured time per point')
    ap.add_argument('--exit', type=int, default=5)
    ap.add_argument('--split', type=int, default=0, help='0 = edge-only (most edge load)')
    ap.add_argument('--max-queue', type=int, default=4)
    ap.add_argument('--out', type=Path, default=RESULTS / 'load.json')
    args = ap.parse_args(argv)
    os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(100, 199)))
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    report = {'fps_per_robot': args.fps, 'seconds': args.seconds, 'exit': args.exit,
              'split': args.split, 'edge_max_queue': args.max_queue, 'points': {}}
    for n in args.robots:
        print(f'{n} robot(s) x {args.fps:g} fps ...', file=sys.stderr, flush=True)
        t = time.monotonic()
        report['points'][str(n)] = run(n, args.fps, args.seconds, args.exit, args.split,
                                       args.max_queue)
        print(f'  done in {time.monotonic() - t:.0f} s: '
              + json.dumps(report['points'][str(n)]), file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + '\n')
    plot(report, args.out.with_suffix('.png'))
    print(f'wrote {args.out} and {args.out.with_suffix(".png")}')
    return 0


def plot(report: dict, path: Path) -> None:
    """Latency percentiles and drop rate versus the number of robots."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    ns = sorted(int(k) for k in report['points'])
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(10, 4))
    for q in ('p50_ms', 'p95_ms', 'p99_ms'):
        a0.plot(ns, [np.mean([r[q] for r in report['points'][str(n)].values()]) for n in ns],
                marker='o', label=q[:3])
    a0.set(xlabel='robots on one edge', ylabel='end-to-end latency (ms)',
           title=f'{report["fps_per_robot"]:g} fps per robot, exit {report["exit"]} '
                 f'split {report["split"]}')
    a0.legend()
    drop = [sum(sum(r['drops'].values()) for r in report['points'][str(n)].values())
            / max(1, sum(r['frames'] for r in report['points'][str(n)].values())) for n in ns]
    a1.plot(ns, [100 * d for d in drop], marker='o', color='tab:red')
    a1.set(xlabel='robots on one edge', ylabel='frames dropped (%)', title='Drops (all reasons)')
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == '__main__':
    raise SystemExit(main())
