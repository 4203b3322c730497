"""
Publish-to-callback latency of 0.1-8 MB ``edgent_ros/Tensor`` messages between two processes.

Issue 16 item 6. One host, no testbed: a publisher process and a subscriber process in their own
``ROS_DOMAIN_ID`` (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``), one message at a time (the next
is sent once the previous one arrived), a float32 tensor of the given size (``raw`` encoding,
``codec.encode`` done once per size beforehand, as the camera has its tensor). The time runs
from just before the publisher builds the message from the encoded tensor to the moment the
subscriber's callback holds the decoded numpy array (``ready_ms``; ``cb_ms`` is callback entry).
Both ends read ``time.monotonic_ns()``: ``CLOCK_MONOTONIC`` is one system-wide clock on Linux, so
the two processes' stamps compare directly (no round trip halved). Variants (``--variants``):

* ``baseline``: the nodes' path before this benchmark: ``camera_msgs.tensor_msg`` (the payload
  copied into the message's ``array.array``), ``Publisher.publish(msg)``, a typed subscription,
  ``codec.from_message``. Fast DDS as rmw_fastrtps sets it up (no XML profile).
* ``serialized``: ``core.tensor_wire.serialize`` (the CDR bytes built from the fields, one copy
  of the payload), ``Publisher.publish(bytes)``, ``create_subscription(..., raw=True)``,
  ``tensor_wire.parse`` (payload a zero-copy view) and ``codec.from_message``; default Fast DDS.
* ``NAME@PROFILE``: either of the two with a Fast DDS XML profile (``testbed`` =
  ``config/fastdds_testbed.xml``, ``local`` = ``config/fastdds_local.xml``, or a path), e.g.
  ``serialized@local``; ``+VAR=VALUE`` appends environment variables (``serialized+
  FASTDDS_BUILTIN_TRANSPORTS=UDPv4``).
* ``tcp``: the raw bound: the same number of payload bytes from a sender process to a receiver
  process over a loopback TCP socket (``TCP_NODELAY``, ``sendall`` of a 24-byte header and the
  payload, ``recv_into`` a preallocated buffer), stamped the same way.

Run from the repository root in the ROS environment (2 cores: keep other work off, or say so)::

    source scripts/env.sh
    python bench/transport_sizes.py                       # ~2-4 min
    python bench/transport_sizes.py --variants baseline,serialized,serialized@local --n 50
    python bench/transport_sizes.py --report              # table from the CSV

Writes ``bench/results/transport_sizes.csv`` (one row per message) and ``transport_sizes.png``
(median ms vs size, log-log, p10-p90 band; the ratio to tcp per size). Every wait is bounded
(``--cell-s`` per variant and size, ``--timeout-s`` per message).
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import replace
import os
from pathlib import Path
import random
import socket
import statistics
import struct
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'bench'))

from transfer_bench import Lines  # noqa: E402

RESULTS = ROOT / 'bench' / 'results'
COLUMNS = ('variant', 'size_bytes', 'rep', 'ready_ms', 'cb_ms', 'publish_ms', 'build_ms',
           'wire_bytes', 'ok', 'load1')
PROFILES = {'testbed': ROOT / 'config' / 'fastdds_testbed.xml',
            'local': ROOT / 'config' / 'fastdds_local.xml'}
TCP_HEADER = struct.Struct('<QqQ')     # seq, t0 (monotonic ns), payload bytes
ELEMENTS_PER_ROW = 250                 # tensor shape (1, size / 4 / 250, 250)


def _shape(size: int) -> Tuple[int, int, int]:
    n = size // 4
    if size % 4 or n % ELEMENTS_PER_ROW:
        raise ValueError(f'size {size} must be a multiple of {4 * ELEMENTS_PER_ROW} bytes')
    return (1, n // ELEMENTS_PER_ROW, ELEMENTS_PER_ROW)


def _payload(size: int):
    import numpy as np
    return np.random.default_rng(size).standard_normal(_shape(size)).astype(np.float32)


def _split(variant: str) -> Tuple[str, Optional[str], Dict[str, str]]:
    """Return (mode, profile, extra env) of ``MODE[@PROFILE][+VAR=VALUE...]``."""
    head, *extra = variant.split('+')
    mode, _, profile = head.partition('@')
    return mode, profile or None, dict(kv.partition('=')[::2] for kv in extra)


# ------------------------------------------------------------------------------------------
# Roles (child processes)

def role_pub(variant: str) -> int:
    """Publish one Tensor per ``SEND seq size`` line on stdin; print ``SENT seq t0 t1 t2 n``."""
    import rclpy
    from builtin_interfaces.msg import Time
    from edgent_ros.core import tensor_wire
    from edgent_ros.core.codec import encode
    from edgent_ros.msg import Tensor
    from edgent_ros.nodes import qos
    from edgent_ros.nodes.camera_msgs import tensor_msg
    mode = _split(variant)[0]
    rclpy.init()
    node = rclpy.create_node('transport_sizes_pub')
    pub = node.create_publisher(Tensor, 'edgent/tensor', qos.TENSOR)
    end = time.monotonic() + 60
    while pub.get_subscription_count() == 0 and time.monotonic() < end:
        time.sleep(0.05)
    print('READY' if pub.get_subscription_count() else 'NOSUB', flush=True)
    encoded: Dict[int, object] = {}
    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] == 'QUIT':
            break
        seq, size = int(parts[1]), int(parts[2])
        if size not in encoded:
            encoded[size] = encode(_payload(size), 'raw', name='split3')
        enc = encoded[size]
        t0 = time.monotonic_ns()
        stamp = Time(sec=t0 // 10**9, nanosec=t0 % 10**9)
        if mode == 'baseline':     # as camera_node built and sent it
            msg = tensor_msg(stamp, 'camera_optical_frame', '/robot1', 'bench', seq, 5, 3, enc)
            msg.device_compute_ms, msg.confidence_threshold = 1.0, 0.0
            t1 = time.monotonic_ns()
            pub.publish(msg)
            nbytes = len(enc.data)
        else:                      # the small fields as a message, the payload given beside
            msg = tensor_msg(stamp, 'camera_optical_frame', '/robot1', 'bench', seq, 5, 3,
                             replace(enc, data=b''))
            msg.device_compute_ms, msg.confidence_threshold = 1.0, 0.0
            wire = tensor_wire.serialize(msg, enc.data)
            t1 = time.monotonic_ns()
            pub.publish(wire)
            nbytes = len(wire)
        t2 = time.monotonic_ns()
        print(f'SENT {seq} {t0} {t1} {t2} {nbytes}', flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def role_sub(variant: str) -> int:
    """Print ``RECV seq t0 t_callback t_ready ok`` per Tensor (``ok``: payload as sent)."""
    import numpy as np
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from edgent_ros.core import tensor_wire
    from edgent_ros.core.codec import from_message
    from edgent_ros.msg import Tensor
    from edgent_ros.nodes import qos
    mode = _split(variant)[0]
    rclpy.init()
    node = rclpy.create_node('transport_sizes_sub')
    expected: Dict[int, object] = {}

    def cb(msg) -> None:
        t_cb = time.monotonic_ns()
        if mode != 'baseline':
            msg = tensor_wire.parse(msg)
        arr = from_message(msg, max_bytes=64 << 20)
        t_ready = time.monotonic_ns()
        t0 = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        if arr.nbytes not in expected:
            expected[arr.nbytes] = _payload(arr.nbytes)
        ok = int(np.array_equal(arr, expected[arr.nbytes]))
        print(f'RECV {msg.sequence} {t0} {t_cb} {t_ready} {ok}', flush=True)
    node.create_subscription(Tensor, 'edgent/tensor', cb, qos.TENSOR, raw=mode != 'baseline')
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    end = time.monotonic() + float(os.environ.get('BENCH_SUB_MAX_S', '1800'))
    try:
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def role_tcp_recv() -> int:
    """Accept one connection; print ``RECV seq t0 t_ready t_ready 1`` per payload received."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(('127.0.0.1', 0))
    srv.listen(1)
    srv.settimeout(60)
    print(f'PORT {srv.getsockname()[1]}', flush=True)
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray(64 << 20)
    view = memoryview(buf)
    head = bytearray(TCP_HEADER.size)
    while True:
        got = 0
        while got < TCP_HEADER.size:
            n = conn.recv_into(memoryview(head)[got:])
            if not n:
                return 0
            got += n
        seq, t0, size = TCP_HEADER.unpack(head)
        got = 0
        while got < size:
            n = conn.recv_into(view[got:size])
            if not n:
                return 0
            got += n
        t = time.monotonic_ns()
        print(f'RECV {seq} {t0} {t} {t} 1', flush=True)


