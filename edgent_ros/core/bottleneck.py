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
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn

from .arch import AlexNetConfig, branch_specs, EXIT_ATTACH, split_tensor_shape
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


def trunk_len(cfg: AlexNetConfig, exit_index: int) -> int:
    """Return how many leading layers of branch ``exit_index`` are trunk layers."""
    return EXIT_ATTACH.get(exit_index, len(branch_specs(cfg, exit_index)))


def spec_for(cfg: AlexNetConfig, split: int, channels: int, stride: int = 1,
             hidden: int = 0) -> BottleneckSpec:
    """Return the spec of a ``channels``-wide bottleneck at trunk cut ``split``."""
    shape = tuple(split_tensor_shape(cfg, 5, split))
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

    def covers(self, cfg: AlexNetConfig, exit_index: int, split: int, encoding: str) -> bool:
        """Return whether ``encoding`` can carry the cut ``(exit, split)`` of this model."""
        return (bottleneck_width(encoding) is not None and 0 < split <= trunk_len(cfg, exit_index)
                and split < len(branch_specs(cfg, exit_index))
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


def default_path() -> Path:
    """Return the shipped bottleneck file's path."""
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
