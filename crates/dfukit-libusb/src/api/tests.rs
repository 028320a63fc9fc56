//! The C API in-process, against an in-memory backend.

use super::*;
use crate::backend::{BackendImportError, Exported, ImportLink, SetupPacket, XferError};
use crate::ffi::*;
use std::ffi::CStr;
use std::io;
use std::ptr;
use std::sync::atomic::AtomicUsize;

/// What the mock device does with the next request.
#[derive(Default)]
struct MockState {
    imported: bool,
    imports: usize,
    exported: bool,
    /// Fails the import with this error instead.
    refuse: Option<BackendImportError>,
    /// Next transfer fails with this.
    fail_next: Option<XferError>,
    /// The device disconnects when it gets a port reset.
    leave_on_reset: bool,
    /// Data of the last OUT transfer.
    last_out: Vec<u8>,
    requests: Vec<SetupPacket>,
    product_id: u16,
}

struct MockBackend {
    name: String,
    state: Arc<Mutex<MockState>>,
}

struct MockLink {
    state: Arc<Mutex<MockState>>,
    dead: bool,
}

impl Drop for MockLink {
    fn drop(&mut self) {
        lock(&self.state).imported = false;
    }
}

fn device_desc(pid: u16) -> Vec<u8> {
    let p = pid.to_le_bytes();
    vec![
        18, 1, 0, 2, 0, 0, 0, 64, 0x83, 0x04, p[0], p[1], 0, 2, 1, 2, 3, 1,
    ]
}

fn config_desc() -> Vec<u8> {
    let mut v = vec![9, 2, 0, 0, 1, 1, 0, 0x80, 50];
    v.extend_from_slice(&[9, 4, 0, 0, 0, 0xfe, 1, 2, 4]);
    v.extend_from_slice(&[9, 4, 0, 1, 0, 0xfe, 1, 2, 5]);
    v.extend_from_slice(&[9, 0x21, 0x0b, 0xff, 0, 0, 8, 0x1a, 1]);
    let t = (v.len() as u16).to_le_bytes();
    v[2] = t[0];
    v[3] = t[1];
    v
}

fn string_desc(s: &str) -> Vec<u8> {
    let mut v = vec![0, 3];
    for u in s.encode_utf16() {
        v.extend_from_slice(&u.to_le_bytes());
    }
    v[0] = v.len() as u8;
    v
}

impl ImportLink for MockLink {
    fn control(
        &mut self,
        setup: SetupPacket,
        data_out: &[u8],
        _t: Duration,
    ) -> Result<Vec<u8>, XferError> {
        if self.dead {
            return Err(XferError::Disconnected);
        }
        let mut st = lock(&self.state);
        st.requests.push(setup);
        if let Some(e) = st.fail_next.take() {
            if e == XferError::Disconnected {
                self.dead = true;
                st.exported = false;
            }
            return Err(e);
        }
        let reply = match (setup.request_type, setup.request, setup.value >> 8) {
            (0x80, 6, 1) => device_desc(st.product_id),
            (0x80, 6, 2) => config_desc(),
            (0x80, 6, 3) => match setup.value & 0xff {
                0 => vec![4, 3, 0x09, 0x04],
                4 => string_desc("Internal Flash"),
                5 => string_desc("Option Bytes é"),
                _ => return Err(XferError::Stall),
            },
            (0x80, 8, _) => vec![1],
            (0x23, 3, _) if setup.value == 4 => {
                if st.leave_on_reset {
                    self.dead = true;
                    st.exported = false;
                    return Err(XferError::Disconnected);
                }
                return Err(XferError::Stall);
            }
            (0x01, 11, _) => {
                if setup.value > 1 {
                    return Err(XferError::Stall);
                }
                vec![]
            }
            (0x21, 1, _) => {
                st.last_out = data_out.to_vec();
                vec![]
            }
            (0xa1, 3, _) => vec![0, 0, 0, 0, 2, 0, 0xee, 0xee],
            _ => return Err(XferError::Stall),
        };
        Ok(reply)
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

impl MockBackend {
    fn new() -> Arc<MockBackend> {
        Arc::new(MockBackend {
            name: format!("mock://{}", NEXT.fetch_add(1, Ordering::Relaxed)),
            state: Arc::new(Mutex::new(MockState {
                exported: true,
                product_id: 0xdf11,
                ..Default::default()
            })),
        })
    }

    fn st(&self) -> MutexGuard<'_, MockState> {
        lock(&self.state)
    }
}

use std::sync::MutexGuard;

impl Backend for MockBackend {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn list(&self) -> io::Result<Vec<Exported>> {
        let st = self.st();
        if !st.exported {
            return Ok(vec![]);
        }
        Ok(vec![Exported {
            busid: "2-1.4".into(),
            busnum: 2,
            devnum: 7,
            speed: 3,
            vendor_id: 0x0483,
            product_id: st.product_id,
            bcd_device: 0x0200,
            class: (0, 0, 0),
            configuration_value: 1,
            num_configurations: 1,
            interfaces: vec![(0xfe, 1, 2)],
        }])
    }

