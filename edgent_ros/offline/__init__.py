"""
The offline phase of Edgent, no rclpy.

Data, training, profiling, latency-model fitting, accuracy tables, configuration-map building,
the edge batch-cost profile and the cgroup helpers of the emulated robot (``hosts``). Imports
``core`` only (test/test_layers.py).
"""
