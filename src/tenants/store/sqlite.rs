//! `tenants.store = "sqlite"`: admin-API tenant records in an SQLite file, for
//! a single node.
//!
//! The schema version is SQLite's `user_version`; [`MIGRATIONS`] brings any
//! older file up to date inside one transaction at start. A file written by a
//! newer build, a file that is not a database, a record that no longer
//! validates, or a file that cannot be written is a startup error: an empty
//! registry in place of the operator's changes would silently re-enable
//! disabled tenants and lift limits.
//!
//! The file is created on the first change, so a node that never takes an
//! admin-API change leaves nothing behind; at start its directory must exist.
//! Statements run on a blocking thread (`spawn_blocking`), one at a time.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OpenFlags};

use super::StoreError;
use crate::tenants::TenantSpec;

/// Schema migrations; `MIGRATIONS[n]` takes a file from version `n` to `n + 1`.
const MIGRATIONS: [&str; 2] = [
    // 1: limits and the enabled flag.
    "CREATE TABLE tenants (
        id TEXT PRIMARY KEY NOT NULL,
        enabled INTEGER NOT NULL,
        max_connections INTEGER,
        rate_limit_per_s INTEGER,
        max_channels INTEGER
    );",
    // 2: per-tenant identity providers and the change time.
    "ALTER TABLE tenants ADD COLUMN issuer TEXT;
     ALTER TABLE tenants ADD COLUMN jwks_uri TEXT;
     ALTER TABLE tenants ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The SQLite store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    path: PathBuf,
    /// Opened at start when the file exists, else on the first change.
    conn: Arc<Mutex<Option<Connection>>>,
}

impl SqliteStore {
    /// Opens (and migrates) `path` when it exists and returns its records;
    /// checks that its directory exists otherwise.
    pub fn open(path: &Path) -> Result<(Self, Vec<TenantSpec>), StoreError> {
        let store = Self {
            path: path.to_owned(),
            conn: Arc::new(Mutex::new(None)),
        };
        if !path.exists() {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !dir.is_dir() {
                return Err(store.error(format!("directory {} does not exist", dir.display())));
            }
            return Ok((store, Vec::new()));
        }
        let conn = store.connect()?;
        let records = load(&conn).map_err(|e| store.error(e))?;
        *store.lock() = Some(conn);
        Ok((store, records))
    }

    /// Inserts or replaces the API record `spec`.
    pub async fn put(&self, spec: TenantSpec) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO tenants (id, enabled, max_connections, rate_limit_per_s,
                     max_channels, issuer, jwks_uri, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, strftime('%s', 'now'))
                 ON CONFLICT(id) DO UPDATE SET enabled = ?2, max_connections = ?3,
                     rate_limit_per_s = ?4, max_channels = ?5, issuer = ?6, jwks_uri = ?7,
                     updated_at = strftime('%s', 'now')",
                params![
                    spec.id,
                    spec.enabled,
                    spec.max_connections.map(to_sql_int),
                    spec.rate_limit_per_s,
                    spec.max_channels.map(to_sql_int),
                    spec.issuer,
                    spec.jwks_uri
                ],
            )
            .map(drop)
        })
        .await
    }

    /// Removes the API record `id` (nothing when there is none).
    pub async fn delete(&self, id: String) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.execute("DELETE FROM tenants WHERE id = ?1", [id])
                .map(drop)
        })
        .await
    }

    async fn run(
        &self,
        op: impl FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static,
    ) -> Result<(), StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = store.lock();
            if conn.is_none() {
                *conn = Some(store.connect()?);
            }
            let c = conn.as_ref().expect("opened above");
            op(c).map_err(|e| store.error(e.to_string()))
        })
        .await
        .map_err(|_| self.error("the database thread failed".into()))?
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Connection>> {
        // A panic while holding the lock leaves a usable connection: SQLite
        // rolled back whatever statement was running.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens the file read-write (creating it), refuses a read-only one and
    /// brings its schema to [`SCHEMA_VERSION`].
    fn connect(&self) -> Result<Connection, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&self.path, flags)
            .map_err(|e| self.error(e.to_string()))?;
        if conn
            .is_readonly(rusqlite::MAIN_DB)
            .map_err(|e| self.error(e.to_string()))?
        {
            return Err(self.error("the file is not writable".into()));
        }
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| self.error(e.to_string()))?;
        migrate(&mut conn).map_err(|e| self.error(e))?;
        Ok(conn)
    }

    fn error(&self, problem: String) -> StoreError {
        StoreError {
            store: format!("sqlite file {}", self.path.display()),
            problem,
        }
    }
}

/// Brings the schema up to date; a version from the future is an error.
fn migrate(conn: &mut Connection) -> Result<(), String> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| e.to_string())?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if version > SCHEMA_VERSION {
        return Err(format!(
            "schema version {version} was written by a newer wsplus (this one knows up to {SCHEMA_VERSION})"
        ));
    }
    let from = usize::try_from(version).map_err(|_| format!("bad schema version {version}"))?;
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(from) {
        tx.execute_batch(sql)
            .map_err(|e| format!("migration to schema version {}: {e}", n + 1))?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(|e| e.to_string())?;
    tx.commit().map_err(|e| e.to_string())
}

