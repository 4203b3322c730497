"""viz_node live: annotated images (real cv_bridge), markers and diagnostics for rviz."""

from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image
from visualization_msgs.msg import MarkerArray

from edgent_ros.nodes import qos


def test_viz_node_publishes_what_rviz_shows(procs, listener):
    listener.listen(Image, 'edgent/annotated', qos.VIZ)
    listener.listen(MarkerArray, 'edgent/markers', qos.VIZ)
    listener.listen(DiagnosticArray, '/diagnostics', qos.VIZ)
    procs.start('edge_node')
    procs.start('viz_node')
    procs.start('camera_node', fps=10.0, exit_index=5, split_index=3)
    ok = listener.spin_until(lambda: len(listener.msgs('edgent/annotated')) >= 5
                             and len(listener.msgs('edgent/markers')) >= 5, 60.0)
    assert ok, procs.log('viz_node')
    img = listener.msgs('edgent/annotated')[-1]
    assert (img.encoding, img.width, img.height) == ('bgr8', 256, 256 + 72)
    markers = listener.msgs('edgent/markers')[-1].markers
    assert {m.ns for m in markers} == {'latency', 'deadline', 'text'}
    assert 'split 3' in [m for m in markers if m.ns == 'text'][0].text

    def viz_diag():   # the latest report
        for arr in reversed(listener.msgs('/diagnostics')):
            for st in arr.status:
                if st.name.endswith('viz_node'):
                    return {kv.key: kv.value for kv in st.values}
        return None
    # reports come at 1 Hz and trail the images: the latest one heard when the images are in
    # can predate the first frame (CI, loaded runner), so wait (bounded) for one that counts it
    assert listener.spin_until(lambda: int((viz_diag() or {}).get('frames', 0)) > 0, 5.0), \
        viz_diag()
