import os
import subprocess
import sys
from pathlib import Path


def test_multidevice_suite_in_its_own_process():
    """The runs axis sharded over 8 (forced host) devices gives the single-device numbers."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "TOYMODELS_MULTIDEVICE": "1"}
    tests = Path(__file__).parents[1]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "no:cacheprovider",
                           str(tests / "multidevice")], env=env, capture_output=True, text=True, cwd=tests.parent)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "4 passed" in proc.stdout
