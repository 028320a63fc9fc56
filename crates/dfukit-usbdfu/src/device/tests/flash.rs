//! [`DfuDevice`]: DfuSe over flash memory.

use super::super::{ConfigError, DeviceConfig, DeviceEvent, DfuDevice, Dialect, Reply};
use crate::wire::{DfuRequest, DfuSetup, GetStatus, SetupPacket, State, Status, REQUEST_TYPE_OUT};
use dfukit_core::{FlashOp, FlashOutcome, Instant, ReadError, ReadFlash};

/// 1 MiB of erased flash at 0x08000000; completes nothing by itself.
struct Mem(std::vec::Vec<u8>);

impl ReadFlash for Mem {
    fn read(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), ReadError> {
        let off = addr.checked_sub(0x0800_0000).ok_or(ReadError { addr })? as usize;
        let s = self.0.get(off..off + buf.len()).ok_or(ReadError { addr })?;
        buf.copy_from_slice(s);
        Ok(())
    }
}

fn dev(dialect: Dialect) -> (DfuDevice, Mem) {
    let mut cfg = DeviceConfig::stm32f4_rom();
    cfg.dialect = dialect;
    (DfuDevice::new(cfg).unwrap(), Mem(std::vec![0xFF; 1 << 20]))
}

fn req(d: &mut DfuDevice, m: &mut Mem, r: DfuRequest, value: u16, data: &[u8]) -> Reply {
    super::req(
        &mut |s, o, i| d.control(Instant::ZERO, s, o, i, m),
        r,
        value,
        data,
    )
}

/// A DfuSe command: a DNLOAD of block 0.
fn command(d: &mut DfuDevice, m: &mut Mem, bytes: &[u8]) -> Reply {
    req(d, m, DfuRequest::Dnload, 0, bytes)
}

fn status(d: &mut DfuDevice, m: &mut Mem) -> GetStatus {
    super::status(&mut |s, o, i| d.control(Instant::ZERO, s, o, i, m))
}

#[test]
fn command_reports_dnbusy_first_then_idle() {
    let (mut d, mut m) = dev(Dialect::ST_ROM);
    assert_eq!(command(&mut d, &mut m, &[0x21, 0, 0, 0, 8]), Reply::Ack);
    assert_eq!(d.state(), State::DfuDnloadSync);
    assert_eq!(status(&mut d, &mut m).state, State::DfuDnbusy);
    assert_eq!(status(&mut d, &mut m).state, State::DfuDnloadIdle);
    assert_eq!(d.address_pointer(), 0x0800_0000);
}

#[test]
fn erase_hands_out_one_sector_and_waits_for_completion() {
    let (mut d, mut m) = dev(Dialect::ST_ROM);
    command(&mut d, &mut m, &[0x41, 0, 0x40, 0, 8]);
    let st = status(&mut d, &mut m);
    assert_eq!(st.state, State::DfuDnbusy);
    assert_eq!(
        d.poll_flash(),
        Some(FlashOp::Erase {
            addr: 0x0800_4000,
            len: 0x4000
        })
    );
    assert_eq!(d.poll_flash(), None, "handed out once");
    assert_eq!(status(&mut d, &mut m).state, State::DfuDnbusy);
    d.flash_complete(Instant::ZERO, FlashOutcome::Done);
    assert_eq!(status(&mut d, &mut m).state, State::DfuDnloadIdle);
}

#[test]
fn unexpected_requests_stall_into_error() {
    let (mut d, mut m) = dev(Dialect::ST_ROM);
    // Block 1 is reserved in DfuSe.
    assert_eq!(
        req(&mut d, &mut m, DfuRequest::Dnload, 1, &[0; 4]),
        Reply::Stall
    );
    let st = status(&mut d, &mut m);
    assert_eq!(
        (st.state, st.status),
        (State::DfuError, Status::ErrStalledPkt)
    );
    assert_eq!(
        req(&mut d, &mut m, DfuRequest::ClrStatus, 0, &[]),
        Reply::Ack
    );
    assert_eq!(d.state(), State::DfuIdle);
    // Zero-length DNLOAD in dfuIDLE: the ST ROM takes it as the DfuSe leave
    // request (dfu-util returns to idle before `:leave`); plain DFU (U-Boot)
    // has nothing to manifest and stalls.
    {
        let (mut st_rom, mut m2) = dev(Dialect::ST_ROM);
        assert_eq!(
            req(&mut st_rom, &mut m2, DfuRequest::Dnload, 0, &[]),
            Reply::Ack
        );
        assert_eq!(st_rom.state(), State::DfuManifestSync);
        let (mut uboot, mut m3) = dev(Dialect::U_BOOT);
        assert_eq!(
            req(&mut uboot, &mut m3, DfuRequest::Dnload, 0, &[]),
            Reply::Stall
        );
        assert_eq!(uboot.state(), State::DfuError);
    }
    // Unknown DfuSe command byte.
    assert_eq!(command(&mut d, &mut m, &[0x55]), Reply::Stall);
    assert_eq!(d.status(), Status::ErrStalledPkt);
}

