"""
Configuration map (issue 10, the journal version of Edgent): bandwidth state -> (exit, split).

Offline, ``build_map`` takes historical bandwidth traces (``t_s,mbps`` CSVs), cuts the bandwidth
axis into states (bins, log-spaced, plus an outage bin), and for every state and deadline picks
the configuration that did best over the trace seconds that fall in that state: the most accurate
(exit, split) whose predicted latency (the planner's latency models at each second's bandwidth)
met the deadline on at least ``met_target`` of those seconds, else the one that met it most often.
States no trace visited get the Edgent decision at the state's lower edge (marked ``samples``
0). Online, the planner's ``map`` strategy looks the state up when the change-point detector
(``edgent_ros.changepoint``) declares a new bandwidth state.

Pure logic plus JSON I/O; no rclpy. ``edgent-ros build-map`` is the CLI.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import json
import math
from pathlib import Path
import sys
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from .artifacts import ArtifactError

MAP_FORMAT = 'edgent-config-map/1'
# state edges (Mbit/s): [0, 0.0125) is the outage state, then doubling bins up to 102.4
DEFAULT_EDGES = (0.0, 0.0125, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2,
                 102.4)
DEFAULT_MET_TARGET = 0.95


def read_trace(path: Path) -> List[Tuple[float, float]]:
    """Return ``(seconds it holds, mbps)`` per row of a ``t_s,mbps`` trace CSV."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'{path}: trace not found')
    with open(path, newline='') as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {'t_s', 'mbps'} <= set(reader.fieldnames):
            raise ValueError(f'{path}: expected a header with t_s,mbps, got {reader.fieldnames}')
        rows = []
        for i, r in enumerate(reader, start=2):
            try:
                rows.append((float(r['t_s']), float(r['mbps'])))
            except (TypeError, ValueError):
                raise ValueError(f'{path}:{i}: not a number: {r}') from None
    if not rows:
        raise ValueError(f'{path}: no rows')
    out = []
    for k, (t, mbps) in enumerate(rows):
        if not (math.isfinite(mbps) and mbps >= 0):
            raise ValueError(f'{path}: rate must be >= 0, got {mbps} at t={t}')
        step = rows[k + 1][0] - t if k + 1 < len(rows) else (
            rows[k][0] - rows[k - 1][0] if k else 1.0)
        if step <= 0:
            raise ValueError(f'{path}: t_s must increase (row at t={t})')
        out.append((step, mbps))
    return out


def state_of(edges: Sequence[float], mbps: float) -> int:
    """Return the index of the state (bin ``[edges[i], edges[i+1])``, last open) of ``mbps``."""
    return max(0, min(len(edges) - 1, bisect.bisect_right(list(edges), mbps) - 1))


