//! The container a sandbox runs in, as a pure function of its record: the
//! hardening, limits, mounts and labels live here and nowhere else.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, RestartPolicy, RestartPolicyNameEnum,
};

use crate::store::{Egress, SandboxRecord};
use berth_wire::labels;

/// Where the sandbox's persistent home directory is mounted.
pub const HOME: &str = "/home/user";
/// The workspace, inside the home directory.
pub const WORKSPACE: &str = "/home/user/workspace";

/// Host-wide settings that shape every sandbox container.
#[derive(Debug, Clone)]
pub struct SpecContext {
    pub instance_id: String,
    /// The network of sandboxes with egress (`open`).
    pub network: String,
    /// The internal network of sandboxes without egress (`none`): no route
    /// out, but the host (the edge) reaches their ports.
    pub network_internal: String,
    pub preview_domain: String,
    pub tmp_size: u64,
    pub pids_limit: i64,
    /// The exec agent's executable on the host, bind-mounted read-only
    /// into every sandbox; `None`: commands go through Docker's exec.
    pub execd: Option<std::path::PathBuf>,
}

pub use berth_wire::container_name;
pub use berth_wire::preview::host as preview_host;

/// Labels: berth's own, and Traefik's so that a stock Traefik routes the
/// sandbox's preview hosts too.
/// What a sandbox has on the host: its home (mounted at /home/user), its
/// identity files (`passwd`, `group`, mounted read-only in /etc) and the uid
/// (= gid) it runs as.
#[derive(Debug, Clone)]
pub struct HostSide {
    pub home: std::path::PathBuf,
    pub identity: std::path::PathBuf,
    pub uid: u32,
}

/// The network a sandbox is attached to.
pub fn network_of<'a>(rec: &SandboxRecord, ctx: &'a SpecContext) -> &'a str {
    match rec.egress {
        Egress::Open => &ctx.network,
        Egress::None => &ctx.network_internal,
    }
}

