"""
Change-point detector on synthetic bandwidth signals with known change points (issue 10).

``python bench/bench_changepoint.py``: steps (6 levels, 40 samples each), outages, stationary
noise and ramps at several noise levels, 20 seeds each; detection rate, delay and false alarms
per 100 samples of ``edgent_ros.core.changepoint.BOCPD`` with its default settings (the planner's).
Also counts the changes it declares on the real traces (no ground truth: for scale). Writes
``bench/results/changepoint.json`` and ``changepoint.png``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
import statistics
import sys

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / 'bench' / 'results'


def signals(kind: str, noise: float, rng: np.random.Generator):
    """Return (signal in Mbit/s, true change indices)."""
    if kind == 'steps':
        levels = np.exp(rng.uniform(math.log(0.05), math.log(10.0), 6))
        while np.min(np.abs(np.diff(np.log(levels)))) < math.log(2):   # changes of >= 2x
            levels = np.exp(rng.uniform(math.log(0.05), math.log(10.0), 6))
        sig = np.concatenate([np.log(v) + rng.normal(0, noise, 40) for v in levels])
        return list(np.exp(sig)), [40 * i for i in range(1, 6)]
    if kind == 'outage':
        base = rng.uniform(0.5, 5.0)
        sig = [base * math.exp(rng.normal(0, noise)) for _ in range(40)] + [0.0] * 8 + \
            [base * math.exp(rng.normal(0, noise)) for _ in range(40)]
        return sig, [40, 48]
    if kind == 'noise':
        return list(np.exp(rng.normal(math.log(rng.uniform(0.1, 5.0)), noise, 400))), []
    if kind == 'ramp':   # 20x over 100 samples: no single change point; tracking error
        ramp = np.linspace(math.log(0.1), math.log(2.0), 100)
        return list(np.exp(ramp + rng.normal(0, noise, 100))), ramp
    raise ValueError(kind)


def main() -> int:
    """Run the synthetic evaluation and the trace counts; print a table."""
    from edgent_ros.core.changepoint import BOCPD, evaluate_detector
    from edgent_ros.core.paths import find_data
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument('--traces-dir', type=Path, default=None,
                    help='folder of the real trace CSVs (default: $EDGENT_ROS_DATA/traces, '
                         'else <user dir>/data/traces, then ../shared/data/traces)')
    args = ap.parse_args()
    tdir = find_data('traces', args.traces_dir, option='--traces-dir')   # fail before the work
    rows = []
    for kind in ('steps', 'outage', 'noise', 'ramp'):
        for noise in (0.1, 0.2, 0.3, 0.5):
            det, delays, false, n_samples, missed, changes, track = \
                0, [], 0, 0, 0, 0, []
            for seed in range(20):
                rng = np.random.default_rng(1000 * seed + int(100 * noise))
                sig, truth = signals(kind, noise, rng)
                if kind == 'ramp':
                    d = BOCPD()
                    lv = np.log([d.update(float(x)).level_mbps for x in sig])
                    track.append(float(np.median(np.abs(lv - truth))))
                    continue
                r = evaluate_detector(sig, truth, BOCPD())
                det += r['detected']
                missed += r['missed']
                changes += r['changes']
                false += r['false_alarms']
                n_samples += len(sig)
                if r['mean_delay'] is not None:
                    delays += [r['mean_delay']] * r['detected']
            row = {'signal': kind, 'noise_sigma': noise}
            if kind == 'ramp':
                row['median_abs_log_error'] = round(statistics.median(track), 3)
            else:
                row.update(changes=changes, detected=det, missed=missed,
                           mean_delay=round(statistics.fmean(delays), 2) if delays else None,
                           false_alarms_per_100=round(100 * false / n_samples, 3))
            rows.append(row)
            print(row)
    traces = {}
    for f in sorted(tdir.glob('*.csv')):
        if f.name == 'index.csv':
            continue
        from edgent_ros.offline.map_builder import read_trace
        d = BOCPD()
        xs = [m for _, m in read_trace(f)]
        n = sum(d.update(x).change for x in xs) - 1
        traces[f.name] = {'samples': len(xs), 'changes': n,
                          'per_100': round(100 * n / len(xs), 2)}
    print(json.dumps(traces, indent=1))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / 'changepoint.json').write_text(json.dumps({'synthetic': rows, 'traces': traces},
                                                         indent=1))
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from edgent_ros.offline.map_builder import read_trace
    f = tdir / 'mahimahi-verizon-evdo-driving-down.csv'
    xs = [m for _, m in read_trace(f)][:300]
    d = BOCPD()
    steps = [d.update(x) for x in xs]
    fig, ax = plt.subplots(figsize=(9, 3))
    ax.plot(xs, color='0.6', lw=0.8, label='trace (Mbit/s)')
    ax.plot([s.level_mbps for s in steps], color='tab:red', lw=1.2, label='detector level')
    for i, s in enumerate(steps):
        if s.change and i:
            ax.axvline(i, color='tab:blue', lw=0.6, alpha=0.6)
    ax.set_yscale('symlog', linthresh=0.01)
    ax.set_xlabel('second')
    ax.set_title(f'{f.name}: declared change points (blue) and level')
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / 'changepoint.png', dpi=110)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
