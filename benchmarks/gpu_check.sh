#!/usr/bin/env bash
# One check of a CUDA machine, every step logged under $OUT (else gpu_check_out/):
#   1. the GPU (nvidia-smi, torch.cuda.get_device_name)           -> gpu_info.log
#   2. the device-sensitive tests on cuda (pytest -m device)       -> device_tests.log
#   3. one plain, one CAL and targeted (N = 256, 1,024) epochs of
#      the paper model, timed                                     -> epoch_time.json / .log
#   4. as much of the grids as fits in the budget, in order: first grids/authors_paper.yaml
#      (the replication at the paper's network size that the results chapter declares), then
#      grids/paper_short.yaml                                      -> results/, sweep_<grid>.log
#      (records are written atomically: rerun to continue; needs the data, see CALKIT_DATA)
# then steps.tsv (step, exit code, seconds) and summary.txt.
#
# Usage: benchmarks/gpu_check.sh [--dry-run] [--budget SECONDS]
#   --dry-run (or GPU_CHECK_DRY=1): on CPU with tiny sizes, in well under a minute; every step
#       runs, the sweep only lists its runs (--dry-run) instead of training.
#   --budget (or GPU_CHECK_BUDGET): seconds for the sweeps together (default 480).
#   GPU_CHECK_GRIDS: the grids, in order (default "grids/authors_paper.yaml grids/paper_short.yaml").
#   PYTHON: the interpreter (default: .venv/bin/python if present, else python3).
set -uo pipefail

DRY=${GPU_CHECK_DRY:-0}
BUDGET=${GPU_CHECK_BUDGET:-480}
GRIDS=${GPU_CHECK_GRIDS:-"grids/authors_paper.yaml grids/paper_short.yaml"}
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --budget) BUDGET=$2; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
OUTDIR=${OUT:-gpu_check_out}
mkdir -p "$OUTDIR" && OUTDIR=$(cd "$OUTDIR" && pwd)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export MPLCONFIGDIR="$OUTDIR/.mpl"

if [ "$DRY" = 1 ]; then
  DEVICE=cpu; PRESET=cpu; ROWS=1024; THREADS=(--threads 1)
else
  DEVICE=${GPU_CHECK_DEVICE:-cuda}; PRESET=paper; ROWS=22483; THREADS=()
fi
echo "gpu_check: dry=$DRY device=$DEVICE python=$PYTHON out=$OUTDIR" | tee "$OUTDIR/summary.txt"
printf 'step\texit\tseconds\n' > "$OUTDIR/steps.tsv"
FAILED=0

# step NAME COMMAND...: run it, log its output to NAME.log, record exit code and seconds.
step() {
  local name=$1; shift
  echo "== $name: $*"
  local start rc seconds
  start=$(date +%s.%N)
  "$@" > "$OUTDIR/$name.log" 2>&1
  rc=$?
  seconds=$(echo "$(date +%s.%N) - $start" | bc 2>/dev/null || echo "?")
  printf '%s\t%s\t%s\n' "$name" "$rc" "$seconds" >> "$OUTDIR/steps.tsv"
  tail -n 15 "$OUTDIR/$name.log"
  return $rc
}

gpu_info() {
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi
  else
    echo "nvidia-smi: not found"
  fi
  "$PYTHON" - "$DEVICE" <<'PY'
import sys

import torch

device = sys.argv[1]
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, "
      f"cuda available {torch.cuda.is_available()}, threads {torch.get_num_threads()}")
for i in range(torch.cuda.device_count()):
    print(f"cuda:{i}: {torch.cuda.get_device_name(i)}")
if device.startswith("cuda") and not torch.cuda.is_available():
    sys.exit(f"asked for {device} but torch sees no CUDA device (CPU build of torch?)")
PY
}

step gpu_info gpu_info || FAILED=1
CALKIT_TEST_DEVICE=$DEVICE step device_tests "$PYTHON" -m pytest -p no:cacheprovider -q \
  -m device tests/test_device.py || FAILED=1
step epoch_time "$PYTHON" benchmarks/epoch_time.py --device "$DEVICE" --preset "$PRESET" \
  --rows "$ROWS" "${THREADS[@]}" --out "$OUTDIR/epoch_time.json" || FAILED=1

END=$(( $(date +%s) + BUDGET ))
for grid in $GRIDS; do
  name=sweep_$(basename "$grid" .yaml)
  if [ "$DRY" = 1 ]; then
    step "$name" "$PYTHON" -m calkit.cli sweep "$grid" --dry-run --results "$OUTDIR/results" \
      || FAILED=1
    continue
  fi
  LEFT=$(( END - $(date +%s) ))
  [ "$LEFT" -gt 30 ] || break
  # In this process, one run after the other (one GPU); SIGINT at the budget ends the run in
  # flight, and every finished run keeps its record. Exit 124: the budget was reached.
  step "$name" timeout --signal=INT --kill-after=30 "$LEFT" "$PYTHON" -m calkit.cli sweep \
    "$grid" --jobs 1 --results "$OUTDIR/results"
  rc=$?
  [ $rc = 0 ] || [ $rc = 124 ] || FAILED=1
done

{
  echo "--- steps (exit code, seconds)"
  column -t "$OUTDIR/steps.tsv" 2>/dev/null || cat "$OUTDIR/steps.tsv"
  echo "--- records: $(find "$OUTDIR/results" -name '*.json' 2>/dev/null | wc -l)"
  [ -f "$OUTDIR/epoch_time.json" ] && cat "$OUTDIR/epoch_time.json"
  echo
  echo "gpu_check: $([ $FAILED = 0 ] && echo OK || echo FAILED)"
} | tee -a "$OUTDIR/summary.txt"
exit $FAILED
