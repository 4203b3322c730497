"""
Unit tests of partitioned co-inference and frame bookkeeping (no ROS).

``device_step`` on the robot then ``edge_step`` on the edge must give the in-process
``full_forward`` result for every cut; ``validate`` refuses frames with a counted reason;
``FrameLedger`` accounts for every produced frame.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from edgent_ros.core.datasets import load_sample, SAMPLE_PATH
from edgent_ros.core.inference import classify, CoInference, preprocess_image
from edgent_ros.core.ledger import (FrameLedger, FrameRefused, Pending, publisher_key,
                                    SequenceTracker)
from edgent_ros.core.arch import CLASSES, NUM_EXITS
from edgent_ros.core.model import MultiExitAlexNet
from edgent_ros.core.codec import decode, encode
from edgent_ros.offline.training import SHIPPED_CONFIG


@pytest.fixture(scope='module')
def co():
    """Return a CoInference over a random-init model of the shipped widths."""
    torch.manual_seed(0)
    return CoInference(MultiExitAlexNet(SHIPPED_CONFIG))


@pytest.fixture(scope='module')
def frame():
    """Return a random uint8 RGB image of shape (32, 32, 3)."""
    return np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def _same(a, b):
    assert a.class_id == b.class_id and a.label == b.label
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)
    assert a.confidence == pytest.approx(b.confidence, rel=1e-5, abs=1e-6)


# ----------------------------------------------------------------------------- co-inference


@pytest.mark.parametrize('exit_index', range(1, NUM_EXITS + 1))
def test_device_then_edge_equals_full_forward(co, frame, exit_index):
    want = co.full_forward(frame, exit_index)
    n = co.branch_len(exit_index)
    for split in range(n):
        out = co.device_step(frame, exit_index, split)
        assert out.classification is None and out.device_ms >= 0.0
        assert out.tensor.shape == co.expected_shape(exit_index, split)
        co.validate(co.model_id, exit_index, split, out.tensor)
        got, edge_ms = co.edge_step(out.tensor, exit_index, split)
        assert edge_ms >= 0.0
        _same(got, want)


# edge_step(split 0) wraps the read-only decoded array with torch.from_numpy (harmless, it is
# copied before any write, but torch warns once per process; see report)
@pytest.mark.filterwarnings('ignore:The given NumPy array is not writable')
@pytest.mark.parametrize('exit_index,split_index,encoding', [
    (5, 0, 'raw'), (5, 3, 'raw'), (5, 14, 'compressed'), (1, 3, 'fp16'), (3, 8, 'raw'),
    (4, 11, 'compressed'), (2, 6, 'fp16')])
def test_through_the_codec(co, frame, exit_index, split_index, encoding):
    out = co.device_step(frame, exit_index, split_index)
    enc = encode(out.tensor, encoding)
    received = decode(enc.shape, enc.data_type, enc.encoding, enc.data, enc.scale,
                      enc.zero_point, enc.strides)        # read-only, like rclpy gives it
    co.validate(co.model_id, exit_index, split_index, received)
    got, _ = co.edge_step(received, exit_index, split_index)
    want = co.full_forward(frame, exit_index)
    if encoding == 'fp16':
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-2)
    else:
        _same(got, want)


def test_split_zero_sends_the_uint8_frame(co, frame):
    for e in range(1, NUM_EXITS + 1):
        out = co.device_step(frame, e, 0)
        assert out.tensor.dtype == np.uint8 and out.tensor.shape == (1, 32, 32, 3)
        np.testing.assert_array_equal(out.tensor[0], frame)
        assert out.classification is None
        assert co.expected_shape(e, 0) == (1, 32, 32, 3)


def test_device_only_split_returns_classification(co, frame):
    for e in range(1, NUM_EXITS + 1):
        out = co.device_step(frame, e, co.branch_len(e))
        assert out.tensor is None
        _same(out.classification, co.full_forward(frame, e))


def test_middle_split_sends_float32_activation(co, frame):
    out = co.device_step(frame, 5, 3)               # after pool1: (1, c1, 16, 16)
    assert out.tensor.dtype == np.float32
    assert out.tensor.shape == (1, SHIPPED_CONFIG.c1, 16, 16)


def test_device_step_rejects_bad_cut(co, frame):
    for e, s in [(0, 0), (6, 0), (1, -1), (1, 11), (5, 21)]:
        with pytest.raises(ValueError):
            co.device_step(frame, e, s)


def test_model_id_and_threads():
    model = MultiExitAlexNet(SHIPPED_CONFIG)
    before = torch.get_num_threads()
    try:
        c = CoInference(model, threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert c.model_id == SHIPPED_CONFIG.model_id() and not c.model.training


# ----------------------------------------------------------------------------- validate


def _refusal(co, *args) -> FrameRefused:
    with pytest.raises(FrameRefused) as info:
        co.validate(*args)
    assert isinstance(info.value, ValueError)
    return info.value


def test_validate_accepts_good_frames(co, frame):
    co.validate(co.model_id, 5, 0, frame[None])
    co.validate(co.model_id, 5, 1, np.zeros((1, SHIPPED_CONFIG.c1, 32, 32), np.float32))


def test_validate_model_id_mismatch(co, frame):
    err = _refusal(co, 'alexnet5-cifar10-v1-deadbeef', 5, 0, frame[None])
    assert err.reason == 'model_id' and 'deadbeef' in err.detail


@pytest.mark.parametrize('exit_index,split_index', [(0, 0), (6, 0), (-1, 0), (1, -1),
                                                    (1, 11), (5, 21), (4, 99)])
def test_validate_exit_split_out_of_range(co, frame, exit_index, split_index):
    assert _refusal(co, co.model_id, exit_index, split_index, frame[None]).reason == \
        'exit_split'


@pytest.mark.parametrize('exit_index', range(1, NUM_EXITS + 1))
def test_validate_device_only_split(co, exit_index):
    n = co.branch_len(exit_index)
    err = _refusal(co, co.model_id, exit_index, n, np.zeros((1, 10), np.float32))
    assert err.reason == 'exit_split' and 'device-only' in err.detail


@pytest.mark.parametrize('split_index,shape', [
    (0, (32, 32, 3)), (0, (1, 3, 32, 32)), (0, (2, 32, 32, 3)), (0, (1, 16, 16, 3)),
    (1, (1, 32, 32, 32)[:3]), (1, (1, 31, 32, 32)), (3, (1, 32, 32, 32)), (15, (1, 100))])
def test_validate_wrong_shape(co, split_index, shape):
    dtype = np.uint8 if split_index == 0 else np.float32
    err = _refusal(co, co.model_id, 5, split_index, np.zeros(shape, dtype))
    assert err.reason == 'shape'


@pytest.mark.parametrize('split_index,dtype', [(0, np.float32), (0, np.int8), (1, np.float64),
                                               (1, np.float16), (3, np.uint8)])
def test_validate_wrong_dtype(co, split_index, dtype):
    shape = co.expected_shape(5, split_index)
    err = _refusal(co, co.model_id, 5, split_index, np.zeros(shape, dtype))
    assert err.reason == 'data_type'


# ----------------------------------------------------------------------------- sequences


def test_sequence_tracker_duplicates_and_order():
    t = SequenceTracker(restart_gap=1000)
    for seq in (1, 2, 5, 6):
        t.check('cam', seq)
    with pytest.raises(FrameRefused) as info:
        t.check('cam', 6)
    assert info.value.reason == 'duplicate'
    with pytest.raises(FrameRefused) as info:
        t.check('cam', 3)
    assert info.value.reason == 'out_of_order'
    t.check('cam', 7)                                    # refusals did not move the mark
    t.check('other', 3)                                  # sources are independent
    t.check('other', 4)


def test_sequence_tracker_accepts_restart():
    t = SequenceTracker(restart_gap=1000)
    t.check('cam', 5000)
    with pytest.raises(FrameRefused):
        t.check('cam', 4000)                             # exactly the gap: still out of order
    t.check('cam', 3999)                                 # more than the gap back: a restart
    t.check('cam', 4000)
    with pytest.raises(FrameRefused):
        t.check('cam', 3999)
    t2 = SequenceTracker()
    t2.check('cam', 10 ** 6)
    t2.check('cam', 0)                                   # camera rebooted, counts from 0
    t2.check('cam', 1)


def test_a_restarted_camera_has_its_own_sequence_space():
    """Keyed by the publisher's GID, a new run's sequence 1 is not out of order after 800."""
    old = {'publisher_gid': {'implementation_identifier': 'rmw_fastrtps_cpp',
                             'data': bytes(range(16))}}
    new = {'publisher_gid': {'implementation_identifier': 'rmw_fastrtps_cpp',
                             'data': bytes(range(1, 17))}}
    assert publisher_key(old) == bytes(range(16)).hex() and publisher_key(None) == ''
    assert publisher_key({'publisher_gid': None}) == ''
    t = SequenceTracker()
    for seq in range(1, 801):
        t.check(f'/r1|{publisher_key(old)}', seq)
    t.check(f'/r1|{publisher_key(new)}', 1)              # the restarted camera
    with pytest.raises(FrameRefused, match='out_of_order|arrived after'):
        t.check(f'/r1|{publisher_key(old)}', 799)        # the old run's stragglers still are


# ----------------------------------------------------------------------------- ledger


def _pending(seq: int, sent_s: float) -> Pending:
    return Pending(seq=seq, sent_s=sent_s, capture_s=sent_s, exit_index=5, split_index=3,
                   payload_bytes=1000, device_ms=1.0)


def test_frame_ledger_accounting():
    ledger = FrameLedger(timeout_s=2.0)

    def balanced():
        assert ledger.produced == sum(ledger.outcomes.values()) + ledger.in_flight
        assert ledger.accounted() == ledger.produced

    for seq in range(10):                                # frames 0-9 sent at t = seq * 0.1
        ledger.produce()
        ledger.send(_pending(seq, seq * 0.1))
        balanced()
    ledger.produce()
    ledger.finish('ok_device')                           # never sent
    ledger.produce()
    ledger.finish('dropped:encode')
    balanced()
    for seq in (2, 5):                                   # answered
        p = ledger.take(seq)
        assert p is not None and p.seq == seq
        ledger.finish('ok_edge')
        balanced()
    assert ledger.take(5) is None and ledger.take(99) is None
    expired = ledger.expire(now_s=2.35)                  # sent at <= 0.35 s: seqs 0, 1, 3
    assert [p.seq for p in expired] == [0, 1, 3]
    assert ledger.in_flight == 5                         # counted by the caller ...
    for _ in expired:
        ledger.finish('dropped:timeout')
    balanced()
    assert ledger.take(0) is None                        # a late answer for an expired frame
    ledger.finish('refused:late')
    ledger.produce()                                     # ... and it needs its own frame
    balanced()
    assert ledger.expire(now_s=2.35) == []
    rest = ledger.expire(now_s=100.0)
    assert [p.seq for p in rest] == [4, 6, 7, 8, 9] and ledger.in_flight == 0
    for _ in rest:
        ledger.finish('dropped:timeout')
    balanced()
    s = ledger.summary()
    assert s['produced'] == 13 and s['in_flight'] == 0
    assert s['ok_edge'] == 2 and s['ok_device'] == 1 and s['dropped:timeout'] == 8
    assert s['dropped:encode'] == 1 and s['refused:late'] == 1


def test_frame_ledger_abandon_on_shutdown():
    ledger = FrameLedger(timeout_s=2.0)
    for seq in range(3):
        ledger.produce()
        ledger.send(_pending(seq, 0.0))
    ledger.take(1)
    ledger.finish('ok_edge')
    gone = ledger.abandon()                              # the camera is stopping
    assert [p.seq for p in gone] == [0, 2] and ledger.in_flight == 0
    for _ in gone:
        ledger.finish('dropped:shutdown')
    assert ledger.accounted() == ledger.produced == 3
    assert ledger.abandon() == [] and ledger.take(2) is None


# ----------------------------------------------------------------------------- images


def test_preprocess_camera_image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    out = preprocess_image(img)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    bgr = preprocess_image(img, rgb=False)
    np.testing.assert_array_equal(bgr, out[:, :, ::-1])


def test_preprocess_constant_image_keeps_colour():
    img = np.zeros((480, 640, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 200, 100, 50
    out = preprocess_image(img)
    assert (out[..., 0] == 200).all() and (out[..., 1] == 100).all() and (out[..., 2] == 50).all()


def test_preprocess_mono_and_rgba():
    mono = np.random.default_rng(1).integers(0, 256, (480, 640), dtype=np.uint8)
    out = preprocess_image(mono)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    rgba = np.zeros((64, 64, 4), np.uint8)
    assert preprocess_image(rgba).shape == (32, 32, 3)


def test_preprocess_passes_32x32_through():
    img = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(preprocess_image(img), img)


@pytest.mark.parametrize('img', [np.zeros((480, 640, 3), np.float32),
                                 np.zeros((480, 640, 3), np.float64),
                                 np.zeros((480, 640), np.float32),
                                 np.zeros((480, 640, 3), np.uint16)])
def test_preprocess_rejects_non_uint8(img):
    with pytest.raises(ValueError, match='uint8'):
        preprocess_image(img)


@pytest.mark.parametrize('shape', [(480, 640, 2), (480, 640, 5), (480,), (2, 480, 640, 3)])
def test_preprocess_rejects_bad_shape(shape):
    with pytest.raises(ValueError, match='HxWx3'):
        preprocess_image(np.zeros(shape, np.uint8))


def test_classify_softmax():
    logits = np.array([0.1, 2.0, -1.0, 0.5, 0, 0, 0, 0, 0, 3.0], np.float32)
    c = classify(logits)
    assert c.scores.dtype == np.float32 and c.scores.shape == (10,)
    assert float(c.scores.sum()) == pytest.approx(1.0, abs=1e-6)
    assert c.class_id == 9 and c.label == CLASSES[9] == 'truck'
    assert c.confidence == pytest.approx(float(c.scores.max()))
    want = np.exp(logits - logits.max())
    np.testing.assert_allclose(c.scores, want / want.sum(), rtol=1e-6)
    c2 = classify(logits[None])                          # (1, n) works too
    np.testing.assert_array_equal(c2.scores, c.scores)


def test_classify_is_stable_for_large_logits():
    c = classify(np.array([1000.0, 0.0, -1000.0]))
    assert c.class_id == 0 and c.confidence == pytest.approx(1.0)
    assert np.isfinite(c.scores).all()


# ----------------------------------------------------------------------------- sample


def test_load_sample():
    x, y = load_sample()
    assert x.shape == (200, 32, 32, 3) and x.dtype == np.uint8
    assert y.shape == (200,) and y.dtype == np.int64
    assert np.bincount(y, minlength=10).tolist() == [20] * 10
    assert x.std() > 10                                  # real images, not blank


def test_load_sample_missing(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_sample(tmp_path / 'none.npz')


@pytest.mark.parametrize('content', [b'garbage' * 100, b'\x93NUMPY garbage'])
def test_load_sample_garbage(tmp_path, content):
    path = tmp_path / 's.npz'
    path.write_bytes(content)
    with pytest.raises(ValueError, match='s.npz'):
        load_sample(path)


@pytest.mark.parametrize('x, y', [
    (np.zeros((4, 32, 32), np.uint8), np.zeros(4)),
    (np.zeros((4, 32, 32, 3), np.float32), np.zeros(4)),
    (np.zeros((4, 32, 32, 3), np.uint8), np.zeros(3)),
])
def test_load_sample_wrong_arrays(tmp_path, x, y):
    path = tmp_path / 's.npz'
    np.savez(path, x=x, y=y)
    with pytest.raises(ValueError, match='expected'):
        load_sample(path)


def test_load_sample_missing_key(tmp_path):
    path = tmp_path / 's.npz'
    np.savez(path, x=np.zeros((4, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError):
        load_sample(path)


@pytest.mark.parametrize('damage', ['empty', 'truncate', 'corrupt'])
def test_load_sample_damaged_zip(tmp_path, damage):
    raw = bytearray(Path(SAMPLE_PATH).read_bytes())
    if damage == 'empty':
        raw = bytearray()
    elif damage == 'truncate':
        raw = raw[:len(raw) // 2]
    else:
        raw[len(raw) // 3:len(raw) // 3 + 100] = bytes(100)
    path = tmp_path / 's.npz'
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match='s.npz'):
        load_sample(path)


# ----------------------------------------------------------- confidence early exit, batching

@pytest.fixture(scope='module')
def trained():
    """Return the shipped trained model (its side exits are confident on real frames)."""
    from edgent_ros.core.weights import load_model
    return CoInference(load_model())


def _cascade_reference(co, frame, final, threshold):
    """Return the classification BranchyNet's rule picks, from full forwards of every exit."""
    from edgent_ros.core.arch import EXIT_ATTACH
    for e in sorted(k for k in EXIT_ATTACH if k < final):
        c = co.full_forward(frame, e)
        p = np.clip(c.scores.astype(np.float64), 1e-12, 1)
        if -(p * np.log(p)).sum() < threshold:
            return c
    return co.full_forward(frame, final)


