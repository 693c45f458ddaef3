//! First-stage and nested page walks over a fake guest memory.

mod common;
mod sm_common;

use common::TestMem;
use sm_common::*;
use std::cell::Cell;
use vtd_core::queues::fault::FaultReason as F;
use vtd_core::translation::first_stage::{
    fs_walk, nested_walk, FsAccess, FsControls, FsOutput, FsTable, FsWalkConfig, SsTable,
};
use vtd_core::translation::page_walk::WalkConfig;
use vtd_core::{GuestMemory, MemError};

const ROOT4: u64 = 0x10_0000;
const CFG: FsWalkConfig = FsWalkConfig { haw_bits: 48, large_1g: true, user_checks_per_level: false };
const READ: FsAccess = FsAccess { write: false, supervisor: false };
const WRITE: FsAccess = FsAccess { write: true, supervisor: false };
const SREAD: FsAccess = FsAccess { write: false, supervisor: true };
const SWRITE: FsAccess = FsAccess { write: true, supervisor: true };

struct Fs {
    mem: TestMem,
    alloc: Alloc,
    table: FsTable,
}

impl Fs {
    fn new() -> Fs {
        Fs::levels(4)
    }

    fn levels(levels: u8) -> Fs {
        Fs { mem: TestMem::new(), alloc: Alloc(0x20_0000), table: FsTable { root: ROOT4, levels } }
    }

    fn map(&mut self, iova: u64, phys: u64, level: u8, flags: u64) {
        fs_map(&self.mem, &mut self.alloc, ROOT4, self.table.levels, iova, phys, level, flags);
    }

    fn entry(&self, iova: u64, level: u8) -> u64 {
        fs_entry(&self.mem, &|a| a, ROOT4, self.table.levels, iova, level)
    }

    fn walk_with(&self, cfg: &FsWalkConfig, ctl: FsControls, iova: u64, acc: FsAccess) -> Result<FsOutput, F> {
        fs_walk(&self.mem, cfg, &self.table, &ctl, iova, acc)
    }

    fn walk(&self, iova: u64, acc: FsAccess) -> Result<FsOutput, F> {
        self.walk_with(&CFG, FsControls::default(), iova, acc)
    }
}

#[test]
fn fs_4k_read_translates_and_sets_accessed_on_every_level() {
    let mut t = Fs::new();
    t.map(0x7f12_3456_7000, 0xabc_d000, 1, P | RW | US);
    let o = t.walk(0x7f12_3456_7123, READ).unwrap();
    assert_eq!((o.phys, o.level), (0xabc_d000, 1));
    assert!(o.perm.read && o.perm.write);
    assert!(!o.dirty, "a read leaves D clear");
    for level in 1..=4 {
        let e = t.mem.r64(t.entry(0x7f12_3456_7000, level));
        assert_ne!(e & A, 0, "A at level {level}");
        assert_eq!(e & (D | EA), 0, "no D/EA at level {level}");
    }
}

#[test]
fn fs_write_sets_dirty_only_in_leaf() {
    let mut t = Fs::new();
    t.map(0x1000, 0x5000, 1, P | RW | US);
    let o = t.walk(0x1000, WRITE).unwrap();
    assert!(o.dirty && o.perm.write);
    assert_eq!(t.mem.r64(t.entry(0x1000, 1)) & (A | D), A | D);
    for level in 2..=4 {
        assert_eq!(t.mem.r64(t.entry(0x1000, level)) & (A | D), A);
    }
    // A later read reports the page dirty.
    assert!(t.walk(0x1000, READ).unwrap().dirty);
}

