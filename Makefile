# Matrix calculus, low rank and autodiff for ML — course repository.
# `make lab` and `make test` work on a fresh clone: both install what they need first.

PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PY      := $(BIN)/python
# nbgrader runs `alembic` by name: keep the venv's bin/ first on PATH for every recipe.
export PATH := $(abspath $(BIN)):$(PATH)
# The install is redone only when one of these changes.
STAMP   := $(VENV)/.installed
INSTALL_INPUTS := requirements.txt utils/pyproject.toml coursetests/pyproject.toml

# pytest's options and import paths: pyproject.toml ([tool.pytest.ini_options]).
PYTEST  := $(PY) -m pytest
NBVAL   := $(PYTEST) --nbval --nbval-sanitize-with lectures/nbval_sanitize.cfg --nbval-current-env

.DEFAULT_GOAL := help
.PHONY: help install lab formgrader test test-repo test-utils test-lectures lectures bench bench-grading bench-sandbox-image badges clean lint

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): $(INSTALL_INPUTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e utils
	$(PY) -m pip install --quiet --no-deps -e coursetests
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)" >/dev/null
	@touch $@

install: $(STAMP) ## create .venv and install everything (idempotent)

lab: install ## open JupyterLab on the course
	$(BIN)/jupyter lab --notebook-dir=. $(if $(filter 0,$(shell id -u)),--allow-root,)

# The public student repository (`make student-repo`) is this Makefile without grading/, tests/, hub/
# and benchmarks/: a target that needs one of them exists only where it is (tests/test_grading_course.py
# runs `make help` and `make -n test` there). grading.mk, browser.mk and hub.mk add their suites to `test`.
ifneq ($(wildcard grading/nbgrader_config.py),)
# nbgrader reads its configuration from the server's working folder (grading/): serve the repo from there.
formgrader: install ## JupyterLab for instructors: Nbgrader -> Formgrader sees the course
	cd grading && $(abspath $(BIN))/jupyter lab --ServerApp.root_dir=.. $(if $(filter 0,$(shell id -u)),--allow-root,)
endif

test: install lint test-utils test-lectures ## run every test suite (lint first: it takes seconds)

ifneq ($(wildcard tests/test_*.py),)
test: test-repo
# Every tests/test_*.py but the grading suites (test-grading) and the browser (test-browser).
REPO_TESTS := $(filter-out tests/test_grading_%,$(wildcard tests/test_*.py))
test-repo: install ## repo-level tests: pins, layout, notebooks' hygiene, the sandbox, bench smoke test
	$(PYTEST) $(REPO_TESTS)
endif

test-utils: install ## the gradcheck package (its tests, its README's examples and docstrings as doctests)
	cd utils && $(abspath $(PY)) -m pytest tests --doctest-modules gradcheck --doctest-glob=README.md README.md

# One BLAS thread: on a shared 2-core machine threaded BLAS made small SVDs 50x slower.
test-lectures: install ## re-run every lecture and compare its stored outputs (nbval, strict)
	OPENBLAS_NUM_THREADS=1 $(NBVAL) lectures

lectures: install ## re-execute the lectures in place (refresh stored outputs)
	$(PY) scripts/stamp_badges.py
	OPENBLAS_NUM_THREADS=1 $(PY) scripts/execute_notebooks.py lectures/[0-9][0-9]_*.ipynb

ifneq ($(wildcard benchmarks/bench_gradcheck.py),)
bench: install ## gradcheck vs torch / scipy / CS231n (markdown tables)
	$(PY) benchmarks/bench_gradcheck.py
endif

ifneq ($(wildcard benchmarks/bench_grading.py grading/coursegrader),)
bench-grading: install ## plain nbgrader vs our sandboxed grader on 40 submissions [N=40 JOBS=2]
	$(PY) benchmarks/bench_grading.py --n $(or $(N),40) $(if $(JOBS),--jobs $(JOBS))
endif

ifneq ($(wildcard benchmarks/bench_sandbox_image.py),)
bench-sandbox-image: install ## the kernel's runtime image: build time, kernel start with / without it
	$(PY) benchmarks/bench_sandbox_image.py
endif

# ruff's configuration: pyproject.toml. Both checks run; the target fails if either finds something.
lint: install ## ruff: lint (check) and formatting (format --check) of every .py file
	@status=0; $(BIN)/ruff check . || status=1; $(BIN)/ruff format --check . || status=1; exit $$status

clean: ## remove caches (keeps .venv)
	find . -name __pycache__ -prune -exec rm -rf {} + ; rm -rf .pytest_cache .hypothesis

badges: install ## stamp Colab badges, setup cells, Colab links and the README lecture and assignment tables
	$(PY) scripts/stamp_badges.py

# Grading targets (release, collect, autograde, feedback, grades, student-repo, test-grading).
-include grading/grading.mk

# Browser tests, Colab / Binder checks and the static site.
-include tests/browser/browser.mk

# The course on a JupyterHub: `make hub`, `make hub-users`, `make test-hub` (hub/README.md).
-include hub/hub.mk