/// Every record; one that does not validate is an error naming it.
fn load(conn: &Connection) -> Result<Vec<TenantSpec>, String> {
    let mut stmt = conn
        .prepare(
            "SELECT id, enabled, max_connections, rate_limit_per_s, max_channels, issuer, jwks_uri
             FROM tenants ORDER BY id",
        )
        .map_err(|e| e.to_string())?;
    let rows = stmt
        .query_map([], |r| {
            Ok(TenantSpec {
                id: r.get(0)?,
                enabled: r.get(1)?,
                max_connections: from_sql_int(r, 2)?,
                rate_limit_per_s: r.get(3)?,
                max_channels: from_sql_int(r, 4)?,
                issuer: r.get(5)?,
                jwks_uri: r.get(6)?,
            })
        })
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for row in rows {
        let spec = row.map_err(|e| format!("unreadable record: {e}"))?;
        if let Some(p) = spec.problems().first() {
            return Err(format!("record {:?} is invalid: {p}", spec.id));
        }
        out.push(spec);
    }
    Ok(out)
}

/// SQLite integers are signed; validated limits are far below `i64::MAX`.
fn to_sql_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A non-negative limit column (a negative one is an unreadable record).
fn from_sql_int(r: &rusqlite::Row<'_>, col: usize) -> rusqlite::Result<Option<u64>> {
    r.get::<_, Option<i64>>(col)?
        .map(|n| {
            u64::try_from(n).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    col,
                    rusqlite::types::Type::Integer,
                    e.into(),
                )
            })
        })
        .transpose()
}

/// True when `id` has a row (tests).
#[cfg(test)]
fn exists(conn: &Connection, id: &str) -> bool {
    use rusqlite::OptionalExtension;
    conn.query_row("SELECT 1 FROM tenants WHERE id = ?1", [id], |_| Ok(()))
        .optional()
        .unwrap()
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "wsplus-sqlite-{name}-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn spec(id: &str) -> TenantSpec {
        let mut s = TenantSpec::new(id);
        s.max_connections = Some(5);
        s.rate_limit_per_s = Some(0);
        s.issuer = Some("https://idp.example/".into());
        s.jwks_uri = Some("https://idp.example/jwks".into());
        s
    }

    #[actix_rt::test]
    async fn changes_survive_a_reopen_and_the_file_appears_on_the_first_change() {
        let path = dir("reopen").join("t.db");
        let (store, loaded) = SqliteStore::open(&path).unwrap();
        assert!(loaded.is_empty());
        assert!(!path.exists(), "nothing written before a change");
        store.put(spec("acme")).await.unwrap();
        let mut off = TenantSpec::new("globex");
        off.enabled = false;
        store.put(off.clone()).await.unwrap();
        store.put(TenantSpec::new("gone")).await.unwrap();
        store.delete("gone".into()).await.unwrap();
        // Replacing clears what the new record omits.
        store.put(TenantSpec::new("acme")).await.unwrap();
        drop(store);
        let (_, loaded) = SqliteStore::open(&path).unwrap();
        assert_eq!(loaded, [TenantSpec::new("acme"), off]);
    }

    #[test]
    fn a_version_1_file_is_migrated() {
        let path = dir("migrate").join("t.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.execute(
                "INSERT INTO tenants (id, enabled, max_connections) VALUES ('old', 0, 3)",
                [],
            )
            .unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
        }
        let (store, loaded) = SqliteStore::open(&path).unwrap();
        let mut want = TenantSpec::new("old");
        want.enabled = false;
        want.max_connections = Some(3);
        assert_eq!(loaded, [want]);
        let conn = store.lock();
        let c = conn.as_ref().unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        assert!(exists(c, "old"));
    }

    #[test]
    fn corrupt_future_invalid_and_unplaceable_files_are_errors() {
        let d = dir("bad");
        let garbage = d.join("garbage.db");
        std::fs::write(&garbage, vec![b'x'; 4096]).unwrap();
        let err = SqliteStore::open(&garbage).unwrap_err().to_string();
        assert!(
            err.contains("garbage.db") && err.contains("not a database"),
            "{err}"
        );

        let future = d.join("future.db");
        Connection::open(&future)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = SqliteStore::open(&future).unwrap_err().to_string();
        assert!(err.contains("newer wsplus"), "{err}");

        let invalid = d.join("invalid.db");
        {
            let mut c = Connection::open(&invalid).unwrap();
            migrate(&mut c).unwrap();
            c.execute("INSERT INTO tenants (id, enabled) VALUES ('', 1)", [])
                .unwrap();
        }
        let err = SqliteStore::open(&invalid).unwrap_err().to_string();
        assert!(err.contains("record \"\" is invalid: id:"), "{err}");

        let nowhere = d.join("missing-dir").join("t.db");
        let err = SqliteStore::open(&nowhere).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");

        // A directory where the file should be: opens nothing.
        let err = SqliteStore::open(&d).unwrap_err().to_string();
        assert!(err.contains("sqlite file"), "{err}");
    }
}
