//! berth-edge: the front door. Routes preview hosts
//! `s-<id>-<port>.preview.<domain>` to sandboxes (waking stopped ones),
//! and Traefik-labelled containers to their services. See
//! docs/ARCHITECTURE.md for the map and docs/EDGE.md for the label subset.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod activity;
pub mod config;
pub mod control;
pub mod docker;
pub mod front;
pub mod host;
pub mod metrics;
pub mod pages;
pub mod preview_auth;
pub mod proxy;
pub mod relay;
pub mod routes;
pub mod tls;
pub mod wake;
