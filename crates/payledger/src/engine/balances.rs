//! User-balance operations decided without I/O.
//!
//! Each operation becomes hold changes and postings on the batch's [`BalanceSheet`], lines of its users'
//! histories, and (with an `Idempotency-Key`) the stored response, all written in the batch transaction.
//! The store has already locked, in the batch's lock order, every key, hold and account this looks at.

use std::collections::{BTreeMap, HashMap, HashSet};

use payledger_core::balances::{ActivityKind, BalanceError, HoldStatus, OrderId, UserRole};
use payledger_core::{
    AccountId, BalanceOperation, BalanceSheet, HoldChange, LedgerError, OrderKey, Posting, ServiceId, UserId,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::batch::{NewTransaction, Plan};

/// The longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// A response as the client first got it; a replay sends exactly this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: String,
}

/// What an executed operation produced: its users' new history lines, or why nothing changed.
pub type OperationResult = Result<Vec<ActivityLine>, BalanceError>;

/// Turns an operation's result into the response to store with its idempotency key. Supplied by the HTTP
/// layer, so the engine stores a response without knowing what one looks like.
pub type Renderer = fn(&OperationResult) -> StoredResponse;

/// The `Idempotency-Key` of a request, with what identifies the request itself.
#[derive(Debug, Clone)]
pub struct IdempotencyRequest {
    /// The client's key.
    pub key: String,
    /// A digest of the endpoint and the canonical request body.
    pub fingerprint: String,
    /// How to render the response stored with the key.
    pub render: Renderer,
}

/// A balance operation as submitted to the engine.
#[derive(Debug, Clone)]
pub struct BalanceCommand {
    /// What to do.
    pub operation: BalanceOperation,
    /// The idempotency key, if the client sent one.
    pub idempotency: Option<IdempotencyRequest>,
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
    /// The ledger transaction, when the balance changed.
    pub transaction_id: Option<Uuid>,
    /// When it was applied.
    pub created_at: OffsetDateTime,
}

/// What became of a balance command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BalanceOutcome {
    /// The operation ran (it may have been refused); `response` is what was stored with its key.
    Executed {
        /// Its lines or its refusal.
        result: OperationResult,
        /// The stored response, when the request had a key.
        response: Option<StoredResponse>,
    },
    /// The key was used before for the same request: its stored response.
    Replayed(StoredResponse),
    /// The key was used before for a different request (or endpoint).
    KeyReused,
    /// Another request with the key is being applied right now.
    KeyInFlight,
    /// The engine could not decide the command (a defect); nothing was stored.
    Broken(String),
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

/// The accounts balance operations move.
#[derive(Debug)]
pub struct BalanceAccounts<'a> {
    /// Users' accounts that exist (deposits' accounts created by this batch included).
    pub users: &'a HashMap<UserId, AccountId>,
    /// Services' revenue accounts.
    pub services: &'a HashMap<ServiceId, AccountId>,
    /// The system account debited by deposits.
    pub deposits: AccountId,
    /// The system account credited by withdrawals.
    pub withdrawals: AccountId,
}

/// The balance side of one batch: what the store found and what this batch changed so far.
#[derive(Debug)]
pub struct BalanceBatch<'a> {
    /// The accounts.
    pub accounts: BalanceAccounts<'a>,
    /// Keys found in the store.
    pub keys: KeyClaims,
    /// Reservations found in the store or placed by this batch, by reference.
    pub holds: HashMap<String, HoldState>,
    /// Ids reserved for new history lines, used in order.
    pub line_ids: std::vec::IntoIter<i64>,
    /// When the batch applies.
    pub now: OffsetDateTime,
    /// Keys first used in this batch, with the fingerprint and response of that first use.
    first_keys: HashMap<String, (String, Option<StoredResponse>)>,
    /// References of reservations this batch changed.
    changed_holds: BTreeMap<String, ()>,
}

