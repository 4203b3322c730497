"""
A planner killed at the wrong moment, then restarted, must steer the camera again (issue 20).

The fault behind the one CI failure of ``test_planner_killed_then_restarted`` ("no answer from
camera_node" for 20 s after the restart), made deterministic. A Fast DDS shared-memory port's
listener that dies between waiting and processing a message looks healthy to its peers'
watchdog forever; the restarted planner reuses the port number, and Fast DDS 3.2.2 replaces the
segment without marking the old one not-OK, so the camera's replies go into the orphan
(``core.shm_ports`` has the whole story). The test freezes the planner with SIGSTOP, puts its
listeners in exactly that state (the in-use slot neither waiting nor processing), SIGKILLs it
and starts a new planner with a different deadline:

- control (``EDGENT_SHM_ZOMBIE_FIX=0``): the new planner never gets the camera to its decision;
- the nodes as shipped: it does, within the time a normal restart takes.
"""

import mmap
import os
import re
import signal
import time

import pytest
from rclpy.parameter_client import AsyncParameterClient

from edgent_ros.core import shm_ports
from edgent_ros.msg import InferenceResult
from edgent_ros.nodes import qos


def _ports(pid):
    """Return the shared-memory ports process ``pid`` listens on (the ``_el`` locks it holds)."""
    out = set()
    for fd in os.listdir(f'/proc/{pid}/fd'):
        try:
            target = os.readlink(f'/proc/{pid}/fd/{fd}')
        except OSError:
            continue
        m = re.search(r'/(fastdds_port\d+)_el$', target)
        if m:
            out.add(m.group(1))
    return out


def _freeze_between_states(name):
    """Put every in-use listener slot of port ``name`` in 'neither waiting nor processing'."""
    with open(shm_ports.SHM_DIR / name, 'r+b') as f:
        mm = mmap.mmap(f.fileno(), 0)
        try:
            layout = shm_ports.find_layout(mm[:], int(name[len('fastdds_port'):]))
            assert layout is not None, f'{name}: not a Fast DDS 3.2 port segment'
            n = 0
            for k in range(shm_ports.LISTENER_SLOTS):
                at = layout.listeners + k * shm_ports.LISTENER_STATUS_SIZE
                if mm[at] & 0x1:                  # is_in_use
                    mm[at] = 0x1                  # not is_waiting, not is_processing
                    n += 1
            return n
        finally:
            mm.close()


def _camera_exit(listener, client):
    fut = client.get_parameters(['exit_index'])
    listener.spin_until(fut.done, 3.0)
    return fut.result().values[0].integer_value if fut.done() and fut.result() else None


@pytest.mark.parametrize('fix', [False, True], ids=['control', 'shipped'])
def test_planner_killed_between_shm_states_then_restarted(procs, listener, fix):
    listener.listen(InferenceResult, 'edgent/outcome', qos.RESULT)
    procs.start('camera_node', exit_index=5, split_index=20, fps=10.0, wait_for_edge_s=0.0,
                publish_frames=False)
    planner = procs.start('planner_node', deadline_ms=1000.0, link_timeout_s=1.0,
                          min_dwell_s=0.0)
    client = AsyncParameterClient(listener.node, 'camera_node')
    assert listener.spin_until(client.services_are_ready, 30.0)
    assert listener.spin_until(lambda: len(listener.msgs('edgent/outcome')) >= 10, 30.0)
    assert _camera_exit(listener, client) == 5            # the first planner's decision
    ports = _ports(planner.pid)
    assert ports, 'the planner listens on no shared-memory port'
    os.kill(planner.pid, signal.SIGSTOP)
    frozen = [_freeze_between_states(p) for p in ports]
    procs.stop('planner_node', sig=signal.SIGKILL)
    assert all(n >= 1 for n in frozen), frozen
    # the new planner: a 2 ms deadline makes it move the camera to exit 1 (device-only)
    env = {} if fix else {'EDGENT_SHM_ZOMBIE_FIX': '0'}
    second = procs.start('planner_node', name='planner_2', env=env, deadline_ms=2.0,
                         link_timeout_s=1.0, min_dwell_s=0.0)
    t0 = time.monotonic()
    took_over = listener.spin_until(lambda: _camera_exit(listener, client) == 1,
                                    20.0 if fix else 12.0)
    log = procs.log('planner_2')
    assert _ports(second.pid) & ports, 'the restart did not reuse the port (no test of the fault)'
    if fix:
        assert took_over, log
        assert 'marked' in log and 'shared-memory port' in log, log
        print(f'took over in {time.monotonic() - t0:.1f} s')
    else:
        assert not took_over, 'without the fix the camera answered: the fault was not made'
