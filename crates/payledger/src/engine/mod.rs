//! The ledger engine: the only code that writes balances.
//!
//! Callers submit a [`WriteCommand`] and await its [`WriteOutcome`]. One writer thread per process drains
//! everything waiting in its queue (up to [`MAX_BATCH_COMMANDS`], with no timer), applies the batch in ONE
//! database transaction, commits, and only then answers every caller. A refused command (insufficient funds,
//! say) is refused alone.
//!
//! When a batch fails before its COMMIT, nothing was applied, so it may run again:
//! - a batch that lost a unique-key race to another instance runs once more;
//! - a batch whose pooled connection turned out dead (the database restarted) runs again on the next
//!   connection, up to once per pooled connection and once more;
//! - any other failure, even one that looks like an outage, may be the batch's size or one bad command
//!   (too many locks, a temp-file limit, a statement timeout), so its commands are retried one by one. The
//!   first command that fails ALONE with an outage error ([`StoreError::is_connection_failure`]) ends the
//!   retries and the commands after it get 503 `unavailable` at once: a real outage costs one extra attempt,
//!   not one per command, and any other failure leaves only the guilty command with 503. Only a batch that
//!   got no connection at all (the pool's acquire timed out) fails at once: nothing of it reached the database.
//!
//! A failed COMMIT is never retried: the batch may have committed, so its callers get 503 `unconfirmed`.

pub mod audit;
pub mod balances;
pub mod batch;
mod events;
mod failure;
pub mod judging;
mod locks;
pub mod payouts;
mod queue;
pub mod reconcile;
mod statement_apply;
mod statement_claims;
mod statement_lines;
pub mod statements;

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use payledger_core::{AccountId, BalanceOperation, Inn, ServiceId, UserId};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::origin::RequestOrigin;
use crate::store::batch::{HoldState, KeyClaims, PayoutSource};
use crate::store::{AccountKind, BatchTx, PgStore, SqliteWriter, Store, StoreError};
use balances::{BalanceAccounts, BatchLedger, max_lines};
use batch::{AccountMap, Claims, WriteCommand, WriteOutcome, decide};
use failure::{AfterFailure, BatchFailure, after_batch_failure, ends_one_by_one, fail_all, fail_untried};
use locks::{CommandKinds, Locked, lock_rows, sorted_unique};
pub use queue::{Accept, AtomicOutcome};
use queue::{AtomicGroup, Queued, QueuedCommand};

/// The most commands one batch transaction applies.
pub const MAX_BATCH_COMMANDS: usize = 1024;
/// How many commands may wait for the writer before new ones are refused with 503.
pub const QUEUE_CAPACITY: usize = 32_768;
/// How many times a batch runs again after its connection turned out dead: a database restart leaves every
/// pooled connection dead and each fails once, fast, so one rerun per pooled connection and one on a fresh one.
const LOST_CONNECTION_RERUNS: usize = crate::store::PG_MAX_CONNECTIONS as usize + 1;

/// Why the engine could not give a command an outcome. Every variant means "retry"; only a command that
/// carries its own key (an idempotency key, a bank operation id) is then applied at most once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The queue is full.
    #[error("the ledger is overloaded")]
    Overloaded,
    /// The database failed the batch before its commit; it was rolled back and nothing was applied.
    #[error("the ledger's database is unavailable")]
    Unavailable,
    /// The commit failed: the batch may or may not have been applied. A retry with the same idempotency key
    /// (or bank operation id) is safe; a retry without one may apply the operation twice.
    #[error("the ledger's database failed while committing; the outcome is unknown")]
    Unconfirmed,
    /// The engine is shutting down.
    #[error("the ledger is shutting down")]
    Stopped,
}

