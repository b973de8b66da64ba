#!/usr/bin/env bash
# The main job: set up, then fine-tune MiniLM on 500 SST-2 examples and evaluate on SST-2
# test and CR (examples/sst2_minilm.toml). Extra arguments go to `augreg run`
# (e.g. --seed 2, --set train.epochs=3).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/setup.sh"
# shellcheck disable=SC1091
. "$here/env.sh"
cd "$here/.."
augreg run examples/sst2_minilm.toml "$@"
