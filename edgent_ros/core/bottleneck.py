"""
Learned bottlenecks at a cut: a few channels, int8, instead of the whole activation.

After BottleNet++ (Shao & Zhang 2020) and supervised compression for split computing
(Matsubara et al. 2022): at trunk cut ``split`` a small **encoder** on the robot squeezes the
activation ``(C, H, W)`` into ``channels`` maps (optionally strided), sent int8 (the codec's
per-tensor affine quantisation); a **decoder** on the edge restores ``(C, H, W)`` and the branch
goes on from layer ``split`` as if nothing had happened. The backbone stays frozen; the pairs are
trained by distillation (``offline.bottleneck_training``).

Each width is an encoding named ``bn<channels>`` (``bn4``...), chosen by the planner like ``int8``
or ``jpeg``; a bottleneck at a trunk cut serves every exit whose branch holds that cut. A set of
bottlenecks is one safetensors file tied to the model id, with its own ``bottleneck_id`` (a hash
of its tensors): a frame says which set encoded it and the edge refuses any other, so a frame is
never decoded with the wrong weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn

from .arch import AlexNetConfig, branch_specs, EXIT_ATTACH, NUM_EXITS, split_tensor_shape
from .artifacts import ARTIFACT_DIR
from .codec import bottleneck_width

BOTTLENECK_FILE = 'bottlenecks.safetensors'
BOTTLENECK_FORMAT = 'edgent_ros/bottlenecks/1'


class BottleneckError(ValueError):
    """A bottleneck file or request that cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class BottleneckSpec:
    """Where a bottleneck sits and what it sends."""

    split: int                        # trunk layers before the cut (the split index it serves)
    channels: int                     # maps sent (the encoding is ``bn<channels>``)
    in_shape: Tuple[int, int, int]    # (C, H, W) of the trunk activation at the cut
    stride: int = 1                   # encoder stride: the maps sent are H/stride x W/stride
    hidden: int = 0                   # encoder/decoder hidden width (0: C // 2)

    @property
    def name(self) -> str:
        """The encoding name, ``bn<channels>``."""
        return f'bn{self.channels}'

    @property
    def wire_shape(self) -> Tuple[int, int, int, int]:
        """Batched shape of the tensor sent: ``(1, channels, ceil(H/stride), ceil(W/stride))``."""
        _, h, w = self.in_shape
        return (1, self.channels, math.ceil(h / self.stride), math.ceil(w / self.stride))

    @property
    def nbytes(self) -> int:
        """Payload bytes on the link (int8: one byte per element)."""
        return int(math.prod(self.wire_shape))


