"""
Several robots on one edge: bounded edge queueing, drops with reasons, latency per robot.

Starts one ``edge_node`` serving ``robot1..robotN`` and N ``camera_node`` processes (one per
namespace) at a fixed exit/split and frame rate, listens to every robot's ``edgent/outcome`` for
a fixed time, and writes ``bench/results/load.json`` and ``load.png``: per robot the frames,
results, drops per reason, end-to-end p50/p95/p99 and the edge queue wait. Isolated on its own
ROS_DOMAIN_ID with localhost discovery. Needs the built package (``source scripts/env.sh``).

``--max-batch 1 4`` runs every robot count with the edge batching off (1) and on (4, with
``--batch-window-ms``): each point also reports the mean batch size, the measured edge time
(queue wait + batch compute) and the planner's prediction of it (profiled suffix time x
``LatencyModels.batch_factor`` of the reported batch size + the reported queue wait).
``--report`` measures nothing and prints BENCHMARKS' table (``markdown``) of ``--out``.
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


def _predicted_edge_ms(exit_index: int, split_index: int) -> tuple:
    """Return (one-frame suffix ms on the edge, LatencyModels) from the shipped models."""
    from edgent_ros.core.artifacts import read_config
    from edgent_ros.core.latency import LatencyModels
    cfg = read_config()
    models = LatencyModels.load(model_id=cfg.model_id())
    return sum(models.branch_layer_ms('edge', cfg, exit_index)[split_index:]), models


def run(robots: int, fps: float, seconds: float, exit_index: int, split_index: int,
        max_queue: int, max_batch: int = 1, batch_window_ms: float = 0.0) -> dict:
    """Run one load point; return its per-robot statistics."""
    from ros_helpers import Listener, Procs   # the test suite's process / listener helpers
    from edgent_ros.nodes import qos
    from edgent_ros.msg import InferenceResult
    names = [f'robot{i + 1}' for i in range(robots)]
    procs = Procs(Path(tempfile.mkdtemp(prefix='edgent-load-')))
    listener = Listener()
    try:
        for ns in names:
            listener.listen(InferenceResult, f'/{ns}/edgent/outcome', qos.RESULT)
        procs.start('edge_node', robot_namespaces=names, max_queue=max_queue,
                    max_queue_ms=500.0, max_batch=max_batch, batch_window_ms=batch_window_ms)
        for ns in names:
            procs.start('camera_node', name=f'camera_{ns}', ns=ns, fps=fps,
                        exit_index=exit_index, split_index=split_index, max_in_flight=2,
                        result_timeout_s=2.0, threads=1)
        listener.spin_until(lambda: all(len(listener.msgs(f'/{n}/edgent/outcome')) > 5
                                        for n in names), 60.0)
        t0 = {n: len(listener.msgs(f'/{n}/edgent/outcome')) for n in names}
        listener.spin_until(lambda: False, seconds)
        out = {}
        suffix_ms, models = _predicted_edge_ms(exit_index, split_index)
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
            if ok:
                b = float(np.mean([max(1, o.batch_size) for o in ok]))
                q = float(np.mean([o.edge_queue_ms for o in ok]))
                out[n].update(
                    batch_mean=b, edge_ms_mean=float(np.mean([o.edge_ms for o in ok])),
                    edge_total_ms_mean=q + float(np.mean([o.edge_ms for o in ok])),
                    edge_total_ms_predicted=q + suffix_ms * models.batch_factor('edge', b))
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
    ap.add_argument('--max-batch', type=int, nargs='+', default=[1],
                    help='edge max_batch values to run (1 = batching off)')
    ap.add_argument('--batch-window-ms', type=float, default=0.0)
    ap.add_argument('--out', type=Path, default=RESULTS / 'load.json')
    ap.add_argument('--report', action='store_true',
                    help='measure nothing: print the table of --out')
    args = ap.parse_args(argv)
    if args.report:
        print(markdown(json.loads(args.out.read_text())))
        return 0
    os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(100, 199)))
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    report = {'fps_per_robot': args.fps, 'seconds': args.seconds, 'exit': args.exit,
              'split': args.split, 'edge_max_queue': args.max_queue,
              'batch_window_ms': args.batch_window_ms, 'points': {}}
    for b in args.max_batch:
        for n in args.robots:
            key = str(n) if args.max_batch == [1] else f'{n}x{b}'
            print(f'{n} robot(s) x {args.fps:g} fps, max_batch {b} ...', file=sys.stderr,
                  flush=True)
            t = time.monotonic()
            report['points'][key] = run(n, args.fps, args.seconds, args.exit, args.split,
                                        args.max_queue, b, args.batch_window_ms)
            print(f'  done in {time.monotonic() - t:.0f} s: '
                  + json.dumps(report['points'][key]), file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + '\n')
    plot(report, args.out.with_suffix('.png'))
    print(f'wrote {args.out} and {args.out.with_suffix(".png")}')
    return 0


def markdown(report: dict) -> str:
    """
    Return BENCHMARKS' table (section 9.3) of a report: one row per (max_batch, robots) point.

    Frames, results and drops are summed over the robots; latencies, batch sizes and edge times
    are the mean of the robots' values.
    """
    out = [f'| robots x {report["fps_per_robot"]:g} fps | max_batch | frames | results | '
           'skipped / refused (reason) | e2e p50 / p95 / p99 ms | mean batch | '
           'edge wait + compute ms: measured / predicted |', '|---|---|---|---|---|---|---|---|']
    points = []
    for key, robots in report['points'].items():
        n, _, b = key.partition('x')
        points.append((int(b or 1), int(n), list(robots.values())))
    for b, n, rs in sorted(points):
        drops: dict = {}
        for r in rs:
            for reason, k in r['drops'].items():
                drops[reason] = drops.get(reason, 0) + k
        skipped = ', '.join(f'{k:,} {reason}' for reason, k in sorted(drops.items())) or '0'

        def mean(field: str) -> float:
            return float(np.mean([r[field] for r in rs]))
        out.append(f'| {n} | {b} | {sum(r["frames"] for r in rs):,} | '
                   f'{sum(r["results"] for r in rs):,} | {skipped} | {mean("p50_ms"):.1f} / '
                   f'{mean("p95_ms"):.1f} / {mean("p99_ms"):.1f} | {mean("batch_mean"):.2f} | '
                   f'{mean("edge_total_ms_mean"):.1f} / {mean("edge_total_ms_predicted"):.1f} |')
    return '\n'.join(out)


def plot(report: dict, path: Path) -> None:
    """Latency percentiles and drop rate versus the number of robots (one line per max_batch)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    series = {}
    for key in report['points']:
        n, _, b = key.partition('x')
        series.setdefault(int(b or 1), []).append((int(n), key))
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(10, 4))
    for b, items in sorted(series.items()):
        items.sort()
        ns, keys = [n for n, _ in items], [k for _, k in items]
        tag = f'batch {b}' if len(series) > 1 else ''
        for q, style in (('p50_ms', '-'), ('p95_ms', '--'), ('p99_ms', ':')):
            a0.plot(ns, [np.mean([r[q] for r in report['points'][k].values()]) for k in keys],
                    style, marker='o', label=f'{q[:3]} {tag}'.strip())
        drop = [sum(sum(r['drops'].values()) for r in report['points'][k].values())
                / max(1, sum(r['frames'] for r in report['points'][k].values())) for k in keys]
        a1.plot(ns, [100 * d for d in drop], marker='o', label=tag or None)
    a0.set(xlabel='robots on one edge', ylabel='end-to-end latency (ms)',
           title=f'{report["fps_per_robot"]:g} fps per robot, exit {report["exit"]} '
                 f'split {report["split"]}')
    a0.legend(fontsize=7)
    a1.set(xlabel='robots on one edge', ylabel='frames dropped (%)', title='Drops (all reasons)')
    if len(series) > 1:
        a1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == '__main__':
    raise SystemExit(main())
