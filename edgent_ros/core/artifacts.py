"""
Versioned artifacts: weights (safetensors), accuracy table and latency models (JSON).

Nothing here unpickles: weights are safetensors with a metadata header naming the model_id and
the architecture; tables are JSON with a ``format`` tag, the ``model_id`` they belong to and a
checksum of their payload. Every loader raises ``ArtifactError`` naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
import statistics
import struct
from typing import Any, Dict, NamedTuple, Optional, Sequence, Tuple

from .arch import AlexNetConfig, NUM_EXITS
from .codec import known_encoding


# The shipped artifacts: the default of every reader. Read-only in a ROS install, so nothing
# writes here by default; outputs go to the user directory (core.paths.artifacts_out).
ARTIFACT_DIR = Path(__file__).resolve().parent.parent / 'artifacts'
WEIGHTS_FILE = 'alexnet5.safetensors'
ACCURACY_FILE = 'accuracy.json'
LATENCY_FILE = 'latency_models.json'
ACCURACY_FORMAT = 'edgent_ros/accuracy/1'
LATENCY_FORMAT = 'edgent_ros/latency_models/1'
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024   # safetensors' own limit on the JSON header


class ArtifactError(ValueError):
    """An artifact file is missing, garbled or belongs to another model."""


def _checksum(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def save_json(payload: Dict[str, Any], path: Path, fmt: str) -> None:
    """Write a JSON artifact with its format tag and a checksum of its content."""
    body = dict(payload)
    body['format'] = fmt
    body['sha256'] = _checksum({k: v for k, v in body.items() if k != 'sha256'})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=1, sort_keys=True) + '\n')


def load_json(path: Path, fmt: str) -> Dict[str, Any]:
    """Read a JSON artifact, checking format tag and checksum."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f'{path}: file not found')
    try:
        body = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f'{path}: not valid JSON ({exc})') from exc
    if not isinstance(body, dict) or body.get('format') != fmt:
        got = body.get('format') if isinstance(body, dict) else type(body).__name__
        raise ArtifactError(f'{path}: format {got!r}, expected {fmt!r}')
    want = body.get('sha256')
    if want != _checksum({k: v for k, v in body.items() if k != 'sha256'}):
        raise ArtifactError(f'{path}: checksum mismatch (file edited or truncated)')
    return body


def load_accuracy(path: Optional[Path] = None, model_id: Optional[str] = None
                  ) -> Dict[int, float]:
    """Return ``{exit: top1}`` from the accuracy table, validated against ``model_id``."""
    path = Path(path or ARTIFACT_DIR / ACCURACY_FILE)
    body = load_json(path, ACCURACY_FORMAT)
    if model_id is not None and body.get('model_id') != model_id:
        raise ArtifactError(f'{path}: accuracy table is for model {body.get("model_id")!r}, '
                            f'not {model_id!r}')
    try:
        table = {int(r['exit']): float(r['top1']) for r in body['exits']}
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f'{path}: malformed "exits" list ({exc})') from exc
    if sorted(table) != list(range(1, NUM_EXITS + 1)) \
            or not all(0.0 <= a <= 1.0 for a in table.values()):
        raise ArtifactError(f'{path}: need top1 in [0, 1] for exits 1..{NUM_EXITS}, got {table}')
    return table


class EncodingCost(NamedTuple):
    """Measured cost of one (exit, split, encoding): top-1 in [0, 1], bytes, codec ms."""

    top1: float
    bytes_mean: float
    bytes_p95: float
    encode_ms: float
    decode_ms: float


def _accuracy_body(path: Optional[Path], model_id: Optional[str]) -> Tuple[Path, Dict[str, Any]]:
    path = Path(path or ARTIFACT_DIR / ACCURACY_FILE)
    body = load_json(path, ACCURACY_FORMAT)
    if model_id is not None and body.get('model_id') != model_id:
        raise ArtifactError(f'{path}: accuracy table is for model {body.get("model_id")!r}, '
                            f'not {model_id!r}')
    return path, body


def load_encodings(path: Optional[Path] = None, model_id: Optional[str] = None
                   ) -> Dict[Tuple[int, int, str], EncodingCost]:
    """
    Return ``{(exit, split, encoding): EncodingCost}`` from the accuracy table's encodings.

    Written by ``edgent-ros accuracy`` (measured on the test set); an accuracy file without it
    is refused with the command to run.
    """
    path, body = _accuracy_body(path, model_id)
    return encodings_of(body, path)


