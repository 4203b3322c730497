"""
Learned bottlenecks on the online path: runner, codec and planner variants.

Random (untrained) bottleneck weights: these tests check shapes, dtypes, ids and refusals, not
accuracy (the trained set's accuracy is in the accuracy table, test_bottleneck.py).
"""

import time
import types

import numpy as np
import pytest
import torch

from edgent_ros.core.arch import EXIT_ATTACH
from edgent_ros.core.bottleneck import Bottleneck, BottleneckSet, spec_for
from edgent_ros.core.codec import (bottleneck_width, effective_encoding, encode, fill_message,
                                   from_message, known_encoding)
from edgent_ros.core.datasets import load_sample
from edgent_ros.core.inference import CoInference
from edgent_ros.core.ledger import FrameRefused
from edgent_ros.core.optimizer import decide, encoding_variants, EdgentProblem, Variant
from edgent_ros.core.weights import load_model


@pytest.fixture(scope='module')
def model():
    return load_model()


def _set(model, *cuts, seed=0):
    torch.manual_seed(seed)
    return BottleneckSet(model.model_id,
                         [Bottleneck(spec_for(model.cfg, s, c, stride)) for s, c, stride in cuts])


@pytest.fixture(scope='module')
def runner(model):
    return CoInference(model, bottlenecks=_set(model, (6, 4, 1), (13, 8, 1), (3, 4, 2)))


@pytest.fixture(scope='module')
def frame():
    return load_sample()[0][7]


def test_names():
    assert bottleneck_width('bn4') == 4 and bottleneck_width('bn16') == 16
    for bad in ('bn', 'bn0', 'bn04', 'int8', 'BN4', 4, None, 'bn4 '):
        assert bottleneck_width(bad) is None
    assert known_encoding('bn8') and known_encoding('jpeg') and not known_encoding('bzip2')
    assert effective_encoding('bn4', image=True) == 'raw'      # never the frame
    assert effective_encoding('bn4', image=False) == 'bn4'


@pytest.mark.parametrize('exit_index', [2, 3, 4, 5])
def test_robot_encoder_then_edge_decoder_equals_in_process_path(runner, frame, exit_index):
    """Robot: layers [0, 6) + encoder; wire: int8 'bn4'; edge: decoder + the rest."""
    out = runner.device_step(frame, exit_index, 6, encoding='bn4')
    assert out.tensor.shape == (1, 4, 8, 8) and out.tensor.dtype == np.float32
    enc = encode(out.tensor, 'bn4', name='split6')
    assert enc.nbytes == 256                        # 4 x 8 x 8 int8
    msg = fill_message(types.SimpleNamespace(), enc)
    assert msg.encoding == 'bn4'
    array = from_message(msg)
    runner.validate(runner.model_id, exit_index, 6, array, 'bn4', runner.bottleneck_id)
    got, _ = runner.edge_step(array, exit_index, 6, encoding='bn4')
    # the same computation in one process, with the same int8 rounding
    bn = runner.bottlenecks.get(6, 'bn4')
    with torch.inference_mode():
        x = torch.from_numpy(array)
        logits = runner.model.run(bn.decode(x), exit_index, 6)
    assert got.class_id == int(logits.argmax(1)[0]) and got.exit_index == exit_index


def test_strided_bottleneck_shapes(runner, frame):
    out = runner.device_step(frame, 5, 3, encoding='bn4')
    assert out.tensor.shape == (1, 4, 8, 8)          # (32, 16, 16) -> stride 2, 4 maps
    assert runner.expected_shape(5, 3, 'bn4') == (1, 4, 8, 8)
    cls, _ = runner.edge_batch([out.tensor, out.tensor], 5, 3, encoding='bn4')
    assert len(cls) == 2 and cls[0].class_id == cls[1].class_id


def test_encoder_counts_as_robot_layers(model, frame, monkeypatch):
    """The encoder's CPU time is in layers_cpu_ms: the testbed's robot emulation slows it."""
    robot = CoInference(model, bottlenecks=_set(model, (6, 4, 1)))
    bn = robot.bottlenecks.get(6, 'bn4')
    encode_plain = bn.encode

    def slow_encode(y):
        c = time.thread_time()
        while time.thread_time() - c < 0.03:     # 30 ms of this thread's CPU
            pass
        return encode_plain(y)

    monkeypatch.setattr(bn, 'encode', slow_encode)
    out = robot.device_step(frame, 5, 6, encoding='bn4')
    assert out.tensor.shape == (1, 4, 8, 8)
    assert out.layers_cpu_ms >= 30.0 and out.layers_ms >= 30.0
    assert out.device_ms >= out.layers_ms
    raw = robot.device_step(frame, 5, 6)          # the same prefix sent raw: no encoder
    assert raw.layers_cpu_ms < out.layers_cpu_ms - 25.0


