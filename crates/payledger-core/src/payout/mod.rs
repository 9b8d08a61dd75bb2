//! Payout requests: their life cycle, who may move them, and the recipient details they are sent to.
//!
//! Every status change goes through [`transition`], the one table of allowed changes. Recipient details arrive as
//! plain strings ([`RecipientInput`]) and leave as [`RecipientDetails`] only once every field is valid; what the API
//! shows of them is [`MaskedRecipient`], which never holds more than the last four digits of a number.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// The longest description a payout may carry, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;

/// The longest recipient name, in characters.
pub const MAX_HOLDER_CHARS: usize = 100;

/// What stands in front of the last four digits of a masked card or account number.
pub const MASK_PREFIX: &str = "•••• ";

/// Bad input fields and why, keyed by wire name (e.g. `recipient_details.number`), as a 400 reports them.
pub type FieldErrors = BTreeMap<String, String>;

/// Where a payout is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PayoutStatus {
    /// Accepted and waiting for a worker; the only state in which it may be edited or cancelled.
    Pending,
    /// A worker has claimed it and is talking to the gateway (also during retry back-off).
    Processing,
    /// The gateway paid it out.
    Completed,
    /// The gateway refused it, or retries ran out.
    Failed,
    /// Withdrawn before processing.
    Cancelled,
    /// Paid out, then sent back by the recipient's bank.
    Returned,
}

impl PayoutStatus {
    /// Every status, in life-cycle order.
    pub const ALL: [PayoutStatus; 6] = [
        PayoutStatus::Pending,
        PayoutStatus::Processing,
        PayoutStatus::Completed,
        PayoutStatus::Failed,
        PayoutStatus::Cancelled,
        PayoutStatus::Returned,
    ];

    /// The wire and storage name, e.g. `pending`.
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutStatus::Pending => "pending",
            PayoutStatus::Processing => "processing",
            PayoutStatus::Completed => "completed",
            PayoutStatus::Failed => "failed",
            PayoutStatus::Cancelled => "cancelled",
            PayoutStatus::Returned => "returned",
        }
    }

    /// The status with this exact (lower-case) name, if any.
    pub fn parse(text: &str) -> Option<PayoutStatus> {
        PayoutStatus::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

impl fmt::Display for PayoutStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who asks for a status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// An API caller: creates payouts and cancels pending ones.
    Client,
    /// Staff or the gateway's callbacks: mark completed payouts returned, retry failed ones.
    Operator,
    /// The background processor: claims pending payouts and records the gateway's outcome.
    Worker,
}

impl Actor {
    /// Every actor.
    pub const ALL: [Actor; 3] = [Actor::Client, Actor::Operator, Actor::Worker];

    /// The name recorded in the status history, e.g. `worker`.
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Client => "client",
            Actor::Operator => "operator",
            Actor::Worker => "worker",
        }
    }

    /// The actor with this exact (lower-case) name, if any.
    pub fn parse(text: &str) -> Option<Actor> {
        Actor::ALL.into_iter().find(|actor| actor.as_str() == text)
    }

    /// The name with its article, for messages: `a worker`, `an operator`.
    fn with_article(self) -> &'static str {
        match self {
            Actor::Client => "a client",
            Actor::Operator => "an operator",
            Actor::Worker => "a worker",
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a status change is refused (a 409); the message names both states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// Nobody may make this change.
    #[error("cannot change a payout from {from} to {to}")]
    NotAllowed {
        /// The current status.
        from: PayoutStatus,
        /// The requested status.
        to: PayoutStatus,
    },
    /// The change exists, but belongs to someone else.
    #[error("only {} moves a payout from {from} to {to}", Allowed(allowed))]
    WrongActor {
        /// The current status.
        from: PayoutStatus,
        /// The requested status.
        to: PayoutStatus,
        /// Who asked.
        actor: Actor,
        /// Who may make this change.
        allowed: &'static [Actor],
    },
}

impl TransitionError {
    /// The status the payout is in.
    pub fn from(&self) -> PayoutStatus {
        match self {
            TransitionError::NotAllowed { from, .. } | TransitionError::WrongActor { from, .. } => *from,
        }
    }

    /// The status that was asked for.
    pub fn to(&self) -> PayoutStatus {
        match self {
            TransitionError::NotAllowed { to, .. } | TransitionError::WrongActor { to, .. } => *to,
        }
    }
}

/// Formats a list of actors as `a client or an operator`.
struct Allowed<'a>(&'a [Actor]);

impl fmt::Display for Allowed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, actor) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(" or ")?;
            }
            f.write_str(actor.with_article())?;
        }
        Ok(())
    }
}

