# /init body (busybox ash, sourced by the /init of scripts/guest/mkinitramfs.sh): read the
# whole disk again and again, each time from the device (the page cache dropped first), so
# that a host can stop, save, restore or migrate the machine in between and see the guest
# carry on with its DMA through the IOMMU.
#
# Kernel parameters: rviommu.disk=NAME (default vda), rviommu.sha256=HEX (expected digest of
# every read: a mismatch is a failure), rviommu.rounds=N (default 10),
# rviommu.round_pause=SECONDS between rounds (default 2).
# Console lines (besides the /init markers):
#   RVIOMMU-PCI-DEVICE: <bdf> <vendor>:<device>    the disk's PCI function
#   RVIOMMU-IOMMU-GROUP: <n> | none
#   RVIOMMU-IOMMU-DOMAIN: <type> | none           DMA, DMA-FQ, identity, ... (sysfs group type)
#   RVIOMMU-IOMMU: <name> <file>=<value> ...      each /sys/class/iommu entry (VT-d: cap, ecap)
#   RVIOMMU-ROUND: <n> <sha256> <sectors read from the device> <IOMMU fault lines in dmesg>
# After the last round the verdict: a failure for any wrong digest, a round whose sectors
# fell short of the disk (served from a cache), an IOMMU fault or a block I/O error.

disk=$(kparam disk || echo vda)
rounds=$(kparam rounds || echo 10)
pause=$(kparam round_pause || echo 2)
want=$(kparam sha256 || true)

n=0
while [ ! -b "/dev/$disk" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
[ -b "/dev/$disk" ] || { fail "no /dev/$disk after 10 s"; return; }

pci=$(readlink -f "/sys/block/$disk/device")
while [ -n "$pci" ] && [ ! -e "$pci/config" ]; do pci=${pci%/*}; done
echo "RVIOMMU-PCI-DEVICE: ${pci##*/} $(cat "$pci/vendor" 2>/dev/null):$(cat "$pci/device" 2>/dev/null)"
if [ -e "$pci/iommu_group" ]; then
    g=$(readlink -f "$pci/iommu_group")
    echo "RVIOMMU-IOMMU-GROUP: ${g##*/}"
    echo "RVIOMMU-IOMMU-DOMAIN: $(cat "$g/type" 2>/dev/null || echo unknown)"
else
    echo "RVIOMMU-IOMMU-GROUP: none"
    echo "RVIOMMU-IOMMU-DOMAIN: none"
fi
for u in /sys/class/iommu/*; do
    [ -e "$u" ] || continue
    line="RVIOMMU-IOMMU: ${u##*/}"
    for f in "$u"/intel-iommu/cap "$u"/intel-iommu/ecap; do
        [ -e "$f" ] && line="$line ${f##*/}=$(cat "$f")"
    done
    echo "$line"
done

sectors=$(cat "/sys/block/$disk/size")
# Lines of the VT-d and SMMUv3 drivers that report a translation fault or a broken queue.
faults() {
    dmesg | grep -c -e 'DMAR: \[DMA' -e 'DMAR: \[INTR-REMAP' -e 'DMAR:.*[Ff]ault' \
                    -e 'arm-smmu-v3.*event 0x' -e 'arm-smmu-v3.*CMD_SYNC timeout' \
                    -e 'arm-smmu-v3.*GERROR' -e 'arm-smmu-v3.*CMDQ error'
}
i=1
while [ $i -le "$rounds" ]; do
    echo 3 > /proc/sys/vm/drop_caches
    before=$(awk '{ print $3 }' "/sys/block/$disk/stat")
    sum=$(dd if="/dev/$disk" bs=1M 2>/dev/null | sha256sum | cut -d' ' -f1)
    after=$(awk '{ print $3 }' "/sys/block/$disk/stat")
    echo "RVIOMMU-ROUND: $i $sum $((after - before)) $(faults)"
    [ -z "$want" ] || [ "$sum" = "$want" ] || fail "round $i: sha256 $sum, expected $want"
    [ $((after - before)) -ge "$sectors" ] \
        || fail "round $i read $((after - before)) sectors from the device, the disk has $sectors"
    i=$((i + 1))
    [ $i -gt "$rounds" ] || sleep "$pause"
done

[ "$(faults)" -eq 0 ] || fail "IOMMU fault(s) reported: $(dmesg | grep -e DMAR -e arm-smmu-v3 | tail -1)"
dmesg | grep -i -e 'I/O error' -e 'virtio_blk.*timeout' > /tmp/ioerr
[ ! -s /tmp/ioerr ] || fail "block I/O errors: $(head -1 /tmp/ioerr)"
pass
