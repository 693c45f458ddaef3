//! Helpers shared by the unit tests of several modules: a deterministic
//! random generator, a fake guest memory, and the C device's capabilities
//! as [`Config`] gives them.

use std::cell::RefCell;
use std::collections::HashMap;

use iommu_core::memory::{GuestMemory, MemError};

use crate::command::CommandCaps;
use crate::config::{Config, Stage};
use crate::ste::SteCaps;

/// A small deterministic generator (xorshift64*), so that the tests need
/// no extra crates.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The `stage` property that gives stage 1 and/or stage 2 (`S1` for
/// neither).
fn stage(s1: bool, s2: bool) -> Stage {
    match (s1, s2) {
        (true, true) => Stage::Nested,
        (false, true) => Stage::S2,
        _ => Stage::S1,
    }
}

/// The C device's STE capabilities (the default configuration) with stage 1
/// and/or stage 2; with neither, those of stage 1 with stage 1 removed.
pub(crate) fn ste_caps(s1: bool, s2: bool) -> SteCaps {
    SteCaps { s1, s2, ..Config { stage: stage(s1, s2), ..Config::default() }.ste_caps() }
}

/// The C device's command capabilities (the default configuration) with
/// stage 1 and/or stage 2.
pub(crate) fn command_caps(s1: bool, s2: bool) -> CommandCaps {
    CommandCaps { stage1: s1, stage2: s2, ..Config { stage: stage(s1, s2), ..Config::default() }.command_caps() }
}

/// Guest memory for tests: bytes in a map, accessible only inside the
/// regions mapped (elsewhere an access fails, as an external abort);
/// every read is logged.
#[derive(Default)]
pub(crate) struct Mem {
    bytes: RefCell<HashMap<u64, u8>>,
    regions: RefCell<Vec<(u64, u64)>>,
    pub(crate) reads: RefCell<Vec<(u64, usize)>>,
}

impl Mem {
    pub(crate) fn map(&self, base: u64, len: u64) {
        self.regions.borrow_mut().push((base, len));
    }

    fn mapped(&self, a: u64) -> bool {
        self.regions.borrow().iter().any(|&(b, l)| a >= b && a - b < l)
    }

    /// Store `words` at `addr` (which must be mapped).
    pub(crate) fn put(&self, addr: u64, words: &[u64]) {
        for (i, w) in words.iter().enumerate() {
            self.write(addr + 8 * i as u64, &w.to_le_bytes()).expect("store into a mapped region");
        }
    }
}

impl GuestMemory for Mem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.reads.borrow_mut().push((addr, buf.len()));
        for (i, b) in buf.iter_mut().enumerate() {
            let a = addr.wrapping_add(i as u64);
            if !self.mapped(a) {
                return Err(MemError);
            }
            *b = self.bytes.borrow().get(&a).copied().unwrap_or(0);
        }
        Ok(())
    }

    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemError> {
        for (i, b) in buf.iter().enumerate() {
            let a = addr.wrapping_add(i as u64);
            if !self.mapped(a) {
                return Err(MemError);
            }
            self.bytes.borrow_mut().insert(a, *b);
        }
        Ok(())
    }
}
