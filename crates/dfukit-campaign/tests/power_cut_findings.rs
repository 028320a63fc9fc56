//! The campaign's findings, each replayed as a plain test (the full
//! campaign is `dfukit bench power-cuts`; `scripts/test` runs its
//! `--quick` subset too).

use dfukit_campaign::power_cuts::{nordic, Scenario, Trial, Verdict};
use dfukit_sim::{CutPoint, PowerCutPlan};

fn scenario(name: &str) -> Box<dyn Scenario> {
    nordic::scenarios()
        .expect("scenarios set up")
        .into_iter()
        .find(|s| s.name() == name)
        .expect("a scenario of that name")
}

fn assert_recovers(s: &dyn Scenario, first: PowerCutPlan) {
    let t = Trial {
        first,
        nested: vec![],
        seed: 7,
    };
    let v = s.trial(&t);
    assert!(
        matches!(v, Verdict::Recovered { .. }),
        "{}: {t}: {v:?}",
        s.name()
    );
}

/// A single-bank update resumed after a cut found bank 0 already given up
/// and recorded the resumed update as dual bank: the settings ended
/// different from an uninterrupted update's.
#[test]
fn a_resumed_single_bank_update_ends_with_the_settings_of_a_clean_one() {
    let s = scenario("nrf52840-single-bank");
    for op in [3, 4, 10] {
        assert_recovers(s.as_ref(), PowerCutPlan::before(op));
    }
}

/// A settings program cut inside the advertising name (0x364) leaves a page
/// whose CRCs hold; the torn bytes stayed in flash. Every operation of the
/// update is cut at that point.
#[test]
fn a_settings_page_torn_in_its_advertising_name_is_rewritten() {
    let s = scenario("nrf52840-settings-tears");
    for op in 1..=s.clean_ops() {
        assert_recovers(s.as_ref(), PowerCutPlan::during(op, CutPoint::Bytes(0x368)));
    }
}
