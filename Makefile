# repro: two commands do everything on a fresh Debian machine (as root):
#   make demo   install, start Docker, build images, launch the example training run, show it
#   make test   install, start Docker, build images, run the whole test suite
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
REPRO := $(VENV)/bin/repro

.PHONY: install docker images demo test unit lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' --config-settings editable_mode=compat
	touch $@

install: $(VENV)/.installed

docker:
	scripts/ensure-docker

images: install docker
	$(REPRO) image build images/train

demo: images
	$(REPRO) launch specs/digits-mlp.yaml
	$(REPRO) runs

test: images
	$(PY) -m pytest

unit: install
	$(PY) -m pytest tests/unit

lint: install
	$(VENV)/bin/ruff check .

bench: images
	$(PY) benchmarks/run.py

clean:
	rm -rf .repro bench-out
