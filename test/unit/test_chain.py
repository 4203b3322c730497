"""
Bring your own model (issue 16): cutting any traceable classifier where one tensor crosses.

Every split of every exit equals the unsplit forward for the shipped models and the models a
user brings (examples/models, random weights); models that cannot be cut are refused with the
place and the reason; descriptions are validated field by field; heads are tied to their
backbone; planning a described model needs only its JSON files.
"""

import json
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from edgent_ros.core.artifacts import ArtifactError
from edgent_ros.core.chain import cut_chain, CutError, make_head, MultiExitChain
from edgent_ros.core.described import build_described, load_described, model_table, verify_cuts
from edgent_ros.core.model_desc import DescriptionError, load_description, parse_description
from edgent_ros.core.model_plan import problem_for, save_block_latency, split_bytes
from edgent_ros.core.optimizer import decide
from edgent_ros.offline.exit_training import ExitTrainConfig, train_exits
from edgent_ros.offline.model_tools import describe_factory, import_model

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / 'edgent_ros' / 'artifacts'
EXAMPLES = ROOT / 'examples' / 'models'


class Block(nn.Module):
    """A residual block: its input is needed by the add, so it cannot be cut inside."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)) + x)


class Toy(nn.Module):
    """stem, two residual blocks, global pool, fc."""

    def __init__(self, classes=3):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.layer1 = nn.Sequential(Block(8), Block(8))
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        x = self.layer1(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


TOY_FILE = '''
import torch
from torch import nn
class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)) + x)
class Net(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.layer1 = nn.Sequential(Block(8), Block(8))
        self.layer2 = nn.Sequential(Block(8))
        self.fc = nn.Linear(8, classes)
    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
def build(classes=3):
    return Net(classes)
'''


@pytest.fixture
def toy_desc(tmp_path):
    """Write a user's model file and its description (two side exits, random weights)."""
    (tmp_path / 'toy_net.py').write_text(TOY_FILE)
    return describe_factory('toy_net.py:build', 'toy', (3, 16, 16), ['red', 'green', 'blue'],
                            tmp_path / 'toy.yaml', mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                            exits=['layer1.0', 'layer1'])


def _run_chain(chain, x):
    for b in chain.blocks:
        x = b(x)
    return x


def test_block_cuts_are_between_residual_blocks_and_equal_the_forward():
    m = Toy().eval()
    chain = cut_chain(m, (3, 16, 16))
    assert [c.module for c in chain.cuts[1:-1]] == ['stem', 'layer1.0', 'layer1.1', '', '']
    assert [c.shape for c in chain.cuts] == [(3, 16, 16), (8, 8, 8), (8, 8, 8), (8, 8, 8),
                                             (8, 1, 1), (8,), (3,)]
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(_run_chain(chain, x), m(x))
    kinds = [[o.kind for o in ops] for ops in chain.ops]
    assert kinds[1] == ['conv', 'bn', 'add', 'relu']


def test_layer_granularity_cuts_after_the_add_but_never_inside_a_residual_block():
    chain = cut_chain(Toy().eval(), (3, 16, 16), granularity='layer')
    names = [c.name for c in chain.cuts]
    assert 'add' in names and 'relu' in names
    # inside the block (after its conv or bn) two tensors cross: the block input and the branch
    assert not {'layer1_0_conv', 'layer1_0_bn'} & set(names)


def test_a_model_with_data_dependent_control_flow_is_refused_with_the_line():
    class Branchy(nn.Module):
        def forward(self, x):
            if x.mean() > 0:
                return x.flatten(1)
            return -x.flatten(1)
    with pytest.raises(CutError, match=r'cannot trace Branchy.*control flow.*test_chain.py:\d+'):
        cut_chain(Branchy(), (3, 4, 4))


