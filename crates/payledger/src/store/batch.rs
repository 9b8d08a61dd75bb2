//! The ledger engine's write contract: [`BatchTx`], the one transaction a batch of commands runs in, and
//! every row it reads or writes.
//!
//! The engine claims and locks through a `BatchTx`, decides without I/O, and hands back a [`Plan`] that
//! holds only rows; each backend writes a plan in full. The types live here, beside the trait, so the store
//! needs nothing from the engine: a new kind of row is a field of `Plan`, a type here, and one writer per
//! backend (each backend destructures `Plan` without `..`, so a field it forgets does not compile).

use std::collections::{HashMap, HashSet};
use std::future::Future;

use payledger_core::balances::{ActivityKind, HoldStatus, OrderId};
use payledger_core::payout::{Actor, PayoutStatus};
use payledger_core::{AccountId, BalanceSheet, BankNotice, EntryDraft, Inn, OperationId, ServiceId, UserId};
use time::OffsetDateTime;
use uuid::Uuid;

use super::event_rows::{AttemptRecord, ClaimedDelivery, EndpointVerdict};
use super::payouts::ClaimedJob;
pub use super::statement_rows::*;
use super::{AccountKind, StoreError};

/// An invalid notice, with the reason it was refused.
#[derive(Debug, Clone)]
pub struct RejectedNotice {
    /// A short reason such as `invalid_data` or `bad_signature`.
    pub reason: String,
    /// The field errors, as JSON text.
    pub details: String,
    /// The raw body, truncated to a bound.
    pub body: String,
    /// When it arrived.
    pub received_at: OffsetDateTime,
}

/// A notice row the batch tries to insert; the unique operation id decides whether it is new.
#[derive(Debug, Clone)]
pub struct NoticeClaim {
    /// The notice.
    pub notice: BankNotice,
    /// `applied` (sync mode, with `transaction_id`) or `received` (async mode).
    pub status: NoticeStatus,
    /// The ledger transaction that will credit it, chosen before the claim so one insert says everything.
    pub transaction_id: Option<Uuid>,
}

/// The life cycle of a stored bank payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeStatus {
    /// Recorded, waiting for the background applier.
    Received,
    /// Credited to the organization.
    Applied,
    /// Refused by the ledger; see its failure reason.
    Failed,
}

impl NoticeStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeStatus::Received => "received",
            NoticeStatus::Applied => "applied",
            NoticeStatus::Failed => "failed",
        }
    }
}

/// A notice stored before this batch, as a replay of it is judged against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredNotice {
    /// The notice first received.
    pub notice: BankNotice,
    /// Why its credit failed (status `failed`), so an exact replay is answered with the same refusal.
    pub failure: Option<String>,
}

impl StoredNotice {
    /// The failure reason of a `failed` row (empty if none was kept), `None` for any other status.
    pub fn new(notice: BankNotice, status: &str, reason: Option<String>) -> StoredNotice {
        let failed = status == NoticeStatus::Failed.as_str();
        StoredNotice { notice, failure: failed.then(|| reason.unwrap_or_default()) }
    }
}

/// A ledger transaction to insert.
#[derive(Debug, Clone)]
pub struct NewTransaction {
    /// Its id.
    pub id: Uuid,
    /// What kind of operation it records.
    pub kind: &'static str,
    /// The unique key that makes it happen at most once, where no other table's unique key does.
    pub idempotency_key: Option<String>,
}

/// A change of a stored notice's status after the ledger decided.
#[derive(Debug, Clone)]
pub struct NoticeUpdate {
    /// Which notice.
    pub operation_id: OperationId,
    /// Its new status.
    pub status: NoticeStatus,
    /// The crediting transaction, when applied.
    pub transaction_id: Option<Uuid>,
    /// Why it failed, when failed.
    pub failure_reason: Option<String>,
}

/// A conflicting notice to keep for operators.
#[derive(Debug, Clone)]
pub struct ConflictRecord {
    /// The operation id both notices carry.
    pub operation_id: OperationId,
    /// The fields that differ, comma-separated.
    pub differing_fields: String,
    /// The later notice as received.
    pub notice: String,
}

