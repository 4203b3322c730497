"""Configuration map (issue 10): building from traces, loading, the map strategy."""

import json

import pytest

from edgent_ros.core.artifacts import ArtifactError
from edgent_ros.offline.map_builder import build_map, read_trace
from edgent_ros.core.config_map import ConfigMap, DEFAULT_EDGES, MapStrategy, state_of
from edgent_ros.core.optimizer import calibrate, decide, EdgentProblem, evaluate

ACC = {1: 0.70, 2: 0.80, 3: 0.85}
# exit e: e layers of 10 ms on the robot, 1 ms on the edge; the input is 25 kB, features 1 kB
PROBLEM = EdgentProblem(ACC, {e: [10.0] * e for e in ACC}, {e: [1.0] * e for e in ACC},
                        {e: [25_000] + [1_000] * (e - 1) + [0] for e in ACC}, 2.0)


def test_states_and_trace_reading(tmp_path):
    assert state_of(DEFAULT_EDGES, 0.0) == 0 and state_of(DEFAULT_EDGES, 0.012) == 0
    assert state_of(DEFAULT_EDGES, 0.1) == 4 and state_of(DEFAULT_EDGES, 1e6) == 14
    f = tmp_path / 't.csv'
    f.write_text('t_s,mbps\n0,1.0\n5,2.0\n10,0\n')
    assert read_trace(f) == [(5.0, 1.0), (5.0, 2.0), (5.0, 0.0)]
    for text, match in (('a,b\n1,2\n', 't_s,mbps'), ('t_s,mbps\n', 'no rows'),
                        ('t_s,mbps\n0,-1\n', '>= 0'), ('t_s,mbps\n0,1\n0,2\n', 'increase'),
                        ('t_s,mbps\n0,x\n', 'not a number')):
        f.write_text(text)
        with pytest.raises(ValueError, match=match):
            read_trace(f)
    with pytest.raises(FileNotFoundError):
        read_trace(tmp_path / 'none.csv')


def test_map_picks_per_state_the_best_configuration_over_the_trace():
    # 100 s around 10 Mbit/s (input 20 ms: edge-only meets 30 ms), 100 s around 0.5 Mbit/s
    trace = [(1.0, 9.0 + (k % 3)) for k in range(100)] + [(1.0, 0.45 + 0.01 * (k % 5))
                                                          for k in range(100)]
    body = build_map(PROBLEM, {'t': trace}, [25.0, 100.0])
    m = ConfigMap(body)
    hi, lo = m.state(10.0), m.state(0.47)
    assert body['states'][hi]['seconds'] > 60 and body['states'][lo]['seconds'] == 100
    # fast state, 25 ms: exit 3 with one layer on the robot (10 + 1 kB + 2 + 2 ms ~ 15 ms) beats
    # edge-only (25 kB ~ 20 ms + 2 + 3) on mean latency at the same accuracy
    assert m.lookup(10.0, 25.0)[:2] == (3, 1)
    # slow state, 25 ms: 25 kB takes 400 ms, exit 3 on the robot 30 ms; exit 2 there (20 ms)
    e, s, entry = m.lookup(0.47, 25.0)
    assert (e, s) == (2, 2) and entry['deadline_met'] == 1.0
    # 100 ms, slow state: exit 3 on the robot (30 ms)
    assert m.lookup(0.47, 100.0)[:2] == (3, 3)
    # unvisited states come from the model at their lower edge, marked as such
    empty = [i for i, st in enumerate(body['states']) if st['seconds'] == 0]
    assert empty and all('source' in body['states'][i]['configs']['25'] for i in empty)
    # deadlines between map deadlines use the largest map deadline below
    assert m.deadline_key(50.0) == 25.0 and m.deadline_key(10.0) == 25.0
    for bad in ({'edges': [1.0, 2.0]}, {'edges': [0.0, 2.0, 1.0]}):
        with pytest.raises(ValueError):
            build_map(PROBLEM, {'t': trace}, [30.0], **bad)
    with pytest.raises(ValueError):
        build_map(PROBLEM, {}, [30.0])


def test_map_load_validates(tmp_path):
    body = build_map(PROBLEM, {'t': [(1.0, 1.0)] * 10}, [50.0])
    body['model_id'] = 'm1'
    f = tmp_path / 'map.json'
    f.write_text(json.dumps(body))
    assert ConfigMap.load(f, model_id='m1').deadlines == [50.0]
    with pytest.raises(ArtifactError, match="not 'm2'"):
        ConfigMap.load(f, model_id='m2')
    for text in ('{', '[]', json.dumps({**body, 'format': 'x'}),
                 json.dumps({**body, 'states': body['states'][:3]})):
        f.write_text(text)
        with pytest.raises(ArtifactError, match='map.json'):
            ConfigMap.load(f)
    with pytest.raises(ArtifactError, match='not found'):
        ConfigMap.load(tmp_path / 'none.json')


