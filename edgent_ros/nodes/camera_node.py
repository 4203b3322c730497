"""
camera_node (robot): capture a frame, run layers [0, split) of branch exit, send the tensor.

Sources: the bundled labelled CIFAR-10 sample (``source: sample``), the full CIFAR-10 test set
(``cifar10-test``), or a ``sensor_msgs/Image`` topic (``topic``: ``image_raw``, any size,
converted with cv_bridge and resized to 32x32). ``exit_index``/``split_index`` are parameters
(the planner sets them); every Tensor carries its own exit/split/model_id. When ``split_index``
is the end of the branch the robot finishes the frame itself and nothing crosses the link.
Every frame ends as exactly one ``edgent/outcome``: a result or a drop with a reason.

The link logic (start gate, probes, device-only fallback, in-flight ledger) lives in
``core.camera_link``; this module is the rclpy adapter. The device-side compute runs in a worker
thread, one frame at a time, so the executor keeps serving results, probes and the edge watchdog
while the robot computes (a slow robot's single-threaded executor would starve them and declare
a healthy edge unreachable). A file-source tick while the robot is still computing captures
nothing (as a camera driver waiting for the consumer); an image arriving then is counted and
dropped as ``robot_busy``. ``after_compute`` (constructor) runs on each frame's ``DeviceOutput``
right after the device layers: the testbed's robot emulation (``evaluation.emulated_camera``).
"""

from __future__ import annotations

from dataclasses import replace
import functools
import threading
import time
from typing import Callable, Optional, TYPE_CHECKING

import numpy as np
from rclpy.duration import Duration
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from sensor_msgs.msg import Image

from . import qos
from ..core.arch import NUM_EXITS
from ..core.artifacts import ArtifactError
from ..core.camera_link import CameraLink, FallbackPlanner, FrameWorker, StartGate
from ..core.codec import (bottleneck_width, effective_encoding, encode, ENCODINGS, known_encoding,
                          MAX_PADDING_BYTES, padding_probe)
from ..core.datasets import load_sample, load_split
from ..core.edges import EdgeSet
from ..core.ledger import FrameRefused, MAX_THRESHOLD, Pending
from ..core.link import ArrivalClock, camera_estimator, ProbeSizer, TRANSFER_LOG_HEADER
from ..core.tensor_wire import serialize
from ..msg import InferenceResult, LinkQuality, Tensor
from .camera_msgs import (fill_device_result, fill_edge_result, image_msg, link_quality_msg,
                          result_msg, stamp_ns, tensor_msg)
from .node_util import (accept, check_planned_model, declare, declare_diagnostics,
                        declare_planned_model, diagnostic_status, load_runner,
                        publish_diagnostics, refuse, run)

if TYPE_CHECKING:   # the runner imports torch when the node loads it, not at import
    from ..core.inference import DeviceOutput

