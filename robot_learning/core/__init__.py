"""Core types: the clock, stamped samples, feature specs, observation / action containers."""

from robot_learning.core.clock import Clock, FakeClock, MonotonicClock, default_clock, ns_to_s, s_to_ns
from robot_learning.core.features import FeatureKind, FeatureSet, FeatureSpec
from robot_learning.core.frame import Action, Observation, flat_keys, flatten, unflatten
from robot_learning.core.stamped import Stamped

__all__ = [
    "Action", "Clock", "FakeClock", "FeatureKind", "FeatureSet", "FeatureSpec", "MonotonicClock",
    "Observation", "Stamped", "default_clock", "flat_keys", "flatten", "ns_to_s", "s_to_ns", "unflatten",
]
