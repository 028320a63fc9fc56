//! Control transfers, and the standard requests the API builds on them.

use super::{guard, libusb_device_handle, timeout};
use crate::backend::SetupPacket;
use crate::desc::string_descriptor_ascii;
use crate::ffi::*;
use std::os::raw::{c_int, c_uchar, c_uint};
use std::ptr;

/// `libusb_control_transfer`: bytes transferred, or an error code.
#[no_mangle]
pub unsafe extern "C" fn libusb_control_transfer(
    handle: *mut libusb_device_handle,
    request_type: u8,
    request: u8,
    value: u16,
    index: u16,
    data: *mut c_uchar,
    length: u16,
    timeout_ms: c_uint,
) -> c_int {
    guard(LIBUSB_ERROR_OTHER, || {
        if handle.is_null() || (length > 0 && data.is_null()) {
            return LIBUSB_ERROR_INVALID_PARAM;
        }
        // SAFETY: live handle.
        let slot = unsafe { (*handle).slot() };
        let setup = SetupPacket {
            request_type,
            request,
            value,
            index,
            length,
        };
        let out: &[u8] = if setup.is_in() || length == 0 {
            &[]
        } else {
            // SAFETY: `data` holds `length` bytes.
            unsafe { std::slice::from_raw_parts(data, length.into()) }
        };
        match slot.control(setup, out, timeout(timeout_ms)) {
            Ok(v) if setup.is_in() => {
                let n = v.len().min(length.into());
                // SAFETY: `data` has room for `length` bytes.
                unsafe { ptr::copy_nonoverlapping(v.as_ptr(), data, n) };
                n as c_int
            }
            Ok(_) => c_int::from(length),
            Err(e) => e,
        }
    })
}

/// A standard request on `handle` with a 1 s timeout: bytes transferred,
/// or the libusb error code.
pub(super) fn std_request(
    handle: *mut libusb_device_handle,
    request_type: u8,
    request: u8,
    value: u16,
    index: u16,
    data: &mut [u8],
) -> Result<usize, c_int> {
    // SAFETY: pointer and length from a live slice.
    let r = unsafe {
        libusb_control_transfer(
            handle,
            request_type,
            request,
            value,
            index,
            data.as_mut_ptr(),
            data.len() as u16,
            1000,
        )
    };
    if r < 0 {
        Err(r)
    } else {
        Ok(r as usize)
    }
}

/// `libusb_get_string_descriptor_ascii`, as libusb 1.0.26 implements it.
#[no_mangle]
pub unsafe extern "C" fn libusb_get_string_descriptor_ascii(
    handle: *mut libusb_device_handle,
    index: u8,
    data: *mut c_uchar,
    length: c_int,
) -> c_int {
    guard(LIBUSB_ERROR_OTHER, || {
        if handle.is_null() || data.is_null() || length <= 0 {
            return LIBUSB_ERROR_INVALID_PARAM;
        }
        if index == 0 {
            return LIBUSB_ERROR_INVALID_PARAM;
        }
        let mut tbuf = [0u8; 255];
        let get = |idx: u8, langid: u16, buf: &mut [u8]| {
            std_request(
                handle,
                0x80,
                LIBUSB_REQUEST_GET_DESCRIPTOR,
                (u16::from(LIBUSB_DT_STRING) << 8) | u16::from(idx),
                langid,
                buf,
            )
        };
        let n = match get(0, 0, &mut tbuf) {
            Ok(n) => n,
            Err(e) => return e,
        };
        if n < 4 {
            return LIBUSB_ERROR_IO;
        }
        let langid = u16::from_le_bytes([tbuf[2], tbuf[3]]);
        let n = match get(index, langid, &mut tbuf) {
            Ok(n) => n,
            Err(e) => return e,
        };
        let ascii = match string_descriptor_ascii(&tbuf[..n]) {
            Ok(a) => a,
            Err(_) => return LIBUSB_ERROR_IO,
        };
        let k = ascii.len().min(length as usize - 1);
        // SAFETY: `data` has room for `length` bytes.
        unsafe {
            ptr::copy_nonoverlapping(ascii.as_ptr(), data, k);
            *data.add(k) = 0;
        }
        k as c_int
    })
}
