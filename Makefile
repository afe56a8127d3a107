# Two commands do all the set-up on a fresh machine with only Python: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed

.PHONY: demo test bench

# The paper authors' sample window, where a shared/ folder sits beside the checkout.
REFERENCE := ../shared/reference/img2imu_app/jogging.csv

demo: $(INSTALLED)
	$(VENV)/bin/img2imu demo --workdir demo_out $(if $(wildcard $(REFERENCE)),--reference $(REFERENCE))

# Two workers, whole files each (module fixtures are built once), in the order conftest.py
# puts them: the longest first.
test: $(INSTALLED)
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

bench: $(INSTALLED)
	$(VENV)/bin/python benchmarks/spectrogram.py
	$(VENV)/bin/python benchmarks/input_pipeline.py
	$(VENV)/bin/python benchmarks/finetune.py --width 64 --grid small

# (Re)install whenever the project's declared dependencies change.
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $@
