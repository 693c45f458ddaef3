#!/bin/bash
# Build and run QEMU 10.2.2's own intel-iommu qtest (tests/qtest/intel-iommu-test.c,
# unmodified) against a QEMU build: ours by default, or the C reference with --ref.
#
#   tests/upstream-qtests.sh [--ref]
#
# The machine has no network and the qtest starts QEMU itself: a wrapper named
# qemu-system-x86_64 adds the kit's firmware directory (-L) and -nic none.
. "$(dirname "$0")/../scripts/common.sh"

BUILD=$BUILD_RS
[ "${1:-}" = "--ref" ] && BUILD=$BUILD_REF
[ -f "$BUILD/build.ninja" ] || die "no QEMU build in $BUILD (scripts/setup.sh)"

step "build tests/qtest/intel-iommu-test in $BUILD"
ninja -C "$BUILD" tests/qtest/intel-iommu-test | ninja_progress

step "guest kit (firmware)"
"$REPO/scripts/guest/kit.sh" > "$CACHE/guest-kit.log" 2>&1 \
    || { cat "$CACHE/guest-kit.log"; die "scripts/guest/kit.sh failed"; }
. "$CACHE/guest/kit.env"

WRAP=$(mktemp -d)
trap 'rm -rf "$WRAP"' EXIT
cat > "$WRAP/qemu-system-x86_64" <<WRAPPER
#!/bin/sh
exec "$BUILD/qemu-system-x86_64" -L "$FIRMWARE_DIR" -nic none "\$@"
WRAPPER
chmod +x "$WRAP/qemu-system-x86_64"

step "run intel-iommu-test"
QTEST_QEMU_BINARY=$WRAP/qemu-system-x86_64 timeout 300 "$BUILD/tests/qtest/intel-iommu-test" --tap -k \
    | tee "$CACHE/upstream-intel-iommu-test.tap"
grep -q '^not ok' "$CACHE/upstream-intel-iommu-test.tap" && die "upstream intel-iommu-test failed"
grep -q '^ok' "$CACHE/upstream-intel-iommu-test.tap" || die "upstream intel-iommu-test ran no test"
info "upstream intel-iommu-test passed on $BUILD"
