# Everything starts from nothing but Python 3.11+ and the package registries:
# each target creates .venv and installs what it needs first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo lab bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "iotaudit needs Python 3.11+")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,aws]'
	@touch $@

test: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	$(PY) -m iotaudit.demo

# JupyterLab on the notebooks, against the demo run (root, e.g. in a container, needs --allow-root).
lab: $(STAMP)
	$(PY) -m pip install --quiet -e '.[lab]'
	$(PY) -m iotaudit.demo --no-report
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/

bench: $(STAMP)
	$(PY) benchmarks/collect.py
	$(PY) benchmarks/audit.py
	$(PY) benchmarks/paths.py
	$(PY) benchmarks/report.py

clean:
	rm -rf $(VENV) reports/demo runs/demo .pytest_cache
