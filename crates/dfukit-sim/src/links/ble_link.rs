//! A BLE connection to a simulated nRF52840, in virtual time.
//!
//! [`BleBoardLink`] is the central's side of a Secure DFU connection, run
//! against [`Nrf52840`] with the timing of [`crate::links::ble`]:
//!
//! - Packet writes (`Request::Write`) are ATT_WRITE_CMDs: queued in the
//!   central's host, sent in connection events, and offered to the board as
//!   the WRITE frame they would be on serial when their last LL packet
//!   arrives. If the board is [`Busy`](dfukit_nordic::bootloader::Busy) — all its
//!   receive buffers wait for flash — the write is dropped and counted: the
//!   LL acknowledged it, the application lost it, as the nRF5 SDK's BLE
//!   transport does when `nrf_balloc_alloc` fails. There is no flow control.
//! - Every other request is an ATT_WRITE_REQ to the Control Point. Its
//!   ATT_WRITE_RSP is queued [`APP_LATENCY`] after the request arrives, as
//!   the SDK's `on_rw_authorize_req` grants the write before it schedules
//!   the request (`nrf_dfu_ble.c`), and goes out in the first later
//!   exchange: in the same connection event when the event goes on (the
//!   central still has packets), else in the next one. A board whose job
//!   queue is full holds the request and takes it once work completes.
//! - The board's responses are notifications, queued [`APP_LATENCY`] after
//!   the board made them, sent in order behind any write response.
//! - The central's host queues a PDU for an event only if it was queued
//!   before that event's anchor: a phone's application does not answer
//!   within one T_IFS.
//! - A board that is off, or has reset since the link was made (a real
//!   reset drops the connection), answers no packet; after the supervision
//!   timeout the link reports `ConnectionAborted`. Responses the board made
//!   before a reset are still sent: the model treats them as already
//!   handed to the SoftDevice.
//!
//! [`BleBoardLink::with_faults`] puts a [`FaultInjector`] on the
//! connection; a frame is one ATT PDU the central queues (a Packet or
//! Control Point write) or one notification the central receives. A
//! dropped write is never sent (the application lost it), a corrupted one
//! carries a changed byte (damage the CRC-24 missed), a duplicated one is
//! queued twice, a delayed one is queued late; a dropped, changed,
//! duplicated or delayed notification likewise. A disconnect ends the
//! link at once; a reset reboots the board, and the central then hears
//! nothing until the supervision timeout, as with a real reset.
//!
//! Everything that varies comes from the seed: the first anchor's offset
//! (the transmit window offset, Core Vol 6 Part B §4.5.3) and CRC errors
//! at [`BleParams::packet_error_rate`]. The same seed, board and host give
//! the same [`TraceEntry`] list.

use crate::boards::nrf52840::Nrf52840;
use crate::clock::SimRng;
use crate::links::ble::{BleParams, InvalidParams, ATT_HEADER, ATT_WRITE_RSP, T_IFS};
use crate::links::faults::{Direction, FaultInjector, LinkFault};
use dfukit_core::Instant;
use dfukit_core::{Board, Clock};
use dfukit_nordic::bootloader::RxTransport;
use dfukit_nordic::host::SecureDfuLink;
use dfukit_nordic::proto::SecureDfuRequest;
use std::collections::VecDeque;
use std::io;
use std::time::Duration;

/// Time from a packet's arrival at the peripheral to the application's
/// answer (write response or notification) being queued in the SoftDevice.
/// A modelling choice, not a measured figure: the bootloader handles
/// SoftDevice events in its main loop, well within a millisecond, so an
/// answer misses the exchange that brought its request (T_IFS, 150 µs) but
/// makes a later one of the same event.
pub const APP_LATENCY: Duration = Duration::from_micros(300);

/// Which way a packet went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Central (host) to peripheral (board).
    ToPeripheral,
    /// Peripheral to central.
    ToCentral,
}

/// What an LL packet carries (a fragment of).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PduKind {
    /// ATT_WRITE_CMD to the DFU Packet characteristic.
    PacketWrite,
    /// ATT_WRITE_REQ to the DFU Control Point.
    ControlWrite,
    /// ATT_WRITE_RSP to a Control Point write.
    WriteResponse,
    /// ATT_HANDLE_VALUE_NTF from the Control Point (a DFU response).
    Notification,
}

