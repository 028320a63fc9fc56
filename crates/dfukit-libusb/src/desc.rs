//! Descriptor parsing into libusb's C structures.
//!
//! [`parse_device_descriptor`] reads the 18-byte device descriptor;
//! [`ConfigDescriptor::parse`] turns a full configuration descriptor (the
//! `wTotalLength` bytes that GET_DESCRIPTOR(CONFIGURATION) returns) into the
//! tree `libusb_config_descriptor` → `libusb_interface` →
//! `libusb_interface_descriptor` → `libusb_endpoint_descriptor`, following
//! libusb's own `descriptor.c`: descriptors that are not interface or
//! endpoint descriptors (class-specific ones such as the DFU functional
//! descriptor, interface association descriptors, vendor descriptors) are
//! kept verbatim in the `extra` bytes of whatever precedes them: the
//! configuration, an alternate setting, or an endpoint.

use crate::ffi::*;
use std::os::raw::c_int;
use std::ptr;

/// Why a descriptor could not be parsed (libusb reports `LIBUSB_ERROR_IO`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescError(pub String);

impl std::fmt::Display for DescError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DescError {}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// What a parser checks first: that `b` is at least `min` bytes of
/// descriptor type `ty`. The errors name the descriptor (`name`), the length
/// wanted (`want`) and the type as the USB spec does (`ty_name`).
fn check_head(
    b: &[u8],
    (name, min, want): (&str, usize, &str),
    (ty, ty_name): (u8, &str),
) -> Result<(), DescError> {
    if b.len() < min {
        return Err(DescError(format!(
            "{name} descriptor is {} bytes, want {want}",
            b.len()
        )));
    }
    if b[1] != ty {
        return Err(DescError(format!(
            "descriptor type {:#04x} is not {ty_name}",
            b[1]
        )));
    }
    Ok(())
}

/// Parses an 18-byte device descriptor.
pub fn parse_device_descriptor(b: &[u8]) -> Result<libusb_device_descriptor, DescError> {
    let size = ("device", LIBUSB_DT_DEVICE_SIZE, "18");
    check_head(b, size, (LIBUSB_DT_DEVICE, "DEVICE"))?;
    Ok(libusb_device_descriptor {
        bLength: b[0],
        bDescriptorType: b[1],
        bcdUSB: le16(b, 2),
        bDeviceClass: b[4],
        bDeviceSubClass: b[5],
        bDeviceProtocol: b[6],
        bMaxPacketSize0: b[7],
        idVendor: le16(b, 8),
        idProduct: le16(b, 10),
        bcdDevice: le16(b, 12),
        iManufacturer: b[14],
        iProduct: b[15],
        iSerialNumber: b[16],
        bNumConfigurations: b[17],
    })
}

/// Owned, parsed endpoint: its C struct plus the bytes its `extra` points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The first `bLength` bytes (7, or 9 for audio endpoints).
    pub header: Vec<u8>,
    /// Class-specific descriptors that followed it.
    pub extra: Vec<u8>,
}

/// Owned, parsed alternate setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AltSettingDesc {
    /// The 9-byte interface descriptor.
    pub header: [u8; 9],
    /// Class-specific descriptors that followed it (e.g. DFU functional).
    pub extra: Vec<u8>,
    /// Its endpoints.
    pub endpoints: Vec<Endpoint>,
}

/// Owned, parsed configuration descriptor (the Rust-side model; see
/// [`ConfigDescriptor::into_c`] for the C tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDescriptor {
    /// The 9-byte configuration descriptor header.
    pub header: [u8; 9],
    /// Descriptors between the header and the first interface.
    pub extra: Vec<u8>,
    /// Interfaces, each a run of alternate settings with the same number.
    pub interfaces: Vec<Vec<AltSettingDesc>>,
}

/// Descriptor types that end an `extra` run (libusb's `descriptor.c`).
fn ends_extra(t: u8) -> bool {
    matches!(
        t,
        LIBUSB_DT_INTERFACE | LIBUSB_DT_ENDPOINT | LIBUSB_DT_CONFIG | LIBUSB_DT_DEVICE
    )
}

