"""
Camera, edge and planner as three processes (issue: online phase, item 5).

The planner's decision follows the link quality it hears and the camera's parameters follow the
decision within 1 s; when the edge process is killed the robot keeps producing results
device-only, and when it is restarted co-inference resumes. Frames are all accounted for.
"""

import signal
import time

from rclpy.parameter_client import AsyncParameterClient

from edgent_ros.nodes import qos
from edgent_ros.msg import ExitSplitDecision, InferenceResult, LinkQuality
from ros_helpers import get_parameters


def _camera_params(listener, client):
    vals = get_parameters(listener, client, ['exit_index', 'split_index'])
    return vals[0].integer_value, vals[1].integer_value


def _publish_link(listener, pub, bps):
    m = LinkQuality()
    m.header.stamp = listener.node.get_clock().now().to_msg()
    m.robot = 'test'
    m.uplink_bandwidth_bps = float(bps)
    m.edge_reachable = True
    m.sample_count = 8
    m.source = LinkQuality.SOURCE_EXTERNAL
    pub.publish(m)


def test_camera_parameters_follow_link_quality(procs, listener):
    listener.listen(ExitSplitDecision, 'edgent/decision', qos.DECISION)
    pub = listener.node.create_publisher(LinkQuality, 'edgent/link_quality', qos.LINK_QUALITY)
    procs.start('edge_node')
    # the camera's own estimate goes elsewhere so the test alone drives the planner
    procs.start('camera_node', remap=['edgent/link_quality:=edgent/camera_link'], fps=5.0)
    # compared with the static model's decisions; a robot 60x slower than profiled, so that the
    # link decides between exit 5 on the edge and exit 3 on the robot
    procs.start('planner_node', deadline_ms=300.0, min_dwell_s=0.0, link_timeout_s=30.0,
                calibration=False, robot_time_scale=60.0)
    client = AsyncParameterClient(listener.node, 'camera_node')
    assert listener.spin_until(lambda: client.services_are_ready(), 30.0)
    assert listener.spin_until(lambda: pub.get_subscription_count() > 0, 30.0)

    from edgent_ros.core.artifacts import load_accuracy, read_config
    from edgent_ros.core.optimizer import EdgentProblem, scale_robot
    from edgent_ros.core.latency import LatencyModels
    from edgent_ros.core.planner import LinkReport, Planner
    cfg = read_config()
    problem = scale_robot(EdgentProblem.from_model(cfg, load_accuracy(model_id=cfg.model_id()),
                                                   LatencyModels.load(model_id=cfg.model_id()),
                                                   overhead_ms=2.0), 60.0)
    # the node's rule, in process: the same static model, no dwell, the same estimates; its
    # first decision is made before any link quality is heard
    reference = Planner(problem, deadline_ms=300.0, min_dwell_s=0.0, calibration=False)
    reference.plan(-1.0, 'start')
    # the planner steers the camera once it has read the camera's model_id; a reply lost while
    # the just-started camera's service is still being discovered is asked again after
    # set_timeout_s (1 s). Measure "follows within 1 s" from there: the camera first holds the
    # start decision (the camera's own default, exit 5 split 0, would pass the first step alone)
    start = reference.decision.config
    t0, got = time.monotonic(), None
    while time.monotonic() - t0 < 15.0 and got != start:
        got = _camera_params(listener, client)
    assert got == start, f'the camera never got the start decision {start}: {got}\n' \
                         + procs.log('planner_node')
    seen = set()
    for k, bps in enumerate((100e6, 0.2e6, 50e6, 0.02e6, 100e6)):
        reference.add_link(float(k), LinkReport(bps))
        reference.plan(float(k), 'link quality')
        want = reference.decision
        t0 = time.monotonic()
        _publish_link(listener, pub, bps)
        got = None
        while time.monotonic() - t0 < 1.0 and got != want.config:
            got = _camera_params(listener, client)
        assert got == want.config, f'camera params {got} did not follow the decision ' \
                                   f'{want.config} at {bps} bps within 1 s\n' \
                                   + procs.log('planner_node')
        seen.add(want.config)
    # the camera may apply the push before the listener has the decision message: wait for it

    def last_decision():
        d = listener.msgs('edgent/decision')
        return bool(d) and (d[-1].exit_index, d[-1].split_index) == want.config
    assert listener.spin_until(last_decision, 5.0), \
        [(d.exit_index, d.split_index) for d in listener.msgs('edgent/decision')]
    assert len(seen) >= 2, f'the decision never changed across 100 -> 0.05 Mbit/s: {seen}'