def test_models_that_cannot_be_cut_say_why():
    class Skip(nn.Module):       # the input is needed at the very end: nowhere one tensor
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.a(x) + x
    with pytest.raises(CutError, match='no cut point.*two tensors cross.*after a: x, a'):
        cut_chain(Skip(), (3, 2, 2))

    class Pair(nn.Module):
        def forward(self, x):
            return x.flatten(1), x.flatten(1)
    with pytest.raises(CutError, match='returns tuple, not one logits tensor'):
        cut_chain(Pair(), (3, 2, 2))

    class TwoInputs(nn.Module):
        def forward(self, x, y):
            return x + y
    with pytest.raises(CutError, match='takes 2 inputs'):
        cut_chain(TwoInputs(), (3, 2, 2))
    with pytest.raises(CutError, match='does not run on an input of shape'):
        cut_chain(Toy(), (1, 16, 16))


def test_multi_exit_chain_branches_split_anywhere():
    chain = cut_chain(Toy().eval(), (3, 16, 16))
    heads = [make_head('pool_fc', chain.cuts[1].shape, 3),
             make_head('conv_pool_fc', chain.cuts[2].shape, 3, hidden=4)]
    m = MultiExitChain(chain, [2, 1], heads).eval()      # sorted by cut
    assert m.attach == [1, 2] and m.num_exits == 3
    assert [m.branch_len(e) for e in (1, 2, 3)] == [2, 3, 6]
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        outs = m.forward_all(x)
        for e in (1, 2, 3):
            assert torch.equal(outs[e - 1], m.run(x, e))
            for s in range(m.branch_len(e) + 1):
                assert torch.equal(m.run(m.run(x, e, 0, s), e, s), outs[e - 1])
    with pytest.raises(ValueError, match='exit_index must be an integer in 1..3'):
        m.run(x, 4)
    with pytest.raises(ValueError, match='attaches to a cut'):
        MultiExitChain(chain, [0], heads[:1])


def test_shipped_alexnet_is_a_description_with_its_weights_and_id():
    dm = load_described(ARTIFACTS / 'alexnet5.model.yaml')
    assert dm.model_id == 'alexnet5-cifar10-v1-baf6a595'
    assert dm.num_exits == 5 and dm.input_shape == (3, 32, 32)
    assert verify_cuts(dm, frames=2) == 0.0
    t = model_table(dm)
    assert [len(x['layers']) for x in t['exits']] == [10, 10, 12, 13, 20]
    assert t['frame_bytes'] == 3072


@pytest.mark.parametrize('factory,shape,n_cuts', [
    ('edgent_ros.models.resnet_cifar:resnet_cifar64', (3, 64, 64), None),
    ('resnet18.py:resnet18', (3, 224, 224), None),
    ('mobilenet_v2.py:mobilenet_v2', (3, 224, 224), None)])
def test_every_cut_of_shipped_and_brought_models_equals_the_forward(
        tmp_path, factory, shape, n_cuts):
    if '.py:' in factory:
        if not (EXAMPLES / factory.split(':')[0]).is_file():
            pytest.fail(f'examples/models/{factory.split(":")[0]} is missing')
        factory = f'{EXAMPLES / factory.split(":")[0]}:{factory.split(":")[1]}'
    classes = 10 if shape[1] == 64 else 1000
    desc = describe_factory(factory, 'm', shape, classes, tmp_path / 'm.yaml')
    dm = build_described(desc)
    assert verify_cuts(dm, frames=1) < 1e-4
    cuts = dm.chain.cuts
    assert len(cuts) >= 8                       # real mid-network choices
    assert cuts[0].shape == shape and cuts[-1].shape == (classes,)
    # a cut is where one tensor crosses: its bytes are that tensor's
    t = dm.table()
    assert t['exits'][-1]['layers'][0]['out_bytes'] == 4 * cuts[1].numel


def test_import_writes_the_table_and_exits_are_named_by_module(toy_desc):
    out = import_model(toy_desc.path, log=lambda s: None)
    assert out['max_split_error'] == 0.0
    table = json.loads(Path(out['table']).read_text())
    assert table['model_id'] == out['model_id']
    # heads not trained yet: only the final exit runs, and the note says so
    assert out['exits'] == 1 and 'train-exits' in ' '.join(out['notes'])


