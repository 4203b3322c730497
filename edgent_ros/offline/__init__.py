"""
The offline phase (no rclpy): data, training, profiling, latency-model fitting, accuracy tables,
configuration-map building and the edge batch-cost profile. Imports ``core`` only.
"""
