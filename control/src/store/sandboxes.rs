//! Sandbox rows: what the user asked for (`desired_state`) next to what was
//! last observed (`status`).

use std::collections::BTreeMap;

use sqlx::types::Json;

use super::{Store, StoreError, now_ms};

pub use berth_api::{DesiredState, Egress, IdlePolicy, Status};

#[derive(Clone, sqlx::FromRow)]
pub struct SandboxRecord {
    pub id: String,
    pub image: String,
    pub ports: Json<Vec<u16>>,
    pub env: Json<BTreeMap<String, String>>,
    pub metadata: Json<BTreeMap<String, String>>,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub start_cmd: Option<String>,
    pub idle_timeout_s: i64,
    pub idle_policy: IdlePolicy,
    pub desired_state: DesiredState,
    pub status: Status,
    pub status_detail: Option<String>,
    pub container_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_active_at: i64,
    pub keepalive_until: Option<i64>,
    /// Preview requests need no token.
    pub public: bool,
    /// Preview tokens name it; it changes when tokens are revoked.
    pub preview_generation: String,
    pub egress: Egress,
    /// The OCI runtime; `None` is Docker's default.
    pub runtime: Option<String>,
    /// The host uid (and gid) the sandbox's processes run as.
    pub uid: Option<i64>,
    /// A ready sandbox of the warm pool that no client has claimed: hidden
    /// from clients.
    pub pooled: bool,
}

/// Every field but the environment's values (provider keys), which only
/// appear as their names.
impl std::fmt::Debug for SandboxRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxRecord")
            .field("id", &self.id)
            .field("image", &self.image)
            .field("ports", &self.ports.0)
            .field("env", &self.env.0.keys().collect::<Vec<_>>())
            .field("desired_state", &self.desired_state)
            .field("status", &self.status)
            .field("container_id", &self.container_id)
            .field("public", &self.public)
            .field("egress", &self.egress)
            .field("runtime", &self.runtime)
            .field("uid", &self.uid)
            .field("pooled", &self.pooled)
            .finish_non_exhaustive()
    }
}

/// A validated create request, ready to insert.
#[derive(Clone)]
pub struct NewSandbox {
    pub id: String,
    pub image: String,
    pub ports: Vec<u16>,
    pub env: BTreeMap<String, String>,
    pub metadata: BTreeMap<String, String>,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub start_cmd: Option<String>,
    pub idle_timeout_s: i64,
    pub idle_policy: IdlePolicy,
    pub public: bool,
    pub egress: Egress,
    pub runtime: Option<String>,
    /// Made for the warm pool, not for a client.
    pub pooled: bool,
}

impl std::fmt::Debug for NewSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSandbox")
            .field("id", &self.id)
            .field("image", &self.image)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A query of sandbox rows, each with the uid its id owns.
macro_rules! select_sandboxes {
    ($rest:literal) => {
        concat!(
            "SELECT s.*, u.uid FROM sandboxes s LEFT JOIN sandbox_uids u ON u.sandbox_id = s.id ",
            $rest
        )
    };
}

/// A fresh preview generation: 128 random bits, hex.
fn generation() -> Result<String, StoreError> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw)
        .map_err(|e| StoreError::Sqlx(sqlx::Error::Io(std::io::Error::other(e.to_string()))))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

type SqliteQuery<'q> =
    sqlx::query::Query<'q, sqlx::Sqlite, <sqlx::Sqlite as sqlx::Database>::Arguments>;

/// Binds what a client asked for, in the order both the insert and the
/// warm pool's claim name them: image, ports, env, metadata, memory_bytes,
/// nano_cpus, start_cmd, idle_timeout_s, idle_policy, public, egress, runtime.
fn bind_settings<'q>(query: SqliteQuery<'q>, new: &'q NewSandbox) -> SqliteQuery<'q> {
    query
        .bind(&new.image)
        .bind(Json(&new.ports))
        .bind(Json(&new.env))
        .bind(Json(&new.metadata))
        .bind(new.memory_bytes)
        .bind(new.nano_cpus)
        .bind(&new.start_cmd)
        .bind(new.idle_timeout_s)
        .bind(new.idle_policy)
        .bind(new.public)
        .bind(new.egress)
        .bind(&new.runtime)
}

