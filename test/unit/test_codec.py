"""
Unit tests of the tensor codec: round trips per dtype and encoding, and refusal of bad fields.

Every malformed input must raise ``CodecError`` with the culprit ``field`` and the ``reason``
code the nodes count; nothing here needs ROS (a ``SimpleNamespace`` stands in for the message).
"""

import array
import math
import types
import zlib

import numpy as np
import pytest

from edgent_ros.core.codec import (CodecError, DATA_TYPES, decode, DEFAULT_MAX_BYTES, encode,
                                   ENCODING_COMPRESSED, ENCODING_FP16, ENCODING_INT8, ENCODING_RAW,
                                   fill_message, from_message, MAX_DIM, MAX_RANK)

FLOAT32 = 9
RNG_SEED = 7


def _sample(dtype, shape=(2, 3, 4), seed=RNG_SEED) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == 'f':
        return (rng.standard_normal(shape) * 10).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)


def _decode(enc, **kw) -> np.ndarray:
    return decode(enc.shape, enc.data_type, enc.encoding, enc.data, enc.scale, enc.zero_point,
                  enc.strides, **kw)


def _raises(field: str, reason: str, *args, **kw) -> CodecError:
    with pytest.raises(CodecError) as info:
        decode(*args, **kw)
    assert info.value.field == field, str(info.value)
    assert info.value.reason == reason, str(info.value)
    assert isinstance(info.value, ValueError)
    return info.value


def _f32(shape=(2, 3)) -> bytes:
    return np.ones(shape, np.float32).tobytes()


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize('code', sorted(DATA_TYPES))
def test_raw_round_trip_every_dtype(code):
    arr = _sample(DATA_TYPES[code])
    enc = encode(arr, 'raw', name='t')
    assert enc.data_type == code and enc.encoding == ENCODING_RAW and enc.name == 't'
    assert enc.shape == (2, 3, 4)
    assert enc.strides == arr.strides          # C-contiguous byte strides
    assert enc.nbytes == arr.nbytes
    out = _decode(enc)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize('code', sorted(DATA_TYPES))
def test_compressed_round_trip_is_exact(code):
    arr = _sample(DATA_TYPES[code], shape=(3, 5, 7))
    enc = encode(arr, 'compressed')
    assert enc.encoding == ENCODING_COMPRESSED and enc.data_type == code
    out = _decode(enc)
    assert out.dtype == arr.dtype
    np.testing.assert_array_equal(out, arr)


def test_compressed_shrinks_sparse_activations():
    arr = np.maximum(_sample(np.float32, (16, 8, 8)), 0)   # post-ReLU: half zeros
    arr[:8] = 0
    enc = encode(arr, 'compressed')
    assert enc.nbytes < arr.nbytes
    np.testing.assert_array_equal(_decode(enc), arr)


def test_raw_round_trip_of_non_contiguous_input():
    arr = _sample(np.float32, (4, 6)).T            # F-ordered view
    enc = encode(arr)
    assert enc.shape == (6, 4) and enc.strides == (16, 4)
    np.testing.assert_array_equal(_decode(enc), arr)


