"""
Delay and loss on the testbed (issue 20): a user-space Ethernet relay between two interfaces.

This kernel has no ``netem``, no tc actions or classifiers and no iptables, so the testbed's
``tbf`` can only take bandwidth away. With ``Testbed(relay=True)`` the robot and the edge are
no longer joined by one veth pair but by two, ending in a third namespace ``<name>_link`` where
this relay copies every Ethernet frame from one end to the other through an ``AF_PACKET`` socket
on each (layer 2: ARP, multicast discovery and IP fragments pass as they are; the two hosts stay
in one /24). Each direction (``up`` = robot -> edge, ``down`` = edge -> robot) has its own

* one-way ``delay_ms`` plus ``jitter_ms`` (a half-normal extra per frame with that standard
  deviation). Frames keep their order (a frame never leaves before the one ahead of it): a
  radio link's queue is FIFO, and DDS would read reordered fragments as losses;
* ``loss``: the long-run share of frames dropped, by a seeded random process. ``burst`` = 1 is
  Bernoulli; ``burst`` > 1 is a Gilbert-Elliott chain whose bad state (every frame lost) lasts
  ``burst`` frames on average, as Wi-Fi and cellular losses come in bursts. ARP is never dropped
  (a lost ARP would stall the link for seconds: an artefact, not a property of a radio link).

Where it sits: the robot's ``tbf`` (bandwidth, deep queue) comes first, then the relay. A frame
the relay drops has already used the link's time, like a frame lost on the air.

Checksums: a veth hands a frame over with the transport checksum not yet computed
(``CHECKSUM_PARTIAL``, announced to a packet socket as ``TP_STATUS_CSUMNOTREADY``); a frame
written back by a packet socket is sent as it is, so the relay completes the UDP/TCP checksum of
such frames, or the receiver would drop them as corrupt.

Control and counters: ``Relay`` answers JSON datagrams on a Unix socket (``control_path``):
``{"up": {...}, "down": {...}}`` (or the keys at top level for both directions) sets the
impairment, ``{"stats": true}`` returns the counters: per direction frames in, dropped by the
loss process, forwarded, send errors, and the hold time the relay really gave each frame
(configured delay vs observed), plus the packet sockets' own drops (a relay that cannot keep up
must show it, not pass it off as configured loss).

Run it as ``python -m edgent_ros.evaluation.relay --a <if> --b <if> --control <path>`` inside the
link namespace (the testbed does). The pure parts (``Impairment``, ``LossProcess``, ``DelayLine``,
``fix_checksum``) are tested alone; nothing here imports rclpy.
"""

from __future__ import annotations

import argparse
from array import array
from collections import deque
from dataclasses import asdict, dataclass
import json
import math
import os
from pathlib import Path
import random
import select
import signal
import socket
import struct
import sys
import time
from typing import Deque, Dict, List, Mapping, Optional, Tuple

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_STATISTICS = 6
TP_STATUS_CSUMNOTREADY = 1 << 3
DIRECTIONS = ('up', 'down')
MAX_FRAME = 65536 + 64
MAX_QUEUED = 20000            # frames held per direction; more are dropped and counted
HOLD_SAMPLES = 4096           # observed hold times kept per direction (the most recent)


