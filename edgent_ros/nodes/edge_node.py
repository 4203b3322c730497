"""
edge_node (edge PC): finish layers [split, end) of each received Tensor, publish the result.

One edge node can serve several robots: ``robot_namespaces`` lists them (``[""]`` = the node's
own namespace); each gets its own ``<ns>/edgent/tensor`` subscription and ``<ns>/edgent/result``
publisher, so results never cross namespaces. One of several edges (``edge_name``, see
``core.edges``) serves ``<ns>/edgent/<edge_name>/tensor`` and answers on
``<ns>/edgent/<edge_name>/result`` instead. Frames wait in one bounded queue
(``core.batching.BatchQueue``) served by a worker thread; a frame that would overflow it, or
that waited longer than ``max_queue_ms``, is refused with a reason, as is every malformed frame.
Refusals are published as results with ``STATUS_REFUSED`` (so the robot accounts for them at
once) and counted per reason.

**Batching** (``max_batch`` > 1, off by default): when the worker takes a frame, the frames
already waiting with the same (exit, split, confidence threshold) join it, up to ``max_batch``
(from any robot); with ``batch_window_ms`` > 0 it also waits that long for more. One batched
forward costs less than the same frames one by one, so under load every frame waits less.
Each result reports the batch size; the planner scales its edge-time prediction by the
profiled batch cost (``LatencyModels.batch_factor``). Frames carry their own BranchyNet
``confidence_threshold``: side exits after the cut are tried on the edge.
"""

from __future__ import annotations

from collections import Counter
import functools
import threading
import time
from typing import Dict, Optional

import numpy as np

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node

from . import qos
from ..core.batching import Batch, BatchQueue
from ..core.diagnostics import count_of, edge_findings, grade, message, RecentCounts
from ..core.edges import check_edge_names
from ..core.link import arrival_s
from ..core.ledger import check_threshold, FrameRefused, publisher_key, SequenceTracker
from ..msg import InferenceResult, Tensor
from .node_util import (accept, check_planned_model, declare, declare_diagnostics,
                        declare_planned_model, diagnostic_status, load_runner,
                        publish_diagnostics, refuse, run, stamp_to_s)
from ..core.codec import bottleneck_width, check_padding, CodecError, from_message, is_padding
from ..core.tensor_wire import parse