    fn import(&self, _busid: &str) -> Result<Box<dyn ImportLink>, BackendImportError> {
        let mut st = self.st();
        if let Some(e) = st.refuse.clone() {
            return Err(e);
        }
        if !st.exported {
            return Err(BackendImportError::NotFound);
        }
        if st.imported {
            return Err(BackendImportError::Busy);
        }
        st.imported = true;
        st.imports += 1;
        Ok(Box::new(MockLink {
            state: self.state.clone(),
            dead: false,
        }))
    }
}

struct Ctx(*mut libusb_context);

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: from `context_with_backend`.
        unsafe { libusb_exit(self.0) };
    }
}

/// A mock backend and a context on it.
fn mocked() -> (Arc<MockBackend>, Ctx) {
    let mock = MockBackend::new();
    let ctx = Ctx(context_with_backend(mock.clone()));
    (mock, ctx)
}

fn list(ctx: &Ctx) -> Vec<*mut libusb_device> {
    let mut l: *mut *mut libusb_device = ptr::null_mut();
    // SAFETY: test calls with valid pointers.
    unsafe {
        let n = libusb_get_device_list(ctx.0, &mut l);
        assert!(n >= 0);
        let v = (0..n as usize).map(|i| *l.add(i)).collect();
        assert!((*l.add(n as usize)).is_null());
        // Keep the references, free the array.
        libusb_free_device_list(l, 0);
        v
    }
}

fn open(dev: *mut libusb_device) -> *mut libusb_device_handle {
    let mut h = ptr::null_mut();
    // SAFETY: valid pointers.
    assert_eq!(unsafe { libusb_open(dev, &mut h) }, 0);
    h
}

/// The first device of `ctx`'s list, and a handle on it.
fn first_opened(ctx: &Ctx) -> (*mut libusb_device, *mut libusb_device_handle) {
    let dev = list(ctx)[0];
    (dev, open(dev))
}

