//! The core on its own: flash completions are delivered (or withheld) by
//! hand, so the asynchronous-completion rules can be observed directly.

extern crate std;

use super::*;
use crate::init_packet;
use crate::proto::{Opcode, Payload, ResultCode};
use core::time::Duration;
use dfukit_core::crc::crc32;
use dfukit_testkit::TestFlash;
use std::vec;
use std::vec::Vec;
use unsigned_init::unsigned_init;

#[path = "../../tests/support/unsigned_init.rs"]
mod unsigned_init;

struct Rig {
    t: Bootloader,
    /// Strict: a program over unerased bytes panics.
    mem: TestFlash,
    now: Instant,
}

impl Rig {
    fn new() -> Self {
        let cfg = BootloaderConfig::nrf52840(
            None,
            Bank1Location::External(BootloaderConfig::MX25R6435F_BANK),
        );
        let mut r = Rig {
            t: Bootloader::new(cfg),
            mem: TestFlash::nrf52840_with_qspi(),
            now: Instant::ZERO,
        };
        r.run();
        assert_eq!(r.t.mode(), Mode::Dfu);
        r
    }

    /// Polls and completes every flash operation at once.
    fn run(&mut self) {
        loop {
            self.t.poll(self.now, &mut self.mem);
            match self.t.poll_flash() {
                Some(op) => {
                    assert!(self.mem.apply(&op), "flash op outside the map");
                    self.t.flash_complete(self.now, FlashOutcome::Done);
                }
                None => break,
            }
        }
    }

    /// Polls, and starts (applies) the next flash operation without completing it.
    fn start_one(&mut self) -> bool {
        self.t.poll(self.now, &mut self.mem);
        match self.t.poll_flash() {
            Some(op) => {
                assert!(self.mem.apply(&op), "flash op outside the map");
                true
            }
            None => false,
        }
    }

    fn req(&mut self, frame: &[u8]) -> Option<Response> {
        self.t
            .handle_request(self.now, RxTransport::Serial, frame)
            .unwrap();
        self.t.poll(self.now, &mut self.mem);
        self.t.poll_response()
    }

    fn req_run(&mut self, frame: &[u8]) -> Response {
        self.t
            .handle_request(self.now, RxTransport::Serial, frame)
            .unwrap();
        self.run();
        self.t.poll_response().expect("a response")
    }
}

fn write(data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x08];
    f.extend_from_slice(data);
    f
}

/// Init packet accepted and a data object created.
fn ready(image: &[u8]) -> Rig {
    let mut r = Rig::new();
    let init = unsigned_init(image);
    let mut create = vec![0x01, 0x01];
    create.extend_from_slice(&(init.len() as u32).to_le_bytes());
    assert_eq!(r.req_run(&create).result, ResultCode::Success);
    r.t.handle_request(r.now, RxTransport::Serial, &write(&init))
        .unwrap();
    assert_eq!(r.req_run(&[0x04]).result, ResultCode::Success);
    assert_eq!(r.req_run(&[0x06, 0x02]).result, ResultCode::Success);
    let mut create = vec![0x01, 0x02];
    create.extend_from_slice(&4096u32.to_le_bytes());
    assert_eq!(r.req_run(&create).result, ResultCode::Success);
    r
}

#[test]
fn offset_and_crc_count_only_completed_writes() {
    let image: Vec<u8> = (0..8192u32).map(|i| i as u8).collect();
    let mut r = ready(&image);
    r.t.handle_request(r.now, RxTransport::Serial, &write(&image[..1024]))
        .unwrap();
    // The write's first page program starts but does not complete.
    assert!(r.start_one());
    // CRC_GET waits behind it: no answer yet.
    assert_eq!(r.req(&[0x03]), None);
    // Complete everything: now the answer counts the 1024 bytes.
    r.t.flash_complete(r.now, FlashOutcome::Done);
    r.run();
    let resp = r.t.poll_response().unwrap();
    assert_eq!(
        resp.payload,
        Payload::Crc {
            offset: 1024,
            crc: crc32(0, &image[..1024])
        }
    );
}

