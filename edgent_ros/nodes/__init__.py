"""
The rclpy side: the four nodes and the ROS tools around them.

Thin adapters (parameters, topics, then one call into ``core``), their shared helpers and QoS
profiles, the process entry points, the demo runner and bag record/play. Imports ``core`` (and
ROS), never ``offline``, ``evaluation`` or ``cli`` (test/test_layers.py).
"""