#[test]
fn list_describe_and_free() {
    let (mock, ctx) = mocked();
    let devs = list(&ctx);
    assert_eq!(devs.len(), 1);
    let dev = devs[0];
    // SAFETY: valid pointers throughout.
    unsafe {
        let mut d = libusb_device_descriptor::default();
        assert_eq!(libusb_get_device_descriptor(dev, &mut d), 0);
        assert_eq!(
            (d.idVendor, d.idProduct, d.bNumConfigurations),
            (0x0483, 0xdf11, 1)
        );
        assert_eq!(libusb_get_bus_number(dev), 2);
        assert_eq!(libusb_get_device_address(dev), 7);
        assert_eq!(libusb_get_port_number(dev), 4);
        assert_eq!(libusb_get_device_speed(dev), LIBUSB_SPEED_HIGH);
        let mut ports = [0u8; 7];
        assert_eq!(libusb_get_port_numbers(dev, ports.as_mut_ptr(), 7), 2);
        assert_eq!(&ports[..2], &[1, 4]);
        assert_eq!(
            libusb_get_port_numbers(dev, ports.as_mut_ptr(), 1),
            LIBUSB_ERROR_OVERFLOW
        );

        let mut cfg = ptr::null_mut();
        assert_eq!(libusb_get_config_descriptor(dev, 0, &mut cfg), 0);
        let alt1 = &*(*(*cfg).interface).altsetting.add(1);
        let extra = std::slice::from_raw_parts(alt1.extra, alt1.extra_length as usize);
        assert_eq!(extra[1], 0x21, "DFU functional descriptor in extra");
        libusb_free_config_descriptor(cfg);
        assert_eq!(
            libusb_get_config_descriptor(dev, 1, &mut cfg),
            LIBUSB_ERROR_NOT_FOUND
        );
        assert_eq!(libusb_get_active_config_descriptor(dev, &mut cfg), 0);
        assert_eq!((*cfg).bConfigurationValue, 1);
        libusb_free_config_descriptor(cfg);
        assert_eq!(libusb_get_config_descriptor_by_value(dev, 1, &mut cfg), 0);
        libusb_free_config_descriptor(cfg);

        // ref/unref around the list's reference.
        assert_eq!(libusb_ref_device(dev), dev);
        assert_eq!((*dev).refs(), 2);
        libusb_unref_device(dev);
        assert_eq!((*dev).refs(), 1);
        assert!(mock.st().imported, "the listing import is cached");
        libusb_unref_device(dev);
        assert!(!mock.st().imported, "the last reference closes the import");
    }
}

#[test]
fn relisting_reuses_the_import_even_when_references_leak() {
    let (mock, ctx) = mocked();
    let a = list(&ctx)[0]; // leaked on purpose, as dfu-util does
    let b = list(&ctx)[0];
    assert_ne!(a, b);
    // SAFETY: live devices.
    unsafe {
        assert!(Arc::ptr_eq(&(*a).slot, &(*b).slot));
        assert_eq!(mock.st().imports, 1);
        let h = open(b);
        libusb_close(h);
        let h = open(a);
        libusb_close(h);
        assert_eq!(mock.st().imports, 1);
        libusb_unref_device(b);
    }
    drop(ctx);
    assert!(
        !mock.st().imported,
        "libusb_exit closes imports of leaked devices"
    );
    // SAFETY: the leaked reference is still valid memory.
    unsafe {
        assert!((*a).slot.is_gone());
        libusb_unref_device(a);
    }
}

