//! An in-process serial link to a simulated board, in virtual time.
//!
//! The host library runs unchanged against it: sending a request offers the
//! frame to the board (waiting in virtual time while its receive buffers are
//! busy, as serial flow control would), and waiting for a response advances
//! the board's clock to its next event instead of sleeping. A run is
//! therefore deterministic and takes no wall time for modelled flash time.
//!
//! [`BoardLink::new`] moves frames instantly; [`BoardLink::with_uart`] gives
//! the line a [`UartModel`]: a request occupies the host-to-board line for
//! its SLIP-encoded time before the board sees it, and each response the
//! board-to-host line for its own, in order, after the board made it.
//!
//! [`BoardLink::with_faults`] puts a [`FaultInjector`] on the line; a frame
//! is one request or one response. Requests: a dropped one never reaches
//! the board, a corrupted one reaches it changed (the serial transport has
//! no checksum of its own: the Secure DFU CRC checks are what catch it), a
//! duplicated one twice, a delayed one after the delay; a reset reboots
//! the board before the request reaches it. Responses: dropped, changed,
//! sent twice, or held back; a reset reboots the board in place of the
//! response. A disconnect fails that call and every later one, as a
//! USB-serial adapter pulled from the port does.

use crate::boards::nrf52840::Nrf52840;
use crate::links::faults::{Direction, FaultInjector, LinkFault};
use crate::links::uart::UartModel;
use dfukit_core::Instant;
use dfukit_core::{Board, Clock};
use dfukit_nordic::bootloader::RxTransport;
use dfukit_nordic::host::SecureDfuLink;
use dfukit_nordic::proto::SecureDfuRequest;
use std::collections::VecDeque;
use std::io;
use std::time::Duration;

/// A [`SecureDfuLink`] that drives a board in virtual time.
pub struct BoardLink<'a> {
    board: &'a mut Nrf52840,
    uart: Option<UartLine>,
    faults: Option<Faults>,
}

/// A fault injector and the responses it holds back (delayed or
/// duplicated), with the time each arrives.
struct Faults {
    injector: FaultInjector,
    late: VecDeque<(Instant, Vec<u8>)>,
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the serial port went away (injected disconnect)",
    )
}

/// A modelled UART. The host-to-board direction needs no state: `send`
/// returns only once its frame is through, so the line is free at each call.
struct UartLine {
    model: UartModel,
    /// When the board-to-host line is next free.
    rx_free: Instant,
    /// Responses on their way, with the time their last byte arrives.
    inbox: VecDeque<(Instant, Vec<u8>)>,
}

impl<'a> BoardLink<'a> {
    /// Links to `board`; frames take no time on the line.
    pub fn new(board: &'a mut Nrf52840) -> Self {
        BoardLink {
            board,
            uart: None,
            faults: None,
        }
    }

    /// Puts `injector` on the line (see the module documentation).
    pub fn with_faults(mut self, injector: FaultInjector) -> Self {
        self.faults = Some(Faults {
            injector,
            late: VecDeque::new(),
        });
        self
    }

    /// The injector, with its frame counts and the faults that fired.
    pub fn faults(&self) -> Option<&FaultInjector> {
        self.faults.as_ref().map(|f| &f.injector)
    }

    /// Links to `board` over a UART: frames take their line time.
    pub fn with_uart(board: &'a mut Nrf52840, model: UartModel) -> Self {
        let now = board.now();
        BoardLink {
            board,
            uart: Some(UartLine {
                model,
                rx_free: now,
                inbox: VecDeque::new(),
            }),
            faults: None,
        }
    }

    /// Puts the board's new responses on the board-to-host line: each
    /// starts when it was made or when the previous one finished.
    fn collect(&mut self) {
        let Some(line) = &mut self.uart else {
            return;
        };
        while let Some(r) = self.board.take_response() {
            let mut frame = Vec::with_capacity(24);
            r.encode(&mut |b| frame.extend_from_slice(b));
            let arrival = line.rx_free.max(self.board.now()) + line.model.frame_time(&frame);
            line.rx_free = arrival;
            line.inbox.push_back((arrival, frame));
        }
    }