impl<'a> BalanceBatch<'a> {
    /// A batch over what the store found.
    pub fn new(
        accounts: BalanceAccounts<'a>,
        keys: KeyClaims,
        holds: HashMap<String, HoldState>,
        line_ids: Vec<i64>,
        now: OffsetDateTime,
    ) -> BalanceBatch<'a> {
        BalanceBatch {
            accounts,
            keys,
            holds,
            line_ids: line_ids.into_iter(),
            now,
            first_keys: HashMap::new(),
            changed_holds: BTreeMap::new(),
        }
    }

    /// Decides one command, adding its rows to `plan`.
    pub fn decide(&mut self, command: &BalanceCommand, sheet: &mut BalanceSheet, plan: &mut Plan) -> BalanceOutcome {
        let Some(request) = &command.idempotency else {
            return match self.execute(&command.operation, sheet, plan) {
                Ok(result) => BalanceOutcome::Executed { result, response: None },
                Err(defect) => BalanceOutcome::Broken(defect),
            };
        };
        if let Some((fingerprint, response)) = self.first_keys.get(&request.key) {
            // The same key twice in one batch: the second is a replay of the first, or a misuse.
            return match response {
                Some(response) if *fingerprint == request.fingerprint => BalanceOutcome::Replayed(response.clone()),
                Some(_) => BalanceOutcome::KeyReused,
                None => BalanceOutcome::KeyInFlight,
            };
        }
        if self.keys.in_flight.contains(&request.key) {
            return BalanceOutcome::KeyInFlight;
        }
        if let Some(stored) = self.keys.stored.get(&request.key) {
            return if stored.fingerprint == request.fingerprint {
                BalanceOutcome::Replayed(stored.response.clone())
            } else {
                BalanceOutcome::KeyReused
            };
        }
        match self.execute(&command.operation, sheet, plan) {
            Ok(result) => {
                let response = (request.render)(&result);
                plan.keys.push(NewKey {
                    key: request.key.clone(),
                    fingerprint: request.fingerprint.clone(),
                    response: response.clone(),
                });
                self.first_keys.insert(request.key.clone(), (request.fingerprint.clone(), Some(response.clone())));
                BalanceOutcome::Executed { result, response: Some(response) }
            }
            Err(defect) => {
                self.first_keys.insert(request.key.clone(), (request.fingerprint.clone(), None));
                BalanceOutcome::Broken(defect)
            }
        }
    }

    /// The reservations this batch placed or settled, to write.
    pub fn hold_writes(&self) -> Vec<HoldWrite> {
        self.changed_holds
            .keys()
            .filter_map(|reference| {
                self.holds.get(reference).map(|state| HoldWrite { reference: reference.clone(), state: state.clone() })
            })
            .collect()
    }

    fn user_account(&self, user: UserId, role: UserRole) -> Result<AccountId, BalanceError> {
        self.accounts.users.get(&user).copied().ok_or(BalanceError::UnknownUser { user, role })
    }

    /// Runs one operation. The outer error is a defect of the engine (never the client's doing); the inner
    /// result is the operation's own outcome.
    fn execute(
        &mut self,
        operation: &BalanceOperation,
        sheet: &mut BalanceSheet,
        plan: &mut Plan,
    ) -> Result<OperationResult, String> {
        let decided = match operation {
            BalanceOperation::Deposit { user, amount } => self.user_account(*user, UserRole::User).map(|account| {
                let amount = amount.minor();
                let postings =
                    [Posting { account: self.accounts.deposits, amount: -amount }, Posting { account, amount }];
                Effect::moved(ActivityKind::Deposit, &postings).line(account, *user, amount, 0)
            }),
            BalanceOperation::Withdraw { user, amount } => self.user_account(*user, UserRole::User).map(|account| {
                let amount = amount.minor();
                let postings =
                    [Posting { account, amount: -amount }, Posting { account: self.accounts.withdrawals, amount }];
                Effect::moved(ActivityKind::Withdrawal, &postings).line(account, *user, -amount, 0)
            }),
            BalanceOperation::Transfer { sender, recipient, amount } => self
                .user_account(*sender, UserRole::Sender)
                .and_then(|from| Ok((from, self.user_account(*recipient, UserRole::Recipient)?)))
                .map(|(from, to)| {
                    let amount = amount.minor();
                    let postings = [Posting { account: from, amount: -amount }, Posting { account: to, amount }];
                    let mut effect = Effect::moved(ActivityKind::Transfer, &postings);
                    effect.lines.push(LineDraft::new(from, *sender, -amount, 0).with_counterparty(*recipient));
                    effect.lines.push(LineDraft::new(to, *recipient, amount, 0).with_counterparty(*sender));
                    effect
                }),
            BalanceOperation::Reserve { key, amount } => self.reserve(key, amount.minor()),
            BalanceOperation::Deduct { key, amount } => self.settle(key, Some(amount.minor()), HoldStatus::Captured),
            BalanceOperation::Release { key, amount } => {
                self.settle(key, amount.map(|a| a.minor()), HoldStatus::Released)
            }
        };
        let effect = match decided {
            Ok(effect) => effect,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let entries = match sheet.transact(&effect.holds, &effect.postings) {
            Ok(entries) => entries,
            Err(LedgerError::InsufficientFunds { available, .. }) => {
                return Ok(Err(BalanceError::InsufficientFunds { available }));
            }
            Err(LedgerError::Overflow) => return Ok(Err(BalanceError::Overflow)),
            Err(defect) => return Err(defect.to_string()),
        };
        let transaction_id = (!entries.is_empty()).then(Uuid::now_v7);
        if let Some(id) = transaction_id {
            plan.transactions.push(NewTransaction { id, kind: effect.kind.as_str(), idempotency_key: None });
            plan.entries.extend(entries.into_iter().map(|entry| (id, entry)));
        }
        if let Some((reference, mut state)) = effect.hold {
            state.transaction_id =
                state.transaction_id.or(transaction_id.filter(|_| state.status == HoldStatus::Captured));
            self.holds.insert(reference.clone(), state);
            self.changed_holds.insert(reference, ());
        }
        let order = operation.order().map(|key| (key.service, key.order));
        let mut lines = Vec::with_capacity(effect.lines.len());
        for draft in effect.lines {
            let id = self.line_ids.next().ok_or("the batch reserved too few history ids")?;
            lines.push(ActivityLine {
                id,
                account: draft.account,
                user: draft.user,
                kind: effect.kind,
                amount: draft.amount,
                held_change: draft.held_change,
                counterparty: draft.counterparty,
                order,
                transaction_id,
                created_at: self.now,
            });
        }
        plan.activity.extend(lines.iter().cloned());
        Ok(Ok(lines))
    }

    fn reserve(&self, key: &OrderKey, amount: i64) -> Result<Effect, BalanceError> {
        let account = self.user_account(key.user, UserRole::User)?;
        let reference = key.reference();
        if self.holds.contains_key(&reference) {
            return Err(BalanceError::HoldExists(*key));
        }
        let state = HoldState { is_new: true, account, amount, status: HoldStatus::Held, transaction_id: None };
        Ok(Effect {
            kind: ActivityKind::Reservation,
            holds: vec![HoldChange { account, amount }],
            postings: Vec::new(),
            lines: vec![LineDraft::new(account, key.user, -amount, amount)],
            hold: Some((reference, state)),
        })
    }

    /// Captures (`Captured`) or releases (`Released`) an order's hold.
    fn settle(&self, key: &OrderKey, amount: Option<i64>, to: HoldStatus) -> Result<Effect, BalanceError> {
        let reference = key.reference();
        let hold = self.holds.get(&reference).ok_or(BalanceError::HoldNotFound(*key))?;
        if hold.status != HoldStatus::Held {
            return Err(BalanceError::HoldSettled { key: *key, status: hold.status });
        }
        if amount.is_some_and(|amount| amount != hold.amount) {
            return Err(BalanceError::AmountMismatch { held: hold.amount });
        }
        let (account, held) = (hold.account, hold.amount);
        let state = HoldState { status: to, ..hold.clone() };
        let release = vec![HoldChange { account, amount: -held }];
        Ok(match to {
            HoldStatus::Captured => {
                // The service's revenue account exists: the store created it for every deduct of the batch.
                let Some(&revenue) = self.accounts.services.get(&key.service) else {
                    return Err(BalanceError::HoldNotFound(*key));
                };
                Effect {
                    kind: ActivityKind::RevenueRecognition,
                    holds: release,
                    postings: vec![Posting { account, amount: -held }, Posting { account: revenue, amount: held }],
                    lines: vec![LineDraft::new(account, key.user, 0, -held)],
                    hold: Some((reference, state)),
                }
            }
            _ => Effect {
                kind: ActivityKind::Release,
                holds: release,
                postings: Vec::new(),
                lines: vec![LineDraft::new(account, key.user, held, -held)],
                hold: Some((reference, state)),
            },
        })
    }
}

