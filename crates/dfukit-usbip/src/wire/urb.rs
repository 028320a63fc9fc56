//! URB messages (`USBIP_CMD_SUBMIT` / `USBIP_RET_SUBMIT`, `USBIP_CMD_UNLINK` /
//! `USBIP_RET_UNLINK`), exchanged after a successful import: a 48-byte header that starts with
//! the 20-byte [`HeaderBasic`], followed by the transfer buffer, if any.

use super::codec::{put_u32s, Reader};
use super::{
    UsbipWireError, MAX_TRANSFER_LEN, NOT_ISO, URB_HEADER_LEN, USBIP_CMD_SUBMIT, USBIP_CMD_UNLINK,
    USBIP_RET_SUBMIT, USBIP_RET_UNLINK,
};

/// Transfer direction in URB headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// Host to device (`USBIP_DIR_OUT`, 0).
    #[default]
    Out,
    /// Device to host (`USBIP_DIR_IN`, 1).
    In,
}

impl Direction {
    /// Wire value.
    pub fn to_u32(self) -> u32 {
        match self {
            Direction::Out => 0,
            Direction::In => 1,
        }
    }
}

/// The 20-byte `usbip_header_basic` shared by all URB messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeaderBasic {
    /// `USBIP_CMD_*` or `USBIP_RET_*`.
    pub command: u32,
    /// Sequence number of the request (replies echo it).
    pub seqnum: u32,
    /// `(busnum << 16) | devnum` from the client; 0 from the server.
    pub devid: u32,
    /// Direction (client only; 0 from the server).
    pub direction: Direction,
    /// Endpoint number without the direction bit (client only; 0 from the server and in UNLINK).
    pub ep: u32,
}

/// The basic header of `$msg`, any of the four message structs (which all carry `seqnum`,
/// `devid`, `direction` and `ep`), as a `$command` message.
macro_rules! basic_header {
    ($msg:expr, $command:expr) => {
        HeaderBasic {
            command: $command,
            seqnum: $msg.seqnum,
            devid: $msg.devid,
            direction: $msg.direction,
            ep: $msg.ep,
        }
    };
}

