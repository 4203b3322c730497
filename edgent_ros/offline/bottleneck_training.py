"""
Training and measuring learned bottlenecks at trunk cuts (issue 21), backbone frozen.

Each ``BottleneckSpec`` (``core.bottleneck``) is an encoder on the robot and a decoder on the
edge around one trunk cut. They are trained by **distillation** from the shipped model, which
stays frozen: for a batch of trunk activations ``f`` at the cut, the encoder's maps are
quantised int8 per frame exactly as ``core.codec.quantize_int8`` does on the link (simulated
with a straight-through estimator: the forward pass sees the int8 values, the gradient passes
as if unrounded), the decoder restores ``f_hat``, and the loss is

``feature_weight * |f_hat - f|^2 / mean(f^2)``  (normalised feature MSE at the cut)
``+ distill_weight * mean_e T^2 KL(softmax(teacher_e / T) || softmax(student_e / T))``
``+ label_weight * mean_e CE(student_e, label)``
``+ deep_weight * |a_hat - a|^2 / mean(a^2)``  (at pool5, the classifier's input, if after the cut)

over **every exit ``e`` whose branch holds the cut** (``served_exits``): the frozen model runs
on from the cut once along the trunk, the side heads branch off where they attach. Since the
backbone is frozen, the activations at every cut and the teacher logits are computed once per
run (``precompute``; with ``flip`` also for the mirrored images, the only augmentation), and a
training step costs the bottleneck plus the forward/backward of the frozen suffix.

``measure_bottlenecks`` gives, on labelled test images, top-1 per (exit, split, ``bn<c>``)
with every frame sent through the real codec (``codec.encode(z, 'bn4')`` / ``decode``: per
frame int8, one byte per element), the exact payload bytes and the encode (encoder + int8) and
decode (dequantisation + decoder) time per frame at batch 1, like ``offline.accuracy`` times
the codecs. ``merge_into_accuracy`` adds those rows to the accuracy table's
``encodings.configs`` and a ``bottlenecks`` section, keeping every other row as it was.

No rclpy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
import json
import math
from pathlib import Path
import sys
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..core.arch import layer_flops, LayerSpec, output_shape
from ..core.bottleneck import (Bottleneck, BottleneckError, BottleneckSet, BottleneckSpec,
                               spec_for, Trunk, trunk_of)
from ..core.codec import bottleneck_width, decode, encode, ENCODING_INT8
from ..core.model import normalize_images

TIME_SAMPLE = 100     # frames timed per bottleneck (median), as offline.accuracy does


@dataclass
class BottleneckTrainConfig:
    """Hyper-parameters of one run (defaults: the shipped set's; 694 s on 2 cores)."""

    epochs: int = 10
    split_epochs: Dict[int, int] = field(default_factory=dict)   # epochs at some splits
    batch_size: int = 128
    lr: float = 1e-2                 # AdamW peak learning rate (one-cycle schedule)
    weight_decay: float = 1e-4
    feature_weight: float = 1.0      # normalised feature MSE at the cut
    distill_weight: float = 1.0      # KL to the frozen model's logits, every served exit
    label_weight: float = 0.1        # cross-entropy with the labels, every served exit
    deep_weight: float = 1.0         # normalised MSE at the last conv stage (``deep_tap``)
    temperature: float = 2.0         # distillation temperature
    flip: bool = False               # also train on the mirrored images' activations
    seed: int = 0
    threads: int = 2
    train_limit: Optional[int] = None   # use only N training images (seeded subset; tests)


def deep_tap(cfg: Any) -> int:
    """
    Return the trunk cut whose activation the deep feature loss compares.

    The AlexNet's: after pool5 (the classifier's input); a described model's: the last trunk
    cut with a (C, H, W) tensor (resnet64: after the global pool, the classifier's input).
    """
    return trunk_of(cfg).deep_tap


def served_exits(cfg: Any, split: int) -> List[int]:
    """Return the exits whose branch holds trunk cut ``split`` as an inner cut (ascending)."""
    return trunk_of(cfg).served_exits(split)


def net_of(model: Any) -> torch.nn.Module:
    """Return the module with ``run``/``forward_all`` (a described model's ``MultiExitChain``)."""
    return model.model if hasattr(model, 'desc') else model


def model_input(model: Any, images_u8: torch.Tensor) -> torch.Tensor:
    """
    uint8 NHWC frames -> the model's normalised input.

    A described model whose input is larger than the frames (resnet64: 64x64 from CIFAR's
    32x32) gets them resized bilinearly, as its training and ``train-exits`` did.
    """
    if not hasattr(model, 'desc'):
        return normalize_images(images_u8)
    from .exit_training import to_input
    return to_input(model, images_u8)


def split_values(items: Sequence[str], what: str, splits: Sequence[int]
                 ) -> List[Tuple[Optional[int], int]]:
    """
    Parse command-line entries ``N`` (every split) or ``SPLIT:N`` into ``(split or None, N)``.

    ``BottleneckError`` names a malformed entry and a ``SPLIT`` that is not in ``splits``.
    """
    out = []
    for item in items:
        head, _, tail = str(item).rpartition(':')
        try:
            out.append((int(head) if head else None, int(tail)))
        except ValueError:
            raise BottleneckError(f'{what} entry {item!r}: expected N or SPLIT:N') from None
        if out[-1][0] is not None and out[-1][0] not in splits:
            raise BottleneckError(f'{what} entry {item!r}: split {out[-1][0]} is not in '
                                  f'--splits {list(splits)}')
        if out[-1][1] < 1:
            raise BottleneckError(f'{what} entry {item!r}: must be >= 1')
    return out


def parse_specs(cfg: Any, splits: Sequence[int], widths: Sequence[str],
                strides: Sequence[str] = ('1',)) -> List[BottleneckSpec]:
    """
    Return the specs named on the command line, ordered by (split, channels).

    ``widths``: ``W`` (a width at every split of ``splits``) or ``SPLIT:W`` (at that split
    only); ``strides``: ``S`` (every split) or ``SPLIT:S``. ``BottleneckError`` names a bad
    entry, a ``SPLIT:`` that is not in ``splits`` and a split that gets no width.
    """
    splits = list(dict.fromkeys(int(s) for s in splits))
    if not splits:
        raise BottleneckError('no split given (--splits)')
    stride_of = {s: 1 for s in splits}
    for at, v in split_values(strides, '--stride', splits):
        for s in ([at] if at is not None else splits):
            stride_of[s] = v
    specs = {}
    for at, w in split_values(widths, '--widths', splits):
        for s in ([at] if at is not None else splits):
            if not served_exits(cfg, s):
                trunk = trunk_of(cfg)
                raise BottleneckError(f'split {s} is not a trunk cut any exit holds (trunk cuts: '
                                      f'1..{trunk.trunk_len(trunk.num_exits) - 1})')
            specs[(s, w)] = spec_for(cfg, s, w, stride_of[s])
    missing = [s for s in splits if not any(k[0] == s for k in specs)]
    if missing:
        raise BottleneckError(f'no width for split(s) {missing} (--widths W or SPLIT:W)')
    return [specs[k] for k in sorted(specs)]


def parse_epochs(splits: Sequence[int], items: Sequence[str]) -> Tuple[int, Dict[int, int]]:
    """Return ``(epochs, {split: epochs})`` from ``E`` / ``SPLIT:E`` entries (``--epochs``)."""
    default, at = BottleneckTrainConfig.epochs, {}
    for s, e in split_values(items, '--epochs', [int(x) for x in splits]):
        if s is None:
            default = e
        else:
            at[s] = e
    return default, at


def fake_int8(z: torch.Tensor) -> torch.Tensor:
    """
    Per-frame affine int8 round trip with a straight-through gradient; ``z`` is ``(N, ...)``.

    The values are what ``core.codec.quantize_int8`` + ``decode`` give for each frame (range
    holds 0, 255 steps, zero point rounded); the gradient is the identity.
    """
    flat = z.detach().reshape(z.shape[0], -1)
    lo = torch.clamp(flat.min(1).values, max=0.0)
    hi = torch.clamp(flat.max(1).values, min=0.0)
    scale = (hi - lo) / 255.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zp = torch.round(-128.0 - lo / scale)
    q = torch.clamp(torch.round(flat / scale[:, None]) + zp[:, None], -128, 127)
    deq = ((q - zp[:, None]) * scale[:, None]).reshape(z.shape)
    return z + (deq - z).detach()


def run_from_cut(model: Any, x: torch.Tensor, split: int,
                 exits: Iterable[int], taps: Optional[Dict[int, torch.Tensor]] = None,
                 trunk: Optional[Trunk] = None) -> Dict[int, torch.Tensor]:
    """
    Return ``{exit: logits}`` for the trunk activation ``x`` at ``split``, sharing the trunk.

    The trunk runs on from ``split`` once (as far as the deepest exit asked for needs); each
    side exit's head runs from its attach point. Every exit must hold the cut
    (``served_exits``). ``taps``: trunk activations to keep, ``{trunk index: filled in}``.
    """
    trunk = trunk or trunk_of(model)
    net = net_of(model)
    last = trunk.num_exits
    exits = set(exits)
    heads = {trunk.attach_of(e): e for e in exits if e != last}
    if any(a < split for a in heads):
        raise ValueError(f'exits {sorted(exits)} do not all hold trunk cut {split}')
    stop = net.branch_len(last) if last in exits else max(heads)
    out: Dict[int, torch.Tensor] = {}
    for i in range(split, stop + 1):
        if i in heads:
            out[heads[i]] = net.run(x, heads[i], i)
        if i < stop:
            x = net.run(x, last, i, i + 1)
            if taps is not None and i + 1 in taps:
                taps[i + 1] = x
    if last in exits:
        out[last] = x
    return out


@torch.inference_mode()
def precompute(model: Any, images: np.ndarray, splits: Sequence[int],
               flip: bool = False, batch_size: int = 500
               ) -> Tuple[Dict[int, torch.Tensor], torch.Tensor]:
    """
    Return the trunk activations at every cut (float16) and all exits' logits, once.

    ``images``: uint8 NHWC ``(N, 32, 32, 3)``. Features: ``{split: (M, C, H, W)}``, logits
    ``(M, exits, classes)``, with ``M = N`` (``2 N`` with ``flip``: rows ``N..2N-1`` are
    the mirrored images).
    """
    net = net_of(model).eval()
    last = trunk_of(model).num_exits
    feats: Dict[int, List[torch.Tensor]] = {s: [] for s in splits}
    logits: List[torch.Tensor] = []
    views = [False, True] if flip else [False]
    for mirrored in views:
        for i in range(0, len(images), batch_size):
            x = model_input(model, torch.from_numpy(images[i:i + batch_size]))
            if mirrored:
                x = x.flip(3)
            logits.append(torch.stack(net.forward_all(x), 1))
            a = x
            for j in range(max(splits)):
                a = net.run(a, last, j, j + 1)
                if j + 1 in feats:
                    feats[j + 1].append(a.to(torch.float16))
    return {s: torch.cat(v) for s, v in feats.items()}, torch.cat(logits)


def _task_losses(student: Dict[int, torch.Tensor], teacher: torch.Tensor, labels: torch.Tensor,
                 cfg: BottleneckTrainConfig) -> Tuple[torch.Tensor, torch.Tensor]:
    kd, ce = [], []
    t = cfg.temperature
    for e, z in student.items():
        ref = teacher[:, e - 1]
        kd.append(F.kl_div(F.log_softmax(z / t, 1), F.log_softmax(ref / t, 1),
                           reduction='batchmean', log_target=True) * t * t)
        ce.append(F.cross_entropy(z, labels))
    return torch.stack(kd).mean(), torch.stack(ce).mean()


def train_one(model: Any, spec: BottleneckSpec, feats: torch.Tensor,
              teacher: torch.Tensor, labels: torch.Tensor, cfg: BottleneckTrainConfig,
              progress: bool = True, log: Callable[[str], None] = print,
              deep: Optional[torch.Tensor] = None) -> Dict:
    """
    Train the bottleneck ``spec`` on precomputed activations; return module and history.

    ``feats`` ``(M, C, H, W)`` at ``spec.split``, ``teacher`` ``(M, exits, classes)``,
    ``labels`` ``(M,)``; ``deep``: the frozen model's activations at ``deep_tap`` (used with
    ``cfg.deep_weight`` when the cut is before it). Returns ``{'module', 'history',
    'elapsed_s'}``.
    """
    if tuple(feats.shape[1:]) != tuple(spec.in_shape):
        raise ValueError(f'features {list(feats.shape[1:])} do not fit {spec}')
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    trunk = trunk_of(model)
    exits = trunk.served_exits(spec.split)
    bn = Bottleneck(spec).train()
    n = len(feats)
    steps = max(1, n // cfg.batch_size)          # drop the ragged last batch
    opt = torch.optim.AdamW(bn.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, epochs=cfg.epochs,
                                                steps_per_epoch=steps,
                                                pct_start=max(0.15, 2.0 / (cfg.epochs * steps)))
    power = float(feats[:min(n, 5000)].float().pow(2).mean()) or 1.0
    tap = trunk.deep_tap
    use_deep = (cfg.deep_weight > 0 and deep is not None and spec.split < tap
                and trunk.num_exits in exits)
    deep_power = (float(deep[:min(n, 5000)].float().pow(2).mean()) or 1.0) if use_deep else 1.0
    history = []
    t_start = time.time()
    for epoch in range(1, cfg.epochs + 1):
        perm = torch.randperm(n, generator=gen)
        it = range(steps)
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(it, desc=f'{spec.name}@{spec.split} epoch {epoch}/{cfg.epochs}',
                       unit='batch', file=sys.stderr, dynamic_ncols=True, mininterval=1.0)
            it = bar
        sums = torch.zeros(4)
        agree = torch.zeros(len(exits))
        for step in it:
            idx = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            f = feats[idx].float()
            f_hat = bn.decode(fake_int8(bn.encode(f)))
            loss_feat = F.mse_loss(f_hat, f) / power
            taps: Dict[int, torch.Tensor] = {tap: f_hat} if use_deep else {}
            student = run_from_cut(model, f_hat, spec.split, exits, taps, trunk)
            kd, ce = _task_losses(student, teacher[idx], labels[idx], cfg)
            loss_deep = (F.mse_loss(taps[tap], deep[idx].float()) / deep_power if use_deep
                         else torch.zeros(()))
            loss = cfg.feature_weight * loss_feat + cfg.distill_weight * kd \
                + cfg.label_weight * ce + cfg.deep_weight * loss_deep
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            sums += torch.stack([loss_feat, kd, ce, loss_deep]).detach()
            with torch.no_grad():
                agree += torch.tensor([float((student[e].argmax(1)
                                              == teacher[idx, e - 1].argmax(1)).float().mean())
                                       for e in exits])
            if bar is not None and step % 20 == 0:
                bar.set_postfix(feat=f'{float(loss_feat):.3f}', kd=f'{float(kd):.3f}')
        if bar is not None:
            bar.close()
        row = {'spec': f'{spec.name}@{spec.split}', 'epoch': epoch,
               'feature_mse': round(float(sums[0]) / steps, 5),
               'distill_kl': round(float(sums[1]) / steps, 5),
               'label_ce': round(float(sums[2]) / steps, 5),
               'deep_mse': round(float(sums[3]) / steps, 5),
               'teacher_agreement': {str(e): round(float(a) / steps, 4)
                                     for e, a in zip(exits, agree)},
               'elapsed_s': round(time.time() - t_start, 1)}
        history.append(row)
        log(json.dumps(row))
    return {'module': bn.eval(), 'history': history,
            'elapsed_s': round(time.time() - t_start, 1)}


def train_bottlenecks(model: Any, specs: Sequence[BottleneckSpec],
                      x_train: np.ndarray, y_train: np.ndarray, cfg: BottleneckTrainConfig,
                      progress: bool = True, log: Callable[[str], None] = print) -> Dict:
    """
    Train every spec against the frozen ``model``; return ``{'set', 'history', ...}``.

    ``model``: the shipped ``MultiExitAlexNet`` or a described model (``DescribedModel``).
    ``x_train`` uint8 NHWC, ``y_train`` labels. The activations at all cuts are computed once
    (``precompute``); the specs are trained one after the other, each from seed ``cfg.seed``.
    """
    if not specs:
        raise ValueError('no bottleneck to train')
    torch.set_num_threads(cfg.threads)
    net_of(model).eval()
    for p in net_of(model).parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(cfg.seed)
    if cfg.train_limit:   # the archives are sorted by class: take a seeded random subset
        keep = torch.randperm(len(x_train), generator=gen)[:cfg.train_limit].numpy()
        x_train, y_train = x_train[keep], y_train[keep]
    t_start = time.time()
    tap = deep_tap(model)
    splits = {s.split for s in specs}
    if cfg.deep_weight > 0 and min(splits) < tap:
        splits.add(tap)
    feats, teacher = precompute(model, x_train, sorted(splits), cfg.flip)
    labels = torch.from_numpy(np.asarray(y_train, dtype=np.int64))
    if cfg.flip:
        labels = torch.cat([labels, labels])
    t_pre = round(time.time() - t_start, 1)
    log(json.dumps({'precompute_s': t_pre, 'images': int(len(x_train)),
                    'rows': int(len(labels)), 'splits': sorted(feats)}))
    modules, history, per_spec = [], [], {}
    for spec in specs:
        spec_cfg = replace(cfg, epochs=cfg.split_epochs.get(spec.split, cfg.epochs))
        res = train_one(model, spec, feats[spec.split], teacher, labels, spec_cfg, progress,
                        log, deep=feats.get(tap))
        modules.append(res['module'])
        history += res['history']
        per_spec[f'{spec.name}@{spec.split}'] = res['elapsed_s']
    return {'set': BottleneckSet(model.model_id, modules), 'history': history,
            'train_config': asdict(cfg), 'precompute_s': t_pre, 'per_spec_s': per_spec,
            'elapsed_s': round(time.time() - t_start, 1), 'train_images': int(len(x_train))}


def module_flops(bn: Bottleneck) -> Tuple[int, int]:
    """Return multiply-add counted FLOPs per frame of (encoder, decoder) of ``bn``."""
    def _count(seq: torch.nn.Sequential, shape: Tuple[int, ...]) -> Tuple[int, Tuple[int, ...]]:
        total = 0
        for m in seq:
            if isinstance(m, torch.nn.Conv2d):
                ls = LayerSpec('conv', 'conv', m.out_channels, m.kernel_size[0], m.stride[0],
                               m.padding[0])
            elif isinstance(m, torch.nn.ReLU):
                ls = LayerSpec('relu', 'relu')
            else:   # nearest upsampling back to the cut's size: a copy
                shape = (shape[0],) + tuple(bn.spec.in_shape[1:])
                continue
            total += layer_flops(ls, shape)
            shape = output_shape(ls, shape)
        return total, shape

    enc, wire = _count(bn.encoder, tuple(bn.spec.in_shape))
    dec, _ = _count(bn.decoder, wire)
    return enc, dec


def _time_codec(bn: Bottleneck, samples: Sequence[torch.Tensor]) -> Tuple[float, float]:
    """Return median (encode, decode) ms per frame: encoder + int8, dequantise + decoder."""
    name = bn.spec.name
    t_enc, t_dec = [], []
    for f in samples:
        t0 = time.perf_counter()
        msg = encode(bn.encode(f).numpy(), name)
        t1 = time.perf_counter()
        bn.decode(torch.from_numpy(decode(msg.shape, msg.data_type, msg.encoding, msg.data,
                                          msg.scale, msg.zero_point)))
        t2 = time.perf_counter()
        t_enc.append(t1 - t0)
        t_dec.append(t2 - t1)
    return float(np.median(t_enc)) * 1e3, float(np.median(t_dec)) * 1e3


def _through_link(bn: Bottleneck, f: torch.Tensor) -> torch.Tensor:
    """Return the decoder's output for a batch, every frame sent alone through the codec."""
    z = bn.encode(f).numpy()
    name = bn.spec.name
    got = []
    for k in range(len(z)):
        msg = encode(np.ascontiguousarray(z[k:k + 1]), name)
        if msg.encoding != ENCODING_INT8 or msg.nbytes != bn.spec.nbytes:
            raise BottleneckError(f'{name} at split {bn.spec.split}: codec sent {msg.nbytes} B, '
                                  f'spec says {bn.spec.nbytes}')
        got.append(decode(msg.shape, msg.data_type, msg.encoding, msg.data, msg.scale,
                          msg.zero_point))
    return bn.decode(torch.from_numpy(np.concatenate(got)))


@torch.inference_mode()
def measure_bottlenecks(model: Any, bset: BottleneckSet, images: np.ndarray,
                        labels: np.ndarray, batch_size: int = 500,
                        progress: Optional[Callable[[int], None]] = None
                        ) -> Tuple[List[Dict], Dict]:
    """
    Return ``(rows, section)``: encoding rows per (exit, split, bn) and the bottlenecks section.

    ``rows`` have the accuracy table's ``encodings.configs`` keys (``exit, split, encoding,
    top1, bytes_mean, bytes_p95, encode_ms, decode_ms``); ``section`` lists the specs, each
    (exit, split, name) with top-1, bytes and the uncut exit's top-1, and the set's id.
    ``progress(k)`` is called after each spec with the number done.
    """
    net = net_of(model).eval()
    trunk = trunk_of(model)
    last = trunk.num_exits
    if bset.model_id != model.model_id:
        raise BottleneckError(f'bottlenecks for {bset.model_id!r}, model is {model.model_id!r}')
    specs = bset.specs()
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    n_img = len(images)
    uncut = np.zeros(last, dtype=np.int64)
    correct = {(s.split, s.name): {e: 0 for e in trunk.served_exits(s.split)}
               for s in specs}
    samples: Dict[int, List[torch.Tensor]] = {s.split: [] for s in specs}
    sample_idx = np.linspace(0, n_img - 1, min(TIME_SAMPLE, n_img)).astype(int)
    splits = sorted(samples)
    for i in range(0, n_img, batch_size):
        x = model_input(model, torch.from_numpy(images[i:i + batch_size]))
        yb = y[i:i + batch_size]
        for e, z in enumerate(net.forward_all(x)):
            uncut[e] += int((z.argmax(1) == yb).sum())
        in_batch = sample_idx[(sample_idx >= i) & (sample_idx < i + len(yb))] - i
        a = x
        for j in range(max(splits)):
            a = net.run(a, last, j, j + 1)
            if j + 1 not in samples:
                continue
            samples[j + 1] += [a[k:k + 1].clone() for k in in_batch]
            for spec in (s for s in specs if s.split == j + 1):
                f_hat = _through_link(bset.get(spec.split, spec.name), a)
                out = run_from_cut(model, f_hat, spec.split,
                                   list(correct[(spec.split, spec.name)]), trunk=trunk)
                for e, z in out.items():
                    correct[(spec.split, spec.name)][e] += int((z.argmax(1) == yb).sum())
    uncut_top1 = {e + 1: float(uncut[e]) / n_img for e in range(last)}
    rows, configs, spec_rows = [], [], []
    for done, spec in enumerate(specs, 1):
        bn = bset.get(spec.split, spec.name)
        enc_ms, dec_ms = _time_codec(bn, samples[spec.split])
        enc_flops, dec_flops = module_flops(bn)
        spec_rows.append(dict(asdict(spec), name=spec.name, nbytes=spec.nbytes,
                              wire_shape=list(spec.wire_shape),
                              params=int(sum(p.numel() for p in bn.parameters())),
                              encoder_mflops=round(enc_flops / 1e6, 3),
                              decoder_mflops=round(dec_flops / 1e6, 3),
                              encode_ms=round(enc_ms, 4), decode_ms=round(dec_ms, 4)))
        for e, c in correct[(spec.split, spec.name)].items():
            top1 = round(c / n_img, 6)
            rows.append({'exit': e, 'split': spec.split, 'encoding': spec.name, 'top1': top1,
                         'bytes_mean': float(spec.nbytes), 'bytes_p95': float(spec.nbytes),
                         'encode_ms': round(enc_ms, 4), 'decode_ms': round(dec_ms, 4)})
            configs.append({'exit': e, 'split': spec.split, 'name': spec.name, 'top1': top1,
                            'bytes': spec.nbytes, 'uncut_top1': round(uncut_top1[e], 6),
                            'loss_points': round(100 * (uncut_top1[e] - c / n_img), 3)})
        if progress:
            progress(done)
    section = {'bottleneck_id': bset.bottleneck_id, 'model_id': bset.model_id,
               'images': int(n_img), 'specs': spec_rows, 'configs': configs,
               'uncut_top1': {str(e): round(a, 6) for e, a in uncut_top1.items()}}
    return rows, section


@torch.inference_mode()
def frame_rows(model: Any, images: np.ndarray, labels: np.ndarray, batch_size: int = 500
               ) -> List[Dict]:
    """
    Return split-0 rows (``raw`` and ``jpeg`` frame) of a described model, per exit.

    What a bottleneck is compared with: the camera's frame at the model's input size, made as
    the camera node makes it (``inference.preprocess_image``: resized with OpenCV), sent raw
    (uint8) or as a JPEG (q90, ``core.codec``); top-1 of each exit on those frames (the JPEG
    ones decoded first) over ``images``, bytes over ``offline.accuracy.SIZE_SAMPLE`` of them.
    """
    from ..core.inference import preprocess_image
    from .accuracy import _sizes_and_times, SIZE_SAMPLE
    net = net_of(model).eval()
    h, w = model.input_shape[1:]
    frames = np.stack([preprocess_image(im, size=(h, w)) for im in images])
    sent = (encode(np.ascontiguousarray(f[None]), 'jpeg') for f in frames)
    jpeg = np.stack([decode(m.shape, m.data_type, m.encoding, m.data)[0] for m in sent])
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    n_exits = trunk_of(model).num_exits
    correct = {'raw': np.zeros(n_exits), 'jpeg': np.zeros(n_exits)}
    for i in range(0, len(frames), batch_size):
        yb = y[i:i + batch_size]
        for enc, arr in (('raw', frames), ('jpeg', jpeg)):
            outs = net.forward_all(model.normalize(torch.from_numpy(arr[i:i + batch_size])))
            for e, z in enumerate(outs):
                correct[enc][e] += int((z.argmax(1) == yb).sum())
    idx = np.linspace(0, len(frames) - 1, min(SIZE_SAMPLE, len(frames))).astype(int)
    samples = [np.ascontiguousarray(frames[k][None]) for k in idx]
    rows = []
    for enc in ('raw', 'jpeg'):
        cost = _sizes_and_times(samples, enc)
        for e in range(n_exits):
            rows.append(dict({'exit': e + 1, 'split': 0, 'encoding': enc,
                              'top1': round(float(correct[enc][e]) / len(frames), 6)}, **cost))
    return rows


def merge_into_accuracy(body: Dict, rows: List[Dict], section: Dict,
                        frames: Optional[List[Dict]] = None) -> Dict:
    """
    Return the accuracy table ``body`` with the bottleneck rows and section merged in.

    Every ``encodings.configs`` row that is not a bottleneck (``bn<c>``) is kept unchanged and
    in order; earlier bottleneck rows are replaced by ``rows``. A table without an encodings
    section (a described model's) gets one made of ``frames`` (``frame_rows``).
    ``format``/``sha256`` are dropped (``artifacts.save_json`` writes them anew).
    """
    body = {k: v for k, v in body.items() if k not in ('format', 'sha256')}
    enc = body.get('encodings')
    if enc is None and frames is not None:   # a described model: the frame rows only
        enc = {'configs': list(frames), 'images': section.get('images')}
    if not isinstance(enc, dict) or not isinstance(enc.get('configs'), list):
        raise ValueError('the accuracy table has no encodings section; run `edgent-ros '
                         'accuracy` first')
    kept = [r for r in enc['configs'] if bottleneck_width(r.get('encoding')) is None]
    body['encodings'] = dict(enc, configs=kept + list(rows))
    body['bottlenecks'] = section
    return body


def bytes_vs_jpeg(body: Dict) -> Optional[float]:
    """Return the mean JPEG frame bytes at split 0 in the accuracy table, or None."""
    enc = body.get('encodings') or {}
    sizes = [r['bytes_mean'] for r in enc.get('configs', [])
             if r.get('split') == 0 and r.get('encoding') == 'jpeg']
    return float(np.mean(sizes)) if sizes else None


def plot_bottlenecks(body: Dict, path: Path) -> None:
    """
    Save a PNG: payload bytes vs top-1 lost per cut, bottlenecks beside int8 and JPEG.

    One marker per (exit, split, encoding) of the accuracy table (``body``): bottlenecks
    (filled, by split), int8 of the same cuts (hollow), the JPEG frame (split 0, black), the
    target box (<= JPEG/4 bytes, <= 1 point) shaded.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    section = body.get('bottlenecks') or {}
    uncut = {int(e): float(a) for e, a in (section.get('uncut_top1') or {}).items()}
    if not uncut:
        uncut = {int(r['exit']): float(r['top1']) for r in body['exits']}
    rows = body['encodings']['configs']
    bn_rows = [r for r in rows if bottleneck_width(r['encoding']) is not None]
    splits = sorted({r['split'] for r in bn_rows})
    jpeg = bytes_vs_jpeg(body)
    served = {s: {r['exit'] for r in bn_rows if r['split'] == s} for s in splits}
    fig, ax = plt.subplots(figsize=(8, 5))
    if jpeg:
        ax.fill_between([1e-3, jpeg / 4], -100, 1.0, color='tab:green', alpha=0.1, lw=0,
                        label='target: >= 4x fewer bytes than JPEG, <= 1 point lost')
        ax.axvline(jpeg / 4, color='tab:green', lw=0.8, ls='--')
    ax.axhline(1.0, color='tab:green', lw=0.8, ls='--')
    ax.axhline(0.0, color='grey', lw=0.5)
    colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
    markers = {1: 'v', 2: 's', 3: 'D', 4: '^', 5: 'o'}
    shown = []
    for k, s in enumerate(splits):
        c = colors[k % len(colors)]
        spread = 1.05 ** (k - (len(splits) - 1) / 2)   # cuts sending equal bytes side by side
        for r in (r for r in bn_rows if r['split'] == s):
            loss = 100 * (uncut[r['exit']] - r['top1'])
            shown.append((r['bytes_mean'], loss))
            ax.scatter(r['bytes_mean'] * spread, loss, color=c, marker=markers[r['exit']],
                       s=36, zorder=3)
            if r['exit'] == max(uncut):
                ax.annotate(f'{r["encoding"]}@{s}', (r['bytes_mean'] * spread, loss),
                            textcoords='offset points', xytext=(5, 3), fontsize=7, color=c)
        for r in (r for r in rows if r['split'] == s and r['encoding'] == 'int8'
                  and r['exit'] in served[s]):
            loss = 100 * (uncut[r['exit']] - r['top1'])
            shown.append((r['bytes_mean'], loss))
            ax.scatter(r['bytes_mean'] * spread, loss, facecolor='none', edgecolor=c,
                       marker=markers[r['exit']], s=36, zorder=3)
        ax.scatter([], [], color=c, marker='o', label=f'split {s}: bn (filled), int8 (hollow)')
    for r in (r for r in rows if r['split'] == 0 and r['encoding'] == 'jpeg'):
        loss = 100 * (uncut[r['exit']] - r['top1'])
        shown.append((r['bytes_mean'], loss))
        ax.scatter(r['bytes_mean'], loss, color='black', marker=markers[r['exit']], s=36,
                   zorder=3)
    ax.scatter([], [], color='black', marker='o', label='JPEG q90 frame (split 0)')
    for e, m in markers.items():
        ax.scatter([], [], color='grey', marker=m, label=f'exit {e}')
    if shown:
        xs, ys = zip(*shown)
        ax.set_xlim(min(xs) / 2, max(xs) * 2)
        ax.set_ylim(min(-0.5, min(ys) - 0.5), max(2.0, max(ys) + 0.5))
    ax.set_xscale('log')
    ax.set(xlabel='payload bytes per frame (log; cuts with equal bytes drawn side by side)',
           ylabel='top-1 lost vs the uncut exit (points)',
           title='Learned bottlenecks: bytes on the link vs accuracy lost')
    ax.legend(fontsize=7, loc='upper right')
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def summary_table(body: Dict) -> List[Dict]:
    """Return one row per (split, encoding): bytes, x-fold vs JPEG, loss per exit, costs."""
    section = body.get('bottlenecks') or {}
    jpeg = bytes_vs_jpeg(body)
    out = []
    for spec in section.get('specs', []):
        cfgs = [c for c in section.get('configs', [])
                if c['split'] == spec['split'] and c['name'] == spec['name']]
        out.append({'split': spec['split'], 'encoding': spec['name'], 'stride': spec['stride'],
                    'bytes': spec['nbytes'],
                    'vs_jpeg': round(jpeg / spec['nbytes'], 2) if jpeg else None,
                    'top1': {c['exit']: c['top1'] for c in cfgs},
                    'loss_points': {c['exit']: c['loss_points'] for c in cfgs},
                    'max_loss_points': max((c['loss_points'] for c in cfgs), default=math.nan),
                    'encode_ms': spec['encode_ms'], 'decode_ms': spec['decode_ms']})
    return out