def test_map_strategy_switches_on_change_points_only():
    trace = [(1.0, 10.0)] * 50 + [(1.0, 0.5)] * 50
    strat = MapStrategy(ConfigMap(build_map(PROBLEM, {'t': trace}, [25.0])))
    assert strat.decide(PROBLEM, 10e6, 25.0).config == decide(PROBLEM, 0.0, 25.0).config
    assert strat.update(10.0)                      # first sample: the initial state
    for bw in [10.0, 11.0, 9.0, 10.5] * 10:       # noise within a state: no switch
        assert not strat.update(bw)
    assert strat.switches == 0
    d = strat.decide(PROBLEM, 10e6, 25.0)
    assert d.config == (3, 1) and 'map state' in d.reason
    assert d.total_ms == pytest.approx(evaluate(PROBLEM, 10e6, 3, 1, 25.0).total_ms)
    changed = [strat.update(0.5) for _ in range(5)]
    assert any(changed[:3]) and strat.switches == 1
    assert strat.decide(PROBLEM, 0.5e6, 25.0).config == (2, 2)
    # no estimate (edge unreachable): best device-only, like the per-sample strategy
    assert strat.decide(PROBLEM, 0.0, 25.0).config == decide(PROBLEM, 0.0, 25.0).config
    strat.reset()
    assert strat.state is None and strat.switches == 0


def test_map_strategy_replans_when_the_calibrated_model_says_the_entry_is_late():
    trace = [(1.0, 10.0)] * 50
    strat = MapStrategy(ConfigMap(build_map(PROBLEM, {'t': trace}, [25.0])))
    for _ in range(5):
        strat.update(10.0)
    assert strat.decide(PROBLEM, 10e6, 25.0).config == (3, 1)   # 10 ms on the robot: in time
    # measured outcomes say the robot is 3x slower: (3, 1) now takes 30 ms there
    slow = calibrate(PROBLEM, 3.0, 1.0)
    assert not evaluate(slow, 10e6, 3, 1, 25.0).feasible
    d = strat.decide(slow, 10e6, 25.0)
    want = decide(slow, 10e6, 25.0)
    assert want.feasible and d.config == want.config != (3, 1)
    assert 'misses the deadline under the calibrated model' in d.reason
    # the check is at the detector's level x level_scale (the planner's bandwidth correction),
    # not at each estimate: a low estimate alone keeps the entry
    assert strat.decide(PROBLEM, 2e6, 25.0).config == (3, 1)
    # an offload correction of 1/100 makes the link 100x slower at the level: device-only exit
    d = strat.decide(PROBLEM, 10e6, 25.0, level_scale=0.01)
    assert d.config == decide(PROBLEM, 0.1e6, 25.0).config != (3, 1)
    # nothing feasible at the level either: the faster of the entry and Edgent's fastest
    # (the FCC replay kept exit 3 on the robot at 777 ms against 300 ms, exit 1 was ~350 ms)
    hopeless = calibrate(PROBLEM, 100.0, 100.0)
    fastest = decide(hopeless, 10e6, 25.0)
    entry = evaluate(hopeless, 10e6, 3, 1, 25.0)
    assert not fastest.feasible and not entry.feasible
    assert fastest.total_ms < entry.total_ms
    d = strat.decide(hopeless, 10e6, 25.0)
    assert d.config == fastest.config != (3, 1)
    assert 'misses the deadline under the calibrated model' in d.reason


def test_build_map_cli(tmp_path, capsys):
    from edgent_ros.cli.main import main
    from edgent_ros.core.artifacts import read_config
    trace = tmp_path / 'a.csv'
    rows = ''.join(f'{t},{5.0 if t < 30 else 0.05}\n' for t in range(60))
    trace.write_text('t_s,mbps\n' + rows)
    out = tmp_path / 'map.json'
    assert main(['build-map', '--traces', str(trace), '--deadlines', '100', '300',
                 '--robot-time-scale', '60', '--out', str(out)]) == 0
    assert '15 states x 2 deadlines from 1 traces (60 s)' in capsys.readouterr().out
    m = ConfigMap.load(out, model_id=read_config().model_id())
    assert m.deadlines == [100.0, 300.0] and m.body['robot_time_scale'] == 60.0
    assert m.lookup(5.0, 300.0)[:2] == (5, 0)          # 3 KB at 5 Mbit/s: edge-only
    assert m.lookup(0.05, 300.0)[2]['deadline_met'] == 1.0
    assert main(['build-map', '--traces', str(tmp_path / 'none.csv'), '--out', str(out)]) == 2
