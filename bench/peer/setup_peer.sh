#!/usr/bin/env bash
# Create the benchmark peer's virtualenv: the seed's TensorFlow stack
# (tensorflow-cpu 2.14.1, tensorflow-compression 2.14.1,
# tensorflow-probability 0.22.1), kept apart from the project's environment.
#
# Usage: bash bench/peer/setup_peer.sh
#   PEER_VENV    where to create the venv (default: <repo>/bench/.peer-venv)
#   PEER_PYTHON  interpreter to build it from (default: python3.11; TF 2.14
#                ships wheels for CPython 3.9-3.11 only)
#
# Idempotent: when the venv exists and imports the pinned versions, it does
# nothing. Only PyPI is needed (about 230 MB of wheels, 1.3 GB installed).
# Prints the venv's python path as its last line on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${PEER_VENV:-$repo/bench/.peer-venv}"
python="${PEER_PYTHON:-python3.11}"
req="$here/requirements.txt"

versions() {
    "$venv/bin/python" -c 'import importlib.metadata as m; print(" ".join(f"{p}=={m.version(p)}" for p in ("tensorflow-cpu","tensorflow-compression","tensorflow-probability","numpy")))' >&2
}

check() {
    # Exit 0 when the venv imports exactly the pinned versions, from
    # tensorflow-cpu (not the "tensorflow" distribution).
    TF_CPP_MIN_LOG_LEVEL=2 "$venv/bin/python" - <<'PY' 2>/dev/null
import importlib.metadata as md
import tensorflow as tf
import tensorflow_compression as tfc
import tensorflow_probability as tfp
import numpy as np
import scipy
want = {"tensorflow-cpu": "2.14.1", "tensorflow-compression": "2.14.1",
        "tensorflow-probability": "0.22.1"}
got = {p: md.version(p) for p in want}
assert got == want, got
assert tf.__version__ == "2.14.1" and tfp.__version__ == "0.22.1"
assert np.__version__.startswith("1."), np.__version__
assert scipy.__version__.startswith("1.11."), scipy.__version__
try:
    md.version("tensorflow")
except md.PackageNotFoundError:
    pass
else:
    raise SystemExit("the 'tensorflow' distribution is installed too")
tfc.NoisyLogistic(loc=0., scale=1.)
PY
}

if [ -x "$venv/bin/python" ] && check; then
    echo "peer venv already set up: $venv" >&2
    versions
    echo "$venv/bin/python"
    exit 0
fi

if ! command -v "$python" >/dev/null 2>&1; then
    echo "error: $python not found; set PEER_PYTHON to a CPython 3.9-3.11 interpreter" >&2
    exit 1
fi
pyver="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
case "$pyver" in
    3.9|3.10|3.11) ;;
    *) echo "error: $python is Python $pyver; TensorFlow 2.14 needs 3.9-3.11" >&2; exit 1 ;;
esac

if [ ! -x "$venv/bin/python" ]; then
    echo "creating venv $venv with $python ($pyver)" >&2
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)

# A venv where the "tensorflow" distribution clobbered tensorflow-cpu's files:
# remove it and lay tensorflow-cpu's files down again.
if "$venv/bin/python" -c 'import importlib.metadata as m; m.version("tensorflow")' 2>/dev/null; then
    echo "removing the 'tensorflow' distribution from $venv" >&2
    "${pip[@]}" uninstall --yes tensorflow >&2
    "${pip[@]}" install --force-reinstall --no-deps "$(grep '^tensorflow-cpu' "$req")" >&2
fi

deps="$(mktemp)"
trap 'rm -f "$deps"' EXIT
grep -v '^tensorflow-compression' "$req" > "$deps"
echo "installing $(grep -v '^#' "$req" | tr '\n' ' ')" >&2
"${pip[@]}" install -r "$deps" >&2
"${pip[@]}" install --no-deps "$(grep '^tensorflow-compression' "$req")" >&2

if ! check; then
    echo "error: the peer venv at $venv does not import the pinned stack:" >&2
    TF_CPP_MIN_LOG_LEVEL=2 "$venv/bin/python" -c 'import tensorflow_compression' >&2 || true
    exit 1
fi
versions
echo "$venv/bin/python"
