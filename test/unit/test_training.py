"""Training loop on a tiny subset, and the shipped offline-phase artifacts."""

import numpy as np
import pytest
import torch

from edgent_ros.core.artifacts import ArtifactError, load_accuracy, read_config
from edgent_ros.core.arch import AlexNetConfig, branch_specs, LAYER_KINDS, NUM_EXITS
from edgent_ros.core.latency import LatencyModels
from edgent_ros.offline.training import augment, evaluate, train, TrainConfig

TINY = AlexNetConfig(c1=8, c2=8, c3=8, c4=8, c5=8, fc6=16, fc7=16, head=8)


def _data(n, seed):
    """Two easy classes: bright vs dark images (labels 0 and 1)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.int64)
    x = rng.integers(0, 80, (n, 32, 32, 3)).astype(np.uint8)
    x[y == 1] += 170
    return x, y


def test_tiny_training_reduces_loss_and_learns():
    x, y = _data(256, 0)
    xt, yt = _data(128, 1)
    result = train(TrainConfig(epochs=3, batch_size=32, max_lr=0.05, model=TINY, threads=1,
                               eval_every=0), x, y, xt, yt, progress=False, log=lambda s: None)
    losses = [h['train_loss'] for h in result['history']]
    assert all(last < first for first, last in zip(losses[0], losses[-1])), losses
    assert len(result['test_top1']) == NUM_EXITS
    assert min(result['test_top1']) > 0.9   # trivially separable: every exit must learn it
    assert not result['model'].batchnorm      # deployment copy has BN folded
    # the returned (folded) model evaluates like the training report says
    assert evaluate(result['model'], xt, yt) == pytest.approx(result['test_top1'])


def test_training_is_seeded():
    x, y = _data(64, 2)
    cfg = TrainConfig(epochs=2, batch_size=32, model=TINY, threads=1, eval_every=0)
    a = train(cfg, x, y, x[:16], y[:16], progress=False, log=lambda s: None)['model']
    b = train(cfg, x, y, x[:16], y[:16], progress=False, log=lambda s: None)['model']
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka


def test_augment_keeps_shape_and_content_range():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 32, 32)
    out = augment(x, g)
    assert out.shape == x.shape
    assert out.min() >= x.min() and out.max() <= x.max()


def test_bad_exit_weights_refused():
    x, y = _data(8, 3)
    with pytest.raises(ValueError, match='exit_weights'):
        train(TrainConfig(epochs=1, model=TINY, exit_weights=(1, 1)), x, y, x, y,
              progress=False, log=lambda s: None)


def test_shipped_accuracy_table_rises_with_depth():
    cfg = read_config()
    acc = load_accuracy(model_id=cfg.model_id())
    assert acc[1] > 0.5, 'exit 1 must be clearly above chance (10 %)'
    for shallow in range(1, NUM_EXITS + 1):
        for deep in range(shallow + 1, NUM_EXITS + 1):
            assert acc[deep] >= acc[shallow] - 0.005, acc


def test_shipped_latency_models_load_for_the_shipped_model():
    cfg = read_config()
    models = LatencyModels.load(model_id=cfg.model_id())
    assert set(models.hosts) == {'robot', 'edge'}
    for host in models.hosts:
        assert set(models.kinds(host)) >= set(LAYER_KINDS)
        for e in range(1, NUM_EXITS + 1):
            ms = models.branch_layer_ms(host, cfg, e)
            assert len(ms) == len(branch_specs(cfg, e)) and all(m > 0 for m in ms)
        assert models.end_to_end_mape_pct(host) is not None
    with pytest.raises(ArtifactError, match='latency_models.json'):
        LatencyModels.load(model_id='alexnet5-cifar10-v1-00000000')
