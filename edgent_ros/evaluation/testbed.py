"""
Link testbed (issue 6): the robot and the edge PC as two network namespaces on one machine.

``Testbed`` builds, as root, two network namespaces ``<name>_robot`` and ``<name>_edge`` joined
by a veth pair (``<name>_r`` in the robot namespace with 10.203.0.1/24, ``<name>_e`` in the edge
namespace with 10.203.0.2/24; ``lo`` up in each) and a cgroup v1 ``cpu`` group
``<name>_testbed_robot`` whose CFS quota makes the robot's CPU slower. The uplink (robot -> edge)
is shaped by a ``tbf`` on the egress of the robot-side veth; ``set_rate`` changes it in place.
``run_in`` starts a program inside a namespace (and, optionally, inside the robot cgroup).
``TracePlayer`` replays a bandwidth trace (``t_s,mbps`` CSV, see shared/data/traces/README.md) by
calling ``set_rate`` at every step. Nothing here imports rclpy; everything shells out to ``ip``
and ``tc`` (iproute2).

Choices (measured; BENCHMARKS.md §6 gives the numbers, test/testbed/ checks them):

* **Shaper: ``tbf`` on the robot veth's egress, queue ``limit`` 4 MiB, ``burst`` 1600 bytes.**
  The queue is deliberately deep, like a Wi-Fi driver's or a cellular base station's buffer,
  and deeper than a DDS writer's socket send buffer: a UDP sender then blocks in ``sendto`` when
  the link is full (skbs stay charged to the socket while they wait in the qdisc), so the link
  itself is the flow control and the shaper never drops. A shallow queue (``latency 400ms``)
  drops IP fragments of Fast DDS's 64 KB datagrams, each drop costs a whole datagram, and at
  1 Mbit/s a 128 KB message never arrived. How long frames wait is the application's business
  (the camera's ``max_in_flight``), not the shaper's. ``burst`` is one full-size frame (1514
  bytes on a veth) plus slack: the smallest bucket that passes every packet, so the shaped rate
  is smooth at every rate from 50 kbit/s up, and a rate change (which refills the bucket in
  ``tbf_change``) adds at most one packet.
* **Rate changes keep the queue**: ``tc qdisc change`` with the same ``limit`` adjusts the rate
  of the existing tbf (``fifo_set_limit``, no flush); packets waiting in it are sent at the new
  rate.
* **Outage (rate 0)**: the tbf is set to ``OUTAGE_RATE_BIT`` (1 kbit/s, the smallest rate whose
  bucket tc encodes for one full packet): after at most one packet already covered by the bucket
  nothing passes for ~12 s per packet, packets wait in the queue (nothing is dropped unless the
  4 MiB fill up) and drain when the rate returns, as on a radio link that stalls and buffers. The
  link does not go down (``ip link set down`` would flush the queue and remove the routes).
* **Downlink (edge -> robot) is not shaped by default** (``shape_downlink=False``): Edgent's
  latency model has no downlink term, results are ~0.5 KB, and the DDS feedback traffic
  (ACKNACKs) then never waits behind a backlog. ``shape_downlink=True`` shapes the edge veth's
  egress at the same rate (a half-duplex radio shares its airtime).
* **Delay and loss** (``relay=True``): the pair becomes two, ``<name>_r`` -- ``<name>_lr`` and
  ``<name>_le`` -- ``<name>_e``, ending in a third namespace ``<name>_link`` where a user-space
  Ethernet relay (``evaluation.relay``: seeded loss, one-way delay and jitter per direction)
  copies frames across; ``set_impairment`` changes them, ``relay_stats`` reads what it did.
  The robot's ``tbf`` still shapes the uplink before the relay.
* **Robot CPU**: a cgroup v1 CFS quota (``robot_quota`` of one CPU per ``robot_period_us``),
  joined *before* entering the namespace (``ip netns exec`` remounts ``/sys``). A quota slows
  sustained load, not one ~2 ms burst per frame (quota is enforced per scheduler tick), so the
  camera node also gets ``compute_slowdown`` (``ROBOT_COMPUTE_SLOWDOWN``); see BENCHMARKS.md.
"""

from __future__ import annotations

import bisect
import csv
import ctypes
from dataclasses import dataclass
import json
import math
import os
from pathlib import Path
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..offline.hosts import (cfs_quota_us, cgroup_dir, cgroup_pids, cgroup_procs_path,
                             ensure_cgroup, remove_cgroup)
from .paired import wilson
from .relay import control

DEFAULT_NAME = 'edgent'
DEFAULT_SUBNET = '10.203.0'         # robot .1, edge .2, /24
DEFAULT_QUEUE_BYTES = 4 * 1024 * 1024
DEFAULT_BURST_BYTES = 1600          # >= one 1514-byte frame on the veth
OUTAGE_RATE_BIT = 1000              # tbf rate used for a trace's 0 Mbit/s (outage)
MIN_RATE_BIT = OUTAGE_RATE_BIT
DEFAULT_ROBOT_QUOTA = 0.25
DEFAULT_ROBOT_PERIOD_US = 100_000
# Per-frame compute_slowdown of the emulated camera (evaluation.emulated_camera; applied to the
# CPU time of the device-side layers):
# the robot emulation the profiler uses (`edgent-ros profile --host robot --emulation factor`:
# 1 thread x 1/quota = 4) divided by the cold-start penalty of a live camera, whose layers run
# one frame at a time with cold caches and a clocked-down core, 1.85x slower than the
# profiler's back-to-back repeats when it was measured (8 configurations: 1.6-2.4). The penalty
# varies with the VM's state (1.9-3.1 in a later session): the planner's online calibration
# learns the live robot's ratio (BENCHMARKS.md, robot CPU emulation).
ROBOT_COMPUTE_SLOWDOWN = 2.15
_NAME_RE = re.compile(r'^[a-z][a-z0-9]{0,7}$')   # keeps '<name>_r' etc. within IFNAMSIZ

