//! Direct state-machine tests of both device cores; host-driven scenarios
//! are in `tests/host_device.rs`.

use super::Reply;
use crate::wire::{DfuRequest, DfuSetup, GetStatus, SetupPacket};

mod flash;
mod stream;

/// One control request to a device core, with what the core reads from
/// (flash memory, a stream back end) and the time bound in.
type Control<'a> = dyn FnMut(&SetupPacket, &[u8], &mut [u8]) -> Reply + 'a;

/// Request `r` with `value` on interface 0: OUT with `data`, or IN of up to
/// 64 bytes.
fn req(c: &mut Control<'_>, r: DfuRequest, value: u16, data: &[u8]) -> Reply {
    let len = if r.is_in() { 64 } else { data.len() as u16 };
    let mut buf = [0u8; 64];
    c(&SetupPacket::dfu(r, value, 0, len), data, &mut buf)
}

/// UPLOAD of `buf.len()` bytes at `block`.
fn upload(c: &mut Control<'_>, block: u16, buf: &mut [u8]) -> Reply {
    c(
        &SetupPacket::dfu(DfuRequest::Upload, block, 0, buf.len() as u16),
        &[],
        buf,
    )
}

/// GETSTATUS, which must be answered.
fn status(c: &mut Control<'_>) -> GetStatus {
    let mut buf = [0u8; 6];
    let r = c(
        &SetupPacket::dfu(DfuRequest::GetStatus, 0, 0, 6),
        &[],
        &mut buf,
    );
    assert_eq!(r, Reply::In(6));
    GetStatus::from_bytes(&buf).unwrap()
}
