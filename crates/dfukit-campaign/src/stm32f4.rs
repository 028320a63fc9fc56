//! The simulated STM32F405 in its ROM bootloader (DfuSe) as the campaigns
//! set it up, written by dfukit's DfuSe host over a virtual USB cable in
//! virtual time.

use dfukit_sim::boards::stm32f4::{Stm32f4, Stm32f4Config};
use dfukit_sim::links::usb::SimUsb;
use dfukit_sim::{Board, Storage};
use dfukit_stm32mp::connect::Connector;
use dfukit_usbdfu::device::DeviceConfig;
use dfukit_usbdfu::dfuse::MemoryLayout;
use dfukit_usbdfu::host::{DfuHost, DfuOptions};
use std::time::Duration;

/// Where the internal flash starts.
pub const FLASH_BASE: u32 = 0x0800_0000;

/// A board on a copy of `flash`, its torn bits seeded, in virtual time.
pub fn board(flash: &[u8], seed: u64) -> Stm32f4 {
    let mut b = Stm32f4::new(
        Stm32f4Config::default(),
        Storage::from_vec(flash.to_vec()),
        Storage::from_vec(vec![0xFF; 16]),
    )
    .expect("sizes come from a board");
    b.seed_flash(seed);
    b.use_virtual_time(dfukit_core::Instant::ZERO);
    b
}

/// One download with verification, as `dfukit usb download` runs it.
pub fn download(usb: &mut SimUsb<Stm32f4>, image: &[u8]) -> Result<(), String> {
    let cfg = DeviceConfig::stm32f4_rom();
    let layout = MemoryLayout::parse(cfg.alts[0].name).expect("the ROM's own layout parses");
    let t = usb
        .connect(Duration::from_secs(1))
        .map_err(|e| e.to_string())?;
    let mut host = DfuHost::new(t, 0, cfg.descriptor(), DfuOptions::default());
    host.set_alt(0).map_err(|e| e.to_string())?;
    host.dfuse_download(&layout, FLASH_BASE, image, true, &mut |_| {})
        .map_err(|e| e.to_string())
}

/// A copy of the board's flash.
pub fn flash_of(usb: &SimUsb<Stm32f4>) -> Vec<u8> {
    usb.device()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .flash()
        .to_vec()
}

/// Whether the board has power.
pub fn powered(usb: &SimUsb<Stm32f4>) -> bool {
    usb.device()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_powered()
}