SOURCES = ('sample', 'cifar10-test', 'topic')
RO = {'read_only': True}
# name: (default, description, declare() options); each becomes an attribute of the node, kept
# current by _post_set. split_index's range is the loaded model's longest branch (set at start).
PARAMETERS = {
    'exit_index': (NUM_EXITS, 'branch to run (1..number of exits of the model)', {}),
    'split_index': (0, 'layers [0, split) run on the robot; = branch length: device-only', {}),
    'source': ('sample', f'frame source: {", ".join(SOURCES)}', RO),
    'fps': (10.0, 'frames per second from file sources', {'float_range': (0.1, 200.0)}),
    'max_frames': (0, 'stop after N frames (0 = no limit)', {'int_range': (0, 10_000_000)}),
    'loop': (True, 'loop file sources when they end', {}),
    'paused': (False, 'file sources capture nothing while true (frames under way finish)', {}),
    'wait_for_link': (False, 'file sources: capture the next frame only once fewer than '
                      'max_in_flight frames and no probe pair are on the link (every frame in '
                      'order, none dropped as link_busy or queued behind probes: the closed '
                      'loop of the evaluation)', {}),
    'next_frame': (-1, 'file sources: setting k >= 0 makes frame k the next one captured (a '
                   'seek: the evaluation replays the same frames to every policy); -1 = go on',
                   {'int_range': (-1, 10_000_000)}),
    'exit_when_done': (False, 'shut down once max_frames have an outcome', RO),
    'deadline_ms': (200.0, 'latency deadline per frame (ms)', {'float_range': (1.0, 60_000.0)}),
    'result_timeout_s': (2.0, 'a frame without result after this is dropped',
                         {'float_range': (0.05, 120.0)}),
    'max_in_flight': (2, 'frames on the link at once; more are dropped (link_busy)',
                      {'int_range': (1, 64)}),
    'encoding': ('raw', 'tensor encoding (the planner sets it with encodings enabled): raw, '
                 'compressed (zlib) for any tensor; fp16, int8 (per-tensor affine), int8-zlib for '
                 'activations; png, jpeg for the frame at split 0; one that does not fit the cut '
                 'sends raw', {}),
    'confidence_threshold': (0.0, 'BranchyNet early exit: stop a frame at the first side exit '
                             'whose softmax entropy (nats) is below this; 0 = off',
                             {'float_range': (0.0, MAX_THRESHOLD)}),
    'frame_id': ('camera_optical_frame', 'TF frame of the camera (header.frame_id of frames, '
                 'tensors and outcomes); with source: topic the driver\'s frame_id wins', RO),
    'log_frames': (False, 'log one line per outcome', {}),
    'publish_frames': (True, 'publish each 32x32 frame on edgent/frame (for rviz)', {}),
    'serialized_publish': (False, 'publish frame tensors as CDR bytes built by '
                           'core.tensor_wire (one payload copy less, same wire format)', RO),
    'wait_for_edge_s': (5.0, 'file sources start once the edge subscribes to edgent/tensor, or '
                        'after this long', {'float_range': (0.0, 3600.0), **RO}),
    'wait_for_subscribers': (0, 'file sources also wait (up to wait_for_edge_s) for this many '
                             'edgent/outcome subscribers (monitors, tests)',
                             {'int_range': (0, 1000), **RO}),
    'link_quality_rate_hz': (2.0, 'LinkQuality publish rate (Hz)',
                             {'float_range': (0.1, 50.0), **RO}),
    'edge_timeout_s': (3.0, 'no answer from the edge this long: device-only fallback',
                       {'float_range': (0.1, 3600.0)}),
    'standby_ping_s': (1.0, 'with several edges: ping each standing-by edge this often (one '
                       'probe frame; at most edge_timeout_s / 3)',
                       {'float_range': (0.05, 3600.0), **RO}),
    'probe_settle_s': (0.0, 'with wait_for_link: after a probe pair\'s answers, hold the next '
                       'capture this long more (a token-bucket shaper refills the burst the '
                       'pair spent: burst bytes x 8 / rate); 0 = off',
                       {'float_range': (0.0, 10.0)}),
    'probe_after_s': (1.0, 'no transfer sample this long: send a pair of small probe frames',
                      {'float_range': (0.05, 3600.0), **RO}),
    'probe_max_bytes': (1024 * 1024, 'largest probe payload (bytes): a pair too fast to '
                        'resolve (under 10 ms apart) goes 4x larger next time, as padding the '
                        'edge answers without compute (link.ProbeSizer), up to this (1 MiB '
                        'resolves links up to 0.8 Gbit/s; demo.launch.py on one host: 8 MiB); '
                        '0 = frame-sized probes only',
                        {'int_range': (0, MAX_PADDING_BYTES), **RO}),
    'transfer_log': ('', 'append every link transfer sample (t_s, source, wire_bytes, '
                     'transfer_s, used) to this CSV file, for offline analysis of the '
                     'estimator; empty = off', RO),
    'accuracy_path': ('', 'accuracy table (fallback choice); empty = shipped', RO),
    'latency_models_path': ('', 'latency models (fallback choice); empty = shipped', RO),
    'robot_time_scale': (1.0, 'robot layer times x this for the fallback choice (as the '
                         'planner\'s)', {'float_range': (0.01, 1000.0), **RO}),
    'warm_up': (True, 'at start, run every exit\'s branch and every bottleneck encoder once '
                '(torch\'s first call of a layer is several times slower than later ones)', RO),
}


