#!/usr/bin/env python3
"""Measurements of the sharded reference cloud (tools/refcloud/shardbench.py): `python tools/shard_bench.py --help`."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(os.path.dirname(HERE), ".venv")
VENV_PY = os.path.join(VENV, "bin", "python")
try:
    import paho.mqtt.client  # noqa: F401
except ImportError:  # run with the project's venv (paho-mqtt, matplotlib) when started as a plain script
    if os.path.exists(VENV_PY) and os.path.realpath(sys.prefix) != os.path.realpath(VENV):
        os.execv(VENV_PY, [VENV_PY] + sys.argv)
    raise
sys.path.insert(0, HERE)

from refcloud.shardbench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
