# /init body of the L1 guest of the qtest-driven nested test (busybox ash, sourced by the
# /init of scripts/guest/mkinitramfs.sh after l1-lib.sh; the iommufd kernel, no modules).
#
# L1 runs behind L0's intel-iommu. It hands L0's two rviommu-testdevs (1234:11f0) to vfio-pci
# and starts an L2 QEMU with `-accel qtest` (no guest code runs in L2): the test in L0
# plays L2's guest over three virtio-serial ports of L0, found here by name:
#   rviommu.l2-qtest    L2's qtest protocol (-qtest)
#   rviommu.l2-monitor  L2's human monitor (system_reset, device_del, quit)
#   rviommu.l1-shell    a shell of L1's, for what L1's kernel shows (debugfs, dmesg)
# Once the test creates /tmp/l2-go (through the shell), L2 starts with our intel-iommu
# (rviommu.l2_iommu), two PCIe root ports with native hotplug (00:04.0, 00:06.0) and a test
# device behind each through vfio's iommufd backend (ids td and tdb).  L2's QEMU traces
# its iommufd calls and host bindings (-trace) into /tmp/l2-trace.log, which the test reads
# through the shell; it ends L2 with the monitor's quit.  If the test wrote /tmp/l2-next
# first, another L2 QEMU starts with the same arguments and those in the file (again
# until there is none).
#
# Files: /usr/bin/qemu-system-x86_64 (+ its libraries), firmware in /usr/share/qemu.
# Kernel parameters:
#   rviommu.l2_iommu=PROPS     L2's -device intel-iommu,PROPS
#   rviommu.l2_timeout=SECONDS how long L2 may run (default 600)
#   rviommu.l2_host_fail=1     L2's QEMU runs with /usr/lib/rviommu-host-fail.so preloaded
#                              (tests/guest/host-fail.c): the rule in /tmp/host-fail makes its
#                              iommufd/vfio requests fail, each is logged in /tmp/host-fail.log
# Console lines:
#   RVIOMMU-L1-PCI-DEVICE: <bdf> <vendor>:<device>   the function handed to L2
#   RVIOMMU-L1-L2-COMMAND: <qemu command line>
#   RVIOMMU-L1-L2-STARTED
#   RVIOMMU-L1-L2-SECONDS: <s>                       L2 run time (QEMU start to exit)
#   RVIOMMU-L1-L2-EXIT: <QEMU exit status>
#   RVIOMMU-L1-L2-QEMU-LOG-BEGIN ... -END            L2 QEMU's stdout/stderr
#   RVIOMMU-L1-DMAR-FAULT: <line>                     DMAR faults in L1's dmesg

iommu=$(kparam l2_iommu)
l2_timeout=$(kparam l2_timeout); l2_timeout=${l2_timeout:-600}

echo "RVIOMMU-L1-KERNEL: $(uname -r)"
mount -t debugfs debugfs /sys/kernel/debug || fail "cannot mount debugfs"

port() {
    for p in /sys/class/virtio-ports/*; do
        [ "$(cat "$p/name" 2>/dev/null)" = "$1" ] && { echo "/dev/${p##*/}"; return 0; }
    done
    fail "no virtio-serial port named $1"
    return 1
}
qt=$(port rviommu.l2-qtest) && mon=$(port rviommu.l2-monitor) && sh_port=$(port rviommu.l1-shell) \
    || return 0
to_vfio 0x1234:0x11f0 || return 0
dev_a=$dev
to_vfio 0x1234:0x11f0 || return 0
dev_b=$dev

# The test's shell in L1 (one open of the port: a virtio console port opens once).
(exec 3<>"$sh_port"; exec sh <&3 >&3 2>&3) &

# The test first starts L2 QEMUs of its own through the shell (configurations that must be
# refused); it says when it is done with the device.
# (/tmp/l2-skip instead: the test needed only the shell.)
n=0
while [ ! -e /tmp/l2-go ] && [ ! -e /tmp/l2-skip ] && [ $n -lt 3000 ]; do
    sleep 0.2; n=$((n + 1))
done
[ -e /tmp/l2-skip ] && { pass; return 0; }
[ -e /tmp/l2-go ] || { fail "the test never said go (/tmp/l2-go)"; return 0; }

set -- -machine q35 -accel qtest -m 256M -nodefaults -no-user-config -display none \
    -L /usr/share/qemu \
    -chardev "serial,id=qt,path=$qt" -qtest chardev:qt \
    -chardev "serial,id=mon,path=$mon" -mon chardev=mon,mode=readline \
    -global ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off \
    -device "intel-iommu,$iommu" \
    -device pcie-root-port,id=rp0,bus=pcie.0,addr=04.0,chassis=1,slot=1 \
    -device pcie-root-port,id=rp1,bus=pcie.0,addr=06.0,chassis=2,slot=2 \
    -object iommufd,id=ifd0 \
    -device "vfio-pci,host=$dev_a,iommufd=ifd0,bus=rp0,id=td,rombar=0" \
    -device "vfio-pci,host=$dev_b,iommufd=ifd0,bus=rp1,id=tdb,rombar=0" \
    -trace 'enable=vtd_hw_nested_*' -trace 'enable=iommufd_backend_alloc_hwpt' \
    -trace 'enable=iommufd_backend_free_id' -trace 'enable=iommufd_backend_invalidate_cache' \
    -trace 'enable=iommufd_cdev_attach_ioas_hwpt' -trace 'enable=iommufd_cdev_detach_ioas_hwpt' \
    -D /tmp/l2-trace.log
if [ "$(kparam l2_host_fail)" = 1 ]; then
    : > /tmp/host-fail
    export LD_PRELOAD=/usr/lib/rviommu-host-fail.so RVIOMMU_FAIL_CTL=/tmp/host-fail \
        RVIOMMU_FAIL_LOG=/tmp/host-fail.log
fi
echo "RVIOMMU-L1-L2-STARTED"
run_l2 "$l2_timeout" "$@"
# The test may ask for another L2 QEMU with the same devices and more arguments (the
# destination of a migration): it writes them to /tmp/l2-next before it ends this one.
while [ -e /tmp/l2-next ]; do
    extra=$(cat /tmp/l2-next)
    rm -f /tmp/l2-next
    echo "RVIOMMU-L1-L2-STARTED"
    # shellcheck disable=SC2086 # the extra arguments are words
    run_l2 "$l2_timeout" "$@" $extra
done
dmar_faults
pass