/// The rows one batch writes. The engine's answer to each command travels beside it, not in it.
#[derive(Debug, Default)]
pub struct Plan {
    /// New ledger transactions.
    pub transactions: Vec<NewTransaction>,
    /// Their entries, with the transaction each belongs to.
    pub entries: Vec<(Uuid, EntryDraft)>,
    /// Status changes of stored notices.
    pub notice_updates: Vec<NoticeUpdate>,
    /// Conflicting notices.
    pub conflicts: Vec<ConflictRecord>,
    /// Rejected notices.
    pub rejected: Vec<RejectedNotice>,
    /// New lines of users' histories.
    pub activity: Vec<ActivityLine>,
    /// Reservations placed or settled.
    pub holds: Vec<HoldWrite>,
    /// Idempotency keys with their stored responses.
    pub keys: Vec<NewKey>,
    /// Payouts created or changed, in their final state.
    pub payouts: Vec<PayoutState>,
    /// Payout status changes to append to their history.
    pub payout_events: Vec<PayoutEvent>,
    /// Jobs to enqueue.
    pub new_jobs: Vec<NewJob>,
    /// Jobs that end with this batch's payout changes.
    pub job_ends: Vec<JobEnd>,
    /// Audit rows of the changes users asked for.
    pub audit: Vec<AuditEntry>,
    /// Accounts this batch opened but did not use, to delete again.
    pub unused_accounts: Vec<AccountId>,
    /// Reconciliation discrepancies accepted or resolved.
    pub discrepancy_updates: Vec<DiscrepancyUpdate>,
    /// Account sections of statement imports this batch started.
    pub import_sections: Vec<ImportSection>,
    /// Statement lines matched with payments.
    pub statement_matches: Vec<NewMatch>,
    /// Discrepancies found.
    pub new_discrepancies: Vec<NewDiscrepancy>,
    /// Payments credited from statement lines (source `statement`, status `applied`).
    pub statement_payments: Vec<StatementPayment>,
    /// New notices that repeat a payment applied from the statement: recorded `duplicate`, never credited.
    pub late_notices: Vec<LateNotice>,
    /// Matches whose payment this batch inserts, named by its operation id (its row id is not known yet).
    pub matches_by_operation: Vec<MatchByOperation>,
    /// Payments matched to a line: their open `notice_without_line` discrepancy is resolved (`matched`).
    pub matched_payments: Vec<i64>,
    /// Imports this batch finished: marked `complete` (their rows were locked in the import phase).
    pub completed_imports: Vec<i64>,
    /// Outbound events reporting this batch's changes (the outbox), in the order the changes were decided.
    pub events: Vec<NewEvent>,
    /// Not a row: the event types this batch builds events of (`decide` sets it from `Submitted`).
    pub wanted_events: WantedEvents,
}

/// The event types a batch builds events of: those some enabled endpoint subscribes to, read at the batch's
/// start. An event nobody wants is neither built (its JSON, on the writer's thread) nor stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WantedEvents {
    /// The enabled endpoints' subscriptions: event types, or [`ALL_TYPES`].
    subscriptions: Vec<String>,
}

impl WantedEvents {
    /// No event at all (no enabled endpoint).
    pub const NONE: WantedEvents = WantedEvents { subscriptions: Vec::new() };

    /// The events these subscriptions want.
    pub fn new(mut subscriptions: Vec<String>) -> WantedEvents {
        subscriptions.sort_unstable();
        subscriptions.dedup();
        WantedEvents { subscriptions }
    }

    /// Whether some subscription wants an event of type `kind` ([`wants`]).
    pub fn wants(&self, kind: &str) -> bool {
        self.subscriptions.iter().any(|subscribed| wants(subscribed, kind))
    }

    /// Whether any event is wanted.
    pub fn any(&self) -> bool {
        !self.subscriptions.is_empty()
    }
}

