"""
The serialized (CDR) form of an ``edgent_ros/Tensor`` message, built and parsed without rclpy.

What the nodes would otherwise do per megabyte-sized message is several full copies of the
payload between Python and C (``array.array`` into the message, the message into its C struct,
the struct into CDR; the same three backwards on the receiving side). Here ``serialize`` writes
the bytes ``rclpy.serialization.serialize_message`` writes (Fast DDS's XCDR1 with a 4-byte
encapsulation header, little-endian) from the message's fields with one copy of the payload,
for ``Publisher.publish(bytes)``; ``parse`` reads a serialized message (``create_subscription(
..., raw=True)``) into a ``WireTensor`` whose ``data`` is a zero-copy ``memoryview`` of the
buffer, for ``codec.from_message``. Only the fixed fields are handled one by one (about twenty
per message); no per-element Python work on the payload.

Wire format (the topic type is unchanged: bags, typed subscribers and older nodes read these
bytes as a normal ``Tensor``): bytes 0-1 the encapsulation (``00 01`` CDR little-endian,
``00 00`` big-endian; both parse), 2-3 options; then the fields in ``msg/Tensor.msg`` order,
each primitive aligned to its size (at most 8) counted from byte 4; a string is a ``uint32``
length including its NUL, the UTF-8 bytes and the NUL; a sequence a ``uint32`` count, then its
elements (aligned only when there is at least one). Padding bytes are written as zeros and
ignored when read (rclpy's own serializer leaves whatever its buffer held there).

``serialize`` and ``parse`` work on any object with the message's attribute names (the
generated ``Tensor``, a ``WireTensor``, a ``SimpleNamespace``), like ``codec.fill_message``.
Malformed bytes raise ``codec.CodecError`` (a ``ValueError``) naming the field, with reason
``malformed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import struct
from typing import Any, List, Optional, Tuple

import numpy as np

from .codec import CodecError

CDR_BE, CDR_LE = b'\x00\x00', b'\x00\x01'
ENCAPSULATION = 4
MAX_SEQUENCE = 1024       # shape / strides entries at most (a tensor has <= codec.MAX_RANK)
REASON = 'malformed'

# (field, kind) in msg/Tensor.msg order; a kind is a struct code, 'str' or 'seq:<numpy code>'.
FIELDS: Tuple[Tuple[str, str], ...] = (
    ('header.stamp.sec', 'i'), ('header.stamp.nanosec', 'I'), ('header.frame_id', 'str'),
    ('robot', 'str'), ('probe', '?'), ('sequence', 'Q'), ('model_id', 'str'),
    ('exit_index', 'B'), ('split_index', 'B'), ('name', 'str'), ('shape', 'seq:u4'),
    ('data_type', 'i'), ('strides', 'seq:u8'), ('encoding', 'str'), ('bottleneck_id', 'str'),
    ('scale', 'f'), ('zero_point', 'i'), ('data', 'seq:u1'), ('device_compute_ms', 'd'),
    ('confidence_threshold', 'f'))


@dataclass
class WireTime:
    """``builtin_interfaces/Time``."""

    sec: int = 0
    nanosec: int = 0


@dataclass
class WireHeader:
    """``std_msgs/Header``."""

    stamp: WireTime = field(default_factory=WireTime)
    frame_id: str = ''


@dataclass
class WireTensor:
    """A parsed ``Tensor``: the message's attribute names; ``data`` views the serialized bytes."""

    header: WireHeader = field(default_factory=WireHeader)
    robot: str = ''
    probe: bool = False
    sequence: int = 0
    model_id: str = ''
    exit_index: int = 0
    split_index: int = 0
    name: str = ''
    shape: Tuple[int, ...] = ()
    data_type: int = 0
    strides: Tuple[int, ...] = ()
    encoding: str = ''
    bottleneck_id: str = ''
    scale: float = 0.0
    zero_point: int = 0
    data: Any = b''
    device_compute_ms: float = 0.0
    confidence_threshold: float = 0.0


