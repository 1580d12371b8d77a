# The README's first two commands. Each creates .venv when absent and installs
# the project (editable) with its test extras; torch is pinned to 2.13.0, the
# CPU build this machine keeps on disk.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench install clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/nado demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

# the unit tests: everything but the end-to-end / multi-process ones (marker e2e); about a minute
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not e2e"

bench: $(STAMP)
	$(BIN)/nado bench --quick --out bench.json

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis runs
