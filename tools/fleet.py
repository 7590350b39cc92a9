#!/usr/bin/env python3
"""Fleet runner and `make sim` demo (tools/refcloud/fleet.py): `python tools/fleet.py --help`."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _venv import use_venv  # noqa: E402

use_venv("paho.mqtt.client")

from refcloud.fleet import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
