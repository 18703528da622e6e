#!/usr/bin/env bash
# Does installing gluon_bert keep a CUDA build of MXNet?
#
#   bash benchmarks/check_gpu_install.sh
#
# Makes a fresh venv holding a distribution named mxnet-cu112 1.9.1 (a
# stand-in built here: same name and version as the real CUDA wheel, whose
# 500+ MB this check does not need), then asks pip what it would install for
# each of the README's commands (`pip install --dry-run`, the package index
# reachable).  Exits non-zero if any of them plans the CPU wheel `mxnet`.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/stub"
cat > "$work/stub/setup.py" <<'PY'
from setuptools import setup
setup(name='mxnet-cu112', version='1.9.1', py_modules=[])
PY
python3 -m venv "$work/venv"
pip="$work/venv/bin/pip"
"$pip" install -q --upgrade pip 2>/dev/null
"$pip" install -q "$work/stub" 2>/dev/null
echo "venv holds: $("$pip" list 2>/dev/null | grep -i '^mxnet')"
status=0
for spec in '.[cu112]' '.'; do
    planned="$("$pip" install --dry-run -e "$spec" 2>/dev/null \
               | sed -n 's/^Would install //p')"
    mxnet="$(tr ' ' '\n' <<<"$planned" | grep -i '^mxnet' || true)"
    if [ -n "$mxnet" ]; then
        echo "pip install -e '$spec': would install $mxnet  <- replaces the CUDA build"
        status=1
    else
        echo "pip install -e '$spec': plans no MXNet wheel (keeps mxnet-cu112)"
    fi
done
exit $status
