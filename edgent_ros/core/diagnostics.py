"""
Diagnostic levels, and the recent-window event counts every node grades its status on.

A status graded on counters since start stays WARN forever after one refused frame. Every node
instead grades on what happened in the last ``window_s`` seconds (``RecentCounts``) and on its
state now (edge reachable, decision feasible, ...); counters since start are still listed among
the status's values, where they are useful, but never decide the level.

``Level`` has the values of ``diagnostic_msgs/DiagnosticStatus`` (OK 0, WARN 1, ERROR 2,
STALE 3); the nodes convert it to the message's byte. The ``*_findings`` helpers turn a node's
recent counts and state into ``(level, reason)`` findings, ``grade`` picks the worst.

Times are seconds on one monotonic clock, passed in; nothing here imports rclpy.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
import enum
import math
import threading
from typing import Deque, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .validate import as_finite, as_positive

DEFAULT_WINDOW_S = 10.0   # the nodes' diagnostics_window_s default
# RecentCounts merges events into this many buckets per window: memory stays bounded whatever
# the event rate, and an event is forgotten at most window_s / BUCKETS early.
BUCKETS = 100
# viz: below this share of recent classified frames meeting the deadline, WARN
MIN_DEADLINE_MET_RATE = 0.9


class Level(enum.IntEnum):
    """A diagnostic level; the values are ``diagnostic_msgs/DiagnosticStatus``'s."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3


Finding = Tuple[Level, str]   # (level, why): a problem seen now or in the recent window


class RecentCounts:
    """
    Counts of named events within the last ``window_s`` seconds (thread-safe).

    ``add(kind, now_s)`` records an event; ``counts(now_s)`` returns how many of each kind
    happened in ``(now_s - window_s, now_s]``. Events are merged into buckets of
    ``window_s / BUCKETS`` (memory is bounded by the bucket count, not the event rate); a bucket
    is forgotten once its first event is more than ``window_s`` old. ``window_s`` may change
    (a parameter); the new window applies from the next call.
    """

    def __init__(self, window_s: float = DEFAULT_WINDOW_S):
        self._lock = threading.Lock()
        self._buckets: Deque[Tuple[float, Counter]] = deque()
        self.window_s = window_s

    @property
    def window_s(self) -> float:
        """Length of the window (s)."""
        return self._window_s

    @window_s.setter
    def window_s(self, value: float) -> None:
        self._window_s = as_positive('window_s', value)

    def add(self, kind: str, now_s: float, n: int = 1) -> None:
        """Record ``n`` events of ``kind`` at ``now_s`` (s); ``n`` <= 0 records nothing."""
        now_s = as_finite('now_s', now_s)
        if n <= 0:
            return
        with self._lock:
            self._prune(now_s)
            # an event read from the clock before the newest bucket began (another thread)
            # joins that bucket: it is counted, for at most one bucket longer
            if self._buckets and now_s - self._buckets[-1][0] < self._window_s / BUCKETS:
                self._buckets[-1][1][str(kind)] += int(n)
            else:
                self._buckets.append((now_s, Counter({str(kind): int(n)})))

    def counts(self, now_s: float) -> Dict[str, int]:
        """Return ``{kind: events in the window ending at now_s}`` (kinds with none left out)."""
        now_s = as_finite('now_s', now_s)
        with self._lock:
            self._prune(now_s)
            total: Counter = Counter()
            for _, c in self._buckets:
                total.update(c)
            return dict(total)

    def total(self, now_s: float, prefixes: Sequence[str] = ('',)) -> int:
        """Return how many events in the window have a kind starting with one of ``prefixes``."""
        return count_of(self.counts(now_s), prefixes)

    def clear(self) -> None:
        """Forget every event."""
        with self._lock:
            self._buckets.clear()

    def _prune(self, now_s: float) -> None:
        while self._buckets and now_s - self._buckets[0][0] > self._window_s:
            self._buckets.popleft()


def count_of(counts: Mapping[str, int], prefixes: Sequence[str]) -> int:
    """Return the sum of ``counts`` whose key starts with one of ``prefixes``."""
    return sum(v for k, v in counts.items() if k.startswith(tuple(prefixes)))


def per_reason(counts: Mapping[str, int], prefix: str) -> str:
    """Return ``'a 2, b 1'`` for the keys ``prefix + a`` ... of ``counts``, most frequent first."""
    items = [(k[len(prefix):], v) for k, v in counts.items() if k.startswith(prefix) and v > 0]
    return ', '.join(f'{k} {v}' for k, v in sorted(items, key=lambda kv: (-kv[1], kv[0])))


def grade(findings: Iterable[Finding]) -> Tuple[Level, List[str]]:
    """
    Return the worst level of ``findings`` (OK with none) and their reasons, worst first.

    Findings at level OK are ignored (a helper may return them to say "looked, all fine").
    """
    found = sorted(((Level(lv), why) for lv, why in findings if lv > Level.OK),
                   key=lambda f: -f[0])
    return (found[0][0] if found else Level.OK), [why for _, why in found]


def message(summary: str, reasons: Sequence[str]) -> str:
    """Return the status message: ``summary``, then the reasons for a level above OK."""
    return summary + ''.join(f'; {r}' for r in reasons)


# -- per node ------------------------------------------------------------------------------------

