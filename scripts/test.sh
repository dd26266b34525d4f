#!/usr/bin/env bash
# The project's checks: lint, types, then every test suite. Run inside the environment set up
# as the README says.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
ruff check .
ruff format --check .
mypy
python -m pytest -q -p no:cacheprovider
# The integration packages keep their own tests and pytest settings (asyncio_mode = auto).
python -m pytest -q -p no:cacheprovider integrations/langchain
python -m pytest -q -p no:cacheprovider integrations/llama-index
