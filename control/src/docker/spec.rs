//! The container a sandbox runs in, as a pure function of its record: the
//! hardening, limits, mounts and labels live here and nowhere else.

use std::collections::HashMap;
use std::path::Path;

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, RestartPolicy, RestartPolicyNameEnum,
};

use super::{LABEL_INSTANCE, LABEL_MANAGED, LABEL_SANDBOX};
use crate::store::SandboxRecord;

/// The user every sandbox process runs as.
pub const SANDBOX_UID: u32 = 1000;
/// Where the sandbox's persistent home directory is mounted.
pub const HOME: &str = "/home/user";
/// The workspace, inside the home directory.
pub const WORKSPACE: &str = "/home/user/workspace";

/// Host-wide settings that shape every sandbox container.
#[derive(Debug, Clone)]
pub struct SpecContext {
    pub instance_id: String,
    pub network: String,
    pub preview_domain: String,
    pub tmp_size: u64,
    pub pids_limit: i64,
}

/// The Docker name of a sandbox's container.
pub fn container_name(sandbox_id: &str) -> String {
    format!("berth-{sandbox_id}")
}

/// The preview host of one port of a sandbox.
pub fn preview_host(sandbox_id: &str, port: u16, domain: &str) -> String {
    format!(
        "s-{}-{port}.preview.{domain}",
        sandbox_id.to_ascii_lowercase()
    )
}

/// Labels: berth's own, and Traefik's so that a stock Traefik routes the
/// sandbox's preview hosts too.
pub fn labels(rec: &SandboxRecord, ctx: &SpecContext) -> HashMap<String, String> {
    let mut labels = HashMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_INSTANCE.to_string(), ctx.instance_id.clone()),
        (LABEL_SANDBOX.to_string(), rec.id.clone()),
        ("berth.public".to_string(), rec.public.to_string()),
        (
            "berth.ports".to_string(),
            rec.ports
                .0
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
    ]);
    if !rec.ports.0.is_empty() {
        labels.insert("traefik.enable".into(), "true".into());
        labels.insert("traefik.docker.network".into(), ctx.network.clone());
    }
    for port in &rec.ports.0 {
        let name = format!("berth-{}-{port}", rec.id);
        labels.insert(
            format!("traefik.http.routers.{name}.rule"),
            format!(
                "Host(`{}`)",
                preview_host(&rec.id, *port, &ctx.preview_domain)
            ),
        );
        labels.insert(format!("traefik.http.routers.{name}.service"), name.clone());
        labels.insert(
            format!("traefik.http.services.{name}.loadbalancer.server.port"),
            port.to_string(),
        );
    }
    labels
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

/// The full create request for a sandbox whose home is `home` on the host.
pub fn container_spec(rec: &SandboxRecord, ctx: &SpecContext, home: &Path) -> ContainerCreateBody {
    // Owned by the sandbox user: Docker 20.10 forgets `mode=` when it
    // restarts a container, but keeps the owner.
    let tmpfs = HashMap::from([(
        "/tmp".to_string(),
        format!(
            "rw,nosuid,nodev,size={},mode=1777,uid={SANDBOX_UID},gid={SANDBOX_UID}",
            ctx.tmp_size
        ),
    )]);
    let host_config = HostConfig {
        binds: Some(vec![format!("{}:{HOME}:rw", home.display())]),
        network_mode: Some(ctx.network.clone()),
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
        user: Some(format!("{SANDBOX_UID}:{SANDBOX_UID}")),
        env: Some(environment(rec)),
        working_dir: Some(WORKSPACE.into()),
        labels: Some(labels(rec, ctx)),
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
        }
    }

    fn ctx() -> SpecContext {
        SpecContext {
            instance_id: "inst".into(),
            network: "berth".into(),
            preview_domain: "example.com".into(),
            tmp_size: 1 << 20,
            pids_limit: 256,
        }
    }

    #[test]
    fn containers_are_hardened() {
        let spec = container_spec(&record(), &ctx(), Path::new("/data/sandboxes/abc"));
        let host = spec.host_config.unwrap();
        assert_eq!(host.cap_drop.unwrap(), vec!["ALL"]);
        assert_eq!(host.security_opt.unwrap(), vec!["no-new-privileges:true"]);
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.pids_limit, Some(256));
        assert_eq!(host.memory, Some(1 << 30));
        assert_eq!(host.memory_swap, Some(1 << 30));
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(spec.user.as_deref(), Some("1000:1000"));
        assert!(host.tmpfs.unwrap()["/tmp"].contains("size=1048576"));
        assert_eq!(
            host.binds.unwrap(),
            vec!["/data/sandboxes/abc:/home/user:rw"]
        );
        assert!(spec.env.unwrap().contains(&"KEY=v=1".to_string()));
    }

    #[test]
    fn labels_route_every_port_for_berth_and_traefik() {
        let labels = labels(&record(), &ctx());
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
    fn sandboxes_without_ports_are_still_labelled_as_berth_s() {
        let mut rec = record();
        rec.ports = Json(vec![]);
        let labels = labels(&rec, &ctx());
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
