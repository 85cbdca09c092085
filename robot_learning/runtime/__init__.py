"""The one control runtime: rate loop, watchdog, safety filter, action sources, sinks.

Import the pieces from their modules (``robot_learning.runtime.control`` etc.).
"""
