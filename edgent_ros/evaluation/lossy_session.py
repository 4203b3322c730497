"""
Edgent on a link that delays and loses packets (issue 20, item 2): ``edgent-ros sweep lossy``.

The testbed with its relay (``Testbed(relay=True)``): the robot's ``tbf`` sets the bandwidth,
the relay adds a one-way delay (both directions) and seeded Bernoulli loss (both directions).
For every bandwidth the nodes start once; then every (delay, loss) cell runs every policy on the
same frames (the camera seeks to frame 0), in an order shuffled per cell with ``seed``, each from
the same start state: the relay's loss process restarted with the cell's seed, the planner's
calibration reset, and ``settle_s`` of the new link before the first frame (longer than the
estimator's 5 s memory, so no estimate from the previous cell is left).

The nodes run with ``config/fastdds_lossy.xml`` (writers' heartbeat every 200 ms: with Fast
DDS's 3 s every lost packet cost seconds). Per cell and policy the row has the sweep's columns
(on time, accuracy, the static model's and the planner's prediction errors, drops by reason)
plus what the link did and what the robot made
of it: the relay's observed loss and hold time per direction, the camera's bandwidth estimate
against the shaped rate (median ratio, share of estimates within 2x), its RTT, and whether every
frame captured in the window has exactly one outcome (``accounted``).
Nothing here imports rclpy (the nodes and the recorder are processes).
"""

from __future__ import annotations

from dataclasses import replace
import json
from pathlib import Path
import random
import statistics
import sys
import time
from typing import Dict, List, Mapping, Sequence

from .paired import mean_ci
from .sweep import (aggregate, append_rows, check_grid, CSV_FIELDS, DEFAULT_ROBOT_SCALE,
                    FRAME_FIELDS, planner_params, read_rows)
from .sweep_session import (_enc_accuracy, _predictor, NodeSession, planner_problem,
                            testbed_run)
from .testbed_session import LOSSY_PROFILE

LOSSY_NAME = 'edlossy'
WARM_FRAMES = 8          # unrecorded frames per policy after the nodes start (cold layers)
LINK_COLUMNS = ('delay_ms', 'loss', 'rep', 'seed', 'accounted', 'est_ratio_p50', 'est_within_2x',
                'estimates', 'rtt_ms_p50', 'relay_loss_up', 'relay_loss_down',
                'relay_hold_up_ms', 'relay_hold_down_ms', 'relay_socket_drops')
LOSSY_FIELDS = CSV_FIELDS + LINK_COLUMNS
LOSSY_FRAME_FIELDS = FRAME_FIELDS + ('delay_ms', 'loss', 'rep')


def lossy_key(policy: str, bandwidth_mbps: float, deadline_ms: float, delay_ms: float,
              loss: float, rep: int) -> tuple:
    """Return the resume key of one cell, repetition and policy."""
    return (policy, f'{float(bandwidth_mbps):g}', f'{float(deadline_ms):g}',
            f'{float(delay_ms):g}', f'{float(loss):g}', int(rep))


def read_lossy_done(path: Path) -> set:
    """Return the keys of the rows already in ``path`` (none when it does not exist)."""
    if not Path(path).exists():
        return set()
    return {lossy_key(r['policy'], r['bandwidth_mbps'], r['deadline_ms'], r['delay_ms'],
                      r['loss'], int(r['rep'])) for r in read_rows(path)}


def check_impairments(delays: Sequence[float], losses: Sequence[float]) -> None:
    """Raise ValueError naming the first delay or loss out of range."""
    if not delays or not losses:
        raise ValueError('a lossy sweep needs at least one delay and one loss')
    for d in delays:
        if not 0 <= float(d) <= 2000:
            raise ValueError(f'delay must be in [0, 2000] ms, got {d}')
    for x in losses:
        if not 0 <= float(x) < 1:
            raise ValueError(f'loss must be in [0, 1), got {x}')


def link_columns(links: Sequence[Mapping[str, object]], true_bps: float) -> Dict[str, object]:
    """Return the estimate's calibration against the shaped rate, from LinkQuality records."""
    est = [float(r['uplink_bandwidth_bps']) for r in links
           if float(r.get('uplink_bandwidth_bps') or 0) > 0]
    rtt = [float(r['rtt_ms']) for r in links if float(r.get('rtt_ms') or -1) >= 0]
    ratios = [e / true_bps for e in est]
    return {
        'estimates': len(est),
        'est_ratio_p50': round(statistics.median(ratios), 4) if ratios else None,
        'est_within_2x': round(sum(0.5 <= x <= 2.0 for x in ratios) / len(ratios), 4)
        if ratios else None,
        'rtt_ms_p50': round(statistics.median(rtt), 2) if rtt else None}