/// A handle to the writer task; cheap to clone.
#[derive(Clone, Debug)]
pub struct LedgerEngine {
    queue: mpsc::Sender<Queued>,
    /// Room for the commands of atomic groups waiting or being applied: a group is one entry of the queue, so
    /// without this bound of its own (as large as the queue's) the writer's backlog would have none.
    atomic_room: std::sync::Arc<tokio::sync::Semaphore>,
}

impl LedgerEngine {
    /// Starts the writer on a thread of its own. It stops once every handle is dropped and the queue is
    /// drained; await the returned [`WriterHandle`] to know it has.
    ///
    /// The writer gets a dedicated thread because on SQLite it runs every statement synchronously on its
    /// own connection (no hand-off per statement), and a blocked writer must not hold up a runtime worker.
    pub async fn start(store: &Store) -> Result<(LedgerEngine, WriterHandle), StoreError> {
        let system = SystemAccounts {
            bank_inflow: store.system_account(crate::store::BANK_INFLOW_ACCOUNT).await?,
            deposits: store.system_account(crate::store::USER_DEPOSITS_ACCOUNT).await?,
            withdrawals: store.system_account(crate::store::USER_WITHDRAWALS_ACCOUNT).await?,
            payout_clearing: store.system_account(crate::store::PAYOUT_CLEARING_ACCOUNT).await?,
        };
        let connection = match store {
            Store::Sqlite(store) => WriteConnection::Sqlite(store.open_writer()?),
            Store::Postgres(store) => WriteConnection::Postgres(store.clone()),
        };
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let writer = Writer { connection, state: WriterState { system, known: KnownAccounts::default() } };
        let runtime = tokio::runtime::Handle::current();
        let (done, finished) = oneshot::channel();
        std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || {
                runtime.block_on(writer.run(receiver));
                let _ = done.send(());
            })
            .map_err(|error| StoreError::Database(sqlx::Error::Io(error)))?;
        let atomic_room = std::sync::Arc::new(tokio::sync::Semaphore::new(QUEUE_CAPACITY));
        Ok((LedgerEngine { queue, atomic_room }, WriterHandle { finished }))
    }

    /// Whether the writer is still taking commands (for health checks).
    pub fn is_running(&self) -> bool {
        !self.queue.is_closed()
    }
}

/// Resolves when the writer thread has drained its queue and stopped.
#[derive(Debug)]
pub struct WriterHandle {
    finished: oneshot::Receiver<()>,
}

impl WriterHandle {
    /// Waits for the writer to stop.
    pub async fn stopped(self) {
        let _ = self.finished.await;
    }
}

/// The writer's own way to the database.
enum WriteConnection {
    Sqlite(SqliteWriter),
    Postgres(PgStore),
}

/// A batch as the writer applies it.
#[derive(Clone, Copy)]
struct Batch<'a> {
    commands: &'a [WriteCommand],
    /// `origins[i]` is the request `commands[i]` was submitted for.
    origins: &'a [Option<RequestOrigin>],
    /// For an atomic group: what its caller accepts; the batch commits only if every outcome is accepted.
    accept: Option<Accept>,
    /// The time claims are dated with.
    now: OffsetDateTime,
}

/// A batch's outcomes, and whether it was committed (an atomic group that was not accepted is rolled back).
struct Applied {
    outcomes: Vec<WriteOutcome>,
    committed: bool,
}

/// Records a batch's size and time.
fn record_batch(commands: usize, started: Instant) {
    // A batch is at most MAX_BATCH_COMMANDS long, or an atomic group (at most what a request may carry), so
    // it fits a u32 exactly.
    metrics::histogram!("payledger_ledger_batch_commands").record(u32::try_from(commands).unwrap_or(u32::MAX));
    metrics::histogram!("payledger_ledger_batch_seconds").record(started.elapsed());
}

/// Sends each caller its outcome; outcomes come in command order, one per command.
fn answer(replies: Vec<Reply>, outcomes: Vec<WriteOutcome>) {
    debug_assert_eq!(replies.len(), outcomes.len(), "one outcome per command");
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        // A caller that went away (client disconnected) still had its command applied.
        let _ = reply.send(Ok(outcome));
    }
}

