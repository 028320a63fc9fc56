//! Every simulated board is driven through the one `Board` trait: time,
//! wake-ups, power and inspection work the same way on each.

use dfukit_core::Instant;
use dfukit_sim::board::run_until;
use dfukit_sim::boards::nrf52840::{Bank1, BoardConfig, Nrf52840};
use dfukit_sim::boards::stm32f4::{Stm32f4, Stm32f4Config};
use dfukit_sim::boards::stm32mp1::{BootStage, Stm32mp1, Stm32mp1Config};
use dfukit_sim::{Board, StateDir, Storage};
use std::time::Duration;

/// Whether nothing of the board's own falls due within the next second
/// (an idle bootloader still has its inactivity timer).
fn idle<B: Board>(b: &B) -> bool {
    b.next_wakeup()
        .is_none_or(|t| t.saturating_duration_since(b.now()) > Duration::from_secs(1))
}

/// Runs a board until it is idle, power-cycles it, and returns its
/// inspection in words before and after.
fn settle_and_cycle<B: Board>(board: &mut B) -> (String, String) {
    let t0 = board.now();
    run_until(board, Duration::from_secs(60), idle)
        .expect("the board settles within a minute of its time");
    assert!(board.now() >= t0, "time never goes backwards");
    board.advance(t0);
    assert!(board.now() >= t0);
    let before = board.inspect().to_string();
    board.power_cycle();
    assert!(board.is_powered());
    run_until(board, Duration::from_secs(60), idle)
        .expect("the board settles again after the power cycle");
    (before, board.inspect().to_string())
}

#[test]
fn the_nrf52840_boots_to_dfu_again_after_a_power_cycle() {
    let cfg = BoardConfig {
        bank1: Bank1::Qspi,
        flash_timing: true,
        ..BoardConfig::default()
    };
    let mut b = Nrf52840::new(
        cfg,
        Storage::in_memory(1 << 20),
        Storage::in_memory(8 << 20),
    )
    .unwrap();
    let boots = b.boots();
    let (before, after) = settle_and_cycle(&mut b);
    assert!(before.contains("nRF52840, bank 1 in QSPI"), "{before}");
    assert!(before.contains("none valid"), "{before}");
    assert_eq!(before, after, "nothing in flash changed");
    assert_eq!(
        b.boots(),
        boots + 1,
        "the power cycle rebooted the bootloader"
    );
}

#[test]
fn the_stm32f4_rom_enumerates_again_after_a_power_cycle() {
    let mut b = Stm32f4::in_memory(Stm32f4Config::default());
    b.use_virtual_time(Instant::ZERO);
    let (before, after) = settle_and_cycle(&mut b);
    assert!(before.contains("STM32F405 ROM bootloader"), "{before}");
    assert!(before.contains("dfuIDLE"), "{before}");
    assert_eq!(before, after);
}

#[test]
fn the_stm32mp1_is_back_in_the_rom_code_after_a_power_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let mut b = Stm32mp1::open(&state, Some(Stm32mp1Config::default())).unwrap();
    b.use_virtual_time(Instant::ZERO);
    let (before, after) = settle_and_cycle(&mut b);
    assert!(before.contains("STM32MP157 in USB boot"), "{before}");
    assert_eq!(b.stage(), BootStage::Rom);
    assert_eq!(before, after);
}
