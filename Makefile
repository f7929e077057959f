# All set-up on a fresh clone: `make demo` runs the main job, `make test` runs the tests.
# The virtual environment sees the interpreter's site-packages, so a torch you already installed
# (a CUDA build, say) is kept; torch is installed only when `import torch` fails.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test lint clean-venv

install: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install --upgrade pip setuptools wheel  # 3.12+ venvs have no setuptools: basicsr builds from source
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install torch torchvision
	# scripts/build_shims: BasicSR's setup.py reads its version through locals(), which Python 3.13 changed
	$(PY) -c "import importlib.metadata as m; assert m.version('basicsr') == '1.4.2'" 2>/dev/null || \
		PYTHONPATH=$(CURDIR)/scripts/build_shims $(PY) -m pip install --no-build-isolation basicsr==1.4.2
	$(PY) -m pip install -e '.[test]'
	touch $@

demo: install
	$(PY) -m hoffr_arch.demo

test: install  # two workers (pytest-xdist): the tests wait on subprocesses and imports as much as they compute
	$(PY) -m pytest -q -n 2 --dist loadgroup tests

lint: install  # ruff.toml: pyflakes and pycodestyle at 120 columns, as BasicSR's flake8
	$(PY) -m ruff check .

clean-venv:
	rm -rf $(VENV)
