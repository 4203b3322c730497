"""
``edgent-ros sweep tune`` / ``heldout`` (issue 17 items 3-4): tune in simulation, test live.

One half of the traces tunes in simulation, windows of the other half are replayed live, paired
and repeated.

``run_tune`` cross-validates the estimator and hysteresis settings (``trace_sim.tune``) on the
tuning split only and writes ``tuning.json``. ``run_heldout`` replays the held-back windows
chosen by ``heldout.choose_live`` on the testbed (root): the nodes start once per trace; before
each cell the camera is paused, the planner's calibration reset and the policy set, the link set
to the window's first rate and left 5.5 s with probes only (the estimator then starts from the
same state), the camera seeks to frame 0 and resumes (closed loop) while the trace plays; policy
order is shuffled per repetition. Frames are appended to ``heldout_frames.csv`` as each cell
ends (a rerun resumes). ``report_heldout`` writes the table, the claims and a PNG.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from .heldout import (choose_live, claims, HELDOUT_POLICIES, rep_stats, split_traces,
                      WINDOW_S)
from .paired import mean_ci, policy_order
from .sweep import aggregate, append_rows, FRAME_FIELDS, in_cell, planner_params, read_rows
from .sweep_session import (_progress, NodeSession, planner_problem, testbed_run,
                            TESTBED_NAME, trace_rows, TRACE_DEADLINE_MS)
from .testbed import TracePlayer
from .trace_sim import GRID, load_logs, Settings, SIM_POLICIES, simulate_policies, tune

FRAMES_FILE = 'heldout_frames.csv'
PLAN_FILE = 'heldout_plan.json'
TUNE_FILE = 'tuning.json'
REPORT_FILE = 'heldout_report.md'
SIM_FILE = 'heldout_sim.csv'
MAX_TUNE_S = 1200          # seconds of each tuning trace simulated
HELDOUT_FIELDS = ('trace', 'start_s', 'rep', 'order', 'frame_index', 'stamp') + FRAME_FIELDS
WARMUP_S = 5.5


def load_rates(path: Path, max_s: Optional[int] = None) -> List[float]:
    """Return a trace's rate (Mbit/s) per second (``t_s,mbps`` rows at 1 s steps)."""
    with open(path, newline='') as f:
        rates = [float(r['mbps']) for r in csv.DictReader(f)]
    return rates[:max_s] if max_s else rates


def _traces(trace_dir: Path) -> List[str]:
    return sorted(p.name for p in Path(trace_dir).glob('*.csv') if p.name != 'index.csv')


def run_tune(out_dir: Path, trace_dir: Path, robot_scale: float,
             deadline_ms: float = TRACE_DEADLINE_MS, folds: int = 4) -> Dict[str, object]:
    """Cross-validate the settings on the tuning split; write and return ``tuning.json``."""
    tune_names, held = split_traces(_traces(trace_dir))
    _, problem = planner_problem(robot_scale)
    traces = {n: load_rates(Path(trace_dir) / n, MAX_TUNE_S) for n in tune_names}
    n_points = 1
    for v in GRID.values():
        n_points *= len(v)
    bar = _progress(n_points, 'tune (simulation)')
    try:
        body = tune(problem, traces, deadline_ms, folds=folds, progress=bar.update,
                    logs=load_logs())
    finally:
        bar.close()
    body.update(tune_traces=tune_names, held_out_traces=held, deadline_ms=deadline_ms,
                robot_scale=robot_scale, grid={k: list(v) for k, v in GRID.items()},
                seconds_per_trace=MAX_TUNE_S)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / TUNE_FILE).write_text(json.dumps(body, indent=1) + '\n')
    return body


def run_simulate(out_dir: Path, trace_dir: Path, robot_scale: float,
                 deadline_ms: float = TRACE_DEADLINE_MS, seeds: Sequence[int] = (0, 1, 2)
                 ) -> List[dict]:
    """Simulate every policy on every held-back trace (whole) with the tuned settings."""
    body = json.loads((Path(out_dir) / TUNE_FILE).read_text())
    settings = Settings(**body['chosen'])
    _, held = split_traces(_traces(trace_dir))
    _, problem = planner_problem(robot_scale)
    traces = {n: load_rates(Path(trace_dir) / n, MAX_TUNE_S) for n in held}
    rows = simulate_policies(problem, traces, deadline_ms, settings, seeds)
    _write_csv(Path(out_dir) / SIM_FILE, rows)
    return rows


