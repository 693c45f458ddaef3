#!/bin/bash
# Build and run QEMU 10.2.2's own intel-iommu qtest (tests/qtest/intel-iommu-test.c,
# unmodified) against a QEMU build: ours by default, or the C reference with --ref.
# On our build also our libqtest test with the Rust test device
# (tests/qtest/rviommu-testdev-test.c, registered by patches/0002).
#
#   tests/upstream-qtests.sh [--ref]
#
# The machine has no network and the qtest starts QEMU itself: a wrapper named
# qemu-system-x86_64 adds the kit's firmware directory (-L) and -nic none.
. "$(dirname "$0")/../scripts/common.sh"

BUILD=$BUILD_RS
TESTS=(intel-iommu-test rviommu-testdev-test)
if [ "${1:-}" = "--ref" ]; then BUILD=$BUILD_REF; TESTS=(intel-iommu-test); fi
[ -f "$BUILD/build.ninja" ] || die "no QEMU build in $BUILD (scripts/setup.sh)"

step "build ${TESTS[*]} in $BUILD"
ninja -C "$BUILD" "${TESTS[@]/#/tests/qtest/}" | ninja_progress

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

for t in "${TESTS[@]}"; do
    step "run $t"
    QTEST_QEMU_BINARY=$WRAP/qemu-system-x86_64 timeout 300 "$BUILD/tests/qtest/$t" --tap -k \
        | tee "$CACHE/upstream-$t.tap"
    grep -q '^not ok' "$CACHE/upstream-$t.tap" && die "$t failed"
    grep -q '^ok' "$CACHE/upstream-$t.tap" || die "$t ran no test"
    info "$t passed on $BUILD"
done
