//! The Secure DFU host: sends an init packet and an image to a bootloader.
//!
//! The logic talks to a [`Link`] — one request out, one response frame back
//! within a timeout — so it runs over a serial port, a pseudo-terminal, or an
//! in-process simulated board alike, and never reads a clock itself.
//! Progress is reported as [`Event`] values; the library never draws.
//!
//! Where it differs from nrfutil on purpose: every request has a response
//! timeout that is an error (nrfutil ignores a missing EXECUTE response), an
//! object whose CRC does not match is re-created and resent (nrfutil gives
//! up), a transfer resumes from what the device reports (offset and CRC
//! compared with the image), and an error names the phase, the object and
//! the offset.
//!
//! Data objects are pipelined (see [`Options::pipeline`]): over BLE,
//! CREATE, the object's writes and EXECUTE go out back to back, and the
//! host waits once per object, for EXECUTE's answer, instead of three times
//! (CREATE, CRC_GET, EXECUTE); over serial the CRC is still checked before
//! EXECUTE. Over BLE an object then costs the events its packets
//! fill plus one, instead of plus five.
//!
//! With a PRN interval, receipt notifications are a flow-control window
//! rather than stop-and-wait points (see [`Options::window`]). Writes the
//! device dropped (BLE Packet writes when its buffers are full) are resent
//! from the device's offset when what it holds is a prefix of the image,
//! as the Android DFU library does, a bounded number of times per object.

mod error;
pub mod serial;

pub use error::{HostError, Phase};

use crate::proto::{ExtError, ObjectType, Opcode, Payload, Request, Response, ResultCode};
use dfukit_core::crc::crc32;
use std::collections::VecDeque;
use std::time::Duration;

/// A request/response channel to a Secure DFU bootloader.
pub trait Link {
    /// Sends one request. WRITE requests are sent without waiting.
    fn send(&mut self, req: &Request<'_>) -> std::io::Result<()>;
    /// Receives one response frame, or `Ok(None)` when none came within `timeout`.
    ///
    /// `Duration::ZERO` means "poll": return a frame that has already
    /// arrived, or `Ok(None)` at once, without blocking or advancing time.
    /// The host polls this way between pipelined writes to take packet
    /// receipt notifications as they come.
    fn recv(&mut self, timeout: Duration) -> std::io::Result<Option<Vec<u8>>>;
    /// Largest WRITE payload the link can carry, given the device's MTU.
    fn max_write(&self, device_mtu: u16) -> usize;
    /// Whether PING and MTU_GET are available (serial) or not (BLE).
    fn is_serial(&self) -> bool {
        true
    }
    /// Lets `d` pass. The host never reads a clock, so every deliberate wait
    /// goes through here: a virtual-time link must override this to advance
    /// its clock (and its device) instead of sleeping the thread.
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// Host options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Packet receipt notification interval (0 = CRC only at object ends).
    pub prn: u16,
    /// How many WRITEs may be unacknowledged by a receipt notification
    /// before the host stops sending and waits. 0 (the default) means twice
    /// `prn`, so the device always has the next PRN batch queued while its
    /// notification for the previous one travels back. Values below `prn`
    /// are raised to `prn`: a smaller window would wait for a notification
    /// the device never sends. Ignored when `prn` is 0.
    pub window: u16,
    /// How long to wait for each response.
    pub response_timeout: Duration,
    /// How long to wait for the first PING answer.
    pub connect_timeout: Duration,
    /// How many times one object is re-created after a CRC mismatch.
    pub object_retries: u32,
    /// How long the host waits with a full window before asking the device
    /// for its offset (CRC_GET). Only spent when writes were dropped, which
    /// leaves the device short of its next notification.
    pub stall_timeout: Duration,
    /// How many times per object the host resends after the device reports
    /// fewer bytes than were sent (dropped writes) before giving up with
    /// [`HostError::BytesLost`].
    pub max_recoveries: u32,
    /// Pipeline data objects: send CREATE without waiting for its answer
    /// (writes right behind it), and, on links that check every packet
    /// themselves (BLE; not serial, where only the object CRC catches a
    /// flipped byte), EXECUTE right behind the last write instead of a
    /// CRC_GET first. The device takes requests in order, so
    /// its answers still come in order and each is checked: a refused
    /// CREATE stops the update before anything is executed, and an EXECUTE
    /// the device refuses because writes were dropped (it executes only a
    /// complete object) falls back to asking for its offset and resending.
    /// Receipt notifications still check the CRC of every byte. On by
    /// default; [`Options::phone_baseline`] turns it off.
    pub pipeline: bool,
    /// Fixed wait after each data object CREATE, spent through
    /// [`Link::sleep`]. Zero by default: the host has no fixed delays; only
    /// [`Options::phone_baseline`] sets it, to emulate a phone library.
    pub create_delay: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            prn: 0,
            window: 0,
            response_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            object_retries: 3,
            stall_timeout: Duration::from_secs(1),
            max_recoveries: 8,
            pipeline: true,
            create_delay: Duration::ZERO,
        }
    }
}

