//! Receive pools and data writes: each transport stores a WRITE in a buffer
//! of its own pool, which stays taken until the flash has stored it.

use super::jobs::{Job, Source, Step};
use super::{Answers, Bootloader, Busy, Current, Mode, RESERVED_JOBS};
use crate::proto::{Opcode, Response, ResultCode};
use dfukit_core::crc::crc32;

/// The serial transport's receive pool: 4 buffers of 1024 bytes (USB CDC
/// `RX_BUF_SIZE`; the SDK's serial default is 3 buffers, one more lets a
/// write be received while the previous object's last page is programmed).
pub const SERIAL_RX: RxPool = RxPool {
    buffers: 4,
    size: 1024,
};
/// The BLE transport's receive pool, as `nrf_dfu_ble.c` sizes it:
/// `MAX_DFU_BUFFERS = CODE_PAGE_SIZE / MAX_DFU_PKT_LEN + 1` buffers of
/// `MAX_DFU_PKT_LEN = NRF_SDH_BLE_GATT_MAX_MTU_SIZE - 3` bytes; with the
/// SDK's ATT MTU of 247 that is 4096 / 244 + 1 = 17 buffers of 244 bytes,
/// one data object and one write more.
pub const BLE_RX: RxPool = RxPool {
    buffers: 17,
    size: 244,
};
pub(super) const RX_SLOTS: usize = SERIAL_RX.buffers as usize + BLE_RX.buffers as usize;
pub(super) const RX_BYTES: usize = SERIAL_RX.bytes() + BLE_RX.bytes();

/// A transport's pool of receive buffers. Each transport of an SDK
/// bootloader allocates its own (`nrf_balloc` pools in `nrf_dfu_serial.c`
/// and `nrf_dfu_ble.c`); a data write holds one buffer until its flash
/// write completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxPool {
    /// Number of buffers.
    pub buffers: u8,
    /// Bytes per buffer: the largest write the transport takes.
    pub size: u16,
}

impl RxPool {
    const fn bytes(self) -> usize {
        self.buffers as usize * self.size as usize
    }
}

/// The transport a request came in on: it decides which receive pool a
/// data write is stored in.
///
/// Named for what it selects here, a receive pool: the links themselves
/// (SLIP serial, BLE) live elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxTransport {
    /// UART or USB CDC ACM, SLIP framed ([`SERIAL_RX`]).
    Serial,
    /// BLE, the DFU Packet characteristic ([`BLE_RX`]).
    Ble,
}

impl RxTransport {
    /// The pool this transport receives into.
    pub const fn pool(self) -> RxPool {
        match self {
            RxTransport::Serial => SERIAL_RX,
            RxTransport::Ble => BLE_RX,
        }
    }

    /// The pool's slots in the bootloader's buffer table, and the byte offset
    /// of its first buffer in the RX memory.
    const fn slots(self) -> (core::ops::Range<usize>, usize) {
        let serial = SERIAL_RX.buffers as usize;
        match self {
            RxTransport::Serial => (0..serial, 0),
            RxTransport::Ble => (serial..RX_SLOTS, SERIAL_RX.bytes()),
        }
    }
}

/// Where receive buffer `slot` starts in the RX memory.
fn rx_at(slot: u8) -> usize {
    let slot = slot as usize;
    let t = if slot < SERIAL_RX.buffers as usize {
        RxTransport::Serial
    } else {
        RxTransport::Ble
    };
    let (range, base) = t.slots();
    base + (slot - range.start) * t.pool().size as usize
}

/// `len` bytes from `start` of receive buffer `slot`. A free function, so
/// that callers can borrow other fields of the bootloader mutably meanwhile.
pub(super) fn rx_bytes(rx: &[u8; RX_BYTES], slot: u8, start: u16, len: usize) -> &[u8] {
    let at = rx_at(slot) + start as usize;
    &rx[at..at + len]
}

/// The programs that store `len` bytes of receive buffer `buf` at `addr`,
/// split at `page` boundaries (a program never crosses one), in address
/// order.
fn page_programs(buf: u8, addr: u32, len: u32, page: u32) -> impl Iterator<Item = Job> {
    let end = addr + len;
    let mut a = addr;
    core::iter::from_fn(move || {
        (a < end).then(|| {
            let n = (page - a % page).min(end - a);
            let job = Job::Program {
                addr: a,
                len: n,
                src: Source::Rx {
                    buf,
                    start: (a - addr) as u16,
                },
            };
            a += n;
            job
        })
    })
}