impl HeaderBasic {
    /// A message buffer of `capacity` bytes that starts with this header.
    fn start_message(&self, capacity: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(capacity);
        put_u32s(
            &mut out,
            &[
                self.command,
                self.seqnum,
                self.devid,
                self.direction.to_u32(),
                self.ep,
            ],
        );
        out
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, UsbipWireError> {
        let command = r.u32("command")?;
        let seqnum = r.u32("seqnum")?;
        let devid = r.u32("devid")?;
        let dir_offset = r.pos;
        let direction = match r.u32("direction")? {
            0 => Direction::Out,
            1 => Direction::In,
            found => {
                return Err(UsbipWireError::OutOfRange {
                    message: r.message,
                    field: "direction",
                    offset: dir_offset,
                    found,
                })
            }
        };
        let ep_offset = r.pos;
        let ep = r.u32("ep")?;
        if ep > 15 {
            return Err(UsbipWireError::OutOfRange {
                message: r.message,
                field: "ep",
                offset: ep_offset,
                found: ep,
            });
        }
        Ok(HeaderBasic {
            command,
            seqnum,
            devid,
            direction,
            ep,
        })
    }

    /// Read the basic header of a message that must be a `command`.
    fn read_command(r: &mut Reader<'_>, command: u32) -> Result<Self, UsbipWireError> {
        let h = Self::read(r)?;
        if h.command != command {
            return Err(UsbipWireError::UnexpectedValue {
                message: r.message,
                field: "command",
                offset: 0,
                expected: command,
                found: h.command,
            });
        }
        Ok(h)
    }

    /// Decode the basic header from the first 20 bytes of a URB message header (at least 20
    /// bytes must be given; the rest is ignored). Useful to dispatch on `command`.
    pub fn peek(buf: &[u8]) -> Result<Self, UsbipWireError> {
        let mut r = Reader::new("usbip_header_basic", buf);
        Self::read(&mut r)
    }
}

fn check_not_iso(message: &'static str, packets: u32) -> Result<(), UsbipWireError> {
    if packets != 0 && packets != NOT_ISO {
        return Err(UsbipWireError::IsochronousUnsupported { message, packets });
    }
    Ok(())
}

fn check_len(
    message: &'static str,
    field: &'static str,
    offset: usize,
    len: u32,
) -> Result<(), UsbipWireError> {
    if len > MAX_TRANSFER_LEN {
        return Err(UsbipWireError::OutOfRange {
            message,
            field,
            offset,
            found: len,
        });
    }
    Ok(())
}

/// Read the four words both SUBMIT messages have after the basic header: `first`
/// (`transfer_flags` or `status`), the buffer length `len_field` (bounded by
/// [`MAX_TRANSFER_LEN`]), `start_frame` and `number_of_packets` (isochronous is refused).
fn read_submit_words(
    r: &mut Reader<'_>,
    first: &'static str,
    len_field: &'static str,
) -> Result<[u32; 4], UsbipWireError> {
    let first = r.u32(first)?;
    let len = r.u32(len_field)?;
    check_len(r.message, len_field, 0x18, len)?;
    let start_frame = r.u32("start_frame")?;
    let number_of_packets = r.u32("number_of_packets")?;
    check_not_iso(r.message, number_of_packets)?;
    Ok([first, len, start_frame, number_of_packets])
}

/// Both SUBMIT messages: the basic header, five words, the 8-byte setup field, the data.
fn encode_submit(basic: HeaderBasic, words: [u32; 5], setup: &[u8; 8], data: &[u8]) -> Vec<u8> {
    let mut out = basic.start_message(URB_HEADER_LEN + data.len());
    put_u32s(&mut out, &words);
    out.extend_from_slice(setup);
    out.extend_from_slice(data);
    out
}

/// Both UNLINK messages: the basic header, one word, 24 bytes of padding.
fn encode_unlink(basic: HeaderBasic, word: u32) -> Vec<u8> {
    let mut out = basic.start_message(URB_HEADER_LEN);
    put_u32s(&mut out, &[word]);
    out.extend_from_slice(&[0u8; 24]);
    out
}

/// Decode exactly one UNLINK message of type `command`; returns its header and its word.
fn decode_unlink(
    message: &'static str,
    command: u32,
    word: &'static str,
    buf: &[u8],
) -> Result<(HeaderBasic, u32), UsbipWireError> {
    Reader::whole(message, buf, |r| {
        let h = HeaderBasic::read_command(r, command)?;
        let word = r.u32(word)?;
        r.skip("padding", 24)?;
        Ok((h, word))
    })
}

/// `USBIP_CMD_SUBMIT`: submit a URB. Isochronous transfers are not supported.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CmdSubmit {
    /// Sequence number, increasing per connection.
    pub seqnum: u32,
    /// `(busnum << 16) | devnum` of the imported device.
    pub devid: u32,
    /// Transfer direction.
    pub direction: Direction,
    /// Endpoint number (0 = control).
    pub ep: u32,
    /// URB transfer flags (Linux `URB_*`).
    pub transfer_flags: u32,
    /// Transfer buffer length: bytes sent (OUT) or the most bytes wanted (IN).
    pub transfer_buffer_length: u32,
    /// Start frame (ISO only; 0 otherwise).
    pub start_frame: u32,
    /// Number of ISO packets; [`NOT_ISO`] (or 0, as Linux' vhci sends) otherwise.
    pub number_of_packets: u32,
    /// Polling interval.
    pub interval: u32,
    /// The 8-byte USB setup packet, in USB (little-endian) order; zero if not a control transfer.
    pub setup: [u8; 8],
    /// OUT data (`transfer_buffer_length` bytes); empty for IN.
    pub data: Vec<u8>,
}

