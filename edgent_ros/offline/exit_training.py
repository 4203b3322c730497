"""
Side exits for a model that has none: train heads at chosen cut points on a frozen backbone.

``train_exits`` reads a model description whose ``exits`` name cut points, freezes the backbone
(eval mode, no gradients: its batch-norm statistics and weights stay as shipped), and trains one
head per exit (``core.chain.make_head``) with cross-entropy on labelled images: the bundled
CIFAR-10 resized to the model's input, or an image folder (one sub-folder per class, in the
order of the description's ``classes``). Each batch runs the trunk once, up to the deepest exit,
and every head learns from its cut. Then it measures top-1 of every exit (the final one too) on
the test images, writes the heads (``<name>.exits.safetensors``, tied to the backbone id) and
the accuracy table (``<name>.accuracy.json``, tied to the full model's id). No rclpy.
"""

from __future__ import annotations

from dataclasses import dataclass
import json
from pathlib import Path
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from ..core.artifacts import save_json
from ..core.chain import make_head
from ..core.described import build_described, DescribedModel, save_heads
from ..core.model_desc import load_description, write_description
from ..core.model_plan import ACCURACY_FORMAT, TABLE_FORMAT


@dataclass
class ExitTrainConfig:
    """Hyper-parameters of ``train_exits``."""

    epochs: int = 2
    batch_size: int = 128
    lr: float = 0.01
    weight_decay: float = 5e-4
    threads: int = 1
    seed: int = 0
    train_limit: Optional[int] = None
    max_minutes: float = 0.0      # 0: no wall-time cap


def load_image_folder(root: Path, classes: Sequence[str], size: Tuple[int, int]
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """Images of ``root/<class>/*`` resized to ``size`` (H, W): uint8 RGB NHWC and labels."""
    import cv2
    xs, ys = [], []
    root = Path(root)
    for k, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            raise FileNotFoundError(f'{folder}: no folder for class {name!r} (an image folder '
                                    'has one sub-folder per class of the description)')
        for f in sorted(folder.iterdir()):
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                continue
            img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)
            xs.append(img[:, :, ::-1])
            ys.append(k)
    if not xs:
        raise FileNotFoundError(f'{root}: no readable images')
    return np.stack(xs).astype(np.uint8), np.asarray(ys, dtype=np.int64)


