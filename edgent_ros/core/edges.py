"""
More than one edge: which edge a camera uses, when it moves, and when it moves back.

A camera is given its edges in its order of preference (``camera_node`` parameter ``edges``; the
launch files rotate one list per robot, so N robots spread over the edges). It sends its frames
to one edge at a time, the *active* one, and keeps the others *standing by*: each gets a ping (a
one-message probe) every ``ping_period_s``, and an edge that answered within ``timeout_s`` is up.

- **Failover**: when the active edge has not answered for ``timeout_s`` (the camera's
  ``edge_timeout_s``), or has left the DDS graph, the camera moves to the most preferred edge
  that is up. With none up it stays, and ``CameraLink`` runs device-only until an edge answers.
- **Back to balance**: when an edge the camera prefers to the active one has answered for
  ``hold_s`` without a gap (default: one ``timeout_s``), the camera moves back to it; an edge
  that restarts and dies again does not pull the robots to and fro.

No broker: every camera decides alone from what its edges answer (ROS 2 topics per edge,
``edgent/<edge>/tensor`` and ``edgent/<edge>/result``).
"""

import math
from typing import Dict, List, Optional, Sequence

from .validate import as_finite, as_positive

DEFAULT_PING_PERIOD_S = 1.0


def rotated(names: Sequence[str], k: int) -> List[str]:
    """Return ``names`` rotated left by ``k``: robot k's order of preference over the edges."""
    names = list(names)
    if not names:
        return names
    k %= len(names)
    return names[k:] + names[:k]


def check_edge_names(names: Sequence[str]) -> List[str]:
    """Return the edge names, stripped; raise ValueError on empty, duplicate or bad names."""
    out = [str(n).strip().strip('/') for n in names]
    for n in out:
        if not n or not all(c.isalnum() or c == '_' for c in n) or n[0].isdigit():
            raise ValueError(f'edge name {n!r}: use letters, digits and _ (a ROS name token, '
                             'not starting with a digit)')
    if len(set(out)) != len(out):
        raise ValueError(f'edge names repeat: {out}')
    return out


class EdgeSet:
    """
    The edges of one camera, in its order of preference, and the one it uses now (``active``).

    ``timeout_s``: an edge not heard from this long is down; ``ping_period_s``: how often a
    standing-by edge is pinged (at most a third of ``timeout_s``, so an edge that answers stays
    up); ``hold_s``: how long a preferred edge must have been up before the camera moves back
    (default ``timeout_s``). Times are the caller's monotonic seconds. Not thread-safe: the
    camera calls it from its executor only.
    """

    def __init__(self, names: Sequence[str], timeout_s: float,
                 ping_period_s: float = DEFAULT_PING_PERIOD_S, hold_s: Optional[float] = None):
        self.names = check_edge_names(names)
        if not self.names:
            raise ValueError('EdgeSet needs at least one edge')
        self.timeout_s = as_positive('timeout_s', timeout_s)
        self.ping_period_s = as_positive('ping_period_s', ping_period_s)
        self.hold_s = self.timeout_s if hold_s is None else as_positive('hold_s', hold_s)
        self.active = self.names[0]
        self.heard_s: Dict[str, float] = {n: -math.inf for n in self.names}
        self.up_since_s: Dict[str, Optional[float]] = {n: None for n in self.names}
        self.pinged_s: Dict[str, float] = {n: -math.inf for n in self.names}
        self.switches = 0
        self.last_switch: str = ''

    def ping_interval_s(self) -> float:
        """Return the period of a standing-by edge's pings: ``ping_period_s``, <= timeout / 3."""
        return min(self.ping_period_s, self.timeout_s / 3.0)

    def heard(self, name: str, now_s: float) -> bool:
        """Record an answer from edge ``name`` at ``now_s``; False for an edge not in the set."""
        now = as_finite('now_s', now_s)
        if name not in self.heard_s:
            return False
        if not self.is_up(name, now):
            self.up_since_s[name] = now
        self.heard_s[name] = max(self.heard_s[name], now)
        return True

    def is_up(self, name: str, now_s: float) -> bool:
        """Return whether edge ``name`` answered within ``timeout_s`` before ``now_s``."""
        return now_s - self.heard_s[name] <= self.timeout_s

    def up(self, now_s: float) -> List[str]:
        """Return the edges up at ``now_s``, in order of preference."""
        return [n for n in self.names if self.is_up(n, now_s)]

    def pings_due(self, now_s: float) -> List[str]:
        """Return the standing-by edges to ping now, and count them as pinged at ``now_s``."""
        due = [n for n in self.names if n != self.active
               and now_s - self.pinged_s[n] >= self.ping_interval_s()]
        for n in due:
            self.pinged_s[n] = now_s
        return due

    def choose(self, now_s: float, active_ok: bool) -> Optional[str]:
        """
        Return the edge to move to at ``now_s``, or None to stay on ``active``.

        ``active_ok``: the active edge answers (the camera's watchdog) and is still in the graph.
        Not ok: the most preferred other edge that is up (None with none: stay, the camera runs
        device-only meanwhile). Ok: an edge preferred to the active one, up for ``hold_s``.
        """
        now = as_finite('now_s', now_s)
        if not active_ok:
            for n in self.names:
                if n != self.active and self.is_up(n, now):
                    return n
            return None
        for n in self.names[:self.names.index(self.active)]:
            since = self.up_since_s[n]
            if self.is_up(n, now) and since is not None and now - since >= self.hold_s:
                return n
        return None

    def switch(self, name: str, why: str) -> None:
        """Make ``name`` the active edge (``why``: for the diagnostics)."""
        if name not in self.heard_s:
            raise ValueError(f'edge {name!r} is not one of {self.names}')
        if name != self.active:
            self.last_switch = f'{self.active} -> {name} ({why})'
            self.active = name
            self.switches += 1

    def status(self, now_s: float) -> Dict[str, str]:
        """Return diagnostic values: the active edge, switches, and each edge's state."""
        out = {'edge_active': self.active, 'edge_switches': str(self.switches),
               'edge_last_switch': self.last_switch or 'none'}
        for n in self.names:
            age = now_s - self.heard_s[n]
            out[f'edge:{n}'] = ('up' if self.is_up(n, now_s) else 'down') + (
                '' if math.isinf(age) else f' (heard {age:.1f} s ago)')
        return out
