//! Serving a simulated board on a pseudo-terminal, in wall-clock time, so
//! that any serial tool (nrfutil included) can open it like a USB CDC port.

use crate::boards::nrf52840::Nrf52840;
use dfukit_core::Board;
use dfukit_core::Instant;
use dfukit_nordic::bootloader::RxTransport;
use dfukit_nordic::slip;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::openpty;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

/// A pseudo-terminal pair: the board holds the master; tools open the slave path.
pub struct Pty {
    master: OwnedFd,
    /// Kept open so that the master does not see a hang-up each time a tool
    /// closes the port (a real USB CDC port stays present between tools).
    _slave: OwnedFd,
    path: PathBuf,
}

impl Pty {
    /// Opens a raw (no echo, no line discipline) pseudo-terminal.
    pub fn open() -> io::Result<Pty> {
        let p = openpty(None, None).map_err(io::Error::from)?;
        let mut t = tcgetattr(&p.slave).map_err(io::Error::from)?;
        cfmakeraw(&mut t);
        tcsetattr(&p.slave, SetArg::TCSANOW, &t).map_err(io::Error::from)?;
        let path = std::fs::read_link(format!("/proc/self/fd/{}", p.slave.as_raw_fd()))?;
        let flags = OFlag::from_bits_truncate(fcntl(p.master.as_raw_fd(), FcntlArg::F_GETFL)?);
        fcntl(
            p.master.as_raw_fd(),
            FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK),
        )?;
        Ok(Pty {
            master: p.master,
            _slave: p.slave,
            path,
        })
    }

    /// The path tools open (`/dev/pts/N`).
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

/// Serves `board` on `pty` until `stop` returns true (checked every poll).
/// Frames the board cannot take yet (all receive buffers waiting for flash)
/// are held, and the pty is not read meanwhile: serial flow control.
pub fn serve(
    board: &mut Nrf52840,
    pty: &Pty,
    mut stop: impl FnMut(&Nrf52840) -> bool,
) -> io::Result<()> {
    let start = std::time::Instant::now();
    let now = || Instant::from_micros(start.elapsed().as_micros() as u64);
    let mut decoder = slip::Decoder::<{ 2 * 1024 + 16 }>::new();
    let mut rx = vec![0u8; 4096];
    let (mut rx_pos, mut rx_len) = (0usize, 0usize);
    let mut held: Option<Vec<u8>> = None;
    let mut tx = Vec::with_capacity(64);
    board.advance(now());
    loop {
        if stop(board) {
            return Ok(());
        }
        // Take frames while the board accepts them.
        loop {
            if let Some(f) = held.take() {
                if board.receive(now(), RxTransport::Serial, &f).is_err() {
                    held = Some(f);
                    break;
                }
            }
            if rx_pos == rx_len {
                break;
            }
            let b = rx[rx_pos];
            rx_pos += 1;
            if let slip::Decoded::Frame(n) = decoder.push(b) {
                held = Some(decoder.frame(n).to_vec());
            }
        }
        board.advance(now());
        while let Some(r) = board.take_response() {
            tx.clear();
            let mut payload = Vec::with_capacity(24);
            r.encode(&mut |b| payload.extend_from_slice(b));
            slip::encode(&payload, &mut |b| tx.extend_from_slice(b));
            write_all(&pty.master, &tx)?;
        }
        // Sleep until input (if we can take it) or the board's next deadline.
        let wake = board.next_wakeup();
        let timeout_ms = match wake {
            Some(t) => t
                .as_micros()
                .saturating_sub(now().as_micros())
                .div_ceil(1000),
            None => 100,
        }
        .min(100);
        let want_input = held.is_none() && rx_pos == rx_len;
        if want_input {
            let mut fds = [PollFd::new(pty.master.as_fd(), PollFlags::POLLIN)];
            let t = PollTimeout::try_from(timeout_ms as i32).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, t) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            match nix::unistd::read(pty.master.as_raw_fd(), &mut rx) {
                Ok(n) => {
                    rx_pos = 0;
                    rx_len = n;
                }
                Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EIO) => {}
                Err(e) => return Err(e.into()),
            }
        } else if timeout_ms > 0 {
            std::thread::sleep(Duration::from_millis(timeout_ms.min(5)));
        }
    }
}

fn write_all(fd: &OwnedFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EAGAIN) => {
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::from(100u8));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A board served on its own pty by a background thread.
pub struct ServedBoard {
    path: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(Nrf52840, io::Result<()>, Duration)>,
}

impl ServedBoard {
    /// Starts serving `board` on a new pty.
    pub fn spawn(mut board: Nrf52840) -> io::Result<ServedBoard> {
        let pty = Pty::open()?;
        let path = pty.path().to_path_buf();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let cpu0 = thread_cpu_time();
            // Stop only when the board is idle, so that an activation the
            // last update started is not cut short by the caller's stop.
            let r = serve(&mut board, &pty, |b| {
                flag.load(std::sync::atomic::Ordering::Relaxed) && !b.bootloader().is_busy()
            });
            (board, r, thread_cpu_time().saturating_sub(cpu0))
        });
        Ok(ServedBoard { path, stop, thread })
    }

    /// The pty path tools open.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Stops serving once the board is idle and returns it, with the CPU
    /// time its thread used.
    pub fn stop(self) -> io::Result<(Nrf52840, Duration)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (board, r, cpu) = self
            .thread
            .join()
            .map_err(|_| io::Error::other("board thread panicked"))?;
        r.map(|_| (board, cpu))
    }
}

/// CPU time used by the calling thread.
pub fn thread_cpu_time() -> Duration {
    match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_THREAD) {
        Ok(u) => {
            let t = |tv: nix::sys::time::TimeVal| {
                Duration::from_secs(tv.tv_sec() as u64) + Duration::from_micros(tv.tv_usec() as u64)
            };
            t(u.user_time()) + t(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}