type Reply = oneshot::Sender<Result<WriteOutcome, EngineError>>;

struct Writer {
    connection: WriteConnection,
    state: WriterState,
}

/// The system accounts the engine moves money through.
#[derive(Debug, Clone, Copy)]
struct SystemAccounts {
    /// Mirrors money received from the bank.
    bank_inflow: AccountId,
    /// Debited by users' deposits.
    deposits: AccountId,
    /// Credited by users' withdrawals.
    withdrawals: AccountId,
    /// Where completed payouts' money goes.
    payout_clearing: AccountId,
}

/// Accounts known to exist, by what owns them. Accounts are never deleted, so this only grows.
#[derive(Debug, Default)]
struct KnownAccounts {
    organizations: HashMap<Inn, AccountId>,
    users: HashMap<UserId, AccountId>,
    services: HashMap<ServiceId, AccountId>,
}

impl KnownAccounts {
    fn extend(&mut self, other: KnownAccounts) {
        self.organizations.extend(other.organizations);
        self.users.extend(other.users);
        self.services.extend(other.services);
    }
}

/// What the writer remembers between batches.
struct WriterState {
    system: SystemAccounts,
    known: KnownAccounts,
}

impl Writer {
    async fn run(mut self, mut receiver: mpsc::Receiver<Queued>) {
        let mut queued = Vec::with_capacity(MAX_BATCH_COMMANDS);
        let mut batch = Vec::with_capacity(MAX_BATCH_COMMANDS);
        while receiver.recv_many(&mut queued, MAX_BATCH_COMMANDS).await > 0 {
            // In arrival order: the commands queued before an atomic group commit before it.
            for entry in queued.drain(..) {
                match entry {
                    Queued::One(command) => batch.push(command),
                    Queued::Atomic(group) => {
                        self.run_batch(&mut batch).await;
                        self.run_atomic(group).await;
                    }
                }
            }
            self.run_batch(&mut batch).await;
        }
        tracing::info!("ledger writer stopped");
    }

    /// Applies the commands waiting in `queued` as one batch and answers their callers.
    async fn run_batch(&mut self, queued: &mut Vec<QueuedCommand>) {
        if queued.is_empty() {
            return;
        }
        let started = Instant::now();
        let mut commands = Vec::with_capacity(queued.len());
        let mut origins = Vec::with_capacity(queued.len());
        let mut replies = Vec::with_capacity(queued.len());
        for QueuedCommand { command, origin, reply } in queued.drain(..) {
            commands.push(command);
            origins.push(origin);
            replies.push(reply);
        }
        let result = self.apply_rerunning(&commands, &origins, None).await;
        record_batch(commands.len(), started);
        match result {
            Ok(applied) => answer(replies, applied.outcomes),
            Err(failure) => match after_batch_failure(commands.len(), &failure) {
                AfterFailure::RetryOneByOne => {
                    tracing::warn!(error = %failure.error, commands = commands.len(), "ledger batch failed; retrying its commands one by one");
                    self.apply_one_by_one(commands, &origins, replies).await;
                }
                AfterFailure::FailAll => fail_all(replies, &failure),
            },
        }
    }

    /// Applies an atomic group as a batch of its own, committed only if its caller accepts every outcome. A
    /// failed group is never split: its caller gets 503, as one command would.
    async fn run_atomic(&mut self, group: AtomicGroup) {
        let started = Instant::now();
        let AtomicGroup { commands, origin, accept, reply, room } = group;
        let origins = vec![origin; commands.len()];
        let result = self.apply_rerunning(&commands, &origins, Some(accept)).await;
        record_batch(commands.len(), started);
        let answer = match result {
            Ok(Applied { outcomes, committed }) => Ok(AtomicOutcome { committed, outcomes }),
            Err(failure) => Err(failure::failed(&failure, commands.len())),
        };
        let _ = reply.send(answer);
        drop(room);
    }

