//! The real, unmodified `dfu-util` against a small DFU 1.1 device exported
//! over USB/IP, through this crate's shared library installed as
//! `libusb-1.0.so.0` on `LD_LIBRARY_PATH`.
//!
//! Skipped (with a notice) when `dfu-util` is not on PATH, unless
//! `DFUKIT_REQUIRE_PEERS=1`, which makes that a failure.

use dfukit_usbip::{ControlReply, Descriptors, DeviceInfo, Server, SetupPacket, Speed, UsbDevice};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const VID: u16 = 0x1209;
const PID: u16 = 0xdf11;
const TRANSFER_SIZE: u16 = 1024;

// DFU class requests and states (DFU 1.1).
const DFU_DETACH: u8 = 0;
const DFU_DNLOAD: u8 = 1;
const DFU_UPLOAD: u8 = 2;
const DFU_GETSTATUS: u8 = 3;
const DFU_CLRSTATUS: u8 = 4;
const DFU_GETSTATE: u8 = 5;
const DFU_ABORT: u8 = 6;

const DFU_IDLE: u8 = 2;
const DNLOAD_SYNC: u8 = 3;
const DNLOAD_IDLE: u8 = 5;
const MANIFEST_SYNC: u8 = 6;
const UPLOAD_IDLE: u8 = 9;
const DFU_ERROR: u8 = 10;

const STATUS_OK: u8 = 0;
const ERR_STALLEDPKT: u8 = 0x0f;

/// A minimal DFU 1.1 device in DFU mode: two alternate settings, each a
/// RAM buffer; download replaces the buffer at manifestation, upload reads
/// it back. DETACH makes it leave (disconnect) when `leave_on_detach`.
struct TestDfu {
    std: Descriptors,
    state: u8,
    status: u8,
    memories: [Vec<u8>; 2],
    pending: Vec<u8>,
    upload_pos: usize,
    leave_on_detach: bool,
    attached: bool,
    requests: Vec<SetupPacket>,
}

impl TestDfu {
    fn new(leave_on_detach: bool) -> Self {
        let v = VID.to_le_bytes();
        let p = PID.to_le_bytes();
        let device = [
            18, 1, 0x00, 0x02, 0, 0, 0, 64, v[0], v[1], p[0], p[1], 0x00, 0x02, 1, 2, 3, 1,
        ];
        let ts = TRANSFER_SIZE.to_le_bytes();
        let mut config = vec![9, 2, 0, 0, 1, 1, 0, 0x80, 50];
        config.extend_from_slice(&[9, 4, 0, 0, 0, 0xfe, 1, 2, 4]);
        config.extend_from_slice(&[9, 4, 0, 1, 0, 0xfe, 1, 2, 5]);
        // DFU functional descriptor: can download, can upload,
        // manifestation tolerant; detach timeout 1000 ms; DFU 1.1.
        config.extend_from_slice(&[9, 0x21, 0x07, 0xe8, 0x03, ts[0], ts[1], 0x10, 0x01]);
        let total = (config.len() as u16).to_le_bytes();
        config[2..4].copy_from_slice(&total);
        let std = Descriptors::new(
            &device,
            &config,
            &[
                "dfukit",
                "dfukit-libusb test DFU",
                "TEST0001",
                "RAM bank A",
                "RAM bank B",
            ],
        )
        .expect("descriptors");
        TestDfu {
            std,
            state: DFU_IDLE,
            status: STATUS_OK,
            memories: [b"initial contents of bank A".to_vec(), Vec::new()],
            pending: Vec::new(),
            upload_pos: 0,
            leave_on_detach,
            attached: true,
            requests: Vec::new(),
        }
    }

    fn alt(&self) -> usize {
        usize::from(self.std.alt_setting(0).unwrap_or(0).min(1))
    }

    fn stall(&mut self) -> ControlReply {
        self.state = DFU_ERROR;
        self.status = ERR_STALLEDPKT;
        ControlReply::Stall
    }

