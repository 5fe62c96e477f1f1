"""Optional extras (interop, tensorboard) in tests: skipped where not installed, except in
CI, which installs them and sets TOYMODELS_REQUIRE_EXTRAS=1 so a missing one fails."""

import importlib
import os

import pytest


def require(module: str):
    """Import ``module``, or skip the test (fail under TOYMODELS_REQUIRE_EXTRAS=1)."""
    if os.environ.get("TOYMODELS_REQUIRE_EXTRAS"):
        return importlib.import_module(module)
    return pytest.importorskip(module)
