"""
A model as data: the description file (YAML or JSON) that tells the package how to build one.

Read without torch (the planner needs none). Fields (paths relative to the description file)::

    format: edgent_ros/model/1
    name: resnet64                      # short name; files derived from it
    factory: edgent_ros.models.resnet_cifar:resnet_cifar64   # or my_models/net.py:build
    factory_args: {width: 16}           # keyword arguments of the factory (optional)
    weights: resnet64.safetensors       # the backbone's state dict (optional: random weights)
    input: {shape: [3, 64, 64], mean: [..3..], std: [..3..]}   # RGB, values / 255 first
    classes: [airplane, ...]            # or an integer (class ids as labels)
    granularity: block                  # block | layer (core.chain)
    block_depth: 2
    exits:                              # side exits, each at a cut point (module path)
      - {cut: layer1, head: pool_fc}
      - {cut: layer2, head: conv_pool_fc, hidden: 64}
    exit_weights: resnet64.exits.safetensors   # the heads (edgent-ros train-exits writes it)

or, for the package's own 5-exit AlexNet, ``architecture: alexnet5`` (its weights file holds
the widths). A shipped model can be named by its short name (``resnet64``, ``alexnet5``).
``load_description`` refuses a malformed file naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import json
from pathlib import Path
import re
from typing import Any, Dict, List, Optional, Tuple

import yaml

from .artifacts import ARTIFACT_DIR

MODEL_FORMAT = 'edgent_ros/model/1'
SHIPPED_ARCHITECTURES = ('alexnet5',)
_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$')
_FACTORY = re.compile(r'^[^:]+:[A-Za-z_][A-Za-z0-9_]*$')


class DescriptionError(ValueError):
    """A model description that is missing, unreadable or malformed."""


@dataclass(frozen=True)
class ExitSpec:
    """A side exit: the cut it reads and its head."""

    cut: str
    head: str = 'pool_fc'
    hidden: int = 0


@dataclass
class ModelDescription:
    """What ``load_description`` returns; paths are absolute."""

    name: str
    path: Optional[Path] = None              # the description file itself
    architecture: str = ''                   # a shipped architecture, or '' (factory)
    factory: str = ''
    factory_args: Dict[str, Any] = field(default_factory=dict)
    weights: Optional[Path] = None
    input_shape: Tuple[int, int, int] = (3, 32, 32)
    mean: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    classes: Tuple[str, ...] = ()
    granularity: str = 'block'
    block_depth: int = 2
    exits: Tuple[ExitSpec, ...] = ()
    exit_weights: Optional[Path] = None

    @property
    def base_dir(self) -> Path:
        """The folder relative paths of the description resolve against."""
        return self.path.parent if self.path else Path.cwd()

    def derived(self, suffix: str) -> Path:
        """``<folder>/<name><suffix>``: where a file derived from this model lives by default."""
        return self.base_dir / f'{self.name}{suffix}'

    def files(self, table: Any = None, latency: Any = None, accuracy: Any = None
              ) -> Dict[str, Path]:
        """
        Return the model's planning files: layer table, block latencies, accuracy.

        Each is ``<folder>/<name>.<key>.json`` unless a path is given for it ('' or None: the
        default), as the ``--table`` / ``latency_models_path`` / ``accuracy_path`` options do.
        """
        given = {'table': table, 'latency': latency, 'accuracy': accuracy}
        return {k: Path(v) if v else self.derived(f'.{k}.json') for k, v in given.items()}

    def to_dict(self) -> Dict[str, Any]:
        """Return the description as it would be written (paths relative to it)."""
        def rel(p: Optional[Path]) -> Optional[str]:
            if p is None:
                return None
            try:
                return str(Path(p).relative_to(self.base_dir))
            except ValueError:
                return str(p)
        if self.architecture:
            out: Dict[str, Any] = {'format': MODEL_FORMAT, 'name': self.name,
                                   'architecture': self.architecture}
            if self.weights:
                out['weights'] = rel(self.weights)
            return out
        out = {'format': MODEL_FORMAT, 'name': self.name, 'factory': self.factory,
               'factory_args': dict(self.factory_args),
               'input': {'shape': list(self.input_shape), 'mean': list(self.mean),
                         'std': list(self.std)},
               'classes': list(self.classes), 'granularity': self.granularity,
               'block_depth': self.block_depth,
               'exits': [{'cut': x.cut, 'head': x.head, **({'hidden': x.hidden}
                                                           if x.hidden else {})}
                         for x in self.exits]}
        if self.weights:
            out['weights'] = rel(self.weights)
        if self.exit_weights:
            out['exit_weights'] = rel(self.exit_weights)
        return out


def _err(path: Any, fieldname: str, msg: str) -> DescriptionError:
    return DescriptionError(f'{path}: {fieldname}: {msg}')


def _numbers(path: Any, name: str, value: Any, n: int, kind: type) -> Tuple[Any, ...]:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise _err(path, name, f'expected a list of {n} numbers, got {value!r}')
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or \
                (kind is int and not float(v).is_integer()):
            raise _err(path, name, f'expected {kind.__name__} values, got {v!r}')
        out.append(kind(v))
    return tuple(out)


def parse_description(body: Any, path: Optional[Path] = None) -> ModelDescription:
    """Validate a description's parsed content; ``path`` (the file) anchors relative paths."""
    where = path or '<description>'
    if not isinstance(body, dict):
        raise DescriptionError(f'{where}: a model description is a mapping, got '
                               f'{type(body).__name__}')
    fmt = body.get('format', MODEL_FORMAT)
    if fmt != MODEL_FORMAT:
        raise _err(where, 'format', f'{fmt!r} is not {MODEL_FORMAT!r} (written by another '
                   'version of edgent_ros?)')
    known = {'format', 'name', 'architecture', 'factory', 'factory_args', 'weights', 'input',
             'classes', 'granularity', 'block_depth', 'exits', 'exit_weights', 'notes'}
    extra = sorted(set(body) - known)
    if extra:
        raise _err(where, extra[0], f'unknown field (known: {", ".join(sorted(known))})')
    name = body.get('name')
    if not isinstance(name, str) or not _NAME.match(name):
        raise _err(where, 'name', f'a short name of letters, digits, _ . - is required, got '
                   f'{name!r}')
    base = Path(path).resolve().parent if path else Path.cwd()

    def file(key: str) -> Optional[Path]:
        v = body.get(key)
        if v is None:
            return None
        if not isinstance(v, str) or not v:
            raise _err(where, key, f'expected a file path, got {v!r}')
        return (base / v).resolve()
    desc = ModelDescription(name=name, path=Path(path).resolve() if path else None,
                            weights=file('weights'), exit_weights=file('exit_weights'))
    arch = body.get('architecture', '')
    if arch:
        if arch not in SHIPPED_ARCHITECTURES:
            raise _err(where, 'architecture', f'{arch!r} is not a shipped architecture '
                       f'({", ".join(SHIPPED_ARCHITECTURES)}); a model of your own names a '
                       '"factory" instead')
        if 'factory' in body:
            raise _err(where, 'factory', 'give either architecture or factory, not both')
        desc.architecture = arch
        return desc
    factory = body.get('factory')
    if not isinstance(factory, str) or not _FACTORY.match(factory):
        raise _err(where, 'factory', 'expected "package.module:function" or '
                   f'"path/to/file.py:function", got {factory!r}')
    desc.factory = factory
    args = body.get('factory_args', {}) or {}
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise _err(where, 'factory_args', f'expected a mapping of keyword arguments, got '
                   f'{args!r}')
    desc.factory_args = dict(args)
    inp = body.get('input')
    if not isinstance(inp, dict) or 'shape' not in inp:
        raise _err(where, 'input', 'expected {shape: [3, H, W], mean: [..], std: [..]}')
    shape = _numbers(where, 'input.shape', inp['shape'], 3, int)
    if shape[0] != 3 or min(shape) < 1:
        raise _err(where, 'input.shape', f'expected [3, H, W] (RGB), got {list(shape)}')
    desc.input_shape = shape  # type: ignore[assignment]
    desc.mean = _numbers(where, 'input.mean', inp.get('mean', [0, 0, 0]), 3, float)  # type: ignore
    desc.std = _numbers(where, 'input.std', inp.get('std', [1, 1, 1]), 3, float)  # type: ignore
    if min(desc.std) <= 0:
        raise _err(where, 'input.std', f'must be > 0, got {list(desc.std)}')
    classes = body.get('classes')
    if isinstance(classes, int) and not isinstance(classes, bool) and classes >= 2:
        desc.classes = tuple(str(k) for k in range(classes))
    elif isinstance(classes, list) and len(classes) >= 2 and \
            all(isinstance(c, str) for c in classes):
        desc.classes = tuple(classes)
    else:
        raise _err(where, 'classes', f'expected a list of class names or a count >= 2, got '
                   f'{classes!r}')
    gran = body.get('granularity', 'block')
    if gran not in ('block', 'layer'):
        raise _err(where, 'granularity', f'block or layer, got {gran!r}')
    desc.granularity = gran
    depth = body.get('block_depth', 2)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise _err(where, 'block_depth', f'an integer >= 1, got {depth!r}')
    desc.block_depth = depth
    exits = body.get('exits', []) or []
    if not isinstance(exits, list):
        raise _err(where, 'exits', f'expected a list of {{cut, head}}, got {exits!r}')
    specs: List[ExitSpec] = []
    for k, x in enumerate(exits):
        if not isinstance(x, dict) or not isinstance(x.get('cut'), str):
            raise _err(where, f'exits[{k}]', f'expected {{cut: <cut point>, head: pool_fc}}, '
                       f'got {x!r}')
        head = x.get('head', 'pool_fc')
        if head not in ('pool_fc', 'conv_pool_fc'):
            raise _err(where, f'exits[{k}].head', f'pool_fc or conv_pool_fc, got {head!r}')
        hidden = x.get('hidden', 0)
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 0:
            raise _err(where, f'exits[{k}].hidden', f'an integer >= 0, got {hidden!r}')
        specs.append(ExitSpec(x['cut'], head, hidden))
    if len({s.cut for s in specs}) != len(specs):
        raise _err(where, 'exits', 'two side exits at one cut')
    desc.exits = tuple(specs)
    return desc


