"""
Learned bottlenecks across processes: camera encodes, edge decodes, mismatches are refused.

Both nodes load a bottleneck file written here with random weights (shapes, ids and refusals
are what is checked; the shipped set's accuracy is in the accuracy table).
"""

import numpy as np
import pytest
import torch

from edgent_ros.core.bottleneck import Bottleneck, BottleneckSet, spec_for
from edgent_ros.core.datasets import load_sample
from edgent_ros.core.inference import CoInference
from edgent_ros.core.weights import load_model
from edgent_ros.msg import InferenceResult, Tensor
from edgent_ros.nodes import qos
from ros_helpers import publish_link

N = 8


def _write_set(model, path, seed):
    torch.manual_seed(seed)
    bns = BottleneckSet(model.model_id, [Bottleneck(spec_for(model.cfg, 6, 4)),
                                         Bottleneck(spec_for(model.cfg, 13, 8))])
    bns.save(path)
    return bns


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    model = load_model()
    tmp = tmp_path_factory.mktemp('bn')
    a = _write_set(model, tmp / 'a.safetensors', 0)
    b = _write_set(model, tmp / 'b.safetensors', 1)
    return model, (tmp / 'a.safetensors', a), (tmp / 'b.safetensors', b)


def _camera(procs, path, **kw):
    return procs.start('camera_node', exit_index=5, split_index=6, encoding='bn4',
                       bottlenecks_path=str(path), max_frames=N, fps=10.0, exit_when_done=True,
                       loop=False, wait_for_subscribers=1, wait_for_edge_s=30.0,
                       result_timeout_s=10.0, **kw)


def test_bottleneck_frames_cross_and_decode_like_in_process(procs, listener, files):
    model, (path_a, set_a), _ = files
    listener.listen(InferenceResult, 'edgent/outcome', qos.RESULT)
    listener.listen(Tensor, 'edgent/tensor', qos.TENSOR)
    procs.start('edge_node', bottlenecks_path=str(path_a))
    camera = _camera(procs, path_a)
    ok = listener.spin_until(lambda: len(listener.msgs('edgent/outcome')) >= N, timeout=60)
    outs = sorted(listener.msgs('edgent/outcome'), key=lambda o: o.sequence)
    assert ok, f'{len(outs)}/{N}\n{procs.log("camera_node")}\n{procs.log("edge_node")}'
    camera.wait(20)
    frames = [t for t in listener.msgs('edgent/tensor') if not t.probe]
    assert frames, 'the listener saw no frame tensor'
    for t in frames:
        assert t.encoding == 'bn4' and t.bottleneck_id == set_a.bottleneck_id
        assert list(t.shape) == [1, 4, 8, 8] and len(t.data) == 256 and t.data_type == 9
    ref = CoInference(model, bottlenecks=set_a)
    x, _ = load_sample()
    from edgent_ros.core.codec import decode, encode
    for o in outs:
        assert o.status == InferenceResult.STATUS_OK, (o.sequence, o.drop_reason)
        assert o.encoding == 'bn4' and (o.exit_index, o.split_index) == (5, 6)
        # in-process: robot part + encoder, int8 round trip, decoder + edge part
        z = ref.device_step(x[o.sequence - 1], 5, 6, encoding='bn4').tensor
        e = encode(z, 'bn4')
        back = decode(e.shape, e.data_type, e.encoding, e.data, e.scale, e.zero_point)
        cls, _ = ref.edge_step(np.asarray(back), 5, 6, encoding='bn4')
        assert o.class_id == cls.class_id


def test_edge_with_other_bottleneck_weights_refuses_every_frame(procs, listener, files):
    _, (path_a, _), (path_b, set_b) = files
    listener.listen(InferenceResult, 'edgent/outcome', qos.RESULT)
    procs.start('edge_node', bottlenecks_path=str(path_b))
    _camera(procs, path_a)
    ok = listener.spin_until(lambda: len(listener.msgs('edgent/outcome')) >= N, timeout=60)
    outs = listener.msgs('edgent/outcome')
    assert ok, f'{len(outs)}/{N}\n{procs.log("camera_node")}\n{procs.log("edge_node")}'
    assert all(o.status == InferenceResult.STATUS_REFUSED and o.drop_reason == 'bottleneck'
               for o in outs), {(o.status, o.drop_reason) for o in outs}
    assert set_b.bottleneck_id in procs.log('edge_node')


