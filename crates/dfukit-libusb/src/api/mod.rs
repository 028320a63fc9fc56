//! The exported libusb-1.0 C API.
//!
//! Every function catches panics (`LIBUSB_ERROR_OTHER`, NULL or nothing)
//! and checks its pointers for NULL. Pointer arguments are otherwise trusted
//! as libusb trusts them: they must come from this library and be live.
//!
//! By concern: [`library`] (init, exit, options, version, error names),
//! [`devices`] (device lists, descriptors, bus location), [`handles`] (open,
//! close, configuration, interfaces, reset), [`transfers`] (control
//! transfers and the requests built on them) and [`unsupported`] (bulk,
//! interrupt and the asynchronous API, which USB/IP here does not carry).
//! Every function is re-exported here, at `dfukit_libusb::api::*`.

#![allow(clippy::missing_safety_doc, non_camel_case_types)]

pub mod devices;
pub mod handles;
pub mod library;
pub mod transfers;
pub mod unsupported;

pub use devices::*;
pub use handles::*;
pub use library::*;
pub use transfers::*;
pub use unsupported::*;

use crate::backend::Backend;
use crate::model::{lock, Context, Device, Handle, FOREVER};
use crate::usbip::UsbipBackend;
use std::os::raw::c_uint;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Opaque `libusb_context` as C sees it.
pub type libusb_context = Context;
/// Opaque `libusb_device` as C sees it.
pub type libusb_device = Device;
/// Opaque `libusb_device_handle` as C sees it.
pub type libusb_device_handle = Handle;

/// Runs `f`, turning a panic into `fallback`: a panic must not unwind into
/// the C caller.
fn guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// The default context (`ctx == NULL`) and its `libusb_init` count.
static DEFAULT: Mutex<Option<(usize, Arc<Context>)>> = Mutex::new(None);

/// Resolves a context argument: the given one, else the default one
/// (created on demand, as a program that skips `libusb_init` gets).
fn context(ctx: *mut libusb_context) -> Arc<Context> {
    if !ctx.is_null() {
        // SAFETY: non-NULL contexts are `Arc<Context>`s leaked by `context_with_backend`.
        unsafe {
            Arc::increment_strong_count(ctx);
            return Arc::from_raw(ctx);
        }
    }
    default_context(&mut lock(&DEFAULT)).1.clone()
}

/// The default context with its `libusb_init` count, created on the
/// USB/IP server of the environment if there is none.
fn default_context(d: &mut Option<(usize, Arc<Context>)>) -> &mut (usize, Arc<Context>) {
    d.get_or_insert_with(|| {
        (
            0,
            Arc::new(Context::new(Arc::new(UsbipBackend::from_env()))),
        )
    })
}

/// Creates a context on any [`Backend`] (for Rust callers and tests; C
/// programs get the USB/IP server from `libusb_init`). Release it with
/// `libusb_exit`.
pub fn context_with_backend(backend: Arc<dyn Backend>) -> *mut libusb_context {
    Arc::into_raw(Arc::new(Context::new(backend))).cast_mut()
}

/// Says once (every time with `DFUKIT_LIBUSB_DEBUG`) that the server could
/// not be listed: the program itself only sees an empty device list.
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

/// A libusb timeout in milliseconds, where 0 means none.
fn timeout(ms: c_uint) -> Duration {
    if ms == 0 {
        FOREVER
    } else {
        Duration::from_millis(ms.into())
    }
}

#[cfg(test)]
mod tests;
