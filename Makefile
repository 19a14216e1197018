# Set-up and everyday commands. `make demo` and `make test` create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
IMAGES ?= $(wildcard ../shared/data/imagenette_samples)
DEMO := results/demo

.PHONY: venv test test-all demo bench profiles clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Tests run in parallel (pytest-xdist, one worker per CPU); `make test` leaves out the tests
# marked slow (long end-to-end runs, the sweep over every torchvision model), `make test-all` runs all.
PYTEST_WORKERS ?= auto
PYTEST := $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup

test: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache
	$(PYTEST) -m "not slow"

test-all: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache
	$(PYTEST)

demo: $(STAMP)
	$(PY) -m dime.samples --model alexnet $(if $(IMAGES),--images $(IMAGES) --count 8,--count 4) --out $(DEMO)/samples/alexnet
	$(PY) -m dime.profile --model alexnet --device-name this-cpu --torch-device cpu --threads 1,2 \
		--max-bundle 8 --iterations 10 --runs 5 --samples $(DEMO)/samples/alexnet --out $(DEMO)/alexnet-this-cpu.csv
	$(PY) examples/demo_solve.py $(DEMO)/alexnet-this-cpu.csv $(DEMO)

bench: $(STAMP)
	$(PY) benchmarks/bench_solve.py

clean:
	rm -rf results .pytest_cache