#[test]
fn receive_buffers_are_held_until_their_write_completes() {
    let image: Vec<u8> = (0..8192u32).map(|i| (i * 7) as u8).collect();
    let mut r = ready(&image);
    // Four buffers: four 512-byte writes are taken while nothing completes.
    for i in 0..SERIAL_RX.buffers as usize {
        let chunk = &image[i * 512..(i + 1) * 512];
        r.t.handle_request(r.now, RxTransport::Serial, &write(chunk))
            .unwrap();
    }
    assert!(r.start_one());
    // The fifth finds no free buffer: the transport must hold it back.
    let fifth = &image[4 * 512..5 * 512];
    assert_eq!(
        r.t.handle_request(r.now, RxTransport::Serial, &write(fifth)),
        Err(Busy)
    );
    // The first buffer's two page programs complete: it is free again.
    r.t.flash_complete(r.now, FlashOutcome::Done);
    assert!(r.start_one());
    assert_eq!(
        r.t.handle_request(r.now, RxTransport::Serial, &write(fifth)),
        Err(Busy)
    );
    r.t.flash_complete(r.now, FlashOutcome::Done);
    r.t.poll(r.now, &mut r.mem);
    assert_eq!(
        r.t.handle_request(r.now, RxTransport::Serial, &write(fifth)),
        Ok(())
    );
}

#[test]
fn ble_writes_use_their_own_pool_of_seventeen() {
    let image: Vec<u8> = (0..8192u32).map(|i| (i * 13) as u8).collect();
    let mut r = ready(&image);
    // 17 BLE buffers of 244 bytes: a whole 4 KiB object and one write more
    // is taken while the flash completes nothing.
    let n = BLE_RX.buffers as usize;
    assert_eq!((n, BLE_RX.size), (17, 244));
    for i in 0..n {
        let chunk = &image[i * 200..(i + 1) * 200];
        r.t.handle_request(r.now, RxTransport::Ble, &write(chunk))
            .unwrap();
    }
    let next = &image[n * 200..(n + 1) * 200];
    assert_eq!(
        r.t.handle_request(r.now, RxTransport::Ble, &write(next)),
        Err(Busy)
    );
    // The serial pool is separate: it still has room.
    assert_eq!(
        r.t.handle_request(r.now, RxTransport::Serial, &write(next)),
        Ok(())
    );
    // A BLE write larger than its buffer is refused, not truncated.
    let mut r = ready(&image);
    r.t.handle_request(r.now, RxTransport::Ble, &write(&image[..248]))
        .unwrap();
    r.t.poll(r.now, &mut r.mem);
    let resp = r.t.poll_response().expect("an answer");
    assert_eq!(resp.result, ResultCode::InsufficientResources);
}

#[test]
fn a_lost_completion_becomes_a_bounded_reported_error() {
    let image: Vec<u8> = vec![0x5A; 4096];
    let mut r = ready(&image);
    r.t.handle_request(r.now, RxTransport::Serial, &write(&image[..1024]))
        .unwrap();
    assert!(r.start_one());
    assert_eq!(r.req(&[0x03]), None);
    // Time passes; the completion never comes.
    r.now += Duration::from_millis(999);
    r.t.poll(r.now, &mut r.mem);
    assert_eq!(r.t.poll_response(), None);
    r.now += Duration::from_millis(2);
    r.t.poll(r.now, &mut r.mem);
    let resp =
        r.t.poll_response()
            .expect("answered after the flash timeout");
    assert_eq!(resp.ext, Some(ExtError::FlashCompletionTimeout));
    assert_eq!(r.t.fault(), Some(BootloaderFault::CompletionTimeout));
    let events: Vec<_> = core::iter::from_fn(|| r.t.poll_event()).collect();
    assert!(
        events.contains(&BootloaderEvent::BootloaderFault {
            fault: BootloaderFault::CompletionTimeout,
            addr: 0x1200_0000
        }),
        "{events:?}"
    );
    // The link stays alive: PING still answers.
    assert_eq!(r.req_run(&[0x09, 7]).payload, Payload::Ping(7));
}

