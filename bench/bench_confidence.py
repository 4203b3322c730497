"""
BranchyNet confidence early exit: the accuracy / latency curve (issue 9, item 2).

For a final exit (default 5) run wholly on the robot, and for a grid of entropy thresholds:

- **measured**: ``CoInference.device_step(frame, final, n, threshold)`` on ``--frames`` CIFAR-10
  test images (every k-th, all classes), 1 torch thread, wall time x ``--factor`` (the profiled
  robot: 1 thread x 4, BENCHMARKS section 2), top-1 and the fraction leaving at each exit;
- **predicted**: from the accuracy table's confidence section (10,000 images) and the latency
  models: each exit's share times the robot time to reach it (trunk prefix + every side head
  tried on the way); the planner's worst case (no frame leaves early) beside it.

Writes ``bench/results/confidence.json`` and ``confidence.png``:
``python bench/bench_confidence.py`` (about a minute); ``--report`` prints BENCHMARKS' table
(``markdown``) of the JSON instead.
"""

import argparse
import json
from pathlib import Path
import statistics
import sys
import time

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / 'bench' / 'results'
THRESHOLDS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.25, 1.5, 2.0)


def predicted_ms(models, cfg, final: int, fractions, threshold: float) -> tuple:
    """Return (expected, worst-case) robot ms of the cascade for exit shares ``fractions``."""
    from edgent_ros.core.arch import EXIT_ATTACH
    trunk = models.branch_layer_ms('robot', cfg, final)
    head = {e: sum(models.branch_layer_ms('robot', cfg, e)[a:]) for e, a in EXIT_ATTACH.items()}
    sides = sorted(e for e in EXIT_ATTACH if e < final) if threshold > 0 else []
    worst = sum(trunk) + sum(head[e] for e in sides)
    expected = 0.0
    for e, frac in zip(range(1, final + 1), fractions):
        if e == final:
            cost = worst
        else:
            cost = sum(trunk[:EXIT_ATTACH[e]]) + sum(head[k] for k in sides if k <= e)
        expected += frac * cost
    return expected, worst