    fn class_request(&mut self, setup: &SetupPacket, data: &[u8]) -> ControlReply {
        match (setup.request, setup.is_in()) {
            (DFU_DETACH, false) => {
                if self.leave_on_detach {
                    self.attached = false;
                }
                ControlReply::ack()
            }
            (DFU_DNLOAD, false) => match (self.state, setup.length) {
                (DFU_IDLE, 0) => self.stall(),
                (DFU_IDLE, _) => {
                    self.pending = data.to_vec();
                    self.state = DNLOAD_SYNC;
                    ControlReply::ack()
                }
                (DNLOAD_IDLE, 0) => {
                    self.state = MANIFEST_SYNC;
                    ControlReply::ack()
                }
                (DNLOAD_IDLE, _) => {
                    self.pending.extend_from_slice(data);
                    self.state = DNLOAD_SYNC;
                    ControlReply::ack()
                }
                _ => self.stall(),
            },
            (DFU_UPLOAD, true) => {
                if self.state == DFU_IDLE {
                    self.upload_pos = 0;
                } else if self.state != UPLOAD_IDLE {
                    return self.stall();
                }
                let mem = &self.memories[self.alt()];
                let start = self.upload_pos.min(mem.len());
                let end = (start + usize::from(setup.length)).min(mem.len());
                let chunk = mem[start..end].to_vec();
                self.upload_pos = end;
                self.state = if chunk.len() < usize::from(setup.length) {
                    DFU_IDLE
                } else {
                    UPLOAD_IDLE
                };
                ControlReply::Data(chunk)
            }
            (DFU_GETSTATUS, true) => {
                match self.state {
                    DNLOAD_SYNC => self.state = DNLOAD_IDLE,
                    MANIFEST_SYNC => {
                        let alt = self.alt();
                        self.memories[alt] = std::mem::take(&mut self.pending);
                        self.state = DFU_IDLE;
                    }
                    _ => {}
                }
                ControlReply::Data(vec![self.status, 10, 0, 0, self.state, 0])
            }
            (DFU_CLRSTATUS, false) => {
                if self.state == DFU_ERROR {
                    self.state = DFU_IDLE;
                    self.status = STATUS_OK;
                }
                ControlReply::ack()
            }
            (DFU_GETSTATE, true) => ControlReply::Data(vec![self.state]),
            (DFU_ABORT, false) => {
                self.state = DFU_IDLE;
                ControlReply::ack()
            }
            _ => self.stall(),
        }
    }
}

impl UsbDevice for TestDfu {
    fn info(&self) -> DeviceInfo {
        self.std.info(Speed::Full)
    }

    fn control(&mut self, setup: &SetupPacket, data_out: &[u8]) -> ControlReply {
        self.requests.push(*setup);
        if let Some(reply) = self.std.handle(setup, data_out) {
            return reply;
        }
        // Class requests to the DFU interface; everything else stalls
        // (including a hub-class port reset, recipient "other").
        if setup.kind() == 0x20 && setup.recipient() == 1 && setup.index == 0 {
            let reply = self.class_request(setup, data_out);
            if let ControlReply::Data(mut d) = reply {
                d.truncate(setup.length.into());
                return ControlReply::Data(d);
            }
            return reply;
        }
        ControlReply::Stall
    }

    fn attached(&self) -> bool {
        self.attached
    }
}

fn dfu_util() -> Option<PathBuf> {
    dfukit_testkit::peers::tool("dfu-util", "install Debian's dfu-util to run this test")
}

/// The cdylib cargo built next to this test binary (`target/<profile>/deps`).
fn shim_library() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    for dir in [deps, deps.parent().unwrap_or(deps)] {
        let p = dir.join("libdfukit_libusb.so");
        if p.is_file() {
            return p;
        }
    }
    panic!("libdfukit_libusb.so not found next to {}", exe.display());
}

struct Rig {
    server: Server,
    device: Arc<Mutex<TestDfu>>,
    dir: tempfile::TempDir,
    dfu_util: PathBuf,
}