    /// Applies each command of a failed batch alone, so that only a command that itself fails gets 503. The
    /// first one that fails alone with an outage error ends it: the rest get 503 `unavailable` untried, since
    /// each would only wait for the same outage.
    async fn apply_one_by_one(
        &mut self,
        commands: Vec<WriteCommand>,
        origins: &[Option<RequestOrigin>],
        replies: Vec<Reply>,
    ) {
        let mut replies = replies.into_iter();
        for (index, command) in commands.into_iter().enumerate() {
            let Some(reply) = replies.next() else { return };
            let origin = origins.get(index..=index).unwrap_or_default();
            match self.apply_rerunning(std::slice::from_ref(&command), origin, None).await {
                Ok(applied) => answer(vec![reply], applied.outcomes),
                Err(failure) => {
                    let outage = ends_one_by_one(&failure);
                    fail_all(vec![reply], &failure);
                    if outage {
                        let untried: Vec<Reply> = replies.by_ref().collect();
                        if !untried.is_empty() {
                            tracing::warn!(
                                untried = untried.len(),
                                "the database is out; the rest of the failed batch gets 503 untried"
                            );
                            fail_untried(untried);
                        }
                        return;
                    }
                }
            }
        }
    }

    /// Applies a batch, running it again where that is safe and likely to succeed: once after it lost a
    /// unique-key race to another instance, and up to [`LOST_CONNECTION_RERUNS`] times after its pooled
    /// connection turned out dead. Either way it failed before its COMMIT was sent, so nothing was applied.
    async fn apply_rerunning(
        &mut self,
        commands: &[WriteCommand],
        origins: &[Option<RequestOrigin>],
        accept: Option<Accept>,
    ) -> Result<Applied, BatchFailure> {
        let mut result = self.apply(commands, origins, accept).await;
        // Another instance committed a row with a key this batch also inserts (the same reservation, say)
        // after this batch looked. Run the batch again: this time it finds that row and decides accordingly.
        if let Err(failure) = &result
            && !failure.committing
            && failure.error.is_unique_violation()
        {
            tracing::debug!(error = %failure.error, "ledger batch raced another instance; running it again");
            result = self.apply(commands, origins, accept).await;
        }
        // The database restarted since the pool opened its connections: each of them fails once, fast. Run
        // the batch again on the next one rather than answer 503 to every caller for a connection the pool
        // then drops. Once the dead ones are gone, a database that is still away fails the acquire instead.
        for _ in 0..LOST_CONNECTION_RERUNS {
            match &result {
                Err(failure) if !failure.committing && failure.error.is_lost_connection() => {
                    tracing::warn!(error = %failure.error, "ledger batch lost its connection; running it again");
                    result = self.apply(commands, origins, accept).await;
                }
                _ => break,
            }
        }
        result
    }

    async fn apply(
        &mut self,
        commands: &[WriteCommand],
        origins: &[Option<RequestOrigin>],
        accept: Option<Accept>,
    ) -> Result<Applied, BatchFailure> {
        let submitted = Batch { commands, origins, accept, now: crate::timefmt::to_micros(OffsetDateTime::now_utc()) };
        let (applied, learned) = match &mut self.connection {
            WriteConnection::Sqlite(writer) => {
                let tx = writer.begin_batch().map_err(BatchFailure::before_commit)?;
                self.state.decide_and_write(tx, submitted).await?
            }
            WriteConnection::Postgres(store) => {
                let tx = store.begin_batch(commands.len()).await.map_err(BatchFailure::before_commit)?;
                self.state.decide_and_write(tx, submitted).await?
            }
        };
        // Only committed accounts are remembered; a rolled-back batch created nothing.
        if applied.committed {
            self.state.known.extend(learned);
        }
        Ok(applied)
    }
}

