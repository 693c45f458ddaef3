#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""QEMU 10.2.2's own functional test of intel-iommu, on the C device and on ours.

Upstream's ``tests/functional/x86_64/test_intel_iommu.py`` (class ``IntelIOMMU``:
``test_intel_iommu``, ``_strict``, ``_strict_cm``, ``_pt``) is imported at run time from
the QEMU tree that gives ``qemu_test`` (``$QEMU_TREE``, by default the Rust tree
``$CACHE/rs/qemu``; the file is the pristine 10.2.2 one), not copied.  Two subclasses run
its four test methods unchanged (the same function objects): ``IntelIOMMU_C`` on the
reference build (``$CACHE/ref/build``, QEMU's C intel-iommu) and ``IntelIOMMU_Rust`` on
the binary under test (``QEMU_TEST_QEMU_BINARY``, ours).  ``tests/upstream-qtests.sh``
runs both and prints them side by side; ``tests/functional/run.sh`` leaves this file out
of its default run (it runs when a PATTERN selects it).

Upstream's guest: Fedora 31's pxeboot kernel and dracut initrd booted with ``rd.rescue``
to an emergency shell, which mounts ``/dev/vda1`` of a Fedora cloud image (virtio-blk),
copies a file, unmounts (dropping the page cache), mounts again, chroots into it, checks
``/proc/cmdline``, ``DMAR: IOMMU enabled``, the IOMMU groups, the sha256 of the file and
of its copy, then gets an address by DHCP (virtio-net) and serves the file over HTTP,
which the host downloads through a ``hostfwd`` and hashes.  Disk, NIC and GPU are
``iommu_platform=on``, behind ``-device intel-iommu,intremap=on`` and ``intel_iommu=on``
(``,strict``, ``caching-mode=on``, ``iommu=pt`` in the other cases), with
``kernel_irqchip=split``.

Every difference from upstream, all forced by this machine (no network, no KVM) or by
busybox standing in for Fedora:

1. Assets (``common_vm_setup``; upstream's downloads them):

   - kernel: the kit's Debian trixie ``linux-image-6.12`` instead of Fedora 31's;
   - initrd: a busybox initramfs (``Kit.initramfs``) that does what upstream uses of
     dracut's rescue path: it loads the drivers of upstream's devices (``virtio_blk``,
     ``virtio_net``, ``virtio_rng``, ``virtio_gpu``; ``virtio_pci`` is built in) and
     ``ext4``, mounts tmpfs on ``/run``, and when ``rd.rescue`` is on the command line
     prints ``Entering emergency mode. Exit the shell to continue.`` and starts an
     interactive shell on the console (``ttyS0``) with the prompt ``# ``;
   - disk: a qcow2 image built at test time (cached by content in the kit directory)
     with Debian tools: ``sfdisk`` (one partition at 1 MiB), ``mke2fs -t ext4 -d``
     (partition 1 from a directory, no root or loop device), ``qemu-img convert``.
     Partition 1 holds a busybox root to chroot into and ``/boot/rviommu-data.bin``,
     8 MiB of deterministic content (SHA-256 in counter mode), in place of Fedora's
     ``/boot/initramfs-5.3.7-301.fc31.x86_64.img``.

2. ``-accel tcg`` instead of ``kvm`` (``add_common_args`` replaces the one argument),
   and no ``require_accelerator('kvm')``.  Every device, property and option of
   upstream's command line is kept (``kernel_irqchip=split``; virtio-blk, virtio-gpu and
   virtio-net with ``iommu_platform=on,disable-modern=off,disable-legacy=on``,
   virtio-rng, ``-m 1G``, the ``hostfwd``).  Added: ``-L`` with the kit's firmware and
   a second ``-L`` with Debian's iPXE ROMs (the ``+ds`` source has neither; virtio-net's
   default ``romfile``, ``efi-virtio.rom``, must exist), and ``no_timer_check`` on the
   kernel command line (Linux's boot-time check that the timer interrupt arrives through
   the I/O APIC gives TCG about 65 ms of host time and panics when a loaded host misses
   it; see ``docs/rviommu/testing.rst``).

