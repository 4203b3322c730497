"""
Learned bottlenecks offline: the set's file, training, measurement and the shipped artifacts.

The online path (runner, codec messages, planner variants) is test_bottleneck_online.py.
"""

import io
import json
from pathlib import Path
import tarfile

import numpy as np
import pytest
import torch

from edgent_ros.cli.main import main
from edgent_ros.core.arch import CLASSES, NUM_EXITS
from edgent_ros.core.artifacts import (ACCURACY_FORMAT, ARTIFACT_DIR, load_encodings, load_json,
                                       safetensors_metadata)
from edgent_ros.core.arch import EXIT_ATTACH
from edgent_ros.core.bottleneck import (Bottleneck, BottleneckError, BottleneckSet,
                                        default_path, load_bottlenecks, spec_for, trunk_of)
from edgent_ros.core.codec import bottleneck_width, decode, encode, quantize_int8
from edgent_ros.core.datasets import load_sample
from edgent_ros.core.model import normalize_images
from edgent_ros.core.weights import load_model
from edgent_ros.offline import bottleneck_training as bt


@pytest.fixture(scope='module')
def model():
    return load_model()


def _set(model, *cuts, seed=0):
    torch.manual_seed(seed)
    return BottleneckSet(model.model_id, [Bottleneck(spec_for(model.cfg, s, c, stride))
                                          for s, c, stride in cuts])


@pytest.fixture(scope='module')
def resnet():
    from edgent_ros.core.described import load_described
    return load_described('resnet64')


def test_trunk_of_the_alexnet_and_of_a_described_model(model, resnet):
    t = trunk_of(model)
    assert trunk_of(model.cfg) == t and t.num_exits == NUM_EXITS and t.deep_tap == 13
    for s in range(1, model.branch_len(NUM_EXITS)):   # the branch structure, exit by exit
        assert t.served_exits(s) == [
            e for e in range(1, NUM_EXITS + 1)
            if s <= EXIT_ATTACH.get(e, model.branch_len(e)) and s < model.branch_len(e)]
    r = trunk_of(resnet)
    assert r.num_exits == 4 and dict(r.attach) == {1: 5, 2: 7, 3: 9}
    assert r.served_exits(5) == [1, 2, 3, 4] and r.served_exits(7) == [2, 3, 4]
    assert r.served_exits(9) == [3, 4] and r.served_exits(11) == [4]
    assert r.cut_shape(7) == (32, 16, 16) and r.cut_shape(9) == (64, 8, 8)
    assert r.deep_tap == 12 and r.cut_shape(12) == (128, 1, 1)   # after the global pool
    spec = spec_for(resnet, 7, 8, 2)
    assert spec.wire_shape == (1, 8, 8, 8) and spec.nbytes == 512
    with pytest.raises(BottleneckError, match='cuts 0..14'):
        spec_for(resnet, 15, 4)
    with pytest.raises(BottleneckError, match='not a multi-exit model'):
        trunk_of(torch.nn.Linear(2, 2))