def encodings_of(body: Dict[str, Any], path: Any = ''
                 ) -> Dict[Tuple[int, int, str], EncodingCost]:
    """
    Return ``{(exit, split, encoding): EncodingCost}`` of an accuracy table's body.

    The shipped AlexNet's table (``edgent-ros accuracy``) or a described model's
    (``edgent-ros train-bottleneck --model``: its frames and bottlenecks); ``path`` names it in
    errors.
    """
    section = body.get('encodings')
    if not isinstance(section, dict) or not isinstance(section.get('configs'), list):
        raise ArtifactError(f'{path}: no per-encoding accuracy table; run '
                            '`edgent-ros accuracy` (a described model: `edgent-ros '
                            'train-bottleneck --model`) to measure it')
    out = {}
    try:
        for r in section['configs']:
            key = (int(r['exit']), int(r['split']), str(r['encoding']))
            cost = EncodingCost(float(r['top1']), float(r['bytes_mean']), float(r['bytes_p95']),
                                float(r['encode_ms']), float(r['decode_ms']))
            if not known_encoding(key[2]) or key[0] < 1 or key[1] < 0 \
                    or not 0.0 <= cost.top1 <= 1.0 or min(cost[1:]) < 0:
                raise ValueError(f'bad row {r}')
            out[key] = cost
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f'{path}: malformed "encodings" table ({exc})') from exc
    return out


def int8_summary(rows: Sequence[Dict[str, Any]]) -> Dict[str, float]:
    """
    Return the bytes cut and the top-1 loss of int8 against fp32 over every inner split.

    ``rows`` are the accuracy table's ``encodings.configs`` (``offline.accuracy``): for each
    ``(exit, split)`` with ``0 < split`` measured both raw and int8, the payload ratio and the
    top-1 difference. Loss in percentage points; empty when no such pair exists.
    """
    raw = {(r['exit'], r['split']): r for r in rows if r['encoding'] == 'raw' and r['split'] > 0}
    ratios, losses = [], []
    for r in rows:
        if r['encoding'] == 'int8' and (r['exit'], r['split']) in raw:
            ref = raw[(r['exit'], r['split'])]
            ratios.append(ref['bytes_mean'] / r['bytes_mean'])
            losses.append(ref['top1'] - r['top1'])
    if not ratios:
        return {}
    return {'splits': len(ratios), 'bytes_cut_min': round(min(ratios), 3),
            'top1_loss_max_points': round(100 * max(losses), 3),
            'top1_loss_mean_points': round(100 * statistics.fmean(losses), 3)}


def load_confidence(path: Optional[Path] = None, model_id: Optional[str] = None
                    ) -> Dict[int, list]:
    """
    Return ``{final_exit: [{threshold, top1, exit_fraction}, ...]}`` (thresholds ascending).

    The BranchyNet confidence early-exit table written by ``edgent-ros accuracy``.
    """
    path, body = _accuracy_body(path, model_id)
    section = body.get('confidence')
    try:
        table = {int(e): sorted(rows, key=lambda r: float(r['threshold']))
                 for e, rows in section['exits'].items()}
        for e, rows in table.items():
            for r in rows:
                if not 0.0 <= float(r['top1']) <= 1.0 or len(r['exit_fraction']) != e:
                    raise ValueError(f'bad row {r} for exit {e}')
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ArtifactError(f'{path}: no usable confidence early-exit table ({exc}); run '
                            '`edgent-ros accuracy`') from exc
    if sorted(table) != list(range(1, NUM_EXITS + 1)):
        raise ArtifactError(f'{path}: confidence table must cover exits 1..{NUM_EXITS}')
    return table


def safetensors_metadata(path: Path) -> Dict[str, str]:
    """
    Return the ``__metadata__`` of a safetensors file from its header alone (no torch).

    The format: an 8-byte little-endian header length, then that many bytes of JSON.
    Raises ValueError for a truncated file or a header that is not that JSON.
    """
    with open(path, 'rb') as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError('shorter than a safetensors header')
        (n,) = struct.unpack('<Q', head)
        if n > MAX_SAFETENSORS_HEADER:
            raise ValueError(f'header length {n} bytes is implausible')
        body = f.read(n)
    if len(body) != n:
        raise ValueError(f'truncated header ({len(body)} of {n} bytes)')
    header = json.loads(body.decode('utf-8'))
    meta = header.get('__metadata__') if isinstance(header, dict) else None
    return dict(meta) if isinstance(meta, dict) else {}


def read_config(path: Optional[Path] = None) -> AlexNetConfig:
    """Return the architecture named in a weights file's header, without loading tensors."""
    path = Path(path or ARTIFACT_DIR / WEIGHTS_FILE)
    if not path.is_file():
        raise ArtifactError(f'{path}: weights file not found')
    try:
        meta = safetensors_metadata(path)
        cfg = AlexNetConfig(**json.loads(meta['config']))
    except Exception as exc:  # garbled header, missing or bad config
        raise ArtifactError(f'{path}: no readable architecture config ({exc})') from exc
    if cfg.model_id() != meta.get('model_id'):
        raise ArtifactError(f'{path}: model_id {meta.get("model_id")!r} does not match its config')
    return cfg
