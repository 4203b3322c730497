"""
Any traceable torch classifier as a chain of blocks cut where exactly one tensor crosses.

``cut_chain(module, input_shape)`` traces the module with ``torch.fx`` (symbolic tracing: the
forward is recorded once, no data-dependent Python control flow) and walks its graph in order.
After each node, the values computed so far that later nodes still use are the tensors that
would have to cross the link if the network were cut there; a **cut point** is a place where
exactly one tensor crosses (parameters and buffers are not values: both sides hold the weights).
Inside a residual block the block's input is still needed by the add, so two tensors cross and
the block cannot be cut; between blocks one does.

``granularity`` chooses which of those cut points become split points: ``'block'`` (default)
keeps the ones on the boundary of modules at ``block_depth`` (2: ``layer1.0`` of a ResNet,
``features.3`` of a MobileNetV2, each top-level layer of a plain CNN), ``'layer'`` keeps every
one. The chain's blocks are ``torch.fx.GraphModule`` segments that share the model's parameters:
running block 0..n-1 in turn is the model's forward, exactly (the tests check every cut).

``MultiExitChain`` adds side exits: a head (``make_head``) reads the tensor at a cut. Exit
``e`` (1-based, the last is the model's own output) is a branch of layers like the AlexNet's
(``core.model``): the trunk blocks up to its cut, then its head as one layer; ``run`` /
``branch_len`` / ``forward_all`` have the same meaning, so the co-inference code runs either.

A model that cannot be cut raises ``CutError`` saying where and why. This module never imports
rclpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import linecache
import traceback
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from .arch import numel

GRANULARITIES = ('block', 'layer')
DEFAULT_BLOCK_DEPTH = 2
HEAD_TYPES = ('pool_fc', 'conv_pool_fc')


class CutError(ValueError):
    """A model that cannot be traced or cut; the message says where and why."""


@dataclass
class Op:
    """One leaf operation of a block, with what a latency model needs to know about it."""

    kind: str                   # 'conv', 'dwconv', 'gconv', 'bn', 'relu', 'add', 'fc', ...
    name: str                   # fx node name
    in_shape: Tuple[int, ...]   # per-frame shape of the first tensor input ((), if none)
    out_shape: Tuple[int, ...]  # per-frame output shape
    flops: int                  # multiply-adds count 2
    params: int = 0
    detail: Dict[str, Any] = field(default_factory=dict)   # kernel, stride, groups, ...

    def to_dict(self) -> Dict[str, Any]:
        """Return a JSON-able dict."""
        return {'kind': self.kind, 'name': self.name, 'in_shape': list(self.in_shape),
                'out_shape': list(self.out_shape), 'flops': int(self.flops),
                'params': int(self.params), 'detail': dict(self.detail)}


@dataclass
class Cut:
    """A split point: the single tensor crossing it, after ``index`` blocks."""

    index: int                  # number of trunk blocks before it (0: the input)
    name: str                   # fx node name of the tensor ('input' for the input)
    module: str                 # module path of the node that produced it ('' if none)
    shape: Tuple[int, ...]      # per-frame shape
    dtype: str

    @property
    def numel(self) -> int:
        """Elements of the tensor for one frame."""
        return numel(self.shape)


# ----------------------------------------------------------------------------------- tracing

def _user_frame(exc: BaseException) -> str:
    """Return 'file:line: code' of the deepest frame outside torch in ``exc``'s traceback."""
    where = ''
    for fs in traceback.extract_tb(exc.__traceback__):
        if '/torch/' in fs.filename.replace('\\', '/'):
            continue
        code = (fs.line or linecache.getline(fs.filename, fs.lineno)).strip()
        where = f'{fs.filename}:{fs.lineno}: {code}'
    return where


