"""Proxies score on their own intra-op thread count and give the process its own back."""

import pytest
import torch

from effvit_nas import Arch
from effvit_nas.errors import EffNasError
from effvit_nas.estimators import create_estimator


def test_a_proxy_scores_on_its_threads_and_restores_the_process_setting(monkeypatch):
    seen = []
    estimator = create_estimator("synflow")
    compute = estimator._compute
    monkeypatch.setattr(estimator, "_compute", lambda arch: (seen.append(torch.get_num_threads()), compute(arch))[1])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        one = estimator.score(Arch.preset("m0"))
        assert seen == [1] and torch.get_num_threads() == 2
        two = create_estimator("synflow", threads="2").score(Arch.preset("m0"))
    finally:
        torch.set_num_threads(before)
    assert estimator.describe()["threads"] == 1
    assert two == pytest.approx(one, rel=1e-9)  # the thread count changes the sum's order, not the score


def test_zero_threads_is_refused():
    with pytest.raises(EffNasError, match="threads must be at least 1, but got 0"):
        create_estimator("synflow", threads="0")
