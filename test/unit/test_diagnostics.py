"""core.diagnostics: named levels, the recent window, and each node's grading (no ROS)."""

import threading

import pytest

from edgent_ros.core.diagnostics import (BUCKETS, camera_findings, count_of, deadline_findings,
                                         DEFAULT_WINDOW_S, edge_findings, grade, Level, message,
                                         per_reason, PlannerHealth, planner_findings,
                                         RecentCounts)


def test_levels_have_the_values_of_diagnostic_status():
    # diagnostic_msgs/DiagnosticStatus: OK=0 WARN=1 ERROR=2 STALE=3 (checked against the
    # message itself in test/ros/test_diagnostics_process.py)
    assert [int(x) for x in (Level.OK, Level.WARN, Level.ERROR, Level.STALE)] == [0, 1, 2, 3]
    assert Level.OK < Level.WARN < Level.ERROR < Level.STALE
    assert Level.WARN.name == 'WARN'


# -- RecentCounts ----------------------------------------------------------------------------

def test_events_count_within_the_window_then_expire():
    rc = RecentCounts(10.0)
    rc.add('refused:shape', 100.0)
    rc.add('refused:shape', 101.0)
    rc.add('ok', 101.0, n=3)
    assert rc.counts(101.0) == {'refused:shape': 2, 'ok': 3}
    assert rc.counts(110.0) == {'refused:shape': 2, 'ok': 3}   # 10 s after the first: in
    assert rc.counts(110.5) == {'refused:shape': 1, 'ok': 3}   # the first one left
    assert rc.counts(111.5) == {}
    assert rc.total(111.5) == 0


def test_total_by_prefix_and_nothing_for_zero():
    rc = RecentCounts(5.0)
    rc.add('refused:a', 0.0)
    rc.add('refused:b', 0.0, 2)
    rc.add('lost:dds', 0.0)
    rc.add('ok', 0.0, 0)                 # nothing
    assert rc.total(1.0, ('refused:',)) == 3
    assert rc.total(1.0) == 4
    assert rc.total(1.0, ('refused:', 'lost:')) == 4
    assert 'ok' not in rc.counts(1.0)


def test_memory_is_bounded_by_buckets_not_by_events():
    rc = RecentCounts(1.0)
    for k in range(20_000):                 # 20 000 events in 2 s
        rc.add('ok', k * 1e-4)
    assert len(rc._buckets) <= BUCKETS + 1
    assert rc.total(2.0) == pytest.approx(10_000, rel=0.02)   # the last second's


def test_window_can_change_and_is_validated():
    rc = RecentCounts()
    assert rc.window_s == DEFAULT_WINDOW_S
    rc.add('x', 0.0)
    rc.window_s = 2.0
    assert rc.counts(1.0) == {'x': 1}
    assert rc.counts(3.0) == {}
    for bad in (0.0, -1.0, float('nan'), float('inf'), True, '10'):
        with pytest.raises(ValueError):
            rc.window_s = bad
        with pytest.raises(ValueError):
            RecentCounts(bad)
    with pytest.raises(ValueError):
        rc.add('x', float('nan'))


def test_clear_and_out_of_order_times():
    rc = RecentCounts(10.0)
    rc.add('a', 5.0)
    rc.add('a', 4.0)                 # read from the clock before the newest (another thread)
    assert rc.counts(5.0) == {'a': 2}
    rc.clear()
    assert rc.counts(5.0) == {}


def test_thread_safe():
    rc = RecentCounts(100.0)

    def work():
        for k in range(2000):
            rc.add('ok', k * 1e-3)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert rc.total(2.0) == 8000


# -- grading ---------------------------------------------------------------------------------

def test_grade_takes_the_worst_and_lists_reasons_worst_first():
    assert grade([]) == (Level.OK, [])
    assert grade([(Level.OK, 'fine')]) == (Level.OK, [])
    level, reasons = grade([(Level.WARN, 'w'), (Level.ERROR, 'e'), (Level.OK, 'fine')])
    assert level is Level.ERROR and reasons == ['e', 'w']
    assert message('12 frames', reasons) == '12 frames; e; w'
    assert message('12 frames', []) == '12 frames'


def test_count_helpers():
    counts = {'refused:shape': 2, 'refused:stale': 5, 'ok': 9}
    assert count_of(counts, ('refused:',)) == 7
    assert per_reason(counts, 'refused:') == 'stale 5, shape 2'
    assert per_reason(counts, 'dropped:') == ''


