"""``edgent-ros`` subcommands on the ROS side: demo, record, play (rclpy loads when they run)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.optimizer import POLICIES
from ..nodes.bag_tools import cmd_play, cmd_record, DEFAULT_TOPICS
from ..nodes.demo import run_demo


def cmd_demo(args: argparse.Namespace) -> int:
    """Run edge, planner and camera as processes over DDS and print every frame's outcome."""
    return run_demo(args)


def add_bag_parsers(sub) -> None:
    """Register ``record`` and ``play`` on the ``edgent-ros`` subparsers."""
    s = sub.add_parser('record', help='record topics into a rosbag2 (mcap or sqlite3)')
    s.add_argument('--out', type=Path, required=True, help='new bag folder')
    s.add_argument('--duration', type=float, default=10.0, help='seconds to record')
    s.add_argument('--count', type=int, default=0, help='stop after N messages (0: no limit)')
    s.add_argument('--topics', nargs='+', default=DEFAULT_TOPICS)
    s.add_argument('--storage', choices=['mcap', 'sqlite3'], default='mcap')
    s.set_defaults(func=cmd_record)
    s = sub.add_parser('play', help='publish a rosbag2 with its original timing')
    s.add_argument('bag', type=Path)
    s.add_argument('--rate', type=float, default=1.0, help='speed factor (2 = twice as fast)')
    s.add_argument('--topics', nargs='*', default=None, help='only these topics')
    s.add_argument('--wait-subscribers', type=float, default=5.0,
                   help='wait up to this long for a subscriber on every topic first')
    s.set_defaults(func=cmd_play)


def add_parsers(sub) -> None:
    """Register ``demo``, ``record`` and ``play`` on the ``edgent-ros`` subparsers."""
    s = sub.add_parser('demo', help='co-inference demo: camera -> edge over DDS, bundled images')
    s.add_argument('--frames', type=int, default=60, help='frames to run')
    s.add_argument('--fps', type=float, default=10.0)
    s.add_argument('--deadline-ms', type=float, default=100.0)
    s.add_argument('--policy', choices=POLICIES, default='edgent')
    s.add_argument('--exit', type=int, default=None, help='fixed exit (no planner)')
    s.add_argument('--split', type=int, default=None, help='fixed split (no planner)')
    s.add_argument('--source', default='sample', choices=['sample', 'cifar10-test'])
    s.add_argument('--quiet', action='store_true', help='summary only')
    s.set_defaults(func=cmd_demo)

    add_bag_parsers(sub)