def test_description_errors_name_the_field(tmp_path):
    good = {'name': 'x', 'factory': 'a.b:c', 'input': {'shape': [3, 8, 8]}, 'classes': 2}
    parse_description(good)
    for patch, field in [({'name': 'bad name!'}, 'name'), ({'factory': 'nocolon'}, 'factory'),
                         ({'input': {'shape': [1, 8, 8]}}, 'input.shape'),
                         ({'input': {'shape': [3, 8, 8], 'std': [1, 0, 1]}}, 'input.std'),
                         ({'classes': 1}, 'classes'), ({'granularity': 'x'}, 'granularity'),
                         ({'exits': [{'cut': 'a', 'head': 'mlp'}]}, 'exits[0].head'),
                         ({'format': 'edgent_ros/model/9'}, 'format'), ({'colour': 1}, 'colour'),
                         ({'architecture': 'vgg'}, 'architecture')]:
        with pytest.raises(DescriptionError, match=field.replace('[', r'\[')):
            parse_description({**good, **patch})
    with pytest.raises(DescriptionError, match='not found'):
        load_description(tmp_path / 'none.yaml')
    (tmp_path / 'bad.yaml').write_text('name: [unclosed')
    with pytest.raises(DescriptionError, match='not valid YAML'):
        load_description(tmp_path / 'bad.yaml')
    with pytest.raises(DescriptionError, match='missing.py not found'):
        build_described(parse_description({**good, 'factory': 'missing.py:f'},
                                          tmp_path / 'd.yaml'))
    with pytest.raises(CutError, match='outputs \\(3,\\) per frame, the description has 2'):
        (tmp_path / 'toy_net.py').write_text(TOY_FILE)
        build_described(parse_description({**good, 'factory': 'toy_net.py:build',
                                           'input': {'shape': [3, 16, 16]}},
                                          tmp_path / 'd.yaml'))


def test_weights_that_do_not_fit_are_refused(tmp_path, toy_desc):
    from safetensors.torch import save_file
    save_file({'stem.weight': torch.zeros(1)}, str(tmp_path / 'w.safetensors'))
    body = {**toy_desc.to_dict(), 'weights': 'w.safetensors'}
    with pytest.raises(ArtifactError, match='weights do not fit toy_net.py:build'):
        build_described(parse_description(body, toy_desc.path))


