//! A USB cable in virtual time: control transfers cost bus time, and a
//! board that re-enumerates is waited for by advancing the clock instead of
//! sleeping.
//!
//! [`SimUsb`] puts a [`VirtualUsbDevice`] (a simulated board) behind the
//! host-side traits: it is a [`Connector`] for the STM32MP flow and hands
//! out [`SimTransport`]s, which are [`ControlTransfer`]s for
//! [`dfukit_usbdfu::host::DfuHost`]. Every transfer advances one shared
//! virtual clock by its bus time from a [`UsbLinkModel`], every
//! bwPollTimeout sleep advances it by the time asked, so a whole
//! programming session runs in milliseconds of real time and reports the
//! same elapsed time on every run.
//!
//! [`SimUsb::with_faults`] puts a [`FaultInjector`] on the cable, shared by
//! every transport it hands out (a board that re-enumerates keeps its
//! schedule). A frame is one control transfer going to the device and, if
//! the device answered, its reply coming back. To the device: a dropped
//! transfer never reaches it (the host times out), a corrupted one reaches
//! it with one byte of its data stage changed (or of wValue/wIndex when it
//! has none: damage the CRC-16 missed), a duplicated one is handled twice
//! (a retry after a lost handshake), a delayed one reaches it late, a
//! reset reboots the board first. Back to the host: a dropped reply is a
//! timeout after the device acted, a corrupted one has a byte of its data
//! changed, a delayed one comes late. A disconnect fails that transfer and
//! every later one, and no later connect finds the device.

use crate::boards::stm32f4::Stm32f4;
use crate::links::faults::{Direction, FaultInjector, LinkFault};
use dfukit_core::{Board, Clock, Instant};
use dfukit_stm32mp::connect::{ConnectError, Connector};
use dfukit_usbdfu::host::{ControlRequest, ControlTransfer, DataStage, TransferError};
use dfukit_usbip::{ControlReply, SetupPacket, UsbDevice};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Largest control-endpoint packet at full and high speed (USB 2.0
/// §5.5.3: 8, 16, 32 or 64 bytes; every STM32 DFU implementation uses 64).
pub const EP0_PACKET: usize = 64;

/// How long control transfers take on the bus.
///
/// The USB 2.0 specification bounds how many control transfers fit in a
/// (micro)frame: Table 5-8 ("Full-speed Control Transaction Limits") allows
/// at most 13 transfers with a 64-byte data payload per 1 ms frame
/// (832,000 bytes/s), Table 5-9 ("High-speed Control Transaction Limits")
/// at most 31 per 125 µs microframe (15,872,000 bytes/s). Each table row
/// counts a whole transfer — setup, one data packet and status, 45 bytes
/// (FS) or 173 bytes (HS) of protocol overhead — so one "slot" is
/// frame ÷ limit.
///
/// A transfer with `n` data bytes is charged `max(1, ceil(n / 64))` slots:
/// a zero-length request still occupies the bus for its setup and status
/// stages, and each further 64-byte packet is charged a full slot although
/// it only adds a data transaction. The model is therefore an upper bound
/// on bus time, and [`UsbLinkModel::bytes_per_second`] equals the tables'
/// "Max Bandwidth" column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsbLinkModel {
    /// Frame (FS, 1 ms) or microframe (HS, 125 µs) length.
    frame: Duration,
    /// Control transfers with a 64-byte payload per frame; 0 = no bus time.
    per_frame: u32,
}

impl UsbLinkModel {
    /// Full speed: 13 transfers per 1 ms frame (USB 2.0 Table 5-8).
    pub fn full_speed() -> Self {
        UsbLinkModel {
            frame: Duration::from_millis(1),
            per_frame: 13,
        }
    }

    /// High speed: 31 transfers per 125 µs microframe (USB 2.0 Table 5-9).
    /// The STM32MP1's OTG HS controller runs at high speed.
    pub fn high_speed() -> Self {
        UsbLinkModel {
            frame: Duration::from_micros(125),
            per_frame: 31,
        }
    }

    /// A link that takes no time (tests of device logic alone).
    pub fn instant() -> Self {
        UsbLinkModel {
            frame: Duration::ZERO,
            per_frame: 0,
        }
    }

