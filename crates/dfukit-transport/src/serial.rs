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
/// without raising DTR (which resets some boards); with `rts_cts`, with
/// hardware flow control (a UART bootloader built with
/// `NRF_DFU_SERIAL_UART_USES_HWFC`, nrfutil's `-fc 1`).
pub fn open_port(path: &Path, baud: u32, rts_cts: bool) -> Result<SerialPort, serialport::Error> {
    let name = path.to_string_lossy();
    let flow = if rts_cts {
        serialport::FlowControl::Hardware
    } else {
        serialport::FlowControl::None
    };
    serialport::new(name.as_ref(), baud)
        .timeout(Duration::from_millis(100))
        .dtr_on_open(false)
        .flow_control(flow)
        .open_native()
        .map(SerialPort)
}

/// The serial ports this machine lists, each with its USB serial number
/// when it is a USB device that has one (for nrfutil's `-snr`).
pub fn ports() -> Vec<(String, Option<String>)> {
    serialport::available_ports()
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let snr = match p.port_type {
                serialport::SerialPortType::UsbPort(u) => u.serial_number,
                _ => None,
            };
            (p.port_name, snr)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serialport::SerialPort as _;

    /// The flow control asked for is the one the port's termios holds.
    #[test]
    fn flow_control_reaches_the_port() {
        let (_master, slave) = serialport::TTYPort::pair().unwrap();
        let name = slave.name().unwrap();
        for (rts_cts, want) in [
            (true, serialport::FlowControl::Hardware),
            (false, serialport::FlowControl::None),
        ] {
            let port = open_port(Path::new(&name), 115_200, rts_cts).unwrap();
            assert_eq!(port.0.flow_control().unwrap(), want, "rts_cts {rts_cts}");
        }
    }
}
