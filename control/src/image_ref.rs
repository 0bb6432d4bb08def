//! Docker image references, checked before they reach Docker: a malformed
//! one is the client's mistake (400), and some (`../containers/x`,
//! `img:latest/json?`) would otherwise be spliced into Docker API paths.
//!
//! The grammar is Docker's (distribution/reference):
//! `[domain[:port]/]component(/component)*[:tag][@algorithm:hex]`.

/// Why `reference` is not a valid image reference, or `None` when it is.
pub fn problem(reference: &str) -> Option<&'static str> {
    if reference.is_empty() {
        return Some("it is empty");
    }
    if reference.len() > 255 + 128 + 100 {
        return Some("it is too long");
    }
    if !reference.bytes().all(|b| b.is_ascii_graphic()) {
        return Some("it holds spaces, control characters or non-ASCII characters");
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        if !valid_digest(digest) {
            return Some("its digest is not algorithm:hex");
        }
    }
    // A tag follows the last ':' after the last '/' (a ':' before it is a
    // registry port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        if !valid_tag(tag) {
            return Some(
                "its tag is not 1-128 of letters, digits, '_', '.', '-' (not starting with '.' or '-')",
            );
        }
    }
    if name.is_empty() || name.len() > 255 {
        return Some("its name is empty or longer than 255 characters");
    }
    let mut parts = name.split('/').peekable();
    let first = parts.next().unwrap_or_default();
    let has_more = parts.peek().is_some();
    let is_domain = has_more && (first.contains(['.', ':']) || first == "localhost");
    if is_domain {
        if !valid_domain(first) {
            return Some("its registry is not host[:port]");
        }
    } else if !valid_component(first) {
        return Some(
            "its name must be lowercase letters and digits, separated by '.', '_', '__' or dashes",
        );
    }
    for part in parts {
        if !valid_component(part) {
            return Some(
                "its name must be lowercase letters and digits, separated by '.', '_', '__' or dashes",
            );
        }
    }
    None
}

fn valid_component(part: &str) -> bool {
    let bytes = part.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(&bytes[0]) || !alnum(&bytes[bytes.len() - 1]) {
        return false;
    }
    // Separators between alphanumeric runs: '.', '_', "__" or dashes.
    let mut i = 0;
    while i < bytes.len() {
        if alnum(&bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(&bytes[i]) {
            i += 1;
        }
        let sep = &part[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    !algorithm.is_empty()
        && algorithm.as_bytes()[0].is_ascii_alphabetic()
        && algorithm
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'_' | b'-'))
        && hex.len() >= 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::problem;

    #[test]
    fn references_docker_takes_are_valid() {
        for ok in [
            "alpine",
            "alpine:3.20",
            "berth-sandbox:latest",
            "library/debian:bookworm-slim",
            "ghcr.io/owner/repo:v1.2.3",
            "localhost:5000/team/app",
            "localhost/app",
            "registry.example.com:443/a/b/c:tag_1",
            "my_app__x.y-z:1",
            "a---b",
            "alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "alpine:3@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(problem(ok), None, "{ok}");
        }
    }

    #[test]
    fn malformed_references_say_why() {
        for bad in [
            "",
            "alpine\u{0}x",
            "../containers/x",
            "img:latest/json?",
            "Alpine",
            "alpine:",
            "alpine:-x",
            "a//b",
            "/alpine",
            "alpine/",
            "a..b",
            "a_-b",
            "alpine@sha256:xyz",
            "bad host:1/app",
            "host:port/app",
            "é",
            "a b",
        ] {
            assert!(problem(bad).is_some(), "{bad:?} was taken");
        }
        assert_eq!(
            problem(&"a".repeat(256)),
            Some("its name is empty or longer than 255 characters")
        );
    }
}