impl CmdSubmit {
    /// Encode header and data. `data.len()` must equal `transfer_buffer_length` for OUT and be
    /// zero for IN; this is the caller's job and not re-checked here.
    pub fn encode(&self) -> Vec<u8> {
        let words = [
            self.transfer_flags,
            self.transfer_buffer_length,
            self.start_frame,
            self.number_of_packets,
            self.interval,
        ];
        encode_submit(
            basic_header!(self, USBIP_CMD_SUBMIT),
            words,
            &self.setup,
            &self.data,
        )
    }

    /// Bytes that follow a `CMD_SUBMIT` header: `transfer_buffer_length` for OUT, 0 for IN.
    /// `header` must hold the 48-byte header.
    pub fn payload_len(header: &[u8]) -> Result<usize, UsbipWireError> {
        let mut r = Reader::new("USBIP_CMD_SUBMIT", header);
        let h = HeaderBasic::read_command(&mut r, USBIP_CMD_SUBMIT)?;
        let [_, len, _, _] = read_submit_words(&mut r, "transfer_flags", "transfer_buffer_length")?;
        Ok(match h.direction {
            Direction::Out => len as usize,
            Direction::In => 0,
        })
    }

    /// Decode a complete message (header plus OUT data).
    pub fn decode(buf: &[u8]) -> Result<Self, UsbipWireError> {
        let mut r = Reader::new("USBIP_CMD_SUBMIT", buf);
        let h = HeaderBasic::read_command(&mut r, USBIP_CMD_SUBMIT)?;
        let [transfer_flags, transfer_buffer_length, start_frame, number_of_packets] =
            read_submit_words(&mut r, "transfer_flags", "transfer_buffer_length")?;
        let interval = r.u32("interval")?;
        let mut setup = [0u8; 8];
        setup.copy_from_slice(r.take("setup", 8)?);
        let data = match h.direction {
            Direction::Out => r
                .take("transfer_buffer", transfer_buffer_length as usize)?
                .to_vec(),
            Direction::In => Vec::new(),
        };
        r.finish()?;
        Ok(CmdSubmit {
            seqnum: h.seqnum,
            devid: h.devid,
            direction: h.direction,
            ep: h.ep,
            transfer_flags,
            transfer_buffer_length,
            start_frame,
            number_of_packets,
            interval,
            setup,
            data,
        })
    }
}

/// `USBIP_RET_SUBMIT`: the result of a submitted URB.
///
/// The server sends `direction` 0 and `ep` 0, so whether data follows the header depends on the
/// direction of the *request*: decoding needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetSubmit {
    /// Sequence number of the `CMD_SUBMIT` this answers.
    pub seqnum: u32,
    /// 0 from a server.
    pub devid: u32,
    /// 0 from a server.
    pub direction: Direction,
    /// 0 from a server.
    pub ep: u32,
    /// 0 on success, else a negative Linux errno (`-EPIPE` = stall, see `STATUS_*`).
    pub status: i32,
    /// Bytes transferred.
    pub actual_length: u32,
    /// Start frame (ISO only).
    pub start_frame: u32,
    /// [`NOT_ISO`] for non-isochronous transfers.
    pub number_of_packets: u32,
    /// ISO error count.
    pub error_count: u32,
    /// IN data (`actual_length` bytes); empty for OUT.
    pub data: Vec<u8>,
}

impl RetSubmit {
    /// Encode header and data. For IN requests `data.len()` must equal `actual_length`.
    pub fn encode(&self) -> Vec<u8> {
        let words = [
            self.status as u32,
            self.actual_length,
            self.start_frame,
            self.number_of_packets,
            self.error_count,
        ];
        // The setup field is padding in a reply.
        encode_submit(
            basic_header!(self, USBIP_RET_SUBMIT),
            words,
            &[0u8; 8],
            &self.data,
        )
    }

