//! Private sandboxes: a preview request needs a token minted by control
//! (`POST /v1/sandboxes/{id}/preview-token`), given once as `?berth_token=`
//! and then kept in a cookie scoped to that preview host.
//!
//! The token format is `berth_wire::token`. A token opens its sandbox only
//! while it names the sandbox's current preview generation, read from
//! control and believed for [`GENERATION_TTL`]: a re-created sandbox or a
//! revocation voids older tokens within that time.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use berth_wire::token;
use tokio::sync::Mutex;

use crate::control::Control;

pub use berth_wire::token::{COOKIE, QUERY_PARAM};

/// How long a sandbox's preview generation is believed without asking control.
pub const GENERATION_TTL: Duration = Duration::from_secs(2);
/// How often a sandbox's generation is asked again when a validly signed
/// token of another generation comes in.
const GENERATION_RECHECK: Duration = Duration::from_millis(250);
/// Generations kept at most (a scan of random ids must not grow memory).
const GENERATIONS_KEPT: usize = 10_000;

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The expiry of `token` if it is valid for sandbox `sid` of `generation` under `key`.
pub fn verify(key: &[u8], token: &str, sid: &str, generation: &str, now: i64) -> Option<i64> {
    let claims = token::verify(key, token, now)?;
    (claims.sid == sid && claims.generation == generation).then_some(claims.exp)
}

/// Every value of cookie `name` in `Cookie` headers: a sibling preview app
/// may set a cookie of the same name on the parent domain, so one bad value
/// must not hide a good one.
pub fn cookie_values<'a>(
    headers: impl Iterator<Item = &'a str>,
    name: &'a str,
) -> impl Iterator<Item = &'a str> {
    headers.flat_map(move |header| {
        header
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(move |(k, _)| *k == name)
            .map(|(_, v)| v)
    })
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

