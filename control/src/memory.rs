//! Host memory, read from /proc/meminfo, against the configured headroom.

use std::path::PathBuf;

use crate::units::Headroom;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    pub total: u64,
    pub available: u64,
}

/// Reads `MemTotal` and `MemAvailable` (kB) from meminfo text.
pub fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some(MemInfo {
        total: field("MemTotal")?,
        available: field("MemAvailable")?,
    })
}

#[derive(Debug, Clone)]
pub struct MemoryGauge {
    path: PathBuf,
    headroom: Headroom,
}

/// How the host stands against its headroom.
#[derive(Debug, Clone, Copy)]
pub struct Pressure {
    pub available: u64,
    pub headroom: u64,
}

impl Pressure {
    pub fn is_under(&self) -> bool {
        self.available < self.headroom
    }
}

impl MemoryGauge {
    pub fn new(path: PathBuf, headroom: Headroom) -> Self {
        Self { path, headroom }
    }

    /// The current pressure; `None` when meminfo cannot be read (then berth
    /// does not throttle, and says so in the log).
    pub fn read(&self) -> Option<Pressure> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read meminfo");
                return None;
            }
        };
        let info = parse_meminfo(&text)?;
        Some(Pressure {
            available: info.available,
            headroom: self.headroom.bytes(info.total),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_meminfo() {
        let text = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   12000000 kB\n";
        assert_eq!(
            parse_meminfo(text),
            Some(MemInfo {
                total: 24_000_000 * 1024,
                available: 12_000_000 * 1024
            })
        );
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn pressure_compares_available_to_headroom() {
        let p = Pressure {
            available: 5,
            headroom: 10,
        };
        assert!(p.is_under());
    }
}
