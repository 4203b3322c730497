"""
Malformed tensors and bad parameters against a live edge_node process (reliability, item 1).

Each bad frame must be refused with its reason (answered on edgent/result with STATUS_REFUSED),
counted per reason on /diagnostics, and the node must keep serving good frames in between.
"""

from collections import Counter

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient

from edgent_ros.nodes import qos
from edgent_ros.core.weights import load_model
from edgent_ros.core.datasets import load_sample
from edgent_ros.core.inference import CoInference
from edgent_ros.msg import InferenceResult, Tensor
from edgent_ros.core.codec import encode, fill_message
from ros_helpers import get_parameters


@pytest.fixture(scope='module')
def robot():
    return CoInference(load_model())


def _tensor(robot, seq, exit_index=3, split_index=4, frame=None, **overrides):
    """Return a valid Tensor for (exit, split) of a real frame, then apply ``overrides``."""
    if frame is None:
        frame = load_sample()[0][seq % 200]
    out = robot.device_step(frame, exit_index, split_index)
    m = Tensor()
    m.header.frame_id = 'camera_optical_frame'
    m.robot = '/'
    m.sequence = seq
    m.model_id = robot.model_id
    m.exit_index = exit_index
    m.split_index = split_index
    fill_message(m, encode(out.tensor))
    for k, v in overrides.items():
        setattr(m, k, v)
    return m


