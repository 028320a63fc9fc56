//! A small vendor-class test device shared by the integration tests.
#![allow(dead_code)]

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dfukit_usbip::descriptors::DeviceDescriptor;
use dfukit_usbip::{
    Client, ControlReply, Descriptors, DeviceInfo, Imported, Server, SetupPacket, Speed, UsbDevice,
};

pub const VID: u16 = 0x1209;
pub const PID: u16 = 0xd0f0;
pub const BCD_DEVICE: u16 = 0x0123;

/// Vendor OUT: store the data stage.
pub const REQ_STORE: u8 = 1;
/// Vendor IN: return the stored data.
pub const REQ_FETCH: u8 = 2;
/// Vendor IN: always stalls.
pub const REQ_STALL: u8 = 3;
/// Vendor IN: sleeps `wValue` ms, then returns `[0xAA]`.
pub const REQ_SLOW: u8 = 4;
/// Vendor OUT (no data): acknowledged, then the device detaches.
pub const REQ_DETACH: u8 = 5;

pub const VENDOR_OUT: u8 = 0x40;
pub const VENDOR_IN: u8 = 0xc0;

/// Interface 0: vendor class ff/42/01 with alternate settings 0 and 1;
/// interface 1: DFU (fe/01/02) with a 9-byte functional descriptor.
pub fn config_blob() -> Vec<u8> {
    let mut c = vec![9, 2, 0, 0, 2, 1, 0, 0x80, 50];
    c.extend_from_slice(&[9, 4, 0, 0, 0, 0xff, 0x42, 0x01, 0]);
    c.extend_from_slice(&[9, 4, 0, 1, 0, 0xff, 0x42, 0x01, 0]);
    c.extend_from_slice(&[9, 4, 1, 0, 0, 0xfe, 0x01, 0x02, 3]);
    c.extend_from_slice(&[9, 0x21, 0x0b, 0xff, 0x00, 0x00, 0x08, 0x1a, 0x01]);
    let total = c.len() as u16;
    c[2..4].copy_from_slice(&total.to_le_bytes());
    c
}

pub fn device_blob() -> [u8; 18] {
    DeviceDescriptor {
        usb_version: 0x0200,
        class: 0,
        subclass: 0,
        protocol: 0,
        max_packet_size0: 64,
        vendor_id: VID,
        product_id: PID,
        bcd_device: BCD_DEVICE,
        manufacturer: 1,
        product: 2,
        serial_number: 3,
        num_configurations: 1,
    }
    .to_bytes()
}

pub fn descriptors() -> Descriptors {
    Descriptors::new(
        &device_blob(),
        &config_blob(),
        &["dfukit", "usbip test device", "0001"],
    )
    .expect("valid descriptors")
}

#[derive(Debug)]
pub struct TestDevice {
    pub desc: Descriptors,
    pub stored: Vec<u8>,
    pub attached: bool,
    /// Number of control transfers seen, by bRequest of vendor requests.
    pub vendor_calls: Vec<u8>,
}

impl TestDevice {
    pub fn new() -> Self {
        TestDevice {
            desc: descriptors(),
            stored: Vec::new(),
            attached: true,
            vendor_calls: Vec::new(),
        }
    }
}

impl UsbDevice for TestDevice {
    fn info(&self) -> DeviceInfo {
        self.desc.info(Speed::Full)
    }

    fn control(&mut self, setup: &SetupPacket, data_out: &[u8]) -> ControlReply {
        if let Some(r) = self.desc.handle(setup, data_out) {
            return r;
        }
        if setup.kind() != 0x40 {
            return ControlReply::Stall;
        }
        self.vendor_calls.push(setup.request);
        match (setup.request, setup.is_in()) {
            (REQ_STORE, false) => {
                self.stored = data_out.to_vec();
                ControlReply::ack()
            }
            (REQ_FETCH, true) => ControlReply::Data(self.stored.clone()),
            (REQ_SLOW, true) => {
                std::thread::sleep(Duration::from_millis(setup.value.into()));
                ControlReply::Data(vec![0xaa])
            }
            (REQ_DETACH, false) => {
                self.attached = false;
                ControlReply::ack()
            }
            _ => ControlReply::Stall,
        }
    }

    fn attached(&self) -> bool {
        self.attached
    }
}

pub fn vendor_in(request: u8, value: u16, length: u16) -> SetupPacket {
    SetupPacket {
        request_type: VENDOR_IN,
        request,
        value,
        index: 0,
        length,
    }
}

pub fn vendor_out(request: u8, length: u16) -> SetupPacket {
    SetupPacket {
        request_type: VENDOR_OUT,
        request,
        value: 0,
        index: 0,
        length,
    }
}

pub fn get_descriptor(kind: u8, index: u8, length: u16) -> SetupPacket {
    SetupPacket {
        request_type: 0x80,
        request: 6,
        value: (u16::from(kind) << 8) | u16::from(index),
        index: if kind == 3 { 0x0409 } else { 0 },
        length,
    }
}

/// Connects to the server at `addr` without the client, imports bus 1-1
/// with a raw OP_REQ_IMPORT, and checks the OP_REP_IMPORT header (version
/// 0x0111, code 0x0003, status 0). Reads time out after `timeout`.
pub fn raw_import(addr: SocketAddr, timeout: Duration) -> TcpStream {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    s.write_all(
        &dfukit_usbip::wire::OpReqImport {
            busid: "1-1".into(),
        }
        .encode()
        .unwrap(),
    )
    .unwrap();
    // OP_REP_IMPORT: 8-byte header + 312-byte device record.
    let mut rep = [0u8; 320];
    s.read_exact(&mut rep).unwrap();
    assert_eq!(&rep[..8], &[0x01, 0x11, 0x00, 0x03, 0, 0, 0, 0]);
    s
}

/// A running server on an ephemeral loopback port exporting `device` as bus 1-1, with the
/// handle the test inspects the device through.
pub fn serve<D: UsbDevice + 'static>(device: D) -> (Server, Arc<Mutex<D>>, SocketAddr) {
    let server = Server::bind("127.0.0.1:0").unwrap();
    let dev = Arc::new(Mutex::new(device));
    server.add_shared("1-1", Arc::clone(&dev)).unwrap();
    server.spawn().unwrap();
    let addr = server.local_addr();
    (server, dev, addr)
}

/// [`serve`], and the device imported from the server.
pub fn serve_imported<D: UsbDevice + 'static>(
    device: D,
) -> (Server, Arc<Mutex<D>>, SocketAddr, Imported) {
    let (server, dev, addr) = serve(device);
    let imp = Client::import(addr, "1-1").unwrap();
    (server, dev, addr, imp)
}

/// Waits (up to `limit`) until the server no longer holds bus 1-1 imported.
pub fn wait_until_released(server: &Server, limit: Duration) {
    let t0 = Instant::now();
    while server.is_imported("1-1") {
        assert!(t0.elapsed() < limit, "the import was never released");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asserts that nothing arrives on `s` for `quiet` (the read times out); `what` names what
/// must not have come.
pub fn assert_silent(s: &mut TcpStream, quiet: Duration, what: &str) {
    use std::io::Read;
    s.set_read_timeout(Some(quiet)).unwrap();
    let mut byte = [0u8; 1];
    let e = s.read(&mut byte).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{what}: {e}"
    );
}
