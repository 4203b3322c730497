"""
Where does cutting a network pay? Bytes and measured block times per cut, per model (issue 16).

For each model description: its layer table (``edgent-ros import``) and its blocks timed on both
hosts (``edgent-ros profile --model``: robot = 1 thread in a cgroup v1 CPU quota of 0.25 CPU,
edge = 2 threads, batch 1), then over a bandwidth grid the fastest split of the final exit
(``partition-only``, the Neurosurgeon choice: Edgent's when the deadline is loose) against
edge-only (the uint8 frame crosses) and device-only, with fp32 and int8 activations. Writes
``bench/results/cut_analysis.csv`` (one row per model, element size, bandwidth) and
``cut_analysis.png`` (latency vs bandwidth per model; where a mid-network cut is fastest) and
prints the bandwidth range where a mid cut wins and by how much (then BENCHMARKS' table,
``markdown``; ``--report`` prints only that, from the CSV).

``python bench/cut_analysis.py [--profile] [--models A.yaml ...]``: ``--profile`` (re)measures
the block times (root for the cgroup; a few minutes per model), else the files beside each
description are used. The ResNet-18 and MobileNetV2 of examples/models have random weights:
only bytes and times are meaningful for them (their descriptions are written under
bench/results/models/).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
from pathlib import Path
import subprocess
import sys

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgent_ros.core.model_desc import load_description  # noqa: E402
from edgent_ros.core.model_plan import (load_block_latency, load_table,  # noqa: E402
                                        problem_for)
from edgent_ros.core.arch import layer_table  # noqa: E402
from edgent_ros.core.optimizer import decide_policy, evaluate  # noqa: E402

RESULTS = ROOT / 'bench' / 'results'
MODELS_DIR = RESULTS / 'models'
SHIPPED = [ROOT / 'edgent_ros' / 'artifacts' / 'alexnet5.model.yaml',
           ROOT / 'edgent_ros' / 'artifacts' / 'resnet64.model.yaml']
EXAMPLES = [('resnet18', 'resnet18.py:resnet18'), ('mobilenet_v2', 'mobilenet_v2.py:mobilenet_v2')]
BANDWIDTHS_MBPS = [round(10 ** (k / 8), 4) for k in range(-12, 18)]   # 0.03 .. 100 Mbit/s


def cli(*args: str) -> None:
    """Run ``edgent-ros`` from this checkout with progress on stderr."""
    cmd = [sys.executable, '-m', 'edgent_ros.cli', *args]
    print('$', ' '.join(cmd[2:]), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, 'PYTHONPATH': str(ROOT)})


def example_descriptions() -> list:
    """Describe the examples/models networks (random weights) under bench/results/models."""
    out = []
    for name, factory in EXAMPLES:
        path = MODELS_DIR / f'{name}.yaml'
        if not (MODELS_DIR / f'{name}.table.json').is_file():
            MODELS_DIR.mkdir(parents=True, exist_ok=True)
            # relative to the description: the checkout can live anywhere
            cli('import', str(path), '--factory', f'../../../examples/models/{factory}',
                '--input', '3,224,224', '--classes', '1000', '--name', name)
        out.append(path)
    return out


def main() -> int:
    """Profile (optionally), analyse every model, write CSV and PNG."""
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument('--models', type=Path, nargs='*', default=None,
                    help='descriptions (default: the shipped AlexNet and ResNet-64 and the '
                         'examples ResNet-18 and MobileNetV2)')
    ap.add_argument('--profile', action='store_true', help='measure the block times first')
    ap.add_argument('--repeats', type=int, default=5, help='profile repeats per block')
    ap.add_argument('--out', type=Path, default=RESULTS / 'cut_analysis.csv')
    ap.add_argument('--report', action='store_true',
                    help='analyse nothing: print the table of --out')
    args = ap.parse_args()
    if args.report:
        with open(args.out, newline='') as f:
            print(markdown(list(csv.DictReader(f))))
        return 0
    models = args.models or SHIPPED + example_descriptions()
    rows = []
    for path in models:
        desc = load_description(path)
        if not desc.architecture and (args.profile or not desc.derived('.latency.json').is_file()):
            for host in ('edge', 'robot'):
                cli('profile', '--model', str(path), '--host', host, '--repeats',
                    str(args.repeats))
        rows += analyse(path)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    summarize(rows)
    print(markdown(rows))
    plot(rows, args.out.with_suffix('.png'))
    return 0


def analyse(path: Path) -> list:
    """Rows of the bandwidth grid for one model, fp32 and int8 activations."""
    desc = load_description(path)
    rows = []
    for bpe, label in ((4.0, 'fp32'), (1.0, 'int8')):
        table, p = problem(desc, bpe)
        final = max(p.exits)
        layers = next(x for x in table['exits'] if x['exit'] == final)['layers']
        n = p.branch_len(final)
        for bw in BANDWIDTHS_MBPS:
            best = decide_policy(p, 'partition-only', bw * 1e6, math.inf)
            edge = evaluate(p, bw * 1e6, final, 0)      # the final exit, whole on one side
            dev = evaluate(p, bw * 1e6, final, n)
            s = best.split_index
            rows.append({
                'model': desc.name, 'model_id': table['model_id'], 'elements': label,
                'bandwidth_mbps': bw, 'best_split': s, 'blocks': n,
                'cut_after': layers[s - 1]['name'] if 0 < s < n else '',
                'mid_cut': int(0 < s < n), 'payload_bytes': p.split_bytes[final][s],
                'frame_bytes': table['frame_bytes'],
                'best_ms': round(best.total_ms, 3), 'edge_only_ms': round(edge.total_ms, 3),
                'device_only_ms': round(dev.total_ms, 3),
                'gain': round(min(edge.total_ms, dev.total_ms) / best.total_ms, 4),
                'robot_ms_total': round(sum(p.robot_ms[final]), 3),
                'edge_ms_total': round(sum(p.edge_ms[final]), 3)})
    return rows


def problem(desc, bytes_per_element: float):
    """Return (layer table, problem): the AlexNet from its shipped per-kind latency models."""
    if desc.architecture == 'alexnet5':
        from edgent_ros.core.artifacts import load_accuracy, read_config
        from edgent_ros.core.latency import LatencyModels
        from edgent_ros.core.optimizer import EdgentProblem
        cfg = read_config()
        acc = load_accuracy(model_id=cfg.model_id())
        p = EdgentProblem.from_model(cfg, acc, LatencyModels.load(model_id=cfg.model_id()),
                                     overhead_ms=1.0, bytes_per_element=bytes_per_element)
        layers = {e: [{'name': r.name} for r in layer_table(cfg, e)] for e in p.exits}
        table = {'model_id': cfg.model_id(), 'frame_bytes': 3072,
                 'exits': [{'exit': e, 'layers': layers[e]} for e in p.exits]}
        return table, p
    table = load_table(desc.derived('.table.json'))
    latency = load_block_latency(desc.derived('.latency.json'), table['model_id'])
    acc = {x['exit']: 1.0 for x in table['exits']}     # partition-only: the final exit only
    return table, problem_for(table, latency, acc, overhead_ms=1.0,
                              bytes_per_element=bytes_per_element)


def summarize(rows: list) -> None:
    """Print, per model and element size, where a mid cut wins and its best gain."""
    print('| model | elements | robot ms | edge ms | frame B | mid cut fastest at (Mbit/s) | '
          'best gain (x) at | cut |')
    print('|---|---|---|---|---|---|---|---|')
    keys = sorted({(r['model'], r['elements']) for r in rows}, key=lambda k: (k[0], k[1]))
    for m, e in keys:
        rs = [r for r in rows if r['model'] == m and r['elements'] == e]
        mids = [r for r in rs if r['mid_cut']]
        if mids:
            lo, hi = min(r['bandwidth_mbps'] for r in mids), max(r['bandwidth_mbps']
                                                                 for r in mids)
            top = max(mids, key=lambda r: r['gain'])
            where = f'{lo:g}-{hi:g}'
            gain = f'{top["gain"]:.2f} at {top["bandwidth_mbps"]:g}'
            cut = f'{top["cut_after"]} ({top["payload_bytes"]} B)'
        else:
            where, gain, cut = 'never', '-', '-'
        print(f'| {m} | {e} | {rs[0]["robot_ms_total"]:.1f} | {rs[0]["edge_ms_total"]:.1f} | '
              f'{rs[0]["frame_bytes"]} | {where} | {gain} | {cut} |')


def _short(x: float) -> str:
    """Format ms or KB: whole units from 20 up, one decimal below."""
    return f'{x:.0f}' if x >= 20 else f'{x:.1f}'


def markdown(rows: list) -> str:
    """
    Return BENCHMARKS' table (section 14) of the CSV rows: per model, where a mid cut is fastest.

    One row per model (in the CSV's order), fp32 and int8 columns: ``never``, or the bandwidths
    where the fastest split of the final exit is mid-network, its cut and its best gain over the
    better of edge-only and device-only.
    """
    out = ['| model | robot / edge ms (whole model) | frame (uint8) | fp32: a mid cut is fastest '
           '| int8: a mid cut is fastest |', '|---|---|---|---|---|']
    for m in dict.fromkeys(r['model'] for r in rows):
        rs = [r for r in rows if r['model'] == m]
        frame = int(rs[0]['frame_bytes'])
        side = math.isqrt(frame // 3)
        line = (f'| {m} ({side}×{side}) | {_short(float(rs[0]["robot_ms_total"]))} / '
                f'{_short(float(rs[0]["edge_ms_total"]))} | {frame:,} B |')
        for e in ('fp32', 'int8'):
            mids = [r for r in rs if r['elements'] == e and int(r['mid_cut'])]
            if not mids:
                line += ' never |'
                continue
            bws = [float(r['bandwidth_mbps']) for r in mids]
            top = max(mids, key=lambda r: float(r['gain']))
            cut = f'after {top["cut_after"]} ({_short(int(top["payload_bytes"]) / 1000)} KB)'
            if len(mids) == 1:
                line += f' at {bws[0]:.1f} Mbit/s only: {cut}, {float(top["gain"]):.2f}× faster |'
            else:
                line += (f' {min(bws):.1f}–{max(bws):.1f} Mbit/s: {cut}, up to '
                         f'{float(top["gain"]):.2f}× faster '
                         f'({float(top["bandwidth_mbps"]):.2g} Mbit/s) |')
        out.append(line)
    return '\n'.join(out)


def plot(rows: list, path: Path) -> None:
    """Latency vs bandwidth per model: edge-only, device-only, best split (mid cuts marked)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    models = list(dict.fromkeys(r['model'] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.8), squeeze=False)
    for ax, m in zip(axes[0], models):
        for e, style in (('fp32', '-'), ('int8', '--')):
            rs = [r for r in rows if r['model'] == m and r['elements'] == e]
            bw = [r['bandwidth_mbps'] for r in rs]
            if e == 'fp32':
                ax.plot(bw, [r['edge_only_ms'] for r in rs], 'k:', label='edge-only (frame)')
                ax.plot(bw, [r['device_only_ms'] for r in rs], 'g-', label='device-only')
            ax.plot(bw, [r['best_ms'] for r in rs], 'b' + style, label=f'best split ({e})')
            mid = [r for r in rs if r['mid_cut']]
            ax.scatter([r['bandwidth_mbps'] for r in mid], [r['best_ms'] for r in mid],
                       c='r', s=14, zorder=3, label='mid-network cut' if e == 'fp32' else None)
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_title(m, fontsize=10)
        ax.set_xlabel('uplink Mbit/s')
        ax.grid(True, which='both', alpha=0.3)
    axes[0][0].set_ylabel('predicted latency, ms (measured block times)')
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f'wrote {path}', file=sys.stderr)


if __name__ == '__main__':
    sys.exit(main())
