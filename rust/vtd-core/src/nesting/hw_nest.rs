//! Hardware nested translation: the decisions a vIOMMU makes for a device
//! backed by a host IOMMU (vfio with iommufd), without any QEMU or kernel
//! dependency.
//!
//! The host IOMMU translates the device's DMA in two stages: stage 2 is a
//! nesting-parent domain holding guest RAM (guest physical -> host
//! physical), set up by vfio; stage 1 is the guest's own first-stage page
//! table, handed to the host as a nested domain. This module decides
//!
//! * whether a host VT-d can carry what this vIOMMU advertises
//!   ([`check_host`], from the host's CAP/ECAP of `IOMMU_GET_HW_INFO`);
//! * what the host must attach for the device's requests without PASID
//!   ([`Vtd::host_binding`]): the parent (translation off, pass-through), a
//!   nested domain over the guest's first-stage table, or nothing (blocked);
//!   and likewise for each PASID with a present PASID entry
//!   ([`Vtd::present_pasids`], [`Vtd::host_binding_pasid`]), after the
//!   invalidations that may have changed them ([`pasid_rebind`]);
//! * which guest invalidations must reach the host's nested domain, and
//!   as what ([`host_invalidation`]): the first-stage IOTLB is the host's
//!   now, so every guest invalidation that covers the bound domain and
//!   PASID is forwarded as an address range.
//!
//! The host can only nest one guest stage: PASID entries that ask for
//! second-stage or nested translation cannot be carried for such a device
//! ([`HostBinding::Unsupported`]).

use crate::config::{
    CapReg, Config, EcapReg,
};
use crate::queues::invalidation::InvalidationEvent;
use crate::mem::GuestMemory;
use crate::translation::scalable::{
    lookup_sm_context, resolve, PasidContext, PasidMode, PASID_DIR_ENTRY_SIZE, PASID_ENTRY_SIZE,
};
use crate::vtd::Vtd;

/// A host VT-d's capability registers (`struct iommu_hw_info_vtd`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HostVtd {
    /// CAP_REG.
    pub cap: u64,
    /// ECAP_REG.
    pub ecap: u64,
}

impl HostVtd {
    /// Maximum guest address width the host supports (CAP.MGAW + 1).
    pub fn mgaw(&self) -> u8 {
        CapReg::from(self.cap).mgaw().value() + 1
    }
}

/// Check that a host VT-d can carry hardware nested translation for this
/// vIOMMU configuration; the error names what is missing.
pub fn check_host(cfg: &Config, host: &HostVtd) -> Result<(), String> {
    if !cfg.scalable_mode || !cfg.first_stage {
        return Err("hardware nested translation needs first-stage translation \
                    (x-scalable-mode=modern, or x-scalable-mode=on with x-flts=on)"
            .into());
    }
    let (hcap, hecap) = (CapReg::from(host.cap), EcapReg::from(host.ecap));
    let need = [
        (hecap.smts(), "scalable mode (ECAP.SMTS)"),
        (hecap.nest(), "nested translation (ECAP.NEST)"),
        (hecap.fsts(), "first-stage translation (ECAP.FLTS)"),
        (hecap.ssts(), "second-stage translation (ECAP.SLTS)"),
        // The guest may set SRE in its PASID entries when we advertise SRS.
        (!EcapReg::from(cfg.ecap()).srs() || hecap.srs(), "supervisor requests (ECAP.SRS)"),
        (!cfg.fs1gp || hcap.fs1gp(), "1 GiB first-stage pages (CAP.FS1GP; or use fs1gp=off)"),
    ];
    let missing: Vec<&str> = need.iter().filter(|(ok, _)| !ok).map(|(_, what)| *what).collect();
    if !missing.is_empty() {
        return Err(format!(
            "the host IOMMU (cap {:#x} ecap {:#x}) lacks {}",
            host.cap,
            host.ecap,
            missing.join(", ")
        ));
    }
    // PASID-tagged requests of an assigned function are the host's to
    // check: it must take every PASID the guest may use.
    if cfg.pasid_bits > 0 {
        let host_bits = if hecap.pasid() {
            hecap.pss().value() + 1
        } else {
            0
        };
        if host_bits < cfg.pasid_bits {
            return Err(format!(
                "the guest may use {}-bit PASIDs and the host IOMMU supports {} \
                 (set pasid-bits={} or lower)",
                cfg.pasid_bits,
                if host_bits == 0 { "none".to_string() } else { format!("{host_bits}-bit ones") },
                host_bits
            ));
        }
    }
    if host.mgaw() < cfg.aw_bits {
        return Err(format!(
            "aw-bits={} exceeds the host IOMMU's address width ({} bits)",
            cfg.aw_bits,
            host.mgaw()
        ));
    }
    Ok(())
}

