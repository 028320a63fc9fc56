//! U-Boot's `stm32prog` in [`Stm32mpDevice`]: the layout's manifestation,
//! the device initialisation at DETACH, partition downloads and uploads,
//! phase commands on 0xF1, OTP and PMIC, and the first-error-only phase
//! 0xFF (`stm32prog_err`).

use super::board::{BoardStorageError, Geometry, Stm32mpBoard};
use super::flashlayout::{self, Medium, UbootPartition};
use super::text::ErrorText;
use super::{header, table, Stm32mpDevice, OTP_LEN, PMIC_LEN};
use crate::phase::{self, ID_FLASHLAYOUT, ID_OTP, PHASE_END, PHASE_ERROR};
use core::fmt;
use core::time::Duration;
use dfukit_usbdfu::wire::Status;

impl<B: Stm32mpBoard> Stm32mpDevice<B> {
    /// `stm32prog_err`: phase 0xFF with `msg`, unless an error is set.
    fn fail(&mut self, msg: ErrorText) {
        if self.phase != PHASE_ERROR {
            self.board.log(format_args!("stm32prog error: {msg}"));
            self.error = msg;
            self.phase = PHASE_ERROR;
        }
    }

    pub(super) fn fail_with(&mut self, args: fmt::Arguments<'_>) {
        self.fail(ErrorText::from_fmt(args));
    }

    fn is_done(&self, id: u8) -> bool {
        self.done[usize::from(id / 32)] & (1 << (id % 32)) != 0
    }

    /// Selects the lowest-Id partition still to download.
    pub(super) fn next_phase(&mut self) {
        let next = self
            .alts
            .iter()
            .map(|&r| self.row(r))
            .find(|p| p.option.downloads() && !self.is_done(p.id))
            .map_or(PHASE_END, |p| p.id);
        self.phase = next;
        self.offset = 0;
    }

    /// `stm32prog_dfu_init` at the DETACH after the layout. Returns the
    /// time the erases take; an error sets phase 0xFF and drops the layout.
    pub(super) fn init_devices(&mut self) -> Duration {
        let Some(layout) = self.layout.as_mut() else {
            return Duration::ZERO;
        };
        match table::devices_init(layout, &mut self.board) {
            Ok((devices, time)) => {
                self.alts.clear();
                for id in 1..=flashlayout::LAST_USER_ID {
                    let row = layout
                        .rows
                        .iter()
                        .position(|p| p.id == id && p.medium.medium != Medium::None);
                    if let Some(r) = row {
                        // Never full: one alt per row.
                        let _ = self.alts.push(r);
                    }
                }
                self.board.log(format_args!(
                    "stm32prog: {} partitions on {} devices",
                    self.alts.len(),
                    devices.len()
                ));
                self.done = [0; 8];
                self.next_phase();
                time
            }
            Err(msg) => {
                self.layout = None;
                self.alts.clear();
                self.fail(msg);
                Duration::ZERO
            }
        }
    }

    /// Manifestation of the flashlayout (`stm32prog_end_phase` in phase 0):
    /// parsed while the phase is still 0, as U-Boot's flush callback does.
    pub(super) fn layout_manifest(&mut self, total: u64) {
        if self.phase != ID_FLASHLAYOUT {
            return;
        }
        match flashlayout::parse_flash_layout(self.received(total)) {
            Ok(layout) => {
                self.board.log(format_args!(
                    "flashlayout received: {} partitions",
                    layout.rows.len()
                ));
                self.layout = Some(layout);
            }
            Err(msg) => self.fail(msg),
        }
    }

    /// A 5-byte DNLOAD to 0xF1 (`stm32prog_cmd_write`, `stm32prog_set_phase`).
    pub(super) fn command(&mut self, offset: u64, data: &[u8]) -> Result<Duration, Status> {
        let (p, addr) = phase::decode_command(data).ok_or(Status::ErrUnknown)?;
        if offset != 0 {
            return Err(Status::ErrUnknown);
        }
        if p == PHASE_ERROR {
            self.board.log(format_args!(
                "stm32prog: start of the application at {addr:#010x} requested (not run)"
            ));
            return Ok(Duration::ZERO);
        }
        let known = self
            .layout
            .as_ref()
            .is_some_and(|l| l.rows.iter().any(|r| r.id == p));
        if p != self.phase && !known {
            return Err(Status::ErrUnknown);
        }
        self.phase = p;
        self.offset = addr;
        self.board
            .log(format_args!("phase set to {p:#04x}, offset {addr:#x}"));
        Ok(Duration::ZERO)
    }

    fn storage_failed(&mut self, p: &UbootPartition, e: BoardStorageError<B::Error>) -> Status {
        match e {
            BoardStorageError::Absent => Status::ErrTarget,
            BoardStorageError::Failed { status, reason } => {
                self.fail_with(format_args!("{}: {reason}", p.label()));
                status
            }
        }
    }