class EdgeNode(Node):
    """Edge side of Edgent co-inference."""

    def __init__(self, **kwargs):
        super().__init__('edge_node', **kwargs)
        weights = declare(self, 'weights_path', '', 'safetensors weights; empty = shipped model',
                          read_only=True)
        self.runner, self.model_id = load_runner(self, weights, 2, 256)
        n_exits = self.runner.num_exits
        max_split = max(self.runner.branch_len(e) for e in range(1, n_exits + 1))
        self.exit_index = declare(self, 'exit_index', n_exits,
                                  'advisory: branch expected next (warm-up)',
                                  int_range=(1, n_exits))
        self.split_index = declare(self, 'split_index', 0, 'advisory: split expected next',
                                   int_range=(0, max_split))
        max_queue = declare(self, 'max_queue', 4, 'frames waiting at most; older dropped',
                            int_range=(1, 1024))
        max_queue_ms = declare(self, 'max_queue_ms', 1000.0,
                               'a frame that waited longer is refused (stale)',
                               float_range=(1.0, 600_000.0))
        self.max_payload_bytes = declare(self, 'max_payload_bytes', 8 * 1024 * 1024,
                                         'refuse tensors with a larger payload',
                                         int_range=(1, 1 << 30))
        max_batch = declare(self, 'max_batch', 1, 'frames of one configuration computed '
                            'together (1 = no batching)', int_range=(1, 64))
        batch_window_ms = declare(self, 'batch_window_ms', 0.0,
                                  'with max_batch > 1: wait this long for more frames '
                                  '(0 = batch only the frames already waiting)',
                                  float_range=(0.0, 100.0))
        namespaces = declare(self, 'robot_namespaces', [''],
                             'robots served: one tensor/result topic pair per namespace',
                             read_only=True)
        edge_name = declare(self, 'edge_name', '', 'one of several edges: serve '
                            'edgent/<edge_name>/tensor and answer on edgent/<edge_name>/result '
                            'under each robot namespace (camera_node parameter edges); empty = '
                            'the one edge, on edgent/tensor and edgent/result', read_only=True)
        raw = declare(self, 'raw_subscription', False, 'take edgent/tensor as CDR bytes, parsed '
                      'by core.tensor_wire (the payload stays in the received buffer; any '
                      'Tensor publisher works)', read_only=True)
        self.counts: Counter = Counter()    # since start: values of the diagnostic status
        self.diag_pub, window_s = declare_diagnostics(self, self._on_diagnostics)
        self.recent = RecentCounts(window_s)   # the same events, recent: the status's level
        declare_planned_model(self)
        self.add_on_set_parameters_callback(self._on_set)
        self.add_post_set_parameters_callback(self._post_set)

        self.seq_tracker = SequenceTracker()
        # items: (namespace, Tensor, array); configuration: _config_of(Tensor)
        self.batches = BatchQueue(max_queue, max_queue_ms, max_batch, batch_window_ms)
        self.cv = threading.Condition()   # guards self.batches (ROS callbacks vs the worker)
        try:
            self.edge_name = check_edge_names([edge_name])[0] if edge_name else ''
        except ValueError as exc:
            self.get_logger().fatal(f'edge_name: {exc}')
            raise SystemExit(2) from exc
        # InferenceResult.edge: which edge answered (a robot with several edges logs it)
        self.answered_by = self.edge_name or self.get_fully_qualified_name()
        self.pubs: Dict[str, object] = {}
        for ns in namespaces:
            prefix = f'{ns.strip("/")}/' if ns.strip('/') else ''
            topic_ns = (('/' + prefix) if prefix else '') + 'edgent/' + (
                f'{self.edge_name}/' if self.edge_name else '')
            self.pubs[ns] = self.create_publisher(InferenceResult, f'{topic_ns}result',
                                                  qos.EDGE_RESULT)
            self.create_subscription(
                Tensor, f'{topic_ns}tensor', functools.partial(self._on_tensor, ns),
                qos.TENSOR, event_callbacks=SubscriptionEventCallbacks(
                    message_lost=self._on_message_lost,
                    incompatible_qos=self._on_incompatible_qos), raw=raw)
        self._stop = False
        self.worker = threading.Thread(target=self._work, name='edge_worker', daemon=True)
        self.worker.start()
        self._warm_up(self.exit_index, self.split_index)
        self.get_logger().info(f'edge_node: model {self.model_id}, serving '
                               f'{[n or self.get_namespace() for n in namespaces]}')

    def _on_set(self, params):
        new = {p.name: p.value for p in params}
        reason = check_planned_model(new, self.model_id)
        if reason:
            return refuse(reason)
        if 'exit_index' in new or 'split_index' in new:
            e = int(new.get('exit_index', self.exit_index))
            s = int(new.get('split_index', self.split_index))
            n = self.runner.branch_len(e)
            if not 0 <= s <= n:
                return refuse(f'split_index {s} out of range 0..{n} for exit {e}')
        return accept()

    def _post_set(self, params):
        for p in params:
            if p.name in ('exit_index', 'split_index', 'max_payload_bytes'):
                setattr(self, p.name, p.value)
            if p.name == 'diagnostics_window_s':
                self.recent.window_s = p.value
        with self.cv:
            self.batches.configure(**{p.name: p.value for p in params if p.name in (
                'max_queue', 'max_queue_ms', 'max_batch', 'batch_window_ms')})
        if any(p.name in ('exit_index', 'split_index') for p in params):
            self._warm_up(self.exit_index, self.split_index)

    def _warm_up(self, exit_index: int, split_index: int) -> None:
        """Run the expected suffix once so the first real frame pays no allocation cost."""
        if split_index >= self.runner.branch_len(exit_index):
            return
        shape = self.runner.expected_shape(exit_index, split_index)
        dtype = np.uint8 if split_index == 0 else np.float32
        self.runner.edge_step(np.zeros(shape, dtype), exit_index, split_index)

    # -- receive ----------------------------------------------------------------------------
    def _on_tensor(self, ns: str, msg: Tensor, info) -> None:
        # ``info`` (MessageInfo) must be a required argument: rclpy passes it only to a callback
        # that cannot be called with the message alone (with ``info=None`` it never came, and
        # neither the reception time nor the publisher's GID below were used).
        # When the middleware received it, not when the executor got round to this callback:
        # the time a frame waits here counts as the edge's, never as the link's
        arrival = arrival_s(time.monotonic(), time.time_ns(), info)
        if isinstance(msg, bytes):   # raw_subscription: a WireTensor, data a view of the bytes
            try:
                msg = parse(msg)
            except CodecError as exc:   # no sequence to answer: counted, the camera times out
                self.counts['refused:malformed'] += 1
                self.recent.add('refused:malformed', arrival)
                self.get_logger().warning(f'unreadable tensor on "{ns or "/"}": {exc}',
                                          throttle_duration_sec=2.0)
                return
        padding = is_padding(msg)   # a camera measuring a fast link: answered, never computed
        try:
            if padding:
                check_padding(msg, self.max_payload_bytes)
            else:
                array = from_message(msg, max_bytes=self.max_payload_bytes)
                self.runner.validate(msg.model_id, int(msg.exit_index), int(msg.split_index),
                                     array, msg.encoding, msg.bottleneck_id)
                check_threshold(msg.confidence_threshold)
            self.seq_tracker.check(f'{ns}|{msg.robot}|{int(msg.probe)}|{publisher_key(info)}',
                                   int(msg.sequence))
        except CodecError as exc:
            self._refuse(ns, msg, exc.reason, str(exc))
            return
        except FrameRefused as exc:
            self._refuse(ns, msg, exc.reason, exc.detail)
            return
        if padding:
            self._answer_padding(ns, msg, arrival)
            return
        with self.cv:
            for r in self.batches.push((ns, msg, array, arrival), self._config_of(msg), arrival):
                self._refuse(r.item[0], r.item[1], r.reason, r.detail)
            self.cv.notify()

    def _answer_padding(self, ns: str, msg: Tensor, arrival: float) -> None:
        """Answer a (checked) padding probe at once, without compute."""
        res = self._result_for(msg)
        res.status = InferenceResult.STATUS_OK
        res.edge_queue_ms = max(0.0, (time.monotonic() - arrival) * 1e3)
        self.counts['probe:padding'] += 1
        self.pubs[ns].publish(res)

    def _on_message_lost(self, info) -> None:
        """DDS lost tensors before they reached us (e.g. a fragment never arrived)."""
        self.counts['lost:dds'] += int(info.total_count_change)
        self.recent.add('lost:dds', time.monotonic(), int(info.total_count_change))
        self.get_logger().warning(f'{info.total_count_change} tensor message(s) lost in transport',
                                  throttle_duration_sec=5.0)

    def _on_incompatible_qos(self, info) -> None:
        self.counts['incompatible_qos'] += 1
        self.recent.add('incompatible_qos', time.monotonic())
        self.get_logger().error('a tensor publisher has an incompatible QoS (policy '
                                f'{info.last_policy_kind}); its frames will never arrive',
                                throttle_duration_sec=10.0)

    def _on_diagnostics(self) -> None:
        """Publish the status: level from the recent window, counts since start as values."""
        now = time.monotonic()
        recent = self.recent.counts(now)
        level, reasons = grade(edge_findings(recent, self.recent.window_s))
        refused = sum(v for k, v in self.counts.items() if k.startswith('refused:'))
        values = {'frames_ok': self.counts['ok'], 'frames_refused': refused,
                  'recent_frames_ok': recent.get('ok', 0),
                  'recent_frames_refused': count_of(recent, ('refused:',)),
                  'diagnostics_window_s': self.recent.window_s,
                  'queue_depth': len(self.batches), 'max_queue': self.batches.max_queue,
                  'max_batch': self.batches.max_batch,
                  'model_id': self.model_id, 'robots': ','.join(self.pubs) or '/',
                  'edge_name': self.edge_name or '(the one edge)'}
        values.update(sorted((k, v) for k, v in self.counts.items() if k != 'ok'))
        publish_diagnostics(self, self.diag_pub, [diagnostic_status(self, level, message(
            f'{self.counts["ok"]} frames finished, {refused} refused since start', reasons),
            values)])

    def _refuse(self, ns: str, msg: Tensor, reason: str, detail: str) -> None:
        self.counts[f'refused:{reason}'] += 1
        self.recent.add(f'refused:{reason}', time.monotonic())
        self.get_logger().warning(f'refused frame {msg.sequence} from "{ns or "/"}": {detail}',
                                  throttle_duration_sec=2.0)
        res = self._result_for(msg)
        res.status = InferenceResult.STATUS_REFUSED
        res.drop_reason = reason
        self.pubs[ns].publish(res)

    def _result_for(self, msg: Tensor) -> InferenceResult:
        res = InferenceResult()
        stamp = msg.header.stamp     # a Tensor's or a tensor_wire.WireTensor's header
        res.header.stamp.sec, res.header.stamp.nanosec = stamp.sec, stamp.nanosec
        res.header.frame_id = msg.header.frame_id
        res.robot, res.probe = msg.robot, msg.probe
        res.edge = self.answered_by
        res.sequence = msg.sequence
        res.model_id = msg.model_id
        res.exit_index = msg.exit_index
        res.requested_exit_index = msg.exit_index
        res.split_index = msg.split_index
        res.encoding = msg.encoding
        res.finished_on = InferenceResult.FINISHED_ON_EDGE
        res.class_id = -1
        res.true_class_id = -1
        res.device_ms = float(msg.device_compute_ms)
        return res

    # -- compute ----------------------------------------------------------------------------
    @staticmethod
    def _config_of(msg: Tensor) -> tuple:
        """Frames batch together when these match (a bottleneck's maps need its decoder)."""
        return (int(msg.exit_index), int(msg.split_index), float(msg.confidence_threshold),
                msg.encoding if bottleneck_width(msg.encoding) is not None else '')

    def _next_batch(self) -> Optional[Batch]:
        """Wait (under ``cv``) for the next closed batch; None once stopping."""
        while True:
            if self._stop and not self.batches.batch_open:
                return None
            got = self.batches.take(time.monotonic(), flush=self._stop)
            if isinstance(got, Batch):
                return got
            self.cv.wait(0.5 if got is None else got)

    def _work(self) -> None:
        while True:
            with self.cv:
                batch = self._next_batch()
            if batch is None:
                return
            for r in batch.refused:
                self._refuse(r.item[0], r.item[1], r.reason, r.detail)
            ready = [(ns, msg, array, arrival) for (ns, msg, array, arrival), _ in batch.items]
            if not ready:
                continue
            exit_index, split_index, threshold, bn = self._config_of(ready[0][1])
            try:
                classes, edge_ms = self.runner.edge_batch([r[2] for r in ready], exit_index,
                                                          split_index, threshold, bn or 'raw')
            except Exception as exc:  # keep serving: a bad frame must not kill the edge
                for ns, msg, _, _ in ready:
                    self._refuse(ns, msg, 'compute_error', repr(exc))
                continue
            now = self.get_clock().now().nanoseconds * 1e-9
            self.counts[f'batch_size_{len(ready)}'] += 1
            for (ns, msg, _, arrival), cls in zip(ready, classes):
                res = self._result_for(msg)
                res.exit_index = cls.exit_index
                res.class_id = cls.class_id
                res.label = cls.label
                res.confidence = cls.confidence
                res.scores = cls.scores.tolist()
                res.edge_ms = edge_ms
                # everything else the frame spent here (executor, queue, batch, this loop), so
                # that the robot's round trip minus edge_ms + edge_queue_ms is link time only
                held_ms = (time.monotonic() - arrival) * 1e3
                res.edge_queue_ms = max(0.0, held_ms - edge_ms)
                res.batch_size = len(ready)
                # edge clock; the robot recomputes it
                res.end_to_end_ms = max(0.0, (now - stamp_to_s(msg.header.stamp)) * 1e3)
                res.status = InferenceResult.STATUS_OK
                self.counts['ok'] += 1
                self.recent.add('ok', time.monotonic())
                self.pubs[ns].publish(res)

    def destroy_node(self):
        """Stop the worker thread (if start-up got that far), then destroy the node."""
        if hasattr(self, 'worker'):
            with self.cv:
                self._stop = True
                self.cv.notify_all()
            self.worker.join(timeout=2.0)
        return super().destroy_node()


def main(args=None) -> int:
    """Console entry: ``ros2 run edgent_ros edge_node``."""
    return run(EdgeNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
