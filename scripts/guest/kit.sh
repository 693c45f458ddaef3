#!/bin/bash
# Guest kit for the functional tests: everything a TCG guest needs to boot with
# -kernel/-initrd, built once and cached under $CACHE/guest.
#
#   scripts/guest/kit.sh [all]        kernel, busybox, firmware, disk image, default initramfs
#   scripts/guest/kit.sh --refresh    the same, but resolve the package versions again
#   scripts/guest/kit.sh env          print the kit's manifest ($CACHE/guest/kit.env)
#
# What it makes (paths are recorded in $CACHE/guest/kit.env, KEY=VALUE lines):
#   - Debian trixie's newest linux-image-6.12.*-amd64 (resolved from the index through the
#     linux-image-amd64 metapackage; not pinned): vmlinuz + the modules tree with a modules.dep.
#   - busybox from trixie's busybox-static (static binary, for the initramfs).
#   - a firmware directory for QEMU's -L: bios-256k.bin (seabios) and the x86 option ROMs
#     (linuxboot_dma.bin, kvmvapic.bin, ...; qemu-system-data), which the +ds source lacks.
#   - a raw disk image of deterministic content and its sha256.
#   - iPXE's option ROMs from trixie's ipxe-qemu (efi-virtio.rom, ...), in a directory of their
#     own for a second -L: QEMU's default romfile of a NIC, for tests that keep upstream's
#     command lines (test_upstream_intel_iommu.py; the others pass romfile=).
#   - the initramfs of the virtio-blk DMA test (tests/guest/dma-read.sh), made by
#     scripts/guest/mkinitramfs.sh, which tests also call for their own /init bodies.
#
# Package versions are resolved once and recorded in $CACHE/guest/versions.env; a re-run
# uses what is recorded and does no network access when every artefact exists.
. "$(dirname "$0")/../common.sh"

GUEST=$CACHE/guest
GAPT=$GUEST/apt
VERSIONS=$GUEST/versions.env
KIT_ENV=$GUEST/kit.env
DISK_MIB=${RVIOMMU_DISK_MIB:-16}
DISK_SEED=${RVIOMMU_DISK_SEED:-rviommu-disk-v1}
SUITE=trixie

REFRESH=0
WHAT=all
for a in "$@"; do
    case "$a" in
        --refresh) REFRESH=1 ;;
        all|env) WHAT=$a ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) die "unknown argument '$a' (all, env, --refresh)" ;;
    esac
done

if [ "$WHAT" = env ]; then
    [ -f "$KIT_ENV" ] || die "no kit yet: run scripts/guest/kit.sh"
    cat "$KIT_ENV"; exit 0
fi

mkdir -p "$GUEST"
for t in apt-get apt-cache dpkg-deb python3 xz gzip cpio sha256sum; do
    command -v "$t" >/dev/null || die "host tool '$t' is missing"
done

# ---------------------------------------------------------------- private apt
GAPT=$GUEST/apt APT_SUITE=$SUITE APT_DEBS=$GUEST/debs
. "$REPO/scripts/guest/apt.sh"

# Host tools of the disk images tests build at run time (test_upstream_intel_iommu.py:
# sfdisk, mke2fs -d; qemu-img comes with scripts/setup.sh's qemu-utils).
step "host packages"
host_packages e2fsprogs fdisk

