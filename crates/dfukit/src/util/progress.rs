//! How a host command reports what it is doing, the same way for every
//! family:
//!
//! - on a terminal (stderr is a tty): a progress bar per task, with events
//!   printed above it;
//! - into a pipe or a file (CI logs, `2> log`): one plain line per event
//!   (`download: resuming at byte 4096`), and a progress line every
//!   [`LINE_EVERY`] and at the end, so a log shows what happened and a
//!   watcher sees the run is alive;
//! - with `--json`: JSON lines on stdout, one object per event
//!   (`{"event":"progress","task":"application","done":4096,"total":65536}`),
//!   progress at the same pace, and the error as the last line if the
//!   command fails (see [`json_error`]).
//!
//! The libraries report progress as events; this module is the one place
//! that turns them into output.

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Map, Value};
use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How often a progress line is written when output is not a terminal.
pub const LINE_EVERY: Duration = Duration::from_secs(2);

/// Where reports go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Progress bars on a terminal.
    Terminal,
    /// Plain lines on stderr.
    Lines,
    /// JSON lines on stdout.
    Json,
}

static MODE: OnceLock<Mode> = OnceLock::new();

/// Sets the mode once, from `--json` and whether stderr is a terminal.
pub fn init(json: bool) {
    let mode = if json {
        Mode::Json
    } else if std::io::stderr().is_terminal() {
        Mode::Terminal
    } else {
        Mode::Lines
    };
    let _ = MODE.set(mode);
}

/// The mode [`init`] chose (lines, if it was never called).
pub fn mode() -> Mode {
    *MODE.get().unwrap_or(&Mode::Lines)
}

/// Whether the run reports JSON (`--json`): commands whose result is one
/// object (benchmarks, `sim inspect`) print that object instead of text.
pub fn json() -> bool {
    mode() == Mode::Json
}

/// Prints a one-off event outside any task (`reset`, `left DFU mode`, a
/// summary line): a plain line on stderr, or a JSON line with `fields`.
pub fn event(kind: &str, text: &str, fields: Value) {
    let mut out = Output::for_mode(mode());
    out.event(None, kind, text, fields);
}

/// Prints a result of the command (a summary line, a table row): on
/// stdout as text, or as a JSON line with `fields` and `kind`.
pub fn result(kind: &str, text: &str, fields: Value) {
    if mode() == Mode::Json {
        event(kind, text, fields);
    } else {
        println!("{text}");
    }
}