def test_fp16_round_trip_is_close():
    arr = _sample(np.float32, (4, 16, 8, 8))
    enc = encode(arr, 'fp16')
    assert enc.encoding == ENCODING_FP16 and enc.data_type == FLOAT32
    assert enc.nbytes == arr.nbytes // 2
    assert enc.strides == arr.strides                # strides of the decoded float32 tensor
    out = _decode(enc)
    assert out.dtype == np.float32 and out.shape == arr.shape
    np.testing.assert_allclose(out, arr, rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(out, arr.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize('kind', ['mixed', 'positive', 'negative', 'tiny', 'huge'])
def test_int8_error_bounded_by_half_scale(kind):
    arr = _sample(np.float32, (8, 16, 4, 4))
    arr = {'mixed': arr, 'positive': np.abs(arr), 'negative': -np.abs(arr),
           'tiny': arr * 1e-6, 'huge': arr * 1e6}[kind]
    enc = encode(arr, 'int8')
    assert enc.encoding == ENCODING_INT8 and enc.data_type == FLOAT32
    assert enc.scale > 0 and -128 <= enc.zero_point <= 127
    assert enc.nbytes * 4 == arr.nbytes == encode(arr, 'raw').nbytes
    out = _decode(enc)
    assert out.dtype == np.float32 and out.shape == arr.shape
    err = np.abs(out.astype(np.float64) - arr.astype(np.float64)).max()
    assert err <= enc.scale / 2 * (1 + 1e-3), (err, enc.scale)
    # zero is exact (ReLU zeros stay zeros)
    z = arr.copy()
    z.flat[0] = 0.0
    assert _decode(encode(z, 'int8')).flat[0] == 0.0


def test_int8_of_constant_zero_tensor():
    arr = np.zeros((3, 4), np.float32)
    enc = encode(arr, 'int8')
    assert enc.scale == 1.0
    np.testing.assert_array_equal(_decode(enc), arr)


@pytest.mark.parametrize('encoding', ['raw', 'fp16', 'int8', 'compressed'])
def test_one_megabyte_float32_round_trip(encoding):
    rng = np.random.default_rng(0)
    arr = np.maximum(rng.standard_normal((1, 64, 64, 64), dtype=np.float32), 0)
    assert arr.nbytes == 1 << 20
    enc = encode(arr, encoding)
    out = _decode(enc)
    assert out.shape == arr.shape and out.dtype == np.float32
    if encoding in ('raw', 'compressed'):
        np.testing.assert_array_equal(out, arr)
    elif encoding == 'fp16':
        np.testing.assert_allclose(out, arr, rtol=1e-3, atol=1e-3)
    else:
        assert np.abs(out - arr).max() <= enc.scale / 2 * (1 + 1e-3)


def test_decode_accepts_rclpy_and_numpy_buffers():
    arr = _sample(np.float32)
    enc = encode(arr)
    for data in (enc.data, bytearray(enc.data), array.array('B', enc.data),
                 np.frombuffer(enc.data, np.uint8), memoryview(enc.data)):
        np.testing.assert_array_equal(decode(enc.shape, FLOAT32, 0, data), arr)


def test_decode_without_strides_and_with_numpy_int_dims():
    arr = _sample(np.int16)
    enc = encode(arr)
    dims = tuple(np.uint32(d) for d in enc.shape)
    np.testing.assert_array_equal(decode(dims, enc.data_type, 0, enc.data), arr)


# ----------------------------------------------------------------------------- encode refusals


def test_encode_refuses_unknown_encoding_and_dtype():
    with pytest.raises(CodecError) as info:
        encode(np.zeros(3, np.float32), 'bf16')
    assert (info.value.field, info.value.reason) == ('encoding', 'encoding')
    for bad in (np.zeros(3, bool), np.zeros(3, np.complex64), np.array(['a'])):
        with pytest.raises(CodecError) as info:
            encode(bad)
        assert (info.value.field, info.value.reason) == ('data_type', 'data_type')


@pytest.mark.parametrize('encoding', ['fp16', 'int8'])
@pytest.mark.parametrize('dtype', [np.float64, np.float16, np.int32, np.uint8])
def test_encode_lossy_needs_float32(encoding, dtype):
    with pytest.raises(CodecError) as info:
        encode(np.zeros(3, dtype), encoding)
    assert (info.value.field, info.value.reason) == ('encoding', 'encoding')


# ----------------------------------------------------------------------------- decode refusals


@pytest.mark.parametrize('delta', [-1, -4, 1, 4])
def test_payload_length_mismatch(delta):
    data = _f32()
    data = data[:delta] if delta < 0 else data + b'\0' * delta
    err = _raises('data', 'payload_length', (2, 3), FLOAT32, ENCODING_RAW, data)
    assert 'payload' in str(err)


@pytest.mark.parametrize('encoding', [ENCODING_FP16, ENCODING_INT8])
def test_payload_length_mismatch_lossy(encoding):
    n = 6 * (2 if encoding == ENCODING_FP16 else 1)
    _raises('data', 'payload_length', (2, 3), FLOAT32, encoding, b'\0' * (n + 1), scale=1.0)
    _raises('data', 'payload_length', (2, 3), FLOAT32, encoding, b'\0' * (n - 1), scale=1.0)


def test_empty_payload():
    _raises('data', 'payload_length', (2, 3), FLOAT32, ENCODING_RAW, b'')


@pytest.mark.parametrize('code', [0, -1, 12, 99, 2 ** 31 - 1])
def test_unknown_data_type(code):
    _raises('data_type', 'data_type', (2, 3), code, ENCODING_RAW, _f32())


@pytest.mark.parametrize('encoding', [7, 8, 255, -1])
def test_unknown_encoding(encoding):
    _raises('encoding', 'encoding', (2, 3), FLOAT32, encoding, _f32())


@pytest.mark.parametrize('shape', [(2, -3), (0, 3), (2, 0), (-1,), (MAX_DIM + 1,),
                                   (2, 10 ** 12), (2, 2.5), (2, '3'), (2, None)])
def test_bad_dims(shape):
    _raises('shape', 'shape', shape, FLOAT32, ENCODING_RAW, _f32())


@pytest.mark.parametrize('rank', [0, MAX_RANK + 1, 20])
def test_bad_rank(rank):
    _raises('shape', 'shape', (1,) * rank, FLOAT32, ENCODING_RAW, b'\0' * 4)


def test_max_rank_accepted():
    arr = np.arange(2 ** MAX_RANK, dtype=np.float32).reshape((2,) * MAX_RANK)
    np.testing.assert_array_equal(_decode(encode(arr)), arr)


def test_decoded_size_over_max_bytes():
    # 1024 x 1024 float32 = 4 MiB decoded; refuse before touching the (tiny) payload
    err = _raises('shape', 'too_large', (1024, 1024), FLOAT32, ENCODING_RAW, b'\0' * 16,
                  max_bytes=1 << 20)
    assert str(1 << 20) in str(err)
    # the default limit (16 MiB): 8 x 512 Ki float32 is exactly the limit, one row more is not
    assert 8 * (DEFAULT_MAX_BYTES // 32) * 4 == DEFAULT_MAX_BYTES
    _raises('shape', 'too_large', (8, DEFAULT_MAX_BYTES // 32 + 1), FLOAT32, ENCODING_RAW, b'')
    _raises('data', 'payload_length', (8, DEFAULT_MAX_BYTES // 32), FLOAT32, ENCODING_RAW, b'')


def test_payload_over_max_bytes():
    _raises('data', 'too_large', (4,), 2, ENCODING_COMPRESSED, b'\0' * 1025, max_bytes=1024)
    _raises('data', 'too_large', (4,), 2, ENCODING_RAW, b'\0' * 2048, max_bytes=1024)


def test_payload_at_max_bytes_accepted():
    arr = np.zeros(256, np.float32)
    np.testing.assert_array_equal(_decode(encode(arr), max_bytes=1024), arr)


@pytest.mark.parametrize('bad', [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize('code', [9, 10, 11])
def test_non_finite_content(bad, code):
    arr = np.ones((2, 3), DATA_TYPES[code])
    arr[1, 2] = bad
    enc = encode(arr)
    with pytest.raises(CodecError) as info:
        _decode(enc)
    assert (info.value.field, info.value.reason) == ('data', 'non_finite')
    out = _decode(enc, check_finite=False)          # opt-out for callers that allow it
    assert not np.isfinite(out[1, 2])


@pytest.mark.parametrize('encoding', ['fp16', 'compressed'])
def test_non_finite_content_encoded(encoding):
    arr = np.ones((2, 3), np.float32)
    arr[0, 0] = math.nan
    with pytest.raises(CodecError) as info:
        _decode(encode(arr, encoding))
    assert info.value.reason == 'non_finite'


def test_fp16_overflow_is_refused_as_non_finite():
    arr = np.array([1.0, 1e6], np.float32)          # 1e6 is inf in float16
    with np.errstate(over='ignore'):
        enc = encode(arr, 'fp16')
    with pytest.raises(CodecError) as info:
        _decode(enc)
    assert info.value.reason == 'non_finite'


@pytest.mark.parametrize('strides', [(4, 8), (12, 8), (24, 8, 4), (0, 0), (-12, 4)])
def test_non_c_strides(strides):
    _raises('strides', 'strides', (2, 3), FLOAT32, ENCODING_RAW, _f32(), strides=strides)


def test_c_strides_accepted():
    out = decode((2, 3), FLOAT32, ENCODING_RAW, _f32(), strides=(12, 4))
    assert out.shape == (2, 3)


@pytest.mark.parametrize('scale', [0.0, -1.0, -1e-9, math.nan, math.inf])
def test_int8_bad_scale(scale):
    _raises('scale', 'scale', (2, 3), FLOAT32, ENCODING_INT8, b'\0' * 6, scale=scale)


@pytest.mark.parametrize('encoding', [ENCODING_FP16, ENCODING_INT8])
@pytest.mark.parametrize('code', [1, 2, 5, 10, 11])
def test_lossy_encoding_needs_float32_data_type(encoding, code):
    err = _raises('encoding', 'encoding', (2, 3), code, encoding, b'\0' * 12, scale=1.0)
    assert 'FLOAT32' in str(err)


@pytest.mark.parametrize('payload', [
    b'not zlib at all',
    zlib.compress(_f32())[:-6],                     # truncated stream
    b'\x78\x9c' + b'\xff' * 30,                      # zlib header, garbage body
])
def test_garbled_compressed_payload(payload):
    _raises('data', 'payload_length', (2, 3), FLOAT32, ENCODING_COMPRESSED, payload)


@pytest.mark.parametrize('n_bytes', [20, 28, 4096])
def test_compressed_payload_of_wrong_size(n_bytes):
    # valid zlib, but it inflates to more or fewer bytes than shape x itemsize (24)
    _raises('data', 'payload_length', (2, 3), FLOAT32, ENCODING_COMPRESSED,
            zlib.compress(b'\0' * n_bytes))


def test_compression_bomb_is_bounded():
    bomb = zlib.compress(b'\0' * (64 << 20), 9)      # 64 MiB of zeros in ~64 KiB
    assert len(bomb) < 1 << 20
    _raises('data', 'payload_length', (2, 3), FLOAT32, ENCODING_COMPRESSED, bomb)


def test_codec_error_message_names_the_field():
    err = _raises('data_type', 'data_type', (2, 3), 42, ENCODING_RAW, _f32())
    assert str(err).startswith('Tensor.data_type:')


# ----------------------------------------------------------------------------- message helpers


def _blank_message() -> types.SimpleNamespace:
    return types.SimpleNamespace(name='', shape=array.array('I'), data_type=0,
                                 strides=array.array('Q'), encoding='', scale=0.0, zero_point=0,
                                 data=array.array('B'), device_compute_ms=0.0)


def _as_received(msg: types.SimpleNamespace) -> types.SimpleNamespace:
    """Mimic what a subscriber gets from rclpy: typed arrays, float32 scale."""
    return types.SimpleNamespace(
        name=str(msg.name), shape=array.array('I', msg.shape), data_type=int(msg.data_type),
        strides=array.array('Q', msg.strides), encoding=str(msg.encoding),
        scale=float(np.float32(msg.scale)), zero_point=int(msg.zero_point),
        data=array.array('B', msg.data), device_compute_ms=msg.device_compute_ms)


def test_from_message_refuses_unknown_encoding_name():
    msg = fill_message(_blank_message(), encode(_sample(np.float32, (2, 3)), 'raw'))
    assert msg.encoding == 'raw'
    msg.encoding = 'bzip2'
    with pytest.raises(CodecError) as info:
        from_message(_as_received(msg))
    assert (info.value.field, info.value.reason) == ('encoding', 'encoding')
    assert "'bzip2'" in str(info.value) and 'int8' in str(info.value)


@pytest.mark.parametrize('encoding', ['raw', 'fp16', 'int8', 'compressed'])
def test_fill_and_from_message(encoding):
    arr = _sample(np.float32, (1, 8, 4, 4))
    enc = encode(arr, encoding, name='conv2_out')
    msg = _blank_message()
    assert fill_message(msg, enc) is msg
    assert msg.name == 'conv2_out' and list(msg.shape) == [1, 8, 4, 4]
    assert msg.data_type == FLOAT32 and list(msg.strides) == [512, 64, 16, 4]
    assert msg.encoding == encoding and len(msg.data) == enc.nbytes
    rx = _as_received(msg)
    assert isinstance(rx.data, array.array) and rx.data.typecode == 'B'
    out = from_message(rx)
    assert out.shape == arr.shape and out.dtype == np.float32
    if encoding in ('raw', 'compressed'):
        np.testing.assert_array_equal(out, arr)
    elif encoding == 'fp16':
        np.testing.assert_allclose(out, arr, rtol=1e-3, atol=1e-3)
    else:   # the scale went through a float32 field
        assert np.abs(out - arr).max() <= enc.scale / 2 * (1 + 1e-3)


def test_from_message_uint8_frame():
    frame = _sample(np.uint8, (1, 32, 32, 3))
    rx = _as_received(fill_message(_blank_message(), encode(frame, name='input')))
    out = from_message(rx)
    assert out.dtype == np.uint8 and out.shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(out, frame)


def test_from_message_validates():
    rx = _as_received(fill_message(_blank_message(), encode(np.ones((2, 3), np.float32))))
    rx.data = rx.data[:-1]
    with pytest.raises(CodecError) as info:
        from_message(rx)
    assert info.value.reason == 'payload_length'
    rx = _as_received(fill_message(_blank_message(), encode(np.ones((64,), np.float32))))
    with pytest.raises(CodecError) as info:
        from_message(rx, max_bytes=128)
    assert info.value.reason == 'too_large'


# ------------------------------------------------- int8-zlib, png, jpeg (planner encodings)

def _frame(seed=3):
    from edgent_ros.core.datasets import load_sample
    return np.ascontiguousarray(load_sample()[0][seed][None])    # (1, 32, 32, 3) uint8


def test_int8_zlib_decodes_to_the_int8_values_in_fewer_bytes():
    arr = np.maximum(_sample(np.float32, (1, 64, 8, 8)), 0)      # post-ReLU: half zeros
    q, z = encode(arr, 'int8'), encode(arr, 'int8-zlib')
    assert z.encoding == 4 and z.nbytes < q.nbytes
    np.testing.assert_array_equal(_decode(z), _decode(q))
    assert q.nbytes * 4 == arr.nbytes                              # int8: 4x fewer than fp32


def test_png_is_lossless_and_smaller_than_raw():
    f = _frame()
    enc = encode(f, 'png', name='input')
    assert enc.encoding == 5 and enc.data_type == 2 and enc.nbytes < f.nbytes
    np.testing.assert_array_equal(_decode(enc), f)


def test_jpeg_is_close_and_much_smaller():
    f = _frame()
    enc = encode(f, 'jpeg')
    out = _decode(enc)
    assert enc.encoding == 6 and out.shape == f.shape and out.dtype == np.uint8
    assert enc.nbytes < f.nbytes / 2
    assert np.abs(out.astype(int) - f).mean() < 4.0


@pytest.mark.parametrize('encoding', ['png', 'jpeg'])
def test_image_encodings_need_a_uint8_rgb_frame(encoding):
    for bad in (np.zeros((1, 8, 4, 4), np.float32), np.zeros((1, 32, 32), np.uint8),
                np.zeros((2, 32, 32, 3), np.uint8)):
        with pytest.raises(CodecError) as info:
            encode(bad, encoding)
        assert info.value.reason == 'encoding'


@pytest.mark.parametrize('encoding', ['png', 'jpeg'])
def test_image_payload_must_match_the_declared_shape(encoding):
    enc = encode(_frame(), encoding)
    _raises('shape', 'shape', (1, 16, 32, 3), 2, enc.encoding, enc.data)
    _raises('encoding', 'encoding', (1, 32, 32, 3), FLOAT32, enc.encoding, enc.data)
    _raises('encoding', 'encoding', (32, 32, 3, 1), 2, enc.encoding, enc.data)


@pytest.mark.parametrize('encoding, payload', [
    (5, b''), (5, b'\x89PNG\r\n\x1a\n' + b'\0' * 30), (6, b'\xff\xd8\xff'), (6, b'not a jpeg'),
    (6, b'\xff\xd8' + b'\xff\xe0\x00\x10' + b'\0' * 14)])
def test_garbled_image_payload(encoding, payload):
    with pytest.raises(CodecError) as info:
        decode((1, 32, 32, 3), 2, encoding, payload)
    assert info.value.reason in ('payload_length', 'shape')


def test_image_bomb_is_refused_from_its_header():
    """A PNG claiming 60000 x 60000 pixels is refused before any pixel is decoded."""
    enc = encode(_frame(), 'png')
    data = bytearray(enc.data)
    data[16:20] = (60000).to_bytes(4, 'big')
    data[20:24] = (60000).to_bytes(4, 'big')
    _raises('shape', 'shape', (1, 32, 32, 3), 2, enc.encoding, bytes(data))


def test_effective_encoding_falls_back_to_raw_where_it_does_not_fit():
    from edgent_ros.core.codec import applies, effective_encoding
    assert effective_encoding('jpeg', image=True) == 'jpeg'
    assert effective_encoding('jpeg', image=False) == 'raw'
    assert effective_encoding('int8', image=True) == 'raw'
    assert effective_encoding('compressed', image=True) == 'compressed'
    assert applies('int8-zlib', image=False) and not applies('png', image=False)
    with pytest.raises(ValueError):
        effective_encoding('bogus', image=True)
