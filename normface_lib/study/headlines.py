"""The book's results at a glance: the few figures and verdicts the introduction states, read from the committed
``metrics.json`` (one run) and ``seeds.json`` (the seed study), and sorted into what works at this scale and what does
not, by the verdicts themselves (never by hand)."""
from __future__ import annotations

from typing import Any, Mapping

from .comparisons import BASELINE_LABELS, comparison

#: The comparisons the introduction sorts into "works" and "does not (yet)": id template → what it says when the
#: verdict is "better" (normface, or the reference, wins) and when it is not. ``{j}`` is the independent judge.
HEADLINE_COMPARISONS = {
    "unseen_people/clean/{j}/rank1/{best}": ("held-out people's outputs are identified better than {best_label}'s",
                                             "held-out people's outputs are not identified better than "
                                             "{best_label}'s"),
    "unseen_people/hard/{j}/rank1/align_only": ("on damaged photos (occluder, side light, blur) normface keeps "
                                                "identity better than warping the photo (align-only)",
                                                "on damaged photos normface does not keep identity better than "
                                                "warping the photo (align-only)"),
    "orl/clean/{j}/rank1/mean_face": ("grey photos of people never seen come out as colour faces that identify "
                                      "their person",
                                      "grey photos of people never seen do not come out identifiable"),
    "expression/ratio/input": ("expressions are partly removed: a person's outputs vary less across 16 expressions "
                               "than the photos do",
                               "expressions are not removed: a person's outputs vary across 16 expressions as much "
                               "as the photos do, or more"),
    "colour/face/none": ("colour correction by the normalized face brings cast photos closer to the original than "
                         "leaving them as they are",
                         "colour correction by the normalized face does not bring cast photos closer to the original "
                         "than leaving them as they are"),
    "colour/face/grey_world": ("colour correction by the normalized face beats grey world",
                               "colour correction by the normalized face does not beat grey world"),
}


def best_baseline(study: Mapping[str, Any], judge: str) -> str:
    """The baseline with the highest mean rank-1 (clean photos of the unseen people, ``judge``) over the study's
    seeds: the one normface is best measured against."""
    per = study["per_seed"][0]["metrics"]["clean"]
    return max(BASELINE_LABELS, key=lambda m: per.get(m, {}).get("rank1", -1.0))


def headlines(study: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the introduction glues: ``{"n_people", "chance", "rank1", "rank1_ci", "frac", "orl_rank1",
    "expression_ratio", "best_baseline", "best_label", "works": [sentence], "not_yet": [sentence], "profile",
    "size", "n_train_identities", "dataset", "seeds"}``. A comparison counts under ``works`` only when its verdict is
    "better" (interval clear of zero, every seed agreeing); everything else is listed under ``not_yet``, with its
    sentence and numbers. Expression removal also needs the outputs to keep people apart at least as well as the
    photos (this run's contrast gain ≥ 1): a smaller spread across expressions is otherwise partly a collapse."""
    j = study["judge"]
    best = best_baseline(study, j)
    fill = {"j": j, "best": best, "best_label": BASELINE_LABELS[best]}
    works, not_yet = [], []
    for cid, (good, bad) in HEADLINE_COMPARISONS.items():
        try:
            c = comparison(study, cid.format(**fill))
        except KeyError:
            continue
        numbers = f"difference {c['difference']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]"
        ok = c["verdict"] == "better"
        text = (good if ok else bad).format(**fill)
        if cid == "expression/ratio/input" and ok:
            gain = metrics.get("expression", {}).get("contrast_gain", {}).get("value")
            if gain is not None and gain < 1:  # less variation, but people less apart too: partly a collapse
                ok = False
                text = (f"a person's outputs vary less across 16 expressions than the photos do, but they also tell "
                        f"people apart less well than the photos (contrast gain {gain:.2f} < 1): part of that is "
                        f"a collapse towards a common face, not expression removed")
        (works if ok else not_yet).append(f"{text} ({c['verdict']}; {numbers})")
    m = metrics
    return {"n_people": m["info"]["n_people"], "chance": m["info"]["chance_rank1"],
            "rank1": m["clean"]["normface"]["rank1"], "rank1_ci": m["ci"]["clean"]["normface"]["rank1"],
            "frac": m["clean"]["normface"]["frac_below_threshold"],
            "orl_rank1": m.get("orl", {}).get("clean", {}).get("normface", {}).get("rank1"),
            "expression_ratio": m.get("expression", {}).get("expression_ratio", {}).get("value"),
            "best_baseline": best, "best_label": BASELINE_LABELS[best], "works": works, "not_yet": not_yet,
            "profile": m["profile"], "size": m["data"]["size"], "dataset": m["data"]["dataset"],
            "n_train_identities": m["data"]["n_train_identities"], "seeds": len(study["seeds"]), "judge": j}
