#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| dfukit_fuzz::secure_dfu_device(data));
