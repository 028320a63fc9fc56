#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| dfukit_fuzz::libusb_descriptors(data));
