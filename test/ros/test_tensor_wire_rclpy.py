"""
``core.tensor_wire`` against rclpy and over real DDS.

The same bytes as ``rclpy.serialization``, and the nodes' serialized publish / raw subscription
path (``camera_node serialized_publish``, ``edge_node raw_subscription``) interoperating with
typed publishers and subscribers.
"""

import array
import random

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message

from edgent_ros.core import tensor_wire
from edgent_ros.core.codec import encode, fill_message, from_message
from edgent_ros.core.datasets import load_sample
from edgent_ros.core.inference import CoInference
from edgent_ros.core.weights import load_model
from edgent_ros.msg import InferenceResult, Tensor
from edgent_ros.nodes import qos

N = 8


def _padding(msg) -> set:
    """Byte positions that are alignment padding in ``msg``'s serialization."""
    a = tensor_wire._serialize(msg, None, '<', 0x00)
    b = tensor_wire._serialize(msg, None, '<', 0xFF)
    return {i for i in range(len(a)) if a[i] != b[i]}


def _fields(m) -> dict:
    out = {}
    for name, kind in tensor_wire.FIELDS:
        v = tensor_wire._get(m, name)
        if name == 'data':
            v = bytes(memoryview(v).cast('B'))
        elif kind.startswith('seq:'):
            v = tuple(int(x) for x in v)
        out[name] = v
    return out


def _messages():
    """Tensors of every codec encoding and dtype, and messages with random field values."""
    rng = np.random.default_rng(3)
    cases = [((1, 32, 32, 3), np.uint8, e) for e in ('raw', 'compressed', 'png', 'jpeg')]
    cases += [((1, 64, 8, 8), np.float32, e)
              for e in ('raw', 'fp16', 'int8', 'int8-zlib', 'compressed')]
    cases += [((3,), t, 'raw') for t in (np.int8, np.int16, np.uint16, np.int32, np.uint32,
                                         np.int64, np.uint64, np.float16, np.float64)]
    out = []
    for i, (shape, dtype, encoding) in enumerate(cases):
        arr = (rng.standard_normal(shape) * 60).clip(0, 255).astype(dtype)
        m = Tensor()
        m.header.stamp.sec, m.header.stamp.nanosec = 1_700_000_000 + i, 123_456_789
        m.header.frame_id, m.robot, m.model_id = 'camera_optical_frame', '/robot1', 'alexnet-x'
        m.sequence, m.exit_index, m.split_index = 10 + i, 3, 4
        fill_message(m, encode(arr, encoding, name=f'split{i}'))
        m.device_compute_ms, m.confidence_threshold = 1.25 * i, 0.5
        out.append(m)
    r = random.Random(5)

    def s(n):
        return ''.join(r.choice('ab/_é') for _ in range(n))
    for _ in range(200):
        m = Tensor()
        m.header.stamp.sec = r.randint(-2**31, 2**31 - 1)
        m.header.stamp.nanosec = r.randint(0, 2**32 - 1)
        m.header.frame_id, m.robot, m.model_id = s(r.randint(0, 9)), s(r.randint(0, 9)), \
            s(r.randint(0, 9))
        m.probe, m.sequence = r.random() < 0.5, r.randint(0, 2**64 - 1)
        m.exit_index, m.split_index = r.randint(0, 255), r.randint(0, 255)
        m.name, m.encoding, m.bottleneck_id = s(r.randint(0, 9)), s(r.randint(0, 9)), \
            s(r.randint(0, 9))
        m.shape = [r.randint(0, 2**32 - 1) for _ in range(r.randint(0, 5))]
        m.strides = [r.randint(0, 2**64 - 1) for _ in range(r.randint(0, 5))]
        m.data_type, m.zero_point = r.randint(-2**31, 2**31 - 1), r.randint(-2**31, 2**31 - 1)
        m.scale = float(np.float32(r.random()))
        m.confidence_threshold = float(np.float32(r.random()))
        m.device_compute_ms = r.random()
        m.data = array.array('B', bytes(r.randint(0, 255) for _ in range(r.randint(0, 20))))
        out.append(m)
    return out


