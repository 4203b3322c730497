"""
Model weights as safetensors: save with model_id and architecture in the header, load checked.

Nothing is unpickled. ``core.artifacts.read_config`` reads the same header without torch.
"""

from __future__ import annotations

from dataclasses import asdict
import json
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch

from .arch import AlexNetConfig
from .artifacts import ARTIFACT_DIR, ArtifactError, WEIGHTS_FILE
from .model import MultiExitAlexNet


def save_weights(model: MultiExitAlexNet, path: Path, extra: Optional[Dict[str, str]] = None
                 ) -> None:
    """Write the deployment weights of ``model`` as safetensors with model metadata."""
    from safetensors.torch import save_file
    if model.batchnorm:
        raise ValueError('fold batch norm (model.fold_batchnorm) before saving deployment weights')
    meta = {'model_id': model.model_id, 'config': json.dumps(asdict(model.cfg), sort_keys=True),
            'format': 'edgent_ros/weights/1'}
    meta.update(extra or {})
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=meta)


def read_safetensors(path: Path) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Return ``(tensors, metadata)`` of a safetensors file; ArtifactError naming the problem."""
    from safetensors import safe_open
    if not Path(path).is_file():
        raise ArtifactError(f'{path}: weights file not found')
    try:
        with safe_open(str(path), framework='pt') as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types for garbled headers
        raise ArtifactError(f'{path}: not a readable safetensors file ({exc})') from exc


def load_model(path: Optional[Path] = None, expected_model_id: Optional[str] = None
               ) -> MultiExitAlexNet:
    """Load deployment weights; refuse files whose model_id or tensors don't match the code."""
    path = Path(path or ARTIFACT_DIR / WEIGHTS_FILE)
    state, meta = read_safetensors(path)
    if 'config' not in meta or 'model_id' not in meta:
        raise ArtifactError(f'{path}: no model_id/config metadata; not an edgent_ros weights file')
    try:
        cfg = AlexNetConfig(**json.loads(meta['config']))
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f'{path}: bad architecture config in metadata ({exc})') from exc
    if cfg.model_id() != meta['model_id']:
        raise ArtifactError(f'{path}: model_id {meta["model_id"]!r} does not match its config '
                            f'({cfg.model_id()!r}); written by another architecture version')
    if expected_model_id is not None and meta['model_id'] != expected_model_id:
        raise ArtifactError(f'{path}: model_id {meta["model_id"]!r}, expected '
                            f'{expected_model_id!r}')
    try:
        model = MultiExitAlexNet(cfg, batchnorm=False)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ArtifactError(f'{path}: cannot build architecture {cfg.model_id()} '
                            f'({exc})') from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = ' '.join(str(exc).split())
        raise ArtifactError(f'{path}: weights do not fit architecture {cfg.model_id()}: '
                            f'{detail[:400]}') from exc
    return model.eval()
