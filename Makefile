# vidforge: `make demo` and `make test` are the two set-up commands; both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL ?=
DEMO_OUT ?= outputs/demo
MODEL_FLAG := $(if $(MODEL),--model $(MODEL),)

.PHONY: install demo test lint examples clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

# The main job: stylize the sample clip, then score it against its source with the weight-free metrics.
# The default model is downloaded on first use; `make demo MODEL=tiny` runs offline on random weights.
demo: install
	mkdir -p $(DEMO_OUT)
	$(BIN)/vidforge stylize examples/clip.mp4 --style "ink wash" $(MODEL_FLAG) -o $(DEMO_OUT)/clip_ink_wash.mp4 --overwrite
	$(BIN)/vidforge evaluate $(DEMO_OUT)/clip_ink_wash.mp4 --source examples/clip.mp4 --plot $(DEMO_OUT)/metrics.png

test: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check vidforge tests examples benchmarks
	$(BIN)/ruff format --check vidforge tests examples benchmarks

# Regenerate examples/clip.mp4 and examples/still.png (procedural, no third-party media).
examples: install
	$(BIN)/python examples/make_examples.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
