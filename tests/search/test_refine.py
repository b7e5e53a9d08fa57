"""The second stage: short training on real data decides among the proxy's best few per budget, each
trained the same epochs in a real Optuna study, ranked only when above chance, and resumed without
training a candidate twice."""

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
    refinement = Refinement(candidates=2, epochs=2, data="digits")
    metadata = run_search(problem, tmp_path / "run", trials=8, seed=0, refinement=refinement)
    best = next(iter(metadata["best"].values()))
    trained = best["refined_candidates"]
    assert len(trained) == 2 and len({row["arch_id"] for row in trained}) == 2
    assert [row["proxy_score"] for row in trained] == sorted((row["proxy_score"] for row in trained), reverse=True)
    # every candidate trains the same epochs before any comparison (none is stopped on its first epoch)
    assert all(row["state"] == "complete" and row["epochs"] == 2 and len(row["curve"]) == 2 for row in trained)
    # digits is learnable in two epochs: every candidate clears chance (10% + 2 SE on 360 images)
    assert best["refinement"]["learned"] and all(row["learned"] for row in trained), trained
    assert best["refinement"]["chance"]["bar"] < 20 and "picked_by" not in best
    winner = max(trained, key=lambda row: row["top1"])
    assert best["refined_top1"] == winner["top1"] and Arch.from_yaml(tmp_path / "run" / "best.yaml").arch_id == \
        winner["arch_id"]
    assert metadata["refinement"]["candidates"] == 2

    # resumed: the refine study already holds every candidate, so nothing trains again
    again = run_search(problem, tmp_path / "run", trials=8, seed=0, refinement=refinement, resume=True)
    storage = open_storage(tmp_path / "run")
    names = [n for n in optuna.get_all_study_names(storage) if n.startswith("refine-")]
    assert len(names) == 1 and names[0].startswith(f"refine-{next(iter(metadata['best']))}-")
    assert len(optuna.load_study(study_name=names[0], storage=storage).trials) == 2
    assert next(iter(again["best"].values()))["refined_top1"] == best["refined_top1"]
    stored = json.loads((tmp_path / "run" / "metadata.json").read_text())
    assert stored["best"][next(iter(stored["best"]))]["refined_candidates"] == trained

    # other settings are another refinement, not a mix with this one's results
    other = run_search(problem, tmp_path / "run", trials=8, seed=0, resume=True,
                       refinement=Refinement(candidates=1, epochs=1, data="digits"))
    assert len([n for n in optuna.get_all_study_names(storage) if n.startswith("refine-")]) == 2
    assert all(row["epochs"] == 1 for row in next(iter(other["best"].values()))["refined_candidates"])


def test_refinement_settings_are_checked():
    with pytest.raises(EffNasError, match="--refine must be at least 1"):
        Refinement(candidates=0)
    with pytest.raises(EffNasError, match="--refine-epochs must be at least 1"):
        Refinement(epochs=0)
    with pytest.raises(EffNasError, match="--refine-recipe must be one of paper, small, screening, but got 'gentle'"):
        Refinement(recipe="gentle")


def shuffled_digits(root, seed=0):
    """scikit-learn's digits as an ImageFolder whose labels are a random permutation of the true ones:
    the images say nothing about their class, so no network can learn it."""
    import numpy as np

    from effvit_nas.train.data import DigitsDataset

    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        images = DigitsDataset(split)
        for index, label in enumerate(rng.permutation(images.targets)):
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            images.images[index].save(folder / f"{index}.png")
    return root


def test_a_refinement_that_learned_nothing_says_so_and_keeps_the_proxy_s_pick(tmp_path, tiny_table_path):
    from tests.cli.helpers import effnas
    from tests.conftest import DATA

    data = shuffled_digits(tmp_path / "shuffled")
    out = tmp_path / "run"
    result = effnas("search", "--target", str(tiny_table_path), "--space", str(DATA / "tiny_space.yaml"),
                    "--budget", "1000ms", "--trials", "6", "--data", str(data), "--refine", "2",
                    "--refine-epochs", "1", "--measure", "0", "--margin", "5%", "--out", str(out))
    assert result.returncode == 0, result.stderr
    best = next(iter(json.loads((out / "metadata.json").read_text())["best"].values()))
    trained, chance = best["refined_candidates"], best["refinement"]["chance"]
    assert not best["refinement"]["learned"] and not any(row["learned"] for row in trained)
    assert all(row["top1"] <= chance["bar"] for row in trained) and 9 < chance["top1"] < 13
    # nothing is presented as refined: the pick is the proxy's first candidate, and the files say so
    assert "refined_top1" not in best and best["picked_by"].startswith("the proxy")
    assert Arch.from_yaml(out / "best.yaml").arch_id == trained[0]["arch_id"]
    assert "after refinement" not in result.stdout
    notes = [line for line in result.stderr.splitlines() if "refinement learned nothing" in line]
    assert len(notes) == 1 and "not above chance" in notes[0] and "--refine-epochs" in notes[0], result.stderr


def test_the_shortlist_spreads_over_resolutions_then_depths_in_the_proxy_s_order():
    from effvit_nas.search.candidates import Candidate, shortlist

    m0 = Arch.preset("m0")
    sides = [64, 64, 64, 96, 64, 128]  # the proxy's order: its top three are all 64 px
    ranked = [Candidate(i, m0.replace(resolution=side, widths=(64 + 16 * i, 128, 192)), 10.0 - i, {"t": 1.0})
              for i, side in enumerate(sides)]
    assert [c.trial for c in shortlist(ranked, 3)] == [0, 3, 5]  # the best 64, 96 and 128 px archs
    assert [c.trial for c in shortlist(ranked, 4)] == [0, 1, 3, 5]  # then the next best overall
    assert [c.trial for c in shortlist(ranked, 1)] == [0]
    assert [c.trial for c in shortlist(ranked, 10)] == list(range(6))
    # the same order with the third 64 px arch deeper: it comes before the second, which has the first's depths
    ranked[2] = Candidate(2, ranked[2].arch.replace(depths=(2, 2, 3)), 8.0, {"t": 1.0})
    assert [c.trial for c in shortlist(ranked, 4)] == [0, 2, 3, 5]