def _bad_cases(robot):
    """(label, expected reason, builder(seq) -> Tensor) for every kind of malformed frame."""
    def t(**fields):
        """Build a valid (exit 3, split 4) frame, then overwrite ``fields``."""
        return lambda s: _with(_tensor(robot, s), **fields)

    def t0(**fields):
        """Build a valid split-0 frame (uint8 image), then overwrite ``fields``."""
        return lambda s: _with(_tensor(robot, s, exit_index=5, split_index=0), **fields)
    good = _tensor(robot, 1)
    n = len(good.data)
    nan = np.zeros(tuple(good.shape), np.float32)
    nan.flat[5] = np.nan
    inf = np.zeros(tuple(good.shape), np.float32)
    inf.flat[7] = np.inf
    n3 = robot.branch_len(3)
    return [
        ('unknown data_type code', 'data_type', t(data_type=99)),
        ('float64 where float32 expected', 'data_type',
         t(data_type=10, data=np.zeros(tuple(good.shape)).tobytes(), strides=[])),
        ('uint8 frame sent as float32 at split 0', 'data_type',
         t0(data_type=9, data=bytes(4 * 3072), strides=[])),
        ('wrong shape, right size', 'shape',
         t(shape=[1, good.shape[1] // 4, good.shape[2] * 2, good.shape[3] * 2], strides=[])),
        ('split inconsistent with shape', 'shape', t(split_index=6)),
        ('payload too short', 'payload_length', t(data=bytes(n - 4))),
        ('payload too long', 'payload_length', t(data=bytes(n + 4))),
        ('empty payload', 'payload_length', t(data=b'')),
        ('empty shape', 'shape', t(shape=[], strides=[])),
        ('zero dim', 'shape', t(shape=[1, 0, 8, 8], strides=[])),
        ('absurd dims', 'shape', t(shape=[1, 1 << 30], strides=[])),
        ('oversized beyond limit', 'too_large',
         t(shape=[4, 1024, 1024, 3], data=bytes(16), strides=[])),   # 48 MB > 8 MB limit
        ('payload beyond limit', 'too_large',
         t(shape=[1, 1024, 1024, 3], data_type=2, data=bytes(9 * 1024 * 1024), strides=[])),
        ('NaN content', 'non_finite', t(data=nan.tobytes())),
        ('Inf content', 'non_finite', t(data=inf.tobytes())),
        ('unknown encoding', 'encoding', t(encoding='bzip2')),
        ('fp16 encoding of a uint8 tensor', 'encoding',
         t(encoding='fp16', data_type=2, strides=[])),
        ('int8 with zero scale', 'scale', t(encoding='int8', scale=0.0, data=bytes(n // 4))),
        ('garbled compressed payload', 'payload_length',
         t(encoding='compressed', data=b'not zlib')),
        ('non-contiguous strides', 'strides', t(strides=[4, 4, 4, 4])),
        ('unknown model_id', 'model_id', t(model_id='resnet-0')),
        ('exit out of range', 'exit_split', t(exit_index=9)),
        ('split out of range', 'exit_split', t(split_index=50)),
        ('device-only split sent anyway', 'exit_split',
         lambda s: _with(_tensor(robot, s, exit_index=3, split_index=n3 - 1), split_index=n3)),
        ('wrong dtype for split 0 (int16)', 'data_type',
         t0(data_type=3, data=bytes(2 * 3072), strides=[])),
        ('garbled JPEG frame', 'payload_length', t0(encoding='jpeg', data=b'\xff\xd8 not a jpeg')),
        ('PNG claiming another size', 'shape',
         t0(encoding='png', data=encode(np.zeros((1, 16, 16, 3), np.uint8), 'png').data)),
        ('JPEG of a float activation', 'encoding', t(encoding='jpeg')),
        ('garbled int8-zlib payload', 'payload_length',
         t(encoding='int8-zlib', scale=0.1, data=b'not zlib')),
        ('negative confidence threshold', 'confidence_threshold', t(confidence_threshold=-1.0)),
        ('NaN confidence threshold', 'confidence_threshold',
         t(confidence_threshold=float('nan'))),
    ]


def _with(m, **kw):
    for k, v in kw.items():
        setattr(m, k, v)
    return m


def test_malformed_frames_refused_counted_and_node_keeps_serving(procs, listener, robot):
    listener.listen(InferenceResult, 'edgent/result', qos.RESULT)
    listener.listen(DiagnosticArray, '/diagnostics', qos.VIZ)
    pub = listener.node.create_publisher(Tensor, 'edgent/tensor', qos.TENSOR)
    procs.start('edge_node')
    assert listener.spin_until(lambda: pub.get_subscription_count() > 0, 30.0)
    seq = 10
    expected = Counter()

    def answers(seq):
        return [r for r in listener.msgs('edgent/result') if r.sequence == seq]

    def send(m):
        before = len(answers(m.sequence))
        pub.publish(m)
        ok = listener.spin_until(lambda: len(answers(m.sequence)) > before, 10.0)
        assert ok, f'no answer for sequence {m.sequence}\n{procs.log("edge_node")}'
        return answers(m.sequence)[-1]

    cases = _bad_cases(robot)
    assert len(cases) >= 20
    for label, reason, build in cases:
        seq += 1
        r = send(build(seq))
        assert r.status == InferenceResult.STATUS_REFUSED, label
        assert r.drop_reason == reason, (label, r.drop_reason)
        expected[reason] += 1
        seq += 1
        good = send(_tensor(robot, seq))            # the node still serves good frames
        assert good.status == InferenceResult.STATUS_OK, label
        assert good.class_id == robot.full_forward(load_sample()[0][seq % 200], 3).class_id
    # duplicate and out-of-order sequence numbers (per source)
    r = send(_tensor(robot, seq))
    assert (r.status, r.drop_reason) == (InferenceResult.STATUS_REFUSED, 'duplicate')
    seq += 5
    assert send(_tensor(robot, seq)).status == InferenceResult.STATUS_OK
    r = send(_tensor(robot, seq - 2))
    assert (r.status, r.drop_reason) == (InferenceResult.STATUS_REFUSED, 'out_of_order')
    expected.update({'duplicate': 1, 'out_of_order': 1})

    def counts():
        for arr in reversed(listener.msgs('/diagnostics')):
            for st in arr.status:
                if st.name.endswith('edge_node'):
                    return {kv.key: kv.value for kv in st.values}
        return {}

    want = {f'refused:{k}': str(v) for k, v in expected.items()}
    listener.spin_until(lambda: all(counts().get(k) == v for k, v in want.items()), 5.0)
    got = counts()
    for k, v in want.items():
        assert got.get(k) == v, (k, got)
    assert int(got['frames_ok']) == len(cases) + 1


def test_bad_parameters_refused_with_reason(procs, listener):
    procs.start('edge_node')
    procs.start('camera_node', fps=1.0)
    for node in ('camera_node', 'edge_node'):
        client = AsyncParameterClient(listener.node, node)
        assert listener.spin_until(client.services_are_ready, 30.0)
        for params in ([Parameter('exit_index', value=9)],
                       [Parameter('exit_index', value='five')],
                       [Parameter('exit_index', value=1), Parameter('split_index', value=15)],
                       [Parameter('split_index', value=-1)]):
            fut = client.set_parameters_atomically(params)
            assert listener.spin_until(fut.done, 10.0)
            res = fut.result().result
            assert not res.successful and res.reason, (node, params)
        values = get_parameters(listener, client, ['exit_index', 'split_index'])
        assert [v.integer_value for v in values] == [5, 0]   # nothing changed
        fut = client.set_parameters_atomically([Parameter('exit_index', value=2),
                                                Parameter('split_index', value=3)])
        listener.spin_until(fut.done, 10.0)
        assert fut.result().result.successful
