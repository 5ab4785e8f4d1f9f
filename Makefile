# Neural Tangent Kernel course: one entry point for readers, authors and CI.
#
#   make book       build the HTML book into _build/html (creates .venv if needed)
#   make lab        open the chapters in JupyterLab (MyST rendered, .md opens as a
#                   notebook)
#   make test       everything CI checks: unit tests, nbval on every chapter (twice: on
#                   this CPU and under another floating-point profile), md/ipynb pair
#                   check, dependency check, strict book build, plain-notebook check,
#                   every page and JupyterLab opened in headless Chromium
#   make notebooks  re-execute every chapter, refresh its outputs and plain notebook
#   make notebook NB=book/04_convergence.md   the same for one chapter (outputs only)
#
# When a virtual or conda environment is active, it is used as it is (and completed
# from the lock file if a dependency is missing); otherwise a .venv is created here.

SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help env mathjax book book-strict browser-test test unit nbval nbval-profile \
  notebooks notebook plain-notebooks plain-check lab lock clean bench
.PHONY: tippy pdf pdf-test

LOCK := requirements.lock
export JAX_PLATFORMS := cpu
export PYTHONHASHSEED := 0
export PYDEVD_DISABLE_FILE_VALIDATION := 1

ifneq ($(strip $(VIRTUAL_ENV)$(CONDA_PREFIX)),)
  PY := python
  JB := jupyter-book
  ENV_STAMP := .env-check
else
  PY := .venv/bin/python
  JB := .venv/bin/jupyter-book
  ENV_STAMP := .venv/.installed
endif

CHAPTERS  := $(sort $(wildcard book/[0-9][0-9]_*.md))
NOTEBOOKS := $(CHAPTERS:.md=.ipynb)
PYTEST    := $(PY) -m pytest -p no:cacheprovider
NBVAL     := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

# Another CPU's rounding on this one: XLA code generation limited to SSE4.2 (no
# AVX/FMA), OpenBLAS/LAPACK on its Prescott kernels, one BLAS thread. The stored outputs
# must pass nbval under this profile too (make nbval-profile), so they hold on any
# reader's CPU.
FP_PROFILE := XLA_FLAGS=--xla_cpu_max_isa=SSE4_2 OPENBLAS_CORETYPE=Prescott \
  OPENBLAS_NUM_THREADS=1

# MathJax 3 for offline math, from the npm registry (not committed; see _config.yml).
MATHJAX_VERSION := 3.2.2
MATHJAX_DIR     := _build/mathjax
MATHJAX_STAMP   := $(MATHJAX_DIR)/static/mathjax/.installed-$(MATHJAX_VERSION)

help:
	@sed -n '2,14p' Makefile | sed 's/^# \{0,1\}//'

env: $(ENV_STAMP)

.venv/.installed: pyproject.toml $(LOCK)
	@test -x .venv/bin/python || python3 -m venv .venv
	.venv/bin/python -m pip install --quiet --upgrade pip
	.venv/bin/python -m pip install --quiet -c $(LOCK) -e ".[book,test]"
	@touch $@

# An active environment: install what is missing, never create a second one.
.PHONY: .env-check
.env-check:
	@$(PY) -c "import ntk_companion, jupyter_book, nbval, jupytext, hypothesis, xdist, \
	  playwright, jupyterlab, jupyterlab_myst" 2>/dev/null || \
	  $(PY) -m pip install --quiet -c $(LOCK) -e ".[book,test]"

# MathJax's es5 bundle into _build/mathjax/static/mathjax/, which Sphinx copies to
# _build/html/_static/mathjax/ (html_static_path in _config.yml).
mathjax: $(MATHJAX_STAMP)

$(MATHJAX_STAMP):
	@command -v npm >/dev/null || { \
	  echo "npm (Node.js) is needed to fetch MathJax for the book" >&2; exit 1; }
	rm -rf $(MATHJAX_DIR)
	npm install --prefix $(MATHJAX_DIR)/npm --no-save --no-package-lock --no-audit \
	  --no-fund --loglevel=error mathjax@$(MATHJAX_VERSION)
	mkdir -p $(MATHJAX_DIR)/static/mathjax
	cp -R $(MATHJAX_DIR)/npm/node_modules/mathjax/es5 \
	  $(MATHJAX_DIR)/npm/node_modules/mathjax/LICENSE $(MATHJAX_DIR)/static/mathjax/
	rm -rf $(MATHJAX_DIR)/npm
	@touch $@

# Hover previews (sphinx-tippy) use Popper and Tippy.js, from the npm registry like
# MathJax, served from the build: _build/tippy/static/tippy-lib/ ->
# _build/html/_static/tippy-lib/.
TIPPY_DIR   := _build/tippy
TIPPY_STAMP := $(TIPPY_DIR)/static/tippy-lib/.installed-popper2.11.8-tippy6.3.7

tippy: $(TIPPY_STAMP)