def sim_markdown(rows: List[dict]) -> str:
    """Return the simulated held-out table: per trace and policy, the mean over seeds."""
    by: Dict[Tuple[str, str], List[dict]] = {}
    for r in rows:
        by.setdefault((r['trace'], r['policy']), []).append(r)
    traces = sorted({t for t, _ in by})
    policies = [p for p in SIM_POLICIES if any(q == p for _, q in by)]
    head = '| trace | ' + ' | '.join(policies) + ' |'
    lines = ['On time (%) / on-time accuracy over time (%), mean of '
             f'{len(next(iter(by.values())))} seeds:', '', head,
             '|---|' + '---|' * len(policies)]
    for t in traces:
        cells = []
        for p in policies:
            rs = by[(t, p)]
            ot = sum(float(r['on_time']) for r in rs) / len(rs)
            us = sum(float(r['useful']) for r in rs) / len(rs)
            cells.append(f'{100 * ot:.1f} / {100 * us:.1f}')
        lines.append(f'| {t.replace(".csv", "")} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def plan_heldout(trace_dir: Path, robot_scale: float, deadline_ms: float = TRACE_DEADLINE_MS,
                 n: int = 3) -> Dict[str, object]:
    """Return the held-back traces and windows the rules choose (no run, no results read)."""
    _, held = split_traces(_traces(trace_dir))
    _, problem = planner_problem(robot_scale)
    rates = {h: load_rates(Path(trace_dir) / h) for h in held}
    live = choose_live(problem, rates, deadline_ms, n)
    return {'held_out': held, 'deadline_ms': deadline_ms, 'robot_scale': robot_scale,
            'window_s': WINDOW_S,
            'live': [{'trace': t, 'start_s': s, 'decision_changes': c} for t, s, c in live]}


def _done(frames_csv: Path) -> set:
    if not Path(frames_csv).exists():
        return set()
    return {(r['trace'], int(r['rep']), r['policy']) for r in read_rows(frames_csv)}


