//! The device model behind the C API: contexts, devices and handles.
//!
//! A [`Slot`] is one *enumeration* of one exported device: its export record,
//! the descriptors read when it was listed, and the import connection. A
//! `libusb_device` ([`Device`]) is a reference-counted pointer to a slot; a
//! `libusb_device_handle` ([`Handle`]) holds a device reference.
//!
//! Imports: listing imports each device once to read its descriptors (USB/IP
//! records carry no strings, no endpoint or class-specific descriptors); the
//! import is kept in the slot and reused by `libusb_open`, by later opens and
//! by later listings, because a USB/IP device accepts one import at a time.
//! Slots are found again through a process-wide registry of weak references
//! keyed by server and busid, so a program that leaks device references (as
//! dfu-util does) never ends up importing the same device twice. The import
//! closes when the last device reference goes, or at `libusb_exit`.
//!
//! Disconnects: a transfer that reports the device gone marks the slot gone;
//! every handle on it then fails with `LIBUSB_ERROR_NO_DEVICE`, like a handle
//! on an unplugged device. The next listing enumerates the busid afresh (a new
//! slot, a new import) if the server still exports it.

use crate::backend::{Backend, BackendImportError, Exported, ImportLink, SetupPacket, XferError};
use crate::desc::{parse_device_descriptor, ConfigDescriptor};
use crate::ffi::*;
use std::collections::HashMap;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

/// Timeout for the shim's own requests (descriptor reads, validation).
pub const INTERNAL_TIMEOUT: Duration = Duration::from_secs(5);
/// What a libusb timeout of 0 ("no timeout") becomes.
pub const FOREVER: Duration = Duration::from_secs(30 * 24 * 3600);

/// Locks, ignoring poisoning (a panic elsewhere must not wedge the shim).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `DFUKIT_LIBUSB_DEBUG` asks for debug messages on stderr.
pub fn debug_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var_os("DFUKIT_LIBUSB_DEBUG").is_some_and(|v| !v.is_empty() && v != "0")
    })
}

macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::model::debug_enabled() {
            eprintln!("dfukit-libusb: {}", format_args!($($arg)*));
        }
    };
}
pub(crate) use debug;

/// libusb error code for a failed transfer.
pub fn xfer_error_code(e: &XferError) -> c_int {
    match e {
        XferError::Stall => LIBUSB_ERROR_PIPE,
        XferError::Timeout => LIBUSB_ERROR_TIMEOUT,
        XferError::Disconnected => LIBUSB_ERROR_NO_DEVICE,
        XferError::Io(_) => LIBUSB_ERROR_IO,
    }
}

/// libusb error code for a failed import at `libusb_open`.
pub fn import_error_code(e: &BackendImportError) -> c_int {
    match e {
        BackendImportError::NotFound => LIBUSB_ERROR_NO_DEVICE,
        BackendImportError::Busy => LIBUSB_ERROR_BUSY,
        BackendImportError::Io(_) => LIBUSB_ERROR_IO,
    }
}

/// Maps a Linux `usb_device_speed` to `enum libusb_speed`.
pub fn libusb_speed(linux: u32) -> c_int {
    match linux {
        1 => LIBUSB_SPEED_LOW,
        2 => LIBUSB_SPEED_FULL,
        3 | 4 => LIBUSB_SPEED_HIGH, // wireless USB: 480 Mbit/s signalling
        5 => LIBUSB_SPEED_SUPER,
        6 => LIBUSB_SPEED_SUPER_PLUS,
        _ => LIBUSB_SPEED_UNKNOWN,
    }
}

/// Bus number and port path from a Linux-style busid (`1-1`, `3-1.4.2`).
pub fn parse_busid(busid: &str) -> Option<(u8, Vec<u8>)> {
    let (bus, ports) = busid.split_once('-')?;
    let bus = bus.parse().ok()?;
    let ports = ports
        .split('.')
        .map(|p| p.parse::<u8>().ok())
        .collect::<Option<Vec<u8>>>()?;
    if ports.len() > 7 {
        return None;
    }
    Some((bus, ports))
}