    /// A block of a partition download.
    pub(super) fn partition_write(
        &mut self,
        alt: usize,
        off: u64,
        data: &[u8],
    ) -> Result<Duration, Status> {
        let p = self.row(self.alts[alt]).clone();
        if p.option.empty {
            return Err(Status::ErrWrite);
        }
        if off == 0 {
            // `dfu_initiated_callback`: a download of the current phase
            // resumes at the offset the host set on 0xF1.
            self.base = if p.id == self.phase {
                u64::from(self.offset)
            } else {
                0
            };
            self.board.begin_download(&p);
        }
        let pos = self.base + off;
        let end = pos + data.len() as u64;
        if end > p.size {
            self.fail_with(format_args!(
                "{}: image too large for partition: {end} > {} bytes",
                p.label(),
                p.size
            ));
            return Err(Status::ErrAddress);
        }
        self.board
            .write(&p, pos, data)
            .map_err(|e| self.storage_failed(&p, e))
    }

    /// End of a partition download (`stm32prog_end_phase`, then the next
    /// phase).
    pub(super) fn partition_manifest(
        &mut self,
        alt: usize,
        total: u64,
    ) -> Result<Duration, Status> {
        let p = self.row(self.alts[alt]).clone();
        let mut time = self
            .board
            .end_download(&p)
            .map_err(|e| self.storage_failed(&p, e))?;
        if p.copies > 1 {
            time += self.copy_fsbl(&p)?;
        }
        if let Some(boot) = p.boot_partition() {
            let n = p.medium.instance;
            if self.board.select_boot_partition(p.medium, boot).is_err() {
                self.fail_with(format_args!(
                    "commands 'mmc bootbus {n} 0 0 0; mmc partconf {n} 1 {boot} 0' failed"
                ));
                return Err(Status::ErrWrite);
            }
            self.board.log(format_args!(
                "{}: boot partition {boot} enabled (partconf 1 {boot} 0, bootbus 0 0 0)",
                p.medium
            ));
        }
        self.board.log(format_args!(
            "partition {} written: {total} bytes on {}",
            p.label(),
            p.medium
        ));
        self.done[usize::from(p.id / 32)] |= 1 << (p.id % 32);
        if self.phase != PHASE_ERROR {
            self.next_phase();
        }
        Ok(time)
    }

    /// `stm32prog_copy_fsbl` for `Binary(N)` on NAND: the image just
    /// written, its header read back from the partition, is copied N-1
    /// times, each copy a whole number of erase blocks after the previous.
    fn copy_fsbl(&mut self, p: &UbootPartition) -> Result<Duration, Status> {
        let failed = |dev: &mut Self| {
            dev.fail_with(format_args!("{}: copy of fsbl failed", p.label()));
            Status::ErrWrite
        };
        let Some(Geometry::Mtd { erase_size, .. }) = self.board.geometry(p.medium) else {
            return Err(failed(self));
        };
        // A v2 header is 512 bytes, more than v1's 256.
        let mut raw = [0u8; 512];
        let n = match self.board.read(p, 0, &mut raw) {
            Ok(n) => n,
            Err(_) => return Err(failed(self)),
        };
        let Some(h) = header::uboot_image(&raw[..n]) else {
            return Err(failed(self));
        };
        let size = (h.header_len + u64::from(h.image_length)).next_multiple_of(erase_size.max(1));
        let mut time = Duration::ZERO;
        for k in 1..u64::from(p.copies) {
            match self.board.copy_image(p, size, k * size) {
                Ok(t) => time += t,
                Err(_) => return Err(failed(self)),
            }
        }
        Ok(time)
    }

    /// Upload of a partition.
    pub(super) fn partition_read(
        &mut self,
        alt: usize,
        off: u64,
        buf: &mut [u8],
    ) -> Result<usize, Status> {
        let p = self.row(self.alts[alt]).clone();
        let n = p.size.saturating_sub(off).min(buf.len() as u64) as usize;
        // At or past the end the upload is over (a short reply ends it); the board is asked
        // only for bytes inside the partition, as its contract says.
        if n == 0 {
            return Ok(0);
        }
        self.board
            .read(&p, off, &mut buf[..n])
            .map_err(|_| Status::ErrFile)
    }

    pub(super) fn virtual_read(
        &mut self,
        id: u8,
        off: u64,
        buf: &mut [u8],
    ) -> Result<usize, Status> {
        let len = if id == ID_OTP { OTP_LEN } else { PMIC_LEN };
        let n = (len as u64).saturating_sub(off).min(buf.len() as u64) as usize;
        let buf = &mut buf[..n];
        let r = if id == ID_OTP {
            self.board.otp_read(off, buf)
        } else {
            self.board.pmic_read(off, buf)
        };
        r.map(|()| n).map_err(|_| Status::ErrFile)
    }

    pub(super) fn virtual_write(
        &mut self,
        id: u8,
        off: u64,
        data: &[u8],
    ) -> Result<Duration, Status> {
        let len = if id == ID_OTP { OTP_LEN } else { PMIC_LEN };
        if off + data.len() as u64 > len as u64 {
            return Err(Status::ErrAddress);
        }
        if id == ID_OTP {
            self.board
                .otp_write(off, data)
                .map_err(|_| Status::ErrWrite)?;
            self.board.log(format_args!(
                "OTP: {} bytes written at {off:#x}",
                data.len()
            ));
        } else {
            self.board
                .pmic_write(off, data)
                .map_err(|_| Status::ErrWrite)?;
            self.board
                .log(format_args!("PMIC NVM: {} bytes written", data.len()));
        }
        Ok(Duration::ZERO)
    }
}
