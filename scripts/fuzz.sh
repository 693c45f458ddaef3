#!/bin/bash
# Coverage-guided fuzzing of the QEMU-free models (libFuzzer via cargo-fuzz).
# Not part of `make check` (it runs for as long as you let it).
#   scripts/fuzz.sh [seconds, default 60] [vtd|smmu, default vtd]
# cargo-fuzz needs nightly-only rustc flags; with the machine's one stable
# toolchain they are enabled with RUSTC_BOOTSTRAP=1.
. "$(dirname "$0")/common.sh"
SECONDS_TO_RUN=${1:-60}
MODEL=${2:-vtd}
case "$MODEL" in
    vtd)  CRATE=vtd-core TARGET=guest_programs_vtd ;;
    smmu) CRATE=smmu-core TARGET=guest_programs_smmu ;;
    *) die "unknown model '$MODEL' (vtd or smmu)" ;;
esac
step "cargo-fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
    info "installing cargo-fuzz (cargo install, a few minutes)"
    cargo install --quiet cargo-fuzz || die "cargo install cargo-fuzz failed"
fi
# The VT-d corpus keeps its old place ($CACHE/fuzz/corpus).
CORPUS=$CACHE/fuzz/corpus${MODEL#vtd}
[ "$MODEL" = vtd ] || CORPUS=$CACHE/fuzz/corpus-$MODEL
step "fuzzing $CRATE for ${SECONDS_TO_RUN}s (corpus in $CORPUS)"
mkdir -p "$CORPUS"
cd "$REPO/rust/$CRATE"
RUSTC_BOOTSTRAP=1 cargo fuzz run "$TARGET" "$CORPUS" -- \
    -max_total_time="$SECONDS_TO_RUN" -max_len=4096 2>&1 | grep -E "^#|ERROR|panicked|Done|SUMMARY" | tail -20
