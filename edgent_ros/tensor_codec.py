"""
Array <-> ``edgent_ros/Tensor`` fields, without rclpy and without per-element Python loops.

``encode`` turns a numpy array into an ``EncodedTensor`` (the message's tensor fields);
``decode`` validates fields and returns the array. Both work on any object with the message's
attribute names (``fill_message`` / ``from_message``), so the nodes pass their generated
messages straight in. Payloads are copied as one buffer (``np.frombuffer``/``tobytes``):
element-wise ``uint8[]`` conversion in rclpy is 30-100x slower for megabyte payloads.

Errors raise ``CodecError`` with the offending ``field`` and a short ``reason`` code that nodes
count per reason (``payload_length``, ``data_type``, ``encoding``, ``shape``, ``too_large``,
``non_finite``, ``strides``, ``scale``).
"""

from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any, Sequence, Tuple
import zlib

import numpy as np

# Isaac ROS data-type codes (Tensor.msg), 11 = float16 (our extension).
DATA_TYPES = {1: np.int8, 2: np.uint8, 3: np.int16, 4: np.uint16, 5: np.int32, 6: np.uint32,
              7: np.int64, 8: np.uint64, 9: np.float32, 10: np.float64, 11: np.float16}
CODE_OF = {np.dtype(v): k for k, v in DATA_TYPES.items()}
ENCODING_RAW, ENCODING_FP16, ENCODING_INT8, ENCODING_COMPRESSED = 0, 1, 2, 3
ENCODINGS = {'raw': ENCODING_RAW, 'fp16': ENCODING_FP16, 'int8': ENCODING_INT8,
             'compressed': ENCODING_COMPRESSED}
ENCODING_NAMES = {v: k for k, v in ENCODINGS.items()}
DEFAULT_MAX_BYTES = 16 * 1024 * 1024   # refuse payloads above this (configurable per node)
MAX_RANK = 8
MAX_DIM = 1 << 20


class CodecError(ValueError):
    """A tensor's fields are inconsistent; ``field`` names the culprit, ``reason`` is a code."""

    def __init__(self, field: str, reason: str, detail: str):
        super().__init__(f'Tensor.{field}: {detail}')
        self.field = field
        self.reason = reason


@dataclass
class EncodedTensor:
    """The tensor fields of a ``Tensor`` message."""

    name: str
    shape: Tuple[int, ...]
    data_type: int
    strides: Tuple[int, ...]
    encoding: int
    scale: float
    zero_point: int
    data: bytes

    @property
    def nbytes(self) -> int:
        """Return how many payload bytes cross the link."""
        return len(self.data)


def _c_strides(shape: Sequence[int], itemsize: int) -> Tuple[int, ...]:
    strides, acc = [], itemsize
    for d in reversed(shape):
        strides.append(acc)
        acc *= int(d)
    return tuple(reversed(strides))


def encode(array: np.ndarray, encoding: str = 'raw', name: str = '') -> EncodedTensor:
    """
    Encode ``array`` (any shape, a supported dtype) with ``encoding``.

    ``fp16`` and ``int8`` apply to float32 input only: the decoded ``data_type`` stays float32;
    ``int8`` is per-tensor affine (``value = scale * (q - zero_point)``).
    """
    if encoding not in ENCODINGS:
        raise CodecError('encoding', 'encoding',
                         f'unknown encoding {encoding!r}; known: {sorted(ENCODINGS)}')
    arr = np.ascontiguousarray(array)
    if arr.dtype not in CODE_OF:
        raise CodecError('data_type', 'data_type', f'unsupported dtype {arr.dtype}')
    code = CODE_OF[arr.dtype]
    shape = tuple(int(d) for d in arr.shape)
    strides = _c_strides(shape, arr.dtype.itemsize)
    scale, zero_point = 0.0, 0
    enc = ENCODINGS[encoding]
    if enc in (ENCODING_FP16, ENCODING_INT8) and arr.dtype != np.float32:
        raise CodecError('encoding', 'encoding',
                         f'{encoding} needs float32 input, got {arr.dtype}')
    if enc in (ENCODING_FP16, ENCODING_INT8) and not np.isfinite(arr).all():
        raise CodecError('data', 'non_finite', f'{encoding} of a tensor with NaN or Inf values')
    if enc == ENCODING_RAW:
        data = arr.astype(arr.dtype.newbyteorder('<'), copy=False).tobytes()
    elif enc == ENCODING_FP16:
        data = arr.astype('<f2').tobytes()
    elif enc == ENCODING_INT8:
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        scale = (hi - lo) / 255.0 or 1.0
        zero_point = int(round(-128 - lo / scale))
        q = np.clip(np.rint(arr / scale) + zero_point, -128, 127).astype(np.int8)
        data = q.tobytes()
    else:
        data = zlib.compress(arr.astype(arr.dtype.newbyteorder('<'), copy=False).tobytes(), 1)
    return EncodedTensor(name, shape, code, strides, enc, float(scale), int(zero_point), data)


