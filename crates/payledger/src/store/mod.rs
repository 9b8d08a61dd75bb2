//! Storage: one enum over the two backends, chosen once at start-up from the database URL.
//!
//! Each backend owns its migrations and SQL. The write side is only reached through the ledger engine's
//! [`BatchTx`]; everything else here is a read, a seed or a check.

pub mod batch;
pub mod payouts;
mod postgres;
mod sqlite;
mod sqlite_writer;

use std::path::Path;

use payledger_core::{AccountId, BankNotice, Inn, OperationId};
use serde::Serialize;
use time::OffsetDateTime;

use batch::HoldState;
pub use batch::{AuditEntry, BatchTx};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use sqlite_writer::SqliteWriter;

/// The most rejected notices and conflicts kept for operators; older ones are pruned on insert.
pub const MAX_KEPT_NOTICES: i64 = 10_000;

/// How much of a rejected or conflicting notice's body is kept for operators, in bytes.
pub const MAX_KEPT_BODY_BYTES: usize = 4 * 1024;

/// Keeps at most [`MAX_KEPT_BODY_BYTES`] of a body, as text.
///
/// Invalid UTF-8 (including a character split by the cut) becomes U+FFFD, and so does a NUL byte, which
/// PostgreSQL text cannot hold: a kept body must never make its batch fail.
pub fn kept_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_KEPT_BODY_BYTES)]).replace('\0', "\u{FFFD}");
    if body.len() > MAX_KEPT_BODY_BYTES { format!("{text}…") } else { text }
}

/// The key of the system account that mirrors money received from the bank.
/// An organization's name as searches compare it: lower case by Unicode's rules (SQLite's `LOWER` folds only
/// ASCII, so the folding happens here, the same for both backends).
pub fn fold_name(name: &str) -> String {
    name.to_lowercase()
}

pub const BANK_INFLOW_ACCOUNT: &str = "bank_inflow";
/// The key of the system account that mirrors money users deposited.
pub const USER_DEPOSITS_ACCOUNT: &str = "user_deposits";
/// The key of the system account that mirrors money users withdrew.
pub const USER_WITHDRAWALS_ACCOUNT: &str = "user_withdrawals";

/// The key of the system account that completed payouts are captured into.
pub const PAYOUT_CLEARING_ACCOUNT: &str = "payout_clearing";

/// The owners of accounts the engine looks up by key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    /// An organization, keyed by INN.
    Organization,
    /// A user of the balance service, keyed by user id.
    User,
    /// A service's revenue account, keyed by service id.
    Service,
}

impl AccountKind {
    /// The stored kind.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Organization => "organization",
            AccountKind::User => "user",
            AccountKind::Service => "service",
        }
    }
}

/// A storage failure. None of these is the client's fault; they surface as 503.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or lost the operation.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The embedded database's write connection refused or lost the operation.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Migrations failed.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value does not parse back into its domain type: the data is corrupt.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The database URL is not one we support.
    #[error("unsupported database URL (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
}

impl StoreError {
    /// Whether the database could not be reached at all (an outage rather than a bad statement).
    pub fn is_connection_failure(&self) -> bool {
        matches!(
            self,
            StoreError::Database(
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed
            )
        )
    }

    /// Whether a unique constraint refused a row another transaction committed first.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(error)) => error.is_unique_violation(),
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(error, _)) => {
                error.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || error.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            }
            _ => false,
        }
    }
}

/// One row of an organization's balance log.
#[derive(Debug, Clone, Serialize)]
pub struct BalanceLogRow {
    /// The entry's id; also the pagination cursor.
    pub entry_id: i64,
    /// The signed change in minor units.
    pub amount: i64,
    /// The balance before, in minor units.
    pub balance_before: i64,
    /// The balance after, in minor units.
    pub balance_after: i64,
    /// The bank operation that caused it, if any.
    pub operation_id: Option<uuid::Uuid>,
    /// The payment document's number, if any.
    pub document_number: Option<String>,
    /// The payment document's date, if any.
    pub document_date: Option<OffsetDateTime>,
    /// When the entry was written.
    pub created_at: OffsetDateTime,
}

/// A user's money: the posted balance and the part of it held by reservations, in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserBalance {
    /// The posted balance.
    pub balance: i64,
    /// The held part.
    pub held: i64,
}

/// How a user's history is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistorySort {
    /// In the order lines were applied (their ids).
    Date,
    /// By the signed change of the available balance, then by id.
    Amount,
}

/// Where a page of a user's history starts: after this line, in the page's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCursor {
    /// The last line's amount (used when sorting by amount).
    pub amount: i64,
    /// The last line's id.
    pub id: i64,
}

/// One page request of a user's history.
#[derive(Debug, Clone, Copy)]
pub struct HistoryPage {
    /// The order.
    pub sort: HistorySort,
    /// Descending when set.
    pub descending: bool,
    /// Start after this line.
    pub after: Option<HistoryCursor>,
    /// At most this many lines.
    pub limit: i64,
}

/// One stored line of a user's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRow {
    /// The line's id.
    pub id: i64,
    /// What happened, as stored.
    pub kind: String,
    /// The change of the available balance.
    pub amount: i64,
    /// The change of the reserved money.
    pub held_change: i64,
    /// The other user of a transfer.
    pub counterparty: Option<i64>,
    /// The service of an order.
    pub service_id: Option<i64>,
    /// The order.
    pub order_id: Option<i64>,
    /// The ledger transaction.
    pub transaction_id: Option<uuid::Uuid>,
    /// The payout whose hold, payment or return this is.
    pub payout_id: Option<uuid::Uuid>,
    /// When it was applied.
    pub created_at: OffsetDateTime,
}

/// A user of the API and the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalRow {
    /// The user's id.
    pub id: i64,
    /// The login name.
    pub username: String,
    /// The argon2id hash (PHC string).
    pub password_hash: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    /// Whether the user may log in.
    pub active: bool,
    /// Whether the password was generated by payledger (development bootstrap).
    pub password_generated: bool,
    /// When the user was created.
    pub created_at: OffsetDateTime,
    /// Access tokens issued before this are refused (set on a new password, on disabling, on a refresh-token
    /// reuse).
    pub tokens_valid_after: Option<OffsetDateTime>,
}

/// A stored refresh token (by its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRow {
    /// Its id.
    pub id: i64,
    /// Whose.
    pub user_id: i64,
    /// The login it descends from.
    pub family: String,
    /// When it stops working.
    pub expires_at: OffsetDateTime,
    /// Whether it was already exchanged.
    pub used: bool,
    /// Whether its family was revoked.
    pub revoked: bool,
}

/// A change to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrincipalChange<'a> {
    /// A new password hash, and whether it was generated.
    pub password_hash: Option<(&'a str, bool)>,
    /// A new role.
    pub role: Option<&'a str>,
    /// A new active flag.
    pub active: Option<bool>,
}

