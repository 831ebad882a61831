# mfcore: the two commands of the README are `make demo` and `make test`; everything they need
# (a virtual environment, the dependencies, the C++ build) is set up here on first use and reused.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
JOBS   ?= 2
export GLOG_v ?= 3

.PHONY: demo test build test-cpp test-py test-asan bench clean

# The environment: created once, re-done when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "scikit-build-core>=0.10" "pybind11>=2.12" cmake ninja
	$(PIP) install --no-build-isolation -e ".[test]"
	touch $@

# Rebuild the extension after C++ changes (incremental; serialised so parallel callers do not collide).
build: $(VENV)/.installed
	mkdir -p build
	flock build/.lock $(PIP) install -q --no-build-isolation --no-deps -e .

demo: build
	$(PY) -m mfcore.demo

test: build test-cpp test-asan test-py

test-cpp: $(VENV)/.installed
	flock build/.lock-cpp sh -c '$(VENV)/bin/cmake -S . -B build/cpp-tests -G Ninja -DMFCORE_BUILD_TESTS=ON -DMFCORE_BUILD_PYTHON=OFF >/dev/null && \
	  $(VENV)/bin/cmake --build build/cpp-tests -j $(JOBS) && \
	  $(VENV)/bin/ctest --test-dir build/cpp-tests --output-on-failure'

# The C++ tests once more under AddressSanitizer + UBSan (CI runs this as part of `make test`).
test-asan: $(VENV)/.installed
	flock build/.lock-asan sh -c '$(VENV)/bin/cmake -S . -B build/cpp-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMFCORE_SANITIZE=ON -DMFCORE_BUILD_TESTS=ON -DMFCORE_BUILD_PYTHON=OFF >/dev/null && \
	  $(VENV)/bin/cmake --build build/cpp-asan -j $(JOBS) && \
	  $(VENV)/bin/ctest --test-dir build/cpp-asan --output-on-failure'

# Two pytest processes side by side: the msrun tests, and all the others followed by the msrun
# modules in MSRUN_BESIDE (at b079c53: the msrun run 38.5 minutes, 24 of them the composition
# matrix, the other 37.3 + 6.1; the machine's two cores are busy throughout, 78 CPU-minutes in
# 44 wall-minutes, so moving modules between the runs no longer shortens the total). One pytest process leaves much of
# a 2-core machine idle while msrun ranks wait on each other (cluster build, heartbeats,
# collectives), so the two together take far less wall time than one after the other. The msrun
# run's report follows the other's; the target fails if any run does.
TESTS        ?= tests
MSRUN_BESIDE ?= tests/dist/test_expert_parallel_dist.py
PYTEST       := $(PY) -m pytest -q -p no:cacheprovider --durations=40
test-py: build
	mkdir -p build
	$(PYTEST) -m dist $(addprefix --ignore=,$(MSRUN_BESIDE)) $(TESTS) > build/pytest-dist.log 2>&1 & \
	  $(PYTEST) -m "not dist" $(TESTS); rest=$$?; \
	  $(PYTEST) $(MSRUN_BESIDE); beside=$$?; \
	  wait $$!; dist=$$?; echo "=== msrun tests (-m dist) ==="; cat build/pytest-dist.log; \
	  test $$rest -eq 0 && test $$beside -eq 0 && test $$dist -eq 0

clean:
	rm -rf build
