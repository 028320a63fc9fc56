//! The server and client talking over loopback TCP.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use dfukit_usbip::wire::{
    CmdSubmit, Direction, RetSubmit, NOT_ISO, STATUS_STALL, ST_DEV_BUSY, ST_NODEV,
};
use dfukit_usbip::{
    Client, ControlError, ImportError, InterfaceRecord, Server, SetupPacket, Speed, Unlinked,
};

const T: Duration = Duration::from_secs(5);

#[test]
fn handles_are_send() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    send::<dfukit_usbip::Imported>();
    send::<Server>();
    sync::<Server>();
    send::<dfukit_usbip::SharedDevice>();
}

#[test]
fn list_reports_device_and_interfaces() {
    let (server, _dev, addr) = serve(TestDevice::new());
    server
        .add_device("2-4", Box::new(TestDevice::new()))
        .unwrap();
    let list = Client::list(addr).unwrap();
    assert_eq!(list.len(), 2);
    let d = &list[0];
    assert_eq!(d.device.busid, "1-1");
    assert_eq!((d.device.vendor_id, d.device.product_id), (VID, PID));
    assert_eq!(d.device.bcd_device, BCD_DEVICE);
    assert_eq!(d.device.speed, Speed::Full);
    assert_eq!(d.device.configuration_value, 1);
    assert_eq!(d.device.num_interfaces, 2);
    assert_eq!(
        d.interfaces,
        vec![
            InterfaceRecord {
                class: 0xff,
                subclass: 0x42,
                protocol: 1
            },
            InterfaceRecord {
                class: 0xfe,
                subclass: 1,
                protocol: 2
            },
        ]
    );
    assert_eq!(list[1].device.busid, "2-4");
    assert_ne!(list[0].device.devnum, list[1].device.devnum);
    assert!(matches!(
        server.add_device("1-1", Box::new(TestDevice::new())),
        Err(dfukit_usbip::ServerError::DuplicateBusid { .. })
    ));
    assert!(matches!(
        server.add_device(&"9".repeat(32), Box::new(TestDevice::new())),
        Err(dfukit_usbip::ServerError::InvalidBusid { .. })
    ));
    server.stop();
}

