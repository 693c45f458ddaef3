#!/bin/bash
# Build and run QEMU 10.2.2's own intel-iommu qtest (tests/qtest/intel-iommu-test.c,
# unmodified) against the reference build (the C device) and ours, and print the
# results side by side. On our build also our libqtest test with the Rust test device
# (tests/qtest/rviommu-testdev-test.c, registered by patches/0002).
# Then upstream's functional test tests/functional/x86_64/test_intel_iommu.py (its 4 cases,
# imported from the 10.2.2 tree) on both builds, through tests/functional/run.sh:
# tests/functional/x86_64/test_upstream_intel_iommu.py adapts only where its kernel, initrd
# and disk come from, TCG for KVM and busybox for Fedora's tools (see its docstring).
# And bios-tables-test's intel-iommu case, unmodified, in an L1 guest with KVM
# (tests/functional/x86_64/test_upstream_bios_tables.py), and its two SMMUv3 cases of
# aarch64 virt (IORT of iommu=smmuv3 and of user-created arm-smmuv3 on pcie.0 and a
# pxb-pcie), unmodified, on the host under TCG with Debian's AAVMF as the edk2 images the
# test expects (scripts/guest/edk2-aarch64.sh).
#
#   tests/upstream-qtests.sh
#
# The machine has no network and the qtest starts QEMU itself: a wrapper named
# qemu-system-x86_64 adds the kit's firmware directory (-L) and -nic none.
# Fails if a test fails on our build, or passes on the C device but not on ours.
. "$(dirname "$0")/../scripts/common.sh"

step "guest kit (firmware)"
"$REPO/scripts/guest/kit.sh" > "$CACHE/guest-kit.log" 2>&1 \
    || { cat "$CACHE/guest-kit.log"; die "scripts/guest/kit.sh failed"; }
. "$CACHE/guest/kit.env"

WRAP=$(mktemp -d)
trap 'rm -rf "$WRAP"' EXIT

# run_tests NAME BUILD TEST...: TAP of each test in $CACHE/upstream-NAME-TEST.tap
run_tests() {
    local name=$1 build=$2 t
    shift 2
    [ -f "$build/build.ninja" ] || die "no QEMU build in $build (scripts/setup.sh)"
    step "build $* in $build"
    ninja -C "$build" "${@/#/tests/qtest/}" | ninja_progress
    mkdir -p "$WRAP/$name"
    cat > "$WRAP/$name/qemu-system-x86_64" <<WRAPPER
#!/bin/sh
exec "$build/qemu-system-x86_64" -L "$FIRMWARE_DIR" -nic none "\$@"
WRAPPER
    chmod +x "$WRAP/$name/qemu-system-x86_64"
    for t in "$@"; do
        step "run $t on the $name build"
        QTEST_QEMU_BINARY=$WRAP/$name/qemu-system-x86_64 timeout 300 "$build/tests/qtest/$t" \
            --tap -k | tee "$CACHE/upstream-$name-$t.tap"
        grep -q '^ok' "$CACHE/upstream-$name-$t.tap" || die "$t ran no test on the $name build"
    done
}

run_tests c "$BUILD_REF" intel-iommu-test
run_tests rust "$BUILD_RS" intel-iommu-test rviommu-testdev-test

# Classes IntelIOMMU_C (the reference build) and IntelIOMMU_Rust (ours) of the functional
# test; run.sh prints "PASS|FAIL|SKIP  <id>  (<seconds>s...)" per case.  Its exit status is
# not used: the table below decides (a failure on the C device alone is reported, not fatal).
FUNC=test_upstream_intel_iommu
FUNC_CASES="test_intel_iommu test_intel_iommu_strict test_intel_iommu_strict_cm test_intel_iommu_pt"
step "run upstream's functional test_intel_iommu.py on both builds"
"$REPO/tests/functional/run.sh" --qemu "$BUILD_RS/qemu-system-x86_64" --timeout 400 "$FUNC." \
    | tee "$CACHE/upstream-functional.log" || true
# func_result CLASS CASE: "pass 41.2s", "FAIL 12.0s", "SKIP ..." or "n/a"
func_result() {
    awk -v id="$FUNC.$1.$2" '$2 == id { v = ($1 == "PASS") ? "pass" : $1; t = $3; gsub(/[(),]/, "", t)
                                        print v " " t; found = 1; exit }
                             END { if (!found) print "n/a" }' "$CACHE/upstream-functional.log"
}

# Upstream's bios-tables-test case of intel-iommu (/x86_64/acpi/q35/kvm/dmar) needs KVM
# with SMM, which this host lacks: test_upstream_bios_tables.py runs the unmodified test
# binary of each tree in an L1 guest under TCG whose /dev/kvm works (kvm_amd), and writes
# $CACHE/upstream-{c,rust}-bios-tables-test.tap.
step "run upstream's bios-tables-test /x86_64/acpi/q35/kvm/dmar on both builds (in an L1 guest with KVM)"
rm -f "$CACHE"/upstream-{c,rust}-bios-tables-test.tap
"$REPO/tests/functional/run.sh" --qemu "$BUILD_RS/qemu-system-x86_64" --timeout 900 \
    test_upstream_bios_tables. | tee "$CACHE/upstream-bios-tables.log" || true
