# Two commands for a newcomer: `make demo` and `make test`. Both bootstrap .venv from a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: setup test demo bench lint typecheck check clean browser

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

setup: $(STAMP)

test: setup browser lint typecheck
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# Debian's Chromium renders the eval report in a test; without it that one test skips with a reason.
browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi wenquanyi; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq >/dev/null 2>&1; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-zenhei >/dev/null 2>&1 || \
	      echo "chromium could not be installed: the report screenshot test will skip"; \
	  else echo "chromium is missing (needs root to install): the report screenshot test will skip"; fi; \
	fi


demo: setup
	$(VENV)/bin/quanbot demo

bench: setup
	$(PY) -m benchmarks.run_all

# Both run first in `make test`: ruff's rules are pinned in pyproject.toml, mypy checks the five packages listed there.
lint: setup
	$(VENV)/bin/ruff check bot casestore knowledge policies evals tests benchmarks

typecheck: setup
	$(VENV)/bin/mypy

check: lint typecheck

clean:
	rm -rf $(VENV) var/*.db var/chroma var/models
