import subprocess
import sys

import pytest
import yaml

from effvit_nas import Arch
from tests.cli.helpers import assert_one_line_error, effnas, effnas_here


def test_help_and_arch_info_load_no_heavy_runtime():
    code = (
        "import sys, contextlib, io\n"
        "from effvit_nas.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['arch', 'info', 'm0']); main(['space', 'info'])\n"
        "    try: main(['--help'])\n"
        "    except SystemExit: pass\n"
        "print(sorted(m for m in ('torch', 'ray', 'onnxruntime', 'optuna') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name, params, macs", [("m0", "2,349,436", "79,193,600"), ("M5", "12,473,772", "521,583,104")])
def test_arch_info_prints_config_params_and_macs(name, params, macs):
    result = effnas("arch", "info", name)
    assert result.returncode == 0, result.stderr
    assert params in result.stdout and macs in result.stdout
    assert "in space efficientvit_m  yes" in result.stdout


def test_arch_info_reads_yaml_and_says_when_outside_the_space(tmp_path):
    path = tmp_path / "a.yaml"
    Arch.preset("m0").replace(resolution=320, name="big").to_yaml(path)
    result = effnas("arch", "info", str(path))
    assert result.returncode == 0, result.stderr
    assert "big" in result.stdout and "no: resolution 320 is not one of" in result.stdout


def test_space_info_prints_size_and_extremes():
    result = effnas("space", "info")
    assert result.returncode == 0, result.stderr
    assert "23,574,831,390,720 distinct architectures" in result.stdout
    assert "smallest" in result.stdout and "largest" in result.stdout


def invalid_arch_file(tmp_path):
    data = Arch.preset("m0").to_dict()
    data["heads"] = [4, 5, 4]
    path = tmp_path / "heads.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def bad_yaml_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("widths: [64, 128\n")
    return str(path)


@pytest.mark.parametrize(
    "make_args, fragments",
    [
        (lambda p: ["arch", "info", "m9"], ["ARCH must be a preset", "'m9'"]),
        (lambda p: ["arch", "info", invalid_arch_file(p)], ["divisible by its heads", "heads=5"]),
        (lambda p: ["arch", "info", bad_yaml_file(p)], ["must be valid YAML", "line 2"]),
        (lambda p: ["arch", "info", "m0", "--space", bad_yaml_file(p)], ["search space file", "valid YAML"]),
        (lambda p: ["arch", "info", "m0", "--bogus"], ["unrecognized arguments: --bogus"]),
        (lambda p: ["arch", "info", "m0", "--num-classes", "ten"], ["invalid int value: 'ten'"]),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(tmp_path, make_args, fragments):
    assert_one_line_error(effnas_here(*make_args(tmp_path)), *fragments)


def test_debug_shows_the_traceback():
    result = effnas("--debug", "arch", "info", "m9")
    assert result.returncode != 0 and "Traceback" in result.stderr