/// An outbound event to write in its change's batch. Its `seq` (its version) is taken when it is written, after
/// the batch holds the locks of what it reports; the same write makes its deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// What receivers see as `webhook-id`: `evt_` and 32 hex digits.
    pub id: String,
    /// Its type's name, e.g. `bank_payment.credited`.
    pub kind: &'static str,
    /// The resource as the API shows it, a JSON object without its version.
    pub data: String,
}

/// The subscription that stands for every event type but the ones in [`NAMED_ONLY`].
pub const ALL_TYPES: &str = "*";

/// The event types an endpoint gets only when it names them (`events::EventType::BankPaymentRejected`).
pub const NAMED_ONLY: [&str; 1] = ["bank_payment.rejected"];

/// Whether a subscription to `subscribed` (a type's name or [`ALL_TYPES`]) wants an event of type `kind`. The
/// PostgreSQL batch states the same rule in SQL (`store/postgres_events.rs`).
pub fn wants(subscribed: &str, kind: &str) -> bool {
    subscribed == kind || (subscribed == ALL_TYPES && !NAMED_ONLY.contains(&kind))
}

impl NewEvent {
    /// A new event with a fresh id.
    pub fn new(kind: &'static str, data: String) -> NewEvent {
        NewEvent { id: format!("evt_{}", Uuid::now_v7().simple()), kind, data }
    }
}

/// A response as the client first got it; a replay sends exactly this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: String,
}

/// One line of a user's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityLine {
    /// Its id, increasing in the order lines were applied to the account.
    pub id: i64,
    /// The user's account.
    pub account: AccountId,
    /// The user.
    pub user: UserId,
    /// What happened.
    pub kind: ActivityKind,
    /// The change of the user's available balance, in minor units.
    pub amount: i64,
    /// The change of the user's reserved (held) money, in minor units.
    pub held_change: i64,
    /// The other user of a transfer.
    pub counterparty: Option<UserId>,
    /// The service and order of a reservation, capture or release.
    pub order: Option<(ServiceId, OrderId)>,
    /// The payout whose hold, payment or return this is.
    pub payout: Option<Uuid>,
    /// The ledger transaction, when the balance changed.
    pub transaction_id: Option<Uuid>,
    /// When it was applied.
    pub created_at: OffsetDateTime,
}

/// A stored idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The fingerprint of the request that used it.
    pub fingerprint: String,
    /// The response that request got.
    pub response: StoredResponse,
}

/// A new idempotency key to store.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The key.
    pub key: String,
    /// The request's fingerprint.
    pub fingerprint: String,
    /// The response.
    pub response: StoredResponse,
}

/// What the store found of the batch's idempotency keys.
#[derive(Debug, Default)]
pub struct KeyClaims {
    /// Keys another transaction is applying right now.
    pub in_flight: HashSet<String>,
    /// Keys stored by committed transactions.
    pub stored: HashMap<String, StoredKey>,
}

/// A reservation as the batch sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldState {
    /// Whether this batch placed it.
    pub is_new: bool,
    /// The account whose money it holds.
    pub account: AccountId,
    /// The held amount, in minor units.
    pub amount: i64,
    /// Its status.
    pub status: HoldStatus,
    /// The transaction that captured it.
    pub transaction_id: Option<Uuid>,
}

/// A reservation to insert or update.
#[derive(Debug, Clone)]
pub struct HoldWrite {
    /// Its unique reference.
    pub reference: String,
    /// Its final state in this batch.
    pub state: HoldState,
}

/// The job kind that processes a payout.
pub const PROCESS_PAYOUT_JOB: &str = "process_payout";

/// The reservation that holds a payout's amount on its source account.
pub fn hold_reference(id: Uuid) -> String {
    format!("payout:{id}")
}

/// Where a payout's money comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PayoutSource {
    /// An organization's account, by INN.
    Organization(Inn),
    /// A user's account.
    User(UserId),
}

