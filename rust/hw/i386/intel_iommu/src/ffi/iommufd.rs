// SPDX-License-Identifier: GPL-2.0-or-later

//! Hardware nested translation through iommufd: `HostIOMMUDevice`s of vfio devices, nesting-parent and nested HWPTs, forwarded invalidations.

use std::{
    collections::BTreeMap,
    ffi::{c_int, c_ulong, c_void, CStr, CString},
    mem::{offset_of, size_of},
    ptr::null_mut,
    sync::{Mutex, PoisonError},
};


use iommu_core::nesting::iommufd::{Invalidation, Invalidations, NestedHwpt};

use crate::{bindings, device::IntelIommuState};

// iommu-core encodes the uAPI payloads byte by byte (so that the QEMU-free
// crate tests them): their layout must be the one QEMU's linux-headers
// declare, which bindgen gives here. NestedHwpt::VtdS1::data: flags,
// pgtbl_addr, addr_width, reserved; Invalidation::VtdS1: addr, npages,
// flags, reserved.
const _: () = {
    assert!(size_of::<bindings::iommu_hwpt_vtd_s1>() == 24);
    assert!(offset_of!(bindings::iommu_hwpt_vtd_s1, flags) == 0);
    assert!(offset_of!(bindings::iommu_hwpt_vtd_s1, pgtbl_addr) == 8);
    assert!(offset_of!(bindings::iommu_hwpt_vtd_s1, addr_width) == 16);
    assert!(size_of::<bindings::iommu_hwpt_vtd_s1_invalidate>() == 24);
    assert!(offset_of!(bindings::iommu_hwpt_vtd_s1_invalidate, addr) == 0);
    assert!(offset_of!(bindings::iommu_hwpt_vtd_s1_invalidate, npages) == 8);
    assert!(offset_of!(bindings::iommu_hwpt_vtd_s1_invalidate, flags) == 16);
};
// The other interfaces' items (some modules use none).
#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------
// Hardware nested translation: functions whose DMA the host IOMMU translates
// (vfio with iommufd). vfio made their default HWPT a nesting parent (guest
// RAM); we attach a nested HWPT over the guest's first-stage table, the
// parent, or nothing, and forward the guest's first-stage invalidations.

/// What is attached for one kind of request of a nested function: its
/// requests without PASID, or those with one PASID.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// The nested HWPT we allocated and attached, with what it binds.
    nested: Option<(u32, vtd_core::HostBinding)>,
    /// Attached now: the parent, the nested HWPT, or nothing (blocked).
    attached: Attached,
}

/// A function backed by a host IOMMU device of the iommufd backend, and
/// what is attached for it now.
pub struct NestedDevice {
    bus: *mut bindings::PCIBus,
    devfn: u8,
    idev: *mut bindings::HostIOMMUDeviceIOMMUFD,
    /// vfio's default HWPT: the nesting parent.
    parent: u32,
    /// Width of the PASIDs the host enabled for the function (0: none).
    pasid_bits: u8,
    /// Requests without PASID.
    rid: Slot,
    /// Requests with a PASID, for each PASID bound (not blocked).
    pasids: BTreeMap<u32, Slot>,
    /// Nested HWPTs attached to nothing whose destroy the host refused,
    /// destroyed again at the next binding change and at release.
    unfreed: Vec<u32>,
}

/// What a nested device is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    Parent,
    Nested,
    Nothing,
}

/// The host-IOMMU-backed functions, under the BQL (a mutex for `Sync`).
#[derive(Default)]
pub struct NestedDevices(Mutex<Vec<NestedDevice>>);

// SAFETY: the raw pointers are to the PCI bus and to the host IOMMU device,
// which its vfio device keeps (we hold a reference) until unset_iommu_device.
unsafe impl Send for NestedDevices {}
// SAFETY: see `Send`; the list is behind a mutex.
unsafe impl Sync for NestedDevices {}

/// include/hw/iommu.h.
const VIOMMU_CAP_HW_NESTED: u64 = bindings::VIOMMU_CAP_HW_NESTED as u64;

