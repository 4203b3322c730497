"""
A trace-driven simulation of the live loop, for tuning the estimator and planner (issue 17).

The real ``RobustBandwidthEstimator`` and ``Planner`` (pure logic) run against a bandwidth trace
played back second by second; everything that needs a network is modelled:

- frames go one after another (the camera's closed loop): captured when the previous one ended,
  the robot's layers take the problem's robot time, an offloaded frame's wire bytes cross the
  link at the trace's rate of each second it spans (an outage holds it; after
  ``RESULT_TIMEOUT_S`` it is lost), the edge adds its time;
- measurement noise: each transfer takes log-normally longer or shorter (``link_noise``) and
  with probability ``hiccup_p`` a result is held up by 20-200 ms of CPU contention (what the
  loopback runs show; the frame's latency and the estimator's sample both carry it);
- when the link carries no frames for ``probe_after_s`` the camera's probe pair measures the
  current rate; link reports reach the planner every 0.5 s; after ``EDGE_TIMEOUT_S`` without an
  answer the edge counts as unreachable (device-only).

Scores: ``on_time``, the share of frames on time, and ``useful``, the on-time accuracy over
time: each on-time frame's top-1 weighted by the time until the next capture, over the trace's
length (a frame-weighted mean would favour a policy that stalls on a bad link: it produces few,
late frames there, while one that adapts produces many on-time ones of a lower exit).

Used by ``tune`` (``edgent-ros sweep tune``): a grid of estimator and hysteresis settings
scored by ``useful`` with k-fold cross-validation over the tuning traces only. Deterministic
for a seed. No rclpy, no torch.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass
import itertools
import math
from pathlib import Path
import random
import statistics
from typing import Dict, List, Optional, Sequence, Tuple

from ..core.link import (BandwidthEstimator, camera_estimator, read_transfer_log,
                         replay_transfers, wire_bytes)
from ..core.optimizer import EdgentProblem
from ..core.planner import LinkReport, Planner

RESULT_TIMEOUT_S = 2.0
EDGE_TIMEOUT_S = 3.0
REPORT_EVERY_S = 0.5
PROBE_BYTES = 3072


@dataclass(frozen=True)
class Settings:
    """The tunable settings: estimator window, change test, and the planner's hysteresis."""

    window: int = 12
    change_k: float = 3.0
    drop_confirm: int = 2
    quantile: float = 0.5
    rel_change: float = 0.2
    min_dwell_s: float = 2.0

    def estimator(self) -> Dict[str, float]:
        """Return the ``RobustBandwidthEstimator`` keyword arguments of these settings."""
        return {'window': self.window, 'change_k': self.change_k,
                'drop_confirm': self.drop_confirm, 'quantile': self.quantile}


GRID = {'window': (12, 24), 'quantile': (0.5, 0.75, 0.9), 'drop_confirm': (1, 2, 3),
        'min_dwell_s': (0.0, 2.0)}
# The recorded loopback transfer logs (bench/record_transfer_logs.py): quiet, a busy loop on the
# edge's core, one per core. A setting is admissible when, replayed through each, >= 99 % of its
# estimates (after the 5th) are within 2x of the quiet log's median sample rate.
STABILITY_TARGET = 0.99
STABILITY_FACTOR = 2.0
LOGS = ('loopback_none', 'loopback_edge', 'loopback_all')
LOGS_DIR = Path(__file__).resolve().parents[1] / 'artifacts' / 'transfer_logs'


class Link:
    """A link whose rate (Mbit/s) is ``rates[i]`` during second ``i`` (then the last one)."""

    def __init__(self, rates: Sequence[float]):
        self.rates = [max(0.0, float(r)) for r in rates]
        self.cum = [0.0]                      # bits the link can carry by second i
        for r in self.rates:
            self.cum.append(self.cum[-1] + r * 1e6)

    def rate(self, t: float) -> float:
        """Return the link's bit rate at time ``t`` (s)."""
        i = min(max(int(t), 0), len(self.rates) - 1)
        return self.rates[i] * 1e6

    def _bits_by(self, t: float) -> float:
        i = int(t)
        if i >= len(self.rates):
            return self.cum[-1] + (t - len(self.rates)) * self.rates[-1] * 1e6
        return self.cum[i] + (t - i) * self.rates[i] * 1e6

    def finish(self, t: float, bits: float) -> float:
        """Return when ``bits`` sent from ``t`` have crossed (inf if never)."""
        goal = self._bits_by(t) + bits
        if goal <= self.cum[-1]:
            i = bisect.bisect_left(self.cum, goal) - 1
            i = max(i, int(t))
            while i < len(self.rates) and self.cum[i + 1] < goal:
                i += 1
            if i < len(self.rates):
                r = self.rates[i] * 1e6
                return i + (goal - self.cum[i]) / r if r > 0 else math.inf
        last = self.rates[-1] * 1e6
        return len(self.rates) + (goal - self.cum[-1]) / last if last > 0 else math.inf


