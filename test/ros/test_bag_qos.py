"""
``edgent-ros record`` / ``play`` against real publishers and subscribers (separate processes).

- a best-effort camera driver on a namespaced ``image_raw``, appearing after the recorder started
  (and after a subscriber made the topic exist), is recorded, its QoS stored in the bag;
- a best-effort publisher joining a topic recorded reliably is recorded too;
- a bag written by ``record`` (every ``msg/*.msg`` type + sensor_msgs/Image) is read back by
  ``rosbags`` in a fresh interpreter that has only the message definitions: importing edgent_ros
  or rclpy there fails, every field of every message equals what was published;
- ``play --clock`` publishes ``/clock`` tracking the bag's stamps (a ``use_sim_time`` node follows
  it), and offers each topic the QoS recorded in the bag.
"""

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (DurabilityPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)
from rosgraph_msgs.msg import Clock
from rosidl_runtime_py.convert import message_to_ordereddict
from rosidl_runtime_py.utilities import get_message
from sensor_msgs.msg import Image
from std_msgs.msg import String

from edgent_ros.nodes.bags import BagWriter, deserialize, offered_qos, qos_from_rmw, read, \
    typestore

ROOT = Path(__file__).resolve().parents[2]
MSG_DIR = ROOT / 'msg'
RELIABLE = QoSProfile(depth=10)
LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _cli(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, '-m', 'edgent_ros.cli.main', *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(ROOT), start_new_session=True, env=dict(os.environ))