/// linux/iommufd.h: IOMMU_DESTROY = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_DESTROY)
/// (no direction or size bits).
const IOMMU_DESTROY: c_ulong = ((bindings::IOMMUFD_TYPE as c_ulong) << 8) | bindings::IOMMUFD_CMD_DESTROY as c_ulong;

extern "C" {
    /// libc's ioctl(2).
    fn ioctl(fd: c_int, request: c_ulong, ...) -> c_int;
}

/// Print `msg` as QEMU's `error_report` does (to the monitor or stderr).
pub fn error_report(msg: &str) {
    let text = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    // SAFETY: a "%s" format with one NUL-terminated string argument.
    unsafe { bindings::error_report(c"%s".as_ptr(), text.as_ptr()) };
}

/// Text of a QEMU error, which is freed.
fn take_error(err: *mut bindings::Error) -> String {
    if err.is_null() {
        return "unknown error".into();
    }
    // SAFETY: err is a live Error returned by a failed call; its message is
    // a NUL-terminated string copied before the error is freed.
    unsafe {
        let msg = CStr::from_ptr(bindings::error_get_pretty(err)).to_string_lossy().into_owned();
        bindings::error_free(err);
        msg
    }
}

/// The iommufd host device and the host VT-d's registers of `hiod`.
fn host_vtd(hiod: *mut bindings::HostIOMMUDevice) -> Result<(*mut bindings::HostIOMMUDeviceIOMMUFD, vtd_core::HostVtd), String> {
    // SAFETY: hiod is the live host IOMMU device vfio passes; the cast is
    // checked by QOM.
    let idev = unsafe {
        bindings::object_dynamic_cast(hiod.cast(), c"host-iommu-device-iommufd".as_ptr())
    };
    if idev.is_null() {
        return Err("hardware nested translation needs vfio's iommufd backend \
                    (-object iommufd,id=X -device vfio-pci,...,iommufd=X)"
            .into());
    }
    // SAFETY: an iommufd host device filled its caps at realize.
    let caps = unsafe { &(*hiod).caps };
    if caps.type_ != bindings::IOMMU_HW_INFO_TYPE_INTEL_VTD {
        return Err(format!("the host IOMMU is not a VT-d (iommufd hw_info type {})", caps.type_));
    }
    // SAFETY: the type says the vendor data is the VT-d variant.
    let vtd = unsafe { caps.vendor_caps.vtd };
    Ok((idev.cast(), vtd_core::HostVtd { cap: vtd.cap_reg, ecap: vtd.ecap_reg }))
}

impl NestedDevice {
    fn slot(&self, pasid: Option<u32>) -> Option<&Slot> {
        match pasid {
            None => Some(&self.rid),
            Some(p) => self.pasids.get(&p),
        }
    }

    fn slot_mut(&mut self, pasid: Option<u32>) -> &mut Slot {
        match pasid {
            None => &mut self.rid,
            Some(p) => self.pasids.entry(p).or_insert(Slot { nested: None, attached: Attached::Nothing }),
        }
    }

    /// Attach `hwpt` for requests without PASID or with `pasid` (replacing
    /// what is attached).
    fn attach(&mut self, pasid: Option<u32>, hwpt: u32, what: Attached) -> Result<(), String> {
        let mut err: *mut bindings::Error = null_mut();
        // SAFETY: idev is live while registered; err receives an error.
        let ok = unsafe {
            match pasid {
                None => bindings::host_iommu_device_iommufd_attach_hwpt(self.idev, hwpt, &mut err),
                Some(p) => bindings::host_iommu_device_iommufd_attach_hwpt_pasid(self.idev, p, hwpt, &mut err),
            }
        };
        if ok {
            self.slot_mut(pasid).attached = what;
            Ok(())
        } else {
            Err(take_error(err))
        }
    }

