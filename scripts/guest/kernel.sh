#!/bin/bash
# A guest kernel with iommufd (/dev/iommu), VFIO device cdevs (/dev/vfio/devices/vfioN)
# and KVM, built from Debian's linux-source package, for the nested (QEMU-in-QEMU) tests:
# Debian's own kernels have CONFIG_IOMMUFD and CONFIG_VFIO_DEVICE_CDEV unset.
#
#   scripts/guest/kernel.sh [build]     fetch, configure, build; a no-op when cached
#   scripts/guest/kernel.sh --refresh   the same, but resolve the source package version again
#   scripts/guest/kernel.sh env         print the manifest ($CACHE/guest/iommufd-kernel.env)
#   scripts/guest/kernel.sh key         print the cache key (no download when the version is recorded)
#
# Recipe: Debian sid's linux-source-7.2 (version resolved once, recorded in
# $CACHE/guest/iommufd-kernel/versions.env), `make x86_64_defconfig kvm_guest.config`, the
# fragment scripts/guest/iommufd.config merged over it, `make olddefconfig`, then a check that
# every line of the fragment holds in the final .config (fails if Kconfig dropped one), and
# `make bzImage` with $(nproc)+1 jobs under `nice -n 10`.  Everything is built in (no modules).
#
# Cached by content: key = source package version + sha256 of the fragment + RECIPE below.
# Output: $CACHE/guest/iommufd-kernel/<key>/{bzImage,config,release,build.log}; the build
# directory $CACHE/guest/iommufd-kernel/build/<version> (make O=) is kept, so a changed
# fragment rebuilds incrementally.  The manifest $CACHE/guest/iommufd-kernel.env
# (IOMMUFD_KERNEL=..., read by tests/functional/rviommu_kit.py) points at the last build.
# The build prints one progress line a minute; its full output is <key>/build.log.
. "$(dirname "$0")/../common.sh"

# Bump when the recipe changes in a way the fragment does not show (make targets, flags).
RECIPE=1
SRC_PKG=linux-source-7.2
SUITE=sid
FRAGMENT=$REPO/scripts/guest/iommufd.config

GUEST=$CACHE/guest
KROOT=$GUEST/iommufd-kernel
VERSIONS=$KROOT/versions.env
KERNEL_ENV=$GUEST/iommufd-kernel.env
GAPT=$GUEST/apt-$SUITE APT_SUITE=$SUITE APT_DEBS=$GUEST/debs
. "$REPO/scripts/guest/apt.sh"
# What building bzImage needs: objtool needs libelf; certs/extract-cert (the defconfig has
# SYSTEM_TRUSTED_KEYRING) needs OpenSSL's headers.  No BTF, so no dwarves (pahole).
HOST_PACKAGES="gcc make libc6-dev binutils bc flex bison libelf-dev libssl-dev xz-utils"

REFRESH=0
WHAT=build
for a in "$@"; do
    case "$a" in
        --refresh) REFRESH=1 ;;
        build|env|key) WHAT=$a ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) die "unknown argument '$a' (build, env, key, --refresh)" ;;
    esac
done

if [ "$WHAT" = env ]; then
    [ -f "$KERNEL_ENV" ] || die "no iommufd kernel yet: run scripts/guest/kernel.sh"
    cat "$KERNEL_ENV"; exit 0
fi
[ -f "$FRAGMENT" ] || die "no fragment $FRAGMENT"
mkdir -p "$KROOT"

# ---------------------------------------------------------------- version
resolve_version() {
    step "source package version ($SRC_PKG, Debian $SUITE)"
    if [ "$REFRESH" = 0 ] && [ -f "$VERSIONS" ]; then
        info "recorded in $VERSIONS (scripts/guest/kernel.sh --refresh resolves it again)"
    else
        apt_update
        local v
        v=$(candidate "$SRC_PKG")
        [ -n "$v" ] && [ "$v" != "(none)" ] || die "no $SRC_PKG in Debian $SUITE"
        cat > "$VERSIONS.tmp" <<EOF
# Resolved by scripts/guest/kernel.sh from Debian $SUITE on $(date -u +%Y-%m-%dT%H:%M:%SZ)
LINUX_SOURCE_PKG=$SRC_PKG
LINUX_SOURCE_VERSION=$v
EOF
        mv "$VERSIONS.tmp" "$VERSIONS"
    fi
    # shellcheck disable=SC1090
    . "$VERSIONS"
    [ "$LINUX_SOURCE_PKG" = "$SRC_PKG" ] \
        || die "$VERSIONS records $LINUX_SOURCE_PKG, this script wants $SRC_PKG: run with --refresh"
    info "$LINUX_SOURCE_PKG $LINUX_SOURCE_VERSION"
}

