"""Unit tests of the per-encoding / per-threshold accuracy tables and the batch-cost fit."""

import numpy as np
import pytest
import torch

from edgent_ros.core.artifacts import (ARTIFACT_DIR, ArtifactError, int8_summary, load_confidence,
                                       load_encodings)
from edgent_ros.offline.accuracy import (cascade, count_configs, encodings_section, entropy,
                                         exit_probabilities, measure_confidence, measure_encodings)
from edgent_ros.offline.batch_profile import fit_beta
from edgent_ros.core.datasets import load_sample
from edgent_ros.core.model import MultiExitAlexNet
from edgent_ros.core.arch import NUM_EXITS
from edgent_ros.offline.training import SHIPPED_CONFIG


@pytest.fixture(scope='module')
def tiny():
    """Build a random-init model and 12 labelled sample frames."""
    torch.manual_seed(0)
    x, y = load_sample()
    return MultiExitAlexNet(SHIPPED_CONFIG).eval(), x[:12], y[:12]


def test_measure_encodings_covers_every_cut_and_is_exact_for_lossless(tiny):
    model, x, y = tiny
    done = []
    rows = measure_encodings(model, x, y, batch_size=5, progress=done.append)
    assert done[-1] == count_configs(model) == len(done)
    keys = {(r['exit'], r['split'], r['encoding']) for r in rows}
    for e in range(1, NUM_EXITS + 1):
        n = model.branch_len(e)
        assert {(e, 0, k) for k in ('raw', 'compressed', 'png', 'jpeg')} <= keys
        for s in range(1, n):
            assert {(e, s, k) for k in ('raw', 'fp16', 'int8', 'int8-zlib', 'compressed')} <= keys
        assert not any(k[:2] == (e, n) for k in keys)          # device-only sends nothing
    by = {(r['exit'], r['split'], r['encoding']): r for r in rows}
    for (e, s, k), r in by.items():
        raw = by[(e, s, 'raw')]
        if k in ('raw', 'compressed', 'png'):
            assert r['top1'] == raw['top1']                    # lossless: the exit's own
        if k == 'int8':
            assert r['bytes_mean'] * 4 == raw['bytes_mean']
        if k == 'int8-zlib':
            assert r['top1'] == by[(e, s, 'int8')]['top1']     # same values as int8
        assert r['bytes_mean'] > 0 and r['encode_ms'] >= 0 and r['decode_ms'] >= 0
    summary = int8_summary(rows)
    assert summary['bytes_cut_min'] == 4.0 and summary['splits'] == 60
    assert encodings_section(rows, len(x))['configs'] is rows


def test_cascade_and_confidence_table(tiny):
    model, x, y = tiny
    probs = exit_probabilities(model, x, batch_size=5)
    assert probs.shape == (NUM_EXITS, len(x), 10)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    assert (cascade(probs, 5, 0.0) == 5).all()
    assert (cascade(probs, 5, 100.0) == 1).all()               # every side exit "confident"
    assert (cascade(probs, 1, 100.0) == 1).all()
    t = np.median(entropy(probs[0]))
    taken = cascade(probs, 3, t)
    assert set(taken) <= {1, 2, 3} and (taken == 1).sum() == (entropy(probs[0]) < t).sum()
    table = measure_confidence(probs, y, thresholds=(0.0, t, 100.0))
    for e in range(1, NUM_EXITS + 1):
        rows = table['exits'][str(e)]
        assert [r['threshold'] for r in rows] == [0.0, float(t), 100.0]
        for r in rows:
            assert sum(r['exit_fraction']) == pytest.approx(1.0) and len(r['exit_fraction']) == e


def test_shipped_tables_load():
    enc = load_encodings()
    assert enc[(5, 0, 'jpeg')].bytes_mean < 3072 and enc[(5, 3, 'int8')].top1 > 0.8
    conf = load_confidence()
    assert sorted(conf) == [1, 2, 3, 4, 5] and conf[5][0]['threshold'] == 0.0


def test_tables_missing_are_refused_with_the_command(tmp_path):
    from edgent_ros.core.artifacts import ACCURACY_FORMAT, load_json, save_json
    body = load_json(ARTIFACT_DIR
                     / 'accuracy.json', ACCURACY_FORMAT)
    for k in ('encodings', 'confidence', 'format', 'sha256'):
        body.pop(k, None)
    path = tmp_path / 'accuracy.json'
    save_json(body, path, ACCURACY_FORMAT)
    with pytest.raises(ArtifactError, match='edgent-ros accuracy'):
        load_encodings(path)
    with pytest.raises(ArtifactError, match='edgent-ros accuracy'):
        load_confidence(path)


def test_fit_beta():
    rows = [{'batch': b, 'ratio': 1 + 0.3 * (b - 1)} for b in (1, 2, 4, 8)]
    assert fit_beta(rows) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        fit_beta([{'batch': 1, 'ratio': 1.0}])
