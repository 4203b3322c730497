"""
Unit tests of ``core.tensor_wire``: the serialized ``Tensor`` built and parsed without rclpy.

Golden bytes are what ``rclpy.serialization.serialize_message`` writes for the same message
(padding zeroed; ``test/ros/test_tensor_wire_rclpy.py`` compares against rclpy itself). Every
malformed input must raise ``CodecError`` (a ``ValueError``) naming the field, reason
``malformed``; nothing here needs ROS (a ``SimpleNamespace`` stands in for the message).
"""

import array
import struct
import types

import numpy as np
import pytest

from edgent_ros.core import tensor_wire
from edgent_ros.core.codec import CodecError, encode, fill_message, from_message
from edgent_ros.core.tensor_wire import parse, serialize, WireTensor

# sec 1, nanosec 2, frame_id 'ab', robot '/r', probe, sequence 7, model_id 'mid', exit 3,
# split 4, name NAME, shape [1, 2], data_type 9, strides STRIDES, encoding 'raw',
# bottleneck_id '', scale 0.5, zero_point -3, data DATA, device_compute_ms 1.5, threshold 0.25
GOLDEN = {
    ('x', (8, 4), b'\x01\x02\x03'):
        '0001000001000000020000000300000061620000030000002f7200010700000000000000040000006d'
        '696400030400000200000078000000020000000100000002000000090000000200000008000000000000'
        '000400000000000000040000007261770001000000000000000000003ffdffffff030000000102030000'
        '0000000000f83f0000803e',
    # name of 6 bytes: the strides need 4 bytes of padding before their first uint64
    ('abcde', (8, 4), b'\x01\x02\x03\x04\x05'):
        '0001000001000000020000000300000061620000030000002f7200010700000000000000040000006d'
        '6964000304000006000000616263646500000002000000010000000200000009000000020000000000'
        '000008000000000000000400000000000000040000007261770001000000000000000000003ffdffffff'
        '05000000010203040500000000000000000000000000f83f0000803e',
    # empty sequences: no alignment for their (absent) elements
    ('abcde', (), b''):
        '0001000001000000020000000300000061620000030000002f7200010700000000000000040000006d'
        '69640003040000060000006162636465000000020000000100000002000000090000000000000004000000'
        '7261770001000000000000000000003ffdffffff00000000000000000000f83f0000803e',
}


def _msg(**fields):
    """Return a SimpleNamespace with a Tensor's attribute names (the golden message's)."""
    m = types.SimpleNamespace(
        header=types.SimpleNamespace(stamp=types.SimpleNamespace(sec=1, nanosec=2),
                                     frame_id='ab'),
        robot='/r', probe=True, sequence=7, model_id='mid', exit_index=3, split_index=4,
        name='x', shape=[1, 2], data_type=9, strides=[8, 4], encoding='raw', bottleneck_id='',
        scale=0.5, zero_point=-3, data=b'\x01\x02\x03', device_compute_ms=1.5,
        confidence_threshold=0.25)
    for k, v in fields.items():
        setattr(m, k, v)
    return m


def _fields(m) -> dict:
    """Every field as the wire carries it (sequences as tuples, float32 fields rounded)."""
    out = {}
    for name, kind in tensor_wire.FIELDS:
        v = tensor_wire._get(m, name)
        if name == 'data':
            v = bytes(memoryview(v).cast('B'))
        elif kind.startswith('seq:'):
            v = tuple(int(x) for x in v)
        elif kind == 'f':
            v = float(np.float32(v))
        out[name] = v
    return out


def _raises(buf, field: str) -> CodecError:
    with pytest.raises(CodecError) as info:
        parse(buf)
    assert isinstance(info.value, ValueError)
    assert info.value.field == field, str(info.value)
    assert info.value.reason == 'malformed'
    assert f'Tensor.{field}' in str(info.value)
    return info.value


# ----------------------------------------------------------------------------- format


@pytest.mark.parametrize('key', sorted(GOLDEN))
def test_serialize_writes_the_golden_bytes(key):
    name, strides, data = key
    assert serialize(_msg(name=name, strides=list(strides), data=data)).hex() == GOLDEN[key]


@pytest.mark.parametrize('key', sorted(GOLDEN))
def test_parse_reads_the_golden_bytes(key):
    name, strides, data = key
    w = parse(bytes.fromhex(GOLDEN[key]))
    assert _fields(w) == _fields(_msg(name=name, strides=list(strides), data=data))
    assert isinstance(w.probe, bool) and isinstance(w.shape, tuple)