if [ "$WHAT" = key ]; then resolve_version >&2; else resolve_version; fi
FRAGMENT_SHA256=$(sha256sum < "$FRAGMENT" | cut -d' ' -f1)
VERSION_DIR=${LINUX_SOURCE_VERSION//[:~]/_}
KEY=$VERSION_DIR-$(printf 'source %s %s\nfragment %s\nrecipe %s\n' "$LINUX_SOURCE_PKG" \
        "$LINUX_SOURCE_VERSION" "$FRAGMENT_SHA256" "$RECIPE" | sha256sum | cut -c1-12)
OUT=$KROOT/$KEY
if [ "$WHAT" = key ]; then echo "$KEY"; exit 0; fi

write_env() {
    step "manifest $KERNEL_ENV"
    cat > "$KERNEL_ENV.tmp" <<EOF
# Written by scripts/guest/kernel.sh; read by tests/functional/rviommu_kit.py.
IOMMUFD_KERNEL=$OUT/bzImage
IOMMUFD_KERNEL_CONFIG=$OUT/config
IOMMUFD_KERNEL_RELEASE=$(cat "$OUT/release")
IOMMUFD_KERNEL_KEY=$KEY
IOMMUFD_KERNEL_SOURCE=$LINUX_SOURCE_PKG $LINUX_SOURCE_VERSION
IOMMUFD_KERNEL_FRAGMENT_SHA256=$FRAGMENT_SHA256
EOF
    if cmp -s "$KERNEL_ENV.tmp" "$KERNEL_ENV"; then rm -f "$KERNEL_ENV.tmp"; info "unchanged"
    else mv "$KERNEL_ENV.tmp" "$KERNEL_ENV"; info "written"; fi
}

step "iommufd kernel $KEY"
if [ -f "$OUT/.rviommu-done" ] && [ -f "$OUT/bzImage" ]; then
    info "cached in $OUT ($(cat "$OUT/release"), $(du -k "$OUT/bzImage" | cut -f1) KiB)"
    write_env
    step "done"
    exit 0
fi
info "not built yet; the build log will be $OUT/build.log"
# One build at a time (they would share the build directory).
exec 9>"$KROOT/.lock"
flock -n 9 || die "another scripts/guest/kernel.sh is running (lock $KROOT/.lock)"

step "host packages"
host_packages $HOST_PACKAGES

# ---------------------------------------------------------------- source
SRC_TOP=$KROOT/src/$VERSION_DIR
SRC=""
unpack_source() {
    step "source $LINUX_SOURCE_PKG $LINUX_SOURCE_VERSION"
    if [ ! -f "$SRC_TOP/.rviommu-done" ]; then
        local tmp=$SRC_TOP.tmp deb tarball
        info "apt-get download (about 165 MB) and unpack (1.8 GB)"
        download_deb "$LINUX_SOURCE_PKG" "$LINUX_SOURCE_VERSION"; deb=$DEB
        rm -rf "$tmp"; mkdir -p "$tmp"
        dpkg-deb -x "$deb" "$tmp/deb" || die "dpkg-deb -x $(basename "$deb") failed"
        tarball=$(ls "$tmp"/deb/usr/src/linux-source-*.tar.* 2>/dev/null | sed -n 1p || true)
        [ -n "$tarball" ] || die "no /usr/src/linux-source-*.tar.* in $(basename "$deb")"
        info "unpacking $(basename "$tarball")"
        tar -C "$tmp" -xf "$tarball" || die "unpacking $(basename "$tarball") failed"
        rm -rf "$tmp/deb"
        sha256sum "$deb" | awk '{print $1}' > "$tmp/deb.sha256"
        touch "$tmp/.rviommu-done"
        rm -rf "$SRC_TOP"; mv "$tmp" "$SRC_TOP"
        rm -f "$deb"   # the unpacked tree is the cache
    else
        info "cached in $SRC_TOP"
    fi
    SRC=$(ls -d "$SRC_TOP"/linux-source-*/ 2>/dev/null | sed -n 1p || true)
    SRC=${SRC%/}
    [ -n "$SRC" ] && [ -f "$SRC/Makefile" ] || die "no kernel tree under $SRC_TOP (delete it to unpack again)"
    info "tree $SRC ($(make -s -C "$SRC" kernelversion 2>/dev/null || echo '?'))"
}

# ---------------------------------------------------------------- config
BUILD=$KROOT/build/$VERSION_DIR
KMAKE=()
configure() {
    step "config: x86_64_defconfig + kvm_guest.config + $(basename "$FRAGMENT")"
    mkdir -p "$BUILD" "$OUT"
    # The build uses this copy: its sha256 is the one in the key even if the file changes meanwhile.
    local log=$OUT/config.log frag=$OUT/fragment.config
    cp "$FRAGMENT" "$frag"
    [ "$(sha256sum < "$frag" | cut -d' ' -f1)" = "$FRAGMENT_SHA256" ] || die "$FRAGMENT changed during the run"
    KMAKE=(make -C "$SRC" O="$BUILD" KBUILD_BUILD_USER=rviommu KBUILD_BUILD_HOST=kernel.sh)
    {
        "${KMAKE[@]}" x86_64_defconfig &&
        "${KMAKE[@]}" kvm_guest.config &&
        (cd "$BUILD" && "$SRC/scripts/kconfig/merge_config.sh" -m -O "$BUILD" "$BUILD/.config" "$frag") &&
        "${KMAKE[@]}" olddefconfig
    } > "$log" 2>&1 || { tail -30 "$log"; die "configuring failed (log $log)"; }
    # Every line of the fragment must hold in the result: CONFIG_X=v exactly, and
    # "# CONFIG_X is not set" as no CONFIG_X=... line at all.
    local bad=0 n=0 line sym
    while IFS= read -r line; do
        case "$line" in
            CONFIG_*=*)
                n=$((n + 1))
                grep -qxF -- "$line" "$BUILD/.config" && continue
                sym=${line%%=*}
                info "MISSING $line (.config has: $(grep -E "^(# )?$sym[= ]" "$BUILD/.config" || echo 'no line: unknown symbol, or its dependencies are not met'))"
                bad=$((bad + 1)) ;;
            "# CONFIG_"*" is not set")
                n=$((n + 1))
                sym=${line#\# }; sym=${sym%% *}
                grep -q "^$sym=" "$BUILD/.config" || continue
                info "MISSING $line (.config has: $(grep "^$sym=" "$BUILD/.config"))"
                bad=$((bad + 1)) ;;
        esac
    done < "$frag"
    [ $bad -eq 0 ] || die "$bad of the $n options of $(basename "$FRAGMENT") did not survive olddefconfig (log $log)"
    info "all $n options of $(basename "$FRAGMENT") hold in the .config"
    n=$(grep -c '=m$' "$BUILD/.config" || true)
    [ "$n" -eq 0 ] || info "($n options of the defconfig are =m; no modules are built, only bzImage)"
}

# ---------------------------------------------------------------- build
# Compact progress of kbuild's quiet output: one line a minute (and at the end) with the
# number of steps so far, an estimate of the share done when a fresh build of the same
# source has been measured before, and the step kbuild is at; compiler errors verbatim.
progress() {
    local estimate=$1 t0=$SECONDS last=$SECONDS n=0 warnings=0 cur="" line pct
    while IFS= read -r line; do
        case "$line" in
            "  "[A-Z]*" "*) n=$((n + 1)); cur=${line#  } ;;
            *warning:*) warnings=$((warnings + 1)) ;;
            *error:*|*Error\ [0-9]*|*"*** "*|*"No rule to make"*) echo "    | $line" ;;
        esac
        if [ $((SECONDS - last)) -ge 60 ]; then
            last=$SECONDS; pct=""
            [ "$estimate" -gt 0 ] && pct=" (~$(( n * 100 / estimate > 99 ? 99 : n * 100 / estimate ))%)"
            printf '    [%2d min] %5d steps%s  %s\n' $(((SECONDS - t0) / 60)) "$n" "$pct" "$(echo $cur | cut -c1-80)"
        fi
    done
    printf '    [%2d min] %5d steps, finished; %d compiler warnings (in the log)\n' \
        $(((SECONDS - t0) / 60)) "$n" "$warnings"
    echo "$n" > "$OUT/steps"
}

