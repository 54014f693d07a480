#!/usr/bin/env bash
# Runs the whole test suite as an ARM64 program under qemu-user, so that the AdvSimd kernels (and llama.cpp's
# ARM64 build, as the oracle) run on an x64 machine. Setup (qemu-user, an ARM64 sysroot): docs/testing.md.
#   tests/run-arm64.sh [CPU ...]          default CPUs: neoverse-n1 (dot-product extension) and cortex-a72 (without)
# Extra xunit arguments go through XUNIT_ARGS, e.g. XUNIT_ARGS='-class QuantLlama.Tests.Quants.KernelPathTests'.
set -euo pipefail
cd "$(dirname "$0")/.."
sysroot=${ARM64_SYSROOT:-/opt/arm64-sysroot}
out=tests/QuantLlama.Tests/bin/publish-linux-arm64
[ -e "$sysroot/lib/ld-linux-aarch64.so.1" ] || { echo "no ARM64 sysroot at $sysroot (see docs/testing.md)" >&2; exit 2; }
command -v qemu-aarch64 >/dev/null || { echo "qemu-aarch64 not found: apt-get install qemu-user" >&2; exit 2; }
dotnet publish tests/QuantLlama.Tests -c Release -r linux-arm64 --self-contained -o "$out" -v quiet -nologo
# The JIT's write-xor-execute double mapping writes code through an alias qemu does not watch, so qemu would run
# stale translations; with it off, code is written where it runs.
export DOTNET_EnableWriteXorExecute=0
cpus=("$@")
[ ${#cpus[@]} -gt 0 ] || cpus=(neoverse-n1 cortex-a72)
status=0
for cpu in "${cpus[@]}"; do
    echo "== qemu-aarch64 -cpu $cpu"
    # shellcheck disable=SC2086
    qemu-aarch64 -L "$sysroot" -cpu "$cpu" "$out/QuantLlama.Tests" -noColor ${XUNIT_ARGS:-} || status=1
done
exit $status
