//! The simulated boards. Each is a device core plus the hardware around
//! it (flash chips with datasheet timing, storage images in a state
//! directory, fault switches), and each implements [`crate::Board`].

/// The [`crate::Board`] methods of a board that keeps its time in a
/// `clock: BoardClock` field, has no power model (it is always on), and
/// runs what is due in a `run_due(&mut self)` method: the STM32 boards.
macro_rules! board_on_board_clock {
    () => {
        fn now(&self) -> Instant {
            self.clock.now()
        }
        fn advance(&mut self, now: Instant) {
            self.clock.advance_to(now);
            self.run_due();
        }
        fn is_powered(&self) -> bool {
            true
        }
    };
}

pub mod nrf52840;
pub mod stm32f4;
pub mod stm32mp1;

use dfukit_core::Instant;

/// The sooner of two optional wake-ups: what a board reports as
/// [`dfukit_core::Board::next_wakeup`] when two of its parts keep time.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The device descriptor ST's DFU devices (ROM bootloader, TF-A, U-Boot)
/// report: 0483:df11, one configuration, strings 1-3 for manufacturer,
/// product and serial number; `bcd_device` tells them apart.
pub(crate) fn st_dfu_device_descriptor(bcd_device: u16) -> Vec<u8> {
    dfukit_usbip::descriptors::DeviceDescriptor {
        usb_version: 0x0200,
        class: 0,
        subclass: 0,
        protocol: 0,
        max_packet_size0: 64,
        vendor_id: 0x0483,
        product_id: 0xDF11,
        bcd_device,
        manufacturer: 1,
        product: 2,
        serial_number: 3,
        num_configurations: 1,
    }
    .to_bytes()
    .to_vec()
}
