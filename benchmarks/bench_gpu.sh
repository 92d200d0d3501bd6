#!/usr/bin/env bash
# Fast ISM on a CUDA device: the zoo architectures (cache vs full passes, MC dropout) and the
# Basset-shaped ensemble against tangermeme, whole-sequence window. Run from the repository root on
# a machine with a GPU:  bash benchmarks/bench_gpu.sh [python]. The last line is the cost of one
# DeepSEA/predict sequence (examples/deepsea/README.md).
set -euo pipefail
PY=${1:-python}
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
"$PY" -m pytest -q -p no:cacheprovider tests/test_fast_ism_zoo.py -k cuda
"$PY" benchmarks/bench_zoo.py --device cuda --repeats 3 --full-mutants 600 --chunk 1024 --mc-window 200
"$PY" benchmarks/bench_ism.py --device cuda --models basset --window 600 --n-seq 8 --members 5 \
    --batch-size 1024 --skip-fast
PYTHONPATH=. "$PY" examples/deepsea/cost_per_sequence.py --device cuda --mc-window 1000
