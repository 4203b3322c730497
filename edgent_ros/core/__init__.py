"""
Pure logic of Edgent, no rclpy.

The model and its cut points, inference, the tensor codec, latency prediction, the optimizer and
planner, link estimation, calibration, change points and the edge's batching queue. Time is
passed in; bad values raise ``ValueError`` naming them.

Imports no ROS package and nothing from ``offline``, ``nodes``, ``evaluation`` or ``cli``
(test/test_layers.py, ARCHITECTURE.md).
"""