def trace(module: nn.Module) -> fx.GraphModule:
    """Trace ``module`` with ``torch.fx``; a model that cannot be traced raises CutError."""
    name = type(module).__name__
    try:
        gm = fx.symbolic_trace(module)
    except Exception as exc:   # fx raises TraceError, TypeError, RuntimeError... for the user
        where = _user_frame(exc)
        msg = ' '.join(str(exc).split())
        hint = ('data-dependent Python control flow (if/while on a tensor value, len() or '
                'iteration of a tensor) cannot be traced; move it into a leaf module or '
                'rewrite it with tensor operations' if 'control flow' in msg or 'iterate'
                in msg or 'len(' in msg else 'the forward must be traceable by '
                'torch.fx.symbolic_trace')
        raise CutError(f'cannot trace {name}: {msg[:300]}' + (f' at {where}' if where else '')
                       + f' ({hint})') from exc
    inputs = [n for n in gm.graph.nodes if n.op == 'placeholder']
    if len(inputs) != 1:
        raise CutError(f'{name}.forward takes {len(inputs)} inputs '
                       f'({", ".join(n.name for n in inputs)}); a classifier to cut takes one '
                       'image tensor')
    return gm


def _live_after(nodes: List[fx.Node], i: int, pos: Dict[fx.Node, int]) -> List[fx.Node]:
    """Values computed at or before node ``i`` that a node after ``i`` uses (weights aside)."""
    return [n for n in nodes[:i + 1] if n.op != 'get_attr'
            and any(pos[u] > i for u in n.users)]


def _module_path(gm: fx.GraphModule, node: fx.Node) -> Tuple[str, ...]:
    stack = node.meta.get('nn_module_stack') or {}
    path = []
    for key, val in stack.items():
        path.append(val[0] if isinstance(val, tuple) else str(key))
    if node.op == 'call_module' and (not path or path[-1] != node.target):
        path.append(str(node.target))
    return tuple(path)


def _is_tensor(node: fx.Node) -> bool:
    meta = node.meta.get('tensor_meta')
    return meta is not None and hasattr(meta, 'shape')


# ------------------------------------------------------------------------------------ blocks

def _segment(gm: fx.GraphModule, nodes: List[fx.Node], start: fx.Node, stop: fx.Node,
             pos: Dict[fx.Node, int]) -> fx.GraphModule:
    """Return a GraphModule computing ``stop`` from ``start`` (the nodes after ``start``)."""
    g = fx.Graph()
    env: Dict[fx.Node, fx.Node] = {start: g.placeholder('x')}

    def arg(n: fx.Node) -> fx.Node:
        if n not in env:   # a weight fetched before the segment: fetch it here too
            if n.op != 'get_attr':
                raise CutError(f'internal: {n.name} crosses the cut at {start.name}')
            env[n] = g.node_copy(n, arg)
        return env[n]
    for n in nodes[pos[start] + 1:pos[stop] + 1]:
        env[n] = g.node_copy(n, arg)
    g.output(env[stop])
    seg = fx.GraphModule(gm, g)
    seg.graph.lint()
    return seg


_ACT = {nn.ReLU: 'relu', nn.ReLU6: 'relu6', nn.Hardswish: 'hardswish', nn.SiLU: 'silu',
        nn.GELU: 'gelu', nn.Sigmoid: 'sigmoid', nn.Hardsigmoid: 'hardsigmoid',
        nn.Tanh: 'tanh', nn.LeakyReLU: 'leaky_relu'}
_FUNC = {'relu': 'relu', 'relu6': 'relu6', 'hardswish': 'hardswish', 'silu': 'silu',
         'gelu': 'gelu', 'sigmoid': 'sigmoid', 'hardsigmoid': 'hardsigmoid', 'tanh': 'tanh',
         'add': 'add', 'iadd': 'add', 'mul': 'mul', 'cat': 'concat', 'flatten': 'flatten',
         'mean': 'mean', 'adaptive_avg_pool2d': 'adaptive_pool', 'max_pool2d': 'maxpool',
         'avg_pool2d': 'avgpool', 'dropout': 'dropout', 'linear': 'fc', 'conv2d': 'conv',
         'reshape': 'flatten', 'view': 'flatten', 'contiguous': 'flatten',
         'size': 'shape', 'getitem': 'shape', 'leaky_relu': 'leaky_relu'}


