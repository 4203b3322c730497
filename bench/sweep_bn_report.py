"""
Report the edgent+bn sweep (issue 21 item 5): table per cell and a bar plot.

Reads ``bench/results/sweep_bn.csv`` (``edgent-ros sweep run --policies exit-only edgent+enc
edgent+bn --out bench/results/sweep_bn.csv``) and its ``_frames.csv``; prints a markdown table
(on-time accuracy, deadline met, configurations, the planner's prediction) and writes
``bench/results/sweep_bn.png``.
"""

import argparse
import csv
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / 'results'
POLICIES = ('exit-only', 'edgent+enc', 'edgent+bn', 'oracle')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument('--csv', type=Path, default=RESULTS / 'sweep_bn.csv', help='sweep results')
    ap.add_argument('--plot', type=Path, default=RESULTS / 'sweep_bn.png', help='PNG to write')
    args = ap.parse_args()
    rows = list(csv.DictReader(open(args.csv)))
    frames_csv = args.csv.with_name(args.csv.stem + '_frames.csv')
    planner = {}
    if frames_csv.exists():
        for f in csv.DictReader(open(frames_csv)):
            planner.setdefault((f['policy'], f['bandwidth_mbps'], f['deadline_ms']),
                               []).append(float(f['planner_ms'] or 'nan'))
    cells = sorted({(float(r['bandwidth_mbps']), float(r['deadline_ms'])) for r in rows})
    by = {(r['policy'], float(r['bandwidth_mbps']), float(r['deadline_ms'])): r for r in rows}
    print('| Mbit/s | deadline | policy | frames | met | on-time acc. | configs (frames) '
          '| planner ms (median) |')
    print('|---|---|---|---|---|---|---|---|')
    for bw, dl in cells:
        for p in POLICIES:
            r = by.get((p, bw, dl))
            if r is None:
                continue
            pm = sorted(planner.get((p, r['bandwidth_mbps'], r['deadline_ms']), []))
            pms = f'{pm[len(pm) // 2]:.0f}' if pm else '-'
            print(f"| {bw:g} | {dl:g} | {p} | {r['frames']} | {float(r['deadline_met']):.0%} "
                  f"| {100 * float(r['on_time_accuracy']):.1f} | {r['configs']} | {pms} |")
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.2
    for k, p in enumerate(POLICIES):
        ys = [100 * float(by[(p, bw, dl)]['on_time_accuracy']) if (p, bw, dl) in by else 0.0
              for bw, dl in cells]
        ax.bar([i + (k - 1.5) * width for i in range(len(cells))], ys, width, label=p)
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels([f'{bw:g} Mbit/s\n{dl:g} ms' for bw, dl in cells])
    ax.set_ylabel('on-time accuracy (%)')
    ax.set_title('edgent+bn vs edgent+enc vs exit-only (robot x60, 20 frames per cell)')
    ax.legend(fontsize=8, ncol=4, loc='lower right')
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)
    print(f'wrote {args.plot}')


if __name__ == '__main__':
    main()