/// Walks descriptors from `at` until one that [`ends_extra`] (or the end),
/// returning the end of the run.
fn skip_extra(b: &[u8], mut at: usize) -> Result<usize, DescError> {
    while at + 2 <= b.len() {
        let len = b[at] as usize;
        if len < 2 {
            return Err(DescError(format!("descriptor at {at} has bLength {len}")));
        }
        if ends_extra(b[at + 1]) {
            break;
        }
        if at + len > b.len() {
            // A truncated trailing descriptor: libusb keeps what is there.
            return Ok(b.len());
        }
        at += len;
    }
    Ok(at.min(b.len()))
}

impl ConfigDescriptor {
    /// Parses a full configuration descriptor.
    pub fn parse(b: &[u8]) -> Result<Self, DescError> {
        let size = ("configuration", LIBUSB_DT_CONFIG_SIZE, "at least 9");
        check_head(b, size, (LIBUSB_DT_CONFIG, "CONFIGURATION"))?;
        if (b[0] as usize) < LIBUSB_DT_CONFIG_SIZE {
            return Err(DescError(format!("invalid config bLength {}", b[0])));
        }
        let total = (le16(b, 2) as usize).min(b.len());
        let b = &b[..total.max(LIBUSB_DT_CONFIG_SIZE)];
        let mut header = [0u8; 9];
        header.copy_from_slice(&b[..9]);
        let num_ifaces = b[4] as usize;

        let mut at = b[0] as usize;
        let end = skip_extra(b, at.min(b.len()))?;
        let extra = b[at.min(b.len())..end].to_vec();
        at = end;

        let mut interfaces: Vec<Vec<AltSettingDesc>> = Vec::new();
        while interfaces.len() < num_ifaces && at + LIBUSB_DT_INTERFACE_SIZE <= b.len() {
            let mut alts: Vec<AltSettingDesc> = Vec::new();
            let number = b[at + 2];
            while at + LIBUSB_DT_INTERFACE_SIZE <= b.len()
                && b[at + 1] == LIBUSB_DT_INTERFACE
                && b[at + 2] == number
            {
                let alt = parse_alt(b, &mut at)?;
                alts.push(alt);
                // Anything that is neither an interface nor ends a run
                // has been consumed as extra; stop at a foreign descriptor.
            }
            if alts.is_empty() {
                // Not at an interface descriptor: skip whatever is here
                // (libusb warns and skips unexpected descriptors).
                let len = b[at] as usize;
                if len < 2 {
                    return Err(DescError(format!("descriptor at {at} has bLength {len}")));
                }
                at += len;
                continue;
            }
            interfaces.push(alts);
        }
        Ok(ConfigDescriptor {
            header,
            extra,
            interfaces,
        })
    }

    /// Builds the C tree. The returned pointer owns every allocation and must
    /// be released with [`ConfigDescriptor::free_c`].
    pub fn into_c(self) -> *mut libusb_config_descriptor {
        CConfig::build(self)
    }

    /// Frees a tree made by [`ConfigDescriptor::into_c`].
    ///
    /// # Safety
    /// `p` must come from [`ConfigDescriptor::into_c`] and not be freed twice.
    pub unsafe fn free_c(p: *mut libusb_config_descriptor) {
        if !p.is_null() {
            // SAFETY: `libusb_config_descriptor` is the first field of the
            // #[repr(C)] `CConfig` that `build` leaked.
            drop(unsafe { Box::from_raw(p.cast::<CConfig>()) });
        }
    }
}

