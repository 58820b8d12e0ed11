#!/usr/bin/env bash
# The main job on the built-in demo: the Fashion-MNIST DDNN checkpoint committed under models/.
# Sets everything up first (scripts/bootstrap.sh), then describes and evaluates every depth.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
export PATH="${DDNN_VENV:-$ROOT/.venv}/bin:$PATH"
CKPT="$ROOT/models/fmnist-resnet20-ddnn.pt"
cd "$ROOT"
echo "== ddnn-deploy info --ckpt models/fmnist-resnet20-ddnn.pt"
ddnn-deploy info --ckpt "$CKPT"
echo "== ddnn-deploy eval --ckpt models/fmnist-resnet20-ddnn.pt   (10,000 Fashion-MNIST test images)"
ddnn-deploy eval --ckpt "$CKPT"
echo "== ddnn-deploy export --ckpt models/fmnist-resnet20-ddnn.pt --out artifacts/demo --selector --force"
ddnn-deploy export --ckpt "$CKPT" --out artifacts/demo --selector --force
