"""
The paired, repeated evaluation and its exhaustive oracle (issue 18): pure logic, no rclpy.

``edgent-ros sweep paired`` (``paired_session``) measures, at each bandwidth of the testbed:

* **configurations**: every (exit, split) of the planner's raw decision space, each one pinned
  (planner policy ``fixed``) for up to ``config_frames`` frames. ``OracleSearch`` orders them
  (most accurate exit first, then by predicted latency) and leaves out only what cannot change
  the oracle: a configuration whose transfer alone (payload bits minus the shaper's burst, at the
  shaped rate: a physical floor, no model) exceeds every deadline still open, and the exits below
  one that already met a deadline at >= 99 % (same top-1 order as the paper's rule). A
  configuration stops early after ``EARLY_STOP_LATE`` frames late for the largest open deadline:
  it can no longer reach 99 % there;
* **policies**: every policy in every (deadline, repetition) cell on the same frames: the camera is
  paused, the planner reset (calibration off and on) and set, the estimator left ``warmup_s``
  with probes only (longer than its 5 s staleness, so no earlier cell's transfer is in it), then
  the camera seeks to frame 0 and resumes; frame k of every policy is the same image. The policy
  order is shuffled per (bandwidth, deadline, repetition) with a fixed seed.

The oracle of a (bandwidth, deadline) cell is the most accurate configuration whose own frames
met that deadline at >= 99 % (``ORACLE_TARGET``): no policy that meets the deadline should have
a higher on-time accuracy than its top-1 (the report names any that does). Before the
configurations, every exit runs device-only and the full model edge-only for a few unrecorded
frames (``WARMUP_FRAMES``): the first frames through layers never run before are several times
slower, and a configuration measured cold is not what a policy runs later. Intervals: on-time
rates by Wilson (95 %), per-repetition means by Student t, policy differences by the paired
per-frame differences (frame k of repetition r of two policies is the same image from the same
start state).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
import random
import statistics
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ..core.optimizer import evaluate

# The report's grid: four of the sweep's log-spaced bandwidths, four deadlines, the paper's
# Edgent and its four baselines (raw tensors).
PAIRED_BANDWIDTHS_MBPS = (0.05, 0.227, 1.03, 4.69)
PAIRED_DEADLINES_MS = (100.0, 200.0, 300.0, 600.0)
PAIRED_POLICIES = ('edgent', 'device-only', 'edge-only', 'partition-only', 'exit-only')
ORACLE_TARGET = 0.99          # on-time rate a configuration needs to be the oracle
WARMUP_FRAMES = 4             # unrecorded frames per warm-up configuration
EARLY_STOP_LATE = 3           # late frames (largest open deadline) that end a configuration
Z95 = 1.959964
# Student t, two-sided 95 %, by degrees of freedom (>= 30: normal)
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060}

# (exit, split) sends the raw tensor; (exit, split, encoding) an encoded one (a JPEG frame, a
# bottleneck's maps): the oracle of an encoded decision space measures those too.
Config = Tuple


def config_name(config: Config) -> str:
    """Return ``e/s`` (raw) or ``e/s/encoding``: its name in results, ``fixed_configuration``."""
    return '/'.join(str(x) for x in config)


def frame_config(frame: Mapping[str, object], encoded: bool) -> Config:
    """Return a frame's configuration; with ``encoded``, an encoded frame's has its encoding."""
    e, s = int(frame['exit']), int(frame['split'])
    enc = str(frame.get('encoding') or 'raw')
    return (e, s, enc) if encoded and enc != 'raw' else (e, s)


def t95(df: int) -> float:
    """Return the two-sided 95 % Student t quantile for ``df`` degrees of freedom (>= 1)."""
    if df < 1:
        raise ValueError(f'degrees of freedom must be >= 1, got {df}')
    if df >= 30:
        return Z95
    return _T95[max(k for k in _T95 if k <= df)]


def mean_ci(xs: Sequence[float]) -> Tuple[Optional[float], Optional[float]]:
    """Return (mean, half-width of its 95 % t interval); half-width None below 2 values."""
    xs = [float(x) for x in xs]
    if not xs:
        return None, None
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, None
    return m, t95(len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))


def wilson(k: int, n: int) -> Tuple[Optional[float], Optional[float]]:
    """Return the 95 % Wilson score interval of ``k`` successes in ``n`` trials."""
    if n <= 0:
        return None, None
    p = k / n
    den = 1 + Z95 ** 2 / n
    mid = (p + Z95 ** 2 / (2 * n)) / den
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def policy_order(policies: Sequence[str], bandwidth_mbps: float, deadline_ms: float, rep: int,
                 seed: int) -> List[str]:
    """Return ``policies`` shuffled for one cell and repetition (the same for the same seed)."""
    out = list(policies)
    random.Random(f'{seed}:{bandwidth_mbps:g}:{deadline_ms:g}:{rep}').shuffle(out)
    return out


def transfer_floor_ms(payload_bits: float, bandwidth_bps: float, burst_bytes: int) -> float:
    """Return the least time (ms) a payload takes through a token bucket of that rate and burst."""
    if payload_bits <= 0:
        return 0.0
    if bandwidth_bps <= 0:
        return math.inf
    return max(0.0, payload_bits - 8.0 * burst_bytes) / bandwidth_bps * 1e3


def frame_latency(frame: Mapping[str, object], config: Optional[Config] = None) -> float:
    """Return a frame's end-to-end ms; inf if dropped, or run in another configuration."""
    e2e = frame.get('e2e_ms')
    if e2e is None:
        return math.inf
    if config is not None and frame_config(frame, len(config) > 2) != tuple(config):
        return math.inf   # the camera's fallback ran it: not the pinned configuration
    return float(e2e)