@dataclass(frozen=True)
class Impairment:
    """What one direction of the link does to a frame: delay, jitter, loss, loss burstiness."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    burst: float = 1.0

    def __post_init__(self):
        """Validate every field (ValueError naming it)."""
        for name, lo, hi in (('delay_ms', 0.0, 10_000.0), ('jitter_ms', 0.0, 10_000.0),
                             ('loss', 0.0, 1.0), ('burst', 1.0, 1e6)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or not lo <= v <= hi:
                raise ValueError(f'{name} must be a number in [{lo:g}, {hi:g}], got {v!r}')

    @classmethod
    def from_mapping(cls, m: Mapping[str, object], base: Optional['Impairment'] = None
                     ) -> 'Impairment':
        """Return ``base`` with the fields of ``m`` changed (unknown keys: ValueError)."""
        unknown = set(m) - {'delay_ms', 'jitter_ms', 'loss', 'burst'}
        if unknown:
            raise ValueError(f'unknown impairment field(s) {sorted(unknown)}; known: '
                             'delay_ms, jitter_ms, loss, burst')
        fields = asdict(base or cls())
        fields.update(m)
        return cls(**fields)


class LossProcess:
    """
    Seeded frame loss: Bernoulli (``burst`` 1) or a two-state Gilbert-Elliott chain.

    The chain's bad state loses every frame and lasts ``burst`` frames on average
    (P(bad -> good) = 1/burst); P(good -> bad) = loss / (burst (1 - loss)) makes the long-run
    share of lost frames ``loss``.
    """

    def __init__(self, loss: float, burst: float = 1.0, seed: int = 0):
        """Start in the good state with a ``random.Random(seed)``."""
        Impairment(loss=loss, burst=burst)    # validates
        self.loss, self.burst = float(loss), float(burst)
        self.rng = random.Random(seed)
        self.bad = False

    def drop(self) -> bool:
        """Return True if the next frame is lost."""
        if self.loss <= 0.0:
            return False
        if self.burst <= 1.0 or self.loss >= 1.0:
            return self.rng.random() < self.loss
        if self.bad:
            self.bad = self.rng.random() >= 1.0 / self.burst
        else:
            p_gb = self.loss / (self.burst * (1.0 - self.loss))
            self.bad = self.rng.random() < p_gb
        return self.bad


class DelayLine:
    """
    Hold frames in a FIFO for the delay.

    Each frame is due ``delay + |N(0, jitter)|`` after it arrived, never before the frame ahead
    of it.
    """

    def __init__(self, delay_ms: float = 0.0, jitter_ms: float = 0.0, seed: int = 0,
                 max_queued: int = MAX_QUEUED):
        """Empty line; ``seed`` drives the jitter."""
        self.delay_s, self.jitter_s = delay_ms / 1e3, jitter_ms / 1e3
        self.rng = random.Random(seed)
        self.max_queued = int(max_queued)
        self.queue: Deque[Tuple[float, float, bytes]] = deque()
        self.last_due = -math.inf

    def push(self, now: float, frame: bytes) -> bool:
        """Queue ``frame`` that arrived at ``now``; return False (not queued) when full."""
        if len(self.queue) >= self.max_queued:
            return False
        extra = abs(self.rng.gauss(0.0, self.jitter_s)) if self.jitter_s > 0 else 0.0
        due = max(now + self.delay_s + extra, self.last_due)
        self.last_due = due
        self.queue.append((due, now, frame))
        return True

    def next_due(self) -> Optional[float]:
        """Return when the head frame is due (None: empty)."""
        return self.queue[0][0] if self.queue else None

    def pop_due(self, now: float) -> List[Tuple[float, bytes]]:
        """Remove and return ``(arrived, frame)`` of every frame due by ``now``, in order."""
        out = []
        while self.queue and self.queue[0][0] <= now:
            _, arrived, frame = self.queue.popleft()
            out.append((arrived, frame))
        return out


def _ones_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b'\0'
    s = sum(array('H', data))     # native order; folded and swapped below
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    if sys.byteorder == 'little':
        s = ((s & 0xFF) << 8) | (s >> 8)
    return s


def fix_checksum(frame: bytes) -> bytes:
    """
    Return ``frame`` (Ethernet) with its IPv4 UDP/TCP checksum computed in full.

    For frames a veth handed over with the checksum left to the hardware (CHECKSUM_PARTIAL).
    Anything else (not IPv4, a fragment other than the first, another protocol, too short) is
    returned unchanged: only unfragmented datagrams are ever left partial.
    """
    if len(frame) < 34 or struct.unpack_from('!H', frame, 12)[0] != ETH_P_IP:
        return frame
    ihl = (frame[14] & 0x0F) * 4
    proto = frame[23]
    total = struct.unpack_from('!H', frame, 16)[0]
    frag = struct.unpack_from('!H', frame, 20)[0]
    if frag & 0x3FFF or proto not in (6, 17) or ihl < 20 or 14 + total > len(frame):
        return frame
    l4 = 14 + ihl
    seg_len = total - ihl
    off = 16 if proto == 6 else 6
    if seg_len < off + 2:
        return frame
    buf = bytearray(frame[:14 + total])
    struct.pack_into('!H', buf, l4 + off, 0)
    pseudo = bytes(buf[26:34]) + struct.pack('!BBH', 0, proto, seg_len)
    s = _ones_sum(pseudo + bytes(buf[l4:14 + total]))
    csum = (~s) & 0xFFFF
    if proto == 17 and csum == 0:
        csum = 0xFFFF          # UDP: 0 means "no checksum"
    struct.pack_into('!H', buf, l4 + off, csum)
    return bytes(buf) + frame[14 + total:]


def is_arp(frame: bytes) -> bool:
    """Return True for an ARP frame (never dropped)."""
    return len(frame) >= 14 and struct.unpack_from('!H', frame, 12)[0] == ETH_P_ARP


class DirectionStats:
    """Counters of one direction and the recent observed hold times."""

    def __init__(self):
        """All zero."""
        self.frames_in = self.bytes_in = self.dropped_loss = self.dropped_full = 0
        self.forwarded = self.bytes_out = self.send_errors = self.checksums_fixed = 0
        self.holds_ms: Deque[float] = deque(maxlen=HOLD_SAMPLES)

    def as_dict(self, configured: Impairment) -> Dict[str, object]:
        """Return the counters, the configured impairment and the observed hold times."""
        h = sorted(self.holds_ms)

        def q(p: float) -> Optional[float]:
            return round(h[min(len(h) - 1, int(p * len(h)))], 3) if h else None
        decided = self.forwarded + self.dropped_loss
        return {
            'configured': asdict(configured),
            'frames_in': self.frames_in, 'bytes_in': self.bytes_in,
            'dropped_loss': self.dropped_loss, 'dropped_full': self.dropped_full,
            'forwarded': self.forwarded, 'bytes_out': self.bytes_out,
            'send_errors': self.send_errors, 'checksums_fixed': self.checksums_fixed,
            'observed_loss': round(self.dropped_loss / decided, 5) if decided else None,
            'hold_ms': {'n': len(h), 'mean': round(sum(h) / len(h), 3) if h else None,
                        'p50': q(0.5), 'p99': q(0.99), 'max': round(h[-1], 3) if h else None},
        }


class Relay:
    """
    Copy frames between interfaces ``a`` (robot side) and ``b`` (edge side) with impairments.

    ``up`` applies a -> b, ``down`` b -> a. ``seed``: the loss and jitter processes of
    direction ``up`` use ``seed`` and ``seed + 1``, ``down`` ``seed + 2`` and ``seed + 3``; a
    control message with ``seed`` restarts them.
    """

    def __init__(self, a: str, b: str, control_path: Path, up: Impairment = Impairment(),
                 down: Impairment = Impairment(), seed: int = 0):
        """Open both packet sockets and the control socket (root, inside the namespace)."""
        self.ifs = {'up': (a, b), 'down': (b, a)}
        self.socks = {a: self._packet_socket(a), b: self._packet_socket(b)}
        self.control_path = Path(control_path)
        self.control_path.unlink(missing_ok=True)
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.control.bind(str(self.control_path))
        os.chmod(self.control_path, 0o600)
        self.imp = {'up': up, 'down': down}
        self.stats = {d: DirectionStats() for d in DIRECTIONS}
        self.kernel: Dict[str, Dict[str, int]] = {}    # packet sockets' counts since start
        self.seed = int(seed)
        self._reset_processes()
        self.stop = False
        self.started = time.monotonic()

    @staticmethod
    def _packet_socket(ifname: str) -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        s.bind((ifname, 0))
        s.setblocking(False)
        return s

    def _reset_processes(self) -> None:
        self.loss = {d: LossProcess(self.imp[d].loss, self.imp[d].burst, self.seed + 2 * i)
                     for i, d in enumerate(DIRECTIONS)}
        old = getattr(self, 'lines', {})
        self.lines = {d: DelayLine(self.imp[d].delay_ms, self.imp[d].jitter_ms,
                                   self.seed + 2 * i + 1) for i, d in enumerate(DIRECTIONS)}
        for d, line in old.items():      # frames already held keep their due times
            self.lines[d].queue = line.queue
            self.lines[d].last_due = line.last_due

    # control ----------------------------------------------------------------------------------
    def configure(self, msg: Mapping[str, object]) -> None:
        """Apply a control message (see the module docstring); ValueError when malformed."""
        if not isinstance(msg, Mapping):
            raise ValueError('a control message is a JSON object')
        msg = dict(msg)
        msg.pop('stats', None)
        seed = msg.pop('seed', None)
        reset = bool(msg.pop('reset_stats', False))
        per = {d: msg.pop(d) for d in DIRECTIONS if d in msg}
        new = dict(self.imp)
        if msg:                               # top-level fields: both directions
            for d in DIRECTIONS:
                new[d] = Impairment.from_mapping(msg, new[d])
        for d, m in per.items():
            if not isinstance(m, Mapping):
                raise ValueError(f'{d} must be an object of impairment fields')
            new[d] = Impairment.from_mapping(m, new[d])
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise ValueError(f'seed must be an integer, got {seed!r}')
            self.seed = seed
        self.imp = new
        self._reset_processes()
        if reset:
            self.stats = {d: DirectionStats() for d in DIRECTIONS}

    def snapshot(self) -> Dict[str, object]:
        """Return the counters of both directions and the packet sockets' drops."""
        for ifn, s in self.socks.items():   # the kernel clears these on every read: add up
            try:
                packets, drops = struct.unpack('II', s.getsockopt(SOL_PACKET, PACKET_STATISTICS,
                                                                  8))
            except OSError:
                continue
            total = self.kernel.setdefault(ifn, {'packets': 0, 'drops': 0})
            total['packets'] += packets
            total['drops'] += drops
        kernel = {ifn: dict(v) for ifn, v in self.kernel.items()}
        out = {d: self.stats[d].as_dict(self.imp[d]) for d in DIRECTIONS}
        out.update(seed=self.seed, uptime_s=round(time.monotonic() - self.started, 3),
                   socket_stats=kernel, interfaces={'up': list(self.ifs['up'])})
        return out

    def _on_control(self) -> None:
        try:
            data, addr = self.control.recvfrom(65536)
        except (BlockingIOError, InterruptedError):
            return
        try:
            msg = json.loads(data.decode())
            self.configure(msg)
            reply = {'ok': True, 'stats': self.snapshot()}
        except (ValueError, UnicodeDecodeError) as exc:
            reply = {'ok': False, 'error': str(exc)}
        if addr:
            try:
                self.control.sendto(json.dumps(reply).encode(), addr)
            except OSError:
                pass

    # forwarding -------------------------------------------------------------------------------
    def _receive(self, direction: str, now: float, budget: int = 512) -> None:
        src = self.ifs[direction][0]
        s, st = self.socks[src], self.stats[direction]
        for _ in range(budget):
            try:
                frame, anc, _, addr = s.recvmsg(MAX_FRAME, socket.CMSG_SPACE(32))
            except (BlockingIOError, InterruptedError):
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            st.frames_in += 1
            st.bytes_in += len(frame)
            for level, kind, data in anc:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= 4 and \
                        struct.unpack_from('I', data)[0] & TP_STATUS_CSUMNOTREADY:
                    frame = fix_checksum(frame)
                    st.checksums_fixed += 1
            if not is_arp(frame) and self.loss[direction].drop():
                st.dropped_loss += 1
                continue
            if not self.lines[direction].push(now, frame):
                st.dropped_full += 1

    def _send_due(self, now: float) -> None:
        for d in DIRECTIONS:
            out, st = self.socks[self.ifs[d][1]], self.stats[d]
            for arrived, frame in self.lines[d].pop_due(now):
                try:
                    out.send(frame)
                    st.forwarded += 1
                    st.bytes_out += len(frame)
                    st.holds_ms.append((time.monotonic() - arrived) * 1e3)
                except OSError:
                    st.send_errors += 1

    def run(self, max_s: Optional[float] = None) -> None:
        """Forward until ``stop`` is set (a signal) or ``max_s`` passed (bounded when given)."""
        src = {self.socks[self.ifs[d][0]].fileno(): d for d in DIRECTIONS}
        end = math.inf if max_s is None else time.monotonic() + max_s
        while not self.stop and time.monotonic() < end:
            now = time.monotonic()
            dues = [t for t in (self.lines[d].next_due() for d in DIRECTIONS) if t is not None]
            timeout = max(0.0, min(dues) - now) if dues else 0.5
            timeout = min(timeout, 0.5, max(0.0, end - now))
            try:
                ready, _, _ = select.select(list(src) + [self.control.fileno()], [], [],
                                            timeout)
            except InterruptedError:
                continue
            now = time.monotonic()
            for fd in ready:
                if fd == self.control.fileno():
                    self._on_control()
                else:
                    self._receive(src[fd], now)
            self._send_due(time.monotonic())

    def close(self) -> None:
        """Close the sockets and remove the control socket's file."""
        for s in self.socks.values():
            s.close()
        self.control.close()
        self.control_path.unlink(missing_ok=True)


