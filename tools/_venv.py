"""The start of the host tools' launchers (tools/cloud, tools/csms, tools/fleet.py,
tools/shard_bench.py): run under the project's venv when started as a plain script."""
import os
import sys


def use_venv(module):
    """Import `module` (one the tool needs from requirements-dev.txt); when that fails outside the
    project's venv, run the same command again with the venv's python."""
    try:
        __import__(module)
    except ImportError:
        venv = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv")
        py = os.path.join(venv, "bin", "python")
        if os.path.exists(py) and os.path.realpath(sys.prefix) != os.path.realpath(venv):
            os.execv(py, [py] + sys.argv)
        raise
