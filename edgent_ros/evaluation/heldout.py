"""
Held-out trace evaluation (issue 17 items 3-4, issue 18 item 7): rules fixed before any run.

- **Split** (``split_traces``): the trace files sorted by name; even positions tune (the
  simulation's cross-validation, ``trace_sim.tune``), odd positions are held back for the live
  report. Nothing of the held-back half is looked at while tuning.
- **Window** (``choose_window``): per held-back trace, the first 60 s window starting at a
  multiple of 60 s in which the true-bandwidth decision of the report's model and deadline
  changes at least once (the link crosses the decision boundary, so the planner has something
  to decide); none: the first window.
- **Which traces run live** (``choose_live``): the ``n`` held-back traces whose window has the
  most such changes (ties: name order).
- **Claims** (``claims``), per trace, over repetitions paired by index (same trace window, same
  frames, same start state): Edgent's on-time rate is not below any fixed baseline's beyond the
  95 % interval of the paired difference; where the on-time rates cannot be told apart, its
  on-time accuracy is not below the baseline's beyond that interval; it is on time for >= 99 %
  of frames wherever the true-bandwidth policy is.

Pure: no rclpy, no torch.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ..core.optimizer import decide, EdgentProblem
from .paired import mean_ci, paired_diff

WINDOW_S = 60.0
BASELINES = ('device-only', 'edge-only', 'exit-only')
HELDOUT_POLICIES = ('edgent', 'edgent-point', 'true-bandwidth') + BASELINES
TARGET = 0.99


def split_traces(names: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Return ``(tune, held_out)``: sorted names at even and at odd positions."""
    names = sorted(n for n in names if n != 'index.csv')
    return names[0::2], names[1::2]


def crossings(problem: EdgentProblem, rates: Sequence[float], deadline_ms: float) -> int:
    """Return how often the true-bandwidth decision changes from one second to the next."""
    keys = [decide(problem, max(0.0, r) * 1e6, deadline_ms).key for r in rates]
    return sum(1 for a, b in zip(keys, keys[1:]) if a != b)


def choose_window(problem: EdgentProblem, rates: Sequence[float], deadline_ms: float,
                  window_s: float = WINDOW_S) -> Tuple[float, int]:
    """Return ``(start_s, changes)`` of the trace's report window (module docstring)."""
    w = int(window_s)
    for k in range(0, max(1, len(rates) - w + 1), w):
        n = crossings(problem, rates[k:k + w], deadline_ms)
        if n > 0:
            return float(k), n
    return 0.0, 0


def choose_live(problem: EdgentProblem, held_out: Mapping[str, Sequence[float]],
                deadline_ms: float, n: int = 3) -> List[Tuple[str, float, int]]:
    """Return the ``n`` held-out traces to replay live: ``(name, start_s, changes)``."""
    rows = [(name, *choose_window(problem, rates, deadline_ms))
            for name, rates in sorted(held_out.items())]
    return sorted(rows, key=lambda r: (-r[2], r[0]))[:n]


def rep_stats(frames: Sequence[Mapping[str, object]], accuracy: Mapping[int, float],
              window_s: float = WINDOW_S) -> Dict[str, float]:
    """
    Return one repetition's frames, on-time rate and on-time accuracy over time.

    ``on_time``: the share of frames on time. ``useful``: each on-time frame's top-1 weighted by
    the time until the next capture (``stamp``, seconds into the window; the last frame until the
    window's end), over ``window_s``: a frame-weighted mean would favour a policy that stalls on
    a bad link (few, late frames) over one that adapts (many on-time frames of a lower exit).
    ``useful_frames``: the frame-weighted mean, for reference.
    """
    fs = sorted(frames, key=lambda f: float(f['stamp']))
    n = len(fs)
    met = [bool(int(f['deadline_met'])) and int(f['status']) == 0 for f in fs]
    acc = [accuracy[int(f['exit'])] if m else 0.0 for f, m in zip(fs, met)]
    stamps = [float(f['stamp']) for f in fs] + [window_s]
    w = [max(0.0, min(b, window_s) - a) for a, b in zip(stamps, stamps[1:])]
    return {'frames': n, 'on_time': sum(met) / n if n else 0.0,
            'useful': sum(a * x for a, x in zip(acc, w)) / window_s,
            'useful_frames': sum(acc) / n if n else 0.0}


def _diff(a: Mapping[int, float], b: Mapping[int, float]) -> Tuple[Optional[float],
                                                                   Optional[float]]:
    """Return ``paired.paired_diff``'s mean and half-width (0 with one repetition)."""
    m, h, _ = paired_diff(a, b)
    return m, (0.0 if h is None and m is not None else h)


def claims(per_rep: Mapping[str, Mapping[int, Mapping[str, float]]],
           policy: str = 'edgent') -> List[Dict[str, object]]:
    """
    Check the claims of the module docstring for ``policy`` on one trace.

    ``per_rep[p][rep]`` = ``rep_stats`` of policy ``p`` in repetition ``rep``.
    """
    out = []
    mine = per_rep.get(policy, {})
    ot = {r: s['on_time'] for r, s in mine.items()}
    us = {r: s['useful'] for r, s in mine.items()}
    for b in BASELINES:
        if b not in per_rep:
            continue
        d_ot, h_ot = _diff(ot, {r: s['on_time'] for r, s in per_rep[b].items()})
        d_us, h_us = _diff(us, {r: s['useful'] for r, s in per_rep[b].items()})
        if d_ot is None:
            continue
        level = abs(d_ot) <= h_ot
        holds = d_ot + h_ot >= 0 and (not level or d_us + h_us >= 0)
        out.append({'claim': f'{policy} not dominated by {b}', 'holds': bool(holds),
                    'on_time_diff': round(d_ot, 4), 'on_time_hw': round(h_ot, 4),
                    'useful_diff': round(d_us, 4), 'useful_hw': round(h_us, 4),
                    'why': ('on-time rate lower beyond the interval' if d_ot + h_ot < 0 else
                            'same on-time rate, lower on-time accuracy beyond the interval'
                            if level and d_us + h_us < 0 else
                            'on-time rate level, on-time accuracy not lower' if level else
                            'on-time rate higher')})
    tb = per_rep.get('true-bandwidth')
    if tb:
        tb_ot, _ = mean_ci([s['on_time'] for s in tb.values()])
        me_ot, _ = mean_ci(list(ot.values()))
        if tb_ot is not None and tb_ot >= TARGET and me_ot is not None:
            out.append({'claim': f'{policy} >= 99 % on time where true-bandwidth is',
                        'holds': bool(me_ot >= TARGET), 'on_time': round(me_ot, 4),
                        'true_bandwidth_on_time': round(tb_ot, 4),
                        'why': f'{policy} {100 * me_ot:.1f} %, true-bandwidth '
                               f'{100 * tb_ot:.1f} %'})
    return out
