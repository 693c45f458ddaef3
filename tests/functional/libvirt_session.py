# A private libvirt for a test: Debian's libvirtd (scripts/setup.sh testdeps), started by
# the test in session mode (qemu:///session) with every directory of its own, and virsh
# talking to it.  Nothing of a system libvirt is used or touched.
#
# Session mode is libvirt's unprivileged mode: as root (CI), the daemon, virsh and the
# QEMUs it starts run as `nobody`; otherwise as the user running the test.  Such a user
# cannot read ~root/.cache, so everything a domain needs (the emulators, installed with
# scripts/install.sh, kernels, initramfs, disks) is copied into the session's directory
# under $TMPDIR: that is also how a QEMU installed with `make install` is used.
#
# SPDX-License-Identifier: GPL-2.0-or-later

import hashlib
import json
import os
import pwd
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from qemu_test import QemuSystemTest

from rviommu_kit import cache_dir, repo_dir


class LibvirtError(Exception):
    pass


class LibvirtSession:

    def __init__(self, log):
        self.log = log
        self.libvirtd = shutil.which('libvirtd', path='/usr/sbin:/usr/bin:' + os.environ.get('PATH', ''))
        self.virsh_bin = shutil.which('virsh')
        if not self.libvirtd or not self.virsh_bin:
            raise LibvirtError('libvirtd/virsh not installed: run scripts/setup.sh testdeps '
                               '(make testdeps)')
        if os.geteuid() == 0:
            pw = pwd.getpwnam('nobody')
            self.uid, self.gid = pw.pw_uid, pw.pw_gid
        else:
            self.uid, self.gid = os.getuid(), os.getgid()
        self.dir = Path(tempfile.mkdtemp(prefix='rviommu-lv.'))
        os.chmod(self.dir, 0o755)
        self.home = self.dir / 'home'
        self.run_dir = self.dir / 'run'
        for d in (self.home, self.run_dir):
            d.mkdir(mode=0o700)
            os.chown(d, self.uid, self.gid)
        self.env = {
            'PATH': '/usr/sbin:/usr/bin:/sbin:/bin',
            'HOME': str(self.home),
            'XDG_RUNTIME_DIR': str(self.run_dir),
            'XDG_CONFIG_HOME': str(self.home / '.config'),
            'XDG_CACHE_HOME': str(self.home / '.cache'),
            'XDG_DATA_HOME': str(self.home / '.local' / 'share'),
            'LANG': 'C.UTF-8',
        }
        self.daemon = None
        self.daemon_log = self.dir / 'libvirtd.log'

    # -- files -----------------------------------------------------------------

    def install(self, build, name):
        """scripts/install.sh of `build` into the session's directory; the prefix."""
        prefix = self.dir / name
        r = subprocess.run([str(repo_dir() / 'scripts' / 'install.sh'), '--build', str(build),
                            str(prefix)], capture_output=True, text=True, check=False)
        self.log.info('install %s:\n%s', build, r.stdout)
        if r.returncode != 0:
            raise LibvirtError(f'scripts/install.sh failed:\n{r.stdout}{r.stderr}')
        subprocess.run(['chmod', '-R', 'a+rX', str(prefix)], check=True)
        return prefix

    def copy_in(self, path, name=None):
        """A copy of `path` the session's user can read; its path."""
        dst = self.dir / (name or Path(path).name)
        shutil.copyfile(path, dst)
        os.chmod(dst, 0o644)
        return dst

    def writable(self, name):
        """A directory of the session's user (for save images, logs)."""
        d = self.dir / name
        d.mkdir(exist_ok=True)
        os.chown(d, self.uid, self.gid)
        return d

    def link_firmware_descriptor(self, path):
        """Make the firmware descriptor `path` one the session's libvirt reads
        (~/.config/qemu/firmware: the user's directory of QEMU's firmware.json
        search path)."""
        d = self.home / '.config' / 'qemu' / 'firmware'
        d.mkdir(parents=True, exist_ok=True)
        (d / Path(path).name).symlink_to(path)
        for p in (self.home / '.config', self.home / '.config' / 'qemu', d):
            os.chown(p, self.uid, self.gid)

    # -- the daemon ------------------------------------------------------------

    def _as_user(self):
        if self.uid == os.getuid():
            return {}
        return {'user': self.uid, 'group': self.gid, 'extra_groups': []}

    def start(self, timeout=30):
        with open(self.daemon_log, 'w') as out:
            # --timeout: a daemon left behind by a killed test ends once idle.
            self.daemon = subprocess.Popen([self.libvirtd, '--timeout', '300'], env=self.env,
                                           stdin=subprocess.DEVNULL,
                                           stdout=out, stderr=subprocess.STDOUT,
                                           **self._as_user())
        sock = self.run_dir / 'libvirt' / 'libvirt-sock'
        deadline = time.monotonic() + timeout
        while not sock.exists():
            if self.daemon.poll() is not None:
                raise LibvirtError(f'libvirtd exited with status {self.daemon.returncode}: '
                                   f'{self.daemon_log.read_text()[-2000:]}')
            if time.monotonic() > deadline:
                raise LibvirtError(f'no {sock} after {timeout}s')
            time.sleep(0.1)
        self.log.info('libvirtd (pid %d, uid %d) on %s: %s', self.daemon.pid, self.uid, sock,
                      self.virsh('uri').strip())

    def virsh(self, *args, check=True, timeout=300):
        r = subprocess.run([self.virsh_bin, '-c', 'qemu:///session', *args], env=self.env,
                           capture_output=True, text=True, timeout=timeout, check=False,
                           **self._as_user())
        self.log.info('virsh %s -> %d\n%s%s', ' '.join(args), r.returncode, r.stdout[-3000:],
                      r.stderr)
        if check and r.returncode != 0:
            raise LibvirtError(f'virsh {" ".join(args)} failed ({r.returncode}): '
                               f'{r.stderr.strip()}')
        return r.stdout if check else r

    def domain_log(self, name):
        """QEMU's log of domain `name` (its command line, its messages)."""
        p = self.home / '.cache' / 'libvirt' / 'qemu' / 'log' / f'{name}.log'
        return p.read_text(errors='replace') if p.exists() else ''

    def command_line(self, name):
        """The QEMU command line libvirt last started domain `name` with, as
        its log gives it (environment, binary, arguments; shell-quoted)."""
        log = self.domain_log(name)
        start = log.rfind('starting up libvirt')
        if start < 0:
            raise LibvirtError(f'no start of {name} in its log')
        lines = []
        for line in log[start:].splitlines()[1:]:
            lines.append(line.rstrip('\\').strip())
            if not line.endswith('\\'):
                break
        return ' '.join(lines)

    def capabilities_cache(self, emulator):
        """The flags libvirt probed from `emulator` (its capabilities cache file)."""
        d = self.home / '.cache' / 'libvirt' / 'qemu' / 'cache' / 'capabilities'
        for f in sorted(d.glob('*.xml')) if d.exists() else ():
            text = f.read_text()
            if f'<emulator>{emulator}</emulator>' in text:
                return text
        raise LibvirtError(f'no capabilities cached for {emulator} in {d}')

    def stop(self, keep_dir=None):
        """Destroy what runs, stop the daemon; the session's logs are copied to
        `keep_dir` (if given); the session's directory is removed."""
        try:
            if self.daemon and self.daemon.poll() is None:
                r = self.virsh('list', '--name', check=False)
                for name in (r.stdout.split() if r.returncode == 0 else []):
                    self.virsh('destroy', name, check=False)
                self.daemon.terminate()
                try:
                    self.daemon.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.daemon.kill()
                    self.daemon.wait()
        finally:
            if keep_dir:
                keep = Path(keep_dir)
                keep.mkdir(parents=True, exist_ok=True)
                for f in [self.daemon_log, *self.dir.glob('*/*.console'),
                          *(self.home / '.cache' / 'libvirt' / 'qemu' / 'log').glob('*.log')]:
                    if f.exists():
                        shutil.copyfile(f, keep / f'libvirt-{f.name}')
            if not os.environ.get('QEMU_TEST_KEEP_SCRATCH'):
                shutil.rmtree(self.dir, ignore_errors=True)


