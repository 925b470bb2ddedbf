# The two set-up commands of the README: `make demo` and `make test`. Each installs what it needs
# (system libraries, then a virtual environment in .venv unless one is active) before it runs.
VENV ?= .venv
PY := $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),$(VENV))/bin/python
OUT ?= carve-out

.PHONY: demo test bench install install-test

install:
	@bash scripts/install.sh $(VENV)

install-test:
	@bash scripts/install.sh $(VENV) test

demo: install
	$(PY) -m carve demo --out $(OUT)

test: install-test
	$(PY) -m pytest -q

bench: install
	cd benchmarks && $(abspath $(PY)) bench_project.py && $(abspath $(PY)) bench_carve.py