/// What became of a change to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalUpdate {
    /// Changed.
    Updated,
    /// No such user.
    NotFound,
    /// Refused: it would leave no active admin.
    LastAdmin,
}

/// A stored audit row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// Its id: later rows have larger ids.
    pub id: i64,
    /// What was done, by whom, on what.
    pub entry: AuditEntry,
    /// When.
    pub at: OffsetDateTime,
}

/// Which audit rows to read: every given filter must match; newest first, before `before_id` if given.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this target.
    pub target: Option<String>,
    /// Only rows older than this id (the previous page's last id).
    pub before_id: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

/// The sqlx database type of a store, for statements shared by both backends.
pub trait Backend {
    /// The sqlx database.
    type Db: sqlx::Database;
}

impl Backend for SqliteStore {
    type Db = sqlx::Sqlite;
}

impl Backend for PgStore {
    type Db = sqlx::Postgres;
}

/// What `verify` found.
#[derive(Debug, Default, Clone, Serialize)]
pub struct VerifyReport {
    /// Accounts checked.
    pub accounts: i64,
    /// Ledger transactions checked.
    pub transactions: i64,
    /// Entries checked.
    pub entries: i64,
    /// Applied bank payments checked.
    pub bank_payments: i64,
    /// Every broken invariant, described.
    pub problems: Vec<String>,
}

/// Runs the same expression on whichever backend the store is: each backend implements the method itself.
macro_rules! on_backend {
    ($self:expr, $store:ident => $body:expr) => {
        match $self {
            Store::Sqlite($store) => $body,
            Store::Postgres($store) => $body,
        }
    };
}

pub mod console;

/// The database, whichever backend it is.
#[derive(Clone, Debug)]
pub enum Store {
    /// The embedded default.
    Sqlite(SqliteStore),
    /// The production store.
    Postgres(PgStore),
}

