"""
The camera's side of the link, without ROS: start gate, probes, fallback and frame accounting.

``camera_node`` is an rclpy adapter around these small classes:

- ``StartGate``: file sources hold their first frame until the edge and the expected
  subscribers are seen, then ``settle_s`` more (seeing a reader does not mean it has matched
  our writer yet), or until ``wait_s`` after start.
- ``FallbackPlanner``: while the edge is unreachable the camera runs the best device-only
  configuration for its deadline (the planner may be cut off too); it returns to the planned
  configuration when the edge answers again.
- ``CameraLink``: the in-flight ledger (``FrameLedger``: every frame ends as exactly one
  outcome), the bandwidth estimate from results and probe pairs (``BandwidthEstimator``,
  ``ProbePair``), the edge watchdog (``EdgeWatchdog``), loss, RTT and the edge's queue and batch
  averages, all behind one lock (the camera's executor and its compute worker both call it).
- ``FrameWorker``: the thread that runs the device layers, one frame at a time.

Times are seconds on one monotonic clock, passed in; nothing here reads a clock, imports rclpy
or torch.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import math
import threading
from typing import Callable, Deque, Dict, List, Optional, Set, Tuple

from .arch import NUM_EXITS
from .artifacts import ArtifactError, load_accuracy
from .diagnostics import camera_findings, DEFAULT_WINDOW_S, grade, Level, message, RecentCounts
from .latency import LatencyModels
from .ledger import FrameLedger, Pending
from .link import BandwidthEstimator, EdgeWatchdog, Estimate, ProbePair, ProbeSizer, wire_bytes
from .model_plan import load_block_latency, load_model_accuracy, load_table, problem_for
from .optimizer import decide_policy, EdgentProblem, scale_robot
from .validate import as_nonneg, as_positive

START_SETTLE_S = 0.5   # start-up gate: hold this long after the edge and subscribers are seen
PROBE_EXIT = NUM_EXITS  # probes are real frames: split 0, final exit
EWMA_ALPHA = 0.2        # weight of a new edge queue / batch report in their averages
MIN_PAYLOAD_FRACTION = 0.1   # a transfer with less serialization than this share is all RTT
# A transfer's time less the round trip is resolved to this (s), like a probe pair's dispersion
# (ProbePair.min_dispersion_s): a shorter one only says the link is at least bytes / this fast.
RESOLUTION_S = 0.01


class StartGate:
    """
    Hold a file source's first frame until the edge can hear it.

    The edge must both hear our tensors and be heard on ``edgent/result``, else the first results
    are lost to discovery; the caller says whether it sees all that (``seen``). The gate opens
    ``settle_s`` after everything is seen, or ``wait_s`` after ``t0_s`` regardless: seeing the
    edge's reader does not mean it has matched our writer yet, and a frame sent before it has
    waits for repair in the writer's bounded history (``edgent/tensor`` keeps the last 4), where
    newer frames can replace it before the reader asks for it.
    Once open it stays open. Holding is not a drop: no frame was captured yet.
    """

    def __init__(self, t0_s: float, wait_s: float, settle_s: float = START_SETTLE_S):
        self.t0_s = float(t0_s)
        self.wait_s = as_nonneg('wait_s', wait_s)
        self.settle_s = as_nonneg('settle_s', settle_s)
        self.started = False
        self._ready_since: Optional[float] = None

    def open(self, now_s: float, seen: bool) -> bool:
        """Return True if frames may flow at ``now_s`` (s); ``seen``: edge and readers seen."""
        if self.started:
            return True
        if not seen:
            self._ready_since = None
        elif self._ready_since is None:
            self._ready_since = now_s
        settling = self._ready_since is not None and now_s - self._ready_since < self.settle_s
        if (not seen or settling) and now_s - self.t0_s < self.wait_s:
            return False
        self.started = True
        return True


class FallbackPlanner:
    """
    The camera's own choice while the edge is unreachable: the best device-only configuration.

    ``problem`` is an ``optimizer.EdgentProblem`` (robot times already scaled to this robot).
    ``active`` says whether the fallback is in force; ``configuration`` applies it.
    """

    def __init__(self, problem, fixed: Optional[Tuple[int, int]] = None):
        self.problem = problem
        self.fixed = fixed          # the device-only choice when there is no problem to solve
        self.active = False
        self._cache: Dict[float, Tuple[int, int]] = {}

    @classmethod
    def load(cls, cfg, model_id: str, accuracy_path: Optional[str] = None,
             latency_models_path: Optional[str] = None,
             robot_time_scale: float = 1.0) -> 'FallbackPlanner':
        """
        Build from the accuracy table and latency models (None: the shipped ones).

        Raises ``ArtifactError`` on a missing or garbled file and ValueError on a bad scale.
        """
        problem = EdgentProblem.from_model(
            cfg, load_accuracy(accuracy_path or None, model_id),
            LatencyModels.load(latency_models_path or None, model_id=model_id))
        return cls(scale_robot(problem, robot_time_scale))

    @classmethod
    def load_described(cls, files: Dict[str, str], model_id: str,
                       robot_time_scale: float = 1.0, first_exit: Tuple[int, int] = (1, 1)
                       ) -> Tuple['FallbackPlanner', str]:
        """
        Build for a described model from its table, block times and accuracy (``files``).

        Without block times or accuracy nothing can be planned: the fallback is then the first
        exit device-only (``first_exit``: its fewest layers), and the second value says why.
        """
        try:
            table = load_table(files['table'], model_id)
            problem = problem_for(table, load_block_latency(files['latency'], model_id),
                                  load_model_accuracy(files['accuracy'], model_id),
                                  robot_time_scale=robot_time_scale)
        except ArtifactError as exc:
            return cls(None, first_exit), (f'fallback is exit {first_exit[0]} device-only: '
                                           f'{exc}')
        return cls(problem), ''

    def device_only(self, deadline_ms: float) -> Tuple[int, int]:
        """Return the best device-only ``(exit, split)`` for ``deadline_ms`` (ms)."""
        key = float(deadline_ms)
        if self.problem is None:
            return self.fixed or (1, 1)
        if key not in self._cache:
            d = decide_policy(self.problem, 'device-only', 0.0, key)
            self._cache[key] = (int(d.exit_index), int(d.split_index))
        return self._cache[key]

    def configuration(self, exit_index: int, split_index: int,
                      deadline_ms: float) -> Tuple[int, int]:
        """Return the configuration to run: the planned one, or device-only in fallback."""
        if self.active:
            return self.device_only(deadline_ms)
        return exit_index, split_index


@dataclass(frozen=True)
class LinkReport:
    """What the camera publishes as ``LinkQuality`` (and whether a probe pair is due now)."""

    edge_reachable: bool
    estimate: Optional[Estimate]   # None when unknown or the edge is unreachable
    rtt_ms: float                  # round trip of an empty message; -1 until a probe pair
    loss: float                    # fraction of the recent offloaded frames that timed out
    edge_queue_ms: float
    edge_batch_size: float
    probe_due: bool


class CameraLink:
    """
    Bookkeeping of the camera's frames and of its link to the edge (thread-safe).

    ``estimator``: the ``BandwidthEstimator``; ``fallback``: a ``FallbackPlanner``;
    ``on_fallback(active)``: called when the fallback starts or ends (for a log line).
    ``result_timeout_s``: an offloaded frame without result after this is dropped;
    ``edge_timeout_s``: no answer from the edge this long starts the fallback;
    ``diagnostics_window_s``: the diagnostic level grades the outcomes of this many recent
    seconds (``diagnostics``). ``on_sample(now_s, source, wire_bytes, seconds, used)``: called
    with every transfer sample offered to the estimator (a transfer log; ``used``: whether the
    estimator took it). ``probe_sizer``: sizes the probe pairs (``ProbeSizer``; the caller
    sends ``probe_bytes()``); None keeps them at what the caller passes.
    """

    def __init__(self, now_s: float, estimator: BandwidthEstimator, fallback: FallbackPlanner,
                 result_timeout_s: float = 2.0, edge_timeout_s: float = 3.0,
                 on_fallback: Optional[Callable[[bool], None]] = None, loss_window: int = 50,
                 met_window: int = 100, diagnostics_window_s: float = DEFAULT_WINDOW_S,
                 on_sample: Optional[Callable[[float, str, int, float, bool], None]] = None,
                 probe_sizer: Optional[ProbeSizer] = None):
        self.estimator = estimator
        self.probe_sizer = probe_sizer
        self.on_sample = on_sample
        self.fallback = fallback
        self.watchdog = EdgeWatchdog(edge_timeout_s)
        self.watchdog.heard(now_s)   # grace period at start
        self.ledger = FrameLedger(timeout_s=as_positive('result_timeout_s', result_timeout_s))
        self.on_fallback = on_fallback
        self.lock = threading.RLock()
        self.seq = 0
        self.computing: Set[int] = set()   # admitted, on the robot: not sent nor finished
        self.probe_seq = 0
        self.probe_pair: Optional[ProbePair] = None
        self.probe_done_s: Optional[float] = None   # when the last pair's answers were in
        self.rtt_ping: Optional[Tuple[int, float]] = None   # (seq, sent_s) of the small probe
        # ahead of a padded pair: its round trip (a megabyte pair's first is no measure)
        self.grow_pending = False   # the last pair was unresolved and the next one is larger
        self.last_edge_send_s = -math.inf
        self.rtt_ms = -1.0
        self.recent_lost: Deque[bool] = deque(maxlen=loss_window)
        self.met: Deque[bool] = deque(maxlen=met_window)
        self.recent = RecentCounts(diagnostics_window_s)   # outcome kinds of recent seconds
        self.late_results = 0    # results for frames no longer pending (expired, earlier run)
        self.edge_queue_ms = 0.0   # exponential average of the edge's reported queue wait
        self.edge_batch = 1.0      # exponential average of the edge's batch size for our frames

    # -- timeouts (parameters may change them) ---------------------------------------------------
    @property
    def edge_timeout_s(self) -> float:
        """No answer from the edge this long (s): device-only fallback."""
        return self.watchdog.timeout_s

    @edge_timeout_s.setter
    def edge_timeout_s(self, value: float) -> None:
        with self.lock:
            self.watchdog.timeout_s = as_positive('edge_timeout_s', value)

    @property
    def result_timeout_s(self) -> float:
        """An offloaded frame without result after this (s) is dropped as edge_timeout."""
        return self.ledger.timeout_s

    @result_timeout_s.setter
    def result_timeout_s(self, value: float) -> None:
        with self.lock:
            self.ledger.timeout_s = as_positive('result_timeout_s', value)

    # -- frames ----------------------------------------------------------------------------------
    @property
    def produced(self) -> int:
        """Frames produced so far (each has or will have one outcome)."""
        return self.ledger.produced

    def new_frame(self) -> int:
        """Count a produced frame and return its sequence number."""
        with self.lock:
            self.ledger.produce()
            self.seq += 1
            return self.seq

    def admit(self, offloads: bool, max_in_flight: int) -> Tuple[int, bool]:
        """
        Count a produced frame; return its sequence number and whether the link is busy.

        Busy: the frame would cross the link (``offloads``) and ``max_in_flight`` frames are
        already waiting for the edge; the caller then drops it as ``link_busy``.
        """
        with self.lock:
            seq = self.new_frame()
            self.computing.add(seq)
            return seq, offloads and self.ledger.in_flight >= max_in_flight

    def sent(self, pending: Pending) -> None:
        """Record a frame handed to the link at ``pending.sent_s``; call before publishing it."""
        with self.lock:
            self.ledger.send(pending)
            self.computing.discard(pending.seq)
            self.last_edge_send_s = pending.sent_s    # holds probes off (needs_probe)

    def finish(self, kind: str, deadline_met: Optional[bool] = None,
               seq: Optional[int] = None, now_s: Optional[float] = None) -> None:
        """
        Count a frame's one outcome ``kind``; ``deadline_met`` for results (None: a drop).

        ``seq``: the frame's sequence number, so a frame finished on the robot (device-only,
        ``link_busy``) stops counting as ``computing``. ``now_s``: when (s); the diagnostic
        level's recent window counts only outcomes finished with a time.
        """
        with self.lock:
            self.ledger.finish(kind)
            if now_s is not None:
                self.recent.add(kind, now_s)
            if seq is not None:
                self.computing.discard(int(seq))
            if deadline_met is not None:
                self.met.append(bool(deadline_met))

    def result(self, now_s: float, seq: int, stamp_ns: Optional[int], ok: bool,
               edge_ms: float, edge_queue_ms: float, batch_size: float,
               heard: bool = True) -> Optional[Pending]:
        """
        Take the pending frame an edge result answers; None if it is not pending any more.

        ``now_s``: arrival; ``edge_ms``, ``edge_queue_ms``: the edge's reported processing and
        queueing (durations on its clock, so no clock sync is needed); ``ok``: a result, not a
        refusal. A result for an expired frame (already counted as dropped) or for a frame of an
        earlier run of this camera is counted in ``late_results``, not as an outcome. The
        caller finishes the frame it gets. ``heard``: False for an answer from an edge the
        camera has since moved away from (it finishes the frame, but says nothing about the
        edge in use nor about its link).
        """
        with self.lock:
            p = self.ledger.take(int(seq), stamp_ns)
            if p is None:
                self.late_results += 1
                return None
            if not heard:
                return p
            self._heard(now_s)
            if ok:
                self.recent_lost.append(False)
                self.edge_queue_ms += EWMA_ALPHA * (float(edge_queue_ms) - self.edge_queue_ms)
                self.edge_batch += EWMA_ALPHA * (max(1.0, float(batch_size)) - self.edge_batch)
                transfer_s = (now_s - p.sent_s) - (edge_ms + edge_queue_ms) / 1e3
                if transfer_s > 0:
                    self._sample(now_s, 'passive', wire_bytes(p.payload_bytes), transfer_s)
            return p

    def expire(self, now_s: float) -> List[Pending]:
        """Remove and return frames without result after ``result_timeout_s``; count them lost."""
        with self.lock:
            out = self.ledger.expire(now_s)
            self.recent_lost.extend(True for _ in out)
            return out

    def probing(self, now_s: float = 0.0, settle_s: float = 0.0) -> bool:
        """
        Return whether a probe pair is on the link (sent, not both answers back).

        With ``settle_s`` > 0 also while less than that has passed since the last pair's answers
        came in (or it was forgotten): a pair is sized to spend a token-bucket shaper's burst,
        and a frame sent at once would find the bucket empty (``probe_settle_s`` of the camera).
        """
        with self.lock:
            if self.probe_pair is not None:
                return True
            return settle_s > 0.0 and self.probe_done_s is not None and \
                now_s - self.probe_done_s < settle_s

    def link_full(self, max_in_flight: int) -> bool:
        """Return whether ``max_in_flight`` frames are on the link (a new one would be busy)."""
        with self.lock:
            return self.ledger.in_flight >= max_in_flight

    def abandon(self, edge: Optional[str] = None) -> List[Pending]:
        """
        Remove and return the frames still in flight; the caller drops each with a reason.

        ``edge`` None: all of them (the camera is stopping). An edge's name: those sent to that
        edge, which stopped answering (``core.edges``); they count as lost, and no longer
        hold the link's in-flight slots from the edge the camera moves to.
        """
        with self.lock:
            out = self.ledger.abandon(edge)
            if edge is not None:
                self.recent_lost.extend(True for _ in out)
            return out

    def done(self, max_frames: int) -> bool:
        """Return True once ``max_frames`` (> 0) frames were produced and none is in flight."""
        with self.lock:
            return max_frames > 0 and self.ledger.produced >= max_frames \
                and self.ledger.in_flight == 0

    def summary(self) -> Dict[str, int]:
        """Return the ledger's counts: produced, in_flight and every outcome kind."""
        with self.lock:
            return {**self.ledger.summary(), 'computing': len(self.computing)}

    # -- the edge: reachability, fallback, probes ------------------------------------------------
    def grace(self, now_s: float) -> None:
        """Count no silence before ``now_s``: nothing was sent yet (start-up gate)."""
        with self.lock:
            self.watchdog.heard(now_s)

    def reachable(self, now_s: float) -> bool:
        """Return whether the edge in use answered within ``edge_timeout_s`` before ``now_s``."""
        with self.lock:
            return self.watchdog.reachable(now_s)

    def switch_edge(self, now_s: float) -> None:
        """
        Start on another edge at ``now_s`` (``core.edges``): heard now, its round trip unknown.

        The new edge was answering pings, so it counts as heard; a probe pair out to the old
        one is forgotten (its answers would be the old link's). The rate estimate and the round
        trip stay until the next pair measures them: the robot's uplink is the same link.
        Frames in flight to the old edge stay pending: an answer still finishes them.
        """
        with self.lock:
            self._heard(now_s)
            self.probe_pair = self.rtt_ping = None

    def _heard(self, now_s: float) -> None:
        self.watchdog.heard(now_s)
        if self.fallback.active:
            self.fallback.active = False
            if self.on_fallback:
                self.on_fallback(False)

    def configuration(self, exit_index: int, split_index: int,
                      deadline_ms: float) -> Tuple[int, int]:
        """Return the configuration to run now: the planned one, or device-only in fallback."""
        with self.lock:
            return self.fallback.configuration(exit_index, split_index, deadline_ms)

    def tick(self, now_s: float) -> LinkReport:
        """
        Update reachability and the fallback at ``now_s`` and return the link report.

        A probe pair unanswered for ``edge_timeout_s`` is forgotten. ``probe_due``: no pair is
        out and either the fallback is on (a probe is how the edge is heard again) or the
        estimator needs one (``needs_probe``); the caller then sends one (``start_probe``).
        """
        with self.lock:
            reachable = self.watchdog.reachable(now_s)
            if not reachable and not self.fallback.active:
                self.fallback.active = True
                if self.on_fallback:
                    self.on_fallback(True)
            if self.probe_pair is not None and \
                    now_s - self.probe_pair.sent_s > self.watchdog.timeout_s:
                self.probe_pair = None      # lost or unanswered: the next pair replaces it
                self.probe_done_s = now_s
            wanted = self.grow_pending or self.estimator.needs_probe(
                now_s, self.ledger.in_flight, self.last_edge_send_s)
            due = self.probe_pair is None and (
                self.fallback.active or wanted and self._padding_may_go())
            return LinkReport(reachable, self.estimator.estimate(now_s) if reachable else None,
                              self.rtt_ms, self.loss(), self.edge_queue_ms, self.edge_batch, due)

    def start_probe(self, now_s: float, nbytes: int) -> Tuple[int, int]:
        """Start a probe pair of two ``nbytes`` payloads sent now; return their sequences."""
        with self.lock:
            seqs = (self.probe_seq + 1, self.probe_seq + 2)
            self.probe_pair = ProbePair(now_s, seqs, nbytes)   # validates; then count the seqs
            self.probe_seq += 2
            self.grow_pending = False
            return seqs

    def start_ping(self, now_s: float) -> int:
        """
        Start a lone frame-sized probe sent now, ahead of a padded pair; return its sequence.

        Its answer gives the round trip (``rtt_ms``) in place of the pair's: the first of two
        megabyte probes is no measure of an empty message's round trip.
        """
        with self.lock:
            self.rtt_ping = (self.next_ping_seq(), float(now_s))
            return self.rtt_ping[0]

    def probe_now(self) -> bool:
        """Return whether a larger pair should go at once (the last one was unresolved)."""
        with self.lock:
            return self.grow_pending and self.probe_pair is None and self._padding_may_go()

    def _padding_may_go(self) -> bool:
        """Return whether a pair may go now: a padded one waits until no frame is on the link."""
        padded = self.probe_sizer is not None and self.probe_sizer.padded
        return not padded or self.ledger.in_flight <= 0

    def probe_bytes(self) -> Optional[int]:
        """Return the payload of the next probe pair (``ProbeSizer``), None without a sizer."""
        with self.lock:
            return None if self.probe_sizer is None else self.probe_sizer.nbytes

    def next_ping_seq(self) -> int:
        """Return the sequence of a one-message probe (a ping of an edge standing by)."""
        with self.lock:
            self.probe_seq += 1
            return self.probe_seq

    def probe_result(self, now_s: float, seq: int, ok: bool, edge_ms: float,
                     edge_queue_ms: float) -> bool:
        """
        Record the edge's answer to probe ``seq`` arriving at ``now_s``; False if not ours.

        Once both answers are in, the pair gives the round trip of an empty message (``rtt_ms``,
        ``ProbePair.base_rtt_s``) and a 'probe' sample for the estimator: the dispersion, or,
        when that is too short to resolve, a train from sending to the second answer less that
        round trip, and never shorter than twice ``min_dispersion_s`` (a lower bound on the rate,
        2.7 Mbit/s for 3 KB probes). With a ``probe_sizer`` the next pair is then larger, until
        its dispersion is resolved: on loopback the pairs grow to megabytes.
        """
        with self.lock:
            edge_s = (edge_ms + edge_queue_ms) / 1e3
            if self.rtt_ping is not None and int(seq) == self.rtt_ping[0]:
                self._heard(now_s)
                sent_s = self.rtt_ping[1]
                self.rtt_ping = None
                # its own bytes stay in: a padded pair follows only a frame-sized pair too fast
                # to time, so they take under min_dispersion_s (a fraction of a ms on loopback)
                if ok and now_s - sent_s - edge_s > 0.0:
                    self.rtt_ms = (now_s - sent_s - edge_s) * 1e3
                return True
            pair = self.probe_pair
            if pair is None or not pair.owns(seq):
                return False
            self._heard(now_s)
            sample = pair.result(seq, now_s, edge_s, ok)
            padded = self.probe_sizer is not None and pair.nbytes > self.probe_sizer.base_bytes
            if pair.complete():
                self.probe_pair = None
                self.probe_done_s = now_s
                base = pair.base_rtt_s()
                if base is not None and not padded:   # else the ping ahead of it gave it
                    self.rtt_ms = base * 1e3
                if pair.failed and self.probe_sizer is not None \
                        and pair.nbytes == self.probe_sizer.nbytes:
                    self.probe_sizer.refused()
            if sample is not None:
                nbytes, seconds, kind = sample
                if self.probe_sizer is not None and pair.nbytes == self.probe_sizer.nbytes:
                    # unresolved: a larger pair, at once (slow start: a few ms each)
                    self.grow_pending = self.probe_sizer.update(kind, seconds) > pair.nbytes
                if kind == 'train':
                    # the train less the pair's round trip (rtt_ms, just taken from it) is
                    # twice the dispersion, below resolution: only the lower bound of two probes
                    # per 2 x min_dispersion_s is known
                    seconds = 2.0 * pair.min_dispersion_s
                self._sample(now_s, 'probe', nbytes, seconds, fixed=False,
                             lower_bound=kind == 'train')
            return True

    def _sample(self, now_s: float, source: str, nbytes: int, seconds: float,
                fixed: bool = True, lower_bound: bool = False) -> None:
        """
        Offer one transfer to the estimator, less the round trip of an empty message (``fixed``).

        A frame's time from sending to its answer holds that round trip (the link's one-way
        delays, the middleware's per-message cost) besides its bytes: on a link with 100 ms each
        way a 3 KB frame at 2 Mbit/s "took" 212 ms, and counting all of it as serialization read
        the link 17x too slow. A sample left with less than ``MIN_PAYLOAD_FRACTION`` of its time
        is all round trip and says nothing about the rate: it is logged, not used. What is left
        counts as at least ``RESOLUTION_S``: on loopback or a fast LAN a 3 KB frame's few ms,
        less a round trip of the same size, are jitter, and the sample is then the lower bound
        bytes / ``RESOLUTION_S`` (as a probe pair's), not a rate of hundreds of Mbit/s. A bound
        (``lower_bound``, or made one here) may raise the estimate, never lower it.
        """
        if fixed and self.rtt_ms > 0:
            net = seconds - self.rtt_ms / 1e3
            if net < MIN_PAYLOAD_FRACTION * seconds:
                if self.on_sample is not None:
                    self.on_sample(now_s, source, nbytes, seconds, False)
                return
            lower_bound = lower_bound or net < RESOLUTION_S
            seconds = max(net, RESOLUTION_S)
        used = self.estimator.add_transfer(now_s, nbytes, seconds, source=source,
                                           lower_bound=lower_bound)
        if self.on_sample is not None:
            self.on_sample(now_s, source, nbytes, seconds, used)

    # -- reports ---------------------------------------------------------------------------------
    def loss(self) -> float:
        """Return the fraction of recent offloaded frames that timed out (0 with none)."""
        with self.lock:
            lost = self.recent_lost
            return float(sum(lost) / len(lost)) if lost else 0.0

    def diagnostics(self, now_s: float, settings: Optional[Dict[str, object]] = None
                    ) -> Tuple[Level, str, Dict[str, object]]:
        """
        Return ``(level, message, values)`` for the camera's diagnostic status.

        The level: WARN while the edge is unreachable (device-only fallback) or when frames were
        refused by the edge or timed out within the recent window (``core.diagnostics.
        camera_findings``), else OK. The values count since start. ``settings`` (the node's
        current exit, split, encoding, ...) are listed among the values.
        """
        with self.lock:
            est = self.estimator.estimate(now_s)
            reachable = self.watchdog.reachable(now_s)
            summary = {**self.ledger.summary(), 'computing': len(self.computing)}
            drops = sum(v for k, v in summary.items()
                        if k.startswith(('dropped:', 'refused:')))
            values: Dict[str, object] = {
                'edge_reachable': reachable, 'fallback_device_only': self.fallback.active,
                'uplink_bandwidth_bps': f'{est.bps:.0f}' if est else 'unknown',
                'rtt_ms': f'{self.rtt_ms:.1f}',
                'deadline_met_rate': f'{sum(self.met) / len(self.met):.3f}' if self.met
                else 'n/a'}
            values.update(settings or {})
            values.update(frames_dropped=drops, late_results=self.late_results)
            recent = self.recent.counts(now_s)
            values.update(diagnostics_window_s=self.recent.window_s,
                          recent_frames=sum(recent.values()),
                          recent_dropped=sum(v for k, v in recent.items()
                                             if k.startswith(('dropped:', 'refused:'))))
            level, reasons = grade(camera_findings(reachable, self.fallback.active, recent,
                                                   self.recent.window_s))
            values.update(summary)
            return level, message(f'{summary["produced"]} frames, {drops} dropped since start',
                                  reasons), values


