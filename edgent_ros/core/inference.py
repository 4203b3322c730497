"""
Partitioned co-inference and frame bookkeeping, shared by the nodes (no rclpy).

The robot runs layers ``[0, split)`` of branch ``exit`` (``device_step``), the edge finishes
``[split, end)`` (``edge_step``). At split 0 the robot sends the raw uint8 RGB frame
``(1, 32, 32, 3)`` and the edge normalizes it; otherwise the float32 activation ``(1, C, H, W)``
or ``(1, F)`` crosses the link. ``FrameLedger`` accounts for every frame the camera produced:
it ends as exactly one result or one counted drop with a reason.

**Confidence early exit** (BranchyNet, off when ``threshold`` is 0): a frame configured for exit
``E`` is also tried at every side exit ``e < E`` on the way; it stops at the first whose softmax
entropy (nats) is below the threshold. Side exit ``e`` is evaluated by the host that computes
its attach point (trunk layer ``EXIT_ATTACH[e] - 1``): the robot when ``EXIT_ATTACH[e] <=
split`` (a confident frame then never crosses the link), else the edge. The edge can run several
frames of one configuration as a batch (``edge_batch``).

**Learned bottlenecks** (``core.bottleneck``, encodings ``bn<c>``): at a trunk cut with a trained
bottleneck the robot sends its encoder's few maps instead of the activation, and the edge runs
the decoder before layer ``split``.
"""

from __future__ import annotations
from dataclasses import dataclass
import time
from typing import Dict, List, Optional, Sequence, Tuple, Union
import numpy as np
import torch
from .ledger import FrameRefused
from .arch import check_split, CLASSES, EXIT_ATTACH, INPUT_SHAPE, split_tensor_shape
from .bottleneck import Bottleneck, BottleneckSet, trunk_of
from .codec import bottleneck_width
from .described import DescribedModel
from .model import MultiExitAlexNet, normalize_images


@dataclass
class Classification:
    """Softmax summary of one frame's logits."""

    class_id: int
    label: str
    confidence: float
    scores: np.ndarray   # (num_classes,) float32 softmax
    exit_index: int = 0  # the exit that produced it (0: not recorded)


def classify(logits: np.ndarray, exit_index: int = 0, classes: Sequence[str] = CLASSES
             ) -> Classification:
    """Return argmax class, label and softmax of ``logits`` ``(num_classes,)`` or ``(1, n)``."""
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    p = np.exp(z - z.max())
    p /= p.sum()
    k = int(p.argmax())
    return Classification(k, classes[k] if k < len(classes) else str(k), float(p[k]),
                          p.astype(np.float32), int(exit_index))


def check_points(exit_index: int, start: int, stop: int,
                 attach: Optional[Dict[int, int]] = None) -> Dict[int, int]:
    """
    Return ``{attach index: side exit}`` of the side exits checked while running ``[start, stop)``.

    Side exit ``e < exit_index`` is checked right after layer ``attach[e] - 1`` (default the
    AlexNet's ``EXIT_ATTACH``), by the host that runs that layer: attach points in
    ``(start, stop]``.
    """
    attach = EXIT_ATTACH if attach is None else attach
    return {a: e for e, a in attach.items() if e < exit_index and start < a <= stop}


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits.double(), dim=1)
    return -(logp.exp() * logp).sum(1)


