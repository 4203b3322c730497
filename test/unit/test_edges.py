"""core.edges: which of several edges a camera uses, when it moves and when it moves back."""

import pytest

from edgent_ros.core.edges import check_edge_names, EdgeSet, rotated


def test_rotation_spreads_robots_over_edges():
    edges = ['edge_a', 'edge_b']
    firsts = [rotated(edges, k)[0] for k in range(8)]
    assert firsts.count('edge_a') == firsts.count('edge_b') == 4
    assert rotated(edges, 1) == ['edge_b', 'edge_a']
    assert rotated([], 3) == []


@pytest.mark.parametrize('names', [[''], ['a', 'a'], ['1edge'], ['edge/x'], ['edge-b']])
def test_bad_edge_names_are_refused(names):
    with pytest.raises(ValueError):
        check_edge_names(names)
    if names != ['']:
        with pytest.raises(ValueError):
            EdgeSet(names, 3.0)


def test_no_edges_is_refused():
    with pytest.raises(ValueError, match='at least one'):
        EdgeSet([], 3.0)
    with pytest.raises(ValueError):
        EdgeSet(['a'], 0.0)


def test_failover_to_the_preferred_edge_that_answers():
    s = EdgeSet(['a', 'b', 'c'], timeout_s=3.0)
    assert s.active == 'a'
    s.heard('a', 0.0)
    s.heard('c', 0.5)          # b never answered a ping
    assert s.choose(1.0, active_ok=True) is None
    assert s.choose(3.5, active_ok=False) == 'c'
    s.heard('b', 3.0)
    assert s.choose(3.5, active_ok=False) == 'b'   # preferred to c once it answers
    s.switch('b', 'no answer')
    assert s.active == 'b' and s.switches == 1 and 'a -> b' in s.last_switch


def test_no_edge_up_means_stay():
    s = EdgeSet(['a', 'b'], timeout_s=3.0)
    s.heard('b', 0.0)
    assert s.choose(10.0, active_ok=False) is None   # b silent too long: stay (device-only)


def test_back_to_balance_only_after_hold():
    s = EdgeSet(['a', 'b'], timeout_s=2.0)
    s.switch('b', 'no answer')
    s.heard('b', 0.0)
    s.heard('a', 10.0)           # a restarted
    assert s.choose(10.5, active_ok=True) is None
    s.heard('a', 11.0)
    s.heard('a', 12.0)
    assert s.choose(12.0, active_ok=True) == 'a'     # up for hold_s = timeout_s
    # a gap longer than timeout_s restarts the hold
    s.heard('a', 20.0)
    assert s.choose(21.0, active_ok=True) is None


def test_an_edge_less_preferred_never_pulls_back():
    s = EdgeSet(['a', 'b'], timeout_s=2.0)
    for t in range(10):
        s.heard('a', float(t))
        s.heard('b', float(t))
    assert s.choose(9.0, active_ok=True) is None


def test_pings_only_standing_by_edges_at_their_period():
    s = EdgeSet(['a', 'b', 'c'], timeout_s=1.5, ping_period_s=1.0)
    assert s.ping_interval_s() == pytest.approx(0.5)    # at most timeout / 3
    assert s.pings_due(0.0) == ['b', 'c']
    assert s.pings_due(0.2) == []
    assert s.pings_due(0.5) == ['b', 'c']
    s.switch('b', 'test')
    assert s.pings_due(1.0) == ['a', 'c']


def test_unknown_edges_are_ignored_or_refused():
    s = EdgeSet(['a'], 3.0)
    assert not s.heard('zz', 1.0)
    with pytest.raises(ValueError):
        s.switch('zz', 'test')


def test_status_reports_every_edge():
    s = EdgeSet(['a', 'b'], 3.0)
    s.heard('a', 1.0)
    st = s.status(2.0)
    assert st['edge_active'] == 'a' and st['edge:a'].startswith('up')
    assert st['edge:b'] == 'down' and st['edge_switches'] == '0'
