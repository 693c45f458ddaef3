#!/bin/bash
# Install a build's system emulators, with their firmware and docs, under one prefix
# (`make install PREFIX=...`):
#
#   scripts/install.sh [--build DIR] PREFIX
#
#   PREFIX/bin/qemu-system-x86_64, qemu-system-aarch64
#   PREFIX/share/qemu/           keymaps, trace events (QEMU's own `meson install`), and a
#                                copy of the firmware in $CACHE/firmware (scripts/guest/kit.sh
#                                links it there): SeaBIOS, the x86 option ROMs, iPXE,
#                                and edk2-aarch64-code.fd, edk2-arm-vars.fd: UEFI for -M virt
#                                (Debian's AAVMF, scripts/guest/edk2-aarch64.sh), under the
#                                names QEMU's own `make install` gives its edk2 images
#   PREFIX/share/qemu/firmware/60-edk2-aarch64.json   their firmware descriptor (QEMU's
#                                docs/interop/firmware.json), naming them by absolute path:
#                                libvirt selects it for <os firmware='efi'> once linked into
#                                /etc/qemu/firmware or ~/.config/qemu/firmware
#   PREFIX/share/doc/rviommu/    README.md and docs/rviommu/*.rst
#   PREFIX/share/icons, applications   (QEMU's own)
#
# --build: the build directory (default: our build, $CACHE/rs/build; $CACHE/ref/build
# installs the reference build with the C devices).  It must be built already (`make`);
# nothing is compiled here except QEMU's generated trace-events-all.
#
# QEMU finds its data relative to its binary (it is configured with prefix /usr/local,
# and rebases every path under that prefix on the directory it runs from), so PREFIX can
# be any directory, and the tree can be moved (all but the descriptor's paths).  The
# firmware is copied, not linked: the installation does not depend on the cache.  The build's default firmware path
# ($CACHE/firmware, absolute) is searched first, then PREFIX/share/qemu.
. "$(dirname "$0")/common.sh"

BUILD=$BUILD_RS
PREFIX=""
while [ $# -gt 0 ]; do
    case "$1" in
        --build) BUILD=$2; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        -*) die "unknown option '$1' (see --help)" ;;
        *) [ -z "$PREFIX" ] || die "one PREFIX only"; PREFIX=$1; shift ;;
    esac
done
[ -n "$PREFIX" ] || die "usage: scripts/install.sh [--build DIR] PREFIX"
case "$PREFIX" in /*) ;; *) PREFIX=$(pwd)/$PREFIX ;; esac

step "install $BUILD into $PREFIX"
for t in x86_64 aarch64; do
    [ -x "$BUILD/qemu-system-$t" ] || die "no $BUILD/qemu-system-$t: build it first (make)"
done
ls "$CACHE"/firmware/bios-256k.bin >/dev/null 2>&1 \
    || die "no firmware in $CACHE/firmware: run scripts/guest/kit.sh (make kit) first"
meson=$BUILD/pyvenv/bin/meson
[ -x "$meson" ] || meson=$(command -v meson) || die "no meson"
# The build's configured prefix: meson installs below it; moved to PREFIX afterwards.
conf_prefix=$("$meson" introspect --buildoptions "$BUILD" \
    | python3 -c 'import json, sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))') \
    || die "cannot read the prefix of $BUILD"
ninja -C "$BUILD" trace/trace-events-all >/dev/null || die "ninja trace/trace-events-all failed"

stage=$(mktemp -d "${TMPDIR:-/tmp}/rviommu-install.XXXXXX")
"$meson" install -C "$BUILD" --no-rebuild --quiet --destdir "$stage" >"$stage.log" 2>&1 \
    || { tail -20 "$stage.log"; rm -f "$stage.log"; die "meson install failed"; }
rm -f "$stage.log"
[ -x "$stage$conf_prefix/bin/qemu-system-x86_64" ] || die "meson installed no qemu-system-x86_64"
mkdir -p "$PREFIX"
cp -a "$stage$conf_prefix/." "$PREFIX/"
info "QEMU's files: $(cd "$stage$conf_prefix" && find . -type f | wc -l)"

fw=$PREFIX/share/qemu
mkdir -p "$fw"
n=0
for f in "$CACHE"/firmware/*; do
    [ -e "$f" ] || continue   # a dangling link: the kit's file is gone
    cp -L "$f" "$fw/$(basename "$f")"; n=$((n + 1))
done
info "firmware: $n files copied from $CACHE/firmware"
for f in edk2-aarch64-code.fd edk2-arm-vars.fd; do
    [ -e "$fw/$f" ] || die "no $f in $CACHE/firmware: run scripts/guest/kit.sh (make kit)"
done
mkdir -p "$fw/firmware"
cat > "$fw/firmware/60-edk2-aarch64.json" <<EOF
{
    "description": "UEFI firmware for aarch64 (Debian's AAVMF)",
    "interface-types": [ "uefi" ],
    "mapping": {
        "device": "flash",
        "executable": { "filename": "$fw/edk2-aarch64-code.fd", "format": "raw" },
        "nvram-template": { "filename": "$fw/edk2-arm-vars.fd", "format": "raw" }
    },
    "targets": [ { "architecture": "aarch64", "machines": [ "virt-*" ] } ],
    "features": [ ],
    "tags": [ ]
}
EOF
info "UEFI for aarch64: descriptor $fw/firmware/60-edk2-aarch64.json"

doc=$PREFIX/share/doc/rviommu
mkdir -p "$doc"
cp "$REPO/README.md" "$REPO"/docs/rviommu/*.rst "$doc/"
info "docs: $(ls "$doc" | wc -l) files in $doc"

# The installed binaries must start from there, with the prefix's data.
for t in x86_64 aarch64; do
    m=q35; [ $t = x86_64 ] || m=virt
    echo '{"execute":"qmp_capabilities"} {"execute":"quit"}' \
        | "$PREFIX/bin/qemu-system-$t" -M $m -accel qtest -nodefaults -display none -qmp stdio \
            >/dev/null 2>"$stage/err" \
        || { cat "$stage/err"; die "the installed qemu-system-$t does not start"; }
done
rm -rf "$stage"
info "$("$PREFIX/bin/qemu-system-x86_64" --version | sed -n 1p)"
step "installed"
