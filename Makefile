# PiTe-ROS: `make demo` and `make test` do all the set-up from nothing (Debian 12, Python 3.11).
# Every step leaves a stamp in .venv/.stamps, so a second run goes straight to the work.

PYTHON ?= python3
VENV := .venv
VENV_ABS := $(abspath $(VENV))
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check --no-input -q
STAMPS := $(VENV)/.stamps
MSG_SOURCES := $(wildcard msg/msg/*.msg msg/srv/*.srv msg/action/*.action) msg/CMakeLists.txt msg/package.xml
PYTEST_ARGS ?=

.PHONY: setup demo test bench clean default-model default-model-ablation

setup: $(STAMPS)/package

# torch first, from the local CPU build, then pinned by constraints.txt for every later call.
$(STAMPS)/torch: constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -c constraints.txt torch==2.13.0
	mkdir -p $(STAMPS) && touch $@

$(STAMPS)/deps: $(STAMPS)/torch requirements.txt requirements-ros.txt
	$(PIP) install -c constraints.txt -r requirements.txt -r requirements-ros.txt
	touch $@

# The interface package, built with the real rosidl toolchain from the wheels into the venv.
$(STAMPS)/msgs: $(STAMPS)/deps $(MSG_SOURCES)
	mkdir -p build
	PATH=$(VENV_ABS)/bin:$$PATH cmake -S msg -B build/msg -DCMAKE_PREFIX_PATH=$(VENV_ABS) \
		-DCMAKE_INSTALL_PREFIX=$(VENV_ABS) -DPython3_EXECUTABLE=$(VENV_ABS)/bin/python \
		-DBUILD_TESTING=OFF > build/msg.log 2>&1 || (cat build/msg.log; false)
	PATH=$(VENV_ABS)/bin:$$PATH cmake --build build/msg -j2 >> build/msg.log 2>&1 || (tail -50 build/msg.log; false)
	cmake --install build/msg >> build/msg.log 2>&1 || (tail -50 build/msg.log; false)
	$(PY) -c "from pite_msgs.msg import TrackArray, Answer; from pite_msgs.action import Query"
	touch $@

$(STAMPS)/package: $(STAMPS)/msgs setup.py
	$(PIP) install -c constraints.txt --no-deps --no-build-isolation -e .
	touch $@

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/pite-demo

bench: setup
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

# The shipped model from nothing (training/recipes/default_model.py): data, stages 0-1-2-3
# (stage 3 in three passes), install into pite_ros/assets/default_model, pite-eval, model card. Resumes when interrupted.
default-model: setup
	$(PY) -m training.recipes.default_model

default-model-ablation: setup
	$(PY) -m training.recipes.default_model --ablation

clean:
	rm -rf $(VENV) build