impl PayoutSource {
    /// The stored kind.
    pub fn kind(&self) -> &'static str {
        match self {
            PayoutSource::Organization(_) => "organization",
            PayoutSource::User(_) => "user",
        }
    }

    /// The stored key (INN or user id).
    pub fn key(&self) -> String {
        match self {
            PayoutSource::Organization(inn) => inn.to_string(),
            PayoutSource::User(user) => user.to_string(),
        }
    }
}

/// The recipient as stored: what may be shown, and the encrypted full number.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredRecipient {
    /// `card` or `bank_account`.
    pub kind: &'static str,
    /// The last four digits of the card or account number.
    pub last4: String,
    /// The holder's name.
    pub holder: String,
    /// The bank's BIK, for a bank account.
    pub bik: Option<String>,
    /// The full details, encrypted by the card vault.
    pub secret: String,
}

impl std::fmt::Debug for StoredRecipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredRecipient").field("kind", &self.kind).field("last4", &self.last4).finish_non_exhaustive()
    }
}

/// How a job ends, in the same transaction as the payout change it led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEnd {
    /// The job.
    pub job_id: i64,
    /// The worker that must still hold the job's lease (a worker whose lease expired and was taken over
    /// records nothing); `None` for an operator ending a dead job.
    pub owner: Option<String>,
    /// Dead (attempts exhausted) rather than done.
    pub dead: bool,
    /// The last error, for a dead job.
    pub error: Option<String>,
}

/// A payout as the batch sees (and leaves) it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutState {
    /// Whether this batch creates it.
    pub is_new: bool,
    /// Its id.
    pub id: Uuid,
    /// The amount in minor units.
    pub amount: i64,
    /// The currency code.
    pub currency: &'static str,
    /// The status.
    pub status: PayoutStatus,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// Gateway attempts so far.
    pub attempts: i32,
    /// The gateway's reference.
    pub gateway_reference: Option<String>,
    /// The description.
    pub description: String,
    /// The source account: its kind, key and id.
    pub source: Option<(PayoutSource, AccountId)>,
    /// Set once archived.
    pub archived: bool,
    /// The recipient (only for a new payout: stored rows keep theirs).
    pub recipient: Option<StoredRecipient>,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
}

/// One status change to append to a payout's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutEvent {
    /// The payout.
    pub payout_id: Uuid,
    /// The status before (none on creation).
    pub from: Option<PayoutStatus>,
    /// The status after, or `archived`.
    pub to: &'static str,
    /// Who made the change.
    pub actor: Actor,
    /// Why.
    pub reason: Option<String>,
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// Its kind.
    pub kind: &'static str,
    /// What it works on.
    pub payload: String,
    /// How many attempts it gets.
    pub max_attempts: i32,
}

/// One privileged action, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Who did it (a username, or `cli` / `bootstrap`).
    pub actor: String,
    /// What, e.g. `user.create`.
    pub action: String,
    /// On what, e.g. `user:alice`.
    pub target: String,
    /// The state before, as JSON (secrets left out).
    pub before: Option<String>,
    /// The state after, as JSON (secrets left out).
    pub after: Option<String>,
    /// The request that asked for it (its id and client), if one did: not the CLI, a worker or the bank.
    pub origin: Option<crate::origin::RequestOrigin>,
}

impl AuditEntry {
    /// The id of the request that asked for it, as stored.
    pub fn request_id(&self) -> Option<&str> {
        self.origin.as_ref().map(|origin| origin.id.as_str())
    }

    /// The address of the client that asked for it, as stored.
    pub fn client_address(&self) -> Option<String> {
        self.origin.as_ref().and_then(|origin| origin.client).map(|address| address.to_string())
    }
}

