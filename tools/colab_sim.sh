#!/usr/bin/env bash
# Simulates installing calkit where users are (Colab): a fresh venv that already holds its own
# torch and numpy 2, the built wheel installed with only the package's lower bounds (no
# constraints file), and the data downloaded over HTTP from a loopback server that serves the
# mirror (CALKIT_DATA_URL), hash-checked, with no CALKIT_DATA set. Then one smoke run on phonons.
# Then notebooks 02 and 04 run on that runtime with calkit removed again, prepared only by their
# Colab bootstrap cell: it clones a loopback git remote of HEAD and installs the clone with the
# book's extras (tools/sync_colab.py writes that cell), leaving the runtime's torch and numpy.
#
#   bash tools/colab_sim.sh   # needs CALKIT_DATA (the mirror) to serve; prints "colab_sim: OK"
#
# It builds and clones the committed code (HEAD), not the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MIRROR=${CALKIT_DATA:?set CALKIT_DATA to the data mirror to serve}
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'kill "${SERVER:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

step() { printf '[colab_sim] %s\n' "$*"; }

step "fresh venv with the runtime's own torch and numpy (Colab ships both)"
"$PYTHON" -m venv "$WORK/venv"
PIP="$WORK/venv/bin/python -m pip --quiet --disable-pip-version-check"
$PIP install "torch==2.13.0" "numpy>=2,<2.6"
before=$("$WORK/venv/bin/python" -c 'import numpy, torch; print(torch.__version__, numpy.__version__)')

step "build the wheel and install it with its lower bounds only"
git -C "$ROOT" archive --format=tar HEAD | (mkdir -p "$WORK/src" && tar -x -C "$WORK/src")
$PIP wheel --no-deps --wheel-dir "$WORK/dist" "$WORK/src"  # from a copy: no build/ in the checkout
$PIP install "$WORK"/dist/calkit_ood-*.whl
after=$("$WORK/venv/bin/python" -c 'import numpy, torch; print(torch.__version__, numpy.__version__)')
if [ "$before" != "$after" ]; then
    echo "colab_sim: installing calkit replaced the runtime's torch/numpy ($before -> $after)" >&2
    exit 1
fi
step "torch and numpy kept: $after"

step "serve the mirror on the loopback and train from a downloaded file"
PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$PYTHON" -m http.server "$PORT" --bind 127.0.0.1 --directory "$MIRROR" >"$WORK/server.log" 2>&1 &
SERVER=$!
sleep 1
cd "$WORK"  # away from the checkout, so the installed package is the one imported
env -u CALKIT_DATA HOME="$WORK/home" CALKIT_DATA_URL="http://127.0.0.1:$PORT" \
    CALKIT_RESULTS="$WORK/results" MPLCONFIGDIR="$WORK/mpl" "$WORK/venv/bin/python" - <<'EOF'
import calkit
from calkit.data import fetch, local_data_dir
from calkit.runner import run_experiment
from calkit.runs import RunConfig

assert "site-packages" in calkit.__file__, calkit.__file__
path = fetch("matbench_phonons")
assert str(path).startswith(str(local_data_dir())), path
record = run_experiment(RunConfig(method="baseline", dataset="phonons", profile="smoke"),
                        progress=False)
mae = record["metrics"]["ema"]["train"]["mae"]
print(f"[colab_sim] downloaded {path.name} ({path.stat().st_size:,} bytes, hash checked); "
      f"smoke baseline on phonons: training MAE {mae:.1f} cm^-1")
EOF
step "the installed command: --version, and a train / predict round trip on a 300-row CSV"
"$WORK/venv/bin/calkit" --version
"$WORK/venv/bin/calkit-ood" --version >/dev/null
"$WORK/venv/bin/python" - <<'PY'
import numpy as np
import pandas as pd

rng = np.random.default_rng(0)
elements = ["Li", "Na", "Mg", "Al", "Si", "Ti", "Fe", "Ni", "Cu", "Zn", "O", "S", "N", "Cl"]
rows = {}
while len(rows) < 340:
    picks = rng.choice(len(elements), size=rng.integers(2, 4), replace=False)
    counts = rng.integers(1, 5, size=len(picks))
    formula = "".join(f"{elements[p]}{c}" for p, c in zip(picks, counts))
    rows[formula] = float(np.dot(counts, picks) / counts.sum())
