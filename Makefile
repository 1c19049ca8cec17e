# The two commands that matter: `make setup`, then `make test`. See README.md.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PY      = $(BIN)/python
NOTEBOOK_TIMEOUT ?= 300
# The unit tests and the notebooks run in parallel (pytest-xdist): one worker per core, at most 4
# (TEST_WORKERS=1: one after another). Each worker's torch uses one thread unless OMP_NUM_THREADS
# says otherwise: two workers of two threads each on 2 cores run slower than one worker.
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(max(1, min(4, getattr(os, 'process_cpu_count', os.cpu_count)() or 1)))" 2>/dev/null || echo 1)
XDIST = $(if $(filter-out 0 1,$(TEST_WORKERS)),-n $(TEST_WORKERS))
THREADS = $(if $(XDIST),OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=$${MKL_NUM_THREADS:-1})

.PHONY: help setup setup-dev test lint unit unit-all robustness notebooks profiles check-sync sync student lab new clean bench determinism demo colab

help:
	@echo "make setup   create $(VENV) with helpers (editable), the notebooks' packages and JupyterLab"
	@echo "make setup-dev   make setup + the test and lint tools (make test runs it when they are missing)"
	@echo "make test    lint, unit tests, then every notebook (smoke profile, nbval), the profile switch, the pairing check"
	@echo "make lint    ruff: lint and import order of helpers, tests, tools and the notebooks' .py sources"
	@echo "make lab     open JupyterLab on this folder (from $(VENV), or the active conda environment)"
	@echo "make sync    rewrite every notebook pair (.py <-> .ipynb), badges and setup cells, and exercises/"
	@echo "make student regenerate the exercise notebooks in exercises/ from the solution notebooks"
	@echo "make new NB=notebooks/<track>/<name> TITLE='...'   start a notebook from the template"
	@echo "make clean   remove caches and runs/ (keeps $(VENV) and data/)"
	@echo "make bench   time naive vs optimized training steps and the data pipeline (table + runs/bench/*.json)"
	@echo "make robustness    the SIGKILL tests of checkpoints and resume (about 2 min; not in make test, CI runs it)"
	@echo "make unit-all      the unit tests and the robustness tests in one parallel run (CI runs it a year ahead)"
	@echo "make determinism   run every training notebook 3x (smoke), compare metrics.json exactly (not in make test)"
	@echo "make colab   the Colab-like lane: a fresh Colab-like venv, the generated setup cell, notebooks (not in make test)"
	@echo "make lowest  the lowest-versions lane: every requirement at its floor, unit tests + 3 notebooks (not in make test)"
	@echo "make colab-refresh SRC=<clone of googlecolab/backend-info>   update the Colab lane's copy of Colab's package list"
	@echo "make results docs/RESULTS.md from runs/**/metrics.json (RUNS=runs/local to pick a folder); run notebooks"
	@echo "             and record wall time + checks with: python tools/results.py run notebooks/<track>/<nb>.ipynb"
	@echo "make demo    serve the translator + DCGAN demo on http://127.0.0.1:8000 (builds smoke models in runs/deploy if missing)"

$(PY):
	$(PYTHON) -m venv $(VENV)

# What a learner needs: the course package with the extras the notebooks use, and JupyterLab.
# pip prints what it installs (a few minutes the first time: torch is the big one).
setup: $(PY)
	$(PY) -m pip install --progress-bar on -r requirements.txt -r requirements-deploy.txt \
		-r requirements-offline.txt -r requirements-lab.txt
	$(PY) -m pip install -q --no-deps -e . -e tools/setup
	@$(PY) -c "import helpers, torch; print('helpers', helpers.__version__, '| torch', torch.__version__, '| CUDA', torch.cuda.is_available())"
	@echo "Next: make lab (JupyterLab on this folder), then open notebooks/00_start_here.ipynb"

# Everything above plus the test and lint tools (pytest, nbval, ruff, jupytext, Selenium ...):
# `make test` and CI run it themselves when the tools are missing.
setup-dev: setup
	$(PY) -m pip install --progress-bar on -r requirements-dev.txt

# The test tools, installed on first use: `make test` works right after `make setup` (or on a
# fresh clone: it runs `make setup-dev`, which runs `make setup`).
$(BIN)/pytest:
	@echo "make: the test tools are not installed in $(VENV) yet; installing them (make setup-dev)"
	$(MAKE) --no-print-directory setup-dev

# Each stage in turn, timed; the times are printed at the end (and when a stage fails), so a slow
# stage is visible. Target: <= 10 minutes on 2 quiet cores.
TEST_STAGES = lint unit notebooks profiles check-sync
test: $(BIN)/pytest
	@start=$$(date +%s); times=""; \
	for stage in $(TEST_STAGES); do \
	  t=$$(date +%s); \
	  if ! $(MAKE) --no-print-directory $$stage; then \
	    echo "make test: stage '$$stage' FAILED after $$(( $$(date +%s) - t )) s (before it:$$times)" >&2; exit 1; \
	  fi; \
	  times="$$times $$stage $$(( $$(date +%s) - t )) s,"; \
	done; \
	echo "make test passed; stage times:$$times total $$(( $$(date +%s) - start )) s"

lint: $(BIN)/pytest
	$(BIN)/ruff check .

unit: $(BIN)/pytest
	$(THREADS) CURRICULUM_PROFILE=smoke $(BIN)/pytest $(XDIST) -m "not robustness" --durations=15 tests

# The SIGKILL loops of the checkpoint writer (tests marked `robustness`, about 2 minutes on one
# worker): not in `make test`. CI runs them with the unit tests a year ahead (`make unit-all`).
robustness: $(BIN)/pytest
	$(THREADS) CURRICULUM_PROFILE=smoke $(BIN)/pytest $(XDIST) -m robustness tests

