# /init body of the L1 guest of the nested (QEMU-in-QEMU) tests (busybox ash, sourced by
# the /init of scripts/guest/mkinitramfs.sh after l1-lib.sh; the iommufd kernel, no modules).
#
# L1 runs behind L0's intel-iommu. It hands the virtio-blk function L0 gives it to vfio-pci
# and runs an L2 guest on it with the QEMU of this initramfs (KVM: L0's -cpu max has SVM).
# L2 is the DMA test guest (tests/guest/dma-read.sh): it reads the whole disk through the
# passed-through function and prints its sha256.
#
# Files: /usr/bin/qemu-system-x86_64 (+ its libraries), firmware in /usr/share/qemu,
# /l2/vmlinuz, /l2/initrd.gz.
# Kernel parameters:
#   rviommu.l2_iommu=PROPS     L2's -device intel-iommu,PROPS ('none': no vIOMMU in L2)
#   rviommu.l2_machine=OPTS    more -machine q35 options of L2's (e.g. kernel-irqchip=split)
#   rviommu.l2_backend=legacy|iommufd   vfio's backend (legacy container or iommufd cdev)
#   rviommu.l2_nic=VENDOR:DEVICE  a NIC of L0's to assign to L2 too (e.g. 0x8086:0x10d3)
#   rviommu.l2_append=ARGS     extra L2 kernel parameters ('+' stands for ' ', ',' stays)
#   rviommu.sha256=HEX         the disk's expected sha256 (passed on to L2)
#   rviommu.l2_timeout=SECONDS L2 watchdog (default 240)
# Console lines:
#   RVIOMMU-L1-PCI-DEVICE: <bdf> <vendor>:<device>   each function handed to L2
#   RVIOMMU-L1-IOMMU-GROUP: <n>
#   RVIOMMU-L1-L2-COMMAND: <qemu command line>
#   RVIOMMU-L1-L2-SECONDS: <s>                       L2 run time (QEMU start to exit)
#   RVIOMMU-L1-L2-EXIT: <QEMU exit status>
#   RVIOMMU-L1-DOMAIN: <type>                         L1's domain of the function (sysfs)
#   RVIOMMU-L1-PASID0-ENTRY: <PGTT> <FSPTPTR>         each PASID 0 entry L1 programmed for the
#                                    disk function while L2 ran (debugfs; 3: nested, 2: second stage)
#   RVIOMMU-L1-L2-NESTED-BINDS: <n>                   host bindings L2's vIOMMU made (iommufd)
#   RVIOMMU-L1-L2-NESTED-INVALIDATIONS: batches=B entries=E calls=C failed=F
#                                    first-stage invalidations L2's vIOMMU forwarded (iommufd)
#   RVIOMMU-L2-<KEY>: <value>                         each RVIOMMU-<KEY> line L2 printed
#   RVIOMMU-L1-DMAR-FAULT: <line>                     DMAR faults in L1's dmesg

iommu=$(kparam l2_iommu); iommu=${iommu:-none}
machine=q35; [ -z "$(kparam l2_machine)" ] || machine="q35,$(kparam l2_machine)"
backend=$(kparam l2_backend); backend=${backend:-legacy}
l2_append=$(kparam l2_append | tr '+' ' ')
sha=$(kparam sha256)
l2_timeout=$(kparam l2_timeout); l2_timeout=${l2_timeout:-240}

echo "RVIOMMU-L1-KERNEL: $(uname -r)"
[ -c /dev/kvm ] || fail "no /dev/kvm in L1"

# The virtio-blk function (modern virtio-blk: 1af4:1042) to vfio-pci, and the NIC if asked.
to_vfio 0x1af4:0x1042 || return 0
devs=$dev disk_dev=$dev disk_group=$group
nic=$(kparam l2_nic)
if [ -n "$nic" ]; then
    to_vfio "$nic" || return 0
    devs="$devs $dev"
fi

# L2's CPU without the TSC-deadline timer: with it (nested KVM on TCG's SVM), L2's
# timer interrupts stopped for minutes once a device was assigned (3 runs of 3: 226 s,
# and twice killed at 240 s); with the LAPIC's one-shot mode, alternating in the same
# L1, they did not (3 of 3 in 57-71 s). See docs/rviommu/testing.rst.
set -- -machine "$machine" -accel kvm -cpu host,-tsc-deadline -m 384M -smp 1 -nodefaults -no-user-config \
    -display none -no-reboot -L /usr/share/qemu \
    -chardev file,id=con,path=/tmp/l2.log -serial chardev:con \
    -kernel /l2/vmlinuz -initrd /l2/initrd.gz \
    -append "console=ttyS0 panic=-1 no_timer_check rviommu.timeout=$l2_timeout rviommu.sha256=$sha $l2_append"
[ "$iommu" = none ] || set -- "$@" -device "intel-iommu,$iommu"
case "$backend" in
    legacy) for d in $devs; do set -- "$@" -device "vfio-pci,host=$d"; done ;;
    iommufd) set -- "$@" -object iommufd,id=ifd0 \
                 -trace 'enable=vtd_hw_nested_*' -D /tmp/l2-trace.log
             for d in $devs; do set -- "$@" -device "vfio-pci,host=$d,iommufd=ifd0"; done ;;
    *) fail "unknown rviommu.l2_backend=$backend" ;;
esac
# L1's PASID 0 entry of the disk function, sampled every second while L2 runs.
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
( while [ ! -e /tmp/l2-done ]; do pasid0_entry "$disk_dev" >> /tmp/pasid0; sleep 1; done ) &
run_l2 $((l2_timeout + 60)) "$@"
touch /tmp/l2-done
sort -u /tmp/pasid0 2>/dev/null | while read -r l; do echo "RVIOMMU-L1-PASID0-ENTRY: $l"; done
# What the vIOMMU of L2 forwarded to L1's iommufd (hardware nested translation only).
if [ -s /tmp/l2-trace.log ]; then
    echo "RVIOMMU-L1-L2-NESTED-BINDS: $(grep -c 'vtd_hw_nested_bind' /tmp/l2-trace.log)"
    awk '/vtd_hw_nested_invalidate/ {
            for (i = 1; i < NF; i++) { if ($i == "entries") e += $(i + 1); if ($i == "in") c += $(i + 1) }
            b++; if ($NF != "(0)") f++ }
         END { printf "RVIOMMU-L1-L2-NESTED-INVALIDATIONS: batches=%d entries=%d calls=%d failed=%d\n", b, e, c, f }' \
        /tmp/l2-trace.log
fi
echo "RVIOMMU-L1-DOMAIN: $(cat /sys/kernel/iommu_groups/$disk_group/type 2>/dev/null || echo unknown)"
# L2's console, with its own markers renamed: RVIOMMU-X -> RVIOMMU-L2-X.
echo "RVIOMMU-L1-L2-CONSOLE-BEGIN"
tr -d '\r' < /tmp/l2.log | grep -v '^RVIOMMU-' | tail -n 40
echo "RVIOMMU-L1-L2-CONSOLE-END"
tr -d '\r' < /tmp/l2.log | sed -n 's/^RVIOMMU-\([A-Z0-9-]*\): /RVIOMMU-L2-\1: /p'
tr -d '\r' < /tmp/l2.log | grep -q '^RVIOMMU-TEST-RESULT: PASS' || fail "L2 did not pass"
dmar_faults
pass
