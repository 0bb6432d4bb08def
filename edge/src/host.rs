//! Host names as the edge sees them, and berth's preview hosts
//! `s-<id>-<port>.preview.<domain>`.

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

/// The sandbox id and port of a preview host under `domain`, if it is one.
pub fn parse_preview(host: &str, domain: &str) -> Option<(String, u16)> {
    let label = host.strip_suffix(domain)?.strip_suffix(".preview.")?;
    let rest = label.strip_prefix("s-")?;
    let (id, port) = rest.rsplit_once('-')?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    let valid = !id.is_empty()
        && id.len() <= 40
        && !id.starts_with('-')
        && !id.ends_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    valid.then(|| (id.to_string(), port))
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

    #[test]
    fn preview_hosts_are_parsed_from_the_right() {
        assert_eq!(
            parse_preview("s-01kbx2-3000.preview.example.com", "example.com"),
            Some(("01kbx2".into(), 3000))
        );
        assert_eq!(
            parse_preview("s-my-app-1-8080.preview.localhost", "localhost"),
            Some(("my-app-1".into(), 8080))
        );
        for bad in [
            "s-abc-3000.preview.other.com",
            "abc-3000.preview.example.com",
            "s-abc.preview.example.com",
            "s-abc-0.preview.example.com",
            "s-abc-99999.preview.example.com",
            "s--3000.preview.example.com",
            "s-a_b-3000.preview.example.com",
            "x.s-abc-3000.preview.example.com",
            "s-abc-3000.previewexample.com",
        ] {
            assert_eq!(parse_preview(&normalize(bad), "example.com"), None, "{bad}");
        }
    }
}