    fn detach(&mut self, pasid: Option<u32>) -> Result<(), String> {
        if pasid.is_some() && self.slot(pasid).is_none_or(|s| s.attached == Attached::Nothing) {
            return Ok(());
        }
        let mut err: *mut bindings::Error = null_mut();
        // SAFETY: as in attach.
        let ok = unsafe {
            match pasid {
                None => bindings::host_iommu_device_iommufd_detach_hwpt(self.idev, &mut err),
                Some(p) => bindings::host_iommu_device_iommufd_detach_hwpt_pasid(self.idev, p, &mut err),
            }
        };
        if ok {
            self.slot_mut(pasid).attached = Attached::Nothing;
            Ok(())
        } else {
            Err(take_error(err))
        }
    }

    /// Free a nested HWPT we allocated on this device's backend (attached
    /// to nothing). Should the host refuse, it is kept for another try
    /// (QEMU's iommufd_backend_free_id reports no result: the request is
    /// made here).
    fn free_hwpt(&mut self, id: u32) {
        if let Err(e) = self.destroy(id) {
            error_report(&format!(
                "intel-iommu: {:04x}: the host did not free nested HWPT {id} ({e}); tried again later",
                self.source_id()
            ));
            self.unfreed.push(id);
        }
    }

    /// IOMMU_DESTROY of `id` on this device's iommufd.
    fn destroy(&self, id: u32) -> std::io::Result<()> {
        let mut arg = bindings::iommu_destroy { size: size_of::<bindings::iommu_destroy>() as u32, id };
        // SAFETY: idev and its backend are live while registered; the fd is
        // the backend's /dev/iommu; arg is a valid iommu_destroy for the call.
        let ret = unsafe { ioctl((*(*self.idev).iommufd).fd, IOMMU_DESTROY, &mut arg as *mut bindings::iommu_destroy) };
        let result = if ret == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
        crate::trace::trace_vtd_hw_nested_free(
            self.source_id(),
            id,
            result.as_ref().map_or_else(|e| -e.raw_os_error().unwrap_or(1), |()| 0),
        );
        result
    }

    /// Destroy again the nested HWPTs the host refused to free.
    fn retry_unfreed(&mut self) {
        let ids = std::mem::take(&mut self.unfreed);
        for id in ids {
            self.free_hwpt(id);
        }
    }

    /// Free the slot's nested HWPT (not attached any more).
    fn free_nested(&mut self, pasid: Option<u32>) {
        if let Some((id, _)) = self.slot_mut(pasid).nested.take() {
            self.free_hwpt(id);
        }
    }

    /// Whether requests without PASID, or with `pasid`, are translated as
    /// `binding` says already.
    fn bound_as(&self, pasid: Option<u32>, binding: vtd_core::HostBinding) -> bool {
        use vtd_core::HostBinding as B;
        let Some(slot) = self.slot(pasid) else {
            return matches!(binding, B::Blocked | B::Unsupported);
        };
        match binding {
            B::Parent => slot.attached == Attached::Parent && slot.nested.is_none(),
            B::Nested { .. } => slot.attached == Attached::Nested && matches!(slot.nested, Some((_, b)) if b == binding),
            B::Blocked | B::Unsupported => slot.attached == Attached::Nothing && slot.nested.is_none(),
        }
    }

    /// Make the host translate requests without PASID, or with `pasid`, as
    /// `binding` says (nothing to do, and no trace, when they are already).
    /// On failure they are left blocked (detached): neither the old first
    /// stage nor guest RAM untranslated. Should the host refuse the detach
    /// too, what is attached stays attached and its nested HWPT allocated
    /// (the kernel does not free an attached one): the next binding of the
    /// slot, or the device's release, deals with it.
    fn bind(&mut self, pasid: Option<u32>, binding: vtd_core::HostBinding) -> Result<(), String> {
        if self.bound_as(pasid, binding) {
            return Ok(());
        }
        self.retry_unfreed();
        let result = self.bind_inner(pasid, binding);
        if result.is_err() && self.detach(pasid).is_ok() {
            self.free_nested(pasid);
        }
        // What is attached now, after a failure too.
        let slot = *self.slot_mut(pasid);
        let (what, hwpt) = match slot.attached {
            Attached::Parent => (c"parent", self.parent),
            Attached::Nested => (c"nested", slot.nested.map_or(0, |(id, _)| id)),
            Attached::Nothing => (c"blocked", 0),
        };
        if let Some(p) = pasid {
            if slot.attached == Attached::Nothing && slot.nested.is_none() {
                self.pasids.remove(&p);
            }
        }
        crate::trace::trace_vtd_hw_nested_bind(
            self.source_id(),
            pasid.unwrap_or(0),
            what,
            hwpt,
            if result.is_ok() { 0 } else { -1 },
        );
        result
    }