// ---------------------------------------------------------------------------
// Contexts

/// A `libusb_context`: a server.
pub struct Context {
    /// The server.
    pub backend: Arc<dyn Backend>,
}

/// Live contexts per backend name, so `libusb_exit` of the last one
/// closes that server's imports.
fn live_contexts() -> &'static Mutex<HashMap<String, usize>> {
    static M: OnceLock<Mutex<HashMap<String, usize>>> = OnceLock::new();
    M.get_or_init(Default::default)
}

impl Context {
    /// A context on `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        *lock(live_contexts()).entry(backend.name()).or_default() += 1;
        Context { backend }
    }

    /// Lists the server's devices, enumerating new ones. An unreachable
    /// server is an error; a device that cannot be imported is listed with
    /// descriptors synthesized from its USB/IP record.
    pub fn list(&self) -> std::io::Result<Vec<Arc<Slot>>> {
        let exported = self.backend.list()?;
        let name = self.backend.name();
        let mut reg = lock(registry());
        reg.retain(|_, w| w.strong_count() > 0);
        let mut out = Vec::with_capacity(exported.len());
        for exp in exported {
            let key = (name.clone(), exp.busid.clone());
            let old = reg.get(&key).and_then(Weak::upgrade);
            let slot = match old {
                Some(s) if s.still_valid(&exp) => s,
                old => {
                    let link = old.and_then(|s| s.retire());
                    let s = Arc::new(Slot::enumerate(self.backend.clone(), exp, link));
                    reg.insert(key, Arc::downgrade(&s));
                    s
                }
            };
            out.push(slot);
        }
        Ok(out)
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        let name = self.backend.name();
        let last = {
            let mut live = lock(live_contexts());
            let n = live.entry(name.clone()).or_default();
            *n = n.saturating_sub(1);
            *n == 0
        };
        if last {
            // Close this server's imports now rather than at process exit,
            // even if the program leaked device references.
            let slots: Vec<Arc<Slot>> = lock(registry())
                .iter()
                .filter(|((n, _), _)| *n == name)
                .filter_map(|(_, w)| w.upgrade())
                .collect();
            for s in slots {
                drop(s.retire());
            }
        }
    }
}

type Registry = HashMap<(String, String), Weak<Slot>>;

fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(Default::default)
}

// ---------------------------------------------------------------------------
// Slots

/// One enumeration of one exported device.
pub struct Slot {
    backend: Arc<dyn Backend>,
    /// The USB/IP record it was enumerated from.
    pub exp: Exported,
    /// Device descriptor (18 bytes).
    pub device_desc: [u8; 18],
    /// Full configuration descriptors, by index.
    pub configs: Vec<Vec<u8>>,
    /// Whether the descriptors were synthesized from the USB/IP record
    /// (the device could not be imported or read).
    pub synthesized: bool,
    state: Mutex<SlotState>,
}

struct SlotState {
    link: Option<Box<dyn ImportLink>>,
    gone: bool,
    active_config: u8,
}

fn get_descriptor(
    link: &mut dyn ImportLink,
    kind: u8,
    index: u8,
    len: u16,
) -> Result<Vec<u8>, XferError> {
    link.control(
        SetupPacket {
            request_type: 0x80,
            request: LIBUSB_REQUEST_GET_DESCRIPTOR,
            value: (u16::from(kind) << 8) | u16::from(index),
            index: 0,
            length: len,
        },
        &[],
        INTERNAL_TIMEOUT,
    )
}

fn read_device_descriptor(link: &mut dyn ImportLink) -> Result<[u8; 18], String> {
    let d = get_descriptor(link, LIBUSB_DT_DEVICE, 0, 18).map_err(|e| e.to_string())?;
    parse_device_descriptor(&d).map_err(|e| e.to_string())?;
    let mut out = [0u8; 18];
    out.copy_from_slice(&d[..18]);
    Ok(out)
}

