"""
Training of a plain single-exit classifier on CIFAR-10 upsampled to 64x64 (issue 16).

No rclpy. ``factory(**factory_args)`` builds the model (e.g.
``edgent_ros.models.resnet_cifar:resnet_cifar64``). Each batch is augmented at 32x32 (random
crop of a 4-pixel reflect-padded image, horizontal flip), upsampled to 64x64 with bilinear
interpolation and normalized with the CIFAR-10 JPEG mean/std. SGD with Nesterov momentum,
weight decay on conv/linear weights, label smoothing and a one-cycle learning-rate schedule
planned for the requested epochs. A wall-clock cap stops training early (keeping time for the
final evaluation on the 10,000 test images). The weights are saved fp32, batch norm not folded,
with ``safetensors`` metadata naming the factory, its arguments, the input shape and the top-1.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..core.arch import MEAN, STD
from ..core.datasets import load_split
from .training import augment

INPUT_SIZE = 64


def factory_name(factory: Callable) -> str:
    """Return ``'module:qualname'`` of a model factory."""
    return f'{factory.__module__}:{factory.__qualname__}'


def bound_factory_args(factory: Callable, factory_args: Optional[Dict] = None) -> Dict:
    """Return ``factory_args`` completed with the factory's defaults (JSON-serializable)."""
    bound = inspect.signature(factory).bind(**(factory_args or {}))
    bound.apply_defaults()
    return dict(bound.arguments)


def prepare_batch(x_u8: torch.Tensor, gen: Optional[torch.Generator] = None,
                  size: int = INPUT_SIZE) -> torch.Tensor:
    """
    Map uint8 NCHW 32x32 images to the normalized float model input ``(B, 3, size, size)``.

    With a generator, the batch is augmented first (random crop + flip at 32x32).
    """
    x = x_u8.float().div_(255.0)
    if gen is not None:
        x = augment(x, gen)
    x = F.interpolate(x, size=(size, size), mode='bilinear', align_corners=False)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def to_nchw(x_nhwc: np.ndarray) -> torch.Tensor:
    """Return uint8 NHWC images as a contiguous uint8 NCHW tensor."""
    return torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
             batch_size: int = 500) -> float:
    """Return top-1 accuracy of ``model`` on uint8 NCHW 32x32 images ``x`` with labels ``y``."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        logits = model(prepare_batch(x[i:i + batch_size]))
        correct += int((logits.argmax(1) == y[i:i + batch_size]).sum())
    return correct / max(len(x), 1)


def _optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.SGD:
    """Return Nesterov SGD with weight decay on weights of rank > 1 only."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim == 1 else decay).append(p)
    return torch.optim.SGD([{'params': decay, 'weight_decay': weight_decay},
                            {'params': no_decay, 'weight_decay': 0.0}],
                           lr=lr, momentum=0.9, nesterov=True)


