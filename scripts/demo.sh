#!/bin/bash
# The main job: boot the test guest on our QEMU with the Rust intel-iommu and
# show the IOMMU at work: the guest's DMAR lines and the checksum of a disk
# whose every block came in by DMA through the IOMMU's page tables.
#
#   scripts/demo.sh [extra kernel parameters, e.g. iommu.strict=1 or iommu=pt]
. "$(dirname "$0")/common.sh"

QEMU=$BUILD_RS/qemu-system-x86_64
KIT_ENV=$CACHE/guest/kit.env
[ -x "$QEMU" ] || die "no QEMU at $QEMU: run scripts/setup.sh"
[ -f "$KIT_ENV" ] || die "no guest kit: run scripts/guest/kit.sh"
# shellcheck disable=SC1090
. "$KIT_ENV"

step "main job: Debian $KERNEL_RELEASE on q35 + Rust intel-iommu,x-scalable-mode=modern (TCG)"
log=$CACHE/demo-console.log
cmd=("$QEMU" -L "$FIRMWARE_DIR" -machine q35 -accel tcg -cpu max -m 512M -smp 2
     -nodefaults -display none -serial stdio -no-reboot
     -device intel-iommu,x-scalable-mode=modern
     -drive "if=none,id=disk0,file=$DISK,format=raw,readonly=on"
     -device "virtio-blk-pci,drive=disk0,iommu_platform=on,disable-legacy=on"
     -kernel "$KERNEL" -initrd "$INITRD_DMA"
     -append "console=ttyS0 panic=-1 no_timer_check intel_iommu=on,sm_on rviommu.sha256=$DISK_SHA256 $*")
info "${cmd[*]}"
t0=$(date +%s.%N)
timeout 300 "${cmd[@]}" > "$log" 2>&1 || true
t1=$(date +%s.%N)
info "guest ran $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s; full console log: $log"

echo
echo "--- the guest's DMAR/IOMMU lines ---"
sed -n '/RVIOMMU-DMESG-BEGIN/,/RVIOMMU-DMESG-END/p' "$log" | grep -v "RVIOMMU-DMESG" \
    | grep -v "Command line" | sed 's/^/  /'
echo "--- the disk, read by the guest through the IOMMU ---"
grep -E "^RVIOMMU-(PCI-DEVICE|IOMMU-DOMAIN|DISK-BYTES|SHA256|READ-SECONDS|DMAR-FAULT)" "$log" | sed 's/^/  /'
echo "  image sha256 on the host: $DISK_SHA256"
echo

got=$(sed -n 's/^RVIOMMU-SHA256: //p' "$log" | tr -d '\r' | head -1)
result=$(sed -n 's/^RVIOMMU-TEST-RESULT: //p' "$log" | tr -d '\r' | head -1)
[ -n "$result" ] || die "the guest reported no result (see $log)"
[ "$got" = "$DISK_SHA256" ] || die "checksum mismatch: guest read $got"
case "$result" in
    PASS*) step "main job passed: checksums match, DMA remapping enabled, no DMAR fault" ;;
    *) die "guest reported: $result" ;;
esac