/// Reads the device descriptor and every configuration descriptor.
fn read_descriptors(link: &mut dyn ImportLink) -> Result<([u8; 18], Vec<Vec<u8>>), String> {
    let dev = read_device_descriptor(link)?;
    let mut configs = Vec::new();
    for i in 0..dev[17] {
        let head = get_descriptor(link, LIBUSB_DT_CONFIG, i, 9).map_err(|e| e.to_string())?;
        if head.len() < 4 || head[1] != LIBUSB_DT_CONFIG {
            return Err(format!(
                "configuration {i}: bad descriptor header {head:02x?}"
            ));
        }
        let total = u16::from_le_bytes([head[2], head[3]]).max(9);
        let full = get_descriptor(link, LIBUSB_DT_CONFIG, i, total).map_err(|e| e.to_string())?;
        configs.push(full);
    }
    Ok((dev, configs))
}

/// Descriptors standing in for a device that could not be read: what the
/// USB/IP record says (ids, classes, interface classes), nothing more.
fn synthesize(exp: &Exported) -> ([u8; 18], Vec<Vec<u8>>) {
    let v = exp.vendor_id.to_le_bytes();
    let p = exp.product_id.to_le_bytes();
    let b = exp.bcd_device.to_le_bytes();
    let bcd_usb: u16 = if exp.speed >= 5 { 0x0300 } else { 0x0200 };
    let u = bcd_usb.to_le_bytes();
    let dev = [
        18,
        LIBUSB_DT_DEVICE,
        u[0],
        u[1],
        exp.class.0,
        exp.class.1,
        exp.class.2,
        64,
        v[0],
        v[1],
        p[0],
        p[1],
        b[0],
        b[1],
        0,
        0,
        0,
        1,
    ];
    let mut cfg = vec![
        9,
        LIBUSB_DT_CONFIG,
        0,
        0,
        exp.interfaces.len().min(32) as u8,
        exp.configuration_value.max(1),
        0,
        0x80,
        50,
    ];
    for (n, (c, s, pr)) in exp.interfaces.iter().take(32).enumerate() {
        cfg.extend_from_slice(&[9, LIBUSB_DT_INTERFACE, n as u8, 0, 0, *c, *s, *pr, 0]);
    }
    let total = (cfg.len() as u16).to_le_bytes();
    cfg[2] = total[0];
    cfg[3] = total[1];
    (dev, vec![cfg])
}

impl Slot {
    /// Enumerates `exp`: imports it (or reuses `link`) and reads its
    /// descriptors, falling back to synthesized ones.
    fn enumerate(
        backend: Arc<dyn Backend>,
        exp: Exported,
        link: Option<Box<dyn ImportLink>>,
    ) -> Slot {
        let link = match link {
            Some(l) => Ok(l),
            None => backend.import(&exp.busid),
        };
        let (link, read) = match link {
            Ok(mut l) => {
                let r = read_descriptors(&mut *l);
                (Some(l), r)
            }
            Err(e) => (None, Err(format!("cannot import: {e}"))),
        };
        let (device_desc, configs, synthesized) = match read {
            Ok((d, c)) => (d, c, false),
            Err(e) => {
                debug!(
                    "{} {}: {e}; listing it from its USB/IP record",
                    backend.name(),
                    exp.busid
                );
                let (d, c) = synthesize(&exp);
                (d, c, true)
            }
        };
        debug!(
            "enumerated {} {} ({:04x}:{:04x}), {} configuration(s)",
            backend.name(),
            exp.busid,
            exp.vendor_id,
            exp.product_id,
            configs.len()
        );
        let active_config = if exp.configuration_value != 0 {
            exp.configuration_value
        } else {
            // bConfigurationValue; a truncated descriptor must not take the
            // whole listing down with it.
            configs.first().and_then(|c| c.get(5).copied()).unwrap_or(0)
        };
        Slot {
            backend,
            state: Mutex::new(SlotState {
                link,
                gone: false,
                active_config,
            }),
            exp,
            device_desc,
            configs,
            synthesized,
        }
    }