def on_time(frames: Sequence[Mapping[str, object]], deadline_ms: float,
            config: Optional[Config] = None) -> Tuple[int, int]:
    """Return (frames on time for ``deadline_ms``, frames) of one configuration's frames."""
    return sum(frame_latency(f, config) <= deadline_ms for f in frames), len(frames)


@dataclass
class Candidate:
    """One configuration of the decision space at one bandwidth."""

    config: Config
    accuracy: float              # test-set top-1 of its exit
    predicted_ms: float          # the planner's model at the true bandwidth (search order only)
    floor_ms: float              # transfer_floor_ms of its payload


def candidates(problem, accuracy: Dict[int, float], bandwidth_mbps: float,
               burst_bytes: int, encoded: bool = False) -> List[Candidate]:
    """
    Return every configuration of ``problem`` with its top-1, prediction and floor.

    Raw (exit, split) only, or with ``encoded`` also every encoded variant the problem has
    (``(exit, split, encoding)``, its measured top-1): the decision space of ``edgent+enc`` /
    ``edgent+bn``, so that their oracle is an upper bound too.
    """
    t = problem._t
    top1 = {(e, s, v.encoding): v.accuracy for (e, s), vs in (problem.variants or {}).items()
            for v in vs}
    out = []
    for (e, s, enc), i in sorted(t.index.items()):
        if enc != 'raw' and not encoded:
            continue
        bits = float(t.bits_k[i]) / 1e3 if t.offload[i] else 0.0
        config = (int(e), int(s)) if enc == 'raw' else (int(e), int(s), enc)
        acc = float(accuracy[int(e)]) if enc == 'raw' else float(top1[(e, s, enc)])
        out.append(Candidate(config, acc, float(evaluate(problem, bandwidth_mbps * 1e6, e, s,
                                                         encoding=enc).total_ms),
                             transfer_floor_ms(bits, bandwidth_mbps * 1e6, burst_bytes)))
    return out


