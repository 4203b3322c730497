"""
Render a model's learned-bottleneck table (BENCHMARKS §12b) from its accuracy JSON.

``python bench/bottleneck_table.py edgent_ros/artifacts/resnet64.accuracy.json`` prints, per
(split, bn<c>): the bytes sent, how many times fewer than the JPEG frame (q90, at the model's
input size), top-1 per exit with the same exit uncut and the points lost, and the encode / decode
ms, as ``edgent-ros train-bottleneck --model`` measured them on the test images. Then one line
per exit: the best bottleneck that meets the issue's target (>= 4x fewer bytes than the JPEG
frame, <= 1 point lost against the same exit uncut), or that none does.
"""

import argparse
import json
from pathlib import Path


def _points(loss: float) -> str:
    """Points lost as the §12 table writes them: −0.39 lost, +0.06 gained."""
    return f'−{loss:.2f}' if loss > 0 else f'+{-loss:.2f}'


def markdown(body: dict) -> str:
    """Return the table and the target lines for an accuracy JSON's ``bottlenecks`` section."""
    sec = body['bottlenecks']
    from edgent_ros.offline.bottleneck_training import bytes_vs_jpeg
    jpeg = bytes_vs_jpeg(body)
    out = [f'JPEG frame (q90, at the input size of {body["model_id"]}): {jpeg:,.0f} B, mean '
           f'over the sampled test frames; top-1 on {sec["images"]:,} test images.', '',
           '| split | encoding (maps sent) | bytes | vs JPEG | top-1 % per exit (uncut, lost) '
           '| encode / decode ms |', '|---|---|---|---|---|---|']
    best = {}
    for spec in sorted(sec['specs'], key=lambda s: (s['split'], s['channels'])):
        cfgs = sorted((c for c in sec['configs']
                       if c['split'] == spec['split'] and c['name'] == spec['name']),
                      key=lambda c: c['exit'])
        per_exit = ', '.join(f'{c["exit"]}: {100 * c["top1"]:.2f} ({100 * c["uncut_top1"]:.2f}, '
                             f'{_points(c["loss_points"])})' for c in cfgs)
        shape = '×'.join(str(d) for d in spec['wire_shape'][1:])
        stride = f', stride {spec["stride"]}' if spec['stride'] > 1 else ''
        ratio = jpeg / spec['nbytes']
        out.append(f'| {spec["split"]} | {spec["name"]} ({shape}{stride}) | {spec["nbytes"]:,} | '
                   f'{ratio:.1f}× fewer | {per_exit} | {spec["encode_ms"]:.2f} / '
                   f'{spec["decode_ms"]:.2f} |')
        for c in cfgs:
            if ratio >= 4 and c['loss_points'] <= 1.0:
                key = c['exit']
                if key not in best or c['split'] < best[key][0]['split']:
                    best[key] = (c, ratio)
    out.append('')
    exits = sorted({c['exit'] for c in sec['configs']})
    for e in exits:
        if e in best:
            c, ratio = best[e]
            out.append(f'- exit {e}: target met at split {c["split"]} ({c["name"]}, '
                       f'{c["bytes"]} B, {ratio:.1f}× fewer than the JPEG frame, '
                       f'{c["loss_points"]:.2f} points lost)')
        else:
            out.append(f'- exit {e}: target not met at any cut')
    return '\n'.join(out)


def decisions(desc: str, robot_scale: float, bandwidths_mbps, deadlines_ms) -> list:
    """
    Return the static planner's choice per cell with and without the bottlenecks.

    Rows ``(Mbit/s, deadline, enc, bn)``: the Edgent decisions (``core.optimizer.decide``) of
    ``edgent+enc`` (the model's measured frame encodings) and ``edgent+bn`` (the same plus its
    bottlenecks), for described model ``desc`` with its robot ``robot_scale`` x the profiled one
    (the sweep's planner model before any calibration: ``sweep_session.planner_problem``).
    The live sweep's cells are the rows where the two differ: chosen by this rule before the
    run, not by its results.
    """
    from edgent_ros.evaluation.sweep import policy_encodings
    from edgent_ros.evaluation.sweep_session import planner_problem
    from edgent_ros.core.optimizer import decide
    out = []
    problems = {p: planner_problem(robot_scale, policy_encodings(p, desc), model=desc)[1]
                for p in ('edgent+enc', 'edgent+bn')}
    for bw in bandwidths_mbps:
        for dl in deadlines_ms:
            enc, bn = (decide(problems[p], bw * 1e6, dl) for p in ('edgent+enc', 'edgent+bn'))
            out.append((bw, dl, enc, bn))
    return out


def _name(d) -> str:
    where = f'{d.exit_index}/{d.split_index}' + (f'/{d.encoding}' if d.encoding != 'raw' else '')
    return f'{where} ({d.total_ms:.0f} ms{"" if d.feasible else ", infeasible"})'


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument('accuracy', type=Path, help="a model's accuracy JSON with bottlenecks")
    ap.add_argument('--window', metavar='DESC', default=None,
                    help='also print the static planner\'s edgent+enc / edgent+bn choices of '
                         'model DESC on the --bandwidths x --deadlines grid')
    ap.add_argument('--robot-scale', type=float, default=10.0)
    ap.add_argument('--bandwidths', type=float, nargs='+', default=[0.05, 0.1, 0.2, 0.3])
    ap.add_argument('--deadlines', type=float, nargs='+', default=[60, 80, 100, 120])
    args = ap.parse_args()
    print(markdown(json.loads(args.accuracy.read_text())))
    if args.window:
        print('\n| Mbit/s | deadline ms | edgent+enc | edgent+bn |\n|---|---|---|---|')
        for bw, dl, enc, bn in decisions(args.window, args.robot_scale, args.bandwidths,
                                         args.deadlines):
            mark = ' **' if enc.key != bn.key else ''
            print(f'| {bw:g} | {dl:g} | {_name(enc)} | {_name(bn)}{mark} |')


if __name__ == '__main__':
    main()