    fn bind_inner(&mut self, pasid: Option<u32>, binding: vtd_core::HostBinding) -> Result<(), String> {
        use vtd_core::HostBinding as B;
        match binding {
            B::Parent => {
                self.attach(pasid, self.parent, Attached::Parent)?;
                self.free_nested(pasid);
            }
            B::Nested { pgtbl, addr_width, flags, .. } => {
                let nested = NestedHwpt::VtdS1 { flags: flags.bits(), pgtbl_addr: pgtbl, addr_width: u32::from(addr_width) };
                let mut data = nested.data();
                // Every HWPT of a function that has PASID attachments must
                // be PASID-compatible (vfio made the parent so).
                let alloc_flags = if self.pasid_bits > 0 { bindings::IOMMU_HWPT_ALLOC_PASID } else { 0 };
                let mut id = 0u32;
                let mut err: *mut bindings::Error = null_mut();
                // SAFETY: idev is live; data is a valid VTD_S1 block of
                // its length for the call; id and err receive the results.
                let ok = unsafe {
                    bindings::iommufd_backend_alloc_hwpt(
                        (*self.idev).iommufd,
                        (*self.idev).devid,
                        self.parent,
                        alloc_flags,
                        nested.data_type(),
                        data.len() as u32,
                        data.as_mut_ptr().cast(),
                        &mut id,
                        &mut err,
                    )
                };
                if !ok {
                    return Err(take_error(err));
                }
                if let Err(e) = self.attach(pasid, id, Attached::Nested) {
                    self.free_hwpt(id);
                    return Err(e);
                }
                self.free_nested(pasid);
                self.slot_mut(pasid).nested = Some((id, binding));
            }
            B::Blocked | B::Unsupported => {
                self.detach(pasid)?;
                self.free_nested(pasid);
            }
        }
        Ok(())
    }

    /// Forward first-stage invalidations to the nested HWPT attached for
    /// requests without PASID or with `pasid`, in one call when the kernel
    /// takes them all. On failure: the index of the first entry the host
    /// did not carry out, and why.
    fn invalidate(&self, pasid: Option<u32>, invs: &[vtd_core::S1Invalidation]) -> Result<(), (usize, String)> {
        let Some(&Slot { nested: Some((id, _)), attached: Attached::Nested }) = self.slot(pasid) else {
            return Ok(());
        };
        if invs.is_empty() {
            return Ok(());
        }
        let mut entries = Invalidations::new();
        for i in invs {
            // One kind only: pushing cannot fail.
            let _ = entries.push(Invalidation::VtdS1 { addr: i.addr, npages: i.npages, leaf: i.leaf });
        }
        let mut done = 0usize;
        let mut calls = 0u32;
        let mut result = Ok(());
        while done < entries.len() {
            let mut num = u32::try_from(entries.len() - done).unwrap_or(u32::MAX);
            calls += 1;
            let mut err: *mut bindings::Error = null_mut();
            // SAFETY: the array holds `num` valid VTD_S1 invalidation
            // records of entry_len bytes; num and err receive the results.
            let ok = unsafe {
                bindings::iommufd_backend_invalidate_cache(
                    (*self.idev).iommufd,
                    id,
                    entries.data_type(),
                    entries.entry_len(),
                    &mut num,
                    entries.from_entry(done).as_mut_ptr().cast(),
                    &mut err,
                )
            };
            if !ok {
                // num: the entries the host carried out before the failure.
                let failed = (done + num as usize).min(entries.len() - 1);
                result = Err((failed, take_error(err)));
                break;
            }
            if num == 0 {
                result = Err((done, "the host accepted no invalidation".into()));
                break;
            }
            done += num as usize;
        }
        crate::trace::trace_vtd_hw_nested_invalidate(
            self.source_id(),
            pasid.unwrap_or(0),
            id,
            u32::try_from(invs.len()).unwrap_or(u32::MAX),
            calls,
            if result.is_ok() { 0 } else { -1 },
        );
        result
    }