def relay_columns(before: Mapping[str, object], after: Mapping[str, object]
                  ) -> Dict[str, object]:
    """Return the relay's observed loss and median hold per direction over one cell."""
    out: Dict[str, object] = {}
    for d in ('up', 'down'):
        a, b = after[d], before[d]
        lost = a['dropped_loss'] - b['dropped_loss']
        passed = a['forwarded'] - b['forwarded']
        out[f'relay_loss_{d}'] = round(lost / (lost + passed), 4) if lost + passed else None
        out[f'relay_hold_{d}_ms'] = a['hold_ms']['p50']
    out['relay_socket_drops'] = sum(v['drops'] for v in after['socket_stats'].values()) - \
        sum(v['drops'] for v in before['socket_stats'].values())
    return out


def accounted(outcomes: Sequence[Mapping[str, object]]) -> bool:
    """Return True when the window's frames form one run of sequences, each with one outcome."""
    seqs = sorted(int(o['sequence']) for o in outcomes)
    return bool(seqs) and seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def run_lossy(out_dir: Path, bandwidths: Sequence[float], delays: Sequence[float],
              losses: Sequence[float], deadline_ms: float, policies: Sequence[str], frames: int,
              robot_scale: float = DEFAULT_ROBOT_SCALE, seed: int = 0, settle_s: float = 6.0,
              name: str = LOSSY_NAME, fresh: bool = False, reps: int = 3) -> int:
    """
    Run every (bandwidth, delay, loss, repetition, policy) not yet in ``out_dir/lossy.csv``.

    Returns how many runs were made. A repetition has its own loss seed and policy order; all
    policies of one repetition of a cell see the same loss seed and the same frames.

    Results: ``lossy.csv`` (one row per cell and policy) and ``lossy_frames.csv`` (per frame).
    """
    check_grid(bandwidths, [deadline_ms], policies)
    check_impairments(delays, losses)
    if frames < 1 or reps < 1:
        raise ValueError(f'frames and reps must be >= 1, got {frames}, {reps}')
    out_dir = Path(out_dir)
    out_csv, frames_csv = out_dir / 'lossy.csv', out_dir / 'lossy_frames.csv'
    if fresh:
        for p in (out_csv, frames_csv):
            p.unlink(missing_ok=True)
    done = read_lossy_done(out_csv)
    grid = [(bw, d, x, r) for bw in bandwidths for d in delays for x in losses
            for r in range(reps)]
    todo = [(bw, d, x, r, p) for bw, d, x, r in grid for p in policies
            if lossy_key(p, bw, deadline_ms, d, x, r) not in done]
    print(f'sweep lossy: {len(todo)} runs to do ({len(done)} already in {out_csv}), {frames} '
          f'frames each, deadline {deadline_ms:g} ms', file=sys.stderr)
    if not todo:
        return 0
    accuracy, problem = planner_problem(robot_scale)
    enc_accuracy = _enc_accuracy()
    logdir = Path('/tmp') / f'edgent-lossy-{int(time.time())}'   # node logs, not results
    ran = 0
    with testbed_run(name, bandwidths[0], len(todo), 'lossy', relay=True,
                     relay_seed=seed) as (tb, bar):
        for bw in bandwidths:
            mine = [t for t in todo if t[0] == bw]
            if not mine:
                continue
            tb.set_impairment(delay_ms=0.0, loss=0.0)
            tb.set_rate(bw)
            sess = NodeSession(tb, robot_scale, logdir / f'bw{bw:g}', profile=LOSSY_PROFILE,
                               camera={'wait_for_link': True, 'paused': False})
            try:
                sess.start(bw)
                for p in policies:   # every configuration a policy picks here runs once warm
                    _run_cell(sess, tb, bw, 0.0, 0.0, p, deadline_ms, WARM_FRAMES, seed, 0.5,
                              accuracy, problem, enc_accuracy, robot_scale)
                mine_set = set(mine)
                for d, x, r in sorted({(t[1], t[2], t[3]) for t in mine}):
                    cell_seed = seed * 100_000 + r * 10_000 + int(d) * 7 + int(round(x * 1000))
                    order = [p for p in policies if (bw, d, x, r, p) in mine_set]
                    random.Random(f'{seed}:{bw:g}:{d:g}:{x:g}:{r}').shuffle(order)
                    for p in order:
                        bar.set_postfix_str(f'{bw:g} Mbit/s, {d:g} ms, loss {x:g}, rep {r}, {p}')
                        row, per_frame = _run_cell(sess, tb, bw, d, x, p, deadline_ms, frames,
                                                   cell_seed, settle_s, accuracy, problem,
                                                   enc_accuracy, robot_scale)
                        row['rep'] = r
                        key = {'policy': p, 'bandwidth_mbps': bw, 'deadline_ms': deadline_ms,
                               'delay_ms': d, 'loss': x, 'rep': r}
                        append_rows(frames_csv, [dict(f, **key) for f in per_frame],
                                    LOSSY_FRAME_FIELDS)
                        append_rows(out_csv, [row], LOSSY_FIELDS)
                        ran += 1
                        bar.update(1)
            finally:
                sess.close()
    return ran