def test_warm_up_runs_every_exit_and_every_encoder(model, runner, monkeypatch):
    """The camera's start-up warm-up: each exit's whole branch, then each bottleneck once."""
    seen = []
    step = runner.device_step

    def spy(frame, e, s, threshold=0.0, encoding='raw'):
        seen.append((e, s, encoding))
        return step(frame, e, s, threshold, encoding=encoding)

    monkeypatch.setattr(runner, 'device_step', spy)
    runs = runner.warm_up()
    assert runs == seen
    assert runs[:5] == [(e, runner.branch_len(e), 'raw') for e in range(1, 6)]
    encoders = runs[5:]
    assert sorted((s, enc) for _, s, enc in encoders) == [(3, 'bn4'), (6, 'bn4'), (13, 'bn8')]
    for e, s, enc in encoders:       # the deepest exit that cut serves
        assert runner.bottlenecks.covers(runner._trunk, e, s, enc)
    assert CoInference(model).warm_up() == runs[:5]      # no bottlenecks: the exits alone


def test_refusals_name_the_reason(model, runner, frame):
    out = runner.device_step(frame, 5, 6, encoding='bn4')
    arr = out.tensor
    with pytest.raises(FrameRefused) as info:    # encoded by another set
        runner.validate(runner.model_id, 5, 6, arr, 'bn4', 'bn-000000000000')
    assert info.value.reason == 'bottleneck' and 'bn-000000000000' in info.value.detail
    with pytest.raises(FrameRefused) as info:    # no bn4 at this cut
        runner.validate(runner.model_id, 5, 8, arr, 'bn4', runner.bottleneck_id)
    assert info.value.reason == 'bottleneck' and 'split 8' in info.value.detail
    with pytest.raises(FrameRefused):            # nor on the robot
        runner.device_step(frame, 5, 8, encoding='bn4')
    with pytest.raises(FrameRefused) as info:    # exit 1's branch leaves the trunk at 3
        runner.device_step(frame, 1, 6, encoding='bn4')
    plain = CoInference(model)
    with pytest.raises(FrameRefused) as info:    # an edge without bottlenecks
        plain.validate(plain.model_id, 5, 6, arr, 'bn4', runner.bottleneck_id)
    assert 'no bottleneck file' in info.value.detail
    with pytest.raises(FrameRefused):            # right set, wrong width on the wire
        runner.validate(runner.model_id, 5, 13, arr, 'bn8', runner.bottleneck_id)


def test_other_weights_give_another_id(model):
    a, b = _set(model, (6, 4, 1), seed=0), _set(model, (6, 4, 1), seed=1)
    assert a.bottleneck_id != b.bottleneck_id
    assert _set(model, (6, 4, 1), seed=0).bottleneck_id == a.bottleneck_id
    with pytest.raises(ValueError):
        CoInference(model, bottlenecks=BottleneckSet('another-model', []))


def test_covers_only_trunk_cuts_of_the_branch(model, runner):
    cfg = model.cfg
    assert runner.bottlenecks.covers(cfg, 2, 6, 'bn4')      # exit 2 attaches at 6
    assert not runner.bottlenecks.covers(cfg, 1, 6, 'bn4')  # exit 1 left the trunk at 3
    assert runner.bottlenecks.covers(cfg, 1, 3, 'bn4') and EXIT_ATTACH[1] == 3
    assert not runner.bottlenecks.covers(cfg, 4, 13, 'bn8')  # exit 4 attaches at 10
    assert runner.bottlenecks.covers(cfg, 5, 13, 'bn8')
    assert not runner.bottlenecks.covers(cfg, 5, 6, 'bn8') and not runner.bottlenecks.covers(
        cfg, 5, 6, 'int8')


def _problem(variants=None):
    # exit 1: 2 layers, exit 2: 3 layers; robot slow, edge fast; raw tensors large
    return EdgentProblem(accuracy={1: 0.6, 2: 0.8},
                         robot_ms={1: [20.0, 20.0], 2: [20.0, 20.0, 20.0]},
                         edge_ms={1: [0.5, 0.5], 2: [0.5, 0.5, 0.5]},
                         split_bytes={1: [3072, 8192, 0], 2: [3072, 8192, 8192, 0]},
                         overhead_ms=0.0, variants=variants)