    /// Back to the parent for requests without PASID, every PASID
    /// detached, our HWPTs freed (before the function goes away).
    fn release(&mut self) {
        let pasids: Vec<u32> = self.pasids.keys().copied().collect();
        for p in pasids {
            let _ = self.detach(Some(p));
            self.free_nested(Some(p));
        }
        self.pasids.clear();
        let _ = self.attach(None, self.parent, Attached::Parent);
        self.free_nested(None);
        // Before vfio frees the parent, which a nested HWPT keeps busy.
        self.retry_unfreed();
    }

    pub fn source_id(&self) -> u16 {
        sid_of(self.bus, self.devfn)
    }
}

/// What the planner needs to know of one nested function.
pub struct NestedState {
    pub sid: u16,
    /// The host enabled PASIDs for it.
    pub pasid_capable: bool,
    /// The (DID, PASID) of the guest entry each nested HWPT binds: `None`
    /// for requests without PASID.
    pub nested: Vec<(Option<u32>, (u16, u32))>,
    /// The PASIDs bound now (not blocked).
    pub bound_pasids: Vec<u32>,
}

impl NestedDevices {
    /// No function is translated by the host IOMMU.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<NestedDevice>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What each nested device has bound.
    pub fn snapshot(&self) -> Vec<NestedState> {
        self.lock()
            .iter()
            .map(|d| {
                let slots = std::iter::once((None, &d.rid)).chain(d.pasids.iter().map(|(p, s)| (Some(*p), s)));
                let nested = slots
                    .filter_map(|(key, s)| match s.nested {
                        Some((_, vtd_core::HostBinding::Nested { did, pasid, .. })) if s.attached == Attached::Nested => {
                            Some((key, (did, pasid)))
                        }
                        _ => None,
                    })
                    .collect();
                NestedState {
                    sid: d.source_id(),
                    pasid_capable: d.pasid_bits > 0,
                    nested,
                    bound_pasids: d.pasids.keys().copied().collect(),
                }
            })
            .collect()
    }

    /// Apply the planned binding changes and invalidations (under the BQL).
    /// Every failure is logged; the first one is returned, for the guest to
    /// see as an error of the descriptor it came from.
    pub fn apply(&self, plan: &[NestedPlan]) -> Option<HostFailure> {
        let mut list = self.lock();
        let mut first: Option<HostFailure> = None;
        let mut failed = |source: Option<u16>, sid: u16, pasid: Option<u32>, msg: String| {
            util::log_mask_ln!(util::log::Log::GuestError, "intel-iommu: {msg}");
            if first.is_none() {
                first = Some(HostFailure { source, sid, pasid, msg });
            }
        };
        for p in plan {
            let sid = p.sid;
            let Some(d) = list.iter_mut().find(|d| d.source_id() == sid) else { continue };
            if p.pasids_truncated {
                util::log_mask_ln!(
                    util::log::Log::GuestError,
                    "intel-iommu: {sid:04x} has more than {} PASID entries; the host binds the \
                     first ones, requests with the others are blocked",
                    vtd_core::nesting::hw_nest::MAX_HOST_PASIDS
                );
            }
            for &(pasid, b, source) in &p.bindings {
                let what = match pasid {
                    None => format!("{sid:04x}"),
                    Some(n) => format!("{sid:04x} PASID {n}"),
                };
                if b == vtd_core::HostBinding::Unsupported {
                    util::log_mask_ln!(
                        util::log::Log::GuestError,
                        "intel-iommu: {what} is translated by the host IOMMU, which can only \
                         nest a first-stage table: its second-stage or nested PASID entry blocks DMA"
                    );
                }
                if let Err(e) = d.bind(pasid, b) {
                    failed(source, sid, pasid, format!("host binding of {what} failed (DMA blocked): {e}"));
                }
            }
            // One call per HWPT: the invalidations grouped by what they are
            // for, in order.
            let mut keys: Vec<Option<u32>> = Vec::new();
            for (key, _, _) in &p.invalidations {
                if !keys.contains(key) {
                    keys.push(*key);
                }
            }
            for key in keys {
                let mine: Vec<_> = p.invalidations.iter().filter(|(k, _, _)| *k == key).collect();
                let invs: Vec<_> = mine.iter().map(|(_, inv, _)| *inv).collect();
                if let Err((index, e)) = d.invalidate(key, &invs) {
                    let source = mine.get(index).and_then(|(_, _, s)| *s);
                    failed(source, sid, key, format!("host invalidation for {sid:04x} failed: {e}"));
                }
            }
        }
        first
    }
}

