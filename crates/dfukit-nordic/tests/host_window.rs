//! The host's PRN window, dropped-write recovery and phone-baseline profile,
//! against the real device core behind a small in-test BLE-like link.
//!
//! Flash completes at once (the device core is real; its flash is not), and
//! responses travel with a configurable latency counted in link operations,
//! so that pipelining is observable without a clock.

use dfukit_core::crc::crc32;
use dfukit_core::{Clock, FlashOp, FlashOutcome, Instant, ManualClock};
use dfukit_nordic::bootloader::{Bank1Location, Bootloader, BootloaderConfig, Mode, RxTransport};
use dfukit_nordic::host::{self, SecureDfuLink, UpdateError, UpdateEvent, UpdateOptions};
use dfukit_nordic::init_packet;
use dfukit_nordic::proto::SecureDfuRequest;
use dfukit_testkit::TestFlash;
use std::collections::VecDeque;
use std::io;
use std::time::Duration;
use unsigned_init::unsigned_init;

#[path = "support/unsigned_init.rs"]
mod unsigned_init;

/// What the host did on the link, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    /// A WRITE was sent (`dropped`: the test link threw it away).
    Write { dropped: bool },
    /// Another request, by opcode byte.
    Control(u8),
    /// A receive returned a frame with this opcode byte (`poll`: zero timeout).
    Got { op: u8, poll: bool },
    /// A zero-timeout receive found nothing.
    PollEmpty,
    /// `SecureDfuLink::sleep`.
    Sleep(Duration),
}

/// How [`TestLink::dropping`] drops writes.
#[derive(Debug, Clone, Copy)]
enum Drops {
    /// Until the host turns to the control point (a tail lost while the
    /// device's buffers are full).
    Burst,
    /// One write only: a hole in the data.
    Gap,
    /// Every write from then on.
    Always,
}

/// A BLE-like link: no PING/MTU, 244-byte writes, responses delivered after
/// `latency` further link operations (or at once to a blocking receive), and
/// chosen WRITEs dropped as a device with full buffers does.
struct TestLink {
    t: Bootloader,
    /// Recording: programs onto bytes that were not erased (NOR programs
    /// only clear bits, so such a program corrupts the data) are counted in
    /// its `violations`.
    mem: TestFlash,
    /// Response frames with the operation count at which they arrive.
    transit: VecDeque<(u64, Vec<u8>)>,
    ops_count: u64,
    latency: u64,
    /// Index (counted over all WRITEs) of the first write of a dropped burst.
    drop_from: Option<usize>,
    /// Whether a burst lasts until the next control request (a tail lost
    /// while buffers are full), or only one write (a gap).
    drop_burst: bool,
    /// Drop every write from `drop_from` on, forever.
    drop_always: bool,
    dropping: bool,
    writes: usize,
    ops: Vec<Op>,
    /// Time passes only in the host's sleeps.
    clock: ManualClock,
    /// Replaces the CRC frame with this index (counted from 0) by the frame given.
    replace_crc: Option<(usize, Vec<u8>)>,
    /// Fail the first erase at this address (once).
    fail_erase_at: Option<u32>,
    /// Addresses of every erase, in order.
    erases: Vec<u32>,
    crc_frames: usize,
}

impl TestLink {
    fn new(latency: u64) -> Self {
        let cfg = BootloaderConfig::nrf52840(
            None,
            Bank1Location::External(BootloaderConfig::MX25R6435F_BANK),
        );
        let mut l = TestLink {
            t: Bootloader::new(cfg),
            mem: TestFlash::nrf52840_with_qspi().recording(),
            transit: VecDeque::new(),
            ops_count: 0,
            latency,
            drop_from: None,
            drop_burst: true,
            drop_always: false,
            dropping: false,
            writes: 0,
            ops: Vec::new(),
            clock: ManualClock::default(),
            replace_crc: None,
            fail_erase_at: None,
            erases: Vec::new(),
            crc_frames: 0,
        };
        l.run();
        assert_eq!(l.t.mode(), Mode::Dfu);
        l
    }

