"""Where tables and spaces are found and written: shipped ones inside the package, the user's own in
EFFNAS_HOME, never the other way round. (The installed wheel itself is checked by scripts/check_wheel.sh,
which CI runs: these tests run in the checkout.)"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from effvit_nas import EffNasError, SearchSpace
from effvit_nas.latency.table import (
    DEFAULT_SOURCE,
    LatencyTable,
    list_tables,
    matching_tables,
    resolve_table_path,
    table_path,
    table_source,
)
from effvit_nas.locations import SHIPPED_SPACES_DIR, SHIPPED_TABLES_DIR, effnas_home, user_tables_dir
from tests.cli.helpers import assert_one_line_error, effnas, effnas_here

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("EFFNAS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_the_user_folder_is_effnas_home_or_the_platforms_data_folder(home, monkeypatch):
    assert effnas_home() == home and user_tables_dir() == home / "tables"
    monkeypatch.delenv("EFFNAS_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(home.parent / "xdg"))
    assert effnas_home() == home.parent / "xdg" / "effvit-nas"


def test_a_name_is_written_to_the_user_folder_and_a_path_exactly_there(home, tmp_path):
    assert table_path("xeon") == home / "tables" / "xeon.json"
    assert table_path(str(tmp_path / "t.json")) == tmp_path / "t.json"
    assert table_path("sub/t") == Path("sub/t")  # a path separator makes it a path


def test_a_name_is_looked_up_in_the_user_folder_first_then_among_the_shipped(home, tiny_table_path):
    assert resolve_table_path(DEFAULT_SOURCE) == SHIPPED_TABLES_DIR / f"{DEFAULT_SOURCE}.json"
    assert table_source(resolve_table_path(DEFAULT_SOURCE)) == "shipped"
    (home / "tables").mkdir(parents=True)
    shutil.copy(tiny_table_path, home / "tables" / f"{DEFAULT_SOURCE}.json")  # the user's shadows the shipped
    shutil.copy(tiny_table_path, home / "tables" / "mine.json")
    assert resolve_table_path(DEFAULT_SOURCE) == home / "tables" / f"{DEFAULT_SOURCE}.json"
    assert table_source(resolve_table_path("mine")) == "user"
    assert "mine" in list_tables() and set(list_tables(SHIPPED_TABLES_DIR)) <= set(list_tables())
    listing = effnas_here("table", "list").stdout.splitlines()
    assert any(line.split()[:2] == ["mine", "user"] for line in listing)
    assert any(line.split()[:2] == ["amd-epyc-2core-ort-b1-shapes", "shipped"] for line in listing)


def test_table_list_says_where_each_comes_from_and_whether_it_passed_its_own_check(home):
    listing = effnas_here("table", "list").stdout
    for name in list_tables(SHIPPED_TABLES_DIR):
        table = LatencyTable.load(name)
        row = next(line.split() for line in listing.splitlines() if line.split()[:1] == [name])
        r = table.runtime
        assert row[1:6] == ["shipped", r.runtime, r.device, str(r.batch_size), str(r.threads)]
        assert row[-1] == {True: "passed", False: "MISSED", None: "none"}[table.check_passed]


def test_an_unknown_target_names_the_tables_the_matching_ones_and_the_commands_that_make_one(home, tiny_table_path):
    # the tiny table was measured here, with onnxruntime: it is this machine's, whatever the machine
    (home / "tables").mkdir(parents=True)
    shutil.copy(tiny_table_path, home / "tables" / "measured-here.json")
    assert "measured-here" in matching_tables()
    result = effnas("search", "--target", "xeon", "--budget", "2ms")
    assert_one_line_error(result, "'xeon' is none of those here", "measured-here",
                          f"effnas table adapt --from {DEFAULT_SOURCE} --target xeon (about a minute)",
                          "effnas table build --target xeon (in full")
    assert "measured on this machine's CPU and runtime: " in result.stderr
    assert not Path("runs").joinpath("xeon-2ms").exists()


def test_a_table_that_missed_its_own_check_says_so_wherever_it_is_used(home, tiny_table_path, tiny_arch_yaml):
    data = json.loads(tiny_table_path.read_text())
    data["deployment"]["check"].update(passed=False, misses=["median error 9.0% > 5%"])
    LatencyTable.from_dict({k: v for k, v in data.items() if k != "checksum"}).save(home / "tables" / "missed.json")
    result = effnas_here("arch", "info", str(tiny_arch_yaml), "--target", "missed")
    assert result.returncode == 0, result.stderr
    assert "table tiny MISSED its check on 4 networks held out: median error 9.0% > 5%" in result.stderr
    assert "MISSED" in effnas_here("table", "show", "missed").stdout  # in full there
    assert "MISSED" not in effnas_here("arch", "info", str(tiny_arch_yaml), "--target", str(tiny_table_path)).stderr


def test_shipped_spaces_are_taken_by_name_and_a_wrong_name_lists_them():
    assert SearchSpace.load("shapes") == SearchSpace.from_yaml(SHIPPED_SPACES_DIR / "shapes.yaml")
    assert SearchSpace.load(SHIPPED_SPACES_DIR / "efficientvit_m.yaml") == SearchSpace.default()
    with pytest.raises(EffNasError, match=r"shipped name \(efficientvit_m, shapes\) or a YAML file, but got 'shape'"):
        SearchSpace.load("shape")


def test_version_names_the_release_and_the_revision():
    result = effnas_here("--version")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert result.returncode == 0 and result.stdout.startswith("effnas 0.1.0 (git ")
    if head:  # a checkout with git: the revision is HEAD's (-dirty while files differ)
        assert f"(git {head}" in result.stdout