/// `struct iommu_hwpt_vtd_s1` flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct S1Flags {
    /// Supervisor requests allowed (PASID entry SRE).
    pub sre: bool,
    /// Extended accessed flag (EAFE).
    pub eafe: bool,
    /// Write protect enable (WPE).
    pub wpe: bool,
}

pub use layouts::VtdS1FlagsWord;

/// The uAPI word of the host binding. A module of its own because bilge's
/// generated constructors carry no documentation.
#[allow(missing_docs)]
mod layouts {
    use bilge::prelude::*;

    /// `iommu_hwpt_vtd_s1.flags` (the uAPI's `enum iommu_hwpt_vtd_s1_flags`).
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct VtdS1FlagsWord {
        /// Bit 0, IOMMU_VTD_S1_SRE.
        #[inline]
        pub sre: bool,
        /// Bit 1, IOMMU_VTD_S1_EAFE.
        #[inline]
        pub eafe: bool,
        /// Bit 2, IOMMU_VTD_S1_WPE.
        #[inline]
        pub wpe: bool,
        /// Bits 63:3, not defined by the uAPI.
        #[inline]
        pub reserved: u61,
    }
}

impl S1Flags {
    /// The uAPI encoding ([`VtdS1FlagsWord`]).
    pub fn bits(&self) -> u64 {
        VtdS1FlagsWord::new(self.sre, self.eafe, self.wpe).into()
    }
}

/// What the host IOMMU must translate a device's requests without PASID
/// with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostBinding {
    /// The nesting parent alone: untranslated guest physical addresses
    /// (translation disabled, or a pass-through entry).
    Parent,
    /// A nested domain over the guest's first-stage table.
    Nested {
        /// Domain id of the PASID entry (guest invalidations name it).
        did: u16,
        /// The PASID the entry belongs to (RID_PASID).
        pasid: u32,
        /// First-stage table pointer (a guest physical address).
        pgtbl: u64,
        /// Input address width: 48 (4-level) or 57 (5-level).
        addr_width: u8,
        /// Entry controls.
        flags: S1Flags,
    },
    /// No valid entry: DMA is blocked.
    Blocked,
    /// A PASID entry the host cannot carry (second-stage or nested
    /// translation of the guest's own): DMA is blocked.
    Unsupported,
}

/// The most PASIDs besides RID_PASID of one function that are bound on the
/// host; PASID entries beyond stay blocked there (the glue logs it).
pub const MAX_HOST_PASIDS: usize = 256;

fn binding_of(pc: &PasidContext) -> HostBinding {
    let e = &pc.pasid_entry;
    match e.mode {
        PasidMode::PassThrough => HostBinding::Parent,
        PasidMode::FirstStage(fs) => HostBinding::Nested {
            did: e.domain_id,
            pasid: pc.pasid,
            pgtbl: fs.root,
            addr_width: if fs.levels == 5 { 57 } else { 48 },
            flags: S1Flags { sre: e.sre, eafe: e.eafe, wpe: e.wpe },
        },
        PasidMode::SecondStage(_) | PasidMode::Nested { .. } => HostBinding::Unsupported,
    }
}

