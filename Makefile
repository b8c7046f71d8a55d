# Two entry points for users: `make serve` and `make test`. Both install first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install browser serve test test-fast lint typecheck bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The console's browser tests drive Debian's Chromium (never a browser download): install it with
# apt where it is missing and we may (root), else tell how. OPENFDI_CHROMIUM names another one.
browser:
	@if [ -n "$$OPENFDI_CHROMIUM" ] || command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -qq chromium chromium-driver || \
		 (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)) >/dev/null; \
	else echo "browser tests need Chromium: sudo apt-get install chromium chromium-driver" >&2; fi

serve: install
	$(BIN)/openfdi serve --host 127.0.0.1 --port 8080 --demo

lint: install
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/ruff format --check src tests $(wildcard bench)
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy --strict src

# The suite in two processes, each taking a whole file at a time (--dist loadfile: a file's
# module-scoped servers stay in one process). Most tests wait on servers and subprocesses, so two
# processes overlap that waiting even on 2 CPUs. PYTEST_WORKERS=0 runs them all in this process.
PYTEST_WORKERS ?= 2

test: install browser lint typecheck
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=25

# The inner loop: everything but the tests marked slow (crash, fuzz, browser, load), no lint.
test-fast: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not slow" -q

bench: install
	$(BIN)/python bench/control_plane.py

clean:
	rm -rf $(VENV) .openfdi .pytest_cache .mypy_cache .ruff_cache
