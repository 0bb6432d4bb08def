//! The client's request head, read by the front door: whether the edge can
//! serve it itself (a plain HTTP/1.1 GET or HEAD, whole, alone, with no
//! body and no upgrade) or Pingora's proxy takes it.

use std::mem::MaybeUninit;

use crate::host;

/// Most fields a request the front door serves may carry; one with more
/// goes to Pingora (which allows more).
pub const MAX_FIELDS: usize = 64;
/// A head not complete within this many bytes goes to Pingora.
pub const MAX_HEAD: usize = 16 * 1024;

/// Room for a request's fields, not zeroed before parsing.
pub type Fields<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_FIELDS];

/// Empty room for a request's fields.
pub fn fields<'b>() -> Fields<'b> {
    [const { MaybeUninit::uninit() }; MAX_FIELDS]
}

/// A request the front door serves itself.
pub struct Plain<'h, 'b> {
    pub method: &'b str,
    pub head_request: bool,
    /// The request target as it came: path and query.
    pub target: &'b [u8],
    pub path: &'b str,
    pub query: Option<&'b str>,
    /// Normalised: lower case, no port.
    pub host: String,
    /// The client said `connection: close`.
    pub close: bool,
    pub fields: &'h [httparse::Header<'b>],
}

impl<'b> Plain<'_, 'b> {
    /// The values of a field, in order (those that are UTF-8).
    pub fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'b str> + 's {
        self.fields
            .iter()
            .filter(move |f| f.name.eq_ignore_ascii_case(name))
            .filter_map(|f| std::str::from_utf8(f.value).ok())
    }
}

pub enum Verdict<'h, 'b> {
    /// The head is not complete yet.
    Partial,
    Plain(Plain<'h, 'b>),
    /// Anything else: Pingora's proxy takes it (and answers malformed
    /// requests with its 400).
    Pingora,
}

/// Reads the head at the start of `buf`, which must hold nothing more.
pub fn read<'h, 'b>(buf: &'b [u8], fields: &'h mut Fields<'b>) -> Verdict<'h, 'b> {
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, fields) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Verdict::Partial,
        Err(_) => return Verdict::Pingora,
    };
    // Bytes after the head: a body, or a pipelined request.
    if len != buf.len() || req.version != Some(1) {
        return Verdict::Pingora;
    }
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Verdict::Pingora;
    };
    let head_request = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Verdict::Pingora,
    };
    // Origin form only, printable ASCII only: what goes to the app is what
    // any parser on the way accepts.
    if !target.starts_with('/') || !target.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Verdict::Pingora;
    }
    let mut host = None;
    let mut close = false;
    for field in req.headers.iter() {
        let name = field.name;
        let value = field.value;
        if name.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return Verdict::Pingora;
            }
            host = Some(value);
        } else if name.eq_ignore_ascii_case("content-length") {
            if value.trim_ascii() != b"0" {
                return Verdict::Pingora;
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return Verdict::Pingora;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Verdict::Pingora;
                }
            }
        }
    }
    let Some(host) = host.and_then(|h| std::str::from_utf8(h).ok()) else {
        return Verdict::Pingora;
    };
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    Verdict::Plain(Plain {
        method,
        head_request,
        target: target.as_bytes(),
        path,
        query,
        host: host::normalize(host),
        close,
        fields: req.headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(raw: &str) -> &'static str {
        let mut fields = fields();
        match read(raw.as_bytes(), &mut fields) {
            Verdict::Partial => "partial",
            Verdict::Plain(_) => "plain",
            Verdict::Pingora => "pingora",
        }
    }

    #[test]
    fn a_plain_get_is_served_with_its_parts() {
        let raw = b"GET /a/b?x=1&y HTTP/1.1\r\nHost: S-X-3000.Preview.Localhost:8080\r\n\
                    Cookie: a=1\r\nConnection: keep-alive, Close\r\nCookie: b=2\r\n\r\n";
        let mut fields = fields();
        let Verdict::Plain(req) = read(raw, &mut fields) else {
            panic!("not plain");
        };
        assert_eq!(req.method, "GET");
        assert!(!req.head_request);
        assert_eq!(req.target, b"/a/b?x=1&y");
        assert_eq!((req.path, req.query), ("/a/b", Some("x=1&y")));
        assert_eq!(req.host, "s-x-3000.preview.localhost");
        assert!(req.close);
        assert_eq!(req.values("cookie").collect::<Vec<_>>(), ["a=1", "b=2"]);
        assert_eq!(
            verdict("HEAD / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"),
            "plain"
        );
    }

    #[test]
    fn everything_else_goes_to_pingora() {
        for raw in [
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi",
            "POST / HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: h\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx",
            "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
            "GARBAGE\r\n\r\n",
        ] {
            assert_eq!(verdict(raw), "pingora", "{raw:?}");
        }
        let many: String = (0..=MAX_FIELDS).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert_eq!(
            verdict(&format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n")),
            "pingora"
        );
        assert_eq!(verdict("GET / HTTP/1.1\r\nHost: h\r\n"), "partial");
    }
}
