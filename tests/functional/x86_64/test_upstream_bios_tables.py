#!/usr/bin/env python3
#
# Upstream's bios-tables-test case of intel-iommu, unmodified, on the C device and on ours.
#
# QEMU 10.2.2's tests/qtest/bios-tables-test.c has one case with intel-iommu,
# /x86_64/acpi/q35/kvm/dmar (test_acpi_q35_kvm_dmar: `-machine kernel-irqchip=split -accel
# kvm -device intel-iommu,intremap=on,device-iotlb=on`, expected tables
# tests/data/acpi/x86/q35/DMAR.dmar and the q35 base files).  It needs KVM, which this
# machine does not give (its /dev/kvm opens, so the case is registered, but it has no SMM:
# the FADT loses SMI_CMD and the case fails on both builds alike).  So it runs one level
# down: L0 (our QEMU, TCG, -cpu max: SVM) boots the kit's Debian kernel with kvm_amd and an
# initramfs holding, per build, the bios-tables-test binary built in that tree (`ninja -C
# <build> tests/qtest/bios-tables-test`), that build's QEMU and that tree's expected tables;
# L1 (tests/guest/l1-bios-tables.sh) runs the case of each with QTEST_QEMU_BINARY pointing
# at a wrapper that adds -L (firmware) and -nic none, as tests/upstream-qtests.sh does; the
# case's QEMU runs its guest (L2: SeaBIOS and a boot sector) under KVM in L1.
#
# The TAP of each run is written to $CACHE/upstream-c-bios-tables-test.tap (the reference
# build, QEMU's C intel-iommu) and $CACHE/upstream-rust-bios-tables-test.tap (the binary
# under test, ours), where tests/upstream-qtests.sh reads its other results; the test
# requires the case to pass on both, under KVM (a KVM VM alive in L1 while it ran: the
# test's `-accel kvm -accel tcg` would fall back to TCG silently).
#
# SPDX-License-Identifier: GPL-2.0-or-later

import os
import re
import subprocess
from pathlib import Path

from rviommu_kit import RvIommuGuestTest, cache_dir, reference_qemu

CASE = '/x86_64/acpi/q35/kvm/dmar'
VARIANT = '.dmar'                      # data.variant of test_acpi_q35_kvm_dmar
DATA = 'tests/data/acpi/x86/q35'       # data_dir/arch/machine, relative to the build dir
FIRMWARE = ('bios-256k.bin', 'kvmvapic.bin', 'vgabios-stdvga.bin')   # q35 without -nodefaults
KERNEL_LINE = re.compile(r'^\[\s*\d+\.\d+\] ')