#[test]
fn fs_flags_already_set_need_no_write() {
    struct ReadOnly<'a>(&'a TestMem);
    impl GuestMemory for ReadOnly<'_> {
        fn read(&self, a: u64, b: &mut [u8]) -> Result<(), MemError> {
            self.0.read(a, b)
        }
        fn write(&self, _: u64, _: &[u8]) -> Result<(), MemError> {
            Err(MemError)
        }
    }
    let mut t = Fs::new();
    t.map(0x1000, 0x5000, 1, P | RW | US | A | D);
    for level in 2..=4 {
        let a = t.entry(0x1000, level);
        t.mem.w64(a, t.mem.r64(a) | A);
    }
    let ro = ReadOnly(&t.mem);
    assert!(fs_walk(&ro, &CFG, &t.table, &FsControls::default(), 0x1000, WRITE).is_ok());
    // Clearing one A flag makes the update necessary, and it fails: SFS.10.
    let a = t.entry(0x1000, 3);
    t.mem.w64(a, t.mem.r64(a) & !A);
    let ro = ReadOnly(&t.mem);
    let r = fs_walk(&ro, &CFG, &t.table, &FsControls::default(), 0x1000, READ);
    assert_eq!(r, Err(F::FsAdUpdateFailed));
    assert_eq!(F::FsAdUpdateFailed.code(), 0x91);
}

#[test]
fn fs_ad_update_skipped_when_entry_rewritten_concurrently() {
    // Memory whose leaf entry is rewritten by "another agent" right after
    // the walk has read it (on the re-read for the A/D update).
    struct Racy<'a> {
        mem: &'a TestMem,
        leaf: u64,
        reads: Cell<u32>,
    }
    impl GuestMemory for Racy<'_> {
        fn read(&self, a: u64, b: &mut [u8]) -> Result<(), MemError> {
            if a == self.leaf {
                self.reads.set(self.reads.get() + 1);
                if self.reads.get() == 2 {
                    self.mem.w64(a, 0x9000 | P | RW | US);
                }
            }
            self.mem.read(a, b)
        }
        fn write(&self, a: u64, b: &[u8]) -> Result<(), MemError> {
            self.mem.write(a, b)
        }
    }
    let mut t = Fs::new();
    t.map(0x1000, 0x5000, 1, P | RW | US);
    let leaf = t.entry(0x1000, 1);
    let racy = Racy { mem: &t.mem, leaf, reads: Cell::new(0) };
    let o = fs_walk(&racy, &CFG, &t.table, &FsControls::default(), 0x1000, WRITE).unwrap();
    assert_eq!(o.phys, 0x5000, "translation uses the entry as walked");
    assert_eq!(t.mem.r64(leaf), 0x9000 | P | RW | US, "new entry not modified");
    assert_ne!(t.mem.r64(t.entry(0x1000, 2)) & A, 0, "other levels still updated");
}

#[test]
fn fs_2m_and_1g_pages() {
    let mut t = Fs::new();
    t.map(0x4020_0000, 0x8000_0000, 2, P | RW | US);
    t.map(0x80_4000_0000, 0x1_c000_0000, 3, P | US);
    let o = t.walk(0x403f_ffff, READ).unwrap();
    assert_eq!((o.phys, o.level), (0x8000_0000, 2));
    let o = t.walk(0x80_7fff_f000, READ).unwrap();
    assert_eq!((o.phys, o.level), (0x1_c000_0000, 3));
    assert!(!o.perm.write);
    assert_eq!(t.walk(0x80_4000_0000, WRITE), Err(F::SmWrite));
}

#[test]
fn fs_1g_page_without_fs1gp_is_reserved_fault() {
    let mut t = Fs::new();
    t.map(0x4000_0000, 0x8000_0000, 3, P | RW | US);
    let cfg = FsWalkConfig { large_1g: false, ..CFG };
    assert_eq!(t.walk_with(&cfg, FsControls::default(), 0x4000_0000, READ), Err(F::FsEntryReserved));
    assert!(t.walk(0x4000_0000, READ).is_ok());
}

#[test]
fn fs_large_leaf_pat_bit_allowed_but_low_address_bits_reserved() {
    let mut t = Fs::new();
    t.map(0x20_0000, 0x40_0000 | (1 << 12), 2, P | RW | US);
    let o = t.walk(0x20_0000, READ).unwrap();
    assert_eq!(o.phys, 0x40_0000, "PAT (bit 12) is not part of the address");
    t.map(0x20_0000, 0x40_0000 | (1 << 13), 2, P | RW | US);
    assert_eq!(t.walk(0x20_0000, READ), Err(F::FsEntryReserved));
    t.map(0x4000_0000, 0x8000_0000 | (1 << 29), 3, P | RW | US);
    assert_eq!(t.walk(0x4000_0000, READ), Err(F::FsEntryReserved));
}