def _colour_data(n, seed):
    """Images whose class is their dominant colour: any working head learns it."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.integers(0, 60, (n, 16, 16, 3)).astype(np.uint8)
    for k in range(3):
        x[y == k, :, :, k] += 150
    return x, y.astype(np.int64)


def test_train_exits_learns_heads_on_a_frozen_backbone_and_ties_them_to_it(toy_desc, tmp_path):
    x, y = _colour_data(600, 0)
    xt, yt = _colour_data(300, 1)
    backbone_before = {k: v.clone() for k, v in build_described(
        toy_desc, with_heads=False).model.state_dict().items()}
    out = train_exits(toy_desc.path, x, y, xt, yt, ExitTrainConfig(epochs=3, batch_size=32,
                                                                   lr=0.05, threads=1),
                      'colours', log=lambda s: None)
    assert [r['cut'] for r in out['exits']] == ['layer1.0', 'layer1', 'final']
    # the frozen random backbone's own output is chance; the trained heads are not
    assert out['exits'][0]['top1'] > 0.8 and out['exits'][1]['top1'] > 0.8
    dm = load_described(toy_desc.path)
    assert dm.num_exits == 3 and dm.model_id == out['model_id']
    after = {k: v for k, v in dm.model.state_dict().items() if k.startswith('blocks.')}
    assert all(torch.equal(v, backbone_before[k]) for k, v in after.items())
    assert verify_cuts(dm) == 0.0
    # heads trained for this backbone only: other backbone weights are refused
    state = {k: v + 1 for k, v in dm.backbone.state_dict().items()}
    from safetensors.torch import save_file
    save_file(state, str(tmp_path / 'other.safetensors'))
    other = parse_description({**load_description(toy_desc.path).to_dict(),
                               'weights': 'other.safetensors'}, toy_desc.path)
    with pytest.raises(ArtifactError, match='heads trained for backbone'):
        build_described(other)


def _toy_problem_files(tmp_path, toy_desc):
    dm = build_described(toy_desc, with_heads=False)
    table = dm.table()
    n = len(table['exits'][-1]['layers'])
    lat = save_block_latency(tmp_path / 'lat.json', dm.model_id, 'robot', [10.0] * n, [],
                             {})
    lat = save_block_latency(tmp_path / 'lat.json', dm.model_id, 'edge', [1.0] * n, [], {})
    return table, lat


def test_planning_a_described_model_uses_its_bytes_and_block_times(tmp_path, toy_desc):
    table, lat = _toy_problem_files(tmp_path, toy_desc)
    assert set(lat['hosts']) == {'robot', 'edge'}       # the second host merged, not replaced
    bytes_ = split_bytes(table)[1]
    assert bytes_[0] == 3 * 16 * 16 and bytes_[1] == 4 * 8 * 8 * 8 and bytes_[-1] == 0
    assert split_bytes(table, 1.0)[1][1] == 8 * 8 * 8
    p = problem_for(table, lat, {1: 0.9}, overhead_ms=0.0, message_bytes=0)
    d = decide(p, 1e9, 1000.0)
    assert (d.exit_index, d.split_index) == (1, 0)       # fast link: everything on the edge
    d = decide(p, 1e3, 1000.0)                           # 1 kbit/s: a 768 B frame takes 6 s
    assert d.split_index == p.branch_len(1)
    with pytest.raises(ArtifactError, match='no top-1 for exits'):
        problem_for(table, lat, {}, overhead_ms=0.0)


def test_a_described_model_plans_its_measured_encodings():
    """resnet64 with a JPEG frame and a bottleneck after layer2, planned as the AlexNet's are."""
    from edgent_ros.core.artifacts import EncodingCost
    from edgent_ros.core.model_plan import load_block_latency, load_model_accuracy, load_table
    from edgent_ros.core.optimizer import evaluate
    files = load_description('resnet64').files()
    table = load_table(files['table'])
    lat = load_block_latency(files['latency'], table['model_id'])
    acc = load_model_accuracy(files['accuracy'], table['model_id'])
    enc = {(e, 0, 'jpeg'): EncodingCost(acc[e], 2400.0, 2600.0, 0.1, 0.1) for e in acc}
    enc.update({(e, 7, 'bn8'): EncodingCost(acc[e] - 0.005, 512.0, 512.0, 0.2, 0.2)
                for e in (2, 3, 4)})
    raw = problem_for(table, lat, acc, robot_time_scale=10.0)
    coded = problem_for(table, lat, acc, robot_time_scale=10.0,
                        encodings=['raw', 'jpeg', 'bn8'], encoding_table=enc)
    bn = evaluate(coded, 150e3, 4, 7, encoding='bn8')
    assert bn.device_ms == pytest.approx(evaluate(raw, 150e3, 4, 7).device_ms + 10 * 0.2)
    # 150 kbit/s, 128 ms: the 12 KB frame, the JPEG and the whole model on the robot are all
    # too slow; the bottleneck after layer2 reaches the final exit in time
    assert bn.total_ms < 128.0 < min(evaluate(coded, 150e3, 4, 0, encoding='jpeg').total_ms,
                                     evaluate(coded, 150e3, 4, 14).total_ms)
    d = decide(coded, 150e3, 128.0)
    assert (d.exit_index, d.split_index, d.encoding) == (4, 7, 'bn8')
    assert decide(raw, 150e3, 128.0).exit_index < 4
    d = decide(coded, 5e6, 128.0)                     # a fast link: the JPEG frame wins
    assert (d.exit_index, d.split_index, d.encoding) == (4, 0, 'jpeg')
    with pytest.raises(ValueError, match='no bottleneck'):
        problem_for(table, lat, acc, encodings=['bn4'], encoding_table=enc)


