"""``edgent-ros`` subcommands on the ROS side: demo, record, play (rclpy loads when they run)."""

from __future__ import annotations

import argparse
from pathlib import Path
import signal

from ..core.optimizer import POLICIES
from ..core.security import fleet_enclaves, fleet_grants, node_env, parse_enclaves
from ..evaluation.demo_session import (DEMO_DEADLINE_MS, DEMO_DURATION_S, DEMO_FPS,
                                       run_testbed_demo, TestbedUnavailable)
from ..evaluation.testbed import unavailable_reason
from ..nodes.bag_tools import CLOCK_HZ, cmd_play, cmd_record, DEFAULT_TOPICS
from ..nodes.demo import run_demo
from ..nodes.keystore import create_fleet_keystore

# the plain one-host demo's defaults (the testbed demo's: demo_session.DEMO_*)
PLAIN_DEMO = {'frames': 60, 'fps': 10.0, 'deadline_ms': 100.0}


def demo_plain_reason(args: argparse.Namespace) -> str:
    """Return why ``demo`` runs the plain one-host demo, or '' to run it on the link testbed."""
    if args.plain:
        return '--plain'
    if args.exit is not None or args.split is not None:
        return 'a fixed --exit/--split has no planner decisions to show'
    return unavailable_reason()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f'signal {signum}')


