"""Recorder, episode store (zarr v3), sampler, statistics and converters (``robot_learning.datasets``).
Lands with the recorder issue; the flat per-tick layout it stores is defined in
``robot_learning.core.frame``."""