# A whole line: one the console file holds only in part is not counted yet.
ROUND = re.compile(r'^RVIOMMU-ROUND: (\d+) ([0-9a-f]{64}) (\d+) (\d+)\r?\n', re.M)


class LibvirtTest(QemuSystemTest):
    """A test with a private libvirt session (self.lv) and our build installed
    into it (self.prefix, by scripts/install.sh); both go with the test, the
    session's logs are kept in the test's log directory."""

    def setUp(self):
        super().setUp()
        try:
            self.lv = LibvirtSession(self.log)
        except LibvirtError as e:
            self.fail(str(e))    # not a skip: a missing libvirt must not look like a pass
        try:
            self.prefix = self.lv.install(Path(self.qemu_bin).parent, 'ours')
            self.lv.start()
        except LibvirtError as e:
            self.lv.stop(keep_dir=self.outputdir)
            self.fail(str(e))

    def tearDown(self):
        self.lv.stop(keep_dir=self.outputdir)
        super().tearDown()

    def domcaps(self, emulator, machine, arch):
        """`virsh domcapabilities` of `emulator` for `machine` (TCG): the
        versioned machine type it names and the capability flags libvirt
        probed (its capabilities cache)."""
        out = self.lv.virsh('domcapabilities', '--emulatorbin', str(emulator),
                            '--machine', machine, '--virttype', 'qemu', '--arch', arch)
        m = re.search(r'<machine>([^<]+)</machine>', out)
        self.assertIsNotNone(m, f'domcapabilities names no {machine} machine')
        flags = set(re.findall(r"<flag name='([^']*)'/>", self.lv.capabilities_cache(emulator)))
        return m[1], flags

    def same_capabilities_as_reference(self, binary, machine, arch):
        """domcapabilities of our installed `binary` and of the reference
        build's (the C devices): the same machine and the same capability
        flags; ours."""
        ref = self.lv.install(cache_dir() / 'ref' / 'build', 'ref')
        ours_machine, ours = self.domcaps(self.prefix / 'bin' / binary, machine, arch)
        ref_machine, theirs = self.domcaps(ref / 'bin' / binary, machine, arch)
        self.log.info('%s: %s', ours_machine, sorted(f for f in ours if 'iommu' in f))
        self.assertEqual(ours_machine, ref_machine)
        self.assertEqual(sorted(ours ^ theirs), [],
                         'libvirt probes other capabilities from our build than from the C one')
        return ours_machine, ours

    @staticmethod
    def random_disk(path, mib, seed):
        """A disk of `mib` MiB of seeded pseudo-random bytes; its sha256."""
        rng = random.Random(seed)
        h = hashlib.sha256()
        with open(path, 'wb') as f:
            for _ in range(mib):
                block = rng.randbytes(1 << 20)
                h.update(block)
                f.write(block)
        os.chmod(path, 0o644)
        return h.hexdigest()

    # Rounds of disk reads (tests/guest/disk-rounds.sh): a disk of this size
    # of seeded random bytes, read once a second until the test ends the domain.
    DISK_MIB = 8

    def rounds_guest(self, kit, name, seed, cmdline):
        """The files of a domain `name` whose guest reads its disk in rounds, in
        the session's directory: (kernel, initrd, disk, its sha256, console file,
        the kernel command line: `cmdline` and the rounds' parameters)."""
        disk = self.lv.dir / 'disk.img'
        sha = self.random_disk(disk, self.DISK_MIB, seed)
        guest = repo_dir() / 'tests' / 'guest'
        body = (guest / 'disk-rounds.sh').read_text()
        modules = (guest / 'dma-read.modules').read_text().split()
        initrd = self.lv.copy_in(kit.initramfs('disk-rounds', body, modules), f'initrd-{kit.arch}')
        kernel = self.lv.copy_in(kit.kernel, f'vmlinuz-{kit.arch}')
        console = self.lv.writable('out') / f'{name}.console'
        cmdline = (f'{cmdline} rviommu.timeout=900 rviommu.rounds=1000 rviommu.round_pause=1 '
                   f'rviommu.sha256={sha}')
        return kernel, initrd, disk, sha, console, cmdline

    def wait_console(self, path, pattern, timeout, count=1, after=0):
        """Wait until the console file `path` holds `count` matches of the regex
        `pattern` that end after byte `after`; the whole text. Fails on a guest
        failure line or a kernel panic."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        text = ''
        while time.monotonic() < deadline:
            try:
                text = Path(path).read_bytes().decode('latin-1')
            except FileNotFoundError:
                text = ''
            for bad in ('RVIOMMU-FAIL:', 'Kernel panic - not syncing'):
                if bad in text:
                    line = next(l for l in text.splitlines() if bad in l)
                    self.fail(f'guest: {line}')
            if sum(1 for m in rx.finditer(text) if m.end() > after) >= count:
                return text
            time.sleep(0.2)
        self.fail(f'no {count} x {pattern!r} on the console within {timeout}s '
                  f'(last: {text.strip().splitlines()[-3:] if text.strip() else "nothing"})')

    def rounds(self, text, sha256, disk_sectors, what, after=0):
        """The numbers of the RVIOMMU-ROUND lines of `text` that end after byte
        `after`, each checked: the disk's digest, read from the
        device, no IOMMU fault."""
        found = []
        for m in ROUND.finditer(text):
            if m.end() <= after:
                continue
            n, s, sec, faults = int(m[1]), m[2], int(m[3]), int(m[4])
            self.assertEqual(s, sha256, f'{what}: round {n} read other data')
            self.assertGreaterEqual(sec, disk_sectors, f'{what}: round {n} was not read from the disk')
            self.assertEqual(faults, 0, f'{what}: IOMMU faults in dmesg by round {n}')
            found.append(n)
        self.assertTrue(found, f'{what}: no RVIOMMU-ROUND line')
        return found

    def save_restore(self, name, console, sha256, disk_sectors, emulator=None):
        """With domain `name` running rounds (tests/guest/disk-rounds.sh) on the
        console file `console`: save it to a file (the domain is gone), restore it
        (with `emulator` in place of the saved one, if given), check that the guest
        carries on: the next rounds, read through the IOMMU, no new boot."""
        size = os.path.getsize(console) if os.path.exists(console) else 0
        self.wait_console(console, ROUND.pattern, 300, after=size)
        image = self.lv.writable('save') / f'{name}.save'
        image.unlink(missing_ok=True)
        self.lv.virsh('save', name, str(image))
        self.assertTrue(image.exists() and image.stat().st_size > 0, 'no save image')
        self.assertNotIn(name, self.lv.virsh('list', '--name').split(),
                         'the domain still runs after virsh save')
        saved_at = os.path.getsize(console)
        before = self.rounds(Path(console).read_bytes().decode('latin-1'),
                             sha256, disk_sectors, 'before the save')
        restore = ['restore', str(image)]
        if emulator:
            xml = self.lv.virsh('save-image-dumpxml', str(image), '--security-info')
            xml, n = re.subn(r'<emulator>[^<]*</emulator>', f'<emulator>{emulator}</emulator>', xml)
            self.assertEqual(n, 1, 'no <emulator> in the saved domain')
            path = self.lv.dir / f'{name}-restore.xml'
            path.write_text(xml)
            restore += ['--xml', str(path)]
        self.lv.virsh(*restore)
        self.assertIn(name, self.lv.virsh('list', '--name').split())
        if emulator:
            self.assertIn(f'{emulator} -name guest={name}', self.lv.command_line(name))
        # A line cut by the save ends after it: it counts as the restored guest's.
        text = self.wait_console(console, ROUND.pattern, 120, count=2, after=saved_at)
        after = self.rounds(text, sha256, disk_sectors, 'after the restore', after=saved_at)
        self.assertEqual(after[0], before[-1] + 1,
                         'the restored guest did not carry on where it was saved')
        self.assertNotIn('Linux version', text[saved_at:], 'the guest booted again after the restore')
        self.log.info('rounds %s before the save, %s after the restore%s', before, after,
                      f' on {emulator}' if emulator else '')
        return text[saved_at:]

    def destroy(self, name):
        self.lv.virsh('destroy', name)
        self.assertNotIn(name, self.lv.virsh('list', '--all', '--name').split())

    def qmp(self, name, command, **arguments):
        """A QMP command through libvirt (virsh qemu-monitor-command); its return."""
        out = self.lv.virsh('qemu-monitor-command', name,
                            json.dumps({'execute': command, 'arguments': arguments}))
        reply = json.loads(out)
        if 'return' not in reply:
            self.fail(f'{command}: {reply}')
        return reply['return']
