//! The tamper campaign on another seed than the bench's default: every case
//! is refused with its expected error, every old image survives, every
//! control update installs, and each suite has every group of cases.

use dfukit_campaign::tamper;

#[test]
fn every_tampered_update_is_refused_for_its_reason_and_the_control_installs() {
    let suites = tamper::suites(0x7a3e).unwrap();
    let refs: Vec<&dyn tamper::Suite> = suites.iter().map(|s| s.as_ref()).collect();
    let report = tamper::run(&refs, 0x7a3e, 2);
    for s in &report.suites {
        assert!(s.failures.is_empty(), "{}: {:#?}", s.name, s.failures);
        assert_eq!(s.control_failed, None, "{}", s.name);
        let groups: Vec<&str> = s.groups.iter().map(|g| g.group).collect();
        assert_eq!(
            groups,
            [
                "init-bit-flip",
                "init-truncation",
                "init-extension",
                "signature-length",
                "signature-forged",
                "image-bit-flip",
                "image-truncation",
                "image-extension",
                "policy"
            ],
            "{}",
            s.name
        );
    }
    assert!(report.passed());
    assert_eq!(report.total.rejected, report.total.cases);
    assert!(report.total.cases > 9_000, "{:?}", report.total);
}

/// Every bit of the init packet is flipped once: the group's size is the
/// packet's bits, so a sampled or shortened loop shows here.
#[test]
fn every_bit_of_the_init_packet_is_a_case() {
    let suites = tamper::suites(1).unwrap();
    for s in &suites {
        let flips = s
            .cases()
            .iter()
            .filter(|c| c.group == "init-bit-flip")
            .count();
        let truncations = s
            .cases()
            .iter()
            .filter(|c| c.group == "init-truncation")
            .count();
        // Truncations are every length from 1 to the packet's length - 1.
        assert_eq!(flips, (truncations + 1) * 8, "{}", s.name());
    }
}
