//! In-process host ↔ device harness: a [`ControlTransfer`] that calls the
//! device core directly under virtual time, with the testkit's flash
//! (recording programs over unerased bytes in `violations`, which the tests
//! assert are none) completing operations after a modelled delay.
#![allow(dead_code)]

use dfukit_core::{Clock, FlashOp, FlashOutcome, Instant};
pub use dfukit_testkit::TestFlash;
use dfukit_usbdfu::device::{DeviceConfig, DeviceEvent, DfuDevice, Reply};
use dfukit_usbdfu::dfuse::MemoryLayout;
use dfukit_usbdfu::host::{
    ControlRequest, ControlTransfer, DataStage, DfuHost, DfuHostError, DfuOptions, TransferError,
};
use dfukit_usbdfu::wire::DfuSetup;
use dfukit_usbdfu::wire::{DfuRequest, SetupPacket};
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum OwnedOp {
    Erase { addr: u32, len: u32 },
    Program { addr: u32, data: Vec<u8> },
}

impl OwnedOp {
    /// The operation as the flash applies it.
    fn as_op(&self) -> FlashOp<'_> {
        match self {
            OwnedOp::Erase { addr, len } => FlashOp::Erase {
                addr: *addr,
                len: *len,
            },
            OwnedOp::Program { addr, data } => FlashOp::Program { addr: *addr, data },
        }
    }
}

/// How the simulated flash driver behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashMode {
    /// Completes after the modelled delay.
    Normal,
    /// Reports failure.
    Fail,
    /// Never reports completion.
    Hang,
}

/// The device, its flash and virtual time, behind [`ControlTransfer`].
pub struct Sim {
    pub dev: DfuDevice,
    pub flash: TestFlash,
    pub now: Instant,
    pub erase_per_kib: Duration,
    pub program_per_kib: Duration,
    pub mode: FlashMode,
    pending: Option<(OwnedOp, Instant)>,
    /// Every device event, in order.
    pub events: Vec<DeviceEvent>,
    /// The device left the bus (Leave or UsbReset).
    pub gone: bool,
    /// Disconnect instead of answering the zero-length DNLOAD (a device that
    /// resets before the status stage).
    pub vanish_on_leave: bool,
    /// Every request seen, with the device's reply.
    pub log: Vec<(SetupPacket, Reply)>,
}

impl Sim {
    pub fn new(cfg: DeviceConfig, flash: TestFlash) -> Self {
        Sim {
            dev: DfuDevice::new(cfg).expect("valid config"),
            flash,
            now: Instant::ZERO,
            erase_per_kib: Duration::from_millis(8),
            program_per_kib: Duration::from_millis(4),
            mode: FlashMode::Normal,
            pending: None,
            events: Vec::new(),
            gone: false,
            vanish_on_leave: false,
            log: Vec::new(),
        }
    }

    pub fn stm32f4() -> Self {
        Self::new(
            DeviceConfig::stm32f4_rom(),
            TestFlash::stm32f4().recording(),
        )
    }

    fn delay(&self, op: &OwnedOp) -> Duration {
        let (per, len) = match op {
            OwnedOp::Erase { len, .. } => (self.erase_per_kib, *len),
            OwnedOp::Program { data, .. } => (self.program_per_kib, data.len() as u32),
        };
        per * len / 1024
    }

    /// Completes due operations and hands out new ones.
    pub fn service(&mut self) {
        loop {
            if let Some((op, at)) = &self.pending {
                if *at > self.now || self.mode == FlashMode::Hang {
                    break;
                }
                let ok = self.mode == FlashMode::Normal && self.flash.apply(&op.as_op());
                self.pending = None;
                let outcome = if ok {
                    FlashOutcome::Done
                } else {
                    FlashOutcome::Failed
                };
                self.dev.flash_complete(self.now, outcome);
            }
            self.dev.poll(self.now, &mut self.flash);
            let op = match self.dev.poll_flash() {
                Some(FlashOp::Erase { addr, len }) => OwnedOp::Erase { addr, len },
                Some(FlashOp::Program { addr, data }) => OwnedOp::Program {
                    addr,
                    data: data.to_vec(),
                },
                None => break,
            };
            let at = self.now + self.delay(&op);
            self.pending = Some((op, at));
        }
        while let Some(e) = self.dev.poll_event() {
            if matches!(e, DeviceEvent::Leave { .. } | DeviceEvent::UsbReset) {
                self.gone = true;
            }
            self.events.push(e);
        }
    }

