#!/bin/bash
# Translation benchmark: our intel-iommu against QEMU's C device, in one run
# (tests/bench/vtd_bench.py).  Installs valgrind and matplotlib if missing.
#
#   scripts/bench.sh [--quick] [vtd_bench.py options]
#
# Writes $CACHE/bench/{bench.md,bench.json,invalidation.png} and prints the table.
# --quick (what `make check` runs): tiny loops; it checks that every case ran and
# produced a number on both builds, nothing about the numbers themselves.
. "$(dirname "$0")/common.sh"

step "benchmark tools (valgrind, matplotlib)"
if ! command -v valgrind >/dev/null || ! command -v callgrind_control >/dev/null; then
    info "installing valgrind"
    need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind \
        >"$CACHE/apt-valgrind.log" 2>&1 \
        || { need_root apt-get update -qq && need_root env DEBIAN_FRONTEND=noninteractive \
             apt-get install -y -qq valgrind >"$CACHE/apt-valgrind.log" 2>&1; } \
        || { tail -20 "$CACHE/apt-valgrind.log"; die "apt-get install valgrind failed"; }
fi
info "$(valgrind --version)"
if ! python3 -c 'import matplotlib' 2>/dev/null; then
    info "installing matplotlib (pip)"
    python3 -m pip install -q matplotlib 2>&1 | grep -v "Running pip as the 'root'" || true
fi
python3 -c 'import matplotlib' 2>/dev/null && info "matplotlib $(python3 -c 'import matplotlib; print(matplotlib.__version__)')" \
    || info "matplotlib unavailable: no plot"

kit_and_both_builds qemu-system-x86_64 qemu-system-aarch64
step "benchmark (each configuration under callgrind, then timed; C first)"
export PYTHONDONTWRITEBYTECODE=1
python3 "$REPO/tests/bench/vtd_bench.py" --ours "$BUILD_RS/qemu-system-x86_64" \
    --ref "$BUILD_REF/qemu-system-x86_64" --firmware "$FIRMWARE_DIR" --out "$CACHE/bench" "$@" \
    || die "benchmark failed"
