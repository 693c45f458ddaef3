#!/bin/bash
# UEFI firmware for -M virt (aarch64): Debian trixie's qemu-efi-aarch64 (AAVMF), which
# QEMU 10.2.2's bios-tables-test boots for its virt cases (it expects
# pc-bios/edk2-aarch64-code.fd and pc-bios/edk2-arm-vars.fd, which the +ds source lacks).
#
#   scripts/guest/edk2-aarch64.sh      prints the directory holding AAVMF_CODE.fd and
#                                      AAVMF_VARS.fd (64 MiB flash images)
#
# Cached under $CACHE/guest/edk2-aarch64/<version>; the version is resolved once from the
# kit's private apt lists (scripts/guest/apt.sh) and recorded, so a re-run does no network
# access. Progress goes to stderr.
. "$(dirname "$0")/../common.sh"

GUEST=$CACHE/guest
GAPT=$GUEST/apt APT_SUITE=trixie APT_DEBS=$GUEST/debs
. "$REPO/scripts/guest/apt.sh"

exec 3>&1 1>&2
recorded=$GUEST/edk2-aarch64/version
ver=$(cat "$recorded" 2>/dev/null || true)
if [ -z "$ver" ]; then
    step "qemu-efi-aarch64 version (trixie)"
    apt_update
    ver=$(candidate qemu-efi-aarch64)
    [ -n "$ver" ] && [ "$ver" != "(none)" ] || die "no qemu-efi-aarch64 in trixie"
    mkdir -p "$GUEST/edk2-aarch64"
    echo "$ver" > "$recorded"
fi
dir=$GUEST/edk2-aarch64/${ver//:/_}
if [ ! -f "$dir/AAVMF_CODE.fd" ] || [ ! -f "$dir/AAVMF_VARS.fd" ]; then
    step "qemu-efi-aarch64 $ver"
    download_deb qemu-efi-aarch64 "$ver"
    tmp=$(mktemp -d)
    dpkg-deb -x "$DEB" "$tmp" || { rm -rf "$tmp"; die "dpkg-deb -x $(basename "$DEB") failed"; }
    mkdir -p "$dir"
    for f in AAVMF_CODE.fd AAVMF_VARS.fd; do
        # The package's AAVMF files may be links (to the no-secboot variants).
        cp -L "$tmp/usr/share/AAVMF/$f" "$dir/$f" || { rm -rf "$tmp"; die "no $f in the package"; }
    done
    rm -rf "$tmp"
    info "$(du -sh "$dir" | cut -f1) in $dir"
fi
echo "$dir" >&3
