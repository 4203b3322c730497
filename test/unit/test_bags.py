"""rosbag2 files: the committed fixture reads back; broken bags give a clear error."""

from pathlib import Path
import shutil

import numpy as np
import pytest

from edgent_ros.nodes.bags import (BagError, BagWriter, deserialize, misses,
                                   offer_from_recorded, offered_qos, qos_from_rmw, read,
                                   Request, request_for_offers, typestore)

FIXTURE = Path(__file__).resolve().parents[1] / 'data' / 'demo_bag'


def test_fixture_reads_back_with_our_types():
    store = typestore()
    msgs = list(read(FIXTURE))
    topics = [m[0] for m in msgs]
    assert topics.count('/image_raw') == 30 and topics.count('/edgent/link_quality') == 13
    assert [m[2] for m in msgs] == sorted(m[2] for m in msgs)
    img = deserialize(store, msgs[0][3], msgs[0][1]) if msgs[0][0] == '/image_raw' else None
    lq = [deserialize(store, d, t) for top, t, _, d in msgs if top == '/edgent/link_quality']
    assert min(m.uplink_bandwidth_bps for m in lq) == 0 and not all(m.edge_reachable for m in lq)
    if img is not None:
        assert (img.height, img.width, img.encoding) == (64, 64, 'bgr8')
    assert sum(f.stat().st_size for f in FIXTURE.iterdir()) < 600_000


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_write_then_read_round_trip(tmp_path, storage):
    store = typestore()
    LQ = store.types['edgent_ros/msg/LinkQuality']
    Header = store.types['std_msgs/msg/Header']
    Time = store.types['builtin_interfaces/msg/Time']
    with BagWriter(tmp_path / 'b', storage=storage) as w:
        w.add_topic('/edgent/link_quality', 'edgent_ros/msg/LinkQuality')
        for k in range(3):
            w.write('/edgent/link_quality', 10 + k, LQ(
                header=Header(stamp=Time(sec=k, nanosec=0), frame_id=''), robot='/x',
                uplink_bandwidth_bps=1e6 * k, bandwidth_uncertainty=0.0, rtt_ms=1.0, loss=0.0,
                sample_count=k, source=0, edge_reachable=True, edge_queue_ms=0.5,
                edge_batch_size=1.0))
    got = [deserialize(store, d, t) for _, t, _, d in read(tmp_path / 'b')]
    assert [m.uplink_bandwidth_bps for m in got] == [0.0, 1e6, 2e6]
    assert np.allclose([m.edge_queue_ms for m in got], 0.5)


