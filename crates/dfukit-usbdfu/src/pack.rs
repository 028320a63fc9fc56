//! Building a DfuSe `.dfu` from address-tagged pieces, as `dfuse-pack` does.
//!
//! A piece is one contiguous run of bytes for one alternate setting (a `.bin` placed at an
//! address, or one segment of a HEX or ELF file). Pieces become elements; the elements of one
//! alt form one target, targets in the order their alt first appears and elements in input
//! order, so that inputs given alt by alt give the same bytes as `dfuse-pack`.
//!
//! What `dfuse-pack` lets through is refused here, naming the inputs: two pieces that overlap
//! on the same alt (the device would end with whichever it wrote last, and the verify of the
//! other fails after the board is already erased), empty pieces, and pieces that run past the
//! 32-bit address space.

use crate::files::{DfuseFile, Element, FileError, Suffix, Target};

/// One contiguous run of bytes to place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// Alternate setting it is written through.
    pub alt: u8,
    /// Load address of `data[0]`.
    pub address: u32,
    /// The bytes.
    pub data: Vec<u8>,
    /// Where it came from (`app.bin`, `fw.hex segment 2`), for errors.
    pub input: String,
}

impl Piece {
    /// One past the last byte, as a 64-bit number (it may be 2^32).
    pub fn end(&self) -> u64 {
        u64::from(self.address) + self.data.len() as u64
    }
}

/// Why pieces cannot become a `.dfu` file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    /// No pieces at all: a `.dfu` without targets downloads nothing.
    #[error("nothing to pack: give at least one input")]
    NoPieces,
    /// A piece has no bytes.
    #[error("{input} is empty")]
    Empty {
        /// The piece's input.
        input: String,
    },
    /// A piece runs past the 32-bit address space.
    #[error("{input}: {len} bytes at {address:#010x} run past 0xffffffff")]
    AddressOverflow {
        /// The piece's input.
        input: String,
        /// Its address.
        address: u32,
        /// Its length.
        len: usize,
    },
    /// Two pieces of one alt share bytes.
    #[error(
        "{second} ({second_start:#010x}..{second_end:#010x}) overlaps {first} \
         ({first_start:#010x}..{first_end:#010x}) on alt {alt}"
    )]
    Overlap {
        /// Alternate setting of both.
        alt: u8,
        /// The piece that starts first.
        first: String,
        /// Its first byte.
        first_start: u32,
        /// One past its last byte.
        first_end: u64,
        /// The piece that starts inside it.
        second: String,
        /// Its first byte.
        second_start: u32,
        /// One past its last byte.
        second_end: u64,
    },
    /// The result does not fit the format (more than 255 alts, a target over 4 GiB).
    #[error(transparent)]
    Format(#[from] FileError),
}

/// Packs `pieces` into a DfuSe file whose targets are all named `name` (as `dfuse-pack`
/// names every target `ST...`), with `suffix`'s identification fields.
///
/// The whole input is checked before anything is built. Returns the file and its bytes:
/// encoding is what proves it fits the format, so it is done here, once.
pub fn pack(
    pieces: Vec<Piece>,
    name: Option<&str>,
    suffix: Suffix,
) -> Result<(DfuseFile, Vec<u8>), PackError> {
    if pieces.is_empty() {
        return Err(PackError::NoPieces);
    }
    for p in &pieces {
        if p.data.is_empty() {
            return Err(PackError::Empty {
                input: p.input.clone(),
            });
        }
        if p.end() > 1 << 32 {
            return Err(PackError::AddressOverflow {
                input: p.input.clone(),
                address: p.address,
                len: p.data.len(),
            });
        }
    }
    check_overlaps(&pieces)?;
    let mut targets: Vec<Target> = Vec::new();
    for p in pieces {
        let element = Element {
            address: p.address,
            data: p.data,
        };
        match targets.iter_mut().find(|t| t.alt == p.alt) {
            Some(t) => t.elements.push(element),
            None => targets.push(Target {
                alt: p.alt,
                name: name.map(str::to_owned),
                elements: vec![element],
            }),
        }
    }
    let file = DfuseFile { targets, suffix };
    let bytes = file.to_bytes()?;
    Ok((file, bytes))
}

