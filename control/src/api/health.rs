//! Liveness, readiness and what this instance is.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde_json::json;

use super::{ApiError, AppState};

/// The process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "system",
    summary = "`ok` while the process is up",
    responses((status = 200, content_type = "text/plain", body = String), super::openapi::NoErrors),
    security(())
)]
pub async fn healthz() -> &'static str {
    "ok"
}

/// The database and Docker answer.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "system",
    summary = "Ready when SQLite, Docker and every background loop answer",
    responses((status = 200, body = serde_json::Value, example = json!({"status": "ready"})), super::openapi::ReadyErrors),
    security(())
)]
pub async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    if let Err(e) = state.store.ping().await {
        return Err(ApiError::new(
            berth_api::ErrorCode::NotReady,
            format!("the database does not answer: {e}"),
        ));
    }
    if let Err(e) = state.docker.ping().await {
        return Err(ApiError::new(
            berth_api::ErrorCode::NotReady,
            format!("Docker does not answer: {e}"),
        ));
    }
    let down = state.health.down();
    if !down.is_empty() {
        return Err(ApiError::new(
            berth_api::ErrorCode::NotReady,
            format!(
                "background loops are restarting after a failure: {}",
                down.join(", ")
            ),
        ));
    }
    Ok(Json(json!({"status": "ready"})))
}

/// Version, instance id, limits: what a client or an operator needs to know.
#[utoipa::path(
    get,
    path = "/v1/info",
    operation_id = "info",
    tag = "system",
    summary = "Version, instance, Docker, image, isolation and limits",
    responses((status = 200, body = serde_json::Value), super::openapi::ListErrors)
)]
pub async fn info(State(state): State<AppState>) -> Json<serde_json::Value> {
    let s = state.sandboxes.settings();
    let docker = state
        .docker
        .describe()
        .await
        .unwrap_or_else(|e| e.to_string());
    // `null` when Docker could not be asked.
    let image = match state.docker.image(&s.image).await {
        Ok(Some(facts)) => {
            // The agent CLIs in it: `null` when the image does not say.
            let agents = state
                .tasks
                .installed_agents()
                .of(&state.docker, &s.image, &facts.id)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(image = %s.image, error = %e, "could not read which agents the image has");
                    None
                });
            let names = agents
                .as_ref()
                .map(|list| list.iter().map(|a| a.name.clone()).collect::<Vec<_>>());
            json!({
                "present": true,
                "berth": facts.berth_kind,
                "agents": names,
                "agent_versions": agents,
            })
        }
        Ok(None) => {
            json!({"present": false, "berth": null, "agents": null, "agent_versions": null})
        }
        Err(_) => serde_json::Value::Null,
    };
    let runtimes = state.docker.runtimes().await.ok();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "instance_id": state.sandboxes.instance_id(),
        "uptime_s": state.started.elapsed().as_secs(),
        "docker": docker,
        "network": s.network,
        "default_image": s.image,
        "default_image_status": image,
        "preview_domain": s.preview_domain,
        "warm_pool": state.sandboxes.pool_status().await,
        "sleep": {
            "deep_sleep_after_s": s.deep_sleep_after.as_secs(),
        },
        "isolation": {
            "runtimes": runtimes,
            "default_runtime": s.runtime,
            "sandbox_uid_base": s.sandbox_uid_base,
            "egress": {
                "default": s.egress,
                "firewall": state.sandboxes.firewall(),
            },
        },
        "limits": {
            "default_memory_bytes": s.default_memory,
            "max_memory_bytes": s.max_memory,
            "default_cpus": s.default_cpus,
            "max_cpus": s.max_cpus,
            "pids": s.pids_limit,
            "idle_timeout_s": s.idle_timeout.as_secs(),
            "keepalive_max_s": s.keepalive_max.as_secs(),
            "exec_timeout_s": s.exec_timeout.as_secs(),
            "max_file_size_bytes": s.max_file_size,
        },
    }))
}
