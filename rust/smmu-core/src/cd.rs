//! Context Descriptors (IHI 0070 §5.4) and the CD tables an STE points to
//! (§3.3.2, §5.3 L1CD): which CD a transaction uses ([`select`]), fetching
//! it ([`fetch`]), and decoding it into a stage-1 configuration
//! ([`decode`]).
//!
//! # Conventions
//!
//! * A CD is eight little-endian 64-bit words; words 0 to 2 have bilge
//!   layouts ([`CdWord0`] .. [`CdWord2`]), words 3 and 4 are MAIR and AMAIR,
//!   words 5 to 7 (MPAM, permission indirection) are not decoded.
//! * SubstreamIDs are at most 20 bits. The CD index of a transaction is its
//!   SubstreamID, or 0 for one without a SubstreamID on a stream with
//!   substreams disabled or S1DSS = 0b10.
//! * When stage 2 also translates, every CD-table address (S1ContextPtr,
//!   L1CD.L2Ptr and the entries indexed from them) is an IPA, translated
//!   with a stage-2 data read; a stage-2 fault there is reported with
//!   CLASS = CD ([`CdFault::Stage2`]). The address of an F_CD_FETCH is the
//!   physical address read.
//! * A CD-table layout the architecture leaves CONSTRAINED UNPREDICTABLE is
//!   resolved the same way under both rule sets (the C device has no
//!   substreams, so there is nothing to be compatible with): RES0 low
//!   bits of S1ContextPtr and L1CD.L2Ptr are treated as zero, and an
//!   L2Ptr at or above 2^OAS is C_BAD_SUBSTREAMID (the SMMUv3.1 choice).
//! * Decoding never panics; an ILLEGAL CD is a [`CdError`], reported as
//!   C_BAD_CD.
//!
//! # Compatible and strict decoding
//!
//! The compatible rules are those of QEMU 10.2.2's `decode_cd`, generalised
//! to the capabilities as for STEs; they accept these CDs the
//! architecture's rules refuse or read differently:
//!
//! 1. TTB0/TTB1 are taken from bits 50:4 (the C device's `CD_TTB`): bit 51
//!    is dropped. Strict: bits 51:4.
//! 2. The 48-bit cap on a table's address with a 4/16 KiB granule is
//!    carried over to the other table (the C device keeps one running
//!    output size): a 64 KiB TTB1 after a 4 KiB TTB0 is checked against
//!    48 bits too. This makes a difference only with an OAS above 48.
//! 3. ASID\[15:8\] non-zero on an SMMU with 8-bit ASIDs is accepted (the C
//!    device has 16-bit ASIDs). Strict: ILLEGAL.
//!
//! Both rule sets refuse V = 0, AA64 = 0 (no AArch32 tables), A = 0 on an
//! abort-only SMMU, an S the stall model does not allow (or S = 1 under
//! STE.S1STALLD), HA/HD beyond the implemented HTTU, ENDI = 1 when a table
//! is enabled (little-endian tables only), a reserved or unimplemented
//! granule, a TnSZ out of range and a TTB beyond the effective IPS (and
//! beyond 48 bits for 4/16 KiB granules without DS); fields of a table
//! disabled by EPDn are not checked.
//!
//! IPS 0b110 and 0b111 are taken as 52 bits and capped by the OAS, as the
//! architecture specifies (0b111 behaves as 0b110 up to SMMUv3.3, and any
//! size above the OAS behaves as the OAS). The C device instead hits
//! `g_assert_not_reached()` in `oas2bits` for them, a guest-triggerable
//! abort; capping is what its own `MIN(oas, IPS)` intends, is what the
//! SMMUv3.1 it claims to be does, and keeps a guest that writes the largest
//! encoding working, so we do not make it C_BAD_CD.
//!
//! The C device translates TTB0/TTB1 through stage 2 while decoding a
//! nested CD; here they stay IPAs and the walk translates each stage-1
//! table access (CLASS = TT), so such a stage-2 fault arises at the first
//! translation rather than at decode, with the same event.

use iommu_core::layout::field_address;
use bilge::prelude::*;
use iommu_core::memory::GuestMemory;
use iommu_core::translation::vmsa::{self, Access, ConfigError, Fault, Granule, S1Config, S1Tables, S2Tables, TtConfig};
use iommu_core::translation::width_mask;

use crate::registers::StallModel;
use crate::ste::{CdTableFormat, S1Dss, Stage1, SteCaps, TableAttrs};
use crate::stream::{read_words, ConfigEvent};

pub use layouts::{CdWord0, CdWord1, CdWord2, L1Cd};

// ---------------------------------------------------------------- layouts

/// Architected bit layouts of the CD words and the L1CD. A module of its
/// own because bilge's generated constructors carry no documentation.
#[allow(missing_docs)]
mod layouts {
    use bilge::prelude::*;
    use iommu_core::translation::vmsa::{PaSize, Tg0, Tg1};

    /// CD bits 63:0: translation controls, validity, ASID.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct CdWord0 {
        /// Bits 5:0, T0SZ.
        #[inline]
        pub t0sz: u6,
        /// Bits 7:6, TG0.
        #[inline]
        pub tg0: Tg0,
        /// Bits 9:8, IR0: inner cacheability of TTB0 walks.
        #[inline]
        pub ir0: u2,
        /// Bits 11:10, OR0.
        #[inline]
        pub or0: u2,
        /// Bits 13:12, SH0.
        #[inline]
        pub sh0: u2,
        /// Bit 14, EPD0: no walks through TTB0.
        #[inline]
        pub epd0: bool,
        /// Bit 15, ENDI: big-endian tables.
        #[inline]
        pub endi: bool,
        /// Bits 21:16, T1SZ.
        #[inline]
        pub t1sz: u6,
        /// Bits 23:22, TG1 (encoded unlike TG0).
        #[inline]
        pub tg1: Tg1,
        /// Bits 25:24, IR1.
        #[inline]
        pub ir1: u2,
        /// Bits 27:26, OR1.
        #[inline]
        pub or1: u2,
        /// Bits 29:28, SH1.
        #[inline]
        pub sh1: u2,
        /// Bit 30, EPD1.
        #[inline]
        pub epd1: bool,
        /// Bit 31, V: the CD is valid.
        #[inline]
        pub v: bool,
        /// Bits 34:32, IPS.
        #[inline]
        pub ips: PaSize,
        /// Bit 35, AFFD: no Access flag faults.
        #[inline]
        pub affd: bool,
        /// Bit 36, WXN.
        #[inline]
        pub wxn: bool,
        /// Bit 37, UWXN.
        #[inline]
        pub uwxn: bool,
        /// Bit 38, TBI0.
        #[inline]
        pub tbi0: bool,
        /// Bit 39, TBI1.
        #[inline]
        pub tbi1: bool,
        /// Bit 40, PAN.
        #[inline]
        pub pan: bool,
        /// Bit 41, AA64: VMSAv8-64 tables.
        #[inline]
        pub aa64: bool,
        /// Bit 42, HD: hardware dirty state.
        #[inline]
        pub hd: bool,
        /// Bit 43, HA: hardware Access flag.
        #[inline]
        pub ha: bool,
        /// Bit 44, S: stall on stage-1 faults.
        #[inline]
        pub s: bool,
        /// Bit 45, R: record stage-1 faults.
        #[inline]
        pub r: bool,
        /// Bit 46, A: abort terminated transactions (else RAZ/WI).
        #[inline]
        pub a: bool,
        /// Bit 47, ASET: ASID not shared with PE broadcast invalidation.
        #[inline]
        pub aset: bool,
        /// Bits 63:48, ASID.
        #[inline]
        pub asid: u16,
    }

    /// CD bits 127:64: TTB0 and its controls.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct CdWord1 {
        /// Bit 64, NSCFG0 (secure streams only).
        #[inline]
        pub nscfg0: bool,
        /// Bit 65, HAD0: hierarchical attributes of TTB0 ignored.
        #[inline]
        pub had0: bool,
        /// Bit 66, E0PD0.
        #[inline]
        pub e0pd0: bool,
        /// Bit 67, HAFT.
        #[inline]
        pub haft: bool,
        /// Bits 119:68, TTB0\[55:4\].
        #[inline]
        pub ttb0: u52,
        #[inline]
        reserved: u2,
        /// Bit 122, PnCH.
        #[inline]
        pub pnch: bool,
        /// Bit 123, EPAN.
        #[inline]
        pub epan: bool,
        /// Bits 127:124, HWU059..HWU062.
        #[inline]
        pub hwu0: u4,
    }

    /// CD bits 191:128: TTB1 and its controls.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct CdWord2 {
        /// Bit 128, NSCFG1.
        #[inline]
        pub nscfg1: bool,
        /// Bit 129, HAD1.
        #[inline]
        pub had1: bool,
        /// Bit 130, E0PD1.
        #[inline]
        pub e0pd1: bool,
        /// Bit 131, AIE.
        #[inline]
        pub aie: bool,
        /// Bits 183:132, TTB1\[55:4\].
        #[inline]
        pub ttb1: u52,
        #[inline]
        reserved: u2,
        /// Bit 186, DS: 52-bit addresses with 4/16 KiB granules.
        #[inline]
        pub ds: bool,
        /// Bit 187, PIE.
        #[inline]
        pub pie: bool,
        /// Bits 191:188, HWU159..HWU162.
        #[inline]
        pub hwu1: u4,
    }

    /// A Level 1 Context Descriptor (§5.3).
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct L1Cd {
        /// Bit 0, V: L2Ptr is valid.
        #[inline]
        pub v: bool,
        #[inline]
        reserved: u11,
        /// Bits 55:12, L2Ptr\[55:12\].
        #[inline]
        pub l2_ptr: u44,
        #[inline]
        reserved: u8,
    }
}