def test_camera_refuses_a_bottleneck_where_it_has_none(procs, listener, files):
    _, (path_a, _), _ = files
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient
    procs.start('edge_node', bottlenecks_path=str(path_a))
    _camera(procs, path_a, )
    client = AsyncParameterClient(listener.node, 'camera_node')
    assert listener.spin_until(client.services_are_ready, 30.0)
    fut = client.set_parameters_atomically([Parameter('split_index', value=8)])
    listener.spin_until(fut.done, 10.0)
    res = fut.result().result
    assert not res.successful and 'no bn4 bottleneck at exit 5 split 8' in res.reason
    fut = client.set_parameters_atomically([Parameter('split_index', value=13),
                                            Parameter('encoding', value='bn8')])
    listener.spin_until(fut.done, 10.0)
    assert fut.result().result.successful


def test_a_bottleneck_file_for_another_model_stops_the_node(procs, tmp_path, files):
    model, _, _ = files
    BottleneckSet('alexnet5-cifar10-v1-00000000', []).save(tmp_path / 'other.safetensors')
    p = procs.start('edge_node', bottlenecks_path=str(tmp_path / 'other.safetensors'))
    assert p.wait(60) == 2
    assert 'bottlenecks for model' in procs.log('edge_node')


# ------------------------------------------------------------------------------------------------
# The shipped trained set, chosen by the planner

SLOW_ROBOT = 60.0            # the evaluation's robot class: layer times x60
PLANNER_OVERHEAD_MS = 2.0    # planner_node's default overhead_ms


def _bn_cell():
    """Return (encodings, bandwidth_bps, deadline_ms, decision, payload bytes) of a bn cut."""
    from edgent_ros.core.artifacts import load_accuracy, load_encodings, read_config
    from edgent_ros.core.codec import bottleneck_width
    from edgent_ros.core.latency import LatencyModels
    from edgent_ros.core.optimizer import decide, EdgentProblem, scale_robot
    cfg = read_config()
    table = load_encodings(model_id=cfg.model_id())
    bns = sorted({k[2] for k in table if bottleneck_width(k[2]) is not None})
    assert bns, 'the shipped accuracy table has no bottleneck rows'
    encodings = ['raw', 'jpeg', 'png'] + bns
    problem = scale_robot(EdgentProblem.from_model(
        cfg, load_accuracy(model_id=cfg.model_id()), LatencyModels.load(model_id=cfg.model_id()),
        overhead_ms=PLANNER_OVERHEAD_MS, encodings=encodings, encoding_table=table), SLOW_ROBOT)
    for bps in (50e3, 75e3, 100e3, 150e3, 200e3):
        for deadline in (100.0, 150.0, 200.0, 250.0, 300.0):
            d = decide(problem, bps, deadline)
            if d.feasible and d.encoding in bns:
                return encodings, bps, deadline, d, int(table[d.key].bytes_mean)
    raise AssertionError('no slow link where the planner cuts with a bottleneck')


DESCRIBED_ROBOT = 10.0       # resnet64's robot in BENCHMARKS §14/§12b: its blocks x10


def _bn_cell_described(desc_path):
    """``_bn_cell`` for a described model: its table, block times and measured encodings."""
    from edgent_ros.core.codec import bottleneck_width
    from edgent_ros.core.model_desc import load_description
    from edgent_ros.core.model_plan import (load_block_latency, load_model_accuracy,
                                            load_model_encodings, load_table, problem_for)
    from edgent_ros.core.optimizer import decide
    files = load_description(desc_path).files()
    table = load_table(files['table'])
    enc = load_model_encodings(files['accuracy'], table['model_id'])
    bns = sorted({k[2] for k in enc if bottleneck_width(k[2]) is not None})
    assert bns, f'{files["accuracy"]} has no bottleneck rows'
    encodings = ['raw', 'jpeg'] + bns
    problem = problem_for(table, load_block_latency(files['latency'], table['model_id']),
                          load_model_accuracy(files['accuracy'], table['model_id']),
                          overhead_ms=PLANNER_OVERHEAD_MS, robot_time_scale=DESCRIBED_ROBOT,
                          encodings=encodings, encoding_table=enc)
    for bps in (50e3, 75e3, 100e3, 150e3, 200e3, 300e3):
        for deadline in (60.0, 80.0, 100.0, 120.0):
            d = decide(problem, bps, deadline)
            if d.feasible and d.encoding in bns:
                return encodings, bps, deadline, d, int(enc[d.key].bytes_mean)
    raise AssertionError('no slow link where the planner cuts with a bottleneck')