# ---------------------------------------------------------------- versions
resolve_versions() {
    step "guest package versions ($SUITE)"
    if [ "$REFRESH" = 0 ] && [ -f "$VERSIONS" ]; then
        info "recorded in $VERSIONS (scripts/guest/kit.sh --refresh resolves them again)"
    else
        apt_update
        local kmeta kpkg kver bb sb qd ix
        kmeta=$(candidate linux-image-amd64)
        [ -n "$kmeta" ] && [ "$kmeta" != "(none)" ] || die "no linux-image-amd64 in $SUITE"
        # The metapackage depends on exactly one linux-image-<abi>-amd64 (= version).
        kpkg=$(apt_cmd apt-cache show "linux-image-amd64=$kmeta" \
                | awk -F': ' '/^Depends:/ && !n {print $2; n = 1}' | tr ',' '\n' \
                | sed -n 's/^ *\(linux-image-6\.12\.[^ ]*-amd64\) .*/\1/p' | sed -n 1p)
        if [ -z "$kpkg" ]; then
            # Metapackage moved past 6.12: take the newest 6.12 image package of the index.
            kpkg=$(apt_cmd apt-cache pkgnames linux-image-6.12. \
                    | grep -E '^linux-image-6\.12\.[0-9]+\+deb[0-9]+-amd64$' | sort -V | tail -1)
        fi
        [ -n "$kpkg" ] || die "no linux-image-6.12.*-amd64 package in $SUITE"
        kver=$(candidate "$kpkg")
        bb=$(candidate busybox-static); sb=$(candidate seabios); qd=$(candidate qemu-system-data)
        ix=$(candidate ipxe-qemu)
        for v in "$kver" "$bb" "$sb" "$qd" "$ix"; do
            [ -n "$v" ] && [ "$v" != "(none)" ] || die "a guest package has no candidate in $SUITE"
        done
        cat > "$VERSIONS.tmp" <<EOF
# Resolved by scripts/guest/kit.sh from Debian $SUITE on $(date -u +%Y-%m-%dT%H:%M:%SZ)
KERNEL_PKG=$kpkg
KERNEL_PKG_VERSION=$kver
BUSYBOX_PKG_VERSION=$bb
SEABIOS_PKG_VERSION=$sb
QEMU_DATA_PKG_VERSION=$qd
IPXE_PKG_VERSION=$ix
EOF
        mv "$VERSIONS.tmp" "$VERSIONS"
    fi
    # shellcheck disable=SC1090
    . "$VERSIONS"
    if [ -z "${IPXE_PKG_VERSION:-}" ]; then
        # Recorded before ipxe-qemu was part of the kit: resolve only that one.
        apt_update
        IPXE_PKG_VERSION=$(candidate ipxe-qemu)
        [ -n "$IPXE_PKG_VERSION" ] && [ "$IPXE_PKG_VERSION" != "(none)" ] || die "no ipxe-qemu in $SUITE"
        echo "IPXE_PKG_VERSION=$IPXE_PKG_VERSION" >> "$VERSIONS"
    fi
    info "kernel   $KERNEL_PKG $KERNEL_PKG_VERSION"
    info "busybox  busybox-static $BUSYBOX_PKG_VERSION"
    info "firmware seabios $SEABIOS_PKG_VERSION, qemu-system-data $QEMU_DATA_PKG_VERSION"
    info "ipxe     ipxe-qemu $IPXE_PKG_VERSION"
}

# ---------------------------------------------------------------- kernel
KDIR="" KREL="" VMLINUZ="" KMODS=""
build_kernel() {
    step "kernel $KERNEL_PKG $KERNEL_PKG_VERSION"
    KDIR=$GUEST/kernel/${KERNEL_PKG}_$KERNEL_PKG_VERSION
    if [ ! -f "$KDIR/.rviommu-done" ]; then
        local deb tmp
        info "downloading (about 110 MB)"
        download_deb "$KERNEL_PKG" "$KERNEL_PKG_VERSION"; deb=$DEB
        tmp=$KDIR.tmp; rm -rf "$tmp"; mkdir -p "$tmp"
        info "extracting $(basename "$deb")"
        dpkg-deb -x "$deb" "$tmp/root" || die "dpkg-deb -x $(basename "$deb") failed"
        local m
        m=$(ls -d "$tmp"/root/usr/lib/modules/*/ "$tmp"/root/lib/modules/*/ 2>/dev/null | sed -n 1p || true)
        [ -n "$m" ] || die "no modules directory in $(basename "$deb")"
        KREL=$(basename "$m")
        [ -f "$tmp/root/boot/vmlinuz-$KREL" ] || die "no /boot/vmlinuz-$KREL in $(basename "$deb")"
        mv "$tmp/root/boot/vmlinuz-$KREL" "$tmp/vmlinuz"
        mv "$tmp/root/boot/config-$KREL" "$tmp/config"
        mkdir -p "$tmp/lib/modules"
        mv "$m" "$tmp/lib/modules/$KREL"
        rm -rf "$tmp/root"
        # Debian's package has no modules.dep (its postinst runs depmod); busybox's depmod
        # reads the .ko.xz files and writes the (transitively closed) modules.dep.
        info "depmod (busybox, ~20 s)"
        busybox_bin depmod -b "$tmp" "$KREL" || die "depmod failed"
        [ -s "$tmp/lib/modules/$KREL/modules.dep" ] || die "depmod wrote no modules.dep"
        sha256sum "$deb" | awk '{print $1}' > "$tmp/deb.sha256"
        echo "$KREL" > "$tmp/release"
        touch "$tmp/.rviommu-done"
        rm -rf "$KDIR"; mv "$tmp" "$KDIR"
        rm -f "$deb"   # the extracted tree is the cache
    else
        info "cached in $KDIR"
    fi
    KREL=$(cat "$KDIR/release")
    VMLINUZ=$KDIR/vmlinuz
    KMODS=$KDIR/lib/modules/$KREL
    info "release $KREL; $(grep -c . "$KMODS/modules.dep") modules"
}

