//! Codec tests: layouts against protobuf framing, round trips, and malformed packets
//! (property tests) that must be errors, never panics.

use super::*;
use proptest::prelude::*;

fn sample() -> InitCommand {
    let mut hash = heapless::Vec::new();
    hash.extend_from_slice(&[0xAB; 32]).unwrap();
    let mut sd_req = heapless::Vec::new();
    sd_req.extend_from_slice(&[0x100, 0xCA]).unwrap();
    let mut bv = heapless::Vec::new();
    bv.push(BootValidation {
        kind: ValidationType::ValidateGeneratedCrc,
        bytes: heapless::Vec::new(),
    })
    .unwrap();
    InitCommand {
        fw_version: Some(1),
        hw_version: Some(52),
        sd_req,
        fw_type: Some(FwType::Application),
        sd_size: Some(0),
        bl_size: Some(0),
        app_size: Some(4096),
        hash: Some(Hash {
            hash_type: HashType::Sha256,
            hash,
        }),
        is_debug: Some(false),
        boot_validation: bv,
    }
}

#[test]
fn unsigned_packet_layout_matches_protobuf_framing() {
    let cmd = sample();
    let pkt = encode_packet(&cmd, None);
    // Packet.command(1) { op_code(1)=INIT, init(2) { fw_version(1)=1, hw_version(2)=52, ... } }
    assert_eq!(
        &pkt[..8],
        &[0x0A, pkt[1], 0x08, 0x01, 0x12, pkt[5], 0x08, 0x01]
    );
    assert_eq!(&pkt[8..10], &[0x10, 52]);
    // sd_req packed: key 0x1A, len 4, 0x80 0x02 (0x100), 0xCA 0x01 (0xCA)
    assert_eq!(&pkt[10..16], &[0x1A, 0x04, 0x80, 0x02, 0xCA, 0x01]);
    let d = decode(&pkt).unwrap();
    assert_eq!(d.command, cmd);
    assert_eq!(d.signature, None);
    assert_eq!(d.init_command_bytes, &encode_init_command(&cmd)[..]);
    assert_eq!(&pkt[6..], d.init_command_bytes);
}

/// The signature covers the InitCommand only, so the op_code is unsigned: a packet whose
/// op_code tag was damaged into an unknown field (0x08 → 0x18, 0x28, 0x48) is refused, not
/// read as protobuf's default INIT.
#[test]
fn a_command_without_its_op_code_is_refused() {
    let pkt = encode_packet(&sample(), None);
    assert_eq!(pkt[2], 0x08, "Command.op_code's tag");
    for damaged in [0x18, 0x28, 0x48] {
        let mut bad = pkt.clone();
        bad[2] = damaged;
        assert!(
            matches!(
                decode(&bad),
                Err(DecodeError::UnknownField {
                    message: "Command",
                    offset: 2,
                    ..
                })
            ),
            "tag {damaged:#04x}: {:?}",
            decode(&bad).map(|p| p.command)
        );
    }
}

#[test]
fn signed_packet_reports_init_command_span() {
    let cmd = sample();
    let sig = [0x5A; 64];
    let pkt = encode_packet(&cmd, Some((SignatureType::EcdsaP256Sha256, &sig)));
    assert_eq!(pkt[0], 0x12);
    let d = decode(&pkt).unwrap();
    assert_eq!(d.command, cmd);
    assert_eq!(d.signature_type, Some(SignatureType::EcdsaP256Sha256));
    assert_eq!(d.signature, Some(&sig[..]));
    let enc = encode_init_command(&cmd);
    assert_eq!(d.init_command_bytes, &enc[..]);
    // The span points into the packet, it is not a copy.
    let start = d.init_command_bytes.as_ptr() as usize - pkt.as_ptr() as usize;
    assert_eq!(&pkt[start..start + enc.len()], &enc[..]);
}

#[test]
fn truncated_packets_error_without_panic() {
    let cmd = sample();
    let pkt = encode_packet(&cmd, Some((SignatureType::EcdsaP256Sha256, &[1u8; 64])));
    for n in 0..pkt.len() {
        assert!(decode(&pkt[..n]).is_err(), "prefix of {n} bytes decoded");
    }
    assert!(matches!(
        decode(&pkt[..5]),
        Err(DecodeError::Truncated { offset: 1 })
    ));
}

