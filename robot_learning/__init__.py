"""robot-learning: teleoperate, record, train and deploy robot manipulation policies."""

__version__ = "0.1.0"
