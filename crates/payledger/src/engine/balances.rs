//! User-balance operations decided without I/O.
//!
//! Each operation becomes hold changes and postings on the batch's [`BalanceSheet`], lines of its users'
//! histories, and (with an `Idempotency-Key`) the stored response, all written in the batch transaction.
//! The store has already locked, in the batch's lock order, every key, hold and account this looks at.

use std::collections::{BTreeMap, HashMap, HashSet};

use payledger_core::balances::{ActivityKind, BalanceError, HoldStatus, UserRole};
use payledger_core::{
    AccountId, BalanceOperation, BalanceSheet, HoldChange, LedgerError, OrderKey, Posting, ServiceId, UserId,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::idempotency::IdempotencyKey;
use crate::store::batch::{ActivityLine, HoldState, HoldWrite, KeyClaims, NewKey, StoredResponse};
use crate::store::batch::{NewTransaction, Plan};

/// What an executed operation produced: its users' new history lines, or why nothing changed.
pub type OperationResult = Result<Vec<ActivityLine>, BalanceError>;

/// Turns an operation's result into the response to store with its idempotency key. Supplied by the HTTP
/// layer, so the engine stores a response without knowing what one looks like.
pub type Renderer = fn(&OperationResult) -> StoredResponse;

/// The `Idempotency-Key` of a request, with what identifies the request itself.
#[derive(Debug, Clone)]
pub struct IdempotencyRequest {
    /// The client's key, scoped to its caller.
    pub key: IdempotencyKey,
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
    /// The user who asked, for the audit log (`None`: not audited).
    pub by: Option<String>,
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
    /// An invalid request's refusal was stored under its key.
    Kept(StoredResponse),
}

/// An invalid request's refusal, to keep under its idempotency key.
#[derive(Debug, Clone)]
pub struct KeptRefusal {
    /// The client's key, scoped to its caller.
    pub key: IdempotencyKey,
    /// A digest of the endpoint and the raw body.
    pub fingerprint: String,
    /// The 4xx response it got.
    pub response: StoredResponse,
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
    /// The system account payouts are captured into.
    pub payout_clearing: AccountId,
}

/// The ledger as one batch sees and changes it: the accounts, holds and keys the store locked, and what this
/// batch changed so far. Balance operations and payouts are both decided against it.
#[derive(Debug)]
pub struct BatchLedger<'a> {
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
    /// Users whose account this batch opens for their first deposit: until that deposit is decided, an
    /// earlier command of the batch must find no account, as it would have without the batch.
    opening: HashSet<UserId>,
}

