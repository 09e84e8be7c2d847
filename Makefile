# The two commands of the README: `make demo` and `make test`. Each builds .venv once from
# the pinned constraints (again only when setup.py or the pins change).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed
NPROC ?= 2

.PHONY: demo demo-med test lint clean monitoring-tools mutate

$(STAMP): setup.py requirements/constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -c requirements/constraints.txt -e '.[dev]'
	touch $(STAMP)

# The face demo; DATA=/path/to/CASIA-WebFace runs it on a real folder; RESUME=1 continues
# the last run from its newest complete checkpoint.
demo: $(STAMP)
	$(VENV)/bin/python -m facetrain.demo --nproc $(NPROC) $(if $(DATA),--data $(DATA)) $(if $(RESUME),--resume)

# The medical demo (DenseNet201 + Soft Attention on brain-MRI slices in the figshare layout);
# DATA=/path/to/figshare-tumor runs it on the real set.
demo-med: $(STAMP)
	$(VENV)/bin/python -m medtrain.demo --nproc $(NPROC) $(if $(DATA),--data $(DATA)) $(if $(RESUME),--resume)

test: $(STAMP) monitoring-tools
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest tests

# Prometheus, promtool and the Pushgateway (Debian packages unpacked into .tools/) for the
# monitoring tests; without them those tests skip and say why.
monitoring-tools:
	@tests/tools/fetch_prometheus.sh .tools/prometheus

# Mutation testing of the pure modules (setup.cfg [mutmut]; docs/development.md), not part of `make test`:
# a fresh run (cached verdicts would hide mutants that new tests kill), then every mutant not killed.
# One worker per core, each with one torch thread.
mutate: $(STAMP)
	rm -rf mutants
	OMP_NUM_THREADS=1 $(VENV)/bin/mutmut run --max-children $$(nproc)
	@echo "Mutants not killed (mutmut show NAME for the change; docs/development.md lists the equivalent ones):"
	@$(VENV)/bin/mutmut results
	@$(VENV)/bin/mutmut export-cicd-stats > /dev/null && cat mutants/mutmut-cicd-stats.json

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .tools runs *.egg-info