def main(argv=None) -> int:
    """Measure and plot the curve."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument('--final-exit', type=int, default=5)
    ap.add_argument('--frames', type=int, default=1000)
    ap.add_argument('--factor', type=float, default=4.0,
                    help='robot emulation: measured 1-thread time x this')
    ap.add_argument('--out', type=Path, default=RESULTS / 'confidence.json')
    ap.add_argument('--report', action='store_true',
                    help='measure nothing: print the table of --out')
    args = ap.parse_args(argv)
    if args.report:
        print(markdown(json.loads(args.out.read_text())))
        return 0
    import torch
    from edgent_ros.core.artifacts import load_confidence, read_config
    from edgent_ros.core.weights import load_model
    from edgent_ros.core.datasets import load_split
    from edgent_ros.core.inference import CoInference
    from edgent_ros.core.optimizer import cascade_top1
    from edgent_ros.core.latency import LatencyModels
    torch.set_num_threads(1)
    cfg = read_config()
    models = LatencyModels.load(model_id=cfg.model_id())
    table = load_confidence(model_id=cfg.model_id())[args.final_exit]
    runner = CoInference(load_model())
    x, y = load_split('test')
    step = max(1, len(x) // args.frames)
    x, y = x[::step][:args.frames], y[::step][:args.frames]
    n = runner.branch_len(args.final_exit)
    for f in x[:20]:   # warm-up
        runner.device_step(f, args.final_exit, n, 0.5)
    rows = []
    for t in THRESHOLDS:
        times, correct, taken = [], 0, []
        for f, label in zip(x, y):
            t0 = time.perf_counter()
            out = runner.device_step(f, args.final_exit, n, t)
            times.append((time.perf_counter() - t0) * 1e3 * args.factor)
            correct += int(out.classification.class_id == label)
            taken.append(out.classification.exit_index)
        frac = [float(np.mean(np.asarray(taken) == e)) for e in range(1, args.final_exit + 1)]
        ref = min(table, key=lambda r: abs(r['threshold'] - t))
        exp_ms, worst_ms = predicted_ms(models, cfg, args.final_exit, ref['exit_fraction'], t)
        rows.append({'threshold': t, 'measured_top1': correct / len(x),
                     'measured_mean_ms': statistics.mean(times),
                     'measured_p95_ms': float(np.percentile(times, 95)),
                     'measured_exit_fraction': frac,
                     'table_top1': cascade_top1(table, t),
                     'table_exit_fraction': ref['exit_fraction'] if ref['threshold'] == t
                     else None,
                     'predicted_mean_ms': exp_ms, 'predicted_worst_ms': worst_ms})
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                          for k, v in rows[-1].items()}), file=sys.stderr)
    report = {'final_exit': args.final_exit, 'frames': len(x), 'factor': args.factor,
              'threads': 1, 'rows': rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + '\n')
    plot(report, args.out.with_suffix('.png'))
    print(f'wrote {args.out} and {args.out.with_suffix(".png")}')
    return 0


def markdown(report: dict) -> str:
    """Return BENCHMARKS' table (section 9.2) of a ``confidence.json`` report."""
    n = f'{report["frames"]:,}'
    out = [f'| threshold (nats) | top-1 measured ({n}) | top-1 table (10,000) | mean ms measured '
           '| p95 ms measured | mean ms predicted | frames leaving at exit '
           + ' / '.join(str(e) for e in range(1, report['final_exit'] + 1)) + ' |',
           '|---|---|---|---|---|---|---|']
    for r in report['rows']:
        leave = ' / '.join(f'{100 * f:.0f}' for f in r['measured_exit_fraction'])
        out.append(f'| {r["threshold"]:g} | {100 * r["measured_top1"]:.1f} % | '
                   f'{100 * r["table_top1"]:.2f} % | {r["measured_mean_ms"]:.1f} | '
                   f'{r["measured_p95_ms"]:.1f} | {r["predicted_mean_ms"]:.1f} | {leave} % |')
    return '\n'.join(out)


def plot(report: dict, path: Path) -> None:
    """Top-1 vs mean robot latency, measured and predicted, one point per threshold."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = report['rows']
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 4))
    a0.plot([r['measured_mean_ms'] for r in rows], [100 * r['measured_top1'] for r in rows],
            'o-', label=f'measured ({report["frames"]} frames)')
    a0.plot([r['predicted_mean_ms'] for r in rows], [100 * r['table_top1'] for r in rows],
            's--', label='predicted (table, 10,000 frames)')
    for r in rows:
        a0.annotate(f'{r["threshold"]:g}', (r['measured_mean_ms'], 100 * r['measured_top1']),
                    fontsize=7, xytext=(3, 3), textcoords='offset points')
    a0.axvline(rows[-1]['predicted_worst_ms'], color='grey', ls=':',
               label='planned worst case (t > 0)')
    a0.axvline(rows[0]['predicted_worst_ms'], color='grey', ls='-.', lw=0.8,
               label='plain branch (t = 0), predicted')
    a0.set(xlabel='mean robot latency (ms, emulated robot)', ylabel='top-1 (%)',
           title=f'confidence early exit, final exit {report["final_exit"]} on the robot')
    a0.legend(fontsize=7)
    ts = [r['threshold'] for r in rows]
    fr = np.array([r['measured_exit_fraction'] for r in rows])
    bottom = np.zeros(len(rows))
    for e in range(fr.shape[1]):
        a1.bar(range(len(rows)), 100 * fr[:, e], bottom=bottom, label=f'exit {e + 1}')
        bottom += 100 * fr[:, e]
    a1.set_xticks(range(len(rows)), [f'{t:g}' for t in ts])
    a1.set(xlabel='entropy threshold (nats)', ylabel='frames leaving (%)',
           title='where frames leave')
    a1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == '__main__':
    raise SystemExit(main())