#[test]
fn requests_for_other_interfaces_or_unknown_codes_stall_without_state_change() {
    let (mut d, mut m) = dev(Dialect::ST_ROM);
    let mut buf = [0u8; 8];
    let other = SetupPacket::dfu(DfuRequest::GetStatus, 0, 1, 6);
    assert_eq!(
        d.control(Instant::ZERO, &other, &[], &mut buf, &mut m),
        Reply::Stall
    );
    let unknown = SetupPacket {
        request_type: REQUEST_TYPE_OUT,
        request: 7,
        value: 0,
        index: 0,
        length: 0,
    };
    assert_eq!(
        d.control(Instant::ZERO, &unknown, &[], &mut buf, &mut m),
        Reply::Stall
    );
    assert_eq!(d.state(), State::DfuIdle);
}

#[test]
fn clrstatus_dialects() {
    for (dialect, expect) in [
        (Dialect::ST_ROM, State::DfuError),
        (Dialect::TF_A, State::DfuError),
        (Dialect::U_BOOT, State::DfuIdle),
    ] {
        let (mut d, mut m) = dev(dialect);
        req(&mut d, &mut m, DfuRequest::ClrStatus, 0, &[]);
        assert_eq!(d.state(), expect, "{}", dialect.name);
    }
}

#[test]
fn upload_maps_blocks_with_fixed_transfer_size() {
    let (mut d, mut m) = dev(Dialect::ST_ROM);
    for (i, b) in m.0.iter_mut().enumerate().take(8192) {
        *b = (i / 2048) as u8;
    }
    command(&mut d, &mut m, &[0x21, 0, 0, 0, 8]);
    status(&mut d, &mut m);
    status(&mut d, &mut m);
    req(&mut d, &mut m, DfuRequest::Abort, 0, &[]);
    let mut buf = [0u8; 16];
    // A short (16-byte) request at block 4 still reads from pointer + 2×2048.
    let r = super::upload(
        &mut |s, o, i| d.control(Instant::ZERO, s, o, i, &mut m),
        4,
        &mut buf,
    );
    assert_eq!(r, Reply::In(16));
    assert_eq!(buf, [2; 16]);
    assert_eq!(d.state(), State::DfuUploadIdle);
}

#[test]
fn leave_reports_manifest_then_jumps() {
    let (mut d, mut m) = dev(Dialect::ST_ROM);
    command(&mut d, &mut m, &[0x21, 0, 0x10, 0, 8]);
    status(&mut d, &mut m);
    status(&mut d, &mut m);
    assert_eq!(req(&mut d, &mut m, DfuRequest::Dnload, 2, &[]), Reply::Ack);
    assert_eq!(status(&mut d, &mut m).state, State::DfuManifest);
    assert_eq!(
        d.poll_event(),
        Some(DeviceEvent::Leave {
            address: 0x0800_1000
        })
    );
    assert_eq!(d.state(), State::DfuManifestWaitReset);
    assert_eq!(
        req(&mut d, &mut m, DfuRequest::GetState, 0, &[]),
        Reply::Stall
    );
}

#[test]
fn config_is_validated() {
    let mut cfg = DeviceConfig::stm32f4_rom();
    cfg.transfer_size = 8192;
    assert_eq!(
        DfuDevice::new(cfg).err(),
        Some(ConfigError::TransferSize(8192))
    );
}

#[test]
fn get_commands_and_alt_selection_return_to_idle() {
    let (mut d, mut m) = dev(Dialect::ST_ROM);
    // A full Get Commands (wLength > 3) is a query: the device is idle after it.
    assert_eq!(
        req(&mut d, &mut m, DfuRequest::Upload, 0, &[]),
        Reply::In(4)
    );
    assert_eq!(d.state(), State::DfuIdle);
    // An error on one alt does not follow the host to another.
    assert_eq!(
        req(&mut d, &mut m, DfuRequest::Dnload, 1, &[0; 4]),
        Reply::Stall
    );
    assert_eq!(d.state(), State::DfuError);
    d.select_alt(1).unwrap();
    assert_eq!((d.state(), d.status()), (State::DfuIdle, Status::Ok));
}

#[test]
fn abort_in_sync_states_follows_the_dialect() {
    // ST (lenient): ABORT drops the block waiting in dfuDNLOAD-SYNC.
    let (mut d, mut m) = dev(Dialect::ST_ROM);
    command(&mut d, &mut m, &[0x21, 0, 0, 0, 8]);
    assert_eq!(d.state(), State::DfuDnloadSync);
    assert_eq!(req(&mut d, &mut m, DfuRequest::Abort, 0, &[]), Reply::Ack);
    assert_eq!(d.state(), State::DfuIdle);
    // The DFU 1.1 table (U-Boot): the same ABORT is an error.
    let (mut d, mut m) = dev(Dialect::U_BOOT);
    command(&mut d, &mut m, &[0; 16]);
    assert_eq!(d.state(), State::DfuDnloadSync);
    assert_eq!(req(&mut d, &mut m, DfuRequest::Abort, 0, &[]), Reply::Stall);
    assert_eq!(
        (d.state(), d.status()),
        (State::DfuError, Status::ErrStalledPkt)
    );
}

#[test]
fn a_refused_request_in_error_keeps_the_status_that_explains_it() {
    let (mut d, mut m) = dev(Dialect::ST_ROM);
    // Set Address outside the memory map: errTARGET at the GETSTATUS.
    command(&mut d, &mut m, &[0x21, 0, 0, 0, 0x30]);
    let st = status(&mut d, &mut m);
    assert_eq!((st.state, st.status), (State::DfuError, Status::ErrTarget));
    assert_eq!(
        req(&mut d, &mut m, DfuRequest::Upload, 2, &[]),
        Reply::Stall
    );
    assert_eq!(d.status(), Status::ErrTarget);
}
