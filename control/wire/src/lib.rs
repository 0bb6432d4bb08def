//! The wire contract between `berth-control` and `berth-edge`: everything
//! both sides must spell the same way lives here, once. Control writes
//! containers, labels and tokens; the edge reads them. A change here is a
//! change to both, so they can never drift apart.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod labels;
pub mod preview;
pub mod secret;
pub mod token;

pub use secret::Secret;

/// The Docker name of a sandbox's container.
pub fn container_name(sandbox_id: &str) -> String {
    format!("berth-{sandbox_id}")
}

/// Role names of API tokens. A token without a role is an admin token.
pub mod roles {
    /// berth-edge's token: bootstrap, wake, look-ups and activity only.
    pub const EDGE: &str = "edge";
}
