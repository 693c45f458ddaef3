#!/usr/bin/env python3
"""Make QEMU's Rust meson wraps buildable on a machine that cannot reach the
crates.io download API (and without Debian's stripped subprojects/packagefiles).

For every subprojects/*-rs.wrap of the given QEMU tree:
  * the .crate file of the exact version comes through cargo (which reaches
    the registry through its own index) into subprojects/packagecache/ under
    the wrap's source_filename, and its sha256 is checked against source_hash;
  * the wrap is switched to `method = cargo`, and `patch_directory` points at
    our replacement for the crate's build.rs (subprojects/packagefiles/<wrap>/
    holding meson/meson.build) when we have one, else it is dropped.

Idempotent: a crate already in packagecache with the right hash is not fetched
again, and a wrap already rewritten is left alone.
"""
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile


def parse_wrap(path):
    fields = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"^\s*#?\s*([a-z_]+)\s*=\s*(.*?)\s*$", line)
            if m:
                fields[m.group(1)] = m.group(2)
    return fields


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    tree, overlay_pkgfiles, cargo_home_work = sys.argv[1], sys.argv[2], sys.argv[3]
    subprojects = os.path.join(tree, "subprojects")
    cache = os.path.join(subprojects, "packagecache")
    os.makedirs(cache, exist_ok=True)

    wraps = {}
    for name in sorted(os.listdir(subprojects)):
        if not name.endswith("-rs.wrap"):
            continue
        w = parse_wrap(os.path.join(subprojects, name))
        m = re.match(r"^(.+)-(\d+\.\d+\.\d+[^/]*)$", w["directory"])
        if not m:
            sys.exit(f"cannot read crate name/version from {name}: directory={w['directory']}")
        wraps[name[:-5]] = dict(w, crate=m.group(1), version=m.group(2))

    missing = [w for w in wraps.values()
               if not (os.path.exists(os.path.join(cache, w["source_filename"]))
                       and sha256(os.path.join(cache, w["source_filename"])) == w["source_hash"])]
    if missing:
        print(f"    fetching {len(missing)} crates through cargo: "
              + " ".join(f"{w['crate']}-{w['version']}" for w in missing), flush=True)
        os.makedirs(cargo_home_work, exist_ok=True)
        # One throw-away package per crate: exact versions of different crates
        # may not co-resolve in a single lock file.
        registry_cache = os.path.join(os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo")),
                                      "registry", "cache")
        for w in missing:
            d = tempfile.mkdtemp(prefix="fetch-", dir=cargo_home_work)
            os.makedirs(os.path.join(d, "src"))
            with open(os.path.join(d, "src", "lib.rs"), "w"):
                pass
            with open(os.path.join(d, "Cargo.toml"), "w") as f:
                f.write('[package]\nname = "fetch-one"\nversion = "0.0.0"\nedition = "2021"\n'
                        f'[dependencies]\n{w["crate"]} = "={w["version"]}"\n')
            subprocess.run(["cargo", "fetch", "--quiet"], cwd=d, check=True)
            shutil.rmtree(d)
            want = f"{w['crate']}-{w['version']}.crate"
            found = None
            for reg in os.listdir(registry_cache):
                p = os.path.join(registry_cache, reg, want)
                if os.path.exists(p):
                    found = p
            if not found:
                sys.exit(f"cargo fetched no {want} into {registry_cache}")
            dst = os.path.join(cache, w["source_filename"])
            shutil.copyfile(found, dst)
            got = sha256(dst)
            if got != w["source_hash"]:
                os.unlink(dst)
                sys.exit(f"{want}: sha256 {got} does not match the wrap's {w['source_hash']}")

    # Our build.rs replacements go where meson looks for patch directories.
    tree_pkgfiles = os.path.join(subprojects, "packagefiles")
    for root, _, files in os.walk(overlay_pkgfiles):
        for fn in files:
            src = os.path.join(root, fn)
            dst = os.path.join(tree_pkgfiles, os.path.relpath(src, overlay_pkgfiles))
            data = open(src, "rb").read()
            if not os.path.exists(dst) or open(dst, "rb").read() != data:
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                with open(dst, "wb") as f:
                    f.write(data)

    changed = False
    for wname, w in wraps.items():
        path = os.path.join(subprojects, wname + ".wrap")
        with open(path) as f:
            text = f.read()
        out = []
        for line in text.splitlines():
            if re.match(r"^\s*#\s*method\s*=\s*cargo", line):
                line = "method = cargo"
            elif re.match(r"^\s*patch_directory\s*=", line):
                continue
            out.append(line)
        if os.path.isdir(os.path.join(overlay_pkgfiles, wname)):
            out.insert(out.index("method = cargo") + 1 if "method = cargo" in out else 1,
                       f"patch_directory = {wname}")
        new = "\n".join(out) + "\n"
        if new != text:
            with open(path, "w") as f:
                f.write(new)
        # meson applies patch_directory only when it extracts a crate: when
        # the wrap or our replacement files change, drop the extracted copy
        # so that the next meson run extracts it again.
        stamp = hashlib.sha256(new.encode())
        pdir = os.path.join(overlay_pkgfiles, wname)
        for root, _, files in sorted(os.walk(pdir)):
            for fn in sorted(files):
                with open(os.path.join(root, fn), "rb") as f:
                    stamp.update(fn.encode() + f.read())
        extracted = os.path.join(subprojects, w["directory"])
        stamp_dir = os.path.join(subprojects, ".rviommu-wrap-stamps")
        os.makedirs(stamp_dir, exist_ok=True)
        stamp_file = os.path.join(stamp_dir, wname)
        old = open(stamp_file).read() if os.path.exists(stamp_file) else None
        if old != stamp.hexdigest():
            if os.path.isdir(extracted):
                shutil.rmtree(extracted)
                changed = True
            with open(stamp_file, "w") as f:
                f.write(stamp.hexdigest())

    if changed:
        # make the next ninja run re-run meson, which extracts them again
        os.utime(os.path.join(tree, "meson.build"))
        print("    crates re-extracted on the next meson run", flush=True)
    print(f"    {len(wraps)} Rust wraps ready (method = cargo)", flush=True)


if __name__ == "__main__":
    main()