fn parse_alt(b: &[u8], at: &mut usize) -> Result<AltSettingDesc, DescError> {
    let len = b[*at] as usize;
    if len < LIBUSB_DT_INTERFACE_SIZE {
        return Err(DescError(format!("invalid interface bLength {len}")));
    }
    let mut header = [0u8; 9];
    header.copy_from_slice(&b[*at..*at + 9]);
    *at = (*at + len).min(b.len());
    let end = skip_extra(b, *at)?;
    let extra = b[*at..end].to_vec();
    *at = end;
    let mut endpoints = Vec::new();
    for _ in 0..header[4] {
        if *at + 2 > b.len() || b[*at + 1] != LIBUSB_DT_ENDPOINT {
            // Fewer endpoints than bNumEndpoints: libusb fails the parse.
            return Err(DescError(format!(
                "interface {} alt {} declares {} endpoints, found {}",
                header[2],
                header[3],
                header[4],
                endpoints.len()
            )));
        }
        let len = b[*at] as usize;
        if len < LIBUSB_DT_ENDPOINT_SIZE || *at + len > b.len() {
            return Err(DescError(format!("invalid endpoint bLength {len}")));
        }
        let ep_header = b[*at..*at + len.min(LIBUSB_DT_ENDPOINT_AUDIO_SIZE)].to_vec();
        *at += len;
        let end = skip_extra(b, *at)?;
        let ep_extra = b[*at..end].to_vec();
        *at = end;
        endpoints.push(Endpoint {
            header: ep_header,
            extra: ep_extra,
        });
    }
    Ok(AltSettingDesc {
        header,
        extra,
        endpoints,
    })
}

/// Pointer to `v`'s bytes, or NULL when empty (as libusb leaves `extra`).
fn extra_ptr(v: &[u8]) -> (*const u8, c_int) {
    if v.is_empty() {
        (ptr::null(), 0)
    } else {
        (v.as_ptr(), v.len() as c_int)
    }
}

/// One allocation holding a C configuration tree. `cfg` comes first so a
/// `*mut libusb_config_descriptor` is a `*mut CConfig`; the vectors'
/// heap buffers never move while the box is alive.
#[repr(C)]
struct CConfig {
    cfg: libusb_config_descriptor,
    interfaces: Vec<libusb_interface>,
    alts: Vec<Vec<libusb_interface_descriptor>>,
    endpoints: Vec<Vec<libusb_endpoint_descriptor>>,
    model: ConfigDescriptor,
}

impl CConfig {
    fn build(model: ConfigDescriptor) -> *mut libusb_config_descriptor {
        let h = model.header;
        let mut alts = Vec::with_capacity(model.interfaces.len());
        let mut endpoints = Vec::new();
        for iface in &model.interfaces {
            let mut descs = Vec::with_capacity(iface.len());
            for alt in iface {
                let eps: Vec<libusb_endpoint_descriptor> = alt
                    .endpoints
                    .iter()
                    .map(|ep| {
                        let e = &ep.header;
                        let (extra, extra_length) = extra_ptr(&ep.extra);
                        libusb_endpoint_descriptor {
                            bLength: e[0],
                            bDescriptorType: e[1],
                            bEndpointAddress: e[2],
                            bmAttributes: e[3],
                            wMaxPacketSize: le16(e, 4),
                            bInterval: e[6],
                            bRefresh: e.get(7).copied().unwrap_or(0),
                            bSynchAddress: e.get(8).copied().unwrap_or(0),
                            extra,
                            extra_length,
                        }
                    })
                    .collect();
                let a = &alt.header;
                let (extra, extra_length) = extra_ptr(&alt.extra);
                descs.push(libusb_interface_descriptor {
                    bLength: a[0],
                    bDescriptorType: a[1],
                    bInterfaceNumber: a[2],
                    bAlternateSetting: a[3],
                    bNumEndpoints: eps.len() as u8,
                    bInterfaceClass: a[5],
                    bInterfaceSubClass: a[6],
                    bInterfaceProtocol: a[7],
                    iInterface: a[8],
                    endpoint: if eps.is_empty() {
                        ptr::null()
                    } else {
                        eps.as_ptr()
                    },
                    extra,
                    extra_length,
                });
                endpoints.push(eps);
            }
            alts.push(descs);
        }
        let interfaces: Vec<libusb_interface> = alts
            .iter()
            .map(|descs| libusb_interface {
                altsetting: descs.as_ptr(),
                num_altsetting: descs.len() as c_int,
            })
            .collect();
        let (extra, extra_length) = extra_ptr(&model.extra);
        let cfg = libusb_config_descriptor {
            bLength: h[0],
            bDescriptorType: h[1],
            wTotalLength: le16(&h, 2),
            bNumInterfaces: interfaces.len() as u8,
            bConfigurationValue: h[5],
            iConfiguration: h[6],
            bmAttributes: h[7],
            MaxPower: h[8],
            interface: if interfaces.is_empty() {
                ptr::null()
            } else {
                interfaces.as_ptr()
            },
            extra,
            extra_length,
        };
        Box::into_raw(Box::new(CConfig {
            cfg,
            interfaces,
            alts,
            endpoints,
            model,
        }))
        .cast()
    }
}