def test_bottleneck_variants_only_where_the_table_has_them():
    row = types.SimpleNamespace(top1=0.79, bytes_mean=64, encode_ms=0.1, decode_ms=0.1)
    table = {(2, 1, 'bn4'): row}
    v = encoding_variants({1: [5.0, 5.0], 2: [5.0, 5.0, 5.0]}, ['raw', 'bn4'], table)
    assert v == {(2, 1): (Variant('bn4', 0.79, 64, 0.1, 0.1),)}
    with pytest.raises(ValueError, match='no bottleneck'):
        encoding_variants({1: [5.0, 5.0]}, ['raw', 'bn8'], table)
    # on a slow link the bottleneck cut is the only way to meet the deadline with exit 2
    d = decide(_problem(v), bandwidth_bps=50e3, deadline_ms=35.0)
    assert (d.exit_index, d.split_index, d.encoding) == (2, 1, 'bn4') and d.feasible
    assert d.transfer_ms == pytest.approx(64 * 8 / 50e3 * 1e3)
    d = decide(_problem(None), bandwidth_bps=50e3, deadline_ms=35.0)
    assert not d.feasible     # without it nothing meets 35 ms (device-only exit 1: 40 ms)


def test_a_slower_robot_pays_the_encoder_too():
    """scale_robot / calibrate scale a bottleneck's encode_ms (robot compute), not JPEG's."""
    from edgent_ros.core.optimizer import calibrate, scale_robot
    v = {(2, 1): (Variant('bn4', 0.79, 64, 0.5, 0.1), Variant('int8', 0.8, 2048, 0.5, 0.1))}
    p = scale_robot(_problem(v), 60.0)
    bn, i8 = p.variants[(2, 1)]
    assert bn.encode_ms == pytest.approx(30.0) and bn.decode_ms == pytest.approx(0.1)
    assert i8.encode_ms == pytest.approx(0.5)
    bn, _ = calibrate(_problem(v), 2.0, 3.0).variants[(2, 1)]
    assert bn.encode_ms == pytest.approx(1.0) and bn.decode_ms == pytest.approx(0.3)


@pytest.fixture(scope='module')
def resnet():
    from edgent_ros.core.described import load_described
    return load_described('resnet64')


def test_a_described_model_runs_its_bottlenecks_robot_to_edge(resnet):
    """resnet64: encoder after layer2 (strided) or layer3 on the robot, decoder on the edge."""
    from edgent_ros.core.bottleneck import trunk_of
    from edgent_ros.core.inference import preprocess_image
    trunk = trunk_of(resnet)
    torch.manual_seed(0)
    bset = BottleneckSet(resnet.model_id, [Bottleneck(spec_for(trunk, 7, 8, 2)),
                                           Bottleneck(spec_for(trunk, 9, 4))])
    robot = CoInference(resnet, bottlenecks=bset)
    frame = preprocess_image(load_sample()[0][3], size=(64, 64))
    for exit_index, split, wire in ((2, 7, (1, 8, 8, 8)), (4, 7, (1, 8, 8, 8)),
                                    (3, 9, (1, 4, 8, 8)), (4, 9, (1, 4, 8, 8))):
        out = robot.device_step(frame, exit_index, split, encoding=f'bn{wire[1]}')
        assert out.tensor.shape == wire and out.tensor.dtype == np.float32
        enc = encode(out.tensor, f'bn{wire[1]}')
        assert enc.nbytes == int(np.prod(wire))                # int8: 512 / 256 B
        array = from_message(fill_message(types.SimpleNamespace(), enc))
        robot.validate(robot.model_id, exit_index, split, array, f'bn{wire[1]}',
                       bset.bottleneck_id)
        got, _ = robot.edge_step(array, exit_index, split, encoding=f'bn{wire[1]}')
        with torch.inference_mode():
            bn = bset.get(split, f'bn{wire[1]}')
            logits = resnet.model.run(bn.decode(torch.from_numpy(array)), exit_index, split)
        assert got.class_id == int(logits.argmax(1)[0]) and got.exit_index == exit_index
    with pytest.raises(FrameRefused) as info:    # no bottleneck after layer1 (cut 5)
        robot.device_step(frame, 1, 5, encoding='bn8')
    assert info.value.reason == 'bottleneck'
    plain = CoInference(resnet)                  # an edge without this model's set
    arr = robot.device_step(frame, 4, 9, encoding='bn4').tensor
    with pytest.raises(FrameRefused) as info:
        plain.validate(plain.model_id, 4, 9, arr, 'bn4', bset.bottleneck_id)
    assert 'no bottleneck file' in info.value.detail
