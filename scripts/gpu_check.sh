#!/usr/bin/env bash
# The GPU check of issues #4/#5/#8, for one short lease on an H100: environment, cuDNN attention, full-size
# A2V-DiT vs diffusers, the sampler's per-clip program, the full 0.9.1 VAE decode (read_jax/bench/gpu.py).
#
#   OUT=/some/dir bash scripts/gpu_check.sh                    # on the GPU machine, from the repository root
#   OUT=/tmp/x SIZE=tiny PLATFORM=cpu bash scripts/gpu_check.sh   # dry run on a CPU at toy sizes
#
# Each section runs in its own process under its own time limit, clipped so the whole stays under
# BUDGET_S seconds; a failing or killed section does not stop the next. Output: $OUT/gpu_check.log (all
# that is printed) and $OUT/gpu_check.json (numbers per section). Wheels in .whl/ (packages the machine
# lacks: diffusers, ml_collections, flax) are installed into /tmp/site first.
set -u -o pipefail
: "${OUT:?set OUT to the output directory}"
SIZE=${SIZE:-full}
PLATFORM=${PLATFORM:-gpu}
BUDGET_S=${BUDGET_S:-420}
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=1
mkdir -p "$OUT"
LOG=$OUT/gpu_check.log
start=$SECONDS

if compgen -G ".whl/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    2>&1 | tee -a "$LOG"
  export PYTHONPATH=/tmp/site:$PWD
  # The carried flax is the version tested here; if it does not import with this machine's jax, use the machine's.
  if ! "$PYTHON" -c "import flax.linen" >>"$LOG" 2>&1; then
    echo "carried flax does not import here: falling back to the installed flax" | tee -a "$LOG"
    rm -rf /tmp/site/flax /tmp/site/flax-*.dist-info
  fi
else
  export PYTHONPATH=$PWD
fi
echo "wheels ready after $((SECONDS - start)) s" | tee -a "$LOG"
# A rerun on the same (still warm) machine reuses the compiled programs: its compile_s are then cache hits.
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/read_jax_gpu_check_cache}
echo "jax compilation cache: $(find "$JAX_COMPILATION_CACHE_DIR" -type f 2>/dev/null | wc -l) entries at start" \
  | tee -a "$LOG"

# section NAME LIMIT_S: run one section, at most LIMIT_S seconds and never past the budget.
section() {
  local left=$((BUDGET_S - (SECONDS - start)))
  local limit=$(($2 < left ? $2 : left))
  if ((limit < 15)); then
    echo "=== $1: skipped, ${left} s of the budget left" | tee -a "$LOG"
    return
  fi
  echo "=== $1 (limit ${limit} s, at $((SECONDS - start)) s)" | tee -a "$LOG"
  timeout -k 5 "$limit" "$PYTHON" scripts/bench.py gpu --section "$1" --size "$SIZE" --platform "$PLATFORM" \
    --out "$OUT" 2>&1 | grep -v "^WARNING: All log messages before absl" | tee -a "$LOG"
  echo "=== $1 exit ${PIPESTATUS[0]} after $((SECONDS - start)) s" | tee -a "$LOG"
}

section env 40
section attention 60
section dit 150
section sample 120
section vae 150
echo "=== total $((SECONDS - start)) s" | tee -a "$LOG"
# The numbers once more at the end of the output (tracebacks are in the log and the json).
"$PYTHON" - "$OUT/gpu_check.json" <<'PY' 2>&1 | tee -a "$LOG"
import json, sys
data = json.load(open(sys.argv[1]))
for section, value in data.items():
  value = {k: v for k, v in value.items() if k != "traceback"}
  print(section, json.dumps(value, default=str)[:2500])
PY
