"""
/diagnostics levels from a recent window, on live nodes (issue 19, item 6).

The edge goes WARN when it refuses malformed frames and back to OK once ``diagnostics_window_s``
has passed without refusals (a counter since start would stay WARN forever), its counters since
start still in the values. The planner publishes a status too: ERROR while the camera node
cannot be reached, OK once camera and edge run, WARN while no configuration meets the deadline.
"""

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient

from edgent_ros.core.artifacts import read_config
from edgent_ros.core.codec import encode, fill_message
from edgent_ros.core.datasets import load_sample
from edgent_ros.core.diagnostics import Level
from edgent_ros.msg import InferenceResult, Tensor
from edgent_ros.nodes import qos

WINDOW_S = 2.0


def test_levels_are_the_message_constants():
    assert [bytes([int(lv)]) for lv in Level] == [
        DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR,
        DiagnosticStatus.STALE]


def _frame_tensor(seq, **overrides):
    """Return a valid split-0 Tensor (a sample frame, final exit), then apply ``overrides``."""
    frame = load_sample()[0][seq % 200]
    m = Tensor()
    m.header.frame_id = 'camera_optical_frame'
    m.robot = '/'
    m.sequence = seq
    m.model_id = read_config().model_id()
    m.exit_index = 5
    m.split_index = 0
    fill_message(m, encode(frame[None].copy()))
    for k, v in overrides.items():
        setattr(m, k, v)
    return m


class _Statuses:
    """The statuses of one node heard on /diagnostics, with a mark to look only at newer ones."""

    def __init__(self, listener, node: str):
        self.listener, self.node, self.mark = listener, node, 0

    def all(self):
        return [st for arr in self.listener.msgs('/diagnostics') for st in arr.status
                if st.name.endswith(self.node)]

    def since_mark(self):
        return self.all()[self.mark:]

    def set_mark(self):
        self.mark = len(self.all())

    def wait(self, level, timeout):
        """Wait for a status at ``level`` (a DiagnosticStatus byte) after the mark; return it."""
        found = []

        def seen():
            found[:] = [st for st in self.since_mark() if st.level == level]
            return bool(found)
        self.listener.spin_until(seen, timeout)
        return found[0] if found else None


def _values(st):
    return {kv.key: kv.value for kv in st.values}


def test_edge_warn_clears_after_refusals_stop(procs, listener):
    listener.listen(InferenceResult, 'edgent/result', qos.RESULT)
    listener.listen(DiagnosticArray, '/diagnostics', qos.VIZ)
    pub = listener.node.create_publisher(Tensor, 'edgent/tensor', qos.TENSOR)
    procs.start('edge_node', diagnostics_window_s=WINDOW_S)
    assert listener.spin_until(lambda: pub.get_subscription_count() > 0, 30.0)
    edge = _Statuses(listener, 'edge_node')
    seq = 0

    def send(m):
        pub.publish(m)
        ok = listener.spin_until(lambda: any(r.sequence == m.sequence
                                             for r in listener.msgs('edgent/result')), 10.0)
        assert ok, f'no answer for sequence {m.sequence}\n{procs.log("edge_node")}'
        return [r for r in listener.msgs('edgent/result') if r.sequence == m.sequence][-1]

    seq += 1
    assert send(_frame_tensor(seq)).status == InferenceResult.STATUS_OK
    st = edge.wait(DiagnosticStatus.OK, 10.0)
    assert st is not None, [(s.level, s.message) for s in edge.all()]
    assert _values(st)['diagnostics_window_s'] == str(WINDOW_S)

    edge.set_mark()
    for bad in ({'data': b''}, {'model_id': 'resnet-0'}, {'data_type': 99}):
        seq += 1
        assert send(_frame_tensor(seq, **bad)).status == InferenceResult.STATUS_REFUSED
    warn = edge.wait(DiagnosticStatus.WARN, 5.0)
    assert warn is not None, [(s.level, s.message) for s in edge.since_mark()]
    assert '3 frames refused' in warn.message, warn.message
    assert _values(warn)['recent_frames_refused'] == '3'

    # refusals stop, good frames flow: OK again once the window has passed
    edge.set_mark()
    ok = None
    for _ in range(int(4 * (WINDOW_S + 4.0))):     # 4 frames/s, up to window + 4 s
        seq += 1
        assert send(_frame_tensor(seq)).status == InferenceResult.STATUS_OK
        listener.spin_until(lambda: False, 0.25)
        ok = edge.wait(DiagnosticStatus.OK, 0.0)
        if ok is not None:
            break
    assert ok is not None, [(s.level, s.message) for s in edge.since_mark()]
    values = _values(ok)
    assert values['frames_refused'] == '3'             # since start: still counted
    assert values['recent_frames_refused'] == '0'
    assert int(values['recent_frames_ok']) >= 1


def test_planner_publishes_diagnostics(procs, listener):
    listener.listen(DiagnosticArray, '/diagnostics', qos.VIZ)
    procs.start('planner_node', diagnostics_window_s=WINDOW_S, calibration=False)
    planner = _Statuses(listener, 'planner_node')
    err = planner.wait(DiagnosticStatus.ERROR, 30.0)   # no camera_node to push to
    assert err is not None, procs.log('planner_node')
    assert 'camera_node not reachable' in err.message, err.message
    values = _values(err)
    for key in ('policy', 'strategy', 'exit_index', 'split_index', 'encoding', 'feasible',
                'link_estimate_age_s', 'link_timeout_s', 'calibration', 'repairs',
                'last_push:camera_node', 'last_push:edge_node', 'diagnostics_window_s'):
        assert key in values, (key, values)
    assert values['policy'] == 'edgent' and values['link_estimate_age_s'] == 'never'
    assert values['calibration'] == 'off'
    assert values['repairs'].startswith('p 0.0000 per packet, 0 repair costs; 0 frames'), values

    # camera and edge up: the camera's link quality arrives, pushes succeed -> OK
    procs.start('edge_node')
    procs.start('camera_node', fps=5.0)
    planner.set_mark()
    ok = planner.wait(DiagnosticStatus.OK, 90.0)
    assert ok is not None, ([(s.level, s.message) for s in planner.since_mark()][-5:],
                            procs.log('planner_node'))
    assert _values(ok)['last_push:camera_node'].startswith('ok'), _values(ok)

    # a deadline nothing meets: WARN, naming it
    client = AsyncParameterClient(listener.node, 'planner_node')
    assert listener.spin_until(client.services_are_ready, 10.0)
    fut = client.set_parameters([Parameter('deadline_ms', value=1.0)])
    assert listener.spin_until(fut.done, 10.0) and fut.result().results[0].successful
    planner.set_mark()
    warn = planner.wait(DiagnosticStatus.WARN, 10.0)
    assert warn is not None, [(s.level, s.message) for s in planner.since_mark()]
    assert 'no configuration meets the deadline' in warn.message, warn.message
    assert _values(warn)['feasible'] == 'False'
