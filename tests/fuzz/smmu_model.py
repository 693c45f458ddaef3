# SPDX-License-Identifier: GPL-2.0-or-later
"""An independent model of what SMMUv3 stream tables, context descriptors
and VMSAv8-64 tables allow a stream to reach, for the device fuzzer's
isolation checks (the SMMUv3 counterpart of vtd_model.py).

It reads the fuzzer's copy of guest RAM and its register writes, never the
device.  Both devices cache STEs, CDs and translations until invalidated, so
what a DMA may reach is the union over every stream-table base ever written,
every STE and CD ever readable through one (each version kept: a CD rewritten
in RAM may still be cached), walked against the RAM of every later step; translations are kept per VMID and ASID, as the TLB tags them.
Where the devices may read a field differently (reserved encodings, output
address size, the start level, concatenated start tables) the model takes
the union of the interpretations; a read of device memory makes the key
unknown.  Permissions are not modelled (reads only), nor access flags.
"""

import struct

from model_common import UNKNOWN, History
OA_MASKS = ((1 << 44) - 1, (1 << 48) - 1)


def bits(v, hi, lo):
    return (v >> lo) & ((1 << (hi - lo + 1)) - 1)


class Model(History):

    def __init__(self, ram, ram_base, ram_size, sids, pages):
        super().__init__()
        self.ram, self.ram_base, self.ram_end = ram, ram_base, ram_base + ram_size
        self.sids, self.pages = sids, pages
        self.ssids = set()
        self.strtabs = set()             # (base, cfg) ever written
        self.identity_ever = False       # SMMU disabled (GBPA) or a bypass stream
        self.stes = {s: set() for s in sids}
        # Every CD ever read for a stream, with what it was read for
        # (SubstreamID, VMID, stage-2 configuration): the devices cache CDs
        # too, so a CD rewritten in RAM may still be walked as it was.
        self.cds = {s: set() for s in sids}
        self.tags = {s: set() for s in sids}          # (vmid, asid) a stream used
        self.ident = set()               # (sid, ssid) with a bypass configuration ever
        self.unknown_sids = set()

    def where(self, addr, size=8):
        """'ram', 'none' (nothing: a read fails) or 'unknown' (flash, GIC,
        the SMMU, PCIe windows and ECAM on -M virt)."""
        if self.ram_base <= addr and addr + size <= self.ram_end:
            return 'ram'
        if addr >= 1 << 40 or self.ram_end <= addr < 0x40_0000_0000:
            return 'none'
        return 'unknown'

    def quad(self, addr):
        return struct.unpack('<Q', bytes(self.ram.get(addr + i, 0) for i in range(8)))[0]

    def quads(self, addr, n):
        return tuple(self.quad(addr + 8 * i) for i in range(n))

    # -- what the fuzzer did ------------------------------------------------

    def strtab(self, base, cfg):
        self.strtabs.add((base & 0x000f_ffff_ffff_ffc0, cfg & 0xffffffff))

    def smmu_off(self):
        self.identity_ever = True

    def read(self, addr, size, sid):
        kind = self.where(addr, size)
        if kind == 'unknown':
            self.unknown_sids.add(sid)
        return kind == 'ram'

    def update(self):
        for base, cfg in self.strtabs:
            log2size, split, fmt = bits(cfg, 5, 0), bits(cfg, 10, 6), bits(cfg, 17, 16)
            for sid in self.sids:
                if fmt == 0 or fmt not in (0, 1):
                    addrs = [base + 64 * sid]
                else:
                    addrs = []
                    for sp in {split, 6, 8, 10}:
                        l1 = base + 8 * (sid >> sp)
                        if not self.read(l1, 8, sid):
                            continue
                        d = self.quad(l1)
                        if bits(d, 4, 0):
                            addrs.append((d & 0x000f_ffff_ffff_ffc0) + 64 * (sid & ((1 << sp) - 1)))
                for a in addrs:
                    if self.read(a, 64, sid):
                        self.stes[sid].add(self.quads(a, 8))
        for sid in self.sids:
            for ste in list(self.stes[sid]):
                self.stream(sid, ste)
            for ssid, vmid, s2cfg, cd in list(self.cds[sid]):
                tag = (vmid, bits(cd[0], 63, 48))
                self.tags[sid].add(tag)
                for page in self.pages:
                    self.record(tag, ssid, page, self.s1_walk(cd, page, s2cfg, sid))

    def stream(self, sid, ste):
        q0, q1, q2, q3 = ste[0], ste[1], ste[2], ste[3]
        if not q0 & 1:
            return
        config = bits(q0, 3, 1)
        if not config & 0b100:
            return                       # abort (or reserved: a fault)
        s1 = bool(config & 1)
        s2 = bool(config & 2)
        vmid = bits(q2, 15, 0) if s2 else None
        s2cfg = (q3 & 0x000f_ffff_ffff_fff0, bits(q2, 37, 32), bits(q2, 39, 38),
                 bits(q2, 47, 46)) if s2 else None
        if not s1:
            tag = (vmid, None)
            self.tags[sid].add(tag)
            for page in self.pages:
                pas = self.s2_walk(s2cfg, page, sid) if s2 else {page}
                if not s2:
                    self.ident.add((sid, None))
                self.record(tag, None, page, pas)
            return
        ptr = q0 & 0x000f_ffff_ffff_ffc0
        fmt, cdmax, dss = bits(q0, 5, 4), bits(q0, 63, 59), bits(q1, 1, 0)
        for ssid in {None} | self.ssids:
            if ssid is None and dss == 1:
                # S1DSS bypass: stage 1 skipped for requests without a PASID
                tag = (vmid, None)
                self.tags[sid].add(tag)
                for page in self.pages:
                    self.record(tag, None, page, self.s2_walk(s2cfg, page, sid) if s2 else {page})
                if not s2:
                    self.ident.add((sid, None))
            index = 0 if ssid is None else ssid
            for cd_ipa in self.cd_addresses(ptr, fmt, cdmax, index, sid, s2cfg):
                for cd_pa in self.through_s2(s2cfg, {cd_ipa}, sid):
                    if not self.read(cd_pa, 64, sid):
                        continue
                    cd = self.quads(cd_pa, 4)
                    if bits(cd[0], 31, 31):
                        self.cds[sid].add((ssid, vmid, s2cfg, cd))   # walked in update()

    def cd_addresses(self, ptr, fmt, cdmax, index, sid, s2cfg):
        out = {ptr + 64 * index, ptr}            # linear, or a single CD (S1CDMax 0)
        if fmt in (1, 2):
            for split in (6, 10):
                for l1 in self.through_s2(s2cfg, {ptr + 8 * (index >> split)}, sid):
                    if self.read(l1, 8, sid):
                        d = self.quad(l1)
                        if d & 1:
                            out.add((d & 0x000f_ffff_ffff_f000) + 64 * (index & ((1 << split) - 1)))
        return out

    # -- VMSAv8-64 walks ------------------------------------------------------

    @staticmethod
    def granules(tg, stage1_tg1=False):
        table = {0: 12, 1: 16, 2: 14} if not stage1_tg1 else {1: 14, 2: 12, 3: 16}
        return {table[tg]} if tg in table else {12, 14, 16}

    def walk(self, root, addr, shift, sid, ipa_to_pa=None, concat=False):
        """Output pages of a walk from `root` for `addr` with a granule of
        2^shift bytes, from every start level (table reads optionally
        through `ipa_to_pa`)."""
        stride = shift - 3
        out = set()
        for start in range(4):
            tables = {root & ~((1 << shift) - 1) & m for m in OA_MASKS} | {root & m for m in OA_MASKS}
            if ipa_to_pa:
                tables = ipa_to_pa(tables)
            for level in range(start, 4):
                lsb = shift + stride * (3 - level)
                nxt = set()
                for table in tables:
                    widths = (stride, stride + 4) if concat and level == start else (stride,)
                    for w in widths:
                        a = table + 8 * ((addr >> lsb) & ((1 << w) - 1))
                        if not self.read(a, 8, sid):
                            continue
                        d = self.quad(a)
                        if not d & 1:
                            continue
                        leaf = level == 3 or not d & 2
                        if level == 3 and not d & 2:
                            continue
                        oa = {(d & m) & ~((1 << lsb) - 1) & ~0xfff for m in OA_MASKS}
                        if leaf:
                            size = 1 << lsb
                            out |= {o | (addr & (size - 1) & ~0xfff) for o in oa}
                        else:
                            nxt |= {(d & m) & ~((1 << shift) - 1) for m in OA_MASKS}
                tables = ipa_to_pa(nxt) if ipa_to_pa and nxt else nxt
                if not tables:
                    break
        return out

    def s2_walk(self, s2cfg, ipa, sid):
        ttb, _t0sz, _sl0, tg = s2cfg
        out = set()
        for shift in self.granules(tg):
            out |= self.walk(ttb, ipa, shift, sid, concat=True)
        return out

    def through_s2(self, s2cfg, ipas, sid):
        if s2cfg is None:
            return set(ipas)
        out = set()
        for ipa in ipas:
            out |= {p | (ipa & 0xfff) for p in self.s2_walk(s2cfg, ipa & ~0xfff, sid)}
        return out

    def s1_walk(self, cd, va, s2cfg, sid):
        q0 = cd[0]
        out = set()
        # VA bit 55 selects TTB0 or TTB1; EPDx disables a walk
        upper = (va >> 55) & 1
        ttbs = [(cd[1], bits(q0, 7, 6), False, bits(q0, 14, 14)),
                (cd[2], bits(q0, 23, 22), True, bits(q0, 30, 30))]
        for ttb, tg, tg1, epd in ttbs[upper:upper + 1]:
            if epd:
                continue
            for shift in self.granules(tg, tg1):
                conv = (lambda t: self.through_s2(s2cfg, t, sid)) if s2cfg else None
                for o in self.walk(ttb & 0x000f_ffff_ffff_fff0, va, shift, sid, conv):
                    out |= self.through_s2(s2cfg, {o}, sid) if s2cfg else {o}
        return out

    # -- the check ------------------------------------------------------------

    def allowed(self, sid, ssid, page):
        if sid in self.unknown_sids:
            return None
        identity = self.identity_ever or (sid, None) in self.ident
        out = set()
        for tag in self.tags[sid]:
            for s in {ssid, None} if ssid is not None else {None}:
                h = self.hist.get((tag, s, page), set())
                if h == UNKNOWN:
                    return None
                out |= h
        return out, identity