# --------------------------------------------------------------------------------------------
# Availability


def unavailable_reason() -> str:
    """Return why a Testbed cannot be built here ('' when it can)."""
    if not hasattr(os, 'geteuid') or os.geteuid() != 0:
        return 'the testbed needs root (network namespaces, tc, cgroups)'
    for tool in ('ip', 'tc'):
        if shutil.which(tool) is None:
            return f'{tool} (iproute2) not found'
    try:
        r = subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f'ip netns unavailable: {exc}'
    if r.returncode != 0:
        return f'ip netns unavailable: {r.stderr.strip()}'
    return ''


def _run(argv: Sequence[str], check: bool = True, timeout: float = 20.0
         ) -> subprocess.CompletedProcess:
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise TestbedError(f'{" ".join(argv)} failed ({r.returncode}): '
                           f'{(r.stderr or r.stdout).strip()}')
    return r


class TestbedError(RuntimeError):
    """An ip/tc command of the testbed failed."""

    __test__ = False   # not a pytest test class


def rate_bit(mbps: float) -> int:
    """Return the tbf rate (bit/s) for ``mbps`` Mbit/s; 0 (outage) maps to ``OUTAGE_RATE_BIT``."""
    if isinstance(mbps, bool) or not isinstance(mbps, (int, float)) or math.isnan(mbps) \
            or mbps < 0 or math.isinf(mbps):
        raise ValueError(f'rate must be a finite number of Mbit/s >= 0, got {mbps!r}')
    return max(MIN_RATE_BIT, int(round(mbps * 1e6)))


# --------------------------------------------------------------------------------------------
# The testbed