#[test]
fn control_transfers_and_error_mapping() {
    let (mock, ctx) = mocked();
    let (dev, h) = first_opened(&ctx);
    // SAFETY: valid pointers throughout.
    unsafe {
        assert_eq!(libusb_get_device(h), dev);
        let mut buf = [0u8; 6];
        // Short IN: the device returns 8 bytes, wLength 6.
        let n = libusb_control_transfer(h, 0xa1, 3, 0, 0, buf.as_mut_ptr(), 6, 1000);
        assert_eq!(n, 6);
        assert_eq!(buf[4], 2);
        let mut out = *b"block";
        let n = libusb_control_transfer(h, 0x21, 1, 0, 0, out.as_mut_ptr(), 5, 0);
        assert_eq!(n, 5);
        assert_eq!(mock.st().last_out, b"block");
        let n = libusb_control_transfer(h, 0x21, 1, 0, 0, ptr::null_mut(), 0, 0);
        assert_eq!(n, 0);
        // Stall → PIPE.
        let n = libusb_control_transfer(h, 0xc0, 0x55, 0, 0, buf.as_mut_ptr(), 1, 100);
        assert_eq!(n, LIBUSB_ERROR_PIPE);
        mock.st().fail_next = Some(XferError::Timeout);
        let n = libusb_control_transfer(h, 0xa1, 3, 0, 0, buf.as_mut_ptr(), 6, 100);
        assert_eq!(n, LIBUSB_ERROR_TIMEOUT);
        mock.st().fail_next = Some(XferError::Io("boom".into()));
        let n = libusb_control_transfer(h, 0xa1, 3, 0, 0, buf.as_mut_ptr(), 6, 100);
        assert_eq!(n, LIBUSB_ERROR_IO);
        // NULL data with a length.
        let n = libusb_control_transfer(h, 0xa1, 3, 0, 0, ptr::null_mut(), 6, 100);
        assert_eq!(n, LIBUSB_ERROR_INVALID_PARAM);
        let mut cfg = -1;
        assert_eq!(libusb_get_configuration(h, &mut cfg), 0);
        assert_eq!(cfg, 1);

        // Strings, as libusb converts them.
        let mut s = [0u8; 64];
        let n = libusb_get_string_descriptor_ascii(h, 4, s.as_mut_ptr(), 64);
        assert_eq!(
            CStr::from_ptr(s.as_ptr().cast()).to_bytes(),
            b"Internal Flash"
        );
        assert_eq!(n, 14);
        let n = libusb_get_string_descriptor_ascii(h, 5, s.as_mut_ptr(), 64);
        assert_eq!(&s[..n as usize], b"Option Bytes ?");
        let n = libusb_get_string_descriptor_ascii(h, 4, s.as_mut_ptr(), 5);
        assert_eq!((n, &s[..5]), (4, &b"Inte\0"[..]));
        assert_eq!(
            libusb_get_string_descriptor_ascii(h, 9, s.as_mut_ptr(), 64),
            LIBUSB_ERROR_PIPE
        );
        assert_eq!(
            libusb_get_string_descriptor_ascii(h, 0, s.as_mut_ptr(), 64),
            LIBUSB_ERROR_INVALID_PARAM
        );

        // Disconnect → NO_DEVICE from then on; the next listing drops it.
        mock.st().fail_next = Some(XferError::Disconnected);
        let n = libusb_control_transfer(h, 0xa1, 3, 0, 0, buf.as_mut_ptr(), 6, 100);
        assert_eq!(n, LIBUSB_ERROR_NO_DEVICE);
        let n = libusb_control_transfer(h, 0xa1, 3, 0, 0, buf.as_mut_ptr(), 6, 100);
        assert_eq!(n, LIBUSB_ERROR_NO_DEVICE);
        assert_eq!(libusb_claim_interface(h, 0), LIBUSB_ERROR_NO_DEVICE);
        let mut h2 = ptr::null_mut();
        assert_eq!(libusb_open(dev, &mut h2), LIBUSB_ERROR_NO_DEVICE);
        assert!(list(&ctx).is_empty());
        // It comes back (re-exported): a new enumeration, a new import.
        mock.st().exported = true;
        let again = list(&ctx);
        assert_eq!(again.len(), 1);
        assert!(!Arc::ptr_eq(&(*again[0]).slot, &(*dev).slot));
        let h2 = open(again[0]);
        let n = libusb_control_transfer(h2, 0xa1, 3, 0, 0, buf.as_mut_ptr(), 6, 100);
        assert_eq!(n, 6);
        assert_eq!(mock.st().imports, 2);
        libusb_close(h2);
        libusb_unref_device(again[0]);
        libusb_close(h);
        libusb_unref_device(dev);
    }
}

