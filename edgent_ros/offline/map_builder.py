"""
Build the configuration map (journal Edgent): bandwidth state -> exit/split, from bandwidth traces.

Offline: the map is written as JSON by ``edgent-ros build-map`` and read by ``core.config_map``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from ..core.config_map import DEFAULT_EDGES, DEFAULT_MET_TARGET, MAP_FORMAT, state_of
from ..core.optimizer import decide


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


def build_map(problem, traces: Dict[str, Sequence[Tuple[float, float]]],
              deadlines_ms: Sequence[float], edges: Sequence[float] = DEFAULT_EDGES,
              met_target: float = DEFAULT_MET_TARGET) -> Dict[str, Any]:
    """
    Build the configuration map (a JSON-able dict) from ``traces`` ({name: [(s, mbps)]}).

    ``problem`` is the planner's ``EdgentProblem`` (latency models, accuracy, payloads).
    """
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