@dataclass
class Testbed:
    """Robot and edge network namespaces, a shaped veth pair and the robot's CPU cgroup."""

    __test__ = False   # not a pytest test class

    name: str = DEFAULT_NAME
    rate_mbps: float = 10.0
    robot_quota: Optional[float] = DEFAULT_ROBOT_QUOTA   # None: no CPU cgroup
    robot_period_us: int = DEFAULT_ROBOT_PERIOD_US
    queue_bytes: int = DEFAULT_QUEUE_BYTES
    burst_bytes: int = DEFAULT_BURST_BYTES
    shape_downlink: bool = False
    subnet: str = DEFAULT_SUBNET
    relay: bool = False
    relay_seed: int = 0

    def __post_init__(self):
        """Validate names and numbers (ValueError); nothing changes on the machine."""
        self._kick_socks: Dict[str, object] = {}
        if not _NAME_RE.match(self.name):
            raise ValueError(f'testbed name must be 1-8 lowercase letters/digits starting with a '
                             f'letter, got {self.name!r}')
        rate_bit(self.rate_mbps)
        if not (isinstance(self.queue_bytes, int) and self.queue_bytes >= 64 * 1024):
            raise ValueError(f'queue_bytes must be an int >= 65536, got {self.queue_bytes!r}')
        if not (isinstance(self.burst_bytes, int) and 1514 <= self.burst_bytes <= 1 << 20):
            raise ValueError(f'burst_bytes must be an int in 1514..1048576 (one full frame at '
                             f'least), got {self.burst_bytes!r}')
        if not re.match(r'^\d{1,3}\.\d{1,3}\.\d{1,3}$', self.subnet):
            raise ValueError(f'subnet must be the first three octets, got {self.subnet!r}')
        if self.robot_quota is not None:
            cfs_quota_us(self.robot_quota, self.robot_period_us)
        if isinstance(self.relay_seed, bool) or not isinstance(self.relay_seed, int):
            raise ValueError(f'relay_seed must be an int, got {self.relay_seed!r}')
        self._relay_proc: Optional[subprocess.Popen] = None

    # names ------------------------------------------------------------------------------------
    @property
    def robot_ns(self) -> str:
        """Network namespace of the robot."""
        return f'{self.name}_robot'

    @property
    def edge_ns(self) -> str:
        """Network namespace of the edge PC."""
        return f'{self.name}_edge'

    @property
    def robot_if(self) -> str:
        """Return the veth end in the robot namespace (its egress is the shaped uplink)."""
        return f'{self.name}_r'

    @property
    def edge_if(self) -> str:
        """Return the veth end in the edge namespace."""
        return f'{self.name}_e'

    @property
    def link_ns(self) -> str:
        """Namespace of the relay between robot and edge (``relay=True`` only)."""
        return f'{self.name}_link'

    @property
    def link_ifs(self) -> Tuple[str, str]:
        """Return the relay's two veth ends (robot side, edge side) in ``link_ns``."""
        return f'{self.name}_lr', f'{self.name}_le'

    @property
    def relay_control(self) -> Path:
        """Return the Unix socket the relay answers on."""
        return Path('/tmp') / f'edgent_{self.name}_relay.sock'

    @property
    def robot_ip(self) -> str:
        """Address of the robot."""
        return f'{self.subnet}.1'

    @property
    def edge_ip(self) -> str:
        """Address of the edge PC."""
        return f'{self.subnet}.2'

    @property
    def cgroup(self) -> str:
        """Return the cgroup v1 cpu group of the robot (relative to the cpu mount)."""
        return f'{self.name}_testbed_robot'

    def ns(self, which: str) -> str:
        """Map 'robot'/'edge' (or a full namespace name of this testbed) to the namespace."""
        if which in ('robot', self.robot_ns):
            return self.robot_ns
        if which in ('edge', self.edge_ns):
            return self.edge_ns
        raise ValueError(f'namespace must be robot or edge (or {self.robot_ns}/{self.edge_ns}),'
                         f' got {which!r}')

    # state ------------------------------------------------------------------------------------
    @staticmethod
    def _netns_list() -> List[str]:
        out = _run(['ip', 'netns', 'list']).stdout
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    def exists(self) -> Dict[str, bool]:
        """Return which of this testbed's pieces exist right now."""
        names = self._netns_list()
        return {
            'robot_ns': self.robot_ns in names,
            'edge_ns': self.edge_ns in names,
            'link_ns': self.link_ns in names,
            'veth_in_root_ns': any(_run(['ip', 'link', 'show', 'dev', ifn], check=False)
                                   .returncode == 0 for ifn in (self.robot_if, self.edge_if)),
            'cgroup': cgroup_dir(self.cgroup).is_dir(),
        }

    def _ip(self, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return _run(['ip', '-n', ns, *args], check=check)

    def _tc(self, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return _run(['ip', 'netns', 'exec', ns, 'tc', *args], check=check)

    # setup / teardown -------------------------------------------------------------------------
    def setup(self) -> 'Testbed':
        """
        Build the testbed (idempotent: pieces that exist are kept and brought to this config).

        A half-built testbed (a crash between steps) is completed, not duplicated.
        """
        reason = unavailable_reason()
        if reason:
            raise PermissionError(reason)
        names = self._netns_list()
        for ns in (self.robot_ns, self.edge_ns):
            if ns not in names:
                _run(['ip', 'netns', 'add', ns])
            self._ip(ns, 'link', 'set', 'lo', 'up')
        if self.relay:
            self._setup_relay_links(names)
        else:
            if self.link_ns in names:   # was a relay testbed: its veths go with the namespace
                self._stop_relay()
                self._kill_ns_pids(self.link_ns)
                _run(['ip', 'netns', 'del', self.link_ns], check=False)
                self._wait_links_gone()
            self._setup_direct_link()
        for ns, ifn, ip in ((self.robot_ns, self.robot_if, self.robot_ip),
                            (self.edge_ns, self.edge_if, self.edge_ip)):
            self._ip(ns, 'addr', 'replace', f'{ip}/24', 'dev', ifn)
            self._ip(ns, 'link', 'set', ifn, 'up')
            # Multicast (DDS discovery) must leave through the veth. A namespace has no default
            # route, and without this route a socket with no IP_MULTICAST_IF sends SPDP out of
            # lo: Fast DDS participants across the veth then found each other only by chance.
            self._ip(ns, 'route', 'replace', '224.0.0.0/4', 'dev', ifn)
        if self.robot_quota is not None:
            ensure_cgroup(self.cgroup, self.robot_quota, self.robot_period_us)
        self._tbf(self.robot_ns, self.robot_if, self.rate_mbps, replace=True)
        if self.shape_downlink:
            self._tbf(self.edge_ns, self.edge_if, self.rate_mbps, replace=True)
        else:
            self._tc(self.edge_ns, 'qdisc', 'del', 'dev', self.edge_if, 'root', check=False)
        if self.relay:
            self._start_relay()
        return self

    def _setup_direct_link(self) -> None:
        have_r = self._ip(self.robot_ns, 'link', 'show', 'dev', self.robot_if,
                          check=False).returncode == 0
        have_e = self._ip(self.edge_ns, 'link', 'show', 'dev', self.edge_if,
                          check=False).returncode == 0
        if not (have_r and have_e):
            # a half-moved pair (crash): delete every trace of it, then create it whole
            self._delete_links()
            _run(['ip', 'link', 'add', self.robot_if, 'netns', self.robot_ns, 'type', 'veth',
                  'peer', 'name', self.edge_if, 'netns', self.edge_ns])

    def _delete_links(self) -> None:
        lr, le = self.link_ifs
        names = self._netns_list()
        for ns in (None, self.robot_ns, self.edge_ns, self.link_ns):
            if ns is not None and ns not in names:
                continue
            for ifn in (self.robot_if, self.edge_if, lr, le):
                argv = (['ip'] if ns is None else ['ip', '-n', ns]) + ['link', 'del', ifn]
                _run(argv, check=False)
        self._wait_links_gone()

    def _wait_links_gone(self) -> None:
        # a deleted veth end's peer disappears asynchronously: wait (bounded) until it has
        deadline = time.monotonic() + 5.0
        names = self._netns_list()
        ends = [(ns, ifn) for ns, ifn in ((self.robot_ns, self.robot_if),
                                          (self.edge_ns, self.edge_if)) if ns in names]
        while time.monotonic() < deadline and any(
                self._ip(ns, 'link', 'show', 'dev', ifn, check=False).returncode == 0
                for ns, ifn in ends):
            time.sleep(0.05)

    def _setup_relay_links(self, names: List[str]) -> None:
        """Robot -- link namespace -- edge: two veth pairs (kept when all four ends exist)."""
        lr, le = self.link_ifs
        if self.link_ns not in names:
            _run(['ip', 'netns', 'add', self.link_ns])
        self._ip(self.link_ns, 'link', 'set', 'lo', 'up')
        ends = ((self.robot_ns, self.robot_if), (self.link_ns, lr), (self.link_ns, le),
                (self.edge_ns, self.edge_if))
        if not all(self._ip(ns, 'link', 'show', 'dev', ifn, check=False).returncode == 0
                   for ns, ifn in ends):
            self._stop_relay()
            self._delete_links()
            _run(['ip', 'link', 'add', self.robot_if, 'netns', self.robot_ns, 'type', 'veth',
                  'peer', 'name', lr, 'netns', self.link_ns])
            _run(['ip', 'link', 'add', le, 'netns', self.link_ns, 'type', 'veth',
                  'peer', 'name', self.edge_if, 'netns', self.edge_ns])
        # the link namespace is a wire: no addresses, no IPv6 chatter of its own
        _run(['ip', 'netns', 'exec', self.link_ns, 'sysctl', '-qw',
              'net.ipv6.conf.all.disable_ipv6=1'], check=False)
        for ifn in (lr, le):
            self._ip(self.link_ns, 'link', 'set', ifn, 'promisc', 'on', 'up')

    # the relay --------------------------------------------------------------------------------
    def _start_relay(self, timeout_s: float = 10.0) -> None:
        """Start the relay in the link namespace (unless running); wait until it answers."""
        if self._relay_proc is not None and self._relay_proc.poll() is None:
            return
        self._kill_ns_pids(self.link_ns)       # a relay left by a crashed run
        lr, le = self.link_ifs
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env['PYTHONPATH'] = root + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH')
                                    else '')
        log_path = Path('/tmp') / f'edgent_{self.name}_relay.log'
        with open(log_path, 'ab') as log:
            self._relay_proc = subprocess.Popen(
                ['ip', 'netns', 'exec', self.link_ns, sys.executable, '-m',
                 'edgent_ros.evaluation.relay', '--a', lr, '--b', le,
                 '--control', str(self.relay_control), '--seed', str(self.relay_seed)],
                stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout_s
        while True:
            if self._relay_proc.poll() is not None:
                raise TestbedError(f'the relay exited ({self._relay_proc.returncode}); see '
                                   f'{log_path}')
            try:
                control(self.relay_control, {'stats': True}, timeout_s=0.5)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise TestbedError(f'the relay did not answer in {timeout_s:g} s; see '
                                       f'{log_path}')
                time.sleep(0.1)

    def _stop_relay(self) -> None:
        p, self._relay_proc = self._relay_proc, None
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def set_impairment(self, up: Optional[Mapping[str, float]] = None,
                       down: Optional[Mapping[str, float]] = None, seed: Optional[int] = None,
                       reset_stats: bool = False, **both: float) -> Dict[str, object]:
        """
        Set delay/jitter/loss/burst of the relay (``both``, or per direction); return its stats.

        Needs ``relay=True`` (RuntimeError otherwise); a bad value raises ValueError and
        changes nothing. ``seed`` restarts the loss and jitter processes.
        """
        if not self.relay:
            raise RuntimeError('delay and loss need a testbed with relay=True (--relay)')
        msg: Dict[str, object] = dict(both)
        if up:
            msg['up'] = dict(up)
        if down:
            msg['down'] = dict(down)
        if seed is not None:
            msg['seed'] = seed
        if reset_stats:
            msg['reset_stats'] = True
        return control(self.relay_control, msg)

    def relay_stats(self) -> Dict[str, object]:
        """Return the relay's counters (configured vs observed delay and loss)."""
        if not self.relay:
            raise RuntimeError('this testbed has no relay (relay=False)')
        return control(self.relay_control, {'stats': True})

    def teardown(self, kill: bool = True) -> List[str]:
        """
        Remove the namespaces, the veth pair and the cgroup, by name; return what was removed.

        Safe to call any time (nothing there, half built, after a crash). With ``kill`` the
        processes still inside this testbed's namespaces (started by ``run_in``) get SIGTERM,
        then SIGKILL after 3 s: a namespace with live processes (and its veth) outlives
        ``ip netns del``. The cgroup's remaining processes are moved to the root cgroup.
        """
        if os.geteuid() != 0:
            return []
        for sock in self._kick_socks.values():
            sock.close()
        self._kick_socks.clear()
        removed = []
        self._stop_relay()
        self.relay_control.unlink(missing_ok=True)
        names = self._netns_list()
        for ns in (self.robot_ns, self.edge_ns, self.link_ns):
            if ns not in names:
                continue
            if kill:
                self._kill_ns_pids(ns)
            _run(['ip', 'netns', 'del', ns], check=False)
            removed.append(f'netns {ns}')
        for ifn in (self.robot_if, self.edge_if, *self.link_ifs):   # never left the root ns
            if _run(['ip', 'link', 'del', ifn], check=False).returncode == 0:
                removed.append(f'link {ifn}')
        if cgroup_dir(self.cgroup).is_dir():
            if kill:
                self._kill_pids(cgroup_pids(self.cgroup))
            if remove_cgroup(self.cgroup, evict=True):
                removed.append(f'cgroup {self.cgroup}')
        # a deleted namespace's veth disappears asynchronously: wait (bounded) until it has
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(
                _run(['ip', 'link', 'show', 'dev', ifn], check=False).returncode == 0
                for ifn in (self.robot_if, self.edge_if)):
            time.sleep(0.05)
        return removed

    def _kill_ns_pids(self, ns: str) -> None:
        out = _run(['ip', 'netns', 'pids', ns], check=False).stdout
        self._kill_pids([int(p) for p in out.split() if p.isdigit()])

    @staticmethod
    def _kill_pids(pids: List[int]) -> None:
        pids = [p for p in pids if p != os.getpid()]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            alive = []
            for p in pids:
                try:
                    os.kill(p, sig)
                    alive.append(p)
                except ProcessLookupError:
                    pass
            if not alive:
                return
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline and any(_pid_alive(p) for p in alive):
                time.sleep(0.05)
            pids = [p for p in alive if _pid_alive(p)]

    def __enter__(self) -> 'Testbed':
        """Set up; tear down on exit (also after an exception)."""
        try:
            return self.setup()
        except BaseException:
            self.teardown()
            raise

    def __exit__(self, *exc) -> None:
        """Tear down."""
        self.teardown()

    # shaping ----------------------------------------------------------------------------------
    def _tbf(self, ns: str, ifn: str, mbps: float, replace: bool = False) -> None:
        spec = ['tbf', 'rate', f'{rate_bit(mbps)}bit', 'burst', str(self.burst_bytes),
                'limit', str(self.queue_bytes)]
        # 'change' keeps the packets queued in the tbf; 'replace' (setup) creates it if needed
        r = self._tc(ns, 'qdisc', 'change', 'dev', ifn, 'root', 'handle', '1:', *spec,
                     check=False) if not replace else None
        if r is None or r.returncode != 0:
            self._tc(ns, 'qdisc', 'replace', 'dev', ifn, 'root', 'handle', '1:', *spec)

    def set_rate(self, mbps: float) -> None:
        """Set the uplink rate (Mbit/s; 0 = outage) without dropping queued packets."""
        rate_bit(mbps)
        self._tbf(self.robot_ns, self.robot_if, mbps)
        self._kick('robot')
        if self.shape_downlink:
            self._tbf(self.edge_ns, self.edge_if, mbps)
            self._kick('edge')
        self.rate_mbps = float(mbps)

    def _kick(self, which: str) -> None:
        """
        Send one empty UDP datagram through a veth end so its tbf dequeues at the new rate.

        ``tc qdisc change`` does not reschedule the tbf: a queue that was waiting for tokens at
        the old rate (after an outage: ~12 s for the next packet) would keep waiting for that
        timer. Any enqueue runs the qdisc, so one 42-byte datagram to the discard port of the
        other end (behind the queue, refused there with an ICMP port-unreachable) restarts it.
        """
        ns = self.ns(which)
        try:
            sock = self._kick_socks.get(ns)
            if sock is None:
                sock = self._kick_socks[ns] = _udp_socket_in_netns(ns)
            sock.sendto(b'', (self.edge_ip if ns == self.robot_ns else self.robot_ip, 9))
        except OSError:
            pass   # best effort: without it the queue restarts with the next packet

    def qdisc_stats(self, which: str = 'robot') -> Dict[str, int]:
        """Return the root qdisc counters of one veth end (uplink: 'robot')."""
        ns = self.ns(which)
        ifn = self.robot_if if ns == self.robot_ns else self.edge_if
        out = self._tc(ns, '-s', 'qdisc', 'show', 'dev', ifn).stdout
        return parse_qdisc_stats(out)

    def link_stats(self, which: str = 'robot') -> Dict[str, int]:
        """Return the veth end's tx/rx byte and packet counters."""
        ns = self.ns(which)
        ifn = self.robot_if if ns == self.robot_ns else self.edge_if
        out = self._ip(ns, '-s', '-j', 'link', 'show', 'dev', ifn).stdout
        st = json.loads(out)[0]['stats64']
        return {'tx_bytes': st['tx']['bytes'], 'tx_packets': st['tx']['packets'],
                'tx_dropped': st['tx']['dropped'], 'rx_bytes': st['rx']['bytes'],
                'rx_packets': st['rx']['packets'], 'rx_dropped': st['rx']['dropped']}

    def status(self) -> Dict[str, object]:
        """Return what exists, the qdiscs and the counters (for the CLI)."""
        st: Dict[str, object] = {'name': self.name, 'names': {
            'robot_ns': self.robot_ns, 'edge_ns': self.edge_ns, 'robot_if': self.robot_if,
            'edge_if': self.edge_if, 'cgroup': self.cgroup}, 'exists': self.exists()}
        ex = st['exists']
        if ex['robot_ns']:
            r = self._tc(self.robot_ns, 'qdisc', 'show', 'dev', self.robot_if, check=False)
            st['uplink_qdisc'] = r.stdout.strip()
            if r.returncode == 0:
                st['uplink_rate_bit'] = parse_tbf_rate(r.stdout)
                st['uplink_stats'] = self.qdisc_stats('robot')
        if ex['edge_ns']:
            r = self._tc(self.edge_ns, 'qdisc', 'show', 'dev', self.edge_if, check=False)
            st['downlink_qdisc'] = r.stdout.strip()
        if ex['link_ns'] and self.relay_control.exists():
            try:
                st['relay'] = control(self.relay_control, {'stats': True})
            except (OSError, ValueError) as exc:
                st['relay'] = f'not answering: {exc}'
        if ex['cgroup']:
            q = int((cgroup_dir(self.cgroup) / 'cpu.cfs_quota_us').read_text())
            p = int((cgroup_dir(self.cgroup) / 'cpu.cfs_period_us').read_text())
            st['robot_cpu_quota'] = q / p if q > 0 else None
            st['robot_cgroup_pids'] = cgroup_pids(self.cgroup)
        return st

    # processes --------------------------------------------------------------------------------
    def command(self, which: str, argv: Sequence[str], cgroup: Union[None, bool, str] = None
                ) -> List[str]:
        """
        Return the argv that runs ``argv`` in namespace ``which`` (and cgroup, if given).

        ``cgroup``: None/False = none, True = the robot cgroup, a string = that cgroup v1 cpu
        group. The process joins the cgroup first, then enters the namespace (``ip netns exec``
        remounts /sys, where the cgroup file would no longer be the host's).
        """
        ns = self.ns(which)
        argv = [str(a) for a in argv]
        if not argv:
            raise ValueError('empty command')
        if cgroup in (None, False):
            return ['ip', 'netns', 'exec', ns, *argv]
        name = self.cgroup if cgroup is True else str(cgroup)
        procs = cgroup_procs_path(name)
        return ['sh', '-c', f'echo $$ > {procs} && exec ip netns exec "$0" "$@"', ns, *argv]

    def run_in(self, which: str, argv: Sequence[str], cgroup: Union[None, bool, str] = None,
               **popen_kwargs) -> subprocess.Popen:
        """Start ``argv`` in namespace ``which`` (optionally in a cgroup); return the Popen."""
        return subprocess.Popen(self.command(which, argv, cgroup), **popen_kwargs)

    def check_in(self, which: str, argv: Sequence[str], timeout: float = 30.0
                 ) -> subprocess.CompletedProcess:
        """Run ``argv`` in namespace ``which`` to completion (bounded); return the result."""
        return subprocess.run(self.command(which, argv), capture_output=True, text=True,
                              timeout=timeout)


def socket_in_netns(ns: str, make: Callable[[], socket.socket]) -> socket.socket:
    """
    Return the socket ``make()`` opens inside network namespace ``ns``.

    A socket keeps the namespace it was created in: ``make`` runs in a helper thread that joins
    ``ns`` (setns, this thread only) and ends right after, so the caller's namespace is untouched.
    """
    result: Dict[str, object] = {}

    def work() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f'/var/run/netns/{ns}', os.O_RDONLY)
            try:
                if libc.setns(fd, 0x40000000) != 0:          # CLONE_NEWNET, this thread only
                    raise OSError(ctypes.get_errno(), f'setns {ns}')
            finally:
                os.close(fd)
            result['sock'] = make()
        except OSError as exc:
            result['error'] = exc

    th = threading.Thread(target=work, daemon=True)   # the thread (and its netns) ends here
    th.start()
    th.join(10)
    if 'sock' not in result:
        raise result.get('error') or OSError(f'cannot open a socket in {ns}')
    return result['sock']


def _udp_socket_in_netns(ns: str) -> socket.socket:
    """Return a UDP socket that lives in network namespace ``ns``."""
    return socket_in_netns(ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))


