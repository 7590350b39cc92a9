#!/usr/bin/env python3
"""Measurements of the sharded reference cloud (tools/refcloud/shardbench.py): `python tools/shard_bench.py --help`."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _venv import use_venv  # noqa: E402

use_venv("paho.mqtt.client")

from refcloud.shardbench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
