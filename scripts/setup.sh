#!/usr/bin/env bash
# Create .venv (once) and install augreg core, every plugin in plugins/, the example plugin
# and the test tools, editable. Safe to run again: it only installs what changed.
#
# torch is pinned through a pip constraint so that no package makes pip pick another torch
# (a newer one would download several GB of CUDA packages). Override with AUGREG_TORCH.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
torch_spec="${AUGREG_TORCH:-torch==2.13.0}"

if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "$torch_spec" > "$constraints"
export PIP_CONSTRAINT="$constraints" PIP_DISABLE_PIP_VERSION_CHECK=1
python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
python -m pip install -q "$torch_spec" 2>&1 | grep -v "^WARNING: Location" || true

packages=(-e "core[testing,minilm,bench]" -e examples/augreg-hello)
for plugin in plugins/*/; do
  [ -f "$plugin/pyproject.toml" ] || continue
  case "$plugin" in
    # optional backends that the tests cover (ctranslate2 does not depend on torch)
    plugins/augreg-backtranslation/) packages+=(-e "${plugin%/}[ctranslate2]") ;;
    *) packages+=(-e "$plugin") ;;
  esac
done
python -m pip install -q "${packages[@]}" ruff "mypy>=2" 2>&1 | grep -v "^WARNING: Location" || true
python -c "import augreg, torch; print(f'augreg {augreg.__version__}, torch {torch.__version__}: ready')"