def _pid_alive(pid: int) -> bool:
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().split(') ')[-1][:1] != 'Z'
    except OSError:
        return False


def parse_tbf_rate(text: str) -> Optional[int]:
    """Return the rate in bit/s of the tbf in ``tc qdisc show`` output (None if none)."""
    m = re.search(r'\btbf\b.*?\brate (\d+(?:\.\d+)?)([KMG]?)bit', text)
    if not m:
        return None
    return int(round(float(m.group(1)) * {'': 1, 'K': 1e3, 'M': 1e6, 'G': 1e9}[m.group(2)]))


def parse_qdisc_stats(text: str) -> Dict[str, int]:
    """Parse the first qdisc's ``Sent B bytes P pkt (dropped D, overlimits O ...)`` and backlog."""
    out = {}
    m = re.search(r'Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+)', text)
    if m:
        out.update(sent_bytes=int(m.group(1)), sent_packets=int(m.group(2)),
                   dropped=int(m.group(3)), overlimits=int(m.group(4)))
    m = re.search(r'backlog (\d+)([KM]?)b (\d+)p', text)
    if m:
        out.update(backlog_bytes=int(m.group(1)) * {'': 1, 'K': 1000, 'M': 1000000}[m.group(2)],
                   backlog_packets=int(m.group(3)))
    return out


