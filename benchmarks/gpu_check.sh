#!/usr/bin/env bash
# Issue 18's GPU figures in one prepared run, most wanted first: each step's output goes to
# $OUT as it comes, and each step has its own time limit, so a session's device time running
# out keeps what finished. Runs from the repository root, with the installed torch (the GPU
# machine has one; gradinv is taken from src/).
#   OUT=/path bash benchmarks/gpu_check.sh               # on a CUDA machine, within BUDGET s
#   DEVICE=cpu QUICK=1 bash benchmarks/gpu_check.sh       # a dry run of the script here
set -u
OUT=${OUT:-runs/gpu-check}
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-570}  # seconds for all steps (a device command may run 600)
QUICK=${QUICK:-}
PYTHON=${PYTHON:-python}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"

step() {  # step NAME SECONDS COMMAND...: run it for at most SECONDS (and what is left of the
    local name=$1 limit=$2  # budget), its output to $OUT/NAME.txt
    shift 2
    local left=$((BUDGET - SECONDS))
    if [ "$left" -lt "$limit" ]; then limit=$left; fi
    if [ "$limit" -lt 20 ]; then
        echo "== $name: skipped, $left s of the budget left" | tee -a "$OUT/steps.txt"
        return
    fi
    echo "== $name ($(date +%T), at most $limit s): $*" | tee -a "$OUT/steps.txt"
    timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
    echo "   exit $? after $SECONDS s in all" | tee -a "$OUT/steps.txt"
}

step machine 30 "$PYTHON" -c "import torch; print(torch.__version__, torch.cuda.is_available() \
and torch.cuda.get_device_name())"
speed=(benchmarks/speed.py --device "$DEVICE" --short 5 --long 25 --repeats 2)
if [ -n "$QUICK" ]; then
    speed+=(--quick --repeats 1 --short 1 --long 3 --agree-iterations 5 --seeds 2)
fi
step speed-gi 200 "$PYTHON" "${speed[@]}" --sections gi
step speed-gias-audit 120 "$PYTHON" "${speed[@]}" --sections gias,audit
step speed-giml 90 "$PYTHON" "${speed[@]}" --sections giml
if [ -n "$QUICK" ]; then
    step demo 80 "$PYTHON" -m gradinv.cli demo --model lenet --iterations 20 --device "$DEVICE" --quiet \
        --out "$OUT/demo"
    step quality 120 "$PYTHON" benchmarks/quality.py --quick --attacks gi --seeds 0 --budget 10 \
        --device "$DEVICE" --out "$OUT/quality"
    step quality-bf16 120 "$PYTHON" benchmarks/quality.py --quick --attacks gi --seeds 0 \
        --budget 10 --device "$DEVICE" --precision bf16 --out "$OUT/quality-bf16"
else
    step demo 80 "$PYTHON" -m gradinv.cli demo --model resnet18 --iterations 2000 --device cuda --quiet \
        --out "$OUT/demo"
    # GPU vs CPU PSNR (target: within 0.5 dB over 3 seeds); the CPU side runs where time allows
    step quality 120 "$PYTHON" benchmarks/quality.py --quick --attacks gi,gias --seeds 0 1 2 \
        --device cuda --out "$OUT/quality"
    # what TF32 and bf16 autocast do to the same PSNR (the default is IEEE fp32)
    step quality-tf32 90 "$PYTHON" benchmarks/quality.py --quick --attacks gi,gias --seeds 0 1 2 \
        --device cuda --precision tf32 --out "$OUT/quality-tf32"
    step quality-bf16 90 "$PYTHON" benchmarks/quality.py --quick --attacks gi,gias --seeds 0 1 2 \
        --device cuda --precision bf16 --out "$OUT/quality-bf16"
fi
step speed-agreement 120 "$PYTHON" "${speed[@]}" --sections agreement