table = pd.DataFrame({"formula": list(rows), "y": list(rows.values())})
table.iloc[:300].to_csv("train.csv", index=False)
table.iloc[300:][["formula"]].to_csv("new.csv", index=False)
PY
env -u CALKIT_DATA HOME="$WORK/home" MPLCONFIGDIR="$WORK/mpl" "$WORK/venv/bin/calkit" train \
    train.csv --target y --method cal --epochs 3 --n-models 2 -o model.calkit --quiet
env -u CALKIT_DATA HOME="$WORK/home" MPLCONFIGDIR="$WORK/mpl" "$WORK/venv/bin/calkit" predict \
    model.calkit new.csv -o predictions.csv --quiet
"$WORK/venv/bin/python" -c "
import pandas as pd
p = pd.read_csv('predictions.csv')
assert list(p.columns) == ['formula', 'prediction', 'prediction_std'] and len(p) == 40, p
assert p['prediction'].notna().all() and (p['prediction_std'] > 0).all()
print('[colab_sim] calkit train / predict: 300 rows in, 40 predictions with their spread out')"

step "notebooks 02 and 04 on a 'Colab' runtime without calkit, prepared only by their bootstrap cell"
# A loopback git remote of the committed code stands in for the repository's URL, the loopback
# mirror for the data. The runtime is the one above with calkit uninstalled (like Colab, it keeps
# torch, numpy, pandas, scikit-learn and matplotlib) plus Jupyter; the book's extras are not in
# it: the bootstrap cell installs them.
git clone --quiet --bare "$ROOT" "$WORK/remote.git"
"$WORK/venv/bin/python" -m pip --quiet --disable-pip-version-check uninstall -y calkit-ood
"$WORK/venv/bin/python" -m pip --quiet --disable-pip-version-check install ipykernel nbclient \
    nbformat
if "$WORK/venv/bin/python" -c "import calkit" 2>/dev/null || \
        "$WORK/venv/bin/python" -c "import myst_nb" 2>/dev/null; then
    echo "colab_sim: the runtime already has calkit or the book's extras" >&2
    exit 1
fi
mkdir -p "$WORK/content"
cd "$WORK/content"
env -u CALKIT_DATA -u CALKIT_RESULTS HOME="$WORK/home" CALKIT_BOOTSTRAP=1 \
    CALKIT_REPO="file://$WORK/remote.git" CALKIT_DATA_URL="http://127.0.0.1:$PORT" \
    MPLCONFIGDIR="$WORK/mpl" "$WORK/venv/bin/python" - "$WORK/remote.git" <<'PY'
import os
import re
import subprocess
import sys

import nbformat
from nbclient import NotebookClient

remote = sys.argv[1]
# 02 on the smoke subsample (its UMAP figures on the full data take minutes); 04 as a Colab user
# opens it, with its default parameters: it reads the committed records of the clone.
for name, parameters in (("02_shifts", 'profile = "smoke"'), ("04_results", None)):
    source = subprocess.run(["git", f"--git-dir={remote}", "show", f"HEAD:notebooks/{name}.ipynb"],
                            capture_output=True, text=True, check=True).stdout
    nb = nbformat.reads(source, as_version=4)
    if parameters:
        at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
        nb.cells.insert(at + 1, nbformat.v4.new_code_cell(parameters))
    NotebookClient(nb, timeout=1800, kernel_name="python3",
                   resources={"metadata": {"path": os.getcwd()}}).execute()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.outputs if o.get("output_type") == "stream")
    if name == "04_results":
        found = re.search(r"(\d+) current run records in results/cpu/runs/", printed)
        assert found and int(found.group(1)) > 0, printed[:2000]
        print(f"[colab_sim] 04_results read {found.group(1)} committed records from the clone")
    else:
        print(f"[colab_sim] {name} ran ({len(nb.cells)} cells)")
assert os.path.isdir("calkit/.git") and os.path.isdir("calkit/results"), os.listdir(".")
PY
echo "colab_sim: OK"