def control(path: Path, msg: Mapping[str, object], timeout_s: float = 2.0
            ) -> Dict[str, object]:
    """Send one control message to the relay at ``path``; return its reply (OSError: none)."""
    path = Path(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    me = path.with_name(f'{path.name}.client-{os.getpid()}-{time.monotonic_ns()}')
    try:
        s.bind(str(me))
        s.settimeout(timeout_s)
        s.sendto(json.dumps(dict(msg)).encode(), str(path))
        reply = json.loads(s.recv(1 << 20).decode())
    except socket.timeout as exc:
        raise OSError(f'the relay at {path} did not answer in {timeout_s:g} s') from exc
    finally:
        s.close()
        me.unlink(missing_ok=True)
    if not reply.get('ok'):
        raise ValueError(f'the relay refused {dict(msg)}: {reply.get("error")}')
    return reply['stats']


# --------------------------------------------------------------------------------------------
# Configured vs observed: the bench's table


def check_markdown(rows: List[Mapping[str, object]]) -> str:
    """Return the configured-vs-observed table of ``bench/relay_check.py``'s rows."""
    lines = ['| direction | delay ms | jitter ms | loss | burst | observed loss [95 % CI] | '
             'mean loss run | one-way p50 / p99 ms | relay hold p50 ms | reproduced |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        c, p, h = r['config'], r['probes'], r['relay']['hold_ms']
        lo, hi = p['loss_ci95']
        run = '' if p['mean_loss_run'] is None else f'{p["mean_loss_run"]:.2f}'
        lines.append(
            f'| {r["direction"]} | {c["delay_ms"]:g} | {c["jitter_ms"]:g} | '
            f'{100 * c["loss"]:g}% | {c["burst"]:g} | {100 * p["loss"]:.2f}% '
            f'[{100 * lo:.2f}, {100 * hi:.2f}] | {run} | {p["one_way_ms"]["p50"]:.2f} / '
            f'{p["one_way_ms"]["p99"]:.2f} | {h["p50"]:.2f} | {"yes" if r["ok"] else "no"} |')
    return '\n'.join(lines) + '\n'


def _try_realtime() -> bool:
    """Run this process at a real-time priority when allowed (frame timing under CPU load)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(20))
        return True
    except (OSError, AttributeError):
        return False


def main(argv: Optional[List[str]] = None) -> int:
    """Console entry: run the relay until SIGTERM/SIGINT; print the final counters as JSON."""
    ap = argparse.ArgumentParser(prog='python -m edgent_ros.evaluation.relay',
                                 description=__doc__.split('\n\n')[0])
    ap.add_argument('--a', required=True, help='robot-side interface')
    ap.add_argument('--b', required=True, help='edge-side interface')
    ap.add_argument('--control', required=True, type=Path, help='Unix socket path for control')
    ap.add_argument('--delay-ms', type=float, default=0.0)
    ap.add_argument('--jitter-ms', type=float, default=0.0)
    ap.add_argument('--loss', type=float, default=0.0)
    ap.add_argument('--burst', type=float, default=1.0)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--max-s', type=float, default=None, help='stop after this long')
    ap.add_argument('--no-realtime', action='store_true', help='keep the normal priority')
    args = ap.parse_args(argv)
    try:
        imp = Impairment(args.delay_ms, args.jitter_ms, args.loss, args.burst)
    except ValueError as exc:
        ap.error(str(exc))
    relay = Relay(args.a, args.b, args.control, imp, imp, seed=args.seed)

    def on_signal(*_):
        relay.stop = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rt = False if args.no_realtime else _try_realtime()
    print(json.dumps({'relay': 'started', 'realtime': rt, 'a': args.a, 'b': args.b}),
          flush=True)
    try:
        relay.run(args.max_s)
    finally:
        print(json.dumps(relay.snapshot()), flush=True)
        relay.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
