//! A serial port (UART, USB CDC, a simulated board's pseudo-terminal) for
//! the Secure DFU SLIP host.

use dfukit_nordic::host::serial::Port;
use std::io;
use std::path::Path;
use std::time::Duration;

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

/// Opens `path` as a serial port at `baud` (ignored by USB CDC and ptys),
/// without raising DTR (which resets some boards).
pub fn open_port(path: &Path, baud: u32) -> Result<SerialPort, serialport::Error> {
    let name = path.to_string_lossy();
    serialport::new(name.as_ref(), baud)
        .timeout(Duration::from_millis(100))
        .dtr_on_open(false)
        .open_native()
        .map(SerialPort)
}