impl Vtd {
    /// The host binding for requests without PASID of function `sid`, from
    /// the guest's tables in memory (not from caches), as it stands after
    /// the guest's last context- or PASID-cache invalidation.
    pub fn host_binding(&self, sid: u16, mem: &dyn GuestMemory) -> HostBinding {
        if !self.translation_enabled() {
            return HostBinding::Parent;
        }
        if !self.root_table_scalable() {
            // Legacy tables have no first stage to hand over.
            return HostBinding::Unsupported;
        }
        match resolve(mem, self.root_table_address(), sid, None, &self.sm_caps()) {
            Ok(pc) => binding_of(&pc),
            Err(_) => HostBinding::Blocked,
        }
    }

    /// The host binding for requests of function `sid` with PASID `pasid`
    /// (not RID_PASID), likewise from memory. Requests with PASID are
    /// blocked while translation is off or the tables are legacy ones.
    /// The entry's SRE becomes a flag of the nested domain: whether a
    /// supervisor request faults is the host's decision per request.
    pub fn host_binding_pasid(&self, sid: u16, pasid: u32, mem: &dyn GuestMemory) -> HostBinding {
        if !self.translation_enabled() || !self.root_table_scalable() {
            return HostBinding::Blocked;
        }
        match resolve(mem, self.root_table_address(), sid, Some((pasid, false)), &self.sm_caps()) {
            Ok(pc) => binding_of(&pc),
            Err(_) => HostBinding::Blocked,
        }
    }

    /// The PASIDs of function `sid` other than its RID_PASID whose PASID
    /// directory and table entries are present, ascending, at most
    /// `limit` of them; and whether there were more. Empty while
    /// translation is off, with legacy tables or with PASIDs disabled in
    /// the context entry. Reads the directory in 4 KiB pieces.
    pub fn present_pasids(&self, sid: u16, mem: &dyn GuestMemory, limit: usize) -> (Vec<u32>, bool) {
        let mut out = Vec::new();
        if !self.translation_enabled() || !self.root_table_scalable() {
            return (out, false);
        }
        let caps = self.sm_caps();
        let Ok(ce) = lookup_sm_context(mem, self.root_table_address(), sid, &caps) else {
            return (out, false);
        };
        if !ce.paside() || caps.pasid_bits == 0 {
            return (out, false);
        }
        // Arithmetic: 2^PASID-bits PASIDs.
        let pasids = 1u64 << u32::from(caps.pasid_bits.min(20));
        let dir_entries = u64::from(ce.pasid_dir_entries()).min(pasids.div_ceil(64));
        let dir = ce.pasid_dir() & caps.haw_mask;
        const CHUNK: u64 = 4096 / PASID_DIR_ENTRY_SIZE;
        let mut buf = [0u8; 4096];
        let mut first = 0u64;
        while first < dir_entries {
            let n = (dir_entries - first).min(CHUNK);
            let bytes = &mut buf[..(n * PASID_DIR_ENTRY_SIZE) as usize];
            let base = dir.wrapping_add(first * PASID_DIR_ENTRY_SIZE);
            // A piece that cannot be read whole is read entry by entry.
            let whole = mem.read(base, bytes).is_ok();
            for i in 0..n {
                let de = if whole {
                    let o = (i * PASID_DIR_ENTRY_SIZE) as usize;
                    u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap_or([0; 8]))
                } else {
                    mem.read_u64(base.wrapping_add(i * PASID_DIR_ENTRY_SIZE)).unwrap_or(0)
                };
                if de & 1 == 0 {
                    continue;
                }
                let table = de & !0xfff & caps.haw_mask;
                for j in 0..64u64 {
                    let p = (first + i) * 64 + j;
                    if p >= pasids || p == u64::from(ce.rid_pasid()) {
                        continue;
                    }
                    let present = mem
                        .read_u64(table.wrapping_add(j * PASID_ENTRY_SIZE))
                        .is_ok_and(|q0| q0 & 1 != 0);
                    if present {
                        if out.len() == limit {
                            return (out, true);
                        }
                        out.push(p as u32);
                    }
                }
            }
            first += n;
        }
        (out, false)
    }
}

/// Which host bindings of PASIDs other than RID_PASID a guest invalidation
/// may change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasidRebind {
    /// None.
    Nothing,
    /// Those of these PASIDs (PASID-selective PASID-cache invalidations).
    Pasids(Vec<u32>),
    /// Any: enumerate the present entries again
    /// ([`Vtd::present_pasids`]) and rebind those and the bound ones.
    All,
}

