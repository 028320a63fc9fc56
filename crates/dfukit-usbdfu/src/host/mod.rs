//! The DFU 1.1 / DfuSe host: what dfu-util does, over a [`ControlTransfer`].
//!
//! The driver sends control requests through the trait and sleeps through
//! [`ControlTransfer::sleep`], so it runs over libusb/nusb, USB/IP, or an
//! in-process device core whose transport advances virtual time instead of
//! sleeping. Progress is reported as [`DfuEvent`] values; nothing is printed.
//!
//! Dialect safety: the host sends CLRSTATUS only when the device is in
//! dfuERROR. ST's stack and TF-A turn a CLRSTATUS in any other state into
//! dfuERROR/errUNKNOWN (the trap dfu-libusb#4 fell into).
//!
//! DfuSe downloads (the `download` module: [`DfuHost::dfuse_download_job`]
//! and the calls it is made of) check the whole image against the memory
//! layout before the first request, erase only the sectors the image
//! touches, then send SET_ADDRESS + one block (at block number 2) per
//! transfer-size chunk, as dfu-util does.

mod download;
mod error;
pub mod probe;

pub use download::{DfuseDownload, DfuseImage};
pub use error::{DfuHostError, DfuPhase, TransferError};

use crate::dfuse::{Access, Command, MemoryLayout, FIRST_DATA_BLOCK};
use crate::wire::{
    DfuRequest, DfuSetup, FunctionalDescriptor, GetStatus, SetupPacket, State, Status,
};
use dfukit_core::Clock;
use std::time::Duration;

/// The data stage of one control transfer.
#[derive(Debug)]
pub enum DataStage<'a> {
    /// Device to host: the answer goes into this buffer (its length is the
    /// most wanted).
    In(&'a mut [u8]),
    /// Host to device (or no data stage): these bytes go out.
    Out(&'a [u8]),
}

/// One control transfer: the setup stage, the data stage, and how long it
/// may take.
#[derive(Debug)]
pub struct ControlRequest<'a> {
    /// The setup stage as the host puts it on the wire.
    pub setup: SetupPacket,
    /// The data stage.
    pub data: DataStage<'a>,
    /// The transfer's time limit.
    pub timeout: Duration,
}

/// Control transfers on the DFU interface, and the [`Clock`] the host's
/// waits (bwPollTimeout) and time limits use: a real transport runs on the
/// wall clock (`impl WallTime`), a simulated one advances virtual time and
/// its device with it. There is no default.
pub trait ControlTransfer: Clock {
    /// One control transfer; returns the bytes moved in the data stage.
    fn control(&mut self, req: ControlRequest<'_>) -> Result<usize, TransferError>;

    /// A control transfer with an IN data stage; returns the bytes received.
    fn control_in(
        &mut self,
        setup: SetupPacket,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, TransferError> {
        self.control(ControlRequest {
            setup,
            data: DataStage::In(buf),
            timeout,
        })
    }

    /// A control transfer with an OUT (or no) data stage; returns the bytes sent.
    fn control_out(
        &mut self,
        setup: SetupPacket,
        data: &[u8],
        timeout: Duration,
    ) -> Result<usize, TransferError> {
        self.control(ControlRequest {
            setup,
            data: DataStage::Out(data),
            timeout,
        })
    }
}

/// Progress, reported as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DfuEvent {
    /// Erasing the sector at `addr`.
    Erase {
        /// Sector start.
        addr: u32,
        /// Sector size.
        len: u32,
    },
    /// Mass erase started.
    MassErase,
    /// `done` of `total` bytes downloaded and acknowledged by the device.
    Download {
        /// Bytes done.
        done: u64,
        /// Bytes in total.
        total: u64,
    },
    /// `done` bytes uploaded (of `total` when known).
    Upload {
        /// Bytes done.
        done: u64,
        /// Bytes requested, if known.
        total: Option<u64>,
    },
    /// `done` of `total` bytes compared.
    Verify {
        /// Bytes compared.
        done: u64,
        /// Bytes in total.
        total: u64,
    },
    /// The device entered manifestation.
    Manifesting,
    /// The device finished manifestation and is back in dfuIDLE.
    Manifested,
    /// A DfuSe target (alt setting) of a `.dfu` file starts.
    Target {
        /// Alt setting.
        alt: u8,
        /// Target name.
        name: Option<String>,
    },
}

/// Host options.
#[derive(Debug, Clone)]
pub struct DfuOptions {
    /// Timeout of each control transfer.
    pub timeout: Duration,
    /// Use this instead of the device's bwPollTimeout (dfu-util's
    /// QUIRK_POLLTIMEOUT forces 5 ms).
    pub poll_timeout_override: Option<Duration>,
    /// At least this poll interval during a mass erase (dfu-util forces 35 s
    /// on STM32F405, whose ROM reports 100 ms).
    pub mass_erase_min_poll: Option<Duration>,
    /// Give up when the device stays busy longer than this.
    pub busy_limit: Duration,
    /// Give up after this many polls that report a zero timeout while busy
    /// (dfu-util: "Device stuck" after 100).
    pub max_zero_polls: u32,
    /// GETSTATUS stalls tolerated while busy, re-using the last poll timeout
    /// (STM32L4 stalls when polled early).
    pub stall_retries: u32,
    /// Use a smaller transfer size than the descriptor's (DfuSe address
    /// stride stays the device's own for upload mapping, so only set this
    /// for plain DFU or when the device accepts it).
    pub transfer_size: Option<u16>,
}

impl Default for DfuOptions {
    fn default() -> Self {
        DfuOptions {
            timeout: Duration::from_secs(5),
            poll_timeout_override: None,
            mass_erase_min_poll: None,
            busy_limit: Duration::from_secs(120),
            max_zero_polls: 100,
            stall_retries: 3,
            transfer_size: None,
        }
    }
}

/// What happened on DfuSe `:leave`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveOutcome {
    /// The device reported dfuMANIFEST and is jumping to the application.
    Manifesting,
    /// The device went away before or while answering (normal for devices
    /// that reset on leave: "Error during download get_status" in dfu-util).
    Disconnected,
    /// The device stayed in DFU mode (manifestation tolerant).
    Stayed(State),
}