#[test]
fn unknown_and_short_requests_get_error_responses() {
    let mut r = Rig::new();
    let unknown = r.req_run(&[0x42]);
    assert_eq!(
        (unknown.request, unknown.result),
        (0x42, ResultCode::OpCodeNotSupported)
    );
    assert_eq!(
        r.req_run(&[0x01, 0x02]).result,
        ResultCode::InvalidParameter
    );
    // Data before any init packet.
    assert_eq!(
        r.req_run(&[0x01, 0x02, 0, 0x10, 0, 0]).result,
        ResultCode::OperationNotPermitted
    );
}

#[test]
fn writes_are_programmed_in_page_pieces_in_order() {
    let image: Vec<u8> = (0..4096u32).map(|i| (i * 3) as u8).collect();
    let mut r = ready(&image);
    // 100 bytes, then 1024 bytes from offset 100: pieces end at each
    // 256-byte QSPI page boundary, none crosses one.
    r.t.handle_request(r.now, RxTransport::Serial, &write(&image[..100]))
        .unwrap();
    r.t.handle_request(r.now, RxTransport::Serial, &write(&image[100..1124]))
        .unwrap();
    let base = BootloaderConfig::MX25R6435F_BANK.base;
    let mut programs = Vec::new();
    loop {
        r.t.poll(r.now, &mut r.mem);
        let Some(op) = r.t.poll_flash() else { break };
        if let FlashOp::Program { addr, data } = op {
            programs.push((addr - base, data.len() as u32));
        }
        assert!(r.mem.apply(&op), "flash op outside the map");
        r.t.flash_complete(r.now, FlashOutcome::Done);
    }
    assert_eq!(
        programs,
        vec![
            (0, 100),
            (100, 156),
            (256, 256),
            (512, 256),
            (768, 256),
            (1024, 100)
        ]
    );
    assert_eq!(r.mem.bytes(base, 1124), &image[..1124]);
    // Every buffer went back to the pool: four more writes are taken.
    for i in 0..SERIAL_RX.buffers as usize {
        let at = 1124 + i * 4;
        r.t.handle_request(r.now, RxTransport::Serial, &write(&image[at..at + 4]))
            .unwrap();
    }
}

#[test]
fn a_flood_of_requests_is_held_off_not_overflowed() {
    // One object is the whole image: its EXECUTE expands into a settings
    // write, a response and a reset, at the front of the queue.
    let image: Vec<u8> = vec![0xA5; 4096];
    let mut r = ready(&image);
    for chunk in image.chunks(1024) {
        r.t.handle_request(r.now, RxTransport::Serial, &write(chunk))
            .unwrap();
    }
    r.run();
    // EXECUTE is queued, then requests pile up behind it until Busy, before
    // the core gets to run.
    r.t.handle_request(r.now, RxTransport::Serial, &[0x04])
        .unwrap();
    let mut taken = 0;
    while r
        .t
        .handle_request(r.now, RxTransport::Serial, &[0x09, 1])
        .is_ok()
    {
        taken += 1;
        assert!(taken < 1000, "never pushed back");
    }
    assert!(taken > 10);
    // EXECUTE runs with the queue full of pings behind it, and still fits.
    r.run();
    let first = r.t.poll_response().unwrap();
    assert_eq!(
        (first.request, first.result),
        (Opcode::ObjectExecute as u8, ResultCode::Success)
    );
}

/// Found by the power-cut campaign (`dfukit bench power-cuts`): a program
/// of the settings page cut inside the advertising name leaves a page whose
/// CRCs hold; the torn bytes must not stay in flash (nor be copied into the
/// backup by the next write).
#[test]
fn a_settings_page_torn_in_its_peer_parts_is_written_again_at_boot() {
    let mut r = Rig::new();
    let l = r.t.cfg.layout;
    let backup = r.mem.bytes(l.backup_addr, SETTINGS_LEN);
    assert_eq!(r.mem.bytes(l.settings_addr, SETTINGS_LEN), backup);
    // What a cut 0x364 bytes into the page's program leaves: the rest erased.
    let torn_at = crate::settings::OFFSET_ADV_NAME;
    let erased = vec![0xFF; SETTINGS_LEN - torn_at];
    r.mem.fill(l.settings_addr + torn_at as u32, &erased);
    let (source, s) = load_settings(&l, &mut r.mem);
    assert_eq!(
        source,
        SettingsSource::Main,
        "the page's own checks still pass"
    );
    assert_eq!(
        s.adv_name,
        [0; crate::settings::ADV_NAME_LEN],
        "repaired in RAM"
    );

    r.t = Bootloader::new(r.t.cfg.clone());
    r.run();
    assert_eq!(r.t.mode(), Mode::Dfu);
    assert_eq!(
        r.mem.bytes(l.settings_addr, SETTINGS_LEN),
        backup,
        "rewritten"
    );
    assert_eq!(r.mem.bytes(l.backup_addr, SETTINGS_LEN), backup);
}