impl PasidRebind {
    /// Both scopes together.
    pub fn union(self, other: PasidRebind) -> PasidRebind {
        use PasidRebind as R;
        match (self, other) {
            (R::All, _) | (_, R::All) => R::All,
            (R::Nothing, x) | (x, R::Nothing) => x,
            (R::Pasids(mut a), R::Pasids(b)) => {
                for p in b {
                    if !a.contains(&p) {
                        a.push(p);
                    }
                }
                R::Pasids(a)
            }
        }
    }
}

/// The PASID bindings `event` may change.
pub fn pasid_rebind(event: &InvalidationEvent) -> PasidRebind {
    match *event {
        InvalidationEvent::PasidCachePasid { pasid, .. } => PasidRebind::Pasids(vec![pasid]),
        ref e if crate::nesting::notify::changes_mode(e) => PasidRebind::All,
        _ => PasidRebind::Nothing,
    }
}

/// One first-stage invalidation for the host (`struct
/// iommu_hwpt_vtd_s1_invalidate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct S1Invalidation {
    /// First address (4 KiB aligned; 0 with `npages` = `u64::MAX`).
    pub addr: u64,
    /// Number of 4 KiB pages; `u64::MAX`: everything.
    pub npages: u64,
    /// Only leaf entries changed (IOMMU_VTD_INV_FLAGS_LEAF).
    pub leaf: bool,
}

impl S1Invalidation {
    /// Everything of the nested domain.
    pub const ALL: S1Invalidation = S1Invalidation { addr: 0, npages: u64::MAX, leaf: false };
}

/// The host invalidation a guest invalidation implies for a device bound
/// to a nested domain for (`did`, `pasid`); `None` when it does not
/// concern that binding. Device-TLB invalidations are the host's own
/// business (it flushes the device's ATC with its IOTLB).
pub fn host_invalidation(event: &InvalidationEvent, did: u16, pasid: u32) -> Option<S1Invalidation> {
    use InvalidationEvent as E;
    match *event {
        E::Global(_) | E::IotlbGlobal => Some(S1Invalidation::ALL),
        // In scalable mode domain- and page-selective IOTLB invalidations
        // drop every first-stage mapping of the domain.
        E::IotlbDomain { did: d } | E::IotlbPages { did: d, .. } if d == did => Some(S1Invalidation::ALL),
        E::PasidIotlb { did: d, pasid: p } if d == did && p == pasid => Some(S1Invalidation::ALL),
        E::PasidIotlbPages { did: d, pasid: p, addr, size, leaf_only } if d == did && p == pasid => {
            // Arithmetic: the size in 4 KiB pages.
            Some(S1Invalidation { addr, npages: (size >> 12).max(1), leaf: leaf_only })
        }
        _ => None,
    }
}

