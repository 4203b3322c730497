"""Unit tests of edgent_ros.offline.profiling (no ROS): configurations, timing, CSVs, robot CPU."""

import argparse
import json
import os
import time

import pytest
import torch

from edgent_ros.offline import profiling
from edgent_ros.core.arch import layer_table, NUM_EXITS, output_shape
from edgent_ros.core.model import MultiExitAlexNet
from edgent_ros.offline.profiling import (BRANCH_COLUMNS, HostInfo, measure_branches, meta_path,
                                          PROFILE_COLUMNS, profile_configs, profile_layers,
                                          read_csv, RobotCpuLimit, spec_from_row, time_call,
                                          Timing, write_csv)
from edgent_ros.offline.hosts import cfs_quota_us, CGROUP_CPU_ROOT, cgroup_dir, cgroup_procs_path
from edgent_ros.cli.offline import add_profile_parser
from edgent_ros.offline.training import SHIPPED_CONFIG


@pytest.fixture
def one_thread():
    """Run torch on one thread (a shared 2-core machine times 2 threads badly); restore after."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _model_keys():
    keys = set()
    for e in range(1, NUM_EXITS + 1):
        for r in layer_table(SHIPPED_CONFIG, e):
            keys.add(profiling.ProfileConfig(r.spec, tuple(r.in_shape)).key())
    return keys


def test_full_configs_cover_model_and_vary_every_kind():
    configs = profile_configs(quick=False)
    keys = [c.key() for c in configs]
    assert len(keys) == len(set(keys)), 'duplicates'
    assert _model_keys() <= set(keys)
    by_kind = {}
    for c in configs:
        by_kind.setdefault(c.spec.kind, []).append(c)
        assert all(d >= 1 for d in output_shape(c.spec, c.in_shape))
    assert set(by_kind) == {'conv', 'relu', 'pool', 'dropout', 'fc'}
    assert all(len(v) >= 25 for v in by_kind.values()), {k: len(v) for k, v in by_kind.items()}
    conv = by_kind['conv']
    assert {c.spec.kernel for c in conv} == {1, 3, 5}
    assert {c.spec.stride for c in conv} == {1, 2}
    assert len({c.in_shape[1] for c in conv}) >= 5
    assert len({c.spec.out_channels for c in by_kind['fc']}) >= 5


def test_quick_configs_small_and_deterministic():
    quick = profile_configs(quick=True)
    assert 15 <= len(quick) <= 25
    assert {c.spec.kind for c in quick} == {'conv', 'relu', 'pool', 'dropout', 'fc'}
    assert [c.key() for c in quick] == [c.key() for c in profile_configs(quick=True)]
    assert [c.key() for c in profile_configs(False, seed=1)] \
        != [c.key() for c in profile_configs(False, seed=0)]


def test_profile_layers_writes_well_formed_csv(tmp_path, one_thread):
    configs = profile_configs(quick=True)[:6]
    host = HostInfo('edge', 'none', threads=1)
    rows = profile_layers(configs, host, Timing(repeats=3, warmup=1), progress=False)
    path = tmp_path / 'profile_edge.csv'
    write_csv(rows, path, PROFILE_COLUMNS)
    back = read_csv(path, PROFILE_COLUMNS)
    with path.open() as f:
        assert f.readline().strip() == ','.join(PROFILE_COLUMNS)
    assert len(back) == len(configs)
    for pc, r in zip(configs, back):
        assert r['host'] == 'edge' and r['emulation'] == 'none'
        assert r['kind'] == pc.spec.kind and int(r['repeats']) == 3
        med, p10, p90 = float(r['median_ms']), float(r['p10_ms']), float(r['p90_ms'])
        assert 0 < p10 <= med <= p90
        spec, in_shape = spec_from_row(r)
        assert profiling.ProfileConfig(spec, in_shape).key() == pc.key()
        assert int(r['input_size']) == int(torch.Size(in_shape).numel())


def test_time_call_window_and_factor():
    stats = time_call(lambda: None, Timing(repeats=2, warmup=0), window_s=0.005)
    assert stats['calls'] > 2 and stats['repeats'] == 2
    stats = time_call(lambda: time.sleep(0.002), Timing(repeats=3, warmup=0), time_factor=10)
    assert stats['median_ms'] >= 20.0
    assert stats['p10_ms'] <= stats['median_ms'] <= stats['p90_ms']


def test_timing_rejects_bad_values():
    with pytest.raises(ValueError, match='repeats'):
        Timing(repeats=0)
    with pytest.raises(ValueError, match='warmup'):
        Timing(repeats=1, warmup=-1)


def test_measure_branches_rows(one_thread):
    model = MultiExitAlexNet(SHIPPED_CONFIG).eval()
    rows = measure_branches(model, HostInfo('edge'), Timing(1, 0), progress=False)
    n_layers = sum(model.branch_len(e) for e in range(1, NUM_EXITS + 1))
    assert len(rows) == 3 * n_layers
    assert set(rows[0]) == set(BRANCH_COLUMNS)
    for r in rows:
        assert r['median_ms'] > 0 and r['model_id'] == SHIPPED_CONFIG.model_id()
        n = model.branch_len(r['exit'])
        if r['part'] == 'prefix':
            assert r['start'] == 0 and r['stop'] == r['split'] >= 1
        elif r['part'] == 'suffix':
            assert r['stop'] == n and r['start'] == r['split'] < n
        else:
            assert r['stop'] == r['start'] + 1
    assert rows[0]['in_shape'] == '3x32x32'
    with pytest.raises(ValueError, match='parts'):
        measure_branches(model, HostInfo('edge'), Timing(1, 0), parts=('middle',))


def test_profile_subcommand_quick(tmp_path, one_thread):
    parser = argparse.ArgumentParser()
    add_profile_parser(parser.add_subparsers(dest='cmd', required=True))
    out = tmp_path / 'p.csv'
    args = parser.parse_args(['profile', '--host', 'edge', '--quick', '--no-branches',
                              '--repeats', '1', '--warmup', '0', '--threads', '1',
                              '--out', str(out), '--no-progress'])
    assert args.func(args) == 0
    assert len(read_csv(out, PROFILE_COLUMNS)) == len(profile_configs(quick=True))
    meta = json.loads(meta_path(out).read_text())
    assert meta['host']['emulation'] == 'none' and meta['batch_size'] == 1
    with pytest.raises(SystemExit):
        parser.parse_args(['profile', '--host', 'phone'])


def test_cgroup_helpers_validate():
    assert cfs_quota_us(0.25, 100000) == 25000
    assert cgroup_procs_path('edgent_robot') == CGROUP_CPU_ROOT / 'edgent_robot' / 'cgroup.procs'
    assert cgroup_dir('/') == CGROUP_CPU_ROOT
    with pytest.raises(ValueError, match=r"\.\."):
        cgroup_dir('../etc')
    with pytest.raises(ValueError, match='0'):
        cfs_quota_us(0.0)
    with pytest.raises(ValueError, match='500'):
        cfs_quota_us(0.25, 500)
    with pytest.raises(ValueError, match='250 us'):
        cfs_quota_us(0.25, 1000)       # under the kernel's 1 ms minimum quota
    with pytest.raises(ValueError, match='threads'):
        RobotCpuLimit(threads=0)


def test_robot_fallback_without_cgroup(monkeypatch):
    monkeypatch.setattr(profiling, 'cgroup_v1_cpu_available', lambda: False)
    before = torch.get_num_threads()
    with RobotCpuLimit(quota=0.25, threads=2) as lim:
        assert lim.emulation == 'thread+factor'
        assert lim.time_factor == pytest.approx(4.0)
        assert lim.window_s() == 0.0
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with RobotCpuLimit(quota=0.25, slowdown_factor=6.0) as lim:
        assert lim.time_factor == 6.0
    with pytest.raises(PermissionError):
        with RobotCpuLimit(allow_fallback=False):
            pass


def test_robot_factor_emulation_forced(monkeypatch):
    """force_factor: 1 thread x factor even where a cgroup is available (testbed consistency)."""
    monkeypatch.setattr(profiling, 'cgroup_v1_cpu_available', lambda: True)
    monkeypatch.setattr(profiling, 'ensure_cgroup', lambda *a: pytest.fail('cgroup used'))
    with RobotCpuLimit(quota=0.25, threads=2, force_factor=True) as lim:
        assert lim.emulation == 'thread+factor' and lim.time_factor == pytest.approx(4.0)
        assert torch.get_num_threads() == 1 and lim.window_s() == 0.0


@pytest.mark.skipif(not profiling.cgroup_v1_cpu_available(),
                    reason='needs root and a cgroup v1 cpu controller at /sys/fs/cgroup/cpu')
def test_robot_cgroup_limits_and_cleans_up():
    name = f'edgent_robot_unittest_{os.getpid()}'
    before = profiling.current_cpu_cgroup()
    try:
        profiling.ensure_cgroup(name, 0.5, 20000)       # stale cgroup of a "crashed" run
        with RobotCpuLimit(quota=0.25, threads=1, period_us=10000, name=name) as lim:
            path = cgroup_dir(name)
            assert lim.emulation == 'cgroup' and lim.time_factor == 1.0
            assert profiling.current_cpu_cgroup() == '/' + name
            assert os.getpid() in profiling.cgroup_pids(name)
            assert (path / 'cpu.cfs_period_us').read_text().strip() == '10000'
            assert (path / 'cpu.cfs_quota_us').read_text().strip() == '2500'
            t_end = time.process_time() + 0.03      # 30 ms of CPU > the 2.5 ms quota
            while time.process_time() < t_end:
                pass
            stat = dict(line.split() for line in (path / 'cpu.stat').read_text().splitlines())
            assert int(stat['nr_throttled']) > 0
        assert not cgroup_dir(name).exists()
        assert profiling.current_cpu_cgroup() == before
    finally:
        profiling.remove_cgroup(name, evict=True)
