//! Device lists and devices: references, descriptors, bus location, speed
//! and endpoint packet sizes.

use super::{context, dev_slot, guard, libusb_context, libusb_device, warn_unreachable};
use crate::desc::{parse_device_descriptor, ConfigDescriptor};
use crate::ffi::*;
use crate::model::{debug, libusb_speed, Device, Slot};
use std::os::raw::{c_int, c_uchar};
use std::ptr;

/// `libusb_get_device_list`. A server that cannot be reached gives an
/// empty list (and one warning on stderr), as a machine with no devices.
#[no_mangle]
pub unsafe extern "C" fn libusb_get_device_list(
    ctx: *mut libusb_context,
    list: *mut *mut *mut libusb_device,
) -> isize {
    guard(LIBUSB_ERROR_OTHER as isize, || {
        if list.is_null() {
            return LIBUSB_ERROR_INVALID_PARAM as isize;
        }
        let ctx = context(ctx);
        let slots = ctx.list().unwrap_or_else(|e| {
            warn_unreachable(&ctx, &e);
            Vec::new()
        });
        let mut v: Vec<*mut Device> = slots.into_iter().map(Device::new_raw).collect();
        let n = v.len();
        v.push(ptr::null_mut());
        let b = v.into_boxed_slice();
        // SAFETY: `list` is a valid out pointer.
        unsafe { *list = Box::into_raw(b).cast() };
        n as isize
    })
}

/// `libusb_free_device_list`.
#[no_mangle]
pub unsafe extern "C" fn libusb_free_device_list(list: *mut *mut libusb_device, unref: c_int) {
    guard((), || {
        if list.is_null() {
            return;
        }
        let mut n = 0;
        // SAFETY: the list is NULL-terminated (from `libusb_get_device_list`).
        unsafe {
            while !(*list.add(n)).is_null() {
                if unref != 0 {
                    Device::release(*list.add(n));
                }
                n += 1;
            }
            drop(Box::from_raw(ptr::slice_from_raw_parts_mut(list, n + 1)));
        }
    })
}

/// `libusb_ref_device`.
#[no_mangle]
pub unsafe extern "C" fn libusb_ref_device(dev: *mut libusb_device) -> *mut libusb_device {
    if !dev.is_null() {
        // SAFETY: live device.
        unsafe { Device::add_ref(dev) };
    }
    dev
}

/// `libusb_unref_device`.
#[no_mangle]
pub unsafe extern "C" fn libusb_unref_device(dev: *mut libusb_device) {
    guard((), || {
        if !dev.is_null() {
            // SAFETY: live device; the caller gives up a reference.
            unsafe { Device::release(dev) };
        }
    })
}

/// `libusb_get_device_descriptor`.
#[no_mangle]
pub unsafe extern "C" fn libusb_get_device_descriptor(
    dev: *mut libusb_device,
    desc: *mut libusb_device_descriptor,
) -> c_int {
    guard(LIBUSB_ERROR_OTHER, || {
        if dev.is_null() || desc.is_null() {
            return LIBUSB_ERROR_INVALID_PARAM;
        }
        // SAFETY: live device, valid out pointer.
        unsafe {
            match parse_device_descriptor(&dev_slot(dev).device_desc) {
                Ok(d) => {
                    *desc = d;
                    LIBUSB_SUCCESS
                }
                Err(_) => LIBUSB_ERROR_IO,
            }
        }
    })
}

/// The `libusb_get_*config_descriptor` functions: parses the configuration
/// descriptor `pick` chooses among `dev`'s into a new `*config`.
fn config_descriptor(
    dev: *mut libusb_device,
    config: *mut *mut libusb_config_descriptor,
    pick: impl FnOnce(&Slot) -> Option<&[u8]>,
) -> c_int {
    guard(LIBUSB_ERROR_OTHER, || {
        if dev.is_null() || config.is_null() {
            return LIBUSB_ERROR_INVALID_PARAM;
        }
        // SAFETY: live device.
        let slot = unsafe { dev_slot(dev) };
        let Some(bytes) = pick(slot) else {
            return LIBUSB_ERROR_NOT_FOUND;
        };
        match ConfigDescriptor::parse(bytes) {
            Ok(c) => {
                // SAFETY: valid out pointer (checked above).
                unsafe { *config = c.into_c() };
                LIBUSB_SUCCESS
            }
            Err(e) => {
                debug!("configuration descriptor: {e}");
                LIBUSB_ERROR_IO
            }
        }
    })
}

/// `libusb_get_config_descriptor`.
#[no_mangle]
pub unsafe extern "C" fn libusb_get_config_descriptor(
    dev: *mut libusb_device,
    index: u8,
    config: *mut *mut libusb_config_descriptor,
) -> c_int {
    config_descriptor(dev, config, |slot| {
        slot.configs.get(usize::from(index)).map(Vec::as_slice)
    })
}

/// `libusb_get_config_descriptor_by_value`.
#[no_mangle]
pub unsafe extern "C" fn libusb_get_config_descriptor_by_value(
    dev: *mut libusb_device,
    value: u8,
    config: *mut *mut libusb_config_descriptor,
) -> c_int {
    config_descriptor(dev, config, |slot| {
        slot.configs
            .iter()
            .find(|c| c.get(5) == Some(&value))
            .map(Vec::as_slice)
    })
}