    /// Bus time of one control transfer with `data_len` bytes in its data
    /// stage (see the type's documentation for the rule).
    pub fn control_transfer_time(&self, data_len: usize) -> Duration {
        if self.per_frame == 0 {
            return Duration::ZERO;
        }
        let slots = data_len.div_ceil(EP0_PACKET).max(1) as u128;
        let ns = self.frame.as_nanos() * slots / u128::from(self.per_frame);
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// The most payload bytes per second control transfers can carry on
    /// this link (Table 5-8/5-9 "Max Bandwidth"); `None` for
    /// [`UsbLinkModel::instant`]. A bound for reporting: real throughput is
    /// lower (GETSTATUS round trips, device work).
    pub fn bytes_per_second(&self) -> Option<u64> {
        if self.per_frame == 0 || self.frame.is_zero() {
            return None;
        }
        let per_frame = u128::from(self.per_frame) * EP0_PACKET as u128;
        Some((per_frame * 1_000_000_000 / self.frame.as_nanos()) as u64)
    }
}

/// A simulated board that is a USB device: its time comes from [`Board`].
pub trait VirtualUsbDevice: UsbDevice + Board {
    /// When the reply to the last request completed, if later than the
    /// request: the device NAKed while its CPU was busy (U-Boot writes a
    /// DFU block inside the request handler).
    fn reply_at(&self) -> Option<Instant> {
        None
    }
}

impl VirtualUsbDevice for Stm32f4 {}

/// The virtual clock shared by a [`SimUsb`] and its transports.
type SharedTime = Arc<Mutex<Instant>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock (a failed assertion in a test) must not
    // hide the original failure behind a poisoning panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A simulated board on a virtual USB cable. See the module documentation.
pub struct SimUsb<D: VirtualUsbDevice> {
    device: Arc<Mutex<D>>,
    clock: SharedTime,
    link: UsbLinkModel,
    faults: Option<SharedFaults>,
}

/// The cable's fault injector, shared by its transports.
type SharedFaults = Arc<Mutex<FaultInjector>>;

impl<D: VirtualUsbDevice> SimUsb<D> {
    /// Puts `device` (already in virtual-time mode) on a cable; the clock
    /// starts at the device's time.
    pub fn new(device: D, link: UsbLinkModel) -> Self {
        Self::from_shared(Arc::new(Mutex::new(device)), link)
    }

    /// Same, for a device that is shared already.
    pub fn from_shared(device: Arc<Mutex<D>>, link: UsbLinkModel) -> Self {
        let start = lock(&device).now();
        SimUsb {
            device,
            clock: Arc::new(Mutex::new(start)),
            link,
            faults: None,
        }
    }

    /// Puts `injector` on the cable (see the module documentation).
    pub fn with_faults(mut self, injector: FaultInjector) -> Self {
        self.faults = Some(Arc::new(Mutex::new(injector)));
        self
    }

    /// A copy of the injector: its frame counts and the faults that fired.
    pub fn faults(&self) -> Option<FaultInjector> {
        self.faults.as_ref().map(|f| lock(f).clone())
    }

    /// The board.
    pub fn device(&self) -> Arc<Mutex<D>> {
        Arc::clone(&self.device)
    }

    /// The link model in use.
    pub fn link(&self) -> UsbLinkModel {
        self.link
    }

    /// Advances the clock by `d` (time spent by the host elsewhere).
    pub fn advance(&self, d: Duration) {
        advance(&self.clock, &self.device, d);
    }
}

/// Moves the shared clock forward by `d` and tells the device.
fn advance<D: VirtualUsbDevice>(clock: &SharedTime, device: &Mutex<D>, d: Duration) -> Instant {
    let mut c = lock(clock);
    *c += d;
    let now = *c;
    drop(c);
    lock(device).advance(now);
    now
}

/// The cable's virtual time: the host's waits advance it, and the board
/// with it.
impl<D: VirtualUsbDevice> Clock for SimUsb<D> {
    fn now(&self) -> Instant {
        *lock(&self.clock)
    }
    fn sleep(&mut self, d: Duration) {
        advance(&self.clock, &self.device, d);
    }
}

impl<D: VirtualUsbDevice> Connector for SimUsb<D> {
    type Transport = SimTransport<D>;

