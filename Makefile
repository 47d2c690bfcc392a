# Two commands on a fresh clone: `make demo`, then `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

DEMO_DIR := data_t4sa/demo
DEMO_N ?= 2000
SEED ?= 0
# What every phase gets on the demo: its manifest, images, word vectors and the seed.
DEMO_DATA := --manifest $(DEMO_DIR)/image_labels.csv --image-root $(DEMO_DIR) --seed $(SEED)
DEMO_GLOVE := --glove $(DEMO_DIR)/glove.demo.200d.txt
IMAGE_WEIGHTS ?= none
TER_EPOCHS ?= 20
IER_EPOCHS ?= 30
INTER_EPOCHS ?= 10
# VGG16 at 224 px runs at about 3 images/s on two CPU cores; the demo's images are read at 112 px.
IMAGE_SIZE ?= 112
# float32 on every machine: the same numbers each time on the same machine. Not across machines: oneDNN picks its
# float32 kernels by CPU (AVX-512 or AVX2 alone) and by shape, so on another CPU the demo's figures move by a few
# points (docs/results.md names the CPU its table came from). PRECISION=auto takes bfloat16 where native.
PRECISION ?= float32

SWEEP_FRACTIONS ?= 0.05 0.1 0.25 0.5 1.0
SWEEP_SEEDS ?= 0 1 2

.PHONY: help venv data demo sweep test lint format serve test-browser

help:
	@echo "make demo   set up .venv, generate the demo data set, run every phase on it (TER_EPOCHS=$(TER_EPOCHS), IER_EPOCHS=$(IER_EPOCHS), INTER_EPOCHS=$(INTER_EPOCHS), IMAGE_SIZE=$(IMAGE_SIZE), IMAGE_WEIGHTS=$(IMAGE_WEIGHTS), PRECISION=$(PRECISION))"
	@echo "make test   set up .venv (with Requirements-serve.txt and Requirements-hub.txt), run the test suite"
	@echo "make lint   check the code's format and lint with ruff (pyproject.toml); make format rewrites it"
	@echo "make serve  the prediction page on the demo run, http://127.0.0.1:$(PORT)/ (after make demo)"
	@echo "make test-browser  the page tested in headless Chromium (needs apt-get install chromium chromium-driver)"
	@echo "make sweep  the label-efficiency sweep on the demo (SWEEP_FRACTIONS=$(SWEEP_FRACTIONS), SWEEP_SEEDS=$(SWEEP_SEEDS))"
	@echo "make venv   create .venv and install Requirements.txt"
	@echo "make data   generate the demo data set in $(DEMO_DIR) (DEMO_N=$(DEMO_N), SEED=$(SEED))"

venv: $(VENV)/.installed

$(VENV)/.installed: Requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r Requirements.txt
	touch $@

# The web page's library, for `predict.py --serve` and the suite's test of it; not needed by the pipeline.
$(VENV)/.serve-installed: $(VENV)/.installed Requirements-serve.txt
	$(PY) -m pip install -r Requirements-serve.txt
	touch $@

# The pretrained encoders' library, for `TER.py --text-encoder` and the suite's tests of it; not needed by the paper.
$(VENV)/.hub-installed: $(VENV)/.installed Requirements-hub.txt
	$(PY) -m pip install -r Requirements-hub.txt
	touch $@

$(VENV)/.browser-installed: $(VENV)/.serve-installed Requirements-browser.txt
	$(PY) -m pip install -r Requirements-browser.txt
	touch $@

data: $(DEMO_DIR)/image_labels.csv

$(DEMO_DIR)/image_labels.csv: $(VENV)/.installed emorec/demo.py
	$(PY) -m emorec.demo --out $(DEMO_DIR) --n $(DEMO_N) --seed $(SEED)

# The four phases on the demo, then the results table. Offline by default: a random VGG16 unless IMAGE_WEIGHTS=imagenet.
demo: data
	$(PY) TER.py $(DEMO_DATA) $(DEMO_GLOVE) --epoch $(TER_EPOCHS)
	@echo "IER backbone weights: $(IMAGE_WEIGHTS) (IMAGE_WEIGHTS=imagenet for ImageNet's)"
	$(PY) IER.py $(DEMO_DATA) --image-weights $(IMAGE_WEIGHTS) --image-size $(IMAGE_SIZE) --precision $(PRECISION) --epoch $(IER_EPOCHS)
	$(PY) Intermediate_fusion.py $(DEMO_DATA) --precision $(PRECISION) --epoch $(INTER_EPOCHS)
	$(PY) Late_fusion.py --manifest $(DEMO_DIR)/image_labels.csv --seed $(SEED)
	@echo "(IER backbone weights: $(IMAGE_WEIGHTS); this table is results/summary.md, confusion matrices beside it)"

# Accuracy against the number of training labels: every phase per (fraction, seed), as named runs.
sweep: data
	$(PY) sweep.py --fractions $(SWEEP_FRACTIONS) --seeds $(SWEEP_SEEDS) \
		--manifest $(DEMO_DIR)/image_labels.csv --image-root $(DEMO_DIR) \
		--ter-args "$(DEMO_GLOVE) --epoch $(TER_EPOCHS)" \
		--ier-args "--image-weights $(IMAGE_WEIGHTS) --image-size $(IMAGE_SIZE) --epoch $(IER_EPOCHS)" \
		--inter-args "--epoch $(INTER_EPOCHS)"
	@cat results/label_efficiency.md

PORT ?= 8000
serve: $(VENV)/.serve-installed
	$(PY) predict.py --serve --port $(PORT)

# Two test processes (pytest-xdist), each taking whole test files (so a file's fixtures are made once): one
# process alone leaves a core idle while it starts interpreters, imports TensorFlow or traces a graph.
TEST_PROCESSES ?= 2
test: $(VENV)/.serve-installed $(VENV)/.hub-installed
	$(PY) -m pytest -n $(TEST_PROCESSES) --dist loadfile

# The code's format and lint (ruff, configured in pyproject.toml): CI runs `make lint` before the tests.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The page in a real browser: headless Chromium (Debian's chromium and chromium-driver) driven by Selenium. It trains
# a tiny run of its own, and leaves its screenshot of the page at $(SCREENSHOT).
SCREENSHOT ?= docs/predict_page.png
test-browser: $(VENV)/.browser-installed
	@command -v chromedriver >/dev/null || { echo "chromedriver not found: apt-get install chromium chromium-driver"; exit 2; }
	EMOREC_SCREENSHOT=$(SCREENSHOT) $(PY) -m pytest browser_tests