def _shape(node: Any) -> Tuple[int, ...]:
    if isinstance(node, fx.Node) and _is_tensor(node):
        return tuple(int(d) for d in node.meta['tensor_meta'].shape[1:])
    return ()


def op_of(gm: fx.GraphModule, node: fx.Node) -> Optional[Op]:
    """Describe one graph node as a leaf op (None for inputs, outputs and weight fetches)."""
    if node.op in ('placeholder', 'output', 'get_attr'):
        return None
    first = next((a for a in node.all_input_nodes if a.op != 'get_attr'), None)
    ins, out = _shape(first), _shape(node)
    on = numel(out)
    if node.op == 'call_module':
        m = gm.get_submodule(str(node.target))
        params = sum(p.numel() for p in m.parameters(recurse=False))
        if isinstance(m, nn.Conv2d):
            cin_g = m.in_channels // m.groups
            kind = 'conv' if m.groups == 1 else \
                'dwconv' if m.groups == m.in_channels == m.out_channels else 'gconv'
            k = m.kernel_size[0] * m.kernel_size[1]
            return Op(kind, node.name, ins, out, 2 * on * cin_g * k, params,
                      {'kernel': list(m.kernel_size), 'stride': list(m.stride),
                       'groups': m.groups, 'in_channels': m.in_channels,
                       'out_channels': m.out_channels})
        if isinstance(m, nn.Linear):
            return Op('fc', node.name, ins, out, 2 * m.in_features * m.out_features, params,
                      {'in_features': m.in_features, 'out_features': m.out_features})
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return Op('bn', node.name, ins, out, 2 * on, params)
        for cls, kind in _ACT.items():
            if isinstance(m, cls):
                return Op(kind, node.name, ins, out, on, params)
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            k = m.kernel_size if isinstance(m.kernel_size, int) else \
                m.kernel_size[0] * m.kernel_size[1]
            k = k * k if isinstance(m.kernel_size, int) else k
            kind = 'maxpool' if isinstance(m, nn.MaxPool2d) else 'avgpool'
            return Op(kind, node.name, ins, out, on * k, params, {'kernel': k})
        if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            return Op('adaptive_pool', node.name, ins, out, numel(ins), params)
        if isinstance(m, nn.Dropout):
            return Op('dropout', node.name, ins, out, 0, params)
        if isinstance(m, nn.Flatten):
            return Op('flatten', node.name, ins, out, 0, params)
        if isinstance(m, nn.Identity):
            return Op('identity', node.name, ins, out, 0, params)
        return Op(f'other:{type(m).__name__}', node.name, ins, out, 0, params)
    target = node.target if isinstance(node.target, str) else \
        getattr(node.target, '__name__', str(node.target))
    kind = _FUNC.get(target.strip('_'), f'other:{target}')
    if kind == 'shape':
        return None
    flops = on if kind in ('relu', 'relu6', 'hardswish', 'silu', 'gelu', 'sigmoid',
                           'hardsigmoid', 'tanh', 'add', 'mul', 'leaky_relu') else \
        numel(ins) if kind in ('mean', 'adaptive_pool') else 0
    return Op(kind, node.name, ins, out, flops)


@dataclass
class Chain:
    """The blocks of a cut model and the cut before each (``cuts[i]`` feeds ``blocks[i]``)."""

    blocks: List[fx.GraphModule]
    cuts: List[Cut]                  # len(blocks) + 1: cuts[0] = input, cuts[-1] = logits
    ops: List[List[Op]]              # per block

    def __len__(self) -> int:
        return len(self.blocks)

    def cut_index(self, name: str) -> int:
        """
        Return the index of the cut named ``name``.

        A node name or a block's module path (``layer2.1``) names the cut after it; a module
        that holds several blocks (``layer2``) names the cut after its last block.
        """
        for c in self.cuts:
            if name in (c.name, c.module):
                return c.index
        inside = [c.index for c in self.cuts[1:-1] if c.module.startswith(name + '.')]
        if inside:
            return max(inside)
        raise CutError(f'no cut point named {name!r}; cut points: '
                       f'{", ".join(c.module or c.name for c in self.cuts[1:-1])}')


