//! A device that never answers ([`ControlReply::NoResponse`]): through the
//! real TCP server, the request times out on the client, is unlinked, and
//! the import stays usable for the requests after it.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use dfukit_usbip::wire::{
    CmdSubmit, CmdUnlink, Direction, HeaderBasic, RetSubmit, RetUnlink, NOT_ISO, STATUS_UNLINKED,
    USBIP_RET_SUBMIT, USBIP_RET_UNLINK,
};
use dfukit_usbip::{
    Client, ControlError, ControlReply, DeviceInfo, Imported, SetupPacket, Unlinked, UsbDevice,
};

/// Vendor request (IN or OUT) the device never completes.
const REQ_HANG: u8 = 0x20;
/// Generous bound for anything that should be quick.
const T: Duration = Duration::from_secs(5);
/// The timeout given to hung requests.
const HANG_TIMEOUT: Duration = Duration::from_millis(300);

/// [`TestDevice`] that NAKs [`REQ_HANG`] forever and counts how often the
/// server asked it.
struct HangingDevice {
    inner: TestDevice,
    hang_calls: usize,
}

impl UsbDevice for HangingDevice {
    fn info(&self) -> DeviceInfo {
        self.inner.info()
    }

    fn control(&mut self, setup: &SetupPacket, data_out: &[u8]) -> ControlReply {
        if setup.kind() == 0x40 && setup.request == REQ_HANG {
            self.hang_calls += 1;
            return ControlReply::NoResponse;
        }
        self.inner.control(setup, data_out)
    }

    fn attached(&self) -> bool {
        self.inner.attached()
    }
}

fn hanging() -> HangingDevice {
    HangingDevice {
        inner: TestDevice::new(),
        hang_calls: 0,
    }
}

