"""The relay's pure parts (issue 20, item 2): impairments, loss, the delay line, checksums."""

import random
import socket
import struct

import pytest

from edgent_ros.evaluation.relay import DelayLine, fix_checksum, Impairment, is_arp, LossProcess
from edgent_ros.evaluation.testbed import probe_summary


@pytest.mark.parametrize('field,value', [('delay_ms', -1.0), ('loss', 1.5), ('loss', -0.1),
                                         ('burst', 0.5), ('jitter_ms', float('nan')),
                                         ('delay_ms', True), ('loss', '0.1')])
def test_bad_impairments_are_refused_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        Impairment(**{field: value})


def test_impairment_from_mapping_changes_only_given_fields():
    base = Impairment(delay_ms=20, loss=0.05)
    assert Impairment.from_mapping({'loss': 0.1}, base) == Impairment(20, 0.0, 0.1, 1.0)
    with pytest.raises(ValueError, match='unknown impairment'):
        Impairment.from_mapping({'latency': 3})


@pytest.mark.parametrize('loss,burst', [(0.01, 1), (0.05, 1), (0.1, 1), (0.05, 4), (0.1, 8)])
def test_loss_process_long_run_rate_and_burst(loss, burst):
    p = LossProcess(loss, burst, seed=3)
    n = 200_000
    drops = [p.drop() for _ in range(n)]
    rate = sum(drops) / n
    assert rate == pytest.approx(loss, rel=0.08)
    runs, run = [], 0
    for d in drops:
        if d:
            run += 1
        elif run:
            runs.append(run)
            run = 0
    mean_run = sum(runs) / len(runs)
    # Bernoulli: runs are geometric with mean 1 / (1 - loss); Gilbert-Elliott: mean burst
    expect = 1.0 / (1.0 - loss) if burst == 1 else burst
    assert mean_run == pytest.approx(expect, rel=0.08)


def test_loss_process_is_seeded_and_edge_cases():
    p, q = LossProcess(0.1, 4, seed=7), LossProcess(0.1, 4, seed=7)
    assert [p.drop() for _ in range(1000)] == [q.drop() for _ in range(1000)]
    assert not any(LossProcess(0.0).drop() for _ in range(1000))
    assert all(LossProcess(1.0, 3).drop() for _ in range(1000))


def test_delay_line_holds_each_frame_and_keeps_order():
    line = DelayLine(delay_ms=20, jitter_ms=5, seed=1)
    arrivals = [i * 0.001 for i in range(200)]
    for i, t in enumerate(arrivals):
        assert line.push(t, bytes([i % 256]))
    out, now = [], 0.0
    while line.next_due() is not None:
        now = line.next_due()
        for arrived, frame in line.pop_due(now):
            assert now - arrived >= 0.020 - 1e-12     # never early
            out.append(frame)
    assert out == [bytes([i % 256]) for i in range(200)]   # FIFO despite the jitter
    assert line.pop_due(now + 10) == []


def test_delay_line_no_jitter_is_exact_and_bounded():
    line = DelayLine(delay_ms=100, max_queued=3)
    assert all(line.push(1.0, b'x') for _ in range(3))
    assert not line.push(1.0, b'y')                  # full: refused, the caller counts it
    assert line.pop_due(1.0999) == [] and line.next_due() == pytest.approx(1.1)
    assert len(line.pop_due(1.1)) == 3


def _frame(payload: bytes, proto: int = 17, frag: int = 0) -> bytes:
    src, dst = socket.inet_aton('10.203.0.1'), socket.inet_aton('10.203.0.2')
    if proto == 17:
        l4 = struct.pack('!HHHH', 5000, 6000, 8 + len(payload), 0x1234) + payload  # bad csum
    else:
        l4 = payload
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(l4), 1, frag, 64, proto, 0, src, dst)
    return b'\x02' * 6 + b'\x04' * 6 + struct.pack('!H', 0x0800) + ip + l4


def _udp_checksum_ok(frame: bytes) -> bool:
    ip = frame[14:34]
    total = struct.unpack('!H', ip[2:4])[0]
    seg = frame[34:14 + total]
    pseudo = ip[12:20] + struct.pack('!BBH', 0, 17, len(seg))
    data = pseudo + seg + (b'\0' if len(seg) % 2 else b'')
    s = sum(struct.unpack(f'!{len(data) // 2}H', data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


@pytest.mark.parametrize('size', [0, 1, 17, 200, 1472])
def test_fix_checksum_makes_udp_valid(size):
    payload = bytes(random.Random(size).getrandbits(8) for _ in range(size))
    bad = _frame(payload)
    assert not _udp_checksum_ok(bad)
    good = fix_checksum(bad)
    assert _udp_checksum_ok(good) and len(good) == len(bad)
    assert good[:40] == bad[:40] and good[42:] == bad[42:]   # only the checksum changed


def test_fix_checksum_leaves_others_alone():
    frag = _frame(b'x' * 100, frag=0x2000)           # more-fragments: not the whole datagram
    assert fix_checksum(frag) == frag
    other = _frame(b'x' * 40, proto=1)               # ICMP
    assert fix_checksum(other) == other
    arp = b'\xff' * 6 + b'\x04' * 6 + struct.pack('!H', 0x0806) + b'\0' * 28
    assert fix_checksum(arp) == arp and is_arp(arp) and not is_arp(other)
    assert fix_checksum(b'short') == b'short'


def test_probe_summary_loss_interval_runs_and_delay():
    got = {s: 20.0 + (s % 3) for s in range(1000) if s % 20 not in (0, 1)}   # 10 %, runs of 2
    s = probe_summary(1000, got)
    assert s['loss'] == 0.1 and s['mean_loss_run'] == 2.0
    assert s['loss_ci95'][0] < 0.1 < s['loss_ci95'][1]
    assert s['one_way_ms']['p50'] == 21.0 and s['received'] == 900
    wide = probe_summary(1000, got, burst=4)['loss_ci95']   # correlated losses: wider interval
    assert wide[0] < s['loss_ci95'][0] and wide[1] > s['loss_ci95'][1]
    with pytest.raises(ValueError, match='outside'):
        probe_summary(10, {10: 1.0})


def test_benchmarks_quote_the_committed_relay_check():
    """BENCHMARKS 18's configured-vs-observed table is the committed bench result's."""
    import json
    from pathlib import Path
    import re
    from edgent_ros.evaluation.relay import check_markdown
    root = Path(__file__).resolve().parents[2]
    body = json.loads((root / 'bench/results/relay_check.json').read_text())
    quoted = re.search(r'<!-- relay-check -->\n(.*?)<!-- relay-check: end -->',
                       (root / 'BENCHMARKS.md').read_text(), re.S).group(1)
    assert quoted == check_markdown(body['rows'])
    assert body['all_ok'] == all(r['ok'] for r in body['rows'])
