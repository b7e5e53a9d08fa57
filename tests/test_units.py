import re

import pytest

from effvit_nas import EffNasError
from effvit_nas.units import format_ms, parse_budget_ms, parse_budgets_ms, parse_percent


@pytest.mark.parametrize("text, ms", [("2ms", 2.0), ("500us", 0.5), ("0.002s", 2.0), (" 1.5 ms", 1.5), ("3e0ms", 3.0)])
def test_budgets_with_units(text, ms):
    assert parse_budget_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["2", "2 sec", "ms", "-1ms", "2ms,"])
def test_budgets_without_a_unit_are_refused(text):
    with pytest.raises(EffNasError, match="positive number with a unit"):
        parse_budget_ms(text)


def test_lists_sort_and_refuse_duplicates():
    assert parse_budgets_ms("4ms,1ms,2000us") == [1.0, 2.0, 4.0]
    with pytest.raises(EffNasError, match="must differ"):
        parse_budgets_ms("2ms,2000us")
    with pytest.raises(EffNasError, match="must be positive"):
        parse_budget_ms("0ms")
    assert format_ms(2.0) == "2ms" and format_ms(1.5) == "1.5ms" and format_ms(0.5) == "500us"


@pytest.mark.parametrize("text, fraction", [("5%", 0.05), (" 0.5 %", 0.005), ("0", 0.0), ("0%", 0.0)])
def test_margins_are_percentages(text, fraction):
    assert parse_percent(text, "--margin") == pytest.approx(fraction)


def test_a_margin_without_its_percent_sign_is_refused_not_guessed():
    # 0.05 is 5% to someone who thinks in fractions and 0.05% to someone who thinks in percent: neither is taken
    with pytest.raises(EffNasError) as refused:
        parse_percent("0.05", "--margin")
    assert str(refused.value) == ("--margin must be a percentage with its % sign (or 0), but got '0.05', which reads "
                                  "as 0.05% or, as a fraction, 5%; refused rather than guessed: write 5% or 0.05%")
    for text in ("100%", "-1%", "five"):
        with pytest.raises(EffNasError, match="--margin must"):
            parse_percent(text, "--margin")


def test_budgets_are_times_or_models():
    from effvit_nas.budget import parse_budget, parse_budgets

    assert parse_budget("2ms").ms == 2.0 and parse_budget("2ms").label == "2ms"
    m1 = parse_budget("m1")
    assert (m1.model.resolution, m1.factor, m1.label, m1.describe()) == (224, 1.0, "m1", "M1 at 224 px")
    scaled = parse_budget("0.8xm2@128")
    assert (scaled.model.resolution, scaled.factor, scaled.label) == (128, 0.8, "0.8xm2@128")
    assert scaled.resolve_ms(lambda arch: 5.0) == pytest.approx(4.0)  # 0.8 x the model's figure
    assert [b.label for b in parse_budgets("m0,1.5ms")] == ["m0", "1.5ms"]
    for text, message in (("m9", "must name one of m0"), ("2", "with a unit"), ("2", "or name a model budget"),
                          ("0xm1", "factor must be positive"), ("m1,M1", "must differ")):
        with pytest.raises(EffNasError, match=re.escape(message)):
            parse_budgets(text)