/// The write side of one batch transaction. The engine drives it; each backend implements it.
pub trait BatchTx: OutboxTx {
    /// Inserts the notice rows whose operation id is new and returns those ids.
    fn claim_notices(
        &mut self,
        claims: &[NoticeClaim],
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<HashSet<OperationId>, StoreError>>;
    /// Creates, inside this transaction, the organizations and accounts that do not exist yet, in ascending
    /// INN order, and returns every account id.
    fn ensure_organizations(
        &mut self,
        orgs: &[(Inn, String)],
    ) -> impl Future<Output = Result<Vec<(Inn, AccountId)>, StoreError>>;
    /// Loads stored notices by operation id, with the reason of each one whose credit failed.
    fn stored_notices(
        &mut self,
        ids: &[OperationId],
    ) -> impl Future<Output = Result<HashMap<OperationId, StoredNotice>, StoreError>>;
    /// Locks the recorded notices among `ids` that still wait to be applied and returns their ids.
    fn lock_waiting(&mut self, ids: &[OperationId]) -> impl Future<Output = Result<HashSet<OperationId>, StoreError>>;
    /// Finds the stored keys among `keys` and tells which are in use by another open transaction; never
    /// waits for one.
    fn claim_keys(&mut self, keys: &[String]) -> impl Future<Output = Result<KeyClaims, StoreError>>;
    /// Locks the reservations with these references (ascending) and loads them.
    fn lock_holds(
        &mut self,
        references: &[String],
    ) -> impl Future<Output = Result<HashMap<String, HoldState>, StoreError>>;
    /// The ids of the existing accounts of this kind with these keys.
    fn find_accounts(
        &mut self,
        kind: AccountKind,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<(String, AccountId)>, StoreError>>;
    /// Creates the accounts of this kind that do not exist yet, in ascending key order, and returns every
    /// one's id.
    fn create_accounts(
        &mut self,
        kind: AccountKind,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<(String, AccountId)>, StoreError>>;
    /// Claims up to `limit` due jobs for `owner` until `lease`, inside this batch.
    fn claim_jobs(
        &mut self,
        owner: &str,
        now: OffsetDateTime,
        lease: OffsetDateTime,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<ClaimedJob>, StoreError>>;
    /// Locks the jobs with these ids (ascending) and loads their status and lease owner.
    fn lock_jobs(
        &mut self,
        ids: &[i64],
    ) -> impl Future<Output = Result<HashMap<i64, (String, Option<String>)>, StoreError>>;
    /// Inserts the statement imports whose SHA-256 is new (ascending), state `loading`, and returns every
    /// claimed import's row, new or found (a found one locked).
    fn claim_imports(
        &mut self,
        claims: &[ImportClaim],
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<HashMap<[u8; 32], ClaimedImport>, StoreError>>;
    /// The accounts of each of these imports' stored sections, ascending: what a resumed import must have.
    fn import_accounts(&mut self, ids: &[i64]) -> impl Future<Output = Result<HashMap<i64, Vec<String>>, StoreError>>;
    /// Inserts the statement lines that are new (by account, booking date, fingerprint and occurrence) and returns, for each
    /// line in order, its new id or `None` if it was stored before.
    fn insert_statement_lines(
        &mut self,
        lines: &[NewStatementLine<'_>],
    ) -> impl Future<Output = Result<Vec<Option<i64>>, StoreError>>;
    /// The applied or received payments, not late notices and not matched to a line, with these (payer INN,
    /// document number) pairs or these operation ids.
    fn payment_candidates(
        &mut self,
        documents: &[(String, String)],
        operation_ids: &[Uuid],
    ) -> impl Future<Output = Result<Vec<PaymentCandidate>, StoreError>>;
    /// Lock phase 0: serializes every reconciliation decision across instances (PostgreSQL's transaction-scoped
    /// advisory lock; nothing on SQLite, whose one writer serializes everything).
    fn lock_reconciliation(&mut self) -> impl Future<Output = Result<(), StoreError>>;
    /// The statement lines operators apply, with their match and discrepancy.
    fn apply_targets(
        &mut self,
        line_ids: &[i64],
    ) -> impl Future<Output = Result<HashMap<i64, ApplyTarget>, StoreError>>;
    /// Statement-sourced applied payments with these documents' (payer INN, document number), and unmatched
    /// credit lines with their (document date, payer INN, document number).
    fn notice_counterparts(
        &mut self,
        documents: &[NoticeDocument],
    ) -> impl Future<Output = Result<Vec<NoticeCounterpart>, StoreError>>;
    /// The credit lines booked before `today` that are neither matched nor judged (the pending lines of days
    /// that have closed since they were stored), ascending id.
    fn pending_lines(&mut self, today: time::Date) -> impl Future<Output = Result<Vec<PendingLine>, StoreError>>;
    /// The applied webhook payments with a document date in `from..before` that no line is matched to and no
    /// `notice_without_line` names, ascending id.
    fn unlined_payments(
        &mut self,
        from: OffsetDateTime,
        before: OffsetDateTime,
    ) -> impl Future<Output = Result<Vec<UnlinedPayment>, StoreError>>;
    /// Every import's account sections, each marked complete when its import is complete or among `finishing`.
    fn section_periods(&mut self, finishing: &[i64]) -> impl Future<Output = Result<Vec<SectionPeriod>, StoreError>>;
    /// Locks the reconciliation discrepancies with these ids (ascending) and loads their kind and state.
    fn lock_discrepancies(
        &mut self,
        ids: &[i64],
    ) -> impl Future<Output = Result<HashMap<i64, LockedDiscrepancy>, StoreError>>;
    /// Locks the payouts with these ids (ascending) and loads them.
    fn lock_payouts(&mut self, ids: &[Uuid]) -> impl Future<Output = Result<HashMap<Uuid, PayoutState>, StoreError>>;
    /// The time this batch applies at: the database's clock where it has one shared by every instance.
    fn clock(&mut self) -> impl Future<Output = Result<OffsetDateTime, StoreError>>;
    /// Reserves `count` new, increasing history line ids.
    fn allocate_line_ids(&mut self, count: usize) -> impl Future<Output = Result<Vec<i64>, StoreError>>;
    /// Locks the accounts in ascending id order and loads their balances.
    fn lock_accounts(&mut self, ids: &[AccountId]) -> impl Future<Output = Result<BalanceSheet, StoreError>>;
    /// Writes every row of the plan and the final balances of `touched` accounts.
    fn write_plan(
        &mut self,
        plan: &Plan,
        sheet: &BalanceSheet,
        touched: &[AccountId],
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>>;
    /// Commits durably.
    fn commit(self) -> impl Future<Output = Result<(), StoreError>>;
    /// Rolls back everything the batch did, at once (dropping the transaction would also roll it back, but
    /// on PostgreSQL only when its connection is next used, holding its locks until then).
    fn rollback(self) -> impl Future<Output = Result<(), StoreError>>;
}

/// The outbox's side of a batch transaction, implemented next to each backend's outbox: which events a batch
/// builds, and the delivery workers' rounds (`store/delivery_rounds.rs`).
pub trait OutboxTx {
    /// The event types some enabled endpoint subscribes to, as of now.
    fn wanted_events(&mut self) -> impl Future<Output = Result<WantedEvents, StoreError>>;
    /// Records finished delivery attempts, each `(owner, record)` (ascending delivery id): each delivery's new
    /// state and, unless it was deferred, the attempt in the log. Returns the records kept, by delivery and
    /// lease: a delivery no longer under its record's lease is left as it is.
    fn record_attempts(
        &mut self,
        records: &[(&str, &AttemptRecord)],
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<HashSet<(i64, OffsetDateTime)>, StoreError>>;
    /// A round's verdict on an endpoint: a success ends its failure window, failures start one (or continue it);
    /// a 410, or a window begun before `failing_before`, disables it with an audit row. True if this disabled it.
    fn judge_endpoint(
        &mut self,
        endpoint: &str,
        verdict: EndpointVerdict,
        now: OffsetDateTime,
        failing_before: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, StoreError>>;
    /// Claims up to `limit` due deliveries of enabled endpoints not in `excluding` for `owner` until `lease`.
    fn claim_deliveries(
        &mut self,
        owner: &str,
        now: OffsetDateTime,
        lease: OffsetDateTime,
        limit: i64,
        excluding: &[String],
    ) -> impl Future<Output = Result<Vec<ClaimedDelivery>, StoreError>>;
}
