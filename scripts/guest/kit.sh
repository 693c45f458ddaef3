#!/bin/bash
# Guest kit for the functional tests: everything a TCG guest needs to boot with
# -kernel/-initrd, built once and cached under $CACHE/guest.
#
#   scripts/guest/kit.sh [all]        kernel, busybox, firmware, disk image, default initramfs
#   scripts/guest/kit.sh --refresh    the same, but resolve the package versions again
#   scripts/guest/kit.sh env          print the kit's manifest ($CACHE/guest/kit.env)
#   scripts/guest/kit.sh arm64 [env] [--refresh]
#                                     the arm64 kit instead ($CACHE/guest/kit-arm64.env), for
#                                     -M virt guests (tests/functional/aarch64/test_smmu_dma.py)
#
# What it makes (paths are recorded in $CACHE/guest/kit.env, KEY=VALUE lines):
#   - Debian trixie's newest linux-image-6.12.*-amd64 (resolved from the index through the
#     linux-image-amd64 metapackage; not pinned): vmlinuz + the modules tree with a modules.dep.
#   - busybox from trixie's busybox-static (static binary, for the initramfs).
#   - a firmware directory for QEMU's -L: bios-256k.bin (seabios) and the x86 option ROMs
#     (also linked, with the iPXE ROMs, from $CACHE/firmware: our build's default firmware path)
#     (linuxboot_dma.bin, kvmvapic.bin, ...; qemu-system-data), which the +ds source lacks.
#   - a raw disk image of deterministic content and its sha256.
#   - iPXE's option ROMs from trixie's ipxe-qemu (efi-virtio.rom, ...), in a directory of their
#     own for a second -L: QEMU's default romfile of a NIC, for tests that keep upstream's
#     command lines (test_upstream_intel_iommu.py; the others pass romfile=).
#   - the initramfs of the virtio-blk DMA test (tests/guest/dma-read.sh), made by
#     scripts/guest/mkinitramfs.sh, which tests also call for their own /init bodies.
#
# The arm64 kit is the part of that an arm64 guest booted from a device tree needs, all
# under $CACHE/guest/arm64 (its own apt lists, versions.env, .deb files, kernel, busybox,
# initramfs): trixie's linux-image-6.12.*-arm64 (vmlinuz and modules in one package, through
# linux-image-arm64) and busybox-static:arm64, plus the same disk image (shared, in
# $CACHE/guest/disk) and the DMA test's initramfs with nvme added.  No firmware: -kernel on
# -M virt needs none.  The arm64 busybox does not run here: the host's (the x86 kit's, else
# one on PATH) runs depmod, and the initramfs makes its applet links at boot.
#
# Package versions are resolved once and recorded in $CACHE/guest/versions.env (arm64:
# $CACHE/guest/arm64/versions.env); a re-run uses what is recorded and does no network
# access when every artefact exists.
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
ARCH=amd64
for a in "$@"; do
    case "$a" in
        --refresh) REFRESH=1 ;;
        all|env) WHAT=$a ;;
        arm64) ARCH=arm64 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) die "unknown argument '$a' (all, env, arm64, --refresh)" ;;
    esac
done
# Where the artefacts of the chosen architecture go (amd64: the historical places).
KIT_DIR=$GUEST APT_DIR=$GUEST/apt DEBS_DIR=$GUEST/debs
if [ "$ARCH" = arm64 ]; then
    KIT_DIR=$GUEST/arm64 APT_DIR=$GUEST/arm64/apt DEBS_DIR=$GUEST/arm64/debs
    VERSIONS=$KIT_DIR/versions.env
    KIT_ENV=$GUEST/kit-arm64.env
fi

if [ "$WHAT" = env ]; then
    [ -f "$KIT_ENV" ] || die "no kit yet: run scripts/guest/kit.sh$([ "$ARCH" = amd64 ] || echo " $ARCH")"
    cat "$KIT_ENV"; exit 0
fi

mkdir -p "$GUEST" "$KIT_DIR"
for t in apt-get apt-cache dpkg-deb python3 xz gzip cpio sha256sum; do
    command -v "$t" >/dev/null || die "host tool '$t' is missing"
done

# ---------------------------------------------------------------- private apt
GAPT=$APT_DIR APT_SUITE=$SUITE APT_DEBS=$DEBS_DIR
[ "$ARCH" = amd64 ] || APT_ARCH=$ARCH
. "$REPO/scripts/guest/apt.sh"

# Host tools of the disk images tests build at run time (test_upstream_intel_iommu.py:
# sfdisk, mke2fs -d; qemu-img comes with scripts/setup.sh's qemu-utils).
if [ "$ARCH" = amd64 ]; then
    step "host packages"
    host_packages e2fsprogs fdisk
fi

