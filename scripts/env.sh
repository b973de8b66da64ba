# Sourced by the scripts: the environment every augreg command here runs in.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
. "$root/.venv/bin/activate"
# NLTK resources (WordNet, stopwords, POS tagger) ship beside the project when offline.
if [ -z "${NLTK_DATA:-}" ] && [ -d "$root/../shared/nltk_data" ]; then
  NLTK_DATA="$(cd "$root/../shared/nltk_data" && pwd)"
  export NLTK_DATA
fi
export TOKENIZERS_PARALLELISM=false
