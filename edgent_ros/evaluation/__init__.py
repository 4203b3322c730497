"""
Evaluation on an emulated robot/edge link (root).

Network namespaces, tc shaping, cgroups, sweeps, trace replays and their plots. May import
``core``, ``offline`` and ``nodes``; only ``cli`` imports it (test/test_layers.py).
"""
