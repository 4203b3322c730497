"""
Joint training of the multi-exit AlexNet (BranchyNet: weighted sum of exit losses).

No rclpy. Standard CIFAR augmentation (random crop with 4-pixel reflect padding, horizontal flip),
SGD with Nesterov momentum and a one-cycle learning-rate schedule, batch norm during training
(folded into the convolutions for deployment). Seeded; progress bar per epoch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
import json
from pathlib import Path
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..core import artifacts
from ..core.arch import AlexNetConfig, NUM_EXITS, SHIPPED_CONFIG
from ..core.model import fold_batchnorm, MultiExitAlexNet, normalize_images
from ..core.weights import save_weights


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (defaults: the shipped model's run)."""

    epochs: int = 14
    batch_size: int = 128
    max_lr: float = 0.1             # one-cycle peak learning rate
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    exit_weights: Sequence[float] = (0.5, 0.5, 0.7, 0.85, 1.0)  # BranchyNet loss weights
    seed: int = 0
    threads: int = 2
    train_limit: Optional[int] = None   # use only the first N training images (tests)
    eval_every: int = 1
    model: AlexNetConfig = field(default_factory=lambda: SHIPPED_CONFIG)


def augment(xb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random 32x32 crop of a 4-pixel reflect-padded batch + random horizontal flip (B,3,32,32)."""
    b = xb.shape[0]
    padded = F.pad(xb, (4, 4, 4, 4), mode='reflect')
    ox = torch.randint(0, 9, (b,), generator=gen)
    oy = torch.randint(0, 9, (b,), generator=gen)
    idx = torch.arange(32)
    rows = (oy[:, None] + idx[None, :])[:, None, :, None].expand(b, 3, 32, 32)
    cols = (ox[:, None] + idx[None, :])[:, None, None, :].expand(b, 3, 32, 32)
    # gather rows then columns (two cheap gathers instead of a Python loop)
    out = padded.gather(2, rows[:, :, :, :1].expand(b, 3, 32, 40))
    out = out.gather(3, cols)
    flip = torch.rand(b, generator=gen) < 0.5
    out[flip] = out[flip].flip(3)
    return out


@torch.no_grad()
def evaluate(model: MultiExitAlexNet, x_u8: np.ndarray, y: np.ndarray,
             batch_size: int = 500) -> List[float]:
    """Return top-1 accuracy of every exit on uint8 NHWC images ``x_u8`` with labels ``y``."""
    model.eval()
    correct = np.zeros(NUM_EXITS, dtype=np.int64)
    for i in range(0, len(x_u8), batch_size):
        xb = normalize_images(torch.from_numpy(x_u8[i:i + batch_size]))
        xb = xb.contiguous(memory_format=torch.channels_last)
        yb = torch.from_numpy(y[i:i + batch_size])
        for e, logits in enumerate(model.forward_all(xb)):
            correct[e] += int((logits.argmax(1) == yb).sum())
    return (correct / max(len(x_u8), 1)).tolist()


def train(cfg: TrainConfig, x_train: np.ndarray, y_train: np.ndarray,
          x_test: np.ndarray, y_test: np.ndarray,
          progress: bool = True, log: Callable[[str], None] = print) -> Dict:
    """Train jointly; return ``{'model': deploy model, 'history': [...], 'test_top1': [...]}``."""
    if len(cfg.exit_weights) != NUM_EXITS:
        raise ValueError(f'exit_weights needs {NUM_EXITS} values, got {len(cfg.exit_weights)}')
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    gen = torch.Generator().manual_seed(cfg.seed)
    if cfg.train_limit:  # the archives are sorted by class: take a seeded random subset
        keep = torch.randperm(len(x_train), generator=gen)[:cfg.train_limit].numpy()
        x_train, y_train = x_train[keep], y_train[keep]
    n = len(x_train)
    steps_per_epoch = (n + cfg.batch_size - 1) // cfg.batch_size
    model = MultiExitAlexNet(cfg.model, batchnorm=True).to(memory_format=torch.channels_last)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim == 1 else decay).append(p)
    opt = torch.optim.SGD([{'params': decay, 'weight_decay': cfg.weight_decay},
                           {'params': no_decay, 'weight_decay': 0.0}],
                          lr=cfg.max_lr, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.max_lr, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch,
        pct_start=max(0.25, 2.0 / (cfg.epochs * steps_per_epoch)))  # >= 2 warm-up steps
    weights = torch.tensor(cfg.exit_weights, dtype=torch.float32)
    xt = torch.from_numpy(x_train)
    yt = torch.from_numpy(y_train)
    history = []
    t_start = time.time()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen)
        it = range(steps_per_epoch)
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(it, desc=f'epoch {epoch}/{cfg.epochs}', unit='batch', file=sys.stderr,
                       dynamic_ncols=True, mininterval=1.0)
            it = bar
        loss_sum = torch.zeros(NUM_EXITS)
        for step in it:
            idx = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            xb = augment(normalize_images(xt[idx]), gen).contiguous(
                memory_format=torch.channels_last)
            yb = yt[idx]
            outs = model.forward_all(xb)
            losses = torch.stack([F.cross_entropy(o, yb, label_smoothing=cfg.label_smoothing)
                                  for o in outs])
            loss = (losses * weights).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += losses.detach()
            if bar is not None and step % 20 == 0:
                bar.set_postfix(loss=f'{float(loss):.3f}', lr=f'{sched.get_last_lr()[0]:.3f}')
        if bar is not None:
            bar.close()
        row = {'epoch': epoch, 'train_loss': (loss_sum / steps_per_epoch).tolist(),
               'elapsed_s': round(time.time() - t_start, 1)}
        if cfg.eval_every and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            row['test_top1'] = evaluate(model, x_test, y_test)
        history.append(row)
        log(json.dumps(row))
    deploy = fold_batchnorm(model.to(memory_format=torch.contiguous_format))
    test_top1 = evaluate(deploy, x_test, y_test)
    return {'model': deploy, 'history': history, 'test_top1': test_top1,
            'train_config': {k: v for k, v in asdict(cfg).items() if k != 'model'},
            'elapsed_s': round(time.time() - t_start, 1)}


def write_training_report(result: Dict, out_dir: Path, n_test: int) -> Dict:
    """Write weights, accuracy table and plots of a finished run into ``out_dir``."""
    model = result['model']
    out_dir.mkdir(parents=True, exist_ok=True)
    save_weights(model, out_dir / artifacts.WEIGHTS_FILE)
    table = {
        'model_id': model.model_id,
        'dataset': f'CIFAR-10 test (JPEG), {n_test} images',
        'exits': [{'exit': e + 1, 'top1': round(a, 4)} for e, a in enumerate(result['test_top1'])],
        'params': int(sum(p.numel() for p in model.parameters())),
        'train_config': result['train_config'],
        'history': result['history'],
        'train_time_s': result['elapsed_s'],
    }
    artifacts.save_json(table, out_dir / artifacts.ACCURACY_FILE, artifacts.ACCURACY_FORMAT)
    plot_training(result['history'], result['test_top1'], out_dir / 'training.png')
    return table


def plot_training(history: List[Dict], final_top1: Sequence[float], path: Path) -> None:
    """Save a PNG: per-exit test accuracy bars and training curves."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (a0, a1, a2) = plt.subplots(1, 3, figsize=(15, 4))
    exits = list(range(1, NUM_EXITS + 1))
    a0.bar(exits, [100 * a for a in final_top1], color='tab:blue')
    for e, a in zip(exits, final_top1):
        a0.text(e, 100 * a + 0.5, f'{100 * a:.1f}', ha='center')
    a0.set(xlabel='exit', ylabel='test top-1 (%)', title='Accuracy per exit',
           ylim=(0, 100))
    ep = [h['epoch'] for h in history]
    for e in range(NUM_EXITS):
        a1.plot(ep, [h['train_loss'][e] for h in history], label=f'exit {e + 1}')
        pts = [(h['epoch'], 100 * h['test_top1'][e]) for h in history if 'test_top1' in h]
        a2.plot([p[0] for p in pts], [p[1] for p in pts], marker='o', label=f'exit {e + 1}')
    a1.set(xlabel='epoch', ylabel='train loss', title='Training loss')
    a2.set(xlabel='epoch', ylabel='test top-1 (%)', title='Test accuracy')
    a1.legend()
    a2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
