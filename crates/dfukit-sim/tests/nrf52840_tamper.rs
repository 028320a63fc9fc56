//! Tampered updates against the simulated nRF52840, in virtual time: every single-bit flip
//! of a signed init packet, and a seeded sample of bit flips, truncations and extensions of
//! the image, are refused, and the board keeps running the old application byte for byte.
//! A correct update still goes through afterwards, so no refusal wedged the bootloader.

mod common;

use common::*;
use dfukit_nordic::host::{self, UpdateError};
use dfukit_sim::boards::nrf52840::{Bank1, Nrf52840};
use dfukit_sim::links::serial::BoardLink;
use dfukit_sim::PowerCutPlan;

const APP_START: usize = 0x27000;

fn run(board: &mut Nrf52840, init: &[u8], image: &[u8]) -> Result<(), UpdateError> {
    host::update(
        &mut BoardLink::new(board),
        &opts(),
        init,
        image,
        &mut |_| {},
    )
}

/// Asserts the board runs `image` as `version`, bank 0 holding it byte for byte.
fn assert_runs(board: &mut Nrf52840, image: &[u8], version: u32, what: &str) {
    board.power_cycle(PowerCutPlan::Never);
    settle(board);
    let ins = assert_app(board, image);
    assert_eq!(ins.app_version, version, "{what}: {ins:?}");
    let flash = &board.memory().internal.contents()[APP_START..APP_START + image.len()];
    assert!(flash == image, "{what}: bank 0 changed");
}

/// A board trusting `k`, bank 1 on `bank1`, running `old` as version 1.
fn board_running(k: &p256::ecdsa::SigningKey, bank1: Bank1, old: &[u8]) -> Nrf52840 {
    let mut b = fresh(config(k, bank1));
    run(&mut b, &init_packet(k, old, &Claims::version(1)), old).unwrap();
    settle(&mut b);
    assert_runs(&mut b, old, 1, "installing the old app");
    b
}

/// Every single-bit flip of the init packet is refused before any data is accepted.
#[test]
fn every_bit_flip_of_a_signed_init_packet_is_refused() {
    let k = key(1);
    let old = image(8_000, 1);
    let new = image(12_000, 2);
    let mut b = board_running(&k, Bank1::Internal, &old);
    let init = init_packet(&k, &new, &Claims::version(2));
    let mut accepted = Vec::new();
    for bit in 0..init.len() * 8 {
        let mut bad = init.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        if run(&mut b, &bad, &new).is_ok() {
            accepted.push(bit);
            b = board_running(&k, Bank1::Internal, &old);
        }
        if bit % 128 == 0 {
            assert_runs(&mut b, &old, 1, &format!("after flipping bit {bit}"));
        }
    }
    assert!(
        accepted.is_empty(),
        "{} of {} flipped init packets were accepted: bits {accepted:?}",
        accepted.len(),
        init.len() * 8
    );
    assert_runs(&mut b, &old, 1, "after every flip");
    // The untouched packet still goes through: no refusal wedged the bootloader.
    run(&mut b, &init, &new).unwrap();
    settle(&mut b);
    assert_runs(&mut b, &new, 2, "the correct update");
}

/// A seeded sample of images that do not match their signed init packet: one bit flipped
/// anywhere, cut short, or extended. Each is refused, on internal and QSPI bank 1 alike.
#[test]
fn images_that_do_not_match_their_init_packet_are_refused() {
    let k = key(2);
    let old = image(8_000, 3);
    let new = image(9_000, 4);
    let init = init_packet(&k, &new, &Claims::version(2));
    let mut rng: u32 = 0x1234_5678;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        rng
    };
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for _ in 0..24 {
        let bit = next() as usize % (new.len() * 8);
        let mut bad = new.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        cases.push((format!("bit {bit} flipped"), bad));
    }
    for cut in [1, 4, 4096, new.len() - 1] {
        cases.push((
            format!("{cut} bytes short"),
            new[..new.len() - cut].to_vec(),
        ));
    }
    for extra in [1, 4, 4096] {
        let mut long = new.clone();
        long.extend((0..extra).map(|i| i as u8));
        cases.push((format!("{extra} bytes too long"), long));
    }
    for bank1 in [Bank1::Internal, Bank1::Qspi] {
        let mut b = board_running(&k, bank1, &old);
        for (what, bad) in &cases {
            let result = run(&mut b, &init, bad);
            assert!(result.is_err(), "{bank1:?}: an image {what} was accepted");
            assert_runs(&mut b, &old, 1, &format!("{bank1:?}: image {what}"));
        }
        run(&mut b, &init, &new).unwrap();
        settle(&mut b);
        assert_runs(&mut b, &new, 2, &format!("{bank1:?}: the correct image"));
    }
}
