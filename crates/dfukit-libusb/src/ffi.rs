//! C layouts and constants of libusb 1.0.26's public `libusb.h`.
//!
//! Every struct here is `#[repr(C)]` with the field order, types and
//! names (modulo Rust case) of the header, so programs compiled against
//! the real libusb read them correctly.

// Field names are libusb.h's; their documentation is the header's.
#![allow(non_camel_case_types, non_snake_case, missing_docs)]

use std::os::raw::{c_char, c_int, c_uchar};

/// `LIBUSB_SUCCESS`.
pub const LIBUSB_SUCCESS: c_int = 0;

/// Declares libusb's error codes from one table: each becomes a constant, an entry of
/// [`ALL_ERRORS`] and the arms of [`error_name`] (its name) and [`strerror`] (its text).
macro_rules! libusb_errors {
    ($($name:ident = $code:literal, $text:literal;)*) => {
        $(
            #[doc = concat!("`", stringify!($name), "`.")]
            pub const $name: c_int = $code;
        )*

        /// `LIBUSB_ERROR_COUNT`-style table: every error code the library returns.
        pub const ALL_ERRORS: [c_int; 14] = [LIBUSB_SUCCESS, $($name),*];

        /// The symbolic name of an error code, NUL-terminated.
        fn error_code_name(code: c_int) -> Option<&'static [u8]> {
            match code {
                $($name => Some(concat!(stringify!($name), "\0").as_bytes()),)*
                _ => None,
            }
        }

        /// The English description of an error code, NUL-terminated.
        fn error_code_text(code: c_int) -> Option<&'static [u8]> {
            match code {
                $($name => Some(concat!($text, "\0").as_bytes()),)*
                _ => None,
            }
        }
    };
}

libusb_errors! {
    LIBUSB_ERROR_IO = -1, "Input/Output Error";
    LIBUSB_ERROR_INVALID_PARAM = -2, "Invalid parameter";
    LIBUSB_ERROR_ACCESS = -3, "Access denied (insufficient permissions)";
    LIBUSB_ERROR_NO_DEVICE = -4, "No such device (it may have been disconnected)";
    LIBUSB_ERROR_NOT_FOUND = -5, "Entity not found";
    LIBUSB_ERROR_BUSY = -6, "Resource busy";
    LIBUSB_ERROR_TIMEOUT = -7, "Operation timed out";
    LIBUSB_ERROR_OVERFLOW = -8, "Overflow";
    LIBUSB_ERROR_PIPE = -9, "Pipe error";
    LIBUSB_ERROR_INTERRUPTED = -10, "System call interrupted (perhaps due to signal)";
    LIBUSB_ERROR_NO_MEM = -11, "Insufficient memory";
    LIBUSB_ERROR_NOT_SUPPORTED = -12, "Operation not supported or unimplemented on this platform";
    LIBUSB_ERROR_OTHER = -99, "Other error";
}

/// `LIBUSB_OPTION_LOG_LEVEL`.
pub const LIBUSB_OPTION_LOG_LEVEL: c_int = 0;
/// `LIBUSB_OPTION_USE_USBDK`.
pub const LIBUSB_OPTION_USE_USBDK: c_int = 1;
/// `LIBUSB_OPTION_NO_DEVICE_DISCOVERY` (alias `LIBUSB_OPTION_WEAK_AUTHORITY`).
pub const LIBUSB_OPTION_NO_DEVICE_DISCOVERY: c_int = 2;

/// `LIBUSB_CAP_HAS_CAPABILITY`.
pub const LIBUSB_CAP_HAS_CAPABILITY: u32 = 0x0000;
/// `LIBUSB_CAP_HAS_HOTPLUG`.
pub const LIBUSB_CAP_HAS_HOTPLUG: u32 = 0x0001;
/// `LIBUSB_CAP_HAS_HID_ACCESS`.
pub const LIBUSB_CAP_HAS_HID_ACCESS: u32 = 0x0100;
/// `LIBUSB_CAP_SUPPORTS_DETACH_KERNEL_DRIVER`.
pub const LIBUSB_CAP_SUPPORTS_DETACH_KERNEL_DRIVER: u32 = 0x0101;

/// `LIBUSB_SPEED_UNKNOWN`.
pub const LIBUSB_SPEED_UNKNOWN: c_int = 0;
/// `LIBUSB_SPEED_LOW`.
pub const LIBUSB_SPEED_LOW: c_int = 1;
/// `LIBUSB_SPEED_FULL`.
pub const LIBUSB_SPEED_FULL: c_int = 2;
/// `LIBUSB_SPEED_HIGH`.
pub const LIBUSB_SPEED_HIGH: c_int = 3;
/// `LIBUSB_SPEED_SUPER`.
pub const LIBUSB_SPEED_SUPER: c_int = 4;
/// `LIBUSB_SPEED_SUPER_PLUS`.
pub const LIBUSB_SPEED_SUPER_PLUS: c_int = 5;

