//! Device handles: open and close, configuration, interfaces, halt, reset
//! and (absent) kernel drivers.

use super::devices::{libusb_free_device_list, libusb_get_device_list};
use super::transfers::std_request;
use super::{dev_slot, guard, libusb_context, libusb_device, libusb_device_handle};
use crate::desc::parse_device_descriptor;
use crate::ffi::*;
use crate::model::{Device, Handle};
use std::os::raw::{c_int, c_uchar};
use std::ptr;
use std::sync::atomic::Ordering;

/// `libusb_open`: imports the device if listing could not.
#[no_mangle]
pub unsafe extern "C" fn libusb_open(
    dev: *mut libusb_device,
    handle: *mut *mut libusb_device_handle,
) -> c_int {
    guard(LIBUSB_ERROR_OTHER, || {
        if dev.is_null() || handle.is_null() {
            return LIBUSB_ERROR_INVALID_PARAM;
        }
        // SAFETY: live device.
        if let Err(e) = unsafe { dev_slot(dev).ensure_link() } {
            return e;
        }
        // SAFETY: live device; the handle keeps a reference.
        unsafe { Device::add_ref(dev) };
        let h = Box::new(Handle {
            dev,
            claimed: Default::default(),
        });
        // SAFETY: valid out pointer.
        unsafe { *handle = Box::into_raw(h) };
        LIBUSB_SUCCESS
    })
}

/// `libusb_close`.
#[no_mangle]
pub unsafe extern "C" fn libusb_close(handle: *mut libusb_device_handle) {
    guard((), || {
        if handle.is_null() {
            return;
        }
        // SAFETY: from `libusb_open`, closed once.
        let h = unsafe { Box::from_raw(handle) };
        // SAFETY: the handle held this reference.
        unsafe { Device::release(h.dev) };
    })
}

/// `libusb_get_device` (no new reference).
#[no_mangle]
pub unsafe extern "C" fn libusb_get_device(
    handle: *mut libusb_device_handle,
) -> *mut libusb_device {
    if handle.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: live handle.
    unsafe { (*handle).dev }
}

/// `libusb_open_device_with_vid_pid`.
#[no_mangle]
pub unsafe extern "C" fn libusb_open_device_with_vid_pid(
    ctx: *mut libusb_context,
    vendor_id: u16,
    product_id: u16,
) -> *mut libusb_device_handle {
    guard(ptr::null_mut(), || {
        let mut list: *mut *mut libusb_device = ptr::null_mut();
        // SAFETY: valid out pointer; the list is walked to its NULL.
        unsafe {
            let n = libusb_get_device_list(ctx, &mut list);
            if n < 0 {
                return ptr::null_mut();
            }
            let mut handle = ptr::null_mut();
            for i in 0..n as usize {
                let dev = *list.add(i);
                let d = parse_device_descriptor(&dev_slot(dev).device_desc);
                if matches!(d, Ok(d) if d.idVendor == vendor_id && d.idProduct == product_id) {
                    if libusb_open(dev, &mut handle) != LIBUSB_SUCCESS {
                        handle = ptr::null_mut();
                    }
                    break;
                }
            }
            libusb_free_device_list(list, 1);
            handle
        }
    })
}

/// `libusb_get_configuration`: asks the device, falling back to the value
/// the server reported.
#[no_mangle]
pub unsafe extern "C" fn libusb_get_configuration(
    handle: *mut libusb_device_handle,
    config: *mut c_int,
) -> c_int {
    guard(LIBUSB_ERROR_OTHER, || {
        if handle.is_null() || config.is_null() {
            return LIBUSB_ERROR_INVALID_PARAM;
        }
        // SAFETY: live handle.
        let slot = unsafe { (*handle).slot() };
        let mut b = [0u8; 1];
        let v = match std_request(handle, 0x80, LIBUSB_REQUEST_GET_CONFIGURATION, 0, 0, &mut b) {
            Ok(1) => {
                slot.set_active_config(b[0]);
                b[0]
            }
            Err(LIBUSB_ERROR_NO_DEVICE) => return LIBUSB_ERROR_NO_DEVICE,
            _ => slot.active_config(),
        };
        // SAFETY: valid out pointer.
        unsafe { *config = c_int::from(v) };
        LIBUSB_SUCCESS
    })
}

