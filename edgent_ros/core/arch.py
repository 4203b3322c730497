"""
Architecture of the multi-exit AlexNet as data: layer specs, branches, shapes, bytes, FLOPs.

Everything the planner needs to know about the network without torch: a split point is a list
index into ``branch_specs(cfg, exit)``; ``layer_table`` gives each layer's input/output shape,
output bytes and FLOPs. ``core.model`` builds the torch modules from these specs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
import hashlib
import json
from typing import List, Sequence, Tuple


NUM_EXITS = 5
INPUT_SHAPE = (3, 32, 32)  # (C, H, W) of one frame
CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer',
           'dog', 'frog', 'horse', 'ship', 'truck')


# Per-channel RGB mean/std of the CIFAR-10 JPEG training set (see shared data README).
MEAN = (0.4913, 0.4821, 0.4465)
STD = (0.2452, 0.2428, 0.2606)
LAYER_KINDS = ('conv', 'relu', 'pool', 'dropout', 'fc')
ARCH_VERSION = 1


@dataclass(frozen=True)
class LayerSpec:
    """One layer of a branch: its kind and the hyper-parameters that define it."""

    kind: str                        # one of LAYER_KINDS
    name: str                        # stable, unique within the model (state-dict prefix)
    out_channels: int = 0            # conv: filters; fc: output features
    kernel: int = 0                  # conv / pool: square kernel size
    stride: int = 1                  # conv / pool
    padding: int = 0                 # conv / pool
    p: float = 0.0                   # dropout probability (identity at inference)


@dataclass(frozen=True)
class AlexNetConfig:
    """
    Channel widths of the trunk and side heads.

    The defaults are the wider reference widths the architecture was designed with; the shipped
    model is the narrower ``SHIPPED_CONFIG`` below, which is also stored in the ``config``
    metadata of ``artifacts/alexnet5.safetensors`` (``artifacts.read_config`` reads it back).
    """

    num_classes: int = 10
    c1: int = 64          # conv1 filters (5x5)
    c2: int = 128         # conv2 filters (5x5)
    c3: int = 192         # conv3 filters (3x3)
    c4: int = 192         # conv4 filters (3x3)
    c5: int = 128         # conv5 filters (3x3)
    fc6: int = 512        # hidden fc widths of the final classifier
    fc7: int = 256
    head: int = 64        # conv filters in the side heads of exits 1-3
    dropout: float = 0.3

    def model_id(self) -> str:
        """Return a stable id naming architecture version and widths (weights are tied to it)."""
        digest = hashlib.sha256(
            json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]
        return f'alexnet5-cifar10-v{ARCH_VERSION}-{digest}'


# The trained, shipped model (model_id alexnet5-cifar10-v1-baf6a595, 1,227,218 parameters): the
# widths in the header of artifacts/alexnet5.safetensors and the default of offline training.
SHIPPED_CONFIG = AlexNetConfig(c1=32, c2=64, c3=128, c4=128, c5=96, fc6=384, fc7=192, head=32)


def _trunk(cfg: AlexNetConfig) -> List[LayerSpec]:
    return [
        LayerSpec('conv', 'conv1', cfg.c1, 5, 1, 2),       # (c1, 32, 32)
        LayerSpec('relu', 'relu1'),
        LayerSpec('pool', 'pool1', kernel=3, stride=2, padding=1),   # (c1, 16, 16)
        LayerSpec('conv', 'conv2', cfg.c2, 5, 1, 2),       # (c2, 16, 16)
        LayerSpec('relu', 'relu2'),
        LayerSpec('pool', 'pool2', kernel=3, stride=2, padding=1),   # (c2, 8, 8)
        LayerSpec('conv', 'conv3', cfg.c3, 3, 1, 1),       # (c3, 8, 8)
        LayerSpec('relu', 'relu3'),
        LayerSpec('conv', 'conv4', cfg.c4, 3, 1, 1),       # (c4, 8, 8)
        LayerSpec('relu', 'relu4'),
        LayerSpec('conv', 'conv5', cfg.c5, 3, 1, 1),       # (c5, 8, 8)
        LayerSpec('relu', 'relu5'),
        LayerSpec('pool', 'pool5', kernel=3, stride=2, padding=1),   # (c5, 4, 4)
        LayerSpec('dropout', 'drop6', p=cfg.dropout),
        LayerSpec('fc', 'fc6', cfg.fc6),
        LayerSpec('relu', 'relu6'),
        LayerSpec('dropout', 'drop7', p=cfg.dropout),
        LayerSpec('fc', 'fc7', cfg.fc7),
        LayerSpec('relu', 'relu7'),
        LayerSpec('fc', 'fc8', cfg.num_classes),
    ]


# Number of trunk layers each side exit keeps before its own head (exit 5 keeps all).
EXIT_ATTACH = {1: 3, 2: 6, 3: 8, 4: 10}


def _side_head(cfg: AlexNetConfig, exit_index: int) -> List[LayerSpec]:
    e = f'exit{exit_index}_'
    if exit_index == 1:     # from (c1, 16, 16)
        return [LayerSpec('conv', e + 'conv1', cfg.head, 3, 1, 1),
                LayerSpec('relu', e + 'relu1'),
                LayerSpec('pool', e + 'pool1', kernel=3, stride=2, padding=1),  # 8x8
                LayerSpec('conv', e + 'conv2', cfg.head, 3, 1, 1),
                LayerSpec('relu', e + 'relu2'),
                LayerSpec('pool', e + 'pool2', kernel=3, stride=2, padding=1),  # 4x4
                LayerSpec('fc', e + 'fc', cfg.num_classes)]
    if exit_index in (2, 3):  # from (c2 | c3, 8, 8)
        return [LayerSpec('conv', e + 'conv1', cfg.head * 2, 3, 1, 1),
                LayerSpec('relu', e + 'relu1'),
                LayerSpec('pool', e + 'pool1', kernel=3, stride=2, padding=1),  # 4x4
                LayerSpec('fc', e + 'fc', cfg.num_classes)]
    if exit_index == 4:     # from (c4, 8, 8)
        return [LayerSpec('pool', e + 'pool1', kernel=3, stride=2, padding=1),  # 4x4
                LayerSpec('dropout', e + 'drop', p=cfg.dropout),
                LayerSpec('fc', e + 'fc', cfg.num_classes)]
    raise ValueError(f'exit_index must be 1..{NUM_EXITS - 1} for a side head, got {exit_index}')


def branch_specs(cfg: AlexNetConfig, exit_index: int) -> List[LayerSpec]:
    """Return the layer list of branch ``exit_index`` (1..5): trunk prefix + head."""
    check_exit(exit_index)
    trunk = _trunk(cfg)
    if exit_index == NUM_EXITS:
        return trunk
    return trunk[:EXIT_ATTACH[exit_index]] + _side_head(cfg, exit_index)


def check_exit(exit_index: int) -> None:
    """Raise ValueError unless ``exit_index`` names one of the exits 1..NUM_EXITS."""
    if isinstance(exit_index, bool) or not isinstance(exit_index, int) \
            or not 1 <= exit_index <= NUM_EXITS:
        raise ValueError(f'exit_index must be an integer in 1..{NUM_EXITS}, got {exit_index!r}')


def check_split(cfg: AlexNetConfig, exit_index: int, split_index: int) -> None:
    """Raise ValueError unless ``split_index`` is a valid cut of branch ``exit_index``."""
    check_exit(exit_index)
    n = len(branch_specs(cfg, exit_index))
    if isinstance(split_index, bool) or not isinstance(split_index, int) \
            or not 0 <= split_index <= n:
        raise ValueError(
            f'split_index must be an integer in 0..{n} for exit {exit_index}, got {split_index!r}')


def output_shape(spec: LayerSpec, in_shape: Sequence[int]) -> Tuple[int, ...]:
    """Return the per-frame output shape of ``spec`` for per-frame input shape ``in_shape``."""
    if spec.kind in ('relu', 'dropout'):
        return tuple(in_shape)
    if spec.kind in ('conv', 'pool'):
        c, h, w = in_shape
        ho = (h + 2 * spec.padding - spec.kernel) // spec.stride + 1
        wo = (w + 2 * spec.padding - spec.kernel) // spec.stride + 1
        return (spec.out_channels if spec.kind == 'conv' else c, ho, wo)
    if spec.kind == 'fc':
        return (spec.out_channels,)
    raise ValueError(f'unknown layer kind {spec.kind!r}')


def numel(shape: Sequence[int]) -> int:
    """Return the number of elements of a tensor of ``shape``."""
    n = 1
    for d in shape:
        n *= int(d)
    return n


def parameter_count(cfg: AlexNetConfig) -> int:
    """
    Return the number of parameters of the deployed model (all exits, shared layers once).

    Deployed means batch norm folded: every conv and fc layer has a weight and a bias. Equals
    ``sum(p.numel() for p in core.model.MultiExitAlexNet(cfg).parameters())``, without torch.
    """
    seen = set()
    total = 0
    for e in range(1, NUM_EXITS + 1):
        shape: Tuple[int, ...] = INPUT_SHAPE
        for spec in branch_specs(cfg, e):
            if spec.name not in seen:
                seen.add(spec.name)
                if spec.kind == 'conv':
                    total += spec.out_channels * (shape[0] * spec.kernel * spec.kernel + 1)
                elif spec.kind == 'fc':
                    total += spec.out_channels * (numel(shape) + 1)
            shape = output_shape(spec, shape)
    return total


def layer_flops(spec: LayerSpec, in_shape: Sequence[int]) -> int:
    """Return multiply-add counted FLOPs (2 per MAC) of one layer for one frame."""
    out = output_shape(spec, in_shape)
    if spec.kind == 'conv':
        return 2 * numel(out) * in_shape[0] * spec.kernel * spec.kernel
    if spec.kind == 'fc':
        return 2 * numel(in_shape) * spec.out_channels
    if spec.kind == 'pool':
        return numel(out) * spec.kernel * spec.kernel
    if spec.kind == 'relu':
        return numel(in_shape)
    return 0  # dropout: identity at inference


@dataclass
class LayerInfo:
    """One row of the layer table of a branch."""

    exit: int
    index: int                   # position in the branch: split s cuts before layer s
    name: str
    kind: str
    in_shape: Tuple[int, ...]
    out_shape: Tuple[int, ...]
    out_bytes: int               # fp32 bytes of the output for one frame
    flops: int
    spec: LayerSpec = field(repr=False)


def layer_table(cfg: AlexNetConfig, exit_index: int) -> List[LayerInfo]:
    """Return per-layer shapes, fp32 output bytes and FLOPs of branch ``exit_index``."""
    rows = []
    shape: Tuple[int, ...] = INPUT_SHAPE
    for i, spec in enumerate(branch_specs(cfg, exit_index)):
        out = output_shape(spec, shape)
        rows.append(LayerInfo(exit_index, i, spec.name, spec.kind, tuple(shape), out,
                              4 * numel(out), layer_flops(spec, shape), spec))
        shape = out
    return rows


def split_tensor_shape(cfg: AlexNetConfig, exit_index: int, split_index: int) -> Tuple[int, ...]:
    """Return the per-frame shape of the tensor that crosses the link at ``split_index``."""
    check_split(cfg, exit_index, split_index)
    if split_index == 0:
        return INPUT_SHAPE
    return layer_table(cfg, exit_index)[split_index - 1].out_shape


def split_payload_bytes(cfg: AlexNetConfig, exit_index: int, split_index: int,
                        bytes_per_element: float = 4.0) -> int:
    """
    Return the payload bytes that cross the link for one frame at ``(exit, split)``.

    Split 0 (edge-only) sends the raw uint8 RGB frame (3072 bytes), not its fp32 normalization;
    split ``len(branch)`` (device-only) sends nothing. Otherwise the activation at the cut, at
    ``bytes_per_element`` (4 for fp32, 2 for fp16, 1 for int8).
    """
    check_split(cfg, exit_index, split_index)
    n = len(branch_specs(cfg, exit_index))
    if split_index == n:
        return 0
    if split_index == 0:
        return numel(INPUT_SHAPE)
    return int(numel(split_tensor_shape(cfg, exit_index, split_index)) * bytes_per_element)