#[test]
fn fs_not_present_at_each_level_is_71h() {
    for level in 1..=4u8 {
        let mut t = Fs::new();
        t.map(0x1000, 0x5000, 1, P | RW | US);
        let a = t.entry(0x1000, level);
        t.mem.w64(a, t.mem.r64(a) & !P);
        assert_eq!(t.walk(0x1000, READ), Err(F::FsEntryNotPresent), "level {level}");
        assert_eq!(F::FsEntryNotPresent.code(), 0x71);
    }
}

#[test]
fn fs_unreadable_root_is_73h_and_lower_table_70h() {
    let mut t = Fs::new();
    t.map(0x1000, 0x5000, 1, P | RW | US);
    t.mem.unmap(t.entry(0x1000, 2) & !0xfff, 0x1000);
    assert_eq!(t.walk(0x1000, READ), Err(F::FsEntryAccess));
    t.mem.unmap(ROOT4, 0x1000);
    assert_eq!(t.walk(0x1000, READ), Err(F::FsRootAccess));
}

#[test]
fn fs_reserved_bits_above_haw_and_ps_in_pml4_are_72h() {
    let mut t = Fs::new();
    t.map(0x1000, 0x5000 | (1 << 48), 1, P | RW | US);
    assert_eq!(t.walk(0x1000, READ), Err(F::FsEntryReserved));
    // Bits 63:52 (XD included) are ignored.
    t.map(0x1000, 0x5000 | (0xfff << 52), 1, P | RW | US);
    assert_eq!(t.walk(0x1000, READ).unwrap().phys, 0x5000);
    // Address width 39: bit 40 of a table pointer is reserved.
    let cfg39 = FsWalkConfig { haw_bits: 39, large_1g: true, user_checks_per_level: false };
    t.map(0x1000, 0x5000, 1, P | RW | US);
    assert!(t.walk_with(&cfg39, FsControls::default(), 0x1000, READ).is_ok());
    t.map(0x1000, 0x5000 | (1 << 40), 1, P | RW | US);
    assert_eq!(t.walk_with(&cfg39, FsControls::default(), 0x1000, READ), Err(F::FsEntryReserved));
    let pml4e = t.entry(0x1000, 4);
    t.mem.w64(pml4e, t.mem.r64(pml4e) | PS);
    assert_eq!(t.walk(0x1000, READ), Err(F::FsEntryReserved));
}

#[test]
fn fs_non_canonical_input_is_80h_and_high_half_translates() {
    let mut t = Fs::new();
    t.map(0xffff_8000_0000_0000, 0x6000, 1, P | RW | US);
    assert_eq!(t.walk(0xffff_8000_0000_0000, READ).unwrap().phys, 0x6000);
    for iova in [0x0000_8000_0000_0000u64, 0x7fff_8000_0000_0000, 0x0001_0000_0000_0000] {
        assert_eq!(t.walk(iova, READ), Err(F::NonCanonical), "{iova:#x}");
    }
    assert_eq!(F::NonCanonical.code(), 0x80);
}

#[test]
fn fs_user_request_to_supervisor_page_is_81h() {
    let mut t = Fs::new();
    // U/S clear at the PDPT level only.
    t.map(0x1000, 0x5000, 1, P | RW | US);
    let pdpte = t.entry(0x1000, 3);
    t.mem.w64(pdpte, t.mem.r64(pdpte) & !US);
    assert_eq!(t.walk(0x1000, READ), Err(F::FsPrivilege));
    assert_eq!(t.mem.r64(t.entry(0x1000, 1)) & A, 0, "no A update on a fault");
    // Supervisor requests may access it, and user pages too.
    assert!(t.walk(0x1000, SREAD).is_ok());
    t.map(0x2000, 0x6000, 1, P | RW | US);
    assert!(t.walk(0x2000, SWRITE).is_ok());
}