def role_tcp_send(port: int) -> int:
    """Connect; per ``SEND seq size`` line send the header and ``size`` payload bytes."""
    conn = socket.create_connection(('127.0.0.1', port), timeout=60)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print('READY', flush=True)
    payloads: Dict[int, bytes] = {}
    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] == 'QUIT':
            break
        seq, size = int(parts[1]), int(parts[2])
        if size not in payloads:
            payloads[size] = _payload(size).tobytes()
        t0 = time.monotonic_ns()
        conn.sendall(TCP_HEADER.pack(seq, t0, size))
        conn.sendall(payloads[size])
        t2 = time.monotonic_ns()
        print(f'SENT {seq} {t0} {t0} {t2} {size}', flush=True)
    conn.close()
    return 0


# ------------------------------------------------------------------------------------------
# Orchestration

def _env(variant: str) -> Dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED='1', ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    for k in ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE',
              'RMW_FASTRTPS_USE_QOS_FROM_XML', 'RMW_FASTRTPS_PUBLICATION_MODE'):
        env.pop(k, None)
    _, profile, extra = _split(variant)
    if profile:
        path = PROFILES.get(profile, Path(profile))
        if not path.is_file():
            raise FileNotFoundError(path)
        env['FASTDDS_DEFAULT_PROFILES_FILE'] = str(path.resolve())
    env.update(extra)
    return env


