"""The shipped tables against their own validation reports.

Each report stores what its table predicted for the archs it measured. Reloading the table and
predicting again must give the same numbers: a change to the key walker, a feature, the block
models or the calibration's evaluator that would silently move every prediction (and every search result
made with the table) fails here, as a number.
"""

import json
from pathlib import Path

import pytest

from effvit_nas import Arch
from effvit_nas.latency.table import LatencyTable, list_tables, predictor_signature
from effvit_nas.locations import SHIPPED_TABLES_DIR

REPORTS = Path(__file__).resolve().parents[2] / "docs" / "validation"
SHIPPED = list_tables(SHIPPED_TABLES_DIR)


def test_tables_are_shipped():
    assert SHIPPED, "effvit_nas/latency/tables/ holds the tables the docs and the default search use"


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_table_predicts_what_its_validation_report_recorded(name):
    report_path = REPORTS / name / "report.json"
    assert report_path.is_file(), f"a shipped table comes with its validation report, {report_path} is missing"
    report = json.loads(report_path.read_text())
    table = LatencyTable.load(name)
    # the report was made with this very table (the id hashes what was measured and fitted)
    assert report["table_id"] == table.table_id
    assert len(report["rows"]) >= 20
    for row in report["rows"]:
        arch = Arch.from_dict(row["arch"])
        assert arch.arch_id == row["arch_id"]
        # JSON keeps floats exactly; the tolerance only allows for summation order
        assert table.block_sum_ms(arch)[0] == pytest.approx(row["block_sum_ms"], rel=1e-12)
        assert table.predict_ms(arch) == pytest.approx(row["predicted_ms"], rel=1e-12)


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_table_records_the_predictor_that_reads_it(name):
    assert LatencyTable.load(name).data["predictor"] == predictor_signature()