# --------------------------------------------------------------------------------------------
# Trace replay


class TracePlayer:
    """
    A bandwidth trace as a step function of time, and a loop that applies it.

    Semantics (shared/data/traces/README.md): row ``(t_i, r_i)`` holds ``r_i`` Mbit/s during
    ``[t_i, t_{i+1})``; the last row holds for one ``step_s``; the trace lasts
    ``duration_s = t_last + step_s`` and, with ``loop``, wraps around there (without it the last
    value holds forever). ``step_s`` is taken from the rows (the smallest gap) unless given.
    ``speed`` plays the trace faster (2.0: one trace second per 0.5 s of wall time); ``scale``
    multiplies every rate and ``max_mbps`` caps it (e.g. a 5G trace on a small machine). A rate
    of 0 is an outage (``Testbed.set_rate(0)``).
    """

    def __init__(self, rows: Sequence[Tuple[float, float]], step_s: Optional[float] = None,
                 loop: bool = True, speed: float = 1.0, scale: float = 1.0,
                 max_mbps: Optional[float] = None):
        """Validate ``rows`` ((t_s, mbps), t_s strictly increasing from 0, rates >= 0)."""
        rows = [(float(t), float(r)) for t, r in rows]
        if not rows:
            raise ValueError('a trace needs at least one row')
        if rows[0][0] != 0.0:
            raise ValueError(f'a trace starts at t_s = 0, got {rows[0][0]}')
        for (t0, _), (t1, _) in zip(rows, rows[1:]):
            if not t1 > t0:
                raise ValueError(f't_s must increase strictly: {t0} then {t1}')
        for t, r in rows:
            if not (math.isfinite(r) and r >= 0):
                raise ValueError(f'rate at t_s = {t} must be a finite number >= 0, got {r}')
        gaps = [t1 - t0 for (t0, _), (t1, _) in zip(rows, rows[1:])]
        if step_s is None:
            step_s = min(gaps) if gaps else 1.0
        for name, v in (('step_s', step_s), ('speed', speed), ('scale', scale)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f'{name} must be > 0, got {v!r}')
        if max_mbps is not None and not max_mbps > 0:
            raise ValueError(f'max_mbps must be > 0, got {max_mbps!r}')
        self.rows = rows
        self.times = [t for t, _ in rows]
        self.step_s = float(step_s)
        self.loop = bool(loop)
        self.speed = float(speed)
        self.scale = float(scale)
        self.max_mbps = max_mbps
        self.duration_s = rows[-1][0] + self.step_s

    @classmethod
    def from_csv(cls, path: Union[str, Path], **kwargs) -> 'TracePlayer':
        """Read a ``t_s,mbps`` CSV (header required)."""
        with open(path, newline='') as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {'t_s', 'mbps'} <= set(reader.fieldnames):
                raise ValueError(f'{path}: expected a header with t_s,mbps, got '
                                 f'{reader.fieldnames}')
            rows = [(float(r['t_s']), float(r['mbps'])) for r in reader]
        return cls(rows, **kwargs)

    def trace_time(self, wall_s: float) -> float:
        """Return the trace time (s, wrapped when looping) ``wall_s`` after the start."""
        if wall_s < 0:
            raise ValueError(f'time must be >= 0, got {wall_s}')
        t = wall_s * self.speed
        if self.loop:
            t = math.fmod(t, self.duration_s)
        return t

    def rate_at(self, wall_s: float) -> float:
        """Return the rate (Mbit/s, scaled and capped) ``wall_s`` seconds after the start."""
        t = self.trace_time(wall_s)
        i = bisect.bisect_right(self.times, t) - 1
        r = self.rows[max(0, i)][1] * self.scale
        return min(r, self.max_mbps) if self.max_mbps is not None else r

    def ended(self, wall_s: float) -> bool:
        """Return True once a non-looping trace has played to its end."""
        return not self.loop and wall_s * self.speed >= self.duration_s

    def schedule(self, duration_s: float) -> List[Tuple[float, float]]:
        """
        Return ``(wall_s, mbps)`` for every step that starts within ``[0, duration_s)``.

        Consecutive equal rates are merged (one ``set_rate`` per change). After a non-looping
        trace ends its last rate holds (no further entries).
        """
        out: List[Tuple[float, float]] = []
        k = 0
        while True:
            lap, i = divmod(k, len(self.rows))
            if lap and not self.loop:
                break
            wall = (lap * self.duration_s + self.rows[i][0]) / self.speed
            if wall >= duration_s - 1e-12:
                break
            r = self.rate_at(wall)
            if not out or out[-1][1] != r:
                out.append((wall, r))
            k += 1
            if k > 10_000_000:   # bound: a schedule of millions of steps is a bug upstream
                raise ValueError('schedule too long')
        return out

    def play(self, set_rate: Callable[[float], None], duration_s: float,
             stop: Optional[threading.Event] = None,
             on_step: Optional[Callable[[float, float], None]] = None,
             clock: Callable[[], float] = time.monotonic) -> int:
        """
        Apply the trace for ``duration_s`` wall seconds (bounded); return how many steps ran.

        ``set_rate(mbps)`` is called at the start of every step whose rate differs from the
        last one; ``stop`` ends early; ``on_step(wall_s, mbps)`` is told each change.
        """
        if not (duration_s > 0 and math.isfinite(duration_s)):
            raise ValueError(f'duration_s must be a finite number > 0, got {duration_s!r}')
        stop = stop or threading.Event()
        t0 = clock()
        n = 0
        for wall, mbps in self.schedule(duration_s):
            delay = t0 + wall - clock()
            if delay > 0 and stop.wait(delay):
                break
            if stop.is_set():
                break
            set_rate(mbps)
            n += 1
            if on_step:
                on_step(wall, mbps)
        rest = t0 + duration_s - clock()
        if rest > 0:
            stop.wait(rest)
        return n

    def start(self, set_rate: Callable[[float], None], duration_s: float,
              on_step: Optional[Callable[[float, float], None]] = None
              ) -> Tuple[threading.Thread, threading.Event]:
        """Play in a daemon thread; return it and the Event that stops it."""
        stop = threading.Event()
        th = threading.Thread(target=self.play, args=(set_rate, duration_s, stop, on_step),
                              daemon=True, name='trace-player')
        th.start()
        return th, stop