def build_map(problem, traces: Dict[str, Sequence[Tuple[float, float]]],
              deadlines_ms: Sequence[float], edges: Sequence[float] = DEFAULT_EDGES,
              met_target: float = DEFAULT_MET_TARGET) -> Dict[str, Any]:
    """
    Build the configuration map (a JSON-able dict) from ``traces`` ({name: [(s, mbps)]}).

    ``problem`` is the planner's ``EdgentProblem`` (latency models, accuracy, payloads).
    """
    from .optimizer import decide
    edges = [float(e) for e in edges]
    if len(edges) < 2 or edges[0] != 0.0 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f'edges must start at 0 and increase, got {edges}')
    if not deadlines_ms or any(not (d > 0 and math.isfinite(d)) for d in deadlines_ms):
        raise ValueError(f'deadlines must be finite ms > 0, got {deadlines_ms!r}')
    if not traces:
        raise ValueError('build_map needs at least one trace')
    t = problem._t
    seconds: List[List[Tuple[float, float]]] = [[] for _ in edges]
    for rows in traces.values():
        for w, mbps in rows:
            seconds[state_of(edges, mbps)].append((w, mbps))
    states = []
    for i, lo in enumerate(edges):
        hi = edges[i + 1] if i + 1 < len(edges) else math.inf
        samples = seconds[i]
        weight = sum(w for w, _ in samples)
        entry: Dict[str, Any] = {'lo_mbps': lo, 'hi_mbps': hi if math.isfinite(hi) else None,
                                 'seconds': round(weight, 3), 'configs': {}}
        if samples:
            ws = np.array([w for w, _ in samples])
            totals = np.stack([t.breakdown(m * 1e6, problem.overhead_ms,
                                           problem.edge_queue_ms)[2] for _, m in samples])
        for d in deadlines_ms:
            if samples:
                met = (ws[:, None] * (totals <= d)).sum(axis=0) / ws.sum()
                ok = met >= met_target
                mean_ms = (ws[:, None] * np.where(np.isfinite(totals), totals, 1e12)).sum(
                    axis=0) / ws.sum()
                if ok.any():
                    # most accurate; then met more often; then faster on average
                    key = np.lexsort((mean_ms, -met, -t.acc))
                    best = int(next(k for k in key if ok[k]))
                else:
                    key = np.lexsort((mean_ms, -t.acc, -met))
                    best = int(key[0])
                cfg = {'exit': int(t.exit_of[best]), 'split': int(t.split_of[best]),
                       'expected_accuracy': round(float(t.acc[best]), 4),
                       'deadline_met': round(float(met[best]), 4),
                       'mean_predicted_ms': round(float(mean_ms[best]), 3)}
            else:
                dec = decide(problem, lo * 1e6, d)
                cfg = {'exit': dec.exit_index, 'split': dec.split_index,
                       'expected_accuracy': round(dec.accuracy, 4), 'deadline_met': None,
                       'mean_predicted_ms': round(dec.total_ms, 3)
                       if math.isfinite(dec.total_ms) else None,
                       'source': 'model at the lower edge (no trace second here)'}
            entry['configs'][f'{float(d):g}'] = cfg
        states.append(entry)
    return {'format': MAP_FORMAT, 'edges_mbps': edges, 'deadlines_ms': [float(d) for d in
                                                                        deadlines_ms],
            'met_target': met_target, 'overhead_ms': problem.overhead_ms,
            'traces': sorted(traces), 'states': states}


class ConfigMap:
    """A loaded configuration map: ``lookup(mbps, deadline_ms) -> (exit, split)``."""

    def __init__(self, body: Dict[str, Any], source: Any = '<map>'):
        try:
            if body.get('format') != MAP_FORMAT:
                raise ValueError(f'format is {body.get("format")!r}, expected {MAP_FORMAT!r}')
            self.edges = [float(e) for e in body['edges_mbps']]
            self.deadlines = sorted(float(d) for d in body['deadlines_ms'])
            self.states = body['states']
            if len(self.states) != len(self.edges) or not self.deadlines:
                raise ValueError('one state per edge and at least one deadline expected')
            for s in self.states:
                for d in self.deadlines:
                    c = s['configs'][f'{d:g}']
                    if not (isinstance(c['exit'], int) and isinstance(c['split'], int)):
                        raise ValueError(f'bad configuration {c!r}')
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ArtifactError(f'{source}: not a configuration map ({exc})') from None
        self.source = source
        self.body = body

    @classmethod
    def load(cls, path: Path, model_id: Any = None) -> 'ConfigMap':
        """Read a map JSON (never unpickled); ArtifactError naming the file on any problem."""
        path = Path(path)
        try:
            body = json.loads(path.read_text())
        except FileNotFoundError:
            raise ArtifactError(f'{path}: configuration map not found') from None
        except (OSError, ValueError) as exc:
            raise ArtifactError(f'{path}: cannot read configuration map ({exc})') from None
        if not isinstance(body, dict):
            raise ArtifactError(f'{path}: not a configuration map (not a JSON object)')
        cmap = cls(body, path)
        if model_id is not None and body.get('model_id') != model_id:
            raise ArtifactError(f'{path}: configuration map is for model '
                                f'{body.get("model_id")!r}, not {model_id!r}')
        return cmap

    def deadline_key(self, deadline_ms: float) -> float:
        """Return the map deadline used for ``deadline_ms``: the largest <= it, else smallest."""
        below = [d for d in self.deadlines if d <= deadline_ms + 1e-9]
        return below[-1] if below else self.deadlines[0]

    def lookup(self, mbps: float, deadline_ms: float) -> Tuple[int, int, Dict[str, Any]]:
        """Return ``(exit, split, entry)`` of the state of ``mbps`` at ``deadline_ms``."""
        i = state_of(self.edges, mbps)
        c = self.states[i]['configs'][f'{self.deadline_key(deadline_ms):g}']
        return c['exit'], c['split'], c

    def state(self, mbps: float) -> int:
        """Return the state index of ``mbps``."""
        return state_of(self.edges, mbps)

    def entry(self, state: int, deadline_ms: float) -> Dict[str, Any]:
        """Return the map entry of ``state`` at ``deadline_ms`` (its map deadline)."""
        return self.states[state]['configs'][f'{self.deadline_key(deadline_ms):g}']

    def bounds(self, state: int) -> Tuple[float, float]:
        """Return the state's ``[lo, hi)`` in Mbit/s (hi inf for the last)."""
        hi = self.edges[state + 1] if state + 1 < len(self.edges) else math.inf
        return self.edges[state], hi