def test_serialize_matches_rclpy_byte_for_byte():
    """Equal to serialize_message on every byte but padding; each side reads the other's."""
    for m in _messages():
        m.scale = float(np.float32(m.scale))      # the float32 field as any receiver sees it
        ref, mine = serialize_message(m), tensor_wire.serialize(m)
        # rclpy returns its size estimate: 0 or 8 bytes of whatever its buffer held follow
        assert len(ref) - len(mine) in (0, 8), (len(ref), len(mine))
        pad = _padding(m)
        diff = [i for i in range(len(mine)) if ref[i] != mine[i] and i not in pad]
        assert diff == [], (diff, ref.hex(), mine.hex())
        assert deserialize_message(mine, Tensor) == m
        assert _fields(tensor_wire.parse(ref)) == _fields(m)


def test_big_endian_bytes_read_by_rclpy():
    m = _messages()[5]
    assert deserialize_message(tensor_wire.serialize(m, byteorder='>'), Tensor) == m


def test_raw_and_typed_endpoints_interoperate(listener):
    """Typed publisher -> raw subscriber and bytes publisher -> typed subscriber, over DDS."""
    node = listener.node
    raw_got, typed_got = [], []
    node.create_subscription(Tensor, 'wire/a', raw_got.append, qos.TENSOR, raw=True)
    node.create_subscription(Tensor, 'wire/b', typed_got.append, qos.TENSOR)
    pub_a = node.create_publisher(Tensor, 'wire/a', qos.TENSOR)
    pub_b = node.create_publisher(Tensor, 'wire/b', qos.TENSOR)
    assert listener.spin_until(lambda: pub_a.get_subscription_count() > 0
                               and pub_b.get_subscription_count() > 0, 20.0)
    arr = np.random.default_rng(1).standard_normal((1, 256, 32, 32)).astype(np.float32)  # 1 MB
    m = fill_message(Tensor(), encode(arr, 'raw', name='big'))
    m.sequence, m.robot = 42, '/robot1'
    pub_a.publish(m)
    pub_b.publish(tensor_wire.serialize(m))
    assert listener.spin_until(lambda: raw_got and typed_got, 20.0)
    assert isinstance(raw_got[0], bytes)
    w = tensor_wire.parse(raw_got[0])
    assert _fields(w) == _fields(m)
    np.testing.assert_array_equal(from_message(w), arr)
    assert typed_got[0] == m


@pytest.fixture(scope='module')
def reference():
    runner = CoInference(load_model())
    x, y = load_sample()
    return runner, x, y


