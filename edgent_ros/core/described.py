"""
Build a described model (``core.model_desc``): factory, weights, cut chain, side-exit heads.

``load_described(path)`` returns a ``DescribedModel``: the multi-exit torch module (a
``core.chain.MultiExitChain``, or the shipped ``MultiExitAlexNet`` for ``architecture:
alexnet5``), its model id and a torch-free **table** (``table()``: per exit, each layer's output
shape, bytes, FLOPs and leaf ops) that the planner and the latency models read without torch.

The factory is ``package.module:function`` (imported) or ``path/to/file.py:function`` (a file the
user owns, loaded from its path, relative to the description). The model id names the
description's architecture (factory, arguments, input, cut points, exits) and the digests of the
weight files, so weights, heads, accuracy tables and latency tables of one model never meet
another's. This module never imports rclpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import hashlib
import importlib
import importlib.util
import json
from pathlib import Path
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .arch import CLASSES as ALEXNET_CLASSES, EXIT_ATTACH, INPUT_SHAPE as ALEXNET_INPUT
from .arch import layer_table, MEAN as ALEXNET_MEAN, numel, STD as ALEXNET_STD
from .artifacts import ARTIFACT_DIR, ArtifactError, WEIGHTS_FILE
from .chain import Chain, cut_chain, CutError, make_head, MultiExitChain
from .model_desc import DescriptionError, load_description, ModelDescription
from .model_plan import TABLE_FORMAT
from .weights import load_model, read_safetensors

HEADS_FORMAT = 'edgent_ros/exit_heads/1'
ID_VERSION = 1
RANDOM_INIT_SEED = 0   # a model without weights file: torch.manual_seed before its factory


def load_factory(spec: str, base_dir: Path) -> Callable[..., nn.Module]:
    """Return the callable named by ``module:function`` or ``file.py:function``."""
    mod_name, _, fn_name = spec.rpartition(':')
    if mod_name.endswith('.py') or '/' in mod_name:
        path = Path(mod_name)
        path = path if path.is_absolute() else (base_dir / path)
        if not path.is_file():
            raise DescriptionError(f'factory {spec!r}: {path} not found')
        key = f'edgent_user_model_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]}'
        loader = importlib.util.spec_from_file_location(key, path)
        if loader is None or loader.loader is None:
            raise DescriptionError(f'factory {spec!r}: cannot load {path} as Python')
        module = importlib.util.module_from_spec(loader)
        sys.modules[key] = module
        try:
            loader.loader.exec_module(module)
        except Exception as exc:
            raise DescriptionError(f'factory {spec!r}: {path} raised {type(exc).__name__}: '
                                   f'{exc}') from exc
    else:
        try:
            module = importlib.import_module(mod_name)
        except ImportError as exc:
            raise DescriptionError(f'factory {spec!r}: cannot import {mod_name} ({exc})') from exc
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise DescriptionError(f'factory {spec!r}: {mod_name} has no function {fn_name}')
    return fn


def file_digest(path: Optional[Path]) -> str:
    """First 12 hex of the SHA-256 of a file ('' for no file)."""
    if path is None:
        return ''
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()[:12]


def build_backbone(desc: ModelDescription) -> nn.Module:
    """Instantiate the factory's module and load its weights (strict); eval mode."""
    fn = load_factory(desc.factory, desc.base_dir)
    try:
        # without weights the initialisation is the weights: seeded, so that robot and edge
        # (and every run) build the same random model
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            module = fn(**desc.factory_args)
    except Exception as exc:
        raise DescriptionError(f'{desc.path}: factory {desc.factory}(**{desc.factory_args}) '
                               f'raised {type(exc).__name__}: {exc}') from exc
    if not isinstance(module, nn.Module):
        raise DescriptionError(f'{desc.path}: factory {desc.factory} returned '
                               f'{type(module).__name__}, not a torch.nn.Module')
    if desc.weights is not None:
        state, _ = read_safetensors(desc.weights)
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            detail = ' '.join(str(exc).split())
            raise ArtifactError(f'{desc.weights}: weights do not fit {desc.factory}: '
                                f'{detail[:400]}') from exc
    return module.eval()


@dataclass
class DescribedModel:
    """A loaded model: the torch module, its id and what the nodes and planner need."""

    desc: ModelDescription
    model: nn.Module                 # .run / .branch_len / .forward_all
    model_id: str
    input_shape: Tuple[int, int, int]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    classes: Tuple[str, ...]
    chain: Optional[Chain] = None    # None for the shipped AlexNet
    backbone: Optional[nn.Module] = None   # the module the chain was cut from
    notes: List[str] = field(default_factory=list)

    @property
    def num_exits(self) -> int:
        """Number of exits (the last is the model's own output)."""
        return int(getattr(self.model, 'num_exits', 5))

    def normalize(self, images_u8: torch.Tensor) -> torch.Tensor:
        """uint8 RGB NHWC ``(B, H, W, 3)`` at the input size -> the float NCHW input."""
        x = images_u8.permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
        return (x - mean) / std

    def table(self) -> Dict[str, Any]:
        """Return the torch-free per-exit layer table that planning reads (``model_table``)."""
        return model_table(self)