class UpstreamBiosTables(RvIommuGuestTest):

    L1_MEMORY = '3G'
    # Two vCPUs: L2 boots under KVM in about 5 s and then sits halted; most of a run
    # is the test reading guest memory one byte per qtest command (the searches for the
    # RSDP and the SMBIOS entry point over 0xf0000-0xfffff: thousands of round trips
    # between bios-tables-test and QEMU, both in L1 under TCG).  With -smp 1 each round
    # trip is two context switches on one vCPU.  Measured on 2 loaded cores: 40-75 s
    # per run with -smp 2, 100-225 s with -smp 1.
    L1_SMP = '2'
    GUEST_TIMEOUT = 900
    RUN_TIMEOUT = 360

    def build_test_binary(self, build):
        """`ninja -C build tests/qtest/bios-tables-test` (up to date: a no-op)."""
        if not (build / 'build.ninja').exists():
            self.fail(f'{build} is not a QEMU build directory (no build.ninja)')
        env = dict(os.environ)
        cache = str(cache_dir())
        env.setdefault('CCACHE_DIR', os.path.join(cache, 'ccache'))
        env.setdefault('CCACHE_BASEDIR', cache)
        env.setdefault('CCACHE_NOHASHDIR', '1')
        r = subprocess.run(['ninja', '-C', str(build), 'tests/qtest/bios-tables-test'],
                           env=env, capture_output=True, text=True)
        last = (r.stdout.strip().splitlines() or [''])[-1]
        self.log.info('ninja -C %s tests/qtest/bios-tables-test: %s', build, last)
        if r.returncode != 0:
            self.fail(f'building bios-tables-test in {build} failed:\n{r.stdout[-3000:]}'
                      f'{r.stderr[-2000:]}')
        return build / 'tests' / 'qtest' / 'bios-tables-test'

    def stage(self, builds):
        """(host, guest) pairs of L1's initramfs.  The stripped binaries go to a fixed
        place of the kit directory, so that the initramfs (named by its file list) is
        rebuilt in place when they change instead of piling up."""
        stage = self.kit.dir / 'l1-bios-tables'
        files, binaries = [], []
        for name, qemu in builds:
            build = Path(qemu).resolve().parent
            btt = self.build_test_binary(build)
            out = stage / name
            out.mkdir(parents=True, exist_ok=True)
            for src, dst in ((qemu, 'qemu-system-x86_64'), (btt, 'bios-tables-test')):
                subprocess.run(['strip', '--strip-debug', '-o', str(out / dst), str(src)],
                               check=True)
                files.append((str(out / dst), f'/bt/{name}/{dst}'))
                binaries.append(str(src))
            data = build / DATA
            expected = sorted(p.name for p in data.iterdir()
                              if '.' not in p.name or p.name.endswith(VARIANT))
            if not any(n.endswith(VARIANT) for n in expected):
                self.fail(f'no expected {VARIANT} table in {data}')
            self.log.info('%s: %s, %s, expected tables %s', name, qemu, btt, ' '.join(expected))
            for n in expected:
                files.append((str((data / n).resolve()), f'/bt/{name}/{DATA}/{n}'))
        files += self.shared_libraries(*binaries)
        for fw in FIRMWARE:
            files.append((os.path.join(self.kit.firmware_dir, fw), f'/usr/share/qemu/{fw}'))
        return files

    @staticmethod
    def section(res, what, name):
        """The lines between RVIOMMU-L1-BTT-<what>-BEGIN: name and -END: name, without
        kernel log lines that may have come in between."""
        out, inside = [], False
        for line in res.lines:
            s = line.strip()
            if s == f'RVIOMMU-L1-BTT-{what}-BEGIN: {name}':
                inside = True
            elif s == f'RVIOMMU-L1-BTT-{what}-END: {name}':
                inside = False
            elif inside and not KERNEL_LINE.match(s):
                out.append(line)
        return out

    @staticmethod
    def per_build(res, key):
        """{name: value} of the lines 'RVIOMMU-<key>: name value'."""
        return dict(v.split(' ', 1) for v in res.values.get(key, []) if ' ' in v)

    def test_dmar_c_and_rust(self):
        builds = [('c', reference_qemu(self)), ('rust', self.qemu_bin)]
        for name, _ in builds:
            Path(cache_dir(), f'upstream-{name}-bios-tables-test.tap').unlink(missing_ok=True)
        initrd = self.kit.initramfs('l1-bios-tables', self.l1_body('l1-bios-tables.sh'),
                                    modules=['kvm_amd'], files=self.stage(builds))
        self.log.info('L1 initramfs %s (%d KiB)', initrd, os.path.getsize(initrd) >> 10)
        vm = self.q35_vm(memory=self.L1_MEMORY)
        vm.add_args('-smp', self.L1_SMP)     # overrides q35_vm's -smp 1
        append = (f'rviommu.btt_builds={",".join(n for n, _ in builds)} '
                  f'rviommu.btt_case={CASE} rviommu.btt_timeout={self.RUN_TIMEOUT}')
        res = self.boot_and_collect(vm, initrd, append)
        self.log.info('L1: %s', res.value('L1-KVM'))
        self.assertTrue(res.begun, 'L1 never reached /init (RVIOMMU-TEST-BEGIN)')

        listed = self.per_build(res, 'L1-BTT-LISTED')
        exits = self.per_build(res, 'L1-BTT-EXIT')
        secs = self.per_build(res, 'L1-BTT-SECONDS')
        vms = self.per_build(res, 'L1-BTT-KVM-VMS')
        kvm_secs = self.per_build(res, 'L1-BTT-KVM-SECONDS')
        verdict, problems = {}, []
        for name, _ in builds:
            tap = self.section(res, 'TAP', name)
            err = self.section(res, 'STDERR', name)
            if tap:
                Path(cache_dir(), f'upstream-{name}-bios-tables-test.tap').write_text(
                    '\n'.join(tap) + '\n')
            oks = [l for l in tap if re.match(rf'^(not )?ok \d+ {re.escape(CASE)}( |$)', l)]
            verdict[name] = 'pass' if oks and oks[0].startswith('ok') else 'FAIL'
            self.log.info('%s: listed %s, exit %s, %s s, KVM VMs %s (seen %s), TAP: %s', name,
                          listed.get(name), exits.get(name), secs.get(name), vms.get(name),
                          kvm_secs.get(name), oks or 'no result line')
            for line in tap:
                self.log.info('  %s tap | %s', name, line)
            for line in err[-40:]:
                self.log.info('  %s err | %s', name, line)
            if listed.get(name) != 'yes':
                problems.append(f'{name}: {CASE} not registered in L1 (no usable /dev/kvm?)')
            elif verdict[name] != 'pass' or exits.get(name) != '0':
                problems.append(f'{name}: {CASE} did not pass (exit {exits.get(name)}): '
                                + ' | '.join(err[-8:]))
            elif vms.get(name, '0') == '0':
                problems.append(f'{name}: no KVM VM seen while the case ran (TCG fallback?)')
        self.log.info('side by side (C device | Rust device): %s %s | %s',
                      CASE, verdict.get('c'), verdict.get('rust'))
        self.assertEqual(problems, [])
        self.assertGuestPassed(res)


if __name__ == '__main__':
    RvIommuGuestTest.main()
