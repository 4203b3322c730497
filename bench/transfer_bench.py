"""
Transfer time of one ``edgent_ros/Tensor`` over the testbed's shaped link, per DDS configuration.

A publisher (``qos.TENSOR``) runs in the robot namespace, a subscriber in the edge namespace of an
``edgent_ros.evaluation.testbed.Testbed``; DDS discovers across the veth
(``ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET``, a random ``ROS_DOMAIN_ID``). For every rate (tbf on the
uplink) and payload size whose ideal time ``bytes * 8 / rate`` is at most ``--max-ideal-s``, one
message at a time is sent once the shaper queue is empty; the one-way time is arrival (edge) minus
the header stamp (robot): the namespaces share the machine's clock. The uplink bytes on the wire
come from the tbf counters (everything the robot sent between the publish and the drained queue:
data, DDS headers, heartbeats, repairs), drops from its ``dropped`` counter.

Configurations (``--configs``): ``default`` (Fast DDS as rmw_fastrtps sets it up, no XML),
``testbed`` (``config/fastdds_testbed.xml``) or any ``PATH.xml`` (named by its stem); extra env
per configuration as ``NAME.xml+VAR=VALUE+VAR2=VALUE2``.

Run as root, from the repository root, in the ROS environment::

    source scripts/env.sh
    nice -n 5 python bench/transfer_bench.py --configs default,testbed

Writes ``bench/results/transfer.csv`` (one row per message) and ``transfer.png`` (measured vs
ideal). Every wait is bounded; the testbed is torn down at the end, also after an error.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path
import queue
import random
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / 'bench' / 'results'
COLUMNS = ('config', 'mode', 'rate_mbps', 'size_bytes', 'rep', 'ideal_ms', 'measured_ms', 'ratio',
           'publish_ms', 'wire_bytes', 'wire_ratio', 'dropped', 'arrived')


# ------------------------------------------------------------------------------------------
# Roles inside the namespaces

def role_pub() -> int:
    """Robot side: publish a Tensor of N bytes per ``SEND seq N`` line on stdin."""
    import numpy as np
    import rclpy
    from edgent_ros.nodes import qos
    from edgent_ros.msg import Tensor
    rclpy.init()
    node = rclpy.create_node('transfer_bench_pub')
    pub = node.create_publisher(Tensor, 'edgent/tensor', qos.TENSOR)
    end = time.monotonic() + 60
    while pub.get_subscription_count() == 0 and time.monotonic() < end:
        time.sleep(0.05)
    print('READY' if pub.get_subscription_count() else 'NOSUB', flush=True)
    payloads: Dict[int, bytes] = {}
    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] == 'QUIT':
            break
        seq, n = int(parts[1]), int(parts[2])
        if n not in payloads:
            payloads[n] = np.random.default_rng(n).integers(0, 256, n, np.uint8).tobytes()
        msg = Tensor()
        msg.sequence = seq
        msg.name = 'bench'
        msg.data_type = Tensor.DATA_TYPE_UINT8
        msg.shape = [n]
        msg.data = payloads[n]
        t0 = time.time()
        sec = int(t0)
        msg.header.stamp.sec, msg.header.stamp.nanosec = sec, int((t0 - sec) * 1e9)
        pub.publish(msg)
        print(f'SENT {seq} {t0:.6f} {time.time():.6f}', flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def role_sub(node_name: str = 'transfer_bench_sub', max_s: Optional[float] = None) -> int:
    """
    Edge side: print ``RECV seq bytes t_recv t_stamp`` per message.

    Spins until interrupted or for ``max_s`` (default ``$BENCH_SUB_MAX_S``, else 3600 s).
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from edgent_ros.nodes import qos
    from edgent_ros.msg import Tensor
    rclpy.init()
    node = rclpy.create_node(node_name)

    def cb(msg: Tensor) -> None:
        t = time.time()
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        print(f'RECV {msg.sequence} {len(msg.data)} {t:.6f} {stamp:.6f}', flush=True)
    node.create_subscription(Tensor, 'edgent/tensor', cb, qos.TENSOR)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    if max_s is None:
        max_s = float(os.environ.get('BENCH_SUB_MAX_S', '3600'))
    end = time.monotonic() + max_s
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


# ------------------------------------------------------------------------------------------
# Orchestration (root namespace)

