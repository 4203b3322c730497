"""
``edgent-ros demo`` on the link testbed (root): the planner's trade-off across a shaped link.

On one host with a fast robot the planner has nothing to trade: the shipped model runs whole on
the robot in ~7.5 ms (BENCHMARKS §5). Here, as in the trace replays (BENCHMARKS §8), the nodes
run on the testbed -- ``edge_node`` in the edge namespace, ``planner_node`` and the emulated
robot camera in the robot namespace, across the ``tc``-shaped veth -- with the robot made
``DEFAULT_ROBOT_SCALE`` (60) times slower than the profiled one, and the uplink follows
``DEMO_SCHEDULE`` (or a ``t_s,mbps`` trace). The deadline is 300 ms (``TRACE_DEADLINE_MS``).
For the shipped latency models the Edgent decision there changes at ~0.09 Mbit/s: above it the
3 KB frame goes to the edge and runs the final exit (edge-only, exit 5, 85.5 % top-1); below
it the frame would take longer than the deadline to cross, and the robot runs an earlier exit
itself (exit 3 from the model, exit 1 once the planner's online calibration has seen that the
live robot is slower than modelled). The schedule sits well on both sides of that boundary so
each level holds one configuration; for this model the cut is all or nothing (the frame is
smaller than every intermediate tensor, BENCHMARKS §7), so what the link decides is the exit.

``DEMO_SCHEDULE`` (``edgent-ros plan --robot-time-scale 60 --deadline-ms 300
--bandwidth-mbps B`` shows the model's choice at each level):

* 0-15 s, 2 Mbit/s: edge-only, exit 5 (the frame crosses in ~12 ms);
* 15-30 s, 0.2 Mbit/s: still edge-only, exit 5, now ~130 ms predicted;
* 30-50 s, 0.05 Mbit/s: the frame would need ~500 ms: exit 3 / exit 1 on the robot;
* 50-70 s, 1 Mbit/s: back to edge-only, exit 5 (found by the camera's probes).

Reuses the trace-replay machinery: ``Testbed`` and ``TracePlayer`` (``evaluation.testbed``) and
``NodeSession`` (``evaluation.sweep_session``: start-up at ``WARMUP_MBPS``, the controller that
sets the planner's policy and deadline and records every outcome and decision). Prints one line
per frame, one line per decision change (time, shaped rate, the planner's estimate, exit / split
/ encoding, predicted latency against the deadline, the planner's reason) and a summary per
configuration and per link level. Nothing here runs without root.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
import re
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence, Tuple

from ..core.arch import branch_specs
from ..core.artifacts import load_accuracy, read_config
from ..core.optimizer import decide_policy
from ..nodes.demo import frame_line, show_logs
from ..offline.hosts import cgroup_v1_cpu_available
from .sweep import DEFAULT_ROBOT_SCALE, in_cell, planner_params
from .sweep_session import (NodeSession, SweepError, planner_problem, TRACE_DEADLINE_MS,
                            trace_rows, WARMUP_MBPS)
from .testbed import (DEFAULT_ROBOT_QUOTA, Testbed, TestbedError, TracePlayer,
                      unavailable_reason)

DEMO_NAME = 'edemo'
# (start s, Mbit/s): see the module docstring for what each level shows
DEMO_SCHEDULE: Tuple[Tuple[float, float], ...] = ((0.0, 2.0), (15.0, 0.2), (30.0, 0.05),
                                                  (50.0, 1.0))
DEMO_DURATION_S = 70.0
DEMO_DEADLINE_MS = TRACE_DEADLINE_MS
DEMO_FPS = 5.0   # a readable number of lines; the camera keeps one frame in flight


def demo_player(trace: Optional[Path] = None, start_s: float = 0.0,
                duration_s: Optional[float] = None) -> Tuple[TracePlayer, float, str]:
    """
    Return the player of the demo's uplink, how long to play it (s) and a one-line description.

    ``trace``: a ``t_s,mbps`` CSV, played from ``start_s`` (default: ``DEMO_SCHEDULE``);
    ``duration_s``: how long (default: the schedule's ``DEMO_DURATION_S``, 70 s of a trace).
    """
    if trace is None:
        rows: List[Tuple[float, float]] = list(DEMO_SCHEDULE)
        dur = DEMO_DURATION_S if duration_s is None else float(duration_s)
        what = 'demo schedule'
    else:
        dur = DEMO_DURATION_S if duration_s is None else float(duration_s)
        rows = trace_rows(Path(trace), float(start_s), dur)
        what = f'{Path(trace).name} from {start_s:g} s'
    if not (math.isfinite(dur) and dur > 0):
        raise ValueError(f'duration must be a finite number of seconds > 0, got {duration_s!r}')
    player = TracePlayer(rows, loop=False, step_s=max(1.0, dur - rows[-1][0]))
    return player, dur, what


def _where(exit_index: int, split_index: int, branch: Dict[int, int]) -> str:
    n = branch[exit_index]
    return ('device-only' if split_index >= n else 'edge-only' if split_index == 0
            else f'layers [0, {split_index}) on the robot')


def _config(rec: dict) -> Tuple[int, int, str]:
    return int(rec['exit_index']), int(rec['split_index']), str(rec.get('encoding') or 'raw')


def _why(reason: str) -> str:
    """Return the planner's reason without what the line already says (policy, exit, split)."""
    m = re.match(r'^[\w+-]+: (exit \d+ split \d+[^(]*\([^)]*\) )?', reason)
    return reason[m.end():] if m else reason


def decision_line(t_s: float, rate_mbps: float, d: dict, branch: Dict[int, int],
                  accuracy: Dict[int, float]) -> str:
    """
    Return the lines of a decision change: when, the link, the choice, its prediction and why.

    ``predicted`` is the planner's published (median-calibrated) end-to-end time; it decides
    with the 0.99 quantile of the robot's measured/modelled time, the numbers in ``why``.
    """
    e, s, enc = _config(d)
    return (f'==> {t_s:5.1f} s  link {rate_mbps:g} Mbit/s, planner\'s estimate '
            f'{float(d["bandwidth_bps"]) / 1e6:.3g}: exit {e} split {s} '
            f'({_where(e, s, branch)}, {enc}), test-set top-1 {100 * accuracy.get(e, 0.0):.1f} '
            f'%, predicted {float(d["predicted_total_ms"]):.0f} ms, deadline '
            f'{float(d["deadline_ms"]):g} ms{"" if d.get("feasible") else " (none meets it)"}\n'
            f'      why: {_why(str(d.get("reason", "")))}')


def _rate_at(rates: Sequence[Tuple[float, float]], t: float) -> float:
    """Return the shaped rate (Mbit/s) in force at wall time ``t`` (``rates``: (t, Mbit/s))."""
    r = rates[0][1] if rates else float('nan')
    for t_i, r_i in rates:
        if t_i > t:
            break
        r = r_i
    return r


def summarize_demo(outcomes: Sequence[dict], rates: Sequence[Tuple[float, float]],
                   branch: Dict[int, int], accuracy: Dict[int, float]) -> List[str]:
    """
    Return the summary lines: totals, then per configuration and per link level.

    ``outcomes``: recorder dicts of the frames captured during the replay (closed-loop
    ``link_busy`` skips are counted apart); ``rates``: (wall time, Mbit/s) of each rate change.
    Accuracy is measured on these labelled frames; ``test-set top-1`` is the exit's top-1 on the
    10,000 CIFAR-10 test images (what the planner maximizes).
    """
    frames = [o for o in outcomes if in_cell(o)]
    skips = len(outcomes) - len(frames)
    ok = [o for o in frames if o['status'] == 0]
    drops: Dict[str, int] = {}
    for o in frames:
        if o['status'] != 0:
            drops[o['drop_reason']] = drops.get(o['drop_reason'], 0) + 1

    def rate(xs: Sequence[dict], key) -> str:
        return f'{100 * sum(bool(key(o)) for o in xs) / len(xs):5.1f} %' if xs else '    - '

    def on_time(o: dict) -> bool:
        return o['status'] == 0 and bool(o['deadline_met'])

    def top1(xs: Sequence[dict]) -> float:   # test-set top-1 of the exits used, summed
        return sum(accuracy.get(o['exit_index'], 0.0) for o in xs)

    lines = [f'summary: {len(frames)} frames ({len(ok)} classified, '
             f'{sum(drops.values())} dropped{" " + str(drops) if drops else ""}; '
             f'{skips} closed-loop skips not counted)']
    if not frames:
        return lines
    met = [o for o in frames if on_time(o)]
    lines.append(f'  deadline met: {rate(frames, on_time)} of frames; top-1 measured '
                 f'{rate(ok, lambda o: o["class_id"] == o["true_class_id"])} of classified; '
                 f'test-set top-1 of the exits used {100 * top1(ok) / max(1, len(ok)):.1f} %, '
                 f'on-time accuracy {100 * top1(met) / len(frames):.1f} %')
    by_cfg: Dict[Tuple[int, int, str], List[dict]] = {}
    for o in ok:
        by_cfg.setdefault(_config(o), []).append(o)
    lines.append('  per configuration (classified frames):')
    for (e, s, enc), xs in sorted(by_cfg.items(), key=lambda kv: -len(kv[1])):
        lat = sorted(o['end_to_end_ms'] for o in xs)
        lines.append(f'    exit {e} split {s:2d} ({_where(e, s, branch)}, {enc}): {len(xs):4d} '
                     f'frames, deadline met {rate(xs, lambda o: o["deadline_met"])}, top-1 '
                     f'measured {rate(xs, lambda o: o["class_id"] == o["true_class_id"])} '
                     f'(test set {100 * accuracy.get(e, 0.0):.1f} %), median '
                     f'{lat[len(lat) // 2]:.0f} ms')
    levels: Dict[float, List[dict]] = {}
    for o in frames:
        levels.setdefault(_rate_at(rates, float(o['stamp'])), []).append(o)
    lines.append('  per link level (frames captured at that shaped rate):')
    for mbps in sorted(levels, reverse=True):
        xs = levels[mbps]
        cfgs: Dict[str, int] = {}
        for o in xs:
            if o['status'] == 0:
                k = f'{o["exit_index"]}/{o["split_index"]}'
                cfgs[k] = cfgs.get(k, 0) + 1
        used = ', '.join(f'{k} x{n}' for k, n in sorted(cfgs.items(), key=lambda kv: -kv[1]))
        lines.append(f'    {mbps:6g} Mbit/s: {len(xs):4d} frames, deadline met '
                     f'{rate(xs, on_time)}; exit/split used: {used or "-"}')
    return lines


class TestbedUnavailable(RuntimeError):
    """The testbed could not be built here (the message says why); nothing is left behind."""


def make_testbed(name: str = DEMO_NAME) -> Testbed:
    """Build the demo's testbed (robot CPU cgroup when cgroup v1 allows); TestbedUnavailable."""
    reason = unavailable_reason()
    if reason:
        raise TestbedUnavailable(reason)
    tb = Testbed(name=name, rate_mbps=WARMUP_MBPS,
                 robot_quota=DEFAULT_ROBOT_QUOTA if cgroup_v1_cpu_available() else None)
    try:
        return tb.setup()
    except (OSError, TestbedError, subprocess.SubprocessError) as exc:
        tb.teardown()
        raise TestbedUnavailable(f'the testbed could not be built: {exc}') from exc


def run_testbed_demo(args: argparse.Namespace, name: str = DEMO_NAME,
                     robot_scale: float = DEFAULT_ROBOT_SCALE) -> int:
    """
    Run the demo on the testbed (root); return 0 when frames were classified during the replay.

    ``args``: the ``demo`` options (``deadline_ms``, ``fps``, ``frames`` may be None: the
    testbed defaults; ``trace``, ``trace_start``, ``duration``, ``policy``, ``source``,
    ``quiet``). ``name``: the testbed's name (namespaces, veth, cgroup; removed at the end).
    Raises ``TestbedUnavailable`` (before printing anything) when the testbed cannot be built.
    """
    player, dur, what = demo_player(getattr(args, 'trace', None),
                                    getattr(args, 'trace_start', 0.0) or 0.0,
                                    getattr(args, 'duration', None))
    deadline = float(args.deadline_ms if args.deadline_ms is not None else DEMO_DEADLINE_MS)
    fps = float(args.fps if args.fps is not None else DEMO_FPS)
    cfg = read_config()
    accuracy = load_accuracy(model_id=cfg.model_id())
    branch = {e: len(branch_specs(cfg, e)) for e in accuracy}
    _, problem = planner_problem(robot_scale)
    tb = make_testbed(name)
    logdir = Path(tempfile.mkdtemp(prefix='edgent-demo-'))
    outcomes: List[dict] = []
    rates: List[Tuple[float, float]] = []
    changes: List[Tuple[int, int, str]] = []
    rc = 1
    try:
        print(f'edgent_ros demo on the link testbed: model {cfg.model_id()}, policy '
              f'{args.policy}, deadline {deadline:g} ms')
        print(f'  robot namespace: camera (robot {robot_scale:g}x slower than profiled'
              + (f', {100 * tb.robot_quota:g} % CPU cgroup' if tb.robot_quota
                 else '; no cgroup v1 here: no CPU quota')
              + ') + planner; edge namespace: edge_node; uplink shaped by tc tbf')
        print(f'  uplink: {what}, {dur:g} s; the latency model\'s choice at each level:')
        for t, mbps in player.schedule(dur):
            d = decide_policy(problem, args.policy, max(mbps, 1e-3) * 1e6, deadline)
            print(f'    {t:5.1f} s  {mbps:6g} Mbit/s -> exit {d.exit_index} split '
                  f'{d.split_index} ({_where(d.exit_index, d.split_index, branch)}), '
                  f'predicted {d.total_ms:.0f} ms{"" if d.feasible else " (misses)"}')
        print(f'  frames: "{args.source}" at {fps:g} fps, one in flight; node logs in {logdir}')
        print('  "==>" lines: the planner changed configuration (predicted: its typical '
              'end-to-end time; why: its rule, with the robot time it plans for, the 0.99 '
              'quantile of what it measured)')
        print(f'starting the nodes (edge-only at {WARMUP_MBPS:g} Mbit/s until the first edge '
              'result; ~15 s on 2 cores) ...')
        sys.stdout.flush()
        sess = NodeSession(tb, robot_scale, logdir, fps=fps, camera={'source': args.source})
        try:
            t_start = time.monotonic()
            first = player.rate_at(0.0)
            sess.start(first, settle_s=2.0)
            params = planner_params(args.policy)
            idx = len(sess.records)
            sess.set_planner(deadline_ms=deadline, true_bandwidth_bps=float(first * 1e6),
                             **params)
            sess.wait_decision(str(params['policy']), deadline, idx)
            print(f'nodes up after {time.monotonic() - t_start:.0f} s; replaying the uplink '
                  f'for {dur:g} s')
            sys.stdout.flush()
            t0 = time.time()
            rates.append((t0, first))
            th, stop = player.start(tb.set_rate, dur,
                                    on_step=lambda w, r: rates.append((t0 + w, r)))
            try:
                _follow(sess, t0, dur, args, rates, outcomes, changes, branch, accuracy,
                        deadline, str(params['policy']))
            finally:
                stop.set()
                th.join(5.0)
            rc = 0 if any(o['status'] == 0 for o in outcomes) else 1
        except SweepError as exc:
            print(f'edgent_ros demo: {exc}')
        except KeyboardInterrupt as exc:
            print(f'edgent_ros demo: interrupted ({exc or "Ctrl-C"})')
            rc = 130
        finally:
            sess.close()
    finally:
        tb.teardown()
    for line in summarize_demo(outcomes, rates, branch, accuracy):
        print(line)
    cfgs = sorted(set(changes))
    print(f'  decisions: {max(0, len(changes) - 1)} configuration changes, {len(cfgs)} distinct '
          f'configurations ({", ".join(f"exit {e} split {s} {x}" for e, s, x in cfgs)})')
    if rc == 1:
        show_logs(logdir)
    sys.stdout.flush()
    return rc


def _follow(sess: NodeSession, t0: float, dur: float, args, rates, outcomes, changes, branch,
            accuracy, deadline: float, policy: str) -> None:
    """Print frames and decision changes as they arrive until the replay ends (or --frames)."""
    cap = args.frames if args.frames else 0
    seen = len(sess.records)
    last_cfg: Optional[Tuple[int, int, str]] = None
    # the decision in force when the replay starts is shown as the first change
    for r in reversed(sess.records):
        if r['topic'] == 'decision' and r.get('policy') == policy:
            changes.append(_config(r))
            last_cfg = changes[-1]
            print(decision_line(0.0, _rate_at(rates, t0), r, branch, accuracy))
            break
    while time.time() < t0 + dur + 1.0:
        sess.pump(0.2)
        sess.check_alive()
        for r in sess.records[seen:]:
            if r['topic'] == 'decision' and r.get('policy') == policy \
                    and abs(float(r['deadline_ms']) - deadline) < 1e-6 \
                    and _config(r) != last_cfg:
                last_cfg = _config(r)
                changes.append(last_cfg)
                print(decision_line(r['t'] - t0, _rate_at(rates, r['t']), r, branch, accuracy))
            elif r['topic'] == 'outcome' and t0 <= r['stamp'] < t0 + dur:
                outcomes.append(r)
                if not args.quiet and in_cell(r):
                    t = r['stamp'] - t0
                    print(f'  {t:5.1f} s {_rate_at(rates, r["stamp"]):5g} Mbit/s  '
                          + frame_line(SimpleNamespace(**r)))
        seen = len(sess.records)
        sys.stdout.flush()
        if cap and sum(in_cell(o) for o in outcomes) >= cap:
            break
