"""
Replay the committed bag into the real nodes (``edgent-ros play``, separate processes).

- image_raw from the bag into camera_node (source: topic) + edge_node: every frame's class equals
  an in-process reference on the same frame (resized exactly as the camera does);
- link_quality from the bag into planner_node, twice: identical decision sequences;
- a corrupt bag: clear error, exit code 2.
"""

import os
from pathlib import Path
import shutil
import subprocess
import sys

import numpy as np

from edgent_ros.nodes import qos
from edgent_ros.core.weights import load_model
from edgent_ros.nodes.bags import deserialize, read, typestore
from edgent_ros.core.inference import CoInference, preprocess_image
from edgent_ros.msg import ExitSplitDecision, InferenceResult

BAG = Path(__file__).resolve().parents[1] / 'data' / 'demo_bag'


def _play(*args, timeout=120):
    return subprocess.run([sys.executable, '-m', 'edgent_ros.cli.main', 'play', str(BAG), *args],
                          capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


def test_replayed_frames_equal_in_process_reference(procs, listener):
    store = typestore()
    frames = []
    for topic, msgtype, _, data in read(BAG, ['/image_raw']):
        m = deserialize(store, data, msgtype)
        bgr = np.asarray(m.data, np.uint8).reshape(m.height, m.width, 3)
        frames.append(preprocess_image(bgr[:, :, ::-1]))
    runner = CoInference(load_model())
    want = [runner.full_forward(f, 5).class_id for f in frames]

    listener.listen(InferenceResult, 'edgent/outcome', qos.RESULT)
    procs.start('edge_node')
    procs.start('camera_node', source='topic', exit_index=5, split_index=3,
                result_timeout_s=10.0)
    assert listener.spin_until(lambda: listener.node.count_publishers('edgent/outcome') > 0,
                               30.0)
    listener.spin_until(lambda: False, 1.0)   # let the camera match us as well
    r = _play('--topics', '/image_raw', '--rate', '2')
    assert r.returncode == 0, r.stderr
    ok = listener.spin_until(lambda: len(listener.msgs('edgent/outcome')) >= len(frames), 30.0)
    outcomes = sorted(listener.msgs('edgent/outcome'), key=lambda o: o.sequence)
    assert ok, f'{len(outcomes)}/{len(frames)} outcomes\n{procs.log("camera_node")}'
    assert [o.sequence for o in outcomes] == list(range(1, len(frames) + 1))
    assert all(o.status == InferenceResult.STATUS_OK for o in outcomes)
    assert [o.class_id for o in outcomes] == want
    # the driver's TF frame is kept (source: topic), the robot is the camera's namespace
    assert {o.header.frame_id for o in outcomes} == {'front_camera_optical_frame'}
    assert {o.robot for o in outcomes} == {'/'}


def test_replayed_link_quality_gives_identical_decisions(procs, listener):
    listener.listen(ExitSplitDecision, 'edgent/decision', qos.DECISION)
    runs = []
    for run in range(2):
        # a robot 60x slower than profiled: exit 5 runs on the edge while the link carries the
        # frame in time, exit 3 on the robot after the drop (on a fast robot exit 5 on the robot
        # is as accurate and on time throughout, and the planner rightly never moves)
        procs.start('planner_node', name=f'planner_{run}', min_dwell_s=0.0, deadline_ms=300.0,
                    robot_time_scale=60.0, camera_node='no_camera', edge_node='')
        assert listener.spin_until(lambda: len(listener.msgs('edgent/decision')) > 0, 30.0)
        r = _play('--topics', '/edgent/link_quality', '--rate', '1')
        assert r.returncode == 0, r.stderr
        listener.spin_until(lambda: False, 1.0)
        procs.stop(f'planner_{run}')
        decisions = listener.msgs('edgent/decision')
        seq = [(d.exit_index, d.split_index, d.feasible) for d in decisions]
        # a decision is republished when its predicted latency moves > 5 %: compare changes
        runs.append([c for i, c in enumerate(seq) if i == 0 or c != seq[i - 1]])
        listener.received['edgent/decision'].clear()
    assert runs[0] == runs[1], runs
    assert len(set(runs[0])) >= 2, 'the bandwidth drop and outage must change the decision'


def test_play_corrupt_bag_is_a_clear_error(tmp_path):
    bad = tmp_path / 'bad_bag'
    shutil.copytree(BAG, bad)
    (bad / 'demo_bag.mcap').write_bytes(b'\x89MCAP0\r\n' + b'garbage' * 10)
    r = subprocess.run([sys.executable, '-m', 'edgent_ros.cli.main', 'play', str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert 'bad_bag' in r.stderr and 'error' in r.stderr
