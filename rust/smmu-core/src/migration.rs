//! Migration state in the C device's terms.
//!
//! QEMU 10.2.2's `arm-smmuv3` migrates section `smmuv3` (version 1) and,
//! when GBPA differs from its reset value, subsection `smmuv3/gbpa`. A VM
//! must move between the C device and ours either way, so the Rust device
//! puts exactly those fields on the wire: [`CVmState`] is them, with the
//! conversions from and to the model's [`Registers`].
//!
//! Everything the C device does not migrate is derived again after a load
//! (caches start empty, as after the C device's load) or comes from the
//! destination's configuration (the ID registers).

use crate::registers::{
    gbpa_reset_value, Cr0, Cr1, Cr2, Gbpa, Gerror, IrqCfg0, IrqCfg2, IrqCtrl, Queue, QueueBase, Registers,
    Statusr, StrtabBase, StrtabBaseCfg, CMDQ_LOG2_MAX, EVENTQ_LOG2_MAX,
};

/// Version of the C device's `smmuv3` section.
pub const C_VMSTATE_VERSION: u8 = 1;

/// The C device's `features` bit for a 2-level stream table
/// (`SMMU_FEATURE_2LVL_STE`).
pub const FEATURE_2LVL_STE: u32 = 1 << 0;

/// One queue as the C device migrates it (`smmuv3_queue`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CQueue {
    /// The base register as written (LOG2SIZE included).
    pub base: u64,
    /// PROD, raw.
    pub prod: u32,
    /// CONS, raw.
    pub cons: u32,
    /// The effective log2 of the number of entries.
    pub log2size: u8,
}

/// The fields of the C device's section, in wire order, plus the GBPA
/// subsection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CVmState {
    /// `features` ([`FEATURE_2LVL_STE`]).
    pub features: u32,
    /// `sid_size` (never written by the C device, migrated anyway).
    pub sid_size: u8,
    /// `sid_split`.
    pub sid_split: u8,
    /// CR0, CR1, CR2.
    pub cr: [u32; 3],
    /// CR0ACK.
    pub cr0ack: u32,
    /// STATUSR.
    pub statusr: u32,
    /// IRQ_CTRL.
    pub irq_ctrl: u32,
    /// GERROR.
    pub gerror: u32,
    /// GERRORN.
    pub gerrorn: u32,
    /// GERROR_IRQ_CFG0.
    pub gerror_irq_cfg0: u64,
    /// GERROR_IRQ_CFG1.
    pub gerror_irq_cfg1: u32,
    /// GERROR_IRQ_CFG2.
    pub gerror_irq_cfg2: u32,
    /// STRTAB_BASE.
    pub strtab_base: u64,
    /// STRTAB_BASE_CFG.
    pub strtab_base_cfg: u32,
    /// EVENTQ_IRQ_CFG0.
    pub eventq_irq_cfg0: u64,
    /// EVENTQ_IRQ_CFG1.
    pub eventq_irq_cfg1: u32,
    /// EVENTQ_IRQ_CFG2.
    pub eventq_irq_cfg2: u32,
    /// The command queue.
    pub cmdq: CQueue,
    /// The event queue.
    pub eventq: CQueue,
    /// GBPA (subsection `smmuv3/gbpa`, sent only when it is not
    /// [`CVmState::GBPA_RESET`]).
    pub gbpa: u32,
}

impl CVmState {
    /// GBPA's reset value, which the C device does not send.
    pub const GBPA_RESET: u32 = 0x1000;

    /// Whether the `smmuv3/gbpa` subsection goes on the wire.
    pub fn gbpa_needed(&self) -> bool {
        self.gbpa != Self::GBPA_RESET
    }