class CameraNode(Node):
    """Robot side of Edgent co-inference."""

    def __init__(self, after_compute: Optional[Callable[[DeviceOutput], None]] = None,
                 **kwargs):
        super().__init__('camera_node', **kwargs)
        self.after_compute = after_compute
        self.runner, self.model_id = load_runner(self, declare(
            self, 'weights_path', '', 'safetensors weights; empty = shipped model',
            read_only=True), 1, 64)
        n_exits = self.runner.num_exits
        max_split = max(self.runner.branch_len(e) for e in range(1, n_exits + 1))
        for name, (default, description, options) in PARAMETERS.items():
            if name == 'split_index':
                options = {'int_range': (0, max_split)}
            if name == 'exit_index':
                default, options = n_exits, {'int_range': (1, n_exits)}
            setattr(self, name, declare(self, name, default, description, **options))
        self.diag_pub, window_s = declare_diagnostics(self, self._on_diagnostics)
        self.robot = self.get_namespace()          # Tensor.robot: results come back to it
        self.optical_frame = self.frame_id         # header.frame_id; a driver's replaces it
        if not known_encoding(self.encoding):
            self._fatal(f'encoding must be one of {sorted(ENCODINGS)} or bn<c>, got '
                        f'{self.encoding!r}')
        if self.source not in SOURCES:
            self._fatal(f'source must be one of {SOURCES}, got {self.source!r}')
        reason = self._check_pair(self.exit_index, self.split_index, self.encoding)
        if reason:
            self._fatal(reason)
        if self.warm_up:
            t = time.perf_counter()
            runs = self.runner.warm_up()
            self.get_logger().info(f'warm-up: {len(runs)} runs (every exit, every bottleneck '
                                   f'encoder) in {(time.perf_counter() - t) * 1e3:.0f} ms')
        try:
            if self.runner.described is not None:
                desc = self.runner.described.desc
                files = desc.files(latency=self.latency_models_path,
                                   accuracy=self.accuracy_path)
                fallback, why = FallbackPlanner.load_described(
                    files, self.model_id, self.robot_time_scale, (1, self.runner.branch_len(1)))
                if why:
                    self.get_logger().warning(why)
            else:
                fallback = FallbackPlanner.load(self.runner.model.cfg, self.model_id,
                                                self.accuracy_path, self.latency_models_path,
                                                self.robot_time_scale)
        except (ArtifactError, ValueError) as exc:
            self._fatal(f'cannot load fallback artifacts: {exc}')
        # a quantile and MAD of log-rates, settings from sweep tune (ESTIMATOR_SETTINGS): a
        # sample slowed by CPU contention does not move the estimate, a confirmed change does
        estimator = camera_estimator(self.probe_after_s)
        self._transfer_log = self._open_transfer_log(self.transfer_log)
        self.link = CameraLink(time.monotonic(), estimator, fallback, self.result_timeout_s,
                               self.edge_timeout_s, on_fallback=self._on_fallback,
                               diagnostics_window_s=window_s,
                               on_sample=self._log_sample if self._transfer_log else None)
        self.gate = StartGate(time.monotonic(), self.wait_for_edge_s)
        names = [n for n in declare(
            self, 'edges', [''], 'edges to use, in order of preference (core.edges): frames go '
            'to edgent/<edge>/tensor of one of them and move to the next that answers when it '
            'stops answering; [""] = the one edge on edgent/tensor', read_only=True) if n.strip()]
        try:
            self.edges = EdgeSet(names, self.edge_timeout_s, self.standby_ping_s) \
                if names else None
        except ValueError as exc:
            self._fatal(f'edges: {exc}')
        self.lock = threading.Lock()   # the dynamic parameters: executor and worker read them
        declare_planned_model(self)
        self.add_on_set_parameters_callback(self._on_set)
        self.add_post_set_parameters_callback(self._post_set)

        # edgent/tensor: reliable, keep last 4 (qos.TENSOR); pacing is max_in_flight's job
        self.result_pub = self.create_publisher(InferenceResult, 'edgent/result',
                                                qos.EDGE_RESULT)
        self.outcome_pub = self.create_publisher(InferenceResult, 'edgent/outcome', qos.RESULT)
        self.frame_pub = self.create_publisher(Image, 'edgent/frame', qos.VIZ)
        self._arrival = ArrivalClock()   # a repaired result is dated no earlier than the last
        # one tensor publisher and result subscription per edge ('': the one edge)
        self.edge_pubs, self.edge_subs = {}, {}
        for name in (self.edges.names if self.edges else ['']):
            topic = f'edgent/{name}/' if name else 'edgent/'
            self.edge_pubs[name] = self.create_publisher(Tensor, topic + 'tensor', qos.TENSOR)
            self.edge_subs[name] = self.create_subscription(
                InferenceResult, topic + 'result', functools.partial(self._on_result, name),
                qos.EDGE_RESULT,
                event_callbacks=SubscriptionEventCallbacks(message_lost=self._on_message_lost))
        self.images: Optional[np.ndarray] = None
        self.labels: Optional[np.ndarray] = None
        self._cursor = 0
        if self.source == 'topic':
            from cv_bridge import CvBridge
            self.bridge = CvBridge()
            self.create_subscription(Image, 'image_raw', self._on_image, qos.IMAGE)
        else:
            self.images, self.labels = (load_sample() if self.source == 'sample'
                                        else load_split('test'))
            self.timer = self.create_timer(1.0 / self.fps, self._on_timer)
        self.frame_size = tuple(self.runner.input_shape[1:])     # (H, W) of the model input
        probe = (self._fit(self.images[0]) if self.images is not None
                 else np.zeros(self.frame_size + (3,), np.uint8))
        self.probe = encode(np.ascontiguousarray(probe[None]), 'raw', name='probe')
        # a pair of frames too fast to time grows into padding probes (a fast link's real rate)
        self.link.probe_sizer = ProbeSizer(self.probe.nbytes, self.probe_max_bytes)
        self._padding = {}   # size -> the two padding probe messages of that size
        self.link_pub = self.create_publisher(LinkQuality, 'edgent/link_quality',
                                              qos.LINK_QUALITY)
        self.create_timer(0.1, self._on_housekeeping)
        self.create_timer(1.0 / self.link_quality_rate_hz, self._on_link_timer)
        # device compute off the executor: (frame, label, stamp) -> process_frame
        self.worker = FrameWorker(lambda item: self.process_frame(*item), self._on_worker_error)
        self.get_logger().info(
            f'camera_node: model {self.model_id}, exit {self.exit_index}, split '
            f'{self.split_index}, source {self.source}'
            + (f' ({len(self.images)} frames)' if self.images is not None else ''))

    # -- parameters -------------------------------------------------------------------------
    def _fatal(self, reason: str) -> None:
        self.get_logger().fatal(reason)
        raise SystemExit(2)

    @property
    def active_edge(self) -> str:
        """Return the edge frames go to now ('' with one edge)."""
        return self.edges.active if self.edges else ''

    @property
    def tensor_pub(self):
        """Return the tensor publisher of the edge in use."""
        return self.edge_pubs[self.active_edge]

    def _edge_seen(self, name: str) -> bool:
        """Return whether edge ``name`` both hears our tensors and is heard on its results."""
        own = 0 if name else 1   # the one edge shares edgent/result with our device results
        return self.edge_pubs[name].get_subscription_count() > 0 and \
            self.count_publishers(self.edge_subs[name].topic_name) >= 1 + own

    def _check_pair(self, exit_index: int, split_index: int, encoding: str) -> str:
        if not 1 <= exit_index <= self.runner.num_exits:
            return f'exit_index {exit_index} not in 1..{self.runner.num_exits}'
        n = self.runner.branch_len(exit_index)
        if not 0 <= split_index <= n:
            return f'split_index {split_index} out of range 0..{n} for exit {exit_index}'
        if bottleneck_width(encoding) is not None and split_index < n:
            try:   # a bottleneck encoding needs trained weights at exactly this cut
                self.runner.bottleneck_for(exit_index, split_index, encoding)
            except FrameRefused as exc:
                return exc.detail
        return ''

    def _on_set(self, params):
        new = {p.name: p.value for p in params}
        reason = check_planned_model(new, self.model_id)
        if reason:
            pass   # a decision for another model: nothing else matters
        elif 'encoding' in new and not known_encoding(new['encoding']):
            reason = (f'encoding must be one of {sorted(ENCODINGS)} or bn<c>, got '
                      f'{new["encoding"]!r}')
        elif {'exit_index', 'split_index', 'encoding'} & set(new):
            reason = self._check_pair(int(new.get('exit_index', self.exit_index)),
                                      int(new.get('split_index', self.split_index)),
                                      str(new.get('encoding', self.encoding)))
        if reason:
            self.get_logger().warning(f'refused parameter change: {reason}')
            return refuse(reason)
        return accept()

    def _post_set(self, params):
        with self.lock:
            for p in params:
                if p.name in PARAMETERS:
                    setattr(self, p.name, p.value)
                if p.name == 'fps' and hasattr(self, 'timer'):
                    self.timer.timer_period_ns = int(1e9 / p.value)
                if p.name == 'next_frame' and p.value >= 0:
                    self._cursor = int(p.value)
                if p.name in ('result_timeout_s', 'edge_timeout_s'):
                    setattr(self.link, p.name, p.value)
                if p.name == 'edge_timeout_s' and self.edges:
                    self.edges.timeout_s = p.value
                if p.name == 'diagnostics_window_s':
                    self.link.recent.window_s = p.value

    # -- frames -----------------------------------------------------------------------------
    def _on_timer(self) -> None:
        if self.max_frames and self.link.produced >= self.max_frames:
            return
        if not self.gate.started:
            # the edge must both hear our tensors and be heard on edgent/result (besides our
            # own device-only publisher), else the first results are lost to discovery
            now = time.monotonic()
            seen_edges = [n for n in self.edge_pubs if self._edge_seen(n)]
            seen = bool(seen_edges) and \
                self.outcome_pub.get_subscription_count() >= self.wait_for_subscribers
            # then hold START_SETTLE_S more: a frame sent before the edge's reader matched our
            # writer waits for repair in the keep-last-4 history (qos.TENSOR) and can be
            # replaced there by newer frames before the reader asks for it
            self.link.grace(now)   # nothing sent yet: no silence to count
            if not self.gate.open(now, seen):
                return   # start-up gate, not a drop: no frame was captured yet
            if self.edges and seen_edges:   # start on the most preferred edge in the graph
                self.edges.switch(seen_edges[0], 'start')
        if self.robot_busy() or self.paused or (
                self.wait_for_link and (self.link.link_full(self.max_in_flight)
                                        or self.link.probing(time.monotonic(),
                                                             self.probe_settle_s))):
            return   # robot still computing / paused / link full or probing: no capture
        if self._cursor >= len(self.images) and not self.loop:
            return   # the file source ended
        i = self._cursor % len(self.images)
        self._cursor = i + 1
        self.worker.submit((self._fit(self.images[i]), int(self.labels[i]), None))

    def _fit(self, image: np.ndarray) -> np.ndarray:
        """Return a bundled 32x32 frame at the model input size (unchanged for the AlexNet)."""
        if tuple(image.shape[:2]) == self.frame_size:
            return image
        from ..core.inference import preprocess_image
        return preprocess_image(image, size=self.frame_size)

    def _on_image(self, msg: Image) -> None:
        if self.max_frames and self.link.produced >= self.max_frames:
            return
        from ..core.inference import preprocess_image
        try:
            frame = preprocess_image(self.bridge.imgmsg_to_cv2(msg, desired_encoding='rgb8'),
                                     size=self.frame_size)
        except Exception as exc:  # cv_bridge raises CvBridgeError and others on bad images
            self._drop(self.link.new_frame(), msg.header.stamp, -1, 'bad_image', 0.0)
            self.get_logger().warning(f'bad image dropped: {exc}', throttle_duration_sec=5.0)
            return
        if self.robot_busy():
            self._drop(self.link.new_frame(), msg.header.stamp, -1, 'robot_busy',
                       self.deadline_ms)
            return
        if msg.header.frame_id:
            self.optical_frame = msg.header.frame_id   # keep the driver's TF frame
        self.worker.submit((frame, -1, msg.header.stamp))

    def robot_busy(self) -> bool:
        """Return whether the worker has a frame waiting or in computation."""
        return self.worker.busy()

    def _on_worker_error(self, exc: Exception) -> bool:
        if not self.context.ok():
            return False   # shutting down: end the worker
        self.get_logger().error(f'frame processing failed: {exc!r}', throttle_duration_sec=5.0)
        return True

    def before_shutdown(self) -> None:
        """
        End every frame still on the robot or the link before the process exits (SIGINT/TERM).

        The worker finishes the frame under way, then each frame without an answer from the edge
        ends as ``dropped:shutdown`` and the outcomes are flushed (bounded: 2 s + 1 s), so a
        stopped camera leaves no frame unaccounted for.
        """
        self.worker.stop(timeout_s=2.0)
        for p in self.link.abandon():
            self._drop(p.seq, None, p.true_class, 'shutdown', p.deadline_ms, p.exit_index,
                       p.split_index)
        self.outcome_pub.wait_for_all_acked(Duration(seconds=1.0))

    def destroy_node(self):
        """Stop the worker thread (if start-up got that far), then destroy the node."""
        if hasattr(self, 'worker'):
            self.worker.stop(timeout_s=5.0)
        if getattr(self, '_transfer_log', None):
            self._transfer_log.close()
        return super().destroy_node()

    def process_frame(self, frame: np.ndarray, true_class: int, stamp=None) -> None:
        """Run the device part of one uint8 RGB 32x32 frame and send or finish it."""
        with self.lock:
            exit_index, split_index = self.link.configuration(
                self.exit_index, self.split_index, self.deadline_ms)
            deadline_ms, encoding, max_in_flight = \
                self.deadline_ms, self.encoding, self.max_in_flight
            threshold = float(self.confidence_threshold)
        stamp = stamp or self.get_clock().now().to_msg()
        capture_s = time.monotonic()
        seq, busy = self.link.admit(split_index < self.runner.branch_len(exit_index),
                                    max_in_flight)
        if self.publish_frames:   # outcomes carry the same stamp: viewers pair by it
            self.frame_pub.publish(image_msg(frame, stamp, self.optical_frame))
        if busy:
            self._drop(seq, stamp, true_class, 'link_busy', deadline_ms, exit_index, split_index)
            return
        try:
            out = self.runner.device_step(frame, exit_index, split_index, threshold,
                                          encoding=encoding)
        except FrameRefused as exc:   # a bottleneck encoding without weights at this cut
            self.get_logger().warning(f'frame {seq} dropped: {exc.detail}',
                                      throttle_duration_sec=5.0)
            self._drop(seq, stamp, true_class, exc.reason, deadline_ms, exit_index, split_index)
            return
        if self.after_compute is not None:
            self.after_compute(out)
        if out.classification is not None:
            res = fill_device_result(self._result(seq, stamp, exit_index, split_index,
                                                  true_class, deadline_ms),
                                     out.classification, out.device_ms,
                                     (time.monotonic() - capture_s) * 1e3)
            self.result_pub.publish(res)
            self._outcome(res, 'ok_device')
            return
        enc = encode(out.tensor, effective_encoding(encoding, image=split_index == 0),
                     name='input' if split_index == 0 else f'split{split_index}')
        # serialized_publish: the message without its payload, the payload given to serialize
        msg = tensor_msg(stamp, self.optical_frame, self.robot, self.model_id, seq, exit_index,
                         split_index, replace(enc, data=b'') if self.serialized_publish else enc)
        msg.device_compute_ms, msg.confidence_threshold = out.device_ms, threshold
        if bottleneck_width(msg.encoding) is not None:
            msg.bottleneck_id = self.runner.bottleneck_id
        edge = self.active_edge   # once: the executor may move to another edge meanwhile
        self.link.sent(Pending(seq, time.monotonic(), capture_s, exit_index, split_index,
                               enc.nbytes, out.device_ms, true_class, deadline_ms,
                               stamp_ns(stamp), edge))
        self.edge_pubs[edge].publish(serialize(msg, enc.data) if self.serialized_publish
                                     else msg)

    # -- results and the link -----------------------------------------------------------------
    def _on_message_lost(self, info) -> None:
        """Results lost in transport: their frames will end as edge_timeout drops."""
        self.get_logger().warning(f'{info.total_count_change} result message(s) lost in transport',
                                  throttle_duration_sec=5.0)

    def _on_result(self, edge: str, msg: InferenceResult, info) -> None:
        if msg.finished_on == InferenceResult.FINISHED_ON_DEVICE:
            return  # our own device-only result
        now = self._arrival(time.monotonic(), time.time_ns(), info)
        ok = msg.status == InferenceResult.STATUS_OK
        active = edge == self.active_edge   # else a standby's ping, or a frame sent before a move
        if self.edges:
            self.edges.heard(edge, now)
        if msg.probe:
            if active:
                self.link.probe_result(now, msg.sequence, ok, msg.edge_ms, msg.edge_queue_ms)
                if self.link.probe_now():   # unresolved: the larger pair goes at once
                    self._send_probe_pair()
            return
        p = self.link.result(now, msg.sequence, stamp_ns(msg.header.stamp), ok, msg.edge_ms,
                             msg.edge_queue_ms, msg.batch_size, heard=active)
        if p is not None:   # else expired (counted as dropped) or an earlier run's history
            self._outcome(fill_edge_result(msg, p, now),
                          'ok_edge' if ok else f'refused:{msg.drop_reason}')

    def _open_transfer_log(self, path: str):
        """Open the transfer log for appending (header when new); None when off."""
        if not path:
            return None
        try:
            f = open(path, 'a', buffering=1)   # noqa: SIM115 - closed in destroy_node
        except OSError as exc:
            self._fatal(f'cannot open transfer_log {path!r}: {exc}')
        if f.tell() == 0:
            f.write(TRANSFER_LOG_HEADER + '\n')
        return f

    def _log_sample(self, now_s: float, source: str, nbytes: int, seconds: float,
                    used: bool) -> None:
        self._transfer_log.write(f'{now_s:.6f},{source},{nbytes},{seconds:.6f},{int(used)}\n')

    def _on_fallback(self, active: bool) -> None:
        if active:
            self.get_logger().warning(f'edge unreachable for {self.link.edge_timeout_s:g} s: '
                                      'running the best device-only configuration until it '
                                      'answers')
        else:
            self.get_logger().info('edge reachable again: co-inference resumes')

    def _on_link_timer(self) -> None:
        """Send a probe pair when due (frames or padding, back to back); publish LinkQuality."""
        now = time.monotonic()
        report = self.link.tick(now)
        if report.probe_due:
            self._send_probe_pair()
        self.link_pub.publish(link_quality_msg(report, self.get_clock().now().to_msg(),
                                               self.robot))

    def _send_probe_pair(self) -> None:
        """Send a probe pair of the sizer's size; a padded one has a small ping ahead of it."""
        nbytes = self.link.probe_bytes()
        pair = self._probe_messages(nbytes)
        stamp = self.get_clock().now().to_msg()
        if nbytes > self.probe.nbytes:   # the round trip, from a small message
            ping = self._frame_probe(0)   # built before its clock starts, as the pair
            ping.sequence = self.link.start_ping(time.monotonic())
            self.tensor_pub.publish(ping)
        # both built before the clock starts: the pair's gap is the link's, not the copies'
        for msg, seq in zip(pair, self.link.start_probe(time.monotonic(), nbytes)):
            msg.header.stamp, msg.sequence = stamp, seq
            self.tensor_pub.publish(msg)

    def _frame_probe(self, seq: int, enc=None):
        """Return probe ``seq`` stamped now: a real frame at split 0, or ``enc`` (padding)."""
        return tensor_msg(self.get_clock().now().to_msg(), self.optical_frame, self.robot,
                          self.model_id, seq, self.runner.num_exits, 0, enc or self.probe,
                          probe=True)

    def _probe_messages(self, nbytes: int) -> tuple:
        """Return two probe messages of ``nbytes``: frames, or padding (kept for the next)."""
        if nbytes <= self.probe.nbytes:
            return self._frame_probe(0), self._frame_probe(0)
        if nbytes not in self._padding:   # one size kept: a pair of up to probe_max_bytes each
            enc = padding_probe(nbytes)
            self._padding = {nbytes: (self._frame_probe(0, enc), self._frame_probe(0, enc))}
        return self._padding[nbytes]

    def _on_housekeeping(self) -> None:
        if self.edges and self.gate.started:
            self._steer_edges(time.monotonic())
        for p in self.link.expire(time.monotonic()):
            self._drop(p.seq, None, p.true_class, 'edge_timeout', p.deadline_ms, p.exit_index,
                       p.split_index)
        if self.exit_when_done and self.link.done(self.max_frames) and not self.robot_busy():
            self.get_logger().info(f'done: {self.link.summary()}')
            for pub in (self.outcome_pub, self.result_pub):   # let subscribers get the last ones
                pub.wait_for_all_acked(Duration(seconds=2.0))
            raise SystemExit(0)

    def _steer_edges(self, now: float) -> None:
        """Move to another edge when ``core.edges`` says so; ping the edges standing by."""
        active = self.edges.active
        # gone from the graph (its process ended) counts at once; silence after edge_timeout_s
        in_graph = self.edge_pubs[active].get_subscription_count() > 0
        answers = self.link.reachable(now)
        target = self.edges.choose(now, answers and in_graph)
        if target is not None:
            why = ('back to balance' if answers and in_graph else
                   f'no answer for {self.link.edge_timeout_s:g} s' if in_graph
                   else 'left the graph')
            self.edges.switch(target, why)
            self.link.switch_edge(now)
            if not (answers and in_graph):   # its frames will not come back: free the link
                for p in self.link.abandon(active):
                    self._drop(p.seq, None, p.true_class, 'edge_timeout', p.deadline_ms,
                               p.exit_index, p.split_index)
            if answers and in_graph:   # rclpy: one severity per call site
                self.get_logger().info(f'edge {active} -> {target}: {why}')
            else:
                self.get_logger().warning(f'edge {active} -> {target}: {why}')
        for name in self.edges.pings_due(now):
            if self.edge_pubs[name].get_subscription_count() > 0:   # else nobody to answer
                self.edge_pubs[name].publish(self._frame_probe(self.link.next_ping_seq()))

    def _on_diagnostics(self) -> None:
        now = time.monotonic()
        settings = {'exit_index': self.exit_index, 'split_index': self.split_index,
                    'encoding': self.encoding, 'confidence_threshold': self.confidence_threshold}
        if self.edges:
            settings.update(self.edges.status(now))
        level, msg, values = self.link.diagnostics(now, settings)
        publish_diagnostics(self, self.diag_pub, [diagnostic_status(self, level, msg, values)])

    # -- outcomes: every frame ends as exactly one ----------------------------------------------
    def _result(self, seq, stamp, exit_index, split_index, true_class, deadline_ms):
        return result_msg(self.optical_frame, self.robot, self.model_id, seq, stamp, exit_index,
                          split_index, true_class, deadline_ms)

    def _drop(self, seq, stamp, true_class, reason, deadline_ms, exit_index=0, split_index=0):
        res = self._result(seq, stamp, exit_index, split_index, true_class, deadline_ms)
        res.status, res.drop_reason = InferenceResult.STATUS_DROPPED, reason
        self._outcome(res, f'dropped:{reason}')

    def _outcome(self, res: InferenceResult, kind: str) -> None:
        ok = res.status == InferenceResult.STATUS_OK
        self.link.finish(kind, bool(res.deadline_met) if ok else None, res.sequence,
                         now_s=time.monotonic())
        self.outcome_pub.publish(res)
        if self.log_frames:
            self.get_logger().info(
                f'frame {res.sequence}: {res.label} ({res.confidence:.2f}) exit {res.exit_index} '
                f'split {res.split_index} e2e {res.end_to_end_ms:.1f} ms' if ok
                else f'frame {res.sequence}: {kind}')


def main(args=None) -> int:
    """Console entry: ``ros2 run edgent_ros camera_node``."""
    return run(CameraNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
