"""
Message conversions of ``camera_node``: core values in, ``edgent_ros.msg`` / sensor messages out.

Every message carries the capture stamp of its frame in ``header.stamp`` (viewers and the
planner pair frames, tensors and outcomes by it), the camera's TF frame in ``header.frame_id``
and the camera node's namespace in ``robot``.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from sensor_msgs.msg import Image

from ..core.camera_link import LinkReport
from ..core.codec import EncodedTensor, fill_message
from ..core.ledger import Pending
from ..msg import InferenceResult, LinkQuality, Tensor


def stamp_ns(stamp: Any) -> int:
    """Return a ``builtin_interfaces/Time`` as integer nanoseconds."""
    return int(stamp.sec) * 10**9 + int(stamp.nanosec)


def tensor_msg(stamp: Any, frame_id: str, robot: str, model_id: str, seq: int, exit_index: int,
               split_index: int, enc: EncodedTensor, probe: bool = False) -> Tensor:
    """Return the ``Tensor`` of frame (or ``probe``) ``seq``: cut ``(exit, split)``, ``enc``."""
    msg = Tensor()
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.robot, msg.probe = robot, bool(probe)
    msg.sequence, msg.model_id = seq, model_id
    msg.exit_index, msg.split_index = exit_index, split_index
    fill_message(msg, enc)
    return msg


def image_msg(frame: np.ndarray, stamp: Any, frame_id: str) -> Image:
    """Return the uint8 RGB ``(H, W, 3)`` frame as an ``rgb8`` Image."""
    img = Image()
    img.header.stamp, img.header.frame_id = stamp, frame_id
    img.height, img.width = int(frame.shape[0]), int(frame.shape[1])
    img.encoding = 'rgb8'
    img.step = img.width * 3
    img.data = np.ascontiguousarray(frame).tobytes()
    return img


def result_msg(frame_id: str, robot: str, model_id: str, seq: int, stamp: Optional[Any],
               exit_index: int, split_index: int, true_class: int,
               deadline_ms: float) -> InferenceResult:
    """Return an ``InferenceResult`` of frame ``seq`` with no class yet (``class_id`` -1)."""
    res = InferenceResult()
    if stamp is not None:
        res.header.stamp = stamp
    res.header.frame_id, res.robot = frame_id, robot
    res.sequence, res.model_id = seq, model_id
    res.exit_index = res.requested_exit_index = exit_index
    res.split_index = split_index
    res.true_class_id = true_class
    res.deadline_ms = float(deadline_ms)
    res.class_id = -1
    return res


def fill_device_result(res: InferenceResult, classification: Any, device_ms: float,
                       end_to_end_ms: float) -> InferenceResult:
    """Fill ``res`` with a classification the robot finished itself (times in ms)."""
    c = classification
    res.finished_on = InferenceResult.FINISHED_ON_DEVICE
    res.class_id, res.label, res.confidence = c.class_id, c.label, c.confidence
    res.scores = c.scores.tolist()
    res.exit_index = c.exit_index or res.exit_index
    res.device_ms, res.end_to_end_ms = float(device_ms), float(end_to_end_ms)
    res.deadline_met = res.end_to_end_ms <= res.deadline_ms
    return res


def fill_edge_result(msg: InferenceResult, p: Pending, arrival_s: float) -> InferenceResult:
    """
    Complete the edge's result ``msg`` for the pending frame ``p``, arrived at ``arrival_s``.

    The uplink time is the round trip minus the edge's reported queueing and processing (ms);
    end-to-end is from capture to arrival, on the robot's clock.
    """
    msg.device_ms = p.device_ms
    msg.uplink_ms = max(0.0, (arrival_s - p.sent_s) * 1e3 - msg.edge_ms - msg.edge_queue_ms)
    msg.end_to_end_ms = (arrival_s - p.capture_s) * 1e3
    msg.deadline_ms = p.deadline_ms
    msg.true_class_id = p.true_class
    msg.deadline_met = msg.end_to_end_ms <= p.deadline_ms
    return msg


def link_quality_msg(report: LinkReport, stamp: Any, robot: str) -> LinkQuality:
    """Return ``LinkQuality`` for ``report`` (no estimate: 0 bit/s, uncertainty 1, 'probe')."""
    m = LinkQuality()
    m.header.stamp, m.robot = stamp, robot
    m.edge_reachable = report.edge_reachable
    m.rtt_ms, m.loss = float(report.rtt_ms), float(report.loss)
    m.edge_queue_ms, m.edge_batch_size = float(report.edge_queue_ms), float(report.edge_batch_size)
    est = report.estimate
    m.uplink_bandwidth_bps = float(est.bps) if est else 0.0
    m.bandwidth_uncertainty = float(est.uncertainty) if est else 1.0
    m.sample_count = int(est.sample_count) if est else 0
    m.source = LinkQuality.SOURCE_PASSIVE if est and est.source == 'passive' \
        else LinkQuality.SOURCE_PROBE
    return m
