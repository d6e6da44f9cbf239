# repro: two commands do everything on a fresh Debian machine (as root):
#   make demo   install, start Docker, build images, launch the example training run, show it
#   make test   install, start Docker, build images, install Chromium, run the whole test suite
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
REPRO := $(VENV)/bin/repro

.PHONY: install docker browser postgres slurm images demo test unit fuzz lint bench rebuild-check ui screenshots vendor clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' --config-settings editable_mode=compat
	touch $@

install: $(VENV)/.installed

docker:
	scripts/ensure-docker

browser:
	scripts/ensure-browser

postgres:
	scripts/ensure-postgres

slurm:
	scripts/ensure-slurm

images: install docker
	$(REPRO) image build images/train

demo: images
	$(REPRO) launch specs/digits-mlp.yaml
	$(REPRO) runs

# the whole suite, with the coverage of orchestrator/ (pyproject.toml [tool.coverage])
test: images browser postgres slurm
	$(PY) -m pytest --cov --cov-report=term

ui: install
	$(REPRO) ui

screenshots: images browser
	REPRO_UPDATE_SCREENSHOTS=1 $(PY) -m pytest tests/integration/test_dashboard.py

vendor:
	rm -rf build/npm && mkdir -p build/npm
	cd build/npm && npm install --silent chart.js@4.6.1
	cp build/npm/node_modules/chart.js/dist/chart.umd.min.js orchestrator/web/static/vendor/
	cp build/npm/node_modules/chart.js/LICENSE.md orchestrator/web/static/vendor/chart.js-LICENSE.md

# the fast tier: no PostgreSQL, no Docker, no process started (tests/conftest.py fails a
# test that starts one unless it is marked `process`); under 30 s, run first by .ci/run
unit: install
	REPRO_FAST_TIER=1 $(PY) -m pytest tests/unit tests/cli -q -m "not pg and not process"

# the trust-boundary fuzzers at length (make test runs 40 examples each, derandomized)
fuzz: install
	REPRO_FUZZ_EXAMPLES=$${REPRO_FUZZ_EXAMPLES:-2000} REPRO_FUZZ_RANDOM=1 \
		$(PY) -m pytest tests/unit/test_fuzz.py -q

# the hooks of .pre-commit-config.yaml, the same commands in the same order
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# the launch of the code before the executor/store redesign, timed in the same run
BENCH_BEFORE ?= 0c17b1a
bench: images
	$(PY) benchmarks/run.py --before $(BENCH_BEFORE)

# does building the same recipe twice give the same image? (BENCHMARKS.md)
rebuild-check: images
	$(PY) benchmarks/rebuild.py --write

clean:
	rm -rf .repro bench-out
