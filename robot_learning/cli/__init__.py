"""Command-line interface: ``robot-learning <subcommand>``."""