/// Decides whether `actor` may move a payout from `from` to `to`. This is the whole transition table:
///
/// | from       | to         | who               |
/// |------------|------------|-------------------|
/// | pending    | processing | worker            |
/// | processing | completed  | worker            |
/// | processing | failed     | worker            |
/// | pending    | cancelled  | client, operator  |
/// | completed  | returned   | operator          |
/// | failed     | pending    | operator (retry)  |
///
/// Everything else, including "changing" a status to itself, is refused.
pub fn transition(from: PayoutStatus, to: PayoutStatus, actor: Actor) -> Result<(), TransitionError> {
    use PayoutStatus::{Cancelled, Completed, Failed, Pending, Processing, Returned};
    let allowed: &'static [Actor] = match (from, to) {
        (Pending, Processing) | (Processing, Completed) | (Processing, Failed) => &[Actor::Worker],
        (Pending, Cancelled) => &[Actor::Client, Actor::Operator],
        (Completed, Returned) | (Failed, Pending) => &[Actor::Operator],
        _ => return Err(TransitionError::NotAllowed { from, to }),
    };
    if allowed.contains(&actor) { Ok(()) } else { Err(TransitionError::WrongActor { from, to, actor, allowed }) }
}

/// Whether a payout's description may still be changed: only while it is pending, as nothing has been sent yet.
pub fn is_editable(status: PayoutStatus) -> bool {
    status == PayoutStatus::Pending
}

/// Why a payout's description may not be changed (a 409).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot edit a payout that is {status}; only pending payouts can be edited")]
pub struct NotEditable {
    /// The payout's status.
    pub status: PayoutStatus,
}

/// [`is_editable`] as a result, for handlers that answer with the error.
pub fn ensure_editable(status: PayoutStatus) -> Result<(), NotEditable> {
    if is_editable(status) { Ok(()) } else { Err(NotEditable { status }) }
}

/// What a `DELETE` of a payout does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeleteAction {
    /// The payout is pending: it becomes `cancelled` (apply `transition(Pending, Cancelled, actor)`), and stays
    /// visible.
    Cancel,
    /// The payout is already cancelled: it is archived, hidden from reads and lists; its audit record stays.
    Archive,
}

/// Why a payout may not be deleted (a 409).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot delete a payout that is {status}; only pending and cancelled payouts can be deleted")]
pub struct DeleteError {
    /// The payout's status.
    pub status: PayoutStatus,
}

/// What deleting a payout in `status` means: pending ones are cancelled, cancelled ones archived, others refused.
pub fn delete_action(status: PayoutStatus) -> Result<DeleteAction, DeleteError> {
    match status {
        PayoutStatus::Pending => Ok(DeleteAction::Cancel),
        PayoutStatus::Cancelled => Ok(DeleteAction::Archive),
        PayoutStatus::Processing | PayoutStatus::Completed | PayoutStatus::Failed | PayoutStatus::Returned => {
            Err(DeleteError { status })
        }
    }
}

/// Checks a payout description: at most [`MAX_DESCRIPTION_CHARS`] characters, and no control characters other
/// than newline and tab. Empty is fine. The error is the message for the `description` field.
pub fn validate_description(description: &str) -> Result<(), String> {
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(format!("must be at most {MAX_DESCRIPTION_CHARS} characters"));
    }
    if description.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err("must not contain control characters other than newline and tab".into());
    }
    Ok(())
}

mod recipient;

pub use recipient::{MaskedRecipient, RecipientDetails, RecipientInput, account_key_matches, luhn_valid};

#[cfg(test)]
mod tests {
    use super::*;
    use PayoutStatus::{Cancelled, Completed, Failed, Pending, Processing, Returned};