/// What the host must do after DETACH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetachOutcome {
    /// The device does not detach by itself (no bitWillDetach): issue a USB
    /// reset within wDetachTimeOut.
    pub needs_usb_reset: bool,
    /// The device disconnected while DETACH was sent.
    pub disconnected: bool,
}

/// The host driver for one DFU interface.
pub struct DfuHost<T: ControlTransfer> {
    t: T,
    interface: u16,
    desc: FunctionalDescriptor,
    opts: DfuOptions,
}

type Ev<'a> = &'a mut dyn FnMut(DfuEvent);

impl<T: ControlTransfer> DfuHost<T> {
    /// A driver for interface `interface` described by `desc`.
    pub fn new(transport: T, interface: u16, desc: FunctionalDescriptor, opts: DfuOptions) -> Self {
        DfuHost {
            t: transport,
            interface,
            desc,
            opts,
        }
    }

    /// The transport.
    pub fn transport(&mut self) -> &mut T {
        &mut self.t
    }

    /// Gives the transport back.
    pub fn into_inner(self) -> T {
        self.t
    }

    /// The functional descriptor in use.
    pub fn descriptor(&self) -> &FunctionalDescriptor {
        &self.desc
    }

    fn xfer(&self) -> usize {
        let d = self.desc.transfer_size.max(1);
        self.opts.transfer_size.map_or(d, |t| t.clamp(1, d)) as usize
    }

    fn out(
        &mut self,
        phase: DfuPhase,
        address: Option<u32>,
        req: DfuRequest,
        value: u16,
        data: &[u8],
    ) -> Result<(), DfuHostError> {
        let setup = SetupPacket::dfu(req, value, self.interface, data.len() as u16);
        self.t
            .control_out(setup, data, self.opts.timeout)
            .map(|_| ())
            .map_err(|source| DfuHostError::Transfer {
                phase,
                request: req,
                address,
                source,
            })
    }

    /// An IN request for `buf.len()` bytes; returns the bytes received.
    fn input(
        &mut self,
        phase: DfuPhase,
        address: Option<u32>,
        req: DfuRequest,
        value: u16,
        buf: &mut [u8],
    ) -> Result<usize, DfuHostError> {
        let setup = SetupPacket::dfu(req, value, self.interface, buf.len() as u16);
        self.t
            .control_in(setup, buf, self.opts.timeout)
            .map_err(|source| DfuHostError::Transfer {
                phase,
                request: req,
                address,
                source,
            })
    }

    fn status_in(
        &mut self,
        phase: DfuPhase,
        address: Option<u32>,
    ) -> Result<GetStatus, DfuHostError> {
        let mut buf = [0u8; 6];
        let n = self.input(phase, address, DfuRequest::GetStatus, 0, &mut buf)?;
        GetStatus::from_bytes(&buf[..n]).map_err(|detail| DfuHostError::BadStatus { phase, detail })
    }