/// What one host-IOMMU-backed function needs after a batch of guest
/// invalidations (planned with the core locked, applied after).
pub struct NestedPlan {
    pub sid: u16,
    /// New bindings for requests without PASID (`None`) or with a PASID,
    /// each with the queue descriptor whose invalidation asked for it
    /// (`None`: a register write, reset, or attach).
    pub bindings: Vec<(Option<u32>, vtd_core::HostBinding, Option<u16>)>,
    /// First-stage invalidations to forward to the HWPT of requests
    /// without PASID or with a PASID, each with its queue descriptor.
    pub invalidations: Vec<(Option<u32>, vtd_core::S1Invalidation, Option<u16>)>,
    /// More PASID entries are present than the host binds.
    pub pasids_truncated: bool,
}

/// A binding or invalidation the host IOMMU did not carry out.
pub struct HostFailure {
    /// The invalidation queue descriptor it came from, if any.
    pub source: Option<u16>,
    /// The function, and the PASID (`None`: requests without PASID).
    pub sid: u16,
    pub pasid: Option<u32>,
    pub msg: String,
}

/// # Safety
/// Called by the PCI core with our device as opaque.
pub(crate) unsafe extern "C" fn vtd_get_viommu_cap(opaque: *mut c_void) -> u64 {
    // SAFETY: opaque is the device registered in pci_setup_iommu.
    let owner = unsafe { &*opaque.cast::<IntelIommuState>() };
    if owner.hw_nested() {
        VIOMMU_CAP_HW_NESTED
    } else {
        0
    }
}

/// The check every mode makes (as the C device): the host IOMMU must take
/// the guest's IOVAs, `aw-bits` wide.
fn check_host_address_width(owner: &IntelIommuState, hiod: *mut bindings::HostIOMMUDevice) -> Result<(), String> {
    // SAFETY: hiod is a live host IOMMU device; its class is a
    // HostIOMMUDeviceClass (QOM type hierarchy).
    let get_cap = unsafe {
        let klass = bindings::object_get_class(hiod.cast()).cast::<bindings::HostIOMMUDeviceClass>();
        (*klass).get_cap
    };
    let Some(get_cap) = get_cap else {
        return Err(".get_cap() not implemented".into());
    };
    let mut err: *mut bindings::Error = null_mut();
    // SAFETY: hiod is live; err receives an error.
    let host = unsafe { get_cap(hiod, bindings::HOST_IOMMU_DEVICE_CAP_AW_BITS as c_int, &mut err) };
    if host < 0 {
        return Err(take_error(err));
    }
    let guest = i32::from(owner.aw_bits());
    if guest > host {
        return Err(format!("aw-bits {guest} > host aw-bits {host}"));
    }
    Ok(())
}

