from robot_learning.cli.main import entrypoint

entrypoint()
