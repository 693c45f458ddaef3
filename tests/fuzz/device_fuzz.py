#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Whole-device fuzzing of an IOMMU over qtest, our build against the C
reference build with the same seeds.

Each seed is a hostile-guest program (vtd_fuzz.py: a mode of the device, a
valid prologue, then random and mutated-valid register, table, queue, DMA
and MSI steps) that runs on a fresh QEMU of each build.  The outcome of a
run is classified:

* ok        every step answered, QEMU alive at the end and stopping on SIGTERM
* panic     a Rust panic ("panicked at" in QEMU's output), whatever followed
* abort     SIGABRT without a Rust panic (an assertion, abort())
* signal    any other fatal signal (SIGSEGV, SIGBUS, SIGFPE, ...)
* exit      QEMU exited by itself (exit(1) after an error message)
* hang      a step got no answer within --step-timeout seconds
* memory    the random steps run twice; QEMU's own anonymous memory (guest
            RAM is a memfd, not counted) grew by more than --max-growth MiB
            over the second pass (one-off allocations, such as QEMU's flash
            storage on a first flash write, happen in the first; the lowest
            samples of each pass's last quarter are compared)
* isolation a test-device read completed to a page that no version of the
            tables allowed for that requester (vtd_model.py), or completed
            where nothing was ever mapped

A run that is not ok leaves a reproducer (the QEMU arguments and the qtest
lines up to the failing step) in OUT/repro/, which --replay runs again.

Usage:
  device_fuzz.py --iommu vtd --ours QEMU --ref QEMU --firmware DIR
                 (--seeds A-B | --seconds N [--first-seed S]) [--steps K] [--out DIR]
  device_fuzz.py --replay FILE --ours QEMU --firmware DIR
Exit status 1 when our build had a run that is not ok (the C build's
findings are reported, not failed on).
"""

import argparse
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'functional'))
import smmu_fuzz  # pylint: disable=wrong-import-position
import vtd_fuzz  # pylint: disable=wrong-import-position
from vtd_qtest import Channel, QtestError  # pylint: disable=wrong-import-position

GENERATORS = {'vtd': vtd_fuzz, 'smmu': smmu_fuzz}
BAD = ('panic', 'abort', 'signal', 'exit', 'hang', 'memory', 'isolation')


def rss_anon_kib(pid):
    try:
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            if line.startswith('RssAnon:'):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class Run:
    """One program on one QEMU binary."""

    def __init__(self, binary, args, firmware, step_timeout, max_growth_mib, workdir, ram_mib=256):
        self.binary, self.args, self.firmware = binary, args, firmware
        self.ram_mib = ram_mib
        self.step_timeout, self.max_growth = step_timeout, max_growth_mib * 1024
        self.workdir = workdir
        self.watch = set()       # command lines whose answers are counted
        self.watched = {}
        self.capture = set()     # steps whose answers are kept (isolation checks)
        self.answers = {}

    def command(self, sock, qmp=None):
        extra = ['-qmp', f'unix:{qmp},server=on,wait=off'] if qmp else []
        return [self.binary, *extra, '-accel', 'qtest', '-m', f'{self.ram_mib}M', '-nodefaults',
                '-display', 'none', '-L', self.firmware, '-qtest', f'unix:{sock}',
                '-qtest-log', 'none', '-object', f'memory-backend-memfd,id=ram,size={self.ram_mib}M',
                '-machine', 'memory-backend=ram', *self.args]

    def execute(self, steps, prologue_steps, repeat=True):
        """Run the steps, the random ones twice (with `repeat`); returns
        (outcome, index of the last step sent, detail, seconds, growth KiB
        over the second pass).  A one-off allocation (QEMU's flash storage
        on a first flash write, a buffer sized by the largest request)
        happens in the first pass; what grows again in the second is a leak.
        RssAnon is sampled after each step of the last quarter of each pass
        and the lowest samples compared: some steps make QEMU hold memory
        for a while (a DMA through virt's flash: over 1 GiB for a few steps,
        in both builds alike), which one sample at each pass's end could
        catch on one side only."""
        first_pass_end = len(steps) - 1
        quarter = max(1, (len(steps) - prologue_steps) // 4)
        windows = ((first_pass_end - quarter + 1, first_pass_end),
                   (first_pass_end + len(steps) - prologue_steps - quarter + 1,
                    first_pass_end + len(steps) - prologue_steps))
        lowest = [None, None]
        if repeat:
            steps = steps + steps[prologue_steps:]
        sock = os.path.join(self.workdir, 'qtest.sock')
        if os.path.exists(sock):
            os.unlink(sock)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(sock)
        listener.listen(1)
        log_path = os.path.join(self.workdir, 'qemu.log')
        log = open(log_path, 'wb')
        t0 = time.monotonic()
        # '#hmp COMMAND' lines go to the monitor (QMP human-monitor-command)
        needs_qmp = any(l.startswith('#hmp ') for _, lines in steps for l in lines)
        qmp_path = os.path.join(self.workdir, 'qmp.sock') if needs_qmp else None
        if qmp_path and os.path.exists(qmp_path):
            os.unlink(qmp_path)
        for attempt in range(20):
            try:
                proc = subprocess.Popen(self.command(sock, qmp_path), stdout=log,
                                        stderr=subprocess.STDOUT)
                break
            except OSError:          # the binary is being relinked: wait for it
                if attempt == 19:
                    raise
                time.sleep(3)
        listener.settimeout(30)
        try:
            conn, _ = listener.accept()
        except (TimeoutError, socket.timeout):
            proc.kill()
            proc.wait()
            return self.classify(proc, log_path, 'start', -1, 'did not connect', t0, None)
        finally:
            listener.close()
        conn.settimeout(self.step_timeout)
        qmp = None
        if qmp_path:
            try:
                qmp = Qmp(qmp_path, self.step_timeout)
            except (OSError, QtestError) as e:
                proc.kill()
                proc.wait()
                return self.classify(proc, log_path, 'start', -1, f'no QMP: {e}', t0, None)
        buf = b''
        index = -1
        try:
            for index, (_label, lines) in enumerate(steps):
                # Batches small enough that QEMU's answers never fill the
                # socket while we are still sending.
                for first in range(0, len(lines), 16):
                    batch = lines[first:first + 16]
                    if any(l.startswith('#hmp ') for l in batch):
                        for l in batch:      # one at a time, in order
                            answer = self.one(conn, qmp, l, buf)
                            buf = answer[1]
                            if index in self.capture:
                                self.answers.setdefault(index, []).append(answer[0])
                        continue
                    conn.sendall(''.join(l + '\n' for l in batch).encode())
                    for sent in batch:
                        line, buf = self.answer(conn, buf)
                        if index in self.capture:
                            self.answers.setdefault(index, []).append(line)
                        if sent in self.watch:
                            self.watched[(sent, line)] = self.watched.get((sent, line), 0) + 1
                for w, (lo, hi) in enumerate(windows):
                    if lo <= index <= hi:
                        rss = rss_anon_kib(proc.pid)
                        if rss is not None and (lowest[w] is None or rss < lowest[w]):
                            lowest[w] = rss
        except (TimeoutError, socket.timeout):
            proc.kill()
            proc.wait()
            conn.close()
            return ('hang', index, f'no answer within {self.step_timeout}s',
                    time.monotonic() - t0, None)
        except (ConnectionError, OSError, QtestError):
            conn.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            return self.classify(proc, log_path, 'died', index, '', t0, None)
        growth = None if None in lowest or not repeat else lowest[1] - lowest[0]
        # Memory QEMU frees a little later is not growth (both builds hold
        # over 1 GiB for a while after some DMA through virt's flash, then
        # give it back): before calling it so, let it a few seconds come down.
        settle = time.monotonic() + 5
        while growth is not None and growth > self.max_growth and time.monotonic() < settle:
            time.sleep(0.25)
            rss = rss_anon_kib(proc.pid)
            if rss is not None:
                lowest[1] = min(lowest[1], rss)
                growth = lowest[1] - lowest[0]
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            conn.close()
            return ('hang', index, 'did not stop on SIGTERM', time.monotonic() - t0, growth)
        conn.close()
        if proc.returncode not in (0, -signal.SIGTERM):
            return self.classify(proc, log_path, 'at exit', index, '', t0, growth)
        if growth is not None and growth > self.max_growth:
            return ('memory', index, f'RssAnon +{growth // 1024} MiB over the second pass',
                    time.monotonic() - t0, growth)
        return ('ok', index, '', time.monotonic() - t0, growth)

    @staticmethod
    def answer(conn, buf):
        """The next qtest answer (IRQ notices skipped) and the buffer left."""
        while True:
            while b'\n' not in buf:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    raise ConnectionError('qtest connection closed')
                buf += chunk
            line, buf = buf.split(b'\n', 1)
            if not line.startswith(b'IRQ'):
                return line.decode(errors='replace').strip(), buf

    def one(self, conn, qmp, line, buf):
        """Send one line (qtest, or '#hmp' to the monitor); (its answer,
        the qtest buffer left)."""
        if line.startswith('#hmp '):
            return qmp.hmp(line[5:]), buf
        conn.sendall((line + '\n').encode())
        return self.answer(conn, buf)

    @staticmethod
    def classify(proc, log_path, when, index, detail, t0, growth):
        text = Path(log_path).read_text(errors='replace')
        rc = proc.returncode
        tail = ' | '.join(text.strip().splitlines()[-1:])[:400]
        if 'panicked at' in text:
            kind = 'panic'
            tail = next((l for l in text.splitlines() if 'panicked at' in l), tail)[:400]
        elif rc == -signal.SIGABRT:
            kind = 'abort'
        elif rc is not None and rc < 0:
            kind = 'signal'
            tail = f'signal {-rc} ({signal.Signals(-rc).name}) {tail}'
        else:
            kind = 'exit'
            tail = f'exit {rc} {tail}'
        return (kind, index, f'{when}: {detail}{tail}', time.monotonic() - t0, growth)


class Qmp:
    """Just enough QMP for human-monitor-command, on vtd_qtest's Channel."""

    def __init__(self, path, timeout):
        self.chan, self.timeout = Channel(path, connect_timeout=30), timeout
        self.read()                      # greeting
        self.call('qmp_capabilities')

    def read(self):
        while True:
            msg = json.loads(self.chan.read_until(b'\n', self.timeout))
            if 'event' not in msg:
                return msg

    def call(self, cmd, **args):
        self.chan.send(json.dumps({'execute': cmd, 'arguments': args}) + '\n')
        return self.read()

    def hmp(self, command):
        reply = self.call('human-monitor-command', **{'command-line': command})
        if 'return' not in reply:
            raise ConnectionError(f'QMP: {reply}')
        return reply['return']


def write_repro(path, args, steps, upto, ram_mib=256):
    with open(path, 'w') as f:
        f.write(f'# ram: {ram_mib}\n')
        f.write(f'# args: {shlex.join(args)}\n')
        for label, lines in steps[:upto + 1]:
            f.write(f'# step: {label}\n')
            for line in lines:
                f.write(line + '\n')


def read_repro(path):
    args, steps, ram = None, [], 256
    for line in Path(path).read_text().splitlines():
        if line.startswith('# ram: '):
            ram = int(line.split()[2])
        elif line.startswith('# args: '):
            args = shlex.split(line[len('# args: '):])
        elif line.startswith('# step: '):
            steps.append((line[len('# step: '):], []))
        elif line and steps:
            steps[-1][1].append(line)
    return args, steps, ram


def parse_seeds(text):
    a, _, b = text.partition('-')
    return range(int(a), int(b or a) + 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--iommu', default='vtd', choices=sorted(GENERATORS))
    ap.add_argument('--ours', required=True)
    ap.add_argument('--ref')
    ap.add_argument('--firmware', required=True)
    ap.add_argument('--seeds')
    ap.add_argument('--seconds', type=float)
    ap.add_argument('--first-seed', type=int, default=1)
    ap.add_argument('--steps', type=int, default=300)
    ap.add_argument('--step-timeout', type=float, default=30)
    ap.add_argument('--max-growth', type=int, default=64, help='MiB')
    ap.add_argument('--out', default='fuzz-out')
    ap.add_argument('--replay')
    ap.add_argument('--brief', action='store_true',
                    help="print only our build's failures and a progress line every 30 s")
    opts = ap.parse_args()
    out = Path(opts.out)
    (out / 'repro').mkdir(parents=True, exist_ok=True)
    work = tempfile.mkdtemp(prefix='rviommu-fuzz-')

    if opts.replay:
        args, steps, ram = read_repro(opts.replay)
        run = Run(opts.ours, args, opts.firmware, opts.step_timeout, opts.max_growth, work, ram)
        kind, index, detail, secs, _ = run.execute(steps, 1, repeat=False)
        print(f'{kind} at step {index} ({steps[index][0] if index >= 0 else "-"}): {detail}')
        return 0 if kind == 'ok' else 1

    gen = GENERATORS[opts.iommu]
    builds = [('ours', opts.ours)] + ([('C', opts.ref)] if opts.ref else [])
    results = []
    watched_totals = {}
    check_totals = {}
    deadline = time.monotonic() + opts.seconds if opts.seconds else None
    seeds = parse_seeds(opts.seeds) if opts.seeds else iter(lambda: None, 0)
    seed = opts.first_seed - 1
    t_start = last_progress = time.monotonic()
    for s in seeds:
        seed = s if s is not None else seed + 1
        if deadline and time.monotonic() > deadline:
            break
        prog = gen.Program(seed, opts.steps)
        args = prog.qemu_args()
        prologue = prog.prologue_steps
        all_steps = prog.steps + prog.steps[prologue:]
        row = {'seed': seed, 'mode': prog.mode, 'steps': len(prog.steps)}
        for name, binary in builds:
            run = Run(binary, args, opts.firmware, opts.step_timeout,
                      max(opts.max_growth, getattr(prog, 'MAX_GROWTH_MIB', 0)), work,
                      getattr(prog, 'RAM_MIB', 256))
            run.watch = set(getattr(prog, 'WATCH', ()))
            run.capture = {c[0] for c in prog.checks} | {c[0] for c in getattr(prog, 'irq_checks', ())}
            kind, index, detail, secs, growth = run.execute(prog.steps, prologue)
            stats = check_totals.setdefault(name, {})
            violations = prog.verify(run.answers, stats)
            if violations and kind == 'ok':
                kind, detail = 'isolation', '; '.join(violations[:3])
                index = int(violations[0].split()[1].rstrip(':'))
            for (line, answer), n in run.watched.items():
                totals = watched_totals.setdefault(name, {})
                key = prog.watch_key(line, answer) if hasattr(prog, 'watch_key') else answer
                totals[key] = totals.get(key, 0) + n
            row[name] = {'outcome': kind, 'step': index, 'detail': detail,
                         'seconds': round(secs, 1), 'growth_kib': growth,
                         'label': all_steps[index][0] if 0 <= index < len(all_steps) else None}
            if kind != 'ok':
                repro = out / 'repro' / f'{opts.iommu}-seed{seed}-{name}.txt'
                write_repro(repro, args, all_steps, max(index, 0), getattr(prog, 'RAM_MIB', 256))
                row[name]['repro'] = str(repro)
        results.append(row)
        line = f'  seed {seed:5d} {prog.mode:14s}'
        for name, _ in builds:
            r = row[name]
            line += f' {name}: {r["outcome"]:6s} ({r["seconds"]:5.1f} s)'
            if r['outcome'] != 'ok':
                line += f' at step {r["step"]} [{r["label"]}] {r["detail"][:160]}'
        crashed = [n for n, _ in builds if row[n]['outcome'] in ('panic', 'abort', 'signal', 'hang')]
        if not opts.brief or row['ours']['outcome'] != 'ok' or crashed:
            print(line, flush=True)
        elif time.monotonic() - last_progress > 30:
            last_progress = time.monotonic()
            print(f'  ... {len(results)} seeds in {last_progress - t_start:.0f} s (last {seed}); '
                  + '; '.join(f'{n}: ' + ', '.join(
                      f'{k} {sum(1 for r in results if r[n]["outcome"] == k)}'
                      for k in sorted({r[n]['outcome'] for r in results})) for n, _ in builds),
                  flush=True)

    summary = {}
    for name, _ in builds:
        counts = {}
        for r in results:
            counts[r[name]['outcome']] = counts.get(r[name]['outcome'], 0) + 1
        summary[name] = counts
    for name, n in check_totals.items():
        print(f'{name}: isolation model: {n.get("checked", 0)} test-device reads checked, '
              f'{n.get("completed", 0)} completed, {n.get("tagged", 0)} of them from the '
              f'tagged pages; {n.get("irr checked", 0)} IRR readings checked, '
              f'{n.get("vectors delivered", 0)} new vectors in them; '
              f'{n.get("irq checks", 0)} GIC readings checked, {n.get("ids pending", 0)} '
              f'interrupt ids pending in them ({n.get("msi ids", 0)} from MSIs)')
    for name, totals in watched_totals.items():
        print(f'{name}: answers to watched reads: '
              + ', '.join(f'{a} x{n}' for a, n in sorted(totals.items(), key=lambda x: -x[1])[:8]))
    report = {'iommu': opts.iommu, 'steps': opts.steps, 'runs': len(results), 'watched': watched_totals, 'isolation_checks': check_totals,
              'seconds': round(time.monotonic() - t_start), 'summary': summary, 'results': results}
    (out / f'report-{opts.iommu}.json').write_text(json.dumps(report, indent=1))
    print(f'{opts.iommu}: {len(results)} seeds in {report["seconds"]} s; '
          + '; '.join(f'{n}: ' + ', '.join(f'{k} {v}' for k, v in sorted(c.items()))
                      for n, c in summary.items()))
    for name, _ in builds:
        kinds = {}
        for r in results:
            o = r[name]
            if o['outcome'] != 'ok':
                key = f"{o['outcome']}: " + re.sub(r'0x[0-9a-f]+|\d+', 'N', o['detail'].split('| ')[-1])[:120]
                kinds[key] = kinds.get(key, 0) + 1
        for key, n in sorted(kinds.items(), key=lambda x: -x[1])[:8]:
            print(f'  {name} x{n}: {key}')
    bad = [r for r in results if r['ours']['outcome'] in BAD]
    for r in bad:
        print(f'  OURS {r["ours"]["outcome"]}: seed {r["seed"]} ({r["mode"]}), '
              f'reproducer {r["ours"].get("repro")}')
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