impl Bootloader {
    /// A WRITE arrives: its bytes go into a receive buffer of its
    /// transport's pool now, and it is processed in order with the requests
    /// around it ([`Step::Write`]). A host may send an object's writes right
    /// behind its CREATE, which runs only when the work before it is done.
    pub(super) fn on_write(&mut self, transport: RxTransport, data: &[u8]) -> Result<(), Busy> {
        if data.len() > usize::from(transport.pool().size) {
            return self.queue_step(Step::Respond(Response::error(
                Opcode::ObjectWrite,
                ResultCode::InsufficientResources,
            )));
        }
        let (slots, _) = transport.slots();
        let Some(buf) = slots.clone().find(|&i| !self.rx_used[i]) else {
            return Err(Busy);
        };
        // The step itself; its expansion (page programs, release, receipt
        // notification) comes out of the reserve when it runs.
        if !self.has_room(1) {
            return Err(Busy);
        }
        self.rx_used[buf] = true;
        let at = rx_at(buf as u8);
        self.rx[at..at + data.len()].copy_from_slice(data);
        self.push(Job::Step(Step::Write {
            buf: buf as u8,
            len: data.len() as u16,
        }));
        Ok(())
    }

    /// A WRITE's turn: check it against the object it belongs to, then
    /// queue its page programs (holding its buffer) to run next.
    pub(super) fn run_write(&mut self, buf: u8, len: u16) {
        let len32 = u32::from(len);
        let reject = match self.current {
            _ if self.mode != Mode::Dfu => Some(ResultCode::OperationNotPermitted),
            Current::None => Some(ResultCode::OperationNotPermitted),
            Current::Command => {
                // The init packet is kept in RAM (the settings copy) until EXECUTE.
                let p = &mut self.settings.progress;
                let end = p.command_offset as usize + usize::from(len);
                if end > p.command_size as usize {
                    Some(ResultCode::InvalidParameter)
                } else {
                    let data = rx_bytes(&self.rx, buf, 0, usize::from(len));
                    self.settings.init_command[p.command_offset as usize..end]
                        .copy_from_slice(data);
                    p.command_crc = crc32(p.command_crc, data);
                    p.command_offset = end as u32;
                    self.done_without_flash(buf);
                    return;
                }
            }
            Current::Data if !self.init_accepted => Some(ResultCode::OperationNotPermitted),
            Current::Data if self.recv_offset + len32 > self.object_end => {
                Some(ResultCode::InvalidParameter)
            }
            Current::Data if !len32.is_multiple_of(self.bank1_write_unit()) => {
                Some(ResultCode::InvalidParameter)
            }
            Current::Data => None,
        };
        if let Some(code) = reject {
            self.rx_used[buf as usize] = false;
            self.respond(Response::error(Opcode::ObjectWrite, code));
            return;
        }
        if self.fault.is_some() {
            // Nothing can be stored. CRC_GET and EXECUTE report the fault, and
            // so does the receipt notification a PRN host is waiting for.
            self.done_without_flash(buf);
            return;
        }
        // Data is going into bank 1: nothing there counts as erased ahead
        // any more (CREATE consumed the range already; this covers a host
        // that writes without a CREATE after EXECUTE).
        self.erased_ahead = None;
        let page = self.bank1_program_page();
        let addr = self.bank1_addr + self.recv_offset;
        self.recv_offset += len32;
        // The page programs, then the buffer's release. `Bootloader::new`
        // checks that the largest write's jobs fit in the reserve.
        let mut jobs: heapless::Vec<Job, RESERVED_JOBS> = heapless::Vec::new();
        for job in page_programs(buf, addr, len32, page).chain([Job::Step(Step::Release(buf))]) {
            jobs.push(job).expect("a write's jobs fit the reserve");
        }
        match self.cfg.answers {
            Answers::Stored => {
                // To run next, with a receipt notification behind them if
                // this write completes a PRN interval: sent once it is stored.
                if let Some(notify) = self.count_prn() {
                    jobs.push(notify).expect("a write's jobs fit the reserve");
                }
                self.push_front_all(&jobs);
            }
            Answers::Received => {
                // The write counts now (offset and CRC, as the SDK's
                // `on_data_obj_write_request` computes them before handing
                // the data to the flash); its jobs go to the back of the
                // flash queue; a receipt notification goes out at once.
                let data = rx_bytes(&self.rx, buf, 0, usize::from(len));
                let p = &mut self.settings.progress;
                p.firmware_image_crc = crc32(p.firmware_image_crc, data);
                p.firmware_image_offset += len32;
                for job in jobs {
                    self.push(job);
                }
                if let Some(notify) = self.count_prn() {
                    self.push_front(notify);
                }
            }
        }
    }

    /// A write that needs no flash (the init packet, or nothing can be
    /// stored): its buffer is free at once; a receipt notification it
    /// completes is sent next.
    fn done_without_flash(&mut self, buf: u8) {
        self.rx_used[buf as usize] = false;
        if let Some(notify) = self.count_prn() {
            self.push_front(notify);
        }
    }

    /// Counts a write towards the packet receipt notification; the
    /// notification step when one is due.
    fn count_prn(&mut self) -> Option<Job> {
        self.prn_count = self.prn_count.wrapping_add(1);
        if self.prn == 0 || self.prn_count < self.prn {
            return None;
        }
        self.prn_count = 0;
        Some(Job::Step(Step::PrnCrc))
    }
}
