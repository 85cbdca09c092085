# Two commands on a fresh machine: `make demo` and `make test` (both install first).
# Everything goes into .venv in the repository root; torch is pinned by constraints.txt.

PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# Debian packages the project needs at run time: libusb (pyrealsense2), hidapi (SpaceMouse),
# GL/EGL + glib (MuJoCo rendering, OpenCV), Xvfb (the live-view test draws into a virtual display).
DEB_PACKAGES := libusb-1.0-0 libhidapi-hidraw0 libhidapi-libusb0 libgl1 libegl1 libglib2.0-0 xvfb xauth

export HF_HUB_OFFLINE := 1
export MUJOCO_GL ?= egl
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install system-deps test test-loaded test-suites test-all demo bench bench-learning clean

install: system-deps $(STAMP)

# Installs missing Debian packages when running as root; otherwise says what is missing.
system-deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then echo "note: not a Debian system; skipping:$$missing"; exit 0; fi; \
	if [ "$$(id -u)" != "0" ]; then echo "note: missing Debian packages (run as root to install):$$missing"; exit 0; fi; \
	echo "installing Debian packages:$$missing"; \
	DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24" "setuptools>=69" wheel
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test]"
	@$(BIN)/python -c "import torch, robot_learning; print('installed robot-learning', robot_learning.__version__, '| torch', torch.__version__)"
	@touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q

# The suite with both cores kept busy by another process (stress-ng), as on a shared machine or a robot computer:
# it must pass this way too (about 25 minutes on 2 cores). Needs `apt-get install stress-ng`.
test-loaded: install
	@command -v stress-ng >/dev/null || { echo "test-loaded needs stress-ng (apt-get install stress-ng)"; exit 2; }
	@stress-ng --cpu 2 --timeout 7200s >/dev/null 2>&1 & pid=$$!; \
	$(BIN)/python -m pytest -q; rc=$$?; kill $$pid 2>/dev/null; exit $$rc

# The benchmark suites' own tests: each suite's venv is made once from the package index (then cached
# under ~/.cache/robot-learning/benchmarks), and the adapter plays a few steps against the policy server.
test-suites: install
	$(BIN)/python -m pytest -q -m benchmark_venv

# Includes the slow learning runs kept out of CI.
test-all: install
	$(BIN)/python -m pytest -q -m ""

demo: install
	$(BIN)/robot-learning demo

# Every speed benchmark, one after the other (about 10 min, plus about 5 min for bench/policy.py without the
# LeRobot harness, on 2 cores); results land in bench/results/ and
# the figures worth keeping go into docs/benchmarks.md with the date and machine. The learning
# results (record, train, evaluate: 18-35 min each) are `make bench-learning`.
bench: install
	$(BIN)/python bench/runtime_jitter.py
	$(BIN)/python bench/sim.py
	$(BIN)/python bench/recorder.py
	$(BIN)/python bench/loader.py
	$(BIN)/python bench/servo_bus.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/policy.py

bench-learning: install
	$(BIN)/python bench/learning.py --recipe lift_state
	$(BIN)/python bench/learning.py --recipe push_t_state
	$(BIN)/python bench/learning.py --recipe lift_image

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
