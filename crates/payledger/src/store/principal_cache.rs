//! The users requests authenticate as, kept per process so that a request does not read its user's row.
//!
//! What keeps it exact enough for authentication:
//! - Every change that matters to it (a new password, role or active flag, a revocation of tokens) bumps the
//!   user's `auth_version` in the same transaction. The database does it, by a trigger (migration 0017), so
//!   no write path can forget it.
//! - The process that makes a change forgets the user's entry just before its commit (and no longer keeps a
//!   row older than the change from then on): on that instance the change applies to the very next request.
//!   Before the commit, so that a request dropped at the commit (a timeout) cannot skip it; a change that
//!   then rolls back only costs a re-read.
//! - On PostgreSQL the same trigger sends `NOTIFY payledger_principals, '<id>:<version>'`, delivered at commit;
//!   every instance listens ([`super::PgStore::watch_principals`]) and forgets the entry when it hears.
//! - An entry is served for at most [`DEFAULT_FRESH_FOR`] (or as configured) after it was read, whatever else
//!   happens: the bound for an instance that missed a notification (its listening connection was down, or a
//!   pooler that drops notifications sits between) and for a change made outside a server on SQLite (the
//!   CLI's `user` commands).
//! - A row read before a change committed must not be kept after the change was heard of: each user's highest
//!   version heard of is remembered for [`HEARD_FOR`], and an older row is not kept meanwhile. (Any row read
//!   after the change committed has its version; past that time a change that rolled back after it was
//!   heard of no longer stops the user's row from being cached.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::PrincipalRow;

/// How long a cached user is served without reading it again, unless configured otherwise
/// (`PAYLEDGER_USER_CACHE_MS`): the bound on how late a change made elsewhere applies on this instance when no
/// notification reached it.
pub const DEFAULT_FRESH_FOR: Duration = Duration::from_secs(1);
/// The most users kept; past it the cache starts again empty (an eviction order would cost every hit more than
/// an occasional re-read of every user).
const MAX_ENTRIES: usize = 10_000;

/// How long a version heard of keeps older rows out of the cache: far longer than a read of a user takes.
const HEARD_FOR: Duration = Duration::from_secs(60);
/// How many versions heard of are kept before those older than [`HEARD_FOR`] are dropped.
const MAX_HEARD: usize = 1024;

/// The PostgreSQL channel the `users` trigger notifies on.
pub const CHANNEL: &str = "payledger_principals";

#[derive(Default)]
struct Entries {
    by_id: HashMap<i64, (PrincipalRow, Instant)>,
    id_of: HashMap<String, i64>,
    /// Each user's highest `auth_version` this process heard of, and when: a row older than that is stale.
    heard: HashMap<i64, (i64, Instant)>,
}

/// The cache of one store.
pub struct PrincipalCache {
    entries: Mutex<Entries>,
    /// How long an entry is served, in microseconds (0: never).
    fresh_for_micros: AtomicU64,
}

impl Default for PrincipalCache {
    fn default() -> PrincipalCache {
        let cache = PrincipalCache { entries: Mutex::default(), fresh_for_micros: AtomicU64::new(0) };
        cache.set_fresh_for(DEFAULT_FRESH_FOR);
        cache
    }
}

impl std::fmt::Debug for PrincipalCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrincipalCache").finish_non_exhaustive()
    }
}

