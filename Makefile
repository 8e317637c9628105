# `make test` and `make demo` both start from a fresh clone: they create .venv, install the pinned set, then run.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Wheels of mmcv 2.1.0 and detectron2 built for the pinned torch (neither has wheels on the package
# registry; ../shared/wheels/README.md says how they were built). Where the folder exists (this
# project's machines and CI), `make test` installs the optional extras so their tests run; elsewhere
# those tests skip and say how to enable them.
WHEELS ?= ../shared/wheels
EXTRAS_STAMP := $(VENV)/.extras-installed

.PHONY: setup extras test demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found (set PYTHON=...)"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

extras: $(STAMP)
	@if ls $(WHEELS)/mmcv-2.1.0-*.whl $(WHEELS)/detectron2-*.whl >/dev/null 2>&1; then \
	  if [ ! -f $(EXTRAS_STAMP) ] || [ constraints.txt -nt $(EXTRAS_STAMP) ]; then \
	    echo "installing the optional extras (mmcv + detectron2 from $(WHEELS); mmengine, mmdet, mmdet3d, spconv)"; \
	    $(PY) -m pip install --quiet -c constraints.txt $(WHEELS)/mmcv-2.1.0-*.whl $(WHEELS)/detectron2-*.whl \
	      -e '.[mmdet3d,voxel]' && touch $(EXTRAS_STAMP); \
	  fi; \
	else \
	  echo "no mmcv/detectron2 wheels in $(WHEELS): the mmdet3d, spconv and detectron2 tests will skip"; \
	fi

# Two test processes with one torch thread each: the CI machine has two cores (8.5 -> 5 minutes here).
test: setup extras
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 tests

demo: setup
	bash scripts/demo.sh

clean:
	rm -rf $(VENV) demo_out .pytest_cache
