//! Parsers for every number on the command line. Each checks its range, so
//! `--timeout inf`, `--scan 1e300`, `-1` or `NaN` is a usage error naming
//! the accepted range (clap exits 2), never a panic later in
//! `Duration::from_secs_f64` or a shift that wraps.

use std::time::Duration;

/// The longest wait any option accepts: a day. Longer is a typo, and
/// `Duration::from_secs_f64` panics far above it.
pub const MAX_SECONDS: f64 = 86_400.0;

/// A duration in seconds (`5`, `0.25`), more than 0 and at most a day.
pub fn seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds (e.g. 5 or 0.5)"))?;
    if !v.is_finite() || v <= 0.0 || v > MAX_SECONDS {
        return Err(format!(
            "{s} s is out of range: give more than 0 and at most {MAX_SECONDS} seconds"
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

/// An unsigned 32-bit number, decimal or `0x` hex (an address, a size, a
/// version), with the range in the error.
pub fn u32_number(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse::<u64>(),
    };
    let v = parsed.map_err(|_| format!("{s:?} is not a number (decimal, or hex as 0x...)"))?;
    u32::try_from(v).map_err(|_| format!("{s} is out of range: at most 0xffffffff"))
}

/// A serial line rate: 50 to 12,000,000 baud (the fastest USB-UART
/// bridges; USB CDC and ptys ignore it).
pub fn baud(s: &str) -> Result<u32, String> {
    let v = u32_number(s)?;
    if !(50..=12_000_000).contains(&v) {
        return Err(format!("{v} baud is out of range: 50 to 12000000"));
    }
    Ok(v)
}

/// The largest storage size any option accepts, in MiB: 2 TiB (the SDXC
/// limit, and far below where `<< 20` would wrap).
pub const MAX_MIB: u64 = 2 << 20;

/// A storage size in MiB: at least 1, at most [`MAX_MIB`].
pub fn mebibytes(s: &str) -> Result<u64, String> {
    let v: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number of MiB"))?;
    if !(1..=MAX_MIB).contains(&v) {
        return Err(format!("{v} MiB is out of range: 1 to {MAX_MIB} (2 TiB)"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_spellings_that_used_to_panic_are_usage_errors() {
        for bad in ["inf", "-inf", "NaN", "1e20", "1e300", "-1", "0", "", "5s"] {
            let e = seconds(bad).unwrap_err();
            assert!(e.contains(bad) || bad.is_empty(), "{bad}: {e}");
        }
        for bad in ["-1", "0x1_0000_0000", "4294967296", "0x", "ten"] {
            assert!(u32_number(bad).is_err(), "{bad}");
        }
        for bad in ["0", "49", "12000001", "-9600"] {
            assert!(baud(bad).is_err(), "{bad}");
        }
        for bad in ["0", "18446744073709551615", "2097153", "-1"] {
            assert!(mebibytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn accepted_values() {
        assert_eq!(seconds("5").unwrap(), Duration::from_secs(5));
        assert_eq!(seconds(" 0.25").unwrap(), Duration::from_millis(250));
        assert_eq!(seconds("86400").unwrap(), Duration::from_secs(86_400));
        assert_eq!(u32_number("0x08000000").unwrap(), 0x0800_0000);
        assert_eq!(u32_number("4294967295").unwrap(), u32::MAX);
        assert_eq!(baud("115200").unwrap(), 115_200);
        assert_eq!(mebibytes("2097152").unwrap(), MAX_MIB);
    }

    proptest! {
        /// No string makes a parser panic.
        #[test]
        fn no_input_panics(s in ".{0,40}") {
            let _ = seconds(&s);
            let _ = u32_number(&s);
            let _ = baud(&s);
            let _ = mebibytes(&s);
        }

        /// Every float is accepted exactly when it is in range, and then
        /// gives that many seconds.
        #[test]
        fn seconds_accepts_exactly_its_range(v in proptest::num::f64::ANY) {
            let r = seconds(&v.to_string());
            if v.is_finite() && v > 0.0 && v <= MAX_SECONDS {
                let d = r.unwrap();
                prop_assert!((d.as_secs_f64() - v).abs() <= 1e-9 * v.max(1.0));
            } else {
                prop_assert!(r.is_err());
            }
        }

        /// Every u64 round-trips through decimal and hex when it fits in
        /// 32 bits, and is refused when it does not.
        #[test]
        fn u32_numbers_round_trip(v in any::<u64>()) {
            for s in [v.to_string(), format!("{v:#x}")] {
                match u32::try_from(v) {
                    Ok(small) => prop_assert_eq!(u32_number(&s).unwrap(), small),
                    Err(_) => prop_assert!(u32_number(&s).is_err()),
                }
            }
        }

        /// A size accepted in MiB never overflows when turned into bytes.
        #[test]
        fn accepted_sizes_fit_in_bytes(v in any::<u64>()) {
            if let Ok(mib) = mebibytes(&v.to_string()) {
                prop_assert!(mib.checked_mul(1 << 20).is_some());
            }
        }
    }
}
