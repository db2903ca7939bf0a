# One entry per job. `run` and `test` set up .venv themselves on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test hil bench lint vcan clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/bms-emu run $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

# the HIL suite alone (emulated device, virtual time; see README for hardware)
hil: $(STAMP)
	$(PY) -m pytest hil $(ARGS)

bench: $(STAMP)
	$(PY) -m bench $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check bms tests bench hil
	$(VENV)/bin/ruff format --check bms tests bench hil
	$(VENV)/bin/mypy

# Linux only: a virtual SocketCAN bus vcan0 (needs root and the vcan kernel module)
vcan:
	sudo modprobe vcan
	sudo ip link show vcan0 >/dev/null 2>&1 || sudo ip link add dev vcan0 type vcan
	sudo ip link set up vcan0

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache reports
	find . -name __pycache__ -prune -exec rm -rf {} +