#[test]
fn interfaces_and_alternate_settings() {
    let (mock, ctx) = mocked();
    let (dev, h) = first_opened(&ctx);
    // SAFETY: valid pointers.
    unsafe {
        assert_eq!(
            libusb_set_interface_alt_setting(h, 0, 1),
            LIBUSB_ERROR_NOT_FOUND,
            "unclaimed"
        );
        assert_eq!(libusb_claim_interface(h, 0), 0);
        assert_eq!(libusb_claim_interface(h, 3), LIBUSB_ERROR_NOT_FOUND);
        assert_eq!(libusb_claim_interface(h, 32), LIBUSB_ERROR_INVALID_PARAM);
        assert_eq!(libusb_set_interface_alt_setting(h, 0, 1), 0);
        let last = *mock.st().requests.last().unwrap();
        assert_eq!(
            (last.request_type, last.request, last.value, last.index),
            (0x01, 11, 1, 0)
        );
        assert_eq!(
            libusb_set_interface_alt_setting(h, 0, 2),
            LIBUSB_ERROR_NOT_FOUND
        );
        assert_eq!(libusb_set_configuration(h, 1), LIBUSB_ERROR_BUSY);
        assert_eq!(libusb_release_interface(h, 0), 0);
        assert_eq!(libusb_release_interface(h, 0), LIBUSB_ERROR_NOT_FOUND);
        assert_eq!(libusb_kernel_driver_active(h, 0), 0);
        assert_eq!(
            libusb_detach_kernel_driver(h, 0),
            LIBUSB_ERROR_NOT_SUPPORTED
        );
        libusb_close(h);
        libusb_unref_device(dev);
    }
}

#[test]
fn reset_keeps_a_device_that_stays_and_reports_one_that_leaves() {
    let (mock, ctx) = mocked();
    let (dev, h) = first_opened(&ctx);
    // SAFETY: valid pointers.
    unsafe {
        assert_eq!(libusb_reset_device(h), 0);
        let port_reset = mock
            .st()
            .requests
            .iter()
            .any(|s| (s.request_type, s.request, s.value, s.index) == (0x23, 3, 4, 4));
        assert!(port_reset, "SET_FEATURE(PORT_RESET) to port 4");
        // Re-enumerates with another product id: NOT_FOUND, handle dead.
        mock.st().product_id = 0x5740;
        assert_eq!(libusb_reset_device(h), LIBUSB_ERROR_NOT_FOUND);
        let mut b = [0u8; 6];
        assert_eq!(
            libusb_control_transfer(h, 0xa1, 3, 0, 0, b.as_mut_ptr(), 6, 100),
            LIBUSB_ERROR_NO_DEVICE
        );
        libusb_close(h);
        // The import was closed: the new enumeration imports afresh.
        let devs = list(&ctx);
        let mut d = libusb_device_descriptor::default();
        libusb_get_device_descriptor(devs[0], &mut d);
        assert_eq!(d.idProduct, 0x5740);
        let h = open(devs[0]);
        mock.st().leave_on_reset = true;
        assert_eq!(libusb_reset_device(h), LIBUSB_ERROR_NOT_FOUND);
        libusb_close(h);
        assert!(list(&ctx).is_empty());
        libusb_unref_device(devs[0]);
        libusb_unref_device(dev);
    }
}

#[test]
fn unimportable_devices_are_listed_from_their_record() {
    let mock = MockBackend::new();
    mock.st().refuse = Some(BackendImportError::Busy);
    let ctx = Ctx(context_with_backend(mock.clone()));
    let dev = list(&ctx)[0];
    // SAFETY: valid pointers.
    unsafe {
        let mut d = libusb_device_descriptor::default();
        assert_eq!(libusb_get_device_descriptor(dev, &mut d), 0);
        assert_eq!(
            (d.idVendor, d.idProduct, d.bcdDevice),
            (0x0483, 0xdf11, 0x0200)
        );
        let mut cfg = ptr::null_mut();
        assert_eq!(libusb_get_config_descriptor(dev, 0, &mut cfg), 0);
        let alt = &*(*(*cfg).interface).altsetting;
        assert_eq!(
            (
                alt.bInterfaceClass,
                alt.bInterfaceSubClass,
                alt.bInterfaceProtocol
            ),
            (0xfe, 1, 2)
        );
        libusb_free_config_descriptor(cfg);
        let mut h = ptr::null_mut();
        assert_eq!(libusb_open(dev, &mut h), LIBUSB_ERROR_BUSY);
        // Once free, opening imports it.
        mock.st().refuse = None;
        let h = open(dev);
        let mut b = [0u8; 6];
        assert_eq!(
            libusb_control_transfer(h, 0xa1, 3, 0, 0, b.as_mut_ptr(), 6, 100),
            6
        );
        libusb_close(h);
        libusb_unref_device(dev);
    }
}

