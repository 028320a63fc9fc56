//! An in-process serial link to a simulated board, in virtual time.
//!
//! The host library runs unchanged against it: sending a request offers the
//! frame to the board (waiting in virtual time while its receive buffers are
//! busy, as serial flow control would), and waiting for a response advances
//! the board's clock to its next event instead of sleeping. A run is
//! therefore deterministic and takes no wall time for modelled flash time.

use crate::nrf52840::Nrf52840;
use dfukit_core::Instant;
use dfukit_nordic::host::Link;
use dfukit_nordic::proto::Request;
use std::io;
use std::time::Duration;

/// A [`Link`] that drives a board in virtual time.
pub struct BoardLink<'a> {
    board: &'a mut Nrf52840,
}

impl<'a> BoardLink<'a> {
    /// Links to `board`.
    pub fn new(board: &'a mut Nrf52840) -> Self {
        BoardLink { board }
    }

    /// Advances the board to its next event, at most to `limit`. False when
    /// nothing more will happen before `limit`.
    fn step(&mut self, limit: Instant) -> bool {
        match self.board.next_wakeup() {
            Some(t) if t <= limit => {
                let before = self.board.now();
                self.board.advance(t.max(before));
                let progressed = self.board.now() > before || self.board.next_wakeup() != Some(t);
                if !progressed {
                    // A wake-up that is due and changes nothing would spin:
                    // nothing else can happen before new input.
                    self.board.advance(limit);
                }
                progressed
            }
            _ => {
                self.board.advance(limit);
                false
            }
        }
    }
}

impl Link for BoardLink<'_> {
    fn send(&mut self, req: &Request<'_>) -> io::Result<()> {
        let mut frame = Vec::with_capacity(8);
        req.encode(&mut |b| frame.extend_from_slice(b));
        // Flow control: a frame the board cannot take yet waits on the line.
        let give_up = self.board.now() + Duration::from_secs(60);
        loop {
            let now = self.board.now();
            if self.board.receive(now, &frame).is_ok() {
                return Ok(());
            }
            if !self.step(give_up) && self.board.now() >= give_up {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "simulated board held off input for 60 s of virtual time",
                ));
            }
        }
    }

    fn recv(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        let deadline = self.board.now() + timeout;
        loop {
            if let Some(r) = self.board.take_response() {
                let mut frame = Vec::with_capacity(24);
                r.encode(&mut |b| frame.extend_from_slice(b));
                return Ok(Some(frame));
            }
            if self.board.now() >= deadline {
                return Ok(None);
            }
            self.step(deadline);
        }
    }

    fn max_write(&self, device_mtu: u16) -> usize {
        // The board speaks serial SLIP: the same limit as a real port.
        dfukit_nordic::slip::max_payload(device_mtu)
    }
}