def edge_findings(recent: Mapping[str, int], window_s: float) -> List[Finding]:
    """
    Grade the edge on its recent events (``refused:<reason>``, ``lost:dds``, ``incompatible_qos``).

    WARN: frames refused or lost in transport in the window; ERROR: a tensor publisher with an
    incompatible QoS appeared in the window (its frames never arrive).
    """
    out: List[Finding] = []
    refused = count_of(recent, ('refused:',))
    if refused:
        out.append((Level.WARN, f'{refused} frames refused in the last {window_s:g} s '
                                f'({per_reason(recent, "refused:")})'))
    lost = recent.get('lost:dds', 0)
    if lost:
        out.append((Level.WARN, f'{lost} tensors lost in transport in the last {window_s:g} s'))
    if recent.get('incompatible_qos', 0):
        out.append((Level.ERROR, 'a tensor publisher with an incompatible QoS appeared in the '
                                 f'last {window_s:g} s: its frames never arrive'))
    return out


# outcomes that mean the edge failed a frame (link_busy / robot_busy are pacing, by design)
CAMERA_FAILURES = ('refused:', 'dropped:edge_timeout')


def camera_findings(reachable: bool, fallback_active: bool, recent: Mapping[str, int],
                    window_s: float) -> List[Finding]:
    """
    Grade the camera on the edge's reachability now and on its recent outcomes.

    WARN: the edge is unreachable (device-only fallback), or frames were refused by the edge or
    timed out waiting for it in the window. Pacing drops (``link_busy``, ``robot_busy``) are the
    design working, not a fault.
    """
    out: List[Finding] = []
    if not reachable or fallback_active:
        out.append((Level.WARN, 'edge unreachable: device-only fallback'))
    failed = {k: v for k, v in recent.items() if k.startswith(CAMERA_FAILURES)}
    if sum(failed.values()):
        out.append((Level.WARN, f'{sum(failed.values())} frames refused by or lost to the edge '
                                f'in the last {window_s:g} s ({per_reason(failed, "")})'))
    return out


def deadline_findings(met: int, missed: int, window_s: float,
                      min_rate: float = MIN_DEADLINE_MET_RATE) -> List[Finding]:
    """WARN when fewer than ``min_rate`` of the window's classified frames met the deadline."""
    n = int(met) + int(missed)
    if n and met / n < min_rate:
        return [(Level.WARN, f'deadline met on {100 * met / n:.0f} % of the {n} frames of the '
                             f'last {window_s:g} s')]
    return []


PUSH_FAILURES = ('push_failed:', 'push_timeout:')


@dataclass(frozen=True)
class PlannerHealth:
    """
    What the planner's level is decided from.

    ``feasible``: the decision in force meets the deadline (None: no decision yet);
    ``link_age_s``: since the newest link-quality estimate (None: none heard yet);
    ``link_needed``: the policy plans with the estimate (not device-only / true-bandwidth);
    ``camera_reachable``: the camera's parameter services are discovered; ``recent``: the
    window's push events, ``push_ok:<node>``, ``push_failed:<node>`` (refused or error) and
    ``push_timeout:<node>``; ``camera``: the camera node's name; ``camera_applied``: the
    camera has acknowledged at least one parameter push since the planner started.
    """

    feasible: Optional[bool]
    link_age_s: Optional[float]
    link_timeout_s: float
    link_needed: bool
    camera_reachable: bool
    camera: str
    recent: Mapping[str, int]
    window_s: float
    camera_applied: bool = True


def planner_findings(h: PlannerHealth) -> List[Finding]:
    """
    Grade the planner.

    ERROR: the camera cannot be reached at all (no parameter services, or every set request in
    the window timed out). WARN: the decision misses the deadline, the link estimate is stale
    (older than ``link_timeout_s``: the planner runs device-only), a parameter push was
    refused, failed or timed out in the window, or the camera is reachable but has not yet
    applied any decision (the first push still in flight).
    """
    out: List[Finding] = []
    cam_ok = h.recent.get(f'push_ok:{h.camera}', 0)
    cam_timeouts = h.recent.get(f'push_timeout:{h.camera}', 0)
    if not h.camera_reachable:
        out.append((Level.ERROR, f'{h.camera} not reachable (no parameter services)'))
    elif cam_timeouts and not cam_ok:
        out.append((Level.ERROR, f'{h.camera} answered none of {cam_timeouts} parameter '
                                 f'requests in the last {h.window_s:g} s'))
    elif h.feasible is not None and not h.camera_applied:
        out.append((Level.WARN, f'{h.camera} has not applied a decision yet'))
    if h.feasible is False:
        out.append((Level.WARN, 'no configuration meets the deadline'))
    if h.link_needed:
        if h.link_age_s is None:
            out.append((Level.WARN, 'no link quality heard yet: planning device-only'))
        elif not (math.isfinite(h.link_age_s) and h.link_age_s <= h.link_timeout_s):
            out.append((Level.WARN, f'link estimate {h.link_age_s:.1f} s old (> '
                                    f'{h.link_timeout_s:g} s): planning device-only'))
    failed = {k: v for k, v in h.recent.items() if k.startswith(PUSH_FAILURES)}
    if sum(failed.values()):
        out.append((Level.WARN, f'{sum(failed.values())} parameter pushes failed in the last '
                                f'{h.window_s:g} s ({per_reason(failed, "push_")})'))
    return out
