"""
viz_node: what rviz shows of a robot's co-inference.

Subscribes ``edgent/outcome`` (one per frame), ``edgent/frame`` (the captured frame, same stamp),
``edgent/link_quality`` and ``edgent/decision``; publishes ``edgent/annotated``
(``sensor_msgs/Image`` via cv_bridge, bgr8), ``edgent/markers`` (latency breakdown bars against
the deadline, link bandwidth text) and ``/diagnostics`` (deadline-met rate, drops per reason,
link estimate, edge reachable, current decision; WARN while the edge is unreachable or fewer than
90 % of the frames of the last ``diagnostics_window_s`` met the deadline).
"""

from __future__ import annotations

from collections import OrderedDict
import time
from typing import Optional

from geometry_msgs.msg import Point
from rclpy.node import Node
from sensor_msgs.msg import Image
from visualization_msgs.msg import Marker, MarkerArray

from . import qos
from ..core.arch import CLASSES
from ..core.diagnostics import deadline_findings, grade, Level, message, RecentCounts
from ..msg import ExitSplitDecision, InferenceResult, LinkQuality
from .node_util import declare, declare_diagnostics, diagnostic_status, publish_diagnostics, run
from ..core.viz import annotate, latency_bars, OutcomeView, VizStats

BAR_COLOURS = {'device': (0.2, 0.4, 0.9), 'uplink': (0.9, 0.6, 0.1), 'edge': (0.3, 0.7, 0.3)}