    pub fn requests(&self, r: DfuRequest) -> usize {
        self.log
            .iter()
            .filter(|(s, _)| s.dfu_request() == Some(r))
            .count()
    }

    fn transfer(
        &mut self,
        setup: SetupPacket,
        data: &[u8],
        buf: &mut [u8],
    ) -> Result<usize, TransferError> {
        if self.gone {
            return Err(TransferError::Disconnected);
        }
        if self.vanish_on_leave
            && setup.dfu_request() == Some(DfuRequest::Dnload)
            && setup.length == 0
        {
            self.gone = true;
            return Err(TransferError::Disconnected);
        }
        self.service();
        // A control transfer takes some time on the bus.
        self.now += Duration::from_micros(125);
        let r = self
            .dev
            .control(self.now, &setup, data, buf, &mut self.flash);
        self.log.push((setup, r));
        self.service();
        match r {
            Reply::In(n) => Ok(n),
            Reply::Ack => Ok(data.len()),
            Reply::Stall => Err(TransferError::Stall),
        }
    }
}

/// The device core's virtual time: the host's waits let it work.
impl Clock for Sim {
    fn now(&self) -> Instant {
        self.now
    }
    fn sleep(&mut self, d: Duration) {
        self.now += d;
        self.service();
    }
}

impl ControlTransfer for Sim {
    fn control(&mut self, req: ControlRequest<'_>) -> Result<usize, TransferError> {
        match req.data {
            DataStage::In(buf) => {
                let len = (req.setup.length as usize).min(buf.len());
                self.transfer(req.setup, &[], &mut buf[..len])
            }
            DataStage::Out(data) => self.transfer(req.setup, data, &mut []),
        }
    }
}

/// A deterministic test image.
pub fn image(len: usize, seed: u32) -> Vec<u8> {
    dfukit_core::synthetic::bytes(seed).take(len).collect()
}

/// The STM32F4 ROM's flash alt setting.
pub const F4_FLASH: &str = "@Internal Flash  /0x08000000/04*016Kg,01*064Kg,07*128Kg";
/// The STM32F4 ROM's option-byte alt setting.
pub const F4_OPT: &str = "@Option Bytes  /0x1FFFC000/01*016 e";

/// A host with default options on `sim`, using its functional descriptor.
pub fn host_on(sim: Sim) -> DfuHost<Sim> {
    let desc = sim.dev.functional_descriptor();
    DfuHost::new(sim, 0, desc, DfuOptions::default())
}

/// A host on an in-process STM32F4 ROM.
pub fn f4_host() -> DfuHost<Sim> {
    host_on(Sim::stm32f4())
}

pub fn layout(s: &str) -> MemoryLayout {
    MemoryLayout::parse(s).unwrap()
}

/// The memory layouts of the STM32F4 ROM's alt settings.
pub fn f4_layouts(alt: u8) -> Option<MemoryLayout> {
    match alt {
        0 => Some(layout(F4_FLASH)),
        1 => Some(layout(F4_OPT)),
        _ => None,
    }
}

/// Writes `data` at `address` into the STM32F4's flash alt, unverified.
pub fn f4_write(host: &mut DfuHost<Sim>, address: u32, data: &[u8]) -> Result<(), DfuHostError> {
    host.dfuse_download(&layout(F4_FLASH), address, data, false, &mut |_| {})
}