class FrameWorker:
    """
    A thread that computes one frame at a time, so the caller's executor stays responsive.

    ``submit`` puts a frame in the single slot (replacing one not started yet); ``busy`` says
    whether one is waiting or under way, so a camera captures nothing (or drops the frame) while
    the robot still computes. ``handle(item)`` runs in the thread; when it raises,
    ``on_error(exc)`` returns True to go on with the next frame, False to end the thread.
    """

    def __init__(self, handle: Callable[[object], None],
                 on_error: Callable[[Exception], bool], name: str = 'camera_worker'):
        self._handle = handle
        self._on_error = on_error
        self._cv = threading.Condition()
        self._slot: Optional[object] = None
        self._busy = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def busy(self) -> bool:
        """Return whether a frame is waiting or being computed."""
        with self._cv:
            return self._busy or self._slot is not None

    def submit(self, item: object) -> None:
        """Hand ``item`` to the thread (it replaces a frame waiting and not yet started)."""
        with self._cv:
            self._slot = item
            self._cv.notify()

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the thread after the frame under way; wait up to ``timeout_s`` (s) for it."""
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._slot is None and not self._stop:
                    self._cv.wait(0.5)
                if self._stop:
                    return
                item, self._slot = self._slot, None
                self._busy = True
            try:
                self._handle(item)
            except Exception as exc:  # noqa: B902 - the robot keeps running; on_error decides
                if not self._on_error(exc):
                    return
            finally:
                with self._cv:
                    self._busy = False
