//! Output for people: aligned tables, colour and a spinner only on a TTY.

use std::io::{IsTerminal, Write};
use std::time::Instant;

pub struct Style {
    pub color: bool,
}

impl Style {
    pub fn detect() -> Self {
        let tty = std::io::stdout().is_terminal();
        let color = tty && std::env::var_os("NO_COLOR").is_none();
        Self { color }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub fn bold(&self, t: &str) -> String {
        self.paint("1", t)
    }
    pub fn dim(&self, t: &str) -> String {
        self.paint("2", t)
    }
    pub fn green(&self, t: &str) -> String {
        self.paint("32", t)
    }
    pub fn red(&self, t: &str) -> String {
        self.paint("31", t)
    }
    pub fn yellow(&self, t: &str) -> String {
        self.paint("33", t)
    }
    pub fn cyan(&self, t: &str) -> String {
        self.paint("36", t)
    }

    /// A status word in its colour.
    pub fn status(&self, s: &str) -> String {
        match s {
            "running" | "succeeded" => self.green(s),
            "error" | "failed" | "timed_out" => self.red(s),
            "stopped" | "asleep" | "cancelled" => self.dim(s),
            _ => self.yellow(s),
        }
    }
}

/// Columns padded to their widest cell (colour codes do not count).
pub fn table(header: &[&str], rows: &[Vec<String>], style: &Style) -> String {
    let visible = |s: &str| {
        let mut n = 0;
        let mut in_escape = false;
        for c in s.chars() {
            match (in_escape, c) {
                (false, '\x1b') => in_escape = true,
                (true, 'm') => in_escape = false,
                (false, _) => n += 1,
                _ => {}
            }
        }
        n
    };
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(visible(cell));
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                out.push_str(&" ".repeat(widths[i] - visible(cell) + 2));
            }
        }
        out.push('\n');
    };
    line(header.iter().map(|h| style.bold(h)).collect(), &mut out);
    for row in rows {
        line(row.clone(), &mut out);
    }
    out
}

/// A one-line spinner on stderr, drawn only on a TTY.
pub struct Spinner {
    on: bool,
    frame: usize,
    started: Instant,
    shown: bool,
}

impl Spinner {
    pub fn new() -> Self {
        Self {
            on: std::io::stderr().is_terminal(),
            frame: 0,
            started: Instant::now(),
            shown: false,
        }
    }

    /// One that never draws.
    pub fn hidden() -> Self {
        Self {
            on: false,
            ..Self::new()
        }
    }

    pub fn tick(&mut self, what: &str) {
        if !self.on {
            return;
        }
        const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
        self.frame = (self.frame + 1) % FRAMES.len();
        let secs = self.started.elapsed().as_secs();
        let mut err = std::io::stderr();
        let _ = write!(err, "\r\x1b[2K{} {what} ({secs}s)", FRAMES[self.frame]);
        let _ = err.flush();
        self.shown = true;
    }

    /// Erases the spinner before other output.
    pub fn clear(&mut self) {
        if self.shown {
            let mut err = std::io::stderr();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.shown = false;
        }
    }

    pub fn restart(&mut self) {
        self.started = Instant::now();
    }
}

/// At most `n` characters of `text` on one line.
pub fn short(text: &str, n: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= n {
        flat
    } else {
        let cut: String = flat.chars().take(n.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}