impl Options {
    /// An **emulation** of the baseline phone library of the user report
    /// (Nordic's Android DFU library with its defaults of that time), for
    /// benchmarks only; never use it for real updates. PRN 12 with
    /// stop-and-wait (window = PRN: the host waits for every notification
    /// before sending on), `wait(400)` after each data object CREATE, as
    /// in the report's log, and every request answered before the next.
    pub fn phone_baseline() -> Self {
        Options {
            prn: 12,
            window: 12,
            pipeline: false,
            create_delay: Duration::from_millis(400),
            ..Options::default()
        }
    }

    /// The window in effect: see [`Options::window`].
    fn effective_window(&self) -> u32 {
        let prn = u32::from(self.prn);
        match self.window {
            0 => 2 * prn,
            w => u32::from(w).max(prn),
        }
    }
}

/// Progress of an update, reported as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The device answered; writes carry up to `chunk` bytes.
    Connected {
        /// Device MTU.
        mtu: u16,
        /// Write payload size used.
        chunk: usize,
    },
    /// The init packet is on the device (`resumed`: it already was).
    InitPacketSent {
        /// The device already held it.
        resumed: bool,
    },
    /// The device already holds `offset` bytes of the image; sending resumes there.
    Resumed {
        /// Bytes kept.
        offset: u32,
    },
    /// `done` of `total` image bytes are confirmed on the device.
    Progress {
        /// Confirmed bytes.
        done: u32,
        /// Image size.
        total: u32,
    },
    /// The device reported fewer bytes than were sent, and what it holds
    /// matches the image: sending resumes at its offset in the same object.
    Recovered {
        /// Object index (`None` for the init packet).
        object: Option<u32>,
        /// Image offset (init packet offset) the device holds.
        offset: u32,
        /// Bytes sent beyond it that the device dropped.
        lost: u32,
    },
    /// An object is sent again after a mismatch.
    Retry {
        /// Object index.
        object: u32,
        /// What went wrong.
        reason: String,
    },
    /// The device executed the last object and accepted the image.
    Done,
}

/// Runs a whole update: init packet, then image.
pub fn update(
    link: &mut dyn Link,
    opts: &Options,
    init_packet: &[u8],
    image: &[u8],
    events: &mut dyn FnMut(Event),
) -> Result<(), HostError> {
    let mut s = Session {
        link,
        opts,
        chunk: 0,
    };
    s.connect(events)?;
    s.send_init(init_packet, false, events)?;
    s.send_image(image, init_packet, events)?;
    events(Event::Done);
    Ok(())
}

/// State of one connection.
struct Session<'a> {
    link: &'a mut dyn Link,
    opts: &'a Options,
    chunk: usize,
}

/// Which object a request concerns, for error messages.
#[derive(Debug, Clone, Copy)]
struct At {
    phase: Phase,
    object: Option<u32>,
    offset: u32,
}