impl WriterState {
    /// Claims, locks, decides and writes one batch inside `tx`, then commits. Returns the outcomes and the
    /// accounts this batch looked up or created.
    ///
    /// Every transaction takes its locks in the same phases, each in ascending key order: the reconciliation
    /// advisory lock (phase 0, PostgreSQL, for batches with notices or statement commands), new notice ids,
    /// idempotency keys (never waited for: a key in use elsewhere is answered "in flight"), recorded notices
    /// waiting to be applied, payouts, their jobs, reservations, statement imports, reconciliation discrepancies,
    /// new account keys, and finally account rows; after them job claims and (SQLite's) event delivery rounds,
    /// which lock deliveries and endpoints in ascending id and skip what is locked elsewhere.
    /// Two writers can therefore never wait on each other in a cycle, whichever instances they run in.
    async fn decide_and_write<T: BatchTx>(
        &self,
        mut tx: T,
        batch: Batch<'_>,
    ) -> Result<(Applied, KnownAccounts), BatchFailure> {
        let Batch { commands, origins, accept, now } = batch;
        let started = Instant::now();
        let kinds = CommandKinds::of(commands);
        let locked = lock_rows(&mut tx, commands, &kinds, now).await?;
        let claimed_after = started.elapsed();
        let mut learned = KnownAccounts::default();
        let accounts = self.accounts(&mut tx, commands, &kinds, &locked, &mut learned).await?;
        let mut sheet = tx.lock_accounts(&accounts.touched).await?;
        let locked_after = started.elapsed();

        // History ids and times are taken under the account locks, so each account's lines are numbered and
        // dated in the order they are applied, whichever instance applies them.
        let line_count = kinds.balances.iter().map(|c| max_lines(&c.operation)).sum::<usize>() + kinds.payouts.len();
        let line_ids = tx.allocate_line_ids(line_count).await?;
        // The database's clock on PostgreSQL, so instances with skewed clocks still date lines in commit order.
        let applied_at = crate::timefmt::to_micros(tx.clock().await?);
        let balance_accounts = BalanceAccounts {
            users: &accounts.users,
            services: &accounts.services,
            deposits: self.system.deposits,
            withdrawals: self.system.withdrawals,
            payout_clearing: self.system.payout_clearing,
        };
        let Locked { claim_rows, claims, keys, payouts, jobs, holds } = locked;
        let mut ledger =
            BatchLedger::new(balance_accounts, keys, holds, line_ids, applied_at).opening_accounts_of(accounts.opened);
        let organizations = AccountMap { organizations: &accounts.organizations, bank_inflow: self.system.bank_inflow };
        let mut payout_states = payouts::PayoutStates::new(payouts, accounts.sources);
        payout_states.jobs = jobs;
        // Job claims last: they lock nothing the other phases wait for (a claim skips leased jobs).
        for (index, command) in commands.iter().enumerate() {
            if let WriteCommand::ClaimJobs(claim) = command {
                let jobs = tx.claim_jobs(&claim.owner, applied_at, applied_at + claim.lease, claim.limit).await?;
                payout_states.claimed_jobs.insert(index, jobs);
            }
        }
        // Delivery rounds (on SQLite; see `store/delivery_rounds.rs`) likewise: only deliveries and endpoints.
        let rounds = commands.iter().enumerate().filter_map(|(index, command)| match command {
            WriteCommand::Deliveries(round) => Some((index, round)),
            _ => None,
        });
        let mut rounds =
            crate::store::delivery_rounds::run_indexed_rounds(&mut tx, rounds.collect(), applied_at).await?;
        // Read after every lock wait: an endpoint registered while this batch waited for its locks (on
        // PostgreSQL; SQLite's batch holds the write lock from its start) still gets the batch's events.
        let wanted_events = tx.wanted_events().await?;
        let (mut plan, mut outcomes) = decide(
            batch::Submitted { commands, origins, wanted_events: &wanted_events },
            &claims,
            &claim_rows,
            &organizations,
            &mut ledger,
            &mut payout_states,
            &mut sheet,
        );
        for (index, outcome) in outcomes.iter_mut().enumerate() {
            if let Some(round) = rounds.remove(&index) {
                *outcome = WriteOutcome::Deliveries(round);
            }
        }
        // An account opened for a deposit that did not run (its key was reused, say) is removed again: only a
        // deposit opens an account.
        for (user, account) in ledger.unopened_accounts() {
            plan.unused_accounts.push(account);
            learned.users.remove(&user);
        }
        // An atomic group that is not accepted whole ends here, and everything it claimed is rolled back.
        if accept.is_some_and(|accept| !outcomes.iter().all(accept)) {
            tx.rollback().await?;
            return Ok((Applied { outcomes, committed: false }, learned));
        }
        tx.write_plan(&plan, &sheet, &accounts.touched, applied_at).await?;
        let written_after = started.elapsed();
        tx.commit().await.map_err(|error| BatchFailure { error, committing: true })?;
        // Where a batch's time goes, for profiling the write path (`PAYLEDGER_LOG=payledger::engine=debug`).
        tracing::debug!(
            commands = commands.len(),
            claimed = ?claimed_after,
            locked = ?locked_after,
            written = ?written_after,
            committed = ?started.elapsed(),
            "batch phases"
        );
        Ok((Applied { outcomes, committed: true }, learned))
    }

