"""
Stale Fast DDS shared-memory ports of dead processes, so that a restarted node is heard (no rclpy).

Fast DDS delivers between processes of one host through shared-memory *ports*, one segment per
listening port (``/dev/shm/fastdds_port<N>``, owned by the process that holds the ``_el`` lock
file). A restarted node gets the same participant id, hence the same port numbers, as the
process it replaces. Fast DDS 3.2.2 (the PyPI wheels') then finds the old port a "zombie"
(its lock is free) and removes the segment *without first marking it not-OK*; the fix,
eProsima/Fast-DDS#4728, is not in that release. A peer that still has the old segment mapped
(the camera, for a restarted planner) keeps writing into that orphan for as long as its port
watchdog finds the dead listener healthy. The watchdog does find a listener that died while
waiting or while processing, but not one killed between the two states: then nothing the peer
sends reaches the new process, ever. ``test/ros/test_shm_restart.py`` reproduces it
deterministically and shows the fix.

The fix is #4728's, applied from outside: before rclpy starts, a node maps every zombie port's
segment (``map_zombie_ports``: the lock file held by no process, at two looks ``recheck_s``
apart, so that a port being created right now, whose lock follows within microseconds, is left
alone); once its own participant is up (and has replaced the segment by a fresh one under the
same name), it marks each old mapping not-OK (``mark_not_ok``). A peer's next write to it then
fails, and Fast DDS's own recovery re-opens the port by name: the new process's segment.

The layout is Fast DDS 3.2.x's ``SharedMemGlobal::PortNode`` (ABI 5, Linux): found by its
``port_id`` (the number in the name) followed by the fields it must hold, and checked against
the ``domain_name`` after its 1024 listener slots; a segment that does not match is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
import mmap
import os
from pathlib import Path
import re
import struct
import time
from typing import Iterable, List, Optional, Set, Tuple

SHM_DIR = Path('/dev/shm')
PORT_RE = re.compile(r'^fastdds_port(\d+)$')
DOMAIN_NAME = b'fastdds'
LISTENER_SLOTS = 1024
LISTENER_STATUS_SIZE = 20          # 2 bytes of flags/counters + a 16-byte descriptor, aligned 4
DOMAIN_NAME_FIELD = 17             # char[MAX_DOMAIN_NAME_LENGTH + 1]
# from port_id: num_listeners, healthy_check_timeout_ms, port_wait_timeout_ms,
# max_buffer_descriptors, waiting_count, then the flag word (bit 0: is_port_ok)
FLAGS_AFTER_PORT_ID = 24
IS_PORT_OK = 0x1


@dataclass
class PortLayout:
    """Where one segment's fields are (byte offsets into the segment)."""

    port_id: int
    flags: int            # the word holding is_port_ok
    listeners: int        # listeners_status[0]
    domain_name: int


def locked_inodes(proc_locks: str = '/proc/locks') -> Set[Tuple[str, int]]:
    """Return the (device 'MAJ:MIN' in hex, inode) of every file with a lock held now."""
    out = set()
    try:
        text = Path(proc_locks).read_text()
    except OSError:
        return out
    for line in text.splitlines():
        # "1: FLOCK  ADVISORY  WRITE 4242 00:1a:5678 0 EOF" (a "->" line is a waiter)
        if '->' in line:
            continue
        for f in line.split():
            parts = f.split(':')
            if len(parts) == 3 and all(parts):
                try:
                    out.add((f'{int(parts[0], 16):02x}:{int(parts[1], 16):02x}',
                             int(parts[2])))
                except ValueError:
                    continue
    return out


def _dev_ino(path: Path) -> Tuple[str, int]:
    st = path.stat()
    return f'{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}', st.st_ino


def find_layout(data: bytes, port_id: int) -> Optional[PortLayout]:
    """
    Return where ``data`` (a port segment) keeps its PortNode fields, or None if it is not one.

    The port_id must be followed by a plausible PortNode (1..1024 listeners, flags only in
    their 3 bits) whose listener slots end exactly at a ``domain_name`` of "fastdds".
    """
    domain = data.find(DOMAIN_NAME + b'\0')
    if domain < 0 or data.find(DOMAIN_NAME + b'\0', domain + 1) >= 0:
        return None
    if data[domain:domain + DOMAIN_NAME_FIELD].rstrip(b'\0') != DOMAIN_NAME:
        return None
    listeners = domain - LISTENER_SLOTS * LISTENER_STATUS_SIZE
    needle = struct.pack('<I', port_id)
    at = data.find(needle)
    while 0 <= at < listeners:
        if at % 4 == 0 and at + 28 <= listeners:
            n, _, _, max_desc, waiting, flags = struct.unpack_from('<6I', data, at + 4)
            if 1 <= n <= LISTENER_SLOTS and waiting <= n and flags <= 0x7 and max_desc > 0:
                return PortLayout(at, at + FLAGS_AFTER_PORT_ID, listeners, domain)
        at = data.find(needle, at + 1)
    return None


@dataclass
class ZombiePort:
    """A dead process's port segment, mapped so it can be marked after it is replaced."""

    name: str
    layout: PortLayout
    mm: mmap.mmap

    def is_port_ok(self) -> bool:
        """Return the segment's is_port_ok bit."""
        return bool(struct.unpack_from('<I', self.mm, self.layout.flags)[0] & IS_PORT_OK)


def zombie_port_names(shm_dir: Path = SHM_DIR,
                      locks: Optional[Set[Tuple[str, int]]] = None) -> List[str]:
    """Return the port segments in ``shm_dir`` whose ``_el`` lock no process holds."""
    locks = locked_inodes() if locks is None else locks
    out = []
    try:
        entries = sorted(p.name for p in Path(shm_dir).iterdir())
    except OSError:
        return out
    for name in entries:
        if not PORT_RE.match(name):
            continue
        seg, lock = Path(shm_dir) / name, Path(shm_dir) / f'{name}_el'
        try:
            if not seg.exists() or _dev_ino(lock) in locks:
                continue
        except OSError:            # no lock file: not an exclusive (listening) port
            continue
        out.append(name)
    return out


def map_zombie_ports(shm_dir: Path = SHM_DIR, recheck_s: float = 0.05) -> List[ZombiePort]:
    """Map every zombie port segment of ``shm_dir`` (free at two looks) whose layout is known."""
    out = []
    first = zombie_port_names(shm_dir)
    if not first:
        return out
    time.sleep(recheck_s)
    for name in sorted(set(first) & set(zombie_port_names(shm_dir))):
        try:
            with open(Path(shm_dir) / name, 'r+b') as f:
                mm = mmap.mmap(f.fileno(), 0)
        except (OSError, ValueError):
            continue
        layout = find_layout(mm[:], int(PORT_RE.match(name).group(1)))
        if layout is None:
            mm.close()
            continue
        out.append(ZombiePort(name, layout, mm))
    return out


def mark_not_ok(ports: Iterable[ZombiePort]) -> List[str]:
    """Clear is_port_ok in each mapped port; close the mappings; return the names marked."""
    marked = []
    for p in ports:
        try:
            flags = struct.unpack_from('<I', p.mm, p.layout.flags)[0]
            if flags & IS_PORT_OK:
                struct.pack_into('<I', p.mm, p.layout.flags, flags & ~IS_PORT_OK)
                marked.append(p.name)
        finally:
            p.mm.close()
    return marked