#[test]
fn oversize_hash_is_rejected() {
    let mut cmd = sample();
    let mut h = heapless::Vec::new();
    h.extend_from_slice(&[1u8; 33]).unwrap();
    cmd.hash = Some(Hash {
        hash_type: HashType::Sha256,
        hash: h,
    });
    let pkt = encode_packet(&cmd, None);
    let e = decode(&pkt).unwrap_err();
    assert!(
        matches!(
            e,
            DecodeError::TooLong {
                field: "Hash.hash",
                len: 33,
                max: 32,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn too_many_sd_req_is_rejected() {
    // Unpacked encoding of 17 sd_req entries inside Command.init.
    let mut init = Vec::new();
    for _ in 0..17 {
        init.extend_from_slice(&[0x18, 0x01]);
    }
    let mut cmd = vec![0x08, 0x01, 0x12, init.len() as u8];
    cmd.extend_from_slice(&init);
    let mut pkt = vec![0x0A, cmd.len() as u8];
    pkt.extend_from_slice(&cmd);
    assert!(matches!(
        decode(&pkt),
        Err(DecodeError::TooLong {
            field: "InitCommand.sd_req",
            ..
        })
    ));
}

/// The wrappers around the InitCommand are not signed: bytes appended to a signed packet
/// that happen to form a well-formed unknown field (found by `dfukit bench tamper`:
/// `90 27 79` is field 626, varint 0x79) would otherwise leave the packet verifying. They
/// are refused in each wrapper, at the key's offset.
#[test]
fn unknown_fields_in_the_unsigned_wrappers_are_refused() {
    let cmd = sample();
    let sig = [0x11u8; 64];
    let signed = encode_packet(&cmd, Some((SignatureType::EcdsaP256Sha256, &sig)));
    assert!(decode(&signed).is_ok());
    let mut appended = signed.clone();
    appended.extend_from_slice(&[0x90, 0x27, 0x79]);
    assert!(matches!(
        decode(&appended),
        Err(DecodeError::UnknownField { offset, message: "Packet", number: 626 }) if offset == signed.len()
    ));
    // Inside SignedCommand (after its signature) and inside Command (after its init).
    let init = encode_init_command(&cmd);
    let mut c = vec![0x08, 0x01, 0x12, init.len() as u8];
    c.extend_from_slice(&init);
    let mut with_extra_in_command = c.clone();
    with_extra_in_command.extend_from_slice(&[0x20, 0x01]);
    let mut pkt = vec![0x0A, with_extra_in_command.len() as u8];
    pkt.extend_from_slice(&with_extra_in_command);
    assert!(matches!(
        decode(&pkt),
        Err(DecodeError::UnknownField {
            message: "Command",
            number: 4,
            ..
        })
    ));
    let mut sc = vec![0x0A, c.len() as u8];
    sc.extend_from_slice(&c);
    sc.extend_from_slice(&[0x10, 0x00, 0x1A, 64]);
    sc.extend_from_slice(&sig);
    sc.extend_from_slice(&[0x25, 1, 2, 3, 4]);
    assert!(sc.len() >= 128 && sc.len() < 1 << 14);
    let mut pkt = vec![0x12, sc.len() as u8 | 0x80, (sc.len() >> 7) as u8];
    pkt.extend_from_slice(&sc);
    let d = decode(&pkt);
    assert!(
        matches!(
            d,
            Err(DecodeError::UnknownField {
                message: "SignedCommand",
                number: 4,
                ..
            })
        ),
        "{d:?}"
    );
}

#[test]
fn unknown_fields_are_skipped() {
    let cmd = sample();
    let mut init = encode_init_command(&cmd);
    // field 15 varint, field 16 fixed32, field 17 length-delimited, field 18 fixed64
    init.extend_from_slice(&[
        0x78, 0x05, 0x85, 0x01, 1, 2, 3, 4, 0x8A, 0x01, 0x02, 0xFF, 0xFF,
    ]);
    init.extend_from_slice(&[0x91, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
    let mut c = vec![0x08, 0x01, 0x12, init.len() as u8];
    c.extend_from_slice(&init);
    let mut pkt = vec![0x0A, c.len() as u8];
    pkt.extend_from_slice(&c);
    let d = decode(&pkt).unwrap();
    assert_eq!(d.command, cmd);
    assert_eq!(d.init_command_bytes, &init[..]);
}

#[test]
fn bad_enum_and_opcode_and_empty() {
    assert!(matches!(
        decode(&[]),
        Err(DecodeError::NoCommand { offset: 0 })
    ));
    // op_code RESET (0)
    assert!(matches!(
        decode(&[0x0A, 0x02, 0x08, 0x00]),
        Err(DecodeError::UnsupportedOpCode {
            offset: 3,
            op_code: 0
        })
    ));
    // type = 9
    let pkt = [0x0A, 0x06, 0x08, 0x01, 0x12, 0x02, 0x20, 0x09];
    assert!(matches!(
        decode(&pkt),
        Err(DecodeError::UnknownEnumValue {
            field: "InitCommand.type",
            value: 9,
            offset: 7
        })
    ));
    // Group wire type
    assert!(matches!(
        decode(&[0x0B]),
        Err(DecodeError::WrongWireType { wire_type: 3, .. })
    ));
    // hash with wrong wire type
    let pkt = [0x0A, 0x06, 0x08, 0x01, 0x12, 0x02, 0x40, 0x01];
    assert!(matches!(
        decode(&pkt),
        Err(DecodeError::WrongWireType {
            field: "InitCommand.hash",
            ..
        })
    ));
}

#[test]
fn encode_to_slice_checks_room() {
    let cmd = sample();
    let mut small = [0u8; 8];
    assert_eq!(cmd.encode_to_slice(&mut small), None);
    let mut buf = [0u8; 256];
    let n = cmd.encode_to_slice(&mut buf).unwrap();
    assert_eq!(&buf[..n], &encode_init_command(&cmd)[..]);
}

fn arb_vec<const N: usize>(max: usize) -> impl Strategy<Value = heapless::Vec<u8, N>> {
    proptest::collection::vec(any::<u8>(), 0..=max)
        .prop_map(|v| heapless::Vec::from_slice(&v).unwrap())
}

fn arb_cmd() -> impl Strategy<Value = InitCommand> {
    let hash = proptest::option::of((0usize..HashType::ALL.len(), arb_vec::<64>(32)).prop_map(
        |(t, hash)| Hash {
            hash_type: HashType::ALL[t],
            hash,
        },
    ));
    let bv = proptest::collection::vec(
        (0usize..ValidationType::ALL.len(), arb_vec::<64>(64)).prop_map(|(t, bytes)| {
            BootValidation {
                kind: ValidationType::ALL[t],
                bytes,
            }
        }),
        0..=3,
    );
    (
        (
            any::<Option<u32>>(),
            any::<Option<u32>>(),
            proptest::collection::vec(any::<u32>(), 0..=16),
        ),
        proptest::option::of(0usize..FwType::ALL.len()),
        (
            any::<Option<u32>>(),
            any::<Option<u32>>(),
            any::<Option<u32>>(),
        ),
        hash,
        any::<Option<bool>>(),
        bv,
    )
        .prop_map(
            |((fw, hw, sd), t, (sds, bls, apps), hash, dbg, bv)| InitCommand {
                fw_version: fw,
                hw_version: hw,
                sd_req: heapless::Vec::from_slice(&sd).unwrap(),
                fw_type: t.map(|i| FwType::ALL[i]),
                sd_size: sds,
                bl_size: bls,
                app_size: apps,
                hash,
                is_debug: dbg,
                boot_validation: heapless::Vec::from_slice(&bv).unwrap(),
            },
        )
}

proptest! {
    #[test]
    fn round_trip(cmd in arb_cmd(), sig in proptest::option::of(arb_vec::<64>(64))) {
        let pkt = encode_packet(&cmd, sig.as_ref().map(|s| (SignatureType::EcdsaP256Sha256, &s[..])));
        let d = decode(&pkt).unwrap();
        prop_assert_eq!(&d.command, &cmd);
        prop_assert_eq!(d.init_command_bytes, &encode_init_command(&cmd)[..]);
        prop_assert_eq!(d.signature, sig.as_ref().map(|s| &s[..]));
        prop_assert_eq!(cmd.encoded_len(), d.init_command_bytes.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn corrupted_packets_never_panic(cmd in arb_cmd(), idx in any::<prop::sample::Index>(), val in any::<u8>()) {
        let mut pkt = encode_packet(&cmd, Some((SignatureType::EcdsaP256Sha256, &[7u8; 64])));
        let i = idx.index(pkt.len());
        pkt[i] = val;
        if let Err(e) = decode(&pkt) {
            prop_assert!(e.offset() <= pkt.len());
        }
    }
}