/// `libusb_set_configuration` (-1: unconfigured).
#[no_mangle]
pub unsafe extern "C" fn libusb_set_configuration(
    handle: *mut libusb_device_handle,
    configuration: c_int,
) -> c_int {
    guard(LIBUSB_ERROR_OTHER, || {
        if handle.is_null() || !(-1..=255).contains(&configuration) {
            return LIBUSB_ERROR_INVALID_PARAM;
        }
        // SAFETY: live handle.
        let h = unsafe { &*handle };
        if h.claimed.load(Ordering::Relaxed) != 0 {
            return LIBUSB_ERROR_BUSY;
        }
        let value = configuration.max(0) as u16;
        if value != 0
            && !h
                .slot()
                .configs
                .iter()
                .any(|c| c.get(5) == Some(&(value as u8)))
        {
            return LIBUSB_ERROR_NOT_FOUND;
        }
        match std_request(
            handle,
            0x00,
            LIBUSB_REQUEST_SET_CONFIGURATION,
            value,
            0,
            &mut [],
        ) {
            Ok(_) => LIBUSB_SUCCESS,
            Err(LIBUSB_ERROR_PIPE) => LIBUSB_ERROR_NOT_FOUND,
            Err(e) => e,
        }
    })
}

/// Whether the active configuration has interface `n` (alt `alt`, if given).
fn has_interface(h: &Handle, n: u8, alt: Option<u8>) -> bool {
    match h.slot().active_config_parsed() {
        Some(cfg) => cfg
            .interfaces
            .iter()
            .flatten()
            .any(|a| a.header[2] == n && alt.is_none_or(|alt| a.header[3] == alt)),
        None => true,
    }
}

/// The interface functions: runs `f` on the live handle and the interface
/// number once both are valid (an interface number is 0..32, a bit of
/// [`Handle::claimed`]).
fn on_interface(
    handle: *mut libusb_device_handle,
    interface: c_int,
    f: impl FnOnce(&Handle, u8) -> c_int,
) -> c_int {
    guard(LIBUSB_ERROR_OTHER, || {
        if handle.is_null() || !(0..32).contains(&interface) {
            return LIBUSB_ERROR_INVALID_PARAM;
        }
        // SAFETY: live handle.
        f(unsafe { &*handle }, interface as u8)
    })
}

/// `libusb_claim_interface`: bookkeeping only (nothing else uses the device).
#[no_mangle]
pub unsafe extern "C" fn libusb_claim_interface(
    handle: *mut libusb_device_handle,
    interface: c_int,
) -> c_int {
    on_interface(handle, interface, |h, n| {
        if h.slot().is_gone() {
            return LIBUSB_ERROR_NO_DEVICE;
        }
        if !has_interface(h, n, None) {
            return LIBUSB_ERROR_NOT_FOUND;
        }
        h.claimed.fetch_or(1 << n, Ordering::Relaxed);
        LIBUSB_SUCCESS
    })
}

/// `libusb_release_interface`.
#[no_mangle]
pub unsafe extern "C" fn libusb_release_interface(
    handle: *mut libusb_device_handle,
    interface: c_int,
) -> c_int {
    on_interface(handle, interface, |h, n| {
        let bit = 1u32 << n;
        if h.claimed.fetch_and(!bit, Ordering::Relaxed) & bit == 0 {
            return LIBUSB_ERROR_NOT_FOUND;
        }
        if h.slot().is_gone() {
            return LIBUSB_ERROR_NO_DEVICE;
        }
        LIBUSB_SUCCESS
    })
}