def probe_link(tb: Testbed, direction: str = 'up', count: int = 1000, interval_s: float = 0.002,
               size: int = 200, port: int = 47_000, wait_s: float = 1.0
               ) -> Tuple[int, Dict[int, float], float]:
    """
    Send ``count`` numbered UDP probes across the testbed; return (sent, {seq: one-way ms}, s).

    ``s``: from the first probe's sending to the last one's arrival (with ``interval_s`` 0 and
    a full link, ``received * size * 8 / s`` is the goodput).

    ``direction`` 'up' sends robot -> edge, 'down' edge -> robot. Both sockets live in this
    process (one per namespace), so one clock stamps sending and arrival: the one-way time is
    measured, not half a round trip. Three unnumbered probes first resolve the neighbour (ARP).
    Bounded: ``count * interval_s + 2 wait_s`` plus start-up.
    """
    if direction not in ('up', 'down'):
        raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
    if not (isinstance(count, int) and count >= 1 and 16 <= size <= 60_000):
        raise ValueError(f'count must be >= 1 and size in 16..60000, got {count}, {size}')
    src_ns, dst_ns, dst_ip = ((tb.robot_ns, tb.edge_ns, tb.edge_ip) if direction == 'up'
                              else (tb.edge_ns, tb.robot_ns, tb.robot_ip))
    tx = _udp_socket_in_netns(src_ns)
    rx = _udp_socket_in_netns(dst_ns)
    received: Dict[int, float] = {}
    last = [0.0]
    done = threading.Event()
    try:
        rx.bind((dst_ip, port))
        rx.settimeout(0.05)

        def receive() -> None:
            while not done.is_set():
                try:
                    data = rx.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return
                now = time.monotonic()
                if len(data) >= 12:
                    seq, t = struct.unpack_from('!Id', data)
                    if 0 <= seq < count:
                        received[seq] = (now - t) * 1e3
                        last[0] = now
        th = threading.Thread(target=receive, daemon=True, name='probe-rx')
        th.start()
        pad = b'\0' * (size - 12)
        for _ in range(3):      # resolve the neighbour (ARP) before the numbered probes
            tx.sendto(struct.pack('!Id', 0xFFFFFFFF, 0.0) + pad, (dst_ip, port))
        time.sleep(wait_s)
        t0 = time.monotonic()
        for seq in range(count):
            delay = t0 + seq * interval_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            tx.sendto(struct.pack('!Id', seq, time.monotonic()) + pad, (dst_ip, port))
        end = time.monotonic() + wait_s
        while time.monotonic() < end and len(received) < count:
            time.sleep(0.02)
        done.set()
        th.join(2)
    finally:
        tx.close()
        rx.close()
    return count, dict(received), max(0.0, last[0] - t0)