def test_padding_is_ignored_and_trailing_bytes_too():
    """Ignore padding and trailing bytes: rclpy leaves old buffer bytes in both."""
    m = _msg(name='abcde', data=b'\x01\x02\x03\x04\x05')
    garbled = tensor_wire._serialize(m, None, '<', 0xA5)
    assert garbled != serialize(m)
    assert _fields(parse(garbled + b'\x99' * 8)) == _fields(m)


def test_big_endian_round_trip():
    m = _msg(shape=[3, 70000], strides=[280000, 4], data=bytes(range(7)))
    be = serialize(m, byteorder='>')
    assert be[:2] == b'\x00\x00' and be != serialize(m)
    assert _fields(parse(be)) == _fields(m)
    with pytest.raises(ValueError):
        serialize(m, byteorder='=')


@pytest.mark.parametrize('shape,dtype,encoding', [
    ((1, 3, 32, 32), np.float32, 'raw'), ((1, 32, 32, 3), np.uint8, 'raw'),
    ((1, 64, 8, 8), np.float32, 'fp16'), ((1, 64, 8, 8), np.float32, 'int8'),
    ((2, 5), np.int64, 'compressed'), ((1, 7), np.float64, 'raw'), ((1,), np.int16, 'raw'),
    ((1, 16, 4, 4), np.float32, 'int8-zlib')])
def test_codec_tensors_round_trip(shape, dtype, encoding):
    """Real encodings: serialize the message fields, parse, decode the same array."""
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal(shape) * 50).astype(dtype)
    enc = encode(arr, encoding, name='split3')
    m = fill_message(_msg(), enc)
    m.scale = float(np.float32(m.scale))        # what any receiver gets: a float32 field
    w = parse(serialize(m))
    assert _fields(w) == _fields(m)
    np.testing.assert_array_equal(from_message(w), from_message(m))


def test_payload_given_beside_the_message_and_any_buffer_type():
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    want = serialize(_msg(data=arr.tobytes()))
    for data in (arr, arr.tobytes(), memoryview(arr), array.array('B', arr.tobytes()),
                 bytearray(arr.tobytes()), np.frombuffer(arr.tobytes(), np.uint8)):
        assert serialize(_msg(data=b'ignored'), data) == want
    with pytest.raises(CodecError) as info:
        serialize(_msg(), arr[:, :, ::2])       # not one contiguous buffer
    assert info.value.field == 'data'


def test_parse_gives_a_zero_copy_view():
    payload = np.arange(1000, dtype=np.float32)
    buf = serialize(_msg(shape=[1000], strides=[4]), payload)
    w = parse(buf)
    assert isinstance(w, WireTensor) and w.data.readonly
    view = np.frombuffer(w.data, np.float32)
    assert np.shares_memory(view, np.frombuffer(buf, np.uint8))
    np.testing.assert_array_equal(view, payload)
    arr = from_message(w)
    assert np.shares_memory(arr, np.frombuffer(buf, np.uint8))   # codec keeps the view too


def test_parse_accepts_buffers_other_than_bytes():
    buf = serialize(_msg())
    for b in (bytearray(buf), memoryview(buf), np.frombuffer(buf, np.uint8)):
        assert _fields(parse(b)) == _fields(_msg())


def test_strings_as_rclpy_writes_and_reads_them():
    """UTF-8; a NUL inside ends the string (C strings); invalid UTF-8 is replaced."""
    m = _msg(robot='/robot_é', name='a\0b')
    w = parse(serialize(m))
    assert (w.robot, w.name) == ('/robot_é', 'a')
    raw = bytearray(serialize(_msg(frame_id='ab')))
    raw[16:18] = b'\xff\xfe'                    # header.frame_id's two bytes
    assert parse(bytes(raw)).header.frame_id == '\ufffd\ufffd'
    assert parse(serialize(_msg(name=''))).name == ''


def test_large_payload_is_one_copy():
    """8 MB: serialize/parse do no per-element Python work (a loose bound on a busy host)."""
    import time
    data = np.zeros(8_000_000, np.uint8)
    t = time.perf_counter()
    w = parse(serialize(_msg(shape=[8_000_000], strides=[1], data_type=2), data))
    assert time.perf_counter() - t < 1.0
    assert len(w.data) == 8_000_000


