//! Private sandboxes: a preview request needs a token minted by control
//! (`POST /v1/sandboxes/{id}/preview-token`), given once as `?berth_token=`
//! and then kept in a cookie scoped to that preview host.
//!
//! Token format (defined in control's `preview_token`): `<payload>.<sig>`,
//! base64url; payload `{"v":1,"sid","exp"}`, signature HMAC-SHA256 of the
//! payload text under the instance's preview key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;
use tokio::sync::Mutex;

use crate::control::Control;

pub const QUERY_PARAM: &str = "berth_token";
pub const COOKIE: &str = "berth_preview";

#[derive(Deserialize)]
struct Claims {
    v: u8,
    sid: String,
    exp: i64,
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The expiry of `token` if it is valid for sandbox `sid` under `key`.
pub fn verify(key: &[u8], token: &str, sid: &str, now: i64) -> Option<i64> {
    let (payload, sig) = token.split_once('.')?;
    let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).ok()?;
    mac.update(payload.as_bytes());
    mac.verify_slice(&sig).ok()?;
    let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    (claims.v == 1 && claims.sid == sid && claims.exp > now).then_some(claims.exp)
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Cookie` header without cookie `name` (`None` if nothing is left).
pub fn without_cookie(header: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = header
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split_once('=').is_none_or(|(k, _)| k != name))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// Splits `berth_token` out of a query string: (token, the rest).
pub fn take_query_token(query: &str) -> (Option<String>, String) {
    let mut token = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=') {
            Some((QUERY_PARAM, v)) => {
                token = Some(v.to_string());
                false
            }
            _ => !pair.is_empty(),
        })
        .collect();
    (token, rest.join("&"))
}

/// Verifies tokens with the key fetched from control (and refetched, at
/// most every 30 s, when a token does not verify: the key may be new).
pub struct PreviewAuth {
    control: Control,
    key: ArcSwapOption<Vec<u8>>,
    fetched: Mutex<Option<Instant>>,
}

impl PreviewAuth {
    pub fn new(control: Control) -> Arc<Self> {
        Arc::new(Self {
            control,
            key: ArcSwapOption::empty(),
            fetched: Mutex::new(None),
        })
    }

    async fn refetch(&self) -> bool {
        let mut fetched = self.fetched.lock().await;
        if fetched.is_some_and(|at| at.elapsed() < Duration::from_secs(30))
            && self.key.load().is_some()
        {
            return false;
        }
        *fetched = Some(Instant::now());
        match self.control.preview_key().await {
            Ok(key) => {
                self.key.store(Some(Arc::new(key)));
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not fetch the preview key from control");
                false
            }
        }
    }

    /// The token's expiry if it opens sandbox `sid`.
    pub async fn check(&self, token: &str, sid: &str) -> Option<i64> {
        if self.key.load().is_none() {
            self.refetch().await;
        }
        let now = now_s();
        if let Some(key) = self.key.load_full() {
            if let Some(exp) = verify(&key, token, sid, now) {
                return Some(exp);
            }
        }
        if self.refetch().await {
            if let Some(key) = self.key.load_full() {
                return verify(&key, token, sid, now);
            }
        }
        None
    }

    pub fn seconds_left(exp: i64) -> i64 {
        (exp - now_s()).max(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mint(key: &[u8], sid: &str, exp: i64) -> String {
        let payload = URL_SAFE_NO_PAD.encode(format!(r#"{{"v":1,"sid":"{sid}","exp":{exp}}}"#));
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
        mac.update(payload.as_bytes());
        format!(
            "{payload}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn tokens_open_only_their_sandbox_until_expiry() {
        let t = mint(b"k", "abc", 100);
        assert_eq!(verify(b"k", &t, "abc", 99), Some(100));
        assert_eq!(verify(b"k", &t, "abd", 99), None);
        assert_eq!(verify(b"k", &t, "abc", 100), None);
        assert_eq!(verify(b"other", &t, "abc", 99), None);
    }

    #[test]
    fn cookies_and_queries() {
        assert_eq!(
            cookie_value("a=1; berth_preview=tok; b=2", COOKIE),
            Some("tok")
        );
        assert_eq!(
            without_cookie("a=1; berth_preview=tok; b=2", COOKIE).as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(without_cookie("berth_preview=tok", COOKIE), None);
        assert_eq!(
            take_query_token("x=1&berth_token=t&y=2"),
            (Some("t".into()), "x=1&y=2".into())
        );
        assert_eq!(take_query_token("x=1"), (None, "x=1".into()));
    }
}