    /// A link that drops WRITEs from index `from` on (counted over all
    /// WRITEs: the init packet is write 0), as `drops` says.
    fn dropping(latency: u64, from: usize, drops: Drops) -> Self {
        let mut l = TestLink::new(latency);
        l.drop_from = Some(from);
        l.drop_burst = !matches!(drops, Drops::Gap);
        l.drop_always = matches!(drops, Drops::Always);
        l
    }

    /// Runs the device until it idles, completing flash operations at once,
    /// and puts its responses in transit.
    fn run(&mut self) {
        loop {
            self.t.poll(Instant::ZERO, &mut self.mem);
            while let Some(r) = self.t.poll_response() {
                let mut frame = Vec::new();
                r.encode(&mut |b| frame.extend_from_slice(b));
                if frame[1] == 0x03 {
                    if let Some((_, f)) = self
                        .replace_crc
                        .as_ref()
                        .filter(|(i, _)| *i == self.crc_frames)
                    {
                        frame = f.clone();
                    }
                    self.crc_frames += 1;
                }
                self.transit
                    .push_back((self.ops_count + self.latency, frame));
            }
            match self.t.poll_flash() {
                Some(op) => {
                    if let FlashOp::Erase { addr, .. } = op {
                        self.erases.push(addr);
                        if self.fail_erase_at == Some(addr) {
                            self.fail_erase_at = None;
                            self.t.flash_complete(Instant::ZERO, FlashOutcome::Failed);
                            continue;
                        }
                    }
                    let violations = self.mem.violations.len();
                    let applied = self.mem.apply(&op);
                    assert!(
                        applied || self.mem.violations.len() > violations,
                        "flash op outside the map"
                    );
                    self.t.flash_complete(Instant::ZERO, FlashOutcome::Done);
                }
                None => break,
            }
        }
    }

    /// Writes of the first data object sent before the first CRC frame was
    /// read (the init packet, created first, does not count).
    fn writes_before_first_notification(&self) -> usize {
        let creates = self
            .ops
            .iter()
            .enumerate()
            .filter(|(_, o)| **o == Op::Control(0x01));
        let (first_data, _) = creates.clone().nth(1).expect("a data object");
        self.ops[first_data..]
            .iter()
            .take_while(|o| !matches!(o, Op::Got { op: 0x03, .. }))
            .filter(|o| matches!(o, Op::Write { .. }))
            .count()
    }
}

impl Clock for TestLink {
    fn now(&self) -> Instant {
        self.clock.now()
    }
    fn sleep(&mut self, d: Duration) {
        self.ops.push(Op::Sleep(d));
        self.clock.sleep(d);
    }
}

impl SecureDfuLink for TestLink {
    fn send(&mut self, req: &SecureDfuRequest<'_>) -> io::Result<()> {
        self.ops_count += 1;
        let mut frame = Vec::new();
        req.encode(&mut |b| frame.extend_from_slice(b));
        if let SecureDfuRequest::Write(_) = req {
            let i = self.writes;
            self.writes += 1;
            if self.drop_from == Some(i) {
                self.dropping = true;
            }
            if self.dropping {
                if !self.drop_burst {
                    self.dropping = false;
                }
                self.ops.push(Op::Write { dropped: true });
                return Ok(());
            }
            self.ops.push(Op::Write { dropped: false });
        } else {
            self.ops.push(Op::Control(frame[0]));
            // The control point is a different characteristic: once the host
            // turns to it, the device has drained its buffers.
            self.dropping = self.dropping && self.drop_always;
        }
        // Writes the core cannot buffer right now are dropped, as BLE does.
        if self
            .t
            .handle_request(Instant::ZERO, RxTransport::Serial, &frame)
            .is_err()
        {
            self.run();
            if self
                .t
                .handle_request(Instant::ZERO, RxTransport::Serial, &frame)
                .is_err()
            {
                return Err(io::Error::other("device busy after draining"));
            }
        }
        self.run();
        Ok(())
    }

