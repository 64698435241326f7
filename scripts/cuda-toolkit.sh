#!/usr/bin/env bash
# cuda-toolkit.sh - the CUDA 13.0 compiler, headers and libraries from NVIDIA's Python wheels,
# enough to build `vaelab --features cuda` on a machine without a GPU, a driver or a system CUDA
# (a cluster's login node, CI). `just build-cuda` uses it.
#
#   eval "$(scripts/cuda-toolkit.sh)"   installs once into $VAELAB_CUDA_DIR, then prints the
#                                       exports cargo needs (CUDA_HOME, PATH, CUDA_COMPUTE_CAP)
#
#   VAELAB_CUDA_DIR    where the toolkit goes (default ~/.cache/vaelab-cuda; about 1.2 GB)
#   CUDA_COMPUTE_CAP   the GPU generation the kernels are compiled for (default 80: A100; 90 for
#                      H100). Without a GPU nvidia-smi cannot tell.
#
# Why each piece: nvcc compiles candle's kernels (the cu12 wheels ship only ptxas, so this is
# CUDA 13, the newest cudarc 0.19 knows being 13.4); candle links cudart, cuBLAS, cuBLASLt,
# cuRAND and NVRTC at build time (cudarc's `dynamic-linking`), and the driver library
# libcuda.so.1, which only a GPU driver installs. For that one the script builds a link-time stub
# from the driver API's own header, as the stubs/ folder of NVIDIA's toolkit does: the binary
# then loads the node's real libcuda.so.1 when it starts. Running needs a GPU node with a driver
# for CUDA 13 and these libraries on LD_LIBRARY_PATH (the exports below, or `module load cuda`).
set -euo pipefail
D=${VAELAB_CUDA_DIR:-$HOME/.cache/vaelab-cuda}
R=$D/py/nvidia/cu13
log() { echo "cuda-toolkit: $*" >&2; }

if [ ! -e "$R/lib/stubs/libcuda.so" ]; then
  python3 -m pip --version >/dev/null 2>&1 \
    || { log "needs Python's pip (python3 -m pip) to fetch NVIDIA's wheels"; exit 1; }
  log "installing the CUDA 13.0 wheels into $D"
  python3 -m pip install --quiet --disable-pip-version-check --target "$D/py" \
    "nvidia-cuda-nvcc==13.0.88" "nvidia-cuda-crt==13.0.88" "nvidia-nvvm==13.0.88" \
    "nvidia-cuda-runtime==13.0.96" "nvidia-cuda-nvrtc==13.0.88" \
    "nvidia-cuda-cccl==13.0.85" "nvidia-cublas==13.0.*" "nvidia-curand==10.4.0.*" >&2
  # The linker looks for unversioned names.
  for lib in cudart cublas cublasLt curand nvrtc; do
    real=$(cd "$R/lib" && ls "lib$lib.so."* | sort | head -1)
    ln -sfn "$real" "$R/lib/lib$lib.so"
  done
  # libcuda stub: every driver API function cuda.h declares (macros expanded to the versioned
  # names the real library exports), each returning CUDA_ERROR_NO_DEVICE (100), so a binary
  # that loads the stub by mistake reports no GPU; SONAME libcuda.so.1 as the driver's.
  mkdir -p "$R/lib/stubs"
  gcc -E -P -I"$R/include" -x c "$R/include/cuda.h" \
    | grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | tr -d ' (' | sort -u \
    | sed 's/.*/int &(void) { return 100; }/' >"$R/lib/stubs/libcuda-stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$R/lib/stubs/libcuda.so" "$R/lib/stubs/libcuda-stub.c"
  log "toolkit ready: $(nvcc_version=$("$R/bin/nvcc" --version | tail -1); echo "$nvcc_version"), $(wc -l <"$R/lib/stubs/libcuda-stub.c") driver functions stubbed"
fi
echo "export CUDA_HOME=$R"
echo "export PATH=$R/bin:\$PATH"
echo "export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-80}"
echo "export LD_LIBRARY_PATH=$R/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
