//! Round-trips and strictness checks for every USB/IP message.

use dfukit_usbip::wire::*;
use dfukit_usbip::SetupPacket;

fn sample_device(busid: &str, interfaces: u8) -> DeviceRecord {
    DeviceRecord {
        path: format!("/sys/devices/platform/test/usb1/{busid}"),
        busid: busid.to_owned(),
        busnum: 1,
        devnum: 7,
        speed: Speed::High,
        vendor_id: 0x0483,
        product_id: 0xdf11,
        bcd_device: 0x2200,
        device_class: 0,
        device_subclass: 0,
        device_protocol: 0,
        configuration_value: 1,
        num_configurations: 1,
        num_interfaces: interfaces,
    }
}

/// Where a message ended and how many bytes followed, when `r` failed for
/// trailing bytes.
fn trailing<T: std::fmt::Debug>(r: Result<T, UsbipWireError>) -> Option<(usize, usize)> {
    match r.unwrap_err() {
        UsbipWireError::TrailingBytes { offset, extra, .. } => Some((offset, extra)),
        _ => None,
    }
}

#[test]
fn op_header_round_trip_and_version_check() {
    let h = OpHeader::new(OP_REP_IMPORT, ST_NODEV);
    let b = h.encode();
    assert_eq!(b, [0x01, 0x11, 0x00, 0x03, 0, 0, 0, 4]);
    assert_eq!(OpHeader::decode(&b).unwrap(), h);
    let mut bad = b;
    bad[1] = 0x06;
    assert_eq!(
        OpHeader::decode(&bad).unwrap_err(),
        UsbipWireError::BadVersion {
            message: "op_common",
            found: 0x0106
        }
    );
    assert!(matches!(
        OpHeader::decode(&b[..7]).unwrap_err(),
        UsbipWireError::Truncated {
            field: "status",
            offset: 4,
            needed: 4,
            available: 3,
            ..
        }
    ));
}

#[test]
fn req_devlist_round_trip() {
    let b = OpReqDevlist.encode();
    assert_eq!(b, [0x01, 0x11, 0x80, 0x05, 0, 0, 0, 0]);
    assert_eq!(OpReqDevlist::decode(&b).unwrap(), OpReqDevlist);
    // Wrong code names the field and offset.
    let b2 = OpHeader::new(OP_REQ_IMPORT, 0).encode();
    assert_eq!(
        OpReqDevlist::decode(&b2).unwrap_err(),
        UsbipWireError::UnexpectedValue {
            message: "OP_REQ_DEVLIST",
            field: "code",
            offset: 2,
            expected: 0x8005,
            found: 0x8003
        }
    );
    let mut long = b.to_vec();
    long.push(0);
    assert_eq!(trailing(OpReqDevlist::decode(&long)), Some((8, 1)));
}

