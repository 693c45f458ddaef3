#!/bin/bash
# QEMU's own generic-fuzz target (libFuzzer, tests/qtest/fuzz/generic_fuzz.c) on
# our intel-iommu: the fuzzer drives the MMIO of the IOMMU, of its interrupt
# windows and of our DMA test device, and answers every DMA read (the
# IOMMU's table and descriptor reads among them) with bytes of its input.
# Not edu: its range check only logs, then its DMA copies outside its
# buffer (a SEGV in edu_dma_timer within minutes, found here).
# Our crates are coverage-instrumented too (rust/iommu-core/meson.build).
#   scripts/fuzz-generic.sh [--seconds N] [--config "NAME..."]
# Configurations (QEMU_FUZZ_ARGS / QEMU_FUZZ_OBJECTS), N seconds each
# (default 300):
#   vtd-legacy   q35, intel-iommu with interrupt remapping, rviommu-testdev
#   vtd-modern   q35, intel-iommu modern scalable mode, caching mode, device-TLB
#   smmu         virt with our arm-smmuv3 (not in the default list: see below)
# Builds the fuzzing binaries first (scripts/setup.sh generic-fuzz: clang, a third
# build tree under $CACHE/generic-fuzz). Corpora persist in $CACHE/generic-fuzz/
# corpus-NAME; a crash is written to $CACHE/generic-fuzz/crash-NAME-* and fails
# the run (libFuzzer's verdict: a signal, an abort, a Rust panic, a timeout).
. "$(dirname "$0")/common.sh"
SECS=300 CONFIGS="vtd-legacy vtd-modern"
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) SECS=$2; shift ;;
        --config) CONFIGS=$2; shift ;;
        *) die "unknown argument '$1'" ;;
    esac
    shift
done
"$REPO/scripts/setup.sh" generic-fuzz || die "scripts/setup.sh generic-fuzz failed"
step "guest kit (firmware)"
"$REPO/scripts/guest/kit.sh" > "$CACHE/guest-kit.log" 2>&1 \
    || { cat "$CACHE/guest-kit.log"; die "scripts/guest/kit.sh failed"; }
. "$CACHE/guest/kit.env"
OUT=$CACHE/generic-fuzz
rc=0
for name in $CONFIGS; do
    case "$name" in
        vtd-legacy)
            BIN=qemu-fuzz-x86_64
            ARGS="-M q35 -nodefaults -L $FIRMWARE_DIR -device intel-iommu,intremap=on
                  -device rviommu-testdev,addr=04.0"
            OBJS="intel-iommu* vtd* rviommu*" ;;
        vtd-modern)
            BIN=qemu-fuzz-x86_64
            ARGS="-M q35 -nodefaults -L $FIRMWARE_DIR
                  -device intel-iommu,x-scalable-mode=modern,caching-mode=on,device-iotlb=on,intremap=on
                  -device rviommu-testdev,addr=04.0"
            OBJS="intel-iommu* vtd* rviommu*" ;;
        smmu)
            # generic-fuzz enumerates PCI devices with the PC's config ports
            # (qpci_new_pc): on -M virt it can fuzz MMIO regions only, so
            # the SMMU alone (registers, queues; its table and queue reads
            # get the fuzzer's bytes). And it ends every input with a
            # clock_step to the next timer deadline, which -M virt under
            # qtest does not have: QEMU 10.2's harness fails at the first
            # input there, on any device (pl061 too). Kept for a QEMU whose
            # harness runs on virt.
            BIN=qemu-fuzz-aarch64
            ARGS="-M virt,iommu=smmuv3 -nodefaults"
            OBJS="arm-smmuv3*" ;;
        *) die "unknown configuration '$name'" ;;
    esac
    # (setup.sh builds qemu-fuzz-x86_64; another target on demand)
    ninja -C "$BUILD_FUZZ" -j"$JOBS" "$BIN" 2>&1 | ninja_progress || die "ninja $BIN failed"
    mkdir -p "$OUT/corpus-$name"
    step "generic-fuzz, $name: ${SECS}s ($BIN; log $OUT/$name.log)"
    export QEMU_FUZZ_ARGS QEMU_FUZZ_OBJECTS
    QEMU_FUZZ_ARGS=$(echo $ARGS) QEMU_FUZZ_OBJECTS=$OBJS
    info "QEMU_FUZZ_ARGS='$QEMU_FUZZ_ARGS' QEMU_FUZZ_OBJECTS='$QEMU_FUZZ_OBJECTS'"
    rm -f "$OUT/crash-$name-"*
    "$BUILD_FUZZ/$BIN" --fuzz-target=generic-fuzz -max_total_time="$SECS" -max_len=4096 \
        -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
        -artifact_prefix="$OUT/crash-$name-" "$OUT/corpus-$name" > "$OUT/$name.log" 2>&1 \
        && status=0 || status=$?
    show() { grep -E "$1" "$OUT/$name.log" | sed 's/^/    /' | head -"${2:-20}" || true; }
    info "fuzzed MemoryRegions: $(grep -c '^  \* ' "$OUT/$name.log" || true)"
    show "^#[0-9]+[[:space:]]+DONE"
    show "^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)"
    if [ $status -ne 0 ] || ls "$OUT/crash-$name-"* >/dev/null 2>&1; then
        show "panicked|ERROR|Assertion|SUMMARY|==[0-9]+==" 10
        info "FAILED (exit $status); reproducer: $(ls "$OUT/crash-$name-"* 2>/dev/null | head -1)"
        rc=1
    else
        info "no crash"
    fi
done
[ $rc = 0 ] || die "generic-fuzz found crashes (see above)"