impl Session<'_> {
    fn request(&mut self, req: Request<'_>, at: At) -> Result<Payload, HostError> {
        self.send(&req, at)?;
        self.response(req.opcode(), at)
    }

    /// Waits for the response to `op`.
    fn response(&mut self, op: Opcode, at: At) -> Result<Payload, HostError> {
        // A PRN notification still in flight from writes sent before an error
        // arrives as an unsolicited CRC frame: skipped while waiting for any
        // other answer, so that it is not read as (say) CREATE's reply. At
        // most one per write of a window can be owed; more is a device fault.
        let max_stale = self.opts.effective_window().max(1) as usize + 1;
        for _ in 0..=max_stale {
            let frame = self.recv_answer(op, at)?;
            let stale_prn = op != Opcode::CrcGet
                && frame.len() >= 2
                && frame[0] == 0x60
                && frame[1] == Opcode::CrcGet as u8;
            if !stale_prn {
                return parse(&frame, op, at);
            }
        }
        Err(HostError::BadResponse {
            phase: at.phase,
            request: op,
            detail: format!("more than {max_stale} unsolicited CRC notifications"),
        })
    }

    fn connect(&mut self, events: &mut dyn FnMut(Event)) -> Result<(), HostError> {
        let at = At {
            phase: Phase::Connect,
            object: None,
            offset: 0,
        };
        let mtu = if self.link.is_serial() {
            // Frames left on the line by an earlier session would be read as
            // answers to our requests: drain them first.
            for _ in 0..64 {
                // Stale frames are already buffered: a short window finds them.
                if self.recv_frame(Duration::from_millis(2), at)?.is_none() {
                    break;
                }
            }
            // A bootloader that is still starting (or activating a previous
            // update) misses pings; retry for the connect timeout, accepting
            // only the echo of the current id, then say what the port is not.
            let tries = (self.opts.connect_timeout.as_millis() / 250).max(1);
            let mut answered = false;
            'tries: for id in 1..=tries {
                let id = id as u8;
                self.send(&Request::Ping(id), at)?;
                // Read until this ping's window closes; stale echoes of
                // earlier pings are skipped.
                for _ in 0..16 {
                    match self.recv_frame(Duration::from_millis(250), at)? {
                        Some(f) if f.len() >= 4 && f[..2] == [0x60, 0x09] && f[3] == id => {
                            answered = true;
                            break 'tries;
                        }
                        Some(_) => continue,
                        None => break,
                    }
                }
            }
            if !answered {
                return Err(HostError::NotADfuTarget {
                    waited: self.opts.connect_timeout,
                });
            }
            self.request(Request::SetPrn(self.opts.prn), at)?;
            match self.request(Request::MtuGet, at)? {
                Payload::Mtu(m) => m,
                other => return Err(unexpected(at, Opcode::MtuGet, other)),
            }
        } else {
            self.request(Request::SetPrn(self.opts.prn), at)?;
            0
        };
        // Writes must keep flash alignment: a multiple of 4 bytes.
        self.chunk = self.link.max_write(mtu) / 4 * 4;
        if self.chunk == 0 {
            return Err(HostError::BadResponse {
                phase: at.phase,
                request: Opcode::MtuGet,
                detail: format!("MTU {mtu} leaves no room for data"),
            });
        }
        events(Event::Connected {
            mtu,
            chunk: self.chunk,
        });
        Ok(())
    }

    fn select(&mut self, t: ObjectType, at: At) -> Result<(u32, u32, u32), HostError> {
        match self.request(Request::Select(t as u8), at)? {
            Payload::Select {
                max_size,
                offset,
                crc,
            } => Ok((max_size, offset, crc)),
            other => Err(unexpected(at, Opcode::ObjectSelect, other)),
        }
    }

    fn crc_get(&mut self, at: At) -> Result<(u32, u32), HostError> {
        match self.request(Request::CrcGet, at)? {
            Payload::Crc { offset, crc } => Ok((offset, crc)),
            other => Err(unexpected(at, Opcode::CrcGet, other)),
        }
    }

    /// Sends the init packet; unless `fresh`, one the device already holds
    /// is only executed again. Sending it anew resets the device's data
    /// progress.
    fn send_init(
        &mut self,
        init: &[u8],
        fresh: bool,
        events: &mut dyn FnMut(Event),
    ) -> Result<(), HostError> {
        let at = At {
            phase: Phase::InitPacket,
            object: None,
            offset: 0,
        };
        let (max, offset, crc) = self.select(ObjectType::Command, at)?;
        if init.len() as u32 > max {
            return Err(HostError::InitPacketTooLarge {
                size: init.len() as u32,
                max,
            });
        }
        // The same init packet is already there: execute it again (cheap,
        // and a device that rebooted needs it) and keep its data progress.
        if !fresh && offset == init.len() as u32 && crc == crc32(0, init) {
            self.request(Request::Execute, at)?;
            events(Event::InitPacketSent { resumed: true });
            return Ok(());
        }
        self.request(
            Request::Create {
                obj_type: ObjectType::Command as u8,
                size: init.len() as u32,
            },
            at,
        )?;
        self.stream(init, 0, 0, at, Pipe::default(), events)?;
        self.request(Request::Execute, at)?;
        events(Event::InitPacketSent { resumed: false });
        Ok(())
    }

    /// Streams `data`, which starts at image offset `start` with CRC
    /// `crc_before` before it, then checks the device's offset and CRC.
    ///
    /// With PRN on, receipt notifications are a flow-control window: the
    /// host keeps up to `window` WRITEs unacknowledged, takes notifications
    /// as they arrive, and blocks only when the window is full. When the
    /// device holds fewer bytes than were sent but what it holds is a prefix
    /// of `data` (BLE drops Packet writes when its buffers are full), the
    /// rest is resent from its offset in the same object.
    ///
    /// `pipe`: whether the object's CREATE was sent without waiting (its
    /// answer is taken here), and whether the end is EXECUTE (with this
    /// `At`) instead of CRC_GET. Returns whether the object was executed: a
    /// pipelined EXECUTE the device refuses as incomplete falls back to
    /// CRC_GET and resending, and leaves EXECUTE to the caller.
    fn stream(
        &mut self,
        data: &[u8],
        start: u32,
        crc_before: u32,
        at: At,
        pipe: Pipe,
        events: &mut dyn FnMut(Event),
    ) -> Result<bool, HostError> {
        let mut pipelined = pipe.execute;
        let prn = u32::from(self.opts.prn);
        let window = self.opts.effective_window();
        let end = start + data.len() as u32;
        let mut w = Window {
            start,
            crc_before,
            sent: start,
            crc: crc_before,
            in_flight: VecDeque::new(),
            counter_unknown: false,
            create_pending: pipe.create_pending,
        };
        let mut recoveries = 0u32;
        loop {
            while w.sent < end {
                if prn != 0 {
                    // Take the notifications that are already here, without waiting.
                    while let Some(frame) = self.recv_frame(Duration::ZERO, at)? {
                        self.on_notification(&frame, data, &mut w, at)?;
                    }
                    if w.in_flight.len() as u32 >= window {
                        match self.recv_frame(self.opts.stall_timeout, at)? {
                            Some(frame) => {
                                self.on_notification(&frame, data, &mut w, at)?;
                                continue;
                            }
                            // Dropped writes leave the device short of its
                            // next notification: ask where it is.
                            None => break,
                        }
                    }
                }
                let from = (w.sent - start) as usize;
                let chunk = &data[from..(from + self.chunk).min(data.len())];
                self.send(&Request::Write(chunk), at)?;
                w.crc = crc32(w.crc, chunk);
                w.sent += chunk.len() as u32;
                w.in_flight.push_back(w.sent);
            }
            if let Some(exec) = pipelined.take() {
                if self.execute_pipelined(data, &mut w, exec)? {
                    return Ok(true);
                }
            }
            // CREATE's answer comes before any CRC_GET's: take it first.
            while w.create_pending {
                let frame = self.recv_answer(Opcode::ObjectCreate, at)?;
                self.on_notification(&frame, data, &mut w, at)?;
            }
            let at_sent = At {
                offset: w.sent,
                ..at
            };
            let (o, c) = self.sync(data, &mut w, at_sent)?;
            if !w.is_prefix(data, o, c) {
                return check(at_sent, w.sent, w.crc, o, c).map(|()| false);
            }
            if o == end {
                return Ok(false);
            }
            if o < w.sent {
                recoveries += 1;
                if recoveries > self.opts.max_recoveries {
                    return Err(HostError::BytesLost {
                        phase: at.phase,
                        object: at.object,
                        sent: w.sent,
                        device_offset: o,
                        recoveries: self.opts.max_recoveries,
                    });
                }
                events(Event::Recovered {
                    object: at.object,
                    offset: o,
                    lost: w.sent - o,
                });
                w.sent = o;
                w.crc = c;
            }
            // Everything up to `o` is confirmed; nothing else is in flight.
            w.in_flight.clear();
        }
    }

    /// Sends EXECUTE right behind the object's last write and takes what
    /// the device sends until its answer: CREATE's answer if still owed,
    /// receipt notifications, then EXECUTE's. Returns false when the device
    /// refused EXECUTE because it holds fewer bytes than the object (writes
    /// were dropped): the caller asks for its offset and resends.
    fn execute_pipelined(
        &mut self,
        data: &[u8],
        w: &mut Window,
        at: At,
    ) -> Result<bool, HostError> {
        self.send(&Request::Execute, at)?;
        // An error in a frame before EXECUTE's answer (a mismatch, a refused
        // CREATE, a flash fault) is judged once that answer is read: it
        // says whether the object was executed, and it must not be left
        // for the next request to read.
        let mut held: Option<HostError> = None;
        // At most one notification per write, CREATE's answer and EXECUTE's.
        for _ in 0..=w.in_flight.len() + 2 {
            let frame = self.recv_answer(Opcode::ObjectExecute, at)?;
            if frame.get(1) != Some(&(Opcode::ObjectExecute as u8)) {
                if let Err(e) = self.on_notification(&frame, data, w, at) {
                    held.get_or_insert(e);
                }
                continue;
            }
            let executed = parse(&frame, Opcode::ObjectExecute, at);
            return match (executed, held) {
                (Ok(_), None) => Ok(true),
                (Ok(_), Some(mut e @ HostError::CrcMismatch { .. })) => {
                    if let HostError::CrcMismatch { executed, .. } = &mut e {
                        *executed = true;
                    }
                    Err(e)
                }
                // Incomplete: some writes were dropped. Not executed; the
                // caller asks for the offset (a mismatch shows there again).
                (
                    Err(HostError::Rejected {
                        result: ResultCode::OperationNotPermitted,
                        ..
                    }),
                    None | Some(HostError::CrcMismatch { .. }),
                ) => Ok(false),
                // The first error explains the rest.
                (_, Some(e)) | (Err(e), None) => Err(e),
            };
        }
        Err(HostError::BadResponse {
            phase: at.phase,
            request: Opcode::ObjectExecute,
            detail: "more notifications than writes before EXECUTE's answer".into(),
        })
    }

    /// Receives the next frame while an answer to `request` is owed: none
    /// within the response timeout is an error that names it.
    fn recv_answer(&mut self, request: Opcode, at: At) -> Result<Vec<u8>, HostError> {
        self.recv_frame(self.opts.response_timeout, at)?
            .ok_or(HostError::Timeout {
                phase: at.phase,
                request,
                object: at.object,
                offset: at.offset,
                waited: self.opts.response_timeout,
            })
    }

    /// Sends one request, mapping I/O errors.
    fn send(&mut self, req: &Request<'_>, at: At) -> Result<(), HostError> {
        self.link.send(req).map_err(|e| HostError::Link {
            phase: at.phase,
            source: e,
        })
    }

    /// Receives one frame, mapping I/O errors.
    fn recv_frame(&mut self, timeout: Duration, at: At) -> Result<Option<Vec<u8>>, HostError> {
        self.link.recv(timeout).map_err(|e| HostError::Link {
            phase: at.phase,
            source: e,
        })
    }

    /// Takes a receipt notification (or a refused WRITE, an error) that
    /// arrived while streaming, and acknowledges the writes it covers.
    fn on_notification(
        &mut self,
        frame: &[u8],
        data: &[u8],
        w: &mut Window,
        at: At,
    ) -> Result<(), HostError> {
        let at = At {
            offset: w.sent,
            ..at
        };
        if w.create_pending && frame.get(1) == Some(&(Opcode::ObjectCreate as u8)) {
            // The pipelined CREATE's answer; a refusal stops the update
            // before anything of the object is executed.
            w.create_pending = false;
            parse(frame, Opcode::ObjectCreate, at)?;
            return Ok(());
        }
        match parse(frame, Opcode::CrcGet, at)? {
            Payload::Crc { offset, crc } => {
                if !w.is_prefix(data, offset, crc) {
                    return check(at, w.sent, w.crc, offset, crc);
                }
                while w.in_flight.front().is_some_and(|&e| e <= offset) {
                    w.in_flight.pop_front();
                }
                // The device resets its counter when it notifies: it now
                // holds at most the writes still in flight.
                w.counter_unknown = false;
                Ok(())
            }
            other => Err(unexpected(at, Opcode::CrcGet, other)),
        }
    }

    /// Asks the device for its offset and CRC once every write sent has
    /// reached it. A CRC_GET answer looks exactly like a receipt
    /// notification, so when a notification may still be on its way, a
    /// SET_PRN goes first: its answer separates the notifications before it
    /// from the CRC_GET answer after it, and it resets the device's counter.
    fn sync(&mut self, data: &[u8], w: &mut Window, at: At) -> Result<(u32, u32), HostError> {
        let prn = self.opts.prn;
        if prn != 0 && (w.in_flight.len() >= usize::from(prn) || w.counter_unknown) {
            self.send(&Request::SetPrn(prn), at)?;
            loop {
                let frame = self.recv_answer(Opcode::ReceiptNotifSet, at)?;
                if frame.get(1) == Some(&(Opcode::CrcGet as u8)) {
                    self.on_notification(&frame, data, w, at)?;
                } else {
                    parse(&frame, Opcode::ReceiptNotifSet, at)?;
                    break;
                }
            }
            w.counter_unknown = false;
        } else if prn != 0 {
            // No notification can be pending. The caller forgets the writes
            // in flight after this, while the device's counter still holds
            // those it took: until the next notification the host cannot
            // tell when one is due.
            w.counter_unknown = true;
        }
        self.crc_get(at)
    }

    fn send_image(
        &mut self,
        image: &[u8],
        init: &[u8],
        events: &mut dyn FnMut(Event),
    ) -> Result<(), HostError> {
        let total = image.len() as u32;
        let at0 = At {
            phase: Phase::Data,
            object: None,
            offset: 0,
        };
        let (max, dev_offset, dev_crc) = self.select(ObjectType::Data, at0)?;
        if max == 0 {
            return Err(HostError::BadResponse {
                phase: Phase::Data,
                request: Opcode::ObjectSelect,
                detail: "device reports a maximum object size of 0".into(),
            });
        }
        // Resume: keep what the device has if it matches the image.
        let mut offset = 0u32;
        if dev_offset > 0
            && dev_offset <= total
            && crc32(0, &image[..dev_offset as usize]) == dev_crc
        {
            let start = dev_offset - dev_offset % max;
            if dev_offset % max == 0 {
                // The object ending here may not have been executed yet.
                let at = At {
                    object: Some(dev_offset / max - 1),
                    offset: dev_offset,
                    ..at0
                };
                match self.request(Request::Execute, at) {
                    Ok(_) => {}
                    // Already executed: a bootloader may refuse a second EXECUTE.
                    Err(HostError::Rejected {
                        result: ResultCode::OperationNotPermitted,
                        ..
                    }) => {}
                    Err(e) => return Err(e),
                }
                offset = dev_offset;
            } else {
                // Part of an object: CREATE drops it, so resend from its start.
                offset = start;
            }
            if offset > 0 {
                events(Event::Resumed { offset });
            }
        } else if dev_offset > 0 {
            // The device holds data that is not this image's (corrupted, or
            // an executed object that did not match): CREATE would append
            // to it. A fresh init packet resets its progress to zero.
            self.send_init(init, true, events)?;
        }
        events(Event::Progress {
            done: offset,
            total,
        });
        // CRC of image[..offset], carried forward object by object.
        let mut crc_done = crc32(0, &image[..offset as usize]);
        while offset < total {
            let index = offset / max;
            let len = (total - offset).min(max);
            let data = &image[offset as usize..(offset + len) as usize];
            let crc_before = crc_done;
            let exec_at = At {
                phase: if offset + len == total {
                    Phase::Validate
                } else {
                    Phase::Data
                },
                object: Some(index),
                offset: offset + len,
            };
            let mut attempt = 0;
            // A retried object goes step by step.
            let mut pipeline = self.opts.pipeline;
            loop {
                let at = At {
                    phase: Phase::Data,
                    object: Some(index),
                    offset,
                };
                let create = Request::Create {
                    obj_type: ObjectType::Data as u8,
                    size: len,
                };
                if pipeline {
                    // Its answer is taken while the writes go out.
                    self.send(&create, at)?;
                } else {
                    self.request(create, at)?;
                }
                // Emulation only (see `Options::phone_baseline`): a fixed wait
                // after CREATE, spent through the link so virtual time advances.
                if !self.opts.create_delay.is_zero() {
                    self.link.sleep(self.opts.create_delay);
                }
                // EXECUTE goes behind the writes only where the link checks
                // every packet itself (BLE's LL CRC and acknowledgement): on
                // a UART nothing but the object CRC catches a flipped byte,
                // so it is checked before the object is executed.
                let pipe = Pipe {
                    create_pending: pipeline,
                    execute: (pipeline && !self.link.is_serial()).then_some(exec_at),
                };
                match self.stream(data, offset, crc_before, at, pipe, events) {
                    Ok(true) => break,
                    Ok(false) => {
                        self.request(Request::Execute, exec_at)?;
                        break;
                    }
                    // A mismatch, or a device that reports a failed flash
                    // write (it drops the object), is worth another try
                    // while the object is not executed.
                    Err(
                        e @ (HostError::CrcMismatch {
                            executed: false, ..
                        }
                        | HostError::Rejected {
                            ext: Some(ExtError::FlashOperationFailed),
                            ..
                        }),
                    ) if attempt < self.opts.object_retries => {
                        attempt += 1;
                        pipeline = false;
                        events(Event::Retry {
                            object: index,
                            reason: e.to_string(),
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
            crc_done = crc32(crc_done, data);
            offset += len;
            events(Event::Progress {
                done: offset,
                total,
            });
        }
        Ok(())
    }
}

/// Parses a response to `op`. A response to a WRITE that arrives instead
/// is the device refusing a write: reported as such.
fn parse(frame: &[u8], op: Opcode, at: At) -> Result<Payload, HostError> {
    let write_refused = frame.get(1) == Some(&(Opcode::ObjectWrite as u8));
    let expected = if write_refused {
        Opcode::ObjectWrite
    } else {
        op
    };
    let r = Response::parse(frame, expected).map_err(|e| HostError::BadResponse {
        phase: at.phase,
        request: op,
        detail: format!("{e:?} in frame {frame:02x?}"),
    })?;
    if r.result == ResultCode::Success && !write_refused {
        return Ok(r.payload);
    }
    Err(HostError::Rejected {
        phase: at.phase,
        request: expected,
        result: r.result,
        ext: r.ext,
        object: at.object,
        offset: at.offset,
    })
}

/// How much of an object's exchange [`Session::stream`] pipelines.
#[derive(Debug, Clone, Copy, Default)]
struct Pipe {
    /// CREATE was sent without waiting; its answer is taken while streaming.
    create_pending: bool,
    /// End with EXECUTE right behind the last write, not CRC_GET.
    execute: Option<At>,
}

/// Streaming state of one object.
struct Window {
    /// Offset where the object starts.
    start: u32,
    /// CRC of everything before `start`.
    crc_before: u32,
    /// Offset up to which writes were sent.
    sent: u32,
    /// CRC up to `sent`.
    crc: u32,
    /// End offsets of the writes no notification has covered yet.
    in_flight: VecDeque<u32>,
    /// The device's PRN counter may hold writes the host cannot account for
    /// (after a CRC_GET showed losses): the next sync must reset it.
    counter_unknown: bool,
    /// A pipelined CREATE's answer has not arrived yet.
    create_pending: bool,
}

impl Window {
    /// Whether the device's `offset` and `crc` describe a prefix of what was
    /// sent in this object.
    fn is_prefix(&self, data: &[u8], offset: u32, crc: u32) -> bool {
        if offset < self.start || offset > self.sent {
            return false;
        }
        if offset == self.sent {
            return crc == self.crc;
        }
        crc == crc32(self.crc_before, &data[..(offset - self.start) as usize])
    }
}

fn check(at: At, offset: u32, crc: u32, dev_offset: u32, dev_crc: u32) -> Result<(), HostError> {
    if offset == dev_offset && crc == dev_crc {
        return Ok(());
    }
    Err(HostError::CrcMismatch {
        phase: at.phase,
        object: at.object,
        sent: offset,
        crc,
        device_offset: dev_offset,
        device_crc: dev_crc,
        executed: false,
    })
}

fn unexpected(at: At, op: Opcode, got: Payload) -> HostError {
    HostError::BadResponse {
        phase: at.phase,
        request: op,
        detail: format!("unexpected payload {got:?}"),
    }
}

/// Words for an extended error, for messages.
pub fn ext_words(ext: Option<ExtError>) -> &'static str {
    ext.map_or("", ExtError::describe)
}