/// The error a `--json` run ends with, as one JSON line on stdout.
pub fn json_error(code: &str, message: &str, help: Option<&str>) {
    if mode() == Mode::Json {
        let line = json!({"event": "error", "code": code, "message": message, "help": help});
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
}

/// Where one task's lines go; the terminal bar is separate because
/// indicatif draws it.
enum Output {
    Terminal,
    Lines(Box<dyn Write>),
    Json(Box<dyn Write>),
}

impl Output {
    fn for_mode(mode: Mode) -> Self {
        match mode {
            Mode::Terminal => Output::Terminal,
            Mode::Lines => Output::Lines(Box::new(std::io::stderr())),
            Mode::Json => Output::Json(Box::new(std::io::stdout())),
        }
    }

    fn event(&mut self, task: Option<&str>, kind: &str, text: &str, fields: Value) {
        match self {
            Output::Terminal => eprintln!("{}", with_task(task, text)),
            Output::Lines(w) => {
                let _ = writeln!(w, "{}", with_task(task, text));
            }
            Output::Json(w) => {
                let mut obj = Map::new();
                obj.insert("event".into(), kind.into());
                if let Some(t) = task {
                    obj.insert("task".into(), t.into());
                }
                if let Value::Object(f) = fields {
                    obj.extend(f);
                }
                obj.insert("message".into(), text.into());
                let _ = writeln!(w, "{}", Value::Object(obj));
            }
        }
    }
}

fn with_task(task: Option<&str>, text: &str) -> String {
    match task {
        Some(t) => format!("{t}: {text}"),
        None => text.to_string(),
    }
}

/// One task with a byte count (an image, a partition, a download): its
/// progress and the events that happen during it.
pub struct Task {
    label: String,
    total: u64,
    done: u64,
    started: Instant,
    /// When the last progress line was written (lines and JSON modes).
    last_line: Option<Instant>,
    bar: Option<ProgressBar>,
    out: Output,
}

impl Task {
    /// A task of `total` bytes (0 if not yet known) named `label`.
    pub fn start(label: &str, total: u64) -> Task {
        Self::with_output(label, total, Output::for_mode(mode()))
    }

    fn with_output(label: &str, total: u64, out: Output) -> Task {
        let bar = matches!(out, Output::Terminal).then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:12} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            bar.set_message(label.to_string());
            bar
        });
        Task {
            label: label.to_string(),
            total,
            done: 0,
            started: Instant::now(),
            last_line: None,
            bar,
            out,
        }
    }

    /// An event during the task (`resumed`, `retry`, `erase`, ...), with
    /// its fields for JSON.
    pub fn event(&mut self, kind: &str, text: &str, fields: Value) {
        match &self.bar {
            Some(bar) => bar.println(with_task(Some(&self.label), text)),
            None => self.out.event(Some(&self.label), kind, text, fields),
        }
    }

    /// What the task is doing now (a bar's message; a line otherwise).
    pub fn phase(&mut self, text: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(text.to_string()),
            None => self.out.event(Some(&self.label), "phase", text, json!({})),
        }
    }

    /// Bytes done out of `total`.
    pub fn progress(&mut self, done: u64, total: u64) {
        self.progress_at(done, total, Instant::now());
    }

    fn progress_at(&mut self, done: u64, total: u64, now: Instant) {
        self.done = done;
        if total != self.total {
            self.total = total;
            if let Some(bar) = &self.bar {
                bar.set_length(total);
            }
        }
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            return;
        }
        let due = self
            .last_line
            .is_none_or(|t| now.saturating_duration_since(t) >= LINE_EVERY);
        if due || done == total {
            self.last_line = Some(now);
            self.progress_line(now);
        }
    }

    fn progress_line(&mut self, now: Instant) {
        let secs = now.saturating_duration_since(self.started).as_secs_f64();
        let pct = if self.total == 0 {
            100.0
        } else {
            self.done as f64 * 100.0 / self.total as f64
        };
        let text = format!(
            "{}/{} bytes ({pct:.0}%), {:.1} s",
            self.done, self.total, secs
        );
        let fields = json!({"done": self.done, "total": self.total, "seconds": secs});
        self.out.event(Some(&self.label), "progress", &text, fields);
    }

    /// The task succeeded: `text` says what was done.
    pub fn finish(mut self, text: &str, fields: Value) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.out.event(Some(&self.label), "done", text, fields);
    }

    /// The task failed; the error is reported by the caller. The last
    /// progress is printed so a log shows how far it got.
    pub fn fail(mut self) {
        match self.bar.take() {
            Some(bar) => bar.abandon(),
            None => self.progress_line(Instant::now()),
        }
    }
}

impl Drop for Task {
    /// A task left without `finish` or `fail` (an early `?`) clears its bar.
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer tests can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect()
        }
    }

    #[test]
    fn into_a_pipe_every_event_is_a_line_and_progress_is_paced() {
        let cap = Captured::default();
        let mut t = Task::with_output("application", 100, Output::Lines(Box::new(cap.clone())));
        let t0 = t.started;
        t.progress_at(10, 100, t0);
        // Within LINE_EVERY of the last line: no new line.
        for d in 11..50 {
            t.progress_at(d, 100, t0 + Duration::from_millis(d * 10));
        }
        t.event("resumed", "resuming at byte 4096", json!({"offset": 4096}));
        t.progress_at(60, 100, t0 + LINE_EVERY);
        t.progress_at(100, 100, t0 + LINE_EVERY + Duration::from_millis(1));
        t.finish("100 bytes sent and accepted", json!({}));
        let lines = cap.lines();
        assert_eq!(
            lines,
            [
                "application: 10/100 bytes (10%), 0.0 s",
                "application: resuming at byte 4096",
                "application: 60/100 bytes (60%), 2.0 s",
                "application: 100/100 bytes (100%), 2.0 s",
                "application: 100 bytes sent and accepted",
            ]
        );
    }

    #[test]
    fn json_lines_carry_the_event_the_task_and_the_fields() {
        let cap = Captured::default();
        let mut t = Task::with_output("0x01 fsbl1", 0, Output::Json(Box::new(cap.clone())));
        let t0 = t.started;
        t.phase("erase 0x08000000+16384");
        t.progress_at(512, 1024, t0);
        t.fail();
        let lines: Vec<Value> = cap
            .lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0]["event"], "phase");
        assert_eq!(lines[0]["task"], "0x01 fsbl1");
        assert_eq!(lines[0]["message"], "erase 0x08000000+16384");
        assert_eq!(lines[1]["event"], "progress");
        assert_eq!(lines[1]["done"], 512);
        assert_eq!(lines[1]["total"], 1024);
        // A failed task's last line says how far it got.
        assert_eq!(lines[2]["event"], "progress");
        assert_eq!(lines[2]["done"], 512);
    }
}