    /// Whether this enumeration still stands for `exp` (same device number
    /// and ids, still connected, same device descriptor).
    fn still_valid(&self, exp: &Exported) -> bool {
        if self.synthesized
            || exp.devnum != self.exp.devnum
            || exp.busnum != self.exp.busnum
            || exp.vendor_id != self.exp.vendor_id
            || exp.product_id != self.exp.product_id
            || exp.bcd_device != self.exp.bcd_device
        {
            return false;
        }
        let mut st = lock(&self.state);
        if st.gone {
            return false;
        }
        let Some(link) = st.link.as_mut() else {
            return false;
        };
        match read_device_descriptor(&mut **link) {
            Ok(d) => d == self.device_desc,
            Err(e) => {
                debug!("{}: revalidation failed: {e}", self.exp.busid);
                st.gone = true;
                st.link = None;
                false
            }
        }
    }

    /// Marks this enumeration gone and hands back its import, if any.
    fn retire(&self) -> Option<Box<dyn ImportLink>> {
        let mut st = lock(&self.state);
        st.gone = true;
        st.link.take()
    }

    /// Whether the device is gone.
    pub fn is_gone(&self) -> bool {
        lock(&self.state).gone
    }

    /// Makes sure the device is imported (for `libusb_open`).
    pub fn ensure_link(&self) -> Result<(), c_int> {
        let mut st = lock(&self.state);
        if st.gone {
            return Err(LIBUSB_ERROR_NO_DEVICE);
        }
        if st.link.is_none() {
            match self.backend.import(&self.exp.busid) {
                Ok(l) => st.link = Some(l),
                Err(e) => {
                    debug!("{}: import failed: {e}", self.exp.busid);
                    return Err(import_error_code(&e));
                }
            }
        }
        Ok(())
    }

