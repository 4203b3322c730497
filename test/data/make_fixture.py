"""
Build the bag fixture ``test/data/demo_bag`` (a few hundred KB) without ROS.

``image_raw``: 30 bundled CIFAR-10 sample frames upscaled to 64x64 bgr8 at 5 Hz (the camera must
resize them); ``edgent/link_quality``: 2 Hz estimates following a made-up bandwidth schedule
(8 Mbit/s, a drop to 0.3 Mbit/s, an outage, recovery). Run from the repo root:
``python test/data/make_fixture.py`` (rewrites the folder).
"""

from pathlib import Path
import shutil
import sys

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edgent_ros.nodes.bags import BagWriter  # noqa: E402
from edgent_ros.core.datasets import load_sample  # noqa: E402

OUT = ROOT / 'test' / 'data' / 'demo_bag'
T0 = 1_700_000_000 * 10**9
SCHEDULE = [(0.0, 8e6), (2.0, 8e6), (3.0, 0.3e6), (4.5, 0.0), (5.5, 2e6), (6.0, 8e6)]


def bandwidth_at(t: float) -> float:
    """Return the scheduled bandwidth (bit/s) at ``t`` seconds (step function)."""
    bw = SCHEDULE[0][1]
    for ts, v in SCHEDULE:
        if t >= ts:
            bw = v
    return bw


def main() -> int:
    """Write the fixture bag."""
    import cv2
    if OUT.exists():
        shutil.rmtree(OUT)
    x, _ = load_sample()
    with BagWriter(OUT, storage='mcap') as w:
        w.add_topic('/image_raw', 'sensor_msgs/msg/Image')
        w.add_topic('/edgent/link_quality', 'edgent_ros/msg/LinkQuality')
        store = w.store
        Image = store.types['sensor_msgs/msg/Image']
        Header = store.types['std_msgs/msg/Header']
        Time = store.types['builtin_interfaces/msg/Time']
        LQ = store.types['edgent_ros/msg/LinkQuality']
        events = []
        for i in range(30):
            t = i * 0.2
            bgr = cv2.resize(x[i][:, :, ::-1], (64, 64), interpolation=cv2.INTER_LINEAR)
            ns = T0 + int(t * 1e9)
            msg = Image(header=Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9),
                                      frame_id='front_camera_optical_frame'),
                        height=64, width=64, encoding='bgr8', is_bigendian=0, step=64 * 3,
                        data=np.ascontiguousarray(bgr).reshape(-1))
            events.append((ns, '/image_raw', msg))
        for k in range(13):
            t = k * 0.5
            ns = T0 + int(t * 1e9)
            bw = bandwidth_at(t)
            msg = LQ(header=Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9),
                                   frame_id=''), robot='/bag',
                     uplink_bandwidth_bps=bw, bandwidth_uncertainty=0.1, rtt_ms=5.0, loss=0.0,
                     sample_count=8, source=LQ.SOURCE_EXTERNAL, edge_reachable=bw > 0,
                     edge_queue_ms=0.0, edge_batch_size=1.0)
            events.append((ns, '/edgent/link_quality', msg))
        for ns, topic, msg in sorted(events, key=lambda e: e[0]):
            w.write(topic, ns, msg)
    size = sum(f.stat().st_size for f in OUT.iterdir())
    print(f'wrote {OUT} ({size} bytes)')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