    /// Every account the batch touches, found or created (see [`BatchAccounts`]).
    async fn accounts<T: BatchTx>(
        &self,
        tx: &mut T,
        commands: &[WriteCommand],
        kinds: &CommandKinds<'_>,
        locked: &Locked,
        learned: &mut KnownAccounts,
    ) -> Result<BatchAccounts, StoreError> {
        let organizations = self.organizations(tx, commands, &locked.claims, learned).await?;
        let (users, opened) = self.users(tx, &kinds.balances, &locked.keys, learned).await?;
        let services = self.services(tx, &kinds.balances, &locked.holds, learned).await?;
        let sources = self.payout_sources(tx, &kinds.payouts).await?;

        let mut touched: Vec<AccountId> = organizations.values().copied().collect();
        if !touched.is_empty() {
            touched.push(self.system.bank_inflow);
        }
        touched.extend(users.values().copied());
        touched.extend(services.values().copied());
        touched.extend(locked.holds.values().map(|hold| hold.account));
        touched.extend(sources.values().copied());
        if !kinds.payouts.is_empty() {
            touched.push(self.system.payout_clearing);
        }
        for command in &kinds.balances {
            match command.operation {
                BalanceOperation::Deposit { .. } => touched.push(self.system.deposits),
                BalanceOperation::Withdraw { .. } => touched.push(self.system.withdrawals),
                _ => {}
            }
        }
        // Ascending id order is the one lock order every writer of every instance follows.
        touched.sort();
        touched.dedup();
        Ok(BatchAccounts { organizations, users, opened, services, sources, touched })
    }

