# Functions of the L1 guests of the nested (QEMU-in-QEMU) tests (busybox ash).  The
# tests prepend this file to the /init body (l1-vfio.sh, l1-qtest.sh).

uptime_s() { cut -d' ' -f1 /proc/uptime; }

# to_vfio VENDOR:DEVICE (e.g. 0x1af4:0x1042): bind the first PCI function with these ids
# that is not bound to vfio-pci yet to vfio-pci; sets $dev (its BDF) and $group (its IOMMU
# group).
to_vfio() {
    dev="" group=""
    for d in /sys/bus/pci/devices/*; do
        [ "$(cat $d/vendor):$(cat $d/device)" = "$1" ] || continue
        [ "$(basename "$(readlink $d/driver 2>/dev/null)")" = vfio-pci ] && continue
        dev=${d##*/}
        break
    done
    [ -n "$dev" ] || { fail "no PCI function $1 in L1"; return 1; }
    d=/sys/bus/pci/devices/$dev
    group=$(basename "$(readlink $d/iommu_group)")
    echo "RVIOMMU-L1-PCI-DEVICE: $dev $1"
    echo "RVIOMMU-L1-IOMMU-GROUP: ${group:-none}"
    [ -e $d/driver ] && echo "$dev" > $d/driver/unbind
    echo vfio-pci > $d/driver_override
    echo "$dev" > /sys/bus/pci/drivers_probe
    [ "$(basename "$(readlink $d/driver)")" = vfio-pci ] || { fail "$dev did not bind to vfio-pci"; return 1; }
}

# dmar_faults: report the DMAR fault lines of L1's kernel log.
dmar_faults() {
    dmesg | grep -e 'DMAR: \[DMA' -e 'DMAR:.*[Ff]ault' | while read -r l; do
        echo "RVIOMMU-L1-DMAR-FAULT: $l"
    done
}

# run_l2 TIMEOUT QEMU-ARGS...: run L2's QEMU (output in /tmp/l2-qemu.log) and report
# its exit status, run time and output; sets $rc.
run_l2() {
    local limit=$1 t0
    shift
    echo "RVIOMMU-L1-L2-COMMAND: qemu-system-x86_64 $*"
    t0=$(uptime_s)
    timeout "$limit" qemu-system-x86_64 "$@" > /tmp/l2-qemu.log 2>&1
    rc=$?
    echo "RVIOMMU-L1-L2-EXIT: $rc"
    echo "RVIOMMU-L1-L2-SECONDS: $(echo "$(uptime_s) $t0" | awk '{printf "%.2f", $1 - $2}')"
    echo "RVIOMMU-L1-L2-QEMU-LOG-BEGIN"
    cat /tmp/l2-qemu.log
    echo "RVIOMMU-L1-L2-QEMU-LOG-END"
    [ $rc -eq 0 ] || fail "L2 QEMU exited with status $rc"
}

# pasid0_entry BDF: "PGTT FSPTPTR" of the function's PASID 0 entry as L1's kernel programmed
# it into L0's VT-d (debugfs; scalable mode), e.g. "3 0x1234000" when nested.
pasid0_entry() {
    awk -v b="${1#0000:}" '$1 == b && $4 == "0" { print $5 }' \
        /sys/kernel/debug/iommu/intel/dmar_translation_struct 2>/dev/null |
    while IFS=: read -r v2 v1 v0; do
        printf '%d 0x%x\n' $(( (v0 >> 6) & 7 )) $(( v2 & 0xffffffffff000 ))
    done
}
