"""
CIFAR-10 JPEG archives and the bundled sample: loading and caching (no rclpy, no torch).

Shared by the offline phase (training, accuracy tables) and the camera's file sources.

The archives (``train.tar.gz``, ``test.tar.gz``) hold ``<class>/<NNNN>.jpg`` members; they are
decoded with OpenCV into uint8 RGB NHWC arrays ``(N, 32, 32, 3)`` and int64 labels ``(N,)``.
A decoded copy is cached as ``.npz`` (no pickle) beside a hash of the archive's size and mtime.
Where the archives are looked for: ``core.paths`` (``--data-dir``, ``$EDGENT_ROS_DATA``, ...).
"""

from __future__ import annotations

import os
from pathlib import Path
import tarfile
from typing import Optional, Tuple
import zipfile

import numpy as np

from .arch import CLASSES
from .artifacts import ARTIFACT_DIR
from .paths import DATA_ENV, find_data

SAMPLE_PATH = ARTIFACT_DIR / 'cifar10_sample.npz'


def cifar10_dir(data_dir: Optional[Path] = None) -> Path:
    """
    Return the CIFAR-10 folder: ``data_dir`` (``--data-dir``), else ``core.paths.find_data``.

    That is ``$EDGENT_ROS_DATA/cifar10``, else ``<user dir>/data/cifar10``, then
    ``../shared/data/cifar10`` beside a source checkout; ``DataNotFoundError`` (a
    ``FileNotFoundError``) naming the option and the variable when none exists.
    """
    return find_data('cifar10', data_dir, option='--data-dir')


def cache_dir() -> Path:
    """Return the cache folder (``$EDGENT_CACHE_DIR`` or ``~/.cache/edgent_ros``)."""
    d = Path(os.environ.get('EDGENT_CACHE_DIR', Path.home() / '.cache' / 'edgent_ros'))
    d.mkdir(parents=True, exist_ok=True)
    return d


def decode_archive(path: Path, limit: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Decode a CIFAR-10 JPEG tar archive into ``(x uint8 (N,32,32,3) RGB, y int64 (N,))``."""
    import cv2
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'CIFAR-10 archive not found: {path} '
                                f'(pass --data-dir or set {DATA_ENV})')
    xs, ys = [], []
    with tarfile.open(path) as tf:
        for m in tf:
            if not m.isfile():
                continue
            cls = m.name.split('/')[0]
            if cls not in CLASSES:
                raise ValueError(f'{path}: member {m.name!r} is not under a CIFAR-10 class folder')
            img = cv2.imdecode(np.frombuffer(tf.extractfile(m).read(), np.uint8),
                               cv2.IMREAD_COLOR)
            if img is None or img.shape != (32, 32, 3):
                raise ValueError(f'{path}: member {m.name!r} is not a 32x32 colour JPEG')
            xs.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
            ys.append(CLASSES.index(cls))
            if limit is not None and len(xs) >= limit:
                break
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def load_split(split: str, data_dir: Optional[Path] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Return the decoded ``train`` or ``test`` split, decoding once and caching as npz."""
    if split not in ('train', 'test'):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    archive = cifar10_dir(data_dir) / f'{split}.tar.gz'
    if not archive.is_file():
        raise FileNotFoundError(f'CIFAR-10 archive not found: {archive} '
                                f'(pass --data-dir or set {DATA_ENV})')
    st = archive.stat()
    cached = cache_dir() / f'cifar10_{split}_{st.st_size}_{int(st.st_mtime)}.npz'
    if cached.is_file():
        with np.load(cached, allow_pickle=False) as z:
            return z['x'], z['y']
    x, y = decode_archive(archive)
    tmp = cached.with_suffix('.tmp.npz')
    np.savez(tmp, x=x, y=y)
    os.replace(tmp, cached)
    return x, y


def load_sample(path: Path = SAMPLE_PATH) -> Tuple[np.ndarray, np.ndarray]:
    """Return the bundled labelled sample of CIFAR-10 test images (uint8 NHWC RGB, labels)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'bundled sample missing: {path}')
    try:
        with np.load(path, allow_pickle=False) as z:
            x, y = z['x'], z['y']
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f'{path}: not a valid sample file ({exc})') from exc
    if x.ndim != 4 or x.shape[1:] != (32, 32, 3) or x.dtype != np.uint8 or len(y) != len(x):
        raise ValueError(f'{path}: expected x uint8 (N,32,32,3) and N labels, '
                         f'got x {x.dtype} {x.shape}, y {y.shape}')
    return x, y.astype(np.int64)