def _error(name: str, detail: str) -> CodecError:
    return CodecError(name, REASON, detail)


def _get(msg: Any, path: str) -> Any:
    for part in path.split('.'):
        msg = getattr(msg, part)
    return msg


def _payload(data: Any) -> memoryview:
    """Return ``data`` (bytes, array.array, numpy array, memoryview) as a flat byte view."""
    view = memoryview(data)
    if not view.c_contiguous:
        raise _error('data', 'payload must be one C-contiguous buffer')
    return view.cast('B') if view.format != 'B' or view.ndim != 1 else view


def _string(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise _error(name, f'expected str, got {type(value).__name__}')
    raw = value.encode('utf-8')
    return raw.split(b'\0', 1)[0]   # rosidl copies C strings: the first NUL ends it


def serialize(msg: Any, data: Optional[Any] = None, byteorder: str = '<') -> bytes:
    """
    Return the serialized ``Tensor`` of ``msg``'s fields, ``data`` (if given) as its payload.

    The payload is copied once (into the returned ``bytes``); ``byteorder`` ``'<'`` gives
    what Fast DDS sends on a little-endian host, ``'>'`` big-endian CDR.
    """
    return _serialize(msg, data, byteorder, 0)


def _serialize(msg: Any, data: Optional[Any], byteorder: str, pad_byte: int) -> bytes:
    """``serialize`` with alignment padding of ``pad_byte`` (tests find the padding with it)."""
    if byteorder not in '<>' or len(byteorder) != 1:
        raise ValueError(f"byteorder must be '<' or '>', got {byteorder!r}")
    parts: List[Any] = [CDR_LE + b'\0\0' if byteorder == '<' else CDR_BE + b'\0\0']
    head = bytearray()          # bytes since the last flushed part; offsets count from byte 4
    pos = 0                     # payload offset (from byte 4) of the end of head

    def align(n: int) -> None:
        nonlocal pos
        pad = -pos % n
        head.extend(bytes([pad_byte]) * pad)
        pos += pad

    def put(code: str, value: Any, name: str) -> None:
        nonlocal pos
        size = struct.calcsize(code)
        align(size)
        try:
            head.extend(struct.pack(byteorder + code, value))
        except (struct.error, TypeError, OverflowError) as exc:
            raise _error(name, f'{value!r} does not fit {code!r} ({exc})') from exc
        pos += size

    for name, kind in FIELDS:
        value = _get(msg, name) if not (name == 'data' and data is not None) else data
        if kind == 'str':
            raw = _string(value, name)
            put('I', len(raw) + 1, name)
            head.extend(raw + b'\0')
            pos += len(raw) + 1
        elif kind.startswith('seq:'):
            dtype = np.dtype(byteorder + kind[4:])
            if name == 'data':
                view = _payload(value)
                put('I', len(view), name)
                parts.append(bytes(head))
                parts.append(view)
                head.clear()
                pos += len(view)
                continue
            try:   # a few dims: checked one by one, as rclpy's field setters do
                ints = [int(v) for v in value]
                if any(v < 0 or v > np.iinfo(dtype).max for v in ints):
                    raise ValueError('out of range')
                arr = np.array(ints, dtype=dtype)
            except (TypeError, ValueError) as exc:
                raise _error(name, f'{value!r} is not a sequence of {kind[4:]} ({exc})') from exc
            put('I', arr.size, name)
            if arr.size:
                align(dtype.itemsize)
                head.extend(arr.tobytes())
                pos += arr.size * dtype.itemsize
        else:
            put(kind, value, name)
    parts.append(bytes(head))
    return b''.join(parts)


class _Reader:
    """Read CDR fields from ``buf`` (offsets from byte 4), naming the field on every error."""

    def __init__(self, buf: memoryview, byteorder: str):
        self.buf, self.order, self.pos = buf, byteorder, ENCAPSULATION

    def take(self, n: int, name: str, what: str) -> memoryview:
        end = self.pos + n
        if n < 0 or end > len(self.buf):
            raise _error(name, f'{what} needs {n} bytes at offset {self.pos}, the message has '
                         f'{len(self.buf)} bytes (truncated or a wrong length)')
        out = self.buf[self.pos:end]
        self.pos = end
        return out

    def align(self, n: int, name: str) -> None:
        pad = -(self.pos - ENCAPSULATION) % n
        if pad:
            self.take(pad, name, 'alignment padding')

    def read(self, code: str, name: str) -> Any:
        size = struct.calcsize(code)
        self.align(size, name)
        return struct.unpack(self.order + code, self.take(size, name, code))[0]

    def count(self, name: str, itemsize: int) -> int:
        n = self.read('I', name)
        left = len(self.buf) - self.pos
        if n * itemsize > left:
            raise _error(name, f'length {n} ({n * itemsize} bytes) exceeds the {left} bytes '
                         'left in the message (truncated or a wrong length)')
        return n


def _text(raw: memoryview, name: str) -> str:
    b = bytes(raw)
    if b and b[-1] != 0:
        raise _error(name, f'string of {len(b)} bytes does not end with NUL (a wrong length)')
    return b.split(b'\0', 1)[0].decode('utf-8', 'replace')   # as rclpy: strlen, 'replace'


def parse(buf: Any) -> WireTensor:
    """
    Parse a serialized ``Tensor`` (bytes or any byte buffer) into a ``WireTensor``.

    ``data`` is a read-only ``memoryview`` into ``buf`` (no copy): keep ``buf`` alive while
    it is used (a view holds a reference). Raises ``CodecError`` (reason ``malformed``) naming
    the field at fault: truncated bytes, lengths past the end, a bool that is neither 0 nor 1,
    an unknown encapsulation. Bytes after the last field are not an error: a typed subscription
    ignores them too, and ``rclpy.serialization.serialize_message`` returns its size estimate
    (up to 8 bytes more than it wrote).
    """
    view = memoryview(buf)
    if view.ndim != 1 or view.format not in ('B', 'b', 'c'):
        view = view.cast('B')
    view = view.toreadonly()
    if len(view) < ENCAPSULATION:
        raise _error('encapsulation', f'{len(view)} bytes: no CDR encapsulation header')
    head = bytes(view[:2])
    if head not in (CDR_LE, CDR_BE):
        raise _error('encapsulation', f'representation {head.hex()} is not XCDR1 CDR '
                     f'({CDR_LE.hex()} little- or {CDR_BE.hex()} big-endian)')
    r = _Reader(view, '<' if head == CDR_LE else '>')
    out = WireTensor()
    for name, kind in FIELDS:
        if kind == 'str':
            value: Any = _text(r.take(r.count(name, 1), name, 'string'), name)
        elif kind == 'seq:u1':
            value = r.take(r.count(name, 1), name, 'payload')
        elif kind.startswith('seq:'):
            dtype = np.dtype(r.order + kind[4:])
            n = r.count(name, dtype.itemsize)
            if n > MAX_SEQUENCE:
                raise _error(name, f'{n} entries; at most {MAX_SEQUENCE}')
            if n:
                r.align(dtype.itemsize, name)
            value = tuple(np.frombuffer(r.take(n * dtype.itemsize, name, kind[4:]), dtype)
                          .tolist())
        else:
            value = r.read('B' if kind == '?' else kind, name)
            if kind == '?':
                if value not in (0, 1):   # struct's '?' maps every non-zero byte to True
                    raise _error(name, f'bool byte must be 0 or 1, got {value}')
                value = bool(value)
        if name.startswith('header.'):
            obj = out.header.stamp if name.startswith('header.stamp.') else out.header
            setattr(obj, name.rsplit('.', 1)[1], value)
        else:
            setattr(out, name, value)
    return out   # bytes after the last field are ignored, as Fast CDR and rclpy ignore them