    fn recv(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        let poll = timeout.is_zero();
        let due = match self.transit.front() {
            Some((at, _)) => poll && *at > self.ops_count,
            None => true,
        };
        if due {
            if poll {
                self.ops.push(Op::PollEmpty);
            }
            return Ok(None);
        }
        // A blocking receive waits as long as the frame needs to arrive.
        let (_, frame) = self.transit.pop_front().expect("checked");
        self.ops.push(Op::Got { op: frame[1], poll });
        Ok(Some(frame))
    }

    fn max_write(&self, _device_mtu: u16) -> usize {
        // ATT MTU 247 − 3.
        244
    }

    fn is_serial(&self) -> bool {
        false
    }
}

fn image(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn opts(prn: u16) -> UpdateOptions {
    UpdateOptions {
        prn,
        response_timeout: Duration::from_secs(1),
        stall_timeout: Duration::from_millis(50),
        ..UpdateOptions::default()
    }
}

fn update(
    link: &mut TestLink,
    o: &UpdateOptions,
    img: &[u8],
) -> (Result<(), UpdateError>, Vec<UpdateEvent>) {
    let mut events = Vec::new();
    let r = host::update(link, o, &unsigned_init(img), img, &mut |e| events.push(e));
    (r, events)
}

/// Updates a 4 KiB image over a link without latency that drops writes
/// from write `from` on.
fn update_4k_dropping(
    from: usize,
    drops: Drops,
    o: &UpdateOptions,
) -> (Result<(), UpdateError>, Vec<UpdateEvent>) {
    let mut link = TestLink::dropping(0, from, drops);
    update(&mut link, o, &image(4096))
}

/// The device validated the hash and holds the image's CRC in bank 1.
fn assert_done(link: &TestLink, img: &[u8], events: &[UpdateEvent]) {
    assert_eq!(events.last(), Some(&UpdateEvent::Done));
    assert_eq!(link.t.settings().bank_1.image_crc, crc32(0, img));
}

#[test]
fn pipelined_window_sends_past_prn_before_reading_a_notification() {
    let img = image(3 * 4096 + 1000);
    // Notifications take 3 link operations to come back: shorter than the
    // window's slack (8 − 4 writes), so they are taken by polling.
    let mut link = TestLink::new(3);
    let o = opts(4);
    let (r, events) = update(&mut link, &o, &img);
    r.unwrap();
    assert_done(&link, &img, &events);
    let before = link.writes_before_first_notification();
    assert!(
        before > 4 && before <= 8,
        "{before} writes before the first notification was read"
    );
    // Notifications were taken by polling while the window had room.
    assert!(link.ops.iter().any(|o| matches!(
        o,
        Op::Got {
            op: 0x03,
            poll: true
        }
    )));
    assert!(!events
        .iter()
        .any(|e| matches!(e, UpdateEvent::Recovered { .. })));
    // No write was ever more than the window ahead of the acknowledgements:
    // the host never sent more writes in a row than the window allows.
    let mut run = 0;
    for op in &link.ops {
        match op {
            Op::Write { .. } => {
                run += 1;
                assert!(run <= 8, "more than a window of writes without reading");
            }
            Op::Got { .. } | Op::Control(_) => run = 0,
            _ => {}
        }
    }
}

#[test]
fn dropped_tail_is_resent_at_object_end_without_prn() {
    let img = image(2 * 4096 + 512);
    // Object 0 is 17 writes of 244 bytes (+ 188): drop its last five
    // (init packet is one write, index 0).
    let mut link = TestLink::dropping(0, 1 + 12, Drops::Burst);
    let (r, events) = update(&mut link, &opts(0), &img);
    r.unwrap();
    assert_done(&link, &img, &events);
    let rec: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            UpdateEvent::Recovered {
                object,
                offset,
                lost,
            } => Some((*object, *offset, *lost)),
            _ => None,
        })
        .collect();
    assert_eq!(rec, vec![(Some(0), 12 * 244, 4096 - 12 * 244)]);
    // Recovered in the same object: no re-create.
    assert!(!events
        .iter()
        .any(|e| matches!(e, UpdateEvent::Retry { .. })));
}