def shipped_models() -> List[str]:
    """Return the names of the shipped model descriptions (``alexnet5``, ``resnet64``, ...)."""
    return sorted(p.name[:-len('.model.yaml')] for p in ARTIFACT_DIR.glob('*.model.yaml'))


def resolve(path: Any) -> Path:
    """Return the description file ``path`` names: a file, or a shipped model's short name."""
    p = Path(path)
    if not p.is_file() and str(path) in shipped_models():
        return ARTIFACT_DIR / f'{path}.model.yaml'
    return p


def load_description(path: Any) -> ModelDescription:
    """Read and validate a model description (a ``.yaml``/``.json`` file or a shipped name)."""
    path = resolve(path)
    if not path.is_file():
        raise DescriptionError(f'{path}: model description not found (a file, or one of the '
                               f'shipped models: {", ".join(shipped_models())})')
    text = path.read_text()
    try:
        body = json.loads(text) if path.suffix == '.json' else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise DescriptionError(f'{path}: not valid {"JSON" if path.suffix == ".json" else "YAML"}'
                               f' ({" ".join(str(exc).split())[:200]})') from exc
    return parse_description(body, path)


def write_description(desc: ModelDescription, path: Path) -> None:
    """Write ``desc`` as YAML (``.json``: JSON) at ``path``."""
    path = Path(path)
    desc.path = path.resolve()
    body = desc.to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == '.json':
        path.write_text(json.dumps(body, indent=1) + '\n')
    else:
        path.write_text(yaml.safe_dump(body, sort_keys=False))
