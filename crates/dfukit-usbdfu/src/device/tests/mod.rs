//! Direct state-machine tests of both device cores; host-driven scenarios
//! are in `tests/host_device.rs`.

use super::stream::{StreamBackend, StreamDevice};
use super::{DfuDevice, Reply};
use crate::wire::{DfuSetup, GetStatus, Request, SetupPacket};
use dfukit_core::{Instant, ReadFlash};

mod flash;
mod stream;

/// A device core driven with what it reads from (flash memory or a stream
/// back end), so that one set of request helpers serves both.
trait Core<E> {
    fn control(
        &mut self,
        now: Instant,
        setup: &SetupPacket,
        data: &[u8],
        reply: &mut [u8],
        env: &mut E,
    ) -> Reply;
}

impl<M: ReadFlash> Core<M> for DfuDevice {
    fn control(
        &mut self,
        now: Instant,
        setup: &SetupPacket,
        data: &[u8],
        reply: &mut [u8],
        env: &mut M,
    ) -> Reply {
        DfuDevice::control(self, now, setup, data, reply, env)
    }
}

impl<B: StreamBackend> Core<B> for StreamDevice {
    fn control(
        &mut self,
        now: Instant,
        setup: &SetupPacket,
        data: &[u8],
        reply: &mut [u8],
        env: &mut B,
    ) -> Reply {
        StreamDevice::control(self, now, setup, data, reply, env)
    }
}

/// Request `r` with `value` on interface 0: OUT with `data`, or IN of up to
/// 64 bytes.
fn req<E>(
    d: &mut impl Core<E>,
    e: &mut E,
    now: Instant,
    r: Request,
    value: u16,
    data: &[u8],
) -> Reply {
    let len = if r.is_in() { 64 } else { data.len() as u16 };
    let mut buf = [0u8; 64];
    d.control(now, &SetupPacket::dfu(r, value, 0, len), data, &mut buf, e)
}

/// UPLOAD of `buf.len()` bytes at `block`.
fn upload<E>(d: &mut impl Core<E>, e: &mut E, now: Instant, block: u16, buf: &mut [u8]) -> Reply {
    let setup = SetupPacket::dfu(Request::Upload, block, 0, buf.len() as u16);
    d.control(now, &setup, &[], buf, e)
}

/// GETSTATUS, which must be answered.
fn status<E>(d: &mut impl Core<E>, e: &mut E, now: Instant) -> GetStatus {
    let mut buf = [0u8; 6];
    let r = d.control(
        now,
        &SetupPacket::dfu(Request::GetStatus, 0, 0, 6),
        &[],
        &mut buf,
        e,
    );
    assert_eq!(r, Reply::In(6));
    GetStatus::from_bytes(&buf).unwrap()
}