@pytest.mark.parametrize('exit_index,split_index,encoding', [(3, 4, 'raw'), (5, 0, 'jpeg')])
def test_serialized_camera_raw_edge(procs, listener, reference, exit_index, split_index,
                                    encoding):
    """Frames published as bytes, taken raw: the right classes; typed listeners read them."""
    runner, x, y = reference
    listener.listen(InferenceResult, 'edgent/outcome', qos.RESULT)
    listener.listen(Tensor, 'edgent/tensor', qos.TENSOR)
    procs.start('edge_node', raw_subscription=True)
    camera = procs.start('camera_node', exit_index=exit_index, split_index=split_index,
                         max_frames=N, fps=10.0, exit_when_done=True, loop=False,
                         encoding=encoding, max_in_flight=N, serialized_publish=True,
                         wait_for_subscribers=1, wait_for_edge_s=30.0, result_timeout_s=10.0,
                         publish_frames=False)
    ok = listener.spin_until(lambda: len(listener.msgs('edgent/outcome')) >= N, timeout=60)
    outcomes = listener.msgs('edgent/outcome')
    assert ok, f'{len(outcomes)}/{N} outcomes; camera log:\n{procs.log("camera_node")}' \
               f'\nedge log:\n{procs.log("edge_node")}'
    camera.wait(20)
    assert camera.returncode == 0, procs.log('camera_node')
    assert sorted(o.sequence for o in outcomes) == list(range(1, N + 1))
    for o in outcomes:
        assert o.status == InferenceResult.STATUS_OK, (o.sequence, o.status, o.drop_reason)
        assert o.finished_on == InferenceResult.FINISHED_ON_EDGE
        if encoding == 'raw':
            assert o.class_id == runner.full_forward(x[o.sequence - 1], exit_index).class_id
        assert o.true_class_id == int(y[o.sequence - 1])
    frames = [t for t in listener.msgs('edgent/tensor') if not t.probe]
    assert frames, 'the typed listener read none of the serialized frames'
    for t in frames:
        assert (t.exit_index, t.split_index, t.encoding) == (exit_index, split_index, encoding)
        assert t.model_id == runner.model_id and t.header.frame_id == 'camera_optical_frame'
        assert from_message(t).shape == tuple(runner.expected_shape(exit_index, split_index))


def test_raw_edge_counts_unreadable_bytes_and_keeps_serving(procs, listener, reference):
    """Garbled bytes are counted (refused:malformed); typed bad and good frames still answer."""
    runner, x, _ = reference
    listener.listen(InferenceResult, 'edgent/result', qos.RESULT)
    listener.listen(DiagnosticArray, '/diagnostics', qos.VIZ)
    pub = listener.node.create_publisher(Tensor, 'edgent/tensor', qos.TENSOR)
    procs.start('edge_node', raw_subscription=True)
    assert listener.spin_until(lambda: pub.get_subscription_count() > 0, 30.0)

    def frame(seq, **fields):
        out = runner.device_step(x[seq % 200], 3, 4)
        m = fill_message(Tensor(), encode(out.tensor, name='split4'))
        m.header.frame_id, m.robot, m.sequence = 'camera_optical_frame', '/', seq
        m.header.stamp.sec, m.header.stamp.nanosec = 1000 + seq, 5
        m.model_id, m.exit_index, m.split_index = runner.model_id, 3, 4
        for k, v in fields.items():
            setattr(m, k, v)
        return m

    def answer(seq, publish):
        publish()
        assert listener.spin_until(lambda: any(r.sequence == seq for r in
                                               listener.msgs('edgent/result')), 20.0), \
            procs.log('edge_node')
        return [r for r in listener.msgs('edgent/result') if r.sequence == seq][-1]

    good = frame(1)
    assert answer(1, lambda: pub.publish(good)).status == InferenceResult.STATUS_OK
    whole = tensor_wire.serialize(frame(2))
    for bad in (whole[:len(whole) // 2], b'\x00\x01\x00\x00' + b'\xff' * 64, b'\x00\x07\x00\x00'):
        pub.publish(bad)
    r = answer(3, lambda: pub.publish(frame(3, model_id='other')))     # typed, bad model
    assert (r.status, r.drop_reason) == (InferenceResult.STATUS_REFUSED, 'model_id')
    r = answer(4, lambda: pub.publish(tensor_wire.serialize(frame(4))))  # bytes, good
    assert r.status == InferenceResult.STATUS_OK
    assert r.class_id == runner.full_forward(x[4], 3).class_id
    assert r.header.stamp == frame(4).header.stamp

    def counts():
        for arr in reversed(listener.msgs('/diagnostics')):
            for st in arr.status:
                if st.name.endswith('edge_node'):
                    return {kv.key: kv.value for kv in st.values}
        return {}
    listener.spin_until(lambda: counts().get('refused:malformed') == '3', 10.0)
    assert counts().get('refused:malformed') == '3', (counts(), procs.log('edge_node'))
    assert 'unreadable tensor' in procs.log('edge_node')
