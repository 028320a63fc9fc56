//! Streaming one object: writes under the PRN window, pipelined CREATE and EXECUTE, and
//! recovery of dropped writes from the device's offset.

use super::{check, parse, unexpected, At, Session, UpdateError, UpdateEvent};
use crate::proto::{Opcode, Payload, ResultCode, SecureDfuRequest};
use dfukit_core::crc::crc32;
use std::collections::VecDeque;
use std::time::Duration;

impl Session<'_> {
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
    pub(super) fn stream(
        &mut self,
        data: &[u8],
        start: u32,
        crc_before: u32,
        at: At,
        pipe: Pipe,
        events: &mut dyn FnMut(UpdateEvent),
    ) -> Result<bool, UpdateError> {
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
                self.send(&SecureDfuRequest::Write(chunk), at)?;
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
                    return Err(UpdateError::BytesLost {
                        phase: at.phase,
                        object: at.object,
                        sent: w.sent,
                        device_offset: o,
                        recoveries: self.opts.max_recoveries,
                    });
                }
                events(UpdateEvent::Recovered {
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
    ) -> Result<bool, UpdateError> {
        self.send(&SecureDfuRequest::Execute, at)?;
        // An error in a frame before EXECUTE's answer (a mismatch, a refused
        // CREATE, a flash fault) is judged once that answer is read: it
        // says whether the object was executed, and it must not be left
        // for the next request to read.
        let mut held: Option<UpdateError> = None;
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
                (Ok(_), Some(mut e @ UpdateError::CrcMismatch { .. })) => {
                    if let UpdateError::CrcMismatch { executed, .. } = &mut e {
                        *executed = true;
                    }
                    Err(e)
                }
                // Incomplete: some writes were dropped. Not executed; the
                // caller asks for the offset (a mismatch shows there again).
                (
                    Err(UpdateError::Rejected {
                        result: ResultCode::OperationNotPermitted,
                        ..
                    }),
                    None | Some(UpdateError::CrcMismatch { .. }),
                ) => Ok(false),
                // The first error explains the rest.
                (_, Some(e)) | (Err(e), None) => Err(e),
            };
        }
        Err(UpdateError::BadResponse {
            phase: at.phase,
            request: Opcode::ObjectExecute,
            detail: "more notifications than writes before EXECUTE's answer".into(),
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
    ) -> Result<(), UpdateError> {
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
    fn sync(&mut self, data: &[u8], w: &mut Window, at: At) -> Result<(u32, u32), UpdateError> {
        let prn = self.opts.prn;
        if prn != 0 && (w.in_flight.len() >= usize::from(prn) || w.counter_unknown) {
            self.send(&SecureDfuRequest::SetPrn(prn), at)?;
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
}

/// How much of an object's exchange [`Session::stream`] pipelines.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Pipe {
    /// CREATE was sent without waiting; its answer is taken while streaming.
    pub(super) create_pending: bool,
    /// End with EXECUTE right behind the last write, not CRC_GET.
    pub(super) execute: Option<At>,
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