/// Refuses two pieces of one alt that share a byte; the first such pair by address is named.
fn check_overlaps(pieces: &[Piece]) -> Result<(), PackError> {
    let mut order: Vec<&Piece> = pieces.iter().collect();
    order.sort_by_key(|p| (p.alt, p.address));
    for pair in order.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.alt == b.alt && u64::from(b.address) < a.end() {
            return Err(PackError::Overlap {
                alt: a.alt,
                first: a.input.clone(),
                first_start: a.address,
                first_end: a.end(),
                second: b.input.clone(),
                second_start: b.address,
                second_end: b.end(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::BCD_DFUSE;

    fn piece(alt: u8, address: u32, len: usize, input: &str) -> Piece {
        Piece {
            alt,
            address,
            data: (0..len).map(|i| i as u8).collect(),
            input: input.into(),
        }
    }

    #[test]
    fn one_target_per_alt_in_order_of_first_appearance() {
        let (f, bytes) = pack(
            vec![
                piece(0, 0x0800_0000, 16, "a"),
                piece(1, 0x1FFF_C000, 4, "opt"),
                piece(0, 0x0800_4000, 8, "b"),
            ],
            Some("ST..."),
            Suffix::default(),
        )
        .unwrap();
        assert_eq!(f.targets.len(), 2);
        assert_eq!(f.targets[0].alt, 0);
        let addrs: Vec<u32> = f.targets[0].elements.iter().map(|e| e.address).collect();
        assert_eq!(addrs, [0x0800_0000, 0x0800_4000]);
        assert_eq!(f.targets[1].alt, 1);
        assert_eq!(f.targets[1].name.as_deref(), Some("ST..."));
        // What is packed reads back the same.
        let back = DfuseFile::parse(&bytes).unwrap();
        assert_eq!(back.targets, f.targets);
        assert_eq!(back.suffix.bcd_dfu, BCD_DFUSE);
    }

    #[test]
    fn overlapping_pieces_of_one_alt_are_refused_by_name() {
        let e = pack(
            vec![
                piece(0, 0x0800_0000, 0x1000, "app.bin"),
                piece(0, 0x0800_0FFF, 1, "patch.bin"),
            ],
            None,
            Suffix::default(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "patch.bin (0x08000fff..0x08001000) overlaps app.bin (0x08000000..0x08001000) on alt 0"
        );
        // Touching is fine, and so is the same range on another alt.
        pack(
            vec![
                piece(0, 0x0800_0000, 0x1000, "a"),
                piece(0, 0x0800_1000, 1, "b"),
                piece(1, 0x0800_0000, 0x1000, "c"),
            ],
            None,
            Suffix::default(),
        )
        .unwrap();
    }

    #[test]
    fn empty_missing_and_overflowing_inputs_are_refused() {
        assert_eq!(
            pack(vec![], None, Suffix::default()),
            Err(PackError::NoPieces)
        );
        assert!(matches!(
            pack(vec![piece(0, 0, 0, "e.bin")], None, Suffix::default()),
            Err(PackError::Empty { input }) if input == "e.bin"
        ));
        assert!(matches!(
            pack(
                vec![piece(0, 0xFFFF_FFF0, 17, "x.bin")],
                None,
                Suffix::default()
            ),
            Err(PackError::AddressOverflow {
                address: 0xFFFF_FFF0,
                len: 17,
                ..
            })
        ));
        // The last byte of the address space is allowed.
        pack(
            vec![piece(0, 0xFFFF_FFF0, 16, "y.bin")],
            None,
            Suffix::default(),
        )
        .unwrap();
    }

    #[test]
    fn a_name_too_long_for_the_format_is_refused_before_writing() {
        let long = "n".repeat(255);
        assert!(matches!(
            pack(vec![piece(0, 0, 1, "a")], Some(&long), Suffix::default()),
            Err(PackError::Format(FileError::TooLarge { .. }))
        ));
    }
}