// ---------------------------------------------------------------- errors

/// Why no CD could be fetched for a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CdFault {
    /// **C_BAD_SUBSTREAMID**: a SubstreamID the STE does not allow (none
    /// allowed, or at or above 2^S1CDMax), or an invalid or out-of-range
    /// L1CD on the way to CD `ssid`.
    BadSubstreamId {
        /// The SubstreamID (CD index) of the event.
        ssid: u32,
    },
    /// **F_STREAM_DISABLED**: S1DSS refuses the transaction.
    StreamDisabled {
        /// Its SubstreamID (`None`: SSV = 0).
        ssid: Option<u32>,
    },
    /// **F_CD_FETCH**: reading the L1CD or CD at physical address `addr`
    /// failed.
    Fetch {
        /// The physical address read.
        addr: u64,
    },
    /// A **stage-2 fault with CLASS = CD** translating `ipa`, the address
    /// of the L1CD or CD.
    Stage2 {
        /// The fault.
        fault: Fault,
        /// The IPA.
        ipa: u64,
    },
}

impl CdFault {
    /// The event this fault becomes.
    pub fn event(&self) -> ConfigEvent {
        match *self {
            CdFault::BadSubstreamId { ssid } => ConfigEvent::BadSubstreamId { ssid },
            CdFault::StreamDisabled { ssid } => ConfigEvent::StreamDisabled { ssid },
            CdFault::Fetch { addr } => ConfigEvent::CdFetch { fetch_addr: addr },
            CdFault::Stage2 { fault, ipa } => ConfigEvent::CdStage2 { fault, ipa },
        }
    }
}

impl From<CdFault> for ConfigEvent {
    fn from(e: CdFault) -> Self {
        e.event()
    }
}

/// Why a CD is ILLEGAL. Every variant is reported as **C_BAD_CD** (event
/// 0x0A).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CdError {
    /// V = 0.
    Invalid,
    /// AA64 = 0: AArch32 tables are not implemented.
    NotAArch64,
    /// A = 0 on an SMMU that can only abort (TERM_MODEL = 1).
    AbortRequired,
    /// S = 1 on an SMMU that cannot stall.
    StallUnsupported,
    /// S = 0 on an SMMU that always stalls.
    StallRequired,
    /// S = 1 with STE.S1STALLD = 1.
    StallDisabled,
    /// HA or HD without the HTTU it needs.
    Httu,
    /// ASID\[15:8\] non-zero with 8-bit ASIDs (strict rules only).
    Asid16,
    /// ENDI = 1: big-endian tables are not implemented.
    BigEndian,
    /// TG0 = 0b11 or TG1 = 0b00 for an enabled table.
    GranuleReserved {
        /// 0 for TTB0, 1 for TTB1.
        table: u8,
    },
    /// The granule of an enabled table is not implemented.
    GranuleUnsupported {
        /// 0 for TTB0, 1 for TTB1.
        table: u8,
    },
    /// An enabled table's TTB is beyond the effective IPS (or 48 bits).
    TtbOutOfRange {
        /// 0 for TTB0, 1 for TTB1.
        table: u8,
    },
    /// A TnSZ the walker cannot use.
    Tables(ConfigError),
}

impl CdError {
    /// The event this error becomes.
    pub fn event(&self) -> ConfigEvent {
        ConfigEvent::BadCd
    }
}

impl From<ConfigError> for CdError {
    fn from(e: ConfigError) -> Self {
        CdError::Tables(e)
    }
}

impl From<CdError> for ConfigEvent {
    fn from(e: CdError) -> Self {
        e.event()
    }
}

// ---------------------------------------------------------------- selection and fetch

/// Which CD a transaction uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CdSelection {
    /// The CD of this index.
    Cd(u32),
    /// None: S1DSS = 0b01 and no SubstreamID, stage 1 bypasses.
    BypassStage1,
}

/// A fetched CD, or none needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CdFetch {
    /// The CD of `index`, read at physical address `addr`.
    Cd {
        /// The CD index (SubstreamID, or 0).
        index: u32,
        /// Its physical address.
        addr: u64,
        /// Its words.
        words: [u64; 8],
    },
    /// S1DSS = 0b01 and no SubstreamID: stage 1 bypasses, no CD.
    BypassStage1,
}

/// The CD a transaction with `ssid` (`None`: no SubstreamID) uses on a
/// stream whose STE has stage-1 part `s1`.
pub fn select(s1: &Stage1, ssid: Option<u32>, caps: &SteCaps) -> Result<CdSelection, CdFault> {
    let Some(ssid) = ssid else {
        if s1.cd_max == 0 {
            return Ok(CdSelection::Cd(0));
        }
        return match s1.dss {
            S1Dss::Terminate => Err(CdFault::StreamDisabled { ssid: None }),
            S1Dss::Bypass => Ok(CdSelection::BypassStage1),
            S1Dss::Substream0 => Ok(CdSelection::Cd(0)),
        };
    };
    let bits = u32::from(s1.cd_max).min(20);
    // Arithmetic: a SubstreamID beyond S1CDMax.
    if caps.ssid_bits == 0 || s1.cd_max == 0 || u64::from(ssid) >> bits != 0 {
        return Err(CdFault::BadSubstreamId { ssid });
    }
    if ssid == 0 && s1.dss == S1Dss::Substream0 {
        return Err(CdFault::StreamDisabled { ssid: Some(0) });
    }
    Ok(CdSelection::Cd(ssid))
}

/// Select and fetch the CD of a transaction with `ssid`; `s2` is the
/// stream's stage 2 when it also translates (nested), through which the
/// CD-table addresses are translated.
pub fn fetch(
    mem: &dyn GuestMemory,
    s1: &Stage1,
    ssid: Option<u32>,
    s2: Option<&S2Tables>,
    caps: &SteCaps,
) -> Result<CdFetch, CdFault> {
    match select(s1, ssid, caps)? {
        CdSelection::BypassStage1 => Ok(CdFetch::BypassStage1),
        CdSelection::Cd(index) => {
            let (addr, words) = fetch_index(mem, s1, index, s2, caps)?;
            Ok(CdFetch::Cd { index, addr, words })
        }
    }
}

