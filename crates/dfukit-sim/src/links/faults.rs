//! A fault injector between a host and a simulated board, after smoltcp's
//! `FaultInjector`: each in-process link (serial, BLE, USB) counts the
//! frames it carries in each direction and asks the injector, per frame,
//! whether something goes wrong with it. What goes wrong is a
//! [`Schedule`]: faults pinned to frame numbers, so a run is reproducible
//! from its schedule alone and a campaign can place faults anywhere in an
//! update by counting a clean run's frames first.
//!
//! A frame is the unit the link's protocol sees: a SLIP frame on serial,
//! an ATT PDU on BLE, a control transfer on USB (its data stage out, or
//! its reply in). How a fault shows depends on the link; each link's
//! documentation says what it does with each [`LinkFault`].

use std::time::Duration;

/// Which way a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Direction {
    /// Host to board (a request, a write, a data stage out).
    ToDevice,
    /// Board to host (a response, a notification, a reply in).
    ToHost,
}

/// What happens to one frame.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum LinkFault {
    /// The frame is lost.
    Drop,
    /// One byte of the frame is changed: byte `at` modulo the frame's
    /// length is XORed with `xor` (never 0). On links with their own
    /// checksum (BLE's CRC-24, USB's CRC-16) this is damage the checksum
    /// missed, or damage between the link and the protocol (RAM, DMA).
    Corrupt {
        /// Which byte (taken modulo the frame's length).
        at: usize,
        /// What it is XORed with.
        xor: u8,
    },
    /// The frame arrives twice.
    Duplicate,
    /// The frame arrives late by this much.
    Delay(Duration),
    /// The link goes away at this frame (a cable pulled, a BLE supervision
    /// timeout, a USB device gone from the bus): the frame is lost and
    /// every later use of the link fails.
    Disconnect,
    /// The board resets just before this frame reaches it (a watchdog, a
    /// brown-out): it reboots, and the frame reaches the rebooted board
    /// (which may not be listening yet).
    ResetDevice,
}

impl LinkFault {
    /// Applies a [`LinkFault::Corrupt`] to `frame` (other faults leave it
    /// alone). An empty frame stays empty.
    pub fn corrupt(&self, frame: &mut [u8]) {
        if let (LinkFault::Corrupt { at, xor }, false) = (self, frame.is_empty()) {
            let n = frame.len();
            frame[at % n] ^= (*xor).max(1);
        }
    }
}

/// A fault pinned to a frame: the `frame`-th frame (from 0) going `dir`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ScheduledFault {
    /// Direction of the frame.
    pub dir: Direction,
    /// The frame's number in that direction, from 0.
    pub frame: u64,
    /// What happens to it.
    pub fault: LinkFault,
}

/// Faults for one run, in any order (at most one per frame is used: the
/// first listed).
pub type Schedule = Vec<ScheduledFault>;

/// Counts a link's frames and hands out the scheduled faults. An injector
/// with an empty schedule only counts (the clean run a campaign measures).
#[derive(Debug, Clone, Default)]
pub struct FaultInjector {
    schedule: Schedule,
    seen: [u64; 2],
    fired: Vec<ScheduledFault>,
    disconnected: bool,
}

fn slot(dir: Direction) -> usize {
    match dir {
        Direction::ToDevice => 0,
        Direction::ToHost => 1,
    }
}

impl FaultInjector {
    /// An injector that applies `schedule`.
    pub fn new(schedule: Schedule) -> Self {
        FaultInjector {
            schedule,
            ..FaultInjector::default()
        }
    }

    /// Counts one frame going `dir` and returns its fault, if any.
    pub fn on_frame(&mut self, dir: Direction) -> Option<LinkFault> {
        let n = self.seen[slot(dir)];
        self.seen[slot(dir)] += 1;
        let f = self
            .schedule
            .iter()
            .find(|f| f.dir == dir && f.frame == n)
            .copied()?;
        self.fired.push(f);
        if f.fault == LinkFault::Disconnect {
            self.disconnected = true;
        }
        Some(f.fault)
    }

    /// Frames counted going `dir`.
    pub fn frames(&self, dir: Direction) -> u64 {
        self.seen[slot(dir)]
    }

    /// The faults that fired, in order.
    pub fn fired(&self) -> &[ScheduledFault] {
        &self.fired
    }

    /// True once a [`LinkFault::Disconnect`] fired: the link is gone.
    pub fn is_disconnected(&self) -> bool {
        self.disconnected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_fire_at_their_frame_and_direction_only() {
        let mut i = FaultInjector::new(vec![
            ScheduledFault {
                dir: Direction::ToHost,
                frame: 1,
                fault: LinkFault::Drop,
            },
            ScheduledFault {
                dir: Direction::ToDevice,
                frame: 2,
                fault: LinkFault::Disconnect,
            },
        ]);
        assert_eq!(i.on_frame(Direction::ToDevice), None);
        assert_eq!(i.on_frame(Direction::ToHost), None);
        assert_eq!(i.on_frame(Direction::ToDevice), None);
        assert_eq!(i.on_frame(Direction::ToHost), Some(LinkFault::Drop));
        assert!(!i.is_disconnected());
        assert_eq!(i.on_frame(Direction::ToDevice), Some(LinkFault::Disconnect));
        assert!(i.is_disconnected());
        assert_eq!(i.frames(Direction::ToDevice), 3);
        assert_eq!(i.frames(Direction::ToHost), 2);
        assert_eq!(i.fired().len(), 2);
    }

    #[test]
    fn corruption_changes_exactly_one_byte() {
        let f = LinkFault::Corrupt { at: 9, xor: 0 };
        let mut b = [0u8; 4];
        f.corrupt(&mut b);
        // 9 mod 4 = 1; an XOR of 0 would change nothing, so it is 1.
        assert_eq!(b, [0, 1, 0, 0]);
        let mut empty: [u8; 0] = [];
        f.corrupt(&mut empty);
        LinkFault::Drop.corrupt(&mut b);
        assert_eq!(b, [0, 1, 0, 0]);
    }
}