$(TIPPY_STAMP):
	@command -v npm >/dev/null || { \
	  echo "npm (Node.js) is needed to fetch Tippy.js for the book" >&2; exit 1; }
	rm -rf $(TIPPY_DIR)
	npm install --prefix $(TIPPY_DIR)/npm --no-save --no-package-lock --no-audit \
	  --no-fund --loglevel=error @popperjs/core@2.11.8 tippy.js@6.3.7
	mkdir -p $(TIPPY_DIR)/static/tippy-lib
	cp $(TIPPY_DIR)/npm/node_modules/@popperjs/core/dist/umd/popper.min.js \
	  $(TIPPY_DIR)/npm/node_modules/tippy.js/dist/tippy-bundle.umd.min.js \
	  $(TIPPY_DIR)/static/tippy-lib/
	cp $(TIPPY_DIR)/npm/node_modules/tippy.js/LICENSE \
	  $(TIPPY_DIR)/static/tippy-lib/LICENSE-tippy
	cp $(TIPPY_DIR)/npm/node_modules/@popperjs/core/LICENSE.md \
	  $(TIPPY_DIR)/static/tippy-lib/LICENSE-popper
	rm -rf $(TIPPY_DIR)/npm
	@touch $@

book book-strict: tippy

# The whole book as one PDF, offline: the one-page HTML build printed by headless
# Chromium (tools/book_pdf.py: math typeset, code wrapped, solutions expanded). make
# pdf-test reads it back with poppler's pdfinfo/pdftotext (page count, contents, no raw
# LaTeX or MyST).
PDF := _build/pdf/ntk-course.pdf

pdf: env mathjax tippy
	rm -rf _build/singlehtml
	$(JB) build . --builder singlehtml --quiet
	$(PY) tools/book_pdf.py _build/singlehtml $(PDF)
	@if [ -d _build/html ]; then \
	  cp $(PDF) _build/html/ && echo "copied to _build/html/"; fi

pdf-test: env
	$(PYTEST) -q --tb=short --confcutdir=tests/pdf tests/pdf

book: env mathjax
	$(JB) build . --quiet
	@echo "Open file://$(CURDIR)/_build/html/index.html"

book-strict: env mathjax
	rm -rf _build/html _build/.doctrees
	$(JB) build . --warningiserror --nitpick --keep-going --quiet

# Every page of the TOC in headless Chromium (/usr/bin/chromium, Debian's package): math
# typeset, images loaded, internal links and anchors resolve, no console errors.
# Screenshots go to _build/screenshots/. Needs a built book (make book or book-strict).
browser-test: env
	$(PYTEST) -q --tb=short --confcutdir=tests/browser tests/browser

unit: env
	$(PYTEST) -q -n 2 --dist loadfile tests

nbval: env
	$(PYTEST) -q -n 2 --dist loadfile $(NBVAL) $(NOTEBOOKS)

# The same stored outputs under another CPU's floating-point profile (FP_PROFILE above).
nbval-profile: env
	$(FP_PROFILE) $(PYTEST) -q -n 2 --dist loadfile $(NBVAL) $(NOTEBOOKS)

test: env
	@$(PY) tests/tree_state.py save
	$(PYTEST) -q -n 2 --dist loadfile tests $(NBVAL) $(NOTEBOOKS)
	$(MAKE) --no-print-directory nbval-profile
	$(MAKE) --no-print-directory book-strict
	$(MAKE) --no-print-directory plain-check
	$(MAKE) --no-print-directory browser-test
	@$(PY) tests/tree_state.py check

notebooks: env
	@for nb in $(CHAPTERS); do \
	  $(MAKE) --no-print-directory notebook NB=$$nb || exit 1; done
	$(MAKE) --no-print-directory plain-notebooks

# Plain-Jupyter chapters (book/_ext/plain_notebooks.py): every HTML build writes them
# to _build/html/notebooks/; book/notebooks/ holds the committed copies that Colab and
# Binder open. plain-notebooks refreshes the copies, plain-check (in make test) compares
# them.
plain-notebooks: book
	mkdir -p book/notebooks
	rm -f book/notebooks/*.ipynb
	cp _build/html/notebooks/*.ipynb book/notebooks/

plain-check: env
	$(PY) book/_ext/plain_notebooks.py check _build/html/notebooks book/notebooks

# JupyterLab on the chapters: jupyterlab-myst renders theorems, roles and math, and a
# .md chapter opens as a notebook through jupytext (paired with its .ipynb). The
# settings in book/_lab/overrides.json make the Jupytext notebook the default viewer of
# .md files.
LAB_ARGS := --LabApp.app_settings_dir=$(CURDIR)/book/_lab \
  --ServerApp.root_dir=$(CURDIR) \
  $(if $(filter 0,$(shell id -u)),--allow-root)
lab: env
	$(PY) -m jupyter lab $(LAB_ARGS) book/

notebook: env
	@test -n "$(NB)" || { echo "usage: make notebook NB=book/NN_name.md"; exit 2; }
	$(PY) -m jupytext --to ipynb --execute --run-path book "$(NB)"
	$(PY) tests/strip_metadata.py "$(basename $(NB)).ipynb"

bench: env
	$(PY) benchmarks/bench_ntk.py

lock:
	$(PY) -m pip freeze --exclude-editable | grep -v '^ntk.companion' > $(LOCK)

clean:
	rm -rf _build .pytest_cache .hypothesis