    fn poll_delay(&self, st: &GetStatus) -> Duration {
        self.opts
            .poll_timeout_override
            .unwrap_or(Duration::from_millis(st.poll_timeout_ms.into()))
    }

    /// Selects alternate setting `alt` (SET_INTERFACE).
    pub fn set_alt(&mut self, alt: u8) -> Result<(), DfuHostError> {
        let setup = SetupPacket::set_interface(self.interface, alt);
        self.t
            .control_out(setup, &[], self.opts.timeout)
            .map(|_| ())
            .map_err(|source| DfuHostError::SetAlt { alt, source })
    }

    /// DFU_GETSTATUS. Note that on a device in dfuDNLOAD-SYNC or
    /// dfuMANIFEST-SYNC this is what starts the pending work.
    pub fn get_status(&mut self) -> Result<GetStatus, DfuHostError> {
        self.status_in(DfuPhase::Setup, None)
    }

    /// DFU_GETSTATE.
    pub fn get_state(&mut self) -> Result<State, DfuHostError> {
        let mut b = [0u8; 1];
        let n = self.input(DfuPhase::Setup, None, DfuRequest::GetState, 0, &mut b)?;
        if n < 1 {
            return Err(DfuHostError::BadStatus {
                phase: DfuPhase::Setup,
                detail: crate::wire::DfuWireError::TooShort { need: 1, got: 0 },
            });
        }
        State::from_u8(b[0]).ok_or(DfuHostError::BadStatus {
            phase: DfuPhase::Setup,
            detail: crate::wire::DfuWireError::BadState(b[0]),
        })
    }

    /// DFU_CLRSTATUS, unconditionally. Prefer [`DfuHost::abort_to_idle`],
    /// which only clears a device that is in dfuERROR: ST and TF-A devices
    /// treat CLRSTATUS in any other state as an error.
    pub fn clear_status(&mut self) -> Result<(), DfuHostError> {
        self.out(DfuPhase::Setup, None, DfuRequest::ClrStatus, 0, &[])
    }

    /// DFU_ABORT.
    pub fn abort(&mut self) -> Result<(), DfuHostError> {
        self.out(DfuPhase::Setup, None, DfuRequest::Abort, 0, &[])
    }

    /// Brings the device to dfuIDLE: CLRSTATUS if (and only if) it is in
    /// dfuERROR, ABORT from any other non-idle DFU state.
    pub fn abort_to_idle(&mut self) -> Result<GetStatus, DfuHostError> {
        let mut st = self.status_in(DfuPhase::Setup, None)?;
        for _ in 0..3 {
            self.t.sleep(self.poll_delay(&st).min(self.opts.busy_limit));
            match st.state {
                State::DfuIdle => return Ok(st),
                State::AppIdle | State::AppDetach => break,
                State::DfuError => self.clear_status()?,
                State::DfuDnbusy | State::DfuManifest => {}
                _ => self.abort()?,
            }
            st = self.status_in(DfuPhase::Setup, None)?;
        }
        if st.state == State::DfuIdle {
            return Ok(st);
        }
        Err(DfuHostError::UnexpectedState {
            phase: DfuPhase::Setup,
            expected: State::DfuIdle,
            state: st.state,
            status: st.status,
            address: None,
        })
    }

    /// Polls GETSTATUS, sleeping bwPollTimeout after each, while the device
    /// is busy (dfuDNLOAD-SYNC / dfuDNBUSY). Returns the first other status;
    /// dfuERROR or a non-OK status is an error.
    fn wait_ready(
        &mut self,
        phase: DfuPhase,
        address: Option<u32>,
        min_poll: Option<Duration>,
    ) -> Result<GetStatus, DfuHostError> {
        // The limit is on the transport's clock, not on the sum of sleeps:
        // a device that answers each poll slowly must not stretch it.
        let start = self.t.elapsed();
        let mut polls = 0u32;
        let mut zero_polls = 0u32;
        let mut stalls = 0u32;
        let mut last_delay = Duration::from_millis(5);
        loop {
            let waited = self.t.elapsed().saturating_sub(start);
            let remaining = self.opts.busy_limit.saturating_sub(waited);
            let st = match self.status_in(phase, address) {
                Ok(st) => st,
                Err(DfuHostError::Transfer {
                    source: TransferError::Stall,
                    ..
                }) if stalls < self.opts.stall_retries => {
                    // STM32L4: stalls when polled early; wait as long again.
                    stalls += 1;
                    self.t.sleep(last_delay.min(remaining));
                    continue;
                }
                Err(e) => return Err(e),
            };
            polls += 1;
            Self::check_status(&st, phase, address)?;
            let mut delay = self.poll_delay(&st);
            if let Some(m) = min_poll {
                delay = delay.max(m);
            }
            // A bwPollTimeout beyond the limit (up to 4.6 h on the wire) is
            // slept only until the limit.
            self.t.sleep(delay.min(remaining));
            last_delay = delay.max(Duration::from_millis(1));
            if !matches!(st.state, State::DfuDnbusy | State::DfuDnloadSync) {
                return Ok(st);
            }
            if delay.is_zero() {
                zero_polls += 1;
            }
            let waited = self.t.elapsed().saturating_sub(start);
            if zero_polls >= self.opts.max_zero_polls || waited > self.opts.busy_limit {
                return Err(DfuHostError::Stuck {
                    phase,
                    address,
                    waited,
                    polls,
                });
            }
        }
    }

