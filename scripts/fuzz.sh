#!/bin/bash
# Coverage-guided fuzzing of the QEMU-free VT-d model (libFuzzer via
# cargo-fuzz).  Not part of `make check` (it runs for as long as you let it).
#   scripts/fuzz.sh [seconds, default 60]
# cargo-fuzz needs nightly-only rustc flags; with the machine's one stable
# toolchain they are enabled with RUSTC_BOOTSTRAP=1.
. "$(dirname "$0")/common.sh"
SECONDS_TO_RUN=${1:-60}
step "cargo-fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
    info "installing cargo-fuzz (cargo install, a few minutes)"
    cargo install --quiet cargo-fuzz || die "cargo install cargo-fuzz failed"
fi
step "fuzzing vtd-core for ${SECONDS_TO_RUN}s (corpus in $CACHE/fuzz)"
mkdir -p "$CACHE/fuzz/corpus"
cd "$REPO/rust/vtd-core"
RUSTC_BOOTSTRAP=1 cargo fuzz run guest_programs_vtd "$CACHE/fuzz/corpus" -- \
    -max_total_time="$SECONDS_TO_RUN" -max_len=4096 2>&1 | grep -E "^#|ERROR|panicked|Done|SUMMARY" | tail -20
