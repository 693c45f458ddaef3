#!/bin/bash
# Whole-device fuzzing of the IOMMUs over qtest, our build against the C
# reference build with the same seeds (tests/fuzz/device_fuzz.py).
#   scripts/fuzz-device.sh [--slice] [--seconds N] [--iommu "vtd smmu"] [--first-seed S]
# --slice: the fixed seeds `make check` runs (a few hundred programs, well
# under a minute per IOMMU); otherwise N seconds (default 600) per IOMMU from
# a seed derived from the clock, printed so that any run can be repeated.
# Fails when our build had a run that was not ok (abort, panic, signal, exit,
# hang, memory growth); the C build's findings are reported beside them.
. "$(dirname "$0")/common.sh"
SLICE=0 SECS=600 IOMMUS="vtd smmu" FIRST=""
while [ $# -gt 0 ]; do
    case "$1" in
        --slice) SLICE=1 ;;
        --seconds) SECS=$2; shift ;;
        --iommu) IOMMUS=$2; shift ;;
        --first-seed) FIRST=$2; shift ;;
        *) die "unknown argument '$1'" ;;
    esac
    shift
done
kit_and_both_builds qemu-system-x86_64 qemu-system-aarch64
OUT=$CACHE/fuzz-device
step "the isolation model's own tests"
python3 "$REPO/tests/fuzz/test_models.py" 2>&1 | tail -3 || die "tests/fuzz/test_models.py failed"
rc=0
for iommu in $IOMMUS; do
    case "$iommu" in
        vtd) BIN=qemu-system-x86_64 ;;
        smmu) BIN=qemu-system-aarch64 ;;
        *) die "unknown IOMMU '$iommu'" ;;
    esac
    rm -f "$OUT/repro/$iommu"-seed*     # reproducers of this run only
    if [ "$SLICE" = 1 ]; then
        step "device fuzzing, $iommu: the fixed slice (seeds 1-200, 300 steps each)"
        RANGE=(--seeds 1-200)
    else
        seed=${FIRST:-$(( $(date +%s) % 1000000 * 1000 ))}
        step "device fuzzing, $iommu: ${SECS}s from seed $seed (repeat with --first-seed $seed)"
        RANGE=(--seconds "$SECS" --first-seed "$seed")
    fi
    python3 "$REPO/tests/fuzz/device_fuzz.py" --iommu "$iommu" --brief \
        --ours "$BUILD_RS/$BIN" --ref "$BUILD_REF/$BIN" --firmware "$FIRMWARE_DIR" \
        --steps 300 "${RANGE[@]}" --out "$OUT" 2>&1 | tee "$OUT-$iommu.log" | sed 's/^/    /' || rc=1
    info "report (every seed, both builds): $OUT/report-$iommu.json, reproducers: $OUT/repro/"
done
[ $rc = 0 ] || die "our build had runs that were not ok (see above)"