def decode(shape: Sequence[int], data_type: int, encoding: int, data: Any,
           scale: float = 0.0, zero_point: int = 0, strides: Sequence[int] = (),
           max_bytes: int = DEFAULT_MAX_BYTES, check_finite: bool = True) -> np.ndarray:
    """
    Validate tensor fields and return the decoded array (float32 for fp16/int8 encodings).

    ``data`` may be ``bytes``, ``array.array('B')`` or a numpy uint8 buffer (what rclpy gives).
    """
    shape = tuple(shape)
    if len(shape) == 0 or len(shape) > MAX_RANK:
        raise CodecError('shape', 'shape', f'rank must be 1..{MAX_RANK}, got {len(shape)}')
    for d in shape:
        if not isinstance(d, (int, np.integer)) or not 0 < int(d) <= MAX_DIM:
            raise CodecError('shape', 'shape', f'dims must be in 1..{MAX_DIM}, got {list(shape)}')
    if data_type not in DATA_TYPES:
        raise CodecError('data_type', 'data_type', f'unknown data_type code {data_type}')
    if encoding not in ENCODING_NAMES:
        raise CodecError('encoding', 'encoding', f'unknown encoding {encoding}')
    dtype = np.dtype(DATA_TYPES[data_type]).newbyteorder('<')
    n = int(np.prod(shape, dtype=np.int64))
    if n * dtype.itemsize > max_bytes:
        raise CodecError('shape', 'too_large', f'{n * dtype.itemsize} bytes decoded exceed the '
                         f'limit of {max_bytes}')
    buf = memoryview(data).cast('B') if not isinstance(data, bytes) else data
    if len(buf) > max_bytes:
        raise CodecError('data', 'too_large', f'payload of {len(buf)} bytes exceeds the limit '
                         f'of {max_bytes}')
    if strides and tuple(int(s) for s in strides) != _c_strides(shape, dtype.itemsize):
        raise CodecError('strides', 'strides', f'only C-contiguous strides '
                         f'{list(_c_strides(shape, dtype.itemsize))} are supported, '
                         f'got {list(strides)}')
    if encoding in (ENCODING_FP16, ENCODING_INT8) and data_type != 9:
        raise CodecError('encoding', 'encoding', f'{ENCODING_NAMES[encoding]} needs data_type '
                         f'FLOAT32 (9), got {data_type}')
    if encoding == ENCODING_RAW:
        arr = _frombuffer(buf, dtype, n)
    elif encoding == ENCODING_FP16:
        arr = _frombuffer(buf, np.dtype('<f2'), n).astype(np.float32)
    elif encoding == ENCODING_INT8:
        if not np.isfinite(scale) or scale <= 0:
            raise CodecError('scale', 'scale', f'int8 scale must be finite and > 0, got {scale}')
        q = _frombuffer(buf, np.dtype(np.int8), n)
        arr = (q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
    else:
        try:
            raw = zlib.decompressobj().decompress(bytes(buf), n * dtype.itemsize + 1)
        except zlib.error as exc:
            raise CodecError('data', 'payload_length', f'bad compressed payload ({exc})') from exc
        arr = _frombuffer(raw, dtype, n)
    arr = arr.reshape(shape)
    if check_finite and arr.dtype.kind == 'f' and not np.isfinite(arr).all():
        raise CodecError('data', 'non_finite', 'payload holds NaN or Inf values')
    return arr


def _frombuffer(buf: Any, dtype: np.dtype, n: int) -> np.ndarray:
    if len(buf) != n * dtype.itemsize:
        raise CodecError('data', 'payload_length',
                         f'payload has {len(buf)} bytes, shape x itemsize needs '
                         f'{n * dtype.itemsize}')
    return np.frombuffer(buf, dtype=dtype, count=n)


def fill_message(msg: Any, enc: EncodedTensor) -> Any:
    """Copy ``enc`` into the tensor fields of a ``Tensor`` message (one buffer copy)."""
    msg.name = enc.name
    msg.shape = list(enc.shape)
    msg.data_type = enc.data_type
    msg.strides = list(enc.strides)
    msg.encoding = enc.encoding
    msg.scale = enc.scale
    msg.zero_point = enc.zero_point
    msg.data = array.array('B', enc.data)   # typed buffer: rclpy skips per-element checks
    return msg


def from_message(msg: Any, max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """Decode the tensor fields of a received ``Tensor`` message (validated)."""
    return decode(tuple(int(d) for d in msg.shape), int(msg.data_type), int(msg.encoding),
                  msg.data, float(msg.scale), int(msg.zero_point),
                  tuple(int(s) for s in msg.strides), max_bytes=max_bytes)