#[test]
fn fs_user_write_to_read_only_page_is_85h() {
    let mut t = Fs::new();
    t.map(0x1000, 0x5000, 1, P | US);
    assert_eq!(t.walk(0x1000, WRITE), Err(F::SmWrite));
    assert_eq!(t.mem.r64(t.entry(0x1000, 1)) & (A | D), 0);
    let o = t.walk(0x1000, READ).unwrap();
    assert!(!o.perm.write);
    // R/W clear on an intermediate level also write-protects.
    t.map(0x2000, 0x6000, 1, P | RW | US);
    let pde = t.entry(0x2000, 2);
    t.mem.w64(pde, t.mem.r64(pde) & !RW);
    assert_eq!(t.walk(0x2000, WRITE), Err(F::SmWrite));
}

#[test]
fn fs_supervisor_write_to_read_only_page_depends_on_wpe() {
    let mut t = Fs::new();
    t.map(0x1000, 0x5000, 1, P);
    let wpe = FsControls { wpe: true, eafe: false, canonical_bits: None };
    assert_eq!(t.walk_with(&CFG, wpe, 0x1000, SWRITE), Err(F::SmWrite));
    let o = t.walk(0x1000, SWRITE).unwrap();
    assert!(o.perm.write && o.dirty);
    assert_ne!(t.mem.r64(t.entry(0x1000, 1)) & D, 0);
    assert!(!t.walk_with(&CFG, wpe, 0x1000, SREAD).unwrap().perm.write);
}

#[test]
fn fs_eafe_sets_extended_accessed_flag() {
    let mut t = Fs::new();
    t.map(0x1000, 0x5000, 1, P | RW | US);
    let ctl = FsControls { wpe: false, eafe: true, canonical_bits: None };
    t.walk_with(&CFG, ctl, 0x1000, READ).unwrap();
    for level in 1..=4 {
        assert_eq!(t.mem.r64(t.entry(0x1000, level)) & (A | EA), A | EA, "level {level}");
    }
}

#[test]
fn fs_5level_walk_and_canonical_57_bits() {
    let mut t = Fs::levels(5);
    let iova = 0x00ab_cdef_1234_5000;
    t.map(iova, 0x7000, 1, P | RW | US);
    assert_eq!(t.walk(iova, READ).unwrap().phys, 0x7000);
    assert_eq!(t.walk(0x0100_0000_0000_0000, READ), Err(F::NonCanonical));
    let pml5e = t.entry(iova, 5);
    t.mem.w64(pml5e, t.mem.r64(pml5e) | PS);
    assert_eq!(t.walk(iova, READ), Err(F::FsEntryReserved));
}

#[test]
fn fs_bad_level_count_is_invalid_pasid_entry() {
    let t = Fs::levels(3);
    assert_eq!(t.walk(0, READ), Err(F::PasidEntryInvalid));
}

// ---- nested ---------------------------------------------------------

const SS_ROOT: u64 = 0x30_0000;
/// Guest physical addresses g in [0, 1 GiB) live at host g + OFF.
const OFF: u64 = 0x4000_0000;
const SS_CFG: WalkConfig = WalkConfig {
    haw_bits: 48,
    mgaw_bits: 48,
    large_2m: true,
    large_1g: true,
    snoop_control: false,
    tm_allowed: false,
};
const SS: SsTable = SsTable { root: SS_ROOT, levels: 4, agaw: 48 };
const FS_GPA_ROOT: u64 = 0x10_0000;

struct Nested {
    mem: TestMem,
    ss_alloc: Alloc,
    fs_alloc: Alloc,
    fs: FsTable,
    ss: SsTable,
}

impl Nested {
    /// Second stage maps GPA [0, 1 GiB) to host +OFF with 4 KiB pages for
    /// the pages the first-stage tables use (created on demand) and R|W.
    fn new() -> Nested {
        Nested {
            mem: TestMem::new(),
            ss_alloc: Alloc(0x1000_0000),
            fs_alloc: Alloc(0x20_0000),
            fs: FsTable { root: FS_GPA_ROOT, levels: 4 },
            ss: SS,
        }
    }

    fn ss_map(&mut self, gpa: u64, hpa: u64, level: u8, perm: u64) {
        ss_map(&self.mem, &mut self.ss_alloc, SS_ROOT, 4, gpa, hpa, level, perm);
    }

