# /init body of the L1 guest of test_upstream_bios_tables.py (busybox ash, sourced by the
# /init of scripts/guest/mkinitramfs.sh after l1-lib.sh; the kit's Debian kernel with
# kvm_amd loaded: L0 runs L1 under TCG with -cpu max, which has SVM).
#
# Runs upstream's bios-tables-test (QEMU 10.2.2, unmodified) case of intel-iommu,
# /x86_64/acpi/q35/kvm/dmar, once per build: the test registers it only when /dev/kvm
# opens read-write (qtest_has_accel("kvm")), and its QEMU (-accel kvm) runs under KVM
# here.  Per build NAME (rviommu.btt_builds=c,rust) the initramfs holds:
#   /bt/NAME/bios-tables-test               the test binary built in that tree
#   /bt/NAME/qemu-system-x86_64             that build's QEMU (debug info stripped)
#   /bt/NAME/tests/data/acpi/x86/q35/...    that tree's expected tables (the base files and
#                                           the .dmar variants; data_dir is relative to the
#                                           working directory, as in the build directory)
# plus the libraries of all of them and the firmware in /usr/share/qemu.  The test finds
# the target from QEMU's file name, so QTEST_QEMU_BINARY is a wrapper named
# /bt/NAME/bin/qemu-system-x86_64 that adds -L /usr/share/qemu and -nic none, as
# tests/upstream-qtests.sh does on the host (the +ds builds have no firmware, and the
# test's probe of q35 would otherwise want the default NIC's iPXE ROM).
#
# Kernel parameters:
#   rviommu.btt_builds=NAME,NAME   builds to run, in order (default c,rust)
#   rviommu.btt_case=PATH          GTest path (default /x86_64/acpi/q35/kvm/dmar)
#   rviommu.btt_timeout=SECONDS    limit per run (default 300)
# Console lines (NAME first in each):
#   RVIOMMU-L1-KVM: <what /dev/kvm is> <svm or no-svm>
#   RVIOMMU-L1-BTT-LISTED: NAME yes|no           the case is registered (-l)
#   RVIOMMU-L1-BTT-TAP-BEGIN: NAME ... RVIOMMU-L1-BTT-TAP-END: NAME      its TAP (stdout)
#   RVIOMMU-L1-BTT-STDERR-BEGIN: NAME ... RVIOMMU-L1-BTT-STDERR-END: NAME its stderr
#                                                (and QEMU's)
#   RVIOMMU-L1-BTT-EXIT: NAME <status>
#   RVIOMMU-L1-BTT-SECONDS: NAME <s>             the run (QEMU probes, L2 boot, comparison)
#   RVIOMMU-L1-BTT-KVM-VMS: NAME <n>             KVM VMs alive at once, at most, during the
#                                                run (sampled every 0.5 s from /proc/*/fd):
#                                                0 would mean QEMU fell back to TCG
#   RVIOMMU-L1-BTT-KVM-SECONDS: NAME first=<s> last=<s>   when a KVM VM was first and last
#                                                seen, from the start of the run ('-': never)

builds=$(kparam btt_builds); builds=${builds:-c,rust}
case_path=$(kparam btt_case); case_path=${case_path:-/x86_64/acpi/q35/kvm/dmar}
limit=$(kparam btt_timeout); limit=${limit:-300}

svm=no-svm
grep -qw svm /proc/cpuinfo && svm=svm
echo "RVIOMMU-L1-KVM: $(ls -l /dev/kvm 2>&1) $svm"
[ -c /dev/kvm ] || { fail "no /dev/kvm in L1 (kvm_amd did not load?)"; return 0; }

# kvm_vms: how many KVM VMs are alive now (file descriptors of anon_inode:kvm-vm).
kvm_vms() {
    ls -l /proc/[0-9]*/fd/ 2>/dev/null | grep -c 'kvm-vm'
}

for name in $(echo "$builds" | tr , ' '); do
    dir=/bt/$name
    [ -x "$dir/bios-tables-test" ] && [ -x "$dir/qemu-system-x86_64" ] \
        || { fail "$name: no bios-tables-test or QEMU in $dir"; continue; }
    mkdir -p "$dir/bin"
    cat > "$dir/bin/qemu-system-x86_64" <<EOF
#!/bin/sh
exec $dir/qemu-system-x86_64 -L /usr/share/qemu -nic none "\$@"
EOF
    chmod +x "$dir/bin/qemu-system-x86_64"
    cd "$dir" || { fail "$name: cannot cd to $dir"; continue; }
    export QTEST_QEMU_BINARY=$dir/bin/qemu-system-x86_64

    ./bios-tables-test -l > /tmp/$name.list 2>&1
    if grep -qx "$case_path" /tmp/$name.list; then
        echo "RVIOMMU-L1-BTT-LISTED: $name yes"
    else
        echo "RVIOMMU-L1-BTT-LISTED: $name no"
        grep -v '^#' /tmp/$name.list | tail -20
        fail "$name: bios-tables-test does not list $case_path"
        continue
    fi

    # Sample the KVM VMs alive while the test runs (the L2 it starts should be one), and
    # when one was first and last seen (seconds from the start of the run).
    t0=$(uptime_s)
    echo "0 - -" > /tmp/$name.kvm
    touch /tmp/$name.running
    ( max=0 first=-
      while [ -e /tmp/$name.running ]; do
          n=$(kvm_vms)
          if [ "$n" -gt 0 ]; then
              now=$(echo "$(uptime_s) $t0" | awk '{printf "%.1f", $1 - $2}')
              [ "$first" = - ] && first=$now
              [ "$n" -gt "$max" ] && max=$n
              echo "$max $first $now" > /tmp/$name.kvm
          fi
          sleep 0.5
      done ) &
    sampler=$!

    timeout "$limit" ./bios-tables-test --tap -k -p "$case_path" > /tmp/$name.tap 2> /tmp/$name.err
    rc=$?
    secs=$(echo "$(uptime_s) $t0" | awk '{printf "%.2f", $1 - $2}')
    rm -f /tmp/$name.running
    wait $sampler
    cd /

    echo "RVIOMMU-L1-BTT-TAP-BEGIN: $name"
    cat /tmp/$name.tap
    echo "RVIOMMU-L1-BTT-TAP-END: $name"
    echo "RVIOMMU-L1-BTT-STDERR-BEGIN: $name"
    cat /tmp/$name.err
    echo "RVIOMMU-L1-BTT-STDERR-END: $name"
    echo "RVIOMMU-L1-BTT-EXIT: $name $rc"
    echo "RVIOMMU-L1-BTT-SECONDS: $name $secs"
    read -r vms first last < /tmp/$name.kvm
    echo "RVIOMMU-L1-BTT-KVM-VMS: $name $vms"
    echo "RVIOMMU-L1-BTT-KVM-SECONDS: $name first=$first last=$last"
    [ $rc -eq 0 ] || fail "$name: bios-tables-test exited with status $rc"
    grep -q "^ok .* $case_path\( \|\$\)" /tmp/$name.tap || fail "$name: $case_path did not pass"
done
pass
