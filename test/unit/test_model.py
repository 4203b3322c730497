"""
Unit tests of the multi-exit AlexNet: every (exit, split) cut equals the full forward.

Random-init weights of the shipped widths (no artifact needed); a split is checked by running
layers ``[0, s)`` and then ``[s, end)`` on the transferred activation.
"""

import pytest
import torch

from edgent_ros.core.arch import (AlexNetConfig, branch_specs, check_exit, check_split,
                                  INPUT_SHAPE, layer_flops, layer_table, NUM_EXITS, numel,
                                  output_shape, parameter_count, SHIPPED_CONFIG,
                                  split_payload_bytes, split_tensor_shape)
from edgent_ros.core.artifacts import read_config
from edgent_ros.core.model import ConvBN, fold_batchnorm, MultiExitAlexNet, normalize_images
from edgent_ros.offline import training

CFG = SHIPPED_CONFIG
BATCH = 3
CUTS = [(e, s) for e in range(1, NUM_EXITS + 1)
        for s in range(len(branch_specs(CFG, e)) + 1)]


def test_shipped_config_is_the_shipped_weights():
    """One definition: training's default and the weights' header are ``arch.SHIPPED_CONFIG``."""
    assert training.SHIPPED_CONFIG is SHIPPED_CONFIG
    assert training.TrainConfig().model == SHIPPED_CONFIG
    assert read_config() == SHIPPED_CONFIG
    assert SHIPPED_CONFIG != AlexNetConfig()     # the dataclass defaults are the wider widths


@pytest.mark.parametrize('cfg', [SHIPPED_CONFIG, AlexNetConfig()], ids=['shipped', 'defaults'])
def test_parameter_count_without_torch_matches_the_model(cfg):
    assert parameter_count(cfg) == sum(p.numel() for p in MultiExitAlexNet(cfg).parameters())


def test_numel():
    assert numel((3, 32, 32)) == 3072 and numel(()) == 1 and numel((5, 0)) == 0


@pytest.fixture(scope='module')
def model():
    """Return a random-init deployment model of the shipped widths, in eval mode."""
    torch.manual_seed(0)
    return MultiExitAlexNet(CFG).eval()


@pytest.fixture(scope='module')
def batch():
    """Return a random normalized input batch ``(BATCH, 3, 32, 32)``."""
    gen = torch.Generator().manual_seed(1)
    return torch.randn((BATCH,) + INPUT_SHAPE, generator=gen)


@pytest.fixture(scope='module')
def full_logits(model, batch):
    """Return ``{exit: logits (BATCH, 10)}`` of the full forward."""
    with torch.no_grad():
        return {e: model(batch, e) for e in range(1, NUM_EXITS + 1)}


def test_branch_lengths():
    assert [len(branch_specs(CFG, e)) for e in range(1, NUM_EXITS + 1)] == [10, 10, 12, 13, 20]
    assert len(CUTS) == 11 + 11 + 13 + 14 + 21


@pytest.mark.parametrize('exit_index,split_index', CUTS, ids=[f'e{e}-s{s}' for e, s in CUTS])
def test_split_equals_full_forward(model, batch, full_logits, exit_index, split_index):
    with torch.no_grad():
        sent = model.run(batch, exit_index, 0, split_index)
        assert tuple(sent.shape) == \
            (BATCH,) + tuple(split_tensor_shape(CFG, exit_index, split_index))
        received = sent.detach().clone().contiguous()   # what crosses the link
        logits = model.run(received, exit_index, split_index)
    assert logits.shape == (BATCH, CFG.num_classes)
    assert torch.allclose(logits, full_logits[exit_index], rtol=1e-6, atol=1e-6)


def test_run_rejects_bad_range(model, batch):
    n = model.branch_len(1)
    for start, stop in [(-1, 2), (3, 2), (0, n + 1)]:
        with pytest.raises(ValueError, match='start'):
            model.run(batch, 1, start, stop)


def test_forward_all_matches_each_exit(model, batch, full_logits):
    with torch.no_grad():
        outs = model.forward_all(batch)
    assert len(outs) == NUM_EXITS
    for e, logits in enumerate(outs, start=1):
        assert torch.allclose(logits, full_logits[e], rtol=1e-6, atol=1e-6), f'exit {e}'


def _randomize_bn(model: MultiExitAlexNet, gen: torch.Generator) -> int:
    count = 0
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, ConvBN):
                bn = mod.bn
                c = bn.num_features
                bn.running_mean.copy_(torch.randn(c, generator=gen) * 0.5)
                bn.running_var.copy_(torch.rand(c, generator=gen) * 2.0 + 0.1)
                bn.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                bn.bias.copy_(torch.randn(c, generator=gen) * 0.2)
                count += 1
    return count