    /// Map `iova` to guest-physical `gpa` in the first stage, also mapping
    /// every first-stage table page through the second stage (R|W).
    fn fs_map(&mut self, iova: u64, gpa: u64, level: u8, flags: u64) {
        self.ss_map(FS_GPA_ROOT, FS_GPA_ROOT + OFF, 1, 3);
        let start = self.fs_alloc.0;
        fs_map_x(&self.mem, &mut self.fs_alloc, &|g| g + OFF, FS_GPA_ROOT, 4, iova, gpa, level, flags, TABLE);
        let mut p = start;
        while p < self.fs_alloc.0 {
            self.ss_map(p, p + OFF, 1, 3);
            p += 0x1000;
        }
    }

    fn fs_entry(&self, iova: u64, level: u8) -> u64 {
        fs_entry(&self.mem, &|g| g + OFF, FS_GPA_ROOT, 4, iova, level)
    }

    fn walk(&self, iova: u64, acc: FsAccess) -> Result<FsOutput, F> {
        nested_walk(&self.mem, &CFG, &SS_CFG, &self.fs, &self.ss, &FsControls::default(), iova, acc)
    }
}

#[test]
fn nested_translates_tables_and_output_through_second_stage() {
    let mut n = Nested::new();
    n.fs_map(0x7000_1000, 0x0123_4000, 1, P | RW | US);
    n.ss_map(0x0123_4000, 0x9_8765_4000, 1, 3);
    let o = n.walk(0x7000_1abc, WRITE).unwrap();
    assert_eq!((o.phys, o.level), (0x9_8765_4000, 1));
    assert!(o.perm.read && o.perm.write && o.dirty);
    // A/D were written at the host location of the first-stage entries.
    assert_eq!(n.mem.r64(n.fs_entry(0x7000_1000, 1)) & (A | D), A | D);
    assert_eq!(n.mem.r64(n.fs_entry(0x7000_1000, 4)) & (A | D), A);
}

#[test]
fn nested_page_size_is_the_smaller_of_both_stages() {
    let mut n = Nested::new();
    // First stage 2 MiB, second stage 4 KiB.
    n.fs_map(0x20_0000, 0x80_0000, 2, P | RW | US);
    n.ss_map(0x80_5000, 0x7_0000_0000, 1, 3);
    let o = n.walk(0x20_5123, READ).unwrap();
    assert_eq!((o.phys, o.level), (0x7_0000_0000, 1));
    // First stage 4 KiB, second stage 1 GiB.
    n.fs_map(0x1000, 0x4000_3000, 1, P | RW | US);
    n.ss_map(0x4000_0000, 0x8_0000_0000, 3, 3);
    let o = n.walk(0x1010, READ).unwrap();
    assert_eq!((o.phys, o.level), (0x8_0000_3000, 1));
    // Both 2 MiB: output is the 2 MiB page.
    n.fs_map(0x60_0000, 0xa0_0000, 2, P | RW | US);
    n.ss_map(0xa0_0000, 0x9_0020_0000, 2, 1);
    let o = n.walk(0x61_0000, READ).unwrap();
    assert_eq!((o.phys, o.level), (0x9_0020_0000, 2));
    assert!(!o.perm.write, "second stage read-only");
}

#[test]
fn nested_fs_table_beyond_ss_agaw_is_74h() {
    let mut n = Nested::new();
    n.fs_map(0x1000, 0x5000, 1, P | RW | US);
    // Point the PML4 entry at a table above 2^39.
    let pml4e = n.fs_entry(0x1000, 4);
    n.mem.w64(pml4e, (1u64 << 40) | TABLE);
    let r = nested_walk(&n.mem, &CFG, &SS_CFG, &n.fs, &SsTable { root: SS_ROOT, levels: 4, agaw: 39 }, &FsControls::default(), 0x1000, READ);
    assert_eq!(r, Err(F::FsTableBeyondSsAgaw));
}