3. ``run_and_check`` is upstream's source with three literals replaced (``_adapt``
   checks that each occurs exactly once; tracebacks show upstream's file and lines):
   the file name and its sha256 (ours, above), and ``dhclient eth0`` ->
   ``udhcpc -i eth0 -n -q`` (busybox's DHCP client, with an event script at its default
   path ``/etc/udhcpc/default.script`` that sets the address and the default route).
   ``check_http_download`` is upstream's, called with ``pythoncmd='http-server'`` for
   ``python3 -m http.server``: a script on the disk that starts busybox ``httpd`` on
   ``0.0.0.0:PORT`` serving the current directory (``/`` of the chroot, as upstream's)
   and prints ``Serving HTTP on 0.0.0.0 port PORT`` only once ``httpd`` has bound the
   port (it exits non-zero otherwise).

4. Added after upstream's checks (same guest, same shell): each PCI function's IOMMU
   group and default domain type must be what the case asks for (virtio-blk, virtio-net
   and virtio-gpu in a group with ``DMA-FQ``, ``DMA`` for ``strict``, ``identity`` for
   ``iommu=pt``), so the disk and network traffic above really went through the
   IOMMU's translation; and no DMAR fault may be in the kernel log
   (``assertNoDmarFaults``: the known boot-time I/O APIC fault is logged, not failed).
   Upstream's waits have no time limit: a watchdog kills QEMU after ``WATCHDOG``
   seconds, which fails the wait in progress (EOF on the console) instead of hanging
   until the runner's limit.
"""

import hashlib
import importlib.util
import inspect
import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
import threading
import unittest
from pathlib import Path

import qemu_test
from qemu_test.cmd import exec_command_and_wait_for_pattern, get_qemu_img

from rviommu_kit import RvIommuGuestTest, reference_qemu

# ----------------------------------------------------------------- upstream's test

UPSTREAM_TEST = Path(qemu_test.__file__).resolve().parent.parent / 'x86_64' / 'test_intel_iommu.py'
CASES = ('test_intel_iommu', 'test_intel_iommu_strict', 'test_intel_iommu_strict_cm',
         'test_intel_iommu_pt')


def _load_upstream():
    spec = importlib.util.spec_from_file_location('test_intel_iommu', UPSTREAM_TEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _adapt(func, replacements):
    """`func` recompiled from its source with each (old, new) literal replaced; each
    `old` must occur exactly once.  Globals and line numbers are upstream's."""
    lines, first = inspect.getsourcelines(func)
    src = textwrap.dedent(''.join(lines))
    for old, new in replacements:
        n = src.count(old)
        if n != 1:
            raise RuntimeError(f'{UPSTREAM_TEST}: {func.__qualname__} has {old} {n} times '
                               '(expected once): update test_upstream_intel_iommu.py')
        src = src.replace(old, new)
    namespace = {}
    exec(compile('\n' * (first - 1) + src, inspect.getsourcefile(func), 'exec'),  # pylint: disable=exec-used
         func.__globals__, namespace)
    return namespace[func.__name__]


# ----------------------------------------------------------------- the guest

DATA_FILE = '/boot/rviommu-data.bin'
DATA_SEED = b'rviommu-upstream-intel-iommu-v1'
DATA_BYTES = 8 << 20
DATA_SHA256 = '81497d0e7e0d041b95b447cf0e33476c71656f6f3fc2336bcc540c1afecc3039'
DHCP_CMD = 'udhcpc -i eth0 -n -q'
HTTP_SERVER_CMD = 'http-server'

# /init body after the modules are loaded (scripts/guest/mkinitramfs.sh).
RESCUE_BODY = r'''
# What upstream uses of dracut's rescue path (rd.rescue): the drivers loaded, then an
# emergency shell on the console.  /sysroot is where upstream mounts /dev/vda1.
mkdir -p /sysroot
mount -t tmpfs -o mode=0755 tmpfs /run
case " $(cat /proc/cmdline) " in
*" rd.rescue "*)
    echo 'Entering emergency mode. Exit the shell to continue.'
    export PS1='# ' SHELL=/bin/sh HOME=/root
    mkdir -p /root
    setsid cttyhack sh -i
    ;;
*)  echo 'rd.rescue not on the kernel command line: no emergency shell' ;;
esac
pass
'''
# crc32c_generic: ext4's checksums (metadata_csum), a crypto soft dependency modules.dep omits
RESCUE_MODULES = ['virtio_blk', 'virtio_net', 'virtio_rng', 'virtio_gpu', 'ext4', 'crc32c_generic']

UDHCPC_SCRIPT = r'''#!/bin/sh
# udhcpc's event script (busybox has none built in): configure $interface from the lease.
case "$1" in
deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -z "$router" ] || ip route add default via "${router%% *}" dev "$interface"
    echo "udhcpc: $interface $ip/${mask:-24} router ${router:-none}"
    ;;
esac
exit 0
'''

HTTP_SERVER_SCRIPT = r'''#!/bin/sh
# Stand-in for upstream's `python3 -m http.server PORT`: busybox httpd serving the current
# directory on 0.0.0.0:PORT.  httpd binds the port before it goes to the background and
# exits non-zero if it cannot, so the line python prints is printed only when it listens.
port=${1:?usage: http-server PORT}
httpd -p "0.0.0.0:$port" -h "$PWD" || exit 1
echo "Serving HTTP on 0.0.0.0 port $port (busybox httpd, $PWD) ..."
'''

# Run after upstream's checks; the markers are assembled by printf so that the echoed
# command line never matches them.
REPORT_SCRIPT = r'''#!/bin/sh
# Each PCI function's IOMMU group and default domain type, and the DMAR fault lines of
# the kernel log (the patterns of tests/guest/dma-read.sh).
for d in /sys/bus/pci/devices/*; do
    g=none t=none
    if [ -e "$d/iommu_group" ]; then
        g=$(basename "$(readlink "$d/iommu_group")")
        t=$(cat "$d/iommu_group/type")
    fi
    printf 'RVIOMMU-%s: %s %s:%s group=%s type=%s\n' PCI "${d##*/}" \
        "$(cat "$d/vendor")" "$(cat "$d/device")" "$g" "$t"
done
dmesg | grep -e 'DMAR: \[DMA Read' -e 'DMAR: \[DMA Write' -e 'DMAR: \[INTR-REMAP' \
             -e 'DMAR:.*[Ff]ault' -e 'dmar_fault' | while IFS= read -r l; do
    printf 'RVIOMMU-%s: %s\n' DMAR-FAULT "$l"
done
printf 'RVIOMMU-%s\n' REPORT-END
'''

DISK_RECIPE = 1     # bump when the image's layout changes (cache key)
DISK_MIB = 64


def _data():
    return b''.join(hashlib.sha256(DATA_SEED + b':' + str(i).encode()).digest()
                    for i in range(DATA_BYTES // 32))


def root_disk(test):
    """The qcow2 image of the guest's /dev/vda (see the module docstring), cached by
    content in $KIT_DIR/upstream-intel-iommu/."""
    kit = test.kit
    env = dict(os.environ, PATH=os.environ.get('PATH', '') + ':/usr/sbin:/sbin')
    for tool in ('sfdisk', 'mke2fs'):
        if not shutil.which(tool, path=env['PATH']):
            test.fail(f'{tool} not found: run scripts/guest/kit.sh (installs e2fsprogs, fdisk)')
    busybox = kit.env['BUSYBOX']
    h = hashlib.sha256()
    for part in (str(DISK_RECIPE), str(DISK_MIB), DATA_FILE, DATA_SHA256, UDHCPC_SCRIPT,
                 HTTP_SERVER_SCRIPT, REPORT_SCRIPT):
        h.update(part.encode() + b'\0')
    h.update(Path(busybox).read_bytes())
    out_dir = kit.dir / 'upstream-intel-iommu'
    out = out_dir / f'rootfs-{h.hexdigest()[:16]}.qcow2'
    if out.exists():
        return str(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        root = Path(tmp, 'root')
        for d in ('bin', 'sbin', 'usr/bin', 'usr/sbin', 'dev', 'proc', 'sys', 'run', 'tmp',
                  'root', 'boot', 'etc/udhcpc'):
            (root / d).mkdir(parents=True, exist_ok=True)
        shutil.copy(busybox, root / 'bin' / 'busybox')
        (root / 'bin' / 'busybox').chmod(0o755)
        applets = subprocess.run([busybox, '--list-full'], check=True, capture_output=True,
                                 text=True).stdout.split()
        for a in applets:
            if a != 'bin/busybox':
                (root / a).parent.mkdir(parents=True, exist_ok=True)
                (root / a).symlink_to('/bin/busybox')
        for path, text in (('etc/udhcpc/default.script', UDHCPC_SCRIPT),
                           ('usr/bin/http-server', HTTP_SERVER_SCRIPT),
                           ('usr/bin/rviommu-iommu-report', REPORT_SCRIPT)):
            (root / path).write_text(text)
            (root / path).chmod(0o755)
        data = _data()
        if hashlib.sha256(data).hexdigest() != DATA_SHA256:
            raise RuntimeError('the data file does not have the expected sha256')
        (root / DATA_FILE.lstrip('/')).write_bytes(data)
        raw = Path(tmp, 'disk.raw')
        with open(raw, 'wb') as f:
            f.truncate(DISK_MIB << 20)
        subprocess.run(['sfdisk', '--quiet', str(raw)], input='label: dos\nstart=2048, type=83\n',
                       text=True, check=True, capture_output=True, env=env)
        subprocess.run(['mke2fs', '-q', '-F', '-t', 'ext4', '-L', 'rviommu-root', '-d', str(root),
                        '-E', 'offset=1048576,root_owner=0:0', str(raw), f'{DISK_MIB - 1}M'],
                       check=True, capture_output=True, env=env)
        subprocess.run([get_qemu_img(test), 'convert', '-f', 'raw', '-O', 'qcow2', str(raw),
                        str(out) + '.tmp'], check=True, capture_output=True)
        os.replace(str(out) + '.tmp', out)
    test.log.info('built %s', out)
    return str(out)


# ----------------------------------------------------------------- the tests

try:
    _upstream = _load_upstream()
    _UPSTREAM_ERROR = None
except Exception as e:  # pylint: disable=broad-except
    _upstream = None
    _UPSTREAM_ERROR = f'cannot load upstream\'s test {UPSTREAM_TEST}: {e!r}'

if _upstream is not None:
    _Upstream = _upstream.IntelIOMMU
    _upstream_run_and_check = _adapt(_Upstream.run_and_check, [
        ("'/boot/initramfs-5.3.7-301.fc31.x86_64.img'", repr(DATA_FILE)),
        ("'0dc7472f879be70b2f3daae279e3ae47175ffe249691e7d97f47222b65b8a720'", repr(DATA_SHA256)),
        ("'dhclient eth0'", repr(DHCP_CMD)),
    ])
    _CASES = {name: getattr(_Upstream, name) for name in CASES}
else:
    class _Upstream(RvIommuGuestTest):   # pylint: disable=invalid-name
        DEFAULT_KERNEL_PARAMS = ''

    def _missing(self):
        self.fail(_UPSTREAM_ERROR)
    _upstream_run_and_check = _missing
    _CASES = {name: _missing for name in CASES}


class _Adapted(_Upstream, RvIommuGuestTest):
    """Upstream's IntelIOMMU with the overrides of the module docstring."""

    DEFAULT_KERNEL_PARAMS = _Upstream.DEFAULT_KERNEL_PARAMS + 'no_timer_check '
    WATCHDOG = 240     # seconds from common_vm_setup() to QEMU killed (a case takes 15-40 s)

    def setUp(self):
        super().setUp()     # RvIommuGuestTest: self.kit
        self._watchdog = None

    def tearDown(self):
        if self._watchdog is not None:
            self._watchdog.cancel()
        super().tearDown()

    def common_vm_setup(self):
        self.set_machine('q35')
        self.require_netdev('user')
        self.kernel_path = self.kit.kernel
        self.initrd_path = self.kit.initramfs('upstream-rescue', RESCUE_BODY, RESCUE_MODULES)
        image_path = root_disk(self)
        self.add_common_args(image_path)
        self.kernel_params = self.DEFAULT_KERNEL_PARAMS
        ipxe = self.kit.env.get('IPXE_ROM_DIR')
        if not ipxe or not os.path.exists(os.path.join(ipxe, 'efi-virtio.rom')):
            self.fail(f'no iPXE ROMs in the kit ({ipxe}): run scripts/guest/kit.sh')
        self.vm.add_args('-L', self.kit.firmware_dir, '-L', ipxe)
        self._watchdog = threading.Timer(self.WATCHDOG, self._kill_qemu)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _kill_qemu(self):
        self.log.error('watchdog: still running after %ds, killing QEMU', self.WATCHDOG)
        try:
            os.kill(self.vm.get_pid(), signal.SIGKILL)
        except (OSError, TypeError):
            pass

    def add_common_args(self, path):
        super().add_common_args(path)
        args = self.vm.args
        at = [i for i in range(len(args) - 1) if args[i:i + 2] == ['-accel', 'kvm']]
        self.assertEqual(len(at), 1, f'upstream\'s -accel kvm not found once in {args}')
        args[at[0] + 1] = 'tcg'

    def check_http_download(self, filename, hashsum, guestport=8080,
                            pythoncmd=HTTP_SERVER_CMD):
        super().check_http_download(filename, hashsum, guestport, pythoncmd)

    def run_and_check(self):
        _upstream_run_and_check(self)
        self.check_iommu_report()

    def expected_domain_type(self):
        if 'iommu=pt' in self.kernel_params:
            return 'identity'
        if 'strict' in self.kernel_params:
            return 'DMA'
        return 'DMA-FQ'

    # virtio 1.0 PCI device ids of upstream's iommu_platform=on devices
    TRANSLATED = {'0x1af4:0x1042': 'virtio-blk', '0x1af4:0x1041': 'virtio-net',
                  '0x1af4:0x1050': 'virtio-gpu'}

    def check_iommu_report(self):
        out = exec_command_and_wait_for_pattern(self, 'rviommu-iommu-report',
                                                'RVIOMMU-REPORT-END').decode(errors='replace')
        self.wait_for_console_pattern('# ')
        pci, faults = {}, []
        for line in out.splitlines():
            line = line.strip()
            if line.startswith('RVIOMMU-PCI: '):
                bdf, ids, group, dtype = line.split()[1:5]
                pci[bdf] = (ids, group.split('=', 1)[1], dtype.split('=', 1)[1])
            elif line.startswith('RVIOMMU-DMAR-FAULT: '):
                faults.append(line.split(': ', 1)[1])
        self.log.info('PCI functions: %s', pci)
        want = self.expected_domain_type()
        seen = {}
        for bdf, (ids, group, dtype) in pci.items():
            self.assertNotEqual(group, 'none', f'{bdf} ({ids}) is in no IOMMU group')
            if ids in self.TRANSLATED:
                seen[self.TRANSLATED[ids]] = bdf
                self.assertEqual(dtype, want, f'{self.TRANSLATED[ids]} {bdf}: domain type')
        self.assertEqual(sorted(seen), sorted(self.TRANSLATED.values()),
                         f'the iommu_platform=on virtio devices among {pci}')
        self.assertNoDmarFaults(faults)


class IntelIOMMU_C(_Adapted):   # pylint: disable=invalid-name
    """Upstream's cases on the reference build (QEMU 10.2.2's C intel-iommu)."""

    def setUp(self):
        super().setUp()
        self.qemu_bin = reference_qemu(self)

    test_intel_iommu = _CASES['test_intel_iommu']
    test_intel_iommu_strict = _CASES['test_intel_iommu_strict']
    test_intel_iommu_strict_cm = _CASES['test_intel_iommu_strict_cm']
    test_intel_iommu_pt = _CASES['test_intel_iommu_pt']


class IntelIOMMU_Rust(_Adapted):   # pylint: disable=invalid-name
    """Upstream's cases on the binary under test (ours by default)."""

    test_intel_iommu = _CASES['test_intel_iommu']
    test_intel_iommu_strict = _CASES['test_intel_iommu_strict']
    test_intel_iommu_strict_cm = _CASES['test_intel_iommu_strict_cm']
    test_intel_iommu_pt = _CASES['test_intel_iommu_pt']


def load_tests(loader, standard_tests, pattern):  # pylint: disable=unused-argument
    """Only the two classes above: unittest would also collect the module's other
    TestCase classes (upstream's IntelIOMMU, _Adapted), which inherit the test methods."""
    suite = unittest.TestSuite()
    for cls in (IntelIOMMU_C, IntelIOMMU_Rust):
        suite.addTests(loader.loadTestsFromTestCase(cls))
    return suite


if __name__ == '__main__':
    RvIommuGuestTest.main()
