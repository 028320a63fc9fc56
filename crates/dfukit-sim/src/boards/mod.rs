//! The simulated boards. Each is a device core plus the hardware around
//! it (flash chips with datasheet timing, storage images in a state
//! directory, fault switches), and each implements [`crate::Board`].

pub mod nrf52840;
pub mod stm32f4;
pub mod stm32mp1;