#[test]
fn nested_ss_read_denied_for_fs_root_75h_and_lower_table_76h() {
    let mut n = Nested::new();
    n.fs_map(0x1000, 0x5000, 1, P | RW | US);
    n.ss_map(0x5000, 0x6000, 1, 3);
    assert!(n.walk(0x1000, READ).is_ok());
    // Write-only second-stage mapping of the PML4 page.
    n.ss_map(FS_GPA_ROOT, FS_GPA_ROOT + OFF, 1, 2);
    assert_eq!(n.walk(0x1000, READ), Err(F::FsRootSsReadDenied));
    n.ss_map(FS_GPA_ROOT, FS_GPA_ROOT + OFF, 1, 3);
    let pt = n.mem.r64(n.fs_entry(0x1000, 2)) & !0xfff;
    n.ss_map(pt, pt + OFF, 1, 2);
    assert_eq!(n.walk(0x1000, READ), Err(F::FsEntrySsReadDenied));
}

#[test]
fn nested_ad_update_needs_ss_write_permission_77h() {
    let mut n = Nested::new();
    n.fs_map(0x1000, 0x5000, 1, P | RW | US);
    n.ss_map(0x5000, 0x6000, 1, 3);
    let pt = n.mem.r64(n.fs_entry(0x1000, 2)) & !0xfff;
    n.ss_map(pt, pt + OFF, 1, 1);
    assert_eq!(n.walk(0x1000, READ), Err(F::FsEntrySsWriteDenied));
    assert_eq!(n.mem.r64(n.fs_entry(0x1000, 4)) & A, 0, "no partial A/D update");
    // With A (and D) already set nothing needs writing.
    let leaf = n.fs_entry(0x1000, 1);
    n.mem.w64(leaf, n.mem.r64(leaf) | A | D);
    assert!(n.walk(0x1000, WRITE).is_ok());
}

#[test]
fn nested_ss_not_present_for_fs_table_is_79h() {
    let mut n = Nested::new();
    n.fs_map(0x1000, 0x5000, 1, P | RW | US);
    let pd = n.mem.r64(n.fs_entry(0x1000, 3)) & !0xfff;
    n.ss_map(pd, 0, 1, 0);
    assert_eq!(n.walk(0x1000, READ), Err(F::SsEntryNotPresent));
}

#[test]
fn nested_output_faults_come_from_second_stage() {
    let mut n = Nested::new();
    n.fs_map(0x1000, 0x5000, 1, P | RW | US);
    assert_eq!(n.walk(0x1000, READ), Err(F::SsEntryNotPresent));
    n.ss_map(0x5000, 0x6000, 1, 1);
    assert_eq!(n.walk(0x1000, WRITE), Err(F::SmWrite));
    n.ss_map(0x5000, 0x6000, 1, 2);
    assert_eq!(n.walk(0x1000, READ), Err(F::SmRead));
    n.ss_map(0x5000, 0x6000 | (1 << 62), 1, 3);
    assert_eq!(n.walk(0x1000, READ), Err(F::SsEntryReserved));
    // No A/D update when the final translation failed.
    assert_eq!(n.mem.r64(n.fs_entry(0x1000, 1)) & A, 0);
    // Output GPA beyond the second-stage width: 84h.
    n.fs_map(0x2000, 1 << 45, 1, P | RW | US);
    let ss39 = SsTable { root: SS_ROOT, levels: 4, agaw: 39 };
    let r = nested_walk(&n.mem, &CFG, &SS_CFG, &n.fs, &ss39, &FsControls::default(), 0x2000, READ);
    assert_eq!(r, Err(F::SmNestedOutputBeyondAgaw));
}

#[test]
fn nested_first_stage_faults_still_reported() {
    let mut n = Nested::new();
    n.fs_map(0x1000, 0x5000, 1, P | US);
    n.ss_map(0x5000, 0x6000, 1, 3);
    assert_eq!(n.walk(0x1000, WRITE), Err(F::SmWrite));
    assert_eq!(n.walk(0x8000_0000_0000, READ), Err(F::NonCanonical));
    assert_eq!(n.walk(0x4000_0000, READ), Err(F::FsEntryNotPresent));
    let o = n.walk(0x1000, READ).unwrap();
    assert!(!o.perm.write && o.perm.read);
}