    /// A status that reports an error (dfuERROR or a non-OK status) is one.
    fn check_status(
        st: &GetStatus,
        phase: DfuPhase,
        address: Option<u32>,
    ) -> Result<(), DfuHostError> {
        if st.state == State::DfuError || st.status != Status::Ok {
            return Err(DfuHostError::Device {
                phase,
                state: st.state,
                status: st.status,
                address,
            });
        }
        Ok(())
    }

    fn expect(
        st: GetStatus,
        phase: DfuPhase,
        address: Option<u32>,
        expected: State,
    ) -> Result<(), DfuHostError> {
        if st.state == expected {
            Ok(())
        } else {
            Err(DfuHostError::UnexpectedState {
                phase,
                expected,
                state: st.state,
                status: st.status,
                address,
            })
        }
    }

    // ---------------------------------------------------------------- DFU 1.1

    /// Downloads `image` as a plain DFU 1.1 transfer (blocks 0, 1, …), then
    /// ends the download and waits for manifestation. A device that is not
    /// manifestation tolerant may disconnect during manifestation; that ends
    /// the operation successfully.
    pub fn download(&mut self, image: &[u8], events: Ev<'_>) -> Result<(), DfuHostError> {
        if !self.desc.can_download() {
            return Err(DfuHostError::Unsupported { what: "download" });
        }
        self.abort_to_idle()?;
        let xfer = self.xfer();
        let total = image.len() as u64;
        let mut done = 0u64;
        for (i, chunk) in image.chunks(xfer).enumerate() {
            self.out(
                DfuPhase::Download,
                None,
                DfuRequest::Dnload,
                i as u16,
                chunk,
            )?;
            let st = self.wait_ready(DfuPhase::Download, None, None)?;
            Self::expect(st, DfuPhase::Download, None, State::DfuDnloadIdle)?;
            done += chunk.len() as u64;
            events(DfuEvent::Download { done, total });
        }
        let last = image.len().div_ceil(xfer) as u16;
        self.out(DfuPhase::Manifest, None, DfuRequest::Dnload, last, &[])?;
        self.manifest(events)
    }