    fn connect(&mut self, timeout: Duration) -> Result<SimTransport<D>, ConnectError> {
        let begin = self.now();
        let deadline = begin + timeout;
        loop {
            let now = self.now();
            let (attached, wake) = {
                let mut d = lock(&self.device);
                d.advance(now);
                (d.attached(), d.next_wakeup())
            };
            let unplugged = self
                .faults
                .as_ref()
                .is_some_and(|f| lock(f).is_disconnected());
            if attached && !unplugged {
                return Ok(SimTransport {
                    device: Arc::clone(&self.device),
                    clock: Arc::clone(&self.clock),
                    link: self.link,
                    faults: self.faults.clone(),
                });
            }
            // Jump to the board's next change if it comes before the
            // deadline; a wake-up that is not in the future would change
            // nothing, so the wait runs to the deadline.
            match wake {
                Some(t) if t > now && t <= deadline => {
                    advance(&self.clock, &self.device, t.saturating_duration_since(now));
                }
                _ => {
                    advance(
                        &self.clock,
                        &self.device,
                        deadline.saturating_duration_since(now),
                    );
                    if lock(&self.device).attached() {
                        continue;
                    }
                    return Err(ConnectError::NotFound { waited: timeout });
                }
            }
        }
    }
}

/// An open simulated device: control transfers in virtual time.
pub struct SimTransport<D: VirtualUsbDevice> {
    device: Arc<Mutex<D>>,
    clock: SharedTime,
    link: UsbLinkModel,
    faults: Option<SharedFaults>,
}

impl<D: VirtualUsbDevice> SimTransport<D> {
    /// The virtual clock.
    pub fn now(&self) -> Instant {
        *lock(&self.clock)
    }

    /// The fault for the next frame going `dir`, if an injector is on.
    fn fault(&self, dir: Direction) -> Option<LinkFault> {
        self.faults.as_ref().and_then(|f| lock(f).on_frame(dir))
    }

    fn unplugged(&self) -> bool {
        self.faults
            .as_ref()
            .is_some_and(|f| lock(f).is_disconnected())
    }

    /// One transfer through the fault injector, if any.
    fn transfer(
        &mut self,
        setup: SetupPacket,
        data_out: &[u8],
        data_len: usize,
        timeout: Duration,
    ) -> Result<ControlReply, TransferError> {
        if self.unplugged() {
            return Err(TransferError::Disconnected);
        }
        let mut setup = setup;
        let mut data = std::borrow::Cow::Borrowed(data_out);
        let mut twice = false;
        match self.fault(Direction::ToDevice) {
            None => {}
            Some(LinkFault::Drop) => {
                advance(&self.clock, &self.device, timeout);
                return Err(TransferError::Timeout);
            }
            Some(c @ LinkFault::Corrupt { .. }) if !data_out.is_empty() => {
                c.corrupt(data.to_mut());
            }
            Some(c @ LinkFault::Corrupt { .. }) => {
                let mut b = setup.to_bytes();
                c.corrupt(&mut b[2..6]);
                setup = SetupPacket::from_bytes(b);
            }
            Some(LinkFault::Duplicate) => twice = true,
            Some(LinkFault::Delay(d)) => {
                advance(&self.clock, &self.device, d);
            }
            Some(LinkFault::Disconnect) => return Err(TransferError::Disconnected),
            Some(LinkFault::ResetDevice) => lock(&self.device).power_cycle(),
        }
        if twice {
            // The first one's answer is lost with its handshake.
            let _ = self.bus_transfer(setup, &data, data_len, timeout);
        }
        let reply = self.bus_transfer(setup, &data, data_len, timeout)?;
        let ControlReply::Data(mut d) = reply else {
            return Ok(reply);
        };
        match self.fault(Direction::ToHost) {
            Some(LinkFault::Drop) => {
                advance(&self.clock, &self.device, timeout);
                Err(TransferError::Timeout)
            }
            Some(c @ LinkFault::Corrupt { .. }) => {
                c.corrupt(&mut d);
                Ok(ControlReply::Data(d))
            }
            Some(LinkFault::Delay(dl)) => {
                advance(&self.clock, &self.device, dl);
                Ok(ControlReply::Data(d))
            }
            Some(LinkFault::Disconnect) => Err(TransferError::Disconnected),
            Some(LinkFault::ResetDevice) => {
                lock(&self.device).power_cycle();
                advance(&self.clock, &self.device, timeout);
                Err(TransferError::Timeout)
            }
            Some(LinkFault::Duplicate) | None => Ok(ControlReply::Data(d)),
        }
    }

