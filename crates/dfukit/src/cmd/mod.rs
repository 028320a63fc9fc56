//! One module per command family. A family module never imports another:
//! what several families need lives in `crate::util` (output, progress,
//! diagnostics, shared CLI inputs) or in the libraries.

pub mod bench;
pub mod demo;
pub mod docs;
pub mod nordic;
pub mod sim;
pub mod stm32mp;
pub mod usb;