BTT_CASE=/x86_64/acpi/q35/kvm/dmar
# tap_result FILE CASE: pass, FAIL ("not ok", or no line: GLib's "Bail out!" after a failed
# g_assert prints none) or n/a (no file: the test did not get that far)
tap_result() {
    [ -f "$1" ] || { echo n/a; return; }
    awk -v n="$2" '$0 ~ "^(not )?ok [0-9]+ "n"( |$)" { print ($1 == "not") ? "FAIL" : "pass"; f = 1; exit }
                   END { if (!f) print "FAIL" }' "$1"
}

# bios-tables-test's SMMUv3 cases: the test boots UEFI (pc-bios/edk2-aarch64-code.fd and
# edk2-arm-vars.fd, relative to its working directory) from a CD image of the source tree
# (tests/data/uefi-boot-images) and compares the tables with tests/data/acpi/aarch64/virt.
SMMU_CASES="/aarch64/acpi/virt/smmuv3-legacy /aarch64/acpi/virt/smmuv3-dev"
step "firmware for bios-tables-test's aarch64 virt cases"
EDK2=$("$REPO/scripts/guest/edk2-aarch64.sh") || die "scripts/guest/edk2-aarch64.sh failed"
info "$EDK2"
# run_smmu_tables NAME BUILD TREE: TAP in $CACHE/upstream-NAME-bios-tables-smmuv3.tap
run_smmu_tables() {
    local name=$1 build=$2 tree=$3 w=$WRAP/aarch64-$1 args=() c
    mkdir -p "$w/pc-bios" "$w/tests"
    ln -sf "$EDK2/AAVMF_CODE.fd" "$w/pc-bios/edk2-aarch64-code.fd"
    ln -sf "$EDK2/AAVMF_VARS.fd" "$w/pc-bios/edk2-arm-vars.fd"
    ln -sfn "$tree/tests/data" "$w/tests/data"
    for c in $SMMU_CASES; do args+=(-p "$c"); done
    step "run bios-tables-test's SMMUv3 cases on the $name build (UEFI under TCG)"
    ninja -C "$build" tests/qtest/bios-tables-test | ninja_progress
    (cd "$w" && QTEST_QEMU_BINARY=$build/qemu-system-aarch64 timeout 600 \
        "$build/tests/qtest/bios-tables-test" --tap -k "${args[@]}") 2>&1 \
        | grep -v '^# starting QEMU' | tee "$CACHE/upstream-$name-bios-tables-smmuv3.tap" || true
}
run_smmu_tables c "$BUILD_REF" "$TREE_REF"
run_smmu_tables rust "$BUILD_RS" "$TREE_RS"

step "side by side (C device | Rust device)"
fail=0
for t in intel-iommu-test rviommu-testdev-test; do
    for case in $(sed -n 's/^\(not \)\?ok [0-9]* \([^ ]*\).*/\2/p' "$CACHE/upstream-rust-$t.tap"); do
        c=n/a
        [ -f "$CACHE/upstream-c-$t.tap" ] && c=$(awk -v n="$case" '$0 ~ "ok [0-9]+ "n"( |$)" { print ($1 == "not") ? "FAIL" : "pass" }' "$CACHE/upstream-c-$t.tap")
        r=$(awk -v n="$case" '$0 ~ "ok [0-9]+ "n"( |$)" { print ($1 == "not") ? "FAIL" : "pass" }' "$CACHE/upstream-rust-$t.tap")
        printf '    %-78s %-5s | %s\n' "$t $case" "${c:-n/a}" "$r"
        [ "$r" = pass ] || fail=1
    done
done
c=$(tap_result "$CACHE/upstream-c-bios-tables-test.tap" "$BTT_CASE")
r=$(tap_result "$CACHE/upstream-rust-bios-tables-test.tap" "$BTT_CASE")
printf '    %-78s %-5s | %s\n' "bios-tables-test $BTT_CASE" "$c" "$r"
[ "$r" = pass ] || fail=1
for case in $SMMU_CASES; do
    c=$(tap_result "$CACHE/upstream-c-bios-tables-smmuv3.tap" "$case")
    r=$(tap_result "$CACHE/upstream-rust-bios-tables-smmuv3.tap" "$case")
    printf '    %-78s %-5s | %s\n' "bios-tables-test $case" "$c" "$r"
    [ "$r" = pass ] || fail=1
done
for case in $FUNC_CASES; do
    c=$(func_result IntelIOMMU_C "$case"); r=$(func_result IntelIOMMU_Rust "$case")
    printf '    %-78s %-5s | %-5s (C %s, Rust %s)\n' "test_intel_iommu.py IntelIOMMU.$case" \
        "${c%% *}" "${r%% *}" "${c#* }" "${r#* }"
    [ "${r%% *}" = pass ] || fail=1
done
[ $fail = 0 ] || die "an upstream test failed on our build"
info "all passed on our build"
