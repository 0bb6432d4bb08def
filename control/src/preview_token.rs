//! Signed preview tokens for private sandboxes.
//!
//! Format: `<payload>.<signature>`, both base64url without padding; the
//! payload is JSON `{"v":1,"sid":"<sandbox id>","exp":<unix seconds>}` and
//! the signature is HMAC-SHA256 of the payload's base64 text under the
//! instance's preview key. berth-edge verifies tokens with the same key
//! (fetched from `GET /v1/edge/bootstrap`); keep the two in step.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub v: u8,
    pub sid: String,
    pub exp: i64,
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: this cannot fail.
    <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

/// A token letting its bearer see sandbox `sid` until `exp`.
pub fn mint(key: &[u8], sid: &str, exp: i64) -> String {
    let claims = Claims {
        v: 1,
        sid: sid.to_string(),
        exp,
    };
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
    let mut m = mac(key);
    m.update(payload.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{payload}.{sig}")
}

/// The claims of a valid, unexpired token (constant-time signature check).
pub fn verify(key: &[u8], token: &str, now: i64) -> Option<Claims> {
    let (payload, sig) = token.split_once('.')?;
    let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
    let mut m = mac(key);
    m.update(payload.as_bytes());
    m.verify_slice(&sig).ok()?;
    let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    (claims.v == 1 && claims.exp > now).then_some(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_until_they_expire() {
        let key = b"0123456789abcdef0123456789abcdef";
        let t = mint(key, "abc", 1000);
        assert_eq!(verify(key, &t, 999).unwrap().sid, "abc");
        assert!(verify(key, &t, 1000).is_none());
        assert!(verify(b"another key", &t, 1).is_none());
        let (payload, sig) = t.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"v":1,"sid":"other","exp":5000}"#);
        assert!(verify(key, &format!("{forged}.{sig}"), 1).is_none());
        assert!(verify(key, payload, 1).is_none());
        assert!(verify(key, "garbage", 1).is_none());
    }
}