class Lines:
    """Collect a child's stdout lines in a queue (reader thread)."""

    def __init__(self, proc: subprocess.Popen):
        self.q: 'queue.Queue[str]' = queue.Queue()
        self.proc = proc
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.q.put(line.strip())

    def wait_for(self, prefix: str, timeout: float) -> Optional[str]:
        """Return the next line starting with ``prefix`` within ``timeout`` s (None if none)."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                return None
            if line.startswith(prefix):
                return line


def config_env(spec: str) -> Tuple[str, Dict[str, Optional[str]]]:
    """Return (name, env changes) of a ``--configs`` entry (None value = unset)."""
    parts = spec.split('+')
    base, extra = parts[0], parts[1:]
    env: Dict[str, Optional[str]] = {}
    if base == 'default':
        name = 'default'
        env['FASTDDS_DEFAULT_PROFILES_FILE'] = None
    else:
        path = ROOT / 'config' / 'fastdds_testbed.xml' if base == 'testbed' else Path(base)
        if not path.is_file():
            raise FileNotFoundError(path)
        name = 'testbed' if base == 'testbed' else path.stem
        env['FASTDDS_DEFAULT_PROFILES_FILE'] = str(path.resolve())
    for kv in extra:
        k, _, v = kv.partition('=')
        env[k] = v
        name += f'+{k.replace("RMW_FASTRTPS_", "")}={v}'
    return name, env


def wait_drained(tb, timeout: float) -> Dict[str, int]:
    """Wait (bounded) until the uplink queue is empty; return the qdisc counters."""
    end = time.monotonic() + timeout
    while True:
        st = tb.qdisc_stats('robot')
        if st.get('backlog_packets', 0) == 0 or time.monotonic() > end:
            return st
        time.sleep(0.05)


def run_config(tb, spec: str, rates: List[float], sizes: List[int], reps: int,
               max_ideal_s: float, log, modes: Tuple[str, ...] = ('isolated',),
               extra_env: Optional[Dict[str, str]] = None,
               label: Optional[str] = None) -> List[dict]:
    """
    Start pub/sub under one DDS configuration and measure every (mode, rate, size, rep).

    ``extra_env`` is added to both roles' environment (e.g. core.security.node_env), and the
    rows are named ``label`` instead of the configuration's name; each row also carries
    ``ready_s``, the seconds from the start of the two roles to the publisher's match.

    ``isolated``: each message is sent once the uplink queue is empty. ``chained``: the next
    message is sent as soon as the previous one arrived (what a camera with one frame in flight
    does), so whatever the DDS writer still sends after an arrival (repairs) delays it.
    """
    name, changes = config_env(spec)
    name = label or name
    env = dict(os.environ, PYTHONUNBUFFERED='1', ROS_AUTOMATIC_DISCOVERY_RANGE='SUBNET',
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    for k, v in dict(changes, **(extra_env or {})).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    me = [sys.executable, str(Path(__file__).resolve())]
    rows: List[dict] = []
    tb.set_rate(max(rates))
    t_start = time.monotonic()
    sub = tb.run_in('edge', ['nice', '-n', '5', *me, '_sub'], env=env, stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    pub = tb.run_in('robot', ['nice', '-n', '5', *me, '_pub'], env=env, stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                    start_new_session=True)
    try:
        sub_lines, pub_lines = Lines(sub), Lines(pub)
        ready = pub_lines.wait_for('READY', 60) or 'none'
        ready_s = round(time.monotonic() - t_start, 3)
        if ready != 'READY':
            log(f'[{name}] no discovery across the veth ({ready}); skipping')
            return rows
        seq = 0

        def send(n: int, timeout: float) -> Tuple[Optional[str], Optional[str]]:
            nonlocal seq
            seq += 1
            pub.stdin.write(f'SEND {seq} {n}\n')
            pub.stdin.flush()
            sent = pub_lines.wait_for(f'SENT {seq} ', timeout)
            got = sub_lines.wait_for(f'RECV {seq} ', timeout)
            return sent, got

        send(1024, 15)   # warm-up: matched endpoints, first-message allocations
        time.sleep(1.0)
        for mode, rate, size in [(m, r, s) for m in modes for r in rates for s in sizes]:
            tb.set_rate(rate)
            ideal_s = size * 8 / (rate * 1e6)
            if ideal_s > max_ideal_s:
                continue
            after = wait_drained(tb, 30)
            for rep in range(reps):
                before = wait_drained(tb, 30) if mode == 'isolated' else after
                timeout = max(10.0, 3 * ideal_s + 5)
                sent, got = send(size, timeout)
                after = (wait_drained(tb, max(5.0, 2 * ideal_s)) if mode == 'isolated'
                         or rep == reps - 1 else tb.qdisc_stats('robot'))
                row = {'config': name, 'mode': mode, 'rate_mbps': rate, 'size_bytes': size,
                       'rep': rep, 'ready_s': ready_s,
                       'ideal_ms': round(ideal_s * 1e3, 3),
                       'wire_bytes': after.get('sent_bytes', 0) - before.get('sent_bytes', 0),
                       'dropped': after.get('dropped', 0) - before.get('dropped', 0),
                       'arrived': got is not None}
                row['wire_ratio'] = round(row['wire_bytes'] / size, 4)
                if sent:
                    _, _, t0, t1 = sent.split()
                    row['publish_ms'] = round((float(t1) - float(t0)) * 1e3, 3)
                if got:
                    _, _, nbytes, t_recv, t_stamp = got.split()
                    ms = (float(t_recv) - float(t_stamp)) * 1e3
                    row['measured_ms'] = round(ms, 3)
                    row['ratio'] = round(ms / (ideal_s * 1e3), 4)
                rows.append(row)
                log(f'[{name} {mode}] {rate:5g} Mbit/s {size // 1024:4d} KiB #{rep}: '
                    + (f'{row["measured_ms"]:9.1f} ms (ideal {row["ideal_ms"]:8.1f}, x'
                       f'{row["ratio"]:.3f})' if got else f'LOST after {timeout:.0f} s')
                    + f'  wire {row["wire_ratio"]:.3f}x payload, dropped {row["dropped"]}')
        pub.stdin.write('QUIT\n')
        pub.stdin.flush()
    finally:
        for p in (pub, sub):
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
    return rows


def plot(rows: List[dict], path: Path, main_configs=('default', 'testbed')) -> None:
    """
    Plot measured against ideal transfer times.

    Left: measured vs ideal time of ``main_configs`` (isolated and chained), log-log.
    Right: per configuration, measured/ideal of messages >= 100 kB (median, min-max).
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), gridspec_kw={'width_ratios': [1, 1.15]})
    ax = axes[0]
    lo, hi = 10.0, 30_000.0
    ax.plot([lo, hi], [lo, hi], 'k-', lw=1, label='ideal = payload bytes x 8 / rate')
    ax.fill_between([lo, hi], [0.9 * lo, 0.9 * hi], [1.1 * lo, 1.1 * hi], color='0.85',
                    label='+-10 %')
    style = {('default', 'isolated'): ('tab:red', 'o'), ('default', 'chained'): ('tab:red', 'x'),
             ('testbed', 'isolated'): ('tab:blue', 'o'),
             ('testbed', 'chained'): ('tab:blue', 'x')}
    for c in main_configs:
        for mode in ('isolated', 'chained'):
            pts = [r for r in rows if r['config'] == c and r.get('mode', 'isolated') == mode
                   and r.get('measured_ms')]
            if not pts:
                continue
            color, marker = style.get((c, mode), (None, 'o'))
            ax.scatter([r['ideal_ms'] for r in pts], [r['measured_ms'] for r in pts], s=22,
                       marker=marker, color=color, alpha=0.7,
                       label=f'{c}, {mode} ({len(pts)} msgs)',
                       facecolors='none' if marker == 'o' else None)
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel('ideal transfer time (ms)')
    ax.set_ylabel('measured one-way time (ms)')
    ax.set_title('32-512 KiB Tensor, tbf uplink 0.05-10 Mbit/s')
    ax.legend(fontsize=8, loc='upper left')
    ax = axes[1]
    configs = sorted({r['config'] for r in rows}, key=lambda c: (c != 'testbed', c))
    y = 0
    labels = []
    for c in configs:
        for mode, color in (('isolated', 'tab:gray'), ('chained', 'tab:purple')):
            rs = [r['ratio'] for r in rows if r['config'] == c and r.get('mode') == mode
                  and r.get('ratio') and int(r['size_bytes']) >= 100_000]
            lost = sum(1 for r in rows if r['config'] == c and r.get('mode') == mode
                       and not r.get('ratio') and int(r['size_bytes']) >= 100_000)
            if not rs:
                continue
            rs.sort()
            med = rs[len(rs) // 2]
            ax.errorbar([med], [y], xerr=[[med - rs[0]], [rs[-1] - med]], fmt='o',
                        color=color, capsize=3)
            labels.append(f'{c.replace("+PUBLICATION_MODE=AUTO", "")} {mode}'
                          + (f' ({lost} lost)' if lost else ''))
            y += 1
    ax.axvline(1.0, color='k', lw=1)
    ax.axvspan(0.9, 1.1, color='0.85')
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale('log')
    ax.set_xlabel('measured / ideal (messages >= 100 kB; median, min-max)')
    ax.set_title('Fast DDS configurations')
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Optional[List[str]] = None) -> int:
    """Parse arguments and run (or act as a pub/sub role)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['_pub']:
        return role_pub()
    if argv[:1] == ['_sub']:
        return role_sub()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument('--configs', default='default,testbed',
                   help='comma list: default, testbed, PATH.xml[+VAR=VALUE...]')
    p.add_argument('--rates', default='0.05,0.1,0.5,1,2,5,10', help='Mbit/s, comma list')
    p.add_argument('--sizes', default='32768,131072,524288', help='bytes, comma list')
    p.add_argument('--reps', type=int, default=3)
    p.add_argument('--modes', default='isolated,chained', help='isolated, chained (comma list)')
    p.add_argument('--max-ideal-s', type=float, default=15.0,
                   help='skip (rate, size) whose ideal time is longer')
    p.add_argument('--name', default='edgbench', help='testbed name')
    p.add_argument('--out', type=Path, default=RESULTS / 'transfer.csv')
    p.add_argument('--append', action='store_true', help='append to --out (no header)')
    p.add_argument('--no-plot', action='store_true')
    args = p.parse_args(argv)
    from edgent_ros.evaluation.testbed import Testbed, unavailable_reason
    reason = unavailable_reason()
    if reason:
        print(f'transfer_bench: {reason}', file=sys.stderr)
        return 1
    os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(200, 232)))
    rates = [float(x) for x in args.rates.split(',')]
    sizes = [int(x) for x in args.sizes.split(',')]
    tb = Testbed(name=args.name, rate_mbps=max(rates), robot_quota=None)
    rows: List[dict] = []

    def log(s: str) -> None:
        print(s, flush=True)
    log(f'testbed {tb.name}, ROS_DOMAIN_ID {os.environ["ROS_DOMAIN_ID"]}, queue '
        f'{tb.queue_bytes} B, burst {tb.burst_bytes} B')
    try:
        tb.setup()
        for spec in args.configs.split(','):
            rows += run_config(tb, spec, rates, sizes, args.reps, args.max_ideal_s, log,
                               tuple(args.modes.split(',')))
    finally:
        tb.teardown()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    mode = 'a' if args.append and args.out.exists() else 'w'
    with open(args.out, mode, newline='') as f:
        w = csv.DictWriter(f, COLUMNS)
        if mode == 'w':
            w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, '') for k in COLUMNS})
    if not args.no_plot:
        with open(args.out, newline='') as f:
            allrows = [dict(r, ideal_ms=float(r['ideal_ms']), rate_mbps=float(r['rate_mbps']),
                            measured_ms=float(r['measured_ms']) if r['measured_ms'] else None,
                            ratio=float(r['ratio']) if r['ratio'] else None)
                       for r in csv.DictReader(f)]
        plot(allrows, args.out.with_suffix('.png'))
    summarize(rows, log)
    return 0


def summarize(rows: List[dict], log) -> None:
    """Log the median ratio per (config, rate, size)."""
    import statistics
    keys = sorted({(r['config'], r['mode'], r['rate_mbps'], r['size_bytes']) for r in rows})
    log('\nconfig, mode, rate_mbps, size_KiB: median measured/ideal, median wire/payload, lost')
    for k in keys:
        rs = [r for r in rows if (r['config'], r['mode'], r['rate_mbps'], r['size_bytes']) == k]
        ok = [r['ratio'] for r in rs if r.get('ratio')]
        log(f'{k[0]:>24} {k[1]:>8} {k[2]:6g} {k[3] // 1024:5d}: '
            f'{statistics.median(ok) if ok else float("nan"):7.3f} '
            f'{statistics.median(r["wire_ratio"] for r in rs):7.3f} '
            f'{sum(not r["arrived"] for r in rs)}')


if __name__ == '__main__':
    raise SystemExit(main())
