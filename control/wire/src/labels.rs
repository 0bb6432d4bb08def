//! Docker labels berth puts on every container it makes.

/// `true` on every container berth makes.
pub const MANAGED: &str = "berth.managed";
/// The install (`<data dir>/instance-id`) a container belongs to: an
/// instance never touches, nor routes, another instance's containers.
pub const INSTANCE: &str = "berth.instance";
/// The sandbox id.
pub const SANDBOX: &str = "berth.sandbox.id";
/// The declared ports, comma-separated.
pub const PORTS: &str = "berth.ports";
/// `false` when previews need a token.
pub const PUBLIC: &str = "berth.public";
/// Digest of the spec a container was made from (recreated when it changes).
pub const SPEC: &str = "berth.spec";
/// The host uid the sandbox runs as (a container made before sandboxes had
/// uids of their own lacks it, and is recreated).
pub const UID: &str = "berth.uid";
/// `true` on a container made for the warm pool: it carries no ports nor
/// visibility (no client had asked yet), so the edge takes them from
/// control. It is replaced by an ordinary one on its first recreation.
pub const POOL: &str = "berth.pool";
/// The Docker network the edge reaches the sandbox on.
pub const NETWORK: &str = "traefik.docker.network";
