"""
The rclpy side: the four nodes (thin adapters: parameters, topics, then one call into ``core``),
their shared helpers and QoS profiles, and the ROS tools around them (demo runner, bag
record/play). Imports ``core`` only, never ``offline`` or ``evaluation``.
"""
