//! API tokens: parsed from `name:secret,name2:secret2`, checked in constant
//! time, and never printed (only their names appear in logs). Each token
//! has a role: the API tokens are admins; the edge's token opens only the
//! edge's routes (`/v1/edge/…`).

use std::fmt;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Secrets shorter than this are refused: they could be guessed.
pub const MIN_SECRET_LEN: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("entry {0} is not `name:secret`")]
    Malformed(usize),
    #[error("entry {0} has an empty name")]
    EmptyName(usize),
    #[error("the secret of `{0}` is shorter than {MIN_SECRET_LEN} characters")]
    ShortSecret(String),
    #[error("the name `{0}` appears twice")]
    DuplicateName(String),
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// berth-edge: only `/v1/edge/…`.
    Edge,
}

/// The routes the edge's token opens.
pub const EDGE_ROUTES: &str = "/v1/edge/";

/// Why a request was not let in.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("this API needs `Authorization: Bearer <token>`")]
    Missing,
    #[error("the bearer token is not valid")]
    Invalid,
    #[error("token `{name}` may not use this route")]
    Forbidden { name: String },
    #[error(
        "a browser request from another site (or through a name that is not loopback) is refused: with no tokens, only this host's own pages may call the API"
    )]
    CrossSite,
}

/// The caller a valid token belongs to, put in request extensions.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// Whether this caller may use `path`.
    pub fn may_use(&self, path: &str) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Edge => path.starts_with(EDGE_ROUTES),
        }
    }
}

#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<(String, [u8; 32], Role)>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|(n, _, _)| n.as_str()).collect();
        f.debug_struct("Tokens").field("names", &names).finish()
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

impl Tokens {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn parse(raw: &str) -> Result<Self, TokenError> {
        let mut entries: Vec<(String, [u8; 32], Role)> = Vec::new();
        for (i, entry) in raw
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let n = i + 1;
            let (name, secret) = entry.split_once(':').ok_or(TokenError::Malformed(n))?;
            let name = name.trim();
            if name.is_empty() {
                return Err(TokenError::EmptyName(n));
            }
            if secret.chars().count() < MIN_SECRET_LEN {
                return Err(TokenError::ShortSecret(name.to_string()));
            }
            if entries.iter().any(|(existing, _, _)| existing == name) {
                return Err(TokenError::DuplicateName(name.to_string()));
            }
            entries.push((name.to_string(), digest(secret), Role::Admin));
        }
        Ok(Self { entries })
    }

    /// Adds the edge's token (named `edge`, role [`Role::Edge`]).
    pub fn with_edge(mut self, secret: &str) -> Result<Self, TokenError> {
        let name = berth_wire::roles::EDGE;
        if secret.chars().count() < MIN_SECRET_LEN {
            return Err(TokenError::ShortSecret(name.to_string()));
        }
        if self.entries.iter().any(|(existing, _, _)| existing == name) {
            return Err(TokenError::DuplicateName(name.to_string()));
        }
        self.entries
            .push((name.to_string(), digest(secret), Role::Edge));
        Ok(self)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The name of the token matching `presented`. Every token is compared,
    /// each in constant time, so timing tells nothing about which matched.
    pub fn verify(&self, presented: &str) -> Option<Caller> {
        let presented = digest(presented);
        let mut found = None;
        for (name, secret, role) in &self.entries {
            if bool::from(secret.ct_eq(&presented)) {
                found = Some(Caller {
                    name: name.clone(),
                    role: *role,
                });
            }
        }
        found
    }

    /// Checks an `Authorization` header value.
    pub fn check_header(&self, header: Option<&str>) -> Result<Caller, AuthError> {
        let value = header.ok_or(AuthError::Missing)?;
        let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::Invalid)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Invalid);
        }
        self.verify(token.trim()).ok_or(AuthError::Invalid)
    }
}