def test_fold_batchnorm_same_logits(batch):
    torch.manual_seed(2)
    bn_model = MultiExitAlexNet(CFG, batchnorm=True)
    n_bn = _randomize_bn(bn_model, torch.Generator().manual_seed(3))
    assert n_bn == 5 + 4   # trunk conv1-5, exit1 conv1-2, exit2 conv1, exit3 conv1
    bn_model.eval()
    deploy = fold_batchnorm(bn_model)
    assert not deploy.batchnorm and not deploy.training
    assert not any(isinstance(m, (ConvBN, torch.nn.BatchNorm2d)) for m in deploy.modules())
    assert deploy.model_id == bn_model.model_id
    with torch.no_grad():
        for e in range(1, NUM_EXITS + 1):
            want = bn_model(batch, e)
            got = deploy(batch, e)
            assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), \
                f'exit {e}: max diff {float((got - want).abs().max())}'
            # the folded model is not trivially close: BN stats matter
            assert float(want.abs().max()) > 1e-3


@pytest.mark.parametrize('exit_index', range(1, NUM_EXITS + 1))
def test_layer_table_matches_modules(model, batch, exit_index):
    rows = layer_table(CFG, exit_index)
    assert len(rows) == model.branch_len(exit_index)
    x = batch
    with torch.no_grad():
        for i, row in enumerate(rows):
            assert row.index == i and row.exit == exit_index
            assert tuple(x.shape[1:]) == row.in_shape, row.name
            x = model.run(x, exit_index, i, i + 1)
            assert tuple(x.shape[1:]) == row.out_shape, row.name
            assert row.out_bytes == 4 * numel(row.out_shape)
            assert row.kind == row.spec.kind and row.name == row.spec.name
    assert rows[-1].out_shape == (CFG.num_classes,)


def test_conv_flops_hand_formula():
    conv1 = layer_table(CFG, 5)[0]
    assert conv1.name == 'conv1' and conv1.kind == 'conv'
    # 2 FLOPs per MAC x output elements (c1 x 32 x 32) x input channels (3) x kernel (5 x 5)
    assert conv1.flops == 2 * (CFG.c1 * 32 * 32) * 3 * 5 * 5
    assert conv1.flops == 2 * 32 * 32 * 32 * 3 * 25 == 4_915_200
    for e in range(1, NUM_EXITS + 1):
        for row in layer_table(CFG, e):
            if row.kind == 'conv':
                c_out, h_out, w_out = row.out_shape
                k = row.spec.kernel
                assert row.flops == 2 * c_out * h_out * w_out * row.in_shape[0] * k * k
            elif row.kind == 'fc':
                assert row.flops == 2 * numel(row.in_shape) * row.spec.out_channels


def test_layer_flops_and_output_shape_of_a_small_conv():
    spec = branch_specs(AlexNetConfig(c1=4), 5)[0]    # conv 5x5, stride 1, pad 2
    assert output_shape(spec, (3, 8, 8)) == (4, 8, 8)
    assert layer_flops(spec, (3, 8, 8)) == 2 * 4 * 8 * 8 * 3 * 5 * 5


@pytest.mark.parametrize('exit_index', range(1, NUM_EXITS + 1))
def test_split_payload_bytes(exit_index):
    n = len(branch_specs(CFG, exit_index))
    assert split_payload_bytes(CFG, exit_index, 0) == 3072 == 32 * 32 * 3
    assert split_payload_bytes(CFG, exit_index, n) == 0
    for s in range(1, n):
        elems = numel(split_tensor_shape(CFG, exit_index, s))
        assert elems == numel(layer_table(CFG, exit_index)[s - 1].out_shape)
        assert split_payload_bytes(CFG, exit_index, s) == 4 * elems
        assert split_payload_bytes(CFG, exit_index, s, bytes_per_element=2) == 2 * elems
        assert split_payload_bytes(CFG, exit_index, s, bytes_per_element=1) == elems


@pytest.mark.parametrize('bad', [0, 6, -1, 100, True, False, 1.0, 2.5, '1', None])
def test_check_exit_rejects(bad):
    with pytest.raises(ValueError, match='exit_index'):
        check_exit(bad)


@pytest.mark.parametrize('bad', [0, 6, True, 3.0, None])
def test_check_split_rejects_bad_exit(bad):
    with pytest.raises(ValueError, match='exit_index'):
        check_split(CFG, bad, 0)


@pytest.mark.parametrize('exit_index', range(1, NUM_EXITS + 1))
def test_check_split_range(exit_index):
    n = len(branch_specs(CFG, exit_index))
    for s in range(n + 1):
        check_split(CFG, exit_index, s)
    for bad in [-1, n + 1, 99, True, False, 1.0, '0', None]:
        with pytest.raises(ValueError, match='split_index'):
            check_split(CFG, exit_index, bad)


def test_check_exit_accepts_all_exits():
    for e in range(1, NUM_EXITS + 1):
        check_exit(e)


def test_normalize_images_shape_and_values():
    u8 = torch.zeros((2, 32, 32, 3), dtype=torch.uint8)
    u8[..., 0] = 255
    x = normalize_images(u8)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0], torch.full((2, 32, 32), (1 - 0.4913) / 0.2452))
    assert torch.allclose(x[:, 1], torch.full((2, 32, 32), -0.4821 / 0.2428))


def test_model_id_is_stable_and_tied_to_widths():
    assert CFG.model_id() == AlexNetConfig(**vars(CFG)).model_id()
    assert CFG.model_id() != AlexNetConfig().model_id()
    assert CFG.model_id().startswith('alexnet5-cifar10-v')