def test_save_load_round_trip_keeps_specs_tensors_and_id(model, tmp_path):
    bset = _set(model, (6, 4, 1), (13, 8, 1), (3, 4, 2))
    path = tmp_path / 'b.safetensors'
    bset.save(path)
    meta = safetensors_metadata(path)
    assert meta['bottleneck_id'] == bset.bottleneck_id and meta['model_id'] == model.model_id
    got = load_bottlenecks(path, model.model_id)
    assert got.bottleneck_id == bset.bottleneck_id
    assert got.specs() == bset.specs()
    assert [(s.split, s.name, s.stride) for s in got.specs()] == [
        (3, 'bn4', 2), (6, 'bn4', 1), (13, 'bn8', 1)]
    for spec in bset.specs():
        a = bset.get(spec.split, spec.name).state_dict()
        b = got.get(spec.split, spec.name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _set(model, (6, 4, 1), (13, 8, 1), (3, 4, 2)).bottleneck_id == bset.bottleneck_id
    assert _set(model, (6, 4, 1), seed=1).bottleneck_id != _set(model, (6, 4, 1)).bottleneck_id


def test_refused_files_say_why(model, tmp_path):
    path = tmp_path / 'b.safetensors'
    with pytest.raises(BottleneckError, match='not found.*train-bottleneck'):
        load_bottlenecks(tmp_path / 'none.safetensors', model.model_id)
    _set(model, (13, 8, 1)).save(path)
    with pytest.raises(BottleneckError, match='for model .*alexnet5.*this node runs '
                                              "'other-model'"):
        load_bottlenecks(path, 'other-model')
    with pytest.raises(BottleneckError, match='format .*not an edgent_ros bottleneck file'):
        load_bottlenecks(ARTIFACT_DIR / 'alexnet5.safetensors', model.model_id)
    junk = tmp_path / 'junk.safetensors'
    junk.write_bytes(b'not a safetensors file at all')
    with pytest.raises(BottleneckError, match='not a readable safetensors file'):
        load_bottlenecks(junk, model.model_id)
    # altered tensors, header unchanged: the id no longer matches
    from safetensors.torch import load_file, save_file
    state = load_file(str(path))
    key = sorted(state)[0]
    state[key] = state[key] + 0.01
    altered = tmp_path / 'altered.safetensors'
    save_file(state, str(altered), metadata=safetensors_metadata(path))
    with pytest.raises(BottleneckError, match='hash to .*file altered'):
        load_bottlenecks(altered, model.model_id)
    # tensors of another width under the same header
    other = _set(model, (13, 4, 1))
    wrong = tmp_path / 'wrong.safetensors'
    save_file({k.replace('bn4', 'bn8'): v.detach().contiguous()
               for k, v in {f'13.bn4.{k}': v for k, v in
                            other.get(13, 'bn4').state_dict().items()}.items()},
              str(wrong), metadata=safetensors_metadata(path))
    with pytest.raises(BottleneckError, match='bn8 at split 13 do not fit its spec'):
        load_bottlenecks(wrong, model.model_id)


def test_fake_int8_matches_the_codec_per_frame():
    torch.manual_seed(0)
    z = torch.randn(3, 4, 8, 8) * torch.tensor([0.1, 1.0, 5.0])[:, None, None, None]
    z.requires_grad_(True)
    q = bt.fake_int8(z)
    for k in range(3):
        msg = encode(z[k:k + 1].detach().numpy(), 'bn4')
        ref = decode(msg.shape, msg.data_type, msg.encoding, msg.data, msg.scale, msg.zero_point)
        np.testing.assert_allclose(q[k:k + 1].detach().numpy(), ref,
                                   atol=1e-5 * float(z[k].detach().abs().max()))
        assert quantize_int8(z[k].detach().numpy())[0].nbytes == 256
    q.sum().backward()                     # straight through: the gradient is the identity
    assert torch.equal(z.grad, torch.ones_like(z))


def test_run_from_cut_shares_the_trunk_and_equals_each_branch(model):
    x = normalize_images(torch.from_numpy(load_sample()[0][:4]))
    for split in (3, 6, 8, 10, 13):
        exits = bt.served_exits(model.cfg, split)
        f = model.run(x, NUM_EXITS, 0, split)
        out = bt.run_from_cut(model, f, split, exits)
        assert sorted(out) == exits
        for e in exits:
            torch.testing.assert_close(out[e], model(x, e))
    assert bt.served_exits(model.cfg, 6) == [2, 3, 4, 5]
    assert bt.served_exits(model.cfg, 13) == [5]
    assert bt.served_exits(model.cfg, 3) == [1, 2, 3, 4, 5]


def test_parse_specs(model):
    specs = bt.parse_specs(model.cfg, [3, 6, 13], ['6:2', '4', '13:16'], ['3:2'])
    assert [(s.split, s.channels, s.stride, s.nbytes) for s in specs] == [
        (3, 4, 2, 256), (6, 2, 1, 128), (6, 4, 1, 256), (13, 4, 1, 64), (13, 16, 1, 256)]
    with pytest.raises(BottleneckError, match='split 8 is not in --splits'):
        bt.parse_specs(model.cfg, [6], ['8:4'])
    with pytest.raises(BottleneckError, match='expected N or SPLIT:N'):
        bt.parse_specs(model.cfg, [6], ['four'])
    with pytest.raises(BottleneckError, match=r'no width for split\(s\) \[13\]'):
        bt.parse_specs(model.cfg, [6, 13], ['6:4'])
    with pytest.raises(BottleneckError, match='not a trunk cut'):
        bt.parse_specs(model.cfg, [20], ['4'])
    assert bt.parse_epochs([6, 10], ['5', '10:10']) == (5, {10: 10})
    assert bt.parse_epochs([6], ['3']) == (3, {})
    with pytest.raises(BottleneckError, match='split 10 is not in --splits'):
        bt.parse_epochs([6], ['10:3'])
    with pytest.raises(BottleneckError, match='must be >= 1'):
        bt.parse_epochs([6], ['0'])


def test_encoder_int8_decoder_shapes_and_dtypes(model):
    x = normalize_images(torch.from_numpy(load_sample()[0][:2]))
    for split, c, stride in ((6, 4, 1), (13, 8, 1), (3, 4, 2)):
        bn = _set(model, (split, c, stride)).get(split, f'bn{c}')
        with torch.no_grad():
            f = model.run(x[:1], NUM_EXITS, 0, split)
            z = bn.encode(f).numpy()
            assert z.shape == bn.spec.wire_shape and z.dtype == np.float32
            msg = encode(z, bn.spec.name)
            assert msg.nbytes == bn.spec.nbytes == int(np.prod(bn.spec.wire_shape))
            assert msg.wire_name == bn.spec.name
            back = decode(msg.shape, msg.data_type, msg.encoding, msg.data, msg.scale,
                          msg.zero_point)
            assert back.dtype == np.float32 and back.shape == z.shape
            f_hat = bn.decode(torch.from_numpy(back))
            assert f_hat.shape == f.shape and f_hat.dtype == torch.float32
            assert (f_hat >= 0).all()      # the cut's activations are post-ReLU


def _fake_cifar(root: Path, per_class: int = 4) -> Path:
    """Write train/test archives of a few bundled sample frames (class folders of JPEGs)."""
    import cv2
    x, y = load_sample()
    d = root / 'cifar10'
    d.mkdir(parents=True)
    for split in ('train', 'test'):
        with tarfile.open(d / f'{split}.tar.gz', 'w:gz') as tf:
            for c in range(len(CLASSES)):
                for k, i in enumerate(np.flatnonzero(y == c)[:per_class]):
                    ok, buf = cv2.imencode('.jpg', x[i][:, :, ::-1])
                    info = tarfile.TarInfo(f'{CLASSES[c]}/{k:04d}.jpg')
                    info.size = len(buf)
                    tf.addfile(info, io.BytesIO(buf.tobytes()))
    return d


def test_tiny_training_run_writes_a_loadable_set_and_merges_the_table(
        edgent_home, tmp_path, monkeypatch, capsys, model):
    monkeypatch.setenv('EDGENT_CACHE_DIR', str(tmp_path / 'cache'))
    data = _fake_cifar(tmp_path)
    plot = tmp_path / 'bn.png'
    assert main(['train-bottleneck', '--data-dir', str(data), '--splits', '6', '13',
                 '--widths', '6:4', '13:8', '--epochs', '1', '--limit', '24',
                 '--batch-size', '8', '--threads', '1', '--no-progress',
                 '--plot', str(plot)]) == 0
    out = json.loads(capsys.readouterr().out)
    path = edgent_home / 'artifacts' / 'bottlenecks.safetensors'
    assert out['out'] == str(path) and out['specs'] == ['bn4@6', 'bn8@13']
    bset = load_bottlenecks(path, model.model_id)
    assert bset.bottleneck_id == out['bottleneck_id'] and plot.is_file()
    acc = edgent_home / 'artifacts' / 'accuracy.json'
    body = load_json(acc, ACCURACY_FORMAT)
    shipped = load_json(ARTIFACT_DIR / 'accuracy.json', ACCURACY_FORMAT)
    old = [r for r in shipped['encodings']['configs'] if bottleneck_width(r['encoding']) is None]
    new = body['encodings']['configs']
    assert new[:len(old)] == old                      # every other row kept as it was
    keys = {(r['exit'], r['split'], r['encoding']) for r in new[len(old):]}
    assert keys == {(e, 6, 'bn4') for e in (2, 3, 4, 5)} | {(5, 13, 'bn8')}
    sec = body['bottlenecks']
    assert sec['bottleneck_id'] == bset.bottleneck_id and sec['file'] == path.name
    assert sec['images'] == 40 and sec['train']['train_images'] == 24
    assert load_encodings(acc, model.model_id)[(5, 13, 'bn8')].bytes_mean == 128
    # measured again without training: same rows, training record kept
    assert main(['train-bottleneck', '--data-dir', str(data), '--measure-only',
                 '--accuracy', str(acc), '--threads', '1']) == 0
    again = load_json(acc, ACCURACY_FORMAT)
    assert again['bottlenecks']['train'] == sec['train']
    assert [r['top1'] for r in again['encodings']['configs']] == [r['top1'] for r in new]


def test_train_bottleneck_on_a_described_model(tmp_path, monkeypatch, capsys, resnet):
    """resnet64: trained at its layer3 cut, measured against its own raw and JPEG frames."""
    monkeypatch.setenv('EDGENT_CACHE_DIR', str(tmp_path / 'cache'))
    data = _fake_cifar(tmp_path)
    out, acc = tmp_path / 'r.bottlenecks.safetensors', tmp_path / 'r.accuracy.json'
    assert main(['train-bottleneck', '--model', str(resnet.desc.path), '--data-dir', str(data),
                 '--splits', '9', '--widths', '4', '--epochs', '1', '--limit', '24',
                 '--batch-size', '8', '--threads', '1', '--no-progress', '--out', str(out),
                 '--accuracy-out', str(acc)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary['specs'] == ['bn4@9']
    bset = load_bottlenecks(out, resnet.model_id)
    from edgent_ros.core.model_plan import ACCURACY_FORMAT as MODEL_ACC, load_model_accuracy
    body = load_json(acc, MODEL_ACC)
    assert load_model_accuracy(acc, resnet.model_id) == {1: 0.5176, 2: 0.6715, 3: 0.8112,
                                                         4: 0.832}   # the exits kept
    rows = {(r['exit'], r['split'], r['encoding']): r for r in body['encodings']['configs']}
    assert set(rows) == ({(e, 0, enc) for e in (1, 2, 3, 4) for enc in ('raw', 'jpeg')}
                         | {(3, 9, 'bn4'), (4, 9, 'bn4')})
    assert rows[(4, 0, 'raw')]['bytes_mean'] == 64 * 64 * 3
    assert 0 < rows[(4, 0, 'jpeg')]['bytes_mean'] < 64 * 64 * 3
    assert rows[(4, 9, 'bn4')]['bytes_mean'] == 4 * 8 * 8
    assert body['bottlenecks']['bottleneck_id'] == bset.bottleneck_id
    assert body['bottlenecks']['images'] == 40
    assert main(['train-bottleneck', '--model', str(resnet.desc.path), '--data-dir', str(data),
                 '--out', str(out)]) == 2
    assert '--splits and --widths' in capsys.readouterr().err
    assert main(['train-bottleneck', '--model', str(resnet.desc.path), '--data-dir', str(data),
                 '--splits', '5', '--widths', '4', '--weights', str(out)]) == 2
    assert 'not both' in capsys.readouterr().err


def test_train_bottleneck_refusals(tmp_path, capsys):
    assert main(['train-bottleneck', '--measure-only', '--no-measure']) == 2
    assert 'exclude each other' in capsys.readouterr().err
    assert main(['train-bottleneck', '--measure-only', '--out',
                 str(tmp_path / 'none.safetensors')]) == 2
    assert 'none.safetensors: bottleneck file not found' in capsys.readouterr().err


def test_shipped_set_fits_the_shipped_model_and_table(model):
    bset = load_bottlenecks(default_path(), model.model_id)
    assert default_path().stat().st_size < 2 * 1024 * 1024     # small: 728 KB for 7
    body = load_json(ARTIFACT_DIR / 'accuracy.json', ACCURACY_FORMAT)
    sec = body['bottlenecks']
    assert sec['bottleneck_id'] == bset.bottleneck_id and sec['file'] == default_path().name
    table = load_encodings(model_id=model.model_id)
    bn_rows = {k: v for k, v in table.items() if bottleneck_width(k[2]) is not None}
    assert bn_rows
    for (e, s, name), cost in bn_rows.items():
        spec = bset.get(s, name).spec
        assert cost.bytes_mean == cost.bytes_p95 == spec.nbytes
        assert bset.covers(model.cfg, e, s, name)
        assert cost.encode_ms > 0 and cost.decode_ms > 0
    for spec in bset.specs():        # every exit each cut serves is measured
        assert {k[0] for k in bn_rows if k[1:] == (spec.split, spec.name)} == set(
            bt.served_exits(model.cfg, spec.split))
    # the target: some cut sends >= 4x fewer bytes than the JPEG frame for <= 1 point
    jpeg = bt.bytes_vs_jpeg(body)
    uncut = {int(e): a for e, a in sec['uncut_top1'].items()}
    assert uncut == pytest.approx({r['exit']: r['top1'] for r in body['exits']}, abs=1e-4)
    assert any(4 * c.bytes_mean <= jpeg and uncut[e] - c.top1 <= 0.01
               for (e, s, n), c in bn_rows.items())


def test_shipped_resnet64_set_fits_its_model_and_table(resnet):
    """The second model's trained set (BENCHMARKS §12b): loadable, measured, on target."""
    from edgent_ros.core.model_plan import ACCURACY_FORMAT as MODEL_ACC, load_model_encodings
    path = default_path(resnet.desc)
    assert path.name == 'resnet64.bottlenecks.safetensors'
    bset = load_bottlenecks(path, resnet.model_id)
    assert path.stat().st_size < 2 * 1024 * 1024
    acc_path = resnet.desc.derived('.accuracy.json')
    body = load_json(acc_path, MODEL_ACC)
    sec = body['bottlenecks']
    assert sec['bottleneck_id'] == bset.bottleneck_id and sec['file'] == path.name
    assert sec['images'] == 10000
    table = load_model_encodings(acc_path, resnet.model_id)
    bn_rows = {k: v for k, v in table.items() if bottleneck_width(k[2]) is not None}
    trunk = trunk_of(resnet)
    for spec in bset.specs():        # every exit each cut serves is measured, bytes exact
        assert {k[0] for k in bn_rows if k[1:] == (spec.split, spec.name)} == set(
            trunk.served_exits(spec.split))
    for (e, s, name), cost in bn_rows.items():
        assert cost.bytes_mean == bset.get(s, name).spec.nbytes and bset.covers(trunk, e, s, name)
    uncut = {int(e): a for e, a in sec['uncut_top1'].items()}
    assert uncut == pytest.approx({r['exit']: r['top1'] for r in body['exits']}, abs=1e-4)
    jpeg = bt.bytes_vs_jpeg(body)
    assert 1000 < jpeg < 64 * 64 * 3          # the 64x64 frame as a JPEG
    # the target: a mid-network cut with >= 4x fewer bytes than the JPEG frame for
    # <= 1 point lost against the same exit uncut
    assert any(4 * c.bytes_mean <= jpeg and uncut[e] - c.top1 <= 0.01
               for (e, s, n), c in bn_rows.items() if 0 < s < trunk.branch_lens[e - 1])