# ---------------------------------------------------------------- versions
# kernel_package ARCH: the linux-image-6.12.*-ARCH package (a name) of the private index.
kernel_package() {
    local a=$1 kmeta kpkg
    kmeta=$(candidate "linux-image-$a")
    [ -n "$kmeta" ] && [ "$kmeta" != "(none)" ] || die "no linux-image-$a in $SUITE"
    # The metapackage depends on exactly one linux-image-<abi>-ARCH (= version).
    kpkg=$(apt_cmd apt-cache show "linux-image-$a=$kmeta" \
            | awk -F': ' '/^Depends:/ && !n {print $2; n = 1}' | tr ',' '\n' \
            | sed -n "s/^ *\(linux-image-6\.12\.[^ ]*-$a\) .*/\1/p" | sed -n 1p)
    if [ -z "$kpkg" ]; then
        # Metapackage moved past 6.12: take the newest 6.12 image package of the index.
        kpkg=$(apt_cmd apt-cache pkgnames linux-image-6.12. \
                | grep -E "^linux-image-6\.12\.[0-9]+\+deb[0-9]+-$a\$" | sort -V | tail -1)
    fi
    [ -n "$kpkg" ] || die "no linux-image-6.12.*-$a package in $SUITE"
    echo "$kpkg"
}

# The arm64 kit needs only the kernel and busybox.
resolve_versions_arm64() {
    step "guest package versions ($SUITE, arm64)"
    if [ "$REFRESH" = 0 ] && [ -f "$VERSIONS" ]; then
        info "recorded in $VERSIONS (scripts/guest/kit.sh arm64 --refresh resolves them again)"
    else
        apt_update
        local kpkg kver bb
        kpkg=$(kernel_package arm64)
        kver=$(candidate "$kpkg"); bb=$(candidate busybox-static)
        for v in "$kver" "$bb"; do
            [ -n "$v" ] && [ "$v" != "(none)" ] || die "a guest package has no arm64 candidate in $SUITE"
        done
        cat > "$VERSIONS.tmp" <<EOF
# Resolved by scripts/guest/kit.sh arm64 from Debian $SUITE (arm64) on $(date -u +%Y-%m-%dT%H:%M:%SZ)
KERNEL_PKG=$kpkg
KERNEL_PKG_VERSION=$kver
BUSYBOX_PKG_VERSION=$bb
EOF
        mv "$VERSIONS.tmp" "$VERSIONS"
    fi
    # shellcheck disable=SC1090
    . "$VERSIONS"
    info "kernel   $KERNEL_PKG $KERNEL_PKG_VERSION"
    info "busybox  busybox-static:arm64 $BUSYBOX_PKG_VERSION"
}

