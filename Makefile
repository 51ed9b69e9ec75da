# One command sets up and runs each job on a fresh machine (Python 3.11+ required).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements-dev.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# The main job: a short headless run against the built-in emulator, writing reports/demo/{result.json,report.html}.
demo: $(STAMP)
	$(BIN)/locust -f locustfiles/chat.py --headless -u 8 -r 8 -t 15s --run-name demo --only-summary
	@echo "Report: reports/demo/report.html"

# Installs what the tests need beyond the venv (scripts/test-deps.d/*.sh: browsers, databases, peer servers),
# then lints and runs the whole suite in parallel.
test: $(STAMP)
	@for f in scripts/test-deps.d/*.sh; do [ -e "$$f" ] || continue; bash "$$f" || exit 1; done
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 -q -m "not accuracy"
	$(BIN)/python -m pytest -q -m accuracy

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) reports/*/