    /// The accounts of the organizations this batch credits, created if new. A duplicate or a conflicting
    /// notice must not create one, so only notices that will be credited count.
    async fn organizations<T: BatchTx>(
        &self,
        tx: &mut T,
        commands: &[WriteCommand],
        claims: &Claims,
        learned: &mut KnownAccounts,
    ) -> Result<HashMap<Inn, AccountId>, StoreError> {
        let mut credited: Vec<&Inn> = commands
            .iter()
            .filter(|command| match command {
                WriteCommand::IntakeNotice { notice, apply, .. } => {
                    *apply && claims.inserted.contains(&notice.operation_id)
                }
                WriteCommand::ApplyRecorded { notice, .. } => claims.waiting.contains(&notice.operation_id),
                WriteCommand::RecordRejected(_)
                | WriteCommand::Balance(_)
                | WriteCommand::Payout(_)
                | WriteCommand::KeepRefusal(_)
                | WriteCommand::ClaimJobs(_)
                | WriteCommand::Deliveries(_)
                | WriteCommand::StatementAccept(_)
                | WriteCommand::StatementBegin(_)
                | WriteCommand::StatementLines(_)
                | WriteCommand::StatementApply(_)
                | WriteCommand::StatementFinish(_) => false,
            })
            .filter_map(WriteCommand::organization)
            .collect();
        let applies = commands.iter().filter_map(|command| match command {
            WriteCommand::StatementApply(apply) => Some(apply),
            _ => None,
        });
        let applied_payers = reconcile::credited_payers(applies, claims);
        credited.extend(applied_payers.iter());
        credited.sort();
        credited.dedup();
        let missing: Vec<(Inn, String)> = credited
            .iter()
            .filter(|inn| !self.known.organizations.contains_key(**inn))
            .map(|inn| ((*inn).clone(), String::new()))
            .collect();
        let created = tx.ensure_organizations(&missing).await?;
        let mut organizations: HashMap<Inn, AccountId> = created.iter().cloned().collect();
        learned.organizations.extend(created);
        for inn in credited {
            if let Some(id) = self.known.organizations.get(inn) {
                organizations.insert(inn.clone(), *id);
            }
        }
        Ok(organizations)
    }

    /// The accounts of the users the batch's balance commands name that have one; a depositing user's
    /// account is created. No other operation creates an account. Also returns the users whose accounts
    /// were created here.
    async fn users<T: BatchTx>(
        &self,
        tx: &mut T,
        commands: &[&balances::BalanceCommand],
        keys: &KeyClaims,
        learned: &mut KnownAccounts,
    ) -> Result<(HashMap<UserId, AccountId>, HashSet<UserId>), StoreError> {
        let mut accounts = HashMap::new();
        let mut unknown = Vec::new();
        for user in commands.iter().flat_map(|c| c.operation.users()) {
            match self.known.users.get(&user) {
                Some(id) => {
                    accounts.insert(user, *id);
                }
                None => unknown.push(user),
            }
        }
        unknown.sort();
        unknown.dedup();
        let found =
            tx.find_accounts(AccountKind::User, &unknown.iter().map(UserId::to_string).collect::<Vec<_>>()).await?;
        accounts.extend(user_accounts(found)?);
        // Only a deposit that will run opens an account: not one whose key is stored or in use elsewhere, nor
        // a repeat of a key earlier in the batch.
        let mut seen_keys = HashSet::new();
        let depositors = sorted_unique(commands.iter().filter_map(|c| {
            if let Some(request) = &c.idempotency
                && (keys.stored.contains_key(request.key.as_str())
                    || keys.in_flight.contains(request.key.as_str())
                    || !seen_keys.insert(request.key.as_str()))
            {
                return None;
            }
            match c.operation {
                BalanceOperation::Deposit { user, .. } if !accounts.contains_key(&user) => Some(user),
                _ => None,
            }
        }));
        let depositors: Vec<String> = depositors.iter().map(UserId::to_string).collect();
        let created = user_accounts(tx.create_accounts(AccountKind::User, &depositors).await?)?;
        let opened = created.iter().map(|(user, _)| *user).collect();
        accounts.extend(created);
        learned.users.extend(accounts.iter().filter(|(user, _)| !self.known.users.contains_key(user)));
        Ok((accounts, opened))
    }

