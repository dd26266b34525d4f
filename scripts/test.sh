#!/usr/bin/env bash
# The project's checks: lint, types, then every test suite. Run inside the environment set up
# as the README says. mypy (one core, minutes when its cache is cold) checks the types beside
# the tests, which leave much of a second core idle; its report follows theirs.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
ruff check .
ruff format --check .
types_log=$(mktemp)
mypy > "$types_log" 2>&1 &
types=$!
trap 'kill "$types" 2>/dev/null || true; rm -f "$types_log"' EXIT
python -m pytest -q -p no:cacheprovider
# The integration packages keep their own tests and pytest settings (asyncio_mode = auto).
python -m pytest -q -p no:cacheprovider integrations/langchain
python -m pytest -q -p no:cacheprovider integrations/llama-index
status=0
wait "$types" || status=$?
cat "$types_log"
exit "$status"