impl Store {
    /// Connects by URL scheme: `sqlite://path` (the file and its folder are created) or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            Ok(Store::Sqlite(SqliteStore::open(Path::new(path)).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(PgStore::connect(url).await?))
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    /// The backend's name, for logs and metrics.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Applies the backend's pending migrations; safe to run from several instances at once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        on_backend!(self, store => store.migrate().await)
    }

    /// Creates the organizations (and their accounts) that do not exist yet, returning every account id.
    /// Used by seeding; the ledger engine creates organizations inside its batch transaction.
    pub async fn ensure_organizations(&self, orgs: &[(Inn, String)]) -> Result<Vec<(Inn, AccountId)>, StoreError> {
        if orgs.is_empty() {
            return Ok(Vec::new());
        }
        on_backend!(self, store => store.ensure_organizations(orgs).await)
    }

    /// Creates a system account (one that may go negative) if needed and returns its id.
    pub async fn system_account(&self, key: &str) -> Result<AccountId, StoreError> {
        on_backend!(self, store => store.system_account(key).await)
    }

    /// How many organizations exist.
    pub async fn organization_count(&self) -> Result<i64, StoreError> {
        on_backend!(self, store => store.organization_count().await)
    }

    /// An organization's balance in minor units, or `None` if the organization is unknown.
    pub async fn organization_balance(&self, inn: &Inn) -> Result<Option<i64>, StoreError> {
        on_backend!(self, store => store.organization_balance(inn).await)
    }

    /// Up to `limit` balance-log rows of an organization, newest first, older than entry `before`.
    /// `None` if the organization is unknown.
    pub async fn balance_log(
        &self,
        inn: &Inn,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Option<Vec<BalanceLogRow>>, StoreError> {
        on_backend!(self, store => store.balance_log(inn, before.unwrap_or(i64::MAX), limit).await)
    }

    /// Up to `limit` recorded notices that wait to be applied, oldest first.
    pub async fn waiting_notices(&self, limit: i64) -> Result<Vec<BankNotice>, StoreError> {
        on_backend!(self, store => store.waiting_notices(limit).await)
    }

    /// A user's balance, or `None` if the user has no account.
    pub async fn user_balance(&self, user: i64) -> Result<Option<UserBalance>, StoreError> {
        on_backend!(self, store => store.user_balance(user).await)
    }

    /// One page of a user's history, or `None` if the user has no account.
    pub async fn user_history(&self, user: i64, page: HistoryPage) -> Result<Option<Vec<ActivityRow>>, StoreError> {
        on_backend!(self, store => store.user_history(user, page).await)
    }

    /// The revenue recognized per service (ascending service id) in `[start, end)`, in minor units.
    pub async fn revenue_by_service(
        &self,
        start: OffsetDateTime,
        end: OffsetDateTime,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        on_backend!(self, store => store.revenue_by_service(start, end).await)
    }

    /// A payout that is not archived.
    pub async fn payout(&self, id: uuid::Uuid) -> Result<Option<payouts::PayoutView>, StoreError> {
        on_backend!(self, store => store.payout(id).await)
    }

    /// A payout's status history, oldest first.
    pub async fn payout_events(&self, id: uuid::Uuid) -> Result<Vec<payouts::PayoutEventRow>, StoreError> {
        on_backend!(self, store => store.payout_events(id).await)
    }

    /// A page of payouts and how many the filter selects in all.
    pub async fn list_payouts(
        &self,
        filter: &payouts::PayoutFilter,
        ordering: payouts::PayoutOrdering,
        limit: i64,
        offset: i64,
    ) -> Result<(i64, Vec<payouts::PayoutView>), StoreError> {
        on_backend!(self, store => store.list_payouts(filter, ordering, limit, offset).await)
    }

    /// The time leases and due times are measured in: PostgreSQL's clock, which every process sharing the
    /// queue reads alike (hosts' clocks may drift apart); the local clock for the embedded store.
    pub async fn clock(&self) -> Result<OffsetDateTime, StoreError> {
        match self {
            Store::Sqlite(_) => Ok(OffsetDateTime::now_utc()),
            Store::Postgres(store) => store.clock().await,
        }
    }

    /// Claims up to `limit` due jobs for `owner` until `lease` (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so
    /// workers of several processes never claim the same job).
    pub async fn claim_jobs(
        &self,
        owner: &str,
        now: OffsetDateTime,
        lease: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<payouts::ClaimedJob>, StoreError> {
        on_backend!(self, store => store.claim_jobs(owner, now, lease, limit).await)
    }

    /// Gives a claimed job back: due again at `run_at` after a failed attempt (with its error), or, with no
    /// `run_at`, released unattempted (shutdown). False if the worker no longer held it.
    pub async fn reschedule_job(
        &self,
        id: i64,
        owner: &str,
        run_at: Option<OffsetDateTime>,
        error: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        on_backend!(self, store => store.reschedule_job(id, owner, run_at, error, now).await)
    }

    /// Ends a claimed job that has nothing left to do (its payout already moved on). False if the worker no
    /// longer held it.
    pub async fn finish_job(&self, id: i64, owner: &str, now: OffsetDateTime) -> Result<bool, StoreError> {
        on_backend!(self, store => store.finish_job(id, owner, now).await)
    }

    /// Jobs in a status, newest first.
    pub async fn list_jobs(&self, status: &str, limit: i64) -> Result<Vec<payouts::JobRow>, StoreError> {
        on_backend!(self, store => store.list_jobs(status, limit).await)
    }

    /// One job.
    pub async fn job(&self, id: i64) -> Result<Option<payouts::JobRow>, StoreError> {
        on_backend!(self, store => store.job(id).await)
    }

    /// A user of the API by name.
    pub async fn principal(&self, username: &str) -> Result<Option<PrincipalRow>, StoreError> {
        on_backend!(self, store => store.principal(username).await)
    }

    /// Every user of the API, by name.
    pub async fn principals(&self) -> Result<Vec<PrincipalRow>, StoreError> {
        on_backend!(self, store => store.principals().await)
    }

    /// Audit rows, newest first.
    pub async fn audit_rows(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, StoreError> {
        on_backend!(self, store => store.audit_rows(filter).await)
    }

    /// Creates a user (and its audit row) unless the name is taken; true if created.
    pub async fn create_principal(&self, row: &PrincipalRow, audit: &AuditEntry) -> Result<bool, StoreError> {
        on_backend!(self, store => store.create_principal(row, audit).await)
    }

    /// Changes a user's password (and whether it was generated), role and active flag in one transaction, with
    /// their audit rows. Refused if it would leave no active admin (the admins' rows are locked first, so two
    /// concurrent changes cannot each leave the other as the last one). A new password or a disabled user
    /// revokes every refresh token of the user.
    pub async fn update_principal(
        &self,
        username: &str,
        change: &PrincipalChange<'_>,
        audits: &[AuditEntry],
        now: OffsetDateTime,
    ) -> Result<PrincipalUpdate, StoreError> {
        on_backend!(self, store => store.update_principal(username, change, audits, now).await)
    }

    /// Writes one audit row on its own.
    pub async fn write_audit_entry(&self, audit: &AuditEntry, now: OffsetDateTime) -> Result<(), StoreError> {
        on_backend!(self, store => store.write_audit_entry(audit, now).await)
    }

    /// Stores a refresh token's hash.
    pub async fn insert_refresh(
        &self,
        user_id: i64,
        family: &str,
        hash: &str,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        on_backend!(self, store => store.insert_refresh(user_id, family, hash, expires_at, now).await)
    }

    /// A refresh token by its hash.
    pub async fn refresh_by_hash(&self, hash: &str) -> Result<Option<RefreshRow>, StoreError> {
        on_backend!(self, store => store.refresh_by_hash(hash).await)
    }

    /// Marks a refresh token used; false if it already was, or was revoked.
    pub async fn use_refresh(&self, id: i64, now: OffsetDateTime) -> Result<bool, StoreError> {
        on_backend!(self, store => store.use_refresh(id, now).await)
    }

    /// Revokes every refresh token of a login, and every access token its user holds.
    pub async fn revoke_family(&self, family: &str, now: OffsetDateTime) -> Result<(), StoreError> {
        on_backend!(self, store => store.revoke_family(family, now).await)
    }

    /// Whether any refresh token of a login is revoked (the login is).
    pub async fn family_revoked(&self, family: &str) -> Result<bool, StoreError> {
        on_backend!(self, store => store.family_revoked(family).await)
    }

    /// A user by id.
    pub async fn principal_by_id(&self, id: i64) -> Result<Option<PrincipalRow>, StoreError> {
        on_backend!(self, store => store.principal_by_id(id).await)
    }

    /// How many users exist.
    pub async fn user_count(&self) -> Result<i64, StoreError> {
        on_backend!(self, store => store.user_count().await)
    }

    /// Recomputes every balance from the entries and checks every ledger invariant.
    pub async fn verify(&self) -> Result<VerifyReport, StoreError> {
        on_backend!(self, store => store.verify().await)
    }
}

/// An organization account's key and id, as both stores read them back after creating organizations.
pub(crate) fn organization_account(key: String, id: i64) -> Result<(Inn, AccountId), StoreError> {
    let inn = Inn::parse(&key).map_err(|_| StoreError::Corrupt(format!("account key {key}")))?;
    Ok((inn, AccountId(id)))
}

/// Turns a stored reservation's columns back into the engine's view of it, or says the row is corrupt.
pub(crate) fn hold_from_row(
    reference: &str,
    account: i64,
    amount: i64,
    status: &str,
    transaction_id: Option<uuid::Uuid>,
) -> Result<HoldState, StoreError> {
    let status = payledger_core::balances::HoldStatus::parse(status)
        .ok_or_else(|| StoreError::Corrupt(format!("reservation {reference}: status {status}")))?;
    Ok(HoldState { is_new: false, account: AccountId(account), amount, status, transaction_id })
}

/// Turns a stored notice's columns back into the domain type, or says the row is corrupt.
pub(crate) fn notice_from_row(
    operation_id: uuid::Uuid,
    amount: i64,
    currency: &str,
    payer_inn: &str,
    document_number: String,
    document_date: OffsetDateTime,
) -> Result<BankNotice, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("bank payment {operation_id}: bad {what}"));
    let currency = payledger_core::Currency::from_code(currency).ok_or_else(|| corrupt("currency"))?;
    Ok(BankNotice {
        operation_id: OperationId(operation_id),
        amount: payledger_core::Money::from_minor(amount, currency),
        payer_inn: Inn::parse(payer_inn).map_err(|_| corrupt("payer_inn"))?,
        document_number,
        document_date,
    })
}

/// The reads, seeds and checks whose SQL is the same on both backends, implemented once for each store.
/// `$reader` and `$writer` name the store's pools; `$begin_snapshot` starts a read-only snapshot and
/// `$uuid_text` is the function that prints an id in `verify`'s messages.
/// A job from columns `id, kind, payload, status, attempts, max_attempts, last_error, run_at, updated_at`.
macro_rules! job_from_row {
    ($row:expr) => {
        $crate::store::payouts::JobRow {
            id: $row.try_get(0)?,
            kind: $row.try_get(1)?,
            payload: $row.try_get(2)?,
            status: $row.try_get(3)?,
            attempts: $row.try_get(4)?,
            max_attempts: $row.try_get(5)?,
            last_error: $row.try_get(6)?,
            run_at: $row.try_get(7)?,
            updated_at: $row.try_get(8)?,
        }
    };
}
pub(crate) use job_from_row;

