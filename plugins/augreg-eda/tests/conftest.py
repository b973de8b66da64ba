"""Point NLTK at the offline data beside the project when NLTK_DATA is unset.

The plugin needs WordNet and the English stopwords. CI and the scripts set NLTK_DATA
(scripts/env.sh); a bare ``pytest`` here finds them in ``<repo>/../shared/nltk_data``. When
they cannot be found, every test that needs them fails with the install command, never
skips.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "nltk_data"

if not os.environ.get("NLTK_DATA") and _SHARED.is_dir():
    os.environ["NLTK_DATA"] = str(_SHARED)
    import sys

    if "nltk" in sys.modules:  # imported before us: its search path is already built
        import nltk

        if str(_SHARED) not in nltk.data.path:
            nltk.data.path.insert(0, str(_SHARED))


@pytest.fixture(scope="session")
def lex():  # type: ignore[no-untyped-def]
    """The WordNet lexicon; fails (not skips) with the install command when it is missing."""
    from augreg import AugregError
    from augreg_eda.lexicon import lexicon

    try:
        return lexicon()
    except AugregError as exc:
        pytest.fail(f"augreg-eda tests need WordNet and stopwords: {exc}", pytrace=False)
