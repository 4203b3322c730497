"""core.shm_ports: finding a dead process's Fast DDS port segment and marking it not-OK."""

import fcntl
import struct

from edgent_ros.core import shm_ports as sp


def _segment(port_id=50415, listeners=1, flags=0x7, extra_hits=0):
    """Return bytes laid out like a Fast DDS 3.2 port segment (PortNode at 252)."""
    data = bytearray(64 * 1024)
    for k in range(extra_hits):                 # the same number elsewhere, before the node
        struct.pack_into('<I', data, 40 + 8 * k, port_id)
    at = 276
    struct.pack_into('<7I', data, at, port_id, listeners, 1000, 333, 512, listeners, flags)
    base = 20888
    for k in range(listeners):
        data[base + k * sp.LISTENER_STATUS_SIZE] = 0x3        # in use, waiting
    dom = base + sp.LISTENER_SLOTS * sp.LISTENER_STATUS_SIZE
    data[dom:dom + 7] = b'fastdds'
    return data


def test_find_layout_locates_the_port_node():
    lay = sp.find_layout(bytes(_segment(extra_hits=2)), 50415)
    assert (lay.port_id, lay.flags, lay.listeners, lay.domain_name) == (276, 300, 20888, 41368)


def test_find_layout_refuses_what_is_not_a_port_segment():
    assert sp.find_layout(bytes(_segment()), 50416) is None          # another port's number
    bad = _segment()
    bad[41368:41375] = b'otherdd'
    assert sp.find_layout(bytes(bad), 50415) is None                  # no domain name
    assert sp.find_layout(bytes(_segment(flags=0x80)), 50415) is None  # not PortNode flags
    assert sp.find_layout(b'', 1) is None


def test_zombie_ports_are_those_whose_lock_nobody_holds_and_marking_clears_only_is_port_ok(
        tmp_path):
    for n in (7001, 7002, 7003):
        (tmp_path / f'fastdds_port{n}').write_bytes(bytes(_segment(port_id=n)))
    (tmp_path / 'fastdds_port7001_el').write_text('')
    (tmp_path / 'fastdds_port7002_el').write_text('')     # 7003 has no lock file: not exclusive
    (tmp_path / 'fastdds_7001_data').write_text('x')       # not a port
    held = open(tmp_path / 'fastdds_port7002_el')
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)         # a live process's port
    try:
        assert sp.zombie_port_names(tmp_path) == ['fastdds_port7001']
        ports = sp.map_zombie_ports(tmp_path, recheck_s=0.0)
        assert [p.name for p in ports] == ['fastdds_port7001'] and ports[0].is_port_ok()
        assert sp.mark_not_ok(ports) == ['fastdds_port7001']
    finally:
        held.close()
    data = (tmp_path / 'fastdds_port7001').read_bytes()
    assert struct.unpack_from('<I', data, 300)[0] == 0x6                 # only bit 0 cleared
    assert data[20888] == 0x3                                             # listeners untouched
    assert (tmp_path / 'fastdds_port7002').read_bytes() == bytes(_segment(port_id=7002))
    # 7001 marked once: a second pass finds it not-OK already; 7002's owner has gone since
    again = sp.map_zombie_ports(tmp_path, recheck_s=0.0)
    assert [p.name for p in again] == ['fastdds_port7001', 'fastdds_port7002']
    assert not again[0].is_port_ok() and sp.mark_not_ok(again) == ['fastdds_port7002']


def test_locked_inodes_parses_proc_locks(tmp_path):
    f = tmp_path / 'locks'
    f.write_text('1: FLOCK  ADVISORY  WRITE 4242 00:1a:5678 0 EOF\n'
                 '2: POSIX  ADVISORY  READ 77 fd:01:99 0 EOF\n'
                 '2: -> POSIX  ADVISORY  WRITE 78 fd:01:99 0 EOF\n')
    assert sp.locked_inodes(str(f)) == {('00:1a', 5678), ('fd:01', 99)}
    assert sp.locked_inodes(str(tmp_path / 'absent')) == set()
