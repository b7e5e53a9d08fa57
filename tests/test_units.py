import pytest

from effvit_nas import EffNasError
from effvit_nas.units import format_ms, parse_budget_ms, parse_budgets_ms


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