/// `LIBUSB_DT_DEVICE`.
pub const LIBUSB_DT_DEVICE: u8 = 0x01;
/// `LIBUSB_DT_CONFIG`.
pub const LIBUSB_DT_CONFIG: u8 = 0x02;
/// `LIBUSB_DT_STRING`.
pub const LIBUSB_DT_STRING: u8 = 0x03;
/// `LIBUSB_DT_INTERFACE`.
pub const LIBUSB_DT_INTERFACE: u8 = 0x04;
/// `LIBUSB_DT_ENDPOINT`.
pub const LIBUSB_DT_ENDPOINT: u8 = 0x05;

/// `LIBUSB_DT_DEVICE_SIZE`.
pub const LIBUSB_DT_DEVICE_SIZE: usize = 18;
/// `LIBUSB_DT_CONFIG_SIZE`.
pub const LIBUSB_DT_CONFIG_SIZE: usize = 9;
/// `LIBUSB_DT_INTERFACE_SIZE`.
pub const LIBUSB_DT_INTERFACE_SIZE: usize = 9;
/// `LIBUSB_DT_ENDPOINT_SIZE`.
pub const LIBUSB_DT_ENDPOINT_SIZE: usize = 7;
/// `LIBUSB_DT_ENDPOINT_AUDIO_SIZE`.
pub const LIBUSB_DT_ENDPOINT_AUDIO_SIZE: usize = 9;

/// `LIBUSB_REQUEST_GET_CONFIGURATION`.
pub const LIBUSB_REQUEST_GET_CONFIGURATION: u8 = 0x08;
/// `LIBUSB_REQUEST_SET_CONFIGURATION`.
pub const LIBUSB_REQUEST_SET_CONFIGURATION: u8 = 0x09;
/// `LIBUSB_REQUEST_GET_DESCRIPTOR`.
pub const LIBUSB_REQUEST_GET_DESCRIPTOR: u8 = 0x06;
/// `LIBUSB_REQUEST_SET_INTERFACE`.
pub const LIBUSB_REQUEST_SET_INTERFACE: u8 = 0x0b;
/// `LIBUSB_REQUEST_SET_FEATURE`.
pub const LIBUSB_REQUEST_SET_FEATURE: u8 = 0x03;

/// `struct libusb_device_descriptor`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct libusb_device_descriptor {
    pub bLength: u8,
    pub bDescriptorType: u8,
    pub bcdUSB: u16,
    pub bDeviceClass: u8,
    pub bDeviceSubClass: u8,
    pub bDeviceProtocol: u8,
    pub bMaxPacketSize0: u8,
    pub idVendor: u16,
    pub idProduct: u16,
    pub bcdDevice: u16,
    pub iManufacturer: u8,
    pub iProduct: u8,
    pub iSerialNumber: u8,
    pub bNumConfigurations: u8,
}

/// `struct libusb_endpoint_descriptor`.
#[repr(C)]
#[derive(Debug)]
pub struct libusb_endpoint_descriptor {
    pub bLength: u8,
    pub bDescriptorType: u8,
    pub bEndpointAddress: u8,
    pub bmAttributes: u8,
    pub wMaxPacketSize: u16,
    pub bInterval: u8,
    pub bRefresh: u8,
    pub bSynchAddress: u8,
    pub extra: *const c_uchar,
    pub extra_length: c_int,
}

/// `struct libusb_interface_descriptor`.
#[repr(C)]
#[derive(Debug)]
pub struct libusb_interface_descriptor {
    pub bLength: u8,
    pub bDescriptorType: u8,
    pub bInterfaceNumber: u8,
    pub bAlternateSetting: u8,
    pub bNumEndpoints: u8,
    pub bInterfaceClass: u8,
    pub bInterfaceSubClass: u8,
    pub bInterfaceProtocol: u8,
    pub iInterface: u8,
    pub endpoint: *const libusb_endpoint_descriptor,
    pub extra: *const c_uchar,
    pub extra_length: c_int,
}

/// `struct libusb_interface`.
#[repr(C)]
#[derive(Debug)]
pub struct libusb_interface {
    pub altsetting: *const libusb_interface_descriptor,
    pub num_altsetting: c_int,
}

