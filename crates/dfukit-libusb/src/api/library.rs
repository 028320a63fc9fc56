//! Library and contexts: init and exit, options, version, capabilities and
//! error names.

use super::{context_with_backend, default_context, guard, libusb_context, DEFAULT};
use crate::ffi::*;
use crate::model::{debug, lock};
use crate::usbip::UsbipBackend;
use std::os::raw::{c_char, c_int, c_void};
use std::sync::Arc;

/// `libusb_init`.
#[no_mangle]
pub unsafe extern "C" fn libusb_init(ctx: *mut *mut libusb_context) -> c_int {
    guard(LIBUSB_ERROR_OTHER, || {
        if ctx.is_null() {
            default_context(&mut lock(&DEFAULT)).0 += 1;
        } else {
            let backend = UsbipBackend::from_env();
            debug!("libusb_init: USB/IP server {}", backend.addr());
            // SAFETY: `ctx` is a valid out pointer.
            unsafe { *ctx = context_with_backend(Arc::new(backend)) };
        }
        LIBUSB_SUCCESS
    })
}

/// `libusb_init_context` (libusb 1.0.27); options are accepted and ignored.
#[no_mangle]
pub unsafe extern "C" fn libusb_init_context(
    ctx: *mut *mut libusb_context,
    _options: *const c_void,
    _num_options: c_int,
) -> c_int {
    // SAFETY: forwarded.
    unsafe { libusb_init(ctx) }
}

/// `libusb_exit`.
#[no_mangle]
pub unsafe extern "C" fn libusb_exit(ctx: *mut libusb_context) {
    guard((), || {
        if ctx.is_null() {
            let mut d = lock(&DEFAULT);
            if let Some(e) = d.as_mut() {
                e.0 = e.0.saturating_sub(1);
                if e.0 == 0 {
                    *d = None;
                }
            }
        } else {
            // SAFETY: `ctx` came from `new_context`; this drops its reference.
            drop(unsafe { Arc::from_raw(ctx) });
        }
    })
}

/// `libusb_set_option`. Declared without its variadic tail, which the
/// options this library honours do not need (the SysV and AAPCS64 calling
/// conventions let a callee ignore trailing arguments).
#[no_mangle]
pub unsafe extern "C" fn libusb_set_option(_ctx: *mut libusb_context, option: c_int) -> c_int {
    match option {
        LIBUSB_OPTION_LOG_LEVEL | LIBUSB_OPTION_NO_DEVICE_DISCOVERY => LIBUSB_SUCCESS,
        LIBUSB_OPTION_USE_USBDK => LIBUSB_ERROR_NOT_SUPPORTED,
        _ => LIBUSB_ERROR_INVALID_PARAM,
    }
}

/// `libusb_set_debug` (deprecated): ignored; set `DFUKIT_LIBUSB_DEBUG=1`
/// for this library's messages.
#[no_mangle]
pub unsafe extern "C" fn libusb_set_debug(_ctx: *mut libusb_context, _level: c_int) {}

/// `libusb_set_log_cb`: ignored.
#[no_mangle]
pub unsafe extern "C" fn libusb_set_log_cb(
    _ctx: *mut libusb_context,
    _cb: *const c_void,
    _mode: c_int,
) {
}

/// `libusb_setlocale`: messages are English only.
#[no_mangle]
pub unsafe extern "C" fn libusb_setlocale(_locale: *const c_char) -> c_int {
    LIBUSB_SUCCESS
}

static RC: &[u8] = b"\0";
static DESCRIBE: &[u8] = b"dfukit-libusb (libusb-1.0 API over USB/IP)\0";
static VERSION: libusb_version = libusb_version {
    major: 1,
    minor: 0,
    micro: 26,
    nano: 11724,
    rc: RC.as_ptr().cast(),
    describe: DESCRIBE.as_ptr().cast(),
};

/// `libusb_get_version`: the libusb API version implemented (1.0.26).
#[no_mangle]
pub extern "C" fn libusb_get_version() -> *const libusb_version {
    &VERSION
}

/// `libusb_has_capability`.
#[no_mangle]
pub extern "C" fn libusb_has_capability(capability: u32) -> c_int {
    c_int::from(capability == LIBUSB_CAP_HAS_CAPABILITY)
}

/// `libusb_error_name`.
#[no_mangle]
pub extern "C" fn libusb_error_name(code: c_int) -> *const c_char {
    error_name(code).as_ptr().cast()
}

/// `libusb_strerror`.
#[no_mangle]
pub extern "C" fn libusb_strerror(code: c_int) -> *const c_char {
    strerror(code).as_ptr().cast()
}