/// Bonding data whose own CRC holds is kept; the backup's valid copy
/// replaces a torn one.
#[test]
fn valid_peer_data_survives_and_a_torn_copy_comes_from_the_backup() {
    let mut s = crate::settings::Settings::default();
    for (i, b) in s.peer_data[4..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let crc = crc32(0, &s.peer_data[4..]);
    s.peer_data[..4].copy_from_slice(&crc.to_le_bytes());
    assert!(s.peer_data_valid());
    s.update_crcs();
    let mut r = Rig::new();
    let l = r.t.cfg.layout;
    let page = s.to_bytes();
    for addr in [l.settings_addr, l.backup_addr] {
        r.mem.fill(addr, &vec![0xFF; 4096]);
        r.mem.fill(addr, &page);
    }
    assert_eq!(load_settings(&l, &mut r.mem).1.peer_data, s.peer_data);
    // Torn 0x340 bytes into the main page: inside the bonding data.
    r.mem
        .fill(l.settings_addr + 0x340, &[0xFF; SETTINGS_LEN - 0x340]);
    let (source, loaded) = load_settings(&l, &mut r.mem);
    assert_eq!(source, SettingsSource::Main);
    assert_eq!(loaded.peer_data, s.peer_data);
}

/// Found by the `secure_dfu_device` fuzz target (fuzz/regressions/secure_dfu_device/): an
/// object's erase fails, then a CREATE the core refuses (a short object that is not the
/// image's last) used to clear the fault anyway, and the next WRITE programmed the page whose
/// erase had failed. A refused CREATE must change nothing.
#[test]
fn a_refused_create_keeps_the_fault_of_a_failed_erase() {
    let image: Vec<u8> = (0..8192u32).map(|i| (i * 7) as u8).collect();
    let mut r = ready(&image);
    r.t.handle_request(r.now, RxTransport::Serial, &write(&image[..32]))
        .unwrap();
    r.run();
    // The object is created again: its erase is handed out and fails.
    let mut create = vec![0x01, 0x02];
    create.extend_from_slice(&4096u32.to_le_bytes());
    r.t.handle_request(r.now, RxTransport::Serial, &create)
        .unwrap();
    r.t.poll(r.now, &mut r.mem);
    assert!(matches!(r.t.poll_flash(), Some(FlashOp::Erase { .. })));
    r.t.flash_complete(r.now, FlashOutcome::Failed);
    r.run();
    assert_eq!(r.t.poll_response().unwrap().result, ResultCode::Success);
    // A CREATE of 0x197 bytes at offset 0 of an 8192-byte image is refused...
    let mut short = vec![0x01, 0x02];
    short.extend_from_slice(&0x197u32.to_le_bytes());
    assert_eq!(r.req_run(&short).result, ResultCode::InvalidParameter);
    // ...and the writes behind it still store nothing: no flash operation at all.
    r.t.handle_request(r.now, RxTransport::Serial, &write(&image[..32]))
        .unwrap();
    r.t.poll(r.now, &mut r.mem);
    assert!(r.t.poll_flash().is_none(), "a write over a failed erase");
    // CRC_GET reports the failed erase rather than an offset.
    let crc = r.req_run(&[0x03]);
    assert_eq!(crc.result, ResultCode::ExtError);
    // A CREATE the core accepts clears the fault and erases again.
    assert_eq!(r.req_run(&create).result, ResultCode::Success);
    r.t.handle_request(r.now, RxTransport::Serial, &write(&image[..32]))
        .unwrap();
    r.run();
    assert_eq!(r.req_run(&[0x03]).result, ResultCode::Success);
}