    fn manifest(&mut self, events: Ev<'_>) -> Result<(), DfuHostError> {
        let tolerant = self.desc.manifestation_tolerant();
        let mut announced = false;
        let start = self.t.elapsed();
        let mut polls = 0u32;
        loop {
            let waited = self.t.elapsed().saturating_sub(start);
            if waited > self.opts.busy_limit {
                return Err(DfuHostError::Stuck {
                    phase: DfuPhase::Manifest,
                    address: None,
                    waited,
                    polls,
                });
            }
            polls += 1;
            let st = match self.status_in(DfuPhase::Manifest, None) {
                Ok(st) => st,
                // A device that is not tolerant stops answering (stalls) in
                // dfuMANIFEST-WAIT-RESET, or resets by itself: manifestation
                // is over and the caller resets it.
                Err(DfuHostError::Transfer { .. }) if announced && !tolerant => {
                    events(DfuEvent::Manifested);
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            Self::check_status(&st, DfuPhase::Manifest, None)?;
            let remaining = self.opts.busy_limit.saturating_sub(waited);
            self.t.sleep(self.poll_delay(&st).min(remaining));
            match st.state {
                State::DfuManifest | State::DfuManifestSync => {
                    // Keep polling: a failure may still be reported, and a
                    // success only shows as the next state.
                    if !announced {
                        announced = true;
                        events(DfuEvent::Manifesting);
                    }
                }
                State::DfuIdle | State::DfuManifestWaitReset => {
                    events(DfuEvent::Manifested);
                    return Ok(());
                }
                s => {
                    return Err(DfuHostError::UnexpectedState {
                        phase: DfuPhase::Manifest,
                        expected: State::DfuManifest,
                        state: s,
                        status: st.status,
                        address: None,
                    })
                }
            }
        }
    }

    /// Uploads as plain DFU 1.1 (blocks 0, 1, … until a short frame), at
    /// most `max` bytes if given.
    pub fn upload(&mut self, max: Option<usize>, events: Ev<'_>) -> Result<Vec<u8>, DfuHostError> {
        if !self.desc.can_upload() {
            return Err(DfuHostError::Unsupported { what: "upload" });
        }
        self.abort_to_idle()?;
        let xfer = self.xfer();
        let mut out = Vec::new();
        let mut block: u16 = 0;
        loop {
            let want = max.map_or(xfer, |m| (m - out.len()).min(xfer));
            if want == 0 {
                // Reached the requested size: leave dfuUPLOAD-IDLE.
                self.abort_to_idle()?;
                break;
            }
            let start = out.len();
            out.resize(start + want, 0);
            let buf = &mut out[start..];
            let n = self.input(DfuPhase::Upload, None, DfuRequest::Upload, block, buf)?;
            out.truncate(start + n);
            events(DfuEvent::Upload {
                done: out.len() as u64,
                total: max.map(|m| m as u64),
            });
            if n < want {
                break;
            }
            block = block.wrapping_add(1);
        }
        Ok(out)
    }

    /// DFU_DETACH with the descriptor's wDetachTimeOut (at most 1000 ms, as
    /// dfu-util). A device that disconnects right away is not an error.
    pub fn detach(&mut self) -> Result<DetachOutcome, DfuHostError> {
        let timeout = self.desc.detach_timeout_ms.min(1000);
        let needs_usb_reset = !self.desc.will_detach();
        match self.out(DfuPhase::Detach, None, DfuRequest::Detach, timeout, &[]) {
            Ok(()) => Ok(DetachOutcome {
                needs_usb_reset,
                disconnected: false,
            }),
            Err(DfuHostError::Transfer {
                source: TransferError::Disconnected,
                ..
            }) => Ok(DetachOutcome {
                needs_usb_reset: false,
                disconnected: true,
            }),
            Err(e) => Err(e),
        }
    }

    // ------------------------------------------------------------------ DfuSe

    /// Sends a DfuSe special command and waits for it to complete. The
    /// first GETSTATUS must report dfuDNBUSY (dfu-util: "Wrong state after
    /// command").
    pub fn dfuse_command(&mut self, cmd: Command) -> Result<(), DfuHostError> {
        let (phase, address) = match cmd {
            Command::SetAddress(a) => (DfuPhase::Command, Some(a)),
            Command::Erase(a) => (DfuPhase::Erase, Some(a)),
            Command::MassErase | Command::ReadUnprotect => (DfuPhase::Erase, None),
        };
        let mut buf = [0u8; 5];
        let bytes = cmd.encode(&mut buf).to_vec();
        self.out(phase, address, DfuRequest::Dnload, 0, &bytes)?;
        let st = self.status_in(phase, address)?;
        if cmd == Command::ReadUnprotect {
            // The device erases everything and resets; nothing more to poll.
            return Ok(());
        }
        Self::check_status(&st, phase, address)?;
        Self::expect(st, phase, address, State::DfuDnbusy)?;
        let min_poll = match cmd {
            Command::MassErase => self.opts.mass_erase_min_poll,
            _ => None,
        };
        let mut delay = self.poll_delay(&st);
        if let Some(m) = min_poll {
            delay = delay.max(m);
        }
        self.t.sleep(delay);
        let st = self.wait_ready(phase, address, min_poll)?;
        Self::expect(st, phase, address, State::DfuDnloadIdle)
    }

    /// Reads the DfuSe command list (UPLOAD at block 0).
    pub fn dfuse_get_commands(&mut self) -> Result<Vec<u8>, DfuHostError> {
        self.abort_to_idle()?;
        let mut buf = vec![0u8; 32];
        let n = self.input(DfuPhase::Command, None, DfuRequest::Upload, 0, &mut buf)?;
        buf.truncate(n);
        self.abort_to_idle()?;
        Ok(buf)
    }

    /// Reads `len` bytes from `address` on a DfuSe device.
    pub fn dfuse_upload(
        &mut self,
        layout: &MemoryLayout,
        address: u32,
        len: usize,
        events: Ev<'_>,
    ) -> Result<Vec<u8>, DfuHostError> {
        let end = u64::from(address) + len as u64;
        if end > 1 << 32 {
            return Err(DfuHostError::NotReadable {
                address: u32::MAX,
                start: address,
                end,
            });
        }
        if let Some(bad) = layout.first_denied(address, len as u32, Access::Read) {
            return Err(DfuHostError::NotReadable {
                address: bad,
                start: address,
                end,
            });
        }
        if !self.desc.can_upload() {
            return Err(DfuHostError::Unsupported { what: "upload" });
        }
        let xfer = self.desc.transfer_size.max(1) as usize;
        // Block numbers are 16 bits; re-base the pointer every so many blocks.
        const GROUP: usize = 0x4000;
        let mut out = Vec::with_capacity(len);
        self.abort_to_idle()?;
        while out.len() < len {
            let base = address + out.len() as u32;
            self.dfuse_command(Command::SetAddress(base))?;
            // UPLOAD is not accepted in dfuDNLOAD-IDLE.
            self.abort_to_idle()?;
            for b in 0..GROUP {
                let want = (len - out.len()).min(xfer);
                if want == 0 {
                    break;
                }
                let a = base + (b * xfer) as u32;
                let start = out.len();
                out.resize(start + want, 0);
                let block = FIRST_DATA_BLOCK + b as u16;
                let buf = &mut out[start..];
                let n = self.input(DfuPhase::Upload, Some(a), DfuRequest::Upload, block, buf)?;
                if n != want {
                    return Err(DfuHostError::ShortUpload {
                        address: a,
                        requested: want,
                        got: n,
                    });
                }
                events(DfuEvent::Upload {
                    done: out.len() as u64,
                    total: Some(len as u64),
                });
            }
        }
        self.abort_to_idle()?;
        Ok(out)
    }

    /// Refuses a DfuSe request to a plain DFU 1.1 device before anything is
    /// sent: it would take the zero-length DNLOAD of `:leave` or the
    /// mass-erase command as the start of a firmware download.
    fn require_dfuse(&self, request: &'static str) -> Result<(), DfuHostError> {
        if self.desc.is_dfuse() {
            return Ok(());
        }
        Err(DfuHostError::NotDfuse { request })
    }

    /// Erases all erasable memory of the selected alt setting.
    pub fn dfuse_mass_erase(&mut self, events: Ev<'_>) -> Result<(), DfuHostError> {
        self.require_dfuse(":mass-erase")?;
        self.abort_to_idle()?;
        events(DfuEvent::MassErase);
        self.dfuse_command(Command::MassErase)
    }

    /// DfuSe `:leave`: optionally sets the address to jump to, then sends a
    /// zero-length DNLOAD and one GETSTATUS. A device that disconnects or
    /// resets instead of answering is the normal case for the ST ROM, not an
    /// error.
    pub fn dfuse_leave(&mut self, address: Option<u32>) -> Result<LeaveOutcome, DfuHostError> {
        self.require_dfuse(":leave")?;
        let gone = |e: &DfuHostError| {
            matches!(
                e,
                DfuHostError::Transfer {
                    source: TransferError::Disconnected
                        | TransferError::Timeout
                        | TransferError::Io(_),
                    ..
                }
            )
        };
        if let Some(a) = address {
            match self.dfuse_command(Command::SetAddress(a)) {
                Err(e) if gone(&e) => return Ok(LeaveOutcome::Disconnected),
                r => r?,
            }
        }
        match self.out(
            DfuPhase::Leave,
            address,
            DfuRequest::Dnload,
            FIRST_DATA_BLOCK,
            &[],
        ) {
            Err(e) if gone(&e) => return Ok(LeaveOutcome::Disconnected),
            r => r?,
        }
        let st = match self.status_in(DfuPhase::Leave, address) {
            Ok(st) => st,
            Err(e) if gone(&e) => return Ok(LeaveOutcome::Disconnected),
            Err(e) => return Err(e),
        };
        Self::check_status(&st, DfuPhase::Leave, address)?;
        Ok(match st.state {
            State::DfuManifest | State::DfuManifestSync | State::DfuManifestWaitReset => {
                LeaveOutcome::Manifesting
            }
            s => LeaveOutcome::Stayed(s),
        })
    }
}
