//! `dfukit nordic dfu serial`: update a device over a serial port.

use super::diag::Diag;
use clap::{Args, Subcommand};
use dfukit_nordic::host::serial::{Port, SlipLink};
use dfukit_nordic::host::{self, Event, Options};
use dfukit_nordic::package::Package;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `dfukit nordic dfu ...`
#[derive(Subcommand)]
pub enum DfuCommand {
    /// Update over a serial port (UART, USB CDC, or a simulated board's pty).
    Serial(SerialArgs),
}

/// Options of `dfu serial`.
#[derive(Args, Clone)]
pub struct SerialArgs {
    /// The update package (.zip from `dfukit nordic pkg generate` or nrfutil).
    #[arg(long = "package", short = 'p', visible_alias = "pkg")]
    pub package: PathBuf,
    /// The serial port, e.g. /dev/ttyACM0 or the pty a simulated board printed.
    #[arg(long, visible_alias = "port-name")]
    pub port: PathBuf,
    /// Packet receipt notification interval (0: CRC checked once per object).
    #[arg(long, default_value_t = 0)]
    pub prn: u16,
    /// Baud rate (ignored by USB CDC and ptys).
    #[arg(long, short = 'b', default_value_t = 115_200)]
    pub baud: u32,
    /// Seconds to wait for each response.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
}

impl SerialArgs {
    /// `package` to `port` with the defaults of the command line.
    pub fn new(package: &Path, port: &Path) -> Self {
        SerialArgs {
            package: package.to_path_buf(),
            port: port.to_path_buf(),
            prn: 0,
            baud: 115_200,
            timeout: 5.0,
        }
    }
}

/// A serial port from the serialport crate, as the host's [`Port`].
pub struct SerialPort(serialport::TTYPort);

impl io::Read for SerialPort {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl io::Write for SerialPort {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Port for SerialPort {
    fn set_read_timeout(&mut self, t: Duration) -> io::Result<()> {
        serialport::SerialPort::set_timeout(&mut self.0, t.max(Duration::from_millis(1)))
            .map_err(io::Error::other)
    }
}

/// Opens `path` as a serial port, or says why it cannot be one.
pub fn open_port(path: &Path, baud: u32) -> Result<SerialPort, Diag> {
    let name = path.to_string_lossy();
    serialport::new(name.as_ref(), baud)
        .timeout(Duration::from_millis(100))
        .dtr_on_open(false)
        .open_native()
        .map(SerialPort)
        .map_err(|e| {
            Diag::new(
                "dfukit::nordic::dfu::port",
                format!("cannot open {} as a serial port: {e}", path.display()),
                "check the path (ls /dev/ttyACM* /dev/ttyUSB*), that it is a serial device, and that no other program holds it; for a simulated board use the pty path it printed",
            )
        })
}

/// Opens a package with a diagnostic on failure.
pub fn open_package(path: &Path) -> Result<Package, Diag> {
    Package::open(path).map_err(super::nordic_pkg::open_diag)
}

/// Runs a `dfu` subcommand.
pub fn run(cmd: DfuCommand) -> miette::Result<()> {
    match cmd {
        DfuCommand::Serial(a) => Ok(serial(&a).map(|_| ())?),
    }
}

/// What an update did, for summaries.
pub struct Summary {
    /// Wall time of the transfers.
    pub elapsed: Duration,
}

/// Updates the device on `a.port` with every image of `a.package`.
pub fn serial(a: &SerialArgs) -> Result<Summary, Diag> {
    let pkg = open_package(&a.package)?;
    let port = open_port(&a.port, a.baud)?;
    let mut link = SlipLink::new(port);
    let opts = Options {
        prn: a.prn,
        response_timeout: Duration::from_secs_f64(a.timeout.max(0.01)),
        ..Options::default()
    };
    let start = Instant::now();
    for img in &pkg.images {
        let Some(fw) = &img.firmware else {
            return Err(Diag::new(
                "dfukit::nordic::pkg::no_firmware",
                format!(
                    "{} holds only an init packet ({})",
                    a.package.display(),
                    img.dat_file
                ),
                "updates need a .zip package with the firmware image",
            ));
        };
        let bar = super::progress::bar(fw.len() as u64, img.kind.display_name());
        let result = host::update(&mut link, &opts, &img.init_packet, fw, &mut |e| match e {
            Event::Progress { done, .. } => bar.set_position(done as u64),
            Event::Resumed { offset } => bar.println(format!(
                "resuming at byte {offset}: the device already holds the first part"
            )),
            Event::Retry { object, reason } => {
                bar.println(format!("retrying object {object}: {reason}"))
            }
            _ => {}
        });
        match result {
            Ok(()) => bar.finish_and_clear(),
            Err(e) => {
                bar.abandon();
                return Err(e.into());
            }
        }
        eprintln!(
            "{}: {} bytes sent and accepted",
            img.kind.display_name(),
            fw.len()
        );
    }
    Ok(Summary {
        elapsed: start.elapsed(),
    })
}