    /// Bytes following a `RET_SUBMIT` header answering a request in `request_direction`:
    /// `actual_length` for IN, 0 for OUT.
    pub fn payload_len(
        header: &[u8],
        request_direction: Direction,
    ) -> Result<usize, UsbipWireError> {
        let mut r = Reader::new("USBIP_RET_SUBMIT", header);
        HeaderBasic::read_command(&mut r, USBIP_RET_SUBMIT)?;
        let [_, len, _, _] = read_submit_words(&mut r, "status", "actual_length")?;
        Ok(match request_direction {
            Direction::In => len as usize,
            Direction::Out => 0,
        })
    }

    /// Decode a complete message answering a request in `request_direction`.
    pub fn decode(buf: &[u8], request_direction: Direction) -> Result<Self, UsbipWireError> {
        let mut r = Reader::new("USBIP_RET_SUBMIT", buf);
        let h = HeaderBasic::read_command(&mut r, USBIP_RET_SUBMIT)?;
        let [status, actual_length, start_frame, number_of_packets] =
            read_submit_words(&mut r, "status", "actual_length")?;
        let error_count = r.u32("error_count")?;
        r.skip("padding", 8)?;
        let data = match request_direction {
            Direction::In => r.take("transfer_buffer", actual_length as usize)?.to_vec(),
            Direction::Out => Vec::new(),
        };
        r.finish()?;
        Ok(RetSubmit {
            seqnum: h.seqnum,
            devid: h.devid,
            direction: h.direction,
            ep: h.ep,
            status: status as i32,
            actual_length,
            start_frame,
            number_of_packets,
            error_count,
            data,
        })
    }
}

/// `USBIP_CMD_UNLINK`: cancel the URB submitted with `unlink_seqnum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CmdUnlink {
    /// Sequence number of this command (a fresh one, not the target's).
    pub seqnum: u32,
    /// `(busnum << 16) | devnum`.
    pub devid: u32,
    /// Direction (Linux' vhci copies the target URB's; informational).
    pub direction: Direction,
    /// Endpoint; 0 per the spec.
    pub ep: u32,
    /// Sequence number of the `CMD_SUBMIT` to cancel.
    pub unlink_seqnum: u32,
}

impl CmdUnlink {
    /// Encode the 48 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let basic = basic_header!(self, USBIP_CMD_UNLINK);
        encode_unlink(basic, self.unlink_seqnum)
    }

    /// Decode exactly 48 bytes.
    pub fn decode(buf: &[u8]) -> Result<Self, UsbipWireError> {
        let (h, unlink_seqnum) =
            decode_unlink("USBIP_CMD_UNLINK", USBIP_CMD_UNLINK, "unlink_seqnum", buf)?;
        Ok(CmdUnlink {
            seqnum: h.seqnum,
            devid: h.devid,
            direction: h.direction,
            ep: h.ep,
            unlink_seqnum,
        })
    }
}

/// `USBIP_RET_UNLINK`: the answer to `CMD_UNLINK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetUnlink {
    /// Sequence number of the `CMD_UNLINK` this answers.
    pub seqnum: u32,
    /// 0 from a server.
    pub devid: u32,
    /// 0 from a server.
    pub direction: Direction,
    /// 0 from a server.
    pub ep: u32,
    /// [`STATUS_UNLINKED`](super::STATUS_UNLINKED) (`-ECONNRESET`) if the URB was cancelled (no `RET_SUBMIT` follows for
    /// it); 0 if it had already completed.
    pub status: i32,
}

impl RetUnlink {
    /// Encode the 48 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let basic = basic_header!(self, USBIP_RET_UNLINK);
        encode_unlink(basic, self.status as u32)
    }

    /// Decode exactly 48 bytes.
    pub fn decode(buf: &[u8]) -> Result<Self, UsbipWireError> {
        let (h, status) = decode_unlink("USBIP_RET_UNLINK", USBIP_RET_UNLINK, "status", buf)?;
        Ok(RetUnlink {
            seqnum: h.seqnum,
            devid: h.devid,
            direction: h.direction,
            ep: h.ep,
            status: status as i32,
        })
    }
}
