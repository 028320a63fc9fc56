//! The `Descriptors` helper answers standard requests and leaves the rest to the device.

mod common;

use common::*;
use dfukit_usbip::descriptors::DescriptorError;
use dfukit_usbip::{ControlReply, Descriptors, InterfaceClass, SetupPacket, Speed};

fn data(r: Option<ControlReply>) -> Vec<u8> {
    match r {
        Some(ControlReply::Data(d)) => d,
        other => panic!("expected data, got {other:?}"),
    }
}

fn std_req(request_type: u8, request: u8, value: u16, index: u16, length: u16) -> SetupPacket {
    SetupPacket {
        request_type,
        request,
        value,
        index,
        length,
    }
}

#[test]
fn get_descriptor_device_config_and_strings() {
    let mut d = descriptors();
    assert_eq!(
        data(d.handle(&get_descriptor(1, 0, 64), &[])),
        device_blob().to_vec()
    );
    assert_eq!(
        data(d.handle(&get_descriptor(1, 0, 8), &[])),
        device_blob()[..8].to_vec()
    );
    // Configuration: first the 9-byte header, then the whole blob.
    let head = data(d.handle(&get_descriptor(2, 0, 9), &[]));
    assert_eq!(head, config_blob()[..9].to_vec());
    let total = u16::from_le_bytes([head[2], head[3]]);
    assert_eq!(
        data(d.handle(&get_descriptor(2, 0, total), &[])),
        config_blob()
    );
    assert_eq!(
        data(d.handle(&get_descriptor(2, 0, 0xffff), &[])),
        config_blob()
    );
    // Language table and UTF-16LE strings.
    assert_eq!(
        data(d.handle(&get_descriptor(3, 0, 255), &[])),
        vec![4, 3, 0x09, 0x04]
    );
    let s = data(d.handle(&get_descriptor(3, 1, 255), &[]));
    assert_eq!(
        s,
        vec![14, 3, b'd', 0, b'f', 0, b'u', 0, b'k', 0, b'i', 0, b't', 0]
    );
    assert_eq!(data(d.handle(&get_descriptor(3, 1, 2), &[])), vec![14, 3]);
    // Missing string, second configuration, device qualifier: stall.
    assert_eq!(
        d.handle(&get_descriptor(3, 9, 255), &[]),
        Some(ControlReply::Stall)
    );
    assert_eq!(
        d.handle(&get_descriptor(2, 1, 255), &[]),
        Some(ControlReply::Stall)
    );
    assert_eq!(
        d.handle(&get_descriptor(6, 0, 10), &[]),
        Some(ControlReply::Stall)
    );
}

#[test]
fn configuration_and_interfaces() {
    let mut d = descriptors();
    assert_eq!(d.configuration(), 1);
    assert_eq!(data(d.handle(&std_req(0x80, 8, 0, 0, 1), &[])), vec![1]);
    assert_eq!(data(d.handle(&std_req(0x80, 0, 0, 0, 2), &[])), vec![0, 0]); // bus-powered, no remote wakeup
                                                                             // GET_INTERFACE / SET_INTERFACE
    assert_eq!(data(d.handle(&std_req(0x81, 10, 0, 0, 1), &[])), vec![0]);
    assert_eq!(
        d.handle(&std_req(0x01, 11, 1, 0, 0), &[]),
        Some(ControlReply::ack())
    );
    assert_eq!(d.alt_setting(0), Some(1));
    assert_eq!(data(d.handle(&std_req(0x81, 10, 0, 0, 1), &[])), vec![1]);
    // Unknown alt setting or interface stalls and changes nothing.
    assert_eq!(
        d.handle(&std_req(0x01, 11, 2, 0, 0), &[]),
        Some(ControlReply::Stall)
    );
    assert_eq!(
        d.handle(&std_req(0x01, 11, 0, 5, 0), &[]),
        Some(ControlReply::Stall)
    );
    assert_eq!(
        d.handle(&std_req(0x81, 10, 0, 5, 1), &[]),
        Some(ControlReply::Stall)
    );
    assert_eq!(d.alt_setting(0), Some(1));
    assert_eq!(d.alt_setting(5), None);
    // SET_CONFIGURATION resets alternate settings; an unknown value stalls.
    assert_eq!(
        d.handle(&std_req(0x00, 9, 2, 0, 0), &[]),
        Some(ControlReply::Stall)
    );
    assert_eq!(
        d.handle(&std_req(0x00, 9, 1, 0, 0), &[]),
        Some(ControlReply::ack())
    );
    assert_eq!(d.alt_setting(0), Some(0));
    assert_eq!(
        d.handle(&std_req(0x00, 9, 0, 0, 0), &[]),
        Some(ControlReply::ack())
    );
    assert_eq!(data(d.handle(&std_req(0x80, 8, 0, 0, 1), &[])), vec![0]);
    // Unconfigured: interface requests stall.
    assert_eq!(
        d.handle(&std_req(0x81, 10, 0, 0, 1), &[]),
        Some(ControlReply::Stall)
    );
}

#[test]
fn class_vendor_and_interface_descriptor_requests_are_left_to_the_device() {
    let mut d = descriptors();
    // DFU GETSTATUS (class, interface).
    assert_eq!(d.handle(&std_req(0xa1, 3, 0, 1, 6), &[]), None);
    assert_eq!(d.handle(&vendor_in(REQ_FETCH, 0, 4), &[]), None);
    // GET_DESCRIPTOR addressed to an interface (e.g. a HID report descriptor).
    assert_eq!(d.handle(&std_req(0x81, 6, 0x2200, 0, 64), &[]), None);
}

#[test]
fn info_reflects_descriptors() {
    let d = descriptors();
    let info = d.info(Speed::High);
    assert_eq!(
        (info.vendor_id, info.product_id, info.bcd_device),
        (VID, PID, BCD_DEVICE)
    );
    assert_eq!((info.configuration_value, info.num_configurations), (1, 1));
    assert_eq!(
        info.interfaces,
        vec![
            InterfaceClass {
                class: 0xff,
                subclass: 0x42,
                protocol: 1
            },
            InterfaceClass {
                class: 0xfe,
                subclass: 1,
                protocol: 2
            },
        ]
    );
    assert_eq!(info.speed, Speed::High);
    assert_eq!(d.interfaces().count(), 3);
}

#[test]
fn invalid_descriptors_are_rejected() {
    let mut cfg = config_blob();
    cfg[2] += 1;
    assert!(matches!(
        Descriptors::new(&device_blob(), &cfg, &[]),
        Err(DescriptorError::BadConfigurationDescriptor { .. })
    ));
    let mut cfg = config_blob();
    cfg[4] = 3;
    assert_eq!(
        Descriptors::new(&device_blob(), &cfg, &[]).unwrap_err(),
        DescriptorError::InterfaceCount {
            declared: 3,
            found: 2
        }
    );
    assert!(matches!(
        Descriptors::new(&device_blob()[..17], &config_blob(), &[]),
        Err(DescriptorError::BadDeviceDescriptor { len: 17, .. })
    ));
    let long = "x".repeat(127);
    assert_eq!(
        Descriptors::new(&device_blob(), &config_blob(), &[&long]).unwrap_err(),
        DescriptorError::StringTooLong {
            index: 1,
            units: 127
        }
    );
}