#[test]
fn dropped_writes_in_a_full_window_are_recovered() {
    let img = image(3 * 4096);
    // A burst inside object 1 leaves the device short of its next
    // notification: the host stalls, asks, and resends.
    let mut link = TestLink::dropping(3, 1 + 17 + 5, Drops::Burst);
    let (r, events) = update(&mut link, &opts(4), &img);
    r.unwrap();
    assert_done(&link, &img, &events);
    let n = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                UpdateEvent::Recovered {
                    object: Some(1),
                    ..
                }
            )
        })
        .count();
    assert_eq!(n, 1, "{events:?}");
    assert!(!events
        .iter()
        .any(|e| matches!(e, UpdateEvent::Retry { .. })));
}

#[test]
fn a_gap_matches_no_prefix_and_is_a_crc_error() {
    // One write lost and the next ones taken: the device's data has a hole.
    let mut o = opts(0);
    o.object_retries = 0;
    o.session_retries = 0;
    let (r, _) = update_4k_dropping(1 + 3, Drops::Gap, &o);
    assert!(
        matches!(
            r,
            Err(UpdateError::CrcMismatch {
                object: Some(0),
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn recoveries_are_bounded_and_name_the_lost_bytes() {
    let mut o = opts(0);
    o.max_recoveries = 2;
    let (r, events) = update_4k_dropping(1 + 10, Drops::Always, &o);
    let e = r.unwrap_err();
    assert!(
        matches!(
            e,
            UpdateError::BytesLost {
                object: Some(0),
                sent: 4096,
                device_offset: 2440,
                recoveries: 2,
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("1656 bytes lost"), "{msg}");
    assert_eq!(e.code(), "dfukit::nordic::dfu::bytes_lost");
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, UpdateEvent::Recovered { .. }))
            .count(),
        2
    );
}

#[test]
fn phone_baseline_waits_after_each_create_and_stops_at_each_prn() {
    let img = image(3 * 4096 + 100);
    let mut link = TestLink::new(4);
    let o = UpdateOptions {
        response_timeout: Duration::from_secs(1),
        ..UpdateOptions::phone_baseline()
    };
    assert_eq!((o.prn, o.window), (12, 12));
    let (r, events) = update(&mut link, &o, &img);
    r.unwrap();
    assert_done(&link, &img, &events);
    let sleeps: Vec<_> = link
        .ops
        .iter()
        .filter_map(|o| match o {
            Op::Sleep(d) => Some(*d),
            _ => None,
        })
        .collect();
    // One wait per data object, spent through the link.
    assert_eq!(sleeps, vec![Duration::from_millis(400); 4]);
    // Each sleep follows a data object CREATE.
    for (i, op) in link.ops.iter().enumerate() {
        if matches!(op, Op::Sleep(_)) {
            assert!(link.ops[..i]
                .iter()
                .rev()
                .find(|o| matches!(o, Op::Control(_)))
                .is_some_and(|o| *o == Op::Control(0x01)));
        }
    }
    // Stop-and-wait: exactly PRN writes, then the notification.
    assert_eq!(link.writes_before_first_notification(), 12);
    // The default profile has no fixed delays.
    let mut link = TestLink::new(4);
    let (r, _) = update(&mut link, &opts(12), &img);
    r.unwrap();
    assert!(!link.ops.iter().any(|o| matches!(o, Op::Sleep(_))));
}

/// Control-point opcodes in the order the host sent them.
fn controls(link: &TestLink) -> Vec<u8> {
    link.ops
        .iter()
        .filter_map(|o| match o {
            Op::Control(c) => Some(*c),
            _ => None,
        })
        .collect()
}

#[test]
fn prn_zero_reads_only_at_object_ends() {
    let img = image(2 * 4096 + 8);
    let mut link = TestLink::new(2);
    let o = UpdateOptions {
        pipeline: false,
        ..opts(0)
    };
    let (r, events) = update(&mut link, &o, &img);
    r.unwrap();
    assert_done(&link, &img, &events);
    // No polling between writes, no notifications, and the request sequence
    // of before: SELECT, SET_PRN 0 at connect, then CREATE, writes, CRC_GET,
    // EXECUTE per object.
    assert!(!link
        .ops
        .iter()
        .any(|o| matches!(o, Op::PollEmpty | Op::Got { poll: true, .. })));
    assert_eq!(
        controls(&link),
        vec![
            0x02, 0x06, 0x01, 0x03, 0x04, // connect, init packet
            0x06, 0x01, 0x03, 0x04, 0x01, 0x03, 0x04, 0x01, 0x03, 0x04, // 3 data objects
        ]
    );
    // Every write went out before its object's CRC_GET: none was resent.
    let writes = link
        .ops
        .iter()
        .filter(|o| matches!(o, Op::Write { .. }))
        .count();
    assert_eq!(writes, 1 + 17 + 17 + 1);
}

#[test]
fn pipelined_objects_wait_once_per_object() {
    let img = image(2 * 4096 + 8);
    let mut link = TestLink::new(2);
    let (r, events) = update(&mut link, &opts(0), &img);
    r.unwrap();
    assert_done(&link, &img, &events);
    // CREATE and EXECUTE per data object, no CRC_GET but before the last
    // object's EXECUTE (it must confirm the whole image first).
    assert_eq!(
        controls(&link),
        vec![
            0x02, 0x06, 0x01, 0x03, 0x04, // connect, init packet
            0x06, 0x01, 0x04, 0x01, 0x04, // 2 data objects
            0x01, 0x03, 0x04, // the last one
        ]
    );
    // Each data object's CREATE, writes and EXECUTE went out before the
    // host read any answer: one wait per object.
    let first_data = link
        .ops
        .iter()
        .enumerate()
        .filter(|(_, o)| **o == Op::Control(0x01))
        .nth(1)
        .map(|(i, _)| i)
        .unwrap();
    let burst: Vec<&Op> = link.ops[first_data..]
        .iter()
        .take_while(|o| !matches!(o, Op::Got { .. }))
        .collect();
    assert_eq!(burst.len(), 1 + 17 + 1, "{burst:?}");
    assert_eq!(burst.last(), Some(&&Op::Control(0x04)));
}

#[test]
fn pipelined_execute_of_an_incomplete_object_falls_back_to_resending() {
    let img = image(2 * 4096);
    let mut link = TestLink::dropping(2, 1 + 5, Drops::Burst);
    let (r, events) = update(&mut link, &opts(0), &img);
    r.unwrap();
    assert_done(&link, &img, &events);
    // Writes 5.. of object 0 were dropped (the device's buffers ran dry
    // until the host turned to the control point): what it holds is a
    // prefix, so the rest is resent in the same object.
    assert!(
        events.iter().any(|e| matches!(
            e,
            UpdateEvent::Recovered {
                object: Some(0),
                offset: 1220,
                ..
            }
        )),
        "{events:?}"
    );
    // connect, init, then object 0: CREATE, EXECUTE (refused: incomplete),
    // CRC_GET for the offset, CRC_GET after the resend, EXECUTE; object 1
    // pipelined again.
    assert_eq!(
        controls(&link),
        vec![
            0x02, 0x06, 0x01, 0x03, 0x04, // connect, init packet
            0x06, 0x01, 0x04, 0x03, 0x03, 0x04, // object 0
            0x01, 0x03, 0x04, // object 1, the last: CRC_GET before EXECUTE
        ]
    );
}

#[test]
fn flash_completion_timeout_in_a_notification_is_named() {
    let img = image(4096);
    let mut link = TestLink::new(0);
    // The first receipt notification of the data object carries dfukit's
    // extended error 0x20 (CRC frame 0 answers the init packet's CRC_GET).
    link.replace_crc = Some((1, vec![0x60, 0x03, 0x0B, 0x20]));
    let (r, _) = update(&mut link, &opts(4), &img);
    let e = r.unwrap_err();
    assert!(
        matches!(
            e,
            UpdateError::Rejected {
                ext: Some(dfukit_nordic::proto::ExtError::FlashCompletionTimeout),
                object: Some(0),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("flash write completion not received"),
        "{e}"
    );
    assert!(e.help().starts_with("flash write completion not received"));
}

/// An erase done ahead fails: the device drops the rest of its queued work
/// and must erase again at the next CREATE instead of trusting its record
/// of what was erased ahead. Bank 1 holds stale data from an earlier update,
/// so a skipped erase would program over it.
#[test]
fn a_failed_erase_ahead_is_done_again_at_create() {
    let img = image(3 * 4096);
    let mut link = TestLink::new(0);
    link.mem.fill(0x1200_0000, &[0x5A; 64 * 1024]);
    link.fail_erase_at = Some(0x1200_0000 + 4096);
    let (r, events) = update(&mut link, &opts(0), &img);
    assert_eq!(link.mem.violations.len(), 0, "programs onto unerased flash");
    r.unwrap();
    // The failed sector was erased again.
    assert_eq!(
        link.erases
            .iter()
            .filter(|&&a| a == 0x1200_0000 + 4096)
            .count(),
        2
    );
    assert_done(&link, &img, &events);
}

/// A notification shows a mismatch while the next PRN batch, and its
/// notification, are still in flight: the host retries the object, and the
/// stale notification that arrives afterwards is not taken for CREATE's
/// answer.
#[test]
fn a_stale_notification_after_a_mismatch_is_not_an_answer() {
    let img = image(2 * 4096);
    let mut link = TestLink::new(6);
    // CRC frame 0 answers the init packet's CRC_GET; frame 1 is the first
    // data notification (4 writes = 976 bytes), reported with a wrong CRC.
    let mut bad = vec![0x60, 0x03, 0x01];
    bad.extend_from_slice(&976u32.to_le_bytes());
    bad.extend_from_slice(&0xdead_beefu32.to_le_bytes());
    link.replace_crc = Some((1, bad));
    let (r, events) = update(&mut link, &opts(4), &img);
    r.unwrap();
    assert!(events
        .iter()
        .any(|e| matches!(e, UpdateEvent::Retry { .. })));
    assert_done(&link, &img, &events);
}

#[test]
fn device_data_that_is_not_the_image_restarts_from_a_fresh_init_packet() {
    // Run 1 sends image A under B's init packet (same size, so the device
    // takes it until the final hash check) and stops after object 0.
    let b = image(2 * 4096);
    let a: Vec<u8> = b.iter().map(|x| x ^ 0x55).collect();
    let init_b = unsigned_init(&b);
    let mut link = TestLink::dropping(2, 1 + 17, Drops::Always);
    let o = UpdateOptions {
        max_recoveries: 1,
        ..opts(0)
    };
    // Object 1's writes are all dropped: its pipelined EXECUTE is refused
    // (the device executes only a complete object), never taken as done.
    let r = host::update(&mut link, &o, &init_b, &a, &mut |_| {});
    assert!(matches!(r, Err(UpdateError::BytesLost { .. })), "{r:?}");
    assert_eq!(link.t.settings().progress.firmware_image_offset, 4096);
    // Run 2, the right image: the device's 4096 bytes do not match it, and
    // CREATE would append to them; the host sends the init packet anew,
    // which resets the device's progress, and starts from zero.
    link.drop_from = None;
    link.dropping = false;
    link.drop_always = false;
    let before = controls(&link).len();
    let mut events = Vec::new();
    host::update(&mut link, &opts(0), &init_b, &b, &mut |e| events.push(e)).unwrap();
    assert_done(&link, &b, &events);
    assert!(!events
        .iter()
        .any(|e| matches!(e, UpdateEvent::Resumed { .. })));
    // SET_PRN, SELECT command, EXECUTE (the packet is there), SELECT data,
    // then SELECT and CREATE command: the fresh init packet.
    assert_eq!(
        &controls(&link)[before..before + 6],
        &[0x02, 0x06, 0x04, 0x06, 0x06, 0x01]
    );
}