def test_edge_killed_then_restarted(procs, listener):
    listener.listen(InferenceResult, 'edgent/outcome', qos.RESULT)
    procs.start('edge_node')
    procs.start('camera_node', exit_index=5, split_index=0, fps=10.0, edge_timeout_s=1.0,
                result_timeout_s=1.0)

    def finished_on(kind, since):
        return [o for o in listener.msgs('edgent/outcome') if o.sequence > since
                and o.status == InferenceResult.STATUS_OK and o.finished_on == kind]

    assert listener.spin_until(lambda: len(finished_on(InferenceResult.FINISHED_ON_EDGE, 0)) >= 5,
                               30.0), procs.log('camera_node')
    procs.stop('edge_node', sig=signal.SIGKILL)
    t_kill = time.monotonic()
    last = max(o.sequence for o in listener.msgs('edgent/outcome'))
    assert listener.spin_until(
        lambda: len(finished_on(InferenceResult.FINISHED_ON_DEVICE, last)) >= 5, 15.0), \
        procs.log('camera_node')
    fallback_s = time.monotonic() - t_kill
    assert fallback_s < 10.0
    procs.start('edge_node', name='edge_node_2')
    t_restart = time.monotonic()
    last = max(o.sequence for o in listener.msgs('edgent/outcome'))
    assert listener.spin_until(
        lambda: len(finished_on(InferenceResult.FINISHED_ON_EDGE, last)) >= 3, 30.0), \
        procs.log('camera_node')
    assert time.monotonic() - t_restart < 30.0
    # every frame has exactly one outcome: no duplicates, and no gaps among frames older than
    # the in-flight window (result_timeout_s = 1 s = 10 frames at 10 fps; 20 to be safe)
    listener.spin_until(lambda: False, 1.5)
    seqs = sorted(o.sequence for o in listener.msgs('edgent/outcome'))
    assert len(seqs) == len(set(seqs)), 'a frame got two outcomes'
    settled = [s for s in seqs if s <= seqs[-1] - 20]
    assert settled == list(range(seqs[0], seqs[-1] - 19)), 'a frame has no outcome'


def test_true_bandwidth_policy_and_robot_scale(procs, listener):
    """Policy true-bandwidth plans at true_bandwidth_bps (set from outside), not estimates."""
    from rclpy.parameter import Parameter

    from edgent_ros.core.artifacts import load_accuracy, read_config
    from edgent_ros.core.optimizer import decide, EdgentProblem, scale_robot
    from edgent_ros.core.latency import LatencyModels
    listener.listen(ExitSplitDecision, 'edgent/decision', qos.DECISION)
    pub = listener.node.create_publisher(LinkQuality, 'edgent/link_quality', qos.LINK_QUALITY)
    procs.start('edge_node')
    procs.start('camera_node', remap=['edgent/link_quality:=edgent/camera_link'], fps=5.0)
    procs.start('planner_node', deadline_ms=300.0, policy='true-bandwidth',
                robot_time_scale=60.0, true_bandwidth_bps=0.1e6, link_timeout_s=30.0,
                calibration=False)
    cam = AsyncParameterClient(listener.node, 'camera_node')
    planner = AsyncParameterClient(listener.node, 'planner_node')
    assert listener.spin_until(lambda: cam.services_are_ready()
                               and planner.services_are_ready(), 30.0)
    cfg = read_config()
    problem = scale_robot(EdgentProblem.from_model(
        cfg, load_accuracy(model_id=cfg.model_id()), LatencyModels.load(model_id=cfg.model_id()),
        overhead_ms=2.0), 60.0)
    _publish_link(listener, pub, 100e6)   # an estimate the policy must not use
    seen = set()
    for bps in (0.1e6, 0.02e6, 20e6, 0.0):
        want = decide(problem, bps, 300.0)
        fut = planner.set_parameters([Parameter('true_bandwidth_bps', value=float(bps))])
        assert listener.spin_until(fut.done, 5.0) and fut.result().results[0].successful
        t0, got = time.monotonic(), None
        while time.monotonic() - t0 < 2.0 and got != want.config:
            got = _camera_params(listener, cam)
        assert got == want.config, (bps, got, want, procs.log('planner_node'))
        seen.add(want.config)
    assert len(seen) >= 2
    last = listener.msgs('edgent/decision')[-1]
    assert last.policy == 'true-bandwidth' and (last.exit_index, last.split_index) == want.config
    fut = planner.set_parameters([Parameter('policy', value='clairvoyant')])
    assert listener.spin_until(fut.done, 5.0)
    assert not fut.result().results[0].successful
    assert 'true-bandwidth' in fut.result().results[0].reason