def compared_estimators() -> Dict[str, object]:
    """
    Return factories of the two estimators BENCHMARKS compares, by name.

    The camera's before issue 17 (byte-weighted mean, ``drop_confirm`` 2) and the tuned one
    (``link.camera_estimator``), both as ``camera_node`` configures them.
    """
    return {'before (byte-weighted mean, drop_confirm 2)':
            lambda: BandwidthEstimator(min_bytes=2048, overhead_s=0.0, probe_after_s=1.0,
                                       stale_after_s=5.0, drop_confirm=2, slow_transfer_s=0.04),
            'tuned (quantile / MAD of log-rates)': camera_estimator}


def stability(settings: Settings, logs: Dict[str, list]) -> Dict[str, float]:
    """
    Return, per log, the share of estimates within ``STABILITY_FACTOR`` of the reference.

    ``logs``: name -> rows (``link.read_transfer_log``); the reference is the median sample
    rate of ``loopback_none`` (the quiet path), the first 5 estimates are left out.
    """
    ref = statistics.median(8.0 * r[2] / r[3] for r in logs['loopback_none'])
    out = {}
    for name, rows in logs.items():
        ups = replay_transfers(camera_estimator(**settings.estimator()), rows)[5:]
        ok = sum(1 for _, e in ups if ref / STABILITY_FACTOR <= e.bps <= ref * STABILITY_FACTOR)
        out[name] = round(ok / len(ups), 4) if ups else 0.0
    return out


def load_logs(logs_dir: Path = LOGS_DIR) -> Dict[str, list]:
    """Return the recorded loopback transfer logs (``LOGS``) by name."""
    return {n: read_transfer_log(Path(logs_dir) / f'{n}.csv') for n in LOGS}


def simulate(problem: EdgentProblem, rates: Sequence[float], deadline_ms: float,
             policy: str = 'edgent', settings: Settings = Settings(),
             decision_rule: str = 'chance', seed: int = 0, link_noise: float = 0.1,
             hiccup_p: float = 0.02, probe_after_s: float = 1.0) -> Dict[str, float]:
    """
    Play ``rates`` (Mbit/s per second) once; return frames, on-time rate and on-time accuracy.

    ``policy``: a planner policy (``true-bandwidth`` plans with the trace's rate of the moment).
    """
    rng = random.Random(seed)
    link = Link(rates)
    end = float(len(rates))
    est = camera_estimator(probe_after_s, **settings.estimator())
    planner = Planner(problem, deadline_ms=deadline_ms, policy=policy, calibration=False,
                      rel_change=settings.rel_change, min_dwell_s=settings.min_dwell_s,
                      decision_rule=decision_rule, link_timeout_s=3.0)
    t = 0.0
    heard = 0.0                   # the edge's last answer
    next_report = 0.0
    last_send = -math.inf
    frames = on_time = 0
    useful = 0.0
    tab = problem._t
    last_add = 0.0                # the estimator takes samples in time order

    def sample(now: float, nbytes: int, seconds: float, source: str) -> None:
        nonlocal last_add
        last_add = max(last_add, now)
        est.add_transfer(last_add, nbytes, seconds, source=source)

    def report(now: float) -> None:
        nonlocal next_report
        while next_report <= now:
            reachable = next_report - heard <= EDGE_TIMEOUT_S
            e = est.estimate(next_report)
            if policy == 'true-bandwidth':
                planner.true_bandwidth_bps = link.rate(next_report)
            planner.add_link(next_report, LinkReport(
                e.bps if (e and reachable) else 0.0, reachable,
                bandwidth_uncertainty=e.uncertainty if e else 1.0))
            planner.plan(next_report, 'link quality')
            next_report += REPORT_EVERY_S

    def noisy(seconds: float) -> float:
        held = rng.uniform(0.02, 0.2) if rng.random() < hiccup_p else 0.0
        return seconds * math.exp(rng.gauss(0.0, link_noise)) + held

    report(0.0)
    while t < end:
        d = planner.decision
        i = tab.index[(d.exit_index, d.split_index, d.encoding)]
        device_s = float(tab.device_ms[i]) / 1e3
        if not tab.offload[i]:
            done = t + device_s
            if est.needs_probe(t, 0, last_send):      # the link is free: a probe pair
                bits = 8.0 * wire_bytes(PROBE_BYTES)
                arrive = link.finish(t, 2 * bits)
                if arrive - t <= EDGE_TIMEOUT_S:
                    report(t + min(arrive - t, EDGE_TIMEOUT_S))
                    heard = max(heard, arrive)
                    sample(arrive, wire_bytes(PROBE_BYTES), noisy(bits / max(link.rate(t), 1.0)),
                           'probe')
            latency = device_s
        else:
            send = t + device_s
            bits = 8.0 * float(tab.bits_k[i]) / 8000.0
            arrive = link.finish(send, bits)
            transfer = noisy(arrive - send) if math.isfinite(arrive) else math.inf
            edge_s = float(tab.edge_ms[i]) / 1e3
            latency = device_s + transfer + edge_s + problem.overhead_ms / 1e3
            last_send = send
            if latency - device_s > RESULT_TIMEOUT_S:
                done = send + RESULT_TIMEOUT_S
                latency = math.inf
            else:
                done = t + latency
                report(done)
                heard = done
                sample(done, wire_bytes(int(tab.link_bytes[i])), transfer, 'passive')
        frames += 1
        report(done)
        nxt = max(done, t + 0.05)          # at most the camera's 20 fps
        if latency * 1e3 <= deadline_ms:
            on_time += 1
            useful += float(tab.acc[i]) * (min(nxt, end) - t)
        t = nxt
    return {'frames': frames, 'on_time': on_time / frames if frames else 0.0,
            'useful': useful / end}


