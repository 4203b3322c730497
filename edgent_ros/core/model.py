"""
BranchyNet-style multi-exit AlexNet for 32x32x3 input (CIFAR-10), as in the Edgent paper.

The whole model is an explicit list of layers per branch, so a split point is a list index:
for exit ``e`` (1-based) and split ``s`` in ``[0, len(branch(e))]``, running layers ``[0, s)`` on
the robot and ``[s, end)`` on the edge gives exactly the full forward of that branch.

The five branches share the AlexNet trunk; exit ``e < 5`` leaves the trunk after the attach point
of that exit and finishes with a small side head (BranchyNet). Layer kinds are the ones the Edgent
paper profiles: ``conv``, ``relu``, ``pool``, ``dropout``, ``fc`` (LRN is not used: training uses
batch normalization, which is folded into the convolutions for deployment, see ``fold_batchnorm``).

This module never imports rclpy.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .arch import (AlexNetConfig, branch_specs, check_exit, EXIT_ATTACH, INPUT_SHAPE, LayerSpec,
                   MEAN, NUM_EXITS, numel, output_shape, STD)


class FC(nn.Linear):
    """Fully connected layer that flattens its input first ((B, *) -> (B, out))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return super().forward(x.flatten(1))


class ConvBN(nn.Module):
    """Training-time conv + batch norm; folded into one ``nn.Conv2d`` for deployment."""

    def __init__(self, cin: int, spec: LayerSpec):
        super().__init__()
        self.conv = nn.Conv2d(cin, spec.out_channels, spec.kernel, spec.stride, spec.padding,
                              bias=False)
        self.bn = nn.BatchNorm2d(spec.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.bn(self.conv(x))


def build_layer(spec: LayerSpec, in_shape: Sequence[int], batchnorm: bool) -> nn.Module:
    """Instantiate the torch module for ``spec`` given its per-frame input shape."""
    if spec.kind == 'conv':
        if batchnorm:
            return ConvBN(in_shape[0], spec)
        return nn.Conv2d(in_shape[0], spec.out_channels, spec.kernel, spec.stride, spec.padding)
    if spec.kind == 'relu':
        return nn.ReLU(inplace=False)
    if spec.kind == 'pool':
        return nn.MaxPool2d(spec.kernel, spec.stride, spec.padding)
    if spec.kind == 'dropout':
        return nn.Dropout(spec.p)
    if spec.kind == 'fc':
        return FC(numel(in_shape), spec.out_channels)
    raise ValueError(f'unknown layer kind {spec.kind!r}')


class MultiExitAlexNet(nn.Module):
    """
    Five-exit AlexNet whose trunk layers are shared by all branches.

    ``layers`` is a ``ModuleDict`` keyed by layer name; a branch is a list of names, so branch
    ``e`` cut at ``s`` is ``branch(e)[:s]`` and ``branch(e)[s:]``.
    """

    def __init__(self, cfg: Optional[AlexNetConfig] = None, batchnorm: bool = False):
        super().__init__()
        self.cfg = cfg or AlexNetConfig()
        self.batchnorm = batchnorm
        self.layers = nn.ModuleDict()
        self._branches: Dict[int, List[str]] = {}
        for e in range(1, NUM_EXITS + 1):
            shape: Tuple[int, ...] = INPUT_SHAPE
            names = []
            for spec in branch_specs(self.cfg, e):
                if spec.name not in self.layers:
                    self.layers[spec.name] = build_layer(spec, shape, batchnorm)
                names.append(spec.name)
                shape = output_shape(spec, shape)
            self._branches[e] = names

    @property
    def model_id(self) -> str:
        """Architecture id the weights are tied to."""
        return self.cfg.model_id()

    def branch(self, exit_index: int) -> List[nn.Module]:
        """Return the modules of branch ``exit_index`` in order."""
        check_exit(exit_index)
        return [self.layers[n] for n in self._branches[exit_index]]

    def branch_len(self, exit_index: int) -> int:
        """Return the number of layers (= largest split index) of branch ``exit_index``."""
        check_exit(exit_index)
        return len(self._branches[exit_index])

    def run(self, x: torch.Tensor, exit_index: int, start: int = 0,
            stop: Optional[int] = None) -> torch.Tensor:
        """
        Run layers ``[start, stop)`` of branch ``exit_index`` on ``x``.

        ``x`` is the batched input of layer ``start``: ``(B, 3, 32, 32)`` for ``start == 0``.
        """
        n = self.branch_len(exit_index)
        stop = n if stop is None else stop
        if not 0 <= start <= stop <= n:
            raise ValueError(f'need 0 <= start <= stop <= {n} for exit {exit_index}, '
                             f'got start={start}, stop={stop}')
        for name in self._branches[exit_index][start:stop]:
            x = self.layers[name](x)
        return x

    def forward(self, x: torch.Tensor, exit_index: int = NUM_EXITS) -> torch.Tensor:
        """Return logits ``(B, num_classes)`` of one exit."""
        return self.run(x, exit_index)

    def forward_all(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Return the logits of all exits, computing the shared trunk once (for training)."""
        outs: List[torch.Tensor] = []
        trunk = self._branches[NUM_EXITS]
        attach = {v: k for k, v in EXIT_ATTACH.items()}
        for i, name in enumerate(trunk):
            if i in attach:
                e = attach[i]
                outs.append(self.run(x, e, start=i))
            x = self.layers[name](x)
        outs.append(x)
        return outs


def fold_batchnorm(model: MultiExitAlexNet) -> MultiExitAlexNet:
    """Return a deployment copy of ``model`` with every conv+BN folded into one conv."""
    deploy = MultiExitAlexNet(model.cfg, batchnorm=False)
    with torch.no_grad():
        for name, mod in model.layers.items():
            target = deploy.layers[name]
            if isinstance(mod, ConvBN):
                bn = mod.bn
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                target.weight.copy_(mod.conv.weight * scale[:, None, None, None])
                target.bias.copy_(bn.bias - bn.running_mean * scale)
            else:
                target.load_state_dict(mod.state_dict())
    return deploy.eval()


def normalize_images(images_u8: torch.Tensor) -> torch.Tensor:
    """Map uint8 RGB NHWC ``(B, 32, 32, 3)`` to the model's float NCHW input ``(B, 3, 32, 32)``."""
    x = images_u8.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std
