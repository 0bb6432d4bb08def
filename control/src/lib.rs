//! berth's control plane: isolated dev sandboxes on one Docker host, with
//! SQLite as the source of truth. See docs/ARCHITECTURE.md for the map.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod activity;
pub mod agents;
pub mod api;
pub mod app;
pub mod auth;
pub mod cidr;
pub mod config;
pub mod datadir;
pub mod docker;
pub mod execd;
pub mod firewall;
pub mod image_ref;
pub mod memory;
pub mod metrics;
pub mod neighbours;
pub use berth_execd::proctree;
pub mod reaper;
pub mod reconciler;
pub mod sandbox;
pub mod store;
pub mod supervise;
pub mod tasks;
pub mod ticker;
pub mod uids;
pub mod units;
pub mod workspace;
