"""
``edgent-ros record`` and ``edgent-ros play``: rosbag2 files of live topics, via rclpy.

``record`` subscribes raw (serialized CDR, no conversion) to the topics and writes them with
``bags.BagWriter``; ``play`` publishes a bag's messages raw with their original timing (scaled by
``--rate``). Works without ``ros2 bag`` (rosbag2_py is not on PyPI); the files are standard.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Dict

from .bags import BagWriter, read

DEFAULT_TOPICS = ['image_raw', 'edgent/link_quality', 'edgent/outcome', 'edgent/result',
                  'edgent/decision']


def _qos_for(topic: str):
    from . import qos
    return {'image_raw': qos.IMAGE, 'edgent/decision': qos.DECISION}.get(
        topic.split('/', 1)[-1] if topic.startswith('/') else topic, qos.RESULT)


def cmd_record(args: argparse.Namespace) -> int:
    """Record ``--topics`` for ``--duration`` seconds (or ``--count`` messages) into ``--out``."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rosidl_runtime_py.utilities import get_message

    rclpy.init()
    node = rclpy.create_node('edgent_recorder')
    writer = BagWriter(args.out, storage=args.storage)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    subscribed: Dict[str, str] = {}
    counts: Dict[str, int] = {}
    t_end = time.monotonic() + args.duration
    try:
        while time.monotonic() < t_end:
            if len(subscribed) < len(args.topics):
                graph = {t: ty for t, ty in node.get_topic_names_and_types()}
                for topic in args.topics:
                    full = node.resolve_topic_name(topic)
                    if topic in subscribed or full not in graph:
                        continue
                    msgtype = graph[full][0]
                    writer.add_topic(full, msgtype)
                    counts[full] = 0

                    def cb(data, full=full):
                        writer.write_raw(full, time.time_ns(), data)
                        counts[full] += 1
                    node.create_subscription(get_message(msgtype), topic, cb, _qos_for(topic),
                                             raw=True)
                    subscribed[topic] = msgtype
            ex.spin_once(timeout_sec=0.05)
            if args.count and sum(counts.values()) >= args.count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        writer.close()
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    print(f'wrote {args.out}: ' + ', '.join(f'{t} {n}' for t, n in counts.items()))
    missing = [t for t in args.topics if t not in subscribed]
    if missing:
        print(f'never seen: {missing}', file=sys.stderr)
    return 0


def cmd_play(args: argparse.Namespace) -> int:
    """Publish a bag's messages with their original timing divided by ``--rate``."""
    import rclpy
    from rosidl_runtime_py.utilities import get_message

    if args.rate <= 0:
        raise ValueError(f'--rate must be > 0, got {args.rate}')
    messages = list(read(args.bag, args.topics or None))   # reads (and validates) it all first
    if not messages:
        raise ValueError(f'{args.bag}: no messages on {args.topics or "any topic"}')
    rclpy.init()
    node = rclpy.create_node('edgent_player')
    pubs: Dict[str, object] = {}
    for topic, msgtype, _, _ in messages:
        if topic not in pubs:
            pubs[topic] = node.create_publisher(get_message(msgtype), topic, _qos_for(topic))
    deadline = time.monotonic() + args.wait_subscribers
    while time.monotonic() < deadline and not all(p.get_subscription_count() for p in
                                                  pubs.values()):
        time.sleep(0.05)
    if all(p.get_subscription_count() for p in pubs.values()):
        time.sleep(0.5)   # matching is two-sided: let the subscribers' side finish too
    t0_bag, t0 = messages[0][2], time.monotonic()
    sent = 0
    try:
        for topic, _, ts, data in messages:
            delay = t0 + (ts - t0_bag) / 1e9 / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pubs[topic].publish(data)
            sent += 1
        time.sleep(0.5)   # let reliable subscribers get the last ones
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(f'played {sent} messages from {args.bag} on {sorted(pubs)}')
    return 0
