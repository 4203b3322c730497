"""
Report repeated sweeps of one model (issue 16 item 7): per cell and policy, the mean (min-max).

``python bench/sweep_model_report.py --reps bench/results/sweep_resnet64.csv
bench/results/sweep_resnet64_r2.csv ... --plot bench/results/sweep_resnet64.png``: every file is
one repetition of the same cells (``edgent-ros sweep run --model ... --fresh``); prints a
markdown table of on-time accuracy (mean, min-max), deadline met and the configurations the
policy ran (exit/split: frames, over all repetitions), marks mid-network cuts, and plots the
means with their range. The ``oracle`` rows are left out: the sweep's offline oracle pools
frames across cells and is not an upper bound of every policy (issue 18).
"""

import argparse
import csv
from pathlib import Path
import statistics

RESULTS = Path(__file__).resolve().parent / 'results'


# the table's order: the policies that may cut mid-network, then the fixed ends
POLICY_ORDER = ('edgent', 'exit-only', 'partition-only', 'device-only', 'edge-only')
FIXED = ('device-only', 'edge-only')
BRANCH_LENS = (6, 8, 10, 14)     # resnet64's layers per exit


def read_reps(paths) -> dict:
    """Return the sweep rows (oracle left out) per (Mbit/s, deadline, policy), one per file."""
    by = {}
    for path in paths:
        with open(path, newline='') as f:
            for r in csv.DictReader(f):
                if r['policy'] == 'oracle':
                    continue
                key = (float(r['bandwidth_mbps']), float(r['deadline_ms']), r['policy'])
                by.setdefault(key, []).append(r)
    return by


def _configs(rs, lens) -> tuple:
    """Return ({exit/split: frames} over ``rs``, frames sent from a mid-network cut)."""
    configs, mid = {}, 0
    for r in rs:
        for part in (r.get('configs') or '').split(';'):
            if ':' in part:
                c, n = part.rsplit(':', 1)
                configs[c] = configs.get(c, 0) + int(n)
                e, s = (int(v) for v in c.split('/')[:2])
                if 0 < s < lens[e - 1]:
                    mid += int(n)
    return configs, mid


def policy_markdown(by: dict, reps: int, lens) -> str:
    """Return BENCHMARKS' table (section 14): per policy, on-time accuracy and mid-cut frames."""
    cells = sorted({k[:2] for k in by})
    policies = sorted({k[2] for k in by},
                      key=lambda p: (POLICY_ORDER.index(p) if p in POLICY_ORDER
                                     else len(POLICY_ORDER), p))
    out = [f'| policy | mean on-time accuracy, {len(cells)} cells × {reps} repetitions '
           '| frames sent from a mid-network cut |', '|---|---|---|']
    for p in policies:
        means = [statistics.fmean(float(r['on_time_accuracy']) for r in by[(bw, dl, p)])
                 for bw, dl in cells if (bw, dl, p) in by]
        mid = sum(_configs(by[k], lens)[1] for k in by if k[2] == p)
        out.append(f'| {p} | {statistics.fmean(means):.3f} | '
                   f'{"–" if p in FIXED else mid} |')
    return '\n'.join(out)


def main() -> None:
    """Read the repetitions, print the tables, write the plot."""
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument('--reps', type=Path, nargs='+', required=True, help='sweep CSVs')
    ap.add_argument('--plot', type=Path, default=None, help='PNG to write')
    ap.add_argument('--branch-lens', default=','.join(map(str, BRANCH_LENS)),
                    help='layers per exit (split = this: device-only), for marking mid cuts')
    args = ap.parse_args()
    lens = [int(v) for v in args.branch_lens.split(',')]
    by = read_reps(args.reps)
    cells = sorted({k[:2] for k in by})
    policies = list(dict.fromkeys(k[2] for k in sorted(by, key=lambda k: k[2])))
    print(f'{len(args.reps)} repetitions; on-time accuracy = top-1 of the exit x share of frames '
          'within the deadline')
    print('| Mbit/s | deadline ms | policy | on-time acc. mean (min-max) | met | configs '
          '(exit/split: frames) |')
    print('|---|---|---|---|---|---|')
    means = {}
    mid_frames = 0
    for bw, dl in cells:
        for p in policies:
            rs = by.get((bw, dl, p), [])
            if not rs:
                continue
            acc = [float(r['on_time_accuracy']) for r in rs]
            met = [float(r['deadline_met']) for r in rs]
            configs, mid = _configs(rs, lens)
            mid_frames += mid
            means[(bw, dl, p)] = (statistics.fmean(acc), min(acc), max(acc))
            print(f'| {bw:g} | {dl:g} | {p} | {statistics.fmean(acc):.3f} ({min(acc):.3f}-'
                  f'{max(acc):.3f}) | {statistics.fmean(met):.2f} | '
                  + ', '.join(f'{c}: {n}' for c, n in sorted(configs.items())) + ' |')
    print()
    for p in policies:
        vals = [means[(bw, dl, p)][0] for bw, dl in cells if (bw, dl, p) in means]
        print(f'{p}: mean on-time accuracy over {len(vals)} cells {statistics.fmean(vals):.3f}')
    print(f'frames sent from a mid-network cut (0 < split < branch length): {mid_frames}')
    print()
    print(policy_markdown(by, len(args.reps), lens))
    if args.plot:
        plot(cells, policies, means, args.plot)


def plot(cells, policies, means, path: Path) -> None:
    """Draw grouped bars: mean on-time accuracy per cell and policy, whiskers = min-max."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(cells)), 3.6))
    w = 0.8 / len(policies)
    for j, p in enumerate(policies):
        xs, ys, lo, hi = [], [], [], []
        for i, c in enumerate(cells):
            if (c[0], c[1], p) in means:
                m, a, b = means[(c[0], c[1], p)]
                xs.append(i + j * w)
                ys.append(m)
                lo.append(m - a)
                hi.append(b - m)
        ax.bar(xs, ys, w, yerr=[lo, hi], capsize=2, label=p)
    ax.set_xticks([i + 0.4 - w / 2 for i in range(len(cells))])
    ax.set_xticklabels([f'{bw:g} Mbit/s\n{dl:g} ms' for bw, dl in cells], fontsize=8)
    ax.set_ylabel('on-time accuracy')
    ax.legend(fontsize=7, ncol=len(policies))
    ax.grid(True, axis='y', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
