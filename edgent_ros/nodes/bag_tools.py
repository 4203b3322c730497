"""
``edgent-ros record`` and ``edgent-ros play``: rosbag2 files of live topics, via rclpy.

``record`` waits for each topic's first publisher, then subscribes raw (serialized CDR, no
conversion) with the QoS ``ros2 bag record`` requests from the publishers' offers (best effort
unless every publisher is reliable, transient local only if every one is), writes the messages
with ``bags.BagWriter`` and stores the offers in the bag. ``play`` publishes a bag's messages raw
with their original timing (scaled by ``--rate``), each topic with the QoS recorded for it, and
with ``--clock`` publishes the bag's time on ``/clock`` for nodes with ``use_sim_time``. Works
without ``ros2 bag`` (rosbag2_py is not on PyPI); the files are standard rosbag2.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Dict, List, Optional

from . import bags
from .bags import BagWriter, read

DEFAULT_TOPICS = ['image_raw', 'edgent/link_quality', 'edgent/outcome', 'edgent/result',
                  'edgent/decision']

RECORD_DEPTH = 100     # history does not take part in matching; room for a burst while we write
POLL_S = 0.1           # look for the first publisher of a topic not recorded yet this often (s)
RECHECK_S = 0.5        # look for new publishers of a recorded topic this often (s)
SWITCH_TIMEOUT_S = 2.0  # a replacement subscription takes over when it matched all, or after this
CLOCK_HZ = 40.0        # `--clock` without a value: ros2 bag play's default rate


def _offer(info):
    """Return the rosbags ``Qos`` a publisher offers, from its rclpy ``TopicEndpointInfo``."""
    q = info.qos_profile
    return bags.qos_from_rmw(q.history, q.depth, q.reliability, q.durability,
                             q.deadline.nanoseconds, q.lifespan.nanoseconds, q.liveliness,
                             q.liveliness_lease_duration.nanoseconds,
                             q.avoid_ros_namespace_conventions)


def _describe(request: bags.Request) -> str:
    return ('reliable' if request.reliable else 'best effort') + ', ' + (
        'transient local' if request.transient_local else 'volatile')


class _Topic:
    """One recorded topic: its type, the QoS requested, the publishers seen, its subscriptions."""

    def __init__(self, msgtype: str, request: bags.Request, gids: set):
        self.msgtype = msgtype
        self.request = request
        self.gids = gids
        self.active = None       # the subscription whose messages are written
        self.pending = None      # a weaker replacement, matching publishers before it takes over
        self.pending_since = 0.0
        self.next_check = 0.0
        self.count = 0


class Recorder:
    """
    Subscribe to topics as their publishers appear, with the QoS ``ros2 bag record`` requests.

    ``poll()`` (called every ``POLL_S``) subscribes a topic when its first publishers are
    discovered, requesting what all of them offer (``bags.request_for_offers``), and stores their
    offers in the bag. A publisher that appears later and that the subscription does not match
    (a best-effort one on a reliable subscription, a volatile one on a transient-local one) makes
    a weaker subscription, which takes over once it matched every publisher (or after
    ``SWITCH_TIMEOUT_S``), so it is recorded too; ``ros2 bag record`` only warns there. The
    offers stored are those of the first publishers, as rosbag2 does.
    """

    def __init__(self, node, writer: BagWriter, topics: List[str]):
        self.node = node
        self.writer = writer
        self.wanted = list(dict.fromkeys(node.resolve_topic_name(t) for t in topics))
        self.topics: Dict[str, _Topic] = {}
        self.log = node.get_logger()

    def total(self) -> int:
        """Messages written so far, all topics."""
        return sum(t.count for t in self.topics.values())

    def poll(self) -> None:
        """Subscribe topics whose first publishers appeared; follow new publishers of others."""
        now = time.monotonic()
        for full in self.wanted:
            t = self.topics.get(full)
            if t is not None and t.pending is None and now < t.next_check:
                continue
            infos = self.node.get_publishers_info_by_topic(full)
            if t is None:
                if infos:
                    self._start(full, infos, now)
            else:
                self._recheck(full, t, [i for i in infos if i.topic_type == t.msgtype], now)

    def _start(self, full: str, infos, now: float) -> None:
        msgtype = infos[0].topic_type
        if len({i.topic_type for i in infos}) > 1:
            self.log.warning(f'publishers of {full} disagree on its type '
                             f'{sorted({i.topic_type for i in infos})}: recording {msgtype}')
            infos = [i for i in infos if i.topic_type == msgtype]
        offers = [_offer(i) for i in infos]
        request = bags.request_for_offers(offers)
        if not request.reliable and any(q.reliability.value == bags.RELIABLE for q in offers):
            self.log.warning(f'{full}: some but not all publishers are reliable: recording best '
                             'effort, some messages of the reliable ones could be lost')
        if not request.transient_local and any(
                q.durability.value == bags.TRANSIENT_LOCAL for q in offers):
            self.log.warning(f'{full}: some but not all publishers are transient local: '
                             'recording volatile, their earlier (latched) messages are not')
        self.writer.add_topic(full, msgtype, offers)
        t = _Topic(msgtype, request, {tuple(i.endpoint_gid) for i in infos})
        t.active = self._subscribe(full, t)
        t.next_check = now + RECHECK_S
        self.topics[full] = t

    def _recheck(self, full: str, t: _Topic, infos, now: float) -> None:
        t.next_check = now + RECHECK_S
        if t.pending is not None:
            if (t.pending.get_publisher_count() >= len(infos)
                    or now - t.pending_since > SWITCH_TIMEOUT_S):
                old, t.active, t.pending = t.active, t.pending, None
                self.node.destroy_subscription(old)
            return
        new = [i for i in infos if tuple(i.endpoint_gid) not in t.gids]
        if not new:
            return
        t.gids.update(tuple(i.endpoint_gid) for i in new)
        if not bags.misses(t.request, [_offer(i) for i in new]):
            return
        weaker = bags.request_for_offers([_offer(i) for i in infos])
        t.request = bags.Request(t.request.reliable and weaker.reliable,
                                 t.request.transient_local and weaker.transient_local)
        self.log.warning(f'{full}: a new publisher offers less than the subscription requested: '
                         f'subscribing again {_describe(t.request)} to record it too')
        t.pending = self._subscribe(full, t)
        t.pending_since = now

    def _subscribe(self, full: str, t: _Topic):
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from rosidl_runtime_py.utilities import get_message
        profile = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=RECORD_DEPTH,
            reliability=(ReliabilityPolicy.RELIABLE if t.request.reliable
                         else ReliabilityPolicy.BEST_EFFORT),
            durability=(DurabilityPolicy.TRANSIENT_LOCAL if t.request.transient_local
                        else DurabilityPolicy.VOLATILE))

        def cb(data: bytes) -> None:
            if t.active is sub:   # a replacement still matching publishers writes nothing yet
                self.writer.write_raw(full, time.time_ns(), data)
                t.count += 1
        sub = self.node.create_subscription(get_message(t.msgtype), full, cb, profile, raw=True)
        return sub


def cmd_record(args: argparse.Namespace) -> int:
    """Record ``--topics`` for ``--duration`` seconds (or ``--count`` messages) into ``--out``."""
    if args.duration <= 0:
        raise ValueError(f'--duration must be > 0, got {args.duration}')
    writer = BagWriter(args.out, storage=args.storage)   # refuses an existing folder first
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    rclpy.init()
    node = rclpy.create_node('edgent_recorder')
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    rec = Recorder(node, writer, args.topics)
    t_end = time.monotonic() + args.duration
    next_poll = 0.0
    try:
        while time.monotonic() < t_end:
            if time.monotonic() >= next_poll:
                rec.poll()
                next_poll = time.monotonic() + POLL_S
            ex.spin_once(timeout_sec=0.02)
            if args.count and rec.total() >= args.count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        writer.close()
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    print(f'wrote {args.out}: ' + ', '.join(f'{name} {t.count} ({_describe(t.request)})'
                                            for name, t in rec.topics.items()))
    missing = [name for name in rec.wanted if name not in rec.topics]
    if missing:
        print(f'never published: {missing}', file=sys.stderr)
    return 0


def _fallback_qos(topic: str):
    """
    Return the QoS to play ``topic`` with when the bag recorded no offers, or a mix of them.

    The profile our nodes publish that topic with (any namespace), else rosbag2's default
    (reliable, volatile, keep last 10).
    """
    from rclpy.qos import QoSProfile
    from . import qos
    own = {'image_raw': qos.IMAGE, 'edgent/tensor': qos.TENSOR, 'edgent/result': qos.EDGE_RESULT,
           'edgent/outcome': qos.RESULT, 'edgent/link_quality': qos.LINK_QUALITY,
           'edgent/decision': qos.DECISION, 'edgent/frame': qos.VIZ}
    name = topic.strip('/')
    for key, profile in own.items():
        if name == key or name.endswith('/' + key):
            return profile
    return QoSProfile(depth=bags.PLAY_DEPTH)


def _play_qos(topic: str, offers: List):
    """Return the rclpy profile to play ``topic`` with: its recorded offer, else the fallback."""
    from rclpy.duration import Duration
    from rclpy.qos import (DurabilityPolicy, HistoryPolicy, LivelinessPolicy, QoSProfile,
                           ReliabilityPolicy)
    q = bags.offer_from_recorded(offers)
    if q is None:
        if offers:
            print(f'{topic}: the recorded publishers offered different QoS; playing with the '
                  'default', file=sys.stderr)
        return _fallback_qos(topic)

    def ns(t) -> int:
        return min(2**63 - 1, t.sec * 10**9 + t.nsec)
    # policies rclpy cannot request (unknown, system default, ...) take rosbag2's default
    rel = q.reliability.value if q.reliability.value in (bags.RELIABLE, bags.BEST_EFFORT) \
        else bags.RELIABLE
    dur = q.durability.value if q.durability.value in (bags.TRANSIENT_LOCAL, bags.VOLATILE) \
        else bags.VOLATILE
    live = q.liveliness.value if q.liveliness.value in (1, 3) else 1   # automatic, by topic
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=q.depth,
                      reliability=ReliabilityPolicy(rel), durability=DurabilityPolicy(dur),
                      deadline=Duration(nanoseconds=ns(q.deadline)),
                      lifespan=Duration(nanoseconds=ns(q.lifespan)),
                      liveliness=LivelinessPolicy(live),
                      liveliness_lease_duration=Duration(nanoseconds=ns(
                          q.liveliness_lease_duration)),
                      avoid_ros_namespace_conventions=q.avoid_ros_namespace_conventions)


class _Clock:
    """
    The bag's time on ``/clock`` every ``1 / hz`` s of wall time, as ``ros2 bag play --clock``.

    Before playback starts it holds the bag's first time stamp; then it runs ``rate`` times wall
    time, never past the bag's last stamp. Best effort, keep last 1 (rclcpp's ``ClockQoS``, what
    rclpy's and rclcpp's time sources subscribe with).
    """

    def __init__(self, node, hz: float, rate: float, start_ns: int, end_ns: int):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        self.msg = Clock
        self.pub = node.create_publisher(
            Clock, '/clock', QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        self.period, self.rate = 1.0 / hz, rate
        self.start_ns, self.end_ns = start_ns, end_ns
        self.t0: Optional[float] = None    # wall (monotonic) time of start_ns once playing
        self.due = time.monotonic()

    def bag_ns(self, now: float) -> int:
        """Return the bag time (ns) at monotonic ``now``."""
        if self.t0 is None:
            return self.start_ns
        return min(self.end_ns, self.start_ns + int((now - self.t0) * self.rate * 1e9))

    def tick(self, now: float) -> None:
        """Publish the bag time now and schedule the next tick."""
        from builtin_interfaces.msg import Time
        ns = self.bag_ns(now)
        self.pub.publish(self.msg(clock=Time(sec=ns // 10**9, nanosec=ns % 10**9)))
        self.due = self.due + self.period if self.due + self.period > now else now + self.period


def _sleep_until(t_wall: float, clock: Optional[_Clock]) -> None:
    """Sleep until monotonic ``t_wall``, publishing every clock tick that falls due meanwhile."""
    while True:
        now = time.monotonic()
        if clock is not None and clock.due <= now:
            clock.tick(now)
            continue
        wake = t_wall if clock is None else min(t_wall, clock.due)
        if t_wall <= now:
            return
        time.sleep(wake - now)


def cmd_play(args: argparse.Namespace) -> int:
    """Publish a bag's messages with their original timing divided by ``--rate``."""
    import rclpy
    from rosidl_runtime_py.utilities import get_message

    if args.rate <= 0:
        raise ValueError(f'--rate must be > 0, got {args.rate}')
    clock_hz = getattr(args, 'clock', 0.0) or 0.0
    if clock_hz < 0:
        raise ValueError(f'--clock must be > 0 Hz, got {clock_hz}')
    messages = list(read(args.bag, args.topics or None))   # reads (and validates) it all first
    if not messages:
        raise ValueError(f'{args.bag}: no messages on {args.topics or "any topic"}')
    offers = bags.offered_qos(args.bag)
    rclpy.init()
    node = rclpy.create_node('edgent_player')
    pubs: Dict[str, object] = {}
    for topic, msgtype, _, _ in messages:
        if topic not in pubs:
            pubs[topic] = node.create_publisher(get_message(msgtype), topic,
                                                _play_qos(topic, offers.get(topic, [])))
    t0_bag = messages[0][2]
    clock = _Clock(node, clock_hz, args.rate, t0_bag, messages[-1][2]) if clock_hz else None
    sent = 0
    try:
        deadline = time.monotonic() + args.wait_subscribers
        while time.monotonic() < deadline and not all(p.get_subscription_count() for p in
                                                      pubs.values()):
            _sleep_until(time.monotonic() + 0.05, clock)
        if all(p.get_subscription_count() for p in pubs.values()):
            # matching is two-sided: let the subscribers' side finish too
            _sleep_until(time.monotonic() + 0.5, clock)
        t0 = time.monotonic()
        if clock is not None:
            clock.t0 = t0
        for topic, _, ts, data in messages:
            _sleep_until(t0 + (ts - t0_bag) / 1e9 / args.rate, clock)
            pubs[topic].publish(data)
            sent += 1
        _sleep_until(time.monotonic() + 0.5, clock)   # let reliable subscribers get the last ones
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(f'played {sent} messages from {args.bag} on {sorted(pubs)}'
          + (f' with /clock at {clock_hz:g} Hz' if clock else ''))
    return 0