resolve_versions() {
    step "guest package versions ($SUITE)"
    if [ "$REFRESH" = 0 ] && [ -f "$VERSIONS" ]; then
        info "recorded in $VERSIONS (scripts/guest/kit.sh --refresh resolves them again)"
    else
        apt_update
        local kpkg kver bb sb qd ix
        kpkg=$(kernel_package amd64)
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
    KDIR=$KIT_DIR/kernel/${KERNEL_PKG}_$KERNEL_PKG_VERSION
    if [ ! -f "$KDIR/.rviommu-done" ]; then
        local deb tmp
        info "downloading (about 110 MB amd64, 100 MB arm64)"
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
# The busybox that runs on this host (depmod): the kit's, except for a foreign-architecture
# kit, which sets HOST_BUSYBOX.
HOST_BUSYBOX=""
busybox_bin() {
    local b=${HOST_BUSYBOX:-$BUSYBOX}
    if [ -n "$b" ]; then "$b" "$@"; else busybox "$@"; fi
}
build_busybox() {
    step "busybox-static $BUSYBOX_PKG_VERSION ($ARCH)"
    local d=$KIT_DIR/busybox/${BUSYBOX_PKG_VERSION//:/_}
    if [ ! -f "$d/.rviommu-done" ]; then
        local deb tmp=$d.tmp
        download_deb busybox-static "$BUSYBOX_PKG_VERSION"; deb=$DEB
        rm -rf "$tmp"; mkdir -p "$tmp"
        dpkg-deb -x "$deb" "$tmp/root" || die "dpkg-deb -x $(basename "$deb") failed"
        local b
        b=$(ls "$tmp"/root/usr/bin/busybox "$tmp"/root/bin/busybox 2>/dev/null | sed -n 1p || true)
        [ -n "$b" ] || die "no busybox binary in $(basename "$deb")"
        mv "$b" "$tmp/busybox"; rm -rf "$tmp/root"
        if [ "$ARCH" = amd64 ]; then
            "$tmp/busybox" true || die "the extracted busybox does not run on this host"
        else
            # Cannot run here: check the ELF header's e_machine (0xb7, little-endian: AArch64).
            [ "$(od -An -tx1 -j18 -N2 "$tmp/busybox" | tr -d ' \n')" = b700 ] \
                || die "the extracted busybox is not an AArch64 ELF binary"
        fi
        touch "$tmp/.rviommu-done"
        rm -rf "$d"; mv "$tmp" "$d"; rm -f "$deb"
    else
        info "cached in $d"
    fi
    BUSYBOX=$d/busybox
    if [ "$ARCH" = amd64 ]; then info "$("$BUSYBOX" 2>&1 | sed -n 1p || true)"
    else info "$BUSYBOX ($(stat -c %s "$BUSYBOX") bytes)"; fi
}

# For depmod of a foreign kernel: the x86 kit's busybox (depmod reads modules of any
# architecture), else one on PATH.
host_busybox() {
    step "host busybox (depmod)"
    HOST_BUSYBOX=$(sed -n 's/^BUSYBOX=//p' "$GUEST/kit.env" 2>/dev/null || true)
    if [ -z "$HOST_BUSYBOX" ] || ! "$HOST_BUSYBOX" true 2>/dev/null; then
        HOST_BUSYBOX=$(command -v busybox || true)
    fi
    [ -n "$HOST_BUSYBOX" ] || die "no busybox runs on this host: run scripts/guest/kit.sh (the x86 kit) first"
    info "$HOST_BUSYBOX"
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

# ---------------------------------------------------------------- default firmware path
# Our build is configured with --firmwarepath=$CACHE/firmware (scripts/setup.sh): links
# there to this kit's firmware and option ROMs let the binaries boot -M q35 (SeaBIOS,
# linuxboot_dma.bin for -kernel, the NICs' iPXE ROMs) without -L, and -M virt find
# Debian's AAVMF as edk2-aarch64-code.fd / edk2-arm-vars.fd, as a distribution's QEMU does,
# for instance when libvirt starts them.
link_default_firmware() {
    step "default firmware path $CACHE/firmware"
    local dir=$CACHE/firmware f
    mkdir -p "$dir"
    find "$dir" -maxdepth 1 -type l -delete
    for f in "$FIRMWARE"/*.bin "$IPXE_ROM_DIR"/*.rom; do
        ln -s "$f" "$dir/$(basename "$f")"
    done
    # UEFI for -M virt under the names of QEMU's own edk2 images (-bios edk2-aarch64-code.fd).
    local aavmf
    aavmf=$("$REPO/scripts/guest/edk2-aarch64.sh") || die "no AAVMF (scripts/guest/edk2-aarch64.sh)"
    ln -s "$aavmf/AAVMF_CODE.fd" "$dir/edk2-aarch64-code.fd"
    ln -s "$aavmf/AAVMF_VARS.fd" "$dir/edk2-arm-vars.fd"
    info "$(ls "$dir" | wc -l) links"
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
    INITRD_DMA=$KIT_DIR/initramfs/dma-read.cpio.gz
    # arm64 guests read an nvme disk too (tests/functional/aarch64/test_smmu_dma.py).
    local extra=""
    [ "$ARCH" = amd64 ] || extra=" nvme"
    "$REPO/scripts/guest/mkinitramfs.sh" --busybox "$BUSYBOX" --kmods "$KMODS" \
        --name dma-read --modules "$(cat "$REPO/tests/guest/dma-read.modules")$extra" \
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

write_env_arm64() {
    step "manifest $KIT_ENV"
    cat > "$KIT_ENV.tmp" <<EOF
# Written by scripts/guest/kit.sh arm64; read by tests/functional/rviommu_kit.py
# (Kit.load(arch='arm64')).  DISK is the x86 kit's image (the same file).
ARCH=arm64
KIT_DIR=$KIT_DIR
KERNEL_PKG=$KERNEL_PKG
KERNEL_PKG_VERSION=$KERNEL_PKG_VERSION
KERNEL_RELEASE=$KREL
KERNEL=$VMLINUZ
KERNEL_MODULES=$KMODS
BUSYBOX=$BUSYBOX
BUSYBOX_PKG_VERSION=$BUSYBOX_PKG_VERSION
DISK=$DISK
DISK_SHA256=$DISK_SHA256
DISK_MIB=$DISK_MIB
INITRD_DMA=$INITRD_DMA
MKINITRAMFS=$REPO/scripts/guest/mkinitramfs.sh
EOF
    if cmp -s "$KIT_ENV.tmp" "$KIT_ENV"; then rm -f "$KIT_ENV.tmp"; info "unchanged"
    else mv "$KIT_ENV.tmp" "$KIT_ENV"; info "written"; fi
}

if [ "$ARCH" = arm64 ]; then
    resolve_versions_arm64
    host_busybox
    build_busybox
    build_kernel
    build_disk
    build_initramfs
    write_env_arm64
else
    resolve_versions
    build_busybox
    build_kernel
    build_firmware
    build_ipxe_roms
    link_default_firmware
    build_disk
    build_initramfs
    write_env
fi
step "done"
