# Two entry points for users: `make serve` and `make test`. Both install first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install serve test lint typecheck bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

serve: install
	$(BIN)/openfdi serve --host 127.0.0.1 --port 8080 --demo

lint: install
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/ruff format --check src tests $(wildcard bench)
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy --strict src

test: install lint typecheck
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench/control_plane.py

clean:
	rm -rf $(VENV) .openfdi .pytest_cache .mypy_cache .ruff_cache