impl Rig {
    fn new(leave_on_detach: bool) -> Option<Rig> {
        let dfu_util = dfu_util()?;
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(shim_library(), dir.path().join("libusb-1.0.so.0"))
            .expect("symlink");
        let server = Server::bind("127.0.0.1:0").expect("bind");
        let device = Arc::new(Mutex::new(TestDfu::new(leave_on_detach)));
        server
            .add_shared("1-1", device.clone())
            .expect("add device");
        server.spawn().expect("spawn");
        Some(Rig {
            server,
            device,
            dir,
            dfu_util,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs dfu-util with the shim; fails the test after 60 s.
    fn run(&self, args: &[&str]) -> Output {
        let out = dfukit_testkit::peers::output_within(
            Command::new(&self.dfu_util)
                .args(args)
                .current_dir(self.dir.path())
                .env("LD_LIBRARY_PATH", self.dir.path())
                .env("DFUKIT_USBIP", self.server.local_addr().to_string()),
            Duration::from_secs(60),
        );
        eprintln!(
            "$ dfu-util {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "dfu-util {args:?} failed: {:?}",
            out.status
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn pattern(len: usize) -> Vec<u8> {
    dfukit_core::synthetic::bytes(0x1234_5678)
        .take(len)
        .collect()
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn dfu_util_lists_the_device() {
    let Some(rig) = Rig::new(false) else { return };
    let out = rig.run_ok(&["-l"]);
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("Found DFU")).collect();
    assert_eq!(lines.len(), 2, "{out}");
    for (alt, name) in [(0, "RAM bank A"), (1, "RAM bank B")] {
        let want = format!(
            "Found DFU: [1209:df11] ver=0200, devnum=1, cfg=1, intf=0, path=\"1-1\", alt={alt}, name=\"{name}\", serial=\"TEST0001\""
        );
        assert!(lines.contains(&want.as_str()), "missing {want:?} in\n{out}");
    }
    // Listing again works: the import of the first run was released.
    let again = rig.run_ok(&["-l"]);
    assert_eq!(
        again.lines().filter(|l| l.starts_with("Found DFU")).count(),
        2
    );
    assert!(!rig.server.is_imported("1-1"));
}

#[test]
fn dfu_util_downloads_and_uploads() {
    let Some(rig) = Rig::new(false) else { return };
    let image = pattern(5000);
    std::fs::write(rig.path("image.bin"), &image).unwrap();

    // Upload what is there before.
    rig.run_ok(&["-d", "1209:df11", "-a", "0", "-U", "before.bin"]);
    assert_eq!(read(&rig.path("before.bin")), b"initial contents of bank A");

    let out = rig.run_ok(&["-d", "1209:df11", "-a", "1", "-D", "image.bin"]);
    assert!(out.contains("Download done"), "{out}");
    {
        let dev = rig.device.lock().unwrap();
        assert_eq!(dev.memories[1], image, "bank B after download");
        assert_eq!(dev.memories[0], b"initial contents of bank A");
        let dnloads = dev
            .requests
            .iter()
            .filter(|s| s.request == DFU_DNLOAD && s.request_type == 0x21)
            .count();
        assert_eq!(dnloads, 5 + 1, "4 full blocks, 1 short, 1 zero-length");
    }

    // By path (bus-port from the busid) and alt name.
    rig.run_ok(&["-p", "1-1", "-a", "RAM bank B", "-U", "after.bin"]);
    assert_eq!(read(&rig.path("after.bin")), image);
}

#[test]
fn dfu_util_survives_a_device_that_leaves() {
    let Some(rig) = Rig::new(true) else { return };
    std::fs::write(rig.path("small.bin"), pattern(100)).unwrap();
    // -R: DETACH (the device disconnects), then a USB reset, which finds
    // the device gone: libusb's NOT_FOUND, which dfu-util accepts.
    // dfu-util 0.11 then returns that code (-5) from main, so it exits
    // with 251 and no message, exactly as with the real libusb on Linux
    // (usbfs reset → ENODEV → LIBUSB_ERROR_NOT_FOUND); later releases exit 0.
    let out = rig.run(&["-a", "0", "-R", "-D", "small.bin"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(0 | 251)), "{out:?}");
    assert!(stdout.contains("Resetting USB"), "{stdout}");
    assert!(!stderr.contains("error resetting"), "{stderr}");
    assert_eq!(rig.device.lock().unwrap().memories[0], pattern(100));
    // The server no longer lists it; the shim reports no device, no hang.
    let out = rig.run(&["-l"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Found DFU"));
}