def score(problem: EdgentProblem, traces: Dict[str, List[float]], deadline_ms: float,
          settings: Settings, seed: int = 0) -> Dict[str, float]:
    """Return each trace's on-time accuracy under ``settings`` (policy edgent)."""
    return {name: simulate(problem, rates, deadline_ms, 'edgent', settings,
                           seed=seed)['useful'] for name, rates in traces.items()}


def grid(spec: Optional[Dict[str, Sequence]] = None) -> List[Settings]:
    """Return the settings of every combination in ``spec`` (``GRID`` by default)."""
    spec = spec or GRID
    keys = list(spec)
    return [Settings(**dict(Settings().__dict__, **dict(zip(keys, vals))))
            for vals in itertools.product(*(spec[k] for k in keys))]


def tune(problem: EdgentProblem, traces: Dict[str, List[float]], deadline_ms: float,
         folds: int = 4, spec: Optional[Dict[str, Sequence]] = None, seed: int = 0,
         progress=None, logs: Optional[Dict[str, list]] = None) -> Dict[str, object]:
    """
    Choose settings by k-fold cross-validation over ``traces`` (the tuning split only).

    Every grid point is scored on every trace once; a point is admissible when it passes the
    loopback stability check on ``logs`` (``stability``; every point without logs). For each
    fold the admissible point with the best mean on the other folds is chosen and scored on the
    held fold; the final choice is the admissible point with the best mean over all tuning
    traces. Returns the choice, per-fold choices and scores, and the table.
    """
    names = sorted(traces)
    table: List[Tuple[Settings, Dict[str, float], Dict[str, float]]] = []
    for s in grid(spec):
        stab = stability(s, logs) if logs else {}
        table.append((s, score(problem, traces, deadline_ms, s, seed), stab))
        if progress is not None:
            progress(1)

    def admissible(stab: Dict[str, float]) -> bool:
        return all(v >= STABILITY_TARGET for v in stab.values())
    pool = [r for r in table if admissible(r[2])]
    if not pool:
        raise ValueError('no setting of the grid keeps the estimate within '
                         f'{STABILITY_FACTOR:g}x on {STABILITY_TARGET:.0%} of the loopback logs')
    fold_of = {n: k % folds for k, n in enumerate(names)}
    per_fold = []
    for k in range(folds):
        train = [n for n in names if fold_of[n] != k]
        test = [n for n in names if fold_of[n] == k]
        if not test or not train:
            continue
        best, sc, _ = max(pool, key=lambda r: sum(r[1][n] for n in train) / len(train))
        per_fold.append({'fold': k, 'test': test, 'chosen': asdict(best),
                         'train_score': round(sum(sc[n] for n in train) / len(train), 4),
                         'test_score': round(sum(sc[n] for n in test) / len(test), 4)})
    best, sc, stab = max(pool, key=lambda r: sum(r[1].values()) / len(names))
    top, top_sc, _ = max(table, key=lambda r: sum(r[1].values()) / len(names))
    return {'chosen': asdict(best), 'score': round(sum(sc.values()) / len(names), 4),
            'stability': stab, 'admissible': len(pool),
            'best_without_stability': dict(asdict(top),
                                           score=round(sum(top_sc.values()) / len(names), 4)),
            'folds': per_fold,
            'table': [dict(asdict(s), score=round(sum(v.values()) / len(names), 4),
                           admissible=admissible(st),
                           **{f'stability:{n}': x for n, x in st.items()},
                           **{n: round(x, 4) for n, x in v.items()}) for s, v, st in table]}


