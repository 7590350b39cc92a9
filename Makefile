# Two commands matter: `make sim` runs the firmware on the simulated board, `make test` tests it.
# Every target installs what it needs on first use and is safe to run again.

VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
MP     := $(VENV)/bin/micropython
STAMP  := $(VENV)/.installed
UMQTT  := build/lib/umqtt/simple.py
MP32   := build/mp32/.built
# what the frozen 32-bit image holds: rebuilt when any of it changes
FROZEN_SRC := $(shell find firmware drivers board -name '*.py') manifest.py $(wildcard tools/unix32/*.py)
PORT   ?= /dev/ttyUSB0
PYTHON ?= python3

.PHONY: setup firmware-unix32 test test-py test-mp lint typecheck bundle deploy romfs deploy-romfs sim sim-one sim-ocpp plot bench soak clean

setup: $(STAMP) $(UMQTT) build/.mosquitto

$(STAMP): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

$(UMQTT): tools/fetch_umqtt.py | $(STAMP)
	$(PY) tools/fetch_umqtt.py build/lib

build/.mosquitto: tools/ensure_mosquitto.sh
	@mkdir -p build
	sh tools/ensure_mosquitto.sh
	@touch $@

# The 32-bit MicroPython unix ports (.mpy-loading and frozen image) from the pinned 1.28.0 source
# (../shared, or MICROPY_SRC=DIR): the MicroPython leg and `make bench` run on them.
firmware-unix32: $(MP32)

$(MP32): tools/build_micropython.py $(FROZEN_SRC) $(UMQTT)
	$(PYTHON) tools/build_micropython.py --out build/mp32
	@touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(PY) tools/typecheck.py

# CPython leg: every test, including the CPython-only ones (hypothesis, real broker, processes).
test-py: setup
	$(PYTEST) -m "not mp"

# MicroPython leg: the logic tests again, each under `micropython -X heapsize=112K` on both 32-bit
# ports (host_tests/conftest.py).
test-mp: setup firmware-unix32
	$(PYTEST) -m mp

test: setup lint typecheck test-py test-mp

bundle: setup
	$(PY) tools/build_bundle.py build/bundle

deploy: bundle
	$(PY) tools/deploy.py --port $(PORT) build/bundle

# ROMFS image of the device modules: on a MicroPython build with a ROMFS partition the bytecode runs
# from flash, which leaves most of a 112 KB heap free (bench/README.md).
romfs: setup
	$(PY) tools/build_bundle.py build/bundle --romfs build/firmware.romfs

deploy-romfs: romfs
	$(PY) tools/deploy.py --port $(PORT) --romfs build/firmware.romfs build/bundle

# The installation demo: local broker, reference cloud, three simulated chargers on one 32 A circuit,
# scripted vehicles, live view; writes build/sim-plot.png on exit. SPEED scales the script only.
SPEED ?= 1
sim: setup
	$(PY) tools/fleet.py --speed $(SPEED) --record build/sim-record.json --png build/sim-plot.png

# OCPP: the reference central system (tools/csms) balancing simulated chargers on one circuit.
sim-ocpp: setup
	$(PY) tools/refcsms/demo.py --circuit-a 32

# One standalone charger with a scripted vehicle (no broker, no cloud).
sim-one: setup
	$(PY) tools/sim.py

plot: $(STAMP)
	$(PY) tools/refcloud/plot.py build/sim-record.json build/sim-plot.png

bench: setup bundle firmware-unix32
	$(PY) tools/bench.py

# The firmware under long abuse (issue 15; not part of `make test`): about an hour on 2 cores,
# SOAK_SCALE=0.1 for a quick run. Writes bench/soak.json; a failure goes to bench/soak-failures/.
SOAK_SCALE ?= 1
soak: setup firmware-unix32
	SOAK_SCALE=$(SOAK_SCALE) $(PY) tools/soak.py

clean:
	rm -rf build .pytest_cache .ruff_cache .mypy_cache .hypothesis