def _finish(proc: subprocess.Popen, timeout: float = 30.0):
    """Wait for ``proc`` (SIGINT, then SIGKILL past ``timeout``); return (rc, stdout, stderr)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
    return proc.returncode, out, err


@pytest.fixture
def cli_procs():
    """Start ``edgent-ros`` subcommands; any still running at teardown is killed."""
    started = []

    def start(*args):
        started.append(_cli(*args))
        return started[-1]
    yield start
    for p in started:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()


def _image(k: int, frame_id: str = 'camera_optical_frame') -> Image:
    m = Image(height=2, width=2, encoding='rgb8', is_bigendian=0, step=6,
              data=bytes((k + j) % 256 for j in range(12)))
    m.header.frame_id = frame_id
    m.header.stamp.sec, m.header.stamp.nanosec = 1000 + k, 5
    return m


def _wait_recorder(listener, rec: subprocess.Popen, timeout: float = 30.0) -> None:
    """Spin until the recorder node is in the graph; fail with its output if it is not."""
    if not listener.spin_until(lambda: rec.poll() is not None or 'edgent_recorder' in
                               listener.node.get_node_names(), timeout) or rec.poll() is not None:
        rc, out, err = _finish(rec, timeout=1.0)
        pytest.fail(f'the recorder never appeared (exit {rc})\n{out}\n{err}')


def test_best_effort_camera_on_a_namespace_is_recorded(tmp_path, listener, cli_procs):
    # a subscriber (camera_node with source: topic) makes the topic exist before any publisher
    listener.listen(Image, '/robot1/image_raw', qos_profile_sensor_data)
    bag = tmp_path / 'cam'
    rec = cli_procs('record', '--out', str(bag), '--topics', 'robot1/image_raw',
                    '--duration', '25', '--count', '15')
    _wait_recorder(listener, rec)
    listener.spin_until(lambda: False, 1.0)       # it sees the topic, with no publisher yet
    pub = listener.node.create_publisher(Image, '/robot1/image_raw', qos_profile_sensor_data)
    k = 0
    end = time.monotonic() + 20.0
    while rec.poll() is None and time.monotonic() < end:
        pub.publish(_image(k))
        k += 1
        listener.spin_until(lambda: False, 0.05)
    rc, out, err = _finish(rec)
    assert rc == 0, err
    assert '/robot1/image_raw' in out and 'best effort' in out, out
    store = typestore()
    msgs = [deserialize(store, d, t) for _, t, _, d in read(bag, ['/robot1/image_raw'])]
    assert len(msgs) >= 15, f'{len(msgs)} of {k} published frames recorded\n{err}'
    for m in msgs:
        assert (m.height, m.width, m.encoding, m.header.frame_id) == (
            2, 2, 'rgb8', 'camera_optical_frame')
        j = m.header.stamp.sec - 1000
        assert m.data.tolist() == [(j + i) % 256 for i in range(12)]
    offers = offered_qos(bag)['/robot1/image_raw']
    assert [q.reliability.name for q in offers] == ['BEST_EFFORT']


def test_a_best_effort_publisher_joining_a_reliable_topic_is_recorded_too(
        tmp_path, listener, cli_procs):
    reliable = listener.node.create_publisher(Image, '/robot1/image_raw', RELIABLE)
    bag = tmp_path / 'mixed'
    rec = cli_procs('record', '--out', str(bag), '--topics', '/robot1/image_raw',
                    '--duration', '12', '--storage', 'sqlite3')
    assert listener.spin_until(lambda: reliable.get_subscription_count() > 0, 30.0)
    best_effort = None
    k = 0
    end = time.monotonic() + 9.0
    while time.monotonic() < end:
        reliable.publish(_image(k, 'reliable'))
        if best_effort is None and k == 20:
            best_effort = listener.node.create_publisher(Image, '/robot1/image_raw',
                                                         qos_profile_sensor_data)
        if best_effort is not None:
            best_effort.publish(_image(k, 'best_effort'))
        k += 1
        listener.spin_until(lambda: False, 0.05)
    rc, out, err = _finish(rec)
    assert rc == 0, err
    assert 'subscribing again best effort' in err, err
    store = typestore()
    frames = [deserialize(store, d, t).header.frame_id
              for _, t, _, d in read(bag, ['/robot1/image_raw'])]
    assert frames.count('reliable') >= 20 and frames.count('best_effort') >= 10, (
        frames.count('reliable'), frames.count('best_effort'), err)
    # the offers stored are the first publisher's, as rosbag2 stores them
    assert [q.reliability.name for q in offered_qos(bag)['/robot1/image_raw']] == ['RELIABLE']


# ---- read back with only the message definitions ---------------------------------------------

_PRIMS = {'boolean', 'octet', 'char', 'float', 'double', 'int8', 'uint8', 'int16', 'uint16',
          'int32', 'uint32', 'int64', 'uint64'}


def _prim(typ: str, k: int):
    if typ == 'boolean':
        return k % 2 == 1
    if typ == 'float':
        return 0.5 + k          # exact in float32
    if typ == 'double':
        return 1.25 + k
    if typ == 'octet':
        return bytes([k % 256])
    return (k + 3) % 100      # fits every integer type


def _value(typ: str, name: str, k: int):
    """Return a value for a field of rclpy type ``typ``, different per message ``k``."""
    if typ.startswith('sequence<'):
        inner = typ[len('sequence<'):-1].split(',')[0].strip()
        if inner in _PRIMS:
            return [_prim(inner, k + j) for j in range(3)]
        if inner.startswith('string'):
            return [f'{name}-{k}-{j}' for j in range(2)]
        return [_fill(inner, k)]
    if typ.endswith(']'):                       # fixed-size array, e.g. double[9]
        base, n = typ[:-1].split('[')
        return [_value(base, name, k + j) for j in range(int(n))]
    if typ in _PRIMS:
        return _prim(typ, k)
    if typ.startswith('string') or typ.startswith('wstring'):
        return f'{name}-{k}'
    return _fill(typ, k)


def _fill(typ: str, k: int):
    """Return a message of ``typ`` (``pkg/Name`` or ``pkg/msg/Name``) with every field set."""
    if typ.count('/') == 1:
        typ = typ.replace('/', '/msg/')
    cls = get_message(typ)
    m = cls()
    for name, ftyp in cls.get_fields_and_field_types().items():
        setattr(m, name, _value(ftyp, name, k))
    return m


_READER = r'''
import dataclasses, json, sys
from pathlib import Path


class _NoProject:
    """Fail any import of the project or of ROS: the bag must need neither."""

    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('edgent_ros', 'rclpy', 'rosidl_runtime_py', 'rpyutils'):
            raise ImportError(f'reading the bag imported {name}')
        return None


sys.meta_path.insert(0, _NoProject())
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

store = get_typestore(Stores.ROS2_KILTED)      # std_msgs, sensor_msgs, ...
types = {}
for f in sorted(Path(sys.argv[1]).glob('*.msg')):
    types.update(get_types_from_msg(f.read_text(), f'edgent_ros/msg/{f.stem}'))
store.register(types)


def plain(v):
    if dataclasses.is_dataclass(v):
        return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)
                if not f.name.startswith('__') and not f.name.isupper()}   # not constants
    if hasattr(v, 'tolist'):
        return v.tolist()
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v


out = {}
with Reader(Path(sys.argv[2])) as reader:
    for conn, _, data in reader.messages():
        out.setdefault(conn.topic, {'type': conn.msgtype, 'msgs': []})['msgs'].append(
            plain(store.deserialize_cdr(data, conn.msgtype)))
assert not [m for m in sys.modules if m.split('.')[0] in ('edgent_ros', 'rclpy')]
print(json.dumps(out))
'''


def test_recorded_bag_reads_with_only_the_msg_definitions(tmp_path, listener, cli_procs):
    stems = sorted(p.stem for p in MSG_DIR.glob('*.msg'))
    assert stems, MSG_DIR
    topics = {'/robot1/image_raw': ('sensor_msgs/msg/Image', qos_profile_sensor_data)}
    for i, stem in enumerate(stems):   # one of ours transient local, as edgent/decision is
        topics[f'/robot1/bagcheck/{stem.lower()}'] = (f'edgent_ros/msg/{stem}',
                                                      LATCHED if i == 0 else RELIABLE)
    pubs = {t: listener.node.create_publisher(get_message(ty), t, q)
            for t, (ty, q) in topics.items()}
    n = 3
    bag = tmp_path / 'all'
    rec = cli_procs('record', '--out', str(bag), '--topics', *topics, '--duration', '20',
                    '--count', str(n * len(topics)))
    assert listener.spin_until(lambda: all(p.get_subscription_count() for p in pubs.values()),
                               30.0), 'the recorder did not subscribe every topic'
    listener.spin_until(lambda: False, 0.5)
    sent = {t: [] for t in topics}
    for k in range(n):
        for t, (ty, _) in topics.items():
            m = _fill(ty, k)
            pubs[t].publish(m)
            sent[t].append(json.loads(json.dumps(message_to_ordereddict(m))))
        listener.spin_until(lambda: False, 0.1)
    rc, out, err = _finish(rec)
    assert rc == 0, err

    env = {k: v for k, v in os.environ.items()
           if k not in ('PYTHONPATH', 'AMENT_PREFIX_PATH', 'PYTHONSTARTUP')}
    r = subprocess.run([sys.executable, '-I', '-c', _READER, str(MSG_DIR), str(bag)],
                       capture_output=True, text=True, timeout=120, cwd=str(tmp_path), env=env)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert set(got) == set(topics), (set(topics) - set(got), out, err)
    for t, (ty, _) in topics.items():
        assert got[t]['type'] == ty
        if t.endswith('image_raw'):     # best effort: at most a loss, never a wrong field
            assert got[t]['msgs'] and all(m in sent[t] for m in got[t]['msgs']), t
        else:
            assert got[t]['msgs'] == sent[t], t
    assert got['/robot1/image_raw']['msgs'][0]['encoding'].startswith('encoding-')


# ---- play --clock --------------------------------------------------------------------------

T0 = 1_700_000_000 * 10**9 + 250_000_000
STEP = 300_000_000
N = 10
INF = 2**63 - 1


def _clock_bag(path: Path) -> None:
    best_effort = qos_from_rmw(3, 0, 2, 2, INF, INF, 1, INF, False)
    latched = qos_from_rmw(3, 0, 1, 1, INF, INF, 1, INF, False)
    with BagWriter(path) as w:
        Str = w.store.types['std_msgs/msg/String']
        w.add_topic('/bagtest/chatter', 'std_msgs/msg/String', [best_effort])
        w.add_topic('/bagtest/latched', 'std_msgs/msg/String', [latched, latched])
        w.write('/bagtest/latched', T0, Str(data='latched'))
        for k in range(N):
            w.write('/bagtest/chatter', T0 + k * STEP, Str(data=str(T0 + k * STEP)))


def test_play_clock_tracks_the_bag_and_offers_the_recorded_qos(tmp_path, listener, cli_procs):
    bag = tmp_path / 'clock_bag'
    _clock_bag(bag)
    t_last = T0 + (N - 1) * STEP
    listener.listen(Clock, '/clock', QoSProfile(depth=100,
                                                reliability=ReliabilityPolicy.BEST_EFFORT))
    listener.listen(String, '/bagtest/chatter', qos_profile_sensor_data)
    listener.listen(String, '/bagtest/latched', LATCHED)
    sim = Node('sim_time_node', context=listener.context,
               parameter_overrides=[Parameter('use_sim_time', value=True)])
    listener.executor.add_node(sim)
    try:
        play = cli_procs('play', str(bag), '--rate', '2', '--clock', '50',
                         '--wait-subscribers', '20')
        offered = {}

        def seen():
            for t in ('/bagtest/chatter', '/bagtest/latched'):
                infos = listener.node.get_publishers_info_by_topic(t)
                if infos:
                    offered[t] = infos[0].qos_profile
            return len(offered) == 2
        assert listener.spin_until(seen, 30.0), 'the player never published'
        assert offered['/bagtest/chatter'].reliability == ReliabilityPolicy.BEST_EFFORT
        assert offered['/bagtest/latched'].reliability == ReliabilityPolicy.RELIABLE
        assert offered['/bagtest/latched'].durability == DurabilityPolicy.TRANSIENT_LOCAL
        listener.spin_until(lambda: play.poll() is not None, 30.0)
        listener.spin_until(lambda: False, 0.3)
        rc, out, err = _finish(play)
        assert rc == 0, err
        assert '/clock at 50 Hz' in out, out

        with listener.lock:
            clock = [(w, m.clock.sec * 10**9 + m.clock.nanosec)
                     for w, m in listener.received['/clock']]
            chatter = [(w, int(m.data)) for w, m in listener.received['/bagtest/chatter']]
        assert len(clock) >= 50, len(clock)
        values = [c for _, c in clock]
        assert values == sorted(values) and values[0] >= T0 and values[-1] == t_last
        assert values[0] == T0, 'the start time is published while waiting for subscribers'
        running = [(w, c) for w, c in clock if T0 < c < t_last]
        slope = (running[-1][1] - running[0][1]) / 1e9 / (running[-1][0] - running[0][0])
        assert 1.6 < slope < 2.4, f'bag time ran {slope:.2f}x wall time, want 2 (--rate 2)'
        assert len(chatter) >= N - 2, len(chatter)
        for w, stamp in chatter:   # the clock shown when a message arrives is its bag time
            before = [c for cw, c in clock if cw <= w]
            assert before and abs(before[-1] - stamp) <= 0.3e9, (before[-1:], stamp)
        assert [m.data for m in listener.msgs('/bagtest/latched')] == ['latched']
        # a use_sim_time node follows /clock: it now stands at the bag's last stamp
        assert abs(sim.get_clock().now().nanoseconds - t_last) <= 0.1e9
    finally:
        listener.executor.remove_node(sim)
        sim.destroy_node()


def test_play_refuses_a_bad_clock_rate(tmp_path):
    bag = tmp_path / 'b'
    _clock_bag(bag)
    r = subprocess.run([sys.executable, '-m', 'edgent_ros.cli.main', 'play', str(bag),
                        '--clock', '-1'], capture_output=True, text=True, timeout=60,
                       cwd=str(ROOT))
    assert r.returncode == 2 and '--clock' in r.stderr, r.stderr