class MapStrategy:
    """
    The planner's ``map`` strategy: change-point detection on the bandwidth samples + the map.

    ``update(mbps)`` feeds one sample to the detector; the bandwidth *state* changes when the
    detector declares a change point whose level lies in another state, or when its level has
    stayed in another state for ``confirm`` samples (a drift). ``decide`` returns the map's
    configuration for the current state, with its latency predicted at the current estimate, unless
    the planner's calibrated model says that entry misses the deadline at the state's level (then
    the Edgent optimum at that level); no estimate (edge unreachable, link down) gives the best
    device-only configuration, as the per-sample strategy does.
    """

    def __init__(self, cmap: ConfigMap, detector: Any = None, confirm: int = 3):
        from .changepoint import BOCPD
        self.cmap = cmap
        self.detector = detector if detector is not None else BOCPD()
        self.confirm = int(confirm)
        self.reset()

    def reset(self) -> None:
        """Forget the state and the detector's history."""
        self.detector.reset()
        self.state = None
        self.level_mbps = math.nan
        self.pending = 0
        self.switches = 0
        self.change_points = 0

    def update(self, mbps: float) -> bool:
        """Feed one bandwidth sample (Mbit/s); return whether the state changed."""
        step = self.detector.update(mbps)
        self.change_points += int(step.change)
        self.level_mbps = step.level_mbps
        s = self.cmap.state(step.level_mbps)
        if self.state is None or (step.change and s != self.state):
            moved = self.state is not None
        elif s != self.state:
            self.pending += 1
            if self.pending < self.confirm:
                return False
            moved = True
        else:
            self.pending = 0
            return False
        self.state, self.pending = s, 0
        self.switches += int(moved)
        return True

    def decide(self, problem: Any, bandwidth_bps: float, deadline_ms: float,
               level_scale: float = 1.0):
        """
        Return the ``Decision`` for the current state (device-only without an estimate).

        The map's entry was chosen offline for the profiled latency model. ``problem`` is the
        planner's model now (calibrated online from measured outcomes); when the entry misses
        the deadline under it at the state's level (the detector's level x ``level_scale``, the
        planner's bandwidth correction), the map is stale for this robot and edge, and the
        decision is the Edgent optimum at that level instead. The level changes only with the
        state's samples, so this does not flap with each estimate as a per-sample check would.
        When nothing meets the deadline at the level, the faster of the entry and Edgent's
        fastest choice is taken.
        """
        from dataclasses import replace
        from .optimizer import decide, evaluate, LINK_DOWN_BPS
        if self.state is None or not bandwidth_bps >= LINK_DOWN_BPS:
            d = decide(problem, 0.0, deadline_ms)
            return replace(d, reason=f'map: no bandwidth estimate, device-only ({d.reason})')
        c = self.cmap.entry(self.state, deadline_ms)
        lo, hi = self.cmap.bounds(self.state)
        where = f'map state [{lo:g}, {hi:g}) Mbit/s (level {self.level_mbps:.3g})'
        level_bps = self.level_mbps * 1e6 * level_scale
        if math.isfinite(level_bps) and level_bps >= LINK_DOWN_BPS:
            at_level = evaluate(problem, level_bps, c['exit'], c['split'], deadline_ms)
            if not at_level.feasible:
                alt = decide(problem, level_bps, deadline_ms)
                # nothing meets the deadline at the level: Edgent's fastest choice, unless the
                # entry is faster still (a stale entry far past the deadline is never kept)
                if alt.feasible or alt.total_ms < at_level.total_ms:
                    d = evaluate(problem, bandwidth_bps, alt.exit_index, alt.split_index,
                                 deadline_ms, alt.encoding)
                    return replace(d, reason=f'{where}: entry ({c["exit"]}, {c["split"]}) '
                                             f'misses the deadline under the calibrated model; '
                                             f'Edgent at the level instead: {d.reason}')
        d = evaluate(problem, bandwidth_bps, c['exit'], c['split'], deadline_ms)
        return replace(d, reason=f'{where}: {d.reason}')


