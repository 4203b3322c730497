"""Named QoS profiles of every edgent_ros topic, each with its reason."""

from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)

# image_raw: camera drivers publish best effort; a subscriber must match it.
IMAGE = qos_profile_sensor_data

# edgent/tensor: reliable, keep last 4. On Fast DDS a best-effort multi-fragment sample is lost
# whole when one fragment drops, which on a shaped link is most of them, so fragments are repaired
# (reliable). The camera never has more than `max_in_flight` (default 2) frames on the link (pacing
# lives in the camera node, not in DDS queues); the depth only has to hold those: with depth 1 an
# edge busy with one frame while the next two arrived lost the older one (edge_timeout).
TENSOR = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=4,
                    reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)

# edgent/result, edgent/outcome: small and every one counts for accounting.
RESULT = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50,
                    reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)

# edgent/result: also transient local, so a result published before the edge's writer has
# matched the camera's reader (start-up discovery) is still delivered; the camera ignores results
# for frames captured before it started, so a restarted camera never mistakes old history.
EDGE_RESULT = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)

# edgent/link_quality: small, reliable; a few in flight at most.
LINK_QUALITY = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)

# edgent/decision: late joiners must get the decision in force now.
DECISION = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)

# Visualization outputs (annotated image, markers, diagnostics): keep the newest few.
VIZ = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                 reliability=ReliabilityPolicy.RELIABLE,
                 durability=DurabilityPolicy.VOLATILE)