def _stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, 15)
                p.wait(10)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(p.pid, 9)
                except ProcessLookupError:
                    pass
                p.wait(5)


def run_variant(variant: str, sizes: List[int], n: int, warmup: int, cell_s: float,
                timeout_s: float, log) -> List[dict]:
    """Start the two processes of ``variant`` and time ``n`` messages per size."""
    me = [sys.executable, str(Path(__file__).resolve())]
    kw = dict(stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
              start_new_session=True)
    if variant == 'tcp':
        recv = subprocess.Popen([*me, '_tcp_recv'], env=_env(variant), **kw)
        recv_lines = Lines(recv)
        port = recv_lines.wait_for('PORT', 30)
        if port is None:
            _stop([recv])
            raise RuntimeError('tcp receiver did not start')
        send = subprocess.Popen([*me, '_tcp_send', port.split()[1]], env=_env(variant),
                                stdin=subprocess.PIPE, **kw)
        procs = [send, recv]
    else:
        recv = subprocess.Popen([*me, '_sub', variant], env=_env(variant), **kw)
        send = subprocess.Popen([*me, '_pub', variant], env=_env(variant),
                                stdin=subprocess.PIPE, **kw)
        recv_lines, procs = Lines(recv), [send, recv]
    rows: List[dict] = []
    try:
        send_lines = Lines(send)
        ready = send_lines.wait_for('', 60)   # READY once matched (connected), else NOSUB
        if ready != 'READY':
            log(f'[{variant}] the two processes did not match; skipped')
            return rows
        seq = 0
        for size in sizes:
            end = time.monotonic() + cell_s
            for rep in range(-warmup, n):
                if time.monotonic() > end:
                    log(f'[{variant}] {size / 1e6:g} MB: --cell-s {cell_s:g} s reached after '
                        f'{rep} messages')
                    break
                seq += 1
                send.stdin.write(f'SEND {seq} {size}\n')
                send.stdin.flush()
                sent = send_lines.wait_for(f'SENT {seq} ', timeout_s)
                got = recv_lines.wait_for(f'RECV {seq} ', timeout_s)
                if rep < 0:
                    continue
                row = {'variant': variant, 'size_bytes': size, 'rep': rep, 'ok': 0,
                       'load1': round(os.getloadavg()[0], 2)}
                if sent:
                    _, _, t0, t1, t2, nbytes = sent.split()
                    row.update(build_ms=round((int(t1) - int(t0)) / 1e6, 3),
                               publish_ms=round((int(t2) - int(t1)) / 1e6, 3),
                               wire_bytes=int(nbytes))
                if got:
                    _, _, t0, t_cb, t_ready, ok = got.split()
                    row.update(cb_ms=round((int(t_cb) - int(t0)) / 1e6, 3),
                               ready_ms=round((int(t_ready) - int(t0)) / 1e6, 3), ok=int(ok))
                rows.append(row)
                time.sleep(0.01)
            cell = [r for r in rows if r['size_bytes'] == size]
            s = summary(cell)
            log(f'[{variant:>20}] {size / 1e6:4g} MB: median {s["median"]:8.2f} ms, p90 '
                f'{s["p90"]:8.2f} ms over {s["n"]} ({s["lost"]} lost, {s["bad"]} wrong payload)')
        send.stdin.write('QUIT\n')
        send.stdin.flush()
    finally:
        _stop(procs)
    return rows


