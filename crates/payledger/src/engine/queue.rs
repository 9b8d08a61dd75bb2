//! The writer's queue, as its callers see it: one command, many commands at once, or an atomic group.

use tokio::sync::{mpsc, oneshot};

use super::batch::{WriteCommand, WriteOutcome};
use super::{EngineError, LedgerEngine, Reply};
use crate::origin::RequestOrigin;

/// Whether an outcome lets an atomic group commit. Supplied by the caller, who knows which outcomes its
/// clients count as done (a replayed refusal is not; a conflicting notice is under the record policy).
pub type Accept = fn(&WriteOutcome) -> bool;

/// An entry of the writer's queue.
// The large variant is the common one: boxing it would cost an allocation per command.
#[allow(clippy::large_enum_variant)]
pub(super) enum Queued {
    /// One command, batched with whatever else waits.
    One(QueuedCommand),
    /// Commands applied together in a transaction of their own, or not at all.
    Atomic(AtomicGroup),
}

/// A command waiting in the writer's queue, with the channel its outcome goes back on.
pub(super) struct QueuedCommand {
    pub(super) command: WriteCommand,
    /// The request it was submitted for, so the audit row of its change names it.
    pub(super) origin: Option<RequestOrigin>,
    pub(super) reply: Reply,
}

/// Commands that commit together or not at all.
pub(super) struct AtomicGroup {
    pub(super) commands: Vec<WriteCommand>,
    pub(super) origin: Option<RequestOrigin>,
    pub(super) accept: Accept,
    pub(super) reply: oneshot::Sender<Result<AtomicOutcome, EngineError>>,
    /// The group's room among the atomic commands in flight, given back when the writer has answered it (not
    /// when its caller stops waiting: a request that timed out leaves its group queued).
    pub(super) room: tokio::sync::OwnedSemaphorePermit,
}

/// What became of an atomic group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtomicOutcome {
    /// Whether the group was committed: every outcome was accepted.
    pub committed: bool,
    /// Each command's outcome, in order. When the group was not committed, these are what the commands would
    /// have done, and nothing of them was stored.
    pub outcomes: Vec<WriteOutcome>,
}

fn refused<T>(error: mpsc::error::TrySendError<T>) -> EngineError {
    match error {
        mpsc::error::TrySendError::Full(_) => EngineError::Overloaded,
        mpsc::error::TrySendError::Closed(_) => EngineError::Stopped,
    }
}

impl LedgerEngine {
    /// Submits one command and waits until its batch is committed (or failed).
    pub async fn submit(&self, command: WriteCommand) -> Result<WriteOutcome, EngineError> {
        let (reply, answer) = oneshot::channel();
        let origin = RequestOrigin::current();
        self.queue.try_send(Queued::One(QueuedCommand { command, origin, reply })).map_err(refused)?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }

    /// Submits several commands at once, each decided and answered as if submitted alone (a refusal or a
    /// failure of one leaves the others), and waits for all of them. They are queued together, so they land
    /// in as few batches as the batch size allows. `Err` means none was queued (the queue has no room for
    /// all of them, or the engine stopped).
    pub async fn submit_many(
        &self,
        commands: Vec<WriteCommand>,
    ) -> Result<Vec<Result<WriteOutcome, EngineError>>, EngineError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let permits = self.queue.try_reserve_many(commands.len()).map_err(refused)?;
        let origin = RequestOrigin::current();
        let mut answers = Vec::with_capacity(commands.len());
        for (permit, command) in permits.zip(commands) {
            let (reply, answer) = oneshot::channel();
            permit.send(Queued::One(QueuedCommand { command, origin: origin.clone(), reply }));
            answers.push(answer);
        }
        let mut outcomes = Vec::with_capacity(answers.len());
        for answer in answers {
            outcomes.push(answer.await.unwrap_or(Err(EngineError::Stopped)));
        }
        Ok(outcomes)
    }

    /// Submits commands that must all take effect in one transaction or none at all: the writer decides them
    /// in a batch of their own and commits only if `accept` holds for every outcome. Otherwise it rolls the
    /// batch back and answers what each command would have done.
    pub async fn submit_atomic(
        &self,
        commands: Vec<WriteCommand>,
        accept: Accept,
    ) -> Result<AtomicOutcome, EngineError> {
        let wanted = u32::try_from(commands.len()).map_err(|_| EngineError::Overloaded)?;
        let room = self.atomic_room.clone().try_acquire_many_owned(wanted).map_err(|_| EngineError::Overloaded)?;
        let (reply, answer) = oneshot::channel();
        let group = AtomicGroup { commands, origin: RequestOrigin::current(), accept, reply, room };
        self.queue.try_send(Queued::Atomic(group)).map_err(refused)?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }
}
