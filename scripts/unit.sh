#!/bin/bash
# Unit tests of the QEMU-free crates (cargo), from the repository root.
. "$(dirname "$0")/common.sh"
cd "$REPO"
step "cargo test (QEMU-free crates)"
command -v cargo >/dev/null || die "cargo not found"
cargo test --workspace --locked --quiet 2>&1 | grep -v "^$" || die "cargo test failed"