build() {
    local jobs=$(( $(nproc) + 1 )) log=$OUT/build.log estimate=0 fresh=0 t0=$SECONDS
    [ -f "$BUILD/vmlinux" ] || fresh=1
    [ $fresh = 1 ] && [ -f "$KROOT/fresh-build-steps" ] && estimate=$(cat "$KROOT/fresh-build-steps")
    step "make bzImage -j$jobs under nice -n 10 ($([ $fresh = 1 ] && echo "fresh build: about 20 min on 2 cores, 30 CPU-minutes" || echo incremental))"
    info "full output: $log"
    : > "$log"
    nice -n 10 "${KMAKE[@]}" -j"$jobs" bzImage 2>&1 | tee -a "$log" | progress "$estimate" \
        || { tail -40 "$log" | sed 's/^/    | /'; die "make bzImage failed (log $log)"; }
    [ -f "$BUILD/arch/x86/boot/bzImage" ] || die "make succeeded but there is no arch/x86/boot/bzImage"
    [ $fresh = 1 ] && cp "$OUT/steps" "$KROOT/fresh-build-steps"
    cp "$BUILD/arch/x86/boot/bzImage" "$OUT/bzImage.tmp" && mv "$OUT/bzImage.tmp" "$OUT/bzImage"
    cp "$BUILD/.config" "$OUT/config"
    "${KMAKE[@]}" -s kernelrelease > "$OUT/release" || die "make kernelrelease failed"
    echo "$LINUX_SOURCE_PKG $LINUX_SOURCE_VERSION" > "$OUT/source"
    touch "$OUT/.rviommu-done"
    info "$(cat "$OUT/release"): $OUT/bzImage ($(du -k "$OUT/bzImage" | cut -f1) KiB) in $(( (SECONDS - t0) / 60 )) min $(( (SECONDS - t0) % 60 )) s"
}

unpack_source
configure
build
write_env
step "done"