    /// Runs a control transfer, mapping failures to libusb codes. A
    /// disconnect marks the slot gone.
    pub fn control(
        &self,
        setup: SetupPacket,
        data_out: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, c_int> {
        let mut st = lock(&self.state);
        if st.gone {
            return Err(LIBUSB_ERROR_NO_DEVICE);
        }
        let Some(link) = st.link.as_mut() else {
            return Err(LIBUSB_ERROR_NO_DEVICE);
        };
        match link.control(setup, data_out, timeout) {
            Ok(v) => {
                if setup.request_type == 0x00 && setup.request == LIBUSB_REQUEST_SET_CONFIGURATION {
                    st.active_config = setup.value as u8;
                }
                Ok(v)
            }
            Err(e) => {
                debug!(
                    "{}: control {:02x} {:02x} {:04x} {:04x} {}: {e}",
                    self.exp.busid,
                    setup.request_type,
                    setup.request,
                    setup.value,
                    setup.index,
                    setup.length
                );
                if e == XferError::Disconnected {
                    st.gone = true;
                    st.link = None;
                }
                Err(xfer_error_code(&e))
            }
        }
    }

    /// `bConfigurationValue` believed active.
    pub fn active_config(&self) -> u8 {
        lock(&self.state).active_config
    }

    /// Records the active configuration (from GET_CONFIGURATION).
    pub fn set_active_config(&self, v: u8) {
        lock(&self.state).active_config = v;
    }

    /// Index of the active configuration in [`Slot::configs`].
    pub fn active_config_index(&self) -> Option<usize> {
        let v = self.active_config();
        self.configs
            .iter()
            .position(|c| c.get(5) == Some(&v))
            .or(if v == 0 { None } else { Some(0) })
            .filter(|&i| i < self.configs.len())
    }

    /// The active configuration, parsed.
    pub fn active_config_parsed(&self) -> Option<ConfigDescriptor> {
        let i = self.active_config_index()?;
        ConfigDescriptor::parse(&self.configs[i]).ok()
    }

    /// Bus number: from the record, else from the busid.
    pub fn bus_number(&self) -> u8 {
        if self.exp.busnum != 0 && self.exp.busnum <= 255 {
            self.exp.busnum as u8
        } else {
            parse_busid(&self.exp.busid).map_or(0, |(b, _)| b)
        }
    }

    /// Port path from the busid (empty if it is not Linux-style).
    pub fn port_numbers(&self) -> Vec<u8> {
        parse_busid(&self.exp.busid).map_or_else(Vec::new, |(_, p)| p)
    }

    /// Resets the device, as far as USB/IP allows: sends the hub port reset
    /// that Linux' usbip-host turns into a real reset, then checks the device
    /// is still there with the same descriptors. `LIBUSB_ERROR_NOT_FOUND`
    /// when it is gone or re-enumerated (the handle is then dead), as libusb
    /// reports a reset after which the device looks different.
    pub fn reset(&self) -> c_int {
        let mut st = lock(&self.state);
        if st.gone {
            return LIBUSB_ERROR_NOT_FOUND;
        }
        let Some(link) = st.link.as_mut() else {
            return LIBUSB_ERROR_NOT_FOUND;
        };
        // SET_FEATURE(PORT_RESET) to the hub port (bmRequestType: class,
        // recipient other), what vhci_hcd sends and usbip-host intercepts.
        let port = self.port_numbers().last().copied().unwrap_or(1);
        let reset = SetupPacket {
            request_type: 0x23,
            request: LIBUSB_REQUEST_SET_FEATURE,
            value: 4,
            index: u16::from(port),
            length: 0,
        };
        let sent = link.control(reset, &[], INTERNAL_TIMEOUT);
        debug!("{}: port reset: {sent:?}", self.exp.busid);
        let same = match sent {
            Err(XferError::Disconnected) => false,
            _ => matches!(read_device_descriptor(&mut **link), Ok(d) if d == self.device_desc),
        };
        if same {
            0
        } else {
            debug!("{}: gone or re-enumerated after reset", self.exp.busid);
            st.gone = true;
            st.link = None;
            LIBUSB_ERROR_NOT_FOUND
        }
    }
}

// ---------------------------------------------------------------------------
// Devices and handles

/// A `libusb_device`: a reference-counted enumeration.
pub struct Device {
    refs: AtomicUsize,
    /// The enumeration.
    pub slot: Arc<Slot>,
}

impl Device {
    /// A device with one reference, as a raw pointer.
    pub fn new_raw(slot: Arc<Slot>) -> *mut Device {
        Box::into_raw(Box::new(Device {
            refs: AtomicUsize::new(1),
            slot,
        }))
    }

    /// Adds a reference.
    ///
    /// # Safety
    /// `p` must be a live pointer from [`Device::new_raw`].
    pub unsafe fn add_ref(p: *mut Device) {
        // SAFETY: the caller promises `p` is live.
        unsafe { (*p).refs.fetch_add(1, Ordering::Relaxed) };
    }

    /// Drops a reference, freeing the device at zero.
    ///
    /// # Safety
    /// `p` must be a live pointer from [`Device::new_raw`] holding the
    /// reference being dropped.
    pub unsafe fn release(p: *mut Device) {
        // SAFETY: the caller promises `p` is live.
        if unsafe { (*p).refs.fetch_sub(1, Ordering::AcqRel) } == 1 {
            // SAFETY: that was the last reference.
            drop(unsafe { Box::from_raw(p) });
        }
    }

    /// The reference count (tests).
    pub fn refs(&self) -> usize {
        self.refs.load(Ordering::Relaxed)
    }
}

/// A `libusb_device_handle`.
pub struct Handle {
    /// The device (one reference held).
    pub dev: *mut Device,
    /// Claimed interfaces, one bit per interface number.
    pub claimed: AtomicU32,
}

impl Handle {
    /// The device's enumeration.
    pub fn slot(&self) -> &Slot {
        // SAFETY: the handle holds a reference to `dev`.
        unsafe { &(*self.dev).slot }
    }
}
