//! Preview hosts: `s-<id>-<port>.preview.<domain>`.

/// The preview host of one port of a sandbox.
pub fn host(sandbox_id: &str, port: u16, domain: &str) -> String {
    format!(
        "s-{}-{port}.preview.{domain}",
        sandbox_id.to_ascii_lowercase()
    )
}

/// The sandbox id and port of a (normalised, lower-case) preview host under
/// `domain`. Only the canonical spelling of a port is one: `08000` or
/// `+8000` is not port 8000, so one app is reachable under one name only.
pub fn parse(host: &str, domain: &str) -> Option<(String, u16)> {
    let label = host.strip_suffix(domain)?.strip_suffix(".preview.")?;
    let rest = label.strip_prefix("s-")?;
    let (id, port_text) = rest.rsplit_once('-')?;
    // Digits only, no leading zero (which also rules out 0): canonical.
    let canonical = !port_text.starts_with('0') && port_text.bytes().all(|b| b.is_ascii_digit());
    if !canonical {
        return None;
    }
    let port: u16 = port_text.parse().ok()?;
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
    fn preview_hosts_are_parsed_from_the_right() {
        assert_eq!(
            parse("s-01kbx2-3000.preview.example.com", "example.com"),
            Some(("01kbx2".into(), 3000))
        );
        assert_eq!(
            parse("s-my-app-1-8080.preview.localhost", "localhost"),
            Some(("my-app-1".into(), 8080))
        );
        assert_eq!(
            parse(&host("My-App", 80, "localhost"), "localhost"),
            Some(("my-app".into(), 80))
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
            "s-abc-08000.preview.example.com",
            "s-abc-+8000.preview.example.com",
            "s-abc-00080.preview.example.com",
        ] {
            assert_eq!(parse(bad, "example.com"), None, "{bad}");
        }
    }
}
