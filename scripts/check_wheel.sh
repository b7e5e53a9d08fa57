#!/usr/bin/env bash
# Install effvit-nas the way users do and run it away from the checkout:
#
#   bash scripts/check_wheel.sh          (from the repository root, after pip install -e ".[dev]"; ~1 minute)
#
# Builds the sdist and the wheel (python -m build: the wheel is built from the sdist, so both must be
# complete), checks them with twine, installs the wheel into a fresh venv, and from an empty folder
# outside the checkout runs --version, table list, space info, arch info on a shipped table, the README's
# main job with a few trials, export of its pick, and a build aimed into the installed package (refused).
# The venv borrows the already installed dependencies (--system-site-packages: torch alone is 5 GB) but
# gets effvit-nas only from the wheel: the check fails if the package is imported from anywhere else.
# Exits non-zero at the first thing that does not hold. CI runs it (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "check_wheel: FAILED: $*" >&2; exit 1; }

python -m build --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 || { tail -20 "$WORK/build.log"; fail "python -m build"; }
python -m twine check --strict "$WORK"/dist/*
WHEEL=$(ls "$WORK"/dist/*.whl)
python -m venv --system-site-packages "$WORK/venv"
"$WORK/venv/bin/pip" install --quiet --disable-pip-version-check "$WHEEL"
SITE=$("$WORK/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

mkdir "$WORK/elsewhere"
cd "$WORK/elsewhere"
export PATH="$WORK/venv/bin:$PATH" EFFNAS_HOME="$WORK/home"
[ "$(command -v effnas)" = "$WORK/venv/bin/effnas" ] || fail "effnas is not the venv's: $(command -v effnas)"
imported=$(python -c 'import effvit_nas; print(effvit_nas.__file__)')
case "$imported" in "$SITE"/effvit_nas/*) ;; *) fail "effvit_nas imported from $imported, not the wheel in $SITE" ;; esac
packaged() { find "$SITE/effvit_nas" -type f -not -path '*/__pycache__/*' | sort; }
packaged >"$WORK/before.txt"

set -x
effnas --version | grep -E '^effnas [0-9][^ ]* \(git [0-9a-f]{40}(-dirty)? ?\)$'
effnas table list | grep -E '^amd-epyc-2core-ort-b1 +shipped'
effnas space info | grep -E '^space +efficientvit_m '
effnas arch info m0 --target amd-epyc-2core-ort-b1 | grep -E '^latency on amd-epyc-2core-ort-b1 +[0-9.]+ ms predicted'
effnas space info --space shapes | grep -E '^space +efficientvit_shapes '
effnas search --target amd-epyc-2core-ort-b1 --budget 2ms --trials 12
test -s runs/amd-epyc-2core-ort-b1-2ms/best.yaml
effnas export runs/amd-epyc-2core-ort-b1-2ms/best.yaml --onnx best.onnx | grep 'onnx.checker passed'
set +x
# a table is never written into the installed package: refused in one line, exit 2
set +e
effnas table build --target "$SITE/effvit_nas/latency/tables/mine.json" 2>"$WORK/refusal.txt"
code=$?
set -e
[ "$code" = 2 ] && [ "$(wc -l <"$WORK/refusal.txt")" = 1 ] && grep -q "outside the installed effvit-nas" "$WORK/refusal.txt" \
    || fail "a build into the package was not refused in one line (exit $code): $(cat "$WORK/refusal.txt")"
packaged | diff "$WORK/before.txt" - || fail "files changed inside the installed package"
echo "check_wheel: the wheel installs and runs outside the checkout"
