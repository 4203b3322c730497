"""
Time ``core.codec`` encode + decode of a 1 MiB float32 activation, per encoding.

The tensor is ``(1, 64, 64, 64)`` float32 after a ReLU (about half zeros, like a real split
activation; compression depends on it). For each encoding (raw, fp16, int8, compressed) the
script times ``encode``, ``decode`` and the path a message takes through rclpy: the payload put
into an ``array.array('B')`` (what a ``uint8[]`` field holds) and decoded from it with
``np.frombuffer``. For comparison it times, once, the element-wise path that per-element
conversion in Python costs (``list(bytes)`` and back), and, when the ROS messages are built, a
real ``edgent_ros.msg.Tensor`` filled with field checks off and on.

Run: ``PYTHONPATH=. python bench/bench_codec.py`` (add ``nice -n 10`` on a busy machine). Prints
median milliseconds and writes ``bench/results/codec_bench.json``.
"""

from __future__ import annotations

import argparse
import array
import json
import math
import os
from pathlib import Path
import platform
import sys
import time
from typing import Callable, Dict, List, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgent_ros.core.codec import decode, encode, ENCODINGS, fill_message  # noqa: E402

RESULTS = Path(__file__).resolve().parent / 'results' / 'codec_bench.json'
SHAPE = (1, 64, 64, 64)   # 262144 float32 = 1 MiB


def time_ms(fn: Callable[[], object], repeats: int, warmup: int = 3) -> Dict[str, float]:
    """Call ``fn`` ``repeats`` times (after ``warmup`` calls); return statistics in ms."""
    for _ in range(warmup):
        fn()
    ms = np.empty(repeats)
    clock = time.perf_counter_ns
    for k in range(repeats):
        t0 = clock()
        fn()
        ms[k] = (clock() - t0) / 1e6
    return {'repeats': repeats, 'median_ms': float(np.median(ms)),
            'p90_ms': float(np.percentile(ms, 90)), 'min_ms': float(ms.min())}


def once_ms(fn: Callable[[], object]) -> float:
    """Return the wall time of one call of ``fn`` in ms."""
    t0 = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t0) / 1e6


def _decode(enc, data=None) -> np.ndarray:
    return decode(enc.shape, enc.data_type, enc.encoding, enc.data if data is None else data,
                  enc.scale, enc.zero_point, enc.strides)


def bench_encodings(x: np.ndarray, repeats: int) -> Dict[str, Dict]:
    """Time encode, decode and the rclpy-like path for every encoding."""
    out = {}
    for name in ENCODINGS:
        enc = encode(x, name)
        y = _decode(enc)
        err = float(np.abs(y.astype(np.float64) - x).max())

        def rclpy_path(name=name):
            e = encode(x, name)
            field = array.array('B', e.data)      # what msg.data holds after assignment
            return _decode(e, field)

        out[name] = {
            'payload_bytes': enc.nbytes,
            'ratio_to_fp32': enc.nbytes / x.nbytes,
            'max_abs_error': err,
            'encode': time_ms(lambda name=name: encode(x, name), repeats),
            'decode': time_ms(lambda enc=enc: _decode(enc), repeats),
            'encode_decode': time_ms(lambda name=name: _decode(encode(x, name)), repeats),
            'rclpy_path': time_ms(rclpy_path, repeats),
        }
    return out


def bench_elementwise(x: np.ndarray) -> Dict[str, float]:
    """Time, once, the per-element Python conversions a naive node would do."""
    enc = encode(x, 'raw')
    as_list: List[int] = []

    def to_list():
        as_list[:] = list(enc.data)

    out = {'list_of_bytes_ms': once_ms(to_list)}
    out['array_from_list_ms'] = once_ms(lambda: array.array('B', as_list))
    out['numpy_from_list_ms'] = once_ms(lambda: np.array(as_list, dtype=np.uint8))
    out['bytes_from_list_ms'] = once_ms(lambda: bytes(as_list))
    out['total_roundtrip_ms'] = (out['list_of_bytes_ms'] + out['numpy_from_list_ms'])
    return out


def bench_real_message(x: np.ndarray) -> Dict[str, object]:
    """Time ``fill_message`` into a generated ``Tensor`` (field checks off / on), if built."""
    try:
        from edgent_ros.msg import Tensor
    except ImportError as exc:
        return {'available': False, 'why': str(exc)}
    enc = encode(x, 'raw')
    out: Dict[str, object] = {'available': True}
    for checks in (False, True):
        try:
            msg = Tensor(check_fields=checks)
        except TypeError:   # older rosidl without check_fields
            if checks:
                continue
            msg = Tensor()
        out[f'fill_bytes_check_fields_{checks}_ms'] = once_ms(lambda: fill_message(msg, enc))
        field = array.array('B', enc.data)

        def assign(msg=msg, field=field):
            msg.data = field
        out[f'assign_array_check_fields_{checks}_ms'] = once_ms(assign)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    """Run the benchmark and write the JSON report."""
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument('--repeats', type=int, default=50, help='timed calls per case (default 50)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--no-ros', action='store_true', help='skip the generated message timing')
    ap.add_argument('--out', type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    x = np.maximum(rng.standard_normal(SHAPE, dtype=np.float32), 0)
    results = bench_encodings(x, args.repeats)
    elementwise = bench_elementwise(x)
    real = {'available': False, 'why': '--no-ros'} if args.no_ros else bench_real_message(x)

    report = {
        'benchmark': 'core.codec encode/decode',
        'tensor': {'shape': list(SHAPE), 'dtype': 'float32', 'bytes': int(x.nbytes),
                   'zero_fraction': float((x == 0).mean()), 'seed': args.seed},
        'results': results,
        'elementwise_once': elementwise,
        'generated_message_once': real,
        'host': {'python': platform.python_version(), 'numpy': np.__version__,
                 'machine': platform.machine(), 'cpus': os.cpu_count(),
                 'loadavg_1m': os.getloadavg()[0] if hasattr(os, 'getloadavg') else math.nan,
                 'niceness': os.nice(0) if hasattr(os, 'nice') else None},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + '\n')

    print(f'1 MiB float32 {SHAPE}, {args.repeats} repeats, median ms')
    print(f'{"encoding":<11} {"bytes":>8} {"encode":>8} {"decode":>8} {"enc+dec":>8} '
          f'{"rclpy":>8}  max err')
    for name, r in results.items():
        print(f'{name:<11} {r["payload_bytes"]:>8} {r["encode"]["median_ms"]:8.3f} '
              f'{r["decode"]["median_ms"]:8.3f} {r["encode_decode"]["median_ms"]:8.3f} '
              f'{r["rclpy_path"]["median_ms"]:8.3f}  {r["max_abs_error"]:.2e}')
    print(f'element-wise, once: list(bytes) {elementwise["list_of_bytes_ms"]:.1f} ms, '
          f'np.array(list) {elementwise["numpy_from_list_ms"]:.1f} ms, '
          f'round trip {elementwise["total_roundtrip_ms"]:.1f} ms')
    if real.get('available'):
        print('generated Tensor msg, once: ' + ', '.join(
            f'{k} {v:.1f}' for k, v in real.items() if k.endswith('_ms')))
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