@pytest.mark.parametrize('described', [False, True], ids=['alexnet5', 'resnet64'])
def test_planner_picks_a_bottleneck_cut_when_the_link_is_slow(procs, listener, described):
    """A slow link and a slow robot: the planner sends bn<c> maps; they cross and decode."""
    from rclpy.parameter_client import AsyncParameterClient
    from edgent_ros.core.bottleneck import default_path, load_bottlenecks
    from edgent_ros.core.described import load_described
    from edgent_ros.msg import ExitSplitDecision, LinkQuality
    if described:
        dm = load_described('resnet64')
        encodings, bps, deadline, want, nbytes = _bn_cell_described(dm.desc.path)
        shipped = load_bottlenecks(default_path(dm.desc), dm.model_id)
        model = {'model': str(dm.desc.path)}
        robot = DESCRIBED_ROBOT
    else:
        encodings, bps, deadline, want, nbytes = _bn_cell()
        shipped = load_bottlenecks(None, load_model().model_id)
        model, robot = {}, SLOW_ROBOT
    listener.listen(ExitSplitDecision, 'edgent/decision', qos.DECISION)
    listener.listen(InferenceResult, 'edgent/outcome', qos.RESULT)
    listener.listen(Tensor, 'edgent/tensor', qos.TENSOR)
    lq = listener.node.create_publisher(LinkQuality, 'edgent/link_quality', qos.LINK_QUALITY)
    procs.start('edge_node', **model)
    # the camera's own estimates (unshaped loopback) go elsewhere: the test is the link
    procs.start('camera_node', remap=['edgent/link_quality:=camera_link_quality'], fps=5.0,
                max_in_flight=4, wait_for_subscribers=1, wait_for_edge_s=30.0,
                publish_frames=False, **model)
    procs.start('planner_node', deadline_ms=deadline, robot_time_scale=robot,
                overhead_ms=PLANNER_OVERHEAD_MS, link_timeout_s=60.0, encodings=encodings,
                calibration=False, **model)   # loopback frames would calibrate the link away
    camera = AsyncParameterClient(listener.node, 'camera_node')
    assert listener.spin_until(camera.services_are_ready, 30.0)
    assert listener.spin_until(lambda: lq.get_subscription_count() > 0, 30.0)

    def decided():
        publish_link(listener, lq, bps)
        return any(d.encoding == want.encoding for d in listener.msgs('edgent/decision'))
    assert listener.spin_until(decided, 20.0), [
        (d.exit_index, d.split_index, d.encoding, d.reason)
        for d in listener.msgs('edgent/decision')]
    d = [d for d in listener.msgs('edgent/decision') if d.encoding == want.encoding][-1]
    assert (d.exit_index, d.split_index) == want.config and d.feasible
    assert 0 < d.split_index and d.predicted_total_ms <= deadline   # a mid-network cut

    def sent():
        publish_link(listener, lq, bps)
        return any(t.encoding == want.encoding and not t.probe
                   for t in listener.msgs('edgent/tensor'))
    assert listener.spin_until(sent, 30.0), procs.log('planner_node')
    frames = [t for t in listener.msgs('edgent/tensor')
              if t.encoding == want.encoding and not t.probe]
    assert all(t.bottleneck_id == shipped.bottleneck_id for t in frames)
    assert all(len(t.data) == nbytes for t in frames), ([len(t.data) for t in frames], nbytes)

    def decoded():
        publish_link(listener, lq, bps)
        return len([o for o in listener.msgs('edgent/outcome')
                    if o.encoding == want.encoding and o.status == InferenceResult.STATUS_OK]) >= 3
    assert listener.spin_until(decoded, 30.0), (procs.log('camera_node'), procs.log('edge_node'))
