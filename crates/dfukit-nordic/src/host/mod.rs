//! The Secure DFU host: sends an init packet and an image to a bootloader.
//!
//! The logic talks to a [`SecureDfuLink`] — one request out, one response frame back
//! within a timeout — so it runs over a serial port, a pseudo-terminal, or an
//! in-process simulated board alike, and never reads a clock itself.
//! Progress is reported as [`UpdateEvent`] values; the library never draws.
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
//!
//! `options` and `events` are the API around [`update`]; `object` runs the update object by
//! object (connect, init packet, data objects, resume), and `transfer` streams one object's
//! writes under the PRN window and pipelining.

mod error;
mod events;
mod object;
mod options;
pub mod serial;
mod transfer;

pub use error::{UpdateError, UpdatePhase};
pub use events::UpdateEvent;
pub use options::UpdateOptions;

use crate::proto::{ExtError, Opcode, Payload, Response, ResultCode, SecureDfuRequest};
use dfukit_core::Clock;
use std::time::Duration;

/// A request/response channel to a Secure DFU bootloader (SLIP serial, BLE,
/// or an in-process board). Named for the protocol it carries: other crates'
/// links move USB transfers or STM32 frames.
///
/// Its [`Clock`] is where the host takes time from: every deliberate wait
/// goes through [`Clock::sleep`], so a virtual-time link advances its clock
/// (and its device) instead of sleeping the thread, and a real link says
/// that it runs on the wall clock. There is no default.
pub trait SecureDfuLink: Clock {
    /// Sends one request. WRITE requests are sent without waiting.
    fn send(&mut self, req: &SecureDfuRequest<'_>) -> std::io::Result<()>;
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
}

/// Runs a whole update: init packet, then image.
pub fn update(
    link: &mut dyn SecureDfuLink,
    opts: &UpdateOptions,
    init_packet: &[u8],
    image: &[u8],
    events: &mut dyn FnMut(UpdateEvent),
) -> Result<(), UpdateError> {
    let mut first: Option<UpdateError> = None;
    for attempt in 0..=opts.session_retries {
        if let Some(e) = &first {
            events(UpdateEvent::Reconnect {
                attempt,
                reason: e.to_string(),
            });
            drain(link, opts);
        }
        let mut s = Session {
            link: &mut *link,
            opts,
            chunk: 0,
        };
        let r = s
            .connect(events)
            .and_then(|()| s.send_init(init_packet, false, events))
            .and_then(|()| s.send_image(image, init_packet, events));
        match r {
            Ok(()) => {
                events(UpdateEvent::Done);
                return Ok(());
            }
            // A retry that finds no bootloader says less than the error
            // that made the host retry.
            Err(UpdateError::NotADfuTarget { .. }) if first.is_some() => break,
            Err(e) if e.is_transient() => {
                first.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(first.expect("the loop ran and failed"))
}

/// Lets answers still on their way arrive and drops them, so the next
/// attempt does not read an answer to a request of the last one: waits
/// until the link has been quiet for a short while (a tenth of the
/// response timeout), at most one response timeout in all.
fn drain(link: &mut dyn SecureDfuLink, opts: &UpdateOptions) {
    let quiet = opts.response_timeout / 10;
    let until = link.now() + opts.response_timeout;
    while link.now() < until {
        match link.recv(quiet) {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
}

/// Waits, for at most `within` of the link's clock, until the bootloader
/// answers PING again after a reset (an activated SoftDevice or bootloader
/// restarts the device, as the nRF5 SDK does before the next image of a
/// package), draining bytes left on the line from before the reset.
/// Returns how long it took.
pub fn wait_for_bootloader(
    link: &mut dyn SecureDfuLink,
    opts: &UpdateOptions,
    within: Duration,
) -> Result<Duration, UpdateError> {
    let start = link.now();
    let opts = UpdateOptions {
        connect_timeout: within,
        ..opts.clone()
    };
    let mut s = Session {
        link,
        opts: &opts,
        chunk: 0,
    };
    s.connect(&mut |_| {})?;
    Ok(s.link.since(start))
}

/// State of one connection.
struct Session<'a> {
    link: &'a mut dyn SecureDfuLink,
    opts: &'a UpdateOptions,
    chunk: usize,
}

/// Which object a request concerns, for error messages.
#[derive(Debug, Clone, Copy)]
struct At {
    phase: UpdatePhase,
    object: Option<u32>,
    offset: u32,
}

impl At {
    /// The start of `phase`, before any object is selected.
    fn start(phase: UpdatePhase) -> Self {
        At {
            phase,
            object: None,
            offset: 0,
        }
    }
}

impl Session<'_> {
    fn request(&mut self, req: SecureDfuRequest<'_>, at: At) -> Result<Payload, UpdateError> {
        self.send(&req, at)?;
        self.response(req.opcode(), at)
    }

    /// Waits for the response to `op`.
    fn response(&mut self, op: Opcode, at: At) -> Result<Payload, UpdateError> {
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
        Err(UpdateError::BadResponse {
            phase: at.phase,
            request: op,
            detail: format!("more than {max_stale} unsolicited CRC notifications"),
        })
    }

    /// Receives the next frame while an answer to `request` is owed: none
    /// within the response timeout is an error that names it.
    fn recv_answer(&mut self, request: Opcode, at: At) -> Result<Vec<u8>, UpdateError> {
        self.recv_frame(self.opts.response_timeout, at)?
            .ok_or(UpdateError::Timeout {
                phase: at.phase,
                request,
                object: at.object,
                offset: at.offset,
                waited: self.opts.response_timeout,
            })
    }

    /// Sends one request, mapping I/O errors.
    fn send(&mut self, req: &SecureDfuRequest<'_>, at: At) -> Result<(), UpdateError> {
        self.link.send(req).map_err(|e| UpdateError::Link {
            phase: at.phase,
            object: at.object,
            offset: at.offset,
            source: e,
        })
    }

    /// Receives one frame, mapping I/O errors.
    fn recv_frame(&mut self, timeout: Duration, at: At) -> Result<Option<Vec<u8>>, UpdateError> {
        self.link.recv(timeout).map_err(|e| UpdateError::Link {
            phase: at.phase,
            object: at.object,
            offset: at.offset,
            source: e,
        })
    }
}

/// Parses a response to `op`. A response to a WRITE that arrives instead
/// is the device refusing a write: reported as such.
fn parse(frame: &[u8], op: Opcode, at: At) -> Result<Payload, UpdateError> {
    let write_refused = frame.get(1) == Some(&(Opcode::ObjectWrite as u8));
    let expected = if write_refused {
        Opcode::ObjectWrite
    } else {
        op
    };
    let r = Response::parse(frame, expected).map_err(|e| UpdateError::BadResponse {
        phase: at.phase,
        request: op,
        detail: format!("{e:?} in frame {frame:02x?}"),
    })?;
    if r.result == ResultCode::Success && !write_refused {
        return Ok(r.payload);
    }
    Err(UpdateError::Rejected {
        phase: at.phase,
        request: expected,
        result: r.result,
        ext: r.ext,
        object: at.object,
        offset: at.offset,
    })
}

fn check(at: At, offset: u32, crc: u32, dev_offset: u32, dev_crc: u32) -> Result<(), UpdateError> {
    if offset == dev_offset && crc == dev_crc {
        return Ok(());
    }
    Err(UpdateError::CrcMismatch {
        phase: at.phase,
        object: at.object,
        sent: offset,
        crc,
        device_offset: dev_offset,
        device_crc: dev_crc,
        executed: false,
    })
}

fn unexpected(at: At, op: Opcode, got: Payload) -> UpdateError {
    UpdateError::BadResponse {
        phase: at.phase,
        request: op,
        detail: format!("unexpected payload {got:?}"),
    }
}

/// Words for an extended error, for messages.
pub fn ext_words(ext: Option<ExtError>) -> &'static str {
    ext.map_or("", ExtError::describe)
}