/// One LL data packet on the air (empty ACKs are not recorded).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceEntry {
    /// When the packet started.
    pub at: Instant,
    /// Direction.
    pub dir: Dir,
    /// What it carries.
    pub kind: PduKind,
    /// LL payload octets.
    pub octets: u16,
    /// Whether it is the last fragment of its ATT PDU.
    pub last: bool,
    /// Received with a CRC error: not acknowledged, sent again.
    pub crc_error: bool,
    /// The last fragment of a Packet write that the board had no buffer
    /// for: acknowledged by the LL, lost by the application.
    pub dropped: bool,
}

/// What the link counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BleCounters {
    /// Connection events run.
    pub events: u64,
    /// LL data packets the central sent (retransmissions included).
    pub packets_sent: u64,
    /// LL data packets sent again after a CRC error.
    pub retransmissions: u64,
    /// Packet writes the board took.
    pub writes_delivered: u64,
    /// Packet writes dropped for lack of a receive buffer.
    pub writes_dropped: u64,
    /// Image bytes in dropped writes.
    pub bytes_lost: u64,
    /// Notifications the central received.
    pub notifications: u64,
}

/// One ATT PDU waiting to go out, in fragments.
#[derive(Debug)]
struct Outgoing {
    kind: PduKind,
    /// The DFU frame: request with its opcode byte, or response.
    frame: Vec<u8>,
    /// LL payload sizes of its fragments.
    fragments: Vec<u16>,
    /// Fragments already acknowledged.
    sent: usize,
    /// Not sent before this time (host queueing, response readiness).
    ready_at: Instant,
}

impl Outgoing {
    fn next_octets(&self) -> u16 {
        self.fragments[self.sent]
    }

    fn is_last(&self) -> bool {
        self.sent + 1 == self.fragments.len()
    }
}

/// A [`SecureDfuLink`] to a board over a modelled BLE connection, in virtual time.
pub struct BleBoardLink<'a> {
    board: &'a mut Nrf52840,
    params: BleParams,
    rng: SimRng,
    next_anchor: Instant,
    /// Central → peripheral, in the central's host queue.
    tx: VecDeque<Outgoing>,
    /// Peripheral → central: write responses and notifications.
    rx: VecDeque<Outgoing>,
    /// Control Point writes the board could not take yet, in order.
    held: VecDeque<Vec<u8>>,
    /// Notifications received, with their arrival times.
    inbox: VecDeque<(Instant, Vec<u8>)>,
    last_heard: Instant,
    boots: u32,
    lost: bool,
    trace: Vec<TraceEntry>,
    counters: BleCounters,
    faults: Option<FaultInjector>,
}

impl<'a> BleBoardLink<'a> {
    /// Connects to `board` with `params`; `seed` drives everything random
    /// on the link. The first anchor falls in the transmit window after now.
    pub fn new(
        board: &'a mut Nrf52840,
        params: BleParams,
        seed: u64,
    ) -> Result<Self, InvalidParams> {
        params.validate()?;
        let mut rng = SimRng::new(seed);
        // transmitWindowOffset: 0..=connInterval in 1.25 ms units (Core Vol 6 Part B §4.5.3).
        let steps = params.conn_interval.as_micros() as u64 / 1250;
        let offset = Duration::from_micros(rng.below(steps + 1) * 1250);
        let now = board.now();
        // Answers the board made before this connection had no connection
        // to go out on: the SoftDevice drops a notification for a link that
        // is gone, so a new central never hears them.
        while board.take_response().is_some() {}
        Ok(BleBoardLink {
            boots: board.boots(),
            board,
            params,
            rng,
            next_anchor: now + offset,
            tx: VecDeque::new(),
            rx: VecDeque::new(),
            held: VecDeque::new(),
            inbox: VecDeque::new(),
            last_heard: now,
            lost: false,
            trace: Vec::new(),
            counters: BleCounters::default(),
            faults: None,
        })
    }

    /// Puts `injector` on the connection (see the module documentation).
    pub fn with_faults(mut self, injector: FaultInjector) -> Self {
        self.faults = Some(injector);
        self
    }

    /// The injector, with its frame counts and the faults that fired.
    pub fn faults(&self) -> Option<&FaultInjector> {
        self.faults.as_ref()
    }

    /// The fault for the next frame going `dir`, if an injector is on.
    fn fault(&mut self, dir: Direction) -> Option<LinkFault> {
        self.faults.as_mut().and_then(|f| f.on_frame(dir))
    }