/// Take `hiod` (a live host IOMMU device) for function (bus, devfn):
/// check the host, keep the function's DMA in guest RAM (vfio's nesting
/// parent) and bind it as the guest's tables say.
fn bind_host_device(
    owner: &IntelIommuState,
    bus: *mut bindings::PCIBus,
    devfn: u8,
    hiod: *mut bindings::HostIOMMUDevice,
) -> Result<(), String> {
    let (idev, host) = host_vtd(hiod)?;
    check_host_address_width(owner, hiod)?;
    owner.check_host(&host)?;
    owner.address_spaces().space(owner, bus, devfn, None).pin_identity();
    // SAFETY: hiod is live; the reference is dropped in unset.
    unsafe { bindings::object_ref(hiod.cast()) };
    // SAFETY: idev is the iommufd host device; hwpt_id is vfio's default;
    // the caps were filled at its realize.
    let (parent, pasid_bits) = unsafe { ((*idev).hwpt_id, (*hiod).caps.max_pasid_log2) };
    owner.nested_devices().lock().push(NestedDevice {
        bus,
        devfn,
        idev,
        parent,
        pasid_bits,
        rid: Slot { nested: None, attached: Attached::Parent },
        pasids: BTreeMap::new(),
        unfreed: Vec::new(),
    });
    owner.rebind_nested(sid_of(bus, devfn));
    Ok(())
}

/// # Safety
/// Called by the PCI core (under the BQL) with our device as opaque, a live
/// host IOMMU device and a valid errp.
pub(crate) unsafe extern "C" fn vtd_set_iommu_device(
    bus: *mut bindings::PCIBus,
    opaque: *mut c_void,
    devfn: c_int,
    hiod: *mut bindings::HostIOMMUDevice,
    errp: *mut *mut bindings::Error,
) -> bool {
    // SAFETY: opaque is the device registered in pci_setup_iommu.
    let owner = unsafe { &*opaque.cast::<IntelIommuState>() };
    let devfn = devfn as u8;
    let result = if owner.hw_nested() {
        bind_host_device(owner, bus, devfn, hiod)
    } else if owner.first_stage_advertised() {
        // Neither shadowing (first-stage tables) nor nesting (no caching mode).
        Err("with first-stage translation (x-scalable-mode=modern, x-flts or fsts) a host \
             device can only be assigned through hardware nested translation, which needs \
             caching-mode=on"
            .to_string())
    } else {
        check_host_address_width(owner, hiod)
    };
    match result {
        Ok(()) => true,
        Err(why) => {
            // SAFETY: the bus is live.
            let num = unsafe { bindings::pci_bus_num(bus) };
            let err = util::Error::format(format_args!(
                "intel-iommu: device {:02x}:{:02x}.{:x}: {why}",
                num,
                devfn >> 3,
                devfn & 7
            ));
            // SAFETY: errp comes from pci_device_set_iommu_device.
            unsafe { err.propagate(errp.cast()) };
            false
        }
    }
}

/// # Safety
/// Called by the PCI core (under the BQL) with our device as opaque.
pub(crate) unsafe extern "C" fn vtd_unset_iommu_device(bus: *mut bindings::PCIBus, opaque: *mut c_void, devfn: c_int) {
    // SAFETY: opaque is the device registered in pci_setup_iommu.
    let owner = unsafe { &*opaque.cast::<IntelIommuState>() };
    let devfn = devfn as u8;
    let removed = {
        let mut list = owner.nested_devices().lock();
        list.iter().position(|d| d.bus == bus && d.devfn == devfn).map(|i| list.remove(i))
    };
    let Some(mut d) = removed else { return };
    // Back to the parent (vfio detaches from it), then drop our HWPTs.
    d.release();
    // SAFETY: the reference taken in vtd_set_iommu_device.
    unsafe { bindings::object_unref(d.idev.cast()) };
    // A function plugged here later is translated as the tables say (the
    // nested lock is released: the core lock comes first).
    let identity = owner.is_identity(sid_of(bus, devfn));
    owner.address_spaces().space(owner, bus, devfn, None).unpin_identity(identity);
}
