"""The project's PEP 517 build backend: setuptools, minus one informational notice.

An editable install of a package whose folders are mapped (``hardware/`` installs as
``robot_learning.hardware``, and so on) makes setuptools emit ``InformationOnly("Editable
installation. Please be careful with folders in your working directory...")`` through the
warnings module, which pip prints as a warning on every ``pip install -e .``. It carries no
problem of this project (the mapped folders are not top-level modules), so this backend
silences exactly that category and delegates everything else to ``setuptools.build_meta``.
Real setuptools warnings (deprecations, invalid configuration) still reach the user.
"""

from __future__ import annotations

import warnings

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the PEP 517 / 660 hooks, unchanged)
from setuptools.warnings import InformationOnly


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InformationOnly)
        return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
