"""Unit tests of the testbed's robot emulation hook and camera command (no ROS, no sleeping)."""

from types import SimpleNamespace

import pytest

from edgent_ros.evaluation.emulated_camera import check_factor, check_pacing, ComputeSlowdown, \
    WarmPass
from edgent_ros.evaluation import testbed_session


def test_slowdown_waits_f_minus_one_times_the_layers_cpu_time():
    slept = []
    hook = ComputeSlowdown(4.0, sleep=slept.append)
    out = SimpleNamespace(device_ms=5.0, layers_cpu_ms=2.0)
    hook(out)
    assert slept == [pytest.approx(0.006)]            # (4 - 1) x 2 ms, in seconds
    assert out.device_ms == pytest.approx(11.0)      # the wait is the robot's compute


def test_total_pacing_waits_until_the_layers_took_f_times_their_cpu_time():
    # 2 ms of CPU that took 3 ms of wall time (a quota throttle inside the layers): the robot
    # that is 4 x slower takes 8 ms, throttle or not, so the wait is 5 ms
    slept = []
    hook = ComputeSlowdown(4.0, sleep=slept.append, pacing='total')
    out = SimpleNamespace(device_ms=5.0, layers_ms=3.0, layers_cpu_ms=2.0)
    hook(out)
    assert slept == [pytest.approx(0.005)]
    assert out.device_ms == pytest.approx(10.0)      # 2 ms outside the layers + 8 ms
    # a throttle longer than f x the CPU time: no wait, the frame keeps its wall time
    slept.clear()
    out = SimpleNamespace(device_ms=12.0, layers_ms=10.0, layers_cpu_ms=2.0)
    hook(out)
    assert slept == [] and out.device_ms == 12.0
    # the same frame paced 'add' keeps the throttle on top: 5 + (4 - 1) x 2
    out = SimpleNamespace(device_ms=5.0, layers_ms=3.0, layers_cpu_ms=2.0)
    ComputeSlowdown(4.0, sleep=slept.append)(out)
    assert out.device_ms == pytest.approx(11.0)


def test_warm_pacing_times_the_second_pass_and_spends_the_first_inside_the_wait():
    calls = []

    def step(frame, exit_index, split_index, threshold=0.0, encoding='raw'):
        calls.append((frame, exit_index, split_index, threshold, encoding))
        # the first pass is the cold one: more CPU time than the second
        cpu = 3.0 if len(calls) == 1 else 2.0
        return SimpleNamespace(device_ms=2.5, layers_ms=cpu, layers_cpu_ms=cpu)

    out = WarmPass(step)('img', 4, 7, 0.0, encoding='bn8')
    assert calls == [('img', 4, 7, 0.0, 'bn8')] * 2   # the same frame and configuration twice
    assert out.layers_cpu_ms == 2.0 and out.first_pass_ms >= 0.0
    out.first_pass_ms = 4.0   # the first pass's wall time, as measured
    slept = []
    ComputeSlowdown(4.0, sleep=slept.append, pacing='warm')(out)
    # the robot's time is (4 - 1) x the warm pass's 2 ms on top of it, as 'add' would give;
    # the 4 ms the first pass took are part of that wait, so only 2 ms are slept
    assert out.device_ms == pytest.approx(2.5 + 6.0)
    assert slept == [pytest.approx(0.002)]
    # a first pass longer than the whole wait: nothing slept, the robot's time unchanged
    out = SimpleNamespace(device_ms=2.5, layers_cpu_ms=2.0, first_pass_ms=9.0)
    slept.clear()
    ComputeSlowdown(4.0, sleep=slept.append, pacing='warm')(out)
    assert slept == [] and out.device_ms == pytest.approx(8.5)


def test_warm_pass_passes_a_refusal_of_the_frame_on():
    def step(*args, **kwargs):
        raise LookupError('no bottleneck at this cut')

    with pytest.raises(LookupError, match='no bottleneck'):
        WarmPass(step)('img', 4, 7)


@pytest.mark.parametrize('bad', ['sum', '', None, 1])
def test_bad_pacing_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match='compute_pacing must be one of add, total, warm'):
        check_pacing(bad)
    with pytest.raises(ValueError, match='compute_pacing'):
        ComputeSlowdown(2.0, pacing=bad)


def test_slowdown_one_does_nothing():
    slept = []
    out = SimpleNamespace(device_ms=5.0, layers_cpu_ms=2.0)
    ComputeSlowdown(1.0, sleep=slept.append)(out)
    assert slept == [] and out.device_ms == 5.0


@pytest.mark.parametrize('bad', [0.5, 0.0, -2.0, 1e9, float('nan'), True, '2'])
def test_bad_factor_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match='compute_slowdown'):
        check_factor(bad)


def test_camera_command_picks_the_emulated_camera_only_when_slowed(monkeypatch):
    monkeypatch.setattr(testbed_session, 'executable', lambda name: f'/install/{name}')
    argv = testbed_session.camera_argv({'fps': 5.0, 'compute_slowdown': 1.0})
    assert argv[0] == '/install/camera_node' and 'compute_slowdown:=1.0' not in argv
    argv = testbed_session.camera_argv({'fps': 5.0, 'compute_slowdown': 2.15})
    assert argv[1:3] == ['-m', 'edgent_ros.evaluation.emulated_camera']
    assert argv[3] == '--ros-args' and 'compute_slowdown:=2.15' in argv and 'fps:=5.0' in argv
    assert testbed_session.camera_argv({})[0] == '/install/camera_node'
    # the production camera has no compute_pacing either
    argv = testbed_session.camera_argv({'compute_slowdown': 1.0, 'compute_pacing': 'total'})
    assert argv[0] == '/install/camera_node' and not any('compute_pacing' in a for a in argv)
    argv = testbed_session.camera_argv({'compute_slowdown': 21.5, 'compute_pacing': 'total'})
    assert 'compute_pacing:=total' in argv
    # the testbed's cameras keep frame-sized probe pairs (how its results were measured)
    assert 'probe_max_bytes:=0' in argv
    assert 'probe_max_bytes:=4096' in testbed_session.camera_argv({'probe_max_bytes': 4096})
