"""The annotated frames rviz shows: rendered to PNG so they can be looked at."""

from pathlib import Path

import numpy as np
import pytest

from edgent_ros.core.datasets import load_sample
from edgent_ros.core.viz import annotate, GREEN, GREY, latency_bars, OutcomeView, RED, VizStats

OUT = Path(__file__).resolve().parents[2] / 'bench' / 'results'


def _cases():
    x, _ = load_sample()
    return [
        (x[0], OutcomeView(True, 'airplane', 'airplane', 0.93, 5, 0, 12.5, 0.1, 3.0, 9.4, 100.0,
                           True), GREEN),
        (x[3], OutcomeView(True, 'dog', 'cat', 0.41, 3, 4, 140.2, 20.0, 110.0, 10.2, 100.0,
                           False), RED),
        (x[7], OutcomeView(False, drop_reason='edge_timeout', deadline_ms=100.0), GREY),
    ]


def test_annotated_frames_colour_and_png(tmp_path):
    import cv2
    images = []
    for frame, o, want in _cases():
        img = annotate(frame, o)
        assert img.dtype == np.uint8 and img.shape == (256 + 72, 256, 3)
        assert tuple(int(c) for c in img[2, 128]) == want   # border colour
        images.append(img)
    grid = np.hstack(images)
    assert cv2.imwrite(str(tmp_path / 'annotated.png'), grid)
    OUT.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(OUT / 'annotated_examples.png'), grid)


def test_annotate_without_frame_and_bad_frame():
    img = annotate(None, OutcomeView(False, drop_reason='link_busy'))
    assert img.shape[1] == 256
    with pytest.raises(ValueError, match='RGB'):
        annotate(np.zeros((32, 32), np.uint8), OutcomeView(True))


def test_stats_and_bars():
    s = VizStats(window=3)
    for met in (True, False, True, True):
        s.add(OutcomeView(True, deadline_met=met))
    s.add(OutcomeView(False, drop_reason='queue_full'))
    assert s.deadline_met_rate() == pytest.approx(2 / 3)
    d = s.summary()
    assert d['frames'] == '5' and d['dropped:queue_full'] == '1'
    bars = latency_bars(OutcomeView(True, device_ms=10, uplink_ms=20, edge_ms=5,
                                    deadline_ms=50))
    assert bars['uplink'] == pytest.approx(2 * bars['device'])