    /// Sends a request frame over the modelled UART: it is on the line for
    /// its time, then offered to the board (which may hold it off, as
    /// flow control would, keeping the line busy).
    fn send_uart(&mut self, frame: &[u8]) -> io::Result<()> {
        let time = self
            .uart
            .as_ref()
            .map_or(Duration::ZERO, |l| l.model.frame_time(frame));
        let end = self.board.now() + time;
        while self.board.now() < end {
            self.step(end);
            self.collect();
        }
        let give_up = end + Duration::from_secs(60);
        loop {
            let now = self.board.now();
            if self.board.receive(now, RxTransport::Serial, frame).is_ok() {
                self.collect();
                return Ok(());
            }
            let progressed = self.step(give_up);
            self.collect();
            if !progressed && self.board.now() >= give_up {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "simulated board held off input for 60 s of virtual time",
                ));
            }
        }
    }

    /// Waits for the next response to arrive over the modelled UART.
    fn recv_uart(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        let deadline = self.board.now() + timeout;
        loop {
            self.collect();
            let next = self
                .uart
                .as_ref()
                .and_then(|l| l.inbox.front().map(|&(t, _)| t));
            if let Some(t) = next {
                if t <= self.board.now() {
                    return Ok(self
                        .uart
                        .as_mut()
                        .and_then(|l| l.inbox.pop_front())
                        .map(|(_, f)| f));
                }
            }
            if self.board.now() >= deadline {
                return Ok(None);
            }
            let limit = next.map_or(deadline, |t| t.min(deadline));
            self.step(limit);
        }
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

impl Clock for BoardLink<'_> {
    fn now(&self) -> Instant {
        self.board.now()
    }
    /// The host waits: the board runs on for `d` of virtual time.
    fn sleep(&mut self, d: Duration) {
        let until = self.board.now() + d;
        while self.board.now() < until {
            self.step(until);
            self.collect();
        }
    }
}

impl BoardLink<'_> {
    /// Puts a request frame on the line to the board.
    fn deliver(&mut self, frame: &[u8]) -> io::Result<()> {
        if self.uart.is_some() {
            return self.send_uart(frame);
        }
        // Flow control: a frame the board cannot take yet waits on the line.
        let give_up = self.board.now() + Duration::from_secs(60);
        loop {
            let now = self.board.now();
            if self.board.receive(now, RxTransport::Serial, frame).is_ok() {
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

    /// The next response frame as the board sent it, or `None` after `timeout`.
    fn receive_raw(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        if self.uart.is_some() {
            return self.recv_uart(timeout);
        }
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

    /// The next response through the fault injector.
    fn receive_faulty(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        let deadline = self.board.now() + timeout;
        loop {
            let now = self.board.now();
            let f = self.faults.as_mut().expect("called with faults");
            if f.injector.is_disconnected() {
                return Err(gone());
            }
            if let Some(i) = f.late.iter().position(|&(t, _)| t <= now) {
                return Ok(f.late.remove(i).map(|(_, b)| b));
            }
            let next_late = f.late.iter().map(|&(t, _)| t).min();
            let limit = next_late.map_or(deadline, |t| t.min(deadline));
            let frame = self.receive_raw(limit.saturating_duration_since(now))?;
            let Some(mut frame) = frame else {
                if self.board.now() >= deadline {
                    return Ok(None);
                }
                continue;
            };
            let f = self.faults.as_mut().expect("called with faults");
            match f.injector.on_frame(Direction::ToHost) {
                None => return Ok(Some(frame)),
                Some(LinkFault::Drop) => {}
                Some(c @ LinkFault::Corrupt { .. }) => {
                    c.corrupt(&mut frame);
                    return Ok(Some(frame));
                }
                Some(LinkFault::Duplicate) => {
                    f.late.push_back((self.board.now(), frame.clone()));
                    return Ok(Some(frame));
                }
                Some(LinkFault::Delay(d)) => f.late.push_back((self.board.now() + d, frame)),
                Some(LinkFault::Disconnect) => return Err(gone()),
                Some(LinkFault::ResetDevice) => Board::power_cycle(self.board),
            }
        }
    }
}

impl SecureDfuLink for BoardLink<'_> {
    fn send(&mut self, req: &SecureDfuRequest<'_>) -> io::Result<()> {
        let mut frame = Vec::with_capacity(8);
        req.encode(&mut |b| frame.extend_from_slice(b));
        let Some(f) = self.faults.as_mut() else {
            return self.deliver(&frame);
        };
        if f.injector.is_disconnected() {
            return Err(gone());
        }
        match f.injector.on_frame(Direction::ToDevice) {
            None => self.deliver(&frame),
            Some(LinkFault::Drop) => Ok(()),
            Some(c @ LinkFault::Corrupt { .. }) => {
                c.corrupt(&mut frame);
                self.deliver(&frame)
            }
            Some(LinkFault::Duplicate) => {
                self.deliver(&frame)?;
                self.deliver(&frame)
            }
            Some(LinkFault::Delay(d)) => {
                self.sleep(d);
                self.deliver(&frame)
            }
            Some(LinkFault::Disconnect) => Err(gone()),
            Some(LinkFault::ResetDevice) => {
                Board::power_cycle(self.board);
                self.deliver(&frame)
            }
        }
    }

    fn recv(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        if self.faults.is_some() {
            self.receive_faulty(timeout)
        } else {
            self.receive_raw(timeout)
        }
    }

    fn max_write(&self, device_mtu: u16) -> usize {
        // The board speaks serial SLIP: the same limit as a real port.
        dfukit_nordic::slip::max_payload(device_mtu)
    }
}
