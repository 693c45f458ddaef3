# /init body (busybox ash, sourced by the /init of scripts/guest/mkinitramfs.sh):
# read the whole virtio-blk disk, i.e. let the device DMA every sector into guest memory
# through whatever the IOMMU set up, and look for DMAR faults.
#
# Kernel parameters: rviommu.disk=NAME (default vda; nvme0n1 with nvme_core.multipath=N),
# rviommu.sha256=HEX (expected digest; if given, a mismatch is a failure in the guest too).
# Console lines (besides the /init markers):
#   RVIOMMU-PCI-DEVICE: <bdf> <vendor>:<device>    the disk's PCI function
#   RVIOMMU-IOMMU-GROUP: <n> | none
#   RVIOMMU-IOMMU-DOMAIN: <type> | none           DMA, DMA-FQ, identity, ... (sysfs group type)
#   RVIOMMU-DISK-BYTES: <n>
#   RVIOMMU-SHA256: <hex>
#   RVIOMMU-READ-SECONDS: <s>
#   RVIOMMU-DMESG-BEGIN / -END                    `dmesg | grep -i -e DMAR -e iommu` between
#   RVIOMMU-DMAR-FAULT: <line>                    each dmesg line that reports a DMAR fault
#   RVIOMMU-IRQ: <bdf> <count> <chip> <name>      each interrupt of the disk's and the NIC's
#                                                 function after the traffic (/proc/interrupts;
#                                                 the chip is IR-PCI-MSI* when remapped), and
#                                                 with IO-APIC for <bdf>, the I/O APIC's ones
#
# Network traffic over a second PCI device (the first interface with a device behind it:
# e1000e or virtio-net), when rviommu.net_rx_port=PORT is given.  The interface gets
# 10.0.2.15/24 on QEMU's user network, where the host is 10.0.2.2, and is brought up
# before the disk is read (so that the link comes up meanwhile); after the read:
#   rx: `nc 10.0.2.2 PORT` receives a blob from the host; its sha256 must equal
#       rviommu.net_rx_sha256=HEX;
#   tx: the first rviommu.net_tx_mib=N MiB (default 4) of the disk (copied to /tmp) go
#       to `nc 10.0.2.2 rviommu.net_tx_port`; the host answers "<sha256> <bytes>" of
#       what it received, which must be rviommu.net_tx_sha256=HEX and N MiB.
# Each transfer may take rviommu.net_timeout=SECONDS (default 60).
# Console lines:
#   RVIOMMU-NET-IFACE: <name> driver=<driver>
#   RVIOMMU-NET-PCI-DEVICE: <bdf> <vendor>:<device>
#   RVIOMMU-NET-IOMMU-GROUP: <n> | none
#   RVIOMMU-NET-IOMMU-DOMAIN: <type> | none
#   RVIOMMU-NET-RX-BYTES: <n>
#   RVIOMMU-NET-RX-SHA256: <hex>
#   RVIOMMU-NET-RX-SECONDS: <s>
#   RVIOMMU-NET-TX-ACK: <sha256> <bytes>           the host's answer
#   RVIOMMU-NET-TX-SECONDS: <s>

uptime_s() { cut -d' ' -f1 /proc/uptime; }
elapsed() { echo "$2 $1" | awk '{printf "%.2f", $1 - $2}'; }

# iommu_info PREFIX SYSFS-PCI-DIR: the function's IOMMU group and default domain type.
iommu_info() {
    if [ -e "$2/iommu_group" ]; then
        g=$(readlink -f "$2/iommu_group")
        echo "RVIOMMU-${1}IOMMU-GROUP: ${g##*/}"
        echo "RVIOMMU-${1}IOMMU-DOMAIN: $(cat "$g/type" 2>/dev/null || echo unknown)"
    else
        echo "RVIOMMU-${1}IOMMU-GROUP: none"
        echo "RVIOMMU-${1}IOMMU-DOMAIN: none"
    fi
}

# The NIC: find it, report its IOMMU group, configure and bring it up.  Sets $ifc.
net_setup() {
    ifc="" n=0
    while [ -z "$ifc" ] && [ $n -lt 100 ]; do
        for i in /sys/class/net/*; do
            [ -e "$i/device" ] && { ifc=${i##*/}; break; }
        done
        [ -n "$ifc" ] || { sleep 0.1; n=$((n + 1)); }
    done
    [ -n "$ifc" ] || { fail "no network interface after 10 s"; return 1; }
    dev=$(readlink -f "/sys/class/net/$ifc/device")
    drv=$(readlink "$dev/driver"); drv=${drv##*/}
    # virtio-net's netdev hangs off the virtio device, whose parent is the PCI function.
    [ -e "$dev/config" ] || dev=${dev%/*}
    echo "RVIOMMU-NET-IFACE: $ifc driver=$drv"
    echo "RVIOMMU-NET-PCI-DEVICE: ${dev##*/} $(cat "$dev/vendor" 2>/dev/null):$(cat "$dev/device" 2>/dev/null)"
    iommu_info NET- "$dev"
    check ip addr add 10.0.2.15/24 dev "$ifc" && check ip link set "$ifc" up
}