/// Fetch CD `index` of the table `s1` describes (no SubstreamID rules:
/// see [`select`]); returns its physical address and words. An index
/// beyond the table is C_BAD_SUBSTREAMID.
pub fn fetch_index(
    mem: &dyn GuestMemory,
    s1: &Stage1,
    index: u32,
    s2: Option<&S2Tables>,
    caps: &SteCaps,
) -> Result<(u64, [u64; 8]), CdFault> {
    let to_pa = |ipa: u64| -> Result<u64, CdFault> {
        match s2 {
            None => Ok(ipa),
            Some(t) => {
                let read = Access { write: false, privileged: true, instruction: false };
                t.translate(mem, ipa, read).map(|o| o.output(ipa)).map_err(|fault| CdFault::Stage2 { fault, ipa })
            }
        }
    };
    let bad = CdFault::BadSubstreamId { ssid: index };
    let cd_max = u32::from(s1.cd_max).min(20);
    let ptr = s1.context_ptr;
    let index64 = u64::from(index);
    let ipa = match (s1.fmt, s1.fmt.split()) {
        (CdTableFormat::Single, _) => {
            if index != 0 {
                return Err(bad);
            }
            ptr
        }
        // Linear, the other format without leaf tables.
        (_, None) => {
            if index64 >> cd_max != 0 {
                return Err(bad);
            }
            (ptr & !width_mask(cd_max + 6)).wrapping_add(index64 * 64)
        }
        (_, Some(split)) => {
            // Arithmetic: an index beyond S1CDMax; then the L1 descriptor's index.
            if index64 >> cd_max != 0 {
                return Err(bad);
            }
            let l1_bits = cd_max.saturating_sub(split);
            let base = ptr & !width_mask((l1_bits + 3).max(6));
            let l1_ipa = base.wrapping_add((index64 >> split) * 8);
            let l1_pa = to_pa(l1_ipa)?;
            let raw = mem.read_u64(l1_pa).map_err(|_| CdFault::Fetch { addr: l1_pa })?;
            let l1 = L1Cd::from(raw);
            if !l1.v() {
                return Err(bad);
            }
            // L2Ptr[11:0] are zero; with 64 KiB tables [15:12] are RES0.
            let l2 = field_address(l1.l2_ptr(), 12) & !width_mask(split + 6);
            if l2 >> caps.oas() != 0 {
                return Err(bad);
            }
            l2.wrapping_add((index64 & width_mask(split)) * 64)
        }
    };
    let pa = to_pa(ipa)?;
    let words = read_words(mem, pa).map_err(|_| CdFault::Fetch { addr: pa })?;
    Ok((pa, words))
}

// ---------------------------------------------------------------- decoding

/// A decoded, valid CD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextConfig {
    /// ASID (ignored for TLB tagging only in EL2/EL3 StreamWorlds, which
    /// the model does not have).
    pub asid: u16,
    /// ASET: the ASID is not shared with the PEs' broadcast invalidations.
    pub aset: bool,
    /// The stage-1 configuration as the walker takes it.
    pub s1: S1Config,
    /// The same, validated: ready to walk.
    pub tables: S1Tables,
    /// R: record stage-1 Translation, Address size, Access flag and
    /// Permission faults.
    pub record: bool,
    /// S: stall on those faults (only ever set when the SMMU can stall).
    pub stall: bool,
    /// A: terminated transactions abort (else RAZ/WI).
    pub abort: bool,
    /// WXN (not modelled by the walker).
    pub wxn: bool,
    /// UWXN (IGNORED for VMSAv8-64).
    pub uwxn: bool,
    /// PAN (not modelled by the walker).
    pub pan: bool,
    /// MAIR0/MAIR1 (word 3).
    pub mair: u64,
    /// AMAIR0/AMAIR1 (word 4).
    pub amair: u64,
    /// IR/OR/SH of TTB0 and TTB1 walks.
    pub tt_attrs: [TableAttrs; 2],
}

/// Decode a CD fetched through a stream with stage-1 part `s1` (whose
/// S1STALLD matters) on an SMMU with `caps`.
pub fn decode(words: [u64; 8], s1: &Stage1, caps: &SteCaps) -> Result<ContextConfig, CdError> {
    let w0 = CdWord0::from(words[0]);
    let w1 = CdWord1::from(words[1]);
    let w2 = CdWord2::from(words[2]);
    if !w0.v() {
        return Err(CdError::Invalid);
    }
    if !w0.aa64() {
        return Err(CdError::NotAArch64);
    }
    if caps.abort_only && !w0.a() {
        return Err(CdError::AbortRequired);
    }
    match caps.stall_model {
        StallModel::TerminateOnly | StallModel::Reserved if w0.s() => return Err(CdError::StallUnsupported),
        StallModel::StallForced if !w0.s() => return Err(CdError::StallRequired),
        StallModel::StallAndTerminate if w0.s() && s1.stall_disabled => return Err(CdError::StallDisabled),
        _ => {}
    }
    let (ha_ok, hd_ok) = (caps.ha(), caps.hd());
    if ((w0.ha() || w0.hd()) && !ha_ok) || (w0.hd() && !hd_ok) {
        return Err(CdError::Httu);
    }
    let asid = w0.asid();
    // Arithmetic: an ASID wider than 8 bits without IDR0.ASID16.
    if caps.strict && !caps.asid16 && asid >> 8 != 0 {
        return Err(CdError::Asid16);
    }
    let ds = caps.ds && w2.ds();
    let ips = u3::from(w0.ips()).value();
    let ips_bits = vmsa::pa_size_bits(ips).min(caps.oas());

    struct Raw {
        epd: bool,
        tsz: u8,
        granule: Option<Granule>,
        ttb: u64,
        tbi: bool,
        had: bool,
    }
    let raw = [
        Raw {
            epd: w0.epd0(),
            tsz: w0.t0sz().value(),
            granule: Granule::from_tg0(u2::from(w0.tg0()).value()),
            ttb: field_address(w1.ttb0(), 4),
            tbi: w0.tbi0(),
            had: w1.had0(),
        },
        Raw {
            epd: w0.epd1(),
            tsz: w0.t1sz().value(),
            granule: Granule::from_tg1(u2::from(w0.tg1()).value()),
            ttb: field_address(w2.ttb1(), 4),
            tbi: w0.tbi1(),
            had: w2.had1(),
        },
    ];
    let mut running = ips_bits;
    let mut tt = [TtConfig { base: 0, tsz: 0, granule: Granule::Size4K, epd: true, tbi: false, had: false }; 2];
    for (i, (r, out)) in raw.iter().zip(tt.iter_mut()).enumerate() {
        let table = i as u8;
        *out = TtConfig {
            base: r.ttb,
            tsz: r.tsz,
            granule: r.granule.unwrap_or(Granule::Size4K),
            epd: r.epd,
            tbi: r.tbi,
            had: r.had,
        };
        if r.epd {
            continue;
        }
        let granule = r.granule.ok_or(CdError::GranuleReserved { table })?;
        if !caps.granules.supports(granule) {
            return Err(CdError::GranuleUnsupported { table });
        }
        if w0.endi() {
            return Err(CdError::BigEndian);
        }
        let small = granule != Granule::Size64K && !ds;
        let (base, limit) = if caps.strict {
            (r.ttb & width_mask(52), if small { ips_bits.min(48) } else { ips_bits })
        } else {
            if small {
                running = running.min(48);
            }
            (r.ttb & width_mask(51), running)
        };
        // Arithmetic: a table base beyond the address size.
        if base >> limit != 0 {
            return Err(CdError::TtbOutOfRange { table });
        }
        out.base = base;
    }
    let cfg = S1Config {
        aa64: true,
        tt,
        ips,
        affd: w0.affd(),
        ha: w0.ha() && ha_ok,
        hd: w0.hd() && hd_ok,
        ds,
    };
    let tables = S1Tables::new(&cfg, &caps.vmsa())?;
    Ok(ContextConfig {
        asid,
        aset: w0.aset(),
        s1: cfg,
        tables,
        record: w0.r(),
        stall: w0.s(),
        abort: w0.a(),
        wxn: w0.wxn(),
        uwxn: w0.uwxn(),
        pan: w0.pan(),
        mair: words[3],
        amair: words[4],
        tt_attrs: [
            TableAttrs { inner: w0.ir0().value(), outer: w0.or0().value(), sh: w0.sh0().value() },
            TableAttrs { inner: w0.ir1().value(), outer: w0.or1().value(), sh: w0.sh1().value() },
        ],
    })
}