/// `libusb_set_interface_alt_setting`: a standard SET_INTERFACE request.
#[no_mangle]
pub unsafe extern "C" fn libusb_set_interface_alt_setting(
    handle: *mut libusb_device_handle,
    interface: c_int,
    alt: c_int,
) -> c_int {
    on_interface(handle, interface, |h, n| {
        if !(0..256).contains(&alt) {
            return LIBUSB_ERROR_INVALID_PARAM;
        }
        if h.claimed.load(Ordering::Relaxed) & (1 << n) == 0 {
            return LIBUSB_ERROR_NOT_FOUND;
        }
        if !has_interface(h, n, Some(alt as u8)) {
            return LIBUSB_ERROR_NOT_FOUND;
        }
        let r = std_request(
            handle,
            0x01,
            LIBUSB_REQUEST_SET_INTERFACE,
            alt as u16,
            u16::from(n),
            &mut [],
        );
        match r {
            Ok(_) => LIBUSB_SUCCESS,
            // Linux (usb_set_interface) accepts a stall from a device whose
            // interface has a single alternate setting.
            Err(LIBUSB_ERROR_PIPE) => {
                let single = h.slot().active_config_parsed().is_some_and(|cfg| {
                    cfg.interfaces
                        .iter()
                        .find(|alts| alts.first().is_some_and(|a| a.header[2] == n))
                        .is_some_and(|alts| alts.len() == 1)
                });
                if single {
                    LIBUSB_SUCCESS
                } else {
                    LIBUSB_ERROR_OTHER
                }
            }
            Err(e) => e,
        }
    })
}

/// `libusb_clear_halt`: a standard CLEAR_FEATURE(ENDPOINT_HALT) request.
#[no_mangle]
pub unsafe extern "C" fn libusb_clear_halt(
    handle: *mut libusb_device_handle,
    endpoint: c_uchar,
) -> c_int {
    guard(LIBUSB_ERROR_OTHER, || {
        match std_request(handle, 0x02, 0x01, 0, u16::from(endpoint), &mut []) {
            Ok(_) => LIBUSB_SUCCESS,
            Err(e) => e,
        }
    })
}

/// `libusb_reset_device`: see [`crate::model::Slot::reset`].
#[no_mangle]
pub unsafe extern "C" fn libusb_reset_device(handle: *mut libusb_device_handle) -> c_int {
    guard(LIBUSB_ERROR_OTHER, || {
        if handle.is_null() {
            return LIBUSB_ERROR_INVALID_PARAM;
        }
        // SAFETY: live handle.
        unsafe { (*handle).slot().reset() }
    })
}

/// `libusb_kernel_driver_active`: no kernel drivers here.
#[no_mangle]
pub unsafe extern "C" fn libusb_kernel_driver_active(
    handle: *mut libusb_device_handle,
    _interface: c_int,
) -> c_int {
    if handle.is_null() {
        LIBUSB_ERROR_INVALID_PARAM
    } else {
        0
    }
}

/// `libusb_detach_kernel_driver`.
#[no_mangle]
pub unsafe extern "C" fn libusb_detach_kernel_driver(
    _handle: *mut libusb_device_handle,
    _interface: c_int,
) -> c_int {
    LIBUSB_ERROR_NOT_SUPPORTED
}

/// `libusb_attach_kernel_driver`.
#[no_mangle]
pub unsafe extern "C" fn libusb_attach_kernel_driver(
    _handle: *mut libusb_device_handle,
    _interface: c_int,
) -> c_int {
    LIBUSB_ERROR_NOT_SUPPORTED
}

/// `libusb_set_auto_detach_kernel_driver`.
#[no_mangle]
pub unsafe extern "C" fn libusb_set_auto_detach_kernel_driver(
    _handle: *mut libusb_device_handle,
    _enable: c_int,
) -> c_int {
    LIBUSB_ERROR_NOT_SUPPORTED
}
