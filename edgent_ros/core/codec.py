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

Encodings (the planner's third decision dimension, see ``optimizer``): float32 activations go
``raw`` (fp32), ``fp16``, ``int8`` (per-tensor affine, scale/zero-point in the message),
``int8-zlib`` (the int8 bytes, then zlib: lossless on top of int8; post-ReLU features are
sparse) or ``compressed`` (zlib of fp32, lossless); the uint8 frame at split 0 goes ``raw``,
``compressed``, ``png`` (lossless) or ``jpeg`` (lossy, quality ``JPEG_QUALITY``). ``applies``
says which encoding fits which tensor; ``effective_encoding`` is what a sender uses when the
configured one does not fit (raw).
"""

from __future__ import annotations

import array
from dataclasses import dataclass
import re
from typing import Any, Optional, Sequence, Tuple
import zlib

import numpy as np

# Isaac ROS data-type codes (Tensor.msg), 11 = float16 (our extension).
DATA_TYPES = {1: np.int8, 2: np.uint8, 3: np.int16, 4: np.uint16, 5: np.int32, 6: np.uint32,
              7: np.int64, 8: np.uint64, 9: np.float32, 10: np.float64, 11: np.float16}
CODE_OF = {np.dtype(v): k for k, v in DATA_TYPES.items()}
ENCODING_RAW, ENCODING_FP16, ENCODING_INT8, ENCODING_COMPRESSED = 0, 1, 2, 3
ENCODING_INT8_ZLIB, ENCODING_PNG, ENCODING_JPEG = 4, 5, 6
ENCODINGS = {'raw': ENCODING_RAW, 'fp16': ENCODING_FP16, 'int8': ENCODING_INT8,
             'compressed': ENCODING_COMPRESSED, 'int8-zlib': ENCODING_INT8_ZLIB,
             'png': ENCODING_PNG, 'jpeg': ENCODING_JPEG}
ENCODING_NAMES = {v: k for k, v in ENCODINGS.items()}
# Which encodings fit which tensor: float32 activations, and the uint8 HxWx3 frame (split 0).
FEATURE_ENCODINGS = ('raw', 'fp16', 'int8', 'int8-zlib', 'compressed')
IMAGE_ENCODINGS = ('raw', 'compressed', 'png', 'jpeg')
LOSSLESS = ('raw', 'compressed', 'png')      # decoded tensor == sent tensor
JPEG_QUALITY = 90      # IJG scale; the accuracy table is measured at this quality
ZLIB_LEVEL = 1         # fastest: 32-130 kB activations in well under a millisecond
DEFAULT_MAX_BYTES = 16 * 1024 * 1024   # refuse payloads above this (configurable per node)
MAX_RANK = 8
MAX_DIM = 1 << 20
# Learned bottlenecks (core.bottleneck): ``bn<channels>`` names the encoder output of that width,
# sent as int8 like ENCODING_INT8; the planner chooses them at the cuts that have one.
_BOTTLENECK = re.compile(r'bn([1-9][0-9]{0,3})')


def bottleneck_width(encoding: Any) -> Optional[int]:
    """Return ``c`` for a bottleneck encoding name ``bn<c>``, else None."""
    m = _BOTTLENECK.fullmatch(encoding) if isinstance(encoding, str) else None
    return int(m.group(1)) if m else None


def known_encoding(encoding: Any) -> bool:
    """Return whether ``encoding`` is a codec encoding or a bottleneck name."""
    return encoding in ENCODINGS or bottleneck_width(encoding) is not None


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
    wire_name: str = ''     # the message's encoding name when not ENCODING_NAMES[encoding]

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

    ``fp16``, ``int8`` and ``int8-zlib`` apply to float32 input only: the decoded
    ``data_type`` stays float32; ``int8`` is per-tensor affine
    (``value = scale * (q - zero_point)``). ``png``/``jpeg`` apply to a uint8 RGB image
    ``(1, H, W, 3)`` or ``(H, W, 3)`` only.
    """
    wire_name = ''
    if bottleneck_width(encoding) is not None:   # a bottleneck's maps: int8 on the wire
        wire_name, encoding = encoding, 'int8'
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
    if enc in (ENCODING_FP16, ENCODING_INT8, ENCODING_INT8_ZLIB) and arr.dtype != np.float32:
        raise CodecError('encoding', 'encoding',
                         f'{encoding} needs float32 input, got {arr.dtype}')
    if enc in (ENCODING_FP16, ENCODING_INT8, ENCODING_INT8_ZLIB) \
            and not np.isfinite(arr).all():
        raise CodecError('data', 'non_finite', f'{encoding} of a tensor with NaN or Inf values')
    if enc in (ENCODING_PNG, ENCODING_JPEG) and not _is_image(arr):
        raise CodecError('encoding', 'encoding', f'{encoding} needs a uint8 (1, H, W, 3) or '
                         f'(H, W, 3) image, got {arr.dtype} {list(arr.shape)}')
    if enc == ENCODING_RAW:
        data = arr.astype(arr.dtype.newbyteorder('<'), copy=False).tobytes()
    elif enc == ENCODING_FP16:
        data = arr.astype('<f2').tobytes()
    elif enc in (ENCODING_INT8, ENCODING_INT8_ZLIB):
        q, scale, zero_point = quantize_int8(arr)
        data = q.tobytes()
        if enc == ENCODING_INT8_ZLIB:
            data = zlib.compress(data, ZLIB_LEVEL)
    elif enc in (ENCODING_PNG, ENCODING_JPEG):
        data = _imencode(arr, enc)
    else:
        data = zlib.compress(arr.astype(arr.dtype.newbyteorder('<'), copy=False).tobytes(),
                             ZLIB_LEVEL)
    return EncodedTensor(name, shape, code, strides, enc, float(scale), int(zero_point), data,
                         wire_name)


def quantize_int8(arr: np.ndarray) -> Tuple[np.ndarray, float, int]:
    """
    Per-tensor affine int8 of a float32 array: return ``(q, scale, zero_point)``.

    ``value ~= scale * (q - zero_point)``; the range always holds 0 (exact zeros stay exact:
    post-ReLU activations are mostly zeros), error <= scale / 2 inside the range.
    """
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    zero_point = int(round(-128 - lo / scale))
    q = np.clip(np.rint(arr / scale) + zero_point, -128, 127).astype(np.int8)
    return q, float(scale), zero_point


def applies(encoding: str, image: bool) -> bool:
    """Return whether ``encoding`` fits the uint8 frame (``image``) or a float32 activation."""
    if bottleneck_width(encoding) is not None:
        return not image   # at cuts with a trained bottleneck (the runner knows which)
    return encoding in (IMAGE_ENCODINGS if image else FEATURE_ENCODINGS)


def effective_encoding(encoding: str, image: bool) -> str:
    """Return the encoding a sender uses for this tensor: ``encoding`` if it fits, else raw."""
    if not known_encoding(encoding):
        raise ValueError(f'unknown encoding {encoding!r}; known: {sorted(ENCODINGS)} and '
                         'bn<channels>')
    return encoding if applies(encoding, image) else 'raw'


def _is_image(arr: np.ndarray) -> bool:
    shape = arr.shape[1:] if arr.ndim == 4 and arr.shape[0] == 1 else arr.shape
    return arr.dtype == np.uint8 and len(shape) == 3 and shape[2] == 3


def _imencode(arr: np.ndarray, enc: int) -> bytes:
    import cv2
    img = np.ascontiguousarray(arr.reshape(arr.shape[-3:])[:, :, ::-1])   # RGB -> BGR for cv2
    if enc == ENCODING_PNG:
        ok, buf = cv2.imencode('.png', img, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    else:
        ok, buf = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise CodecError('data', 'encoding', f'{ENCODING_NAMES[enc]} encoder failed')
    return buf.tobytes()


def _image_dims(buf: bytes, enc: int) -> Tuple[int, int, int]:
    """Return (height, width, channels) from a PNG/JPEG header, without decoding pixels."""
    if enc == ENCODING_PNG:
        if len(buf) < 26 or buf[:8] != b'\x89PNG\r\n\x1a\n' or buf[12:16] != b'IHDR':
            raise CodecError('data', 'payload_length', 'not a PNG image')
        w, h = int.from_bytes(buf[16:20], 'big'), int.from_bytes(buf[20:24], 'big')
        channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(buf[25], 0)
        return h, w, channels
    i = 2
    if buf[:2] != b'\xff\xd8':
        raise CodecError('data', 'payload_length', 'not a JPEG image')
    while i + 9 < len(buf):       # walk the segments to the first start-of-frame
        if buf[i] != 0xFF:
            break
        marker, length = buf[i + 1], int.from_bytes(buf[i + 2:i + 4], 'big')
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = int.from_bytes(buf[i + 5:i + 7], 'big'), int.from_bytes(buf[i + 7:i + 9],
                                                                           'big')
            return h, w, buf[i + 9] if i + 9 < len(buf) else 0
        i += 2 + length
    raise CodecError('data', 'payload_length', 'JPEG without a frame header')


def _imdecode(buf: Any, enc: int, shape: Tuple[int, ...]) -> np.ndarray:
    import cv2
    raw = bytes(buf)
    want = shape[-3:]
    if _image_dims(raw, enc) != want:
        raise CodecError('shape', 'shape', f'{ENCODING_NAMES[enc]} image is '
                         f'{list(_image_dims(raw, enc))} (h, w, c), shape says {list(want)}')
    img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.shape != want:
        raise CodecError('data', 'payload_length', f'undecodable {ENCODING_NAMES[enc]} payload')
    return np.ascontiguousarray(img[:, :, ::-1])   # BGR -> RGB


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
    if encoding in (ENCODING_FP16, ENCODING_INT8, ENCODING_INT8_ZLIB) and data_type != 9:
        raise CodecError('encoding', 'encoding', f'{ENCODING_NAMES[encoding]} needs data_type '
                         f'FLOAT32 (9), got {data_type}')
    if encoding in (ENCODING_PNG, ENCODING_JPEG) and (
            data_type != 2 or not (len(shape) == 3 or (len(shape) == 4 and shape[0] == 1))
            or shape[-1] != 3):
        raise CodecError('encoding', 'encoding', f'{ENCODING_NAMES[encoding]} carries a uint8 '
                         f'(1, H, W, 3) image, got data_type {data_type} shape {list(shape)}')
    if encoding == ENCODING_RAW:
        arr = _frombuffer(buf, dtype, n)
    elif encoding == ENCODING_FP16:
        arr = _frombuffer(buf, np.dtype('<f2'), n).astype(np.float32)
    elif encoding in (ENCODING_INT8, ENCODING_INT8_ZLIB):
        if not np.isfinite(scale) or scale <= 0:
            raise CodecError('scale', 'scale', f'int8 scale must be finite and > 0, got {scale}')
        if encoding == ENCODING_INT8_ZLIB:
            buf = _inflate(buf, n)
        q = _frombuffer(buf, np.dtype(np.int8), n)
        arr = (q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
    elif encoding in (ENCODING_PNG, ENCODING_JPEG):
        arr = _imdecode(buf, encoding, shape)
    else:
        arr = _frombuffer(_inflate(buf, n * dtype.itemsize), dtype, n)
    arr = arr.reshape(shape)
    if check_finite and arr.dtype.kind == 'f' and not np.isfinite(arr).all():
        raise CodecError('data', 'non_finite', 'payload holds NaN or Inf values')
    return arr


def _inflate(buf: Any, nbytes: int) -> bytes:
    """Decompress a zlib payload, never to more than ``nbytes`` + 1 (a bomb stays small)."""
    try:
        return zlib.decompressobj().decompress(bytes(buf), nbytes + 1)
    except zlib.error as exc:
        raise CodecError('data', 'payload_length', f'bad compressed payload ({exc})') from exc


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
    msg.encoding = enc.wire_name or ENCODING_NAMES[enc.encoding]   # the message carries names
    msg.scale = enc.scale
    msg.zero_point = enc.zero_point
    msg.data = array.array('B', enc.data)   # typed buffer: rclpy skips per-element checks
    return msg


# A probe larger than the camera's frame probe (``link.ProbeSizer``) carries this encoding: uint8
# padding of shape (n,), answered by the edge at once, without compute, never decoded.
PADDING_ENCODING = 'padding'
MAX_PADDING_BYTES = 64 * 1024 * 1024


def padding_probe(nbytes: int) -> EncodedTensor:
    """Return the tensor fields of a padding probe of ``nbytes`` zero bytes."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)) or \
            not 0 < int(nbytes) <= MAX_PADDING_BYTES:
        raise ValueError(f'a padding probe needs 1..{MAX_PADDING_BYTES} bytes, got {nbytes!r}')
    enc = encode(np.zeros(int(nbytes), np.uint8), 'raw', name=PADDING_ENCODING)
    enc.wire_name = PADDING_ENCODING
    return enc


def is_padding(msg: Any) -> bool:
    """Return whether a received ``Tensor`` is a padding probe (``probe`` set, that encoding)."""
    return bool(msg.probe) and msg.encoding == PADDING_ENCODING


def check_padding(msg: Any, max_bytes: int = DEFAULT_MAX_BYTES) -> int:
    """Validate a padding probe's fields (uint8, shape (len(data),)); return its payload bytes."""
    n = len(msg.data)
    if n > max_bytes:
        raise CodecError('data', 'too_large', f'padding probe of {n} bytes exceeds the limit '
                         f'of {max_bytes}')
    if int(msg.data_type) != 2 or [int(d) for d in msg.shape] != [n]:
        raise CodecError('shape', 'shape', f'a padding probe is uint8 of shape [{n}], got '
                         f'data_type {int(msg.data_type)} shape {[int(d) for d in msg.shape]}')
    return n


def from_message(msg: Any, max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """Decode the tensor fields of a received ``Tensor`` message (validated)."""
    code = ENCODINGS.get(msg.encoding) if isinstance(msg.encoding, str) else None
    if code is None and bottleneck_width(msg.encoding) is not None:
        code = ENCODING_INT8      # bottleneck maps travel as int8
    if code is None:
        raise CodecError('encoding', 'encoding', f'unknown encoding {msg.encoding!r}; known: '
                         f'{sorted(ENCODINGS)} and bn<channels>')
    return decode(tuple(int(d) for d in msg.shape), int(msg.data_type), code,
                  msg.data, float(msg.scale), int(msg.zero_point),
                  tuple(int(s) for s in msg.strides), max_bytes=max_bytes)
