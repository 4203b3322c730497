"""
camera_node (robot): capture a frame, run layers [0, split) of branch exit, send the tensor.

Sources: the bundled labelled CIFAR-10 sample (``source: sample``), the full CIFAR-10 test set
(``cifar10-test``), or a ``sensor_msgs/Image`` topic (``topic``: ``image_raw``, any size,
converted with cv_bridge and resized to 32x32). ``exit_index``/``split_index`` are parameters
(the planner sets them); every Tensor carries its own exit/split/model_id. When ``split_index``
is the end of the branch the robot finishes the frame itself and nothing crosses the link.
Every frame ends as exactly one ``edgent/outcome``: a result or a drop with a reason.

The device-side compute runs in a worker thread, one frame at a time, so the executor keeps
serving results, probes and the edge watchdog while the robot computes (a slow robot's
single-threaded executor would starve them and declare a healthy edge unreachable). A file-source
tick while the robot is still computing captures nothing (as a camera driver waiting for the
consumer); an image arriving then is counted and dropped as ``robot_busy``.
"""

from __future__ import annotations

from collections import deque
import math
import threading
import time
from typing import Optional

import numpy as np
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from sensor_msgs.msg import Image

from . import qos
from ..core.artifacts import ArtifactError, load_accuracy
from ..core.link import arrival_s, BandwidthEstimator, EdgeWatchdog, ProbePair
from ..core.ledger import FrameLedger, Pending
from ..core.arch import NUM_EXITS
from ..msg import InferenceResult, LinkQuality, Tensor
from .node_util import (accept, declare, diagnostic_status, load_runner, publish_diagnostics,
                        refuse, run)
from ..core.optimizer import decide_policy, EdgentProblem, scale_robot
from ..core.codec import effective_encoding, encode, ENCODINGS, fill_message

MAX_THRESHOLD = 100.0   # nats; far above ln(10) = 2.3, where every side exit fires

SOURCES = ('sample', 'cifar10-test', 'topic')


START_SETTLE_S = 0.5   # start-up gate: hold this long after the edge and subscribers are seen


