//! Every number on the command line is range-checked by its parser: a bad
//! one is a usage error (exit 2) that names the option, never a panic
//! (exit 101) or a wrapped value.

mod common;

use common::{run, stderr};

#[test]
fn out_of_range_numbers_are_usage_errors_naming_the_option() {
    let cases: &[(&[&str], &str, &[&str])] = &[
        (
            &[
                "nordic",
                "dfu",
                "serial",
                "--package",
                "p.zip",
                "--port",
                "/dev/null",
            ],
            "--timeout",
            &["inf", "1e20", "-1", "NaN", "0"],
        ),
        (
            &[
                "nordic",
                "dfu",
                "serial",
                "--package",
                "p.zip",
                "--port",
                "/dev/null",
            ],
            "--baud",
            &["0", "-1", "1e3", "99999999999"],
        ),
        (
            &["nordic", "dfu", "ble", "--sim", "--package", "p.zip"],
            "--scan",
            &["1e300", "inf", "-5"],
        ),
        (
            &["nordic", "dfu", "ble", "--sim", "--package", "p.zip"],
            "--timeout",
            &["NaN"],
        ),
        (
            &["stm32mp", "flash", "l.tsv"],
            "--tfa-timeout",
            &["inf", "-1", "1e300"],
        ),
        (&["stm32mp", "flash", "l.tsv"], "--connect-timeout", &["0"]),
        (
            &["sim", "stm32mp1"],
            "--emmc-size-mib",
            &["0", "18446744073709551615", "-3"],
        ),
        (
            &["sim", "nrf52840", "--pty"],
            "--hw-version",
            &["0x100000000", "-1"],
        ),
        (
            &["usb", "download", "-D", "f.bin"],
            "--transfer-size",
            &["70000", "-1"],
        ),
    ];
    for (args, option, values) in cases {
        for v in *values {
            // `--option=VALUE`, so that `-1` is a value and not a flag.
            let arg = format!("{option}={v}");
            let mut a = args.to_vec();
            a.push(&arg);
            let out = run(&a);
            let err = stderr(&out);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{a:?}: not a usage error:\n{err}"
            );
            assert!(
                err.contains(option),
                "{a:?}: error does not name {option}:\n{err}"
            );
            assert!(!err.contains("panicked"), "{a:?}:\n{err}");
        }
    }
}
