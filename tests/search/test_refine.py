"""The second stage: short training on real data decides among the proxy's best few per budget,
with successive halving in a real Optuna study, and resumes without training a candidate twice."""

from __future__ import annotations

import json

import optuna
import pytest

from effvit_nas import Arch, EffNasError
from effvit_nas.estimators import create_estimator
from effvit_nas.latency.table import LatencyTable
from effvit_nas.search import Refinement, SearchProblem, Target, run_search
from effvit_nas.search.optuna_backend import open_storage

pytestmark = pytest.mark.slow  # trains networks


def test_refinement_picks_the_best_trained_candidate_and_resumes_without_retraining(tmp_path, tiny_table_path,
                                                                                    tiny_space):
    budget = 1e3  # everything fits: the refinement alone decides
    problem = SearchProblem(tiny_space, [Target(LatencyTable.load(tiny_table_path), (budget,))],
                            create_estimator("size-prior"))
    refinement = Refinement(candidates=3, epochs=2, data="digits")
    metadata = run_search(problem, tmp_path / "run", trials=8, seed=0, refinement=refinement)
    best = next(iter(metadata["best"].values()))
    trained = best["refined_candidates"]
    assert len(trained) == 3 and len({row["arch_id"] for row in trained}) == 3
    assert [row["proxy_score"] for row in trained] == sorted((row["proxy_score"] for row in trained), reverse=True)
    completed = [row for row in trained if row["state"] == "complete"]
    assert completed and all(row["epochs"] == 2 for row in completed)
    assert trained[0]["state"] == "complete"  # the proxy's first choice has nothing to lose to
    assert all(1 <= row["epochs"] <= 2 and row["top1"] is not None for row in trained if row["state"] == "pruned")
    winner = max(completed, key=lambda row: row["top1"])
    assert best["refined_top1"] == winner["top1"] and Arch.from_yaml(tmp_path / "run" / "best.yaml").arch_id == \
        winner["arch_id"]
    assert metadata["refinement"]["candidates"] == 3

    # resumed: the refine study already holds every candidate, so nothing trains again
    again = run_search(problem, tmp_path / "run", trials=8, seed=0, refinement=refinement, resume=True)
    storage = open_storage(tmp_path / "run")
    names = [n for n in optuna.get_all_study_names(storage) if n.startswith("refine-")]
    assert len(names) == 1 and names[0].startswith(f"refine-{next(iter(metadata['best']))}-")
    assert len(optuna.load_study(study_name=names[0], storage=storage).trials) == 3
    assert next(iter(again["best"].values()))["refined_top1"] == best["refined_top1"]
    stored = json.loads((tmp_path / "run" / "metadata.json").read_text())
    assert stored["best"][next(iter(stored["best"]))]["refined_candidates"] == trained

    # other settings are another refinement, not a mix with this one's results
    other = run_search(problem, tmp_path / "run", trials=8, seed=0, resume=True,
                       refinement=Refinement(candidates=2, epochs=1, data="digits"))
    assert len([n for n in optuna.get_all_study_names(storage) if n.startswith("refine-")]) == 2
    assert all(row["epochs"] == 1 for row in next(iter(other["best"].values()))["refined_candidates"])


def test_refinement_settings_are_checked():
    with pytest.raises(EffNasError, match="--refine must be at least 1"):
        Refinement(candidates=0)
    with pytest.raises(EffNasError, match="--refine-epochs must be at least 1"):
        Refinement(epochs=0)


def test_the_shortlist_takes_the_best_at_each_resolution_first_in_the_proxy_s_order():
    from effvit_nas.search.candidates import Candidate, shortlist

    m0 = Arch.preset("m0")
    sides = [64, 64, 64, 96, 64, 128]  # the proxy's order: its top three are all 64 px
    ranked = [Candidate(i, m0.replace(resolution=side, widths=(64 + 16 * i, 128, 192)), 10.0 - i, {"t": 1.0})
              for i, side in enumerate(sides)]
    assert [c.trial for c in shortlist(ranked, 3)] == [0, 3, 5]  # the best 64, 96 and 128 px archs
    assert [c.trial for c in shortlist(ranked, 4)] == [0, 1, 3, 5]  # then the next best overall
    assert [c.trial for c in shortlist(ranked, 1)] == [0]
    assert [c.trial for c in shortlist(ranked, 10)] == list(range(6))
