"""
The accuracy table per (exit, split, encoding) and per confidence threshold (no rclpy).

``measure_encodings`` runs every (exit, split) of the model on labelled images with the
intermediate tensor encoded and decoded exactly as the link would (``core.codec``): top-1,
payload bytes (mean, p95: zlib and JPEG sizes depend on the frame) and the codec's time per
frame. Lossless encodings (``raw``, ``compressed``, ``png``) finish every frame bit-identically,
so their top-1 is the exit's own; lossy ones (``fp16``, ``int8``; ``int8-zlib`` decodes to the
same values as ``int8``; ``jpeg``) are measured on every image.

``measure_confidence`` evaluates BranchyNet's entropy early exit: for a final exit ``E`` and a
threshold ``t`` (nats), a frame leaves at the first side exit ``e < E`` whose softmax entropy is
below ``t``, else at ``E``. It records top-1 and the fraction of frames leaving at each exit, on
a grid of thresholds.

Both write into the accuracy JSON (``artifacts.ACCURACY_FILE``) under ``encodings`` and
``confidence``; ``artifacts.load_encodings`` / ``load_confidence`` read them back.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np
import torch

from ..core.arch import EXIT_ATTACH, NUM_EXITS
from ..core.model import MultiExitAlexNet, normalize_images
from ..core.codec import decode, encode, FEATURE_ENCODINGS, IMAGE_ENCODINGS, JPEG_QUALITY, LOSSLESS

# Thresholds (nats) of the confidence table; ln(10) = 2.303 is the entropy of a uniform
# 10-class softmax, so the last one lets nearly every frame out at the first side exit.
CONFIDENCE_THRESHOLDS = (0.0, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0,
                         1.25, 1.5, 2.0, 2.31)
# Frames whose zlib/PNG/JPEG sizes and codec times are measured (those sizes vary per frame;
# raw/fp16/int8 sizes do not); every image's accuracy is measured regardless.
SIZE_SAMPLE = 300
TIME_SAMPLE = 100
VARIABLE_SIZE = ('compressed', 'int8-zlib', 'png', 'jpeg')


def _quantize_batch(x: torch.Tensor) -> torch.Tensor:
    """Per-frame (per-tensor) affine int8 round trip of a batch, as ``core.codec`` does it."""
    flat = x.reshape(x.shape[0], -1)
    lo = torch.clamp(flat.min(1).values, max=0.0)
    hi = torch.clamp(flat.max(1).values, min=0.0)
    scale = (hi - lo) / 255.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    scale = scale.to(torch.float32)   # the message's scale field is float32
    zp = torch.round(-128.0 - lo / scale)
    q = torch.clamp(torch.round(flat / scale[:, None]) + zp[:, None], -128, 127)
    return ((q - zp[:, None]) * scale[:, None]).reshape(x.shape)


def _lossy(x: torch.Tensor, encoding: str) -> torch.Tensor:
    if encoding == 'fp16':
        return x.to(torch.float16).to(torch.float32)
    if encoding in ('int8', 'int8-zlib'):
        return _quantize_batch(x)
    raise ValueError(f'no batch round trip for {encoding!r}')


def _sizes_and_times(samples: Sequence[np.ndarray], encoding: str) -> Dict[str, float]:
    sizes = [encode(a, encoding).nbytes
             for a in (samples if encoding in VARIABLE_SIZE else samples[:1])]
    t_enc, t_dec = [], []
    for a in samples[:TIME_SAMPLE]:
        t0 = time.perf_counter()
        enc = encode(a, encoding)
        t1 = time.perf_counter()
        decode(enc.shape, enc.data_type, enc.encoding, enc.data, enc.scale, enc.zero_point)
        t2 = time.perf_counter()
        t_enc.append(t1 - t0)
        t_dec.append(t2 - t1)
    return {'bytes_mean': round(float(np.mean(sizes)), 1),
            'bytes_p95': float(np.percentile(sizes, 95)),
            'encode_ms': round(float(np.median(t_enc)) * 1e3, 4),
            'decode_ms': round(float(np.median(t_dec)) * 1e3, 4)}


@torch.inference_mode()
def _top1(model: MultiExitAlexNet, x: torch.Tensor, y: torch.Tensor, exit_index: int,
          start: int) -> int:
    return int((model.run(x, exit_index, start).argmax(1) == y).sum())


@torch.inference_mode()
def measure_encodings(model: MultiExitAlexNet, images: np.ndarray, labels: np.ndarray,
                      encodings: Iterable[str] = FEATURE_ENCODINGS + IMAGE_ENCODINGS,
                      batch_size: int = 500,
                      progress: Optional[Callable[[int], None]] = None) -> List[Dict]:
    """
    Return one row per (exit, split, encoding) with top-1 and payload/codec costs.

    ``images``: uint8 NHWC ``(N, 32, 32, 3)``, ``labels`` ``(N,)``. Splits ``1..n-1`` take the
    feature encodings, split 0 the image encodings; device-only (split n) sends nothing and is
    not listed. ``progress(k)`` is called after each (exit, split) with the number done.
    """
    encodings = list(dict.fromkeys(encodings))
    model = model.eval()
    n_img = len(images)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    sample_idx = np.linspace(0, n_img - 1, min(SIZE_SAMPLE, n_img)).astype(int)
    rows: List[Dict] = []
    done = 0
    base = {}
    for e in range(1, NUM_EXITS + 1):
        correct = 0
        for i in range(0, n_img, batch_size):
            xb = normalize_images(torch.from_numpy(images[i:i + batch_size]))
            correct += _top1(model, xb, y[i:i + batch_size], e, 0)
        base[e] = correct / n_img
    # split 0: the uint8 frame (JPEG decoded frames are re-classified; lossless ones are not)
    img_encs = [enc for enc in encodings if enc in IMAGE_ENCODINGS]
    jpeg_frames = None
    if 'jpeg' in img_encs:
        jpeg_frames = np.stack([decode((1, 32, 32, 3), 2, 6, encode(im[None], 'jpeg').data)[0]
                                for im in images])
    for e in range(1, NUM_EXITS + 1):
        samples = [np.ascontiguousarray(images[k][None]) for k in sample_idx]
        for enc in img_encs:
            row = {'exit': e, 'split': 0, 'encoding': enc}
            if enc in LOSSLESS:
                row['top1'] = base[e]
            else:
                correct = 0
                for i in range(0, n_img, batch_size):
                    xb = normalize_images(torch.from_numpy(jpeg_frames[i:i + batch_size]))
                    correct += _top1(model, xb, y[i:i + batch_size], e, 0)
                row['top1'] = correct / n_img
            row.update(_sizes_and_times(samples, enc))
            rows.append(row)
        done += 1
        if progress:
            progress(done)
    feat_encs = [enc for enc in encodings if enc in FEATURE_ENCODINGS]
    lossy = [enc for enc in feat_encs if enc not in LOSSLESS]
    for e in range(1, NUM_EXITS + 1):
        n = model.branch_len(e)
        correct = {(s, enc): 0 for s in range(1, n) for enc in lossy}
        samples: Dict[int, List[np.ndarray]] = {s: [] for s in range(1, n)}
        for i in range(0, n_img, batch_size):
            act = normalize_images(torch.from_numpy(images[i:i + batch_size]))
            yb = y[i:i + batch_size]
            in_batch = sample_idx[(sample_idx >= i) & (sample_idx < i + len(yb))] - i
            for s in range(1, n):
                act = model.run(act, e, s - 1, s)        # the prefix grows one layer a step
                for enc in lossy:
                    correct[(s, enc)] += _top1(model, _lossy(act, enc), yb, e, s)
                samples[s] += [np.ascontiguousarray(act[k:k + 1].numpy()) for k in in_batch]
        for s in range(1, n):
            for enc in feat_encs:
                row = {'exit': e, 'split': s, 'encoding': enc,
                       'top1': base[e] if enc in LOSSLESS else correct[(s, enc)] / n_img}
                row.update(_sizes_and_times(samples[s], enc))
                rows.append(row)
            done += 1
            if progress:
                progress(done)
    for r in rows:
        r['top1'] = round(float(r['top1']), 6)
    return rows


def count_configs(model: MultiExitAlexNet) -> int:
    """Return the progress steps of ``measure_encodings``: 5 (split 0) + every inner split."""
    return NUM_EXITS + sum(model.branch_len(e) - 1 for e in range(1, NUM_EXITS + 1))


@torch.inference_mode()
def exit_probabilities(model: MultiExitAlexNet, images: np.ndarray,
                       batch_size: int = 500) -> np.ndarray:
    """Return the softmax of every exit for every image: ``(NUM_EXITS, N, classes)``."""
    out = []
    for i in range(0, len(images), batch_size):
        xb = normalize_images(torch.from_numpy(images[i:i + batch_size]))
        out.append(torch.stack([torch.softmax(z, 1) for z in model.forward_all(xb)]))
    return torch.cat(out, 1).numpy()


def entropy(p: np.ndarray) -> np.ndarray:
    """Return the entropy in nats of softmax rows ``p`` (last axis)."""
    p = np.clip(p, 1e-12, 1.0)
    return -(p * np.log(p)).sum(-1)


def cascade(probs: np.ndarray, final_exit: int, threshold: float) -> np.ndarray:
    """
    Return the exit each frame leaves at under BranchyNet's rule, ``(N,)`` ints in 1..final.

    ``probs``: ``exit_probabilities``. A frame leaves at the first side exit ``e < final_exit``
    whose entropy is below ``threshold``; threshold 0 never leaves early.
    """
    n = probs.shape[1]
    taken = np.full(n, final_exit, dtype=np.int64)
    if threshold <= 0:
        return taken
    open_ = np.ones(n, dtype=bool)
    for e in sorted(k for k in EXIT_ATTACH if k < final_exit):
        hit = open_ & (entropy(probs[e - 1]) < threshold)
        taken[hit] = e
        open_ &= ~hit
    return taken


def measure_confidence(probs: np.ndarray, labels: np.ndarray,
                       thresholds: Sequence[float] = CONFIDENCE_THRESHOLDS) -> Dict:
    """Return, per final exit and threshold, top-1 and the fraction leaving at each exit."""
    labels = np.asarray(labels)
    pred = probs.argmax(-1)                       # (exits, N)
    table: Dict[str, List[Dict]] = {}
    for final in range(1, NUM_EXITS + 1):
        rows = []
        for t in thresholds:
            taken = cascade(probs, final, t)
            correct = pred[taken - 1, np.arange(len(labels))] == labels
            frac = [float(np.mean(taken == e)) for e in range(1, final + 1)]
            rows.append({'threshold': float(t), 'top1': round(float(correct.mean()), 6),
                         'exit_fraction': [round(f, 6) for f in frac]})
        table[str(final)] = rows
    return {'measure': 'softmax entropy (nats), first side exit below the threshold',
            'images': int(len(labels)), 'thresholds': [float(t) for t in thresholds],
            'exits': table}


def encodings_section(rows: List[Dict], n_images: int) -> Dict:
    """Wrap ``measure_encodings`` rows for the accuracy JSON."""
    return {'images': int(n_images), 'jpeg_quality': JPEG_QUALITY, 'size_sample': SIZE_SAMPLE,
            'configs': rows}
