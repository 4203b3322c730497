"""
The two hosts the offline phase measures, and the robot's CPU emulation by a cgroup v1 quota.

Defaults of ``edgent-ros profile`` and the cgroup helpers shared by the profiler and the
evaluation testbed (root only; every helper says why when it cannot act). No torch here.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, List


HOSTS = ('robot', 'edge')
CGROUP_CPU_ROOT = Path('/sys/fs/cgroup/cpu')   # cgroup v1 cpu controller mount
DEFAULT_CGROUP = 'edgent_robot'
DEFAULT_CPU_QUOTA = 0.25          # fraction of one CPU the robot gets
DEFAULT_CPU_PERIOD_US = 100_000   # cpu.cfs_period_us
DEFAULT_ROBOT_THREADS = 1
MIN_CFS_QUOTA_US = 1000           # the kernel refuses a smaller cpu.cfs_quota_us
DEFAULT_REPEATS = {'edge': 15, 'robot': 5}   # robot repeats are windows of >= 2 CFS periods
DEFAULT_WARMUP = 3
BRANCH_PARTS = ('prefix', 'suffix', 'layer')


def cgroup_v1_cpu_available() -> bool:
    """Return True if this process may create cgroups under the cgroup v1 ``cpu`` controller."""
    return (hasattr(os, 'geteuid') and os.geteuid() == 0
            and (CGROUP_CPU_ROOT / 'cpu.cfs_quota_us').is_file()
            and os.access(CGROUP_CPU_ROOT / 'cgroup.procs', os.W_OK))


def cgroup_dir(name: str) -> Path:
    """Return the directory of cgroup ``name`` under the cpu mount (``''``, ``'/'``: the root)."""
    parts = [p for p in str(name).split('/') if p]
    if any(p in ('.', '..') for p in parts):
        raise ValueError(f'cgroup name must not contain "." or "..": {name!r}')
    return CGROUP_CPU_ROOT.joinpath(*parts)


def cgroup_procs_path(name: str) -> Path:
    """Return the ``cgroup.procs`` file of ``name``: write a pid there to move that process in."""
    return cgroup_dir(name) / 'cgroup.procs'


def _write(path: Path, value: Any) -> None:
    # O_WRONLY without O_CREAT: never create a plain file where a cgroup knob should be.
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)


def cfs_quota_us(quota: float, period_us: int = DEFAULT_CPU_PERIOD_US) -> int:
    """
    Return ``cpu.cfs_quota_us`` for ``quota`` (fraction of one CPU) per ``period_us``.

    Raises ValueError for a period outside the kernel's 1 ms..1 s or a quota under 1 ms.
    """
    if isinstance(period_us, bool) or not isinstance(period_us, int) \
            or not 1000 <= period_us <= 1_000_000:
        raise ValueError(f'cpu period must be an integer in 1000..1000000 us, got {period_us!r}')
    if not isinstance(quota, (int, float)) or not 0.0 < quota <= (os.cpu_count() or 1):
        raise ValueError(f'cpu quota must be a fraction of one CPU in (0, {os.cpu_count()}], '
                         f'got {quota!r}')
    quota_us = int(round(quota * period_us))
    if quota_us < MIN_CFS_QUOTA_US:
        raise ValueError(f'cpu quota {quota} of a {period_us} us period is {quota_us} us; the '
                         f'kernel needs >= {MIN_CFS_QUOTA_US} us (use a longer period)')
    return quota_us


def ensure_cgroup(name: str = DEFAULT_CGROUP, quota: float = DEFAULT_CPU_QUOTA,
                  period_us: int = DEFAULT_CPU_PERIOD_US) -> Path:
    """
    Create (or reuse) cgroup ``name`` limited to ``quota`` of one CPU; return its directory.

    Idempotent: an existing cgroup of that name gets the new period and quota.
    """
    quota_us = cfs_quota_us(quota, period_us)
    path = cgroup_dir(name)
    if path == CGROUP_CPU_ROOT:
        raise ValueError('refusing to set a CPU quota on the root cgroup')
    path.mkdir(parents=True, exist_ok=True)
    _write(path / 'cpu.cfs_quota_us', -1)   # lift the old quota first: any period is then valid
    _write(path / 'cpu.cfs_period_us', period_us)
    _write(path / 'cpu.cfs_quota_us', quota_us)
    return path


def cgroup_pids(name: str) -> List[int]:
    """Return the pids in cgroup ``name`` (empty if it does not exist)."""
    try:
        text = cgroup_procs_path(name).read_text()
    except FileNotFoundError:
        return []
    return [int(t) for t in text.split()]


def move_pid(pid: int, name: str) -> None:
    """Move process ``pid`` (all its threads) into cgroup ``name`` (``'/'``: the root)."""
    _write(cgroup_procs_path(name), int(pid))


def current_cpu_cgroup(pid: str = 'self') -> str:
    """Return the cgroup v1 ``cpu`` path of ``pid`` (``'/'`` if it has none)."""
    try:
        lines = Path(f'/proc/{pid}/cgroup').read_text().splitlines()
    except OSError:
        return '/'
    for line in lines:
        _, controllers, path = line.split(':', 2)
        if 'cpu' in controllers.split(','):
            return path
    return '/'


def remove_cgroup(name: str = DEFAULT_CGROUP, evict: bool = False) -> bool:
    """
    Remove cgroup ``name``; return True if it was removed.

    ``evict`` first moves any process still inside to the root cgroup; without it a cgroup that
    still holds processes (another run, a testbed node) is left alone and False is returned.
    """
    path = cgroup_dir(name)
    if path == CGROUP_CPU_ROOT or not path.is_dir():
        return False
    if evict:
        for pid in cgroup_pids(name):
            try:
                move_pid(pid, '/')
            except ProcessLookupError:
                pass
    try:
        path.rmdir()
    except OSError as exc:
        if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
            return False
        raise
    return True


def pin_threads(pid: int, cpus: set) -> None:
    """
    Pin every thread of process ``pid`` to ``cpus`` (a CPU hog beside it: issue 17's tests).

    ``sched_setaffinity`` on a pid moves one thread only; threads started later inherit the
    affinity of the thread that starts them. A thread that ends meanwhile is skipped.
    """
    for tid in os.listdir(f'/proc/{pid}/task'):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:
            pass
