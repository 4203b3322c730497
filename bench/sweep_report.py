"""
Print the Markdown tables of BENCHMARKS.md §7-8 from the sweep and trace results.

``python bench/sweep_report.py [--results bench/results]``: reads ``sweep.csv``,
``sweep_frames.csv`` and ``traces.csv`` (written by ``edgent-ros sweep run`` / ``traces``) and
prints: per deadline, each policy's correct-and-on-time rate with its configuration; a summary
per policy; the issue's target check; latency-prediction errors; the trace-replay table.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import statistics
import sys

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _prediction_error(frames, key: str):
    """Return (frames, MAPE, median predicted/measured) of the prediction ``key``."""
    fs = [f for f in frames if f.get(key) is not None]
    if not fs:
        return 0, float('nan'), float('nan')
    ratios = [float(f[key]) / float(f['e2e_ms']) for f in fs]
    return len(fs), statistics.fmean(abs(r - 1.0) for r in ratios), statistics.median(ratios)


def main(argv=None) -> int:
    """Print the report tables."""
    from edgent_ros.evaluation.sweep import (check_targets, encoding_gain, markdown_table,
                                             read_rows, summary_markdown, trace_markdown)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument('--results', type=Path, default=ROOT / 'bench' / 'results')
    args = p.parse_args(argv)
    rows = read_rows(args.results / 'sweep.csv')
    deadlines = sorted({float(r['deadline_ms']) for r in rows})
    print('### Correct and on time (%), (exit/split) most used, per deadline\n')
    for dl in deadlines:
        print(f'**Deadline {dl:g} ms**\n')
        print(markdown_table(rows, dl, 'useful'))
    print('### Summary over all cells\n')
    print(summary_markdown(rows), end='')
    res = check_targets(rows)
    print('\n### Targets\n')
    print(f'- Edgent meets the deadline on >= 99 % of frames in '
          f'{res["edgent_meets_where_oracle"]} of the {res["oracle_meets"]} cells where the '
          f'oracle does; misses: {res["deadline_fail"]}')
    print(f'- Edgent accuracy (exits used) >= every baseline that meets the deadline in '
          f'{res["acc_ge_baselines"]} of {res["cells"]} cells; exceptions: {res["acc_fail"]}')
    print(f'- within 1 point of the oracle in {res["within_1pt_oracle"]} of {res["cells"]} '
          f'cells; exceptions: {res["oracle_fail"]}')
    res = check_targets(rows, acc_key='on_time_accuracy', only_meeting=False)
    print(f'- on-time accuracy: Edgent >= every baseline in {res["acc_ge_baselines"]} of '
          f'{res["cells"]} cells; exceptions: {res["acc_fail"]}; within 1 point of the oracle '
          f'in {res["within_1pt_oracle"]}; exceptions: {res["oracle_fail"]}')
    gain = encoding_gain(rows)
    if gain['cells']:
        print(f'- issue 9: edgent+enc meets the deadline on >= 99 % in '
              f'{gain["edgent+enc_meets"]} of {gain["cells"]} cells, edgent in '
              f'{gain["edgent_meets"]}; only edgent+enc: {gain["only_edgent+enc"]}; only '
              f'edgent: {gain["only_edgent"]}; mean on-time accuracy '
              f'{100 * (gain["edgent+enc_on_time_accuracy"] or 0):.1f} % vs '
              f'{100 * (gain["edgent_on_time_accuracy"] or 0):.1f} %')
    print('\n### On-time accuracy (%), per deadline\n')
    for dl in deadlines:
        print(f'**Deadline {dl:g} ms**\n')
        print(markdown_table(rows, dl, 'on_time_accuracy'))
    frames_csv = args.results / 'sweep_frames.csv'
    if frames_csv.exists():
        fr = [f for f in read_rows(frames_csv) if f['e2e_ms'] is not None
              and f['predicted_ms'] is not None and f['policy'] != 'oracle']
        print('\n### Latency prediction (end-to-end, every classified frame of the live '
              'policies)\n')
        print('| frames finished on | frames | static model at the true bandwidth: MAPE | '
              'median predicted/measured | frames | planner (estimate, calibrated): MAPE | '
              'median predicted/measured |')
        print('|---|---|---|---|---|---|---|')
        for where in ('device', 'edge', None):
            fs = [f for f in fr if where is None or f['where'] == where]
            if not fs:
                continue
            cells = [_prediction_error(fs, key) for key in ('predicted_ms', 'planner_ms')]
            print(f'| {where or "all"} | ' + ' | '.join(
                f'{n} | {100 * mape:.1f} % | {ratio:.2f}' for n, mape, ratio in cells) + ' |')
    traces_csv = args.results / 'traces.csv'
    if traces_csv.exists():
        tr = read_rows(traces_csv)
        print('\n### Trace replays\n')
        print(trace_markdown(tr), end='')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
