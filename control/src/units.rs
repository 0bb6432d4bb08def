//! Human-sized quantities as Docker users write them: `512m`, `2g`, `10%`.
//!
//! Units are binary, as in `docker run --memory`: `1k` = 1024 bytes.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnitError {
    #[error("`{0}` is not a size: write a number with an optional unit, like 512m or 2g")]
    Size(String),
    #[error("`{0}` is not a headroom: write a percentage (10%) or a size (1g)")]
    Headroom(String),
}

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = UnitError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let err = || UnitError::Size(raw.to_string());
        let s = raw.trim().to_ascii_lowercase();
        let s = s
            .strip_suffix("ib")
            .or_else(|| s.strip_suffix('b'))
            .unwrap_or(&s);
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let multiplier: u64 = match unit {
            "" => 1,
            "k" => 1 << 10,
            "m" => 1 << 20,
            "g" => 1 << 30,
            "t" => 1 << 40,
            _ => return Err(err()),
        };
        if number.is_empty() {
            return Err(err());
        }
        if let Ok(whole) = number.parse::<u64>() {
            return whole.checked_mul(multiplier).map(ByteSize).ok_or_else(err);
        }
        let value: f64 = number.parse().map_err(|_| err())?;
        let bytes = value * multiplier as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(err());
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "t"),
            (1 << 30, "g"),
            (1 << 20, "m"),
            (1 << 10, "k"),
        ];
        for (size, unit) in UNITS {
            if self.0 >= size && self.0 % size == 0 {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}", self.0)
    }
}

/// Memory the host keeps free: a share of the total or a fixed amount.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Headroom {
    Percent(f64),
    Bytes(u64),
}

impl Headroom {
    /// The headroom in bytes for a host with `total` bytes of memory.
    pub fn bytes(self, total: u64) -> u64 {
        match self {
            Headroom::Percent(p) => (total as f64 * p / 100.0) as u64,
            Headroom::Bytes(b) => b,
        }
    }
}

impl FromStr for Headroom {
    type Err = UnitError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let s = raw.trim();
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| UnitError::Headroom(raw.to_string()))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(UnitError::Headroom(raw.to_string()));
            }
            return Ok(Headroom::Percent(p));
        }
        ByteSize::from_str(s)
            .map(|b| Headroom::Bytes(b.0))
            .map_err(|_| UnitError::Headroom(raw.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_docker() {
        let cases = [
            ("512m", 512 << 20),
            ("2g", 2 << 30),
            ("2G", 2 << 30),
            ("1.5g", 3 << 29),
            ("64k", 64 << 10),
            ("100", 100),
            ("2gb", 2 << 30),
            ("2GiB", 2 << 30),
            (" 1t ", 1 << 40),
        ];
        for (raw, want) in cases {
            assert_eq!(raw.parse::<ByteSize>(), Ok(ByteSize(want)), "{raw}");
        }
    }

    #[test]
    fn bad_sizes_are_refused() {
        for raw in ["", "m", "12x", "-1g", "1..2m", "99999999999999999999t"] {
            assert!(raw.parse::<ByteSize>().is_err(), "{raw}");
        }
    }

    #[test]
    fn sizes_display_in_the_largest_whole_unit() {
        assert_eq!(ByteSize(2 << 30).to_string(), "2g");
        assert_eq!(ByteSize(512 << 20).to_string(), "512m");
        assert_eq!(ByteSize(1000).to_string(), "1000");
    }

    #[test]
    fn headroom_parses_percent_and_size() {
        assert_eq!("10%".parse::<Headroom>(), Ok(Headroom::Percent(10.0)));
        assert_eq!("1g".parse::<Headroom>(), Ok(Headroom::Bytes(1 << 30)));
        assert!("150%".parse::<Headroom>().is_err());
        assert_eq!(Headroom::Percent(10.0).bytes(1000), 100);
    }
}