def cut_chain(module: nn.Module, input_shape: Sequence[int], granularity: str = 'block',
              block_depth: int = DEFAULT_BLOCK_DEPTH) -> Chain:
    """
    Cut ``module`` (a classifier of one ``(B, *input_shape)`` tensor) into a ``Chain``.

    Raises CutError when the model cannot be traced, takes several inputs, returns something
    other than one tensor, or has no point between input and output where one tensor crosses.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f'granularity must be one of {GRANULARITIES}, got {granularity!r}')
    if int(block_depth) < 1:
        raise ValueError(f'block_depth must be >= 1, got {block_depth!r}')
    module = module.eval()
    gm = trace(module)
    name = type(module).__name__
    example = torch.zeros((1,) + tuple(int(d) for d in input_shape))
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(example)
    except Exception as exc:
        raise CutError(f'{name} does not run on an input of shape {tuple(example.shape)}: '
                       f'{" ".join(str(exc).split())[:300]}') from exc
    nodes = list(gm.graph.nodes)
    pos = {n: i for i, n in enumerate(nodes)}
    out_node = nodes[-1]
    result = out_node.args[0]
    if not isinstance(result, fx.Node) or not _is_tensor(result):
        raise CutError(f'{name} returns {type(result).__name__}, not one logits tensor; wrap it '
                       'so that forward returns the class scores alone')
    start = nodes[0]
    points = [start]      # nodes whose value is the single tensor crossing a cut
    single_any = False
    worst: Tuple[int, str] = (0, '')
    for i in range(1, pos[result]):
        live = _live_after(nodes, i, pos)
        if len(live) != 1:
            if len(live) > worst[0]:
                worst = (len(live), f'after {nodes[i].name}: {", ".join(n.name for n in live)}')
            continue
        crossing = live[0]
        if crossing is points[-1] or not _is_tensor(crossing) or crossing is result:
            continue
        single_any = True
        if granularity == 'block':
            nxt = next((n for n in nodes[i + 1:] if n.op != 'get_attr'), None)
            here = _module_path(gm, crossing)[:block_depth]
            there = _module_path(gm, nxt)[:block_depth] if nxt is not None else ()
            if here == there and here:
                continue
        points.append(crossing)
    if not single_any:
        raise CutError(f'{name} has no cut point: between its input and its output at least '
                       f'two tensors cross everywhere (most: {worst[0]}, {worst[1]})')
    points.append(result)
    blocks, cuts, ops = [], [], []
    for j, p in enumerate(points):
        shape = _shape(p)
        path = _module_path(gm, p) if p is not start else ()
        if granularity == 'block':
            path = path[:block_depth]
        module_path = path[-1] if path else ''
        cuts.append(Cut(j, 'input' if p is start else p.name, module_path, shape,
                        str(p.meta['tensor_meta'].dtype).replace('torch.', '')))
        if j + 1 < len(points):
            q = points[j + 1]
            blocks.append(_segment(gm, nodes, p, q, pos))
            ops.append([o for o in (op_of(gm, n) for n in nodes[pos[p] + 1:pos[q] + 1])
                        if o is not None])
    return Chain(blocks, cuts, ops)


# ------------------------------------------------------------------------------------- heads

def make_head(head_type: str, in_shape: Sequence[int], num_classes: int,
              hidden: int = 0) -> nn.Module:
    """
    Return a side-exit head for a cut of per-frame shape ``in_shape``.

    ``pool_fc``: global average pool (of a ``(C, H, W)`` map) then a linear layer;
    ``conv_pool_fc``: a 3x3 conv of ``hidden`` channels + BN + ReLU first.
    A ``(F,)`` feature vector gets the linear layer alone.
    """
    if head_type not in HEAD_TYPES:
        raise ValueError(f'head type must be one of {HEAD_TYPES}, got {head_type!r}')
    shape = tuple(int(d) for d in in_shape)
    if len(shape) == 1:
        return nn.Sequential(nn.Linear(shape[0], num_classes))
    if len(shape) != 3:
        raise ValueError(f'a head reads a (C, H, W) map or an (F,) vector, got {shape}')
    c = shape[0]
    layers: List[nn.Module] = []
    if head_type == 'conv_pool_fc':
        h = int(hidden) or c
        layers += [nn.Conv2d(c, h, 3, padding=1, bias=False), nn.BatchNorm2d(h), nn.ReLU()]
        c = h
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)


class MultiExitChain(nn.Module):
    """
    A cut model with side exits: ``heads[k]`` reads the tensor at trunk cut ``attach[k]``.

    Exits are 1..len(attach)+1 in trunk order (side exits sorted by their cut); the last is
    the model's own output. Branch ``e < last`` = trunk blocks ``[0, attach)`` + its head;
    the last branch = all trunk blocks.
    """

    def __init__(self, chain: Chain, attach: Sequence[int], heads: Sequence[nn.Module]):
        super().__init__()
        if len(attach) != len(heads):
            raise ValueError(f'{len(attach)} attach points for {len(heads)} heads')
        order = sorted(range(len(attach)), key=lambda k: attach[k])
        self.attach = [int(attach[k]) for k in order]
        n = len(chain)
        for a in self.attach:
            if not 1 <= a < n:
                raise ValueError(f'a side exit attaches to a cut 1..{n - 1}, got {a}')
        if len(set(self.attach)) != len(self.attach):
            raise ValueError(f'two side exits at one cut: {self.attach}')
        self.chain = chain
        self.blocks = nn.ModuleList(chain.blocks)
        self.heads = nn.ModuleList([heads[k] for k in order])

    @property
    def num_exits(self) -> int:
        """Side exits + the final exit."""
        return len(self.attach) + 1

    def _check_exit(self, exit_index: int) -> None:
        if isinstance(exit_index, bool) or not isinstance(exit_index, int) \
                or not 1 <= exit_index <= self.num_exits:
            raise ValueError(f'exit_index must be an integer in 1..{self.num_exits}, got '
                             f'{exit_index!r}')

    def branch(self, exit_index: int) -> List[nn.Module]:
        """Return the layers (modules) of branch ``exit_index`` in order."""
        self._check_exit(exit_index)
        if exit_index == self.num_exits:
            return list(self.blocks)
        a = self.attach[exit_index - 1]
        return list(self.blocks[:a]) + [self.heads[exit_index - 1]]

    def branch_len(self, exit_index: int) -> int:
        """Return the number of layers (= largest split index) of branch ``exit_index``."""
        return len(self.branch(exit_index))

    def run(self, x: torch.Tensor, exit_index: int, start: int = 0,
            stop: Optional[int] = None) -> torch.Tensor:
        """Run layers ``[start, stop)`` of branch ``exit_index`` on ``x`` (batched)."""
        layers = self.branch(exit_index)
        n = len(layers)
        stop = n if stop is None else stop
        if not 0 <= start <= stop <= n:
            raise ValueError(f'need 0 <= start <= stop <= {n} for exit {exit_index}, '
                             f'got start={start}, stop={stop}')
        for layer in layers[start:stop]:
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor, exit_index: Optional[int] = None) -> torch.Tensor:
        """Return the logits of one exit (default: the last)."""
        return self.run(x, self.num_exits if exit_index is None else exit_index)

    def forward_all(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Return the logits of every exit, computing the shared trunk once."""
        outs = []
        at = {a: k for k, a in enumerate(self.attach)}
        for i, block in enumerate(self.blocks):
            if i in at:
                outs.append(self.heads[at[i]](x))
            x = block(x)
        outs.append(x)
        return outs