def factory_key(desc: ModelDescription) -> str:
    """
    Return what names the factory in the model id.

    ``module:function`` as written; a user's ``file.py:function`` by the digest of the file's
    content, not its path, so the same model keeps its id wherever the checkout lives.
    """
    mod, _, fn = desc.factory.rpartition(':')
    if mod.endswith('.py') or '/' in mod:
        path = Path(mod) if Path(mod).is_absolute() else desc.base_dir / mod
        return f'file-{file_digest(path)}:{fn}'
    return desc.factory


def _arch_id(desc: ModelDescription, chain: Chain, extra: Sequence[str]) -> str:
    body = {'v': ID_VERSION, 'factory': factory_key(desc), 'args': desc.factory_args,
            'input': list(desc.input_shape), 'mean': list(desc.mean), 'std': list(desc.std),
            'classes': list(desc.classes),
            'cuts': [[c.name, list(c.shape)] for c in chain.cuts],
            'exits': [[x.cut, x.head, x.hidden] for x in desc.exits], 'files': list(extra)}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8]
    return f'{desc.name}-v{ID_VERSION}-{digest}'


def backbone_id(desc: ModelDescription, chain: Chain) -> str:
    """Id of the backbone alone (no heads): what an exit-heads file is tied to."""
    bare = ModelDescription(**{**desc.__dict__, 'exits': ()})
    return _arch_id(bare, chain, [file_digest(desc.weights)])


def load_heads(desc: ModelDescription, chain: Chain) -> Tuple[List[int], List[nn.Module]]:
    """Build the side heads of ``desc`` at their cuts and load ``exit_weights`` (checked)."""
    attach = [chain.cut_index(x.cut) for x in desc.exits]
    for x, a in zip(desc.exits, attach):
        if not 1 <= a < len(chain):
            raise DescriptionError(f'{desc.path}: exit at {x.cut!r}: a side exit reads a cut '
                                   'between the input and the logits')
    n_cls = len(desc.classes)
    heads = [make_head(x.head, chain.cuts[a].shape, n_cls, x.hidden)
             for x, a in zip(desc.exits, attach)]
    state, meta = read_safetensors(desc.exit_weights)
    want = backbone_id(desc, chain)
    if meta.get('backbone_id') != want:
        raise ArtifactError(f'{desc.exit_weights}: heads trained for backbone '
                            f'{meta.get("backbone_id")!r}, this is {want!r} (other weights, '
                            'input or cut points): train them again (edgent-ros train-exits)')
    described = [[x.cut, x.head, x.hidden] for x in desc.exits]
    if json.loads(meta.get('exits', '[]')) != described:
        raise ArtifactError(f'{desc.exit_weights}: heads for exits {meta.get("exits")}, the '
                            f'description has {json.dumps(described)}: train them again '
                            '(edgent-ros train-exits)')
    for k, (x, h) in enumerate(zip(desc.exits, heads)):
        prefix = f'exit{k + 1}.'
        sub = {key[len(prefix):]: v for key, v in state.items() if key.startswith(prefix)}
        try:
            h.load_state_dict(sub, strict=True)
        except RuntimeError as exc:
            raise ArtifactError(f'{desc.exit_weights}: head at {x.cut!r} does not fit: '
                                f'{" ".join(str(exc).split())[:300]}') from exc
        h.eval()
    return attach, heads


def save_heads(desc: ModelDescription, chain: Chain, heads: Sequence[nn.Module], path: Path,
               extra: Optional[Dict[str, str]] = None) -> None:
    """Write trained heads (``exit<k>.<param>``, description order) with their backbone id."""
    from safetensors.torch import save_file
    state = {}
    for i, h in enumerate(heads):
        for k, v in h.state_dict().items():
            state[f'exit{i + 1}.{k}'] = v.detach().contiguous()
    meta = {'format': HEADS_FORMAT, 'backbone_id': backbone_id(desc, chain),
            'exits': json.dumps([[x.cut, x.head, x.hidden] for x in desc.exits])}
    meta.update(extra or {})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=meta)