    /// The connection parameters.
    pub fn params(&self) -> &BleParams {
        &self.params
    }

    /// Every data packet so far, in order.
    pub fn trace(&self) -> &[TraceEntry] {
        &self.trace
    }

    /// The counters so far.
    pub fn counters(&self) -> BleCounters {
        self.counters
    }

    /// Virtual time (the board's clock).
    pub fn now(&self) -> Instant {
        self.board.now()
    }

    /// When the central last received a packet from the board intact.
    pub fn last_heard(&self) -> Instant {
        self.last_heard
    }

    /// False once the supervision timeout has declared the link lost.
    pub fn is_connected(&self) -> bool {
        !self.lost
    }

    /// Ends the link, keeping its trace and counters.
    pub fn finish(self) -> (Vec<TraceEntry>, BleCounters) {
        (self.trace, self.counters)
    }

    fn aborted(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!(
                "BLE link lost: no packet from the peripheral for the supervision timeout ({:?})",
                self.params.supervision_timeout
            ),
        )
    }

    /// The board is there to answer: powered and not reset since connecting.
    fn board_up(&self) -> bool {
        self.board.is_powered() && self.board.boots() == self.boots
    }

    /// Moves responses the board produced into the notification queue.
    fn collect(&mut self) {
        while let Some(r) = self.board.take_response() {
            let mut frame = Vec::with_capacity(24);
            r.encode(&mut |b| frame.extend_from_slice(b));
            let fragments = self.params.fragments(ATT_HEADER + frame.len());
            self.rx.push_back(Outgoing {
                kind: PduKind::Notification,
                frame,
                fragments,
                sent: 0,
                ready_at: self.board.now() + APP_LATENCY,
            });
        }
    }

    /// Offers held Control Point writes again, oldest first.
    fn retry_held(&mut self) {
        if !self.board_up() {
            // A board that lost power or reset lost the requests with it.
            self.held.clear();
            return;
        }
        while let Some(frame) = self.held.front() {
            let now = self.board.now();
            if self.board.receive(now, RxTransport::Ble, frame).is_err() {
                return;
            }
            self.held.pop_front();
            self.collect();
        }
    }

    /// The application grants a Control Point write it just received.
    fn push_write_response(&mut self) {
        self.rx.push_back(Outgoing {
            kind: PduKind::WriteResponse,
            frame: Vec::new(),
            fragments: self.params.fragments(ATT_WRITE_RSP),
            sent: 0,
            ready_at: self.board.now() + APP_LATENCY,
        });
    }

    /// Runs the board to `t`, through each of its wake-ups on the way, so
    /// that responses carry the time they were made.
    fn advance_board(&mut self, t: Instant) {
        loop {
            self.retry_held();
            match self.board.next_wakeup() {
                Some(w) if w <= t => {
                    let before = self.board.now();
                    self.board.advance(w.max(before));
                    self.collect();
                    if self.board.now() == before && self.board.next_wakeup() == Some(w) {
                        // A due wake-up that changes nothing would spin.
                        break;
                    }
                }
                _ => break,
            }
        }
        self.board.advance(t);
        self.collect();
        self.retry_held();
    }

    /// Whether a data packet is lost to a CRC error (drawn only for data
    /// packets, so the draw sequence depends on traffic alone). Such a
    /// packet is not acknowledged and counts as a retransmission.
    fn lost_to_crc(&mut self) -> bool {
        let rate = self.params.packet_error_rate;
        let lost = rate > 0.0 && self.rng.chance(rate);
        if lost {
            self.counters.retransmissions += 1;
        }
        lost
    }

    /// Records a packet, `(kind, octets, last)`, in the trace.
    fn log_packet(
        &mut self,
        at: Instant,
        dir: Dir,
        (kind, octets, last): (PduKind, u16, bool),
        crc_error: bool,
        dropped: bool,
    ) {
        self.trace.push(TraceEntry {
            at,
            dir,
            kind,
            octets,
            last,
            crc_error,
            dropped,
        });
    }

    /// Runs the next connection event.
    fn run_event(&mut self) {
        let anchor = self.next_anchor;
        self.next_anchor = anchor + self.params.conn_interval;
        self.counters.events += 1;
        self.advance_board(anchor);
        if !self.board_up() && self.rx.is_empty() {
            // The central transmits, nothing answers (Core Vol 6 Part B §4.5.2).
            if anchor.saturating_duration_since(self.last_heard) >= self.params.supervision_timeout
            {
                self.lost = true;
            }
            return;
        }
        let end = anchor + self.params.event_budget();
        let cap = self.params.max_packets_per_event.unwrap_or(u32::MAX);
        let mut s = anchor;
        let mut n = 0u32;
        let mut more_data = false;
        loop {
            if n > 0 {
                // MD: the event goes on while either side said, in the last
                // exchange, that it has more, and the next exchange fits
                // (Core Vol 6 Part B §4.5.6).
                let central = self
                    .tx
                    .front()
                    .filter(|o| o.ready_at <= anchor)
                    .map(Outgoing::next_octets);
                let peripheral = self
                    .rx
                    .front()
                    .filter(|o| o.ready_at <= s)
                    .map(Outgoing::next_octets);
                let x = self
                    .params
                    .exchange_time(central.unwrap_or(0), peripheral.unwrap_or(0));
                if !more_data || n >= cap || s + x > end {
                    break;
                }
            }
            (s, more_data) = self.exchange(s, anchor, end, n == 0);
            n += 1;
        }
        self.advance_board(s);
    }

    /// One exchange starting at `s`. Returns when the next one may start,
    /// and the MD bit of the exchange: whether either side had another
    /// packet queued when it sent its own (an answer the peripheral's
    /// application queues after that does not keep the event open).
    fn exchange(
        &mut self,
        s: Instant,
        anchor: Instant,
        end: Instant,
        first: bool,
    ) -> (Instant, bool) {
        let phy = self.params.phy;
        // Central packet.
        let c = self
            .tx
            .front()
            .filter(|o| o.ready_at <= anchor)
            .map(|o| (o.kind, o.next_octets(), o.is_last()));
        let c_octets = c.map_or(0, |(_, n, _)| n);
        let arrival = s + phy.packet_time(c_octets);
        let up = self.board_up();
        if let Some(packet @ (_, _, last)) = c {
            self.counters.packets_sent += 1;
            let crc_error = self.lost_to_crc();
            let mut dropped = false;
            if !crc_error {
                self.advance_board(arrival);
                if last {
                    dropped = self.deliver(up);
                } else if let Some(o) = self.tx.front_mut() {
                    o.sent += 1;
                }
            }
            self.log_packet(s, Dir::ToPeripheral, packet, crc_error, dropped);
        }
        // Peripheral answer, T_IFS after the central packet ends. It sends
        // data only if the exchange still fits the event (the first always).
        let p_start = arrival + T_IFS;
        let p = self
            .rx
            .front()
            .filter(|o| o.ready_at <= p_start)
            .map(|o| (o.kind, o.next_octets(), o.is_last()))
            .filter(|&(_, n, _)| first || p_start + phy.packet_time(n) + T_IFS <= end);
        let p_octets = p.map_or(0, |(_, n, _)| n);
        let p_end = p_start + phy.packet_time(p_octets);
        if let Some(packet @ (_, _, last)) = p {
            // A corrupted packet is not acknowledged: the peripheral sends it
            // again.
            let crc_error = self.lost_to_crc();
            if !crc_error {
                // Only a packet received intact resets the supervision timer
                // (Core Vol 6 Part B §4.5.2).
                self.last_heard = p_end;
                if last {
                    let o = self.rx.pop_front().expect("front was just read");
                    if o.kind == PduKind::Notification {
                        self.counters.notifications += 1;
                        self.notified(p_end, o.frame);
                    }
                } else if let Some(o) = self.rx.front_mut() {
                    o.sent += 1;
                }
            }
            self.log_packet(p_start, Dir::ToCentral, packet, crc_error, false);
        }
        if p.is_none() {
            // The empty ACK (never corrupted in this model) was heard.
            self.last_heard = p_end;
        }
        let central_more = self.tx.front().is_some_and(|o| o.ready_at <= anchor);
        let peripheral_more = self.rx.front().is_some_and(|o| o.ready_at <= p_start);
        (p_end + T_IFS, central_more || peripheral_more)
    }

    /// A notification reached the central at `at`: into the inbox, through
    /// the fault injector.
    fn notified(&mut self, at: Instant, mut frame: Vec<u8>) {
        match self.fault(Direction::ToHost) {
            None => self.inbox.push_back((at, frame)),
            Some(LinkFault::Drop) => {}
            Some(c @ LinkFault::Corrupt { .. }) => {
                c.corrupt(&mut frame);
                self.inbox.push_back((at, frame));
            }
            Some(LinkFault::Duplicate) => {
                self.inbox.push_back((at, frame.clone()));
                self.inbox.push_back((at, frame));
            }
            Some(LinkFault::Delay(d)) => self.inbox.push_back((at + d, frame)),
            Some(LinkFault::Disconnect) => self.lost = true,
            Some(LinkFault::ResetDevice) => Board::power_cycle(self.board),
        }
    }

    /// The last fragment of the front PDU arrived: hand it to the board.
    /// Returns true if a Packet write was dropped.
    fn deliver(&mut self, up: bool) -> bool {
        let o = self.tx.pop_front().expect("caller checked the front");
        let now = self.board.now();
        match o.kind {
            PduKind::PacketWrite => {
                let taken = up && self.board.receive(now, RxTransport::Ble, &o.frame).is_ok();
                self.collect();
                if taken {
                    self.counters.writes_delivered += 1;
                    false
                } else {
                    self.counters.writes_dropped += 1;
                    // The frame is the WRITE opcode and the image bytes.
                    self.counters.bytes_lost += o.frame.len() as u64 - 1;
                    true
                }
            }
            _ => {
                if up {
                    self.collect();
                    // Granted before the board takes it, as the SDK does;
                    // a request the board holds is still answered later.
                    self.push_write_response();
                    self.held.push_back(o.frame);
                    self.retry_held();
                }
                false
            }
        }
    }
}

