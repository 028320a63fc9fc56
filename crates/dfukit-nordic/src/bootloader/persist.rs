//! Settings persistence: reading the settings page (or its backup) at boot,
//! and queueing the writes of both pages.

use super::jobs::{Job, Source};
use super::{Bootloader, InternalLayout};
use crate::settings::{
    Settings, ADV_NAME_LEN, OFFSET_ADV_NAME, OFFSET_PEER_DATA, PEER_DATA_LEN, SETTINGS_LEN,
};
use dfukit_core::ReadFlash;

impl Bootloader {
    /// Queues, to run next: the settings page, then its backup (as
    /// `nrf_dfu_settings_write_and_backup` does), then `then`. The page image
    /// is serialized when its program starts, so it records everything done
    /// by the jobs before it.
    pub(super) fn write_settings_then(&mut self, then: &[Job]) {
        let l = self.cfg.layout;
        self.write_pages_then(&[l.settings_addr, l.backup_addr], then);
    }

    /// Writes the settings image to each of `pages` in order, then `then`.
    pub(super) fn write_pages_then(&mut self, pages: &[u32], then: &[Job]) {
        let l = self.cfg.layout;
        let len = (SETTINGS_LEN as u32).div_ceil(l.write_unit) * l.write_unit;
        let mut jobs: heapless::Vec<Job, 8> = heapless::Vec::new();
        for &addr in pages {
            let _ = jobs.push(Job::Erase {
                addr,
                len: l.page_size,
            });
            let _ = jobs.push(Job::Program {
                addr,
                len,
                src: Source::Settings,
            });
        }
        for j in then {
            jobs.push(*j).expect("settings tail fits");
        }
        self.push_front_all(&jobs);
    }
}

/// Which copy of the settings a boot found valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingsSource {
    /// The settings page.
    Main,
    /// The backup page: the main page was cut mid-write.
    Backup,
    /// Neither: a blank or corrupted device starts from defaults.
    None,
}

/// Reads the settings as `nrf_dfu_settings_reinit` does: the main page if
/// it is intact ([`Settings::is_intact`]), else the backup page, else defaults.
pub fn load_settings(
    layout: &InternalLayout,
    mem: &mut impl ReadFlash,
) -> (SettingsSource, Settings) {
    let mut page = [0u8; SETTINGS_LEN];
    let mut load = |addr| {
        mem.read(addr, &mut page)
            .ok()
            .map(|_| Settings::from_bytes(&page))
            .filter(Settings::is_intact)
    };
    let (source, mut s) = if let Some(s) = load(layout.settings_addr) {
        (SettingsSource::Main, s)
    } else if let Some(s) = load(layout.backup_addr) {
        (SettingsSource::Backup, s)
    } else {
        (SettingsSource::None, Settings::default())
    };
    repair_peer_parts(&mut s, layout.backup_addr, mem);
    (source, s)
}

/// The bonding data and the advertising name lie past every CRC that
/// decides whether a page is intact; each carries its own CRC (the SDK's
/// `nrf_dfu_peer_data_t` and `nrf_dfu_adv_name_t`), which says only whether
/// it is usable. A program cut inside them leaves a page that loads, with
/// these parts half-written; kept as read, the torn bytes would be written
/// back by every later settings write. A part that fails its CRC is taken
/// from the backup page when the backup's copy passes, else cleared to the
/// zeros of a new page (which the SDK reads as "none" too).
fn repair_peer_parts(s: &mut Settings, backup_addr: u32, mem: &mut impl ReadFlash) {
    if !s.peer_data_valid() {
        let mut b = Settings::default();
        let ok = mem
            .read(backup_addr + OFFSET_PEER_DATA as u32, &mut b.peer_data)
            .is_ok();
        s.peer_data = if ok && b.peer_data_valid() {
            b.peer_data
        } else {
            [0; PEER_DATA_LEN]
        };
    }
    if !s.adv_name_valid() {
        let mut b = Settings::default();
        let ok = mem
            .read(backup_addr + OFFSET_ADV_NAME as u32, &mut b.adv_name)
            .is_ok();
        s.adv_name = if ok && b.adv_name_valid() {
            b.adv_name
        } else {
            [0; ADV_NAME_LEN]
        };
    }
}