def test_map_strategy_follows_detected_states(procs, listener, tmp_path):
    """Strategy map: decisions come from the configuration map, per detected bandwidth state."""
    import json

    from rclpy.parameter import Parameter

    from edgent_ros.core.artifacts import load_accuracy, read_config
    from edgent_ros.offline.map_builder import build_map
    from edgent_ros.core.config_map import ConfigMap
    from edgent_ros.core.optimizer import decide, EdgentProblem, scale_robot
    from edgent_ros.core.latency import LatencyModels
    cfg = read_config()
    problem = scale_robot(EdgentProblem.from_model(
        cfg, load_accuracy(model_id=cfg.model_id()), LatencyModels.load(model_id=cfg.model_id()),
        overhead_ms=2.0), 60.0)
    body = build_map(problem, {'t': [(1.0, 5.0)] * 60 + [(1.0, 0.03)] * 60}, [300.0])
    body['model_id'] = cfg.model_id()
    path = tmp_path / 'map.json'
    path.write_text(json.dumps(body))
    cmap = ConfigMap(body)
    fast, slow = cmap.lookup(5.0, 300.0)[:2], cmap.lookup(0.03, 300.0)[:2]
    assert fast != slow

    listener.listen(ExitSplitDecision, 'edgent/decision', qos.DECISION)
    pub = listener.node.create_publisher(LinkQuality, 'edgent/link_quality', qos.LINK_QUALITY)
    procs.start('edge_node')
    procs.start('camera_node', remap=['edgent/link_quality:=edgent/camera_link'], fps=5.0)
    procs.start('planner_node', deadline_ms=300.0, robot_time_scale=60.0, strategy='map',
                config_map_path=str(path), link_timeout_s=30.0, calibration=False)
    cam = AsyncParameterClient(listener.node, 'camera_node')
    planner = AsyncParameterClient(listener.node, 'planner_node')
    assert listener.spin_until(lambda: cam.services_are_ready()
                               and planner.services_are_ready(), 30.0)
    assert listener.spin_until(lambda: pub.get_subscription_count() > 0, 30.0)

    def settle(bps, want, n=6, wait_s=2.0):
        got = None
        for _ in range(n):
            _publish_link(listener, pub, bps)
            listener.spin_until(lambda: False, 0.2)
        t0 = time.monotonic()
        while time.monotonic() - t0 < wait_s and got != want:
            got = _camera_params(listener, cam)
        return got
    assert settle(5e6, fast) == fast, procs.log('planner_node')
    assert settle(0.03e6, slow) == slow, procs.log('planner_node')
    last = listener.msgs('edgent/decision')[-1]
    assert last.reason.startswith('map state') and last.policy == 'edgent'
    # the per-sample strategy, switched at run time, plans every estimate again
    fut = planner.set_parameters([Parameter('strategy', value='per-sample')])
    assert listener.spin_until(fut.done, 5.0) and fut.result().results[0].successful
    # (a fresh-clone CI saw the map's slow decision still on the camera 2 s after two
    # estimates: the same estimates as before, and up to 10 s for the push)
    assert settle(5e6, decide(problem, 5e6, 300.0).config, n=6, wait_s=10.0) == \
        decide(problem, 5e6, 300.0).config, procs.log('planner_node')
    fut = planner.set_parameters([Parameter('strategy', value='psychic')])
    assert listener.spin_until(fut.done, 5.0) and not fut.result().results[0].successful


