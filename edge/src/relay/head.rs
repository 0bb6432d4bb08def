//! An app's response head: parsed with httparse, turned into the header the
//! client gets (hop-by-hop fields dropped) and the framing of its body.

use http::HeaderValue;
use pingora::http::ResponseHeader;

/// Most header fields an app's response may carry.
const MAX_FIELDS: usize = 128;

/// Fields that describe one connection, not the message (RFC 9110 §7.6.1).
/// `transfer-encoding` is re-decided for the client.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 204, 304, or `content-length: 0`).
    Empty,
    Length(u64),
    Chunked,
    /// HTTP/1.0 style: the body ends when the app closes the connection.
    UntilClose,
}

#[derive(Debug)]
pub struct Head {
    pub header: ResponseHeader,
    pub framing: Framing,
    /// The app lets the connection be used again.
    pub keep_alive: bool,
    /// Bytes of the head, to drop from the read buffer.
    pub len: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("the response head is not HTTP/1: {0}")]
    Syntax(String),
    #[error("the response has conflicting content-length fields")]
    Length,
    #[error("the app switched protocols for a request that did not ask to")]
    UnaskedSwitch,
    #[error("the response head could not be rebuilt: {0}")]
    Rebuild(String),
}

/// Parses a response head from the start of `buf`: `Ok(None)` until it is
/// complete. Informational (1xx) heads are returned too; the caller skips
/// them. `head_request`: the request was HEAD, so no body follows.
pub fn parse(buf: &[u8], head_request: bool) -> Result<Option<Head>, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut response = httparse::Response::new(&mut fields);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HeadError::Syntax(e.to_string())),
    };
    let status = response.code.unwrap_or(0);
    if status == 101 {
        return Err(HeadError::UnaskedSwitch);
    }
    let http11 = response.version == Some(1);

    let mut close = !http11;
    let mut chunked = false;
    let mut codings = String::from("chunked");
    let mut length: Option<u64> = None;
    let mut nominated: Vec<String> = Vec::new();
    for field in response.headers.iter() {
        let value = String::from_utf8_lossy(field.value);
        if field.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(|t| t.trim().to_ascii_lowercase()) {
                match token.as_str() {
                    "close" => close = true,
                    "keep-alive" => close = false,
                    "" => {}
                    _ => nominated.push(token),
                }
            }
        } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            if chunked {
                codings = value.trim().to_string();
            }
        } else if field.name.eq_ignore_ascii_case("content-length") {
            let n = value.trim().parse::<u64>().map_err(|_| HeadError::Length)?;
            if length.is_some_and(|prior| prior != n) {
                return Err(HeadError::Length);
            }
            length = Some(n);
        }
    }

    let bodiless = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = if bodiless {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else {
        match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };

    let mut header =
        ResponseHeader::build(status, Some(response.headers.len() + 1)).map_err(rebuild)?;
    if let Some(reason) = response.reason {
        header.set_reason_phrase(Some(reason)).map_err(rebuild)?;
    }
    for field in response.headers.iter() {
        let hop = HOP_BY_HOP
            .iter()
            .any(|h| field.name.eq_ignore_ascii_case(h))
            || nominated.iter().any(|n| field.name.eq_ignore_ascii_case(n));
        // With chunked framing a content-length is wrong (RFC 9112 §6.3).
        let stale_length =
            framing == Framing::Chunked && field.name.eq_ignore_ascii_case("content-length");
        if hop || stale_length {
            continue;
        }
        let value = HeaderValue::from_bytes(field.value).map_err(rebuild)?;
        header
            .append_header(field.name.to_string(), value)
            .map_err(rebuild)?;
    }
    // The client's framing: chunked stays chunked (the body is passed on
    // de-chunked and chunked again, other codings kept); a close-delimited
    // body becomes chunked so that the client's connection survives it.
    if matches!(framing, Framing::Chunked | Framing::UntilClose) {
        header
            .insert_header("transfer-encoding", codings)
            .map_err(rebuild)?;
    }
    Ok(Some(Head {
        header,
        framing,
        keep_alive: !close && framing != Framing::UntilClose,
        len,
    }))
}

fn rebuild(e: impl std::fmt::Display) -> HeadError {
    HeadError::Rebuild(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Head {
        parse(raw.as_bytes(), false).unwrap().unwrap()
    }

    #[test]
    fn a_partial_head_waits_for_more() {
        assert!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Le", false)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn framing_follows_the_fields_and_the_request() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.keep_alive);
        assert_eq!(h.len, 38);
        let h = head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
        );
        assert_eq!(h.framing, Framing::Chunked);
        assert!(h.header.headers.get("content-length").is_none());
        assert_eq!(h.header.headers["transfer-encoding"], "gzip, chunked");
        assert_eq!(
            head("HTTP/1.1 204 No Content\r\n\r\n").framing,
            Framing::Empty
        );
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").framing,
            Framing::Empty
        );
        let h = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Empty, "a HEAD response has no body");
        assert_eq!(h.header.headers["content-length"], "9");
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_field() {
        assert!(
            !head("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keep_alive
        );
        assert!(!head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
        assert!(
            head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
                .keep_alive
        );
        let h = head("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n");
        assert_eq!(h.framing, Framing::UntilClose);
        assert!(!h.keep_alive);
        assert_eq!(
            h.header.headers["transfer-encoding"], "chunked",
            "a close-delimited body reaches the client chunked"
        );
    }

    #[test]
    fn hop_by_hop_fields_are_dropped_and_the_rest_kept_in_order() {
        let h = head(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Trace\r\nKeep-Alive: timeout=5\r\n\
             X-Trace: 1\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n",
        );
        let names: Vec<_> = h.header.headers.keys().map(|k| k.as_str()).collect();
        assert!(!names.contains(&"connection"));
        assert!(!names.contains(&"keep-alive"));
        assert!(
            !names.contains(&"x-trace"),
            "a field named in Connection is hop-by-hop"
        );
        let cookies: Vec<_> = h.header.headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
    }

    #[test]
    fn bad_heads_are_refused() {
        assert_eq!(
            parse(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                false
            )
            .unwrap_err(),
            HeadError::Length
        );
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false),
            Err(HeadError::Length)
        ));
        assert!(matches!(
            parse(b"SSH-2.0-OpenSSH\r\n\r\n", false),
            Err(HeadError::Syntax(_))
        ));
        assert_eq!(
            parse(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", false).unwrap_err(),
            HeadError::UnaskedSwitch
        );
    }
}