def _run_cell(sess: NodeSession, tb, bw: float, delay: float, loss: float, policy: str,
              deadline_ms: float, frames: int, cell_seed: int, settle_s: float, accuracy,
              problem, enc_accuracy, robot_scale: float):
    """Run one policy in one (bandwidth, delay, loss) cell from the same start state."""
    t0 = time.time()
    sess.set_params('camera_node', paused=True)
    params = planner_params(policy)
    sess.set_planner(calibration=False)
    tb.set_impairment(delay_ms=float(delay), loss=float(loss), seed=cell_seed)
    idx = len(sess.records)
    sess.set_planner(deadline_ms=float(deadline_ms), true_bandwidth_bps=float(bw * 1e6),
                     calibration=True, **params)
    sess.wait_decision(str(params['policy']), deadline_ms, idx)
    time.sleep(settle_s)      # probes only: the estimator forgets the previous cell's link
    before = tb.relay_stats()
    start = time.time()
    sess.set_params('camera_node', next_frame=0, paused=False)
    outs, _, _ = sess.collect(start, frames, 30.0 + 4.0 * frames)
    after = tb.relay_stats()
    sess.set_params('camera_node', paused=True)
    decs = sess.decisions(str(params['policy']), deadline_ms, idx)
    # the static model told the link's true round trip: its fixed cost plus the delay both ways
    static = replace(problem, overhead_ms=problem.overhead_ms + 2.0 * float(delay))
    row, per_frame = aggregate(outs, accuracy, _predictor(static, bw * 1e6), decs, enc_accuracy)
    lq = [r for r in sess.records[idx:] if r['topic'] == 'link_quality' and r['t'] >= start]
    row.update(link_columns(lq, bw * 1e6))
    row.update(relay_columns(before, after))
    row.update(policy=policy, bandwidth_mbps=bw, deadline_ms=deadline_ms, delay_ms=delay,
               loss=loss, seed=cell_seed, accounted=int(accounted(outs)),
               robot_scale=robot_scale, elapsed_s=round(time.time() - t0, 2))
    return row, per_frame


SUMMARY_COLUMNS = ('deadline_met', 'on_time_accuracy', 'p95_ms', 'pred_ape', 'planner_ape',
                   'est_ratio_p50', 'est_within_2x', 'rtt_ms_p50', 'relay_loss_up')


def summarize(rows: Sequence[Mapping[str, object]]) -> List[Dict[str, object]]:
    """
    Return one row per (bandwidth, delay, loss, policy): means over repetitions, 95 % intervals.

    ``deadline_met`` and ``on_time_accuracy`` get ``_lo``/``_hi``; ``accounted`` is True only
    when every repetition accounted for every frame; ``configs`` merges the repetitions'.
    """
    groups: Dict[tuple, List[Mapping[str, object]]] = {}
    for r in rows:
        k = (float(r['bandwidth_mbps']), float(r['delay_ms']), float(r['loss']), str(r['policy']))
        groups.setdefault(k, []).append(r)
    out = []
    for (bw, d, x, p), rs in sorted(groups.items()):
        row: Dict[str, object] = {'bandwidth_mbps': bw, 'delay_ms': d, 'loss': x, 'policy': p,
                                  'reps': len(rs), 'deadline_ms': rs[0]['deadline_ms']}
        for c in SUMMARY_COLUMNS:
            xs = [float(r[c]) for r in rs if r.get(c) is not None]
            row[c] = round(statistics.fmean(xs), 4) if xs else None
            if c in ('deadline_met', 'on_time_accuracy'):
                m, half = mean_ci(xs)
                row[f'{c}_lo'] = None if half is None else round(max(0.0, m - half), 4)
                row[f'{c}_hi'] = None if half is None else round(min(1.0, m + half), 4)
        row['configs'] = _merge_counts(rs, 'configs')
        row['drops'] = _merge_counts(rs, 'drops')
        row['frames'] = int(sum(float(r['frames']) for r in rs))
        row['accounted'] = all(bool(r.get('accounted')) for r in rs)
        out.append(row)
    return out


