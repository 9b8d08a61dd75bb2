//! What the writer does when a batch fails: the decision (pure, tested here) and the answers to its callers.

use super::{EngineError, Reply};
use crate::store::StoreError;

/// Why a batch got no outcomes, and whether it failed while committing (when it may have committed anyway).
#[derive(Debug)]
pub(super) struct BatchFailure {
    pub(super) error: StoreError,
    pub(super) committing: bool,
}

impl BatchFailure {
    pub(super) fn before_commit(error: StoreError) -> BatchFailure {
        BatchFailure { error, committing: false }
    }
}

impl From<StoreError> for BatchFailure {
    fn from(error: StoreError) -> BatchFailure {
        BatchFailure::before_commit(error)
    }
}

/// Tells the callers of a failed batch (or of one command) that it has no outcome: rolled back, or (a failed
/// commit) unknown. Logged once per failure, not once per caller.
pub(super) fn fail_all(replies: Vec<Reply>, failure: &BatchFailure) {
    let error = failed(failure, replies.len());
    for reply in replies {
        let _ = reply.send(Err(error));
    }
}

/// What the callers of `commands` commands of a failed batch are told, logged once and counted.
pub(super) fn failed(failure: &BatchFailure, commands: usize) -> EngineError {
    metrics::counter!("payledger_ledger_batch_failures_total").increment(commands as u64);
    if failure.committing {
        tracing::error!(error = %failure.error, commands, "ledger commit failed; its outcome is unknown");
        EngineError::Unconfirmed
    } else {
        tracing::error!(error = %failure.error, commands, "ledger commands failed and were rolled back");
        EngineError::Unavailable
    }
}

/// Tells callers whose commands were never tried (the database is out) that nothing was applied.
pub(super) fn fail_untried(replies: Vec<Reply>) {
    metrics::counter!("payledger_ledger_batch_failures_total").increment(replies.len() as u64);
    for reply in replies {
        let _ = reply.send(Err(EngineError::Unavailable));
    }
}

/// What the writer does with a batch that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterFailure {
    /// Apply each command alone (see [`ends_one_by_one`] for when that stops early).
    RetryOneByOne,
    /// Answer every caller 503.
    FailAll,
}

/// Decides what follows a failed batch of `commands` commands. Whatever failed before the COMMIT (even an
/// error that looks like an outage) may be the batch's size or one bad command: out of shared memory for
/// one advisory lock per idempotency key, a temp-file limit, a DBA's statement timeout. Answering 503 to
/// every caller would then refuse the same large batch again and again as resends refill the queue, so the
/// commands are retried one by one, which is where a real outage is told apart ([`ends_one_by_one`]). Only a
/// batch that got no connection at all fails at once: nothing of it reached the database, and a retry would
/// only wait out the pool's acquire timeout a second time. A failed COMMIT may still have committed, so
/// nothing of it is retried.
pub(super) fn after_batch_failure(commands: usize, failure: &BatchFailure) -> AfterFailure {
    if commands > 1 && !failure.committing && !failure.error.is_no_connection() {
        AfterFailure::RetryOneByOne
    } else {
        AfterFailure::FailAll
    }
}

/// Whether one command that failed ALONE shows an outage, so the rest of its batch is failed untried rather
/// than each waiting for the same outage. A command's own failure (a statement it alone breaks) does not.
pub(super) fn ends_one_by_one(failure: &BatchFailure) -> bool {
    failure.error.is_connection_failure()
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    /// A PostgreSQL error with only a SQLSTATE, as the server would send it.
    #[derive(Debug)]
    struct PgCode(&'static str);

    impl std::fmt::Display for PgCode {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for PgCode {}

    impl sqlx::error::DatabaseError for PgCode {
        fn message(&self) -> &str {
            self.0
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn postgres(code: &'static str) -> BatchFailure {
        BatchFailure::before_commit(StoreError::Database(sqlx::Error::Database(Box::new(PgCode(code)))))
    }

    /// SQLSTATEs that look like an outage but may only mean the batch is large: out of shared memory (one
    /// advisory lock per idempotency key), out of temp space, a temp-file limit, a statement timeout.
    const SIZE_DEPENDENT: [&str; 4] = ["53200", "53100", "53400", "57014"];

    #[test]
    fn a_large_batch_failing_for_its_size_is_retried_one_by_one() {
        for code in SIZE_DEPENDENT {
            assert_eq!(after_batch_failure(1024, &postgres(code)), AfterFailure::RetryOneByOne, "{code}");
        }
        let too_many_binds = sqlx::Error::Protocol("too many arguments for query: 70000".into());
        let failure = BatchFailure::before_commit(StoreError::Database(too_many_binds));
        assert_eq!(after_batch_failure(1024, &failure), AfterFailure::RetryOneByOne);
        assert!(!ends_one_by_one(&failure), "a protocol error is no outage");
        assert!(!failure.error.is_lost_connection(), "a protocol error does not run the batch again");
    }

    #[test]
    fn an_outage_is_retried_one_by_one_but_stops_at_the_first_command_that_fails_alone() {
        let outages = [
            BatchFailure::before_commit(StoreError::Database(sqlx::Error::Io(
                std::io::ErrorKind::ConnectionRefused.into(),
            ))),
            postgres("57P01"),
            postgres("08006"),
            postgres("53200"),
        ];
        for outage in &outages {
            assert_eq!(after_batch_failure(1024, outage), AfterFailure::RetryOneByOne, "{}", outage.error);
            assert!(ends_one_by_one(outage), "{} alone is an outage", outage.error);
        }
    }

    #[test]
    fn a_command_that_fails_alone_for_itself_does_not_stop_the_others() {
        for code in ["23505", "22003", "40001", "42P01"] {
            assert!(!ends_one_by_one(&postgres(code)), "{code}");
        }
    }

    #[test]
    fn a_batch_that_got_no_connection_fails_at_once() {
        for error in [sqlx::Error::PoolTimedOut, sqlx::Error::PoolClosed] {
            let failure = BatchFailure::before_commit(StoreError::Database(error));
            assert_eq!(after_batch_failure(1024, &failure), AfterFailure::FailAll, "{}", failure.error);
        }
    }

    #[test]
    fn a_failed_commit_or_a_single_command_is_not_retried() {
        let committing = BatchFailure { error: postgres("53200").error, committing: true };
        assert_eq!(after_batch_failure(1024, &committing), AfterFailure::FailAll);
        assert_eq!(after_batch_failure(1, &postgres("22003")), AfterFailure::FailAll);
    }
}
