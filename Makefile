# The two commands a newcomer needs: `make lab` and `make test`.
# Both create .venv with the machine's python3 and install with uv (bootstrapped with pip).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV     := $(BIN)/uv
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# JupyterLab refuses to run as root unless told; only pass the flag when we are root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab dashboard test lint unit notebooks bench install clean browser-deps

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(UV): | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv

$(STAMP): pyproject.toml | $(UV)
	$(UV) pip install --quiet --python $(BIN)/python -e ".[test]"
	rm -f $(VENV)/.installed-* && touch $@

lab: install
	$(BIN)/jupyter lab --notebook-dir=notebooks --ServerApp.ip=127.0.0.1 --no-browser $(ROOT_FLAG)

# The shop dashboard as a standalone page (Voila), on 127.0.0.1 with a login token like `make lab`.
dashboard: install
	$(BIN)/voila dashboards/shop.ipynb --Voila.ip=127.0.0.1 --no-browser --token

lint: install
	$(BIN)/ruff check cqrs_lab tests bench
	$(BIN)/ruff format --check cqrs_lab tests bench
	$(BIN)/mypy

# Notebooks run under strict nbval: every stored output must come out the same.
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg

# Browser tests (tests/browser) drive Debian's chromium, never a downloaded browser build.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser-deps:
	@test -x /usr/bin/chromium || ($(SUDO) apt-get update && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium)

test: lint browser-deps
	$(BIN)/python -m pytest
	$(BIN)/python -m pytest $(NBVAL) -p no:cacheprovider notebooks

# Re-run every notebook in place to refresh its stored outputs after an intended change.
notebooks: install
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=120 --ExecutePreprocessor.store_widget_state=False \
	    --ExecutePreprocessor.record_timing=False \
	    notebooks/[0-9]*.ipynb

bench: install
	$(UV) pip install --quiet --python $(BIN)/python -e ".[test,bench]"
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