    /// The migrated fields of `regs`.
    pub fn from_registers(regs: &Registers) -> CVmState {
        let queue = |q: &Queue| CQueue { base: u64::from(q.base), prod: q.prod, cons: q.cons, log2size: q.log2size };
        CVmState {
            features: if regs.two_level_strtab { FEATURE_2LVL_STE } else { 0 },
            sid_size: regs.sid_size,
            sid_split: regs.sid_split,
            cr: [u32::from(regs.cr0), u32::from(regs.cr1), u32::from(regs.cr2)],
            cr0ack: u32::from(regs.cr0ack),
            statusr: u32::from(regs.statusr),
            irq_ctrl: u32::from(regs.irq_ctrl),
            gerror: u32::from(regs.gerror),
            gerrorn: u32::from(regs.gerrorn),
            gerror_irq_cfg0: u64::from(regs.gerror_irq_cfg0),
            gerror_irq_cfg1: regs.gerror_irq_cfg1,
            gerror_irq_cfg2: u32::from(regs.gerror_irq_cfg2),
            strtab_base: u64::from(regs.strtab_base),
            strtab_base_cfg: u32::from(regs.strtab_base_cfg),
            eventq_irq_cfg0: u64::from(regs.eventq_irq_cfg0),
            eventq_irq_cfg1: regs.eventq_irq_cfg1,
            eventq_irq_cfg2: u32::from(regs.eventq_irq_cfg2),
            cmdq: queue(&regs.cmdq),
            eventq: queue(&regs.eventq),
            gbpa: u32::from(regs.gbpa),
        }
    }

    /// Load these fields into `regs` (whose ID registers, from the
    /// destination's configuration, stay). The stream is guest state and
    /// may come from anywhere: a queue size above what the queue supports
    /// is capped (the C device would take it and index guest memory
    /// beyond the queue; the model's ring arithmetic needs the bound).
    pub fn load_into(&self, regs: &mut Registers) {
        let queue = |q: &CQueue, old: &Queue, max: u8| Queue {
            base: QueueBase::from(q.base),
            prod: q.prod,
            cons: q.cons,
            log2size: q.log2size.min(max),
            entry_bytes: old.entry_bytes,
        };
        regs.two_level_strtab = self.features & FEATURE_2LVL_STE != 0;
        regs.sid_size = self.sid_size;
        regs.sid_split = self.sid_split;
        regs.cr0 = Cr0::from(self.cr[0]);
        regs.cr1 = Cr1::from(self.cr[1]);
        regs.cr2 = Cr2::from(self.cr[2]);
        regs.cr0ack = Cr0::from(self.cr0ack);
        regs.statusr = Statusr::from(self.statusr);
        regs.irq_ctrl = IrqCtrl::from(self.irq_ctrl);
        regs.gerror = Gerror::from(self.gerror);
        regs.gerrorn = Gerror::from(self.gerrorn);
        regs.gerror_irq_cfg0 = IrqCfg0::from(self.gerror_irq_cfg0);
        regs.gerror_irq_cfg1 = self.gerror_irq_cfg1;
        regs.gerror_irq_cfg2 = IrqCfg2::from(self.gerror_irq_cfg2);
        regs.strtab_base = StrtabBase::from(self.strtab_base);
        regs.strtab_base_cfg = StrtabBaseCfg::from(self.strtab_base_cfg);
        regs.eventq_irq_cfg0 = IrqCfg0::from(self.eventq_irq_cfg0);
        regs.eventq_irq_cfg1 = self.eventq_irq_cfg1;
        regs.eventq_irq_cfg2 = IrqCfg2::from(self.eventq_irq_cfg2);
        regs.cmdq = queue(&self.cmdq, &regs.cmdq, CMDQ_LOG2_MAX);
        regs.eventq = queue(&self.eventq, &regs.eventq, EVENTQ_LOG2_MAX);
        regs.gbpa = Gbpa::from(self.gbpa);
    }
}

impl Default for CVmState {
    /// A freshly reset device's fields.
    fn default() -> CVmState {
        CVmState::from_registers(&Registers::new(crate::config::Config::default().id_registers()))
    }
}

const _: () = assert!(CVmState::GBPA_RESET == 0x1000);

