# hybridrl — every target creates .venv/ first when it is missing.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PYTEST_ARGS ?=

.PHONY: setup test lint format serve-verifier bench clean

$(BIN)/hybridrl: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# gRPC stubs of the reward-model service, generated from the .proto (never committed)
RM_PROTO := reward_model/proto/reward_model.proto
RM_STUBS := reward_model/proto/reward_model_pb2.py reward_model/proto/reward_model_pb2_grpc.py
$(RM_STUBS) &: $(RM_PROTO) $(BIN)/hybridrl
	$(PY) -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. $(RM_PROTO)

setup: $(BIN)/hybridrl $(RM_STUBS) ## create .venv with the project (editable) and dev tools; generate gRPC stubs

test: setup ## run the test suite
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# ---- the local loop end to end (README's first command) ---------------------------------
# synth data -> base model (cached in runs/base-model) -> reward model (cached in runs/rm)
# -> hybrid PPO (configs/local.yaml) -> report with before/after accuracy and plots.
# `make demo-quick` runs the same stages on small budgets in its own folder (a first look).
# TRAIN_ARGS adds dotted overrides to the PPO run. Timings: README, docs/deployment.md.
TRAIN_ARGS ?=
.PHONY: demo demo-quick verifier-demo
demo: setup ## the local loop: base model -> reward model -> hybrid PPO -> runs/demo/report.md
	@set -e; start=$$SECONDS; \
	test -f runs/base-model/model/config.json || $(MAKE) --no-print-directory base-model; \
	test -f runs/rm/model/config.json || test -f $(RM_BASE_MODEL)/config.json || \
		$(MAKE) --no-print-directory rm-base-model; \
	test -f runs/rm/model/config.json || $(MAKE) --no-print-directory reward-model; \
	$(BIN)/hybridrl train --config configs/local.yaml trainer.name=demo $(TRAIN_ARGS); \
	$(BIN)/hybridrl report runs/demo; \
	echo "demo finished in $$((SECONDS - start)) s; report: runs/demo/report.md"

Q := runs/demo-quick
QUICK_RM_DATA := data.caption_prompts=300 data.verifiable_prompts=120 data.eval_caption_prompts=25 \
	data.eval_verifiable_prompts=24
demo-quick: setup ## the same stages on small budgets (a first look): runs/demo-quick/demo/report.md
	@set -e; start=$$SECONDS; rm -rf $(Q); \
	$(BIN)/hybridrl pretrain data --config configs/base_model.yaml out_dir=$(Q)/base-model/data \
		datasets.sft_train.n=1500 datasets.val.n=56 datasets.test.n=112 \
		datasets.rl_train.n=400 datasets.rl_test.n=120; \
	for stage in 0 1 2; do $(BIN)/hybridrl pretrain --stage $$stage --config configs/pretrain_tiny.yaml \
		run_dir=$(Q)/base-model steps=15; done; \
	$(BIN)/hybridrl sft --config configs/sft_tiny.yaml model=$(Q)/base-model/stage2/final \
		"data=[$(Q)/base-model/data/sft_train.parquet]" run_dir=$(Q)/base-model/sft \
		export_to=$(Q)/base-model/model train.eval.data=$(Q)/base-model/data/val.parquet \
		steps=60 train.eval.every=30 train.eval.n_per_task=4; \
	$(MAKE) --no-print-directory reward-model RM_RUN=$(Q)/reward-model RM_BASE_MODEL=$(Q)/base-model/model \
		RM_DATA_ARGS="$(QUICK_RM_DATA)" RM_ARGS="export_to=$(Q)/rm/model train.steps=20 $(RM_ARGS)"; \
	$(BIN)/hybridrl train --config configs/local.yaml trainer.name=demo trainer.runs_dir=$(Q) \
		model.path=$(Q)/base-model/model reward.reward_model_path=$(Q)/rm/model \
		data.train=$(Q)/base-model/data/rl_train.parquet data.test=$(Q)/base-model/data/rl_test.parquet \
		trainer.iterations=3 trainer.eval_every=3 trainer.save_every=3 trainer.eval_max_prompts=40 \
		$(TRAIN_ARGS); \
	$(BIN)/hybridrl report $(Q)/demo; \
	echo "demo-quick finished in $$((SECONDS - start)) s; report: $(Q)/demo/report.md"

verifier-demo: setup ## start the verifier API on a free port, call several verifiers, stop it
	$(PY) -m services.demo

serve-verifier: setup
	$(BIN)/hybridrl serve verifier

bench: setup
	$(PY) bench/verifier_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache

# The tiny base policy the RL loop starts from (runs/base-model/model): synthetic data,
# pretraining stages 0 -> 1 -> 2, SFT, and the held-out table. ~18 min on a 2-core CPU
# (docs/pretrain.md). Starts clean; rerun single steps with --resume after an interruption.
.PHONY: base-model
base-model: setup
	@set -e; start=$$SECONDS; rm -rf runs/base-model; \
	$(BIN)/hybridrl pretrain data --config configs/base_model.yaml; \
	for stage in 0 1 2; do $(BIN)/hybridrl pretrain --stage $$stage --config configs/pretrain_tiny.yaml; done; \
	$(BIN)/hybridrl sft --config configs/sft_tiny.yaml; \
	$(BIN)/hybridrl eval --model runs/base-model/model --data runs/base-model/data/test.parquet \
		--out runs/base-model/eval_test.json; \
	echo "base model: runs/base-model/model, built in $$((SECONDS - start)) s"

# ---- reward model (docs/reward-model.md) ------------------------------------------------
BASE_MODEL ?= runs/base-model/model
# The RM's own base: the same tiny VLM over subword tokens (stage 1 for 2,400 steps), whose
# 3x shorter sequences pay for the RM's 3,000 steps. ~16 min; needs `make base-model`'s data.
RM_BASE ?= runs/rm-base
RM_BASE_MODEL ?= $(RM_BASE)/model
RM_CONFIG ?= configs/rm.yaml
RM_RUN ?= runs/reward-model
# extra dotted overrides for both stages, e.g. RM_ARGS="train.steps=400 train.threads=1",
# and for the pairs, e.g. RM_DATA_ARGS="data.caption_prompts=1500"
RM_ARGS ?=
RM_DATA_ARGS ?=
# the RM starts from RM_BASE_MODEL, else BASE_MODEL, else configs/rm.yaml's fresh `init: tiny`
RM_INIT = $(firstword $(foreach m,$(RM_BASE_MODEL) $(BASE_MODEL),$(if $(wildcard $(m)/config.json),$(m),)))
.PHONY: rm-base-model reward-model
rm-base-model: setup ## the RM's subword base model (pretraining 0/1/2 + SFT on the base model's data)
	@set -e; start=$$SECONDS; rm -rf $(RM_BASE); \
	test -f runs/base-model/data/sft_train.parquet || \
		$(BIN)/hybridrl pretrain data --config configs/base_model.yaml; \
	for stage in 0 1 2; do $(BIN)/hybridrl pretrain --stage $$stage --config configs/pretrain_tiny.yaml \
		model=tiny-bpe run_dir=$(RM_BASE) $$( [ $$stage = 1 ] && echo steps=2400 ); done; \
	$(BIN)/hybridrl sft --config configs/sft_tiny.yaml model=$(RM_BASE)/stage2/final \
		run_dir=$(RM_BASE)/sft export_to=$(RM_BASE)/model; \
	echo "RM base model: $(RM_BASE)/model, built in $$((SECONDS - start)) s"

reward-model: setup ## synth preference pairs, then the two-stage RM curriculum + held-out eval
	$(BIN)/hybridrl rm data --config $(RM_CONFIG) --out $(RM_RUN)/pairs $(RM_DATA_ARGS)
	$(BIN)/hybridrl rm train --config $(RM_CONFIG) run_dir=$(RM_RUN)/stage1 \
		data.train=$(RM_RUN)/pairs/train.parquet data.eval=$(RM_RUN)/pairs/eval.parquet \
		$(if $(RM_INIT),init=$(RM_INIT),) $(RM_ARGS) data.caption_max_objects=1 export_to=null
	$(BIN)/hybridrl rm train --config $(RM_CONFIG) run_dir=$(RM_RUN) \
		data.train=$(RM_RUN)/pairs/train.parquet data.eval=$(RM_RUN)/pairs/eval.parquet \
		$(RM_ARGS) init=$(RM_RUN)/stage1/final

# ---- rejection-sampling fine-tuning (docs/rs.md) ----------------------------------------
RS_CONFIG ?= configs/rs.yaml
# extra dotted overrides, e.g. RS_ARGS="policy=runs/local sampling.n=8 threads=1";
# RS_ITERATION=k reruns/picks iteration k (default: the next one after the completed ones)
RS_ARGS ?=
RS_ITERATION ?=
.PHONY: rs-iteration
rs-iteration: setup ## one rejection-sampling fine-tuning iteration: runs/rs/iter_<k>/
	$(BIN)/hybridrl rs-iteration --config $(RS_CONFIG) \
		$(if $(RS_ITERATION),--iteration $(RS_ITERATION),) $(RS_ARGS)
