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

# Tests run in parallel (pytest-xdist, one worker per CPU), then those marked serial (they time
# things or compare machine-wide state) alone. `make test` leaves out the tests marked slow (long
# end-to-end runs, the sweep over every torchvision model); `make test-all` runs them too.
PYTEST_WORKERS ?= auto
define run_tests
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) -m "not serial $(1)"; a=$$?; \
	$(PY) -m pytest -q -p no:xdist -m "serial $(1)"; b=$$?; test $$a = 0 -a $$b = 0
endef

test: $(STAMP)
	$(call run_tests,and not slow)

test-all: $(STAMP)
	$(call run_tests,)

demo: $(STAMP)
	$(PY) -m dime.samples --model alexnet $(if $(IMAGES),--images $(IMAGES) --count 8,--count 4) --out $(DEMO)/samples/alexnet
	$(PY) -m dime.profile --model alexnet --device-name this-cpu --torch-device cpu --threads 1,2 \
		--max-bundle 8 --iterations 10 --runs 5 --samples $(DEMO)/samples/alexnet --out $(DEMO)/alexnet-this-cpu.csv
	$(PY) examples/demo_solve.py $(DEMO)/alexnet-this-cpu.csv $(DEMO)

bench: $(STAMP)
	$(PY) benchmarks/bench_solve.py

clean:
	rm -rf results .pytest_cache