impl PrincipalCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long an entry is served from now on (zero: none is).
    pub fn set_fresh_for(&self, fresh_for: Duration) {
        let micros = u64::try_from(fresh_for.as_micros()).unwrap_or(u64::MAX);
        self.fresh_for_micros.store(micros, Ordering::Relaxed);
    }

    /// The user with this id, if read recently enough.
    pub fn get(&self, id: i64, now: Instant) -> Option<PrincipalRow> {
        self.fresh(&self.lock(), id, now)
    }

    /// The user with this name, if read recently enough.
    pub fn get_named(&self, username: &str, now: Instant) -> Option<PrincipalRow> {
        let entries = self.lock();
        let id = *entries.id_of.get(username)?;
        self.fresh(&entries, id, now).filter(|row| row.username == username)
    }

    fn fresh(&self, entries: &Entries, id: i64, now: Instant) -> Option<PrincipalRow> {
        let fresh_for = Duration::from_micros(self.fresh_for_micros.load(Ordering::Relaxed));
        let (row, read_at) = entries.by_id.get(&id)?;
        (now.saturating_duration_since(*read_at) < fresh_for).then(|| row.clone())
    }

    /// Keeps a row read at `read_at` (taken before the read started), unless a newer version of the user was
    /// heard of meanwhile.
    pub fn keep(&self, row: &PrincipalRow, read_at: Instant) {
        let mut entries = self.lock();
        let now = Instant::now();
        let stale = |(version, at): &(i64, Instant)| row.auth_version < *version && now.duration_since(*at) < HEARD_FOR;
        if entries.heard.get(&row.id).is_some_and(stale)
            || entries.by_id.get(&row.id).is_some_and(|(kept, _)| row.auth_version < kept.auth_version)
        {
            return;
        }
        if entries.by_id.len() >= MAX_ENTRIES {
            entries.by_id.clear();
            entries.id_of.clear();
        }
        entries.id_of.insert(row.username.clone(), row.id);
        entries.by_id.insert(row.id, (row.clone(), read_at));
    }

    /// A user's row changed to `version`: an older entry is forgotten, and an older row is no longer kept.
    pub fn changed(&self, id: i64, version: i64) {
        let mut entries = self.lock();
        let now = Instant::now();
        if entries.heard.len() >= MAX_HEARD {
            entries.heard.retain(|_, (_, at)| now.duration_since(*at) < HEARD_FOR);
        }
        let heard = entries.heard.entry(id).or_insert((version, now));
        *heard = (heard.0.max(version), now);
        if entries.by_id.get(&id).is_some_and(|(row, _)| row.auth_version < version) {
            entries.by_id.remove(&id);
        }
    }

    /// Forgets every entry: notifications may have been missed (the listening connection was lost).
    pub fn clear(&self) {
        let mut entries = self.lock();
        entries.by_id.clear();
        entries.id_of.clear();
    }

    /// Reads a `<id>:<version>` notification payload.
    pub fn parse_notice(payload: &str) -> Option<(i64, i64)> {
        let (id, version) = payload.split_once(':')?;
        Some((id.parse().ok()?, version.parse().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, version: i64, role: &str) -> PrincipalRow {
        PrincipalRow {
            id,
            username: format!("user{id}"),
            password_hash: String::new(),
            role: role.to_owned(),
            active: true,
            password_generated: false,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            tokens_valid_after: None,
            auth_version: version,
        }
    }

    #[test]
    fn an_entry_is_served_for_the_bound_then_read_again() {
        let cache = PrincipalCache::default();
        let start = Instant::now();
        cache.keep(&row(1, 0, "admin"), start);
        assert_eq!(cache.get(1, start + Duration::from_millis(999)).map(|r| r.role), Some("admin".into()));
        assert_eq!(cache.get_named("user1", start).map(|r| r.id), Some(1));
        assert_eq!(cache.get(1, start + DEFAULT_FRESH_FOR), None);
        assert_eq!(cache.get_named("user2", start), None);
        cache.set_fresh_for(Duration::ZERO);
        assert_eq!(cache.get(1, start), None, "a zero freshness serves nothing");
    }

    #[test]
    fn a_change_forgets_older_entries_and_refuses_rows_read_before_it() {
        let cache = PrincipalCache::default();
        let start = Instant::now();
        cache.keep(&row(1, 3, "admin"), start);
        cache.changed(1, 4);
        assert_eq!(cache.get(1, start), None, "the entry older than the change is gone");
        // A request that read the row before the change committed keeps it only after: refused.
        cache.keep(&row(1, 3, "admin"), start);
        assert_eq!(cache.get(1, start), None);
        // The changed row is kept, and a late notice of an older version does not drop it.
        cache.keep(&row(1, 4, "viewer"), start);
        cache.changed(1, 2);
        assert_eq!(cache.get(1, start).map(|r| r.role), Some("viewer".into()));
        cache.clear();
        assert_eq!(cache.get(1, start), None);
    }

    #[test]
    fn notices_parse_as_id_and_version() {
        assert_eq!(PrincipalCache::parse_notice("12:7"), Some((12, 7)));
        assert_eq!(PrincipalCache::parse_notice("12"), None);
        assert_eq!(PrincipalCache::parse_notice("a:1"), None);
    }
}