#[test]
fn rep_devlist_round_trip_with_interfaces() {
    let empty = OpRepDevlist::default();
    let b = empty.encode().unwrap();
    assert_eq!(b, [0x01, 0x11, 0x00, 0x05, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(OpRepDevlist::decode(&b).unwrap(), empty);

    let rep = OpRepDevlist {
        devices: vec![
            ExportedDevice {
                device: sample_device("1-1", 2),
                interfaces: vec![
                    InterfaceRecord {
                        class: 0xfe,
                        subclass: 1,
                        protocol: 2,
                    },
                    InterfaceRecord {
                        class: 0xff,
                        subclass: 0x42,
                        protocol: 1,
                    },
                ],
            },
            ExportedDevice {
                device: sample_device("1-2", 0),
                interfaces: vec![],
            },
        ],
    };
    let b = rep.encode().unwrap();
    assert_eq!(b.len(), 12 + 312 + 8 + 312);
    // Field offsets from usbip_protocol.rst (first device starts at 0x0C).
    assert_eq!(&b[0x10C..0x10F], b"1-1");
    assert_eq!(&b[0x12C..0x130], &[0, 0, 0, 1]); // busnum
    assert_eq!(&b[0x130..0x134], &[0, 0, 0, 7]); // devnum
    assert_eq!(&b[0x134..0x138], &[0, 0, 0, 3]); // speed: high
    assert_eq!(&b[0x138..0x13E], &[0x04, 0x83, 0xdf, 0x11, 0x22, 0x00]);
    assert_eq!(b[0x143], 2); // bNumInterfaces
    assert_eq!(&b[0x144..0x14C], &[0xfe, 1, 2, 0, 0xff, 0x42, 1, 0]);
    // Second device at 0xC + 1*0x138 + 2*4.
    assert_eq!(&b[0xC + 0x138 + 8 + 0x100..][..3], b"1-2");
    assert_eq!(OpRepDevlist::decode(&b).unwrap(), rep);

    // Truncated inside the second interface record.
    assert!(matches!(
        OpRepDevlist::decode(&b[..0x149]).unwrap_err(),
        UsbipWireError::Truncated {
            field: "bInterfaceSubClass",
            offset: 0x149,
            ..
        }
    ));
    // Trailing garbage.
    let mut long = b.clone();
    long.extend_from_slice(&[0; 3]);
    assert!(matches!(
        OpRepDevlist::decode(&long).unwrap_err(),
        UsbipWireError::TrailingBytes { extra: 3, .. }
    ));
    // Interface count mismatch is refused on encode.
    let mut bad = rep.clone();
    bad.devices[0].interfaces.pop();
    assert!(matches!(
        bad.encode().unwrap_err(),
        UsbipWireError::OutOfRange {
            field: "bNumInterfaces",
            ..
        }
    ));
}

#[test]
fn strings_must_be_terminated_and_fit() {
    let rep = OpRepDevlist {
        devices: vec![ExportedDevice {
            device: sample_device("1-1", 0),
            interfaces: vec![],
        }],
    };
    let mut b = rep.encode().unwrap();
    for x in &mut b[0x10C..0x12C] {
        *x = b'a';
    }
    assert_eq!(
        OpRepDevlist::decode(&b).unwrap_err(),
        UsbipWireError::Unterminated {
            message: "OP_REP_DEVLIST",
            field: "busid",
            offset: 0x10C
        }
    );
    let long = OpReqImport {
        busid: "x".repeat(32),
    };
    assert_eq!(
        long.encode().unwrap_err(),
        UsbipWireError::StringTooLong {
            field: "busid",
            len: 32,
            max: 31
        }
    );
    assert!(OpReqImport {
        busid: "x".repeat(31)
    }
    .encode()
    .is_ok());
}

#[test]
fn req_import_round_trip() {
    let req = OpReqImport {
        busid: "3-2".into(),
    };
    let b = req.encode().unwrap();
    assert_eq!(b.len(), OP_REQ_IMPORT_LEN);
    assert_eq!(&b[..8], &[0x01, 0x11, 0x80, 0x03, 0, 0, 0, 0]);
    assert_eq!(&b[8..12], b"3-2\0");
    assert_eq!(OpReqImport::decode(&b).unwrap(), req);
    assert_eq!(OpReqImport::decode_body(&b[8..]).unwrap(), req);
    assert!(matches!(
        OpReqImport::decode(&b[..39]).unwrap_err(),
        UsbipWireError::Truncated {
            field: "busid",
            offset: 8,
            needed: 32,
            available: 31,
            ..
        }
    ));
}

#[test]
fn rep_import_round_trip() {
    let ok = OpRepImport::Ok(sample_device("1-1", 1));
    let b = ok.encode().unwrap();
    assert_eq!(b.len(), 8 + 312);
    assert_eq!(&b[0x108..0x10B], b"1-1"); // busid offset per the spec
    assert_eq!(b[0x13F], 1); // bNumInterfaces
    assert_eq!(OpRepImport::decode(&b).unwrap(), ok);

    let refused = OpRepImport::Refused {
        status: ST_DEV_BUSY,
    };
    let b = refused.encode().unwrap();
    assert_eq!(b, [0x01, 0x11, 0x00, 0x03, 0, 0, 0, 2]);
    assert_eq!(OpRepImport::decode(&b).unwrap(), refused);
    // A refusal with a body is malformed.
    let mut long = b.clone();
    long.extend_from_slice(&[0; 312]);
    assert_eq!(trailing(OpRepImport::decode(&long)), Some((8, 312)));
}

#[test]
fn cmd_submit_round_trip() {
    let setup = SetupPacket {
        request_type: 0x21,
        request: 1,
        value: 2,
        index: 0,
        length: 4,
    };
    let out = CmdSubmit {
        seqnum: 5,
        devid: 0x0001_0002,
        direction: Direction::Out,
        ep: 0,
        transfer_flags: 0,
        transfer_buffer_length: 4,
        start_frame: 0,
        number_of_packets: NOT_ISO,
        interval: 0,
        setup: setup.to_bytes(),
        data: vec![1, 2, 3, 4],
    };
    let b = out.encode();
    assert_eq!(b.len(), 52);
    assert_eq!(&b[0x28..0x30], &[0x21, 1, 2, 0, 0, 0, 4, 0]); // setup stays little-endian
    assert_eq!(CmdSubmit::payload_len(&b[..48]).unwrap(), 4);
    assert_eq!(CmdSubmit::decode(&b).unwrap(), out);
    assert!(matches!(
        CmdSubmit::decode(&b[..51]).unwrap_err(),
        UsbipWireError::Truncated {
            field: "transfer_buffer",
            offset: 48,
            needed: 4,
            available: 3,
            ..
        }
    ));

    let inn = CmdSubmit {
        direction: Direction::In,
        transfer_buffer_length: 18,
        data: vec![],
        ..out.clone()
    };
    let b = inn.encode();
    assert_eq!(b.len(), 48);
    assert_eq!(CmdSubmit::payload_len(&b).unwrap(), 0);
    assert_eq!(CmdSubmit::decode(&b).unwrap(), inn);
}

#[test]
fn spec_example_interrupt_in_decodes() {
    // CmdIntrIN from usbip_protocol.rst.
    let hex = "00000001 00000d05 0001000f 00000001 00000001 00000200 00000040 ffffffff 00000000 00000004 00000000 00000000";
    let b: Vec<u8> = hex
        .split_whitespace()
        .flat_map(|w| u32::from_str_radix(w, 16).unwrap().to_be_bytes())
        .collect();
    let c = CmdSubmit::decode(&b).unwrap();
    assert_eq!(c.seqnum, 0xd05);
    assert_eq!(c.devid, 0x0001_000f);
    assert_eq!(c.direction, Direction::In);
    assert_eq!(c.ep, 1);
    assert_eq!(c.transfer_flags, 0x200);
    assert_eq!(c.transfer_buffer_length, 0x40);
    assert_eq!(c.interval, 4);
    assert_eq!(c.encode(), b);
}

#[test]
fn isochronous_and_bad_fields_are_rejected() {
    let c = CmdSubmit {
        direction: Direction::In,
        number_of_packets: 3,
        ..CmdSubmit::default()
    };
    assert_eq!(
        CmdSubmit::decode(&c.encode()).unwrap_err(),
        UsbipWireError::IsochronousUnsupported {
            message: "USBIP_CMD_SUBMIT",
            packets: 3
        }
    );
    // Linux' vhci sends 0 for non-ISO transfers: accepted.
    let c0 = CmdSubmit {
        number_of_packets: 0,
        ..c.clone()
    };
    assert!(CmdSubmit::decode(&c0.encode()).is_ok());
    let mut b = CmdSubmit::default().encode();
    b[0x0f] = 2; // direction
    assert!(matches!(
        CmdSubmit::decode(&b).unwrap_err(),
        UsbipWireError::OutOfRange {
            field: "direction",
            offset: 0x0c,
            found: 2,
            ..
        }
    ));
    let mut b = CmdSubmit::default().encode();
    b[0x18] = 0x7f; // transfer_buffer_length 0x7f00_0000: beyond MAX_TRANSFER_LEN
    assert!(matches!(
        CmdSubmit::decode(&b).unwrap_err(),
        UsbipWireError::OutOfRange {
            field: "transfer_buffer_length",
            offset: 0x18,
            ..
        }
    ));
    let unlink = CmdUnlink::default().encode();
    assert!(matches!(
        CmdSubmit::decode(&unlink).unwrap_err(),
        UsbipWireError::UnexpectedValue {
            field: "command",
            offset: 0,
            expected: 1,
            found: 2,
            ..
        }
    ));
}

#[test]
fn ret_submit_round_trip_depends_on_request_direction() {
    let inn = RetSubmit {
        seqnum: 9,
        status: 0,
        actual_length: 3,
        number_of_packets: NOT_ISO,
        data: vec![7, 8, 9],
        ..RetSubmit::default()
    };
    let b = inn.encode();
    assert_eq!(b.len(), 51);
    assert_eq!(RetSubmit::payload_len(&b[..48], Direction::In).unwrap(), 3);
    assert_eq!(RetSubmit::payload_len(&b[..48], Direction::Out).unwrap(), 0);
    assert_eq!(RetSubmit::decode(&b, Direction::In).unwrap(), inn);
    // The same bytes read as an OUT reply have 3 trailing bytes.
    assert_eq!(
        trailing(RetSubmit::decode(&b, Direction::Out)),
        Some((48, 3))
    );

    let stall = RetSubmit {
        seqnum: 10,
        status: STATUS_STALL,
        number_of_packets: NOT_ISO,
        ..RetSubmit::default()
    };
    let b = stall.encode();
    assert_eq!(&b[0x14..0x18], &[0xff, 0xff, 0xff, 0xe0]); // -32
    assert_eq!(RetSubmit::decode(&b, Direction::Out).unwrap(), stall);
    assert_eq!(RetSubmit::decode(&b, Direction::In).unwrap(), stall);
}

#[test]
fn unlink_round_trips() {
    let cmd = CmdUnlink {
        seqnum: 12,
        devid: 0x0001_0001,
        direction: Direction::Out,
        ep: 0,
        unlink_seqnum: 11,
    };
    let b = cmd.encode();
    assert_eq!(b.len(), 48);
    assert_eq!(&b[0..4], &[0, 0, 0, 2]);
    assert_eq!(&b[0x14..0x18], &[0, 0, 0, 11]);
    assert_eq!(CmdUnlink::decode(&b).unwrap(), cmd);
    assert!(matches!(
        CmdUnlink::decode(&b[..47]).unwrap_err(),
        UsbipWireError::Truncated {
            field: "padding",
            offset: 0x18,
            ..
        }
    ));

    let ret = RetUnlink {
        seqnum: 12,
        status: STATUS_UNLINKED,
        ..RetUnlink::default()
    };
    let b = ret.encode();
    assert_eq!(&b[0..4], &[0, 0, 0, 4]);
    assert_eq!(&b[0x14..0x18], &(-104i32).to_be_bytes());
    assert_eq!(RetUnlink::decode(&b).unwrap(), ret);
    let mut long = b.clone();
    long.push(0);
    assert!(RetUnlink::decode(&long).is_err());
    let peek = HeaderBasic::peek(&b).unwrap();
    assert_eq!((peek.command, peek.seqnum), (USBIP_RET_UNLINK, 12));
}
