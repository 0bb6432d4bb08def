//! An app's response head: parsed with httparse, rendered as the head the
//! client gets (hop-by-hop fields dropped) with the framing of its body.

use std::mem::MaybeUninit;

use bytes::BytesMut;

/// Most header fields an app's response may carry.
const MAX_FIELDS: usize = 128;

/// Fields that describe one connection, not the message (RFC 9110 §7.6.1).
/// `transfer-encoding` is re-decided for the client; `date` is the edge's
/// own (written by `client`, as Pingora and nginx do). Matched by length
/// first: every field of every answer is checked.
fn dropped(name: &[u8]) -> bool {
    let is = |other: &str| name.eq_ignore_ascii_case(other.as_bytes());
    match name.len() {
        2 => is("te"),
        4 => is("date"),
        7 => is("trailer") || is("upgrade"),
        10 => is("connection") || is("keep-alive"),
        16 => is("proxy-connection"),
        17 => is("transfer-encoding"),
        18 => is("proxy-authenticate"),
        _ => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 204, 304, or `content-length: 0`).
    Empty,
    Length(u64),
    Chunked,
    /// HTTP/1.0 style: the body ends when the app closes the connection.
    UntilClose,
}

impl Framing {
    /// Whether the client gets the body chunked: a chunked body is passed
    /// on de-chunked and chunked again; a close-delimited one is chunked so
    /// that the client's connection survives it.
    pub fn chunked_to_client(self) -> bool {
        matches!(self, Self::Chunked | Self::UntilClose)
    }
}

#[derive(Debug)]
pub struct Head {
    pub status: u16,
    pub framing: Framing,
    /// The app lets the connection be used again.
    pub keep_alive: bool,
    /// Bytes of the head, to drop from the read buffer.
    pub len: usize,
    /// The head as the client gets it, up to its last field line: the
    /// status line and the app's fields less the dropped ones, plus
    /// `transfer-encoding` when the client's body is chunked. The writer
    /// adds `date`, `connection` and the blank line.
    pub rendered: BytesMut,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("the response head is not HTTP/1: {0}")]
    Syntax(String),
    #[error("the response has conflicting content-length fields")]
    Length,
    #[error("the app switched protocols for a request that did not ask to")]
    UnaskedSwitch,
    #[error("the response status {0} is not a valid status")]
    Status(u16),
}

/// Parses a response head from the start of `buf`: `Ok(None)` until it is
/// complete. Informational (1xx) heads are returned too; the caller skips
/// them. `head_request`: the request was HEAD, so no body follows.
pub fn parse(buf: &[u8], head_request: bool) -> Result<Option<Head>, HeadError> {
    // Not zeroed first: 4 KiB of stores per answer showed in the profile.
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut fields,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HeadError::Syntax(e.to_string())),
    };
    let status = response.code.unwrap_or(0);
    if status == 101 {
        return Err(HeadError::UnaskedSwitch);
    }
    if !(100..=999).contains(&status) {
        return Err(HeadError::Status(status));
    }
    let http11 = response.version == Some(1);

    let mut close = !http11;
    let mut chunked = false;
    let mut codings: &[u8] = b"chunked";
    let mut length: Option<u64> = None;
    // Fields the app's Connection names are hop-by-hop too (rare: only
    // then is a list kept).
    let mut nominated: Vec<&[u8]> = Vec::new();
    for field in response.headers.iter() {
        let name = field.name.as_bytes();
        if name.eq_ignore_ascii_case(b"connection") {
            for token in field.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    close = false;
                } else if !token.is_empty() {
                    nominated.push(token);
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = field
                .value
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            if chunked {
                codings = field.value.trim_ascii();
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(field.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or(HeadError::Length)?;
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

    let mut rendered = BytesMut::with_capacity(len + 64);
    rendered.extend_from_slice(b"HTTP/1.1 ");
    rendered.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    rendered.extend_from_slice(b" ");
    rendered.extend_from_slice(response.reason.unwrap_or("").as_bytes());
    rendered.extend_from_slice(b"\r\n");
    for field in response.headers.iter() {
        let name = field.name.as_bytes();
        let dropped = dropped(name) || nominated.iter().any(|n| name.eq_ignore_ascii_case(n));
        // With chunked framing a content-length is wrong (RFC 9112 §6.3).
        let stale_length =
            framing == Framing::Chunked && name.eq_ignore_ascii_case(b"content-length");
        if dropped || stale_length {
            continue;
        }
        rendered.extend_from_slice(name);
        rendered.extend_from_slice(b": ");
        rendered.extend_from_slice(field.value);
        rendered.extend_from_slice(b"\r\n");
    }
    if framing.chunked_to_client() {
        rendered.extend_from_slice(b"transfer-encoding: ");
        rendered.extend_from_slice(codings);
        rendered.extend_from_slice(b"\r\n");
    }
    Ok(Some(Head {
        status,
        framing,
        keep_alive: !close && framing != Framing::UntilClose,
        len,
        rendered,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Head {
        parse(raw.as_bytes(), false).unwrap().unwrap()
    }

    fn text(h: &Head) -> String {
        String::from_utf8(h.rendered.to_vec()).unwrap()
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
        assert_eq!(text(&h), "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n");
        let h = head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
        );
        assert_eq!(h.framing, Framing::Chunked);
        assert_eq!(
            text(&h),
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n",
            "no content-length beside chunked; the codings kept"
        );
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
        assert!(text(&h).contains("Content-Length: 9\r\n"));
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
            text(&h),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ntransfer-encoding: chunked\r\n",
            "a close-delimited body reaches the client chunked, as HTTP/1.1"
        );
    }

    #[test]
    fn hop_by_hop_fields_and_the_apps_date_are_dropped_and_the_rest_kept_in_order() {
        let h = head(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Trace\r\nKeep-Alive: timeout=5\r\n\
             X-Trace: 1\r\nSet-Cookie: a=1\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\
             Set-Cookie: b=2\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(
            text(&h),
            "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n",
            "a field named in Connection is hop-by-hop"
        );
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
        assert_eq!(
            parse(b"HTTP/1.1 099 Odd\r\n\r\n", false).unwrap_err(),
            HeadError::Status(99)
        );
    }
}