def test_map_strategy_needs_a_map(procs, tmp_path):
    bad = tmp_path / 'map.json'
    bad.write_text('{"format": "something else"}')
    p = procs.start('planner_node', name='no_map', strategy='map')
    assert p.wait(30) == 2 and 'config_map_path' in procs.log('no_map')
    p = procs.start('planner_node', name='bad_map', strategy='map', config_map_path=str(bad))
    assert p.wait(30) == 2 and 'map.json: not a configuration map' in procs.log('bad_map')


def test_calibration_makes_the_prediction_track_measured_latency(procs, listener):
    """
    A planner whose model says the robot is 2.5x faster than it is learns the ratio from outcomes.

    Device-only (the edge is unreachable: no link quality). The gap is set against the robot as
    it runs in this test (its first frames' median), not against the offline profile, which
    can be off by that much on a loaded or a faster machine. The published prediction starts at
    the model's, well under the measured latency, and after a few frames is within 35 % of the
    measured median.
    """
    import statistics
    from edgent_ros.msg import ExitSplitDecision
    from edgent_ros.core.artifacts import load_accuracy, read_config
    from edgent_ros.core.optimizer import EdgentProblem, evaluate, scale_robot
    from edgent_ros.core.latency import LatencyModels
    cfg = read_config()
    problem = EdgentProblem.from_model(
        cfg, load_accuracy(model_id=cfg.model_id()), LatencyModels.load(model_id=cfg.model_id()))
    last = problem.exits[-1]
    listener.listen(InferenceResult, 'edgent/outcome', qos.RESULT)
    listener.listen(ExitSplitDecision, 'edgent/decision', qos.DECISION)
    procs.start('camera_node', exit_index=last, split_index=problem.branch_len(last), fps=10.0,
                wait_for_edge_s=0.0, publish_frames=False)

    def measured():
        xs = [o.end_to_end_ms for o in listener.msgs('edgent/outcome')[-20:]
              if o.status == InferenceResult.STATUS_OK]
        return statistics.median(xs)
    assert listener.spin_until(lambda: len(listener.msgs('edgent/outcome')) >= 20, 30.0)
    before = measured()
    profiled = evaluate(problem, 0.0, last, problem.branch_len(last)).total_ms
    scale = before / (2.5 * profiled)          # the model's robot: 2.5x faster than this one
    procs.start('planner_node', deadline_ms=1000.0, robot_time_scale=scale, link_timeout_s=1.0,
                min_dwell_s=0.0)
    assert listener.spin_until(lambda: len(listener.msgs('edgent/outcome')) >= 40, 30.0)

    def tracks():
        d = listener.msgs('edgent/decision')
        return bool(d) and abs(d[-1].predicted_total_ms - measured()) <= 0.35 * measured()
    assert listener.spin_until(tracks, 20.0), (
        [round(d.predicted_total_ms, 2) for d in listener.msgs('edgent/decision')], measured())
    d = listener.msgs('edgent/decision')[-1]
    assert (d.exit_index, d.split_index) == (last, problem.branch_len(last))
    static = evaluate(scale_robot(problem, scale), 0.0, d.exit_index, d.split_index).total_ms
    assert static < 0.6 * measured(), ('the uncalibrated model under-predicts 2.5x', static,
                                       before, measured())