def _pct(xs: List[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float('nan')


def summary(rows: List[dict]) -> dict:
    """Median / p10 / p90 of ``ready_ms`` over the messages that arrived intact."""
    xs = [float(r['ready_ms']) for r in rows if r.get('ready_ms') not in (None, '')
          and int(r['ok'])]
    return {'n': len(xs), 'median': statistics.median(xs) if xs else float('nan'),
            'p10': _pct(xs, 0.1), 'p90': _pct(xs, 0.9),
            'lost': sum(1 for r in rows if r.get('ready_ms') in (None, '')),
            'bad': sum(1 for r in rows if r.get('ready_ms') not in (None, '')
                       and not int(r['ok']))}


def table(rows: List[dict]) -> Tuple[List[str], List[int], Dict[Tuple[str, int], dict]]:
    """Return (variants, sizes, summary per (variant, size))."""
    variants = list(dict.fromkeys(r['variant'] for r in rows))
    sizes = sorted({int(r['size_bytes']) for r in rows})
    cells = {(v, s): summary([r for r in rows if r['variant'] == v
                              and int(r['size_bytes']) == s]) for v in variants for s in sizes}
    return variants, sizes, cells


def _ms(x: float) -> str:
    """Format milliseconds to three significant figures (two decimals below 10 ms)."""
    return f'{x:.0f}' if x >= 100 else f'{x:.1f}' if x >= 10 else f'{x:.2f}'


def markdown(rows: List[dict], bold: str = 'serialized@local', bold_from_mb: float = 1.0) -> str:
    """
    Return BENCHMARKS' table (section 13): median (p90) ms per variant and size, x the tcp median.

    The ratio of variant ``bold`` is set in bold from ``bold_from_mb`` MB up (the target's range).
    """
    variants, sizes, cells = table(rows)
    others = [v for v in variants if v != 'tcp']
    out = ['| size | ' + ' | '.join(others) + ' | TCP | '
           + ' | '.join(f'{v} / TCP' for v in others) + ' |',
           '|---' * (2 + 2 * len(others)) + '|']
    for s in sizes:
        tcp = cells.get(('tcp', s), {}).get('median', float('nan'))
        ratios = []
        for v in others:
            r = f'{cells[v, s]["median"] / tcp:.1f}×'
            ratios.append(f'**{r}**' if v == bold and s >= bold_from_mb * 1e6 else r)
        out.append(f'| {s / 1e6:g} MB | '
                   + ' | '.join(f'{_ms(cells[v, s]["median"])} ({_ms(cells[v, s]["p90"])})'
                                for v in others)
                   + f' | {_ms(tcp)} | ' + ' | '.join(ratios) + ' |')
    return '\n'.join(out)


def report(rows: List[dict], log) -> None:
    """Log BENCHMARKS' markdown table of ``rows`` (``markdown``)."""
    log(markdown(rows))


def plot(rows: List[dict], path: Path) -> None:
    """Left: median ms vs size per variant (log-log, p10-p90 band); right: median / tcp."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    variants, sizes, cells = table(rows)
    fig, (ax, rx) = plt.subplots(1, 2, figsize=(13, 5.2))
    mb = [s / 1e6 for s in sizes]
    tcp = [cells.get(('tcp', s), {}).get('median', float('nan')) for s in sizes]
    if 'tcp' in variants:
        ax.plot(mb, [10 * t for t in tcp], 'k:', lw=1, label='target: 10x tcp')
    for v in variants:
        med = [cells[v, s]['median'] for s in sizes]
        style = dict(color='k', marker='s') if v == 'tcp' else dict(marker='o')
        line, = ax.plot(mb, med, label=v if v != 'tcp' else 'tcp loopback (raw bound)', **style)
        ax.fill_between(mb, [cells[v, s]['p10'] for s in sizes],
                        [cells[v, s]['p90'] for s in sizes], color=line.get_color(), alpha=0.15)
        if v != 'tcp' and 'tcp' in variants:
            ratio = [m / t for m, t in zip(med, tcp)]
            rx.plot(mb, ratio, marker='o', color=line.get_color(), label=v)
            rx.annotate(f'{ratio[-1]:.1f}x', (mb[-1], ratio[-1]), textcoords='offset points',
                        xytext=(6, -3), fontsize=8, color=line.get_color())
    for a in (ax, rx):
        a.set_xscale('log')
        a.set_yscale('log')
        a.set_xlabel('payload (MB)')
        a.grid(True, which='both', alpha=0.3)
        a.legend(fontsize=8)
    ax.set_ylabel('publish -> decoded array in the callback (ms)')
    ax.set_title('Tensor between two processes, one host (median, p10-p90)')
    from matplotlib.ticker import FormatStrFormatter
    rx.yaxis.set_major_formatter(FormatStrFormatter('%g'))
    rx.yaxis.set_minor_formatter(FormatStrFormatter('%g'))
    rx.axhline(10, color='k', ls=':', lw=1)
    rx.axvspan(1, 8, color='0.92', zorder=0)
    rx.set_ylabel('median / tcp median')
    rx.set_title('x the loopback TCP bound (target <= 10x at 1-8 MB, shaded)')
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Optional[List[str]] = None) -> int:
    """Parse arguments and run (or act as one of the child roles)."""
    argv = sys.argv[1:] if argv is None else argv
    roles = {'_pub': lambda: role_pub(argv[1]), '_sub': lambda: role_sub(argv[1]),
             '_tcp_recv': role_tcp_recv, '_tcp_send': lambda: role_tcp_send(int(argv[1]))}
    if argv[:1] and argv[0] in roles:
        return roles[argv[0]]()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument('--sizes', default='0.1,1,4,8', help='payload MB (10^6 bytes), comma list')
    p.add_argument('--variants', default='tcp,baseline,serialized',
                   help='comma list: tcp, baseline, serialized, NAME@PROFILE')
    p.add_argument('--n', type=int, default=30, help='messages per variant and size')
    p.add_argument('--warmup', type=int, default=3, help='messages per size not counted')
    p.add_argument('--cell-s', type=float, default=60.0, help='time cap per variant and size')
    p.add_argument('--timeout-s', type=float, default=10.0, help='wait per message at most')
    p.add_argument('--out', type=Path, default=RESULTS / 'transport_sizes.csv')
    p.add_argument('--append', action='store_true', help='append to --out')
    p.add_argument('--report', action='store_true', help='only print the table of --out')
    p.add_argument('--no-plot', action='store_true')
    args = p.parse_args(argv)

    def log(s: str) -> None:
        print(s, flush=True)
    if not args.report:
        os.environ['ROS_DOMAIN_ID'] = str(random.randint(100, 200))
        sizes = [int(round(float(x) * 1e6)) for x in args.sizes.split(',')]
        for s in sizes:
            _shape(s)
        log(f'ROS_DOMAIN_ID {os.environ["ROS_DOMAIN_ID"]}, {os.cpu_count()} CPUs, load '
            f'{os.getloadavg()[0]:.2f}; sizes {sizes}; {args.n} messages each')
        rows: List[dict] = []
        for v in args.variants.split(','):
            rows += run_variant(v, sizes, args.n, args.warmup, args.cell_s, args.timeout_s, log)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        mode = 'a' if args.append and args.out.exists() else 'w'
        with open(args.out, mode, newline='') as f:
            w = csv.DictWriter(f, COLUMNS)
            if mode == 'w':
                w.writeheader()
            for r in rows:
                w.writerow({k: r.get(k, '') for k in COLUMNS})
        log(f'wrote {args.out}')
    with open(args.out, newline='') as f:
        rows = list(csv.DictReader(f))
    report(rows, log)
    if not args.no_plot and not args.report:
        plot(rows, args.out.with_suffix('.png'))
        log(f'wrote {args.out.with_suffix(".png")}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
