#!/bin/bash
# Unit tests of the QEMU-free crates (cargo), from the repository root.
. "$(dirname "$0")/common.sh"
cd "$REPO"
step "cargo test (QEMU-free crates)"
command -v cargo >/dev/null || die "cargo not found"
cargo test --workspace --quiet 2>&1 | grep -v "^$" || die "cargo test failed"
step "meson build + test of the same crates with plain rustc (as inside QEMU)"
# one build dir per checkout: a meson build dir is tied to its source dir
builddir="$CACHE/core-meson/$(printf '%s' "$REPO" | sha256sum | cut -c1-12)"
if [ ! -f "$builddir/build.ninja" ]; then
    mkdir -p "$(dirname "$builddir")"
    meson setup "$builddir" "$REPO" >/dev/null || die "meson setup of the core crates failed"
fi
meson test -C "$builddir" --print-errorlogs > "$builddir/test.out" 2>&1 \
    || { cat "$builddir/test.out"; die "meson test of the core crates failed (see $builddir/meson-logs)"; }
grep -E "^ *[0-9]+/[0-9]+ |^Ok:|^Fail:" "$builddir/test.out" | sed 's/^/    /' || true
