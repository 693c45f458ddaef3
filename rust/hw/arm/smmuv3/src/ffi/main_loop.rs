// SPDX-License-Identifier: GPL-2.0-or-later

//! The main loop: wired interrupts raised where the BQL is not held (an
//! event recorded by a translation on an I/O thread) are pulsed from a
//! bottom half in the main loop, which holds the BQL.

use std::ffi::c_void;

use crate::{bindings, device::SmmuV3State};

/// # Safety
/// Called by the main loop with the opaque given to
/// [`schedule_irq_bottom_half`]: the device, which is never freed.
unsafe extern "C" fn irq_bottom_half(opaque: *mut c_void) {
    // SAFETY: see above.
    let dev = unsafe { &*opaque.cast::<SmmuV3State>() };
    dev.pulse_pending_irqs();
}

/// Run [`SmmuV3State::pulse_pending_irqs`] soon, in the main loop.
pub fn schedule_irq_bottom_half(dev: &SmmuV3State) {
    let opaque: *mut c_void = std::ptr::from_ref(dev).cast_mut().cast();
    // SAFETY: the main AioContext exists once QEMU runs; the device outlives
    // every bottom half scheduled for it; the name is static.
    unsafe {
        bindings::aio_bh_schedule_oneshot_full(
            bindings::qemu_get_aio_context(),
            Some(irq_bottom_half),
            opaque,
            c"smmuv3-irq".as_ptr(),
        );
    }
}