def test_truncated_corrupt_and_missing_bags_raise_bag_error(tmp_path):
    trunc = tmp_path / 'trunc'
    shutil.copytree(FIXTURE, trunc)
    mcap = trunc / 'demo_bag.mcap'
    mcap.write_bytes(mcap.read_bytes()[:len(mcap.read_bytes()) // 2])
    with pytest.raises(BagError, match='trunc'):
        list(read(trunc))
    bad = tmp_path / 'corrupt'
    shutil.copytree(FIXTURE, bad)
    (bad / 'metadata.yaml').write_text('rosbag2_bagfile_information: [not, a, bag')
    with pytest.raises(BagError, match='corrupt'):
        list(read(bad))
    with pytest.raises(BagError, match='nope'):
        list(read(tmp_path / 'nope'))


def test_writer_refuses_existing_folder_and_bad_storage(tmp_path):
    with pytest.raises(BagError, match='exists'):
        BagWriter(tmp_path)
    with pytest.raises(BagError, match='storage'):
        BagWriter(tmp_path / 'x', storage='zip')


INF = 2**63 - 1


def offer(reliability=1, durability=2, deadline_ns=INF):
    """Return a publisher's offer as DDS discovery reports it (history unknown, depth 0)."""
    return qos_from_rmw(3, 0, reliability, durability, deadline_ns, INF, 1, INF, False)


def test_request_adapts_to_offers_like_ros2_bag_record():
    reliable, best_effort = offer(1), offer(2)
    latched = offer(1, 1)
    assert request_for_offers([reliable, reliable]) == Request(True, False)
    assert request_for_offers([best_effort]) == Request(False, False)   # a camera driver
    assert request_for_offers([reliable, best_effort]) == Request(False, False)
    assert request_for_offers([latched, latched]) == Request(True, True)
    assert request_for_offers([latched, reliable]) == Request(True, False)
    assert request_for_offers([]) == Request(True, False)               # rosbag2's default
    assert misses(Request(True, False), [best_effort, reliable]) == [best_effort]
    assert misses(Request(False, True), [latched, best_effort]) == [best_effort]
    assert misses(Request(False, False), [best_effort, latched]) == []


def test_qos_from_rmw_splits_durations_like_rosbag2_and_tolerates_unknown_values():
    q = offer(deadline_ns=1_500_000_000)
    assert (q.deadline.sec, q.deadline.nsec) == (1, 500_000_000)
    assert (q.lifespan.sec, q.lifespan.nsec) == (9223372036, 854775807)
    assert q.history.name == 'UNKNOWN' and q.reliability.name == 'RELIABLE'
    assert qos_from_rmw(99, 0, 99, 99, 0, 0, 99, 0, False).reliability.name == 'UNKNOWN'


def test_offer_from_recorded_needs_every_publisher_to_agree():
    best_effort = offer(2)
    got = offer_from_recorded([best_effort, best_effort])
    assert got.reliability.name == 'BEST_EFFORT' and got.durability.name == 'VOLATILE'
    assert got.history.name == 'KEEP_LAST' and got.depth == 10
    assert offer_from_recorded([best_effort, offer(1)]) is None          # mixed: default
    assert offer_from_recorded([offer(deadline_ns=10**9), offer()]) is None
    assert offer_from_recorded([]) is None


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_offered_qos_round_trips_through_the_bag(tmp_path, storage):
    with BagWriter(tmp_path / 'b', storage=storage) as w:
        w.add_topic('/robot1/image_raw', 'sensor_msgs/msg/Image', [offer(2), offer(2)])
        w.add_topic('/robot1/edgent/decision', 'edgent_ros/msg/ExitSplitDecision',
                    [offer(1, 1)])
        w.add_topic('/plain', 'std_msgs/msg/String')
    got = offered_qos(tmp_path / 'b')
    assert [q.reliability.name for q in got['/robot1/image_raw']] == ['BEST_EFFORT'] * 2
    assert got['/robot1/edgent/decision'] == [offer(1, 1)]
    assert got['/plain'] == []
    with pytest.raises(BagError, match='nope'):
        offered_qos(tmp_path / 'nope')


OLD_LINK_QUALITY = """\
std_msgs/Header header
float64 uplink_bandwidth_bps
float64 bandwidth_uncertainty
float64 rtt_ms
float32 loss
uint32 sample_count
uint8 source
bool edge_reachable
float64 edge_queue_ms
float32 edge_batch_size
"""


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_bag_with_an_older_message_definition_is_refused(tmp_path, storage):
    """A bag from before ``LinkQuality.robot`` existed: refused up front, naming the field."""
    from rosbags.typesys import get_types_from_msg, get_typestore, Stores
    old = get_typestore(Stores.ROS2_KILTED)
    old.register(get_types_from_msg(OLD_LINK_QUALITY, 'edgent_ros/msg/LinkQuality'))
    LQ = old.types['edgent_ros/msg/LinkQuality']
    Header, Time = old.types['std_msgs/msg/Header'], old.types['builtin_interfaces/msg/Time']
    with BagWriter(tmp_path / 'old', storage=storage) as w:
        w.store = old
        w.add_topic('/edgent/link_quality', 'edgent_ros/msg/LinkQuality')
        w.write('/edgent/link_quality', 1, LQ(
            header=Header(stamp=Time(sec=1, nanosec=0), frame_id='robot1'),
            uplink_bandwidth_bps=1e6, bandwidth_uncertainty=0.0, rtt_ms=1.0, loss=0.0,
            sample_count=1, source=0, edge_reachable=True, edge_queue_ms=0.0,
            edge_batch_size=1.0))
    with pytest.raises(BagError) as info:
        list(read(tmp_path / 'old'))
    msg = str(info.value)
    assert 'another definition of edgent_ros/msg/LinkQuality' in msg and 'robot' in msg
    assert 'record it again' in msg
    # the same bag's other topics are still readable when the old type is not asked for
    assert list(read(tmp_path / 'old', topics=['/image_raw'])) == []
