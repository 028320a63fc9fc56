//! The encoder, byte-compatible with protobuf's Python serializer as nrfutil uses it.

use super::{InitCommand, SignatureType, OP_CODE_INIT, WT_LEN, WT_VARINT};

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut impl FnMut(&[u8]), mut v: u64) {
    let mut buf = [0u8; 10];
    let mut n = 0;
    loop {
        let b = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            buf[n] = b;
            n += 1;
            break;
        }
        buf[n] = b | 0x80;
        n += 1;
    }
    out(&buf[..n]);
}

fn put_key(out: &mut impl FnMut(&[u8]), field: u32, wt: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wt));
}

fn put_uint(out: &mut impl FnMut(&[u8]), field: u32, v: u64) {
    put_key(out, field, WT_VARINT);
    put_varint(out, v);
}

fn put_bytes(out: &mut impl FnMut(&[u8]), field: u32, b: &[u8]) {
    put_key(out, field, WT_LEN);
    put_varint(out, b.len() as u64);
    out(b);
}

fn uint_field_len(field: u32, v: u64) -> usize {
    varint_len(u64::from(field) << 3) + varint_len(v)
}

fn bytes_field_len(field: u32, len: usize) -> usize {
    varint_len(u64::from(field) << 3) + varint_len(len as u64) + len
}

/// The length of a `Hash` or `BootValidation` message body: both are an
/// enum as field 1 and bytes as field 2.
fn kind_bytes_len(kind: u32, bytes: &[u8]) -> usize {
    uint_field_len(1, u64::from(kind)) + bytes_field_len(2, bytes.len())
}

/// Writes a `Hash` or `BootValidation` message as field `field`.
fn put_kind_bytes(out: &mut impl FnMut(&[u8]), field: u32, kind: u32, bytes: &[u8]) {
    put_key(out, field, WT_LEN);
    put_varint(out, kind_bytes_len(kind, bytes) as u64);
    put_uint(out, 1, u64::from(kind));
    put_bytes(out, 2, bytes);
}

impl InitCommand {
    fn sd_req_payload_len(&self) -> usize {
        self.sd_req.iter().map(|&v| varint_len(u64::from(v))).sum()
    }

    /// Length of the serialized `InitCommand`.
    pub fn encoded_len(&self) -> usize {
        let mut n = 0;
        let opt = |field: u32, v: Option<u64>| v.map_or(0, |v| uint_field_len(field, v));
        n += opt(1, self.fw_version.map(u64::from));
        n += opt(2, self.hw_version.map(u64::from));
        if !self.sd_req.is_empty() {
            n += bytes_field_len(3, self.sd_req_payload_len());
        }
        n += opt(4, self.fw_type.map(|t| u64::from(t.as_u32())));
        n += opt(5, self.sd_size.map(u64::from));
        n += opt(6, self.bl_size.map(u64::from));
        n += opt(7, self.app_size.map(u64::from));
        if let Some(h) = &self.hash {
            n += bytes_field_len(8, kind_bytes_len(h.hash_type.as_u32(), &h.hash));
        }
        n += opt(9, self.is_debug.map(u64::from));
        for bv in &self.boot_validation {
            n += bytes_field_len(10, kind_bytes_len(bv.kind.as_u32(), &bv.bytes));
        }
        n
    }

    /// Serializes the `InitCommand` the way protobuf's Python serializer does: fields in
    /// field-number order, present optional fields written even when they hold the default
    /// value (proto2 presence), `sd_req` packed. Output is delivered in pieces to `out`.
    pub fn encode(&self, out: &mut impl FnMut(&[u8])) {
        if let Some(v) = self.fw_version {
            put_uint(out, 1, u64::from(v));
        }
        if let Some(v) = self.hw_version {
            put_uint(out, 2, u64::from(v));
        }
        if !self.sd_req.is_empty() {
            put_key(out, 3, WT_LEN);
            put_varint(out, self.sd_req_payload_len() as u64);
            for &v in &self.sd_req {
                put_varint(out, u64::from(v));
            }
        }
        if let Some(t) = self.fw_type {
            put_uint(out, 4, u64::from(t.as_u32()));
        }
        if let Some(v) = self.sd_size {
            put_uint(out, 5, u64::from(v));
        }
        if let Some(v) = self.bl_size {
            put_uint(out, 6, u64::from(v));
        }
        if let Some(v) = self.app_size {
            put_uint(out, 7, u64::from(v));
        }
        if let Some(h) = &self.hash {
            put_kind_bytes(out, 8, h.hash_type.as_u32(), &h.hash);
        }
        if let Some(d) = self.is_debug {
            put_uint(out, 9, u64::from(d));
        }
        for bv in &self.boot_validation {
            put_kind_bytes(out, 10, bv.kind.as_u32(), &bv.bytes);
        }
    }

    /// Serializes into `buf`, returning the number of bytes written, or `None` if `buf` is
    /// shorter than [`InitCommand::encoded_len`].
    pub fn encode_to_slice(&self, buf: &mut [u8]) -> Option<usize> {
        let len = self.encoded_len();
        if buf.len() < len {
            return None;
        }
        let mut pos = 0;
        self.encode(&mut |chunk: &[u8]| {
            buf[pos..pos + chunk.len()].copy_from_slice(chunk);
            pos += chunk.len();
        });
        Some(pos)
    }

    /// Length of the serialized `dfu.Command { op_code: INIT, init: self }`.
    fn command_len(&self) -> usize {
        uint_field_len(1, u64::from(OP_CODE_INIT)) + bytes_field_len(2, self.encoded_len())
    }

    fn encode_command(&self, out: &mut impl FnMut(&[u8])) {
        put_uint(out, 1, u64::from(OP_CODE_INIT));
        put_key(out, 2, WT_LEN);
        put_varint(out, self.encoded_len() as u64);
        self.encode(out);
    }

    /// Writes a whole init packet (`dfu.Packet`) to `out`: unsigned → `Packet.command`,
    /// signed → `Packet.signed_command { command, signature_type, signature }`, exactly as
    /// nrfutil frames it.
    pub fn encode_packet_to(
        &self,
        signature: Option<(SignatureType, &[u8])>,
        out: &mut impl FnMut(&[u8]),
    ) {
        match signature {
            None => {
                put_key(out, 1, WT_LEN);
                put_varint(out, self.command_len() as u64);
                self.encode_command(out);
            }
            Some((kind, sig)) => {
                let inner = bytes_field_len(1, self.command_len())
                    + uint_field_len(2, u64::from(kind.as_u32()))
                    + bytes_field_len(3, sig.len());
                put_key(out, 2, WT_LEN);
                put_varint(out, inner as u64);
                put_key(out, 1, WT_LEN);
                put_varint(out, self.command_len() as u64);
                self.encode_command(out);
                put_uint(out, 2, u64::from(kind.as_u32()));
                put_bytes(out, 3, sig);
            }
        }
    }
}

/// Serializes a whole init packet exactly as nrfutil writes the `.dat` file.
#[cfg(feature = "std")]
pub fn encode_packet(cmd: &InitCommand, signature: Option<(SignatureType, &[u8])>) -> Vec<u8> {
    let mut v = Vec::new();
    cmd.encode_packet_to(signature, &mut |c: &[u8]| v.extend_from_slice(c));
    v
}

/// Serializes an `InitCommand` alone (the bytes a signature covers).
#[cfg(feature = "std")]
pub fn encode_init_command(cmd: &InitCommand) -> Vec<u8> {
    let mut v = Vec::with_capacity(cmd.encoded_len());
    cmd.encode(&mut |c: &[u8]| v.extend_from_slice(c));
    v
}
