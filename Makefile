# iaemu: the two set-up commands of the README.
#   make demo   Cobaya chain of yamls/ia_hod.yaml on the bundled example data -> plots/ia_hod_triangle.png
#   make test   installs everything the tests need (system packages, extras), runs ruff, then the whole suite
# Both create their own virtual environment ($(VENV)) and are idempotent: stamp files record what
# is installed, and the package itself is reinstalled (not editable) on every run so the tests
# exercise exactly what a user's `pip install .` gets.

PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch lies on this machine's disk; elsewhere set TORCH_SPEC="torch>=2.2".
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
export NUMBA_THREADING_LAYER ?= workqueue
export MPLBACKEND ?= Agg

.PHONY: demo test install-demo install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel setuptools

$(VENV)/.stamp-core: $(BIN)/python setup.cfg
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q ".[test,sampling]"
	touch $@

$(VENV)/.stamp-all: $(VENV)/.stamp-core setup.cfg scripts/system-packages.sh
	bash scripts/system-packages.sh
	$(PIP) install -q ".[all]"
	touch $@

install-demo: $(VENV)/.stamp-core
	$(PIP) install -q --no-deps --force-reinstall .

install-test: $(VENV)/.stamp-all
	$(PIP) install -q --no-deps --force-reinstall .

demo: install-demo
	mkdir -p chains plots
	$(BIN)/cobaya-run yamls/ia_hod.yaml --force
	$(BIN)/iaemu plot chains/ia_hod --truth example --output plots/ia_hod_triangle.png
	@echo "triangle plot: plots/ia_hod_triangle.png"

test: install-test
	$(BIN)/ruff check .
	cd tests && IAEMU_TEST_INSTALLED=1 ../$(BIN)/python -m pytest -ra -q .

clean:
	rm -rf $(VENV) build *.egg-info chains plots
