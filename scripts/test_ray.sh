#!/usr/bin/env bash
# The Ray tests (tests_ray/): they start real Ray clusters on this machine (one inside pytest,
# one with `ray start --head`, both stopped by the tests), so they run apart from the main suite.
# Needs the ray extra: pip install -e ".[ray]". Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false RAY_DISABLE_USAGE_STATS=1
python -m pytest -q -p no:cacheprovider tests_ray "$@"