@dataclass
class OracleSearch:
    """
    Which configurations to measure at one bandwidth so that every deadline's oracle is exact.

    ``next()`` returns the configuration to measure (None when done), ``record(config, frames)``
    takes its frames. A configuration is left out only when it cannot be any deadline's oracle:
    its exit is below one that already met every open deadline's target, or its transfer floor
    exceeds the largest open deadline. ``skipped`` says which and why.
    """

    candidates: Sequence[Candidate]
    deadlines: Sequence[float]
    target: float = ORACLE_TARGET
    measured: Dict[Config, List[Mapping[str, object]]] = field(default_factory=dict)
    skipped: Dict[Config, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._order = sorted(self.candidates,
                             key=lambda c: (-c.accuracy, c.predicted_ms, c.config))

    def open_deadlines(self) -> List[float]:
        """Deadlines whose oracle is not decided yet (no measured config meets them)."""
        return [d for d in self.deadlines if self.oracle(d) is None]

    def qualifies(self, config: Config, deadline_ms: float) -> bool:
        """Return whether a measured configuration met ``deadline_ms`` at the target rate."""
        k, n = on_time(self.measured[config], deadline_ms, config)
        return n > 0 and k / n >= self.target

    def oracle(self, deadline_ms: float) -> Optional[Candidate]:
        """Return the most accurate measured configuration meeting ``deadline_ms`` (or None)."""
        best = None
        for c in self._order:
            if c.config not in self.measured or not self.qualifies(c.config, deadline_ms):
                continue
            k, n = on_time(self.measured[c.config], deadline_ms, c.config)
            key = (c.accuracy, k / n, -_median_ms(self.measured[c.config]))
            if best is None or key > best[0]:
                best = (key, c)
        return None if best is None else best[1]

    def next(self) -> Optional[Candidate]:
        """Return the next configuration to measure, or None once every oracle is exact."""
        while True:
            open_dl = self.open_deadlines()
            todo = [c for c in self._order
                    if c.config not in self.measured and c.config not in self.skipped]
            if not todo:
                return None
            c = todo[0]
            if not open_dl:
                self.skipped[c.config] = 'every deadline has its oracle at a higher exit'
                continue
            # (a decided deadline's oracle is at this exit's top-1 or above: the order)
            if c.floor_ms > max(open_dl):
                self.skipped[c.config] = (f'transfer floor {c.floor_ms:.0f} ms > largest open '
                                          f'deadline {max(open_dl):g} ms')
                continue
            return c

    def stop_early(self, config: Config, frames: Sequence[Mapping[str, object]]) -> bool:
        """Return whether ``frames`` so far already rule ``config`` out for every open deadline."""
        open_dl = self.open_deadlines()
        if not open_dl:
            return True
        late = sum(frame_latency(f, config) > max(open_dl) for f in frames)
        return late >= EARLY_STOP_LATE

    def record(self, config: Config, frames: Sequence[Mapping[str, object]]) -> None:
        """Store a configuration's measured frames."""
        self.measured[tuple(config)] = list(frames)


def _median_ms(frames: Sequence[Mapping[str, object]]) -> float:
    lat = [frame_latency(f) for f in frames]
    return statistics.median(lat) if lat else math.inf


def oracle_rows(search: OracleSearch, bandwidth_mbps: float) -> List[Dict[str, object]]:
    """Return one row per deadline: the oracle configuration (or none) and its measured rate."""
    rows = []
    for dl in search.deadlines:
        o = search.oracle(dl)
        row: Dict[str, object] = {'bandwidth_mbps': bandwidth_mbps, 'deadline_ms': dl,
                                  'measured': len(search.measured),
                                  'not_measured': len(search.candidates) - len(search.measured)}
        if o is not None:
            k, n = on_time(search.measured[o.config], dl, o.config)
            lo, _ = wilson(k, n)
            row.update(oracle=config_name(o.config), oracle_top1=o.accuracy,
                       oracle_met=round(k / n, 4), oracle_frames=n, oracle_met_lo=round(lo, 4),
                       oracle_value=round(o.accuracy * k / n, 4))
        else:
            row.update(oracle='', oracle_top1=None, oracle_met=None, oracle_frames=0,
                       oracle_met_lo=None, oracle_value=0.0)
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------
# Per-cell statistics of the policies

def frame_value(frame: Mapping[str, object], deadline_ms: float,
                accuracy: Mapping[int, float],
                enc_accuracy: Optional[Mapping[Tuple[int, int, str], float]] = None) -> float:
    """
    Return a frame's on-time accuracy: its exit's test-set top-1 if on time, else 0.

    A frame sent encoded (``encoding`` not raw: a JPEG frame, a bottleneck's maps) counts the
    top-1 measured for that (exit, split, encoding) in ``enc_accuracy`` when it has one.
    """
    if frame_latency(frame) > deadline_ms:
        return 0.0
    config = frame_config(frame, True)
    if len(config) > 2 and enc_accuracy and config in enc_accuracy:
        return float(enc_accuracy[config])
    return float(accuracy[config[0]])


def paired_diff(a: Mapping[Tuple[int, int], float], b: Mapping[Tuple[int, int], float]
                ) -> Tuple[Optional[float], Optional[float], int]:
    """
    Return (mean, 95 % half-width, n) of a - b over the frames both have.

    Keys are (repetition, frame index): the same image from the same start state.
    """
    keys = sorted(set(a) & set(b))
    d = [a[k] - b[k] for k in keys]
    m, h = mean_ci(d)
    if h is None and len(d) >= 2:
        h = 0.0
    return m, h, len(d)


def grid_gain(cells: Mapping[object, Mapping[str, Mapping[str, object]]], policy: str,
              baseline: str) -> Tuple[Optional[float], Optional[float], int, int]:
    """
    Return (mean, 95 % half-width, repetitions, cells) of ``policy`` - ``baseline``.

    The on-time accuracy of each is averaged over the cells both ran, per repetition (each
    cell weighs the same); the difference is paired by repetition (same frames, same start
    state). ``cells``: ``cell_stats`` per cell.
    """
    per: Dict[int, Dict[str, List[float]]] = {}
    n_cells = 0
    for by in cells.values():
        if policy not in by or baseline not in by:
            continue
        n_cells += 1
        for p in (policy, baseline):
            reps: Dict[int, List[float]] = {}
            for (r, _), v in by[p]['values'].items():
                reps.setdefault(int(r), []).append(float(v))
            for r, vs in reps.items():
                per.setdefault(r, {}).setdefault(p, []).append(statistics.fmean(vs))
    d = [statistics.fmean(x[policy]) - statistics.fmean(x[baseline]) for _, x in sorted(
        per.items()) if len(x.get(policy, ())) == len(x.get(baseline, ())) == n_cells]
    m, h = mean_ci(d)
    return m, h, len(d), n_cells


def cell_stats(frames: Iterable[Mapping[str, object]], accuracy: Mapping[int, float],
               deadline_ms: float,
               enc_accuracy: Optional[Mapping[Tuple[int, int, str], float]] = None
               ) -> Dict[str, Dict[str, object]]:
    """
    Return per policy: mean on-time accuracy and on-time rate with 95 % intervals.

    ``frames``: per-frame rows of one (bandwidth, deadline) cell with ``policy``, ``rep``,
    ``frame_index``, ``exit``, ``split``, ``e2e_ms`` (and ``encoding``: see ``frame_value``).
    The on-time rate's interval is Wilson's over all frames; the accuracy's is Student t over
    the repetitions' means.
    """
    by: Dict[str, Dict[Tuple[int, int], Mapping[str, object]]] = {}
    for f in frames:
        by.setdefault(str(f['policy']), {})[(int(f['rep']), int(f['frame_index']))] = f
    out: Dict[str, Dict[str, object]] = {}
    for pol, fs in by.items():
        vals = {k: frame_value(f, deadline_ms, accuracy, enc_accuracy) for k, f in fs.items()}
        met = sum(frame_latency(f) <= deadline_ms for f in fs.values())
        reps = sorted({k[0] for k in fs})
        rep_means = [statistics.fmean(v for k, v in vals.items() if k[0] == r) for r in reps]
        m, h = mean_ci(rep_means)
        lo, hi = wilson(met, len(fs))
        out[pol] = {'frames': len(fs), 'reps': len(reps), 'value': m, 'value_ci': h,
                    'met': met / len(fs), 'met_lo': lo, 'met_hi': hi, 'values': vals,
                    'mid_cut': sum(0 < int(f['split']) < int(f.get('branch_len') or 10 ** 9)
                                   and f.get('e2e_ms') is not None for f in fs.values())}
    return out


def meets(stats: Mapping[str, object], target: float = ORACLE_TARGET) -> bool:
    """Return whether a policy meets the deadline: the target is inside or below its interval."""
    return stats['met_hi'] is not None and stats['met_hi'] >= target


PAPER_BASELINES = ('device-only', 'edge-only', 'partition-only', 'exit-only')


def claim_roles(policies: Sequence[str]) -> Tuple[Optional[str], Tuple[str, ...]]:
    """
    Return ``(edgent, baselines)`` for the claims of a run of ``policies``.

    Edgent is ``edgent`` when it ran, else the Edgent variant with the widest decision space
    that did (``edgent+bn``, then ``edgent+enc``; None when none did); the baselines are the
    paper's four that ran, and for a variant the narrower variants that ran (``edgent+bn``
    against ``edgent+enc``).
    """
    order = ('edgent', 'edgent+bn', 'edgent+enc')
    edgent = next((p for p in order if p in policies), None)
    narrower = order[order.index(edgent) + 1:] if edgent and edgent != 'edgent' else ()
    return edgent, tuple(p for p in PAPER_BASELINES + narrower if p in policies)


def check_claims(cells: Mapping[Tuple[float, float], Mapping[str, Mapping[str, object]]],
                 edgent: str = 'edgent',
                 baselines: Sequence[str] = PAPER_BASELINES) -> List[Dict[str, str]]:
    """
    Check the paper's qualitative claims against per-cell statistics; one verdict each.

    ``cells[(bandwidth, deadline)][policy]``: ``cell_stats`` entries. Claims: (1) at the
    tightest deadline no method meets it; (2) as the deadline loosens, Edgent meets it no later
    than any baseline; (3) where Edgent meets it, no baseline has a higher on-time accuracy
    (paired difference's interval entirely above Edgent's).
    """
    bws = sorted({bw for bw, _ in cells})
    dls = sorted({dl for _, dl in cells})
    out = []
    tight = dls[0]
    met_any = [(bw, p) for bw in bws for p, s in cells.get((bw, tight), {}).items()
               if meets(s)]
    held = [bw for bw in bws if not any(b == bw for b, _ in met_any)]
    out.append({'claim': f'at the tightest deadline ({tight:g} ms) no method meets it',
                'verdict': 'holds' if not met_any else 'does not hold',
                'detail': 'no policy meets it at any bandwidth' if not met_any else
                (f'holds at {", ".join(f"{b:g}" for b in held)} Mbit/s; ' if held else '')
                + 'met by ' + ', '.join(f'{p} at {bw:g} Mbit/s' for bw, p in met_any)})
    first_bad = []
    for bw in bws:
        def first(p: str) -> float:
            return next((dl for dl in dls if p in cells.get((bw, dl), {})
                         and meets(cells[(bw, dl)][p])), math.inf)
        e = first(edgent)
        for b in baselines:
            if first(b) < e:
                first_bad.append(f'{b} meets {first(b):g} ms at {bw:g} Mbit/s, Edgent '
                                 + (f'only {e:g} ms' if math.isfinite(e) else 'at none'))
    out.append({'claim': 'as the deadline loosens, Edgent meets it first (no later than any '
                         'baseline)',
                'verdict': 'holds' if not first_bad else 'does not hold',
                'detail': '; '.join(first_bad) or f'at each of {len(bws)} bandwidths'})
    worse = []
    n_met = 0
    for (bw, dl), by in sorted(cells.items()):
        if edgent not in by or not meets(by[edgent]):
            continue
        n_met += 1
        for b in baselines:
            if b not in by:
                continue
            m, h, n = paired_diff(by[b]['values'], by[edgent]['values'])
            if m is not None and h is not None and m - h > 0:
                worse.append(f'{b} +{m * 100:.1f} +- {h * 100:.1f} pt at {bw:g} Mbit/s, '
                             f'{dl:g} ms')
    out.append({'claim': 'where Edgent meets the deadline, it has the highest on-time accuracy',
                'verdict': 'does not hold' if worse else 'holds' if n_met else 'not tested',
                'detail': '; '.join(worse) or (f'in all {n_met} cells Edgent meets, no baseline '
                                               'is higher beyond the paired interval' if n_met
                                               else 'Edgent meets the deadline in no cell')})
    if edgent != 'edgent':
        for c in out:
            c['claim'] = c['claim'].replace('Edgent', f'Edgent ({edgent})', 1)
    return out