class CameraNode(Node):
    """Robot side of Edgent co-inference."""

    def __init__(self, **kwargs):
        super().__init__('camera_node', **kwargs)
        weights = declare(self, 'weights_path', '', 'safetensors weights; empty = shipped model',
                          read_only=True)
        self.runner, self.model_id = load_runner(self, weights, 1, 64)
        max_split = max(self.runner.branch_len(e) for e in range(1, NUM_EXITS + 1))
        self.exit_index = declare(self, 'exit_index', NUM_EXITS, 'branch to run (1..5)',
                                  int_range=(1, NUM_EXITS))
        self.split_index = declare(self, 'split_index', 0,
                                   'layers [0, split) run on the robot; = branch length: '
                                   'device-only', int_range=(0, max_split))
        self.source = declare(self, 'source', 'sample', f'frame source: {", ".join(SOURCES)}',
                              read_only=True)
        self.fps = declare(self, 'fps', 10.0, 'frames per second from file sources',
                           float_range=(0.1, 200.0))
        self.max_frames = declare(self, 'max_frames', 0, 'stop after N frames (0 = no limit)',
                                  int_range=(0, 10_000_000))
        self.loop = declare(self, 'loop', True, 'loop file sources when they end')
        self.exit_when_done = declare(self, 'exit_when_done', False,
                                      'shut down once max_frames have an outcome', read_only=True)
        self.deadline_ms = declare(self, 'deadline_ms', 200.0, 'latency deadline per frame (ms)',
                                   float_range=(1.0, 60_000.0))
        self.result_timeout_s = declare(self, 'result_timeout_s', 2.0,
                                        'a frame without result after this is dropped',
                                        float_range=(0.05, 120.0))
        self.max_in_flight = declare(self, 'max_in_flight', 2,
                                     'frames on the link at once; more are dropped (link_busy)',
                                     int_range=(1, 64))
        self.encoding = declare(self, 'encoding', 'raw',
                                'tensor encoding (the planner sets it with encodings enabled): '
                                'raw, compressed (zlib) for any tensor; fp16, int8 (per-tensor '
                                'affine), int8-zlib for activations; png, jpeg for the frame '
                                'at split 0; one that does not fit the cut sends raw')
        self.confidence_threshold = declare(
            self, 'confidence_threshold', 0.0, 'BranchyNet early exit: stop a frame at the '
            'first side exit whose softmax entropy (nats) is below this; 0 = off',
            float_range=(0.0, MAX_THRESHOLD))
        self.frame_id = declare(self, 'frame_id', 'camera', 'header.frame_id of frames',
                                read_only=True)
        self.log_frames = declare(self, 'log_frames', False, 'log one line per outcome')
        self.publish_frames = declare(self, 'publish_frames', True,
                                      'publish each 32x32 frame on edgent/frame (for rviz)')
        self.slowdown = declare(self, 'compute_slowdown', 1.0,
                                'robot emulation: after the device-side layers, wait (f - 1) x '
                                'their CPU time (a CPU quota does not throttle one short burst)',
                                float_range=(1.0, 10_000.0), read_only=True)
        self.wait_for_edge_s = declare(self, 'wait_for_edge_s', 5.0,
                                       'file sources start once the edge subscribes to '
                                       'edgent/tensor, or after this long', read_only=True,
                                       float_range=(0.0, 3600.0))
        self.wait_for_subscribers = declare(
            self, 'wait_for_subscribers', 0, 'file sources also wait (up to wait_for_edge_s) for '
            'this many edgent/outcome subscribers (monitors, tests)', int_range=(0, 1000),
            read_only=True)
        self.link_rate_hz = declare(self, 'link_quality_rate_hz', 2.0,
                                    'LinkQuality publish rate (Hz)', float_range=(0.1, 50.0),
                                    read_only=True)
        self.edge_timeout_s = declare(self, 'edge_timeout_s', 3.0,
                                      'no answer from the edge this long: device-only fallback',
                                      float_range=(0.1, 3600.0))
        probe_after_s = declare(self, 'probe_after_s', 1.0,
                                'no transfer sample this long: send a pair of small probe frames',
                                float_range=(0.05, 3600.0), read_only=True)
        acc_path = declare(self, 'accuracy_path', '', 'accuracy table (fallback choice); '
                           'empty = shipped', read_only=True)
        lat_path = declare(self, 'latency_models_path', '', 'latency models (fallback choice); '
                           'empty = shipped', read_only=True)
        if self.encoding not in ENCODINGS:
            self.get_logger().fatal(f'encoding must be one of {sorted(ENCODINGS)}, '
                                    f'got {self.encoding!r}')
            raise SystemExit(2)
        if self.source not in SOURCES:
            self.get_logger().fatal(f'source must be one of {SOURCES}, got {self.source!r}')
            raise SystemExit(2)
        self._check_pair(self.exit_index, self.split_index, fatal=True)
        robot_scale = declare(self, 'robot_time_scale', 1.0, 'robot layer times x this for the '
                              'fallback choice (as the planner\'s)', float_range=(0.01, 1000.0),
                              read_only=True)
        try:
            from ..core.latency import LatencyModels
            self.problem = scale_robot(EdgentProblem.from_model(
                self.runner.model.cfg, load_accuracy(acc_path or None, self.model_id),
                LatencyModels.load(lat_path or None, model_id=self.model_id)), robot_scale)
        except (ArtifactError, ValueError) as exc:
            self.get_logger().fatal(f'cannot load fallback artifacts: {exc}')
            raise SystemExit(2) from exc
        # drop_confirm 2: one slow sample (a result held up on the way back) must not collapse
        # the estimate; a real drop gives two in a row within a frame or a probe interval.
        # slow_transfer_s: a small (JPEG) frame that took >= 40 ms counts (slow link)
        self.estimator = BandwidthEstimator(min_bytes=2048, overhead_s=0.0,
                                            probe_after_s=probe_after_s,
                                            stale_after_s=max(5.0, 3 * probe_after_s),
                                            drop_confirm=2, slow_transfer_s=0.04)
        self.watchdog = EdgeWatchdog(self.edge_timeout_s)
        self.watchdog.heard(time.monotonic())   # grace period at start
        self.fallback = False
        self.probe_seq = 0
        self.probe_pair: Optional[ProbePair] = None
        self.last_edge_send_s = -math.inf
        self.rtt_ms = -1.0
        self.recent_lost: deque = deque(maxlen=50)
        self.late_results = 0   # results for frames no longer pending (see _on_result)
        self.edge_queue_ms = 0.0   # exponential average of the edge's reported queue wait
        self.edge_batch = 1.0      # exponential average of the edge's batch size for our frames
        self.add_on_set_parameters_callback(self._on_set)
        self.add_post_set_parameters_callback(self._post_set)

        self.lock = threading.Lock()
        self.ledger_lock = threading.RLock()   # ledger, sequence, deadline stats: two threads
        self.ledger = FrameLedger(timeout_s=self.result_timeout_s)
        self.seq = 0
        self.tensor_pub = self.create_publisher(Tensor, 'edgent/tensor', qos.TENSOR)
        self.result_pub = self.create_publisher(InferenceResult, 'edgent/result',
                                                qos.EDGE_RESULT)
        self.outcome_pub = self.create_publisher(InferenceResult, 'edgent/outcome', qos.RESULT)
        self.frame_pub = self.create_publisher(Image, 'edgent/frame', qos.VIZ)
        self.create_subscription(
            InferenceResult, 'edgent/result', self._on_result, qos.EDGE_RESULT,
            event_callbacks=SubscriptionEventCallbacks(message_lost=self._on_message_lost))
        self._t0 = time.monotonic()
        self._started = False
        self._ready_since = None
        self.images: Optional[np.ndarray] = None
        self.labels: Optional[np.ndarray] = None
        self._cursor = 0
        if self.source == 'topic':
            from cv_bridge import CvBridge
            self.bridge = CvBridge()
            self.create_subscription(Image, 'image_raw', self._on_image, qos.IMAGE)
        else:
            from ..offline.data import load_sample, load_split
            self.images, self.labels = (load_sample() if self.source == 'sample'
                                        else load_split('test'))
            self.timer = self.create_timer(1.0 / self.fps, self._on_timer)
        self.link_pub = self.create_publisher(LinkQuality, 'edgent/link_quality',
                                              qos.LINK_QUALITY)
        self.create_timer(0.1, self._on_housekeeping)
        self.create_timer(1.0 / self.link_rate_hz, self._on_link_timer)
        from diagnostic_msgs.msg import DiagnosticArray
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', qos.VIZ)
        self.create_timer(1.0, self._on_diagnostics)
        self.met = deque(maxlen=100)
        self._work_cv = threading.Condition()
        self._slot = None        # the next frame for the worker: (frame, label, stamp)
        self._busy = False       # the worker is computing a frame
        self._stop = False
        self._worker = threading.Thread(target=self._work, name='camera_worker', daemon=True)
        self._worker.start()
        self.get_logger().info(
            f'camera_node: model {self.model_id}, exit {self.exit_index}, split '
            f'{self.split_index}, source {self.source}'
            + (f' ({len(self.images)} frames)' if self.images is not None else ''))

    # -- parameters -------------------------------------------------------------------------
    def _check_pair(self, exit_index: int, split_index: int, fatal: bool = False) -> str:
        n = self.runner.branch_len(exit_index) if 1 <= exit_index <= NUM_EXITS else -1
        reason = ''
        if n < 0:
            reason = f'exit_index {exit_index} not in 1..{NUM_EXITS}'
        elif not 0 <= split_index <= n:
            reason = f'split_index {split_index} out of range 0..{n} for exit {exit_index}'
        if reason and fatal:
            self.get_logger().fatal(reason)
            raise SystemExit(2)
        return reason

    def _on_set(self, params):
        new = {p.name: p.value for p in params}
        if 'encoding' in new and new['encoding'] not in ENCODINGS:
            reason = f'encoding must be one of {sorted(ENCODINGS)}, got {new["encoding"]!r}'
            self.get_logger().warning(f'refused parameter change: {reason}')
            return refuse(reason)
        if 'exit_index' in new or 'split_index' in new:
            reason = self._check_pair(int(new.get('exit_index', self.exit_index)),
                                      int(new.get('split_index', self.split_index)))
            if reason:
                self.get_logger().warning(f'refused parameter change: {reason}')
                return refuse(reason)
        return accept()

    def _post_set(self, params):
        with self.lock:
            for p in params:
                if p.name in ('exit_index', 'split_index', 'fps', 'max_frames', 'loop',
                              'deadline_ms', 'result_timeout_s', 'max_in_flight', 'log_frames',
                              'publish_frames', 'encoding', 'confidence_threshold'):
                    setattr(self, p.name, p.value)
                if p.name == 'fps' and hasattr(self, 'timer'):
                    self.timer.timer_period_ns = int(1e9 / p.value)
                if p.name == 'result_timeout_s':
                    self.ledger.timeout_s = p.value
                if p.name == 'edge_timeout_s':
                    self.edge_timeout_s = p.value
                    self.watchdog.timeout_s = p.value

    # -- frames -----------------------------------------------------------------------------
    def _on_timer(self) -> None:
        if self.max_frames and self.ledger.produced >= self.max_frames:
            return
        if not self._started:
            # the edge must both hear our tensors and be heard on edgent/result (besides our
            # own device-only publisher), else the first results are lost to discovery
            now = time.monotonic()
            waiting = self.tensor_pub.get_subscription_count() == 0 or \
                self.count_publishers(self.result_pub.topic_name) < 2 or \
                self.outcome_pub.get_subscription_count() < self.wait_for_subscribers
            # seeing the edge's reader does not mean it has matched our writer yet: a frame
            # sent then can be replaced in the keep-last-1 history before the reader asks for
            # it; so the gate also holds START_SETTLE_S after everything is seen
            if waiting:
                self._ready_since = None
            elif self._ready_since is None:
                self._ready_since = now
            settling = self._ready_since is not None and now - self._ready_since < START_SETTLE_S
            if (waiting or settling) and now - self._t0 < self.wait_for_edge_s:
                self.watchdog.heard(now)   # nothing sent yet: no silence to count
                return   # start-up gate, not a drop: no frame was captured yet
            self._started = True
            self.watchdog.heard(now)
        if self.robot_busy():
            return   # the robot is still computing the previous frame: nothing captured
        if self._cursor >= len(self.images):
            if not self.loop:
                return
            self._cursor = 0
        i = self._cursor
        self._cursor += 1
        self._submit(self.images[i], int(self.labels[i]), None)

    def _on_image(self, msg: Image) -> None:
        if self.max_frames and self.ledger.produced >= self.max_frames:
            return
        from ..core.inference import preprocess_image
        try:
            frame = preprocess_image(self.bridge.imgmsg_to_cv2(msg, desired_encoding='rgb8'))
        except Exception as exc:  # cv_bridge raises CvBridgeError and others on bad images
            with self.ledger_lock:
                self.ledger.produce()
                self._drop(self._next_seq(), msg.header.stamp, -1, 'bad_image', 0.0)
            self.get_logger().warning(f'bad image dropped: {exc}', throttle_duration_sec=5.0)
            return
        if self.robot_busy():
            with self.ledger_lock:
                self.ledger.produce()
                self._drop(self._next_seq(), msg.header.stamp, -1, 'robot_busy',
                           self.deadline_ms)
            return
        self._submit(frame, -1, msg.header.stamp)

    # -- the worker: device compute off the executor -----------------------------------------
    def robot_busy(self) -> bool:
        """Return whether the worker has a frame waiting or in computation."""
        with self._work_cv:
            return self._busy or self._slot is not None

    def _submit(self, frame: np.ndarray, label: int, stamp) -> None:
        with self._work_cv:
            self._slot = (frame, label, stamp)
            self._work_cv.notify()

    def _work(self) -> None:
        while True:
            with self._work_cv:
                while self._slot is None and not self._stop:
                    self._work_cv.wait(0.5)
                if self._stop:
                    return
                item, self._slot = self._slot, None
                self._busy = True
            try:
                self.process_frame(item[0], item[1], stamp=item[2])
            except Exception as exc:  # noqa: B902 - keep the robot running; shutdown ends it
                if not self.context.ok():
                    return
                self.get_logger().error(f'frame processing failed: {exc!r}',
                                        throttle_duration_sec=5.0)
            finally:
                with self._work_cv:
                    self._busy = False

    def destroy_node(self):
        """Stop the worker thread (if start-up got that far), then destroy the node."""
        if hasattr(self, '_worker'):
            with self._work_cv:
                self._stop = True
                self._work_cv.notify_all()
            self._worker.join(timeout=5.0)
        return super().destroy_node()

    def _next_seq(self) -> int:
        with self.ledger_lock:
            self.seq += 1
            return self.seq

    def process_frame(self, frame: np.ndarray, true_class: int, stamp=None) -> None:
        """Run the device part of one uint8 RGB 32x32 frame and send or finish it."""
        with self.lock:
            exit_index, split_index = self.exit_index, self.split_index
            deadline_ms = self.deadline_ms
            encoding, threshold = self.encoding, float(self.confidence_threshold)
            if self.fallback:
                d = decide_policy(self.problem, 'device-only', 0.0, deadline_ms)
                exit_index, split_index = d.exit_index, d.split_index
        stamp = stamp or self.get_clock().now().to_msg()
        capture_s = time.monotonic()
        with self.ledger_lock:
            seq = self._next_seq()
            self.ledger.produce()
            busy = split_index < self.runner.branch_len(exit_index) \
                and self.ledger.in_flight >= self.max_in_flight
        if self.publish_frames:
            self.frame_pub.publish(self._frame_msg(frame, stamp, seq))
        if busy:
            self._drop(seq, stamp, true_class, 'link_busy', deadline_ms, exit_index, split_index)
            return
        out = self.runner.device_step(frame, exit_index, split_index, threshold)
        if self.slowdown > 1.0:
            # the robot's DNN is f x slower: wait (f - 1) x the CPU time the layers took here
            # (not their wall time, which a throttle of the robot's CPU quota can stretch
            # many-fold: f x a 50 ms throttle would be seconds)
            extra_ms = (self.slowdown - 1.0) * out.layers_cpu_ms
            time.sleep(extra_ms / 1e3)
            out.device_ms += extra_ms
        if out.classification is not None:
            res = self._result(seq, stamp, exit_index, split_index, true_class, deadline_ms)
            res.finished_on = InferenceResult.FINISHED_ON_DEVICE
            self._fill_class(res, out.classification)
            res.exit_index = out.classification.exit_index or exit_index
            res.device_ms = out.device_ms
            res.end_to_end_ms = (time.monotonic() - capture_s) * 1e3
            res.deadline_met = res.end_to_end_ms <= deadline_ms
            self.result_pub.publish(res)
            self._outcome(res, 'ok_device')
            return
        enc = encode(out.tensor, effective_encoding(encoding, image=split_index == 0),
                     name='input' if split_index == 0 else f'split{split_index}')
        msg = Tensor()
        msg.header.stamp = stamp
        msg.header.frame_id = self.frame_id
        msg.sequence = seq
        msg.model_id = self.model_id
        msg.exit_index = exit_index
        msg.split_index = split_index
        fill_message(msg, enc)
        msg.device_compute_ms = out.device_ms
        msg.confidence_threshold = threshold
        sent_s = time.monotonic()
        with self.ledger_lock:
            self.ledger.send(Pending(seq, sent_s, capture_s, exit_index, split_index,
                                     enc.nbytes, out.device_ms, true_class, deadline_ms,
                                     stamp.sec * 10**9 + stamp.nanosec))
        self.last_edge_send_s = sent_s      # holds probes off (needs_probe)
        self.tensor_pub.publish(msg)

    def _frame_msg(self, frame: np.ndarray, stamp, seq: int) -> Image:
        img = Image()
        img.header.stamp = stamp
        img.header.frame_id = self.frame_id  # outcomes carry the same stamp: viewers pair by it
        img.height, img.width = int(frame.shape[0]), int(frame.shape[1])
        img.encoding = 'rgb8'
        img.step = img.width * 3
        img.data = np.ascontiguousarray(frame).tobytes()
        return img

    def _on_message_lost(self, info) -> None:
        """Results lost in transport: their frames will end as edge_timeout drops."""
        self.get_logger().warning(f'{info.total_count_change} result message(s) lost in transport',
                                  throttle_duration_sec=5.0)

    def _on_result(self, msg: InferenceResult, info) -> None:
        if msg.finished_on == InferenceResult.FINISHED_ON_DEVICE:
            return  # our own device-only result
        now = arrival_s(time.monotonic(), time.time_ns(), info)
        if msg.header.frame_id == self.frame_id + '/probe':
            self._on_probe_result(msg, now)
            return
        stamp_ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        with self.ledger_lock:
            p = self.ledger.take(int(msg.sequence), stamp_ns)
        if p is None:
            # expired already (its frame was counted as dropped), or history of an earlier run
            # of this camera (transient local): not a frame outcome
            self.late_results += 1
            return
        self._heard(now)
        if msg.status == InferenceResult.STATUS_OK:
            self.recent_lost.append(False)
            self.edge_queue_ms += 0.2 * (float(msg.edge_queue_ms) - self.edge_queue_ms)
            self.edge_batch += 0.2 * (max(1.0, float(msg.batch_size)) - self.edge_batch)
            transfer_s = (now - p.sent_s) - (msg.edge_ms + msg.edge_queue_ms) / 1e3
            if transfer_s > 0:
                self.estimator.add_transfer(now, p.payload_bytes, transfer_s)
        res = msg
        res.device_ms = p.device_ms
        rtt_ms = (now - p.sent_s) * 1e3
        res.uplink_ms = max(0.0, rtt_ms - msg.edge_ms - msg.edge_queue_ms)
        res.end_to_end_ms = (now - p.capture_s) * 1e3
        res.deadline_ms = p.deadline_ms
        res.true_class_id = p.true_class
        res.deadline_met = res.end_to_end_ms <= p.deadline_ms
        if msg.status == InferenceResult.STATUS_OK:
            self._outcome(res, 'ok_edge')
        else:
            self._outcome(res, f'refused:{msg.drop_reason}')

    # -- link: estimate, probes, fallback ----------------------------------------------------
    def _heard(self, now: float) -> None:
        self.watchdog.heard(now)
        if self.fallback:
            self.fallback = False
            self.get_logger().info('edge reachable again: co-inference resumes')

    def _send_probe(self, now: float) -> None:
        """Send two small real frames (split 0, final exit) back to back through the edge."""
        frame = self.images[0] if self.images is not None else np.zeros((32, 32, 3), np.uint8)
        enc = encode(np.ascontiguousarray(frame[None]), 'raw', name='probe')
        seqs = (self.probe_seq + 1, self.probe_seq + 2)
        self.probe_seq += 2
        # one pair in flight at most; the second spends no burst (see ProbePair)
        self.probe_pair = ProbePair(now, seqs, enc.nbytes)
        for seq in seqs:
            msg = Tensor()
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.header.frame_id = self.frame_id + '/probe'
            msg.sequence = seq
            msg.model_id = self.model_id
            msg.exit_index = NUM_EXITS
            msg.split_index = 0
            fill_message(msg, enc)
            self.tensor_pub.publish(msg)

    def _on_probe_result(self, msg: InferenceResult, now: float) -> None:
        pair = self.probe_pair
        if pair is None or not pair.owns(msg.sequence):
            return
        self._heard(now)
        edge_s = (msg.edge_ms + msg.edge_queue_ms) / 1e3
        if msg.sequence == pair.seqs[0]:
            self.rtt_ms = (now - pair.sent_s - edge_s) * 1e3
        sample = pair.result(msg.sequence, now, edge_s, msg.status == InferenceResult.STATUS_OK)
        if pair.complete():
            self.probe_pair = None
        if sample is not None:
            self.estimator.add_transfer(now, sample[0], sample[1], source='probe')

    def _on_link_timer(self) -> None:
        now = time.monotonic()
        reachable = self.watchdog.reachable(now)
        if not reachable and not self.fallback:
            self.fallback = True
            self.get_logger().warning(f'edge unreachable for {self.edge_timeout_s:g} s: running '
                                      'the best device-only configuration until it answers')
        if self.probe_pair is not None and now - self.probe_pair.sent_s > self.edge_timeout_s:
            self.probe_pair = None      # lost or unanswered: the next pair replaces it
        with self.ledger_lock:
            in_flight = self.ledger.in_flight
        if self.probe_pair is None and (self.fallback or self.estimator.needs_probe(
                now, in_flight, self.last_edge_send_s)):
            self._send_probe(now)
        est = self.estimator.estimate(now)
        m = LinkQuality()
        m.header.stamp = self.get_clock().now().to_msg()
        m.header.frame_id = self.get_namespace()
        m.edge_reachable = reachable
        m.rtt_ms = float(self.rtt_ms)
        m.loss = float(sum(self.recent_lost) / len(self.recent_lost)) if self.recent_lost else 0.0
        m.edge_queue_ms = float(self.edge_queue_ms)
        m.edge_batch_size = float(self.edge_batch)
        if est is not None and reachable:
            m.uplink_bandwidth_bps = float(est.bps)
            m.bandwidth_uncertainty = float(est.uncertainty)
            m.sample_count = int(est.sample_count)
            m.source = LinkQuality.SOURCE_PROBE if est.source == 'probe' \
                else LinkQuality.SOURCE_PASSIVE
        else:
            m.uplink_bandwidth_bps = 0.0
            m.bandwidth_uncertainty = 1.0
            m.sample_count = 0
            m.source = LinkQuality.SOURCE_PROBE
        self.link_pub.publish(m)

    def _on_housekeeping(self) -> None:
        with self.ledger_lock:
            for p in self.ledger.expire(time.monotonic()):
                self.recent_lost.append(True)
                self._drop(p.seq, None, p.true_class, 'edge_timeout', p.deadline_ms,
                           p.exit_index, p.split_index)
            done = self.ledger.produced >= self.max_frames and self.ledger.in_flight == 0
        if self.exit_when_done and self.max_frames and done and not self.robot_busy():
            self.get_logger().info(f'done: {self.ledger.summary()}')
            from rclpy.duration import Duration
            for pub in (self.outcome_pub, self.result_pub):   # let subscribers get the last ones
                pub.wait_for_all_acked(Duration(seconds=2.0))
            raise SystemExit(0)

    # -- outcomes ---------------------------------------------------------------------------
    def _result(self, seq, stamp, exit_index, split_index, true_class, deadline_ms
                ) -> InferenceResult:
        res = InferenceResult()
        if stamp is not None:
            res.header.stamp = stamp
        res.header.frame_id = self.frame_id
        res.sequence = seq
        res.model_id = self.model_id
        res.exit_index = exit_index
        res.requested_exit_index = exit_index
        res.split_index = split_index
        res.true_class_id = true_class
        res.deadline_ms = float(deadline_ms)
        res.class_id = -1
        return res

    @staticmethod
    def _fill_class(res: InferenceResult, c) -> None:
        res.class_id = c.class_id
        res.label = c.label
        res.confidence = c.confidence
        res.scores = c.scores.tolist()

    def _drop(self, seq, stamp, true_class, reason, deadline_ms, exit_index=0, split_index=0):
        res = self._result(seq, stamp, exit_index, split_index, true_class, deadline_ms)
        res.status = InferenceResult.STATUS_DROPPED
        res.drop_reason = reason
        self._outcome(res, f'dropped:{reason}')

    def _on_diagnostics(self) -> None:
        now = time.monotonic()
        est = self.estimator.estimate(now)
        reachable = self.watchdog.reachable(now)
        with self.ledger_lock:
            summary = self.ledger.summary()
        drops = sum(v for k, v in summary.items() if k.startswith(('dropped:', 'refused:')))
        values = {'edge_reachable': reachable, 'fallback_device_only': self.fallback,
                  'uplink_bandwidth_bps': f'{est.bps:.0f}' if est else 'unknown',
                  'rtt_ms': f'{self.rtt_ms:.1f}',
                  'deadline_met_rate': f'{sum(self.met) / len(self.met):.3f}' if self.met
                  else 'n/a',
                  'exit_index': self.exit_index, 'split_index': self.split_index,
                  'encoding': self.encoding, 'confidence_threshold': self.confidence_threshold,
                  'frames_dropped': drops, 'late_results': self.late_results}
        values.update(summary)
        level = 0 if reachable and not self.fallback else 1
        msg = (f'{summary["produced"]} frames, {drops} dropped'
               + ('' if reachable else '; edge unreachable: device-only fallback'))
        publish_diagnostics(self, self.diag_pub, [diagnostic_status(self, level, msg, values)])

    def _outcome(self, res: InferenceResult, kind: str) -> None:
        with self.ledger_lock:
            self.ledger.finish(kind)
            if res.status == InferenceResult.STATUS_OK:
                self.met.append(bool(res.deadline_met))
        self.outcome_pub.publish(res)
        if self.log_frames:
            if res.status == InferenceResult.STATUS_OK:
                self.get_logger().info(
                    f'frame {res.sequence}: {res.label} ({res.confidence:.2f}) exit '
                    f'{res.exit_index} split {res.split_index} e2e {res.end_to_end_ms:.1f} ms')
            else:
                self.get_logger().info(f'frame {res.sequence}: {kind}')


def main(args=None) -> int:
    """Console entry: ``ros2 run edgent_ros camera_node``."""
    return run(CameraNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
