"""
Unit tests of the versioned artifacts: safetensors weights and checksummed JSON tables.

Every refusal raises ``ArtifactError`` naming the file. The shipped artifacts must load and
agree with each other, and no module may unpickle anything.
"""

import ast
from dataclasses import asdict, replace
import json
from pathlib import Path

import pytest
from safetensors.torch import save_file
import torch

from edgent_ros.core import artifacts
from edgent_ros.core.artifacts import (ACCURACY_FORMAT, ArtifactError, load_accuracy, load_json,
                                       read_config, save_json)
from edgent_ros.core.weights import load_model, save_weights
from edgent_ros.core.arch import AlexNetConfig, NUM_EXITS
from edgent_ros.core.model import MultiExitAlexNet
from edgent_ros.offline.training import SHIPPED_CONFIG

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / 'edgent_ros'
# Small widths: the file format does not depend on them, and tests stay fast.
SMALL = AlexNetConfig(c1=8, c2=8, c3=8, c4=8, c5=8, fc6=16, fc7=16, head=4)
UNPICKLERS = ('pickle', 'cPickle', '_pickle', 'dill', 'joblib', 'cloudpickle')


def _meta(cfg: AlexNetConfig, **over) -> dict:
    meta = {'model_id': cfg.model_id(), 'config': json.dumps(asdict(cfg), sort_keys=True),
            'format': 'edgent_ros/weights/1'}
    meta.update(over)
    return meta


def _state(model: MultiExitAlexNet) -> dict:
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}


@pytest.fixture
def small_model():
    """Return a random-init deployment model of small widths."""
    torch.manual_seed(4)
    return MultiExitAlexNet(SMALL).eval()


def _refused(path: Path, match: str, **kw) -> ArtifactError:
    with pytest.raises(ArtifactError, match=match) as info:
        load_model(path, **kw)
    assert str(path) in str(info.value)
    return info.value


# ----------------------------------------------------------------------------- weights


def test_weights_round_trip_identical_logits(tmp_path, small_model):
    path = tmp_path / 'sub' / 'w.safetensors'
    save_weights(small_model, path, extra={'note': 'test'})
    loaded = load_model(path, expected_model_id=small_model.model_id)
    assert loaded.cfg == SMALL and loaded.model_id == small_model.model_id
    assert not loaded.training and not loaded.batchnorm
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        for e in range(1, NUM_EXITS + 1):
            assert torch.equal(loaded(x, e), small_model(x, e)), f'exit {e}'
    assert read_config(path) == SMALL


def test_save_weights_refuses_batchnorm_model(tmp_path):
    with pytest.raises(ValueError, match='fold'):
        save_weights(MultiExitAlexNet(SMALL, batchnorm=True), tmp_path / 'w.safetensors')


def test_load_missing_file(tmp_path):
    _refused(tmp_path / 'nope.safetensors', 'not found')
    with pytest.raises(ArtifactError, match='not found'):
        read_config(tmp_path / 'nope.safetensors')