    /// The revenue accounts of the services the batch's deducts pay, created if new: only for deducts of a
    /// reservation that is still held or that an earlier command of the batch places (a deduct refused for a
    /// missing hold opens nothing). An account is never deleted, so one opened for a capture that was then
    /// refused stays, empty: another instance may already have found it.
    async fn services<T: BatchTx>(
        &self,
        tx: &mut T,
        commands: &[&balances::BalanceCommand],
        holds: &HashMap<String, HoldState>,
        learned: &mut KnownAccounts,
    ) -> Result<HashMap<ServiceId, AccountId>, StoreError> {
        let mut accounts = HashMap::new();
        let mut missing = Vec::new();
        let mut reserved = HashSet::new();
        for command in commands {
            if let BalanceOperation::Reserve { key, .. } = &command.operation {
                reserved.insert(key.reference());
            }
            if let BalanceOperation::Deduct { key, .. } = &command.operation
                && (reserved.contains(&key.reference())
                    || holds
                        .get(&key.reference())
                        .is_some_and(|hold| hold.status == payledger_core::balances::HoldStatus::Held))
            {
                match self.known.services.get(&key.service) {
                    Some(id) => {
                        accounts.insert(key.service, *id);
                    }
                    None => missing.push(key.service.get()),
                }
            }
        }
        missing.sort_unstable();
        missing.dedup();
        let missing: Vec<String> = missing.iter().map(i64::to_string).collect();
        for (key, id) in tx.create_accounts(AccountKind::Service, &missing).await? {
            let service = key
                .parse()
                .ok()
                .and_then(|key| ServiceId::new(key).ok())
                .ok_or_else(|| StoreError::Corrupt(format!("service account key {key}")))?;
            accounts.insert(service, id);
            learned.services.insert(service, id);
        }
        Ok(accounts)
    }
}

impl WriterState {
    /// The accounts new payouts draw on. Payouts never create an account: an unknown source is refused.
    async fn payout_sources<T: BatchTx>(
        &self,
        tx: &mut T,
        commands: &[&payouts::PayoutCommand],
    ) -> Result<HashMap<PayoutSource, AccountId>, StoreError> {
        let mut found = HashMap::new();
        let (mut inns, mut users) = (Vec::new(), Vec::new());
        for source in commands.iter().filter_map(|c| c.source()) {
            match source {
                PayoutSource::Organization(inn) => match self.known.organizations.get(inn) {
                    Some(id) => {
                        found.insert(source.clone(), *id);
                    }
                    None => inns.push(inn.to_string()),
                },
                PayoutSource::User(user) => match self.known.users.get(user) {
                    Some(id) => {
                        found.insert(source.clone(), *id);
                    }
                    None => users.push(user.to_string()),
                },
            }
        }
        for (key, id) in tx.find_accounts(AccountKind::Organization, &sorted_unique(inns.into_iter())).await? {
            let inn = Inn::parse(&key).map_err(|_| StoreError::Corrupt(format!("organization account key {key}")))?;
            found.insert(PayoutSource::Organization(inn), id);
        }
        let users = tx.find_accounts(AccountKind::User, &sorted_unique(users.into_iter())).await?;
        for (user, id) in user_accounts(users)? {
            found.insert(PayoutSource::User(user), id);
        }
        Ok(found)
    }
}

/// Every account a batch touches: found, or created where an operation may create one.
struct BatchAccounts {
    organizations: HashMap<Inn, AccountId>,
    users: HashMap<UserId, AccountId>,
    /// Users whose accounts this batch created (for deposits).
    opened: HashSet<UserId>,
    services: HashMap<ServiceId, AccountId>,
    sources: HashMap<PayoutSource, AccountId>,
    /// All of them and the system accounts the batch moves money through, ascending: the lock order.
    touched: Vec<AccountId>,
}

/// Users' accounts as the store returns them, keyed by user id.
fn user_accounts(rows: Vec<(String, AccountId)>) -> Result<Vec<(UserId, AccountId)>, StoreError> {
    rows.into_iter()
        .map(|(key, id)| {
            key.parse()
                .ok()
                .and_then(|key| UserId::new(key).ok())
                .map(|user| (user, id))
                .ok_or_else(|| StoreError::Corrupt(format!("user account key {key}")))
        })
        .collect()
}
