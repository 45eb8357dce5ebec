#!/usr/bin/env bash
# Build the TensorRT engine for this GPU unless a fitting one is already there (mounted or
# built by an earlier start), then run reid-pipeline on it with the given arguments.
set -euo pipefail
engine="${REID_ENGINE:-/engines/casn.engine}"
onnx="${REID_ONNX:-/models/casn.onnx}"
if ! reid-export check --engine "$engine"; then
    echo "building $engine from $onnx (${REID_PRECISION:-fp16}) for this GPU"
    cp -n "${onnx%.onnx}.consistency.pt" "$(dirname "$engine")/" 2>/dev/null || true
    reid-export engine --onnx "$onnx" --out "$engine" --precision "${REID_PRECISION:-fp16}"
fi
exec reid-pipeline --set "reid.model=$engine" "$@"
