# Guest kit access and a base class for the rviommu functional tests.
#
# Nothing is downloaded at test time: the kernel, busybox, firmware and disk image come
# from scripts/guest/kit.sh, which records their paths in $CACHE/guest/kit.env
# ($CACHE = $RVIOMMU_CACHE or ${XDG_CACHE_HOME:-~/.cache}/rviommu).  $RVIOMMU_KIT_ENV can
# point at another kit.env.  The iommufd kernel of scripts/guest/kernel.sh (not part of the
# kit: `make check` builds it, about 20 minutes) is recorded beside it, in
# iommufd-kernel.env; Kit.iommufd_kernel is None until it has been built.
# The arm64 kit (`scripts/guest/kit.sh arm64`: Debian's arm64 kernel and busybox, the
# same disk image) is $CACHE/guest/kit-arm64.env, or $RVIOMMU_KIT_ARM64_ENV:
# Kit.load(arch='arm64').
#
# SPDX-License-Identifier: GPL-2.0-or-later

import glob
import hashlib
import os
import random
import re
import signal
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from qemu_test import QemuSystemTest, wait_for_console_pattern


def cache_dir():
    if os.getenv('RVIOMMU_CACHE'):
        return Path(os.environ['RVIOMMU_CACHE'])
    xdg = os.getenv('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return Path(xdg, 'rviommu')


def repo_dir():
    return Path(__file__).resolve().parent.parent.parent


class Kit:
    """The artefacts of scripts/guest/kit.sh (see $CACHE/guest/kit.env), or of
    `scripts/guest/kit.sh arm64` (kit-arm64.env: arch 'arm64', no firmware_dir)."""

    ENV_FILES = {'amd64': ('RVIOMMU_KIT_ENV', 'kit.env', 'scripts/guest/kit.sh'),
                 'arm64': ('RVIOMMU_KIT_ARM64_ENV', 'kit-arm64.env',
                           'scripts/guest/kit.sh arm64')}
    # Modules the DMA initramfs loads besides tests/guest/dma-read.modules.
    DMA_EXTRA_MODULES = {'amd64': (), 'arm64': ('nvme',)}

    def __init__(self, env_path):
        self.env_path = Path(env_path)
        self.env = {}
        for line in self.env_path.read_text().splitlines():
            if line and not line.startswith('#') and '=' in line:
                k, v = line.split('=', 1)
                self.env[k] = v
        self.arch = self.env.get('ARCH', 'amd64')
        self.kernel = self.env['KERNEL']
        self.kernel_release = self.env['KERNEL_RELEASE']
        self.kernel_modules = self.env.get('KERNEL_MODULES')
        self.busybox = self.env.get('BUSYBOX')
        self.firmware_dir = self.env.get('FIRMWARE_DIR')
        self.disk = self.env['DISK']
        self.disk_sha256 = self.env['DISK_SHA256']
        self.initrd_dma = self.env['INITRD_DMA']
        # This checkout's builder, which knows the options its tests pass; kit.env's
        # MKINITRAMFS is the copy of whichever checkout last ran kit.sh on this cache.
        own = repo_dir() / 'scripts' / 'guest' / 'mkinitramfs.sh'
        self.mkinitramfs = str(own) if own.exists() else self.env['MKINITRAMFS']
        self.dir = Path(self.env['KIT_DIR'])
        if self.arch == 'amd64':
            self._load_iommufd_kernel(self.env_path.parent / 'iommufd-kernel.env')
        else:
            self.iommufd_kernel = self.iommufd_kernel_release = None
            self.iommufd_kernel_env = {}
            self.iommufd_kernel_why = f'no iommufd kernel for {self.arch}'

    def _load_iommufd_kernel(self, path):
        """Optional: the kernel with iommufd and VFIO cdevs (scripts/guest/kernel.sh).
        Sets iommufd_kernel (bzImage path), iommufd_kernel_release and
        iommufd_kernel_env, or iommufd_kernel = None and iommufd_kernel_why."""
        self.iommufd_kernel = None
        self.iommufd_kernel_release = None
        self.iommufd_kernel_env = {}
        self.iommufd_kernel_why = (f'the iommufd kernel has not been built ({path} missing): '
                                   'run scripts/guest/kernel.sh (30-45 min on 2 cores)')
        if not path.exists():
            return
        for line in path.read_text().splitlines():
            if line and not line.startswith('#') and '=' in line:
                k, v = line.split('=', 1)
                self.iommufd_kernel_env[k] = v
        kernel = self.iommufd_kernel_env.get('IOMMUFD_KERNEL', '')
        if not kernel or not os.path.exists(kernel):
            self.iommufd_kernel_why = (f'the iommufd kernel of {path} ({kernel}) is missing: '
                                       'run scripts/guest/kernel.sh')
            return
        self.iommufd_kernel = kernel
        self.iommufd_kernel_release = self.iommufd_kernel_env.get('IOMMUFD_KERNEL_RELEASE')
        self.iommufd_kernel_why = None

    def iommufd_kernel_stale(self):
        """A reason if scripts/guest/iommufd.config changed since the kernel was built."""
        frag = repo_dir() / 'scripts' / 'guest' / 'iommufd.config'
        want = self.iommufd_kernel_env.get('IOMMUFD_KERNEL_FRAGMENT_SHA256')
        if frag.exists() and want and hashlib.sha256(frag.read_bytes()).hexdigest() != want:
            return f'{frag} changed since the kernel was built: run scripts/guest/kernel.sh'
        return None

    @classmethod
    def load(cls, arch='amd64'):
        """Return (kit, None) or (None, reason); `arch` 'amd64' (kit.env) or
        'arm64' (kit-arm64.env)."""
        var, name, how = cls.ENV_FILES[arch]
        path = os.getenv(var) or cache_dir() / 'guest' / name
        if not os.path.exists(path):
            return None, f'no {arch} guest kit at {path}: run {how}'
        kit = cls(path)
        if kit.arch != arch:
            return None, f'{path} is a kit for {kit.arch}, not {arch}'
        files = [kit.kernel, kit.disk, kit.initrd_dma]
        if arch == 'amd64':
            files.append(os.path.join(kit.firmware_dir, 'bios-256k.bin'))
        else:
            files += [kit.busybox, os.path.join(kit.kernel_modules, 'modules.dep')]
        for f in files:
            if not os.path.exists(f):
                return None, f'{arch} guest kit incomplete ({f} missing): run {how}'
        return kit, None

    def dma_initramfs(self, epilogue=''):
        """The initramfs of the DMA test body, tests/guest/dma-read.{sh,modules} of
        this checkout, through initramfs() (a file named by its content).  The
        kit's INITRD_DMA is the same body, but from the checkout that ran kit.sh
        last: checkouts sharing one cache would run each other's bodies.
        `epilogue`: shell that runs after the body (it may still `fail`)."""
        guest = repo_dir() / 'tests' / 'guest'
        if not (guest / 'dma-read.sh').exists() and not epilogue:
            return self.initrd_dma
        modules = ((guest / 'dma-read.modules').read_text().split()
                   + list(self.DMA_EXTRA_MODULES[self.arch]))
        body = (guest / 'dma-read.sh').read_text()
        if epilogue:
            body += '\n' + epilogue
        return self.initramfs('dma-read', body, modules)

    def initramfs(self, name, body, modules=(), files=(), kmods=None):
        """An initramfs whose /init runs the shell fragment `body` (a string).

        This is the hook for tests that need their own guest commands: `body` runs
        under busybox ash after `modules` (and their dependencies) are loaded, with
        the helpers run/check/fail/pass/kparam (see scripts/guest/mkinitramfs.sh).
        `files` are (host_path, guest_path) pairs.  `kmods` is the modules tree
        (default: the kit kernel's); 'none' for a kernel without modules such as
        the iommufd kernel.  Cached by content in $CACHE/guest/initramfs
        ($CACHE/guest/arm64/initramfs for the arm64 kit, with its busybox).
        Returns the .cpio.gz path.
        """
        busybox = None
        if self.arch != 'amd64':
            # mkinitramfs.sh's defaults are the x86 kit's: name this kit's own.
            busybox = self.busybox
            if kmods is None:
                kmods = self.kernel_modules
        h = hashlib.sha256()
        h.update(body.encode())
        h.update(' '.join(modules).encode())
        if kmods is not None:
            h.update(f'kmods:{kmods}'.encode())
        if busybox is not None:
            h.update(f'busybox:{busybox}'.encode())
        for src, dst in files:
            h.update(f'{src}:{dst}'.encode())
        key = h.hexdigest()[:16]
        d = self.dir / 'initramfs'
        d.mkdir(parents=True, exist_ok=True)
        out = d / f'{name}-{key}.cpio.gz'
        with tempfile.NamedTemporaryFile('w', suffix='.sh', dir=d, delete=False) as f:
            f.write(body)
            body_path = f.name
        try:
            args = [self.mkinitramfs, '--out', str(out), '--name', name,
                    '--body', body_path, '--modules', ' '.join(modules)]
            for src, dst in files:
                args += ['--file', f'{src}:{dst}']
            if kmods is not None:
                args += ['--kmods', str(kmods)]
            if busybox is not None:
                args += ['--busybox', busybox]
            r = subprocess.run(args, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f'mkinitramfs.sh failed:\n{r.stdout}{r.stderr}')
        finally:
            os.unlink(body_path)
        prune_initramfs(d, name, out)
        return str(out)


# An initramfs of an older body that no checkout has used for this long is
# deleted (a shared cache may serve checkouts of different ages at once).
INITRAMFS_MAX_AGE_DAYS = 14


def prune_initramfs(d, name, current, max_age_days=INITRAMFS_MAX_AGE_DAYS):
    """Mark `current` (d/name-KEY.cpio.gz) used now, and delete the other
    d/name-*.cpio.gz (with their .key) not used for `max_age_days`; the
    names deleted."""
    os.utime(current)
    limit = time.time() - max_age_days * 86400
    gone = []
    for old in d.glob(f'{glob.escape(name)}-*.cpio.gz'):
        # name-KEY with a 16-digit hex key only (another test's name may
        # extend this one: dma-read vs dma-read-extra-...).
        if old == current or not re.fullmatch(re.escape(name) + r'-[0-9a-f]{16}\.cpio\.gz', old.name):
            continue
        try:
            if old.stat().st_mtime < limit:
                old.unlink()
                Path(f'{old}.key').unlink(missing_ok=True)
                gone.append(old.name)
        except FileNotFoundError:
            pass        # a concurrent run pruned it
    return gone


class GuestResult:
    """What a guest printed between RVIOMMU-TEST-BEGIN and RVIOMMU-TEST-END."""

    MARKER = re.compile(r'^(RVIOMMU-[A-Z0-9-]+):? ?(.*)$')

    def __init__(self, text):
        self.text = text
        self.lines = [l.rstrip('\r') for l in text.split('\n')]
        self.values = {}          # 'SHA256' -> ['...'], one entry per line
        self.dmesg = []           # lines between RVIOMMU-DMESG-BEGIN and -END
        self.result = None        # 'PASS' or 'FAIL'
        self.reason = ''
        self.begun = False
        in_dmesg = False
        for line in self.lines:
            m = self.MARKER.match(line.strip())
            if not m:
                if in_dmesg:
                    self.dmesg.append(line)
                continue
            key, val = m.group(1)[len('RVIOMMU-'):], m.group(2)
            if key == 'TEST-BEGIN':
                self.begun = True
            elif key == 'DMESG-BEGIN':
                in_dmesg = True
            elif key == 'DMESG-END':
                in_dmesg = False
            elif key == 'TEST-RESULT':
                self.result, _, self.reason = val.partition(' ')
            self.values.setdefault(key, []).append(val)

    def value(self, key, default=None):
        v = self.values.get(key)
        return v[-1] if v else default

    def dmesg_has(self, text):
        return any(text in l for l in self.dmesg)


class NetPeer:
    """The host end of a guest's network transfers (see tests/guest/dma-read.sh).

    Two TCP listeners on 127.0.0.1, ephemeral ports, which a guest on QEMU's user
    network (-netdev user) reaches as 10.0.2.2:PORT:
      rx_port  sends `blob` (seeded random bytes) to each connection, then closes;
      tx_port  reads each connection to EOF, records (bytes, sha256) in `received`
               and answers "<sha256> <bytes>\n"; `receiving` counts the bytes of
               connections still open (a guest that gave up: slow or stuck).
    Use as a context manager (the listeners stop on exit).
    """

    def __init__(self, rx_bytes, seed='rviommu-net-v1'):
        self.blob = random.Random(seed).randbytes(rx_bytes)
        self.blob_sha256 = hashlib.sha256(self.blob).hexdigest()
        self.received = []
        self.receiving = {}
        self.errors = []
        peer = self

        class Rx(socketserver.BaseRequestHandler):
            def handle(self):
                try:
                    self.request.sendall(peer.blob)
                    self.request.shutdown(socket.SHUT_WR)
                except OSError as e:
                    peer.errors.append(f'rx: {e}')

        class Tx(socketserver.BaseRequestHandler):
            def handle(self):
                h, n = hashlib.sha256(), 0
                try:
                    while True:
                        b = self.request.recv(1 << 16)
                        if not b:
                            break
                        h.update(b)
                        n += len(b)
                        peer.receiving[id(self)] = n
                    peer.receiving.pop(id(self), None)
                    peer.received.append((n, h.hexdigest()))
                    self.request.sendall(f'{h.hexdigest()} {n}\n'.encode())
                except OSError as e:
                    peer.errors.append(f'tx: {e}')

        self.servers = []
        for handler in (Rx, Tx):
            srv = socketserver.ThreadingTCPServer(('127.0.0.1', 0), handler)
            srv.daemon_threads = True
            self.servers.append(srv)
        self.rx_port = self.servers[0].server_address[1]
        self.tx_port = self.servers[1].server_address[1]

    def __enter__(self):
        for srv in self.servers:
            threading.Thread(target=srv.serve_forever, kwargs={'poll_interval': 0.2},
                             daemon=True).start()
        return self

    def __exit__(self, *exc):
        for srv in self.servers:
            srv.shutdown()
            srv.server_close()


class RvIommuGuestTest(QemuSystemTest):
    """Boot the kit's kernel with an initramfs on q35/TCG and collect its verdict."""

    # Guest watchdog (rviommu.timeout, from /init on); the host kills QEMU when the
    # guest has not printed RVIOMMU-TEST-END after GUEST_TIMEOUT + BOOT_ALLOWANCE seconds.
    GUEST_TIMEOUT = 300
    BOOT_ALLOWANCE = 120
    # no_timer_check: Linux's boot-time check that the PIT interrupt arrives
    # through the I/O APIC gives TCG about 65 ms of host time; on a loaded
    # host it fails now and then (measured with the C device as with ours:
    # 'timer doesn't work through Interrupt-remapped IO-APIC', then a panic).
    KERNEL_PARAMS = 'console=ttyS0 panic=-1 no_timer_check'

    def setUp(self):
        super().setUp()
        self.kit, why = Kit.load()
        if self.kit is None:
            self.fail(why)    # not a skip: a missing kit must not look like a pass

    def q35_vm(self, iommu=None, memory='512M'):
        """A q35 TCG machine with the kit's firmware; `iommu` is the -device string
        of the IOMMU (e.g. 'intel-iommu'), placed before every other device."""
        self.set_machine('q35')
        vm = self.vm
        vm.add_args('-accel', 'tcg', '-cpu', 'max', '-m', memory, '-smp', '1',
                    '-nodefaults', '-no-reboot', '-L', self.kit.firmware_dir)
        if iommu:
            vm.add_args('-device', iommu)
        return vm

    def add_disk(self, vm, path, iommu_platform=True, node='disk0'):
        vm.add_args('-blockdev',
                    f'driver=raw,node-name={node},read-only=on,'
                    f'file.driver=file,file.filename={path},file.read-only=on')
        dev = f'virtio-blk-pci,drive={node},id=vblk-{node},disable-legacy=on'
        if iommu_platform:
            dev += ',iommu_platform=on'
        vm.add_args('-device', dev)

    def add_nic(self, vm, model, iommu_platform=True, netdev='n0'):
        """A NIC on QEMU's user network (slirp: guest 10.0.2.15, host 10.0.2.2).
        `model` is 'e1000e' (its DMA goes through the IOMMU as it is) or
        'virtio-net' (modern-only virtio-net-pci, with iommu_platform=on unless
        told otherwise).  No option ROM: the kit has none and -kernel needs none."""
        vm.add_args('-netdev', f'user,id={netdev},ipv6=off')
        if model == 'e1000e':
            dev = f'e1000e,netdev={netdev},romfile='
        elif model == 'virtio-net':
            dev = f'virtio-net-pci,netdev={netdev},romfile=,disable-legacy=on'
            if iommu_platform:
                dev += ',iommu_platform=on'
        else:
            raise ValueError(f'unknown NIC model {model!r}')
        vm.add_args('-device', dev)

    def boot_and_collect(self, vm, initrd, append='', kernel=None, during=None):
        """Launch, wait for RVIOMMU-TEST-END and QEMU's exit; return a GuestResult.
        `kernel` defaults to the kit's.  `during()`, if given, runs in this thread
        while another one reads the console (a test that talks to the guest over
        other channels); an exception from it fails the test once QEMU is gone."""
        params = f'{self.KERNEL_PARAMS} rviommu.timeout={self.GUEST_TIMEOUT} {append}'.strip()
        vm.set_console()
        vm.add_args('-kernel', kernel or self.kit.kernel, '-initrd', initrd, '-append', params)
        self.log.info('kernel command line: %s', params)
        t0 = time.monotonic()
        vm.launch()
        limit = self.GUEST_TIMEOUT + self.BOOT_ALLOWANCE
        vm.console_socket.settimeout(limit)
        expired = threading.Event()

        def deadline():
            expired.set()
            self.log.error('no RVIOMMU-TEST-END after %ds: killing QEMU', limit)
            try:
                os.kill(vm.get_pid(), signal.SIGKILL)
            except (OSError, TypeError):
                pass

        timer = threading.Timer(limit, deadline)
        timer.start()
        console = {}

        def read_console():
            try:
                console['out'] = wait_for_console_pattern(
                    self, 'RVIOMMU-TEST-END', failure_message='Kernel panic - not syncing', vm=vm)
            except BaseException as e:   # pylint: disable=broad-except
                console['error'] = e

        during_error = None
        try:
            if during is None:
                read_console()
            else:
                reader = threading.Thread(target=read_console, daemon=True)
                reader.start()
                try:
                    during()
                except BaseException as e:   # pylint: disable=broad-except
                    during_error = e
                    self.log.error('while the guest ran: %r; killing QEMU', e)
                    try:
                        os.kill(vm.get_pid(), signal.SIGKILL)
                    except (OSError, TypeError):
                        pass
                reader.join(limit)
            if during_error is not None:
                raise during_error
            if 'error' in console:
                raise console['error']
            out = console['out']
        except (socket.timeout, AssertionError) as e:
            if during_error is not None:
                raise
            if expired.is_set() or isinstance(e, socket.timeout):
                self.fail(f'the guest gave no RVIOMMU-TEST-END within {limit}s '
                          f'(console: {self.console_log_name})')
            try:
                vm.wait(timeout=10)
            except Exception:   # pylint: disable=broad-except
                pass
            qlog = (vm.get_log() or '').strip()
            if qlog:
                self.fail(f'{e}; QEMU exited with status {vm.exitcode()}: {qlog[-2000:]}')
            raise
        finally:
            timer.cancel()
        t_end = time.monotonic() - t0
        vm.wait(timeout=60)
        t_exit = time.monotonic() - t0
        res = GuestResult(out.decode(errors='replace'))
        res.seconds_to_end = t_end
        res.seconds_to_exit = t_exit
        res.exitcode = vm.exitcode()
        self.log.info('guest verdict: %s %s; END after %.1fs, QEMU exited after %.1fs '
                      '(status %s)', res.result, res.reason, t_end, t_exit, res.exitcode)
        up = re.search(r'^\[\s*([0-9.]+)\] Run /init as init process', res.text, re.M)
        if up:
            self.log.info('guest kernel uptime at /init: %ss', up.group(1))
        return res

    # -- QEMU in QEMU --------------------------------------------------------

    def nested_qemu_files(self):
        """(host, guest) pairs for an L1 initramfs that runs our QEMU: the binary
        without debug info, its libraries and loader, and the firmware."""
        # At a fixed place per binary, so that its initramfs (named by its
        # files' paths, cached by their content) is replaced, not added to,
        # when the binary changes.
        where = self.kit.dir / 'l1-qemu' / hashlib.sha256(self.qemu_bin.encode()).hexdigest()[:12]
        where.mkdir(parents=True, exist_ok=True)
        stripped = str(where / 'qemu-system-x86_64')
        subprocess.run(['strip', '--strip-debug', '-o', stripped, self.qemu_bin], check=True)
        files = [(stripped, '/usr/bin/qemu-system-x86_64')] + self.shared_libraries(self.qemu_bin)
        fw = self.kit.firmware_dir
        for name in ('bios-256k.bin', 'linuxboot_dma.bin', 'kvmvapic.bin'):
            files.append((os.path.join(fw, name), f'/usr/share/qemu/{name}'))
        return files

    def host_fail_files(self):
        """(host, guest) pairs that put tests/guest/host-fail.c, the LD_PRELOAD
        library that makes chosen iommufd and vfio requests of L2's QEMU
        fail, at /usr/lib/rviommu-host-fail.so of an L1 initramfs (compiled
        here, cached by the source's content)."""
        src = repo_dir() / 'tests' / 'guest' / 'host-fail.c'
        key = hashlib.sha256(src.read_bytes()).hexdigest()[:12]
        out = self.kit.dir / 'host-fail' / f'host-fail-{key}.so'
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix('.tmp')
            subprocess.run(['gcc', '-O2', '-Wall', '-Wextra', '-Werror', '-shared', '-fPIC',
                            '-o', str(tmp), str(src), '-ldl'], check=True)
            tmp.rename(out)
        return [(str(out), '/usr/lib/rviommu-host-fail.so')]

    @staticmethod
    def shared_libraries(*binaries):
        """(host, guest) pairs of the libraries and loader `ldd` lists for
        `binaries`, each once, at the paths the binaries look for them."""
        libs = set()
        for b in binaries:
            ldd = subprocess.run(['ldd', b], check=True, capture_output=True, text=True).stdout
            for line in ldd.splitlines():
                parts = line.split()
                path = parts[2] if '=>' in parts and len(parts) > 2 else parts[0]
                if path.startswith('/'):
                    libs.add(path)
        return [(os.path.realpath(p), p) for p in sorted(libs)]

    @staticmethod
    def l1_body(script):
        """/init body of an L1 guest: tests/guest/l1-lib.sh, then `script`."""
        guest = repo_dir() / 'tests' / 'guest'
        return (guest / 'l1-lib.sh').read_text() + '\n' + (guest / script).read_text()

    @staticmethod
    def l2_qemu_log(res):
        """What L1's QEMU (the one running L2) printed on stdout/stderr."""
        out, inside = [], False
        for line in res.lines:
            if 'RVIOMMU-L1-L2-QEMU-LOG-BEGIN' in line:
                inside = True
            elif 'RVIOMMU-L1-L2-QEMU-LOG-END' in line:
                inside = False
            elif inside:
                out.append(line)
        return out

    def assertNoDmarFaults(self, faults, what='DMAR faults in dmesg'):
        """No DMAR fault lines. (The one interrupt-remapping fault Linux
        could provoke at boot, a compatibility-format I/O APIC interrupt
        while CFIS is clear, happens only with x-strict-ir=on:
        docs/rviommu/testing.rst.)"""
        self.assertEqual(faults, [], what)

    def assertRemappedInterrupts(self, res, remapped=True, prefix=''):
        """The disk's and the NIC's functions and the I/O APIC took
        interrupts (tests/guest/dma-read.sh's RVIOMMU-IRQ lines; `prefix`
        'L2-' for an L2 guest's), all through interrupt remapping (chips
        IR-PCI-MSI*, IR-IO-APIC) or, with `remapped` False, none."""
        counts = {}
        for line in res.values.get(prefix + 'IRQ', []):
            bdf, count, chip = line.split()[:3]
            self.assertEqual(chip.startswith('IR-'), remapped, line)
            counts[bdf] = counts.get(bdf, 0) + int(count)
        self.log.info('interrupts per function: %s', counts)
        self.assertGreater(counts.get('IO-APIC', 0), 0, 'no I/O APIC interrupts')
        for key in ('PCI-DEVICE', 'NET-PCI-DEVICE'):
            bdf = res.value(prefix + key, '').split(' ')[0]
            self.assertGreater(counts.get(bdf, 0), 0, f'no interrupts of {prefix}{key} {bdf}')

    def assertGuestPassed(self, res):
        self.assertTrue(res.begun, 'the guest never reached /init (RVIOMMU-TEST-BEGIN)')
        self.assertEqual(res.result, 'PASS',
                         f'guest verdict: {res.result} {res.reason} '
                         f'(console: {self.console_log_name})')
        self.assertEqual(res.exitcode, 0, 'QEMU did not exit cleanly after poweroff')


class QtestVmTest(QemuSystemTest):
    """A test that starts q35 machines under `-accel qtest` (no guest code)
    and shuts them down before the scratch dir holding their logs goes."""

    def setUp(self):
        super().setUp()
        self._qtest_vms = []

    def tearDown(self):
        for vm in self._qtest_vms:
            vm.shutdown()
        super().tearDown()

    def firmware(self):
        kit, why = Kit.load()
        if kit is None:
            self.fail(why)
        return kit.firmware_dir

    def qtest_vm(self, name, *devices):
        """Launch q35 (128 MiB) with the given -device arguments."""
        vm = q35_qtest_machine(self.qemu_bin, self.workdir, self.firmware(), name, '128M',
                               devices)
        self._qtest_vms.append(vm)
        return vm


def q35_qtest_machine(binary, workdir, firmware, name, mem, devices):
    """`binary` launched as q35 under `-accel qtest` with `mem` of RAM and
    the given -device arguments."""
    from qemu.machine.qtest import QEMUQtestMachine
    vm = QEMUQtestMachine(binary, base_temp_dir=workdir, name=name)
    vm.add_args('-L', firmware, '-machine', 'q35', '-accel', 'qtest', '-m', mem,
                '-nodefaults', '-display', 'none')
    for dev in devices:
        vm.add_args('-device', dev)
    vm.launch()
    return vm


def reference_qemu(test):
    """The reference build's QEMU (10.2.2 with the C intel-iommu); fails
    `test` when it has not been built."""
    path = os.path.join(cache_dir(), 'ref', 'build', 'qemu-system-x86_64')
    if not os.access(path, os.X_OK):
        test.fail(f'no reference build at {path} (scripts/setup.sh ref)')
    return path


class MachinesTest(QemuSystemTest):
    """A test whose machines (`self.vms`) are shut down at its end."""

    def setUp(self):
        super().setUp()
        self.vms = []

    def tearDown(self):
        for vm in self.vms:
            vm.shutdown()
        super().tearDown()

    def aarch64_binary(self, build):
        """qemu-system-aarch64 of `build` ('rs': ours, 'ref': the C
        device's); fails the test when it has not been built."""
        path = os.path.join(cache_dir(), build, 'build', 'qemu-system-aarch64')
        if not os.access(path, os.X_OK):
            self.fail(f'no {path} (scripts/setup.sh {build})')
        return path


class ReferenceTest(MachinesTest):
    """A test that runs the reference build (QEMU 10.2.2 with the C
    intel-iommu, `scripts/setup.sh ref`) next to ours; `self.vms` are shut
    down at the end."""

    def setUp(self):
        super().setUp()
        self.ref_bin = reference_qemu(self)
        kit, why = Kit.load()
        if kit is None:
            self.fail(why)
        self.fw = kit.firmware_dir

    def q35_qtest(self, binary, name, mem, *devices):
        """Launch `binary` as q35 under `-accel qtest` with `mem` of RAM and
        the given -device arguments; shut down with the test."""
        vm = q35_qtest_machine(binary, self.workdir, self.fw, name, mem, devices)
        self.vms.append(vm)
        return vm
