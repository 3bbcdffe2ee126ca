#!/usr/bin/env bash
# A separate virtual environment for benchmarks/speed.py: aecompress plus CompressAI 1.2.8.
# CompressAI is never a dependency of aecompress. Its wheel is installed without its
# requirements (it pins numpy < 2 and pulls torchvision and torch-geometric); those it
# needs to import are installed by hand. Usage: bash benchmarks/setup-bench-env.sh [DIR]
set -euo pipefail
dir="${1:-.bench-venv}"
python3 -m venv "$dir"
# shellcheck disable=SC1091
. "$dir/bin/activate"
pip install -q torch==2.13.0 'numpy<2' einops scipy pytorch-msssim tqdm requests 'pandas<2.3' matplotlib torch-geometric
pip install -q --no-deps compressai==1.2.8
pip install -q click pillow constriction safetensors
pip install -q --no-deps -e .
echo "ready: . $dir/bin/activate && python benchmarks/speed.py"