# ---------------------------------------------------------------- busybox
BUSYBOX=""
busybox_bin() { if [ -n "$BUSYBOX" ]; then "$BUSYBOX" "$@"; else busybox "$@"; fi; }
build_busybox() {
    step "busybox-static $BUSYBOX_PKG_VERSION"
    local d=$GUEST/busybox/${BUSYBOX_PKG_VERSION//:/_}
    if [ ! -f "$d/.rviommu-done" ]; then
        local deb tmp=$d.tmp
        download_deb busybox-static "$BUSYBOX_PKG_VERSION"; deb=$DEB
        rm -rf "$tmp"; mkdir -p "$tmp"
        dpkg-deb -x "$deb" "$tmp/root" || die "dpkg-deb -x $(basename "$deb") failed"
        local b
        b=$(ls "$tmp"/root/usr/bin/busybox "$tmp"/root/bin/busybox 2>/dev/null | sed -n 1p || true)
        [ -n "$b" ] || die "no busybox binary in $(basename "$deb")"
        mv "$b" "$tmp/busybox"; rm -rf "$tmp/root"
        "$tmp/busybox" true || die "the extracted busybox does not run on this host"
        touch "$tmp/.rviommu-done"
        rm -rf "$d"; mv "$tmp" "$d"; rm -f "$deb"
    else
        info "cached in $d"
    fi
    BUSYBOX=$d/busybox
    info "$("$BUSYBOX" 2>&1 | sed -n 1p || true)"
}

# ---------------------------------------------------------------- firmware
FIRMWARE=""
build_firmware() {
    step "firmware dir for -L (seabios $SEABIOS_PKG_VERSION, qemu-system-data $QEMU_DATA_PKG_VERSION)"
    FIRMWARE=$GUEST/firmware/seabios_${SEABIOS_PKG_VERSION}+qemu-data_${QEMU_DATA_PKG_VERSION//:/_}
    if [ ! -f "$FIRMWARE/.rviommu-done" ]; then
        local tmp=$FIRMWARE.tmp sdeb qdeb f
        download_deb seabios "$SEABIOS_PKG_VERSION"; sdeb=$DEB
        download_deb qemu-system-data "$QEMU_DATA_PKG_VERSION"; qdeb=$DEB
        rm -rf "$tmp"; mkdir -p "$tmp/x"
        dpkg-deb -x "$sdeb" "$tmp/x" && dpkg-deb -x "$qdeb" "$tmp/x" || die "dpkg-deb -x failed"
        cp -L "$tmp"/x/usr/share/seabios/*.bin "$tmp/" || die "no seabios images in $(basename "$sdeb")"
        for f in linuxboot.bin linuxboot_dma.bin kvmvapic.bin multiboot.bin multiboot_dma.bin pvh.bin; do
            [ -f "$tmp/x/usr/share/qemu/$f" ] || die "$f missing from $(basename "$qdeb")"
            cp "$tmp/x/usr/share/qemu/$f" "$tmp/"
        done
        rm -rf "$tmp/x"
        [ -f "$tmp/bios-256k.bin" ] || die "bios-256k.bin missing from $(basename "$sdeb")"
        (cd "$tmp" && sha256sum *.bin > SHA256SUMS)
        touch "$tmp/.rviommu-done"
        rm -rf "$FIRMWARE"; mv "$tmp" "$FIRMWARE"; rm -f "$sdeb" "$qdeb"
    else
        info "cached in $FIRMWARE"
    fi
    info "$(cd "$FIRMWARE" && ls *.bin | tr '\n' ' ')"
}

# ---------------------------------------------------------------- iPXE option ROMs
IPXE_ROM_DIR=""
build_ipxe_roms() {
    step "iPXE option ROMs (ipxe-qemu $IPXE_PKG_VERSION)"
    IPXE_ROM_DIR=$GUEST/ipxe/${IPXE_PKG_VERSION//:/_}
    if [ ! -f "$IPXE_ROM_DIR/.rviommu-done" ]; then
        local tmp=$IPXE_ROM_DIR.tmp deb
        download_deb ipxe-qemu "$IPXE_PKG_VERSION"; deb=$DEB
        rm -rf "$tmp"; mkdir -p "$tmp/x"
        dpkg-deb -x "$deb" "$tmp/x" || die "dpkg-deb -x $(basename "$deb") failed"
        cp -L "$tmp"/x/usr/share/qemu/*.rom "$tmp/" || die "no ROMs in $(basename "$deb")"
        rm -rf "$tmp/x"
        [ -f "$tmp/efi-virtio.rom" ] || die "efi-virtio.rom missing from $(basename "$deb")"
        (cd "$tmp" && sha256sum *.rom > SHA256SUMS)
        touch "$tmp/.rviommu-done"
        rm -rf "$IPXE_ROM_DIR"; mv "$tmp" "$IPXE_ROM_DIR"; rm -f "$deb"
    else
        info "cached in $IPXE_ROM_DIR"
    fi
    info "$(cd "$IPXE_ROM_DIR" && ls *.rom | tr '\n' ' ')"
}

# ---------------------------------------------------------------- disk image
DISK="" DISK_SHA256=""
build_disk() {
    step "disk image: ${DISK_MIB} MiB, seed '$DISK_SEED'"
    # Content: SHA-256 in counter mode, block i = sha256(seed ":" i) (32 bytes, i from 0).
    DISK=$GUEST/disk/disk-${DISK_MIB}M-${DISK_SEED}.raw
    if [ ! -f "$DISK.sha256" ] || [ ! -f "$DISK" ]; then
        mkdir -p "$GUEST/disk"
        python3 - "$DISK.tmp" "$DISK_MIB" "$DISK_SEED" <<'EOF' || die "generating the disk image failed"
import hashlib, sys
path, mib, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
with open(path, "wb") as f:
    blocks = mib * 1024 * 1024 // 32
    chunk = []
    for i in range(blocks):
        chunk.append(hashlib.sha256(seed + b":" + str(i).encode()).digest())
        if len(chunk) == 32768:
            f.write(b"".join(chunk)); chunk = []
    f.write(b"".join(chunk))
EOF
        sha256sum "$DISK.tmp" | awk '{print $1}' > "$DISK.sha256.tmp"
        mv "$DISK.tmp" "$DISK"; mv "$DISK.sha256.tmp" "$DISK.sha256"
    else
        info "cached in $DISK"
    fi
    DISK_SHA256=$(cat "$DISK.sha256")
    [ "$(stat -c %s "$DISK")" -eq $((DISK_MIB * 1024 * 1024)) ] || die "$DISK has the wrong size; delete it"
    info "sha256 $DISK_SHA256"
}

# ---------------------------------------------------------------- initramfs
INITRD_DMA=""
build_initramfs() {
    step "initramfs of the virtio-blk DMA test (tests/guest/dma-read.sh)"
    INITRD_DMA=$GUEST/initramfs/dma-read.cpio.gz
    "$REPO/scripts/guest/mkinitramfs.sh" --busybox "$BUSYBOX" --kmods "$KMODS" \
        --name dma-read --modules "$(cat "$REPO/tests/guest/dma-read.modules")" \
        --body "$REPO/tests/guest/dma-read.sh" --out "$INITRD_DMA" | sed 's/^/    /' \
        || die "mkinitramfs.sh failed"
}

write_env() {
    step "manifest $KIT_ENV"
    cat > "$KIT_ENV.tmp" <<EOF
# Written by scripts/guest/kit.sh; read by tests/functional/rviommu_kit.py.
KIT_DIR=$GUEST
KERNEL_PKG=$KERNEL_PKG
KERNEL_PKG_VERSION=$KERNEL_PKG_VERSION
KERNEL_RELEASE=$KREL
KERNEL=$VMLINUZ
KERNEL_MODULES=$KMODS
BUSYBOX=$BUSYBOX
BUSYBOX_PKG_VERSION=$BUSYBOX_PKG_VERSION
FIRMWARE_DIR=$FIRMWARE
IPXE_ROM_DIR=$IPXE_ROM_DIR
DISK=$DISK
DISK_SHA256=$DISK_SHA256
DISK_MIB=$DISK_MIB
INITRD_DMA=$INITRD_DMA
MKINITRAMFS=$REPO/scripts/guest/mkinitramfs.sh
EOF
    if cmp -s "$KIT_ENV.tmp" "$KIT_ENV"; then rm -f "$KIT_ENV.tmp"; info "unchanged"
    else mv "$KIT_ENV.tmp" "$KIT_ENV"; info "written"; fi
}

resolve_versions
build_busybox
build_kernel
build_firmware
build_ipxe_roms
build_disk
build_initramfs
write_env
step "done"
