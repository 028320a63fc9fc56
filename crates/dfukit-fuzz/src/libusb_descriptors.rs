//! The libusb shim's descriptor parser (`dfukit_libusb::desc`), where the shim turns what a
//! device sends into the C structures dfu-util reads: a configuration descriptor that parses
//! is built as libusb's C tree, every field and `extra` block read the way C reads them, and
//! freed. Run under AddressSanitizer (`scripts/fuzz` does for this target), an out-of-bounds
//! read, a leak or a double free in that unsafe code is a crash.

use dfukit_libusb::desc::{parse_device_descriptor, ConfigDescriptor};
use std::slice;

/// The target body.
pub fn libusb_descriptors(data: &[u8]) {
    let _ = parse_device_descriptor(data);
    let Ok(config) = ConfigDescriptor::parse(data) else {
        return;
    };
    let p = config.into_c();
    let mut sum = 0u64;
    // SAFETY: `p` is the live tree `into_c` built; it is read within the lengths its own
    // fields give, as dfu-util reads it, and freed once.
    unsafe {
        let c = &*p;
        sum += bytes(c.extra, c.extra_length);
        let interfaces = parts(c.interface, usize::from(c.bNumInterfaces));
        for i in interfaces {
            for alt in parts(i.altsetting, usize::try_from(i.num_altsetting).unwrap_or(0)) {
                sum += u64::from(alt.bInterfaceClass) + bytes(alt.extra, alt.extra_length);
                for ep in parts(alt.endpoint, usize::from(alt.bNumEndpoints)) {
                    sum += u64::from(ep.wMaxPacketSize) + bytes(ep.extra, ep.extra_length);
                }
            }
        }
        ConfigDescriptor::free_c(p);
    }
    std::hint::black_box(sum);
}

/// `n` C structures at `p` (none when `p` is null, as C checks).
///
/// # Safety
/// `p` is null or points at `n` initialised values that outlive the slice.
unsafe fn parts<'a, T>(p: *const T, n: usize) -> &'a [T] {
    if p.is_null() || n == 0 {
        &[]
    } else {
        // SAFETY: the caller's contract.
        unsafe { slice::from_raw_parts(p, n) }
    }
}

/// The sum of an `extra` block's bytes, read in full.
///
/// # Safety
/// `p` is null or points at `len` bytes.
unsafe fn bytes(p: *const u8, len: i32) -> u64 {
    // SAFETY: the caller's contract.
    unsafe { parts(p, usize::try_from(len).unwrap_or(0)) }
        .iter()
        .map(|&b| u64::from(b))
        .sum()
}
