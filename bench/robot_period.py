#!/usr/bin/env python3
"""
The emulated robot's frame times by CFS period and pacing (issue 18, item 6).

Reads the device-only frames of committed ``sweep calibrate-robot`` runs (every exit, 75 frames
each, in 3 interleaved rounds; ``robot_calibration_frames.csv``) and, per run, the robot time's
spread around each exit's median: the MAPE of that median (what no static model of the robot
can beat on these frames), the same over the first fifth of the frames as they ran and over
the rest, the share of frames over 1.2x it, p90/p10 and how far apart its rounds measured the
exits (``round_spread``); a warm-up's frames, and the attempts before the last, are left out.
The period and the emulation's pacing of each run are the ones its ``robot_calibration.json``
records (none recorded: 100 ms, ``add``; ``evaluation.emulated_camera``). No root, no testbed:
the runs are the documented commands of BENCHMARKS §16. Writes
``bench/results/robot_period.json`` and ``.png`` and prints the table BENCHMARKS quotes.

    python bench/robot_period.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import statistics
import sys
from typing import Dict, List, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgent_ros.evaluation.paired_session import (calibration_attempt,  # noqa: E402
                                                  recorded_pacing, recorded_period_us,
                                                  round_spread)
from edgent_ros.evaluation.sweep import OK, read_rows  # noqa: E402
from edgent_ros.evaluation.testbed import DEFAULT_ROBOT_PERIOD_US  # noqa: E402

RUNS = ('alexnet_blocks', 'alexnet_blocks_seed1', 'alexnet_blocks_p10', 'alexnet_blocks_p10_seed1',
        'resnet64_bn_blocks', 'resnet64_bn_blocks_seed1', 'resnet64_bn_blocks_p10',
        'resnet64_bn_blocks_p10_seed1', 'alexnet_p10_total',
        'resnet64_bn_total', 'resnet64_bn_total_seed1', 'resnet64_bn_encoders',
        'resnet64_bn_encoders_seed1', 'pacing_ab/resnet64_add_1',
        'pacing_ab/resnet64_total_1', 'pacing_ab/resnet64_add_2', 'pacing_ab/resnet64_total_2',
        'warmup_ab/resnet64_plain_1', 'warmup_ab/resnet64_warm_1', 'warmup_ab/resnet64_plain_2',
        'warmup_ab/resnet64_warm_2', 'resnet64_warm', 'resnet64_warm_seed1',
        'resnet64_steady', 'resnet64_steady_seed1', 'resnet64_steady_seed2')
SLOW = 1.2          # a frame over SLOW x its exit's median is in the slow mode


def run_summary(results: Path) -> Dict[str, object]:
    """Return the device-only robot-time spread of the calibration in ``results/paired``."""
    paired = Path(results) / 'paired'
    cal = json.loads((paired / 'robot_calibration.json').read_text())
    every = [r for r in read_rows(paired / 'robot_calibration_frames.csv')
             if r.get('kind') != 'warmup']
    last = calibration_attempt(every)   # the attempt the calibration fitted (--steady-within)
    every = [r for r in every if int(r.get('rep') or 0) == last]
    rows = [r for r in every if r['device_ms'] is not None and r['status'] == OK
            and r['split'] == r['branch_len']]
    lengths = {int(r['exit']): int(r['branch_len']) for r in every}
    apart = round_spread(every, lengths.__getitem__)
    per_exit, ratios, medians = {}, [], {}
    for e in sorted({int(r['exit']) for r in rows}):
        ms = [float(r['device_ms']) for r in rows if int(r['exit']) == e]
        m = medians[e] = statistics.median(ms)
        per_exit[str(e)] = {'frames': len(ms), 'median_ms': round(m, 1),
                            'mape_of_median': round(statistics.mean(abs(x - m) / x for x in ms),
                                                    4)}
        ratios += [x / m for x in ms]
    # the calibration's first fifth of these frames in the order they ran, against the rest
    timed = [float(r['device_ms']) / medians[int(r['exit'])] for r in rows]
    fifth = max(1, len(timed) // 5)
    first, rest = (statistics.mean(abs(x - 1) / x for x in part)
                   for part in (timed[:fifth], timed[fifth:] or timed))
    ratios.sort()
    return {'run': Path(results).name, 'model': cal.get('model') or 'alexnet',
            'warmup_frames': int(cal.get('warmup_frames', 0)),
            'rounds_apart': round(apart, 4), 'attempts': int(cal.get('attempts', 1)),
            'mape_first_fifth': round(first, 4), 'mape_rest': round(rest, 4),
            'period_us': recorded_period_us(cal), 'pacing': recorded_pacing(cal),
            'frames': len(ratios),
            'mape_of_median': round(statistics.mean(abs(r - 1) / r for r in ratios), 4),
            'over_slow': round(sum(r > SLOW for r in ratios) / len(ratios), 4),
            'p90_over_p10': round(ratios[int(0.9 * (len(ratios) - 1))]
                                  / ratios[int(0.1 * (len(ratios) - 1))], 3),
            'per_exit': per_exit, 'ratios': [round(r, 4) for r in ratios]}


def table(runs: Sequence[Dict[str, object]]) -> str:
    """Return the markdown table BENCHMARKS quotes for ``runs`` (``run_summary`` results)."""
    lines = ['| run | model | CFS period | pacing | warm-up | device-only frames | off each '
             f'exit\'s median (MAPE) | first fifth / the rest | frames over {SLOW:g}x it | '
             'p90 / p10 | rounds apart |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for r in runs:
        lines.append(f'| {r["run"]} | {r["model"]} | {r["period_us"] // 1000} ms | {r["pacing"]} '
                     f'| {r["warmup_frames"] or "none"} | {r["frames"]} '
                     f'| {100 * r["mape_of_median"]:.1f} % '
                     f'| {100 * r["mape_first_fifth"]:.1f} / {100 * r["mape_rest"]:.1f} % '
                     f'| {100 * r["over_slow"]:.1f} % | {r["p90_over_p10"]:.2f} '
                     f'| {100 * r["rounds_apart"]:.0f} %'
                     + (f' ({r["attempts"]} attempts)' if r['attempts'] > 1 else '') + ' |')
    return '\n'.join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--root', type=Path, default=ROOT / 'bench' / 'results',
                    help='where the runs are (default %(default)s)')
    ap.add_argument('--runs', nargs='+', default=list(RUNS),
                    help='results folders under bench/results (default: %(default)s)')
    ap.add_argument('--out', type=Path, default=ROOT / 'bench' / 'results' / 'robot_period.json')
    a = ap.parse_args()
    runs: List[Dict[str, object]] = [run_summary(a.root / r) for r in a.runs]
    text = table(runs)
    print(text)
    a.out.write_text(json.dumps({'slow': SLOW, 'table': text, 'runs': [
        {k: v for k, v in r.items() if k != 'ratios'} for r in runs]}, indent=1) + '\n')
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    models = sorted({r['model'] for r in runs})
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.4), squeeze=False)
    bins = [0.7 + 0.02 * i for i in range(56)]
    for ax, model in zip(axes[0], models):
        for r in (x for x in runs if x['model'] == model):
            total = r['pacing'] == 'total'
            ax.hist(r['ratios'], bins=bins, histtype='step', linewidth=2.2 if total else 1.2,
                    linestyle=':' if total else (
                        '-' if r['period_us'] < DEFAULT_ROBOT_PERIOD_US else '--'),
                    label=f'{r["run"]}: {r["period_us"] // 1000} ms, {r["pacing"]}, '
                          f'{100 * r["mape_of_median"]:.1f} %')
        ax.set_xlabel("robot time / its exit's median (device-only)")
        ax.set_ylabel('frames')
        ax.set_title(f'{model}: add at 100 ms (dashed) or 10 ms (solid); total (dotted)',
                     fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(a.out.with_suffix('.png'), dpi=110)
    print(f'wrote {a.out} and {a.out.with_suffix(".png")}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