def test_plan_model_cli_reads_json_only(tmp_path, toy_desc):
    import_model(toy_desc.path, log=lambda s: None)
    table = json.loads(toy_desc.derived('.table.json').read_text())
    n = len(table['exits'][-1]['layers'])
    save_block_latency(toy_desc.derived('.latency.json'), table['model_id'], 'robot',
                       [10.0] * n, [], {})
    save_block_latency(toy_desc.derived('.latency.json'), table['model_id'], 'edge',
                       [1.0] * n, [], {})
    code = ('import sys, json; from edgent_ros.cli.main import main; '
            f'rc = main(["plan", "--model", "{toy_desc.path}", "--bandwidth-mbps", "100", '
            '"--deadline-ms", "50", "--assume-accuracy", "0.7", "--json"]); '
            'assert "torch" not in sys.modules, "plan --model loaded torch"; sys.exit(rc)')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out['model_id'] == table['model_id'] and out['feasible'] is True
    assert out['accuracy_source'].startswith('assumed')


def test_co_inference_runs_a_described_model_at_every_split(toy_desc):
    from edgent_ros.core.inference import CoInference, preprocess_image
    from edgent_ros.core.ledger import FrameRefused
    x, _ = _colour_data(40, 2)
    train_exits(toy_desc.path, x, _colour_data(40, 3)[1], x[:8], _colour_data(8, 4)[1],
                ExitTrainConfig(epochs=1, batch_size=8, threads=1), log=lambda s: None)
    runner = CoInference(load_described(toy_desc.path))
    assert runner.num_exits == 3 and runner.input_shape == (3, 16, 16)
    assert runner.classes == ('red', 'green', 'blue')
    frame = preprocess_image(np.kron(x[0], np.ones((30, 40, 1), np.uint8)), size=(16, 16))
    assert frame.shape == (16, 16, 3)                      # a 480x640 image, resized
    for e in (1, 2, 3):
        want = runner.full_forward(frame, e)
        n = runner.branch_len(e)
        for s in range(n + 1):
            out = runner.device_step(frame, e, s)
            if s == n:
                assert out.classification.class_id == want.class_id
                continue
            assert out.tensor.shape == runner.expected_shape(e, s)
            runner.validate(runner.model_id, e, s, out.tensor)
            got, _ = runner.edge_step(out.tensor, e, s)
            assert got.class_id == want.class_id and got.label == want.label
            assert np.allclose(got.scores, want.scores, atol=1e-6)
    with pytest.raises(FrameRefused, match='shape'):
        runner.validate(runner.model_id, 3, 2, np.zeros((1, 4, 4, 4), np.float32))
    with pytest.raises(FrameRefused, match='exit_index must be an integer in 1..3'):
        runner.validate(runner.model_id, 4, 0, np.zeros((1, 16, 16, 3), np.uint8))
    with pytest.raises(FrameRefused, match='model'):
        runner.validate('alexnet5-cifar10-v1-baf6a595', 3, 0, np.zeros((1, 16, 16, 3), np.uint8))
    with pytest.raises(FrameRefused, match='no bn4 bottleneck'):
        runner.device_step(frame, 3, 2, encoding='bn4')


def test_a_users_model_keeps_its_id_wherever_its_files_live(toy_desc, tmp_path):
    other = tmp_path / 'elsewhere'
    other.mkdir()
    (other / 'toy_net.py').write_text(TOY_FILE)
    moved = describe_factory('toy_net.py:build', 'toy', (3, 16, 16), ['red', 'green', 'blue'],
                             other / 'toy.yaml', mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                             exits=['layer1.0', 'layer1'])
    assert build_described(moved).model_id == build_described(toy_desc).model_id
    (other / 'toy_net.py').write_text(TOY_FILE.replace('Block(8), Block(8)', 'Block(8)'))
    assert build_described(moved).model_id != build_described(toy_desc).model_id


def test_shipped_models_are_named_by_short_name():
    assert load_description('resnet64').path == ARTIFACTS / 'resnet64.model.yaml'
    assert load_description('alexnet5').architecture == 'alexnet5'
    with pytest.raises(DescriptionError, match='shipped models: alexnet5, resnet64'):
        load_description('resnet65')