@pytest.mark.parametrize('threshold', [0.05, 0.5, 1.5, 50.0])
def test_confidence_exit_equals_the_cascade_wherever_the_cut(trained, threshold):
    """Robot-side or edge-side side exits: same exit and class as BranchyNet on the full model."""
    frames, _ = load_sample()
    taken = set()
    for frame in frames[:12]:
        for final in (3, 5):
            want = _cascade_reference(trained, frame, final, threshold)
            for split in range(trained.branch_len(final) + 1):
                out = trained.device_step(frame, final, split, threshold)
                if out.classification is not None:
                    got = out.classification
                else:
                    got, _ = trained.edge_step(out.tensor, final, split, threshold)
                assert got.exit_index == want.exit_index, (final, split, threshold)
                _same(got, want)
                taken.add(got.exit_index)
    if threshold >= 50.0:
        assert taken == {1}          # every frame is "confident" at the first side exit
    elif threshold == 0.5:
        assert len(taken) >= 2       # some frames leave early, some do not


def test_confident_frame_finishes_on_the_robot_without_sending(trained):
    """A side exit before the cut finishes the frame on the robot: nothing to send."""
    frame = load_sample()[0][0]
    out = trained.device_step(frame, 5, 10, threshold=50.0)   # exit 1 attaches at 3 <= 10
    assert out.tensor is None and out.classification.exit_index == 1
    out = trained.device_step(frame, 5, 2, threshold=50.0)    # attach 3 > 2: the edge's job
    assert out.tensor is not None
    got, _ = trained.edge_step(out.tensor, 5, 2, threshold=50.0)
    assert got.exit_index == 1
    assert trained.device_step(frame, 5, 10).classification is None   # off by default


@pytest.mark.parametrize('exit_index, split', [(5, 0), (5, 3), (3, 6), (5, 15), (1, 0)])
def test_edge_batch_equals_frames_one_by_one(co, exit_index, split):
    """A batch of frames gives every frame the same result as alone, in order."""
    rng = np.random.default_rng(exit_index * 100 + split)
    frames = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(5)]
    arrays = [co.device_step(f, exit_index, split).tensor for f in frames]
    got, ms = co.edge_batch(arrays, exit_index, split)
    assert len(got) == 5 and ms > 0
    for g, a in zip(got, arrays):
        one, _ = co.edge_step(a, exit_index, split)
        assert g.exit_index == exit_index
        _same(g, one)


def test_edge_batch_with_mixed_early_exits(trained):
    """Rows leaving at different side exits stay matched to their frames."""
    frames, _ = load_sample()
    arrays = [trained.device_step(f, 5, 0).tensor for f in frames[:16]]
    got, _ = trained.edge_batch(arrays, 5, 0, threshold=0.5)
    for g, f in zip(got, frames[:16]):
        want = _cascade_reference(trained, f, 5, 0.5)
        assert g.exit_index == want.exit_index
        _same(g, want)
    assert len({g.exit_index for g in got}) >= 2