#[test]
fn import_and_control_transfers() {
    let (server, dev, _addr, mut imp) = serve_imported(TestDevice::new());
    assert_eq!(imp.info().busid, "1-1");
    assert_eq!(imp.info().vendor_id, VID);
    assert_eq!(imp.devid(), (1 << 16) | imp.info().devnum);
    assert!(server.is_imported("1-1"));

    // Standard requests through the Descriptors helper, with wLength truncation.
    let desc = imp.control(get_descriptor(1, 0, 64), &[], T).unwrap();
    assert_eq!(desc, device_blob().to_vec());
    let head = imp.control(get_descriptor(2, 0, 9), &[], T).unwrap();
    assert_eq!(head.len(), 9);
    let full = imp.control(get_descriptor(2, 0, 4096), &[], T).unwrap();
    assert_eq!(full, config_blob());
    let s = imp.control(get_descriptor(3, 2, 255), &[], T).unwrap();
    let text: Vec<u16> = s[2..]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(String::from_utf16(&text).unwrap(), "usbip test device");

    // SET_INTERFACE is remembered and visible to the owner.
    let set_alt = SetupPacket {
        request_type: 0x01,
        request: 11,
        value: 1,
        index: 0,
        length: 0,
    };
    imp.control(set_alt, &[], T).unwrap();
    assert_eq!(dev.lock().unwrap().desc.alt_setting(0), Some(1));

    // Vendor OUT then IN.
    let payload: Vec<u8> = (0..200u8).collect();
    let r = imp
        .control(vendor_out(REQ_STORE, 200), &payload, T)
        .unwrap();
    assert!(r.is_empty());
    assert_eq!(
        imp.control(vendor_in(REQ_FETCH, 0, 200), &[], T).unwrap(),
        payload
    );
    assert_eq!(
        imp.control(vendor_in(REQ_FETCH, 0, 10), &[], T).unwrap(),
        payload[..10]
    );
    // A short reply is fine.
    assert_eq!(
        imp.control(vendor_in(REQ_FETCH, 0, 1000), &[], T).unwrap(),
        payload
    );

    // Stall, and the connection stays usable.
    assert!(matches!(
        imp.control(vendor_in(REQ_STALL, 0, 4), &[], T),
        Err(ControlError::Stall)
    ));
    assert!(matches!(
        imp.control(get_descriptor(3, 77, 255), &[], T),
        Err(ControlError::Stall)
    ));
    assert_eq!(
        imp.control(vendor_in(REQ_FETCH, 0, 3), &[], T).unwrap(),
        vec![0, 1, 2]
    );

    // Mismatched OUT length is refused locally.
    match imp.control(vendor_out(REQ_STORE, 3), &[1], T) {
        Err(ControlError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert_eq!(
        dev.lock().unwrap().vendor_calls,
        vec![REQ_STORE, REQ_FETCH, REQ_FETCH, REQ_FETCH, REQ_STALL, REQ_FETCH]
    );
    drop(imp);
    server.stop();
}

#[test]
fn import_refusals() {
    let (server, _dev, addr) = serve(TestDevice::new());
    match Client::import(addr, "9-9") {
        Err(ImportError::Refused { busid, status }) => {
            assert_eq!((busid.as_str(), status), ("9-9", ST_NODEV))
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    let _first = Client::import(addr, "1-1").unwrap();
    match Client::import(addr, "1-1") {
        Err(ImportError::Refused { status, .. }) => assert_eq!(status, ST_DEV_BUSY),
        other => panic!("expected busy, got {other:?}"),
    }
    // Listing still works while imported.
    assert_eq!(Client::list(addr).unwrap().len(), 1);
    server.stop();
}

#[test]
fn unlink_cancels_a_running_urb() {
    let (server, dev, _addr, mut imp) = serve_imported(TestDevice::new());
    let seq = imp
        .submit_control(vendor_in(REQ_SLOW, 300, 1), &[])
        .unwrap();
    // Running or still queued when the unlink arrives: cancelled either way.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(imp.unlink(seq, T).unwrap(), Unlinked::Cancelled);
    // No RET_SUBMIT for it: waiting for it times out.
    assert!(matches!(
        imp.wait(seq, Duration::from_millis(500)),
        Err(ControlError::Timeout)
    ));
    // Later requests work and have higher seqnums.
    let next = imp.submit_control(vendor_in(REQ_FETCH, 0, 4), &[]).unwrap();
    assert!(next > seq + 1);
    assert_eq!(imp.wait(next, T).unwrap(), Vec::<u8>::new());

    // Queued behind a slow one: cancelled before it runs.
    let slow = imp
        .submit_control(vendor_in(REQ_SLOW, 500, 1), &[])
        .unwrap();
    let queued = imp.submit_control(vendor_in(REQ_STALL, 0, 1), &[]).unwrap();
    assert_eq!(imp.unlink(queued, T).unwrap(), Unlinked::Cancelled);
    assert_eq!(imp.wait(slow, T).unwrap(), vec![0xaa]);
    // Unlinking a completed URB reports status 0.
    assert_eq!(imp.unlink(slow, T).unwrap(), Unlinked::AlreadyCompleted);
    let calls = dev.lock().unwrap().vendor_calls.clone();
    assert!(calls.ends_with(&[REQ_FETCH, REQ_SLOW]), "{calls:?}");
    assert!(
        !calls.contains(&REQ_STALL),
        "the queued request must never run: {calls:?}"
    );
    drop(imp);
    server.stop();
}

#[test]
fn timeout_unlinks_and_connection_recovers() {
    let (server, _dev, _addr, mut imp) = serve_imported(TestDevice::new());
    let t0 = Instant::now();
    assert!(matches!(
        imp.control(
            vendor_in(REQ_SLOW, 1000, 1),
            &[],
            Duration::from_millis(100)
        ),
        Err(ControlError::Timeout)
    ));
    assert!(t0.elapsed() < Duration::from_millis(800));
    imp.control(vendor_out(REQ_STORE, 2), &[5, 6], T).unwrap();
    assert_eq!(
        imp.control(vendor_in(REQ_FETCH, 0, 2), &[], T).unwrap(),
        vec![5, 6]
    );
    drop(imp);
    server.stop();
}

#[test]
fn detached_device_ends_the_import() {
    let (server, dev, addr, mut imp) = serve_imported(TestDevice::new());
    // The reply to the request that detaches still arrives.
    imp.control(vendor_out(REQ_DETACH, 0), &[], T).unwrap();
    assert!(matches!(
        imp.control(vendor_in(REQ_FETCH, 0, 1), &[], T),
        Err(ControlError::Disconnected)
    ));
    assert!(!imp.is_connected());
    assert!(matches!(
        imp.control(vendor_in(REQ_FETCH, 0, 1), &[], T),
        Err(ControlError::Disconnected)
    ));
    // Not listed, not importable while detached.
    assert!(Client::list(addr).unwrap().is_empty());
    assert!(matches!(
        Client::import(addr, "1-1"),
        Err(ImportError::Refused {
            status: ST_NODEV,
            ..
        })
    ));
    // Re-attach (re-enumeration) from the owner's side.
    dev.lock().unwrap().attached = true;
    let mut again = Client::import(addr, "1-1").unwrap();
    again.control(get_descriptor(1, 0, 18), &[], T).unwrap();

    // Detaching on the owner's side while idle closes the connection too.
    dev.lock().unwrap().attached = false;
    let deadline = Instant::now() + T;
    loop {
        match again.control(get_descriptor(1, 0, 18), &[], Duration::from_millis(500)) {
            Err(ControlError::Disconnected) => break,
            Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            other => panic!("expected disconnect, got {other:?}"),
        }
    }
    server.stop();
}

#[test]
fn server_stop_disconnects_clients() {
    let (server, _dev, addr, mut imp) = serve_imported(TestDevice::new());
    imp.control(get_descriptor(1, 0, 18), &[], T).unwrap();
    let t0 = Instant::now();
    server.stop();
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(matches!(
        imp.control(get_descriptor(1, 0, 18), &[], T),
        Err(ControlError::Disconnected)
    ));
    assert!(Client::list_with_timeout(addr, Duration::from_millis(500)).is_err());
}

#[test]
fn many_sequential_connections() {
    let (server, dev, addr) = serve(TestDevice::new());
    for i in 0..40u8 {
        let list = Client::list(addr).unwrap();
        assert_eq!(list.len(), 1, "iteration {i}");
        let mut imp = Client::import(addr, "1-1").unwrap();
        imp.control(get_descriptor(1, 0, 18), &[], T).unwrap();
        imp.control(vendor_out(REQ_STORE, 1), &[i], T).unwrap();
        assert_eq!(
            imp.control(vendor_in(REQ_FETCH, 0, 1), &[], T).unwrap(),
            vec![i]
        );
        // Dropped here: the next import must not find the device busy.
    }
    assert_eq!(dev.lock().unwrap().stored, vec![39]);
    server.stop();
}

#[test]
fn raw_wire_other_endpoints_fail_and_reply_header_is_clean() {
    let (server, _dev, addr) = serve(TestDevice::new());
    let mut s = raw_import(addr, T);
    // Bulk IN on endpoint 1: not implemented, completes with -EPIPE.
    let cmd = CmdSubmit {
        seqnum: 1,
        devid: 0x0001_0001,
        direction: Direction::In,
        ep: 1,
        transfer_buffer_length: 64,
        number_of_packets: 0,
        ..CmdSubmit::default()
    };
    s.write_all(&cmd.encode()).unwrap();
    let mut hdr = [0u8; 48];
    s.read_exact(&mut hdr).unwrap();
    let ret = RetSubmit::decode(&hdr, Direction::In).unwrap();
    assert_eq!(ret.seqnum, 1);
    assert_eq!(ret.status, STATUS_STALL);
    assert_eq!((ret.devid, ret.ep, ret.direction), (0, 0, Direction::Out));
    assert_eq!(ret.number_of_packets, NOT_ISO);
    // Control IN split across several TCP writes.
    let setup = get_descriptor(1, 0, 18).to_bytes();
    let cmd = CmdSubmit {
        seqnum: 2,
        direction: Direction::In,
        ep: 0,
        transfer_buffer_length: 18,
        number_of_packets: NOT_ISO,
        setup,
        ..CmdSubmit::default()
    };
    let bytes = cmd.encode();
    for chunk in bytes.chunks(7) {
        s.write_all(chunk).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut reply = [0u8; 48 + 18];
    s.read_exact(&mut reply).unwrap();
    let ret = RetSubmit::decode(&reply, Direction::In).unwrap();
    assert_eq!((ret.seqnum, ret.status, ret.actual_length), (2, 0, 18));
    assert_eq!(ret.data, device_blob().to_vec());
    // Garbage closes the connection.
    s.write_all(&[0xee; 48]).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
    server.stop();
}
