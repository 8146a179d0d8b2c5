# Entry points: `make bench` (main job) and `make test`. Every target installs what it needs
# into .venv the first time it runs; nothing else has to be set up by hand.
PYTHON  ?= python3.11
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip --disable-pip-version-check -q
MODEL   ?= flip-tiny
DATA    ?= data/objascale-mini
PRESET  ?= mini
OUT     ?= $(DATA)
ARGS    ?=
# make test runs the suite as a user (the authors' reference hidden, exactly as a fresh clone), then as a developer
# (the tests marked `reference`, with FLIP_REFERENCE_DIR or ../shared/reference; under CI=true a skip is a failure)
TEST_PASSES ?= user developer
PAPER_DATA ?=
MODELS  ?=
DOWNLOAD ?=
comma := ,
# make weights: the models named on the command line (MODEL=a,b or "a b"), else every registered model
WEIGHTS_MODELS := $(if $(filter command line environment,$(origin MODEL)),$(subst $(comma), ,$(MODEL)),)
BENCH_DOWNLOAD := $(if $(filter 1 yes true,$(DOWNLOAD)),--download,)
PROMPT  ?= oracle
STAMP   := $(VENV)/.stamp
# OpenMP workers sleep instead of spinning on a shared CPU: for what make runs besides our entry points (pytest);
# python -m benchmark / flip.training and the scripts apply it themselves (segcore/waitpolicy.py)
export OMP_WAIT_POLICY ?= PASSIVE

EVAL    ?= data/objascale-mini
FT_OUT  ?= runs/finetune

.PHONY: setup setup-all test test-user test-developer bench robustness weights paper objascale train finetune ext clean help
help:
	@echo "make bench [MODEL=flip-tiny] [DATA=data/objascale-mini]  run the benchmark, reports in results/"
	@echo "  [PROMPT=oracle|box-jitter:0.1,20|gaussian-jitter:0.1|detections=FILE]  prompt protocol (docs/prompts.md)"
	@echo "make robustness MODEL=a,b DATA=...                        prompt-noise sweep: IoU vs box/Gaussian jitter level"
	@echo "make bench MODEL=flip-large DOWNLOAD=1                  fetch missing published weights first (verified)"
	@echo "make weights [MODEL=flip-large]                         fetch a model's weights (all models without MODEL)"
	@echo "make test [TEST_PASSES=user developer]                  run the test suite (as a user, then the reference tests)"
	@echo "make paper [PAPER_DATA=dir] [MODELS=a,b]                the paper's Tables 1, 3 and Fig. 7 heat maps, results/paper/"
	@echo "make objascale [PRESET=mini] [OUT=data/objascale-mini]   render an ObjaScale dataset"
	@echo "make train [MODEL=flip-tiny] [DATA=...]                 train FLIP"
	@echo "make finetune MODEL=flip-tiny.authors DATA=... EVAL=... [FT_OUT=runs/finetune] [ARGS='-- --steps 300']"
	@echo "                                                        fine-tune published weights, benchmark before/after"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade "pip>=24" "setuptools>=68" wheel

# core: the package, its C extension, torch
$(STAMP)-core: $(PY) pyproject.toml setup.py $(wildcard ext/*.c ext/*.h)
	$(PIP) install "numpy<2" "torch==2.14.1" "torchvision==0.29.1"
	$(PIP) install -e ".[dev]"
	@touch $@

$(STAMP)-objascale: $(STAMP)-core
	$(PIP) install -e ".[dev,objascale,objaverse]" "numpy<2"
	@touch $@

$(STAMP)-baselines: $(STAMP)-core
	SAM2_BUILD_CUDA=0 $(PIP) install --no-build-isolation --no-deps "sam2==1.1.0"  # sdist; its deps come with the extra
	$(PIP) install -e ".[dev,baselines]" "numpy<2"
	@touch $@

setup: $(STAMP)-core
setup-all: $(STAMP)-core $(STAMP)-objascale $(STAMP)-baselines

ext: $(STAMP)-core
	$(PY) setup.py build_ext --inplace -q

test: setup-all $(addprefix test-,$(TEST_PASSES))

test-user: setup-all
	FLIP_REFERENCE_DIR=none $(PY) -m pytest -q $(ARGS)

test-developer: setup-all
	$(PY) -m pytest -q -m "reference and not slow" $(ARGS)

objascale: $(STAMP)-objascale
	$(PY) -m objascale --preset $(PRESET) --out $(OUT) $(ARGS)

bench: setup-all
	@if [ ! -e "$(DATA)" ] && [ "$(DATA)" = "data/objascale-mini" ]; then \
	  echo "$(DATA) is missing: rendering the ObjaScale mini preset first"; \
	  $(PY) -m objascale --preset mini --out $(DATA); fi
	$(PY) -m benchmark --model $(MODEL) --data $(DATA) --prompt "$(PROMPT)" $(BENCH_DOWNLOAD) $(ARGS)

weights: setup-all
	$(PY) -m benchmark.weights $(WEIGHTS_MODELS) $(ARGS)

# the six published evaluation files in PAPER_DATA (optional) + ObjaScale mini (rendered when missing)
paper: setup-all
	@if [ ! -e "data/objascale-mini" ]; then \
	  echo "data/objascale-mini is missing: rendering the ObjaScale mini preset first"; \
	  $(PY) -m objascale --preset mini --out data/objascale-mini; fi
	$(PY) -m benchmark.paper $(if $(PAPER_DATA),--paper-data $(PAPER_DATA)) $(if $(MODELS),--models $(MODELS)) --prompt "$(PROMPT)" $(ARGS)

robustness: setup-all
	$(PY) -m benchmark.robustness --model $(MODEL) --data $(DATA) $(ARGS)

train: $(STAMP)-objascale
	$(PY) -m flip.training --model $(MODEL) --data $(DATA) $(ARGS)

finetune: $(STAMP)-objascale
	$(PY) -m flip.training.finetune --model $(MODEL) --data $(DATA) --eval $(EVAL) --out $(FT_OUT) $(ARGS)

clean:
	rm -rf build *.egg-info flip/*.so
