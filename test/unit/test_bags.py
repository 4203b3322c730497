"""rosbag2 files: the committed fixture reads back; broken bags give a clear error."""

from pathlib import Path
import shutil

import numpy as np
import pytest

from edgent_ros.nodes.bags import BagError, BagWriter, deserialize, read, typestore

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
                header=Header(stamp=Time(sec=k, nanosec=0), frame_id='x'),
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
