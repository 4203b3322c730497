"""
Evaluation on an emulated robot/edge link (root): network namespaces, tc shaping, cgroups,
sweeps, trace replays and their plots. Nothing in ``core``, ``offline`` or ``nodes`` imports it.
"""