def probe_summary(sent: int, received: Mapping[int, float], burst: float = 1.0
                  ) -> Dict[str, object]:
    """
    Summarise a probe run: ``sent`` probes numbered 0..sent-1, ``received`` seq -> one-way ms.

    Returns the observed loss with its 95 % Wilson interval, the mean length of runs of
    consecutive lost probes (1 for independent losses at low rates; ``burst`` for a
    Gilbert-Elliott chain), and the one-way delay's median, p99 and mean. Losses of a chain with
    mean burst ``b`` are correlated (lag-1 correlation 1 - 1/b for small loss), which inflates
    the variance of their mean by 2b - 1: the interval uses that effective sample size.
    """
    if sent < 1:
        raise ValueError(f'sent must be >= 1, got {sent}')
    bad = [s for s in received if not 0 <= s < sent]
    if bad:
        raise ValueError(f'received sequence numbers outside 0..{sent - 1}: {bad[:5]}')
    lost = sent - len(received)
    runs, run = [], 0
    for s in range(sent):
        if s in received:
            if run:
                runs.append(run)
            run = 0
        else:
            run += 1
    if run:
        runs.append(run)
    d = sorted(received.values())

    def q(p: float) -> Optional[float]:
        return round(d[min(len(d) - 1, int(p * len(d)))], 3) if d else None
    inflate = 2.0 * max(1.0, float(burst)) - 1.0
    lo, hi = wilson(lost / inflate, max(1.0, sent / inflate))
    return {'sent': sent, 'received': len(received), 'loss': round(lost / sent, 5),
            'loss_ci95': [round(lo, 5), round(hi, 5)],
            'mean_loss_run': round(sum(runs) / len(runs), 3) if runs else None,
            'one_way_ms': {'p50': q(0.5), 'p99': q(0.99),
                           'mean': round(sum(d) / len(d), 3) if d else None}}