def time_batches(factory: Callable, batch_size: int = 128, batches: int = 20, threads: int = 1,
                 factory_args: Optional[Dict] = None, data_dir: Optional[Path] = None,
                 warmup: int = 2) -> float:
    """Return training throughput (images/s) over ``batches`` batches after ``warmup`` ones."""
    torch.set_num_threads(threads)
    x, y = load_split('train', data_dir)
    gen = torch.Generator().manual_seed(0)
    xt, yt = to_nchw(x), torch.from_numpy(y)
    model = factory(**(factory_args or {})).to(memory_format=torch.channels_last)
    model.train()
    opt = _optimizer(model, 0.01, 5e-4)
    t0 = 0.0
    for step in range(warmup + batches):
        if step == warmup:
            t0 = time.perf_counter()
        idx = torch.randint(0, len(xt), (batch_size,), generator=gen)
        loss = F.cross_entropy(model(prepare_batch(xt[idx], gen)), yt[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return batches * batch_size / (time.perf_counter() - t0)


def _fmt_s(seconds: float) -> str:
    """Format seconds as ``H:MM:SS``."""
    s = int(max(seconds, 0))
    return f'{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}'


def train_backbone(factory: Callable, out_path: Path, epochs: int, batch_size: int, lr: float,
                   max_minutes: float, threads: int = 1, seed: int = 0,
                   data_dir: Optional[Path] = None, log: Callable[[str], None] = print,
                   factory_args: Optional[Dict] = None, weight_decay: float = 5e-4,
                   label_smoothing: float = 0.1, log_every: int = 50,
                   train_limit: Optional[int] = None) -> Dict:
    """
    Train ``factory(**factory_args)`` on CIFAR-10 at 64x64, evaluate, save to ``out_path``.

    The one-cycle schedule is planned for ``epochs``; training stops early when the wall time
    since the start (data loading included) plus the estimated final evaluation would pass
    ``max_minutes``. Returns ``{'top1', 'epochs' (completed, fractional), 'epochs_planned',
    'stopped_early', 'train_minutes', 'wall_minutes', 'history', 'out_path', 'params'}``.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0 or max_minutes <= 0 or threads < 1:
        raise ValueError(f'need epochs >= 1, batch_size >= 1, lr > 0, max_minutes > 0, '
                         f'threads >= 1; got {epochs}, {batch_size}, {lr}, {max_minutes}, '
                         f'{threads}')
    t_start = time.time()
    deadline = t_start + 60.0 * max_minutes
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(seed)
    args = bound_factory_args(factory, factory_args)
    x_train, y_train = load_split('train', data_dir)
    x_test, y_test = load_split('test', data_dir)
    xt, yt = to_nchw(x_train), torch.from_numpy(y_train)
    if train_limit:  # the archives are sorted by class: take a seeded random subset
        keep = torch.randperm(len(xt), generator=gen)[:train_limit]
        xt, yt = xt[keep], yt[keep]
    xe, ye = to_nchw(x_test), torch.from_numpy(y_test)
    n = len(xt)
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = epochs * steps_per_epoch
    model = factory(**args).to(memory_format=torch.channels_last)
    n_params = int(sum(p.numel() for p in model.parameters()))
    opt = _optimizer(model, lr, weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=total_steps,
        pct_start=max(0.25, 2.0 / total_steps))  # >= 2 warm-up steps
    log(f'training {factory_name(factory)}({json.dumps(args)}): {n_params:,} parameters, '
        f'{n} training images, {epochs} epochs x {steps_per_epoch} batches of {batch_size}, '
        f'max lr {lr}, {threads} thread(s), cap {max_minutes:g} min')
    history: List[Dict] = []
    t_train = time.time()
    done_steps = 0
    stopped = False
    step_s = 0.0       # time in training steps only (the evaluations excluded)
    eval_s = 0.0       # duration of the last test pass, once one ran
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen)
        loss_sum, seen, correct = 0.0, 0, 0
        t_epoch = time.time()
        for step in range(steps_per_epoch):
            # keep time for the final test pass: the last one measured, else estimated from
            # the training rate (forward only, ~1/3 of a training step per image)
            final_eval_s = eval_s or (1.2 * len(xe) * step_s / (3.0 * done_steps * batch_size)
                                      if done_steps else 0.0)
            if done_steps and time.time() + final_eval_s >= deadline:
                stopped = True
                break
            t_step = time.perf_counter()
            idx = perm[step * batch_size:(step + 1) * batch_size]
            xb, yb = prepare_batch(xt[idx], gen), yt[idx]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step_s += time.perf_counter() - t_step
            done_steps += 1
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
            if (step + 1) % log_every == 0 or step + 1 == steps_per_epoch:
                rate = done_steps * batch_size / step_s
                evals_left = (epochs - epoch + 1) * (eval_s or len(xe) / (3.0 * rate))
                eta = min((total_steps - done_steps) * batch_size / rate + evals_left,
                          deadline - time.time())
                log(f'epoch {epoch}/{epochs} batch {step + 1}/{steps_per_epoch} '
                    f'loss {loss_sum / seen:.3f} train-acc {correct / seen:.3f} '
                    f'lr {sched.get_last_lr()[0]:.4f} {rate:.0f} img/s '
                    f'elapsed {_fmt_s(time.time() - t_train)} ETA {_fmt_s(eta)}')
        if not seen:  # the cap hit at the start of an epoch
            log(f'time cap of {max_minutes:g} min reached after {done_steps}/{total_steps} '
                f'batches: stopping for the final evaluation')
            break
        row = {'epoch': epoch, 'batches': math.ceil(seen / batch_size),
               'train_loss': round(loss_sum / max(seen, 1), 4),
               'train_top1': round(correct / max(seen, 1), 4),
               'epoch_s': round(time.time() - t_epoch, 1)}
        est_eval_s = eval_s or len(xe) * step_s / (3.0 * done_steps * batch_size)
        last = stopped or epoch == epochs
        # the final evaluation follows the loop; skip this one where it would eat into its time
        if not last and time.time() + 2.4 * est_eval_s < deadline:
            t_eval = time.perf_counter()
            row['test_top1'] = round(evaluate(model, xe, ye), 4)
            eval_s = time.perf_counter() - t_eval
        row['elapsed_s'] = round(time.time() - t_train, 1)
        history.append(row)
        log(json.dumps(row))
        if stopped:
            log(f'time cap of {max_minutes:g} min reached after {done_steps}/{total_steps} '
                f'batches: stopping for the final evaluation')
            break
    train_s = time.time() - t_train
    top1 = evaluate(model, xe, ye)
    history[-1]['test_top1'] = round(top1, 4)
    epochs_done = round(done_steps / steps_per_epoch, 3)
    log(f'final test top-1 {top1:.4f} on {len(xe)} images after {epochs_done} epochs, '
        f'training {train_s / 60:.1f} min, wall {(time.time() - t_start) / 60:.1f} min')
    save_backbone(model, Path(out_path), factory, args, top1=top1, epochs=epochs_done,
                  train_minutes=train_s / 60, threads=threads)
    log(f'saved {out_path} ({Path(out_path).stat().st_size / 1e6:.2f} MB)')
    return {'top1': top1, 'epochs': epochs_done, 'epochs_planned': epochs,
            'stopped_early': stopped, 'train_minutes': round(train_s / 60, 2),
            'wall_minutes': round((time.time() - t_start) / 60, 2), 'history': history,
            'out_path': str(out_path), 'params': n_params}


def save_backbone(model: torch.nn.Module, path: Path, factory: Callable, factory_args: Dict,
                  top1: float, epochs: float, train_minutes: float, threads: int,
                  input_shape: Tuple[int, int, int] = (3, INPUT_SIZE, INPUT_SIZE)) -> None:
    """Save the fp32 state dict (batch norm not folded) with the factory metadata."""
    from safetensors.torch import save_file
    state = {k: v.detach().contiguous(memory_format=torch.contiguous_format).clone()
             for k, v in model.state_dict().items()}
    meta = {'factory': factory_name(factory),
            'factory_args': json.dumps(factory_args, sort_keys=True),
            'input': 'x'.join(str(d) for d in input_shape),
            'mean': json.dumps(list(MEAN)), 'std': json.dumps(list(STD)),
            'dataset': 'CIFAR-10 (JPEG) bilinear-upsampled 32->64',
            'top1': f'{top1:.4f}', 'epochs': f'{epochs:g}',
            'train_minutes': f'{train_minutes:.1f}', 'threads': str(threads)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.tmp')
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
