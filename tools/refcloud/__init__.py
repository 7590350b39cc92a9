"""Reference cloud for evse-mpy chargers: installation model, load/phase allocator, MQTT cloud, fleet runner.

Host-side CPython only. The allocator (`allocator.py`) and the balancer (`balancer.py`) do no I/O;
`cloud.py` speaks the charger contract over MQTT (paho-mqtt 2.x); `fleet.py` runs a broker, the
cloud and simulated chargers together (`make sim`).
"""
