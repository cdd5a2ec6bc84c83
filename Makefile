# Set-up on a fresh machine: `make demo` (creates .venv, installs, runs the main job)
# and `make test` (installs the test extras, runs the whole suite).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: demo test test-fast fuzz lint install bench clean

# torch==2.13.0 first: the CPU wheel on this machine; an unpinned torch pulls a CUDA build (a
# satisfied torch range installs nothing more). Then the plain install a user makes: its build
# (setup.py) puts the built-in datasets' data files in src/regulab/data/shipped_files/.
$(VENV)/.installed: pyproject.toml setup.py src/regulab/data/shipped.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e .
	touch $@

# The test extra: the test tools and every other extra ([video], [postgres], [tensorboard]).
$(VENV)/.test-installed: $(VENV)/.installed
	$(PIP) install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# The overfitting clinic: baseline and every regularizer of the notes on MNIST-1D, 3 seeds
# each, ranked on validation; prints the table and the path of report.html (~3-5 min on 2 cores).
demo: $(VENV)/.installed
	$(VENV)/bin/regulab study

# The whole suite; its slowest test, tests/test_install.py, builds a wheel into a fresh venv and
# trains every built-in from it (tests/install_check.sh, 2-3 min).
test: $(VENV)/.test-installed
	$(VENV)/bin/pytest -q

# The maintainer's loop: every test but the slow ones (tests/conftest.py SLOW), ~1.5 min on 2 cores.
test-fast: $(VENV)/.test-installed
	$(VENV)/bin/pytest -q -m "not slow"

# The fuzz suite's long run (issue 16): tests/fuzzing.py's "fuzz" profile, 10 times the seeded
# cases make test tries (5-6 times for those that train: tests/fuzzing.py's cases); prints each
# test's count of cases and how they exited.
fuzz: $(VENV)/.test-installed
	HYPOTHESIS_PROFILE=fuzz $(VENV)/bin/pytest -q --hypothesis-show-statistics tests/test_fuzz.py \
		tests/test_fuzz_data.py tests/test_fuzz_jobs.py tests/test_fuzz_predict.py

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check src tests bench examples setup.py

bench: $(VENV)/.installed
	$(PY) bench/loop_overhead.py

clean:
	rm -rf $(VENV) runs .pytest_cache