/// The `Set-Cookie` value that trades a preview token for a session.
///
/// Opened directly, it is a host-only `SameSite=Lax` cookie. Opened in a
/// frame of another site (the dashboard's preview pane: the browser says
/// so in `Sec-Fetch-Dest`), a Lax cookie would never be sent back, so it is
/// `SameSite=None; Secure; Partitioned` instead: kept only under the
/// top-level site that framed it (the one that minted the token), so no
/// other site's frame can ride it. Browsers keep `Secure` cookies over
/// plain HTTP only for loopback names (`localhost`, `*.localhost`): framed
/// private previews elsewhere need TLS.
pub fn session_cookie(token: &str, max_age: i64, tls: bool, framed: bool) -> String {
    let name = COOKIE;
    if framed {
        format!(
            "{name}={token}; Path=/; HttpOnly; SameSite=None; Secure; Partitioned; Max-Age={max_age}"
        )
    } else {
        let secure = if tls { "; Secure" } else { "" };
        format!("{name}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
    }
}

/// Whether a request's `Sec-Fetch-Dest` says it loads a frame.
pub fn is_frame(sec_fetch_dest: Option<&str>) -> bool {
    matches!(sec_fetch_dest, Some("iframe" | "frame"))
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
/// most every 30 s, when a token does not verify: the key may be new) and
/// the sandbox's preview generation.
pub struct PreviewAuth {
    control: Control,
    key: ArcSwapOption<Vec<u8>>,
    fetched: Mutex<Option<Instant>>,
    generations: std::sync::Mutex<HashMap<String, (Instant, String)>>,
}

impl PreviewAuth {
    pub fn new(control: Control) -> Arc<Self> {
        Arc::new(Self {
            control,
            key: ArcSwapOption::empty(),
            fetched: Mutex::new(None),
            generations: std::sync::Mutex::new(HashMap::new()),
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
        match self.control.bootstrap().await {
            Ok(boot) => {
                self.key.store(Some(Arc::new(boot.preview_key)));
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not fetch the preview key from control");
                false
            }
        }
    }

    /// Sandbox `sid`'s current preview generation (`None`: no such sandbox,
    /// or control could not say), kept for `GENERATION_TTL`, or only for
    /// `GENERATION_RECHECK` when `recheck` (a validly signed token of another
    /// generation: the sandbox may have been re-created or revoked since).
    async fn generation(&self, sid: &str, recheck: bool) -> Option<String> {
        {
            let kept = self
                .generations
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((at, generation)) = kept.get(sid) {
                let ttl = if recheck {
                    GENERATION_RECHECK
                } else {
                    GENERATION_TTL
                };
                if at.elapsed() < ttl {
                    return Some(generation.clone());
                }
            }
        }
        let generation = match self.control.sandbox(sid).await {
            Ok(Some(remote)) => remote.preview_generation,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(sandbox = %sid, error = %e, "could not read a sandbox's preview generation");
                return None;
            }
        };
        let mut kept = self
            .generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if kept.len() >= GENERATIONS_KEPT {
            kept.retain(|_, (at, _)| at.elapsed() < GENERATION_TTL);
        }
        if kept.len() < GENERATIONS_KEPT {
            kept.insert(sid.to_string(), (Instant::now(), generation.clone()));
        }
        Some(generation)
    }

    /// The expiry of the first of `tokens` that opens sandbox `sid`.
    pub async fn check_any<'a>(
        &self,
        tokens: impl IntoIterator<Item = &'a str>,
        sid: &str,
    ) -> Option<i64> {
        let tokens: Vec<&str> = tokens.into_iter().take(8).collect();
        if tokens.is_empty() {
            return None;
        }
        if self.key.load().is_none() {
            self.refetch().await;
        }
        let now = now_s();
        let signed = |key: &[u8]| {
            tokens
                .iter()
                .filter_map(|t| token::verify(key, t, now))
                .filter(|c| c.sid == sid)
                .collect::<Vec<_>>()
        };
        let mut claims = self.key.load_full().map(|k| signed(&k)).unwrap_or_default();
        if claims.is_empty() && self.refetch().await {
            claims = self.key.load_full().map(|k| signed(&k)).unwrap_or_default();
        }
        if claims.is_empty() {
            return None;
        }
        let current = |generation: &str| {
            claims
                .iter()
                .find(|c| c.generation == generation)
                .map(|c| c.exp)
        };
        let generation = self.generation(sid, false).await?;
        if let Some(exp) = current(&generation) {
            return Some(exp);
        }
        // Only control signs tokens: one of another generation was minted
        // before a revoke (refused) or after one this edge has not seen yet
        // (a just re-created sandbox). Ask again, at most every
        // GENERATION_RECHECK per sandbox.
        let generation = self.generation(sid, true).await?;
        current(&generation)
    }

    /// The expiry of `token` if it opens sandbox `sid`.
    pub async fn check(&self, token: &str, sid: &str) -> Option<i64> {
        self.check_any([token], sid).await
    }

    pub fn seconds_left(exp: i64) -> i64 {
        (exp - now_s()).max(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_exchange_gets_a_partitioned_cross_site_cookie() {
        let direct = session_cookie("t", 60, false, false);
        assert!(
            direct.contains("SameSite=Lax") && !direct.contains("Secure"),
            "{direct}"
        );
        assert!(session_cookie("t", 60, true, false).ends_with("; Secure"));
        let framed = session_cookie("t", 60, false, true);
        for part in [
            "HttpOnly",
            "SameSite=None",
            "Secure",
            "Partitioned",
            "Max-Age=60",
        ] {
            assert!(framed.contains(part), "{part} missing: {framed}");
        }
        assert!(framed.starts_with(&format!("{COOKIE}=t;")));
        assert!(is_frame(Some("iframe")) && is_frame(Some("frame")));
        assert!(!is_frame(Some("document")) && !is_frame(None));
    }

    #[test]
    fn tokens_open_only_their_sandbox_and_generation_until_expiry() {
        let t = token::mint(b"k", "abc", "g1", 100);
        assert_eq!(verify(b"k", &t, "abc", "g1", 99), Some(100));
        assert_eq!(verify(b"k", &t, "abc", "g2", 99), None);
        assert_eq!(verify(b"k", &t, "abd", "g1", 99), None);
        assert_eq!(verify(b"k", &t, "abc", "g1", 100), None);
        assert_eq!(verify(b"other", &t, "abc", "g1", 99), None);
    }

    #[test]
    fn cookies_and_queries() {
        let headers = ["a=1; berth_preview=junk; b=2", "berth_preview=tok"];
        assert_eq!(
            cookie_values(headers.iter().copied(), COOKIE).collect::<Vec<_>>(),
            vec!["junk", "tok"]
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