    /// One transfer on the bus: bus time, then the device's answer at the
    /// new time.
    fn bus_transfer(
        &mut self,
        setup: SetupPacket,
        data_out: &[u8],
        data_len: usize,
        timeout: Duration,
    ) -> Result<ControlReply, TransferError> {
        if !lock(&self.device).attached() {
            return Err(TransferError::Disconnected);
        }
        let t = self.link.control_transfer_time(data_len);
        let now = advance(&self.clock, &self.device, t);
        // The device sees the setup stage exactly as the host put it on the
        // wire.
        let wire = SetupPacket::from_bytes(setup.to_bytes());
        let (reply, reply_at) = {
            let mut d = lock(&self.device);
            d.advance(now);
            let r = d.control(&wire, data_out);
            (r, d.reply_at())
        };
        if let Some(at) = reply_at.filter(|&at| at > now) {
            advance(&self.clock, &self.device, at.saturating_duration_since(now));
        }
        match reply {
            ControlReply::Data(d) => Ok(ControlReply::Data(d)),
            ControlReply::Stall => Err(TransferError::Stall),
            ControlReply::Disconnected => Err(TransferError::Disconnected),
            ControlReply::NoResponse => {
                // The host gives up (unlinks the URB) when its timeout
                // expires.
                advance(&self.clock, &self.device, timeout);
                Err(TransferError::Timeout)
            }
        }
    }
}

impl<D: VirtualUsbDevice> Clock for SimTransport<D> {
    fn now(&self) -> Instant {
        *lock(&self.clock)
    }
    fn sleep(&mut self, d: Duration) {
        advance(&self.clock, &self.device, d);
    }
}

impl<D: VirtualUsbDevice> ControlTransfer for SimTransport<D> {
    fn control(&mut self, req: ControlRequest<'_>) -> Result<usize, TransferError> {
        match req.data {
            DataStage::In(buf) => {
                let want = buf.len().min(usize::from(req.setup.length));
                match self.transfer(req.setup, &[], want, req.timeout)? {
                    ControlReply::Data(d) => {
                        let n = d.len().min(want);
                        buf[..n].copy_from_slice(&d[..n]);
                        Ok(n)
                    }
                    _ => unreachable!("transfer maps every other reply to an error"),
                }
            }
            DataStage::Out(data) => {
                self.transfer(req.setup, data, data.len(), req.timeout)?;
                Ok(data.len())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boards::stm32f4::Stm32f4Config;
    use dfukit_usbdfu::host::probe::probe;

    #[test]
    fn link_times_follow_the_usb_tables() {
        let fs = UsbLinkModel::full_speed();
        assert_eq!(fs.bytes_per_second(), Some(832_000));
        assert_eq!(fs.control_transfer_time(0), Duration::from_nanos(76_923));
        assert_eq!(fs.control_transfer_time(64), fs.control_transfer_time(1));
        assert_eq!(fs.control_transfer_time(13 * 64), Duration::from_millis(1));
        let hs = UsbLinkModel::high_speed();
        assert_eq!(hs.bytes_per_second(), Some(15_872_000));
        assert_eq!(
            hs.control_transfer_time(31 * 64),
            Duration::from_micros(125)
        );
        assert_eq!(
            UsbLinkModel::instant().control_transfer_time(4096),
            Duration::ZERO
        );
        assert_eq!(UsbLinkModel::instant().bytes_per_second(), None);
    }

    #[test]
    fn transfers_and_sleeps_advance_the_shared_clock() {
        let mut board = Stm32f4::in_memory(Stm32f4Config::default());
        board.use_virtual_time(Instant::ZERO);
        let mut usb = SimUsb::new(board, UsbLinkModel::full_speed());
        let mut t = usb.connect(Duration::from_secs(1)).unwrap();
        let dfu = probe(&mut t).unwrap();
        assert_eq!((dfu.vendor_id, dfu.product_id), (0x0483, 0xDF11));
        assert!(usb.elapsed() > Duration::ZERO);
        let before = usb.now();
        t.sleep(Duration::from_millis(5));
        assert_eq!(usb.now(), before + Duration::from_millis(5));
        assert_eq!(usb.device().lock().unwrap().now(), usb.now());
    }
}