/// GBPA's reset value as the model computes it (checked against the C
/// constant in the tests).
pub fn gbpa_reset() -> u32 {
    u32::from(gbpa_reset_value())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::smmu::{Request, Smmu};
    use crate::testutil::{Mem, Rng};
    use iommu_core::translation::vmsa::Access;

    fn regs() -> Registers {
        Registers::new(Config::default().id_registers())
    }

    #[test]
    fn reset_state_sends_no_gbpa_subsection() {
        assert_eq!(gbpa_reset(), CVmState::GBPA_RESET);
        let c = CVmState::default();
        assert!(!c.gbpa_needed());
        assert_eq!(c.cmdq.base & 0x1f, u64::from(CMDQ_LOG2_MAX), "LOG2SIZE reads 19 after reset");
        assert_eq!((c.cmdq.prod, c.cmdq.cons, c.features), (0, 0, 0));
    }

    #[test]
    fn round_trip_through_register_writes() {
        let mut r = regs();
        // A guest's programming: queues, stream table (2-level), IRQs, GBPA.
        for (off, size, v) in [
            (0x90u64, 8u32, 0x0000_0000_8000_0008u64), // CMDQ_BASE, 256 entries
            (0xa0, 8, 0x0000_0000_9000_0007),         // EVENTQ_BASE, 128 entries
            (0x80, 8, 0x0000_0000_a000_0000),         // STRTAB_BASE
            (0x88, 4, 0x0001_0008 | 6 << 6),          // STRTAB_BASE_CFG: 2-level, split 6
            (0x50, 4, 0x3),                           // IRQ_CTRL
            (0x44, 4, 1 << 31 | 1 << 20),             // GBPA: UPDATE, ABORT
            (0x20, 4, 0xd),                           // CR0
            (0x98, 4, 3),                             // CMDQ_PROD
        ] {
            r.write(off, size, v);
        }
        let c = CVmState::from_registers(&r);
        assert!(c.gbpa_needed(), "{c:?}");
        assert_eq!(c.features, FEATURE_2LVL_STE);
        let mut loaded = regs();
        c.load_into(&mut loaded);
        assert_eq!(CVmState::from_registers(&loaded), c);
        for off in (0..0x100u64).step_by(4) {
            assert_eq!(loaded.read(off, 4), r.read(off, 4), "register {off:#x}");
        }
        assert_eq!(loaded.cmdq.log2size, r.cmdq.log2size);
    }

    #[test]
    fn hostile_streams_are_bounded() {
        let mut rng = Rng(0x5eed_0007);
        for _ in 0..2000 {
            let q = |rng: &mut Rng| CQueue {
                base: rng.next(),
                prod: rng.next() as u32,
                cons: rng.next() as u32,
                log2size: rng.next() as u8,
            };
            let c = CVmState {
                features: rng.next() as u32,
                sid_size: rng.next() as u8,
                sid_split: rng.next() as u8,
                cr: [rng.next() as u32, rng.next() as u32, rng.next() as u32],
                cr0ack: rng.next() as u32,
                statusr: rng.next() as u32,
                irq_ctrl: rng.next() as u32,
                gerror: rng.next() as u32,
                gerrorn: rng.next() as u32,
                gerror_irq_cfg0: rng.next(),
                gerror_irq_cfg1: rng.next() as u32,
                gerror_irq_cfg2: rng.next() as u32,
                strtab_base: rng.next(),
                strtab_base_cfg: rng.next() as u32,
                eventq_irq_cfg0: rng.next(),
                eventq_irq_cfg1: rng.next() as u32,
                eventq_irq_cfg2: rng.next() as u32,
                cmdq: q(&mut rng),
                eventq: q(&mut rng),
                gbpa: rng.next() as u32,
            };
            let mut r = regs();
            c.load_into(&mut r);
            assert!(r.cmdq.log2size <= CMDQ_LOG2_MAX && r.eventq.log2size <= EVENTQ_LOG2_MAX);
            // The loaded device reads, consumes commands and translates
            // without panicking (memory mapped where the tables may point).
            let mem = Mem::default();
            mem.map(u64::from(r.strtab_base) & 0xf_ffff_ffff_ffc0, 1 << 16);
            mem.map(u64::from(r.cmdq.base) & 0xf_ffff_ffff_ffe0, 1 << 16);
            let mut smmu = Smmu::new(Config::default()).unwrap();
            smmu.load_registers(r);
            for off in (0..0x100u64).step_by(4) {
                let _ = smmu.read_reg(off, 4);
            }
            let _ = smmu.write_reg(0x98, 4, u64::from(c.cmdq.prod.wrapping_add(1)), &mem);
            let req = Request { sid: rng.next() as u32 & 0xffff, ssid: None, addr: rng.next(), access: Access::default() };
            let _ = smmu.translate(&req, &mem);
        }
    }
}
