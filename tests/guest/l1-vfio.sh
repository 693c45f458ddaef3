# /init body of the L1 guest of the nested (QEMU-in-QEMU) tests (busybox ash, sourced by
# the /init of scripts/guest/mkinitramfs.sh; the iommufd kernel, no modules).
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
#   rviommu.l2_backend=legacy|iommufd   vfio's backend (legacy container or iommufd cdev)
#   rviommu.l2_append=ARGS     extra L2 kernel parameters ('+' stands for ' ', ',' stays)
#   rviommu.sha256=HEX         the disk's expected sha256 (passed on to L2)
#   rviommu.l2_timeout=SECONDS L2 watchdog (default 240)
# Console lines:
#   RVIOMMU-L1-PCI-DEVICE: <bdf> <vendor>:<device>   the function handed to L2
#   RVIOMMU-L1-IOMMU-GROUP: <n>
#   RVIOMMU-L1-L2-COMMAND: <qemu command line>
#   RVIOMMU-L1-L2-SECONDS: <s>                       L2 run time (QEMU start to exit)
#   RVIOMMU-L1-L2-EXIT: <QEMU exit status>
#   RVIOMMU-L1-DOMAIN: <type>                         L1's domain of the function (sysfs)
#   RVIOMMU-L2-<KEY>: <value>                         each RVIOMMU-<KEY> line L2 printed
#   RVIOMMU-L1-DMAR-FAULT: <line>                     DMAR faults in L1's dmesg

uptime_s() { cut -d' ' -f1 /proc/uptime; }

iommu=$(kparam l2_iommu); iommu=${iommu:-none}
backend=$(kparam l2_backend); backend=${backend:-legacy}
l2_append=$(kparam l2_append | tr '+' ' ')
sha=$(kparam sha256)
l2_timeout=$(kparam l2_timeout); l2_timeout=${l2_timeout:-240}

echo "RVIOMMU-L1-KERNEL: $(uname -r)"
[ -c /dev/kvm ] || fail "no /dev/kvm in L1"

# The virtio-blk function (modern virtio-blk: 1af4:1042) to vfio-pci.
dev=""
for d in /sys/bus/pci/devices/*; do
    [ "$(cat $d/vendor):$(cat $d/device)" = 0x1af4:0x1042 ] && { dev=${d##*/}; break; }
done
[ -n "$dev" ] || fail "no virtio-blk function (1af4:1042) in L1"
d=/sys/bus/pci/devices/$dev
group=$(basename "$(readlink $d/iommu_group)")
echo "RVIOMMU-L1-PCI-DEVICE: $dev 1af4:1042"
echo "RVIOMMU-L1-IOMMU-GROUP: ${group:-none}"
[ -e $d/driver ] && echo "$dev" > $d/driver/unbind
echo vfio-pci > $d/driver_override
echo "$dev" > /sys/bus/pci/drivers_probe
[ "$(basename "$(readlink $d/driver)")" = vfio-pci ] || fail "$dev did not bind to vfio-pci"

set -- -machine q35 -accel kvm -cpu host -m 384M -smp 1 -nodefaults -no-user-config \
    -display none -no-reboot -L /usr/share/qemu \
    -chardev file,id=con,path=/tmp/l2.log -serial chardev:con \
    -kernel /l2/vmlinuz -initrd /l2/initrd.gz \
    -append "console=ttyS0 panic=-1 rviommu.timeout=$l2_timeout rviommu.sha256=$sha $l2_append"
[ "$iommu" = none ] || set -- "$@" -device "intel-iommu,$iommu"
case "$backend" in
    legacy) set -- "$@" -device "vfio-pci,host=$dev" ;;
    iommufd) set -- "$@" -object iommufd,id=ifd0 -device "vfio-pci,host=$dev,iommufd=ifd0" ;;
    *) fail "unknown rviommu.l2_backend=$backend" ;;
esac
echo "RVIOMMU-L1-L2-COMMAND: qemu-system-x86_64 $*"
t0=$(uptime_s)
timeout $((l2_timeout + 60)) qemu-system-x86_64 "$@" > /tmp/l2-qemu.log 2>&1
rc=$?
echo "RVIOMMU-L1-L2-EXIT: $rc"
echo "RVIOMMU-L1-L2-SECONDS: $(echo "$(uptime_s) $t0" | awk '{printf "%.2f", $1 - $2}')"
echo "RVIOMMU-L1-L2-QEMU-LOG-BEGIN"
cat /tmp/l2-qemu.log
echo "RVIOMMU-L1-L2-QEMU-LOG-END"
[ $rc -eq 0 ] || fail "L2 QEMU exited with status $rc"
echo "RVIOMMU-L1-DOMAIN: $(cat /sys/kernel/iommu_groups/$group/type 2>/dev/null || echo unknown)"
# L2's console, with its own markers renamed: RVIOMMU-X -> RVIOMMU-L2-X.
echo "RVIOMMU-L1-L2-CONSOLE-BEGIN"
tr -d '\r' < /tmp/l2.log | grep -v '^RVIOMMU-' | tail -n 40
echo "RVIOMMU-L1-L2-CONSOLE-END"
tr -d '\r' < /tmp/l2.log | sed -n 's/^RVIOMMU-\([A-Z0-9-]*\): /RVIOMMU-L2-\1: /p'
tr -d '\r' < /tmp/l2.log | grep -q '^RVIOMMU-TEST-RESULT: PASS' || fail "L2 did not pass"
dmesg | grep -e 'DMAR: \[DMA' -e 'DMAR:.*[Ff]ault' | while read -r l; do
    echo "RVIOMMU-L1-DMAR-FAULT: $l"
done
pass