impl<'a> BatchLedger<'a> {
    /// A batch over what the store found.
    pub fn new(
        accounts: BalanceAccounts<'a>,
        keys: KeyClaims,
        holds: HashMap<String, HoldState>,
        line_ids: Vec<i64>,
        now: OffsetDateTime,
    ) -> BatchLedger<'a> {
        BatchLedger {
            accounts,
            keys,
            holds,
            line_ids: line_ids.into_iter(),
            now,
            first_keys: HashMap::new(),
            changed_holds: BTreeMap::new(),
            opening: HashSet::new(),
        }
    }

    /// The accounts this batch opened for a first deposit that did not run, to remove again.
    pub fn unopened_accounts(&self) -> Vec<(UserId, AccountId)> {
        self.opening.iter().filter_map(|user| self.accounts.users.get(user).map(|account| (*user, *account))).collect()
    }

    /// Names the users whose accounts this batch created for their first deposit.
    pub fn opening_accounts_of(mut self, users: HashSet<UserId>) -> BatchLedger<'a> {
        self.opening = users;
        self
    }

    /// Decides one command, adding its rows to `plan`.
    pub fn decide(&mut self, command: &BalanceCommand, sheet: &mut BalanceSheet, plan: &mut Plan) -> BalanceOutcome {
        let Some(request) = &command.idempotency else {
            return match self.execute(&command.operation, sheet, plan) {
                Ok(result) => BalanceOutcome::Executed { result, response: None },
                Err(defect) => BalanceOutcome::Broken(defect),
            };
        };
        if let Some(answered) = self.known_key(request.key.as_str(), &request.fingerprint) {
            return answered;
        }
        match self.execute(&command.operation, sheet, plan) {
            Ok(result) => {
                let response = (request.render)(&result);
                plan.keys.push(NewKey {
                    key: request.key.to_string(),
                    fingerprint: request.fingerprint.clone(),
                    response: response.clone(),
                });
                self.first_keys.insert(request.key.to_string(), (request.fingerprint.clone(), Some(response.clone())));
                BalanceOutcome::Executed { result, response: Some(response) }
            }
            Err(defect) => {
                self.first_keys.insert(request.key.to_string(), (request.fingerprint.clone(), None));
                BalanceOutcome::Broken(defect)
            }
        }
    }

    /// Records a reservation's new state, to be written with the batch.
    pub(super) fn put_hold(&mut self, reference: String, state: HoldState) {
        self.holds.insert(reference.clone(), state);
        self.changed_holds.insert(reference, ());
    }

    /// The payout clearing account.
    pub(super) fn payout_clearing_account(&self) -> AccountId {
        self.accounts.payout_clearing
    }

    /// The answer for a key already used (stored, in use elsewhere, or earlier in this batch), if it was.
    pub(super) fn known_key(&self, key: &str, fingerprint: &str) -> Option<BalanceOutcome> {
        if let Some((first_fingerprint, response)) = self.first_keys.get(key) {
            // The same key twice in one batch: the second is a replay of the first, or a misuse.
            return Some(match response {
                Some(response) if first_fingerprint == fingerprint => BalanceOutcome::Replayed(response.clone()),
                Some(_) => BalanceOutcome::KeyReused,
                None => BalanceOutcome::KeyInFlight,
            });
        }
        if self.keys.in_flight.contains(key) {
            return Some(BalanceOutcome::KeyInFlight);
        }
        self.keys.stored.get(key).map(|stored| {
            if stored.fingerprint == fingerprint {
                BalanceOutcome::Replayed(stored.response.clone())
            } else {
                BalanceOutcome::KeyReused
            }
        })
    }

    /// Stores a key's first response with this batch, and answers later uses of it in the batch with it.
    pub(super) fn remember_key(&mut self, key: &str, fingerprint: &str, response: StoredResponse, plan: &mut Plan) {
        plan.keys.push(NewKey { key: key.to_owned(), fingerprint: fingerprint.to_owned(), response: response.clone() });
        self.first_keys.insert(key.to_owned(), (fingerprint.to_owned(), Some(response)));
    }

    /// Keeps the refusal of an invalid request under its key, so a retry of it gets the same answer and the
    /// key cannot then be used for another request.
    pub fn keep_refusal(&mut self, refusal: &KeptRefusal, plan: &mut Plan) -> BalanceOutcome {
        if let Some(answered) = self.known_key(refusal.key.as_str(), &refusal.fingerprint) {
            return answered;
        }
        plan.keys.push(NewKey {
            key: refusal.key.to_string(),
            fingerprint: refusal.fingerprint.clone(),
            response: refusal.response.clone(),
        });
        self.first_keys.insert(refusal.key.to_string(), (refusal.fingerprint.clone(), Some(refusal.response.clone())));
        BalanceOutcome::Kept(refusal.response.clone())
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
        self.accounts
            .users
            .get(&user)
            .copied()
            .filter(|_| !self.opening.contains(&user))
            .ok_or(BalanceError::UnknownUser { user, role })
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
            BalanceOperation::Deposit { user, amount } => {
                self.opening.remove(user);
                self.user_account(*user, UserRole::User).map(|account| {
                    let amount = amount.minor();
                    let postings =
                        [Posting { account: self.accounts.deposits, amount: -amount }, Posting { account, amount }];
                    Effect::moved(ActivityKind::Deposit, &postings).line(account, *user, amount, 0)
                })
            }
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
            self.put_hold(reference, state);
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
                payout: None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::batch::StoredKey;
    use payledger_core::balances::OrderId;
    use payledger_core::{AccountBalance, Currency, Money};
    use proptest::prelude::*;

    const DEPOSITS: AccountId = AccountId(1);
    const WITHDRAWALS: AccountId = AccountId(2);

    fn user(id: i64) -> UserId {
        UserId::new(id).unwrap_or_else(|_| panic!("test id"))
    }

    fn key(u: i64, service: i64, order: i64) -> OrderKey {
        OrderKey {
            user: user(u),
            service: ServiceId::new(service).unwrap_or_else(|_| panic!("test id")),
            order: OrderId::new(order).unwrap_or_else(|_| panic!("test id")),
        }
    }

    fn rub(minor: i64) -> payledger_core::Money {
        Money::from_minor(minor, Currency::RUB)
    }

    fn render(result: &OperationResult) -> StoredResponse {
        match result {
            Ok(lines) => StoredResponse { status: 201, body: format!("{}", lines.len()) },
            Err(error) => StoredResponse { status: 409, body: error.to_string() },
        }
    }

    /// A ledger between batches: accounts, reservations and users' accounts, as the store would keep them.
    struct Ledger {
        sheet: BalanceSheet,
        users: HashMap<UserId, AccountId>,
        services: HashMap<ServiceId, AccountId>,
        holds: HashMap<String, HoldState>,
        next_account: i64,
        next_line: i64,
        lines: Vec<ActivityLine>,
        entries: Vec<(Uuid, payledger_core::EntryDraft)>,
    }

    impl Ledger {
        fn new() -> Ledger {
            let mut sheet = BalanceSheet::new();
            for id in [DEPOSITS, WITHDRAWALS] {
                sheet.insert(id, AccountBalance { balance: 0, held: 0, allow_negative: true });
            }
            Ledger {
                sheet,
                users: HashMap::new(),
                services: HashMap::new(),
                holds: HashMap::new(),
                next_account: 10,
                next_line: 1,
                lines: Vec::new(),
                entries: Vec::new(),
            }
        }

        fn account(&mut self) -> AccountId {
            self.next_account += 1;
            let id = AccountId(self.next_account);
            self.sheet.insert(id, AccountBalance { balance: 0, held: 0, allow_negative: false });
            id
        }

        /// Runs one batch the way the engine does: accounts for depositors and deducted services first.
        fn batch(&mut self, commands: &[BalanceCommand], keys: KeyClaims) -> Vec<BalanceOutcome> {
            let mut opening = HashSet::new();
            for command in commands {
                match &command.operation {
                    BalanceOperation::Deposit { user, .. } if !self.users.contains_key(user) => {
                        let id = self.account();
                        self.users.insert(*user, id);
                        opening.insert(*user);
                    }
                    BalanceOperation::Deduct { key, .. } if !self.services.contains_key(&key.service) => {
                        let id = self.account();
                        self.services.insert(key.service, id);
                    }
                    _ => {}
                }
            }
            let count: usize = commands.iter().map(|c| max_lines(&c.operation)).sum();
            let ids: Vec<i64> = (self.next_line..self.next_line + count as i64).collect();
            self.next_line += count as i64;
            let (users, services) = (self.users.clone(), self.services.clone());
            let accounts = BalanceAccounts {
                users: &users,
                services: &services,
                deposits: DEPOSITS,
                withdrawals: WITHDRAWALS,
                payout_clearing: AccountId(3),
            };
            let mut batch = BatchLedger::new(accounts, keys, self.holds.clone(), ids, OffsetDateTime::UNIX_EPOCH)
                .opening_accounts_of(opening);
            let mut plan = Plan::default();
            let outcomes: Vec<BalanceOutcome> =
                commands.iter().map(|command| batch.decide(command, &mut self.sheet, &mut plan)).collect();
            for write in batch.hold_writes() {
                self.holds.insert(write.reference, HoldState { is_new: false, ..write.state });
            }
            self.lines.extend(plan.activity);
            self.entries.extend(plan.entries);
            outcomes
        }
    }

    #[test]
    fn a_key_seen_twice_in_a_batch_or_stored_replays_or_is_refused() {
        let mut ledger = Ledger::new();
        let with_key = |operation: BalanceOperation, fingerprint: &str| BalanceCommand {
            operation,
            idempotency: Some(IdempotencyRequest { key: "k".into(), fingerprint: fingerprint.into(), render }),
            by: None,
        };
        let deposit = BalanceOperation::Deposit { user: user(1), amount: rub(100) };
        let outcomes = ledger.batch(
            &[with_key(deposit.clone(), "a"), with_key(deposit.clone(), "a"), with_key(deposit.clone(), "b")],
            KeyClaims::default(),
        );
        let response = StoredResponse { status: 201, body: "1".into() };
        assert!(matches!(&outcomes[0], BalanceOutcome::Executed { response: Some(r), .. } if *r == response));
        assert_eq!(outcomes[1], BalanceOutcome::Replayed(response.clone()));
        assert_eq!(outcomes[2], BalanceOutcome::KeyReused);
        assert_eq!(ledger.sheet.get(ledger.users[&user(1)]).map(|a| a.balance), Some(100));

        let stored = KeyClaims {
            in_flight: HashSet::from(["busy".to_owned()]),
            stored: HashMap::from([(
                "k".to_owned(),
                StoredKey { fingerprint: "a".into(), response: response.clone() },
            )]),
        };
        let busy = BalanceCommand {
            operation: deposit.clone(),
            idempotency: Some(IdempotencyRequest { key: "busy".into(), fingerprint: "a".into(), render }),
            by: None,
        };
        let outcomes = ledger.batch(&[with_key(deposit.clone(), "a"), with_key(deposit.clone(), "c"), busy], stored);
        assert_eq!(
            outcomes,
            vec![BalanceOutcome::Replayed(response), BalanceOutcome::KeyReused, BalanceOutcome::KeyInFlight]
        );
        assert_eq!(ledger.sheet.get(ledger.users[&user(1)]).map(|a| a.balance), Some(100), "nothing applied again");
    }

    /// One operation of a random workload over a few users, services and orders.
    fn operations() -> impl Strategy<Value = BalanceOperation> {
        let small = 1i64..4;
        prop_oneof![
            (small.clone(), 1i64..60).prop_map(|(u, a)| BalanceOperation::Deposit { user: user(u), amount: rub(a) }),
            (small.clone(), 1i64..60).prop_map(|(u, a)| BalanceOperation::Withdraw { user: user(u), amount: rub(a) }),
            (small.clone(), small.clone(), 1i64..60).prop_map(|(s, r, a)| BalanceOperation::Transfer {
                sender: user(s),
                recipient: user(if r == s { s % 3 + 1 } else { r }),
                amount: rub(a),
            }),
            (small.clone(), 1i64..3, small.clone(), 1i64..60)
                .prop_map(|(u, s, o, a)| BalanceOperation::Reserve { key: key(u, s, o), amount: rub(a) }),
            (small.clone(), 1i64..3, small.clone(), 1i64..60)
                .prop_map(|(u, s, o, a)| BalanceOperation::Deduct { key: key(u, s, o), amount: rub(a) }),
            (small.clone(), 1i64..3, small, proptest::option::of(1i64..60))
                .prop_map(|(u, s, o, a)| BalanceOperation::Release { key: key(u, s, o), amount: a.map(rub) }),
        ]
    }

    /// The model: each user's available and held money, and each order's reservation.
    #[derive(Default)]
    struct Model {
        users: HashMap<UserId, (i64, i64)>,
        holds: HashMap<OrderKey, (i64, HoldStatus)>,
        revenue: i64,
    }

    impl Model {
        /// What the operation should do: Ok on success, or the refusal.
        fn apply(&mut self, operation: &BalanceOperation) -> Result<(), BalanceError> {
            let known = |users: &HashMap<UserId, (i64, i64)>, u: UserId, role| {
                users.get(&u).copied().ok_or(BalanceError::UnknownUser { user: u, role })
            };
            match operation {
                BalanceOperation::Deposit { user, amount } => {
                    self.users.entry(*user).or_default().0 += amount.minor();
                }
                BalanceOperation::Withdraw { user, amount } => {
                    let (available, _) = known(&self.users, *user, UserRole::User)?;
                    if available < amount.minor() {
                        return Err(BalanceError::InsufficientFunds { available });
                    }
                    self.users.entry(*user).or_default().0 -= amount.minor();
                }
                BalanceOperation::Transfer { sender, recipient, amount } => {
                    let (available, _) = known(&self.users, *sender, UserRole::Sender)?;
                    known(&self.users, *recipient, UserRole::Recipient)?;
                    if available < amount.minor() {
                        return Err(BalanceError::InsufficientFunds { available });
                    }
                    self.users.entry(*sender).or_default().0 -= amount.minor();
                    self.users.entry(*recipient).or_default().0 += amount.minor();
                }
                BalanceOperation::Reserve { key, amount } => {
                    let (available, _) = known(&self.users, key.user, UserRole::User)?;
                    if self.holds.contains_key(key) {
                        return Err(BalanceError::HoldExists(*key));
                    }
                    if available < amount.minor() {
                        return Err(BalanceError::InsufficientFunds { available });
                    }
                    let money = self.users.entry(key.user).or_default();
                    money.0 -= amount.minor();
                    money.1 += amount.minor();
                    self.holds.insert(*key, (amount.minor(), HoldStatus::Held));
                }
                BalanceOperation::Deduct { key, amount } | BalanceOperation::Release { key, amount: Some(amount) } => {
                    self.settle(key, Some(amount.minor()), matches!(operation, BalanceOperation::Deduct { .. }))?;
                }
                BalanceOperation::Release { key, amount: None } => self.settle(key, None, false)?,
            }
            Ok(())
        }

        fn settle(&mut self, key: &OrderKey, amount: Option<i64>, capture: bool) -> Result<(), BalanceError> {
            let (held, status) = *self.holds.get(key).ok_or(BalanceError::HoldNotFound(*key))?;
            if status != HoldStatus::Held {
                return Err(BalanceError::HoldSettled { key: *key, status });
            }
            if amount.is_some_and(|amount| amount != held) {
                return Err(BalanceError::AmountMismatch { held });
            }
            let money = self.users.entry(key.user).or_default();
            money.1 -= held;
            if capture {
                self.revenue += held;
            } else {
                money.0 += held;
            }
            self.holds.insert(*key, (held, if capture { HoldStatus::Captured } else { HoldStatus::Released }));
            Ok(())
        }
    }

    proptest! {
        /// Any sequence of batches of balance operations agrees with the model: the same operations succeed
        /// and are refused for the same reasons, every balance and hold matches, each user's history adds
        /// up to their money, every transaction balances, and no user account ever goes negative.
        #[test]
        fn balance_operations_match_the_model(batches in prop::collection::vec(prop::collection::vec(operations(), 1..12), 1..15)) {
            let mut ledger = Ledger::new();
            let mut model = Model::default();
            for batch in batches {
                let commands: Vec<BalanceCommand> =
                    batch.iter().map(|operation| BalanceCommand { operation: operation.clone(), idempotency: None, by: None }).collect();
                let outcomes = ledger.batch(&commands, KeyClaims::default());
                for (operation, outcome) in batch.iter().zip(outcomes) {
                    let expected = model.apply(operation);
                    match (outcome, expected) {
                        (BalanceOutcome::Executed { result: Ok(_), .. }, Ok(())) => {}
                        (BalanceOutcome::Executed { result: Err(got), .. }, Err(want)) => prop_assert_eq!(got, want),
                        (got, want) => prop_assert!(false, "{operation:?}: engine {got:?}, model {want:?}"),
                    }
                }
            }
            let mut per_transaction: HashMap<Uuid, i64> = HashMap::new();
            for (transaction, entry) in &ledger.entries {
                *per_transaction.entry(*transaction).or_default() += entry.amount;
            }
            prop_assert!(per_transaction.values().all(|sum| *sum == 0));
            for (user, (available, held)) in &model.users {
                let account = ledger.users[user];
                let balance = ledger.sheet.get(account).copied().unwrap_or(AccountBalance { balance: 0, held: 0, allow_negative: false });
                prop_assert_eq!((balance.available(), balance.held), (*available, *held));
                prop_assert!(balance.available() >= 0);
                let lines = ledger.lines.iter().filter(|line| line.account == account);
                let (sum_available, sum_held) = lines.fold((0, 0), |(a, h), line| (a + line.amount, h + line.held_change));
                prop_assert_eq!((sum_available, sum_held), (*available, *held));
                let open: i64 = ledger.holds.values().filter(|h| h.account == account && h.status == HoldStatus::Held).map(|h| h.amount).sum();
                prop_assert_eq!(open, *held);
            }
            let revenue: i64 = ledger.services.values().filter_map(|id| ledger.sheet.get(*id)).map(|a| a.balance).sum();
            prop_assert_eq!(revenue, model.revenue);
            let total: i64 = ledger.sheet.iter().map(|(_, a)| a.balance).sum();
            prop_assert_eq!(total, 0);
        }
    }
}