# Every test of tests/, the robustness tests too, in one parallel run (CI's year-ahead pass).
unit-all: $(BIN)/pytest
	$(THREADS) CURRICULUM_PROFILE=smoke $(BIN)/pytest $(XDIST) --durations=15 tests

# A fresh runs folder each time, so a second `make test` trains again instead of loading the
# finished checkpoints of the first (your own runs in runs/ are not touched). In parallel, one
# notebook per worker; notebooks that read another's checkpoint share its worker (conftest.py).
TEST_RUNS = runs/make-test
notebooks: $(BIN)/pytest
	rm -rf $(TEST_RUNS)
	$(THREADS) CURRICULUM_PROFILE=smoke CURRICULUM_REQUIRE_SOLUTIONS=1 CURRICULUM_RUNS_DIR=$(CURDIR)/$(TEST_RUNS) \
		$(BIN)/pytest $(if $(XDIST),$(XDIST) --dist loadscope) --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=$(NOTEBOOK_TIMEOUT) -p no:cacheprovider notebooks

# After the notebooks, on their smoke runs: the checkpoint notebooks again in a miniature `local`
# profile, which must neither load nor touch a smoke checkpoint (tests/test_profile_switch.py).
profiles: $(BIN)/pytest
	CURRICULUM_SWITCH_RUNS=$(CURDIR)/$(TEST_RUNS) $(BIN)/pytest -p no:cacheprovider tests/test_profile_switch.py

check-sync: $(BIN)/pytest
	$(PY) tools/nbtools.py check

# A fork: make sync REPO=owner/name REF=<tag or commit> re-points every badge, link and setup cell.
sync: $(BIN)/pytest
	$(PY) tools/nbtools.py sync $(if $(REPO),--repo $(REPO)) $(if $(REF),--ref $(REF))

student: $(BIN)/pytest
	$(PY) tools/nbtools.py student

# JupyterLab at the top of the repository (notebooks/, exercises/ and docs/ all visible), from
# $(VENV) after `make setup`, or from the active environment (conda: environment.yml) without one.
LAB_ARGS = --notebook-dir=. $(if $(filter 0,$(shell id -u)),--allow-root)
lab:
	@if [ -x $(BIN)/jupyter-lab ]; then exec $(BIN)/jupyter-lab $(LAB_ARGS); \
	elif command -v jupyter-lab >/dev/null; then echo "using $$(command -v jupyter-lab) (no $(VENV) here)"; exec jupyter-lab $(LAB_ARGS); \
	else echo "No JupyterLab found. Fix: make setup (a .venv with JupyterLab), or conda env create -f environment.yml && conda activate curriculum" >&2; exit 1; fi

new: $(BIN)/pytest
	@test -n "$(NB)" -a -n "$(TITLE)" || { echo "usage: make new NB=notebooks/<track>/<name> TITLE='Week N: ...'" >&2; exit 2; }
	$(PY) tools/nbtools.py new "$(NB)" "$(TITLE)"

# Speed, side by side in one process (README "Speed"); BENCH_ARGS="--device cpu --compile" etc.
bench: $(BIN)/pytest
	$(PY) tools/bench.py $(BENCH_ARGS)

# Not part of `make test`: three smoke runs of every notebook that writes metrics.json (two fresh
# kernels, then the second kernel again); docs/DEVELOPING.md "Determinism". DETERMINISM_THREADS=1 and
# DETERMINISM_WORKERS=1 (notebooks at a time, each kernel client in a process of its own) by default.
determinism: $(BIN)/pytest
	$(PY) tools/determinism.py

# The results page: one table of every run under runs/ (RUNS=... for another folder; runs/make-test
# is left out), written between the markers of docs/RESULTS.md; the text around them is kept.
.PHONY: results
results: $(BIN)/pytest
	$(PY) tools/results.py table $(if $(RUNS),--runs $(RUNS))

# Not part of `make test`: a fresh virtual environment pre-populated like Colab (ipywidgets 7.7,
# a stand-in google.colab), the generated setup cell installing from a snapshot of this checkout,
# then notebooks in it (tools/colab_lane.py; CI runs it after make test).
colab: $(BIN)/pytest
	$(PY) tools/colab_lane.py

# Not part of `make test`: every direct requirement at its floor (uv --resolution lowest-direct,
# each floor pinned), torch/torchvision held at this environment's (the torch floor is not tested
# offline), then the unit tests and three notebooks in smoke (tools/lowest_lane.py; CI runs it).
.PHONY: lowest colab-refresh
lowest: $(BIN)/pytest
	$(PY) tools/lowest_lane.py

# Refresh the Colab lane's copy of Colab's package list (tools/colab/) from a clone of
# googlecolab/backend-info: make colab-refresh SRC=path/to/backend-info, then make colab, commit.
colab-refresh: $(BIN)/pytest
	@test -n "$(SRC)" || { echo "usage: git clone https://github.com/googlecolab/backend-info /tmp/backend-info &&" \
		"make colab-refresh SRC=/tmp/backend-info (then make colab, and commit tools/colab/)" >&2; exit 2; }
	$(PY) tools/colab_lane.py --refresh "$(SRC)"

# The week 4f demo: builds runs/deploy (the notebooks' checkpoints, else smoke models) if it is
# incomplete, then serves it with FastAPI on loopback. PORT=8000 by default.
PORT ?= 8000
demo: $(BIN)/pytest
	$(PY) -m helpers.ops.serve --train-smoke --port $(PORT)

clean:
	rm -rf runs .pytest_cache build *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