def build_described(desc: ModelDescription, with_heads: bool = True) -> DescribedModel:
    """Build the model of ``desc`` (see module docstring)."""
    if desc.architecture == 'alexnet5':
        weights = desc.weights or ARTIFACT_DIR / WEIGHTS_FILE
        model = load_model(weights)
        return DescribedModel(desc, model, model.model_id, ALEXNET_INPUT, ALEXNET_MEAN,
                              ALEXNET_STD, ALEXNET_CLASSES)
    backbone = build_backbone(desc)
    chain = cut_chain(backbone, desc.input_shape, desc.granularity, desc.block_depth)
    out_shape = chain.cuts[-1].shape
    if out_shape != (len(desc.classes),):
        raise CutError(f'{desc.path}: the model outputs {out_shape} per frame, the description '
                       f'has {len(desc.classes)} classes')
    notes = []
    attach: List[int] = []
    heads: List[nn.Module] = []
    files = [file_digest(desc.weights)]
    if desc.exits and with_heads and desc.exit_weights is not None \
            and desc.exit_weights.is_file():
        attach, heads = load_heads(desc, chain)
        files.append(file_digest(desc.exit_weights))
        used = desc
    else:
        if desc.exits:
            notes.append(f'{len(desc.exits)} side exits described but '
                         + ('not loaded' if not with_heads else 'their heads are not trained '
                            f'({desc.exit_weights or "no exit_weights"}): edgent-ros '
                            'train-exits') + '; only the final exit runs')
        used = ModelDescription(**{**desc.__dict__, 'exits': ()})
    if desc.weights is None:
        notes.append(f'no weights: random initialisation, seed {RANDOM_INIT_SEED} (shapes and '
                     'times only, no accuracy)')
    model = MultiExitChain(chain, attach, heads).eval()
    return DescribedModel(used, model, _arch_id(used, chain, files), desc.input_shape,
                          desc.mean, desc.std, desc.classes, chain, backbone, notes)


def load_described(path: Any, with_heads: bool = True) -> DescribedModel:
    """Read a description file and build its model."""
    return build_described(load_description(path), with_heads)


def verify_cuts(dm: DescribedModel, frames: int = 2, seed: int = 0) -> float:
    """
    Check that every split of every exit equals that exit's unsplit forward.

    Returns the largest absolute difference seen (0.0: bit-identical); raises CutError when a
    split differs beyond float rounding, naming the exit and split.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((frames,) + tuple(dm.input_shape), generator=g)
    worst = 0.0
    with torch.no_grad():
        if dm.backbone is not None:   # the cut chain against the module it was cut from
            full = dm.backbone(x)
            last = dm.model.run(x, dm.num_exits)
            worst = float((last - full).abs().max())
            if worst > 1e-5 * max(1.0, float(full.abs().max())):
                raise CutError(f'{dm.model_id}: the cut chain differs from the model\'s own '
                               f'forward by {worst:g}')
        for e in range(1, dm.num_exits + 1):
            full = dm.model.run(x, e)
            for s in range(dm.model.branch_len(e) + 1):
                mid = dm.model.run(x, e, 0, s)
                out = dm.model.run(mid, e, s)
                d = float((out - full).abs().max())
                worst = max(worst, d)
                if d > 1e-5 * max(1.0, float(full.abs().max())):
                    raise CutError(f'{dm.model_id}: exit {e} split {s} differs from the '
                                   f'unsplit forward by {d:g}')
    return worst


def model_table(dm: DescribedModel) -> Dict[str, Any]:
    """Return the torch-free table of ``dm`` (see ``DescribedModel.table``)."""
    exits = []
    if dm.chain is None:      # the shipped AlexNet: its layer table
        cfg = dm.model.cfg
        for e in range(1, dm.num_exits + 1):
            rows = [{'name': r.name, 'kinds': [r.kind], 'out_shape': list(r.out_shape),
                     'out_bytes': r.out_bytes, 'flops': r.flops} for r in layer_table(cfg, e)]
            exits.append({'exit': e, 'attach': EXIT_ATTACH.get(e), 'layers': rows})
    else:
        ch = dm.chain
        trunk = []
        for i, ops in enumerate(ch.ops):
            c = ch.cuts[i + 1]
            trunk.append({'name': c.module or c.name, 'node': c.name,
                          'kinds': [o.kind for o in ops], 'out_shape': list(c.shape),
                          'out_bytes': 4 * c.numel, 'flops': sum(o.flops for o in ops),
                          'params': sum(o.params for o in ops),
                          'ops': [o.to_dict() for o in ops]})
        for k, a in enumerate(dm.model.attach):
            head = dm.model.heads[k]
            layers = trunk[:a] + [{'name': f'exit{k + 1}_head', 'node': '',
                                   'kinds': ['head'], 'out_shape': [len(dm.classes)],
                                   'out_bytes': 4 * len(dm.classes),
                                   'flops': _head_flops(head, ch.cuts[a].shape),
                                   'params': sum(p.numel() for p in head.parameters())}]
            exits.append({'exit': k + 1, 'attach': a, 'layers': layers})
        exits.append({'exit': dm.num_exits, 'attach': None, 'layers': trunk})
    return {'format': TABLE_FORMAT, 'model_id': dm.model_id, 'name': dm.desc.name,
            'input_shape': list(dm.input_shape), 'classes': list(dm.classes),
            'frame_bytes': numel(dm.input_shape), 'exits': exits, 'notes': list(dm.notes)}


def _head_flops(head: nn.Module, in_shape: Sequence[int]) -> int:
    flops = 0
    shape = tuple(in_shape)
    for m in head.modules():
        if isinstance(m, nn.Conv2d):
            flops += 2 * m.out_channels * shape[1] * shape[2] * m.in_channels * \
                m.kernel_size[0] * m.kernel_size[1] // m.groups
        elif isinstance(m, nn.Linear):
            flops += 2 * m.in_features * m.out_features
    return int(flops)