/// `libusb_get_active_config_descriptor`.
#[no_mangle]
pub unsafe extern "C" fn libusb_get_active_config_descriptor(
    dev: *mut libusb_device,
    config: *mut *mut libusb_config_descriptor,
) -> c_int {
    config_descriptor(dev, config, |slot| {
        slot.active_config_index()
            .map(|i| slot.configs[i].as_slice())
    })
}

/// `libusb_free_config_descriptor`.
#[no_mangle]
pub unsafe extern "C" fn libusb_free_config_descriptor(config: *mut libusb_config_descriptor) {
    // SAFETY: from `libusb_get_*config_descriptor`.
    guard((), || unsafe { ConfigDescriptor::free_c(config) })
}

/// The `u8` getters of a device: `get` of its enumeration, 0 for NULL.
fn device_u8(dev: *mut libusb_device, get: impl FnOnce(&Slot) -> u8) -> u8 {
    guard(0, || {
        if dev.is_null() {
            return 0;
        }
        // SAFETY: live device.
        get(unsafe { dev_slot(dev) })
    })
}

/// `libusb_get_bus_number`.
#[no_mangle]
pub unsafe extern "C" fn libusb_get_bus_number(dev: *mut libusb_device) -> u8 {
    device_u8(dev, Slot::bus_number)
}

/// `libusb_get_device_address`: the USB/IP device number.
#[no_mangle]
pub unsafe extern "C" fn libusb_get_device_address(dev: *mut libusb_device) -> u8 {
    device_u8(dev, |slot| slot.exp.devnum as u8)
}

/// `libusb_get_port_number`: the last port of the busid's path.
#[no_mangle]
pub unsafe extern "C" fn libusb_get_port_number(dev: *mut libusb_device) -> u8 {
    device_u8(dev, |slot| slot.port_numbers().last().copied().unwrap_or(0))
}

/// `libusb_get_port_numbers`: the busid's port path (`1-1.4` → 1, 4).
#[no_mangle]
pub unsafe extern "C" fn libusb_get_port_numbers(
    dev: *mut libusb_device,
    port_numbers: *mut u8,
    len: c_int,
) -> c_int {
    guard(LIBUSB_ERROR_OTHER, || {
        if dev.is_null() || port_numbers.is_null() || len <= 0 {
            return LIBUSB_ERROR_INVALID_PARAM;
        }
        // SAFETY: live device.
        let ports = unsafe { dev_slot(dev).port_numbers() };
        if ports.len() > len as usize {
            return LIBUSB_ERROR_OVERFLOW;
        }
        // SAFETY: `port_numbers` has room for `len` bytes.
        unsafe { ptr::copy_nonoverlapping(ports.as_ptr(), port_numbers, ports.len()) };
        ports.len() as c_int
    })
}

/// `libusb_get_port_path` (deprecated).
#[no_mangle]
pub unsafe extern "C" fn libusb_get_port_path(
    _ctx: *mut libusb_context,
    dev: *mut libusb_device,
    path: *mut u8,
    path_length: u8,
) -> c_int {
    // SAFETY: forwarded.
    unsafe { libusb_get_port_numbers(dev, path, c_int::from(path_length)) }
}

/// `libusb_get_parent`: USB/IP does not show hubs.
#[no_mangle]
pub unsafe extern "C" fn libusb_get_parent(_dev: *mut libusb_device) -> *mut libusb_device {
    ptr::null_mut()
}

/// `libusb_get_device_speed`.
#[no_mangle]
pub unsafe extern "C" fn libusb_get_device_speed(dev: *mut libusb_device) -> c_int {
    guard(LIBUSB_SPEED_UNKNOWN, || {
        if dev.is_null() {
            return LIBUSB_SPEED_UNKNOWN;
        }
        // SAFETY: live device.
        libusb_speed(unsafe { dev_slot(dev).exp.speed })
    })
}

fn max_packet_size(dev: *mut libusb_device, endpoint: c_uchar) -> Result<u16, c_int> {
    if dev.is_null() {
        return Err(LIBUSB_ERROR_INVALID_PARAM);
    }
    // SAFETY: live device.
    let cfg = unsafe { dev_slot(dev).active_config_parsed() }.ok_or(LIBUSB_ERROR_NOT_FOUND)?;
    cfg.interfaces
        .iter()
        .filter_map(|alts| alts.first())
        .flat_map(|alt| alt.endpoints.iter())
        .find(|ep| ep.header[2] == endpoint)
        .map(|ep| u16::from_le_bytes([ep.header[4], ep.header[5]]))
        .ok_or(LIBUSB_ERROR_NOT_FOUND)
}

/// `libusb_get_max_packet_size`.
#[no_mangle]
pub unsafe extern "C" fn libusb_get_max_packet_size(
    dev: *mut libusb_device,
    endpoint: c_uchar,
) -> c_int {
    guard(LIBUSB_ERROR_OTHER, || {
        match max_packet_size(dev, endpoint) {
            Ok(v) => c_int::from(v & 0x7ff),
            Err(e) => e,
        }
    })
}

/// `libusb_get_max_iso_packet_size`.
#[no_mangle]
pub unsafe extern "C" fn libusb_get_max_iso_packet_size(
    dev: *mut libusb_device,
    endpoint: c_uchar,
) -> c_int {
    guard(LIBUSB_ERROR_OTHER, || {
        match max_packet_size(dev, endpoint) {
            Ok(v) => c_int::from(v & 0x7ff) * (1 + c_int::from((v >> 11) & 3)),
            Err(e) => e,
        }
    })
}
