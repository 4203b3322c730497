"""
Issue 17 item 5: a CPU hog beside the edge does not make the planner declare a slow link.

Camera, edge and planner as processes on loopback (the planner models a robot 60x slower, so
exit 5 on the edge is its choice at any link faster than ~0.1 Mbit/s). The edge process and a
busy loop share one core. Its frames then wait for the CPU on the edge; that is edge time (the
edge times a frame from the middleware's reception and reports all of it), not link time, and
the estimator's median ignores the odd sample still slowed in transport. Every estimate the
planner hears stays far above what would make it run a lower exit on the robot, and the
decision stays.
"""

import os
import statistics
import subprocess
import sys
import time

from edgent_ros.core.link import read_transfer_log
from edgent_ros.offline.hosts import pin_threads
from edgent_ros.nodes import qos
from edgent_ros.msg import ExitSplitDecision, LinkQuality


def test_cpu_hog_beside_the_edge_is_not_a_slow_link(procs, listener, tmp_path):
    listener.listen(LinkQuality, 'edgent/link_quality', qos.LINK_QUALITY)
    listener.listen(ExitSplitDecision, 'edgent/decision', qos.DECISION)
    edge = procs.start('edge_node')
    log = tmp_path / 'transfers.csv'
    procs.start('camera_node', fps=10.0, publish_frames=False, robot_time_scale=60.0,
                transfer_log=str(log))
    procs.start('planner_node', deadline_ms=300.0, robot_time_scale=60.0, min_dwell_s=0.0)

    def offloading():
        d = listener.msgs('edgent/decision')
        return bool(d) and (d[-1].exit_index, d[-1].split_index) == (5, 0)
    assert listener.spin_until(offloading, 60.0), procs.log('planner_node')
    t_quiet = time.monotonic()
    listener.spin_until(lambda: False, 8.0)
    quiet = [m.uplink_bandwidth_bps for m in listener.msgs('edgent/link_quality')
             if m.uplink_bandwidth_bps > 0]
    assert len(quiet) >= 8, quiet
    base = statistics.median(quiet[-10:])
    cpu = max(os.sched_getaffinity(0))
    hog = subprocess.Popen([sys.executable, '-c', 'while True: pass'])
    try:
        os.sched_setaffinity(hog.pid, {cpu})
        pin_threads(edge.pid, {cpu})
        n0 = len(listener.msgs('edgent/link_quality'))
        d0 = len(listener.msgs('edgent/decision'))
        listener.spin_until(lambda: False, 15.0)
    finally:
        hog.kill()
        hog.wait(5)
    during = [m for m in listener.msgs('edgent/link_quality')[n0:]]
    assert len(during) >= 20, len(during)
    rates = [m.uplink_bandwidth_bps for m in during]
    # the link did not change: no estimate comes anywhere near the 0.1 Mbit/s where exit 5 on
    # the edge stops paying, and nearly all stay within 4x of the quiet median. Not all: when
    # the machine is busy beyond this test's hog (a fresh-clone CI run had another job on the
    # other core), the camera's own process waits for the CPU too, three slow samples in a row
    # read as a real drop and one estimate fell to 5x below (9.2 of 47 Mbit/s) before the next
    # samples restored it (BENCHMARKS 17: both cores busy is the condition the estimator does
    # not meet)
    assert min(rates) >= 1e6, (base, sorted(rates)[:5])
    within = sum(r >= base / 4 for r in rates) / len(rates)
    assert within >= 0.9, (base, within, sorted(rates)[:5])
    decided = [(d.exit_index, d.split_index) for d in listener.msgs('edgent/decision')[d0:]]
    assert all(d == (5, 0) for d in decided), decided
    # the camera logged the transfer samples behind the estimates (the replayable record)
    rows = read_transfer_log(log)
    assert sum(1 for r in rows if r[0] >= t_quiet) >= 50
    assert {r[1] for r in rows} <= {'passive', 'probe'}


def test_probe_pairs_grow_to_measure_a_fast_link(procs, listener):
    """
    Issue 17 item 1: on loopback the camera's probes grow into padding the edge answers.

    A 3 KB pair can only say "at least 2.8 Mbit/s"; the grown pairs measure the path (several
    Gbit/s here; BENCHMARKS 17). An edge that refuses padding over its ``max_payload_bytes``
    caps the pairs below that size, and the estimate is then that size's bound.
    """
    listener.listen(LinkQuality, 'edgent/link_quality', qos.LINK_QUALITY)
    procs.start('edge_node')
    procs.start('camera_node', fps=5.0, publish_frames=False)   # fast robot: 5/20, probes only

    def fast():
        return any(m.uplink_bandwidth_bps >= 5e8 for m in listener.msgs('edgent/link_quality'))
    assert listener.spin_until(fast, 30.0), (
        [round(m.uplink_bandwidth_bps / 1e6, 1) for m in listener.msgs('edgent/link_quality')],
        procs.log('camera_node'))
    listener.spin_until(lambda: False, 3.0)
    rtt = [m.rtt_ms for m in listener.msgs('edgent/link_quality')[-4:]]
    assert all(0.0 < r < 50.0 for r in rtt), rtt    # from the small ping, not a megabyte probe


def test_an_edge_that_refuses_large_padding_caps_the_pairs(procs, listener):
    listener.listen(LinkQuality, 'edgent/link_quality', qos.LINK_QUALITY)
    procs.start('edge_node', max_payload_bytes=100_000)
    procs.start('camera_node', fps=5.0, publish_frames=False)
    listener.spin_until(lambda: False, 12.0)
    late = [m.uplink_bandwidth_bps for m in listener.msgs('edgent/link_quality')[-6:]]
    # pairs of 49,152 bytes at most (196,608 refused): their bound, 2 x 49 KB / 20 ms
    assert late and all(1e7 <= r <= 5e7 for r in late), late