def preprocess_image(image: np.ndarray, rgb: bool = True,
                     size: Tuple[int, int] = INPUT_SHAPE[1:]) -> np.ndarray:
    """Return a uint8 RGB ``size`` (H, W) frame from any HxWx3 (or HxW mono) uint8 image."""
    import cv2
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f'expected an HxWx3 image, got shape {img.shape}')
    img = img[:, :, :3]
    if not rgb:
        img = img[:, :, ::-1]
    if img.dtype != np.uint8:
        raise ValueError(f'expected a uint8 image, got {img.dtype}')
    size = (int(size[0]), int(size[1]))
    if img.shape[:2] != size:
        shrink = img.shape[0] >= size[0] and img.shape[1] >= size[1]
        img = cv2.resize(np.ascontiguousarray(img), size[::-1],
                         interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return np.ascontiguousarray(img)


@dataclass
class DeviceOutput:
    """What the robot produced for one frame."""

    tensor: Optional[np.ndarray]          # to send (split < end), else None
    classification: Optional[Classification]  # device-only result (split == end), else None
    device_ms: float                      # everything the robot did for the frame
    # of which the model's layers, side heads and a bottleneck's encoder
    layers_ms: float = 0.0
    # this thread's CPU time in those (no time waiting for the CPU): what the testbed scales
    layers_cpu_ms: float = 0.0


class CoInference:
    """
    The partitioned model on one host (robot or edge).

    ``model``: the shipped ``MultiExitAlexNet`` or any described model
    (``core.described.DescribedModel``): exits, their attach points, input size, normalisation
    and classes come from it, and its learned bottlenecks (``bottlenecks``) when it has some.
    """

    def __init__(self, model: Union[MultiExitAlexNet, DescribedModel],
                 threads: Optional[int] = None, bottlenecks: Optional[BottleneckSet] = None):
        self.described: Optional[DescribedModel] = None
        if isinstance(model, DescribedModel):
            if model.chain is None:                 # the shipped AlexNet, described
                model = model.model
            else:
                self.described = model
        if self.described is not None:
            dm = self.described
            self.model = dm.model.eval()
            self._model_id = dm.model_id
            self.num_exits = dm.num_exits
            self.attach = {k + 1: a for k, a in enumerate(dm.model.attach)}
            self.input_shape = tuple(dm.input_shape)
            self.classes = tuple(dm.classes)
            self._mean, self._std = dm.mean, dm.std
        else:
            self.model = model.eval()
            self._model_id = model.model_id
            self.num_exits = len(model._branches)
            self.attach = dict(EXIT_ATTACH)
            self.input_shape = tuple(INPUT_SHAPE)
            self.classes = tuple(CLASSES)
            self._mean, self._std = None, None
        if bottlenecks is not None and bottlenecks.model_id != self._model_id:
            raise ValueError(f'bottlenecks are for {bottlenecks.model_id!r}, the model is '
                             f'{self._model_id!r}')
        self.bottlenecks = bottlenecks
        self._trunk = (trunk_of(self.described or self.model) if bottlenecks is not None
                       else None)
        if threads:
            torch.set_num_threads(int(threads))

    def normalize(self, images_u8: torch.Tensor) -> torch.Tensor:
        """uint8 RGB NHWC at the model's input size -> its normalised float NCHW input."""
        if self.described is None:
            return normalize_images(images_u8)
        return self.described.normalize(images_u8)

    def check_split(self, exit_index: int, split_index: int) -> None:
        """Raise ValueError unless ``(exit_index, split_index)`` is a cut of this model."""
        if self.described is None:
            check_split(self.model.cfg, exit_index, split_index)
            return
        if isinstance(exit_index, bool) or not isinstance(exit_index, int) \
                or not 1 <= exit_index <= self.num_exits:
            raise ValueError(f'exit_index must be an integer in 1..{self.num_exits}, got '
                             f'{exit_index!r}')
        n = self.branch_len(exit_index)
        if isinstance(split_index, bool) or not isinstance(split_index, int) \
                or not 0 <= split_index <= n:
            raise ValueError(f'split_index must be an integer in 0..{n} for exit '
                             f'{exit_index}, got {split_index!r}')

    def cut_shape(self, exit_index: int, split_index: int) -> Tuple[int, ...]:
        """Per-frame shape of the tensor crossing at ``(exit, split)`` (split 0: C, H, W)."""
        if self.described is None:
            return tuple(split_tensor_shape(self.model.cfg, exit_index, split_index))
        self.check_split(exit_index, split_index)
        return tuple(self.described.chain.cuts[split_index].shape)

    @property
    def bottleneck_id(self) -> str:
        """Id of the loaded bottleneck set ('' when none)."""
        return self.bottlenecks.bottleneck_id if self.bottlenecks is not None else ''

    def bottleneck_for(self, exit_index: int, split_index: int, encoding: str
                       ) -> Optional[Bottleneck]:
        """Return the bottleneck ``encoding`` carries at ``(exit, split)``; None if not one."""
        if bottleneck_width(encoding) is None:
            return None
        if self.bottlenecks is None or not self.bottlenecks.covers(
                self._trunk, exit_index, split_index, encoding):
            raise FrameRefused('bottleneck', f'no {encoding} bottleneck at exit {exit_index} '
                               f'split {split_index} here' + (
                                   '' if self.bottlenecks is not None
                                   else ' (no bottleneck file loaded)'))
        return self.bottlenecks.get(split_index, encoding)

    @property
    def model_id(self) -> str:
        """Id of the loaded architecture/weights."""
        return self._model_id

    def branch_len(self, exit_index: int) -> int:
        """Return the number of layers of branch ``exit_index``."""
        return self.model.branch_len(exit_index)

    def _forward(self, x: torch.Tensor, exit_index: int, start: int, stop: int, threshold: float
                 ) -> Tuple[torch.Tensor, torch.Tensor, Dict[int, Tuple[int, np.ndarray]]]:
        """
        Run layers ``[start, stop)`` of branch ``exit_index`` on batch ``x`` with side exits.

        Returns ``(x_left, rows_left, done)``: the output for the rows still running (indices into
        the batch), and ``{row: (exit, logits)}`` of the rows a confident side exit finished.
        """
        rows = torch.arange(x.shape[0])
        done: Dict[int, Tuple[int, np.ndarray]] = {}
        points = check_points(exit_index, start, stop, self.attach) if threshold > 0 else {}
        layers = self.model.branch(exit_index)
        for i in range(start, stop):
            x = layers[i](x)
            e = points.get(i + 1)
            if e is None:
                continue
            logits = self.model.run(x, e, self.attach[e])      # the side head
            conf = _entropy(logits) < threshold
            if bool(conf.any()):
                for r, z in zip(rows[conf].tolist(), logits[conf].numpy()):
                    done[r] = (e, z)
                keep = ~conf
                x, rows = x[keep], rows[keep]
                if x.shape[0] == 0:
                    break
        return x, rows, done

    @torch.inference_mode()
    def device_step(self, frame_u8: np.ndarray, exit_index: int, split_index: int,
                    threshold: float = 0.0, encoding: str = 'raw') -> DeviceOutput:
        """
        Run layers ``[0, split)`` on one uint8 RGB frame ``(H, W, 3)`` at the input size.

        With ``threshold`` > 0 (nats) the side exits before the cut are tried on the way: a
        confident one finishes the frame here (``classification``, nothing to send). With a
        bottleneck ``encoding`` (``bn<c>``) the tensor returned is its encoder's output
        (``FrameRefused('bottleneck')`` when there is none at this cut).
        """
        self.check_split(exit_index, split_index)
        t0 = time.perf_counter()
        n = self.branch_len(exit_index)
        bn = self.bottleneck_for(exit_index, split_index, encoding) if split_index < n else None
        if split_index == 0:
            return DeviceOutput(np.ascontiguousarray(frame_u8[None]), None,
                                (time.perf_counter() - t0) * 1e3)
        x = self.normalize(torch.from_numpy(np.ascontiguousarray(frame_u8[None])))
        t1, c1 = time.perf_counter(), time.thread_time()
        y, rows, done = self._forward(x, exit_index, 0, split_index, threshold)
        if bn is not None and not done:
            # the bottleneck's encoder is robot compute like the layers before it (the planner
            # scales it with the robot: optimizer.scale_robot), so it is timed with them
            y = bn.encode(y)
        layers = (time.perf_counter() - t1) * 1e3
        cpu = (time.thread_time() - c1) * 1e3
        if done:
            e, z = done[0]
            return DeviceOutput(None, classify(z, e, self.classes),
                                (time.perf_counter() - t0) * 1e3, layers, cpu)
        if split_index == n:
            out = classify(y.numpy(), exit_index, self.classes)
            return DeviceOutput(None, out, (time.perf_counter() - t0) * 1e3, layers, cpu)
        y = y.numpy()
        return DeviceOutput(y, None, (time.perf_counter() - t0) * 1e3, layers, cpu)

    def warm_up(self) -> List[Tuple[int, int, str]]:
        """
        Run every exit's branch and every learned bottleneck's encoder once on a blank frame.

        torch's first call of a layer costs several times a later one (7.6 ms of CPU against
        1.1 ms for resnet64's split-5 prefix on the 2-core testbed host), and a robot that
        meets it on its first live frame of a configuration is late by that much, times how
        much slower the robot is. Returns the (exit, split, encoding) run, in order.
        """
        blank = np.zeros(tuple(self.input_shape[1:]) + (3,), np.uint8)
        runs = [(e, self.branch_len(e), 'raw') for e in range(1, self.num_exits + 1)]
        if self.bottlenecks is not None:
            for spec in self.bottlenecks.specs():
                e = next((x for x in range(self.num_exits, 0, -1) if self.bottlenecks.covers(
                    self._trunk, x, spec.split, spec.name)), None)
                if e is not None:
                    runs.append((e, spec.split, spec.name))
        for e, s, enc in runs:
            self.device_step(blank, e, s, encoding=enc)
        return runs

    def expected_shape(self, exit_index: int, split_index: int, encoding: str = 'raw'
                       ) -> Tuple[int, ...]:
        """Batched shape the edge expects at ``(exit, split)`` with ``encoding``."""
        bn = self.bottleneck_for(exit_index, split_index, encoding)
        if bn is not None:
            return bn.spec.wire_shape
        if split_index == 0:
            return (1,) + self.input_shape[1:] + (self.input_shape[0],)
        return (1,) + self.cut_shape(exit_index, split_index)

    def validate(self, model_id: str, exit_index: int, split_index: int,
                 array: np.ndarray, encoding: str = 'raw', bottleneck_id: str = '') -> None:
        """
        Raise ``FrameRefused`` unless the frame fits this model at ``(exit, split)``.

        A bottleneck frame must also come from this host's bottleneck set (``bottleneck_id``):
        maps encoded by other weights would decode into a wrong activation without any error.
        """
        if model_id != self.model_id:
            raise FrameRefused('model_id', f'frame is for model {model_id!r}, '
                               f'this edge runs {self.model_id!r}')
        try:
            self.check_split(int(exit_index), int(split_index))
        except ValueError as exc:
            raise FrameRefused('exit_split', str(exc)) from exc
        if split_index == self.branch_len(exit_index):
            raise FrameRefused('exit_split', f'split {split_index} is device-only for exit '
                               f'{exit_index}; nothing should be sent')
        if bottleneck_width(encoding) is not None:
            self.bottleneck_for(int(exit_index), int(split_index), encoding)
            if bottleneck_id != self.bottleneck_id:
                raise FrameRefused('bottleneck', f'{encoding} frame encoded by bottleneck set '
                                   f'{bottleneck_id!r}, this host has {self.bottleneck_id!r}')
        want = self.expected_shape(exit_index, split_index, encoding)
        if tuple(array.shape) != want:
            raise FrameRefused('shape', f'shape {list(array.shape)} does not match '
                               f'exit {exit_index} split {split_index}: expected {list(want)}')
        want_dtype = np.uint8 if split_index == 0 else np.float32
        if array.dtype != want_dtype:
            raise FrameRefused('data_type', f'dtype {array.dtype} at split {split_index}, '
                               f'expected {np.dtype(want_dtype)}')

    @torch.inference_mode()
    def edge_step(self, array: np.ndarray, exit_index: int, split_index: int,
                  threshold: float = 0.0, encoding: str = 'raw') -> Tuple[Classification, float]:
        """Finish layers ``[split, end)``; return the classification and compute ms."""
        out, ms = self.edge_batch([array], exit_index, split_index, threshold, encoding)
        return out[0], ms

    @torch.inference_mode()
    def edge_batch(self, arrays: List[np.ndarray], exit_index: int, split_index: int,
                   threshold: float = 0.0, encoding: str = 'raw'
                   ) -> Tuple[List[Classification], float]:
        """
        Finish layers ``[split, end)`` of several frames of one configuration as one batch.

        ``arrays``: received tensors, each batched ``(1, ...)`` as ``expected_shape``; with a
        bottleneck ``encoding`` they are its maps and its decoder runs first. Returns one
        classification per frame, in order, and the compute ms of the whole batch.
        """
        t0 = time.perf_counter()
        bn = self.bottleneck_for(exit_index, split_index, encoding)
        if split_index == 0:
            x = self.normalize(torch.from_numpy(np.concatenate(
                [np.asarray(a, dtype=np.uint8) for a in arrays])))
        else:
            x = torch.from_numpy(np.concatenate([np.asarray(a, dtype=np.float32)
                                                 for a in arrays]))
            if bn is not None:
                x = bn.decode(x)
            if x.dim() == 4:   # the layout the robot ran in (and the latency models were fit on)
                x = x.contiguous(memory_format=torch.channels_last)
        n = self.branch_len(exit_index)
        y, rows, done = self._forward(x, exit_index, split_index, n, threshold)
        out: List[Optional[Classification]] = [None] * len(arrays)
        for r, (e, z) in done.items():
            out[r] = classify(z, e, self.classes)
        for r, z in zip(rows.tolist(), y.numpy()):
            out[r] = classify(z, exit_index, self.classes)
        return out, (time.perf_counter() - t0) * 1e3

    @torch.inference_mode()
    def full_forward(self, frame_u8: np.ndarray, exit_index: int) -> Classification:
        """In-process reference: the whole branch on one frame."""
        x = self.normalize(torch.from_numpy(np.ascontiguousarray(frame_u8[None])))
        return classify(self.model.run(x, exit_index).numpy(), exit_index, self.classes)
