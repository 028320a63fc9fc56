//! The update object by object: connect, the init packet, then the data objects, resuming
//! from what the device already holds.

use super::transfer::Pipe;
use super::{unexpected, At, Session, UpdateError, UpdateEvent, UpdatePhase};
use crate::proto::{ExtError, ObjectType, Opcode, Payload, ResultCode, SecureDfuRequest};
use dfukit_core::crc::crc32;
use std::time::Duration;

impl Session<'_> {
    pub(super) fn connect(
        &mut self,
        events: &mut dyn FnMut(UpdateEvent),
    ) -> Result<(), UpdateError> {
        let at = At::start(UpdatePhase::Connect);
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
                self.send(&SecureDfuRequest::Ping(id), at)?;
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
                return Err(UpdateError::NotADfuTarget {
                    waited: self.opts.connect_timeout,
                });
            }
            self.request(SecureDfuRequest::SetPrn(self.opts.prn), at)?;
            match self.request(SecureDfuRequest::MtuGet, at)? {
                Payload::Mtu(m) => m,
                other => return Err(unexpected(at, Opcode::MtuGet, other)),
            }
        } else {
            self.request(SecureDfuRequest::SetPrn(self.opts.prn), at)?;
            0
        };
        // Writes must keep flash alignment: a multiple of 4 bytes.
        self.chunk = self.link.max_write(mtu) / 4 * 4;
        if self.chunk == 0 {
            return Err(UpdateError::BadResponse {
                phase: at.phase,
                request: Opcode::MtuGet,
                detail: format!("MTU {mtu} leaves no room for data"),
            });
        }
        events(UpdateEvent::Connected {
            mtu,
            chunk: self.chunk,
        });
        Ok(())
    }

    fn select(&mut self, t: ObjectType, at: At) -> Result<(u32, u32, u32), UpdateError> {
        match self.request(SecureDfuRequest::Select(t as u8), at)? {
            Payload::Select {
                max_size,
                offset,
                crc,
            } => Ok((max_size, offset, crc)),
            other => Err(unexpected(at, Opcode::ObjectSelect, other)),
        }
    }

    pub(super) fn crc_get(&mut self, at: At) -> Result<(u32, u32), UpdateError> {
        match self.request(SecureDfuRequest::CrcGet, at)? {
            Payload::Crc { offset, crc } => Ok((offset, crc)),
            other => Err(unexpected(at, Opcode::CrcGet, other)),
        }
    }

    /// Sends the init packet; unless `fresh`, one the device already holds
    /// is only executed again. Sending it anew resets the device's data
    /// progress.
    pub(super) fn send_init(
        &mut self,
        init: &[u8],
        fresh: bool,
        events: &mut dyn FnMut(UpdateEvent),
    ) -> Result<(), UpdateError> {
        let at = At::start(UpdatePhase::InitPacket);
        let (max, offset, crc) = self.select(ObjectType::Command, at)?;
        if init.len() as u32 > max {
            return Err(UpdateError::InitPacketTooLarge {
                size: init.len() as u32,
                max,
            });
        }
        // The same init packet is already there: execute it again (cheap,
        // and a device that rebooted needs it) and keep its data progress.
        if !fresh && offset == init.len() as u32 && crc == crc32(0, init) {
            self.request(SecureDfuRequest::Execute, at)?;
            events(UpdateEvent::InitPacketSent { resumed: true });
            return Ok(());
        }
        self.request(
            SecureDfuRequest::Create {
                obj_type: ObjectType::Command as u8,
                size: init.len() as u32,
            },
            at,
        )?;
        self.stream(init, 0, 0, at, Pipe::default(), events)?;
        self.request(SecureDfuRequest::Execute, at)?;
        events(UpdateEvent::InitPacketSent { resumed: false });
        Ok(())
    }

    pub(super) fn send_image(
        &mut self,
        image: &[u8],
        init: &[u8],
        events: &mut dyn FnMut(UpdateEvent),
    ) -> Result<(), UpdateError> {
        let total = image.len() as u32;
        let at0 = At::start(UpdatePhase::Data);
        let (max, dev_offset, dev_crc) = self.select(ObjectType::Data, at0)?;
        if max == 0 {
            return Err(UpdateError::BadResponse {
                phase: UpdatePhase::Data,
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
                match self.request(SecureDfuRequest::Execute, at) {
                    Ok(_) => {}
                    // Already executed: a bootloader may refuse a second EXECUTE.
                    Err(UpdateError::Rejected {
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
                events(UpdateEvent::Resumed { offset });
            }
        } else if dev_offset > 0 {
            // The device holds data that is not this image's (corrupted, or
            // an executed object that did not match): CREATE would append
            // to it. A fresh init packet resets its progress to zero.
            self.send_init(init, true, events)?;
        }
        events(UpdateEvent::Progress {
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
                    UpdatePhase::Validate
                } else {
                    UpdatePhase::Data
                },
                object: Some(index),
                offset: offset + len,
            };
            let mut attempt = 0;
            // A retried object goes step by step.
            let mut pipeline = self.opts.pipeline;
            loop {
                let at = At {
                    phase: UpdatePhase::Data,
                    object: Some(index),
                    offset,
                };
                let create = SecureDfuRequest::Create {
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
                // so it is checked before the object is executed. Never for
                // the last object: its EXECUTE starts validation, and the
                // host's success rests on its answer. Answers carry no
                // sequence number, so one the link delivered twice shifts
                // every later answer by one; a CRC_GET that must report the
                // whole image first turns such a shift into an error (found
                // by `dfukit bench link-faults`: a duplicated EXECUTE answer
                // let the host report an update whose last object the
                // device never received).
                let last = offset + len == total;
                let pipe = Pipe {
                    create_pending: pipeline,
                    execute: (pipeline && !self.link.is_serial() && !last).then_some(exec_at),
                };
                match self.stream(data, offset, crc_before, at, pipe, events) {
                    Ok(true) => break,
                    Ok(false) => {
                        self.request(SecureDfuRequest::Execute, exec_at)?;
                        break;
                    }
                    // A mismatch, or a device that reports a failed flash
                    // write (it drops the object), is worth another try
                    // while the object is not executed.
                    Err(
                        e @ (UpdateError::CrcMismatch {
                            executed: false, ..
                        }
                        | UpdateError::Rejected {
                            ext: Some(ExtError::FlashOperationFailed),
                            ..
                        }),
                    ) if attempt < self.opts.object_retries => {
                        attempt += 1;
                        pipeline = false;
                        events(UpdateEvent::Retry {
                            object: index,
                            reason: e.to_string(),
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
            crc_done = crc32(crc_done, data);
            offset += len;
            events(UpdateEvent::Progress {
                done: offset,
                total,
            });
        }
        Ok(())
    }
}