def cmd_demo(args: argparse.Namespace) -> int:
    """
    Run the demo: on the link testbed when root (the planner's trade-off), else on one host.

    Either way edge, planner and camera run as processes over DDS and every frame's outcome is
    printed. When the testbed cannot be used, one line says why before the plain demo starts.
    """
    why = demo_plain_reason(args)
    if not why:
        # SIGTERM (and SIGINT where a background start ignored it) end the run through the
        # finally blocks: nodes stopped, testbed removed
        old = {s: signal.signal(s, _interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            return run_testbed_demo(args)
        except TestbedUnavailable as exc:
            why = str(exc)
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
    if why != '--plain':
        print(f'edgent_ros demo: not on the link testbed ({why}); running the plain one-host '
              'demo, where the planner has no slow link or slow robot to trade against (run '
              'as root with iproute2 for the testbed demo, --plain to skip it)')
    for k, v in PLAIN_DEMO.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return run_demo(args)


def _names(text: str) -> list:
    return [n.strip().strip('/') for n in text.split(',')]


def cmd_keystore(args: argparse.Namespace) -> int:
    """Create (or extend) an SROS2 keystore with one enclave per node of the fleet."""
    robots, edges = _names(args.robots), _names(args.edges)
    enclaves = fleet_enclaves(robots, edges, viz=not args.no_viz)
    enclaves += [e for e in parse_enclaves(','.join(args.enclave)) if e not in enclaves]
    grants = None if args.open_permissions else fleet_grants(robots, edges, viz=not args.no_viz)
    made = create_fleet_keystore(Path(args.keystore), enclaves, args.domain_id, grants)
    for e in enclaves:
        scope = ('its node\'s topics and services only' if grants and e in grants
                 else 'every topic (sros2 default)')
        print(f'{e}: {"created" if e in made else "already there"}; permissions: {scope}')
    print(f'keystore {args.keystore}: {len(enclaves)} enclaves. Copy the robot\'s and the edge\'s '
          f'enclaves (and public/) to each host; launch with keystore:={args.keystore}')
    return 0


def cmd_secure_env(args: argparse.Namespace) -> int:
    """Print the ``export`` lines that put this shell's ROS tools in an enclave."""
    for k, v in node_env(args.keystore, args.enclave).items():
        print(f"export {k}='{v}'")
    return 0


def add_bag_parsers(sub) -> None:
    """Register ``record`` and ``play`` on the ``edgent-ros`` subparsers."""
    s = sub.add_parser('record', help='record topics into a rosbag2 (mcap or sqlite3)',
                       description='Record topics into a standard rosbag2. Each topic is '
                                   'subscribed when its first publisher appears, with the QoS '
                                   '`ros2 bag record` would request (best effort unless every '
                                   'publisher is reliable, transient local only if every one '
                                   'is); the publishers\' QoS is stored in the bag.')
    s.add_argument('--out', type=Path, required=True, help='new bag folder')
    s.add_argument('--duration', type=float, default=10.0,
                   help='seconds to record (default %(default)s)')
    s.add_argument('--count', type=int, default=0, help='stop after N messages (0: no limit)')
    s.add_argument('--topics', nargs='+', default=DEFAULT_TOPICS,
                   help='topics, relative ones in the ROS namespace (default %(default)s)')
    s.add_argument('--storage', choices=['mcap', 'sqlite3'], default='mcap',
                   help='storage plugin (default %(default)s)')
    s.set_defaults(func=cmd_record)
    s = sub.add_parser('play', help='publish a rosbag2 with its original timing',
                       description='Publish a rosbag2 with its original timing, each topic with '
                                   'the QoS recorded in the bag (else the one edgent_ros uses for '
                                   'it).')
    s.add_argument('bag', type=Path, help='rosbag2 folder to replay (mcap or sqlite3)')
    s.add_argument('--rate', type=float, default=1.0, help='speed factor (2 = twice as fast)')
    s.add_argument('--topics', nargs='*', default=None, help='only these topics')
    s.add_argument('--wait-subscribers', type=float, default=5.0,
                   help='wait up to this long for a subscriber on every topic first')
    s.add_argument('--clock', type=float, nargs='?', const=CLOCK_HZ, default=0.0, metavar='HZ',
                   help='publish the bag\'s time on /clock at HZ (%(const)s without a value), '
                        'for nodes with use_sim_time, as `ros2 bag play --clock`')
    s.set_defaults(func=cmd_play)


def add_parsers(sub) -> None:
    """Register ``demo``, ``record``, ``play`` and ``keystore`` on the subparsers."""
    s = sub.add_parser('demo', help='co-inference demo: camera -> edge over DDS, bundled images',
                       description='As root with iproute2: the nodes across the link testbed '
                                   '(shaped uplink, slowed robot) while the uplink follows a '
                                   'schedule that crosses the planner\'s decision boundary; '
                                   'prints every frame and every decision change (~1.5 min). '
                                   'Otherwise (or --plain): the three nodes on one host.')
    s.add_argument('--frames', type=int, default=None,
                   help=f'frames to run (default {PLAIN_DEMO["frames"]}; on the testbed: '
                        'every frame of the replay)')
    s.add_argument('--fps', type=float, default=None,
                   help=f'camera frame rate (default {PLAIN_DEMO["fps"]:g}; on the testbed '
                        f'{DEMO_FPS:g})')
    s.add_argument('--deadline-ms', type=float, default=None,
                   help=f'latency deadline the planner plans for (default '
                        f'{PLAIN_DEMO["deadline_ms"]:g}; on the testbed {DEMO_DEADLINE_MS:g})')
    s.add_argument('--policy', choices=POLICIES, default='edgent',
                   help='planner policy (default %(default)s)')
    s.add_argument('--exit', type=int, default=None, help='fixed exit (no planner)')
    s.add_argument('--split', type=int, default=None, help='fixed split (no planner)')
    s.add_argument('--source', default='sample', choices=['sample', 'cifar10-test'],
                   help='frames: the bundled sample, or the CIFAR-10 test set from '
                        '$EDGENT_ROS_DATA/cifar10, else <user dir>/data/cifar10, ... '
                        '(default %(default)s)')
    s.add_argument('--quiet', action='store_true',
                   help='no per-frame lines: the decisions and the summary only')
    s.add_argument('--plain', action='store_true',
                   help='the one-host demo even as root (no testbed, robot not slowed)')
    s.add_argument('--trace', type=Path, default=None, metavar='CSV',
                   help='testbed: replay this t_s,mbps bandwidth trace (e.g. from '
                        '../shared/data/traces) instead of the demo schedule')
    s.add_argument('--trace-start', type=float, default=0.0, metavar='S',
                   help='testbed: start the trace at this second (default %(default)s)')
    s.add_argument('--duration', type=float, default=None, metavar='S',
                   help=f'testbed: seconds of the schedule or trace to replay (default '
                        f'{DEMO_DURATION_S:g})')
    s.set_defaults(func=cmd_demo)

    add_bag_parsers(sub)
    s = sub.add_parser('keystore', help='SROS2 keystore with one enclave per node (DDS Security)',
                       description='Create (or extend) an SROS2 keystore for the fleet: per robot '
                                   'the enclaves /edgent/<robot>/camera_node, planner_node and '
                                   'viz_node; per edge /edgent/[<edge>/]edge_node. Launch with '
                                   'keystore:=DIR (README: Security). Each node\'s permissions '
                                   'name its own topics and services only (the policy is '
                                   'written to DIR/edgent_policy.xml and re-signed on each run: '
                                   'give the whole fleet each time); extra enclaves get every '
                                   'topic. Existing enclaves keep their keys.')
    s.add_argument('keystore', help='keystore directory (created if absent)')
    s.add_argument('--robots', default='', help='comma-separated robot namespaces (default: one '
                                                'robot in the root namespace)')
    s.add_argument('--edges', default='',
                   help='comma-separated edge names (default: the one edge)')
    s.add_argument('--no-viz', action='store_true', help='no viz_node enclaves')
    s.add_argument('--domain-id', type=int, default=None,
                   help='the ROS_DOMAIN_ID the fleet runs on (governance and permissions name '
                        'one domain; default $ROS_DOMAIN_ID, else 0)')
    s.add_argument('--enclave', action='append', default=[], metavar='NAME',
                   help='an extra enclave, e.g. /edgent/tools/recorder (repeatable); its '
                        'permissions: every topic')
    s.add_argument('--open-permissions', action='store_true',
                   help='sros2\'s default permissions (every topic) for the fleet\'s nodes '
                        'too, instead of least privilege per node')
    s.set_defaults(func=cmd_keystore)
    s = sub.add_parser('secure-env', help='export lines that secure ROS tools run from this shell',
                       description='Print the environment (export lines) that makes ros2 topic, '
                                   'rosbag record and the like join a secured fleet in ENCLAVE: '
                                   'eval "$(edgent-ros secure-env KEYSTORE ENCLAVE)". The '
                                   'enclave must be in the keystore (edgent-ros keystore '
                                   '--enclave).')
    s.add_argument('keystore', help='keystore directory')
    s.add_argument('enclave', help='enclave, e.g. /edgent/tools/cli')
    s.set_defaults(func=cmd_secure_env)