pub fn container_labels(rec: &SandboxRecord, ctx: &SpecContext) -> HashMap<String, String> {
    let mut out = HashMap::from([
        (labels::MANAGED.to_string(), "true".to_string()),
        (labels::INSTANCE.to_string(), ctx.instance_id.clone()),
        (labels::SANDBOX.to_string(), rec.id.clone()),
    ]);
    if rec.pooled {
        // Made before any client: its ports and visibility are not known
        // yet, so the edge asks control for them once it is claimed.
        out.insert(labels::POOL.to_string(), "true".to_string());
        return out;
    }
    out.extend([
        (labels::PUBLIC.to_string(), rec.public.to_string()),
        (
            labels::PORTS.to_string(),
            rec.ports
                .0
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
    ]);
    if !rec.ports.0.is_empty() {
        out.insert("traefik.enable".into(), "true".into());
        out.insert(labels::NETWORK.into(), network_of(rec, ctx).to_string());
    }
    for port in &rec.ports.0 {
        let name = format!("{}-{port}", container_name(&rec.id));
        out.insert(
            format!("traefik.http.routers.{name}.rule"),
            format!(
                "Host(`{}`)",
                preview_host(&rec.id, *port, &ctx.preview_domain)
            ),
        );
        out.insert(format!("traefik.http.routers.{name}.service"), name.clone());
        out.insert(
            format!("traefik.http.services.{name}.loadbalancer.server.port"),
            port.to_string(),
        );
    }
    out
}

/// Environment of the container: berth's variables, then the user's.
pub fn environment(rec: &SandboxRecord) -> Vec<String> {
    let mut env = vec![
        format!("HOME={HOME}"),
        "USER=user".to_string(),
        format!("BERTH_SANDBOX_ID={}", rec.id),
        format!("BERTH_WORKSPACE={WORKSPACE}"),
    ];
    env.extend(rec.env.0.iter().map(|(k, v)| format!("{k}={v}")));
    env
}

/// The user's environment as `KEY=value`, for every exec berth runs in the
/// sandbox (under the exec's own): a container claimed from the warm pool
/// was made before its sandbox had an environment.
pub fn exec_environment(rec: &SandboxRecord) -> Vec<String> {
    rec.env.0.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The full create request for a sandbox placed on the host as `host`.
pub fn container_spec(
    rec: &SandboxRecord,
    ctx: &SpecContext,
    host: &HostSide,
) -> ContainerCreateBody {
    let uid = host.uid;
    // Owned by the sandbox user: Docker 20.10 forgets `mode=` when it
    // restarts a container, but keeps the owner.
    let tmpfs = HashMap::from([(
        "/tmp".to_string(),
        format!(
            "rw,nosuid,nodev,size={},mode=1777,uid={uid},gid={uid}",
            ctx.tmp_size
        ),
    )]);
    let identity = |name: &str| format!("{}:/etc/{name}:ro", host.identity.join(name).display());
    let mut all_labels = container_labels(rec, ctx);
    all_labels.insert(labels::UID.to_string(), uid.to_string());
    let mut binds = vec![
        format!("{}:{HOME}:rw", host.home.display()),
        identity("passwd"),
        identity("group"),
    ];
    if let Some(execd) = &ctx.execd {
        // The agent (root's, read-only) and the sandbox's own socket
        // directory (its uid's, 0700): no other sandbox sees either.
        binds.push(format!("{}:{}:ro", execd.display(), crate::execd::BIN));
        binds.push(format!(
            "{}:{}:rw",
            crate::execd::run_dir(&host.identity).display(),
            crate::execd::RUN_DIR
        ));
    }
    let host_config = HostConfig {
        binds: Some(binds),
        network_mode: Some(network_of(rec, ctx).to_string()),
        runtime: rec.runtime.clone(),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges:true".into()]),
        readonly_rootfs: Some(true),
        tmpfs: Some(tmpfs),
        pids_limit: Some(ctx.pids_limit),
        memory: Some(rec.memory_bytes),
        // No swap beyond the memory limit: a sandbox cannot push the host into swap.
        memory_swap: Some(rec.memory_bytes),
        nano_cpus: Some(rec.nano_cpus),
        init: Some(true),
        // Under host memory pressure the kernel kills sandboxes before berth or Docker.
        oom_score_adj: Some(500),
        // Control decides when sandboxes run (after a reboot, the reconciler
        // starts them and reruns their `start` command).
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([
                ("max-size".into(), "10m".into()),
                ("max-file".into(), "2".into()),
            ])),
        }),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(rec.image.clone()),
        hostname: Some(rec.id.chars().take(63).collect()),
        user: Some(format!("{uid}:{uid}")),
        env: Some(environment(rec)),
        working_dir: Some(WORKSPACE.into()),
        labels: Some(all_labels),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// The command that runs a sandbox's `start` script, detached, with its output
/// in /tmp/berth-start.log.
pub fn start_command(start: &str) -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        "exec /bin/sh -lc \"$1\" >>/tmp/berth-start.log 2>&1 </dev/null".into(),
        "berth-start".into(),
        start.into(),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sqlx::types::Json;

    use super::*;
    use crate::store::{DesiredState, IdlePolicy, Status};

    fn record() -> SandboxRecord {
        SandboxRecord {
            id: "abc".into(),
            image: "img:1".into(),
            ports: Json(vec![3000, 8080]),
            env: Json(BTreeMap::from([("KEY".into(), "v=1".into())])),
            metadata: Json(BTreeMap::new()),
            memory_bytes: 1 << 30,
            nano_cpus: 500_000_000,
            start_cmd: None,
            idle_timeout_s: 60,
            idle_policy: IdlePolicy::Sleep,
            desired_state: DesiredState::Running,
            status: Status::Creating,
            status_detail: None,
            container_id: None,
            created_at: 0,
            updated_at: 0,
            last_active_at: 0,
            keepalive_until: None,
            public: true,
            preview_generation: "g".into(),
            egress: Egress::Open,
            runtime: None,
            uid: Some(1_100_000),
            pooled: false,
        }
    }

    fn host() -> HostSide {
        HostSide {
            home: "/data/sandboxes/abc".into(),
            identity: "/data/identity/abc".into(),
            uid: 1_100_000,
        }
    }

    fn ctx() -> SpecContext {
        SpecContext {
            instance_id: "inst".into(),
            network: "berth".into(),
            network_internal: "berth-internal".into(),
            preview_domain: "example.com".into(),
            tmp_size: 1 << 20,
            pids_limit: 256,
            execd: Some("/data/bin/berth-execd".into()),
        }
    }

    #[test]
    fn containers_are_hardened() {
        let spec = container_spec(&record(), &ctx(), &host());
        let host = spec.host_config.unwrap();
        assert_eq!(host.cap_drop.unwrap(), vec!["ALL"]);
        assert_eq!(host.security_opt.unwrap(), vec!["no-new-privileges:true"]);
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.pids_limit, Some(256));
        assert_eq!(host.memory, Some(1 << 30));
        assert_eq!(host.memory_swap, Some(1 << 30));
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(spec.user.as_deref(), Some("1100000:1100000"));
        let tmp = &host.tmpfs.unwrap()["/tmp"];
        assert!(
            tmp.contains("size=1048576") && tmp.contains("uid=1100000"),
            "{tmp}"
        );
        assert_eq!(
            host.binds.unwrap(),
            vec![
                "/data/sandboxes/abc:/home/user:rw",
                "/data/identity/abc/passwd:/etc/passwd:ro",
                "/data/identity/abc/group:/etc/group:ro",
                "/data/bin/berth-execd:/.berth/execd:ro",
                "/data/identity/abc/run:/.berth/run:rw",
            ]
        );
        assert_eq!(host.network_mode.as_deref(), Some("berth"));
        assert_eq!(host.runtime, None);
        assert_eq!(spec.labels.unwrap()["berth.uid"], "1100000");
        assert!(spec.env.unwrap().contains(&"KEY=v=1".to_string()));
    }

    #[test]
    fn labels_route_every_port_for_berth_and_traefik() {
        let labels = container_labels(&record(), &ctx());
        assert_eq!(labels["berth.managed"], "true");
        assert_eq!(labels["berth.instance"], "inst");
        assert_eq!(labels["berth.sandbox.id"], "abc");
        assert_eq!(labels["berth.ports"], "3000,8080");
        assert_eq!(
            labels["traefik.http.routers.berth-abc-3000.rule"],
            "Host(`s-abc-3000.preview.example.com`)"
        );
        assert_eq!(
            labels["traefik.http.services.berth-abc-8080.loadbalancer.server.port"],
            "8080"
        );
        assert_eq!(labels["traefik.docker.network"], "berth");
    }

    #[test]
    fn a_pooled_container_is_labelled_as_such_and_claims_nothing_more() {
        let mut rec = record();
        rec.pooled = true;
        let labels = container_labels(&rec, &ctx());
        assert_eq!(labels["berth.pool"], "true");
        assert_eq!(labels["berth.sandbox.id"], "abc");
        assert!(
            !labels.contains_key("berth.ports")
                && !labels.contains_key("berth.public")
                && !labels.keys().any(|k| k.starts_with("traefik.")),
            "{labels:?}"
        );
        assert!(!container_labels(&record(), &ctx()).contains_key("berth.pool"));
        assert_eq!(exec_environment(&rec), vec!["KEY=v=1".to_string()]);
    }

    #[test]
    fn sandboxes_without_egress_join_the_internal_network_and_runtimes_pass_through() {
        let mut rec = record();
        rec.egress = Egress::None;
        rec.runtime = Some("runsc".into());
        let spec = container_spec(&rec, &ctx(), &host());
        let host = spec.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("berth-internal"));
        assert_eq!(host.runtime.as_deref(), Some("runsc"));
        assert_eq!(
            spec.labels.unwrap()["traefik.docker.network"],
            "berth-internal"
        );
    }

    #[test]
    fn sandboxes_without_ports_are_still_labelled_as_berth_s() {
        let mut rec = record();
        rec.ports = Json(vec![]);
        let labels = container_labels(&rec, &ctx());
        assert_eq!(labels["berth.managed"], "true");
        assert!(!labels.contains_key("traefik.enable"));
    }

    #[test]
    fn start_command_passes_the_script_as_an_argument() {
        let cmd = start_command("echo 'hi' && npm run dev");
        assert_eq!(cmd.last().unwrap(), "echo 'hi' && npm run dev");
        assert_eq!(cmd[0], "/bin/sh");
    }
}