/// Submits a request the device never completes, and gives the server time
/// to hand it to the device.
fn submit_hang(imp: &mut Imported) {
    imp.submit_control(vendor_in(REQ_HANG, 0, 1), &[]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
}

/// Asserts that a timed-out request took its timeout, and not much more:
/// the client gives up on its own clock, not on a server reply.
fn assert_took_the_timeout(elapsed: Duration) {
    assert!(elapsed >= HANG_TIMEOUT, "returned early: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
}

#[test]
fn hung_request_times_out_and_the_import_stays_usable() {
    let (server, dev, _addr, mut imp) = serve_imported(hanging());

    let t0 = Instant::now();
    let r = imp.control(vendor_in(REQ_HANG, 0, 8), &[], HANG_TIMEOUT);
    assert!(matches!(r, Err(ControlError::Timeout)), "{r:?}");
    assert_took_the_timeout(t0.elapsed());
    assert!(imp.is_connected());

    // The next request on the same import is answered (the RET_UNLINK of
    // the hung one arrives first and is skipped by the client).
    imp.control(vendor_out(REQ_STORE, 3), &[7, 8, 9], T)
        .unwrap();
    assert_eq!(
        imp.control(vendor_in(REQ_FETCH, 0, 3), &[], T).unwrap(),
        vec![7, 8, 9]
    );

    // An OUT request with a data stage hangs the same way, and again the
    // import recovers; repeated hangs do not accumulate anything.
    for _ in 0..2 {
        let t0 = Instant::now();
        let r = imp.control(vendor_out(REQ_HANG, 2), &[1, 2], HANG_TIMEOUT);
        assert!(matches!(r, Err(ControlError::Timeout)), "{r:?}");
        assert_took_the_timeout(t0.elapsed());
        let desc = imp.control(get_descriptor(1, 0, 18), &[], T).unwrap();
        assert_eq!(desc, device_blob().to_vec());
    }

    // The server asked the device once per hung request: it does not retry
    // and it does not complete the URB behind the client's back.
    assert_eq!(dev.lock().unwrap().hang_calls, 3);
    assert!(server.is_imported("1-1"));
    drop(imp);
    server.stop();
}

#[test]
fn request_queued_behind_a_hung_one_runs_after_the_unlink() {
    let (server, dev, _addr, mut imp) = serve_imported(hanging());
    imp.control(vendor_out(REQ_STORE, 2), &[4, 2], T).unwrap();

    let hung = imp.submit_control(vendor_in(REQ_HANG, 0, 1), &[]).unwrap();
    let queued = imp.submit_control(vendor_in(REQ_FETCH, 0, 2), &[]).unwrap();
    // URBs run in order on endpoint 0: the fetch cannot overtake the hung
    // request, so it is not answered while that one is pending.
    let t0 = Instant::now();
    let r = imp.wait(queued, HANG_TIMEOUT);
    assert!(matches!(r, Err(ControlError::Timeout)), "{r:?}");
    assert_took_the_timeout(t0.elapsed());
    assert_eq!(
        dev.lock().unwrap().inner.vendor_calls,
        vec![REQ_STORE],
        "the queued request must not run yet"
    );

    // Unlinking the hung request cancels it and lets the queue move on.
    assert_eq!(imp.unlink(hung, T).unwrap(), Unlinked::Cancelled);
    assert_eq!(imp.wait(queued, T).unwrap(), vec![4, 2]);
    // No RET_SUBMIT ever comes for the cancelled request.
    let r = imp.wait(hung, Duration::from_millis(200));
    assert!(matches!(r, Err(ControlError::Timeout)), "{r:?}");
    assert_eq!(
        dev.lock().unwrap().inner.vendor_calls,
        vec![REQ_STORE, REQ_FETCH]
    );
    assert_eq!(dev.lock().unwrap().hang_calls, 1);
    drop(imp);
    server.stop();
}

#[test]
fn queued_request_can_be_unlinked_while_the_device_hangs() {
    let (server, dev, _addr, mut imp) = serve_imported(hanging());

    let hung = imp.submit_control(vendor_in(REQ_HANG, 0, 1), &[]).unwrap();
    let store = imp
        .submit_control(vendor_out(REQ_STORE, 1), &[0x55])
        .unwrap();
    // Let the server start the hung request, so the store is queued.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(imp.unlink(store, T).unwrap(), Unlinked::Cancelled);
    assert_eq!(imp.unlink(hung, T).unwrap(), Unlinked::Cancelled);

    // The cancelled store never ran: nothing was stored.
    assert_eq!(
        imp.control(vendor_in(REQ_FETCH, 0, 1), &[], T).unwrap(),
        Vec::<u8>::new()
    );
    assert_eq!(dev.lock().unwrap().inner.vendor_calls, vec![REQ_FETCH]);
    drop(imp);
    server.stop();
}

#[test]
fn raw_wire_hung_urb_gets_ret_unlink_and_no_ret_submit() {
    let (server, _dev, addr) = serve(hanging());
    let mut s = raw_import(addr, T);

    let submit = |seqnum, setup: SetupPacket| CmdSubmit {
        seqnum,
        devid: 0x0001_0001,
        direction: Direction::In,
        ep: 0,
        transfer_buffer_length: setup.length.into(),
        number_of_packets: NOT_ISO,
        setup: setup.to_bytes(),
        ..CmdSubmit::default()
    };
    s.write_all(&submit(1, vendor_in(REQ_HANG, 0, 4)).encode())
        .unwrap();
    s.write_all(&submit(2, get_descriptor(1, 0, 18)).encode())
        .unwrap();

    // Nothing at all is sent while the first URB hangs.
    assert_silent(&mut s, HANG_TIMEOUT, "data while the first URB hangs");

    s.set_read_timeout(Some(T)).unwrap();
    let unlink = CmdUnlink {
        seqnum: 3,
        devid: 0x0001_0001,
        direction: Direction::In,
        ep: 0,
        unlink_seqnum: 1,
    };
    s.write_all(&unlink.encode()).unwrap();

    // RET_UNLINK (-ECONNRESET) first, then the queued URB's RET_SUBMIT;
    // none for the unlinked URB.
    let mut hdr = [0u8; 48];
    s.read_exact(&mut hdr).unwrap();
    assert_eq!(HeaderBasic::peek(&hdr).unwrap().command, USBIP_RET_UNLINK);
    let ret = RetUnlink::decode(&hdr).unwrap();
    assert_eq!((ret.seqnum, ret.status), (3, STATUS_UNLINKED));

    let mut reply = [0u8; 48 + 18];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(
        HeaderBasic::peek(&reply[..48]).unwrap().command,
        USBIP_RET_SUBMIT
    );
    let ret = RetSubmit::decode(&reply, Direction::In).unwrap();
    assert_eq!((ret.seqnum, ret.status), (2, 0));
    assert_eq!(ret.data, device_blob().to_vec());

    assert_silent(
        &mut s,
        Duration::from_millis(200),
        "unexpected data after the last reply",
    );
    server.stop();
}

#[test]
fn closing_the_import_releases_a_hung_urb() {
    let (server, dev, addr, mut imp) = serve_imported(hanging());
    submit_hang(&mut imp);
    assert_eq!(dev.lock().unwrap().hang_calls, 1);
    // Gone without unlinking (dfu-util killed): the server must not keep
    // the device busy waiting for an unlink that will never come.
    drop(imp);
    wait_until_released(&server, T);
    let mut imp = Client::import(addr, "1-1").unwrap();
    assert_eq!(
        imp.control(get_descriptor(1, 0, 18), &[], T).unwrap(),
        device_blob().to_vec()
    );
    drop(imp);
    server.stop();
}

#[test]
fn device_detaching_while_a_request_hangs_ends_the_import() {
    let (server, dev, _addr, mut imp) = serve_imported(hanging());
    // The board resets (watchdog) while the request hangs: the client must
    // learn that the device is gone at once, not after its own timeout.
    let flip = {
        let dev = Arc::clone(&dev);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            dev.lock().unwrap().inner.attached = false;
        })
    };
    let t0 = Instant::now();
    let r = imp.control(vendor_in(REQ_HANG, 0, 1), &[], T);
    flip.join().unwrap();
    assert!(matches!(r, Err(ControlError::Disconnected)), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(!imp.is_connected());
    wait_until_released(&server, T);
    server.stop();
}

#[test]
fn server_stop_with_a_hung_urb_returns_promptly() {
    let (server, _dev, _addr, mut imp) = serve_imported(hanging());
    submit_hang(&mut imp);
    let t0 = Instant::now();
    server.stop();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    // The client sees the connection end rather than waiting forever.
    let r = imp.control(vendor_in(REQ_FETCH, 0, 1), &[], T);
    assert!(matches!(r, Err(ControlError::Disconnected)), "{r:?}");
}
