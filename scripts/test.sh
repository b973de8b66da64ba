#!/usr/bin/env bash
# Set up, then run every test: core, plugins, the example plugin, lint, types. Exits non-zero on
# any failure, including "no tests collected" (pytest exit code 5). Extra arguments go to
# pytest (e.g. -m "not slow" for the fast tests only).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/setup.sh"
# shellcheck disable=SC1091
. "$here/env.sh"
cd "$here/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
export AUGREG_CACHE="${AUGREG_CACHE:-$(mktemp -d)}"
ruff check core plugins tests examples benchmarks
mypy core/src/augreg plugins/*/src examples/augreg-hello/src
python -m pytest "$@"
