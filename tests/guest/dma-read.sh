# /init body (busybox ash, sourced by the /init of scripts/guest/mkinitramfs.sh):
# read the whole virtio-blk disk, i.e. let the device DMA every sector into guest memory
# through whatever the IOMMU set up, and look for DMAR faults.
#
# Kernel parameters: rviommu.disk=NAME (default vda), rviommu.sha256=HEX (expected digest;
# if given, a mismatch is a failure in the guest too).
# Console lines (besides the /init markers):
#   RVIOMMU-PCI-DEVICE: <bdf> <vendor>:<device>    the disk's PCI function
#   RVIOMMU-IOMMU-GROUP: <n> | none
#   RVIOMMU-IOMMU-DOMAIN: <type> | none           DMA, DMA-FQ, identity, ... (sysfs group type)
#   RVIOMMU-DISK-BYTES: <n>
#   RVIOMMU-SHA256: <hex>
#   RVIOMMU-READ-SECONDS: <s>
#   RVIOMMU-DMESG-BEGIN / -END                    `dmesg | grep -i -e DMAR -e iommu` between
#   RVIOMMU-DMAR-FAULT: <line>                    each dmesg line that reports a DMAR fault

disk=$(kparam disk || echo vda)
n=0
while [ ! -b "/dev/$disk" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done

if [ -b "/dev/$disk" ]; then
    pci=$(readlink -f "/sys/block/$disk/device/..")
    echo "RVIOMMU-PCI-DEVICE: ${pci##*/} $(cat "$pci/vendor" 2>/dev/null):$(cat "$pci/device" 2>/dev/null)"
    if [ -e "$pci/iommu_group" ]; then
        g=$(readlink -f "$pci/iommu_group")
        echo "RVIOMMU-IOMMU-GROUP: ${g##*/}"
        echo "RVIOMMU-IOMMU-DOMAIN: $(cat "$g/type" 2>/dev/null || echo unknown)"
    else
        echo "RVIOMMU-IOMMU-GROUP: none"
        echo "RVIOMMU-IOMMU-DOMAIN: none"
    fi
    echo "RVIOMMU-DISK-BYTES: $(($(cat "/sys/block/$disk/size") * 512))"
    echo "RVIOMMU-CMD: dd if=/dev/$disk bs=1M | sha256sum"
    t0=$(cut -d' ' -f1 /proc/uptime)
    sum=$(set -o pipefail; dd if="/dev/$disk" bs=1M 2>/tmp/dd.err | sha256sum | cut -d' ' -f1)
    rc=$?
    t1=$(cut -d' ' -f1 /proc/uptime)
    cat /tmp/dd.err
    echo "RVIOMMU-CMD-RC: $rc"
    echo "RVIOMMU-SHA256: $sum"
    echo "RVIOMMU-READ-SECONDS: $(echo "$t1 $t0" | awk '{printf "%.2f", $1 - $2}')"
    [ $rc -eq 0 ] || fail "reading /dev/$disk failed (status $rc)"
    want=$(kparam sha256 || true)
    if [ -n "$want" ] && [ "$sum" != "$want" ]; then
        fail "sha256 mismatch: got $sum, expected $want"
    fi
else
    fail "no /dev/$disk after 10 s"
fi

echo "RVIOMMU-DMESG-BEGIN"
dmesg | grep -i -e DMAR -e iommu
echo "RVIOMMU-DMESG-END"
dmesg | grep -e 'DMAR: \[DMA Read' -e 'DMAR: \[DMA Write' -e 'DMAR: \[INTR-REMAP' \
             -e 'DMAR:.*[Ff]ault' -e 'dmar_fault' > /tmp/faults
while IFS= read -r l; do echo "RVIOMMU-DMAR-FAULT: $l"; done < /tmp/faults
[ ! -s /tmp/faults ] || fail "DMAR fault(s) reported: $(head -1 /tmp/faults)"
dmesg | grep -i -e 'I/O error' -e 'virtio_blk.*timeout' > /tmp/ioerr
[ ! -s /tmp/ioerr ] || fail "block I/O errors: $(head -1 /tmp/ioerr)"
pass