/// Whether `event` can change a host binding (re-evaluate
/// [`Vtd::host_binding`] after it).
pub fn rebinds(event: &InvalidationEvent) -> bool {
    crate::nesting::notify::changes_mode(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bilge::prelude::*;

    /// `h` with its CAP changed by `f` (through the register's layout).
    fn with_cap(h: HostVtd, f: impl FnOnce(&mut CapReg)) -> HostVtd {
        let mut cap = CapReg::from(h.cap);
        f(&mut cap);
        HostVtd { cap: cap.into(), ..h }
    }

    /// `h` with its ECAP changed by `f`.
    fn with_ecap(h: HostVtd, f: impl FnOnce(&mut EcapReg)) -> HostVtd {
        let mut ecap = EcapReg::from(h.ecap);
        f(&mut ecap);
        HostVtd { ecap: ecap.into(), ..h }
    }

    fn modern() -> Config {
        Config {
            scalable_mode: true,
            first_stage: true,
            pasid_bits: 20,
            caching_mode: true,
            ..Config::default()
        }
    }

    fn host() -> HostVtd {
        let mut c = modern();
        c.caching_mode = false;
        let v = Vtd::new(c);
        HostVtd { cap: v.cap(), ecap: v.ecap() }
    }

    #[test]
    fn our_own_modern_unit_can_host_our_modern_unit() {
        let h = host();
        assert_eq!(h.mgaw(), 48);
        assert_eq!(h.cap & (0x4 << 8), 0x4 << 8, "SAGAW: 48-bit AGAW (spec bit 10)");
        assert_eq!(check_host(&modern(), &h), Ok(()));
    }

    #[test]
    fn missing_host_features_are_named() {
        let h = host();
        let no_nest = with_ecap(h, |e| e.set_nest(false));
        let err = check_host(&modern(), &no_nest).unwrap_err();
        assert!(err.contains("ECAP.NEST"), "{err}");
        let no_1g = with_cap(h, |c| c.set_fs1gp(false));
        assert!(check_host(&modern(), &no_1g).unwrap_err().contains("fs1gp=off"));
        assert_eq!(check_host(&Config { fs1gp: false, ..modern() }, &no_1g), Ok(()));
        let narrow = with_cap(h, |c| c.set_mgaw(u6::new(38)));
        assert!(check_host(&modern(), &narrow).unwrap_err().contains("aw-bits=48"));
        let legacy = Config::default();
        assert!(check_host(&legacy, &h).unwrap_err().contains("modern"));
        // Without SRS on the host: fine for the C device's x-flts=on
        // (first stage only, no SRS advertised), not for modern mode.
        let no_srs = with_ecap(h, |e| e.set_srs(false));
        assert!(check_host(&modern(), &no_srs).unwrap_err().contains("ECAP.SRS"));
        let flts = Config { second_stage: false, pasid_bits: 0, ..modern() };
        assert_eq!(check_host(&flts, &no_srs), Ok(()));
        let no_pasid = with_ecap(h, |e| e.set_pasid(false));
        let err = check_host(&modern(), &no_pasid).unwrap_err();
        assert!(err.contains("20-bit PASIDs") && err.contains("supports none"), "{err}");
        let pss8 = with_ecap(h, |e| e.set_pss(u5::new(7)));
        let err = check_host(&modern(), &pss8).unwrap_err();
        assert!(err.contains("8-bit ones") && err.contains("pasid-bits=8"), "{err}");
        assert_eq!(check_host(&Config { pasid_bits: 8, ..modern() }, &pss8), Ok(()));
    }

    #[test]
    fn invalidations_for_the_bound_domain_and_pasid_only() {
        let page = InvalidationEvent::PasidIotlbPages { did: 3, pasid: 0, addr: 0x4000, size: 0x4000, leaf_only: true };
        assert_eq!(
            host_invalidation(&page, 3, 0),
            Some(S1Invalidation { addr: 0x4000, npages: 4, leaf: true })
        );
        assert_eq!(host_invalidation(&page, 4, 0), None);
        assert_eq!(host_invalidation(&page, 3, 1), None);
        let all = Some(S1Invalidation::ALL);
        assert_eq!(host_invalidation(&InvalidationEvent::PasidIotlb { did: 3, pasid: 0 }, 3, 0), all);
        assert_eq!(host_invalidation(&InvalidationEvent::IotlbDomain { did: 3 }, 3, 0), all);
        assert_eq!(host_invalidation(&InvalidationEvent::IotlbDomain { did: 2 }, 3, 0), None);
        assert_eq!(host_invalidation(&InvalidationEvent::IotlbGlobal, 3, 0), all);
        assert_eq!(host_invalidation(&InvalidationEvent::PasidCacheGlobal, 3, 0), None);
        assert!(rebinds(&InvalidationEvent::PasidCacheGlobal));
        assert!(!rebinds(&page));
    }

    #[test]
    fn s1_flag_bits_follow_the_uapi() {
        assert_eq!(S1Flags { sre: true, eafe: false, wpe: false }.bits(), 1);
        assert_eq!(S1Flags { sre: false, eafe: true, wpe: false }.bits(), 2);
        assert_eq!(S1Flags { sre: false, eafe: false, wpe: true }.bits(), 4);
    }
}
