//! Host names as the edge sees them (preview hosts are parsed by
//! `berth_wire::preview`).

/// Lower-cased host without port or trailing dot (`[::1]:80` → `[::1]`).
pub fn normalize(raw: &str) -> String {
    let raw = raw.trim();
    let host = if raw.starts_with('[') {
        raw.split_inclusive(']').next().unwrap_or(raw)
    } else {
        raw.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(raw, |(host, _)| host)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_normalised() {
        assert_eq!(
            normalize("S-Abc-3000.Preview.LOCALHOST:8080"),
            "s-abc-3000.preview.localhost"
        );
        assert_eq!(normalize("example.com."), "example.com");
        assert_eq!(normalize("[::1]:80"), "[::1]");
        assert_eq!(normalize("example.com"), "example.com");
    }
}