def run_heldout(out_dir: Path, trace_dir: Path, robot_scale: float,
                deadline_ms: float = TRACE_DEADLINE_MS, policies: Sequence[str] =
                HELDOUT_POLICIES, reps: int = 3, n_traces: int = 3, seed: int = 0,
                name: str = TESTBED_NAME, logdir: Optional[Path] = None,
                fresh: bool = False) -> int:
    """
    Replay every (trace, repetition, policy) cell not yet in ``out_dir``; return how many.

    ``fresh``: replay every cell again (the frames file is removed once the windows are checked;
    the tuning stays).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = plan_heldout(trace_dir, robot_scale, deadline_ms, n_traces)
    plan_path = out_dir / PLAN_FILE
    if plan_path.is_file() and json.loads(plan_path.read_text())['live'] != plan['live']:
        raise ValueError(f'{plan_path} chose other windows; remove {out_dir} to start over')
    plan_path.write_text(json.dumps(plan, indent=1) + '\n')
    frames_csv = out_dir / FRAMES_FILE
    if fresh:
        frames_csv.unlink(missing_ok=True)
    done = _done(frames_csv)
    accuracy, problem = planner_problem(robot_scale)
    todo = [(w['trace'], w['start_s'], r, p) for w in plan['live'] for r in range(1, reps + 1)
            for p in policy_order(policies, 0.0, deadline_ms, r, seed)
            if (w['trace'], r, p) not in done]
    print(f'sweep heldout: {len(todo)} cells to run ({len(done)} done): '
          + ', '.join(f'{w["trace"]} from {w["start_s"]:g} s' for w in plan['live']),
          file=sys.stderr)
    logdir = Path(logdir or (Path('/tmp') / f'edgent-heldout-{int(time.time())}'))
    ran = 0
    with testbed_run(name, 1.0, len(todo), 'held-out traces') as (tb, bar):
        for w in plan['live']:
            mine = [t for t in todo if t[0] == w['trace']]
            if not mine:
                continue
            rows = trace_rows(Path(trace_dir) / w['trace'], w['start_s'], WINDOW_S)
            tb.set_rate(rows[0][1])
            sess = NodeSession(tb, robot_scale, logdir / Path(w['trace']).stem,
                               camera={'wait_for_link': True, 'paused': False})
            order: Dict[int, int] = {}
            try:
                sess.start(rows[0][1])
                for trace, start_s, rep, p in mine:
                    order[rep] = order.get(rep, 0) + 1
                    bar.set_postfix_str(f'{trace} rep {rep} {p}')
                    frames = _cell(sess, rows, p, deadline_ms, accuracy)
                    append_rows(frames_csv, [dict(f, trace=trace, start_s=start_s, rep=rep,
                                                  order=order[rep], frame_index=k)
                                             for k, f in enumerate(frames)], HELDOUT_FIELDS)
                    ran += 1
                    bar.update(1)
            finally:
                sess.close()
    return ran


def _cell(sess: NodeSession, rows: List[Tuple[float, float]], policy: str,
          deadline_ms: float, accuracy) -> List[dict]:
    """Run one policy over the window from the common start state; return its frame rows."""
    tb = sess.tb
    sess.set_params('camera_node', paused=True)
    tb.set_rate(rows[0][1])
    idx = len(sess.records)
    params = dict(planner_params(policy), deadline_ms=float(deadline_ms),
                  true_bandwidth_bps=float(rows[0][1] * 1e6))
    sess.set_planner(calibration=False)
    sess.set_planner(calibration=True, **params)
    sess.wait_decision(str(params['policy']), deadline_ms, idx)
    time.sleep(WARMUP_S)
    player = TracePlayer(rows, loop=False)
    rates: List[Tuple[float, float]] = []

    def on_step(wall: float, mbps: float) -> None:
        rates.append((wall, mbps))
        if policy == 'true-bandwidth':
            sess.set_planner(wait=False, true_bandwidth_bps=float(mbps * 1e6))
    t0 = time.time()
    sess.set_params('camera_node', next_frame=0, paused=False)
    th, stop = player.start(tb.set_rate, WINDOW_S, on_step=on_step)
    outs, _, _ = sess.collect(t0, 0, WINDOW_S + 40.0, until_stamp=t0 + WINDOW_S)
    stop.set()
    th.join(5.0)
    sess.set_params('camera_node', paused=True)
    _, per_frame = aggregate(outs, accuracy)

    def rate_at(stamp: float) -> float:
        k = int(stamp - t0)
        return rows[min(max(k, 0), len(rows) - 1)][1]
    cell = [o for o in outs if in_cell(o)]
    return [dict(f, policy=policy, deadline_ms=deadline_ms,
                 bandwidth_mbps=rate_at(float(o['stamp'])),
                 stamp=round(float(o['stamp']) - t0, 4))
            for f, o in zip(per_frame, cell)]


def report_heldout(out_dir: Path, robot_scale: float) -> Dict[str, object]:
    """Write ``heldout_summary.csv``, ``heldout_claims.json``, ``heldout.png``; return them."""
    out_dir = Path(out_dir)
    rows = read_rows(out_dir / FRAMES_FILE)
    plan = out_dir / PLAN_FILE
    if plan.is_file():   # the robot class the run had
        robot_scale = float(json.loads(plan.read_text())['robot_scale'])
    accuracy, _ = planner_problem(robot_scale)
    by: Dict[str, Dict[str, Dict[int, List[dict]]]] = {}
    for r in rows:
        by.setdefault(r['trace'], {}).setdefault(r['policy'], {}).setdefault(
            int(r['rep']), []).append(r)
    summary, all_claims = [], []
    for trace, pols in sorted(by.items()):
        per_rep = {p: {rep: rep_stats(fs, accuracy) for rep, fs in reps.items()}
                   for p, reps in pols.items()}
        for p in HELDOUT_POLICIES:
            if p not in per_rep:
                continue
            st = list(per_rep[p].values())
            ot, ot_h = mean_ci([s['on_time'] for s in st])
            us, us_h = mean_ci([s['useful'] for s in st])
            summary.append({'trace': trace, 'policy': p, 'reps': len(st),
                            'frames': sum(s['frames'] for s in st),
                            'on_time': round(ot, 4), 'on_time_hw': _r(ot_h),
                            'useful': round(us, 4), 'useful_hw': _r(us_h)})
        for c in claims(per_rep, 'edgent') + claims(per_rep, 'edgent-point'):
            all_claims.append(dict(c, trace=trace))
    _write_csv(out_dir / 'heldout_summary.csv', summary)
    (out_dir / 'heldout_claims.json').write_text(json.dumps(all_claims, indent=1) + '\n')
    _plot(out_dir / 'heldout.png', summary)
    (out_dir / REPORT_FILE).write_text(markdown(out_dir, summary, all_claims))
    return {'summary': summary, 'claims': all_claims}


def _pm(m: float, h: Optional[float], scale: float = 100.0) -> str:
    return f'{scale * m:.1f}' + ('' if h is None else f' ± {scale * h:.1f}')


def markdown(out_dir: Path, summary: List[dict], all_claims: List[dict]) -> str:
    """Return the report's Markdown (the block BENCHMARKS quotes; a test regenerates it)."""
    lines = []
    tuning = Path(out_dir) / TUNE_FILE
    if tuning.is_file():
        t = json.loads(tuning.read_text())
        c = t['chosen']
        lines += [f'Tuned on {", ".join(n.replace(".csv", "") for n in t["tune_traces"])}; '
                  f'held back: {", ".join(n.replace(".csv", "") for n in t["held_out_traces"])}.',
                  '',
                  f'Chosen (admissible {t["admissible"]} of {len(t["table"])}): window '
                  f'{c["window"]}, quantile {c["quantile"]:g}, change_k {c["change_k"]:g}, '
                  f'drop_confirm {c["drop_confirm"]}, min_dwell_s {c["min_dwell_s"]:g}, '
                  f'rel_change {c["rel_change"]:g}: simulated on-time accuracy '
                  f'{100 * t["score"]:.2f} % (best without the stability condition '
                  f'{100 * t["best_without_stability"]["score"]:.2f} %); loopback logs within '
                  '2x: ' + ', '.join(f'{k.replace("loopback_", "")} {100 * v:.1f} %'
                                     for k, v in t['stability'].items()) + '.', '']
        lines += ['| fold | held fold | chosen (window/quantile/confirm/dwell) | train | test |',
                  '|---|---|---|---|---|']
        for f in t['folds']:
            ch = f['chosen']
            lines.append(f'| {f["fold"]} | {", ".join(x.replace(".csv", "") for x in f["test"])} '
                         f'| {ch["window"]}/{ch["quantile"]:g}/{ch["drop_confirm"]}/'
                         f'{ch["min_dwell_s"]:g} | {100 * f["train_score"]:.2f} | '
                         f'{100 * f["test_score"]:.2f} |')
        lines.append('')
    lines += ['| trace | policy | reps | frames | on time (%) | on-time accuracy (%) |',
              '|---|---|---|---|---|---|']
    for r in summary:
        lines.append(f'| {r["trace"].replace(".csv", "")} | {r["policy"]} | {r["reps"]} | '
                     f'{r["frames"]} | {_pm(r["on_time"], r["on_time_hw"])} | '
                     f'{_pm(r["useful"], r["useful_hw"])} |')
    lines += ['', '| trace | claim | holds | why |', '|---|---|---|---|']
    for c in all_claims:
        lines.append(f'| {c["trace"].replace(".csv", "")} | {c["claim"]} | '
                     f'{"yes" if c["holds"] else "**no**"} | {c["why"]} |')
    return '\n'.join(lines) + '\n'


def _r(x: Optional[float]) -> Optional[float]:
    return None if x is None else round(x, 4)


def _write_csv(path: Path, rows: List[dict]) -> None:
    """Replace ``path`` with ``rows`` (columns: the first row's keys)."""
    Path(path).unlink(missing_ok=True)
    if rows:
        append_rows(path, rows, list(rows[0]))


def _plot(path: Path, summary: List[dict]) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    traces = sorted({r['trace'] for r in summary})
    fig, axes = plt.subplots(1, len(traces), figsize=(4.2 * len(traces), 3.6), squeeze=False)
    for ax, trace in zip(axes[0], traces):
        for r in (r for r in summary if r['trace'] == trace):
            ax.errorbar(100 * r['on_time'], 100 * r['useful'],
                        xerr=100 * (r['on_time_hw'] or 0), yerr=100 * (r['useful_hw'] or 0),
                        fmt='o', capsize=3, label=r['policy'])
        ax.set_title(trace.replace('.csv', ''), fontsize=9)
        ax.set_xlabel('frames on time (%)')
        ax.set_ylabel('on-time accuracy (%)')
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