/// Middleware guarding the API routes; a no-op when no tokens are configured
/// (which config only allows on a loopback bind).
pub async fn require_token(
    State(tokens): State<Tokens>,
    mut request: Request,
    next: Next,
) -> Result<Response, crate::api::ApiError> {
    if tokens.is_empty() {
        if !from_this_host(request.headers()) {
            return Err(AuthError::CrossSite.into());
        }
        return Ok(next.run(request).await);
    }
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = tokens.check_header(header)?;
    tracing::Span::current().record("caller", caller.name.as_str());
    if !caller.may_use(request.uri().path()) {
        return Err(AuthError::Forbidden { name: caller.name }.into());
    }
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

/// With no tokens, anything that can reach the loopback port could call
/// the API, and a browser can: a page on another site posting a "simple"
/// request (CSRF), or a name rebound to 127.0.0.1 (DNS rebinding). So the
/// `Host` must be a loopback name and a browser's `Origin`, when it sends
/// one, this same host. Non-browser clients send no `Origin`.
fn from_this_host(headers: &axum::http::HeaderMap) -> bool {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(host) = header(axum::http::header::HOST) else {
        return true; // HTTP/1.0 with no Host: not a browser.
    };
    if !is_loopback_name(host) {
        return false;
    }
    match header(axum::http::header::ORIGIN) {
        None => true,
        Some(origin) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
    }
}

/// `127.0.0.1:9090`, `localhost`, `[::1]:9090` …
fn is_loopback_name(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn only_this_hosts_pages_may_call_without_tokens() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = axum::http::HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, axum::http::HeaderValue::from_static(v));
            }
            h
        };
        assert!(from_this_host(&headers(&[("host", "127.0.0.1:9090")])));
        assert!(from_this_host(&headers(&[("host", "[::1]:9090")])));
        assert!(from_this_host(&headers(&[
            ("host", "localhost:9090"),
            ("origin", "http://localhost:9090")
        ])));
        // Another site's page, and a rebound name.
        assert!(!from_this_host(&headers(&[
            ("host", "127.0.0.1:9090"),
            ("origin", "https://evil.example")
        ])));
        assert!(!from_this_host(&headers(&[
            ("host", "127.0.0.1:9090"),
            ("origin", "null")
        ])));
        assert!(!from_this_host(&headers(&[("host", "evil.example:9090")])));
        assert!(!from_this_host(&headers(&[(
            "host",
            "127.0.0.1.evil.example"
        )])));
    }

    #[test]
    fn parses_names_and_secrets() {
        let t = Tokens::parse(&format!("ci:{A}, ops:{B}")).unwrap();
        assert_eq!(t.verify(A).unwrap().name, "ci");
        assert_eq!(t.verify(B).unwrap().name, "ops");
        assert!(t.verify("nope").is_none());
    }

    #[test]
    fn secrets_may_contain_colons() {
        let t = Tokens::parse("ci:abc:def:ghi:jkl:mnop").unwrap();
        assert_eq!(t.verify("abc:def:ghi:jkl:mnop").unwrap().name, "ci");
    }

    #[test]
    fn bad_lists_are_refused() {
        assert_eq!(Tokens::parse(A).unwrap_err(), TokenError::Malformed(1));
        assert_eq!(
            Tokens::parse(&format!(":{A}")).unwrap_err(),
            TokenError::EmptyName(1)
        );
        assert_eq!(
            Tokens::parse("ci:short").unwrap_err(),
            TokenError::ShortSecret("ci".into())
        );
        assert_eq!(
            Tokens::parse(&format!("ci:{A},ci:{B}")).unwrap_err(),
            TokenError::DuplicateName("ci".into())
        );
    }

    #[test]
    fn header_needs_bearer_scheme() {
        let t = Tokens::parse(&format!("ci:{A}")).unwrap();
        assert_eq!(t.check_header(None).unwrap_err(), AuthError::Missing);
        assert_eq!(
            t.check_header(Some(&format!("Basic {A}"))).unwrap_err(),
            AuthError::Invalid
        );
        assert_eq!(
            t.check_header(Some(&format!("bearer {A}"))).unwrap().name,
            "ci"
        );
        assert_eq!(
            t.check_header(Some("Bearer wrong")).unwrap_err(),
            AuthError::Invalid
        );
    }

    #[test]
    fn the_edge_token_opens_only_the_edge_routes() {
        let t = Tokens::parse(&format!("ci:{A}"))
            .unwrap()
            .with_edge(B)
            .unwrap();
        let edge = t.verify(B).unwrap();
        assert_eq!(edge.role, Role::Edge);
        assert!(edge.may_use("/v1/edge/bootstrap"));
        assert!(edge.may_use("/v1/edge/sandboxes/x/wake"));
        assert!(!edge.may_use("/v1/sandboxes/x/exec"));
        assert!(!edge.may_use("/v1/edge"));
        assert!(!edge.may_use("/metrics"));
        assert!(t.verify(A).unwrap().may_use("/v1/sandboxes/x/exec"));
        assert!(Tokens::none().with_edge("short").is_err());
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let t = Tokens::parse(&format!("ci:{A}")).unwrap();
        let shown = format!("{t:?}");
        assert!(shown.contains("ci"));
        assert!(!shown.contains(A));
    }
}
