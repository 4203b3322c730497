"""
camera_node and edge_node as two OS processes over real DDS (issue: foundation, item 6).

N labelled frames from the bundled sample are sent for several (exit, split) pairs, including
split 0 (edge-only: the raw frame crosses) and split = end (device-only: the robot publishes
the result itself and no frame tensor crosses the link). Each result's class id must equal an
in-process full forward of the same frame.
"""

import pytest

from edgent_ros.nodes import qos
from edgent_ros.core.weights import load_model
from edgent_ros.core.datasets import load_sample
from edgent_ros.core.inference import CoInference
from edgent_ros.msg import InferenceResult, Tensor

N = 12


@pytest.fixture(scope='module')
def reference():
    runner = CoInference(load_model())
    x, y = load_sample()
    return runner, x, y


@pytest.mark.parametrize('exit_index,split_index,encoding', [
    (5, 0, 'raw'), (3, 4, 'raw'), (1, 3, 'raw'), (5, 'end', 'raw'), (4, 6, 'fp16'),
    (5, 0, 'compressed')])
def test_frames_cross_processes(procs, listener, reference, exit_index, split_index, encoding):
    runner, x, y = reference
    n_layers = runner.branch_len(exit_index)
    if split_index == 'end':
        split_index = n_layers
    listener.listen(InferenceResult, 'edgent/outcome', qos.RESULT)
    listener.listen(Tensor, 'edgent/tensor', qos.TENSOR)
    procs.start('edge_node')
    camera = procs.start('camera_node', exit_index=exit_index, split_index=split_index,
                         max_frames=N, fps=10.0, exit_when_done=True, loop=False,
                         encoding=encoding, max_in_flight=N,   # no pacing drops on a busy CI host
                         wait_for_subscribers=1, wait_for_edge_s=30.0, result_timeout_s=10.0)
    ok = listener.spin_until(lambda: len(listener.msgs('edgent/outcome')) >= N, timeout=60)
    outcomes = listener.msgs('edgent/outcome')
    assert ok, f'{len(outcomes)}/{N} outcomes; camera log:\n{procs.log("camera_node")}' \
               f'\nedge log:\n{procs.log("edge_node")}'
    camera.wait(20)
    assert camera.returncode == 0, procs.log('camera_node')
    assert sorted(o.sequence for o in outcomes) == list(range(1, N + 1))
    for o in outcomes:
        i = o.sequence - 1
        assert o.status == InferenceResult.STATUS_OK, (o.sequence, o.status, o.drop_reason)
        assert (o.exit_index, o.split_index) == (exit_index, split_index)
        assert o.class_id == runner.full_forward(x[i], exit_index).class_id
        assert o.true_class_id == int(y[i])
        assert o.end_to_end_ms > 0
        assert o.finished_on == (InferenceResult.FINISHED_ON_DEVICE if split_index == n_layers
                                 else InferenceResult.FINISHED_ON_EDGE)
    frames = [t for t in listener.msgs('edgent/tensor')
              if not t.probe]
    if split_index == n_layers:
        assert frames == [], 'device-only frames must not cross the link'
    else:
        # the listener may join after the first frame (discovery race); outcomes above already
        # show every frame finished on the edge
        assert 0 < len(frames) <= N
        assert {t.sequence for t in frames} <= set(range(1, N + 1))
        for t in frames:
            assert (t.exit_index, t.split_index, t.model_id) == \
                (exit_index, split_index, runner.model_id)
            assert list(t.shape) == list(runner.expected_shape(exit_index, split_index))
