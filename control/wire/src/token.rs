//! Signed preview tokens for private sandboxes.
//!
//! Format: `<payload>.<signature>`, both base64url without padding; the
//! payload is JSON `{"v":2,"sid":"<sandbox id>","generation":"<generation>","exp":<unix seconds>}`
//! and the signature is HMAC-SHA256 of the payload's base64 text under the
//! instance's preview key. Control mints them; the edge verifies them with
//! the same key and checks `gen` against the sandbox's current preview
//! generation, which changes when the sandbox is re-created or its tokens
//! are revoked: an old token then opens nothing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The version this crate mints and accepts.
pub const VERSION: u8 = 2;
/// The query parameter a preview link carries its token in.
pub const QUERY_PARAM: &str = "berth_token";
/// The cookie the edge keeps a verified token in.
pub const COOKIE: &str = "berth_preview";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub v: u8,
    pub sid: String,
    pub generation: String,
    pub exp: i64,
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: this cannot fail.
    <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

/// A token letting its bearer see sandbox `sid` of `generation` until `exp`.
pub fn mint(key: &[u8], sid: &str, generation: &str, exp: i64) -> String {
    let claims = Claims {
        v: VERSION,
        sid: sid.to_string(),
        generation: generation.to_string(),
        exp,
    };
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
    let mut m = mac(key);
    m.update(payload.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{payload}.{sig}")
}

/// The claims of a token signed with `key`, of this version and unexpired
/// at `now` (constant-time signature check). The caller checks `sid` and
/// `generation` against the sandbox asked for.
pub fn verify(key: &[u8], token: &str, now: i64) -> Option<Claims> {
    let (payload, sig) = token.split_once('.')?;
    let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
    let mut m = mac(key);
    m.update(payload.as_bytes());
    m.verify_slice(&sig).ok()?;
    let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    (claims.v == VERSION && claims.exp > now).then_some(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_until_they_expire() {
        let key = b"0123456789abcdef0123456789abcdef";
        let t = mint(key, "abc", "g1", 1000);
        let claims = verify(key, &t, 999).unwrap();
        assert_eq!(
            (claims.sid.as_str(), claims.generation.as_str()),
            ("abc", "g1")
        );
        assert!(verify(key, &t, 1000).is_none());
        assert!(verify(b"another key", &t, 1).is_none());
        let (payload, sig) = t.split_once('.').unwrap();
        let forged =
            URL_SAFE_NO_PAD.encode(br#"{"v":2,"sid":"other","generation":"g1","exp":5000}"#);
        assert!(verify(key, &format!("{forged}.{sig}"), 1).is_none());
        assert!(verify(key, payload, 1).is_none());
        assert!(verify(key, "garbage", 1).is_none());
    }

    #[test]
    fn tokens_of_the_first_version_are_refused() {
        // v1 had no generation: such a token would survive re-creation.
        let key = b"k";
        let payload = URL_SAFE_NO_PAD.encode(br#"{"v":1,"sid":"abc","exp":5000}"#);
        let mut m = mac(key);
        m.update(payload.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
        assert!(verify(key, &format!("{payload}.{sig}"), 1).is_none());
    }
}
