//! API tokens: parsed from `name:secret,name2:secret2`, checked in constant
//! time, and never printed (only their names appear in logs).

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

/// Why a request was not let in.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("this API needs `Authorization: Bearer <token>`")]
    Missing,
    #[error("the bearer token is not valid")]
    Invalid,
}

/// The caller a valid token belongs to, put in request extensions.
#[derive(Debug, Clone)]
pub struct Caller(pub String);

#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<(String, [u8; 32])>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|(n, _)| n.as_str()).collect();
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
        let mut entries: Vec<(String, [u8; 32])> = Vec::new();
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
            if entries.iter().any(|(existing, _)| existing == name) {
                return Err(TokenError::DuplicateName(name.to_string()));
            }
            entries.push((name.to_string(), digest(secret)));
        }
        Ok(Self { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The name of the token matching `presented`. Every token is compared,
    /// each in constant time, so timing tells nothing about which matched.
    pub fn verify(&self, presented: &str) -> Option<&str> {
        let presented = digest(presented);
        let mut found = None;
        for (name, secret) in &self.entries {
            if bool::from(secret.ct_eq(&presented)) {
                found = Some(name.as_str());
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
        self.verify(token.trim())
            .map(|name| Caller(name.to_string()))
            .ok_or(AuthError::Invalid)
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
        return Ok(next.run(request).await);
    }
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = tokens.check_header(header)?;
    tracing::Span::current().record("caller", caller.0.as_str());
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn parses_names_and_secrets() {
        let t = Tokens::parse(&format!("ci:{A}, ops:{B}")).unwrap();
        assert_eq!(t.verify(A), Some("ci"));
        assert_eq!(t.verify(B), Some("ops"));
        assert_eq!(t.verify("nope"), None);
    }

    #[test]
    fn secrets_may_contain_colons() {
        let t = Tokens::parse("ci:abc:def:ghi:jkl:mnop").unwrap();
        assert_eq!(t.verify("abc:def:ghi:jkl:mnop"), Some("ci"));
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
            t.check_header(Some(&format!("bearer {A}"))).unwrap().0,
            "ci"
        );
        assert_eq!(
            t.check_header(Some("Bearer wrong")).unwrap_err(),
            AuthError::Invalid
        );
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let t = Tokens::parse(&format!("ci:{A}")).unwrap();
        let shown = format!("{t:?}");
        assert!(shown.contains("ci"));
        assert!(!shown.contains(A));
    }
}