def estimator_comparison(logs: Dict[str, list], estimators: Dict[str, object]) -> Dict:
    """
    Replay every log through every estimator (fresh, from ``estimators[name]()``); summarise.

    Per log and estimator: estimates after the 5th, the share within ``STABILITY_FACTOR`` of the
    quiet log's median sample rate, the lowest and the median estimate (Mbit/s).
    """
    ref = statistics.median(8.0 * r[2] / r[3] for r in logs['loopback_none'])
    body = {'reference_mbps': round(ref / 1e6, 3), 'logs': {}}
    for name, rows in logs.items():
        body['logs'][name] = {'samples': len(rows)}
        for est_name, make in estimators.items():
            bps = [e.bps for _, e in replay_transfers(make(), rows)[5:]]
            ok = sum(1 for b in bps if ref / STABILITY_FACTOR <= b <= ref * STABILITY_FACTOR)
            body['logs'][name][est_name] = {
                'updates': len(bps), 'within_2x': round(ok / len(bps), 4),
                'min_mbps': round(min(bps) / 1e6, 3),
                'median_mbps': round(statistics.median(bps) / 1e6, 3)}
    return body


def comparison_markdown(body: Dict) -> str:
    """Return the table of ``estimator_comparison`` (the block BENCHMARKS quotes)."""
    lines = [f'Reference: the quiet log\'s median sample rate, {body["reference_mbps"]:g} Mbit/s.',
             '', '| log | estimator | estimates | within 2x | lowest (Mbit/s) | median (Mbit/s) |',
             '|---|---|---|---|---|---|']
    for name, per in body['logs'].items():
        for est_name, r in per.items():
            if est_name == 'samples':
                continue
            lines.append(f'| {name} ({per["samples"]} samples) | {est_name} | {r["updates"]} | '
                         f'{100 * r["within_2x"]:.1f} % | {r["min_mbps"]:g} | '
                         f'{r["median_mbps"]:g} |')
    return '\n'.join(lines) + '\n'


SIM_POLICIES = ('edgent', 'edgent-point', 'true-bandwidth', 'device-only', 'edge-only',
                'exit-only')


def simulate_policies(problem: EdgentProblem, traces: Dict[str, List[float]],
                      deadline_ms: float, settings: Settings, seeds: Sequence[int] = (0, 1, 2),
                      policies: Sequence[str] = SIM_POLICIES) -> List[Dict[str, object]]:
    """
    Simulate every policy on every trace with each seed (the same seed: the same noise draws).

    ``edgent-point`` is the Edgent policy with ``decision_rule point``. Returns one row per
    (trace, policy, seed): frames, on-time rate, on-time accuracy over time.
    """
    rows = []
    for name, rates in sorted(traces.items()):
        for p in policies:
            for seed in seeds:
                out = simulate(problem, rates, deadline_ms,
                               'edgent' if p == 'edgent-point' else p, settings,
                               decision_rule='point' if p == 'edgent-point' else 'chance',
                               seed=seed)
                rows.append({'trace': name, 'policy': p, 'seed': seed,
                             'frames': out['frames'], 'on_time': round(out['on_time'], 4),
                             'useful': round(out['useful'], 4)})
    return rows
