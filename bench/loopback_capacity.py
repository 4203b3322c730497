"""
The one-host path's capacity for tensor messages, measured apart from the camera's estimator.

The reference for issue 17 item 1 ("the estimate stays within 2x of the link's real capacity"
on the loopback demo). A sender process publishes ``--n`` padding probes (``codec.padding_probe``,
the message the camera's largest probe pairs carry) of ``--mb`` MB back to back on an
``edgent_ros/Tensor`` topic with the nodes' QoS (``qos.TENSOR``, its history deep enough to
keep the whole train) and Fast DDS as the demo runs it
(no XML profile unless the environment sets one); a receiver process stamps each message's
reception (``MessageInfo`` ``received_timestamp``). Capacity = the bytes of every message after
the first over the time from the first's reception to the last's (a packet train's dispersion:
the rate the path delivers back-to-back tensor bytes, per-message delay excluded), as wire bytes
(``link.wire_bytes``, as the estimator counts them). ``--repeats`` trains; the report keeps each.
For context, the same bytes over a loopback TCP socket (``sendall`` / ``recv_into``).

    source scripts/env.sh
    python bench/loopback_capacity.py --out bench/results/loopback_capacity.json   # ~1 min
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import random
import socket
import statistics
import subprocess
import sys
import time

ROOT = Path(__file__).resolve().parents[1]
TOPIC = 'capacity_probe'
IDLE_S = 2.0    # the receiver stops this long after the last message


def train_qos(profile, n: int):
    """Return the nodes' tensor QoS with a history of ``n``: no message of the train is lost."""
    from rclpy.qos import QoSProfile
    return QoSProfile(history=profile.history, depth=max(profile.depth, n),
                      reliability=profile.reliability, durability=profile.durability)


def receiver(n: int, timeout_s: float) -> None:
    """Subscribe, stamp up to ``n`` messages, print ``[[t_s, bytes], ...]`` as JSON."""
    import rclpy
    from rclpy.node import Node
    from edgent_ros.msg import Tensor
    from edgent_ros.nodes import qos
    rclpy.init()
    node = Node('capacity_receiver')
    got, last = [], [0.0]

    def on_msg(msg, info):
        got.append((info['received_timestamp'] * 1e-9, len(msg.data)))
        last[0] = time.monotonic()

    node.create_subscription(Tensor, TOPIC, on_msg, train_qos(qos.TENSOR, n))
    end = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < end and \
            not (got and time.monotonic() - last[0] > IDLE_S):
        rclpy.spin_once(node, timeout_sec=0.1)
    print(json.dumps(got))
    node.destroy_node()
    rclpy.shutdown()


def sender(n: int, nbytes: int, timeout_s: float) -> None:
    """Wait for the receiver, then publish ``n`` padding probes of ``nbytes`` back to back."""
    import rclpy
    from rclpy.node import Node
    from edgent_ros.core.codec import padding_probe
    from edgent_ros.msg import Tensor
    from edgent_ros.nodes import qos
    from edgent_ros.nodes.camera_msgs import tensor_msg
    rclpy.init()
    node = Node('capacity_sender')
    pub = node.create_publisher(Tensor, TOPIC, train_qos(qos.TENSOR, n))
    end = time.monotonic() + timeout_s
    while pub.get_subscription_count() < 1 and time.monotonic() < end:
        time.sleep(0.05)
    time.sleep(1.0)   # discovery settles both ways
    enc = padding_probe(nbytes)
    msgs = [tensor_msg(node.get_clock().now().to_msg(), 'cam', '/', 'capacity', k + 1, 5, 0,
                       enc, probe=True) for k in range(2)]
    for k in range(n):
        msg = msgs[k % 2]
        msg.sequence = k + 1
        pub.publish(msg)
    pub.wait_for_all_acked(rclpy.duration.Duration(seconds=timeout_s))
    node.destroy_node()
    rclpy.shutdown()


def dds_train(n: int, nbytes: int, timeout_s: float) -> dict:
    """Run one train between two processes; return its receptions and capacity."""
    from edgent_ros.core.link import wire_bytes
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(100, 200)),
               ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    me = [sys.executable, str(Path(__file__).resolve())]
    rx = subprocess.Popen(me + ['--role', 'receiver', '--n', str(n), '--timeout-s',
                                str(timeout_s)], env=env, stdout=subprocess.PIPE, text=True)
    tx = subprocess.Popen(me + ['--role', 'sender', '--n', str(n), '--bytes', str(nbytes),
                                '--timeout-s', str(timeout_s)], env=env)
    try:
        out, _ = rx.communicate(timeout=timeout_s + 30)
        tx.wait(timeout=timeout_s + 30)
    finally:
        for p in (rx, tx):
            if p.poll() is None:
                p.kill()
                p.wait(5)
    got = json.loads(out)
    if len(got) < 2:
        raise RuntimeError(f'only {len(got)} of {n} messages arrived')
    span = got[-1][0] - got[0][0]
    bits = 8.0 * sum(wire_bytes(b) for _, b in got[1:])
    return {'received': len(got), 'span_s': round(span, 6), 'gbps': round(bits / span / 1e9, 3)}


def tcp_train(n: int, nbytes: int) -> float:
    """Return the rate (Gbit/s) of ``n`` back-to-back ``nbytes`` sends over loopback TCP."""
    srv = socket.socket()
    srv.bind(('127.0.0.1', 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    code = (f'import socket;s=socket.create_connection(("127.0.0.1",{port}));'
            f'b=bytes({nbytes})\nfor _ in range({n}): s.sendall(b)\ns.close()')
    p = subprocess.Popen([sys.executable, '-c', code])
    conn, _ = srv.accept()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    total, t0 = 0, None
    while True:
        k = conn.recv_into(view)
        if k == 0:
            break
        if t0 is None:
            t0 = time.monotonic()
            first = k
        total += k
    t1 = time.monotonic()
    p.wait(10)
    conn.close()
    srv.close()
    return 8.0 * (total - first) / (t1 - t0) / 1e9


def main() -> int:
    """Measure the trains and write the summary."""
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    ap.add_argument('--role', choices=('main', 'receiver', 'sender'), default='main')
    ap.add_argument('--n', type=int, default=20, help='messages per train')
    ap.add_argument('--mb', type=float, default=8.0, help='MiB per message')
    ap.add_argument('--bytes', type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--timeout-s', type=float, default=30.0)
    ap.add_argument('--out', type=Path, default=None)
    args = ap.parse_args()
    if args.role == 'receiver':
        receiver(args.n, args.timeout_s)
        return 0
    if args.role == 'sender':
        sender(args.n, args.bytes, args.timeout_s)
        return 0
    nbytes = int(args.mb * 1024 * 1024)
    trains = []
    for k in range(args.repeats):
        trains.append(dds_train(args.n, nbytes, args.timeout_s))
        print(f'train {k + 1}/{args.repeats}: {trains[-1]}', file=sys.stderr)
    tcp = [round(tcp_train(args.n, nbytes), 3) for _ in range(args.repeats)]
    body = {'message_bytes': nbytes, 'messages_per_train': args.n,
            'fastdds_profile': os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE', ''),
            'dds_trains': trains,
            'dds_capacity_gbps': statistics.median(t['gbps'] for t in trains),
            'tcp_gbps': tcp, 'tcp_median_gbps': statistics.median(tcp)}
    if args.out:
        args.out.write_text(json.dumps(body, indent=1) + '\n')
    print(json.dumps(body, indent=1))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