/// What an operation will do, before the sheet checks it.
struct Effect {
    kind: ActivityKind,
    holds: Vec<HoldChange>,
    postings: Vec<Posting>,
    lines: Vec<LineDraft>,
    hold: Option<(String, HoldState)>,
}

impl Effect {
    fn moved(kind: ActivityKind, postings: &[Posting]) -> Effect {
        Effect { kind, holds: Vec::new(), postings: postings.to_vec(), lines: Vec::new(), hold: None }
    }

    fn line(mut self, account: AccountId, user: UserId, amount: i64, held_change: i64) -> Effect {
        self.lines.push(LineDraft::new(account, user, amount, held_change));
        self
    }
}

struct LineDraft {
    account: AccountId,
    user: UserId,
    amount: i64,
    held_change: i64,
    counterparty: Option<UserId>,
}

impl LineDraft {
    fn new(account: AccountId, user: UserId, amount: i64, held_change: i64) -> LineDraft {
        LineDraft { account, user, amount, held_change, counterparty: None }
    }

    fn with_counterparty(mut self, user: UserId) -> LineDraft {
        self.counterparty = Some(user);
        self
    }
}

/// How many history lines an operation can write at most, to reserve their ids before deciding.
pub fn max_lines(operation: &BalanceOperation) -> usize {
    match operation {
        BalanceOperation::Transfer { .. } => 2,
        _ => 1,
    }
}