// ---------------------------------------------------------------- tests

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ste::tests::{caps_variants, linux_s1_ste, linux_s2_words, CACHE_WBRA, SH_ISH};
    use crate::ste::{self, Config, StreamConfig, SteWord0};
    use crate::registers::Httu;
    use crate::testutil::{ste_caps, Mem, Rng};
    use iommu_core::translation::vmsa::{PaSize, S2Config, Tg0, Tg1};

    fn qemu() -> SteCaps {
        ste_caps(true, true)
    }

    /// Substreams and 2-level CD tables, as a real SMMU might have.
    fn pasid() -> SteCaps {
        SteCaps { ssid_bits: 20, two_level_cd: true, ..qemu() }
    }

    fn stage1(context_ptr: u64, fmt: CdTableFormat, cd_max: u8, dss: S1Dss) -> Stage1 {
        Stage1 { context_ptr, fmt, cd_max, dss, stall_disabled: false, attrs: TableAttrs::default() }
    }

    /// Linux's MAIR: NC, WB, Device-nGnRE, inner NC outer WB.
    const LINUX_MAIR: u64 = 0xf404_ff44;

    /// A CD as Linux's arm_smmu_make_s1_cd() writes it: TTB0 only (EPD1),
    /// WBWA/ISH walks, 44-bit IPS, R, A, ASET.
    fn linux_cd(asid: u16, ttb0: u64, tg: Tg0, t0sz: u8) -> [u64; 8] {
        let mut w0 = CdWord0::from(0u64);
        w0.set_t0sz(u6::new(t0sz));
        w0.set_tg0(tg);
        w0.set_ir0(u2::new(CACHE_WBRA));
        w0.set_or0(u2::new(CACHE_WBRA));
        w0.set_sh0(u2::new(SH_ISH));
        w0.set_epd1(true);
        w0.set_v(true);
        w0.set_ips(PaSize::Bits44);
        w0.set_aa64(true);
        w0.set_r(true);
        w0.set_a(true);
        w0.set_aset(true);
        w0.set_asid(asid);
        let mut w1 = CdWord1::from(0u64);
        w1.set_ttb0(u52::new(ttb0 >> 4));
        [u64::from(w0), u64::from(w1), 0, LINUX_MAIR, 0, 0, 0, 0]
    }

    fn cd0(w: [u64; 8], f: impl FnOnce(&mut CdWord0)) -> [u64; 8] {
        let mut x = CdWord0::from(w[0]);
        f(&mut x);
        [u64::from(x), w[1], w[2], w[3], w[4], w[5], w[6], w[7]]
    }

    fn cd1(w: [u64; 8], f: impl FnOnce(&mut CdWord1)) -> [u64; 8] {
        let mut x = CdWord1::from(w[1]);
        f(&mut x);
        [w[0], u64::from(x), w[2], w[3], w[4], w[5], w[6], w[7]]
    }

    fn cd2(w: [u64; 8], f: impl FnOnce(&mut CdWord2)) -> [u64; 8] {
        let mut x = CdWord2::from(w[2]);
        f(&mut x);
        [w[0], w[1], u64::from(x), w[3], w[4], w[5], w[6], w[7]]
    }

    fn l1cd(l2: u64) -> u64 {
        let mut d = L1Cd::from(0u64);
        d.set_v(true);
        d.set_l2_ptr(u44::new(l2 >> 12));
        u64::from(d)
    }

    fn single() -> Stage1 {
        stage1(0x1000, CdTableFormat::Single, 0, S1Dss::Terminate)
    }

    fn linux() -> [u64; 8] {
        linux_cd(1, 0x8_0000_0000, Tg0::Granule4K, 16)
    }

    // ------------------------------------------------------------ layouts

    #[test]
    fn layouts_match_the_architected_bit_positions() {
        let w = |f: fn(&mut CdWord0)| {
            let mut x = CdWord0::from(0u64);
            f(&mut x);
            u64::from(x)
        };
        assert_eq!(w(|x| x.set_tg0(Tg0::Granule64K)), 1 << 6);
        assert_eq!(w(|x| x.set_epd0(true)), 1 << 14);
        assert_eq!(w(|x| x.set_endi(true)), 1 << 15);
        assert_eq!(w(|x| x.set_t1sz(u6::new(0x3f))), 0x3f << 16);
        assert_eq!(w(|x| x.set_tg1(Tg1::Granule64K)), 3 << 22);
        assert_eq!(w(|x| x.set_epd1(true)), 1 << 30);
        assert_eq!(w(|x| x.set_v(true)), 1 << 31);
        assert_eq!(w(|x| x.set_ips(PaSize::Reserved)), 7 << 32);
        assert_eq!(w(|x| x.set_tbi0(true)), 1 << 38);
        assert_eq!(w(|x| x.set_aa64(true)), 1 << 41);
        assert_eq!(w(|x| x.set_hd(true)), 1 << 42);
        assert_eq!(w(|x| x.set_ha(true)), 1 << 43);
        assert_eq!(w(|x| x.set_s(true)), 1 << 44);
        assert_eq!(w(|x| x.set_r(true)), 1 << 45);
        assert_eq!(w(|x| x.set_a(true)), 1 << 46);
        assert_eq!(w(|x| x.set_aset(true)), 1 << 47);
        assert_eq!(w(|x| x.set_asid(0xffff)), 0xffff << 48);
        let mut w1 = CdWord1::from(0u64);
        w1.set_had0(true);
        w1.set_ttb0(u52::new((1 << 52) - 1));
        assert_eq!(u64::from(w1), 0x00ff_ffff_ffff_fff2);
        let mut w2 = CdWord2::from(0u64);
        w2.set_ds(true);
        assert_eq!(u64::from(w2), 1 << 58);
        assert_eq!(l1cd(0xabc_d000), 0xabc_d001);
    }

    // ------------------------------------------------------------ decoding Linux's CDs

    #[test]
    fn linux_cd_4k() {
        for caps in [qemu(), qemu().strict()] {
            let c = decode(linux(), &single(), &caps).unwrap();
            assert_eq!(c.asid, 1);
            assert!(c.aset && c.record && c.abort && !c.stall);
            assert_eq!(c.mair, LINUX_MAIR);
            assert_eq!(c.tt_attrs[0], TableAttrs { inner: 1, outer: 1, sh: 3 });
            assert_eq!(c.s1.tt[0].base, 0x8_0000_0000);
            assert!(!c.s1.tt[0].epd && c.s1.tt[1].epd);
            assert_eq!(c.tables.start_level(false), Some(0));
            assert_eq!(c.tables.va_bits(false), Some(48));
            assert_eq!(c.tables.start_level(true), None);
            assert_eq!(vmsa::pa_size_bits(c.s1.ips), 44);
        }
    }

    #[test]
    fn linux_cd_64k_and_16k() {
        let c = decode(linux_cd(7, 0x1_0000, Tg0::Granule64K, 16), &single(), &qemu()).unwrap();
        assert_eq!(c.s1.tt[0].granule, Granule::Size64K);
        assert_eq!(c.tables.start_level(false), Some(1));
        let c = decode(linux_cd(7, 0x4000, Tg0::Granule16K, 17), &single(), &qemu()).unwrap();
        assert_eq!(c.tables.va_bits(false), Some(47));
    }

    #[test]
    fn both_halves_and_both_disabled() {
        // TTB1 in use (a kernel-style split), TG1 encoded differently.
        let w = cd2(cd0(linux(), |x| {
            x.set_epd1(false);
            x.set_t1sz(u6::new(25));
            x.set_tg1(Tg1::Granule4K);
            x.set_tbi1(true);
        }), |x| {
            x.set_ttb1(u52::new(0x9000_0000 >> 4));
            x.set_had1(true);
        });
        let w = cd1(w, |x| x.set_had0(true));
        let c = decode(w, &single(), &qemu()).unwrap();
        assert!(c.s1.tt[0].had && !c.s1.tt[0].tbi);
        assert_eq!(c.s1.tt[1], TtConfig { base: 0x9000_0000, tsz: 25, granule: Granule::Size4K, epd: false, tbi: true, had: true });
        // EPD0 and EPD1: nothing else is checked, ENDI included.
        let w = cd0(linux(), |x| {
            x.set_epd0(true);
            x.set_t0sz(u6::new(0));
            x.set_tg0(Tg0::Reserved);
            x.set_endi(true);
        });
        let c = decode(w, &single(), &qemu().strict()).unwrap();
        assert_eq!(c.tables.start_level(false), None);
    }

    // ------------------------------------------------------------ illegal CDs

    #[test]
    fn validity_format_and_fault_model() {
        type Case = (fn(&mut CdWord0), CdError);
        let cases: [Case; 7] = [
            (|x| x.set_v(false), CdError::Invalid),
            (|x| x.set_aa64(false), CdError::NotAArch64),
            (|x| x.set_a(false), CdError::AbortRequired),
            (|x| x.set_s(true), CdError::StallUnsupported),
            (|x| x.set_ha(true), CdError::Httu),
            (|x| x.set_hd(true), CdError::Httu),
            (|x| x.set_endi(true), CdError::BigEndian),
        ];
        for (f, want) in cases {
            for caps in [qemu(), qemu().strict()] {
                assert_eq!(decode(cd0(linux(), f), &single(), &caps), Err(want));
                assert_eq!(want.event(), ConfigEvent::BadCd);
            }
        }
    }

    #[test]
    fn stall_models() {
        let stalling = SteCaps { stall_model: StallModel::StallAndTerminate, ..qemu() };
        let w = cd0(linux(), |x| x.set_s(true));
        assert!(decode(w, &single(), &stalling).unwrap().stall);
        let stalld = Stage1 { stall_disabled: true, ..single() };
        assert_eq!(decode(w, &stalld, &stalling), Err(CdError::StallDisabled));
        let forced = SteCaps { stall_model: StallModel::StallForced, ..qemu() };
        assert_eq!(decode(linux(), &single(), &forced), Err(CdError::StallRequired));
        let raz = SteCaps { abort_only: false, ..qemu() };
        assert!(!decode(cd0(linux(), |x| x.set_a(false)), &single(), &raz).unwrap().abort);
    }

    #[test]
    fn httu_levels() {
        let af = SteCaps { httu: Httu::AccessFlag, ..qemu() };
        let ha = cd0(linux(), |x| x.set_ha(true));
        assert!(decode(ha, &single(), &af).unwrap().s1.ha);
        let both = cd0(ha, |x| x.set_hd(true));
        assert_eq!(decode(both, &single(), &af), Err(CdError::Httu));
        let dirty = SteCaps { httu: Httu::Dirty, ..qemu() };
        let c = decode(both, &single(), &dirty).unwrap();
        assert!(c.s1.ha && c.s1.hd);
    }

    #[test]
    fn table_sizes() {
        for (tsz, ok) in [(15u8, false), (16, true), (39, true), (40, false)] {
            let w = cd0(linux(), |x| x.set_t0sz(u6::new(tsz)));
            let r = decode(w, &single(), &qemu());
            assert_eq!(r.is_ok(), ok, "T0SZ {tsz}: {r:?}");
            if !ok {
                assert_eq!(r, Err(CdError::Tables(ConfigError::TszOutOfRange)));
            }
        }
        // TTB1's size is checked when EPD1 = 0 only.
        let w = cd0(linux(), |x| {
            x.set_epd1(false);
            x.set_tg1(Tg1::Granule4K);
            x.set_t1sz(u6::new(60));
        });
        assert_eq!(decode(w, &single(), &qemu()), Err(CdError::Tables(ConfigError::TszOutOfRange)));
        // 52-bit VAs with 64K granules on an SMMU with VAX.
        let vax = SteCaps { va52: true, oas_bits: 52, ..qemu() };
        let w = linux_cd(1, 0x1_0000, Tg0::Granule64K, 12);
        assert_eq!(decode(w, &single(), &vax).unwrap().tables.va_bits(false), Some(52));
    }

    #[test]
    fn granules() {
        let w = cd0(linux(), |x| x.set_tg0(Tg0::Reserved));
        assert_eq!(decode(w, &single(), &qemu()), Err(CdError::GranuleReserved { table: 0 }));
        let w = cd0(linux(), |x| {
            x.set_epd1(false);
            x.set_t1sz(u6::new(16));
            x.set_tg1(Tg1::Reserved);
        });
        assert_eq!(decode(w, &single(), &qemu()), Err(CdError::GranuleReserved { table: 1 }));
        let no16 = SteCaps { granules: crate::ste::Granules { k16: false, ..crate::ste::Granules::ALL }, ..qemu() };
        let w = linux_cd(1, 0x4000, Tg0::Granule16K, 16);
        assert_eq!(decode(w, &single(), &no16), Err(CdError::GranuleUnsupported { table: 0 }));
    }

    #[test]
    fn ttb_range_and_ips() {
        // Bit 44 with IPS 44.
        let w = linux_cd(1, 1 << 44, Tg0::Granule4K, 16);
        assert_eq!(decode(w, &single(), &qemu()), Err(CdError::TtbOutOfRange { table: 0 }));
        // IPS 32 bits and a table at 4 GiB.
        let w = cd0(linux_cd(1, 1 << 32, Tg0::Granule4K, 16), |x| x.set_ips(PaSize::Bits32));
        assert_eq!(decode(w, &single(), &qemu()), Err(CdError::TtbOutOfRange { table: 0 }));
        // IPS 0b110 / 0b111: capped by the OAS, neither refused nor fatal.
        for ips in [PaSize::Bits52, PaSize::Reserved] {
            let w = cd0(linux_cd(1, 1 << 43, Tg0::Granule4K, 16), |x| x.set_ips(ips));
            assert!(decode(w, &single(), &qemu()).is_ok());
            let w = cd0(linux_cd(1, 1 << 44, Tg0::Granule4K, 16), |x| x.set_ips(ips));
            assert_eq!(decode(w, &single(), &qemu()), Err(CdError::TtbOutOfRange { table: 0 }));
        }
        // Bit 51: dropped by the C device, refused by the architecture.
        let w = linux_cd(1, (1 << 51) | 0x8000, Tg0::Granule4K, 16);
        assert_eq!(decode(w, &single(), &qemu()).unwrap().s1.tt[0].base, 0x8000);
        assert_eq!(decode(w, &single(), &qemu().strict()), Err(CdError::TtbOutOfRange { table: 0 }));
    }

    #[test]
    fn the_48_bit_cap_across_tables() {
        // OAS 52: a 4K TTB0 and a 64K TTB1 at bit 50.
        let big = SteCaps { oas_bits: 52, ..qemu() };
        let w = cd2(cd0(linux(), |x| {
            x.set_ips(PaSize::Bits52);
            x.set_epd1(false);
            x.set_t1sz(u6::new(16));
            x.set_tg1(Tg1::Granule64K);
        }), |x| x.set_ttb1(u52::new((1 << 50) >> 4)));
        assert_eq!(decode(w, &single(), &big), Err(CdError::TtbOutOfRange { table: 1 }));
        assert_eq!(decode(w, &single(), &big.strict()).unwrap().s1.tt[1].base, 1 << 50);
        // With 4K and no DS, 48 bits in both.
        let w = linux_cd(1, 1 << 48, Tg0::Granule4K, 16);
        let w = cd0(w, |x| x.set_ips(PaSize::Bits52));
        assert_eq!(decode(w, &single(), &big.strict()), Err(CdError::TtbOutOfRange { table: 0 }));
        // DS lifts it, where implemented.
        let lpa2 = SteCaps { ds: true, ..big };
        let w = cd2(w, |x| x.set_ds(true));
        assert!(decode(w, &single(), &lpa2.strict()).unwrap().s1.ds);
        assert_eq!(decode(w, &single(), &big.strict()), Err(CdError::TtbOutOfRange { table: 0 }));
    }

    #[test]
    fn eight_bit_asids() {
        let caps = SteCaps { asid16: false, ..qemu() };
        let w = linux_cd(0x1ff, 0x8000, Tg0::Granule4K, 16);
        assert_eq!(decode(w, &single(), &caps).unwrap().asid, 0x1ff);
        assert_eq!(decode(w, &single(), &caps.strict()), Err(CdError::Asid16));
    }

    // ------------------------------------------------------------ selection

    #[test]
    fn selection_without_substreams() {
        let s1 = single();
        assert_eq!(select(&s1, None, &qemu()), Ok(CdSelection::Cd(0)));
        assert_eq!(select(&s1, Some(0), &qemu()), Err(CdFault::BadSubstreamId { ssid: 0 }));
        assert_eq!(select(&s1, Some(3), &pasid()), Err(CdFault::BadSubstreamId { ssid: 3 }));
        // Substreams enabled in the STE but not implemented: refused.
        let s1 = stage1(0x1000, CdTableFormat::Linear, 4, S1Dss::Bypass);
        assert_eq!(select(&s1, Some(1), &qemu()), Err(CdFault::BadSubstreamId { ssid: 1 }));
    }

    #[test]
    fn selection_at_the_cdmax_edge_and_s1dss() {
        let caps = pasid();
        for dss in [S1Dss::Terminate, S1Dss::Bypass, S1Dss::Substream0] {
            let s1 = stage1(0x1000, CdTableFormat::Linear, 4, dss);
            assert_eq!(select(&s1, Some(15), &caps), Ok(CdSelection::Cd(15)));
            assert_eq!(select(&s1, Some(16), &caps), Err(CdFault::BadSubstreamId { ssid: 16 }));
            assert_eq!(select(&s1, Some(u32::MAX), &caps), Err(CdFault::BadSubstreamId { ssid: u32::MAX }));
            let (none, zero) = match dss {
                S1Dss::Terminate => (Err(CdFault::StreamDisabled { ssid: None }), Ok(CdSelection::Cd(0))),
                S1Dss::Bypass => (Ok(CdSelection::BypassStage1), Ok(CdSelection::Cd(0))),
                S1Dss::Substream0 => (Ok(CdSelection::Cd(0)), Err(CdFault::StreamDisabled { ssid: Some(0) })),
            };
            assert_eq!(select(&s1, None, &caps), none, "{dss:?}");
            assert_eq!(select(&s1, Some(0), &caps), zero, "{dss:?}");
        }
        // 20-bit SubstreamIDs.
        let s1 = stage1(0x1000, CdTableFormat::TwoLevel64K, 20, S1Dss::Terminate);
        assert_eq!(select(&s1, Some(0xf_ffff), &caps), Ok(CdSelection::Cd(0xf_ffff)));
        assert_eq!(select(&s1, Some(0x10_0000), &caps), Err(CdFault::BadSubstreamId { ssid: 0x10_0000 }));
        assert_eq!(
            CdFault::StreamDisabled { ssid: Some(0) }.event(),
            ConfigEvent::StreamDisabled { ssid: Some(0) }
        );
        assert_eq!(CdFault::BadSubstreamId { ssid: 9 }.event(), ConfigEvent::BadSubstreamId { ssid: 9 });
    }

    // ------------------------------------------------------------ fetching

    #[test]
    fn single_cd_from_a_linux_ste() {
        let mem = Mem::default();
        mem.map(0x4000_0000, 0x1000);
        mem.put(0x4000_0040, &linux());
        let StreamConfig::Translate(t) = ste::decode(linux_s1_ste(0x4000_0040), &qemu()).unwrap() else {
            panic!("translating STE expected");
        };
        let s1 = t.s1.unwrap();
        let got = fetch(&mem, &s1, None, None, &qemu()).unwrap();
        assert_eq!(got, CdFetch::Cd { index: 0, addr: 0x4000_0040, words: linux() });
        assert_eq!(*mem.reads.borrow(), vec![(0x4000_0040, 64)], "one 64-byte read");
        assert!(decode(linux(), &s1, &qemu()).is_ok());
        // The CD is not there.
        let s1 = Stage1 { context_ptr: 0x5000_0000, ..s1 };
        assert_eq!(fetch(&mem, &s1, None, None, &qemu()), Err(CdFault::Fetch { addr: 0x5000_0000 }));
        assert_eq!(CdFault::Fetch { addr: 1 }.event(), ConfigEvent::CdFetch { fetch_addr: 1 });
    }

    #[test]
    fn linear_table() {
        let mem = Mem::default();
        mem.map(0x10_0000, 0x400);
        let cd5 = linux_cd(5, 0x8000, Tg0::Granule4K, 16);
        mem.put(0x10_0000 + 5 * 64, &cd5);
        // S1CDMax 4: a 1 KiB table; low pointer bits are treated as zero.
        let s1 = stage1(0x10_0380, CdTableFormat::Linear, 4, S1Dss::Substream0);
        let got = fetch(&mem, &s1, Some(5), None, &pasid()).unwrap();
        assert_eq!(got, CdFetch::Cd { index: 5, addr: 0x10_0140, words: cd5 });
        // CD 0 for the transactions without a SubstreamID.
        assert!(matches!(fetch(&mem, &s1, None, None, &pasid()), Ok(CdFetch::Cd { index: 0, addr: 0x10_0000, .. })));
        let s1 = Stage1 { dss: S1Dss::Bypass, ..s1 };
        assert_eq!(fetch(&mem, &s1, None, None, &pasid()), Ok(CdFetch::BypassStage1));
        assert_eq!(fetch_index(&mem, &s1, 16, None, &pasid()), Err(CdFault::BadSubstreamId { ssid: 16 }));
    }

    #[test]
    fn two_level_4k() {
        let mem = Mem::default();
        // S1CDMax 8: 4 L1CDs (32 bytes, aligned to 64) to tables of 64 CDs.
        mem.map(0x20_0000, 0x80);
        mem.map(0x30_0000, 0x200);
        mem.put(0x20_0000 + 8, &[l1cd(0x30_0000)]);
        let cd = linux_cd(0x45, 0x8000, Tg0::Granule4K, 16);
        mem.put(0x30_0000 + 5 * 64, &cd);
        let s1 = stage1(0x20_0020, CdTableFormat::TwoLevel4K, 8, S1Dss::Terminate);
        let got = fetch(&mem, &s1, Some(0x45), None, &pasid()).unwrap();
        assert_eq!(got, CdFetch::Cd { index: 0x45, addr: 0x30_0140, words: cd });
        assert_eq!(*mem.reads.borrow(), vec![(0x20_0008, 8), (0x30_0140, 64)]);
        // L1CD 0 invalid.
        assert_eq!(fetch(&mem, &s1, Some(3), None, &pasid()), Err(CdFault::BadSubstreamId { ssid: 3 }));
        // L1CD 3 at 0x20_0018 is mapped but zero; SubstreamID 0x100 is beyond S1CDMax.
        assert_eq!(fetch(&mem, &s1, Some(0xc0), None, &pasid()), Err(CdFault::BadSubstreamId { ssid: 0xc0 }));
        assert_eq!(fetch(&mem, &s1, Some(0x100), None, &pasid()), Err(CdFault::BadSubstreamId { ssid: 0x100 }));
        // The level-2 CD cannot be read.
        assert_eq!(fetch(&mem, &s1, Some(0x7f), None, &pasid()), Err(CdFault::Fetch { addr: 0x30_0fc0 }));
        // S1CDMax 3 <= SPLIT: a single L1CD (the pointer aligned to 64 bytes).
        mem.put(0x20_0040, &[l1cd(0x30_0000)]);
        let small = Stage1 { cd_max: 3, context_ptr: 0x20_0048, ..s1 };
        mem.put(0x30_0000 + 7 * 64, &cd);
        assert!(matches!(fetch(&mem, &small, Some(7), None, &pasid()), Ok(CdFetch::Cd { addr: 0x30_01c0, .. })));
    }

    #[test]
    fn two_level_64k() {
        let mem = Mem::default();
        // S1CDMax 20: 1024 L1CDs (8 KiB) to tables of 1024 CDs.
        mem.map(0x40_0000, 0x2000);
        mem.map(0x100_0000, 0x1_0000);
        let ssid = 0xa_bcde;
        // L2Ptr[15:12] are RES0 for 64 KiB tables: treated as zero.
        mem.put(0x40_0000 + (ssid >> 10) * 8, &[l1cd(0x100_3000)]);
        let cd = linux_cd(9, 0x8000, Tg0::Granule64K, 16);
        mem.put(0x100_0000 + (ssid & 0x3ff) * 64, &cd);
        let s1 = stage1(0x40_0000, CdTableFormat::TwoLevel64K, 20, S1Dss::Substream0);
        let got = fetch(&mem, &s1, Some(ssid as u32), None, &pasid()).unwrap();
        assert_eq!(got, CdFetch::Cd { index: ssid as u32, addr: 0x100_0000 + (ssid & 0x3ff) * 64, words: cd });
        // S1DSS = 0b10 with an invalid L1CD 0: C_BAD_SUBSTREAMID for SubstreamID 0.
        assert_eq!(fetch(&mem, &s1, None, None, &pasid()), Err(CdFault::BadSubstreamId { ssid: 0 }));
        // An L1 table outside memory.
        let gone = Stage1 { context_ptr: 0x80_0000, ..s1 };
        assert_eq!(fetch(&mem, &gone, Some(0x401), None, &pasid()), Err(CdFault::Fetch { addr: 0x80_0008 }));
        // L2Ptr beyond the OAS.
        mem.put(0x40_0000 + 8, &[l1cd(1 << 44)]);
        assert_eq!(fetch(&mem, &s1, Some(0x401), None, &pasid()), Err(CdFault::BadSubstreamId { ssid: 0x401 }));
    }

    // ------------------------------------------------------------ nested fetch through stage 2

    const S2_ROOT: u64 = 0x1000_0000;

    /// A nested STE (Linux's values, 40-bit IPA: level-1 start with two
    /// concatenated tables) whose stage 2 maps IPA [1 GiB, 2 GiB) to PA
    /// [2 GiB, 3 GiB) with a read-only 1 GiB block and IPA [2 GiB, 3 GiB)
    /// with a write-only one; the rest is unmapped.
    fn nested(mem: &Mem, cdptr: u64, s1: impl FnOnce(u64) -> u64) -> (Stage1, S2Tables) {
        let mut w = linux_s1_ste(cdptr);
        let mut w0 = SteWord0::from(w[0]);
        w0.set_config(Config::Nested);
        w[0] = s1(u64::from(w0));
        (w[2], w[3]) = linux_s2_words(3, S2_ROOT, Granule::Size4K, 40, true);
        let StreamConfig::Translate(t) = ste::decode(w, &pasid()).unwrap() else { panic!("translating STE expected") };
        let s2 = t.s2.unwrap();
        assert_eq!((s2.tables.start_level(), s2.tables.concatenated()), (1, 2));
        mem.map(S2_ROOT, 0x2000);
        let block = |pa: u64, read: bool, write: bool| pa | 1 | (1 << 10) | (u64::from(read) << 6) | (u64::from(write) << 7);
        mem.put(S2_ROOT + 8, &[block(0x8000_0000, true, false)]);
        mem.put(S2_ROOT + 16, &[block(0xc000_0000, false, true)]);
        mem.map(0x8000_0000, 0x10_0000);
        (t.s1.unwrap(), s2.tables)
    }

    #[test]
    fn nested_single_cd() {
        let mem = Mem::default();
        let (s1, s2) = nested(&mem, 0x4000_1000, |w| w);
        mem.put(0x8000_1000, &linux());
        let got = fetch(&mem, &s1, None, Some(&s2), &pasid()).unwrap();
        assert_eq!(got, CdFetch::Cd { index: 0, addr: 0x8000_1000, words: linux() });
        // Unmapped IPA: a stage-2 Translation fault, CLASS = CD.
        let s1 = Stage1 { context_ptr: 0x1000, ..s1 };
        let err = fetch(&mem, &s1, None, Some(&s2), &pasid()).unwrap_err();
        assert_eq!(err, CdFault::Stage2 { fault: Fault::Translation { level: 1 }, ipa: 0x1000 });
        assert_eq!(err.event(), ConfigEvent::CdStage2 { fault: Fault::Translation { level: 1 }, ipa: 0x1000 });
        // No read permission.
        let s1 = Stage1 { context_ptr: 0x8000_0000, ..s1 };
        assert_eq!(
            fetch(&mem, &s1, None, Some(&s2), &pasid()),
            Err(CdFault::Stage2 { fault: Fault::Permission { level: 1 }, ipa: 0x8000_0000 })
        );
        // Beyond the 40-bit IPA space.
        let s1 = Stage1 { context_ptr: 1 << 40, ..s1 };
        assert_eq!(
            fetch(&mem, &s1, None, Some(&s2), &pasid()),
            Err(CdFault::Stage2 { fault: Fault::Translation { level: 0 }, ipa: 1 << 40 })
        );
        // Translated, but the PA is not memory: F_CD_FETCH with the PA.
        let s1 = Stage1 { context_ptr: 0x4010_0000, ..s1 };
        assert_eq!(fetch(&mem, &s1, None, Some(&s2), &pasid()), Err(CdFault::Fetch { addr: 0x8010_0000 }));
    }

    #[test]
    fn nested_stage2_walk_abort() {
        let mem = Mem::default();
        let (s1, _) = nested(&mem, 0x4000_1000, |w| w);
        // A stage 2 whose root is not memory.
        let moved = S2Tables::new(&S2Config { vttb: 0x7000_0000, ..nested_config() }, &pasid().vmsa()).unwrap();
        let err = fetch(&mem, &s1, None, Some(&moved), &pasid()).unwrap_err();
        assert!(matches!(err, CdFault::Stage2 { fault: Fault::TableAbort { level: 1, root: true, .. }, ipa: 0x4000_1000 }), "{err:?}");
    }

    fn nested_config() -> vmsa::S2Config {
        vmsa::S2Config {
            aa64: true,
            vttb: S2_ROOT,
            t0sz: 24,
            sl0: 1,
            granule: Granule::Size4K,
            ps: 4,
            affd: false,
            ha: false,
            hd: false,
            ds: false,
        }
    }

    #[test]
    fn nested_two_level() {
        let mem = Mem::default();
        // S1ContextPtr IPA 0x4000_2000 (PA 0x8000_2000): S1Fmt 4K, S1CDMax 10.
        let (s1, s2) = nested(&mem, 0x4000_2000, |w| {
            let mut x = SteWord0::from(w);
            x.set_s1_cd_max(u5::new(10));
            x.set_s1_fmt(ste::S1FmtField::TwoLevel4K);
            u64::from(x)
        });
        assert_eq!((s1.fmt, s1.cd_max), (CdTableFormat::TwoLevel4K, 10));
        // L1CD 3 points to IPA 0x4000_5000 (PA 0x8000_5000).
        mem.put(0x8000_2000 + 3 * 8, &[l1cd(0x4000_5000)]);
        let cd = linux_cd(0xc2, 0x8000, Tg0::Granule4K, 16);
        mem.put(0x8000_5000 + 2 * 64, &cd);
        let got = fetch(&mem, &s1, Some(0xc2), Some(&s2), &pasid()).unwrap();
        assert_eq!(got, CdFetch::Cd { index: 0xc2, addr: 0x8000_5080, words: cd });
        // L1CD 4 points into unmapped IPA space: the CD's IPA faults.
        mem.put(0x8000_2000 + 4 * 8, &[l1cd(0x1000)]);
        assert_eq!(
            fetch(&mem, &s1, Some(0x101), Some(&s2), &pasid()),
            Err(CdFault::Stage2 { fault: Fault::Translation { level: 1 }, ipa: 0x1040 })
        );
        // The L1 table's own IPA unmapped.
        let far = Stage1 { context_ptr: 0x2000, ..s1 };
        assert_eq!(
            fetch(&mem, &far, Some(0x41), Some(&s2), &pasid()),
            Err(CdFault::Stage2 { fault: Fault::Translation { level: 1 }, ipa: 0x2008 })
        );
    }

    // ------------------------------------------------------------ end to end

    /// A level-1 stage-1 block (1 GiB, 4K granule): valid, AF, read/write
    /// for privileged accesses only.
    fn s1_block(out: u64) -> u64 {
        out | 0b01 | (1 << 10)
    }

    /// A CD for a 39-bit VA space (T0SZ 25: the walk starts at level 1).
    fn small_cd(ttb0: u64) -> [u64; 8] {
        linux_cd(2, ttb0, Tg0::Granule4K, 25)
    }

    const READ: Access = Access { write: false, privileged: true, instruction: false };

    #[test]
    fn end_to_end_stage1() {
        // Linux's 2-level stream table, an S1 STE for StreamID 0x108, its
        // CD, and stage-1 tables mapping VA [1 GiB, 2 GiB) to PA [2 GiB, 3 GiB).
        let mem = Mem::default();
        mem.map(0x4000_0000, 0x800);
        mem.map(0x4010_0000, 0x4000);
        mem.map(0x5000_0000, 0x2000);
        let mut d = crate::stream::L1Std::from(0u64);
        d.set_span(u5::new(9));
        d.set_l2_ptr(u50::new(0x4010_0000 >> 6));
        mem.put(0x4000_0008, &[u64::from(d)]);
        mem.put(0x4010_0000 + 8 * 64, &linux_s1_ste(0x5000_0000));
        mem.put(0x5000_0000, &small_cd(0x5000_1000));
        mem.put(0x5000_1000 + 8, &[s1_block(0x8000_0000)]);

        let caps = qemu();
        let table = crate::stream::StreamTable::from_regs(0x4000_0000, 0x0001_0210, &caps);
        let ste_words = table.fetch(&mem, 0x108, &caps).unwrap();
        let StreamConfig::Translate(t) = ste::decode(ste_words, &caps).unwrap() else { panic!("translating STE") };
        let s1 = t.s1.unwrap();
        let CdFetch::Cd { words, .. } = fetch(&mem, &s1, None, None, &caps).unwrap() else { panic!("a CD") };
        let ctx = decode(words, &s1, &caps).unwrap();
        assert_eq!(ctx.tables.start_level(false), Some(1));
        let out = ctx.tables.translate(&mem, 0x4000_1234, READ).unwrap();
        assert_eq!(out.output(0x4000_1234), 0x8000_1234);
        assert_eq!(out.level, 1);
    }

    #[test]
    fn end_to_end_nested() {
        // The CD at IPA 0x4000_1000 and the stage-1 tables at IPA
        // 0x4000_3000 are reached through stage 2; stage 1 maps VA
        // [1 GiB, 2 GiB) to IPA [1 GiB, 2 GiB), which stage 2 maps to PA
        // [2 GiB, 3 GiB).
        let mem = Mem::default();
        let (s1, s2) = nested(&mem, 0x4000_1000, |w| w);
        mem.put(0x8000_1000, &small_cd(0x4000_3000));
        mem.put(0x8000_3000 + 8, &[s1_block(0x4000_0000)]);
        let CdFetch::Cd { addr, words, .. } = fetch(&mem, &s1, None, Some(&s2), &pasid()).unwrap() else {
            panic!("a CD")
        };
        assert_eq!(addr, 0x8000_1000);
        let ctx = decode(words, &s1, &pasid()).unwrap();
        assert_eq!(ctx.s1.tt[0].base, 0x4000_3000, "TTB0 stays an IPA");
        let out = vmsa::nested_translate(&mem, &ctx.tables, &s2, 0x4000_1234, READ).unwrap();
        assert_eq!(out.output(0x4000_1234), 0x8000_1234);
        // Stage 1 maps VA [2 GiB, 3 GiB) to IPA 0: stage 2 faults, CLASS=IN.
        mem.put(0x8000_3000 + 16, &[s1_block(0)]);
        let err = vmsa::nested_translate(&mem, &ctx.tables, &s2, 0x8000_0000, READ).unwrap_err();
        assert_eq!(
            err,
            vmsa::VmsaError::Stage2 { fault: Fault::Translation { level: 1 }, ipa: 0, class: vmsa::Class::In }
        );
    }

    // ------------------------------------------------------------ robustness

    #[test]
    fn random_cds_never_panic() {
        let mut rng = Rng(0x5eed_0003);
        let caps = caps_variants();
        let s1s = [single(), Stage1 { stall_disabled: true, ..single() }];
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut w = [0u64; 8];
            for x in w.iter_mut() {
                *x = rng.next();
            }
            if rng.next() & 1 == 0 {
                // Valid, AArch64, A set, no S/HA/HD: reach the table checks.
                w[0] = (w[0] | (1 << 31) | (1 << 41) | (1 << 46)) & !(0xf << 42);
            }
            for c in &caps {
                for s1 in &s1s {
                    accepted += usize::from(decode(w, s1, c).is_ok());
                }
            }
        }
        assert!(accepted > 0);
    }

    #[test]
    fn random_fetches_never_panic() {
        let mut rng = Rng(0x5eed_0004);
        let mem = Mem::default();
        mem.map(0, 0x2_0000);
        for a in (0..0x2_0000u64).step_by(8) {
            let v = rng.next();
            let v = if v & 3 == 0 { v } else { (v & 0x1_f000) | (v & 1) };
            mem.put(a, &[v]);
        }
        // A stage 2 over the same window, with random descriptors.
        let s2 = S2Tables::new(&S2Config { vttb: 0x1_0000, ..nested_config() }, &qemu().vmsa()).unwrap();
        let caps = caps_variants();
        let fmts = [CdTableFormat::Single, CdTableFormat::Linear, CdTableFormat::TwoLevel4K, CdTableFormat::TwoLevel64K];
        let dsss = [S1Dss::Terminate, S1Dss::Bypass, S1Dss::Substream0];
        for _ in 0..20_000 {
            let ptr = if rng.next() & 1 == 0 { rng.next() & 0x1_ffc0 } else { rng.next() };
            let s1 = Stage1 {
                context_ptr: ptr,
                fmt: fmts[rng.next() as usize % 4],
                cd_max: (rng.next() % 40) as u8,
                dss: dsss[rng.next() as usize % 3],
                stall_disabled: false,
                attrs: TableAttrs::default(),
            };
            let ssid = match rng.next() % 3 {
                0 => None,
                1 => Some(rng.next() as u32 & 0x3ff),
                _ => Some(rng.next() as u32),
            };
            let c = &caps[rng.next() as usize % caps.len()];
            let _ = fetch(&mem, &s1, ssid, None, c);
            let _ = fetch(&mem, &s1, ssid, Some(&s2), c);
            let _ = fetch_index(&mem, &s1, rng.next() as u32, Some(&s2), c);
        }
    }
}