/// Decodes a string descriptor (UTF-16LE) into ASCII as
/// `libusb_get_string_descriptor_ascii` does: non-ASCII units become `?`.
pub fn string_descriptor_ascii(desc: &[u8]) -> Result<Vec<u8>, DescError> {
    if desc.len() < 2 || desc[1] != LIBUSB_DT_STRING || (desc[0] as usize) > desc.len() {
        return Err(DescError("malformed string descriptor".into()));
    }
    let len = desc[0] as usize;
    Ok(desc[2..len]
        .chunks_exact(2)
        .map(|u| {
            if u[1] != 0 || u[0] & 0x80 != 0 {
                b'?'
            } else {
                u[0]
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::slice;

    /// A DFU-mode configuration: one interface with two alternate
    /// settings; the DFU functional descriptor follows the last alt (as
    /// on STM32 DfuSe), a vendor blob precedes the first interface, and a
    /// bulk endpoint carries a class-specific endpoint descriptor.
    fn sample() -> Vec<u8> {
        let mut v = vec![9, 2, 0, 0, 2, 1, 0, 0xc0, 50];
        v.extend_from_slice(&[4, 0xff, 0xaa, 0xbb]); // vendor, config extra
        v.extend_from_slice(&[9, 4, 0, 0, 0, 0xfe, 1, 2, 4]); // if0 alt0
        v.extend_from_slice(&[9, 4, 0, 1, 0, 0xfe, 1, 2, 5]); // if0 alt1
        v.extend_from_slice(&[9, 0x21, 0x0b, 0xff, 0, 0, 8, 0x1a, 1]); // DFU func
        v.extend_from_slice(&[9, 4, 1, 0, 1, 0xff, 0, 0, 0]); // if1 alt0, 1 ep
        v.extend_from_slice(&[7, 5, 0x81, 2, 0x40, 0, 0]); // ep 0x81 bulk 64
        v.extend_from_slice(&[3, 0x25, 7]); // class endpoint extra
        let total = v.len() as u16;
        v[2..4].copy_from_slice(&total.to_le_bytes());
        v
    }

    #[test]
    fn device_descriptor_fields() {
        let b = [
            18, 1, 0x00, 0x02, 0, 0, 0, 64, 0x83, 0x04, 0x11, 0xdf, 0x00, 0x02, 1, 2, 3, 1,
        ];
        let d = parse_device_descriptor(&b).unwrap();
        assert_eq!(d.bcdUSB, 0x0200);
        assert_eq!(d.idVendor, 0x0483);
        assert_eq!(d.idProduct, 0xdf11);
        assert_eq!(d.bcdDevice, 0x0200);
        assert_eq!((d.iManufacturer, d.iProduct, d.iSerialNumber), (1, 2, 3));
        assert_eq!(d.bNumConfigurations, 1);
        assert!(parse_device_descriptor(&b[..17]).is_err());
        let mut bad = b;
        bad[1] = 2;
        assert!(parse_device_descriptor(&bad).is_err());
    }

    #[test]
    fn config_tree_with_class_descriptors_in_extra() {
        let model = ConfigDescriptor::parse(&sample()).unwrap();
        assert_eq!(model.interfaces.len(), 2);
        assert_eq!(model.interfaces[0].len(), 2);
        let p = model.into_c();
        // SAFETY: `p` is a live tree from `into_c`, read the way C would.
        unsafe {
            let c = &*p;
            assert_eq!(c.bLength, 9);
            assert_eq!(c.wTotalLength as usize, sample().len());
            assert_eq!(c.bNumInterfaces, 2);
            assert_eq!(c.bConfigurationValue, 1);
            assert_eq!(c.bmAttributes, 0xc0);
            assert_eq!(c.MaxPower, 50);
            assert_eq!(
                slice::from_raw_parts(c.extra, c.extra_length as usize),
                &[4, 0xff, 0xaa, 0xbb]
            );
            let ifs = slice::from_raw_parts(c.interface, 2);
            assert_eq!(ifs[0].num_altsetting, 2);
            let alts = slice::from_raw_parts(ifs[0].altsetting, 2);
            assert_eq!(alts[0].bAlternateSetting, 0);
            assert_eq!(alts[0].iInterface, 4);
            assert_eq!(alts[0].extra_length, 0);
            assert!(alts[0].extra.is_null());
            assert!(alts[0].endpoint.is_null());
            assert_eq!(alts[1].bAlternateSetting, 1);
            assert_eq!(
                (alts[1].bInterfaceClass, alts[1].bInterfaceSubClass),
                (0xfe, 1)
            );
            assert_eq!(alts[1].bInterfaceProtocol, 2);
            let func = slice::from_raw_parts(alts[1].extra, alts[1].extra_length as usize);
            assert_eq!(func, &[9, 0x21, 0x0b, 0xff, 0, 0, 8, 0x1a, 1]);
            assert_eq!(ifs[1].num_altsetting, 1);
            let alt = &*ifs[1].altsetting;
            assert_eq!(alt.bInterfaceNumber, 1);
            assert_eq!(alt.bNumEndpoints, 1);
            let ep = &*alt.endpoint;
            assert_eq!(ep.bEndpointAddress, 0x81);
            assert_eq!(ep.bmAttributes, 2);
            assert_eq!(ep.wMaxPacketSize, 64);
            assert_eq!(
                slice::from_raw_parts(ep.extra, ep.extra_length as usize),
                &[3, 0x25, 7]
            );
            ConfigDescriptor::free_c(p);
        }
    }

    #[test]
    fn truncated_and_bogus_configs() {
        let s = sample();
        // wTotalLength larger than the data: parse what is there.
        let short = &s[..s.len() - 10];
        let m = ConfigDescriptor::parse(short);
        assert!(m.is_err(), "endpoint missing must fail like libusb: {m:?}");
        // Only the header and the DFU interface (interface count lowered).
        let mut v = s[..9 + 4 + 9].to_vec();
        v[4] = 1;
        let total = (v.len() as u16).to_le_bytes();
        v[2..4].copy_from_slice(&total);
        let m = ConfigDescriptor::parse(&v).unwrap();
        assert_eq!(m.interfaces.len(), 1);
        assert_eq!(m.interfaces[0].len(), 1);
        // A zero bLength inside is an error, not a hang.
        let mut z = s.clone();
        z[9] = 0;
        assert!(ConfigDescriptor::parse(&z).is_err());
        assert!(ConfigDescriptor::parse(&[9, 4, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(ConfigDescriptor::parse(&[9, 2]).is_err());
        // More interfaces declared than present: bNumInterfaces follows
        // what was parsed.
        let mut more = s.clone();
        more[4] = 5;
        let p = ConfigDescriptor::parse(&more).unwrap().into_c();
        // SAFETY: live tree from `into_c`.
        unsafe {
            assert_eq!((*p).bNumInterfaces, 2);
            ConfigDescriptor::free_c(p);
        }
    }

    #[test]
    fn string_descriptors_to_ascii() {
        let d = [10, 3, b'D', 0, b'F', 0, b'U', 0, 0xe9, 0];
        assert_eq!(string_descriptor_ascii(&d).unwrap(), b"DFU?");
        assert!(string_descriptor_ascii(&[10, 3, 0]).is_err());
        assert!(string_descriptor_ascii(&[4, 2, 9, 4]).is_err());
    }
}
