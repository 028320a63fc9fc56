//! `host::wait_for_bootloader`: after a SoftDevice or bootloader activation
//! resets the device, the host drains what the old session left on the line
//! and pings until the bootloader answers, under one deadline.

use dfukit_core::{Clock, Instant, ManualClock};
use dfukit_nordic::host::{self, SecureDfuLink, UpdateError, UpdateOptions};
use dfukit_nordic::proto::SecureDfuRequest;
use std::collections::VecDeque;
use std::io;
use std::time::Duration;

/// A serial bootloader that is silent until `back_at` (resetting), with
/// `stale` frames from before the reset still buffered on the line.
struct Resetting {
    clock: ManualClock,
    back_at: Option<Instant>,
    line: VecDeque<Vec<u8>>,
}

impl Clock for Resetting {
    fn now(&self) -> Instant {
        self.clock.now()
    }
    fn sleep(&mut self, d: Duration) {
        self.clock.sleep(d);
    }
}

impl SecureDfuLink for Resetting {
    fn send(&mut self, req: &SecureDfuRequest<'_>) -> io::Result<()> {
        let up = self.back_at.is_some_and(|t| self.clock.now() >= t);
        if !up {
            return Ok(());
        }
        let mut frame = Vec::new();
        req.encode(&mut |b| frame.extend_from_slice(b));
        let mut reply = vec![0x60, frame[0], 0x01];
        match req {
            SecureDfuRequest::Ping(id) => reply.push(*id),
            SecureDfuRequest::MtuGet => reply.extend_from_slice(&131u16.to_le_bytes()),
            _ => {}
        }
        self.line.push_back(reply);
        Ok(())
    }
    fn recv(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        if let Some(f) = self.line.pop_front() {
            return Ok(Some(f));
        }
        self.clock.sleep(timeout);
        Ok(None)
    }
    fn max_write(&self, device_mtu: u16) -> usize {
        usize::from(device_mtu / 2 - 1)
    }
}

fn link(back_after: Option<Duration>) -> Resetting {
    let clock = ManualClock::starting_at(Instant::ZERO);
    Resetting {
        back_at: back_after.map(|d| Instant::ZERO + d),
        clock,
        // An EXECUTE reply and a stale ping echo with the id the next ping uses.
        line: VecDeque::from([vec![0x60, 0x04, 0x01], vec![0x60, 0x09, 0x01, 0x01]]),
    }
}

#[test]
fn waits_for_the_bootloader_to_come_back_after_the_reset() {
    let mut l = link(Some(Duration::from_millis(1_200)));
    let waited =
        host::wait_for_bootloader(&mut l, &UpdateOptions::default(), Duration::from_secs(10))
            .unwrap();
    assert!(
        waited >= Duration::from_millis(1_200) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert!(l.line.is_empty(), "every answer taken: {:?}", l.line);
}

#[test]
fn a_device_that_never_comes_back_fails_at_the_deadline() {
    let mut l = link(None);
    let within = Duration::from_secs(4);
    let err = host::wait_for_bootloader(&mut l, &UpdateOptions::default(), within).unwrap_err();
    assert!(
        matches!(err, UpdateError::NotADfuTarget { waited } if waited == within),
        "{err}"
    );
    let spent = l.clock.now().saturating_duration_since(Instant::ZERO);
    assert!(spent >= within && spent < within * 2, "{spent:?}");
}
