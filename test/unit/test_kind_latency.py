"""Per-kind latency regressions of any cut model (core.kind_latency): fit, unseen kinds, JSON."""

import json
import random

import pytest

from edgent_ros.core.artifacts import ArtifactError
from edgent_ros.core.kind_latency import (BlockEstimate, fit_kind, fit_kind_latency, FLOOR_MS,
                                          is_module_call, KIND_FEATURES, KindLatency,
                                          KindRegression, op_features, regression_key,
                                          UnseenKindError)


def conv_op(cin, cout, h, k=3, s=1, inplace=None):
    ho = (h + 2 * (k // 2) - k) // s + 1
    return {'kind': 'conv', 'name': 'c', 'in_shape': [cin, h, h], 'out_shape': [cout, ho, ho],
            'flops': 2 * cout * ho * ho * cin * k * k, 'params': cout * cin * k * k,
            'detail': {'kernel': [k, k], 'stride': [s, s], 'groups': 1}}


def elem_op(kind, c, h, **detail):
    return {'kind': kind, 'name': kind, 'in_shape': [c, h, h], 'out_shape': [c, h, h],
            'flops': c * h * h, 'params': 0, 'detail': detail}


def test_fit_recovers_the_coefficients_of_noiseless_data():
    rng = random.Random(0)
    ops = [conv_op(rng.choice((16, 32, 64, 128)), rng.choice((16, 32, 64, 128)),
                   rng.choice((7, 14, 28, 56)), rng.choice((1, 3))) for _ in range(40)]
    true = {'flops': 1e-8, 'out_elems': 2e-6}
    ys = [0.01 + sum(c * op_features(o)[f] for f, c in true.items()) for o in ops]
    reg = fit_kind('conv', [op_features(o) for o in ops], ys)
    got = dict(zip(reg.features, reg.coef))
    assert reg.intercept_ms == pytest.approx(0.01, rel=1e-3)
    for f, c in true.items():
        assert got[f] == pytest.approx(c, rel=1e-3)
    assert all(got.get(f, 0.0) < 1e-12 for f in KIND_FEATURES['conv'] if f not in true)
    assert reg.stats['n'] == 40 and reg.stats['cv_mape_pct'] < 0.1
    assert reg.stats['train_mape_pct'] < 0.1


def test_fit_is_robust_to_one_timing_hiccup_and_unbiased_under_scatter():
    rng = random.Random(1)
    hs = [rng.choice((4, 8, 16, 32, 64)) for _ in range(60)]
    feats = [op_features(elem_op('relu', 64, h)) for h in hs]
    truth = [0.002 + 1e-6 * f['out_elems'] for f in feats]
    ys = [t * rng.uniform(0.9, 1.1) for t in truth]
    ys[0] *= 30.0                                   # one 30x hiccup
    reg = fit_kind('relu', feats, ys)
    ratios = sorted(reg.predict(f) / t for f, t in zip(feats, truth))
    assert 0.95 < ratios[len(ratios) // 2] < 1.05   # median prediction on the true time
    assert reg.coef[reg.features.index('out_elems')] == pytest.approx(1e-6, rel=0.1)


def test_fit_refuses_bad_input():
    feats = [op_features(elem_op('relu', 8, 8))] * 3
    with pytest.raises(ValueError, match='unknown op kind'):
        fit_kind('swish2', feats, [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match='> 0'):
        fit_kind('relu', feats, [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match='>= 2 samples'):
        fit_kind('relu', feats[:1], [1.0])
    with pytest.raises(ValueError, match='non-negative|>= 0'):
        KindRegression('relu', ('out_elems',), [-1.0], 0.0)
    with pytest.raises(ValueError, match='subset'):
        KindRegression('relu', ('flops_per_byte',), [1.0], 0.0)


def model():
    regs = {'conv': KindRegression('conv', ('flops',), [1e-8], 0.01),
            'relu': KindRegression('relu', ('out_elems',), [1e-6], 0.001),
            'add': KindRegression('add', ('out_elems',), [2e-6], 0.001)}
    return KindLatency('edge', regs, block_overhead_ms=0.003, op_overhead_ms=0.004,
                       info={'threads': 1})


def test_block_is_the_sum_of_its_ops_plus_overheads():
    k = model()
    ops = [conv_op(16, 16, 8), elem_op('relu', 16, 8), elem_op('add', 16, 8)]
    parts = [k.predict_op(o) for o in ops]
    assert parts[1] == pytest.approx(0.001 + 1e-6 * 16 * 64)
    ms, unseen = k.predict_block(ops)
    # conv and relu are module calls (+ op overhead), the add is a function
    assert ms == pytest.approx(sum(parts) + 0.003 + 2 * 0.004) and unseen == []
    est = k.block_ms(ops)
    assert est == BlockEstimate(ms, 'regression', (), ms)


def test_an_unseen_kind_is_none_and_reported_never_zero():
    k = model()
    weird = {'kind': 'other:MyAttention', 'in_shape': [16, 8, 8], 'out_shape': [16, 8, 8],
             'flops': 10 ** 6, 'params': 0, 'detail': {}}
    assert k.predict_op(weird) is None
    assert k.predict_op(elem_op('gelu', 16, 8)) is None        # a known kind, not profiled
    ops = [conv_op(16, 16, 8), weird, elem_op('gelu', 16, 8), weird]
    ms, unseen = k.predict_block(ops)
    assert unseen == ['gelu', 'other:MyAttention']
    assert ms > 0
    with pytest.raises(UnseenKindError, match='gelu, other:MyAttention.*profile --model'):
        k.block_ms(ops)
    with pytest.raises(UnseenKindError):
        k.block_ms(ops, measured_ms=0.0)          # a zero "measurement" is no measurement
    est = k.block_ms(ops, measured_ms=1.25)
    assert est.ms == 1.25 and est.source == 'measured'
    assert est.unseen == ('gelu', 'other:MyAttention') and est.regression_ms == ms


def test_inplace_flag_selects_the_copy_regression():
    assert regression_key(elem_op('relu', 8, 8)) == 'relu'                  # default: in place
    assert regression_key(elem_op('relu', 8, 8, inplace=True)) == 'relu'
    assert regression_key(elem_op('relu', 8, 8, inplace=False)) == 'relu:copy'
    assert regression_key(elem_op('gelu', 8, 8, inplace=False)) == 'gelu'  # never in place
    k = model()
    assert k.predict_op(elem_op('relu', 8, 8, inplace=False)) is None     # not fitted here


def test_module_calls_by_detail_else_by_kind():
    assert is_module_call(conv_op(3, 8, 8))
    assert not is_module_call(elem_op('add', 8, 8))
    assert is_module_call(elem_op('add', 8, 8, call='call_module'))
    assert not is_module_call(elem_op('relu', 8, 8, call='call_function'))


def test_fit_kind_latency_skips_kinds_with_too_few_samples():
    rng = random.Random(2)
    samples = []
    for _ in range(12):
        op = elem_op('relu', 16, rng.choice((4, 8, 16, 32)))
        samples.append((op, 0.001 + 1e-6 * op_features(op)['out_elems']))
    samples.append((elem_op('tanh', 8, 8), 0.01))
    samples.append(({'kind': 'other:X', 'in_shape': [1], 'out_shape': [1], 'flops': 0,
                     'params': 0}, 0.01))
    k = fit_kind_latency('edge', samples, 0.002, 0.003, {'threads': 1})
    assert k.kinds == ('relu',)
    assert sorted(k.info['not_fitted']) == ['other:X', 'tanh']
    assert k.predict_op(elem_op('tanh', 8, 8)) is None


def test_json_round_trip_keeps_every_prediction(tmp_path):
    k = model()
    path = tmp_path / 'kinds.json'
    k.save(path)
    k.scaled(4.0, 'robot').save(path)                 # merged beside the edge
    edge, robot = KindLatency.load(path, 'edge'), KindLatency.load(path, 'robot')
    ops = [conv_op(32, 64, 16), elem_op('relu', 64, 16), elem_op('add', 64, 16)]
    assert edge.predict_block(ops) == k.predict_block(ops)
    assert edge.kinds == k.kinds and edge.info == k.info
    assert robot.predict_block(ops)[0] == pytest.approx(4.0 * k.predict_block(ops)[0])
    assert robot.info['scaled_from'] == 'edge' and robot.info['time_factor'] == 4.0
    with pytest.raises(ArtifactError, match="no kind regressions for host 'jetson'"):
        KindLatency.load(path, 'jetson')
    body = json.loads(path.read_text())
    body['hosts']['edge']['kinds']['relu']['coef'] = [-1.0]
    path.write_text(json.dumps(body))
    with pytest.raises(ArtifactError, match='checksum'):
        KindLatency.load(path, 'edge')


def test_from_json_names_a_bad_regression():
    body = model().to_json()
    body['kinds']['relu']['features'] = ['bogus']
    with pytest.raises(ArtifactError, match='edge/relu'):
        KindLatency.from_json('edge', body, source='x.json')
    assert KindLatency.from_json('edge', model().to_json()).predict_op(
        elem_op('relu', 2, 2)) == pytest.approx(0.001 + 8e-6)


def test_floor_and_scaling_guard():
    reg = KindRegression('identity', (), [], 0.0)
    assert reg.predict({}) == FLOOR_MS
    with pytest.raises(ValueError):
        model().scaled(0.0, 'robot')
    with pytest.raises(ValueError):
        KindLatency('edge', {}, op_overhead_ms=-1.0)


# ------------------------------------------------------------- offline.kind_profile (torch)

def test_every_grid_kind_probes_as_core_chain_describes_it():
    from edgent_ros.offline import kind_profile as kp
    configs = kp.grid_configs(0, quick=True)
    keys = {c.key for c in configs}
    assert {base for base in KIND_FEATURES} <= {k.split(':')[0] for k in keys}
    for key in sorted(keys):
        cfg = next(c for c in configs if c.key == key)
        p = kp.probe(cfg)
        assert regression_key(p.op) == key and p.op['detail']['call'].startswith('call_')
        assert p.call() is not None
    assert kp.grid_configs(0) == kp.grid_configs(0)        # seeded
    assert len(kp.grid_configs(0)) >= 600


def test_quick_profile_fits_a_regression_per_kind(tmp_path):
    from edgent_ros.offline import kind_profile as kp
    from edgent_ros.offline.profiling import HostInfo, Timing
    configs = [c for c in kp.grid_configs(0, quick=True) if c.key in ('relu', 'add', 'flatten')]
    rows = kp.profile_kinds(configs, HostInfo('edge', 'none', 1), Timing(2, 1), rounds=2)
    assert len(rows) == len(configs) and all(float(r['median_ms']) > 0 for r in rows)
    kp.write_rows(rows, tmp_path / 'p.csv')
    back = kp.read_rows(tmp_path / 'p.csv')
    assert [kp.row_op(r) for r in back] == [kp.row_op(r) for r in rows]
    block, per_op = kp.dispatch_overhead_ms(Timing(5, 1), trials=1)
    k = kp.fit_rows(back, 'edge', (block, per_op))
    assert k.kinds == ('add', 'flatten', 'relu') and k.op_overhead_ms == per_op
