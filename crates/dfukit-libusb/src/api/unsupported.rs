//! Synchronous bulk/interrupt and the asynchronous API: USB/IP here carries
//! control transfers only.

use super::{libusb_context, libusb_device_handle};
use crate::ffi::*;
use std::os::raw::{c_int, c_uchar, c_uint, c_void};
use std::ptr;

/// `libusb_bulk_transfer`: not supported.
#[no_mangle]
pub unsafe extern "C" fn libusb_bulk_transfer(
    _handle: *mut libusb_device_handle,
    _endpoint: c_uchar,
    _data: *mut c_uchar,
    _length: c_int,
    transferred: *mut c_int,
    _timeout: c_uint,
) -> c_int {
    if !transferred.is_null() {
        // SAFETY: valid out pointer.
        unsafe { *transferred = 0 };
    }
    LIBUSB_ERROR_NOT_SUPPORTED
}

/// `libusb_interrupt_transfer`: not supported.
#[no_mangle]
pub unsafe extern "C" fn libusb_interrupt_transfer(
    handle: *mut libusb_device_handle,
    endpoint: c_uchar,
    data: *mut c_uchar,
    length: c_int,
    transferred: *mut c_int,
    timeout: c_uint,
) -> c_int {
    // SAFETY: forwarded.
    unsafe { libusb_bulk_transfer(handle, endpoint, data, length, transferred, timeout) }
}

/// `libusb_alloc_transfer`: asynchronous transfers are not supported
/// (NULL, which callers treat as out of memory).
#[no_mangle]
pub extern "C" fn libusb_alloc_transfer(_iso_packets: c_int) -> *mut c_void {
    ptr::null_mut()
}

/// `libusb_free_transfer`: nothing to free.
#[no_mangle]
pub unsafe extern "C" fn libusb_free_transfer(_transfer: *mut c_void) {}

/// `libusb_submit_transfer`: not supported.
#[no_mangle]
pub unsafe extern "C" fn libusb_submit_transfer(_transfer: *mut c_void) -> c_int {
    LIBUSB_ERROR_NOT_SUPPORTED
}

/// `libusb_cancel_transfer`: nothing is ever in flight.
#[no_mangle]
pub unsafe extern "C" fn libusb_cancel_transfer(_transfer: *mut c_void) -> c_int {
    LIBUSB_ERROR_NOT_FOUND
}

/// `libusb_handle_events`: no events ever come.
#[no_mangle]
pub unsafe extern "C" fn libusb_handle_events(_ctx: *mut libusb_context) -> c_int {
    LIBUSB_SUCCESS
}

/// `libusb_handle_events_completed`.
#[no_mangle]
pub unsafe extern "C" fn libusb_handle_events_completed(
    _ctx: *mut libusb_context,
    _completed: *mut c_int,
) -> c_int {
    LIBUSB_SUCCESS
}

/// `libusb_handle_events_timeout`.
#[no_mangle]
pub unsafe extern "C" fn libusb_handle_events_timeout(
    _ctx: *mut libusb_context,
    _tv: *mut c_void,
) -> c_int {
    LIBUSB_SUCCESS
}

/// `libusb_handle_events_timeout_completed`.
#[no_mangle]
pub unsafe extern "C" fn libusb_handle_events_timeout_completed(
    _ctx: *mut libusb_context,
    _tv: *mut c_void,
    _completed: *mut c_int,
) -> c_int {
    LIBUSB_SUCCESS
}
