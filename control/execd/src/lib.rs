//! berth-execd, the exec agent inside every sandbox, and the wire control
//! speaks to it.
//!
//! Control bind-mounts one static executable read-only at [`wire::BIN`] in
//! every sandbox (bring-your-own images get it too) and starts it once per
//! container start as the sandbox user. It listens on a unix socket in a
//! directory of the sandbox's own on the host ([`wire::RUN_DIR`] inside),
//! owner-only, with no network port. Each connection runs one command:
//! control sends it, its stdin and at most a kill; the agent answers with
//! its output as it is written and its exit. Commands run in a process
//! group of their own and carry [`proctree::MARKER_VAR`], so a kill reaches
//! everything they started, however it detached.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod proctree;
pub mod wire;