def to_input(dm: DescribedModel, xb_u8: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC at any size -> the model's normalised NCHW input (bilinear resize)."""
    x = xb_u8.permute(0, 3, 1, 2).float().div_(255.0)
    h, w = dm.input_shape[1:]
    if tuple(x.shape[2:]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode='bilinear', align_corners=False)
    mean = torch.tensor(dm.mean).view(1, 3, 1, 1)
    std = torch.tensor(dm.std).view(1, 3, 1, 1)
    return (x - mean) / std


def _trunk_to(dm: DescribedModel, x: torch.Tensor, attach: Sequence[int]
              ) -> Tuple[List[torch.Tensor], torch.Tensor]:
    """Tensors at each attach cut, and the logits of the final exit."""
    at = set(attach)
    feats: Dict[int, torch.Tensor] = {}
    for i, block in enumerate(dm.model.blocks):
        if i in at:
            feats[i] = x
        x = block(x)
    return [feats[a] for a in attach], x


def evaluate_exits(dm: DescribedModel, heads: Sequence[nn.Module], attach: Sequence[int],
                   x_u8: np.ndarray, y: np.ndarray, batch: int = 250) -> List[float]:
    """Top-1 of each side head and of the final exit on ``(x_u8, y)``."""
    correct = np.zeros(len(heads) + 1)
    with torch.no_grad():
        for i in range(0, len(x_u8), batch):
            xb = to_input(dm, torch.from_numpy(x_u8[i:i + batch]))
            yb = torch.from_numpy(y[i:i + batch])
            feats, logits = _trunk_to(dm, xb, attach)
            for k, (h, f) in enumerate(zip(heads, feats)):
                correct[k] += int((h(f).argmax(1) == yb).sum())
            correct[-1] += int((logits.argmax(1) == yb).sum())
    return [float(c / len(x_u8)) for c in correct]


def train_exits(desc_path: Path, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                y_test: np.ndarray, cfg: ExitTrainConfig, dataset: str = '',
                log: Callable[[str], None] = print) -> Dict:
    """Train the side heads of the model at ``desc_path``; write heads and accuracy table."""
    desc = load_description(desc_path)
    if not desc.exits:
        raise ValueError(f'{desc_path}: the description names no exits (exits: [{{cut: ...}}])')
    torch.manual_seed(cfg.seed)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        dm = build_described(desc, with_heads=False)
        chain = dm.chain
        attach = [chain.cut_index(x.cut) for x in desc.exits]
        heads = [make_head(x.head, chain.cuts[a].shape, len(desc.classes), x.hidden)
                 for x, a in zip(desc.exits, attach)]
        for p in dm.model.parameters():
            p.requires_grad_(False)
        params = [p for h in heads for p in h.parameters()]
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True,
                              weight_decay=cfg.weight_decay)
        n = min(len(x_train), cfg.train_limit or len(x_train))
        steps = cfg.epochs * ((n + cfg.batch_size - 1) // cfg.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=max(1, steps))
        gen = torch.Generator().manual_seed(cfg.seed)
        t0 = time.perf_counter()
        step = 0
        stopped = False
        log(f'train-exits: {dm.model_id} backbone frozen, heads at '
            f'{", ".join(x.cut for x in desc.exits)} (cuts {attach}), {n} images x '
            f'{cfg.epochs} epochs, {cfg.threads} threads')
        for epoch in range(cfg.epochs):
            for h in heads:
                h.train()
            order = torch.randperm(len(x_train), generator=gen)[:n].numpy()
            for i in range(0, n, cfg.batch_size):
                idx = order[i:i + cfg.batch_size]
                xb = torch.from_numpy(x_train[idx])
                flip = torch.rand(len(idx), generator=gen) < 0.5
                xb[flip] = xb[flip].flip(2)
                with torch.no_grad():
                    feats, _ = _trunk_to(dm, to_input(dm, xb), attach)
                yb = torch.from_numpy(y_train[idx])
                loss = sum(F.cross_entropy(h(f), yb) for h, f in zip(heads, feats))
                opt.zero_grad()
                loss.backward()
                opt.step()
                if step < steps - 1:
                    sched.step()
                step += 1
                el = time.perf_counter() - t0
                if step % 50 == 0 or step == steps:
                    log(f'  epoch {epoch + 1}/{cfg.epochs} step {step}/{steps} loss '
                        f'{loss.item() / len(heads):.3f}  {step * cfg.batch_size / el:.0f} img/s'
                        f'  elapsed {el / 60:.1f} min, ETA {el / step * (steps - step) / 60:.1f}'
                        ' min')
                if cfg.max_minutes and el > 60 * cfg.max_minutes:
                    stopped = True
                    break
            if stopped:
                log(f'  stopped at the {cfg.max_minutes:g} min cap')
                break
        for h in heads:
            h.eval()
        train_min = (time.perf_counter() - t0) / 60
        log(f'evaluating {len(x_test)} test images ...')
        top1 = evaluate_exits(dm, heads, attach, x_test, y_test)
    finally:
        torch.set_num_threads(old_threads)
    heads_path = desc.exit_weights or desc.derived('.exits.safetensors')
    save_heads(desc, chain, heads, heads_path,
               {'train_minutes': f'{train_min:.2f}', 'dataset': dataset,
                'top1': json.dumps([round(v, 4) for v in top1])})
    if desc.exit_weights is None:
        desc.exit_weights = heads_path.resolve()
        write_description(desc, desc.path)
    full = build_described(desc)
    cuts = [x.cut for x in desc.exits] + ['final']
    rows = [{'exit': k + 1, 'top1': v, 'cut': cuts[k]} for k, v in enumerate(top1)]
    acc_path = desc.derived('.accuracy.json')
    save_json({'model_id': full.model_id, 'exits': rows, 'dataset': dataset,
               'images': int(len(x_test)), 'train_minutes': round(train_min, 2)},
              acc_path, ACCURACY_FORMAT)
    table_path = desc.derived('.table.json')
    save_json({k: v for k, v in full.table().items() if k != 'format'}, table_path,
              TABLE_FORMAT)
    log('  exit  cut                top-1')
    for r in rows:
        log(f'  {r["exit"]:>4}  {r["cut"]:<18} {100 * r["top1"]:6.2f} %')
    return {'model_id': full.model_id, 'exits': rows, 'heads': str(heads_path),
            'accuracy': str(acc_path), 'table': str(table_path),
            'train_minutes': round(train_min, 2)}
