"""
Report the edgent+bn sweep (issue 21 item 5): table per cell and a bar plot.

Reads ``bench/results/sweep_bn.csv`` (``edgent-ros sweep run --policies exit-only edgent+enc
edgent+bn --out bench/results/sweep_bn.csv``) and its ``_frames.csv``; prints a markdown table
(on-time accuracy, deadline met, configurations, the planner's prediction) and writes
``bench/results/sweep_bn.png``. ``--reps A.csv B.csv ...``: repetitions of the same cells; prints
the mean (min-max) per cell and policy, the mean over the cells and the bottleneck frames, and
plots the means with their range.
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
    ap.add_argument('--reps', type=Path, nargs='+', default=None,
                    help='repetitions of the same cells (CSV files): report means and ranges')
    args = ap.parse_args()
    if args.reps:
        return report_reps(args.reps, args.plot)
    rows = read_csv(args.csv)
    frames_csv = args.csv.with_name(args.csv.stem + '_frames.csv')
    print(cells_markdown(rows, read_csv(frames_csv) if frames_csv.exists() else []))
    cells = sorted({(float(r['bandwidth_mbps']), float(r['deadline_ms'])) for r in rows})
    by = {(r['policy'], float(r['bandwidth_mbps']), float(r['deadline_ms'])): r for r in rows}
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


def read_csv(path: Path) -> list:
    """Return the rows of the CSV file ``path``."""
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def cells_markdown(rows: list, frame_rows: list) -> str:
    """
    Return BENCHMARKS' table of one sweep (section 12): one row per cell and policy.

    ``frame_rows`` (the sweep's ``_frames.csv``) give the planner's median prediction.
    """
    planner = {}
    for f in frame_rows:
        planner.setdefault((f['policy'], f['bandwidth_mbps'], f['deadline_ms']),
                           []).append(float(f['planner_ms'] or 'nan'))
    cells = sorted({(float(r['bandwidth_mbps']), float(r['deadline_ms'])) for r in rows})
    by = {(r['policy'], float(r['bandwidth_mbps']), float(r['deadline_ms'])): r for r in rows}
    out = ['| Mbit/s | deadline | policy | frames | met | on-time acc. | configs (frames) '
           '| planner ms (median) |', '|---|---|---|---|---|---|---|---|']
    for bw, dl in cells:
        for p in POLICIES:
            r = by.get((p, bw, dl))
            if r is None:
                continue
            pm = sorted(planner.get((p, r['bandwidth_mbps'], r['deadline_ms']), []))
            pms = f'{pm[len(pm) // 2]:.0f}' if pm else '-'
            acc = 100 * float(r['on_time_accuracy'])
            out.append(f"| {bw:g} | {dl:g} | {p} | {r['frames']} | "
                       f"{float(r['deadline_met']):.0%} | {acc:.1f} | {r['configs']} | {pms} |")
    return '\n'.join(out)


def _rep_values(reps: list) -> tuple:
    """Return (on-time accuracy %, met %, bottleneck frames) per (Mbit/s, deadline, policy)."""
    vals, met, bn = {}, {}, {}
    for rows, frame_rows in reps:
        for r in rows:
            if r['policy'] not in POLICIES[:3]:
                continue
            key = (float(r['bandwidth_mbps']), float(r['deadline_ms']), r['policy'])
            vals.setdefault(key, []).append(100 * float(r['on_time_accuracy']))
            met.setdefault(key, []).append(100 * float(r['deadline_met']))
        for f in frame_rows:
            if f['encoding'].startswith('bn'):
                key = (float(f['bandwidth_mbps']), float(f['deadline_ms']), f['policy'])
                bn[key] = bn.get(key, 0) + 1
    return vals, met, bn


def reps_markdown(reps: list) -> str:
    """
    Return BENCHMARKS' table of repeated sweeps (section 12) and the mean per policy.

    ``reps``: one (rows, frame rows) pair per repetition; per cell and policy the mean
    (min-max) on-time accuracy and the mean deadline met, then one line per policy.
    """
    vals, met, bn = _rep_values(reps)
    cells = sorted({k[:2] for k in vals})
    n = len(reps)
    head = ' | '.join(f'{p}: on-time acc. / met' for p in POLICIES[:3])
    out = [f'| Mbit/s | deadline | {head} | bn frames (edgent+bn) |', '|---|---|' + '---|' * 4]
    for bw, dl in cells:
        parts = []
        for p in POLICIES[:3]:
            v, m = vals.get((bw, dl, p), []), met.get((bw, dl, p), [])
            parts.append(f'{sum(v) / len(v):.1f} ({min(v):.0f}-{max(v):.0f}) / '
                         f'{sum(m) / len(m):.0f} %' if v else '-')
        out.append(f'| {bw:g} | {dl:g} | ' + ' | '.join(parts)
                   + f' | {bn.get((bw, dl, "edgent+bn"), 0)} of {20 * n} |')
    for p in POLICIES[:3]:
        allv = [sum(vals[(bw, dl, p)]) / len(vals[(bw, dl, p)]) for bw, dl in cells
                if (bw, dl, p) in vals]
        out.append(f'- {p}: mean on-time accuracy over the {len(allv)} cells '
                   f'{sum(allv) / len(allv):.1f} % ({n} repetitions)')
    return '\n'.join(out)


def report_reps(paths, plot: Path) -> None:
    """Mean (min-max) on-time accuracy and deadline met per cell and policy over repetitions."""
    reps = [(read_csv(path), read_csv(path.with_name(path.stem + '_frames.csv')))
            for path in paths]
    print(reps_markdown(reps))
    vals = _rep_values(reps)[0]
    cells = sorted({k[:2] for k in vals})
    n = len(paths)
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.25
    for k, p in enumerate(POLICIES[:3]):
        xs = [i + (k - 1) * width for i in range(len(cells))]
        v = [vals.get((bw, dl, p), [0.0]) for bw, dl in cells]
        mean = [sum(x) / len(x) for x in v]
        err = [[m - min(x) for m, x in zip(mean, v)], [max(x) - m for m, x in zip(mean, v)]]
        ax.bar(xs, mean, width, yerr=err, capsize=3, label=p)
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels([f'{bw:g} Mbit/s\n{dl:g} ms' for bw, dl in cells])
    ax.set_ylabel('on-time accuracy (%)')
    ax.set_title(f'robot x60, 20 frames per cell, {n} repetitions (bars: mean, lines: range)')
    ax.legend(fontsize=8, ncol=3, loc='lower right')
    fig.tight_layout()
    fig.savefig(plot, dpi=110)
    print(f'wrote {plot}')


if __name__ == '__main__':
    main()