    #[test]
    fn statuses_round_trip_through_their_names() {
        let names: Vec<&str> = PayoutStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["pending", "processing", "completed", "failed", "cancelled", "returned"]);
        for status in PayoutStatus::ALL {
            assert_eq!(PayoutStatus::parse(status.as_str()), Some(status));
            assert_eq!(status.to_string(), status.as_str());
        }
        for bad in ["", "Pending", "PENDING", " pending", "archived", "canceled"] {
            assert_eq!(PayoutStatus::parse(bad), None, "{bad:?}");
        }
        for actor in Actor::ALL {
            assert_eq!(Actor::parse(actor.as_str()), Some(actor));
        }
    }

    /// The whole transition table, written out: for each `from` (row) and `to` (column), who may make the change.
    /// `C` client, `O` operator, `W` worker, `-` nobody.
    const EXPECTED: [(PayoutStatus, [&str; 6]); 6] = [
        // to:         pending processing completed failed cancelled returned
        (Pending, ["-", "W", "-", "-", "CO", "-"]),
        (Processing, ["-", "-", "W", "W", "-", "-"]),
        (Completed, ["-", "-", "-", "-", "-", "O"]),
        (Failed, ["O", "-", "-", "-", "-", "-"]),
        (Cancelled, ["-", "-", "-", "-", "-", "-"]),
        (Returned, ["-", "-", "-", "-", "-", "-"]),
    ];

    fn letter(actor: Actor) -> char {
        match actor {
            Actor::Client => 'C',
            Actor::Operator => 'O',
            Actor::Worker => 'W',
        }
    }

    #[test]
    fn every_pair_and_actor_follows_the_written_table() {
        let mut checked = 0;
        for (row, (from, cells)) in EXPECTED.iter().enumerate() {
            assert_eq!(*from, PayoutStatus::ALL[row]);
            for (to, cell) in PayoutStatus::ALL.into_iter().zip(cells) {
                for actor in Actor::ALL {
                    let result = transition(*from, to, actor);
                    let case = format!("{from} -> {to} by {actor}");
                    if cell.contains(letter(actor)) {
                        assert_eq!(result, Ok(()), "{case}");
                    } else {
                        let error = result.err().unwrap_or_else(|| panic!("{case} should be refused"));
                        assert_eq!((error.from(), error.to()), (*from, to), "{case}");
                        let message = error.to_string();
                        assert!(message.contains(&format!("from {from} to {to}")), "{case}: {message}");
                        match error {
                            TransitionError::NotAllowed { .. } => assert_eq!(*cell, "-", "{case}"),
                            TransitionError::WrongActor { actor: asked, allowed, .. } => {
                                assert_eq!(asked, actor, "{case}");
                                let allowed: String = allowed.iter().map(|a| letter(*a)).collect();
                                assert_eq!(allowed, *cell, "{case}");
                            }
                        }
                    }
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 6 * 6 * 3);
    }

    #[test]
    fn refusals_say_what_and_who() {
        let message = |from, to, actor| transition(from, to, actor).err().map(|e| e.to_string());
        assert_eq!(
            message(Completed, Pending, Actor::Operator).as_deref(),
            Some("cannot change a payout from completed to pending")
        );
        assert_eq!(
            message(Pending, Pending, Actor::Client).as_deref(),
            Some("cannot change a payout from pending to pending")
        );
        assert_eq!(
            message(Pending, Processing, Actor::Client).as_deref(),
            Some("only a worker moves a payout from pending to processing")
        );
        assert_eq!(
            message(Pending, Cancelled, Actor::Worker).as_deref(),
            Some("only a client or an operator moves a payout from pending to cancelled")
        );
        assert_eq!(
            message(Completed, Returned, Actor::Client).as_deref(),
            Some("only an operator moves a payout from completed to returned")
        );
    }

    #[test]
    fn only_pending_payouts_are_editable() {
        for status in PayoutStatus::ALL {
            assert_eq!(is_editable(status), status == Pending, "{status}");
            assert_eq!(ensure_editable(status).is_ok(), status == Pending, "{status}");
        }
        assert_eq!(
            ensure_editable(Processing).map_err(|e| e.to_string()),
            Err("cannot edit a payout that is processing; only pending payouts can be edited".into())
        );
    }

    #[test]
    fn deleting_cancels_pending_archives_cancelled_and_refuses_the_rest() {
        let expected = [
            (Pending, Ok(DeleteAction::Cancel)),
            (Processing, Err(DeleteError { status: Processing })),
            (Completed, Err(DeleteError { status: Completed })),
            (Failed, Err(DeleteError { status: Failed })),
            (Cancelled, Ok(DeleteAction::Archive)),
            (Returned, Err(DeleteError { status: Returned })),
        ];
        for (status, outcome) in expected {
            assert_eq!(delete_action(status), outcome, "{status}");
        }
        // Cancelling by DELETE is a transition the client may make.
        assert_eq!(transition(Pending, Cancelled, Actor::Client), Ok(()));
        assert_eq!(
            DeleteError { status: Processing }.to_string(),
            "cannot delete a payout that is processing; only pending and cancelled payouts can be deleted"
        );
    }

    #[test]
    fn descriptions_are_bounded_in_characters_and_free_of_control_characters() {
        assert_eq!(validate_description(""), Ok(()));
        assert_eq!(validate_description("Тестовая выплата\nстрока 2\tтаб"), Ok(()));
        // 500 two-byte characters are 1000 bytes and still fit.
        assert_eq!(validate_description(&"я".repeat(500)), Ok(()));
        assert_eq!(validate_description(&"я".repeat(501)), Err("must be at most 500 characters".into()));
        for bad in ["a\u{0}b", "a\rb", "a\u{7f}b", "a\u{85}b", "\u{1b}[31m"] {
            assert!(validate_description(bad).is_err(), "{bad:?}");
        }
    }
}
