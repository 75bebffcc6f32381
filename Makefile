# Mamori. Every target that needs the machine set up calls scripts/setup.sh first
# (idempotent: about a second when nothing is missing). eBPF needs root: sudo make ...
VENV   := .venv
PY     := $(VENV)/bin/python
CONFIG ?= config/mamori.yaml

.PHONY: setup helm run trace test test-serial test-unit test-kernel gen proto demo bench clean

setup:
	@./scripts/setup.sh

## helm at .tools/bin/helm, for the chart tests (scripts/fetch_helm.sh says from where).
helm:
	@./scripts/fetch_helm.sh

## Run the agent on this node with the default configuration (Ctrl-C stops it).
run: setup
	$(VENV)/bin/mamori run --config $(CONFIG)

## Print every event on the host (not only containers) as JSON lines.
trace: setup
	$(VENV)/bin/mamori trace --config $(CONFIG) --all-processes

## The whole test suite: unit, kernel (real eBPF, real syscalls), container, chart and e2e,
## one pytest process per file, several at once (scripts/pytest_parallel.py says how).
test: setup helm
	$(PY) scripts/pytest_parallel.py

## The same suite in one pytest process, one test at a time.
test-serial: setup helm
	$(PY) -m pytest -v

test-unit: setup helm
	$(PY) -m pytest -v tests/unit

test-kernel: setup
	$(PY) -m pytest -v tests/kernel

## Regenerate bpf/events.h from agent/sensor/layout.py.
gen:
	$(PY) -m agent.sensor.layout > bpf/events.h

## Regenerate the gRPC code from proto/ (agent/api/gen).
proto:
	./scripts/gen_proto.sh

## A short attack on a real container, with the agent watching (no cluster needed).
demo: setup
	$(PY) scripts/demo.py

## Every benchmark in one run; writes the report into docs/benchmarks.md (several minutes).
## SMOKE=1: every section at a size that only proves it runs (seconds each), reported into
## a temp file (docs/ untouched) -- what the README-command test runs.
bench: setup
	$(PY) bench/report.py $(if $(SMOKE),--smoke)

clean:
	rm -rf $(VENV) .tools .pytest_cache build *.egg-info bench/build