# --------------------------------------------------------------------------------------------
# CLI

def cmd_build_map(args: argparse.Namespace) -> int:
    """Run ``edgent-ros build-map``."""
    from .artifacts import load_accuracy, read_config
    from .optimizer import EdgentProblem, scale_robot
    from .regression import LatencyModels
    traces = {Path(p).name: read_trace(Path(p)) for p in args.traces}
    cfg = read_config(args.weights)
    problem = scale_robot(EdgentProblem.from_model(
        cfg, load_accuracy(args.accuracy, model_id=cfg.model_id()),
        LatencyModels.load(args.latency_models, model_id=cfg.model_id()),
        overhead_ms=args.overhead_ms), args.robot_time_scale)
    body = build_map(problem, traces, args.deadlines, met_target=args.met_target)
    body.update(model_id=cfg.model_id(), robot_time_scale=args.robot_time_scale)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(body, indent=1) + '\n')
    secs = sum(w for rows in traces.values() for w, _ in rows)
    print(f'configuration map: {len(body["states"])} states x {len(args.deadlines)} deadlines '
          f'from {len(traces)} traces ({secs:.0f} s) -> {out}')
    for s in body['states']:
        hi = '∞' if s['hi_mbps'] is None else f'{s["hi_mbps"]:g}'
        cells = '  '.join(f'{d}:{c["exit"]}/{c["split"]}'
                          + (f'({100 * c["deadline_met"]:.0f}%)' if c['deadline_met'] is not None
                             else '(model)')
                          for d, c in s['configs'].items())
        print(f'  [{s["lo_mbps"]:g}, {hi}) Mbit/s {s["seconds"]:7.0f} s   {cells}',
              file=sys.stdout)
    return 0


def add_build_map_parser(sub: Any) -> None:
    """Register ``edgent-ros build-map``."""
    p = sub.add_parser('build-map', help='configuration map (bandwidth state -> exit/split) '
                       'from bandwidth traces')
    p.add_argument('--traces', nargs='+', required=True, help='t_s,mbps trace CSVs')
    p.add_argument('--deadlines', type=float, nargs='+', metavar='MS',
                   default=[100.0, 200.0, 300.0, 400.0, 600.0, 1000.0])
    p.add_argument('--out', default='config_map.json')
    p.add_argument('--met-target', type=float, default=DEFAULT_MET_TARGET,
                   help='fraction of a state\'s seconds a configuration must meet the deadline')
    p.add_argument('--robot-time-scale', type=float, default=1.0,
                   help='robot layer times x this (as the planner\'s robot_time_scale)')
    p.add_argument('--overhead-ms', type=float, default=2.0, help='per-message link overhead')
    p.add_argument('--weights', default=None)
    p.add_argument('--accuracy', default=None)
    p.add_argument('--latency-models', default=None)
    p.set_defaults(func=cmd_build_map)
