# kest: `make run` sets everything up and runs the default pipeline; `make test` sets up and runs the tests.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: run test test-fast check bench airflow-home browser clean

# The venv is (re)installed when a requirements or constraints file changes; a second run reuses it.
$(VENV)/.runtime: requirements.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	touch $@

$(AIRFLOW_HOME)/.migrated: $(VENV)/.runtime
	mkdir -p $(AIRFLOW_HOME)
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/migrate.log 2>&1 || (tail -20 $(AIRFLOW_HOME)/migrate.log; exit 1)
	touch $@

airflow-home: $(AIRFLOW_HOME)/.migrated

run: $(AIRFLOW_HOME)/.migrated
	$(BIN)/airflow dags test kest_pipeline > $(AIRFLOW_HOME)/last-run.log 2>&1; \
	  status=$$?; grep -E "\[kest[a-z.]*\]|\[tensorflow\]|\[error|Traceback|Error:" $(AIRFLOW_HOME)/last-run.log | tail -40; \
	  echo "full log: $(AIRFLOW_HOME)/last-run.log"; \
	  test $$status -eq 0 || exit $$status
	@echo "================ kest: default pipeline finished ================"
	@$(BIN)/python -m kest_tasks summary

# Headless Chromium renders report.html in a test: Debian's package, installed once (as root, or with sudo).
browser:
	@command -v chromium >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium >/dev/null; }; }

# The quality gate: lint, format, types and the architecture's import contracts (pyproject.toml).
CHECKED := kest_tasks dags plugins tests bench examples dev
check: $(VENV)/.dev
	$(BIN)/ruff check $(CHECKED)
	$(BIN)/ruff format --check $(CHECKED)
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# Every test, after the quality gate: what CI runs.
test: check browser
	$(BIN)/python -m pytest -ra --durations=25

# The inner loop: no model training, no Airflow server (under two minutes).
test-fast: $(VENV)/.dev
	$(BIN)/python -m pytest -q -m "not slow and not server"

bench: $(VENV)/.dev
	$(BIN)/python -m bench

clean:
	rm -rf $(AIRFLOW_HOME) artifacts