impl Clock for BleBoardLink<'_> {
    fn now(&self) -> Instant {
        self.board.now()
    }
    /// The host waits: connection events keep running (queued packets go
    /// out, notifications come in) until `d` of virtual time has passed.
    fn sleep(&mut self, d: Duration) {
        let until = self.board.now() + d;
        while !self.lost && self.next_anchor <= until {
            self.run_event();
        }
        self.advance_board(until);
    }
}

impl SecureDfuLink for BleBoardLink<'_> {
    fn send(&mut self, req: &SecureDfuRequest<'_>) -> io::Result<()> {
        if self.lost {
            return Err(self.aborted());
        }
        let mut frame = Vec::with_capacity(8);
        req.encode(&mut |b| frame.extend_from_slice(b));
        let (kind, value) = match req {
            // The Packet characteristic takes the data alone, no opcode.
            SecureDfuRequest::Write(d) => (PduKind::PacketWrite, d.len()),
            _ => (PduKind::ControlWrite, frame.len()),
        };
        if value > self.params.write_payload() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "ATT write of {value} bytes exceeds ATT_MTU {} − 3",
                    self.params.att_mtu
                ),
            ));
        }
        // A full host queue holds the application until a PDU goes out.
        while self.tx.len() >= self.params.host_tx_queue {
            self.run_event();
            if self.lost {
                return Err(self.aborted());
            }
        }
        let fragments = self.params.fragments(ATT_HEADER + value);
        let mut ready_at = self.board.now();
        let mut copies = 1;
        match self.fault(Direction::ToDevice) {
            None => {}
            Some(LinkFault::Drop) => return Ok(()),
            // A Packet write carries the image bytes alone on the air (the
            // WRITE opcode in front is this model's framing): damage hits
            // only those.
            Some(c @ LinkFault::Corrupt { .. }) if kind == PduKind::PacketWrite => {
                c.corrupt(&mut frame[1..])
            }
            Some(c @ LinkFault::Corrupt { .. }) => c.corrupt(&mut frame),
            Some(LinkFault::Duplicate) => copies = 2,
            Some(LinkFault::Delay(d)) => ready_at += d,
            Some(LinkFault::Disconnect) => {
                self.lost = true;
                return Err(self.aborted());
            }
            Some(LinkFault::ResetDevice) => Board::power_cycle(self.board),
        }
        for _ in 0..copies {
            self.tx.push_back(Outgoing {
                kind,
                frame: frame.clone(),
                fragments: fragments.clone(),
                sent: 0,
                ready_at,
            });
        }
        Ok(())
    }

    fn recv(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        let deadline = self.board.now() + timeout;
        loop {
            if let Some(&(t, _)) = self.inbox.front() {
                if t <= deadline {
                    return Ok(self.inbox.pop_front().map(|(_, f)| f));
                }
            }
            if self.lost {
                return Err(self.aborted());
            }
            if self.next_anchor > deadline {
                self.advance_board(deadline);
                return Ok(None);
            }
            self.run_event();
        }
    }

    fn max_write(&self, _device_mtu: u16) -> usize {
        // BLE has no MTU_GET: the negotiated ATT_MTU decides.
        self.params.write_payload()
    }

    fn is_serial(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boards::nrf52840::BoardConfig;
    use crate::storage::Storage;
    use dfukit_nordic::proto::ObjectType;

    fn board() -> Nrf52840 {
        let cfg = BoardConfig {
            public_key: None,
            ..BoardConfig::default()
        };
        Nrf52840::new(
            cfg,
            Storage::in_memory(1 << 20),
            Storage::in_memory(8 << 20),
        )
        .unwrap()
    }

    /// The board's next response, within a second.
    fn response(link: &mut BleBoardLink<'_>) -> Vec<u8> {
        link.recv(Duration::from_secs(1))
            .unwrap()
            .expect("a response")
    }

    /// Waits for the successful answer to the Select sent first, and
    /// returns the link's trace so far.
    fn select_answered(link: &mut BleBoardLink<'_>) -> Vec<TraceEntry> {
        let r = response(link);
        assert_eq!(&r[..3], &[0x60, 0x06, 0x01]);
        link.trace().to_vec()
    }

    /// Lets a blank board finish booting into DFU mode.
    fn booted() -> Nrf52840 {
        let mut b = board();
        let until = Instant::from_micros(2_000_000);
        while let Some(t) = b.next_wakeup() {
            if t > until {
                break;
            }
            b.advance(t);
        }
        b.advance(until);
        b
    }

    #[test]
    fn control_write_answered_one_event_after_delivery() {
        let mut b = booted();
        let p = BleParams::fast_15ms();
        let mut link = BleBoardLink::new(&mut b, p.clone(), 3).unwrap();
        let start = link.now();
        link.send(&SecureDfuRequest::Select(ObjectType::Command as u8))
            .unwrap();
        let t = select_answered(&mut link);
        // Request, write response, notification: in that order.
        let kinds: Vec<PduKind> = t.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                PduKind::ControlWrite,
                PduKind::WriteResponse,
                PduKind::Notification
            ]
        );
        // The write response is one interval after the request's event.
        let gap = t[1].at.saturating_duration_since(t[0].at);
        assert!(
            gap >= p.conn_interval - Duration::from_micros(500),
            "{gap:?}"
        );
        assert!(gap < p.conn_interval * 2, "{gap:?}");
        assert!(link.now().saturating_duration_since(start) < p.conn_interval * 4);
        assert_eq!(link.counters().notifications, 1);
    }

    #[test]
    fn write_response_rides_in_the_same_event_while_the_central_sends() {
        let mut b = booted();
        let p = BleParams::fast_15ms();
        let mut link = BleBoardLink::new(&mut b, p.clone(), 3).unwrap();
        // A request with packet writes queued behind it: the event goes on,
        // and the granted write comes back in one of its later exchanges.
        link.send(&SecureDfuRequest::Select(ObjectType::Command as u8))
            .unwrap();
        for _ in 0..4 {
            link.send(&SecureDfuRequest::Write(&[0u8; 244])).unwrap();
        }
        let t = select_answered(&mut link);
        let req = t.iter().find(|e| e.kind == PduKind::ControlWrite).unwrap();
        let rsp = t.iter().find(|e| e.kind == PduKind::WriteResponse).unwrap();
        let ntf = t.iter().find(|e| e.kind == PduKind::Notification).unwrap();
        let gap = rsp.at.saturating_duration_since(req.at);
        // Later than the request's own exchange (T_IFS) plus the app's
        // latency, within the same event.
        assert!(gap >= APP_LATENCY, "{gap:?}");
        assert!(gap < p.event_length, "{gap:?}");
        assert!(ntf.at > rsp.at && ntf.at.saturating_duration_since(req.at) < p.event_length);
    }

    #[test]
    fn writes_without_an_object_are_refused_not_dropped() {
        let mut b = booted();
        let mut link = BleBoardLink::new(&mut b, BleParams::fast_15ms(), 1).unwrap();
        link.send(&SecureDfuRequest::Write(&[0u8; 16])).unwrap();
        // No object: the board answers with an error notification.
        let r = response(&mut link);
        assert_eq!(r[1], 0x08);
        assert_eq!(link.counters().writes_dropped, 0);
        assert!(link.send(&SecureDfuRequest::Write(&[0u8; 245])).is_err());
    }
}