def _merge_counts(rows: Sequence[Mapping[str, object]], column: str) -> str:
    """Add up ``name:count;...`` cells of ``column`` over ``rows``."""
    total: Dict[str, int] = {}
    for r in rows:
        for part in str(r.get(column) or '').split(';'):
            if part:
                name, n = part.rsplit(':', 1)
                total[name] = total.get(name, 0) + int(float(n))
    return ';'.join(f'{k}:{v}' for k, v in sorted(total.items()))


def write_summary(out_dir: Path) -> Dict[str, object]:
    """Write ``lossy_summary.json`` (and ``lossy_report.md``) from ``lossy.csv``."""
    rows = read_rows(Path(out_dir) / 'lossy.csv')
    summary = summarize(rows)
    body = {'summary': summary, 'all_accounted': all(bool(r.get('accounted')) for r in rows),
            'runs': len(rows), 'frames': int(sum(float(r['frames']) for r in rows))}
    (Path(out_dir) / 'lossy_summary.json').write_text(json.dumps(body, indent=1) + '\n')
    (Path(out_dir) / 'lossy_report.md').write_text(lossy_markdown(summary) + '\n')
    plot_lossy(summary, Path(out_dir) / 'lossy.png')
    return body


def plot_lossy(summary: Sequence[Mapping[str, object]], out_png: Path) -> Path:
    """On time and on-time accuracy vs loss, one panel per (bandwidth, delay); planner APE."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    cells = sorted({(r['bandwidth_mbps'], r['delay_ms']) for r in summary})
    policies = sorted({str(r['policy']) for r in summary})
    fig, axes = plt.subplots(3, len(cells), figsize=(3.6 * len(cells), 8.4), squeeze=False,
                             sharey='row')
    for j, (bw, d) in enumerate(cells):
        for i, (col, label) in enumerate((('deadline_met', 'on time'),
                                          ('on_time_accuracy', 'on-time accuracy'),
                                          ('planner_ape', 'planner prediction APE'))):
            ax = axes[i][j]
            for k, pol in enumerate(policies):
                rs = sorted((r for r in summary if r['policy'] == pol and
                             r['bandwidth_mbps'] == bw and r['delay_ms'] == d),
                            key=lambda r: r['loss'])
                xs = [100 * float(r['loss']) for r in rs]
                ys = [None if r.get(col) is None else 100 * float(r[col]) for r in rs]
                yerr = None
                if rs and f'{col}_lo' in rs[0]:
                    yerr = [[0 if r.get(f'{col}_lo') is None else 100 * (r[col] - r[f'{col}_lo'])
                             for r in rs],
                            [0 if r.get(f'{col}_hi') is None else 100 * (r[f'{col}_hi'] - r[col])
                             for r in rs]]
                ax.errorbar([x + 0.15 * k for x in xs], ys, yerr=yerr, marker='o', capsize=2,
                            label=pol)
            if i == 0:
                ax.set_title(f'{bw:g} Mbit/s, {d:g} ms one-way', fontsize=9)
            if j == 0:
                ax.set_ylabel(f'{label} (%)')
            if i == 2:
                ax.set_xlabel('packet loss (%)')
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def lossy_markdown(summary: Sequence[Mapping[str, object]]) -> str:
    """Return the BENCHMARKS table: one line per cell and policy (means over repetitions)."""
    def pct(x):
        return '' if x is None else f'{100 * float(x):.0f}'

    def ci(r, c):
        if r.get(f'{c}_lo') is None:
            return f'{pct(r[c])}%'
        return f'{pct(r[c])}% [{pct(r[f"{c}_lo"])}, {pct(r[f"{c}_hi"])}]'

    def num(x, f='{:.0f}'):
        return '' if x is None else f.format(float(x))
    lines = ['| Mbit/s | one-way delay ms | loss | policy | on time | on-time acc. | p95 ms | '
             'configurations (frames) | drops | planner APE | static APE | est./true | '
             'est. within 2x | RTT ms | relay loss up |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    for r in summary:
        lines.append(
            f'| {r["bandwidth_mbps"]:g} | {r["delay_ms"]:g} | {100 * r["loss"]:g}% | '
            f'{r["policy"]} | {ci(r, "deadline_met")} | {ci(r, "on_time_accuracy")} | '
            f'{num(r["p95_ms"])} | {r.get("configs") or ""} | {r.get("drops") or ""} | '
            f'{pct(r.get("planner_ape"))}% | {pct(r.get("pred_ape"))}% | '
            f'{num(r.get("est_ratio_p50"), "{:.2f}")} | {pct(r.get("est_within_2x"))}% | '
            f'{num(r.get("rtt_ms_p50"))} | {pct(r.get("relay_loss_up"))}% |')
    return '\n'.join(lines)