@pytest.mark.parametrize('content', [b'', b'garbage bytes' * 10, b'\xff' * 8 + b'{}',
                                     b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": 1}'])
def test_load_garbage(tmp_path, content):
    path = tmp_path / 'bad.safetensors'
    path.write_bytes(content)
    _refused(path, 'not a readable safetensors')
    with pytest.raises(ArtifactError) as info:
        read_config(path)
    assert str(path) in str(info.value)


def test_load_truncated_file(tmp_path, small_model):
    path = tmp_path / 'w.safetensors'
    save_weights(small_model, path)
    path.write_bytes(path.read_bytes()[:-100])
    _refused(path, 'not a readable safetensors')


def test_load_without_metadata(tmp_path, small_model):
    path = tmp_path / 'plain.safetensors'
    save_file(_state(small_model), str(path))
    _refused(path, 'metadata')
    with pytest.raises(ArtifactError):
        read_config(path)


@pytest.mark.parametrize('drop', ['model_id', 'config'])
def test_load_with_partial_metadata(tmp_path, small_model, drop):
    path = tmp_path / 'partial.safetensors'
    meta = _meta(SMALL)
    del meta[drop]
    save_file(_state(small_model), str(path), metadata=meta)
    _refused(path, 'metadata')


@pytest.mark.parametrize('config', ['not json', '[1, 2]', 'null', '{"c1": 8, "bogus": 1}'])
def test_load_bad_config_metadata(tmp_path, small_model, config):
    path = tmp_path / 'badcfg.safetensors'
    save_file(_state(small_model), str(path), metadata=_meta(SMALL, config=config))
    _refused(path, 'config')


def test_load_model_id_mismatching_its_config(tmp_path, small_model):
    path = tmp_path / 'w.safetensors'
    other = replace(SMALL, c1=16).model_id()
    save_file(_state(small_model), str(path), metadata=_meta(SMALL, model_id=other))
    _refused(path, 'does not match its config')
    with pytest.raises(ArtifactError, match='does not match'):
        read_config(path)


def test_load_expected_model_id_mismatch(tmp_path, small_model):
    path = tmp_path / 'w.safetensors'
    save_weights(small_model, path)
    err = _refused(path, 'expected', expected_model_id=SHIPPED_CONFIG.model_id())
    assert SHIPPED_CONFIG.model_id() in str(err) and SMALL.model_id() in str(err)


def test_load_weights_of_another_architecture(tmp_path):
    # tensors of c1=16, metadata (consistent with itself) claiming the SMALL widths
    path = tmp_path / 'w.safetensors'
    wide = MultiExitAlexNet(replace(SMALL, c1=16))
    save_file(_state(wide), str(path), metadata=_meta(SMALL))
    _refused(path, 'do not fit architecture')


@pytest.mark.parametrize('change', ['missing', 'extra'])
def test_load_state_dict_missing_or_extra_tensor(tmp_path, small_model, change):
    path = tmp_path / 'w.safetensors'
    state = _state(small_model)
    if change == 'missing':
        del state['layers.conv3.weight']
    else:
        state['layers.conv9.weight'] = torch.zeros(3)
    save_file(state, str(path), metadata=_meta(SMALL))
    _refused(path, 'do not fit architecture')


# ----------------------------------------------------------------------------- JSON tables


def _accuracy_body(model_id: str = 'm1', exits=None) -> dict:
    if exits is None:
        exits = [{'exit': e, 'top1': 0.5 + 0.05 * e} for e in range(1, NUM_EXITS + 1)]
    return {'model_id': model_id, 'exits': exits, 'dataset': 'unit test'}


def test_json_round_trip(tmp_path):
    path = tmp_path / 'a' / 't.json'
    payload = {'model_id': 'm1', 'values': [1, 2.5, None], 'nested': {'k': 'v'}}
    save_json(payload, path, 'edgent_ros/test/1')
    body = load_json(path, 'edgent_ros/test/1')
    assert body['format'] == 'edgent_ros/test/1' and len(body['sha256']) == 64
    assert {k: v for k, v in body.items() if k not in ('format', 'sha256')} == payload
    assert 'format' not in payload                    # the caller's dict is not modified


def test_json_edited_content_fails_checksum(tmp_path):
    path = tmp_path / 't.json'
    save_json({'model_id': 'm1', 'x': 1}, path, 'edgent_ros/test/1')
    body = json.loads(path.read_text())
    body['x'] = 2
    path.write_text(json.dumps(body))
    with pytest.raises(ArtifactError, match='checksum') as info:
        load_json(path, 'edgent_ros/test/1')
    assert str(path) in str(info.value)


def test_json_missing_checksum(tmp_path):
    path = tmp_path / 't.json'
    path.write_text(json.dumps({'format': 'edgent_ros/test/1', 'x': 1}))
    with pytest.raises(ArtifactError, match='checksum'):
        load_json(path, 'edgent_ros/test/1')


def test_json_wrong_format_tag(tmp_path):
    path = tmp_path / 't.json'
    save_json({'x': 1}, path, 'edgent_ros/other/1')
    with pytest.raises(ArtifactError, match='format') as info:
        load_json(path, 'edgent_ros/test/1')
    assert str(path) in str(info.value) and 'edgent_ros/other/1' in str(info.value)


@pytest.mark.parametrize('text', ['{"x": 1', '', 'nan nan', '\udcff'])
def test_json_invalid(tmp_path, text):
    path = tmp_path / 't.json'
    path.write_bytes(text.encode('utf-8', 'surrogateescape'))
    with pytest.raises(ArtifactError, match='not valid JSON') as info:
        load_json(path, 'edgent_ros/test/1')
    assert str(path) in str(info.value)


@pytest.mark.parametrize('text', ['[1, 2]', '"a string"', '3'])
def test_json_not_an_object(tmp_path, text):
    path = tmp_path / 't.json'
    path.write_text(text)
    with pytest.raises(ArtifactError, match='format'):
        load_json(path, 'edgent_ros/test/1')


def test_json_missing_file(tmp_path):
    with pytest.raises(ArtifactError, match='not found') as info:
        load_json(tmp_path / 'none.json', 'edgent_ros/test/1')
    assert 'none.json' in str(info.value)


def test_load_accuracy_valid(tmp_path):
    path = tmp_path / 'acc.json'
    save_json(_accuracy_body(), path, ACCURACY_FORMAT)
    table = load_accuracy(path, model_id='m1')
    assert sorted(table) == list(range(1, NUM_EXITS + 1))
    assert table[5] == pytest.approx(0.75)
    assert load_accuracy(path) == table


def test_load_accuracy_model_id_mismatch(tmp_path):
    path = tmp_path / 'acc.json'
    save_json(_accuracy_body(), path, ACCURACY_FORMAT)
    with pytest.raises(ArtifactError, match='not .m2') as info:
        load_accuracy(path, model_id='m2')
    assert str(path) in str(info.value)


@pytest.mark.parametrize('exits, match', [
    ([{'exit': e, 'top1': 0.5} for e in (1, 2, 3, 4)], 'exits 1..5'),           # missing exit
    ([{'exit': e, 'top1': 0.5} for e in (1, 2, 3, 4, 5, 6)], 'exits 1..5'),     # extra exit
    ([{'exit': e, 'top1': 1.01 if e == 3 else 0.5} for e in range(1, 6)], r'\[0, 1\]'),
    ([{'exit': e, 'top1': -0.1 if e == 3 else 0.5} for e in range(1, 6)], r'\[0, 1\]'),
    ([{'exit': e, 'top1': float('nan')} for e in range(1, 6)], r'\[0, 1\]'),
    ([{'exit': e} for e in range(1, 6)], 'malformed'),
    ([{'exit': e, 'top1': 'high'} for e in range(1, 6)], 'malformed'),
    ([1, 2, 3, 4, 5], 'malformed'),
    (None, 'malformed'),
])
def test_load_accuracy_invalid_table(tmp_path, exits, match):
    path = tmp_path / 'acc.json'
    body = _accuracy_body()
    body['exits'] = exits
    save_json(body, path, ACCURACY_FORMAT)
    with pytest.raises(ArtifactError, match=match) as info:
        load_accuracy(path)
    assert str(path) in str(info.value)


def test_load_accuracy_missing_exits_key(tmp_path):
    path = tmp_path / 'acc.json'
    body = _accuracy_body()
    del body['exits']
    save_json(body, path, ACCURACY_FORMAT)
    with pytest.raises(ArtifactError, match='malformed'):
        load_accuracy(path)


# ----------------------------------------------------------------------------- shipped files


def test_shipped_artifacts_load_and_agree():
    weights = artifacts.ARTIFACT_DIR / artifacts.WEIGHTS_FILE
    assert weights.is_file()
    assert weights.stat().st_size < 25 * 1024 * 1024
    model = load_model()
    assert model.cfg == SHIPPED_CONFIG, 'training.SHIPPED_CONFIG differs from the shipped weights'
    assert read_config() == model.cfg
    table = load_accuracy(model_id=model.model_id)
    assert sorted(table) == list(range(1, NUM_EXITS + 1))
    body = load_json(artifacts.ARTIFACT_DIR / artifacts.ACCURACY_FILE, ACCURACY_FORMAT)
    assert body['model_id'] == model.model_id
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_shipped_weights_classify():
    model = load_model(expected_model_id=SHIPPED_CONFIG.model_id())
    with torch.no_grad():
        out = model.forward_all(torch.zeros(1, 3, 32, 32))
    assert [tuple(o.shape) for o in out] == [(1, 10)] * NUM_EXITS


# ----------------------------------------------------------------------------- no unpickling


def _unsafe_calls(path: Path):
    """Yield ``(line, what)`` for every unpickling call in one source file."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in UNPICKLERS \
                and any(a.name in ('load', 'loads', 'Unpickler') for a in node.names):
            yield node.lineno, f'from {node.module} import load'
        if not isinstance(node, ast.Call):
            continue
        kw = {k.arg: k.value for k in node.keywords}
        if 'allow_pickle' in kw and not (isinstance(kw['allow_pickle'], ast.Constant)
                                         and kw['allow_pickle'].value is False):
            yield node.lineno, 'allow_pickle not False'
        func = node.func
        if not isinstance(func, ast.Attribute) or not isinstance(func.value, ast.Name):
            continue
        mod, name = func.value.id, func.attr
        if mod in UNPICKLERS and name in ('load', 'loads', 'Unpickler'):
            yield node.lineno, f'{mod}.{name}'
        if mod == 'torch' and name == 'load':
            wo = kw.get('weights_only')
            if not (isinstance(wo, ast.Constant) and wo.value is True):
                yield node.lineno, 'torch.load without weights_only=True'
        if mod in ('np', 'numpy') and name == 'load' and 'allow_pickle' not in kw:
            yield node.lineno, 'np.load without allow_pickle=False'


def _sources():
    files = sorted(PACKAGE.rglob('*.py')) + sorted((ROOT / 'bench').rglob('*.py'))
    scripts = ROOT / 'scripts'
    if scripts.is_dir():
        files += [p for p in sorted(scripts.iterdir())
                  if p.is_file() and p.read_bytes()[:64].startswith(b'#!')
                  and b'python' in p.read_bytes()[:64]]
    return files


def test_no_module_unpickles():
    files = _sources()
    assert PACKAGE / 'core' / 'artifacts.py' in files and PACKAGE / 'core' / 'datasets.py' in files
    found = [f'{p.relative_to(ROOT)}:{line}: {what}'
             for p in files for line, what in _unsafe_calls(p)]
    assert not found, 'unpickling calls:\n' + '\n'.join(found)
    # plain-text grep too, for calls hidden from the AST check (aliases, getattr)
    pattern_hits = [f'{p.relative_to(ROOT)}: {pat}' for p in files for pat in
                    ('pickle.load', 'allow_pickle=True', 'cPickle')
                    if pat in p.read_text()]
    assert not pattern_hits, pattern_hits


@pytest.mark.parametrize('src, n_bad', [
    ('import pickle\npickle.load(f)\n', 1),
    ('import pickle\npickle.loads(b)\n', 1),
    ('from pickle import load\n', 1),
    ('import torch\ntorch.load(p)\n', 1),
    ('import torch\ntorch.load(p, weights_only=False)\n', 1),
    ('import torch\ntorch.load(p, weights_only=True)\n', 0),
    ('import numpy as np\nnp.load(p, allow_pickle=True)\n', 1),
    ('import numpy as np\nnp.load(p)\n', 1),
    ('import numpy as np\nnp.load(p, allow_pickle=False)\n', 0),
])
def test_unpickle_detector(tmp_path, src, n_bad):
    path = tmp_path / 'm.py'
    path.write_text(src)
    assert len(list(_unsafe_calls(path))) == n_bad