/// A user from columns `id, username, password_hash, role, active, password_generated, created_at,
/// tokens_valid_after`.
macro_rules! principal_from_row {
    ($row:expr) => {
        $crate::store::PrincipalRow {
            id: $row.try_get(0)?,
            username: $row.try_get(1)?,
            password_hash: $row.try_get(2)?,
            role: $row.try_get(3)?,
            active: $row.try_get(4)?,
            password_generated: $row.try_get(5)?,
            created_at: $row.try_get(6)?,
            tokens_valid_after: $row.try_get(7)?,
        }
    };
}
pub(crate) use principal_from_row;

macro_rules! shared_queries {
    ($store:ty, reader: $reader:ident, writer: $writer:ident, begin_snapshot: $begin_snapshot:literal, begin_write: $begin_write:literal, for_update: $for_update:literal, uuid_text: $uuid_text:literal, bind_time: $bind_time:path, claim_jobs_sql: $claim_jobs_sql:expr) => {
        impl $store {
        pub(super) async fn system_account(&self, key: &str) -> Result<payledger_core::AccountId, $crate::store::StoreError> {
            sqlx::query(
                "INSERT INTO accounts (kind, external_key, currency, allow_negative) VALUES ('system', $1, 'RUB', TRUE)
                 ON CONFLICT (kind, external_key, currency) DO NOTHING",
            )
            .bind(key)
            .execute(&self.$writer)
            .await?;
            let id = sqlx::query_scalar(
                "SELECT id FROM accounts WHERE kind = 'system' AND external_key = $1 AND currency = 'RUB'",
            )
            .bind(key)
            .fetch_one(&self.$writer)
            .await?;
            Ok(payledger_core::AccountId(id))
        }

        pub(super) async fn organization_count(&self) -> Result<i64, $crate::store::StoreError> {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM organizations").fetch_one(&self.$reader).await?)
        }

        pub(super) async fn organization_balance(&self, inn: &payledger_core::Inn) -> Result<Option<i64>, $crate::store::StoreError> {
            Ok(sqlx::query_scalar(
                "SELECT COALESCE(a.balance, 0) FROM organizations o
                 LEFT JOIN accounts a ON a.kind = 'organization' AND a.external_key = o.inn AND a.currency = 'RUB'
                 WHERE o.inn = $1",
            )
            .bind(inn.as_str())
            .fetch_optional(&self.$reader)
            .await?)
        }

        pub(super) async fn balance_log(
            &self,
            inn: &payledger_core::Inn,
            before: i64,
            limit: i64,
        ) -> Result<Option<Vec<$crate::store::BalanceLogRow>>, $crate::store::StoreError> {
            let account: Option<Option<i64>> = sqlx::query_scalar(
                "SELECT a.id FROM organizations o
                 LEFT JOIN accounts a ON a.kind = 'organization' AND a.external_key = o.inn AND a.currency = 'RUB'
                 WHERE o.inn = $1",
            )
            .bind(inn.as_str())
            .fetch_optional(&self.$reader)
            .await?;
            let Some(account) = account else { return Ok(None) };
            let Some(account) = account else { return Ok(Some(Vec::new())) };
            let rows = sqlx::query(
                "SELECT e.id, e.amount, e.balance_before, e.balance_after, p.operation_id, p.document_number,
                        p.document_date, e.created_at
                 FROM entries e LEFT JOIN bank_payments p ON p.transaction_id = e.transaction_id
                 WHERE e.account_id = $1 AND e.id < $2 ORDER BY e.id DESC LIMIT $3",
            )
            .bind(account)
            .bind(before)
            .bind(limit)
            .fetch_all(&self.$reader)
            .await?;
            let log = rows
                .into_iter()
                .map(|row| {
                    Ok($crate::store::BalanceLogRow {
                        entry_id: row.try_get(0)?,
                        amount: row.try_get(1)?,
                        balance_before: row.try_get(2)?,
                        balance_after: row.try_get(3)?,
                        operation_id: row.try_get(4)?,
                        document_number: row.try_get(5)?,
                        document_date: row.try_get(6)?,
                        created_at: row.try_get(7)?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            Ok(Some(log))
        }

        pub(super) async fn waiting_notices(&self, limit: i64) -> Result<Vec<payledger_core::BankNotice>, $crate::store::StoreError> {
            let rows = sqlx::query(
                "SELECT operation_id, amount, currency, payer_inn, document_number, document_date
                 FROM bank_payments WHERE status = 'received' ORDER BY id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(&self.$reader)
            .await?;
            rows.iter()
                        .map(|row| {
                            let currency: String = row.try_get(2)?;
                            let payer_inn: String = row.try_get(3)?;
                            $crate::store::notice_from_row(
                                row.try_get(0)?, row.try_get(1)?, &currency, &payer_inn, row.try_get(4)?, row.try_get(5)?,
                            )
                        })
                        .collect()
        }

        pub(super) async fn user_balance(&self, user: i64) -> Result<Option<$crate::store::UserBalance>, $crate::store::StoreError> {
            let row = sqlx::query(
                "SELECT balance, held FROM accounts WHERE kind = 'user' AND external_key = $1 AND currency = 'RUB'",
            )
            .bind(user.to_string())
            .fetch_optional(&self.$reader)
            .await?;
            Ok(match row {
                Some(row) => Some($crate::store::UserBalance { balance: row.try_get(0)?, held: row.try_get(1)? }),
                None => None,
            })
        }

        pub(super) async fn user_history(
            &self,
            user: i64,
            page: $crate::store::HistoryPage,
        ) -> Result<Option<Vec<$crate::store::ActivityRow>>, $crate::store::StoreError> {
            let account: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM accounts WHERE kind = 'user' AND external_key = $1 AND currency = 'RUB'",
            )
            .bind(user.to_string())
            .fetch_optional(&self.$reader)
            .await?;
            let Some(account) = account else { return Ok(None) };
            let (amount, id) = match page.after {
                Some(cursor) => (cursor.amount, cursor.id),
                None if page.descending => (i64::MAX, i64::MAX),
                None => (i64::MIN, i64::MIN),
            };
            let rows = sqlx::query($crate::store::history_sql(page.sort, page.descending))
                .bind(account)
                .bind(amount)
                .bind(id)
                .bind(page.limit)
                .fetch_all(&self.$reader)
                .await?;
            let lines = rows
                .into_iter()
                .map(|row| {
                    Ok($crate::store::ActivityRow {
                        id: row.try_get(0)?,
                        kind: row.try_get(1)?,
                        amount: row.try_get(2)?,
                        held_change: row.try_get(3)?,
                        counterparty: row.try_get(4)?,
                        service_id: row.try_get(5)?,
                        order_id: row.try_get(6)?,
                        transaction_id: row.try_get(7)?,
                        created_at: row.try_get(8)?,
                        payout_id: row.try_get(9)?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            Ok(Some(lines))
        }

        pub(super) async fn revenue_by_service(
            &self,
            start: time::OffsetDateTime,
            end: time::OffsetDateTime,
        ) -> Result<Vec<(i64, i64)>, $crate::store::StoreError> {
            let rows = sqlx::query(
                "SELECT service_id, CAST(SUM(-held_change) AS BIGINT) FROM account_activity
                 WHERE kind = 'revenue_recognition' AND created_at >= $1 AND created_at < $2
                 GROUP BY service_id ORDER BY service_id",
            )
            .bind($bind_time(start))
            .bind($bind_time(end))
            .fetch_all(&self.$reader)
            .await?;
            rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect::<Result<Vec<_>, sqlx::Error>>().map_err(Into::into)
        }

        pub(super) async fn payout(&self, id: uuid::Uuid) -> Result<Option<$crate::store::payouts::PayoutView>, $crate::store::StoreError> {
            let row = sqlx::query($crate::store::payouts::GET_SQL).bind(id).fetch_optional(&self.$reader).await?;
            Ok(match row {
                Some(row) => Some($crate::store::payouts::payout_view_from_row!(&row)),
                None => None,
            })
        }

        pub(super) async fn payout_events(&self, id: uuid::Uuid) -> Result<Vec<$crate::store::payouts::PayoutEventRow>, $crate::store::StoreError> {
            let rows = sqlx::query(
                "SELECT from_status, to_status, actor, reason, created_at FROM payout_events WHERE payout_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(&self.$reader)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok($crate::store::payouts::PayoutEventRow {
                        from: row.try_get(0)?,
                        to: row.try_get(1)?,
                        actor: row.try_get(2)?,
                        reason: row.try_get(3)?,
                        at: row.try_get(4)?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(Into::into)
        }

        pub(super) async fn list_payouts(
            &self,
            filter: &$crate::store::payouts::PayoutFilter,
            ordering: $crate::store::payouts::PayoutOrdering,
            limit: i64,
            offset: i64,
        ) -> Result<(i64, Vec<$crate::store::payouts::PayoutView>), $crate::store::StoreError> {
            let status = filter.status.map(|s| s.as_str());
            let after = filter.created_after.map($bind_time);
            let before = filter.created_before.map($bind_time);
            let count: i64 = sqlx::query_scalar($crate::store::payouts::COUNT_SQL)
                .bind(status)
                .bind(filter.currency.as_deref())
                .bind(after.clone())
                .bind(before.clone())
                .fetch_one(&self.$reader)
                .await?;
            let rows = sqlx::query($crate::store::payouts::list_sql(ordering))
                .bind(status)
                .bind(filter.currency.as_deref())
                .bind(after)
                .bind(before)
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.$reader)
                .await?;
            let mut views = Vec::with_capacity(rows.len());
            for row in &rows {
                views.push($crate::store::payouts::payout_view_from_row!(row));
            }
            Ok((count, views))
        }

        pub(super) async fn claim_jobs(
            &self,
            owner: &str,
            now: time::OffsetDateTime,
            lease: time::OffsetDateTime,
            limit: i64,
        ) -> Result<Vec<$crate::store::payouts::ClaimedJob>, $crate::store::StoreError> {
            let rows = sqlx::query($claim_jobs_sql)
                .bind(owner)
                .bind($bind_time(lease))
                .bind($bind_time(now))
                .bind(limit)
                .fetch_all(&self.$writer)
                .await?;
            rows.iter()
                .map(|row| {
                    Ok($crate::store::payouts::ClaimedJob {
                        id: row.try_get(0)?,
                        kind: row.try_get(1)?,
                        payload: row.try_get(2)?,
                        attempts: row.try_get(3)?,
                        max_attempts: row.try_get(4)?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(Into::into)
        }

        pub(super) async fn reschedule_job(
            &self,
            id: i64,
            owner: &str,
            run_at: Option<time::OffsetDateTime>,
            error: Option<&str>,
            now: time::OffsetDateTime,
        ) -> Result<bool, $crate::store::StoreError> {
            // A job whose lease this worker lost (it expired and another worker claimed it) is left alone.
            let done = sqlx::query(
                "UPDATE jobs SET run_at = COALESCE($3, run_at), last_error = COALESCE($4, last_error),
                        lease_owner = NULL, lease_expires_at = NULL, updated_at = $5,
                        attempts = CASE WHEN $3 IS NULL THEN attempts - 1 ELSE attempts END
                 WHERE id = $1 AND lease_owner = $2 AND status = 'queued'",
            )
            .bind(id)
            .bind(owner)
            .bind(run_at.map($bind_time))
            .bind(error)
            .bind($bind_time(now))
            .execute(&self.$writer)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(super) async fn finish_job(&self, id: i64, owner: &str, now: time::OffsetDateTime) -> Result<bool, $crate::store::StoreError> {
            let done = sqlx::query(
                "UPDATE jobs SET status = 'done', lease_owner = NULL, lease_expires_at = NULL, updated_at = $3
                 WHERE id = $1 AND lease_owner = $2 AND status = 'queued'",
            )
            .bind(id)
            .bind(owner)
            .bind($bind_time(now))
            .execute(&self.$writer)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(super) async fn list_jobs(
            &self,
            status: &str,
            limit: i64,
        ) -> Result<Vec<$crate::store::payouts::JobRow>, $crate::store::StoreError> {
            let rows = sqlx::query(
                "SELECT id, kind, payload, status, attempts, max_attempts, last_error, run_at, updated_at
                 FROM jobs WHERE status = $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(status)
            .bind(limit)
            .fetch_all(&self.$reader)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok($crate::store::job_from_row!(row))
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(Into::into)
        }

        pub(super) async fn job(&self, id: i64) -> Result<Option<$crate::store::payouts::JobRow>, $crate::store::StoreError> {
            let row = sqlx::query(
                "SELECT id, kind, payload, status, attempts, max_attempts, last_error, run_at, updated_at
                 FROM jobs WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&self.$reader)
            .await?;
            let Some(row) = row else { return Ok(None) };
            Ok(Some($crate::store::job_from_row!(row)))
        }

        pub(super) async fn principal(&self, username: &str) -> Result<Option<$crate::store::PrincipalRow>, $crate::store::StoreError> {
            let row = sqlx::query(
                "SELECT id, username, password_hash, role, active, password_generated, created_at, tokens_valid_after FROM users WHERE username = $1",
            )
            .bind(username)
            .fetch_optional(&self.$reader)
            .await?;
            Ok(match row {
                Some(row) => Some($crate::store::principal_from_row!(row)),
                None => None,
            })
        }

        pub(super) async fn principals(&self) -> Result<Vec<$crate::store::PrincipalRow>, $crate::store::StoreError> {
            let rows = sqlx::query(
                "SELECT id, username, password_hash, role, active, password_generated, created_at, tokens_valid_after FROM users ORDER BY username",
            )
            .fetch_all(&self.$writer)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok($crate::store::principal_from_row!(row))
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(Into::into)
        }

        pub(super) async fn audit_rows(
            &self,
            filter: &$crate::store::AuditFilter,
        ) -> Result<Vec<$crate::store::AuditRow>, $crate::store::StoreError> {
            let rows = sqlx::query(
                "SELECT id, actor, action, target, before, after, at FROM audit_log
                 WHERE ($1 IS NULL OR actor = $1) AND ($2 IS NULL OR action = $2) AND ($3 IS NULL OR target = $3)
                   AND ($4 IS NULL OR id < $4)
                 ORDER BY id DESC LIMIT $5",
            )
            .bind(filter.actor.as_deref())
            .bind(filter.action.as_deref())
            .bind(filter.target.as_deref())
            .bind(filter.before_id)
            .bind(filter.limit)
            .fetch_all(&self.$reader)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok($crate::store::AuditRow {
                        id: row.try_get(0)?,
                        entry: $crate::store::AuditEntry {
                            actor: row.try_get(1)?,
                            action: row.try_get(2)?,
                            target: row.try_get(3)?,
                            before: row.try_get(4)?,
                            after: row.try_get(5)?,
                        },
                        at: row.try_get(6)?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(Into::into)
        }

        /// Inserts a user unless the name is taken; true if inserted. The audit row goes in the same
        /// transaction.
        pub(super) async fn create_principal(
            &self,
            row: &$crate::store::PrincipalRow,
            audit: &$crate::store::AuditEntry,
        ) -> Result<bool, $crate::store::StoreError> {
            let mut tx = self.$writer.begin().await?;
            let now = $bind_time(row.created_at);
            let inserted = sqlx::query(
                "INSERT INTO users (username, password_hash, role, active, password_generated, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (username) DO NOTHING",
            )
            .bind(&row.username)
            .bind(&row.password_hash)
            .bind(&row.role)
            .bind(row.active)
            .bind(row.password_generated)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if inserted {
                Self::write_audit(&mut *tx, audit, row.created_at).await?;
            }
            tx.commit().await?;
            Ok(inserted)
        }

        /// Changes a user's password, role or active flag (whichever is given); true if the user exists.
        pub(super) async fn update_principal(
            &self,
            username: &str,
            change: &$crate::store::PrincipalChange<'_>,
            audits: &[$crate::store::AuditEntry],
            now: time::OffsetDateTime,
        ) -> Result<$crate::store::PrincipalUpdate, $crate::store::StoreError> {
            use sqlx::Row;
            // The write lock first (SQLite) or the active admins' rows (PostgreSQL), in id order.
            let mut tx = self.$writer.begin_with($begin_write).await?;
            let admins: Vec<String> = sqlx::query_scalar(concat!(
                "SELECT username FROM users WHERE role = 'admin' AND active ORDER BY id",
                $for_update
            ))
            .fetch_all(&mut *tx)
            .await?;
            let Some(row) = sqlx::query(concat!("SELECT id, role, active FROM users WHERE username = $1", $for_update))
                .bind(username)
                .fetch_optional(&mut *tx)
                .await?
            else {
                return Ok($crate::store::PrincipalUpdate::NotFound);
            };
            let (id, role, active): (i64, String, bool) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            let stays_admin = change.role.unwrap_or(&role) == "admin" && change.active.unwrap_or(active);
            if role == "admin" && active && !stays_admin && !admins.iter().any(|admin| admin != username) {
                return Ok($crate::store::PrincipalUpdate::LastAdmin);
            }
            let (password_hash, role, active) = (change.password_hash, change.role, change.active);
            let updated = sqlx::query(
                "UPDATE users SET password_hash = COALESCE($2, password_hash),
                        password_generated = COALESCE($3, password_generated),
                        role = COALESCE($4, role), active = COALESCE($5, active), updated_at = $6
                 WHERE username = $1",
            )
            .bind(username)
            .bind(password_hash.map(|(hash, _)| hash))
            .bind(password_hash.map(|(_, generated)| generated))
            .bind(role)
            .bind(active)
            .bind($bind_time(now))
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !updated {
                return Ok($crate::store::PrincipalUpdate::NotFound);
            }
            if password_hash.is_some() || active == Some(false) {
                // A new password or a disabled user ends every login: no refresh token of theirs works again,
                // also after the user is enabled once more.
                sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL")
                    .bind(id)
                    .bind($bind_time(now))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM console_sessions WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
                sqlx::query("UPDATE users SET tokens_valid_after = $2 WHERE id = $1")
                    .bind(id)
                    .bind($bind_time(now))
                    .execute(&mut *tx)
                    .await?;
            }
            for audit in audits {
                Self::write_audit(&mut *tx, audit, now).await?;
            }
            tx.commit().await?;
            Ok($crate::store::PrincipalUpdate::Updated)
        }

        pub(super) async fn write_audit_entry(
            &self,
            audit: &$crate::store::AuditEntry,
            now: time::OffsetDateTime,
        ) -> Result<(), $crate::store::StoreError> {
            Self::write_audit(&self.$writer, audit, now).await
        }

        pub(super) async fn insert_refresh(
            &self,
            user_id: i64,
            family: &str,
            hash: &str,
            expires_at: time::OffsetDateTime,
            now: time::OffsetDateTime,
        ) -> Result<(), $crate::store::StoreError> {
            sqlx::query(
                "INSERT INTO refresh_tokens (user_id, family, token_hash, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(user_id)
            .bind(family)
            .bind(hash)
            .bind($bind_time(expires_at))
            .bind($bind_time(now))
            .execute(&self.$writer)
            .await?;
            Ok(())
        }

        pub(super) async fn refresh_by_hash(&self, hash: &str) -> Result<Option<$crate::store::RefreshRow>, $crate::store::StoreError> {
            let row = sqlx::query(
                "SELECT id, user_id, family, expires_at, used_at, revoked_at FROM refresh_tokens WHERE token_hash = $1",
            )
            .bind(hash)
            .fetch_optional(&self.$writer)
            .await?;
            Ok(match row {
                Some(row) => {
                    let used: Option<time::OffsetDateTime> = row.try_get(4)?;
                    let revoked: Option<time::OffsetDateTime> = row.try_get(5)?;
                    Some($crate::store::RefreshRow {
                        id: row.try_get(0)?,
                        user_id: row.try_get(1)?,
                        family: row.try_get(2)?,
                        expires_at: row.try_get(3)?,
                        used: used.is_some(),
                        revoked: revoked.is_some(),
                    })
                }
                None => None,
            })
        }

        /// Marks a refresh token used; false if it already was (a second use: the race is decided here), or if
        /// any token of its login is revoked. The second condition makes a revocation stick to the whole login:
        /// a reuse detected while the first use is still issuing its new token revokes the old rows only (the
        /// new one is not inserted yet), and the new token is then refused here when it is used.
        pub(super) async fn use_refresh(&self, id: i64, now: time::OffsetDateTime) -> Result<bool, $crate::store::StoreError> {
            let done = sqlx::query(
                "UPDATE refresh_tokens SET used_at = $2
                 WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL
                   AND NOT EXISTS (SELECT 1 FROM refresh_tokens revoked
                                   WHERE revoked.family = refresh_tokens.family AND revoked.revoked_at IS NOT NULL)",
            )
                .bind(id)
                .bind($bind_time(now))
                .execute(&self.$writer)
                .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(super) async fn revoke_family(&self, family: &str, now: time::OffsetDateTime) -> Result<(), $crate::store::StoreError> {
            let mut tx = self.$writer.begin_with($begin_write).await?;
            sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE family = $1 AND revoked_at IS NULL")
                .bind(family)
                .bind($bind_time(now))
                .execute(&mut *tx)
                .await?;
            // The copy may hold an access token of this login too: the user's access tokens issued until now
            // stop working (the user logs in again; other logins of theirs must too).
            sqlx::query(
                "UPDATE users SET tokens_valid_after = $2
                 WHERE id = (SELECT user_id FROM refresh_tokens WHERE family = $1 LIMIT 1)",
            )
            .bind(family)
            .bind($bind_time(now))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        }

        pub(super) async fn family_revoked(&self, family: &str) -> Result<bool, $crate::store::StoreError> {
            let revoked: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM refresh_tokens WHERE family = $1 AND revoked_at IS NOT NULL",
            )
            .bind(family)
            .fetch_one(&self.$writer)
            .await?;
            Ok(revoked > 0)
        }

        pub(super) async fn principal_by_id(&self, id: i64) -> Result<Option<$crate::store::PrincipalRow>, $crate::store::StoreError> {
            let row = sqlx::query(
                "SELECT id, username, password_hash, role, active, password_generated, created_at, tokens_valid_after FROM users WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&self.$reader)
            .await?;
            Ok(match row {
                Some(row) => Some($crate::store::principal_from_row!(row)),
                None => None,
            })
        }

        pub(super) async fn user_count(&self) -> Result<i64, $crate::store::StoreError> {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&self.$writer).await?)
        }

        async fn write_audit<'c, E>(executor: E, audit: &$crate::store::AuditEntry, at: time::OffsetDateTime) -> Result<(), $crate::store::StoreError>
        where
            E: sqlx::Executor<'c, Database = <$store as $crate::store::Backend>::Db>,
        {
            sqlx::query("INSERT INTO audit_log (actor, action, target, before, after, at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(&audit.actor)
                .bind(&audit.action)
                .bind(&audit.target)
                .bind(&audit.before)
                .bind(&audit.after)
                .bind($bind_time(at))
                .execute(executor)
                .await?;
            Ok(())
        }

        pub(super) async fn verify(&self) -> Result<$crate::store::VerifyReport, $crate::store::StoreError> {
            // One read-only snapshot, so every check sees the same data while writers keep going.
            let mut tx = self.$reader.begin_with($begin_snapshot).await?;
            let counts = sqlx::query($crate::store::VERIFY_COUNTS).fetch_one(&mut *tx).await?;
            let mut report = $crate::store::VerifyReport {
                accounts: counts.try_get(0)?,
                transactions: counts.try_get(1)?,
                entries: counts.try_get(2)?,
                bank_payments: counts.try_get(3)?,
                problems: Vec::new(),
            };
            for (name, sql) in $crate::store::verify_checks($uuid_text) {
                let found: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *tx).await?;
                report.problems.extend(found.into_iter().map(|problem| format!("{name}: {problem}")));
            }
            tx.rollback().await?;
            Ok(report)
        }

        }
    };
}
pub(crate) use shared_queries;

/// The invariant checks `verify` runs, as SQL valid on both backends once `UUID_TEXT(` is replaced by the
/// backend's function that prints an id. Each query returns one text column per violation found, so an
/// empty result means the invariant holds.
const VERIFY_CHECKS: &[(&str, &str)] = &[
    (
        "account balance equals the sum of its entries",
        "SELECT 'account ' || a.id || ' balance ' || a.balance || ' but entries sum to ' || COALESCE(s.total, 0)
         FROM accounts a LEFT JOIN (SELECT account_id, SUM(amount) AS total FROM entries GROUP BY account_id) s
           ON s.account_id = a.id
         WHERE a.balance <> COALESCE(s.total, 0)",
    ),
    (
        "every transaction's entries sum to zero",
        "SELECT 'transaction ' || UUID_TEXT(transaction_id) || ' entries sum to ' || SUM(amount)
         FROM entries GROUP BY transaction_id HAVING SUM(amount) <> 0",
    ),
    (
        "every entry belongs to a stored transaction and account",
        "SELECT 'entry ' || e.id || ' references a missing transaction or account' FROM entries e
         WHERE NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.id = e.transaction_id)
            OR NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = e.account_id)",
    ),
    (
        "every transaction has entries",
        "SELECT 'transaction ' || UUID_TEXT(t.id) || ' has no entries' FROM ledger_transactions t
         WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.transaction_id = t.id)",
    ),
    (
        "entries chain: each starts where the previous one of its account ended",
        "SELECT 'entry ' || id || ' starts at ' || balance_before || ' but the previous ended at ' || COALESCE(prev, 0)
         FROM (SELECT id, balance_before, LAG(balance_after) OVER (PARTITION BY account_id ORDER BY id) AS prev
               FROM entries) chained
         WHERE balance_before <> COALESCE(prev, 0)",
    ),
    (
        "the last entry of each account ends at its balance",
        "SELECT 'account ' || a.id || ' balance ' || a.balance || ' but its last entry ends at ' || e.balance_after
         FROM accounts a JOIN entries e ON e.id = (SELECT MAX(id) FROM entries WHERE account_id = a.id)
         WHERE e.balance_after <> a.balance",
    ),
    (
        "no account is overdrawn unless it may be",
        "SELECT 'account ' || id || ' is overdrawn: balance ' || balance || ', held ' || held
         FROM accounts WHERE (balance - held < 0 AND NOT (allow_negative = TRUE)) OR held < 0",
    ),
    (
        "every applied bank payment credits its organization exactly its amount",
        "SELECT 'bank payment ' || UUID_TEXT(p.operation_id) || ' is applied but credited ' || COALESCE(SUM(e.amount), 0)
         FROM bank_payments p
         LEFT JOIN accounts a ON a.kind = 'organization' AND a.external_key = p.payer_inn AND a.currency = p.currency
         LEFT JOIN entries e ON e.transaction_id = p.transaction_id AND e.account_id = a.id
         WHERE p.status = 'applied'
         GROUP BY p.operation_id, p.amount HAVING COALESCE(SUM(e.amount), 0) <> p.amount",
    ),
    (
        "each account holds exactly its open reservations",
        "SELECT 'account ' || a.id || ' holds ' || a.held || ' but its open reservations total ' || COALESCE(h.total, 0)
         FROM accounts a
         LEFT JOIN (SELECT account_id, SUM(amount) AS total FROM holds WHERE status = 'held' GROUP BY account_id) h
           ON h.account_id = a.id
         WHERE a.held <> COALESCE(h.total, 0)",
    ),
    (
        "each captured reservation names its stored capture transaction",
        "SELECT 'reservation ' || h.reference || ' is captured by a missing transaction' FROM holds h
         WHERE h.status = 'captured'
           AND NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.id = h.transaction_id)",
    ),
    (
        "each user's history adds up to their available and reserved money",
        "SELECT 'user ' || a.external_key || ' has ' || (a.balance - a.held) || ' available and ' || a.held
                || ' reserved but the history adds up to ' || COALESCE(s.available, 0) || ' and ' || COALESCE(s.held, 0)
         FROM accounts a
         LEFT JOIN (SELECT account_id, SUM(amount) AS available, SUM(held_change) AS held
                    FROM account_activity GROUP BY account_id) s ON s.account_id = a.id
         WHERE a.kind = 'user' AND (a.balance - a.held <> COALESCE(s.available, 0) OR a.held <> COALESCE(s.held, 0))",
    ),
    (
        "each history line that moved a balance matches its ledger entry",
        "SELECT 'history line ' || l.id || ' moved ' || (l.amount + l.held_change) || ' but its entry moved '
                || COALESCE(SUM(e.amount), 0)
         FROM account_activity l
         LEFT JOIN entries e ON e.transaction_id = l.transaction_id AND e.account_id = l.account_id
         WHERE l.transaction_id IS NOT NULL
         GROUP BY l.id, l.amount, l.held_change HAVING COALESCE(SUM(e.amount), 0) <> l.amount + l.held_change",
    ),
    (
        "each payout with a source holds, has captured or has released its amount as its status says",
        "SELECT 'payout ' || p.hold_reference || ' is ' || p.status || ' but its hold is ' || COALESCE(h.status, 'missing')
         FROM payouts p LEFT JOIN holds h ON h.reference = p.hold_reference
         WHERE p.hold_reference IS NOT NULL AND NOT (
               (p.status IN ('pending', 'processing') AND h.status = 'held' AND h.amount = p.amount)
            OR (p.status IN ('completed', 'returned') AND h.status = 'captured' AND h.amount = p.amount)
            OR (p.status IN ('failed', 'cancelled') AND h.status = 'released' AND h.amount = p.amount))",
    ),
    (
        "every bank payment transaction belongs to exactly one applied payment",
        "SELECT 'transaction ' || UUID_TEXT(t.id) || ' has ' || COUNT(p.id) || ' applied payments'
         FROM ledger_transactions t LEFT JOIN bank_payments p ON p.transaction_id = t.id AND p.status = 'applied'
         WHERE t.kind = 'bank_payment' GROUP BY t.id HAVING COUNT(p.id) <> 1",
    ),
];

/// The history query for a sort and direction. The cursor is a row value, so each page continues exactly
/// after the last line of the previous one: no line is skipped or repeated while new lines arrive.
pub(crate) fn history_sql(sort: HistorySort, descending: bool) -> &'static str {
    match (sort, descending) {
        (HistorySort::Date, false) => {
            "SELECT id, kind, amount, held_change, counterparty, service_id, order_id, transaction_id, created_at,
                    payout_id
             FROM account_activity WHERE account_id = $1 AND $2 = $2 AND id > $3 ORDER BY id LIMIT $4"
        }
        (HistorySort::Date, true) => {
            "SELECT id, kind, amount, held_change, counterparty, service_id, order_id, transaction_id, created_at,
                    payout_id
             FROM account_activity WHERE account_id = $1 AND $2 = $2 AND id < $3 ORDER BY id DESC LIMIT $4"
        }
        (HistorySort::Amount, false) => {
            "SELECT id, kind, amount, held_change, counterparty, service_id, order_id, transaction_id, created_at,
                    payout_id
             FROM account_activity WHERE account_id = $1 AND (amount, id) > ($2, $3)
             ORDER BY amount, id LIMIT $4"
        }
        (HistorySort::Amount, true) => {
            "SELECT id, kind, amount, held_change, counterparty, service_id, order_id, transaction_id, created_at,
                    payout_id
             FROM account_activity WHERE account_id = $1 AND (amount, id) < ($2, $3)
             ORDER BY amount DESC, id DESC LIMIT $4"
        }
    }
}

/// Claims due jobs: sets the lease of up to `$4` queued jobs that are due at `$3` and not leased (or whose lease
/// expired), counting the attempt. `{lock}` is PostgreSQL's `FOR UPDATE SKIP LOCKED` (SQLite has one writer).
macro_rules! claim_jobs_sql {
    ($lock:literal) => {
        concat!(
            "UPDATE jobs SET lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1, updated_at = $3
             WHERE id IN (SELECT id FROM jobs WHERE status = 'queued' AND run_at <= $3
                            AND (lease_expires_at IS NULL OR lease_expires_at < $3)
                          ORDER BY run_at, id LIMIT $4 ",
            $lock,
            ")
             RETURNING id, kind, payload, attempts, max_attempts"
        )
    };
}
pub(crate) use claim_jobs_sql;

/// The counts `verify` reports, as SQL valid on both backends.
pub const VERIFY_COUNTS: &str = "SELECT (SELECT COUNT(*) FROM accounts), (SELECT COUNT(*) FROM ledger_transactions),
    (SELECT COUNT(*) FROM entries), (SELECT COUNT(*) FROM bank_payments WHERE status = 'applied')";

/// How many violations of one invariant `verify` lists.
const MAX_PROBLEMS_LISTED: i64 = 20;

/// The checks with `UUID_TEXT(` replaced by the backend's id-printing function, and a bound on the rows.
pub(crate) fn verify_checks(uuid_text_function: &str) -> impl Iterator<Item = (&'static str, String)> {
    VERIFY_CHECKS.iter().map(move |(name, sql)| {
        (*name, format!("{} LIMIT {MAX_PROBLEMS_LISTED}", sql.replace("UUID_TEXT(", uuid_text_function)))
    })
}