# ----------------------------------------------------------------------------- malformed


def test_every_truncation_raises_naming_a_field():
    """No prefix of a valid message parses, and none fails with anything but CodecError."""
    buf = bytes.fromhex(GOLDEN[('abcde', (8, 4), b'\x01\x02\x03\x04\x05')])
    names = {name for name, _ in tensor_wire.FIELDS} | {'encapsulation'}
    for n in range(len(buf)):
        with pytest.raises(CodecError) as info:
            parse(buf[:n])
        assert info.value.field in names, (n, str(info.value))
        assert info.value.reason == 'malformed'
    # the last field cut short names it
    _raises(buf[:-1], 'confidence_threshold')
    _raises(buf[:3], 'encapsulation')


def _offset(buf: bytes, field: str) -> int:
    """Byte offset of ``field``'s length word in the golden message."""
    order = [name for name, _ in tensor_wire.FIELDS]
    stop = order[order.index(field) - 1]
    r = tensor_wire._Reader(memoryview(buf), '<')
    for name, kind in tensor_wire.FIELDS:   # walk as parse does, up to the field before
        if kind == 'str' or kind.startswith('seq:'):
            size = np.dtype(kind[4:]).itemsize if kind.startswith('seq:') else 1
            n = r.count(name, size)
            if n and size > 1:
                r.align(size, name)
            r.take(n * size, name, kind)
        else:
            r.read('B' if kind == '?' else kind, name)
        if name == stop:
            break
    return r.pos + (-(r.pos - 4) % 4)


@pytest.mark.parametrize('field,value', [
    ('header.frame_id', 1000), ('robot', 0xFFFFFFFF), ('model_id', 700), ('name', 1 << 20),
    ('shape', 1000), ('strides', 0x10000000), ('encoding', 500), ('bottleneck_id', 99),
    ('data', 1 << 31), ('data', 1000)])
def test_lengths_past_the_end_raise_naming_the_field(field, value):
    buf = bytearray(bytes.fromhex(GOLDEN[('abcde', (8, 4), b'\x01\x02\x03\x04\x05')]))
    at = _offset(bytes(buf), field)
    struct.pack_into('<I', buf, at, value)
    err = _raises(bytes(buf), field)
    assert 'truncated or a wrong length' in str(err)


def test_wrong_lengths_inside_the_message_raise():
    buf = bytearray(bytes.fromhex(GOLDEN[('x', (8, 4), b'\x01\x02\x03')]))
    at = _offset(bytes(buf), 'robot')
    struct.pack_into('<I', buf, at, 2)           # '/r' without its NUL: then misaligned garbage
    with pytest.raises(CodecError) as info:
        parse(bytes(buf))
    assert info.value.field in ('robot', 'probe')


def test_too_many_dims_raise():
    buf = serialize(_msg(shape=[1] * (tensor_wire.MAX_SEQUENCE + 1)))
    assert 'at most' in str(_raises(buf, 'shape'))


def test_bool_must_be_zero_or_one():
    buf = bytearray(serialize(_msg()))
    i = _offset(bytes(buf), 'robot') + 4 + 3     # '/r\0' then the probe byte
    assert buf[i] == 1
    buf[i] = 2
    _raises(bytes(buf), 'probe')


@pytest.mark.parametrize('head', [b'\x00\x07', b'\x00\x0b', b'\x12\x34'])
def test_unknown_encapsulation_raises(head):
    buf = head + serialize(_msg())[2:]
    assert 'XCDR1' in str(_raises(buf, 'encapsulation'))


@pytest.mark.parametrize('field,value', [
    ('sequence', -1), ('exit_index', 256), ('header.stamp.nanosec', 1 << 32),
    ('data_type', 1 << 31), ('shape', [1, -2]), ('strides', [1 << 64]), ('robot', 5),
    ('scale', 1e40), ('zero_point', 'x'), ('shape', 'ab')])
def test_serialize_refuses_values_that_do_not_fit(field, value):
    m = _msg()
    if '.' in field:
        parent, leaf = field.rsplit('.', 1)
        setattr(tensor_wire._get(m, parent), leaf, value)
    else:
        setattr(m, field, value)
    with pytest.raises(CodecError) as info:
        serialize(m)
    assert info.value.field == field