def test_edge_warns_on_recent_refusals_and_clears_when_they_stop():
    rc = RecentCounts(10.0)
    rc.add('ok', 0.0, 50)
    assert grade(edge_findings(rc.counts(1.0), 10.0))[0] is Level.OK
    rc.add('refused:shape', 2.0)                          # one malformed frame
    level, reasons = grade(edge_findings(rc.counts(3.0), 10.0))
    assert level is Level.WARN and 'shape 1' in reasons[0]
    for t in range(3, 12):                                # good frames flow on
        rc.add('ok', float(t))
    assert grade(edge_findings(rc.counts(11.0), 10.0))[0] is Level.WARN   # still in the window
    assert grade(edge_findings(rc.counts(12.5), 10.0))[0] is Level.OK     # cleared


def test_edge_lost_warns_and_incompatible_qos_is_an_error():
    assert grade(edge_findings({'lost:dds': 3}, 10.0))[0] is Level.WARN
    level, reasons = grade(edge_findings({'incompatible_qos': 1, 'refused:x': 1}, 10.0))
    assert level is Level.ERROR and 'incompatible QoS' in reasons[0]


def test_camera_warns_on_fallback_and_recent_edge_failures_not_on_pacing():
    assert grade(camera_findings(True, False, {'ok_edge': 9}, 10.0))[0] is Level.OK
    assert grade(camera_findings(True, False, {'dropped:link_busy': 9,
                                               'dropped:robot_busy': 2}, 10.0))[0] is Level.OK
    level, reasons = grade(camera_findings(False, True, {}, 10.0))
    assert level is Level.WARN and 'device-only fallback' in reasons[0]
    level, reasons = grade(camera_findings(True, False, {'refused:stale': 2,
                                                         'dropped:edge_timeout': 1}, 10.0))
    assert level is Level.WARN and reasons[0].startswith('3 frames')
    assert 'refused:stale 2' in reasons[0] and 'dropped:edge_timeout 1' in reasons[0]


def test_deadline_rate():
    assert deadline_findings(0, 0, 10.0) == []
    assert deadline_findings(9, 1, 10.0) == []                # 90 %: fine
    (level, why), = deadline_findings(8, 2, 10.0)
    assert level is Level.WARN and '80 %' in why and '10 frames' in why


def _health(**kw):
    base = dict(feasible=True, link_age_s=0.5, link_timeout_s=3.0, link_needed=True,
                camera_reachable=True, camera='camera_node',
                recent={'push_ok:camera_node': 2}, window_s=10.0)
    base.update(kw)
    return PlannerHealth(**base)


def test_planner_ok_warn_and_error():
    assert grade(planner_findings(_health())) == (Level.OK, [])
    # WARN: infeasible decision, stale or missing link, a recent failed push
    level, reasons = grade(planner_findings(_health(feasible=False)))
    assert level is Level.WARN and 'deadline' in reasons[0]
    level, reasons = grade(planner_findings(_health(link_age_s=4.0)))
    assert level is Level.WARN and '4.0 s old' in reasons[0]
    level, reasons = grade(planner_findings(_health(link_age_s=None)))
    assert level is Level.WARN and 'no link quality' in reasons[0]
    assert grade(planner_findings(_health(link_age_s=None, link_needed=False)))[0] is Level.OK
    level, reasons = grade(planner_findings(_health(
        recent={'push_ok:camera_node': 1, 'push_failed:edge_node': 1})))
    assert level is Level.WARN and 'failed:edge_node 1' in reasons[0]
    level, _ = grade(planner_findings(_health(
        recent={'push_ok:camera_node': 1, 'push_timeout:camera_node': 1})))
    assert level is Level.WARN       # answered once in the window: reachable, but slow
    # ERROR: the camera cannot be reached at all
    level, reasons = grade(planner_findings(_health(camera_reachable=False, feasible=False)))
    assert level is Level.ERROR and reasons[0].startswith('camera_node not reachable')
    assert len(reasons) == 2
    level, reasons = grade(planner_findings(_health(recent={'push_timeout:camera_node': 3})))
    assert level is Level.ERROR and 'none of 3' in reasons[0]
    # reachable, a decision made, but the camera has not acknowledged one yet: WARN
    level, reasons = grade(planner_findings(_health(camera_applied=False, recent={})))
    assert level is Level.WARN and reasons == ['camera_node has not applied a decision yet']
    assert grade(planner_findings(_health(camera_applied=False, feasible=None)))[0] is Level.OK
    # no decision yet is not a problem by itself
    assert grade(planner_findings(_health(feasible=None)))[0] is Level.OK
