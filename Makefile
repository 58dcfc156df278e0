# make run   — set everything up, then run the main job (biasvar diagnose on Fashion-MNIST)
# make test  — set everything up, then run the test suite (slow tests excluded; 2 processes,
#              one file each at a time, the cores shared between them: tests/conftest.py)
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test test-slow setup system-deps bench bench-smoke mutants clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip >/dev/null
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)

system-deps:
	@scripts/system-deps.sh dataset-fashion-mnist

run: setup system-deps
	$(BIN)/biasvar diagnose

# pytest-xdist: TEST_WORKERS processes (the CI's 2 cores), each given one test file at a time so
# a module's fixtures are built once; tests/conftest.py splits the cores' threads among them.
test: TEST_WORKERS ?= 2
test: setup
	@scripts/system-deps.sh dataset-fashion-mnist chromium postgresql
	$(BIN)/python -m pytest -m "not slow" -q -n $(TEST_WORKERS) --dist loadfile

test-slow: setup
	$(BIN)/python -m pytest -m slow -q

# make bench: every speed figure beside its baseline and goal (bench/bench.py; the peer stack,
# skorch + mlxtend, from the `bench` extra; streaming from disk is figure 8); results in
# bench/results/.
# make bench-smoke: the same at toy size, without installing the peers (their figures then say
# they are skipped): CI checks that the benchmarks run, within its time budget.
bench: setup system-deps
	$(BIN)/python -m pip install -q -e '.[bench]'
	TQDM_DISABLE=1 $(BIN)/python bench/bench.py

# make mutants: deliberate breakages of the analysis code that the tests must catch
# (scripts/mutants.py; slow, not part of make test; CI runs the first few)
mutants: setup system-deps
	$(BIN)/python scripts/mutants.py

bench-smoke: setup system-deps
	TQDM_DISABLE=1 $(BIN)/python bench/bench.py --smoke

clean:
	rm -rf $(VENV) runs .pytest_cache