class Bottleneck(nn.Module):
    """
    Encoder (robot) and decoder (edge) of one ``BottleneckSpec``.

    Encoder: a conv ``C -> hidden`` (3x3 on 8x8 and larger maps, 1x1 on smaller ones), ReLU,
    then a 1x1 (3x3 with stride) conv to ``channels`` maps (no ReLU: the maps are signed, int8
    keeps the sign). Decoder: nearest upsampling back to ``(H, W)`` when strided, two 3x3 convs
    ``channels -> hidden -> hidden`` and a 1x1 conv back to ``C``, each with a ReLU (the last
    because the cut's activations are >= 0). ``hidden`` defaults to ``max(2 * channels, 32)``.
    The encoder's spatial conv on the wide side is what buys accuracy; the 1x1 convs keep the
    set's file small (a few hundred KB for the shipped set).
    """

    def __init__(self, spec: BottleneckSpec):
        super().__init__()
        self.spec = spec
        c_in, h, _ = spec.in_shape
        hid = spec.hidden or max(2 * spec.channels, 32)
        kw = 3 if h >= 8 else 1
        k = 3 if spec.stride > 1 else 1
        self.encoder = nn.Sequential(
            nn.Conv2d(c_in, hid, kw, 1, kw // 2), nn.ReLU(inplace=True),
            nn.Conv2d(hid, spec.channels, k, spec.stride, k // 2))
        up: List[nn.Module] = []
        if spec.stride > 1:
            up = [nn.Upsample(size=spec.in_shape[1:], mode='nearest')]
        self.decoder = nn.Sequential(
            *up, nn.Conv2d(spec.channels, hid, 3, 1, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hid, hid, 3, 1, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hid, c_in, 1), nn.ReLU(inplace=True))   # cut activations are >= 0

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Return the maps to send for trunk activation ``x`` ``(N, C, H, W)``."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Return the restored trunk activation for received maps ``z``."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # noqa: D102 (training: x -> x_hat)
        return self.decode(self.encode(x))


@dataclass(frozen=True)
class Trunk:
    """
    Where a multi-exit model's exits leave its trunk: all a bottleneck needs of the model.

    Trunk cut ``i`` is the tensor after ``i`` trunk layers; side exit ``e`` runs its head on
    trunk cut ``attach[e]``; the last exit's branch is the whole trunk. Built by ``trunk_of``
    for the shipped AlexNet and for any described model (``core.described``), so bottlenecks
    are trained, measured and run the same way on both.
    """

    num_exits: int
    attach: Tuple[Tuple[int, int], ...]        # (side exit, trunk cut its head reads)
    branch_lens: Tuple[int, ...]               # layers of each branch, exit 1 first
    cut_shapes: Tuple[Tuple[int, ...], ...]    # per-frame shape at trunk cut 0..len
    deep_tap: int                              # the last trunk cut with a (C, H, W) tensor

    def attach_of(self, exit_index: int) -> Optional[int]:
        """Return the trunk cut side exit ``exit_index`` reads (None for the last exit)."""
        return dict(self.attach).get(exit_index)

    def trunk_len(self, exit_index: int) -> int:
        """Return how many leading layers of branch ``exit_index`` are trunk layers."""
        a = self.attach_of(exit_index)
        return self.branch_lens[exit_index - 1] if a is None else a

    def served_exits(self, split: int) -> List[int]:
        """Return the exits whose branch holds trunk cut ``split`` as an inner cut."""
        return [e for e in range(1, self.num_exits + 1)
                if 0 < split <= self.trunk_len(e) and split < self.branch_lens[e - 1]]

    def cut_shape(self, split: int) -> Tuple[int, ...]:
        """Return the per-frame shape of the trunk activation at cut ``split``."""
        if not 0 <= split < len(self.cut_shapes):
            raise BottleneckError(f'split {split}: the trunk has cuts 0..'
                                  f'{len(self.cut_shapes) - 1}')
        return self.cut_shapes[split]


def trunk_of(model: Any) -> Trunk:
    """
    Return the ``Trunk`` of the shipped AlexNet or of a described model.

    ``model``: an ``AlexNetConfig``, a ``MultiExitAlexNet``, a ``core.described.DescribedModel``
    or its ``MultiExitChain``; a ``Trunk`` is returned as is.
    """
    if isinstance(model, Trunk):
        return model
    if isinstance(model, AlexNetConfig) or isinstance(getattr(model, 'cfg', None), AlexNetConfig):
        cfg = model if isinstance(model, AlexNetConfig) else model.cfg
        trunk = branch_specs(cfg, NUM_EXITS)
        lens = tuple(len(branch_specs(cfg, e)) for e in range(1, NUM_EXITS + 1))
        shapes = tuple(tuple(split_tensor_shape(cfg, NUM_EXITS, s))
                       for s in range(len(trunk) + 1))
        pool5 = max(i for i, s in enumerate(trunk) if s.kind == 'pool') + 1
        return Trunk(NUM_EXITS, tuple(sorted(EXIT_ATTACH.items())), lens, shapes, pool5)
    chain_model = getattr(model, 'model', model)   # DescribedModel -> its MultiExitChain
    chain = getattr(chain_model, 'chain', None)
    if chain is None or not hasattr(chain_model, 'attach'):
        raise BottleneckError(f'{type(model).__name__}: not a multi-exit model with a trunk '
                              '(the shipped AlexNet or a described model)')
    n_exits = int(chain_model.num_exits)
    attach = tuple((k + 1, int(a)) for k, a in enumerate(chain_model.attach))
    lens = tuple(int(chain_model.branch_len(e)) for e in range(1, n_exits + 1))
    shapes = tuple(tuple(int(d) for d in c.shape) for c in chain.cuts)
    deep = max(i for i, sh in enumerate(shapes[:-1]) if len(sh) == 3)
    return Trunk(n_exits, attach, lens, shapes, deep)


def trunk_len(cfg: Any, exit_index: int) -> int:
    """Return how many leading layers of branch ``exit_index`` are trunk layers."""
    return trunk_of(cfg).trunk_len(exit_index)


def spec_for(cfg: Any, split: int, channels: int, stride: int = 1,
             hidden: int = 0) -> BottleneckSpec:
    """Return the spec of a ``channels``-wide bottleneck at trunk cut ``split``."""
    shape = tuple(trunk_of(cfg).cut_shape(split))
    if len(shape) != 3:
        raise BottleneckError(f'split {split}: a bottleneck needs a (C, H, W) activation, the '
                              f'cut carries {list(shape)}')
    if channels < 1 or stride < 1:
        raise BottleneckError(f'channels and stride must be >= 1, got {channels}, {stride}')
    return BottleneckSpec(int(split), int(channels), shape, int(stride), int(hidden))


class BottleneckSet:
    """The bottlenecks of one model, as loaded from (or saved to) one safetensors file."""

    def __init__(self, model_id: str, modules: Iterable[Bottleneck]):
        self.model_id = model_id
        self.modules: Dict[Tuple[int, str], Bottleneck] = {}
        for m in modules:
            key = (m.spec.split, m.spec.name)
            if key in self.modules:
                raise BottleneckError(f'two bottlenecks named {key[1]} at split {key[0]}')
            self.modules[key] = m.eval()
        self.bottleneck_id = self._digest()

    def _digest(self) -> str:
        h = hashlib.sha256(self.model_id.encode())
        for key in sorted(self.modules):
            h.update(json.dumps(asdict(self.modules[key].spec), sort_keys=True).encode())
            for name, t in sorted(self.modules[key].state_dict().items()):
                h.update(name.encode())
                h.update(t.detach().contiguous().numpy().tobytes())
        return 'bn-' + h.hexdigest()[:12]

    def specs(self) -> List[BottleneckSpec]:
        """Return every spec, ordered by (split, channels)."""
        return sorted((m.spec for m in self.modules.values()),
                      key=lambda s: (s.split, s.channels))

    def get(self, split: int, encoding: str) -> Optional[Bottleneck]:
        """Return the bottleneck ``encoding`` (``bn<c>``) at ``split``, or None."""
        return self.modules.get((int(split), encoding))

    def covers(self, cfg: Any, exit_index: int, split: int, encoding: str) -> bool:
        """Return whether ``encoding`` can carry the cut ``(exit, split)`` of this model."""
        return (bottleneck_width(encoding) is not None
                and exit_index in trunk_of(cfg).served_exits(split)
                and self.get(split, encoding) is not None)

    def names(self) -> List[str]:
        """Return the encoding names this set offers at some cut."""
        return sorted({k[1] for k in self.modules}, key=lambda n: bottleneck_width(n) or 0)

    def save(self, path: Path) -> None:
        """Write the set as safetensors with model id, specs and bottleneck id in the header."""
        from safetensors.torch import save_file
        state = {}
        for (split, name), m in sorted(self.modules.items()):
            for k, v in m.state_dict().items():
                state[f'{split}.{name}.{k}'] = v.detach().contiguous()
        meta = {'format': BOTTLENECK_FORMAT, 'model_id': self.model_id,
                'bottleneck_id': self.bottleneck_id,
                'specs': json.dumps([asdict(s) for s in self.specs()])}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(path), metadata=meta)


def default_path(desc: Any = None) -> Path:
    """
    Return the shipped bottleneck file's path.

    With a model description (``core.model_desc.ModelDescription``): the set beside it,
    ``<name>.bottlenecks.safetensors`` (``resnet64.bottlenecks.safetensors``).
    """
    if desc is not None:
        return desc.derived('.' + BOTTLENECK_FILE)
    return ARTIFACT_DIR / BOTTLENECK_FILE


def load_bottlenecks(path: Optional[Path], model_id: str) -> BottleneckSet:
    """
    Load a bottleneck set for model ``model_id``; ``BottleneckError`` says what is wrong.

    Refused: a missing or unreadable file, another format, another model's set, tensors that do
    not fit the specs, and a header whose ``bottleneck_id`` does not match its tensors.
    """
    from safetensors import safe_open
    path = Path(path or default_path())
    if not path.is_file():
        raise BottleneckError(f'{path}: bottleneck file not found (train one with '
                              '`edgent-ros train-bottleneck`)')
    try:
        with safe_open(str(path), framework='pt') as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for garbled headers
        raise BottleneckError(f'{path}: not a readable safetensors file ({exc})') from exc
    if meta.get('format') != BOTTLENECK_FORMAT:
        raise BottleneckError(f'{path}: format {meta.get("format")!r}, expected '
                              f'{BOTTLENECK_FORMAT!r}; not an edgent_ros bottleneck file')
    if meta.get('model_id') != model_id:
        raise BottleneckError(f'{path}: bottlenecks for model {meta.get("model_id")!r}, this '
                              f'node runs {model_id!r}; train them for this model')
    try:
        specs = [BottleneckSpec(int(d['split']), int(d['channels']), tuple(d['in_shape']),
                                int(d.get('stride', 1)), int(d.get('hidden', 0)))
                 for d in json.loads(meta['specs'])]
    except (KeyError, TypeError, ValueError) as exc:
        raise BottleneckError(f'{path}: bad specs in the header ({exc})') from exc
    modules = []
    for spec in specs:
        m = Bottleneck(spec)
        prefix = f'{spec.split}.{spec.name}.'
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        try:
            m.load_state_dict(sub, strict=True)
        except RuntimeError as exc:
            raise BottleneckError(f'{path}: tensors of {spec.name} at split {spec.split} do not '
                                  f'fit its spec ({str(exc).splitlines()[0]})') from exc
        modules.append(m)
    out = BottleneckSet(model_id, modules)
    if meta.get('bottleneck_id') != out.bottleneck_id:
        raise BottleneckError(f'{path}: header says bottleneck_id {meta.get("bottleneck_id")!r}, '
                              f'its tensors hash to {out.bottleneck_id!r} (file altered?)')
    return out