class VizNode(Node):
    """Annotated frames, latency markers and diagnostics for rviz."""

    def __init__(self, **kwargs):
        super().__init__('viz_node', **kwargs)
        from cv_bridge import CvBridge
        self.bridge = CvBridge()
        self.marker_frame = declare(self, 'marker_frame_id', 'edgent',
                                    'frame_id of the markers (rviz fixed frame)', read_only=True)
        self.size = declare(self, 'image_size', 256, 'annotated image width (px)',
                            int_range=(32, 2048), read_only=True)
        self.diag_pub, window_s = declare_diagnostics(self, self._on_diagnostics)
        self.recent = RecentCounts(window_s)   # met / missed / dropped:<reason>: the level
        self.add_post_set_parameters_callback(self._post_set)
        self.stats = VizStats()
        self.frames: 'OrderedDict[tuple, object]' = OrderedDict()
        self.link: Optional[LinkQuality] = None
        self.decision: Optional[ExitSplitDecision] = None
        self.image_pub = self.create_publisher(Image, 'edgent/annotated', qos.VIZ)
        self.marker_pub = self.create_publisher(MarkerArray, 'edgent/markers', qos.VIZ)
        self.create_subscription(Image, 'edgent/frame', self._on_frame, qos.VIZ)
        self.create_subscription(InferenceResult, 'edgent/outcome', self._on_outcome,
                                 qos.RESULT)
        self.create_subscription(LinkQuality, 'edgent/link_quality',
                                 lambda m: setattr(self, 'link', m), qos.LINK_QUALITY)
        self.create_subscription(ExitSplitDecision, 'edgent/decision',
                                 lambda m: setattr(self, 'decision', m), qos.DECISION)

    def _post_set(self, params) -> None:
        for p in params:
            if p.name == 'diagnostics_window_s':
                self.recent.window_s = p.value

    def _on_frame(self, msg: Image) -> None:
        self.frames[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg
        while len(self.frames) > 64:
            self.frames.popitem(last=False)

    def _on_outcome(self, r: InferenceResult) -> None:
        ok = r.status == InferenceResult.STATUS_OK
        o = OutcomeView(ok, r.label, CLASSES[r.true_class_id] if 0 <= r.true_class_id < 10
                        else '', r.confidence, r.exit_index, r.split_index, r.end_to_end_ms,
                        r.device_ms, r.uplink_ms, r.edge_ms + r.edge_queue_ms, r.deadline_ms,
                        r.deadline_met, r.drop_reason, r.encoding, r.requested_exit_index)
        self.stats.add(o)
        self.recent.add(('met' if o.deadline_met else 'missed') if ok
                        else f'dropped:{o.drop_reason or "unknown"}', time.monotonic())
        frame_msg = self.frames.pop((r.header.stamp.sec, r.header.stamp.nanosec), None)
        frame = None
        if frame_msg is not None:
            frame = self.bridge.imgmsg_to_cv2(frame_msg, desired_encoding='rgb8')
        out = self.bridge.cv2_to_imgmsg(annotate(frame, o, self.size), encoding='bgr8')
        out.header = r.header
        self.image_pub.publish(out)
        self.marker_pub.publish(self._markers(o, r))

    def _markers(self, o: OutcomeView, r: InferenceResult) -> MarkerArray:
        arr = MarkerArray()
        bars = latency_bars(o)
        base = 0.0
        for i, part in enumerate(('device', 'uplink', 'edge')):
            m = Marker()
            m.header.frame_id = self.marker_frame
            m.header.stamp = r.header.stamp
            m.ns, m.id, m.type, m.action = 'latency', i, Marker.CUBE, Marker.ADD
            h = max(bars[part], 1e-4)
            m.pose.position.x, m.pose.position.z = 0.0, base + h / 2
            m.pose.orientation.w = 1.0
            m.scale.x = m.scale.y = 0.2
            m.scale.z = h
            m.color.r, m.color.g, m.color.b = BAR_COLOURS[part]
            m.color.a = 0.9
            base += h
            arr.markers.append(m)
        line = Marker()
        line.header.frame_id = self.marker_frame
        line.header.stamp = r.header.stamp
        line.ns, line.id, line.type, line.action = 'deadline', 0, Marker.LINE_STRIP, Marker.ADD
        line.pose.orientation.w = 1.0
        line.scale.x = 0.01
        line.points = [Point(x=-0.3, z=bars['deadline']), Point(x=0.3, z=bars['deadline'])]
        line.color.r, line.color.a = (0.2 if o.deadline_met else 1.0), 1.0
        arr.markers.append(line)
        text = Marker()
        text.header.frame_id = self.marker_frame
        text.header.stamp = r.header.stamp
        text.ns, text.id, text.type, text.action = 'text', 0, Marker.TEXT_VIEW_FACING, Marker.ADD
        text.pose.position.z = max(base, bars['deadline']) + 0.15
        text.pose.orientation.w = 1.0
        text.scale.z = 0.08
        text.color.r = text.color.g = text.color.b = text.color.a = 1.0
        bw = (f'{self.link.uplink_bandwidth_bps / 1e6:.2f} Mbit/s' if self.link is not None
              else 'link ?')
        text.text = (f'{o.end_to_end_ms:.1f} ms / {o.deadline_ms:.0f} ms  exit {o.exit_index} '
                     f'split {o.split_index}  {bw}')
        arr.markers.append(text)
        return arr

    def _on_diagnostics(self) -> None:
        """Publish the status: level from the edge's reachability and the recent window."""
        values = self.stats.summary()
        if self.link is not None:
            values['uplink_bandwidth_bps'] = f'{self.link.uplink_bandwidth_bps:.0f}'
            values['edge_reachable'] = str(self.link.edge_reachable)
        if self.decision is not None:
            values['decision'] = (f'exit {self.decision.exit_index} split '
                                  f'{self.decision.split_index} ({self.decision.policy})')
        recent = self.recent.counts(time.monotonic())
        met, missed = recent.get('met', 0), recent.get('missed', 0)
        values.update(diagnostics_window_s=self.recent.window_s, recent_frames=met + missed,
                      recent_deadline_met=met,
                      recent_dropped=sum(v for k, v in recent.items() if k.startswith('dropped:')))
        findings = deadline_findings(met, missed, self.recent.window_s)
        if self.link is not None and not self.link.edge_reachable:
            findings.append((Level.WARN, 'edge unreachable'))
        level, reasons = grade(findings)
        rate = self.stats.deadline_met_rate()
        summary = ('deadline met on ' + ('n/a' if rate is None else f'{100 * rate:.0f} %')
                   + f' of the last {len(self.stats.met)} classified frames')
        publish_diagnostics(self, self.diag_pub, [diagnostic_status(
            self, level, message(summary, reasons), values)])


def main(args=None) -> int:
    """Console entry: ``ros2 run edgent_ros viz_node``."""
    return run(VizNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