net_traffic() {
    n=0
    while [ "$(cat "/sys/class/net/$ifc/carrier" 2>/dev/null)" != 1 ] && [ $n -lt 100 ]; do
        sleep 0.1; n=$((n + 1))
    done
    [ "$(cat "/sys/class/net/$ifc/carrier" 2>/dev/null)" = 1 ] \
        || { fail "no carrier on $ifc after 10 s"; return; }

    limit=$(kparam net_timeout || echo 60)
    rx_port=$(kparam net_rx_port)
    echo "RVIOMMU-CMD: nc 10.0.2.2 $rx_port > /tmp/rx"
    t0=$(uptime_s)
    timeout "$limit" nc -w 10 10.0.2.2 "$rx_port" < /dev/null > /tmp/rx
    rc=$?
    t1=$(uptime_s)
    echo "RVIOMMU-CMD-RC: $rc"
    sum=$(sha256sum /tmp/rx | cut -d' ' -f1)
    echo "RVIOMMU-NET-RX-BYTES: $(wc -c < /tmp/rx)"
    echo "RVIOMMU-NET-RX-SHA256: $sum"
    echo "RVIOMMU-NET-RX-SECONDS: $(elapsed "$t0" "$t1")"
    rm -f /tmp/rx
    [ $rc -eq 0 ] || fail "receiving from 10.0.2.2:$rx_port failed (status $rc)"
    want=$(kparam net_rx_sha256 || true)
    [ -z "$want" ] || [ "$sum" = "$want" ] \
        || fail "net rx sha256 mismatch: got $sum, expected $want"

    tx_port=$(kparam net_tx_port) || { fail "rviommu.net_tx_port= missing"; return; }
    mib=$(kparam net_tx_mib || echo 4)
    # From a file: nc reads a pipe in small pieces, which took 3x as long under TCG.
    check dd if="/dev/$disk" of=/tmp/tx bs=1M count="$mib" 2>/dev/null
    echo "RVIOMMU-CMD: nc 10.0.2.2 $tx_port < /tmp/tx"
    t0=$(uptime_s)
    ack=$(timeout "$limit" nc -w 10 10.0.2.2 "$tx_port" < /tmp/tx)
    rc=$?
    t1=$(uptime_s)
    echo "RVIOMMU-CMD-RC: $rc"
    echo "RVIOMMU-NET-TX-ACK: $ack"
    echo "RVIOMMU-NET-TX-SECONDS: $(elapsed "$t0" "$t1")"
    [ $rc -eq 0 ] || fail "sending to 10.0.2.2:$tx_port failed (status $rc)"
    want="$(kparam net_tx_sha256 || echo '?') $((mib * 1048576))"
    [ "$ack" = "$want" ] || fail "the host received other data: '$ack', expected '$want'"
    rm -f /tmp/tx
}

disk=$(kparam disk || echo vda)
net=""
if kparam net_rx_port > /dev/null; then
    net_setup && net=1
fi
n=0
while [ ! -b "/dev/$disk" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done

if [ -b "/dev/$disk" ]; then
    # The PCI function: the nearest ancestor with a config space (virtio-blk's disk hangs
    # off virtioN below it, an nvme namespace off nvme/nvmeN).
    pci=$(readlink -f "/sys/block/$disk/device")
    while [ -n "$pci" ] && [ ! -e "$pci/config" ]; do pci=${pci%/*}; done
    echo "RVIOMMU-PCI-DEVICE: ${pci##*/} $(cat "$pci/vendor" 2>/dev/null):$(cat "$pci/device" 2>/dev/null)"
    iommu_info "" "$pci"
    echo "RVIOMMU-DISK-BYTES: $(($(cat "/sys/block/$disk/size") * 512))"
    echo "RVIOMMU-CMD: dd if=/dev/$disk bs=1M | sha256sum"
    t0=$(uptime_s)
    sum=$(set -o pipefail; dd if="/dev/$disk" bs=1M 2>/tmp/dd.err | sha256sum | cut -d' ' -f1)
    rc=$?
    t1=$(uptime_s)
    cat /tmp/dd.err
    echo "RVIOMMU-CMD-RC: $rc"
    echo "RVIOMMU-SHA256: $sum"
    echo "RVIOMMU-READ-SECONDS: $(elapsed "$t0" "$t1")"
    [ $rc -eq 0 ] || fail "reading /dev/$disk failed (status $rc)"
    want=$(kparam sha256 || true)
    if [ -n "$want" ] && [ "$sum" != "$want" ]; then
        fail "sha256 mismatch: got $sum, expected $want"
    fi
else
    fail "no /dev/$disk after 10 s"
fi

if [ -n "$net" ]; then
    net_traffic
fi

# irq_info BDF: the function's interrupts, counts summed over the CPUs
irq_info() {
    awk -v bdf="$1" 'NR == 1 { n = NF; next }
        index($0, bdf) { s = 0; for (i = 2; i <= n + 1; i++) s += $i
                         print "RVIOMMU-IRQ: " bdf " " s " " $(n + 2) " " $NF }' /proc/interrupts
}
[ -z "$pci" ] || irq_info "${pci##*/}"
[ -z "$net" ] || irq_info "${dev##*/}"
irq_info IO-APIC

echo "RVIOMMU-DMESG-BEGIN"
dmesg | grep -i -e DMAR -e iommu
echo "RVIOMMU-DMESG-END"
dmesg | grep -e 'DMAR: \[DMA Read' -e 'DMAR: \[DMA Write' -e 'DMAR: \[INTR-REMAP' \
             -e 'DMAR:.*[Ff]ault' -e 'dmar_fault' > /tmp/faults
while IFS= read -r l; do echo "RVIOMMU-DMAR-FAULT: $l"; done < /tmp/faults
[ ! -s /tmp/faults ] || fail "DMAR fault(s) reported: $(head -1 /tmp/faults)"
dmesg | grep -i -e 'I/O error' -e 'virtio_blk.*timeout' > /tmp/ioerr
[ ! -s /tmp/ioerr ] || fail "block I/O errors: $(head -1 /tmp/ioerr)"
dmesg | grep -e 'NETDEV WATCHDOG' -e 'Hardware Unit Hang' > /tmp/neterr
[ ! -s /tmp/neterr ] || fail "network device errors: $(head -1 /tmp/neterr)"
pass
