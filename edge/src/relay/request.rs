//! The request an app gets: the client's, as it came (field names in their
//! case, in their order), less the fields that belong to the client's
//! connection and those the edge sets itself.

use std::borrow::Cow;
use std::net::IpAddr;

use bytes::BytesMut;

use crate::preview_auth;

/// Request fields that describe the client's connection, not the request.
/// Matched by length first: every field of every request is checked.
fn hop_by_hop(name: &[u8]) -> bool {
    let is = |other: &str| name.eq_ignore_ascii_case(other.as_bytes());
    match name.len() {
        2 => is("te"),
        7 => is("trailer") || is("upgrade"),
        10 => is("connection") || is("keep-alive"),
        16 => is("proxy-connection"),
        19 => is("proxy-authorization"),
        _ => false,
    }
}

/// A field the edge sets on a request for an app, replacing the client's;
/// `None` removes it.
pub type Field<'a> = (&'static str, Option<Cow<'a, str>>);

/// Where a request came from, for the fields the edge sets on it.
pub struct Origin<'a, 'c> {
    pub client: Option<IpAddr>,
    /// The client's `X-Forwarded-For` (its first), extended with `client`.
    pub forwarded_for: Option<&'a str>,
    pub tls: bool,
    /// The normalised host.
    pub host: &'a str,
    /// The client's `Cookie` fields, when berth's preview cookie is to be
    /// taken out of them (every preview request: it is berth's, not the
    /// app's).
    pub cookies: Option<&'c [&'c str]>,
}

/// The fields the edge sets on a request for an app, each replacing the
/// client's (`None` removes it): X-Forwarded-*, X-Real-IP, and the cookie
/// without the preview cookie. Pingora's path and the relay's use this one
/// list.
pub fn forwarded<'a>(origin: &Origin<'a, '_>) -> Vec<Field<'a>> {
    let mut fields = Vec::with_capacity(5);
    if let Some(client) = origin.client.map(|ip| ip.to_string()) {
        let chain = match origin.forwarded_for {
            Some(prior) => format!("{prior}, {client}"),
            None => client.clone(),
        };
        fields.push(("x-forwarded-for", Some(Cow::Owned(chain))));
        fields.push(("x-real-ip", Some(Cow::Owned(client))));
    }
    let proto = if origin.tls { "https" } else { "http" };
    fields.push(("x-forwarded-proto", Some(Cow::Borrowed(proto))));
    if !origin.host.is_empty() {
        fields.push(("x-forwarded-host", Some(Cow::Borrowed(origin.host))));
    }
    if let Some(cookies) = origin.cookies {
        let kept: Vec<String> = cookies
            .iter()
            .filter_map(|h| preview_auth::without_cookie(h, preview_auth::COOKIE))
            .collect();
        fields.push((
            "cookie",
            (!kept.is_empty()).then(|| Cow::Owned(kept.join("; "))),
        ));
    }
    fields
}

/// The request line and fields for an app. `target` must hold no byte a
/// request target may not (the front door checks it); `fields` are the
/// client's, `set` the edge's.
pub fn build(
    method: &str,
    target: &[u8],
    fields: &[httparse::Header<'_>],
    set: &[Field<'_>],
) -> BytesMut {
    // Fields the client's Connection names are hop-by-hop too.
    let mut nominated: Vec<&[u8]> = Vec::new();
    for field in fields {
        if field.name.eq_ignore_ascii_case("connection") {
            nominated.extend(
                field
                    .value
                    .split(|b| *b == b',')
                    .map(<[u8]>::trim_ascii)
                    .filter(|t| !t.is_empty()),
            );
        }
    }
    let size: usize = fields
        .iter()
        .map(|f| f.name.len() + f.value.len() + 4)
        .sum::<usize>()
        + set
            .iter()
            .map(|(n, v)| n.len() + v.as_ref().map_or(0, |v| v.len()) + 4)
            .sum::<usize>();
    let mut out = BytesMut::with_capacity(method.len() + target.len() + 16 + size);
    out.extend_from_slice(method.as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut line = |name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    for field in fields {
        let name = field.name.as_bytes();
        let is = |other: &[u8]| name.eq_ignore_ascii_case(other);
        let dropped = hop_by_hop(name)
            || nominated.iter().any(|n| is(n))
            || set.iter().any(|(f, _)| is(f.as_bytes()));
        if !dropped {
            line(name, field.value);
        }
    }
    for (name, value) in set {
        if let Some(value) = value {
            line(name.as_bytes(), value.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_fields_stay_behind_and_the_edges_replace_the_clients() {
        let raw = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Secret\r\n\
                    X-Secret: 1\r\nKeep-Alive: 5\r\nX-Forwarded-For: 10.0.0.1\r\nX-Custom-Case: kept\r\n\
                    Cookie: a=1\r\n\r\n";
        let mut fields = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut fields);
        req.parse(raw).unwrap();
        let set: Vec<Field<'_>> = vec![
            ("x-forwarded-for", Some("10.0.0.1, 127.0.0.1".into())),
            ("cookie", None),
        ];
        let out = build("GET", b"/a?b=1", req.headers, &set);
        assert_eq!(
            String::from_utf8(out.to_vec()).unwrap(),
            "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Custom-Case: kept\r\n\
             x-forwarded-for: 10.0.0.1, 127.0.0.1\r\n\r\n"
        );
    }
}