#[test]
fn unreachable_server_is_an_empty_list() {
    struct Down;
    impl Backend for Down {
        fn name(&self) -> String {
            "down://".into()
        }
        fn list(&self) -> io::Result<Vec<Exported>> {
            Err(io::Error::new(io::ErrorKind::ConnectionRefused, "refused"))
        }
        fn import(&self, _: &str) -> Result<Box<dyn ImportLink>, BackendImportError> {
            Err(BackendImportError::Io("down".into()))
        }
    }
    let ctx = Ctx(context_with_backend(Arc::new(Down)));
    assert!(list(&ctx).is_empty());
    // SAFETY: NULL context → default; NULL handle → NULL.
    unsafe {
        assert!(libusb_open_device_with_vid_pid(ctx.0, 1, 2).is_null());
        assert_eq!(
            libusb_get_device_list(ctx.0, ptr::null_mut()),
            LIBUSB_ERROR_INVALID_PARAM as isize
        );
    }
}

#[test]
fn open_by_ids() {
    let (mock, ctx) = mocked();
    // SAFETY: valid pointers.
    unsafe {
        let h = libusb_open_device_with_vid_pid(ctx.0, 0x0483, 0xdf11);
        assert!(!h.is_null());
        assert!(libusb_open_device_with_vid_pid(ctx.0, 0x0483, 0x0001).is_null());
        libusb_close(h);
    }
    assert!(!mock.st().imported, "list freed with unref, handle closed");
}

#[test]
fn library_level_calls() {
    // SAFETY: static data.
    unsafe {
        let v = &*libusb_get_version();
        assert_eq!((v.major, v.minor, v.micro), (1, 0, 26));
        assert_eq!(CStr::from_ptr(v.rc).to_bytes(), b"");
        assert_eq!(
            CStr::from_ptr(libusb_error_name(LIBUSB_ERROR_NOT_FOUND)).to_bytes(),
            b"LIBUSB_ERROR_NOT_FOUND"
        );
        assert_eq!(
            CStr::from_ptr(libusb_strerror(LIBUSB_ERROR_PIPE)).to_bytes(),
            b"Pipe error"
        );
        assert_eq!(libusb_has_capability(LIBUSB_CAP_HAS_CAPABILITY), 1);
        assert_eq!(libusb_has_capability(LIBUSB_CAP_HAS_HOTPLUG), 0);
        assert_eq!(
            libusb_set_option(ptr::null_mut(), LIBUSB_OPTION_LOG_LEVEL),
            0
        );
        assert_eq!(
            libusb_set_option(ptr::null_mut(), 99),
            LIBUSB_ERROR_INVALID_PARAM
        );
    }
    assert_eq!(
        crate::model::xfer_error_code(&XferError::Stall),
        LIBUSB_ERROR_PIPE
    );
    assert_eq!(
        crate::model::xfer_error_code(&XferError::Timeout),
        LIBUSB_ERROR_TIMEOUT
    );
    assert_eq!(
        crate::model::xfer_error_code(&XferError::Disconnected),
        LIBUSB_ERROR_NO_DEVICE
    );
    assert_eq!(
        crate::model::xfer_error_code(&XferError::Io("x".into())),
        LIBUSB_ERROR_IO
    );
    assert_eq!(crate::model::parse_busid("1-1"), Some((1, vec![1])));
    assert_eq!(
        crate::model::parse_busid("3-1.4.2"),
        Some((3, vec![1, 4, 2]))
    );
    assert_eq!(crate::model::parse_busid("dfu0"), None);
    assert_eq!(crate::model::libusb_speed(5), LIBUSB_SPEED_SUPER);
}
