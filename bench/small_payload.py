"""
Small ``edgent_ros/Tensor`` messages on the testbed's slowest links: link time against bytes/rate.

**pub/sub** (``--mode pubsub``): a publisher in the robot namespace and a subscriber in the edge
namespace of an ``edgent_ros.evaluation.testbed.Testbed`` (real Fast DDS across the veth,
``ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET``, a random ``ROS_DOMAIN_ID``, ``qos.TENSOR``) exchange
Tensor messages built as the camera builds them (``core.codec.encode`` +
``nodes.camera_msgs.tensor_msg``: raw uint8 ``(1, C, 4, 4)``, the camera's frame_id and
model_id) of 64-3,072 payload bytes over the tbf-shaped uplink (``Testbed``'s rate, burst and
limit) at 50 and 100 kbit/s, and unshaped (100 Mbit/s) for the fixed software cost. One message
at a time, once the shaper's queue is empty, paced two ways:

* ``idle``: the link then stays idle until the token bucket is full again (``burst`` bytes at
  the rate, +50 %): a message after a pause;
* ``busy``: two full-size filler datagrams go first (``Filler``), so the bucket is empty and the
  message crosses at exactly the rate, as one right behind other traffic does (or every message
  on a link without a bucket); its time counts from the second filler's arrival.

Per message: ``delivery_ms`` = subscriber callback minus the start (header stamp, or the filler's
arrival), ``link_ms`` = arrival of its last packet on the edge veth minus the start, ``ideal_ms``
= payload bytes x 8 / rate, ``ratio`` = delivery / ideal; ``wire_bytes`` = the Ethernet frames of
its datagram as the tbf counts them (Ethernet/IP/UDP/RTPS headers, IP fragments); the parts of an
unfragmented one (``eth_ip_udp`` ... ``cdr_meta``); ``other_bytes``/``other_kinds`` = what else
the robot sent in the window; ``tc_bytes`` = the tbf's ``Sent`` counter over the message
(fillers subtracted). An idle window measures the background traffic (bytes/s by kind).

**Real nodes** (``--mode nodes``): ``sweep_session.NodeSession`` as the sweep runs it (edge_node;
camera, planner and controller in the robot namespace under its CPU cgroup; edge-only raw
3,072-byte frames), ``--nodes-s`` seconds per rate; per frame the camera's ``uplink_ms``, the
capture's link time and the bytes that were queued ahead of the frame, by kind (``ahead_*``).

Packets are captured with an ``AF_PACKET`` socket on the edge end of the veth (kernel
timestamps) and classified by their RTPS submessages (``classify_rtps``, ``tensor_header``).

Configurations (``--configs``): ``testbed`` (``config/fastdds_testbed.xml``), ``default`` (no
XML) or a ``PATH.xml`` (``bench/fastdds_variants/spdp3s_nopiggyback.xml``: the profile before it
set the participant announcements); ``+burst=BYTES`` / ``+peakrate`` change the tbf of the pub/sub
runs. Run as root, from the repository root, in the ROS environment, under the testbed lock;
one configuration with the defaults takes about 5 min (pub/sub 3.5, nodes 1.5)::

    source scripts/env.sh
    flock /tmp/edgent_test.lock nice -n 5 python bench/small_payload.py \
        --configs bench/fastdds_variants/spdp3s_nopiggyback.xml --label before
    flock /tmp/edgent_test.lock nice -n 5 python bench/small_payload.py --label after --append
    python bench/small_payload.py --report     # the tables of BENCHMARKS.md, and the plot

Writes ``bench/results/small_payload.csv`` (pub/sub, one row per message),
``small_payload_nodes.csv`` (one row per frame), ``small_payload_background.csv`` and
``small_payload.png``; ``--append`` adds to the CSVs. Every wait is bounded; the testbeds are
torn down at the end, also after an error.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path
import random
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, NamedTuple, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'bench'))

import transfer_bench  # noqa: E402
from transfer_bench import config_env, Lines, wait_drained  # noqa: E402

RESULTS = ROOT / 'bench' / 'results'
SIZES = (64, 256, 512, 1024, 3072)
RATES = (0.05, 0.1)
REFERENCE_MBPS = 100.0               # unshaped for these sizes: the fixed software cost
FRAME_ID = 'camera_optical_frame'    # the camera's default frame_id (found in tensor datagrams)
MODEL_ID = 'alexnet5-cifar10-v1-baf6a595'
FILLER_TAG = b'small_payload filler'
FILLER_FRAME = 1514                  # bytes of one filler on the wire (Ethernet frame)
COLUMNS = ('label', 'config', 'burst', 'peakrate', 'pacing', 'rate_mbps', 'size_bytes', 'rep',
           'ideal_ms', 'delivery_ms', 'link_ms', 'ratio', 'link_ratio', 'wire_bytes',
           'wire_packets', 'wire_ms', 'other_bytes', 'other_kinds', 'tc_bytes', 'tc_packets',
           'arrived', 'eth_ip_udp', 'rtps_header', 'submessages', 'data_header', 'inline_qos',
           'cdr_meta')
BREAKDOWN = ('rtps_header', 'submessages', 'data_header', 'inline_qos', 'cdr_meta')
BG_COLUMNS = ('label', 'config', 'rate_mbps', 'seconds', 'kind', 'bytes', 'packets',
              'bytes_per_s')
NODE_COLUMNS = ('label', 'config', 'rate_mbps', 'sequence', 'payload', 'ideal_ms', 'uplink_ms',
                'ratio', 'link_ms', 'link_ratio', 'wire_bytes', 'ahead_bytes', 'ahead_spdp',
                'ahead_probe', 'ahead_kinds')


# ------------------------------------------------------------------------------------------
# Roles inside the namespaces

def role_pub() -> int:
    """Robot side: publish a camera-like Tensor of N payload bytes per ``SEND seq N`` line."""
    import numpy as np
    import rclpy
    from edgent_ros.core.codec import encode
    from edgent_ros.nodes import qos
    from edgent_ros.nodes.camera_msgs import tensor_msg
    from edgent_ros.msg import Tensor
    rclpy.init()
    node = rclpy.create_node('small_payload_pub')
    pub = node.create_publisher(Tensor, 'edgent/tensor', qos.TENSOR)
    end = time.monotonic() + 60
    while pub.get_subscription_count() == 0 and time.monotonic() < end:
        time.sleep(0.05)
    print('READY' if pub.get_subscription_count() else 'NOSUB', flush=True)
    encoded = {}
    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] == 'QUIT':
            break
        seq, n = int(parts[1]), int(parts[2])
        if n not in encoded:   # (1, C, 4, 4) uint8, like a small activation map
            shape = (1, n // 16, 4, 4) if n % 16 == 0 else (1, n)
            arr = np.random.default_rng(n).integers(0, 256, shape, np.uint8)
            encoded[n] = encode(arr, 'raw', name='conv_out')
        t0 = time.time_ns()
        stamp = node.get_clock().now().to_msg()
        stamp.sec, stamp.nanosec = divmod(t0, 10**9)
        msg = tensor_msg(stamp, FRAME_ID, '/', MODEL_ID, seq, 5, 3, encoded[n])
        pub.publish(msg)
        print(f'SENT {seq} {t0 / 1e9:.6f} {time.time():.6f}', flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def role_sub() -> int:
    """Edge side: print ``RECV seq payload_bytes t_recv t_stamp`` per message (30 min at most)."""
    return transfer_bench.role_sub('small_payload_sub', 1800.0)


# ------------------------------------------------------------------------------------------
# Packet capture on the edge end of the veth (uplink packets as they leave the shaper)

SO_TIMESTAMPNS = 35
PACKET_OUTGOING = 4
ETH_P_ALL = 0x0003
# RTPS submessage ids (DDSI-RTPS 2.5, 9.4.5.1.1)
ACKNACK, HEARTBEAT, GAP, DATA, DATA_FRAG, NACK_FRAG, HEARTBEAT_FRAG = (
    0x06, 0x07, 0x08, 0x15, 0x16, 0x12, 0x13)
BUILTIN_WRITERS = {b'\x00\x01\x00\xc2': 'spdp', b'\x00\x00\x03\xc2': 'sedp',
                   b'\x00\x00\x04\xc2': 'sedp', b'\x00\x02\x00\xc2': 'wlp'}


def classify_rtps(udp_payload: bytes) -> str:
    """
    Return the kind of an RTPS datagram (its first IP fragment is enough).

    ``tensor`` (a DATA whose payload holds the camera's frame_id), ``user_data`` (another topic),
    ``spdp``/``sedp``/``wlp`` (discovery, liveliness), else ``heartbeat``, ``acknack``, ``gap``,
    ``frag_control`` or ``rtps_other``; ``non_rtps`` for anything else.
    """
    if udp_payload[:4] != b'RTPS':
        return 'filler' if udp_payload[:len(FILLER_TAG)] == FILLER_TAG else 'non_rtps'
    pos, kinds = 20, []
    while pos + 4 <= len(udp_payload):
        sid, flags = udp_payload[pos], udp_payload[pos + 1]
        (length,) = struct.unpack('<H' if flags & 1 else '>H', udp_payload[pos + 2:pos + 4])
        body = udp_payload[pos + 4:]
        if sid in (DATA, DATA_FRAG):
            writer = bytes(body[8:12])
            kind = BUILTIN_WRITERS.get(writer)
            if kind is None:
                kind = 'tensor' if FRAME_ID.encode() in body else 'user_data'
            kinds.append(kind)
        elif sid == HEARTBEAT:
            kinds.append('heartbeat')
        elif sid == ACKNACK:
            kinds.append('acknack')
        elif sid == GAP:
            kinds.append('gap')
        elif sid in (NACK_FRAG, HEARTBEAT_FRAG):
            kinds.append('frag_control')
        if length == 0:
            break
        pos += 4 + length
    for k in ('tensor', 'spdp', 'sedp', 'wlp', 'user_data', 'heartbeat', 'acknack', 'gap',
              'frag_control'):
        if k in kinds:
            return k
    return 'rtps_other'


def _data_submessages(udp_payload: bytes):
    """Yield ``(flags, writer_id, inline_qos_len, serialized_data)`` of each DATA submessage."""
    pos = 20
    while pos + 4 <= len(udp_payload):
        sid, flags = udp_payload[pos], udp_payload[pos + 1]
        (length,) = struct.unpack('<H' if flags & 1 else '>H', udp_payload[pos + 2:pos + 4])
        end = pos + 4 + length if length else len(udp_payload)
        body = udp_payload[pos + 4:end]
        if sid == DATA and len(body) >= 20:
            (to_qos,) = struct.unpack('<H' if flags & 1 else '>H', body[2:4])
            start = 4 + to_qos
            qos_len = 0
            if flags & 0x02:   # inline QoS: a parameter list up to PID_SENTINEL
                q = start
                while q + 4 <= len(body):
                    pid, plen = struct.unpack('<HH' if flags & 1 else '>HH', body[q:q + 4])
                    q += 4 + plen
                    if pid == 1:
                        break
                qos_len = q - start
            yield flags, bytes(body[8:12]), qos_len, body[start + qos_len:]
        if not length:
            return
        pos = end


def tensor_header(udp_payload: bytes) -> Optional[dict]:
    """
    Return the fields of the Tensor in an RTPS datagram (None if there is none).

    ``stamp`` (s), ``probe``, ``sequence``, ``name``, ``encoding`` and ``payload`` (the length
    of ``data``, bytes): the first IP fragment of a datagram holds them all.
    """
    for _, writer, _, ser in _data_submessages(udp_payload):
        if writer in BUILTIN_WRITERS or FRAME_ID.encode() not in ser[:64]:
            continue
        cdr = ser[4:]   # after the CDR encapsulation header; alignment counts from here

        def align(p: int, n: int) -> int:
            return (p + n - 1) & ~(n - 1)

        def string(p: int) -> Tuple[str, int]:
            p = align(p, 4)
            (n,) = struct.unpack_from('<I', cdr, p)
            return bytes(cdr[p + 4:p + 3 + n]).decode(), p + 4 + n

        def seq_len(p: int) -> Tuple[int, int]:
            p = align(p, 4)
            return struct.unpack_from('<I', cdr, p)[0], p + 4
        try:
            sec, nsec = struct.unpack_from('<iI', cdr, 0)
            _, p = string(8)                   # header.frame_id
            _, p = string(p)                   # robot
            probe = bool(cdr[p])
            p = align(p + 1, 8)
            (seq,) = struct.unpack_from('<Q', cdr, p)
            _, p = string(p + 8)               # model_id
            name, p = string(p + 2)            # after exit_index, split_index
            n, p = seq_len(p)                  # shape
            p = align(p + 4 * n, 4) + 4        # shape, data_type
            n, p = seq_len(p)                  # strides (uint64)
            p = align(p, 8) + 8 * n if n else p
            encoding, p = string(p)
            _, p = string(p)                   # bottleneck_id
            p = align(p, 4) + 8                # scale, zero_point
            payload, _ = seq_len(p)            # data
        except (struct.error, UnicodeDecodeError, IndexError):
            return None
        return {'stamp': sec + nsec * 1e-9, 'probe': probe, 'sequence': seq, 'name': name,
                'encoding': encoding, 'payload': payload}
    return None


SUBMESSAGE_NAMES = {0x01: 'PAD', 0x06: 'ACKNACK', 0x07: 'HEARTBEAT', 0x08: 'GAP', 0x09: 'INFO_TS',
                    0x0c: 'INFO_SRC', 0x0d: 'INFO_REPLY_IP4', 0x0e: 'INFO_DST', 0x0f: 'INFO_REPLY',
                    0x12: 'NACK_FRAG', 0x13: 'HEARTBEAT_FRAG', 0x15: 'DATA', 0x16: 'DATA_FRAG',
                    0x80: 'FASTDDS_STATISTICS'}


def submessage_list(udp_payload: bytes) -> List[Tuple[str, int]]:
    """Return ``(name, bytes incl. its 4-byte header)`` of every submessage of a datagram."""
    out, pos = [], 20
    while pos + 4 <= len(udp_payload):
        sid, flags = udp_payload[pos], udp_payload[pos + 1]
        (length,) = struct.unpack('<H' if flags & 1 else '>H', udp_payload[pos + 2:pos + 4])
        end = pos + 4 + length if length else len(udp_payload)
        out.append((SUBMESSAGE_NAMES.get(sid, hex(sid)), end - pos))
        if not length:
            break
        pos = end
    return out


def header_breakdown(udp_payload: bytes, payload_bytes: int) -> Dict[str, int]:
    """
    Split one unfragmented tensor datagram's UDP payload into its parts (bytes).

    ``rtps_header`` (20), ``submessages`` (INFO_TS, INFO_DST, HEARTBEAT... beside the DATA),
    ``data_header`` (the DATA submessage's own 24 bytes), ``inline_qos``, ``cdr_meta`` (CDR
    encapsulation and every Tensor field but the payload), ``payload``.
    """
    out = {'rtps_header': 20, 'submessages': 0, 'data_header': 0, 'inline_qos': 0,
           'cdr_meta': 0, 'payload': payload_bytes}
    pos = 20
    while pos + 4 <= len(udp_payload):
        sid, flags = udp_payload[pos], udp_payload[pos + 1]
        (length,) = struct.unpack('<H' if flags & 1 else '>H', udp_payload[pos + 2:pos + 4])
        end = pos + 4 + length if length else len(udp_payload)
        if sid != DATA:
            out['submessages'] += end - pos
        if not length:
            break
        pos = end
    for _, writer, qos_len, ser in _data_submessages(udp_payload):
        if writer in BUILTIN_WRITERS:
            continue
        out['data_header'] = 24
        out['inline_qos'] = qos_len
        out['cdr_meta'] = len(ser) - payload_bytes
        break
    return out


class Capture:
    """
    Record every packet that crosses the edge end of the veth, with its kernel timestamp.

    ``packets`` holds ``Packet``s; ``direction`` is ``up`` (robot -> edge, after the shaper) or
    ``down``. IP fragments after the first take the kind (and Tensor fields) of their datagram.
    """

    def __init__(self, netns: str, ifname: str):
        self.packets: List[Packet] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._frags: Dict[Tuple[bytes, int], Tuple[str, Optional[dict]]] = {}
        self.sock = _packet_socket_in_netns(netns, ifname)
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._run, daemon=True, name='capture')
        self.thread.start()

    def _kind(self, frame: bytes) -> Tuple[str, Optional[dict]]:
        if len(frame) < 34 or frame[12:14] != b'\x08\x00':
            return 'non_ip', None
        ihl = (frame[14] & 0x0f) * 4
        ip_id, frag = struct.unpack('>HH', frame[18:22])
        src, proto = frame[26:30], frame[23]
        if frag & 0x1fff:
            return self._frags.get((src, ip_id), ('ip_fragment', None))
        info = None
        if proto != 17:
            kind = 'non_udp'
        else:
            udp = frame[14 + ihl + 8:]
            kind = classify_rtps(udp)
            if kind == 'tensor':
                info = tensor_header(udp)
                if info is not None:
                    kind = 'probe' if info['probe'] else 'tensor'
                    if not frag & 0x2000:   # whole datagram: keep it for the breakdown
                        info['udp'] = bytes(udp)
        if frag & 0x2000:   # more fragments follow
            self._frags[(src, ip_id)] = (kind, info)
        return kind, info

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, anc, _, addr = self.sock.recvmsg(70000, 256)
            except socket.timeout:
                continue
            except OSError:
                return
            t = time.time()
            for level, typ, val in anc:
                if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS and len(val) >= 16:
                    sec, nsec = struct.unpack('qq', val[:16])
                    t = sec + nsec * 1e-9
            direction = 'down' if addr[2] == PACKET_OUTGOING else 'up'
            kind, info = self._kind(data)
            with self.lock:
                self.packets.append(Packet(t, direction, len(data), kind, info))

    def between(self, t0: float, t1: float, direction: str = 'up') -> List['Packet']:
        """Return the packets captured in ``(t0, t1]`` going ``direction``."""
        with self.lock:
            return [p for p in self.packets if t0 < p.t <= t1 and p.direction == direction]

    def close(self) -> None:
        """Stop the reader thread and close the socket."""
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


class Packet(NamedTuple):
    """One captured Ethernet frame: time (s), direction, bytes, kind, Tensor fields or None."""

    t: float
    direction: str
    nbytes: int
    kind: str
    info: Optional[dict]


def _packet_socket_in_netns(ns: str, ifname: str) -> socket.socket:
    """Return an AF_PACKET socket bound to ``ifname`` in network namespace ``ns``."""
    from edgent_ros.evaluation.testbed import socket_in_netns

    def make() -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((ifname, 0))
        return s
    return socket_in_netns(ns, make)


# ------------------------------------------------------------------------------------------
# Orchestration (root namespace)

def parse_config(spec: str) -> Tuple[str, str, Dict[str, str]]:
    """Split ``NAME[+burst=B][+peakrate][+VAR=VALUE]`` into (DDS spec, label, tbf options)."""
    parts = spec.split('+')
    tbf = {}
    dds = [parts[0]]
    for p in parts[1:]:
        k, _, v = p.partition('=')
        if k in ('burst', 'peakrate'):
            tbf[k] = v or '1'
        else:
            dds.append(p)
    return '+'.join(dds), spec, tbf


def set_tbf(tb, mbps: float, burst: int, peakrate: bool) -> None:
    """Shape the uplink like ``Testbed.set_rate`` (same limit), with ``burst`` and peakrate."""
    from edgent_ros.evaluation.testbed import rate_bit
    spec = ['tbf', 'rate', f'{rate_bit(mbps)}bit', 'burst', str(burst),
            'limit', str(tb.queue_bytes)]
    if peakrate:   # a second bucket of one packet at (just above) the rate: no burst at all
        spec += ['peakrate', f'{int(rate_bit(mbps) * 1.01)}bit', 'mtu', '1514']
    tb._tc(tb.robot_ns, 'qdisc', 'replace', 'dev', tb.robot_if, 'root', 'handle', '1:', *spec)
    tb.burst_bytes = burst


def measure_background(tb, cap: Capture, seconds: float) -> Dict[str, Tuple[int, int]]:
    """Return ``{kind: (bytes, packets)}`` the robot sent on the uplink in ``seconds`` of idle."""
    t0 = time.time()
    time.sleep(seconds)
    out: Dict[str, Tuple[int, int]] = {}
    for pk in cap.between(t0, time.time()):
        b, n = out.get(pk.kind, (0, 0))
        out[pk.kind] = (b + pk.nbytes, n + 1)
    return out


class Filler:
    """
    Two full-size UDP datagrams (1514-byte frames) from the robot to the edge's discard port.

    Sent just before a ``busy`` message: the first spends what the token bucket holds (at most
    ``burst`` = 1600 bytes), the second leaves it empty, and the message queued behind them then
    crosses at exactly the shaped rate. The message's time counts from the second one's arrival.
    """

    def __init__(self, tb):
        from edgent_ros.evaluation.testbed import _udp_socket_in_netns
        self.sock = _udp_socket_in_netns(tb.robot_ns)
        self.dst = (tb.edge_ip, 9)
        self.data = FILLER_TAG + bytes(FILLER_FRAME - 42 - len(FILLER_TAG))

    def send(self) -> float:
        """Queue the two datagrams; return the wall time before the first."""
        t = time.time()
        for _ in range(2):
            self.sock.sendto(self.data, self.dst)
        return t

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


def dds_env(spec: str) -> Tuple[str, Dict[str, str], Dict[str, str]]:
    """Return (name, environment of the DDS processes, tbf options) of a ``--configs`` entry."""
    dds_spec, name, tbf = parse_config(spec)
    _, changes = config_env(dds_spec)
    env = dict(os.environ, PYTHONUNBUFFERED='1', ROS_AUTOMATIC_DISCOVERY_RANGE='SUBNET',
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    for k, v in changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return name, env, tbf


def run_pubsub(tb, spec: str, label: str, rates: List[float], sizes: List[int], reps: int,
               pacings: List[str], background_s: float, log, bg_rows: List[dict]
               ) -> List[dict]:
    """Start pub/sub under one configuration; measure every (rate, pacing, rep, size)."""
    name, env, tbf = dds_env(spec)
    burst = int(tbf.get('burst', tb.burst_bytes))
    peak = 'peakrate' in tbf
    me = [sys.executable, str(Path(__file__).resolve())]
    rows: List[dict] = []
    set_tbf(tb, REFERENCE_MBPS, burst, False)
    cap = Capture(tb.edge_ns, tb.edge_if)
    filler = Filler(tb)
    sub = tb.run_in('edge', ['nice', '-n', '5', *me, '_sub'], env=env, stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    pub = tb.run_in('robot', ['nice', '-n', '5', *me, '_pub'], env=env, stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                    start_new_session=True)
    try:
        sub_lines, pub_lines = Lines(sub), Lines(pub)
        ready = pub_lines.wait_for('READY', 60) or 'none'
        if ready != 'READY':
            log(f'[{name}] no discovery across the veth ({ready}); skipping')
            return rows
        seq = 0

        def send(n: int, timeout: float) -> Tuple[Optional[str], Optional[str]]:
            nonlocal seq
            seq += 1
            pub.stdin.write(f'SEND {seq} {n}\n')
            pub.stdin.flush()
            got = sub_lines.wait_for(f'RECV {seq} ', timeout)
            sent = pub_lines.wait_for(f'SENT {seq} ', 1.0)
            return sent, got

        for n in sizes:   # warm-up: first-message allocations, every size once
            send(n, 15)
        time.sleep(2.0)   # let the start-up discovery burst (initial announcements) pass
        sample = [p for p in cap.between(0, time.time()) if p.kind == 'tensor'
                  and p.info and p.info.get('udp') is not None]
        if sample:
            udp = sample[-1].info['udp']
            log(f'[{name}] a {sample[-1].nbytes}-byte tensor frame: Ethernet/IPv4/UDP '
                f'{sample[-1].nbytes - len(udp)}, RTPS header 20, ' + ', '.join(
                    f'{n} {b}' for n, b in submessage_list(udp)) + ' (DATA: header 24, CDR '
                f'{header_breakdown(udp, sample[-1].info["payload"])["cdr_meta"]} + payload '
                f'{sample[-1].info["payload"]})')
        for rate in rates:
            set_tbf(tb, rate, burst, peak)
            if background_s > 0 and rate == min(rates):
                bg = measure_background(tb, cap, background_s)
                for kind, (b, p) in sorted(bg.items()):
                    bg_rows.append({'label': label, 'config': name, 'rate_mbps': rate,
                                    'seconds': background_s, 'kind': kind, 'bytes': b,
                                    'packets': p, 'bytes_per_s': round(b / background_s, 1)})
                log(f'[{name}] idle {background_s:g} s: ' + (', '.join(
                    f'{k} {b} B/{p} pkt' for k, (b, p) in sorted(bg.items())) or 'nothing'))
            refill_s = burst * 8 / (rate * 1e6) * 1.5 + 0.05
            for pacing in pacings:
                for rep in range(reps):
                    order = list(sizes)
                    random.shuffle(order)
                    for size in order:
                        wait_drained(tb, 30)
                        t_fill = None
                        if pacing == 'idle':   # bucket full again; jitter off the 3 s timers
                            time.sleep(refill_s + random.uniform(0, 0.1))
                        else:
                            time.sleep(random.uniform(0, 0.05))
                        before = tb.qdisc_stats('robot')
                        if pacing == 'busy':
                            t_fill = filler.send()
                        rows.append(measure_one(tb, cap, send, name, label, burst, peak, pacing,
                                                rate, size, rep, before, t_fill))
                log(progress(rows, name, pacing, rate))
        set_tbf(tb, REFERENCE_MBPS, burst, False)
        for rep in range(reps):
            for size in sizes:
                before = wait_drained(tb, 5)
                time.sleep(0.02)
                rows.append(measure_one(tb, cap, send, name, label, burst, False, 'reference',
                                        REFERENCE_MBPS, size, rep, before, None))
        log(progress(rows, name, 'reference', REFERENCE_MBPS))
        pub.stdin.write('QUIT\n')
        pub.stdin.flush()
    finally:
        stop_all((pub, sub))
        filler.close()
        cap.close()
    return rows


def stop_all(procs) -> None:
    """SIGTERM the process groups, then SIGKILL what is left (bounded)."""
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, 15)
                p.wait(10)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(p.pid, 9)
                except ProcessLookupError:
                    pass
                p.wait(5)


def measure_one(tb, cap: Capture, send, name: str, label: str, burst: int, peak: bool,
                pacing: str, rate: float, size: int, rep: int, before: Dict[str, int],
                t_fill: Optional[float]) -> dict:
    """
    Send one message of ``size`` payload bytes and return its row (see the module doc).

    The message's time counts from its publish (``idle``, ``reference``) or, after the fillers
    (``t_fill``: when they were sent), from the arrival of the second one (``busy``).
    """
    ideal_s = size * 8 / (rate * 1e6)
    sent, got = send(size, max(10.0, 20 * ideal_s + 5))
    after = wait_drained(tb, 10)
    row = {'label': label, 'config': name, 'burst': burst, 'peakrate': int(peak),
           'pacing': pacing, 'rate_mbps': rate, 'size_bytes': size, 'rep': rep,
           'ideal_ms': round(ideal_s * 1e3, 3), 'arrived': got is not None,
           'tc_bytes': after.get('sent_bytes', 0) - before.get('sent_bytes', 0)
           - (2 * FILLER_FRAME if t_fill is not None else 0),
           'tc_packets': after.get('sent_packets', 0) - before.get('sent_packets', 0)
           - (2 if t_fill is not None else 0)}
    if not (sent and got):
        return row
    _, seq, _, t_recv, t_stamp = got.split()
    t_stamp, t_recv = float(t_stamp), float(t_recv)
    time.sleep(0.01)   # the capture thread may still hold the last packet
    pkts = cap.between(min(t_stamp, t_fill or t_stamp) - 0.001, t_recv)
    t_start = t_stamp
    if t_fill is not None:
        fills = [p.t for p in pkts if p.kind == 'filler']
        if len(fills) < 2:
            return row
        t_start = max(fills)
    msg = [p for p in pkts if p.kind == 'tensor' and p.info
           and p.info['sequence'] == int(seq)]
    other = [p for p in pkts if p not in msg and p.kind != 'filler' and p.t > t_start]
    kinds: Dict[str, int] = {}
    for p in other:
        kinds[p.kind] = kinds.get(p.kind, 0) + p.nbytes
    wire = sum(p.nbytes for p in msg)
    row.update(delivery_ms=round((t_recv - t_start) * 1e3, 3),
               ratio=round((t_recv - t_start) / ideal_s, 4),
               wire_bytes=wire, wire_packets=len(msg),
               wire_ms=round(wire * 8 / (rate * 1e6) * 1e3, 3),
               other_bytes=sum(p.nbytes for p in other),
               other_kinds=' '.join(f'{k}:{v}' for k, v in sorted(kinds.items())))
    if msg:
        link_s = max(p.t for p in msg) - t_start
        row.update(link_ms=round(link_s * 1e3, 3), link_ratio=round(link_s / ideal_s, 4))
        udp = msg[0].info.get('udp')
        if udp is not None and len(msg) == 1:
            parts = header_breakdown(udp, size)
            row['eth_ip_udp'] = wire - len(udp)
            row.update({k: parts[k] for k in BREAKDOWN})
    return row


def run_nodes(spec: str, label: str, rates: List[float], seconds: float, tb_name: str,
              log) -> List[dict]:
    """
    Run the real nodes as the sweep does (edge-only raw frames) and dissect every frame's link.

    ``sweep_session.NodeSession`` (edge_node; planner_node, camera_node and the controller in
    the robot namespace under its CPU cgroup; robot class 60) on a fresh testbed, ``seconds`` of
    frames per rate. Per frame: the camera's ``uplink_ms``, the capture's ``link_ms`` (last
    packet of the frame minus its send, stamp + device_ms), and what the robot sent in between
    that was not the frame (``ahead_*``: it was queued ahead of the frame in the shaper).
    """
    from edgent_ros.evaluation.sweep_session import NodeSession
    from edgent_ros.evaluation.testbed import Testbed
    name, env, _ = dds_env(spec)
    profile = env.get('FASTDDS_DEFAULT_PROFILES_FILE')
    tb = Testbed(name=tb_name, rate_mbps=10.0)
    rows: List[dict] = []
    sess = cap = None
    logdir = Path(tempfile.mkdtemp(prefix='small-payload-nodes-'))
    try:
        tb.setup()
        cap = Capture(tb.edge_ns, tb.edge_if)
        sess = NodeSession(tb, 60.0, logdir, profile=Path(profile) if profile else None)
        t0 = time.monotonic()
        sess.start(rates[0])
        log(f'[{name} nodes] up after {time.monotonic() - t0:.0f} s (logs {logdir})')
        for rate in rates:
            tb.set_rate(rate)
            time.sleep(3.0)
            t_from = time.time()
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                sess.pump(0.5)
                sess.check_alive()
            time.sleep(0.5)
            sess.pump(0.1)
            outs = [r for r in sess.records if r.get('topic') == 'outcome'
                    and r['t'] > t_from and r['status'] == 0 and r['finished_on'] == 0]
            new = [frame_row(cap, r, name, label, rate) for r in outs]
            rows += [r for r in new if r is not None]
            log(nodes_progress(rows, name, label, rate))
    finally:
        if sess is not None:
            sess.close()
        if cap is not None:
            cap.close()
        tb.teardown()
    return rows


def frame_row(cap: Capture, r: dict, name: str, label: str, rate: float) -> Optional[dict]:
    """Return the link dissection of one edge-finished frame (outcome record ``r``)."""
    t_send = float(r['stamp']) + float(r['device_ms']) / 1e3
    pkts = cap.between(t_send - 0.001, float(r['t']))
    frame = [p for p in pkts if p.kind == 'tensor' and p.info
             and p.info['sequence'] == int(r['sequence'])]
    if not frame:
        return None
    t_last = max(p.t for p in frame)
    ahead = [p for p in pkts if p not in frame and p.t <= t_last]
    kinds: Dict[str, int] = {}
    for p in ahead:
        kinds[p.kind] = kinds.get(p.kind, 0) + p.nbytes
    payload = int(frame[0].info['payload'])
    ideal_ms = payload * 8 / (rate * 1e6) * 1e3
    link_ms = (t_last - t_send) * 1e3
    return {'label': label, 'config': name, 'rate_mbps': rate, 'sequence': r['sequence'],
            'payload': payload, 'ideal_ms': round(ideal_ms, 3),
            'uplink_ms': round(float(r['uplink_ms']), 3),
            'ratio': round(float(r['uplink_ms']) / ideal_ms, 4),
            'link_ms': round(link_ms, 3), 'link_ratio': round(link_ms / ideal_ms, 4),
            'wire_bytes': sum(p.nbytes for p in frame),
            'ahead_bytes': sum(p.nbytes for p in ahead),
            'ahead_spdp': kinds.get('spdp', 0), 'ahead_probe': kinds.get('probe', 0),
            'ahead_kinds': ' '.join(f'{k}:{v}' for k, v in sorted(kinds.items()))}


def nodes_progress(rows: List[dict], name: str, label: str, rate: float) -> str:
    """Return one line of medians of the frames of (label, name, rate)."""
    rs = [r for r in rows if (r['label'], r['config'], r['rate_mbps']) == (label, name, rate)]
    if not rs:
        return f'[{name} nodes {rate:g} Mbit/s] no edge frames'

    def med(f: str) -> float:
        return statistics.median(float(r[f]) for r in rs)

    def mean(f: str) -> float:
        return statistics.mean(float(r[f]) for r in rs)
    hit = sum(1 for r in rs if float(r['ahead_bytes']) > 0)
    return (f'[{name} nodes {rate:g} Mbit/s] {len(rs)} frames: uplink {med("uplink_ms"):.0f} ms '
            f'(x{med("ratio"):.2f} of {med("ideal_ms"):.0f}), link {med("link_ms"):.0f} ms; '
            f'{hit} frames had traffic ahead (mean {mean("ahead_bytes"):.0f} B: spdp '
            f'{mean("ahead_spdp"):.0f}, probes {mean("ahead_probe"):.0f})')


def progress(rows: List[dict], name: str, pacing: str, rate: float) -> str:
    """Return one line of medians per size for the rows of (name, pacing, rate)."""
    parts = []
    for size in sorted({r['size_bytes'] for r in rows}):
        rs = [r for r in rows if (r['config'], r['pacing'], r['rate_mbps'], r['size_bytes'])
              == (name, pacing, rate, size) and r.get('delivery_ms') is not None]
        if rs:
            parts.append(f'{size} B {statistics.median(r["delivery_ms"] for r in rs):.1f} ms '
                         f'x{statistics.median(r["ratio"] for r in rs):.2f} '
                         f'wire {statistics.median(r["wire_bytes"] for r in rs):.0f} B')
    return f'[{name} {pacing} {rate:g} Mbit/s] ' + '; '.join(parts)


def _num(r: dict, f: str) -> Optional[float]:
    v = r.get(f)
    return None if v in (None, '') else float(v)


def plot(rows: List[dict], node_rows: List[dict], path: Path) -> None:
    """
    Plot time / (payload x 8 / rate) per payload size and rate, and the real nodes' frames.

    One panel per rate: pub/sub medians (10-90 % bars) per label and pacing. Last panel: the
    camera's uplink time / ideal of the real nodes' 3,072-byte frames per label and rate.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rates = sorted({float(r['rate_mbps']) for r in rows if r['pacing'] != 'reference'})
    n = len(rates) + bool(node_rows)
    fig, axes = plt.subplots(1, n, figsize=(5.4 * n, 4.8), squeeze=False)
    axes = axes[0]
    groups = sorted({(r['label'], r['config'], r['pacing']) for r in rows
                     if r['pacing'] != 'reference'}, key=lambda g: (g[0] != 'before', g))
    sizes_all = sorted({int(r['size_bytes']) for r in rows})
    for ax, rate in zip(axes, rates):
        for i, (label, config, pacing) in enumerate(groups):
            xs, med, lo, hi = [], [], [], []
            for size in sizes_all:
                rs = sorted(_num(r, 'ratio') for r in rows if _num(r, 'ratio') is not None
                            and (r['label'], r['config'], r['pacing'], float(r['rate_mbps']),
                                 int(r['size_bytes'])) == (label, config, pacing, rate, size))
                if rs:
                    m = statistics.median(rs)
                    xs.append(size)
                    med.append(m)
                    lo.append(m - rs[len(rs) // 10])
                    hi.append(rs[-1 - len(rs) // 10] - m)
            if xs:
                ax.errorbar(xs, med, yerr=[lo, hi], marker='o' if pacing == 'idle' else 's',
                            ls='-' if pacing == 'busy' else ':', capsize=3, color=f'C{i}',
                            label=f'{label}: {Path(config).stem}, {pacing}', alpha=0.85)
        wire = [(size, statistics.median(_num(r, 'wire_bytes') for r in rows
                                         if int(r['size_bytes']) == size
                                         and _num(r, 'wire_bytes') is not None) / size)
                for size in sizes_all]
        ax.plot([w[0] for w in wire], [w[1] for w in wire], color='0.5', lw=4, alpha=0.4,
                label='on-wire bytes / payload')
        ax.axhline(1.0, color='k', lw=1)
        ax.axhline(1.2, color='k', lw=1, ls='--')
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_xticks(sizes_all)
        ax.set_xticklabels([str(s) for s in sizes_all])
        ax.minorticks_off()
        ax.set_xlabel('payload (bytes)')
        ax.set_title(f'pub/sub, tbf uplink {rate * 1000:g} kbit/s')
        ax.grid(True, which='both', alpha=0.3)
    axes[0].set_ylabel('delivery time / (payload x 8 / rate)\n(median, 10-90 %)')
    axes[0].legend(fontsize=7, loc='lower left')
    if node_rows:
        ax = axes[-1]
        keys = sorted({(r['label'], float(r['rate_mbps'])) for r in node_rows},
                      key=lambda k: (k[1], k[0] != 'before', k[0]))
        data = [[float(r['ratio']) for r in node_rows
                 if (r['label'], float(r['rate_mbps'])) == k] for k in keys]
        ax.boxplot(data, whis=(5, 95), showfliers=False)
        ax.set_xticks(range(1, len(keys) + 1))
        ax.set_xticklabels([f'{lb}\n{rt * 1000:g} kbit/s' for lb, rt in keys], fontsize=8)
        ax.axhline(1.0, color='k', lw=1)
        ax.axhline(1.2, color='k', lw=1, ls='--')
        ax.set_ylabel("camera's uplink_ms / (payload x 8 / rate)")
        ax.set_title('real nodes, 3,072-byte frames (box 25-75 %, 5-95 %)')
        ax.grid(True, axis='y', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def summarize(rows: List[dict], node_rows: List[dict], log) -> None:
    """Log the medians per (label, config, pacing, rate, size) and per nodes run."""
    keys = sorted({(r['label'], r['config'], r['pacing'], r['rate_mbps'], r['size_bytes'])
                   for r in rows})
    if keys:
        log('label config pacing kbit/s payload: delivery_ms ideal_ms ratio link_ratio '
            'wire_B tc_B lost')
    for k in keys:
        rs = [r for r in rows if (r['label'], r['config'], r['pacing'], r['rate_mbps'],
                                  r['size_bytes']) == k]
        ok = [r for r in rs if _num(r, 'delivery_ms') is not None]

        def med(f: str) -> float:
            xs = [_num(r, f) for r in ok if _num(r, f) is not None]
            return statistics.median(xs) if xs else float('nan')
        log(f'{k[0]} {Path(k[1]).stem} {k[2]} {k[3] * 1000:g} {k[4]}: '
            f'{med("delivery_ms"):.1f} {float(rs[0]["ideal_ms"]):.1f} {med("ratio"):.3f} '
            f'{med("link_ratio"):.3f} {med("wire_bytes"):.0f} {med("tc_bytes"):.0f} '
            f'{len(rs) - len(ok)}')
    for k in sorted({(r['label'], r['config'], r['rate_mbps']) for r in node_rows}):
        log(nodes_progress(node_rows, k[1], k[0], k[2]))


def _median(rs: List[dict], f: str) -> float:
    xs = [_num(r, f) for r in rs if _num(r, f) is not None]
    return statistics.median(xs) if xs else float('nan')


def pubsub_markdown(rows: List[dict], label: str = 'after') -> str:
    """
    Return BENCHMARKS' pub/sub table (section 11) of ``label``'s rows: medians per size and rate.

    Per rate: bytes/rate (ideal), then the busy and idle delivery times with their ratio to it.
    """
    rows = [r for r in rows if r['label'] == label and r['pacing'] != 'reference']
    rates = sorted({float(r['rate_mbps']) for r in rows})
    head = '| payload (B) | on wire (B) |'
    for rate in rates:
        head += f' {rate * 1000:g} kbit/s: ideal | busy | idle |'
    out = [head, '|' + '---|' * (2 + 3 * len(rates))]
    for size in sorted({int(r['size_bytes']) for r in rows}):
        sel = [r for r in rows if int(r['size_bytes']) == size]
        line = f'| {size:,} | {_median(sel, "wire_bytes"):,.0f} |'
        for rate in rates:
            at = [r for r in sel if float(r['rate_mbps']) == rate]
            line += f' {_median(at, "ideal_ms"):.0f} ms |'
            for pacing in ('busy', 'idle'):
                rs = [r for r in at if r['pacing'] == pacing]
                line += (f' {_median(rs, "delivery_ms"):.0f} ms ({_median(rs, "ratio"):.2f}×) |'
                         if rs else ' |')
        out.append(line)
    return '\n'.join(out)


def nodes_markdown(node_rows: List[dict], bold: str = 'after') -> str:
    """
    Return BENCHMARKS' real-node table (section 11): per rate and profile (label).

    The ideal (bytes/rate) is given once per rate; the rows labelled ``bold`` are set in bold.
    """
    out = ['| rate | profile | frames | uplink_ms median | /ideal: median | mean | p90 '
           '| frames behind other traffic | bytes queued ahead (mean; of it SPDP) |',
           '|---|---|---|---|---|---|---|---|---|']
    keys = sorted({(float(r['rate_mbps']), r['label']) for r in node_rows},
                  key=lambda k: (k[0], k[1] != 'before', k[1]))
    shown = set()
    for rate, lb in keys:
        rs = [r for r in node_rows if (float(r['rate_mbps']), r['label']) == (rate, lb)]
        ratios = sorted(float(r['ratio']) for r in rs)
        hit = sum(1 for r in rs if float(r['ahead_bytes']) > 0)
        ideal = '' if rate in shown else f' (ideal {_median(rs, "ideal_ms"):.0f})'
        shown.add(rate)
        b = '**' if lb == bold else ''
        out.append(
            f'| {rate * 1000:g} kbit/s | {b}{lb}{b} | {len(rs)} | '
            f'{_median(rs, "uplink_ms"):.0f}{ideal} | {b}{statistics.median(ratios):.2f}{b} | '
            f'{b}{statistics.mean(ratios):.2f}{b} | '
            f'{b}{ratios[int(0.9 * (len(ratios) - 1))]:.2f}{b} | {100 * hit / len(rs):.0f} % | '
            f'{statistics.mean(float(r["ahead_bytes"]) for r in rs):.0f}; '
            f'{statistics.mean(float(r["ahead_spdp"]) for r in rs):.0f} |')
    return '\n'.join(out)


def report(rows: List[dict], node_rows: List[dict], bg_rows: List[dict]) -> str:
    """Return the Markdown tables of BENCHMARKS.md from the CSV rows (medians; see the doc)."""
    out = []
    if node_rows:
        out += [nodes_markdown(node_rows), '']
    labels = sorted({r['label'] for r in rows}, key=lambda x: (x != 'before', x))
    for lb in labels:
        out += [f'Pub/sub, {lb}:', '', pubsub_markdown(rows, lb), '']
    ref = [r for r in rows if r['pacing'] == 'reference']
    if ref:
        out.append(f'Unshaped ({REFERENCE_MBPS:g} Mbit/s) publish -> callback: median '
                   f'{_median(ref, "delivery_ms"):.1f} ms over {len(ref)} messages.')
    if bg_rows:
        out += ['', '| profile | idle uplink, one participant per side (B/s by kind) |',
                '|---|---|']
        for lb in sorted({r['label'] for r in bg_rows}, key=lambda x: (x != 'before', x)):
            rs = [r for r in bg_rows if r['label'] == lb]
            out.append(f'| {lb} | ' + ', '.join(f'{r["kind"]} {float(r["bytes_per_s"]):g}'
                                                for r in rs) + ' |')
    return '\n'.join(out).strip()


def main(argv: Optional[List[str]] = None) -> int:
    """Parse arguments and run (or act as a pub/sub role)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['_pub']:
        return role_pub()
    if argv[:1] == ['_sub']:
        return role_sub()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument('--configs', default='testbed',
                   help='comma list: testbed, default, PATH.xml, each [+burst=B][+peakrate]')
    p.add_argument('--label', default='run', help='the label column of the rows (before/after)')
    p.add_argument('--mode', choices=('pubsub', 'nodes', 'both'), default='both')
    p.add_argument('--rates', default=','.join(str(r) for r in RATES), help='Mbit/s, comma list')
    p.add_argument('--sizes', default=','.join(str(s) for s in SIZES), help='bytes, comma list')
    p.add_argument('--reps', type=int, default=15, help='messages per (pacing, rate, size)')
    p.add_argument('--pacings', default='idle,busy', help='idle, busy (comma list)')
    p.add_argument('--background-s', type=float, default=20.0,
                   help='idle window per configuration for the background traffic (0: none)')
    p.add_argument('--nodes-s', type=float, default=40.0,
                   help='seconds of real-node frames per rate (mode nodes/both)')
    p.add_argument('--name', default='edgsmall', help='testbed name')
    p.add_argument('--out', type=Path, default=RESULTS / 'small_payload.csv')
    p.add_argument('--append', action='store_true', help='append to the CSVs (no header)')
    p.add_argument('--no-plot', action='store_true')
    p.add_argument('--report', action='store_true',
                   help='measure nothing: print the tables of the CSVs and redraw the plot')
    args = p.parse_args(argv)
    out_nodes = args.out.with_name(args.out.stem + '_nodes.csv')
    out_bg = args.out.with_name(args.out.stem + '_background.csv')
    if args.report:
        print(report(read_csv(args.out), read_csv(out_nodes), read_csv(out_bg)))
        if not args.no_plot:
            plot(read_csv(args.out), read_csv(out_nodes), args.out.with_suffix('.png'))
        return 0
    from edgent_ros.evaluation.testbed import Testbed, unavailable_reason
    reason = unavailable_reason()
    if reason:
        print(f'small_payload: {reason}', file=sys.stderr)
        return 1
    os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(200, 232)))
    rates = [float(x) for x in args.rates.split(',')]
    sizes = [int(x) for x in args.sizes.split(',')]
    pacings = args.pacings.split(',')
    rows: List[dict] = []
    node_rows: List[dict] = []
    bg_rows: List[dict] = []
    t_start = time.monotonic()

    def log(s: str) -> None:
        print(f'[{time.monotonic() - t_start:6.1f} s] {s}', flush=True)
    log(f'ROS_DOMAIN_ID {os.environ["ROS_DOMAIN_ID"]}; mode {args.mode}, configs {args.configs}, '
        f'sizes {sizes}, rates {rates} Mbit/s, {args.reps} reps, pacings {pacings}')
    for spec in args.configs.split(','):
        if args.mode in ('pubsub', 'both'):
            tb = Testbed(name=args.name, rate_mbps=max(rates), robot_quota=None)
            try:
                tb.setup()
                rows += run_pubsub(tb, spec, args.label, rates, sizes, args.reps, pacings,
                                   args.background_s, log, bg_rows)
            finally:
                tb.teardown()
        if args.mode in ('nodes', 'both'):
            node_rows += run_nodes(spec, args.label, rates, args.nodes_s, args.name, log)
    if rows:
        write_csv(args.out, rows, COLUMNS, args.append)
    if bg_rows:
        write_csv(out_bg, bg_rows, BG_COLUMNS, args.append)
    if node_rows:
        write_csv(out_nodes, node_rows, NODE_COLUMNS, args.append)
    if not args.no_plot:
        plot(read_csv(args.out), read_csv(out_nodes), args.out.with_suffix('.png'))
    summarize(rows, node_rows, log)
    return 0


def read_csv(path: Path) -> List[dict]:
    """Return the rows of ``path`` (none if it does not exist)."""
    if not path.exists():
        return []
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, rows: List[dict], columns, append: bool) -> None:
    """Write (or append) ``rows`` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = 'a' if append and path.exists() else 'w'
    with open(path, mode, newline='') as f:
        w = csv.DictWriter(f, columns)
        if mode == 'w':
            w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, '') for k in columns})


if __name__ == '__main__':
    raise SystemExit(main())
