"""
Configuration map (issue 10, the journal version of Edgent): bandwidth state -> (exit, split).

Offline, ``build_map`` takes historical bandwidth traces (``t_s,mbps`` CSVs), cuts the bandwidth
axis into states (bins, log-spaced, plus an outage bin), and for every state and deadline picks
the configuration that did best over the trace seconds that fall in that state: the most accurate
(exit, split) whose predicted latency (the planner's latency models at each second's bandwidth)
met the deadline on at least ``met_target`` of those seconds, else the one that met it most often.
States no trace visited get the Edgent decision at the state's lower edge (marked ``samples``
0). Online, the planner's ``map`` strategy looks the state up when the change-point detector
(``core.changepoint``) declares a new bandwidth state.

Pure logic plus JSON I/O; no rclpy. ``edgent-ros build-map`` is the CLI.
"""

from __future__ import annotations

import bisect
from dataclasses import replace
import json
import math
from pathlib import Path
from typing import Any, Dict, Sequence, Tuple

from .artifacts import ArtifactError
from .changepoint import BOCPD
from .optimizer import decide, evaluate, LINK_DOWN_BPS


MAP_FORMAT = 'edgent-config-map/1'


# state edges (Mbit/s): [0, 0.0125) is the outage state, then doubling bins up to 102.4
DEFAULT_EDGES = (0.0, 0.0125, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2,
                 102.4)


DEFAULT_MET_TARGET = 0.95


def state_of(edges: Sequence[float], mbps: float) -> int:
    """Return the index of the state (bin ``[edges[i], edges[i+1])``, last open) of ``mbps``."""
    return max(0, min(len(edges) - 1, bisect.bisect_right(list(edges), mbps) - 1))


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