impl Store {
    /// Inserts a sandbox in `creating` state, desired `running`.
    pub async fn insert_sandbox(&self, new: &NewSandbox) -> Result<SandboxRecord, StoreError> {
        let now = now_ms();
        let query = sqlx::query(
            "INSERT INTO sandboxes (id, image, ports, env, metadata, memory_bytes, nano_cpus, start_cmd,
                idle_timeout_s, idle_policy, public, egress, runtime, preview_generation, pooled,
                desired_state, status, created_at, updated_at, last_active_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', 'creating', ?, ?, ?)",
        );
        let result = bind_settings(query.bind(&new.id), new)
            .bind(generation()?)
            .bind(new.pooled)
            .bind(now)
            .bind(now)
            .bind(now)
            .execute(&self.pool)
            .await;
        match result {
            Ok(_) => self.sandbox(&new.id).await,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::Exists(new.id.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Hands the oldest ready pooled sandbox to a client: one statement, so
    /// two claims can never take the same one. Its row becomes the client's
    /// sandbox (`new` but for the id, which stays the pooled one's); `None`
    /// when the pool is empty.
    pub async fn claim_pooled(&self, new: &NewSandbox) -> Result<Option<String>, StoreError> {
        let now = now_ms();
        let query = sqlx::query(
            "UPDATE sandboxes SET pooled = 0, image = ?, ports = ?, env = ?, metadata = ?,
                memory_bytes = ?, nano_cpus = ?, start_cmd = ?, idle_timeout_s = ?, idle_policy = ?,
                public = ?, egress = ?, runtime = ?, created_at = ?, updated_at = ?, last_active_at = ?
             WHERE id = (SELECT id FROM sandboxes WHERE pooled = 1 AND desired_state = 'asleep'
                 AND status = 'asleep' ORDER BY created_at LIMIT 1)
             RETURNING id",
        );
        let claimed = bind_settings(query, new)
            .bind(now)
            .bind(now)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        Ok(claimed
            .map(|row| sqlx::Row::try_get::<String, _>(&row, "id"))
            .transpose()?)
    }

    pub async fn find_sandbox(&self, id: &str) -> Result<Option<SandboxRecord>, StoreError> {
        Ok(sqlx::query_as(select_sandboxes!("WHERE s.id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn sandbox(&self, id: &str) -> Result<SandboxRecord, StoreError> {
        self.find_sandbox(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    /// Every sandbox, oldest first.
    pub async fn sandboxes(&self) -> Result<Vec<SandboxRecord>, StoreError> {
        Ok(
            sqlx::query_as(select_sandboxes!("ORDER BY s.created_at, s.id"))
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Records what the user wants; the caller then makes Docker follow.
    pub async fn set_desired(
        &self,
        id: &str,
        desired: DesiredState,
        status: Status,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE sandboxes SET desired_state = ?, status = ?, status_detail = NULL, updated_at = ?
             WHERE id = ?",
        )
        .bind(desired)
        .bind(status)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        found(done.rows_affected(), id)
    }

    /// Records what was observed or done.
    pub async fn set_status(
        &self,
        id: &str,
        status: Status,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE sandboxes SET status = ?, status_detail = ?, updated_at = ? WHERE id = ?",
        )
        .bind(status)
        .bind(detail)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        found(done.rows_affected(), id)
    }

    pub async fn set_container_id(
        &self,
        id: &str,
        container: Option<&str>,
    ) -> Result<(), StoreError> {
        let done =
            sqlx::query("UPDATE sandboxes SET container_id = ?, updated_at = ? WHERE id = ?")
                .bind(container)
                .bind(now_ms())
                .bind(id)
                .execute(&self.pool)
                .await?;
        found(done.rows_affected(), id)
    }

    pub async fn set_keepalive(&self, id: &str, until_ms: i64) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE sandboxes SET keepalive_until = ?, last_active_at = MAX(last_active_at, ?),
                updated_at = ? WHERE id = ?",
        )
        .bind(until_ms)
        .bind(now_ms())
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        found(done.rows_affected(), id)
    }

    /// Moves `last_active_at` forward (never back) for a batch of sandboxes.
    pub async fn record_activity(&self, batch: &[(String, i64)]) -> Result<(), StoreError> {
        // IMMEDIATE: the write lock is taken up front, so a transaction that
        // reads before it writes never fails with "database is locked" when
        // another one commits meanwhile (the busy timeout then applies).
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for (id, at) in batch {
            sqlx::query(
                "UPDATE sandboxes SET last_active_at = MAX(last_active_at, ?) WHERE id = ?",
            )
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A new preview generation for `id`: every token minted before is void.
    pub async fn rotate_preview_generation(&self, id: &str) -> Result<String, StoreError> {
        let fresh = generation()?;
        let done =
            sqlx::query("UPDATE sandboxes SET preview_generation = ?, updated_at = ? WHERE id = ?")
                .bind(&fresh)
                .bind(now_ms())
                .bind(id)
                .execute(&self.pool)
                .await?;
        found(done.rows_affected(), id)?;
        Ok(fresh)
    }

    /// The host uid sandbox `id` runs as: the one it owned before (its
    /// workspace is owned by it), else the lowest free one from `base`
    /// (skipping `taken`, uids of host accounts), recorded for good.
    pub async fn sandbox_uid(
        &self,
        id: &str,
        base: i64,
        taken: &std::collections::BTreeSet<i64>,
    ) -> Result<i64, StoreError> {
        // IMMEDIATE: the write lock is taken up front, so a transaction that
        // reads before it writes never fails with "database is locked" when
        // another one commits meanwhile (the busy timeout then applies).
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if let Some((uid,)) =
            sqlx::query_as::<_, (i64,)>("SELECT uid FROM sandbox_uids WHERE sandbox_id = ?")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
        {
            return Ok(uid);
        }
        let used: std::collections::BTreeSet<i64> =
            sqlx::query_as::<_, (i64,)>("SELECT uid FROM sandbox_uids WHERE uid >= ?")
                .bind(base)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|(u,)| u)
                .collect();
        let mut uid = base;
        while used.contains(&uid) || taken.contains(&uid) {
            uid += 1;
        }
        sqlx::query("INSERT INTO sandbox_uids (sandbox_id, uid) VALUES (?, ?)")
            .bind(id)
            .bind(uid)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(uid)
    }

    /// Forgets the uid of a purged sandbox (its workspace is gone).
    pub async fn free_sandbox_uid(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sandbox_uids WHERE sandbox_id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_sandbox(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sandboxes WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn found(rows: u64, id: &str) -> Result<(), StoreError> {
    if rows == 0 {
        Err(StoreError::NotFound(id.to_string()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(id: &str) -> NewSandbox {
        NewSandbox {
            id: id.into(),
            image: "img".into(),
            ports: vec![3000, 5173],
            env: BTreeMap::from([("A".into(), "1".into())]),
            metadata: BTreeMap::new(),
            memory_bytes: 1 << 30,
            nano_cpus: 1_000_000_000,
            start_cmd: Some("npm run dev".into()),
            idle_timeout_s: 60,
            idle_policy: IdlePolicy::Sleep,
            public: true,
            egress: Egress::Open,
            runtime: None,
            pooled: false,
        }
    }

    async fn store() -> (Store, tempdir::TempDir) {
        let dir = tempdir::TempDir::new();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        (store, dir)
    }

    /// A tiny self-cleaning temporary directory, to avoid a dependency.
    mod tempdir {
        pub struct TempDir(std::path::PathBuf);
        impl TempDir {
            pub fn new() -> Self {
                let p =
                    std::env::temp_dir().join(format!("berth-store-{}", ulid::Ulid::generate()));
                std::fs::create_dir_all(&p).unwrap();
                Self(p)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for TempDir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[tokio::test]
    async fn insert_then_read_back() {
        let (s, _d) = store().await;
        let r = s.insert_sandbox(&new("a")).await.unwrap();
        assert_eq!(r.status, Status::Creating);
        assert_eq!(r.desired_state, DesiredState::Running);
        assert_eq!(r.ports.0, vec![3000, 5173]);
        assert_eq!(r.env.0.get("A").map(String::as_str), Some("1"));
        assert!(matches!(
            s.insert_sandbox(&new("a")).await,
            Err(StoreError::Exists(_))
        ));
    }

    #[tokio::test]
    async fn activity_only_moves_forward() {
        let (s, _d) = store().await;
        let r = s.insert_sandbox(&new("a")).await.unwrap();
        s.record_activity(&[("a".into(), r.last_active_at + 1000)])
            .await
            .unwrap();
        s.record_activity(&[("a".into(), 5)]).await.unwrap();
        assert_eq!(
            s.sandbox("a").await.unwrap().last_active_at,
            r.last_active_at + 1000
        );
    }

    #[tokio::test]
    async fn uids_are_kept_per_id_and_skip_host_accounts() {
        let (s, _d) = store().await;
        let taken = std::collections::BTreeSet::from([1001]);
        assert_eq!(s.sandbox_uid("a", 1000, &taken).await.unwrap(), 1000);
        assert_eq!(s.sandbox_uid("b", 1000, &taken).await.unwrap(), 1002);
        assert_eq!(s.sandbox_uid("a", 1000, &taken).await.unwrap(), 1000);
        s.free_sandbox_uid("a").await.unwrap();
        assert_eq!(s.sandbox_uid("c", 1000, &taken).await.unwrap(), 1000);
        assert_eq!(s.sandbox_uid("d", 1000, &taken).await.unwrap(), 1003);
    }

    #[tokio::test]
    async fn a_record_never_prints_its_environment() {
        let (s, _d) = store().await;
        let mut n = new("a");
        n.env
            .insert("ANTHROPIC_API_KEY".into(), "sk-ant-secret".into());
        let r = s.insert_sandbox(&n).await.unwrap();
        let shown = format!("{r:?} {n:?}");
        assert!(shown.contains("ANTHROPIC_API_KEY"));
        assert!(!shown.contains("sk-ant-secret"), "{shown}");
    }

    #[tokio::test]
    async fn preview_generations_differ_and_rotate() {
        let (s, _d) = store().await;
        let a = s.insert_sandbox(&new("a")).await.unwrap();
        let b = s.insert_sandbox(&new("b")).await.unwrap();
        assert_eq!(a.preview_generation.len(), 32);
        assert_ne!(a.preview_generation, b.preview_generation);
        let rotated = s.rotate_preview_generation("a").await.unwrap();
        assert_ne!(rotated, a.preview_generation);
        assert_eq!(s.sandbox("a").await.unwrap().preview_generation, rotated);
    }

    #[tokio::test]
    async fn instance_id_is_stable() {
        let (s, _d) = store().await;
        assert_eq!(
            s.instance_id().await.unwrap(),
            s.instance_id().await.unwrap()
        );
    }

    #[tokio::test]
    async fn updates_on_missing_rows_say_not_found() {
        let (s, _d) = store().await;
        assert!(matches!(
            s.set_status("nope", Status::Running, None).await,
            Err(StoreError::NotFound(_))
        ));
    }
}