/// `struct libusb_config_descriptor`.
#[repr(C)]
#[derive(Debug)]
pub struct libusb_config_descriptor {
    pub bLength: u8,
    pub bDescriptorType: u8,
    pub wTotalLength: u16,
    pub bNumInterfaces: u8,
    pub bConfigurationValue: u8,
    pub iConfiguration: u8,
    pub bmAttributes: u8,
    pub MaxPower: u8,
    pub interface: *const libusb_interface,
    pub extra: *const c_uchar,
    pub extra_length: c_int,
}

/// `struct libusb_version`.
#[repr(C)]
#[derive(Debug)]
pub struct libusb_version {
    pub major: u16,
    pub minor: u16,
    pub micro: u16,
    pub nano: u16,
    pub rc: *const c_char,
    pub describe: *const c_char,
}

// SAFETY: the only instance is a static whose pointers reference static,
// immutable C strings.
unsafe impl Sync for libusb_version {}

/// `libusb_error_name`: the symbolic name of an error or transfer status
/// code, as a NUL-terminated static string.
pub fn error_name(code: c_int) -> &'static [u8] {
    error_code_name(code).unwrap_or(match code {
        // Transfer status codes (enum libusb_transfer_status), which
        // libusb_error_name also names.
        0 => b"LIBUSB_SUCCESS / LIBUSB_TRANSFER_COMPLETED\0",
        1 => b"LIBUSB_TRANSFER_ERROR\0",
        2 => b"LIBUSB_TRANSFER_TIMED_OUT\0",
        3 => b"LIBUSB_TRANSFER_CANCELLED\0",
        4 => b"LIBUSB_TRANSFER_STALL\0",
        5 => b"LIBUSB_TRANSFER_NO_DEVICE\0",
        6 => b"LIBUSB_TRANSFER_OVERFLOW\0",
        _ => b"**UNKNOWN**\0",
    })
}

/// `libusb_strerror` (English): a short description of an error code, as a
/// NUL-terminated static string.
pub fn strerror(code: c_int) -> &'static [u8] {
    error_code_text(code).unwrap_or(match code {
        LIBUSB_SUCCESS => b"Success\0",
        _ => b"Unknown error\0",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    /// Offsets and sizes as a C compiler lays out libusb.h on LP64.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn layouts_match_libusb_h() {
        assert_eq!(size_of::<libusb_device_descriptor>(), 18);
        assert_eq!(offset_of!(libusb_device_descriptor, bcdUSB), 2);
        assert_eq!(offset_of!(libusb_device_descriptor, idVendor), 8);
        assert_eq!(offset_of!(libusb_device_descriptor, bNumConfigurations), 17);

        assert_eq!(offset_of!(libusb_endpoint_descriptor, wMaxPacketSize), 4);
        assert_eq!(offset_of!(libusb_endpoint_descriptor, bSynchAddress), 8);
        assert_eq!(offset_of!(libusb_endpoint_descriptor, extra), 16);
        assert_eq!(offset_of!(libusb_endpoint_descriptor, extra_length), 24);
        assert_eq!(size_of::<libusb_endpoint_descriptor>(), 32);

        assert_eq!(offset_of!(libusb_interface_descriptor, iInterface), 8);
        assert_eq!(offset_of!(libusb_interface_descriptor, endpoint), 16);
        assert_eq!(offset_of!(libusb_interface_descriptor, extra), 24);
        assert_eq!(offset_of!(libusb_interface_descriptor, extra_length), 32);
        assert_eq!(size_of::<libusb_interface_descriptor>(), 40);

        assert_eq!(size_of::<libusb_interface>(), 16);

        assert_eq!(offset_of!(libusb_config_descriptor, wTotalLength), 2);
        assert_eq!(offset_of!(libusb_config_descriptor, MaxPower), 8);
        assert_eq!(offset_of!(libusb_config_descriptor, interface), 16);
        assert_eq!(offset_of!(libusb_config_descriptor, extra), 24);
        assert_eq!(offset_of!(libusb_config_descriptor, extra_length), 32);
        assert_eq!(size_of::<libusb_config_descriptor>(), 40);

        assert_eq!(offset_of!(libusb_version, rc), 8);
        assert_eq!(offset_of!(libusb_version, describe), 16);
        assert_eq!(size_of::<libusb_version>(), 24);
        assert_eq!(align_of::<libusb_version>(), 8);
    }

    #[test]
    fn every_error_has_a_name_and_a_description() {
        for code in ALL_ERRORS {
            assert_ne!(error_name(code), b"**UNKNOWN**\0", "{code}");
            assert_ne!(strerror(code), b"Unknown error\0", "{code}");
            assert_eq!(error_name(code).last(), Some(&0));
        }
        assert_eq!(error_name(-9), b"LIBUSB_ERROR_PIPE\0");
        assert_eq!(error_name(-1000), b"**UNKNOWN**\0");
        assert_eq!(strerror(-1000), b"Unknown error\0");
    }
}
