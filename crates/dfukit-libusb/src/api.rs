//! The exported libusb-1.0 C API.
//!
//! Every function catches panics (`LIBUSB_ERROR_OTHER`, NULL or nothing)
//! and checks its pointers for NULL. Pointer arguments are otherwise trusted
//! as libusb trusts them: they must come from this library and be live.

#![allow(clippy::missing_safety_doc, non_camel_case_types)]

use crate::backend::{Backend, Setup};
use crate::desc::{parse_device_descriptor, string_descriptor_ascii, ConfigDescriptor};
use crate::ffi::*;
use crate::model::{debug, libusb_speed, lock, Context, Device, Handle, FOREVER};
use crate::usbip::UsbipBackend;
use std::os::raw::{c_char, c_int, c_uchar, c_uint, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Opaque `libusb_context` as C sees it.
pub type libusb_context = Context;
/// Opaque `libusb_device` as C sees it.
pub type libusb_device = Device;
/// Opaque `libusb_device_handle` as C sees it.
pub type libusb_device_handle = Handle;

fn guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// The default context (`ctx == NULL`) and its `libusb_init` count.
static DEFAULT: Mutex<Option<(usize, Arc<Context>)>> = Mutex::new(None);

/// Resolves a context argument: the given one, else the default one
/// (created on demand, as a program that skips `libusb_init` gets).
fn context(ctx: *mut libusb_context) -> Arc<Context> {
    if !ctx.is_null() {
        // SAFETY: non-NULL contexts are `Arc<Context>`s leaked by `new_context`.
        unsafe {
            Arc::increment_strong_count(ctx);
            return Arc::from_raw(ctx);
        }
    }
    let mut d = lock(&DEFAULT);
    d.get_or_insert_with(|| {
        (
            0,
            Arc::new(Context::new(Arc::new(UsbipBackend::from_env()))),
        )
    })
    .1
    .clone()
}

fn new_context(backend: Arc<dyn Backend>) -> *mut libusb_context {
    Arc::into_raw(Arc::new(Context::new(backend))).cast_mut()
}

/// Creates a context on any [`Backend`] (for Rust callers and tests; C
/// programs get the USB/IP server from `libusb_init`). Release it with
/// `libusb_exit`.
pub fn context_with_backend(backend: Arc<dyn Backend>) -> *mut libusb_context {
    new_context(backend)
}

fn warn_unreachable(ctx: &Context, e: &std::io::Error) {
    static ONCE: AtomicBool = AtomicBool::new(false);
    if !ONCE.swap(true, Ordering::Relaxed) || crate::model::debug_enabled() {
        eprintln!(
            "dfukit-libusb: cannot list devices of {}: {e} (set DFUKIT_USBIP=HOST:PORT)",
            ctx.backend.name()
        );
    }
}

/// The enumeration behind a device pointer.
///
/// # Safety
/// `dev` must be a live device.
unsafe fn dev_slot<'a>(dev: *mut libusb_device) -> &'a crate::model::Slot {
    // SAFETY: the caller promises `dev` is live.
    unsafe { &(*dev).slot }
}

fn timeout(ms: c_uint) -> Duration {
    if ms == 0 {
        FOREVER
    } else {
        Duration::from_millis(ms.into())
    }
}

// ---------------------------------------------------------------------------
// Library and contexts

/// `libusb_init`.
#[no_mangle]
pub unsafe extern "C" fn libusb_init(ctx: *mut *mut libusb_context) -> c_int {
    guard(LIBUSB_ERROR_OTHER, || {
        if ctx.is_null() {
            let mut d = lock(&DEFAULT);
            let e = d.get_or_insert_with(|| {
                (
                    0,
                    Arc::new(Context::new(Arc::new(UsbipBackend::from_env()))),
                )
            });
            e.0 += 1;
        } else {
            let backend = UsbipBackend::from_env();
            debug!("libusb_init: USB/IP server {}", backend.addr());
            // SAFETY: `ctx` is a valid out pointer.
            unsafe { *ctx = new_context(Arc::new(backend)) };
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

// ---------------------------------------------------------------------------
// Device lists and devices

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

fn config_out(bytes: &[u8], config: *mut *mut libusb_config_descriptor) -> c_int {
    match ConfigDescriptor::parse(bytes) {
        Ok(c) => {
            // SAFETY: valid out pointer (checked by callers).
            unsafe { *config = c.into_c() };
            LIBUSB_SUCCESS
        }
        Err(e) => {
            debug!("configuration descriptor: {e}");
            LIBUSB_ERROR_IO
        }
    }
}

/// `libusb_get_config_descriptor`.
#[no_mangle]
pub unsafe extern "C" fn libusb_get_config_descriptor(
    dev: *mut libusb_device,
    index: u8,
    config: *mut *mut libusb_config_descriptor,
) -> c_int {
    guard(LIBUSB_ERROR_OTHER, || {
        if dev.is_null() || config.is_null() {
            return LIBUSB_ERROR_INVALID_PARAM;
        }
        // SAFETY: live device.
        let slot = unsafe { dev_slot(dev) };
        match slot.configs.get(usize::from(index)) {
            Some(bytes) => config_out(bytes, config),
            None => LIBUSB_ERROR_NOT_FOUND,
        }
    })
}

/// `libusb_get_config_descriptor_by_value`.
#[no_mangle]
pub unsafe extern "C" fn libusb_get_config_descriptor_by_value(
    dev: *mut libusb_device,
    value: u8,
    config: *mut *mut libusb_config_descriptor,
) -> c_int {
    guard(LIBUSB_ERROR_OTHER, || {
        if dev.is_null() || config.is_null() {
            return LIBUSB_ERROR_INVALID_PARAM;
        }
        // SAFETY: live device.
        let slot = unsafe { dev_slot(dev) };
        match slot.configs.iter().find(|c| c.get(5) == Some(&value)) {
            Some(bytes) => config_out(bytes, config),
            None => LIBUSB_ERROR_NOT_FOUND,
        }
    })
}

/// `libusb_get_active_config_descriptor`.
#[no_mangle]
pub unsafe extern "C" fn libusb_get_active_config_descriptor(
    dev: *mut libusb_device,
    config: *mut *mut libusb_config_descriptor,
) -> c_int {
    guard(LIBUSB_ERROR_OTHER, || {
        if dev.is_null() || config.is_null() {
            return LIBUSB_ERROR_INVALID_PARAM;
        }
        // SAFETY: live device.
        let slot = unsafe { dev_slot(dev) };
        match slot.active_config_index() {
            Some(i) => config_out(&slot.configs[i], config),
            None => LIBUSB_ERROR_NOT_FOUND,
        }
    })
}

/// `libusb_free_config_descriptor`.
#[no_mangle]
pub unsafe extern "C" fn libusb_free_config_descriptor(config: *mut libusb_config_descriptor) {
    // SAFETY: from `libusb_get_*config_descriptor`.
    guard((), || unsafe { ConfigDescriptor::free_c(config) })
}

/// `libusb_get_bus_number`.
#[no_mangle]
pub unsafe extern "C" fn libusb_get_bus_number(dev: *mut libusb_device) -> u8 {
    // SAFETY: live device.
    guard(0, || {
        if dev.is_null() {
            0
        } else {
            unsafe { dev_slot(dev).bus_number() }
        }
    })
}

/// `libusb_get_device_address`: the USB/IP device number.
#[no_mangle]
pub unsafe extern "C" fn libusb_get_device_address(dev: *mut libusb_device) -> u8 {
    // SAFETY: live device.
    guard(0, || {
        if dev.is_null() {
            0
        } else {
            unsafe { dev_slot(dev).exp.devnum as u8 }
        }
    })
}

/// `libusb_get_port_number`: the last port of the busid's path.
#[no_mangle]
pub unsafe extern "C" fn libusb_get_port_number(dev: *mut libusb_device) -> u8 {
    guard(0, || {
        if dev.is_null() {
            return 0;
        }
        // SAFETY: live device.
        unsafe { dev_slot(dev).port_numbers().last().copied().unwrap_or(0) }
    })
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

// ---------------------------------------------------------------------------
// Handles

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
        let setup = Setup {
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

fn std_request(
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

/// `libusb_claim_interface`: bookkeeping only (nothing else uses the device).
#[no_mangle]
pub unsafe extern "C" fn libusb_claim_interface(
    handle: *mut libusb_device_handle,
    interface: c_int,
) -> c_int {
    guard(LIBUSB_ERROR_OTHER, || {
        if handle.is_null() || !(0..32).contains(&interface) {
            return LIBUSB_ERROR_INVALID_PARAM;
        }
        // SAFETY: live handle.
        let h = unsafe { &*handle };
        if h.slot().is_gone() {
            return LIBUSB_ERROR_NO_DEVICE;
        }
        if !has_interface(h, interface as u8, None) {
            return LIBUSB_ERROR_NOT_FOUND;
        }
        h.claimed.fetch_or(1 << interface, Ordering::Relaxed);
        LIBUSB_SUCCESS
    })
}

/// `libusb_release_interface`.
#[no_mangle]
pub unsafe extern "C" fn libusb_release_interface(
    handle: *mut libusb_device_handle,
    interface: c_int,
) -> c_int {
    guard(LIBUSB_ERROR_OTHER, || {
        if handle.is_null() || !(0..32).contains(&interface) {
            return LIBUSB_ERROR_INVALID_PARAM;
        }
        // SAFETY: live handle.
        let h = unsafe { &*handle };
        let bit = 1u32 << interface;
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
    guard(LIBUSB_ERROR_OTHER, || {
        if handle.is_null() || !(0..32).contains(&interface) || !(0..256).contains(&alt) {
            return LIBUSB_ERROR_INVALID_PARAM;
        }
        // SAFETY: live handle.
        let h = unsafe { &*handle };
        if h.claimed.load(Ordering::Relaxed) & (1 << interface) == 0 {
            return LIBUSB_ERROR_NOT_FOUND;
        }
        if !has_interface(h, interface as u8, Some(alt as u8)) {
            return LIBUSB_ERROR_NOT_FOUND;
        }
        let r = std_request(
            handle,
            0x01,
            LIBUSB_REQUEST_SET_INTERFACE,
            alt as u16,
            interface as u16,
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
                        .find(|alts| alts.first().is_some_and(|a| a.header[2] == interface as u8))
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

// ---------------------------------------------------------------------------
// Synchronous bulk/interrupt and the asynchronous API: USB/IP here carries
// control transfers only.

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

#[cfg(test)]
mod tests;
