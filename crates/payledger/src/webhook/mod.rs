//! The bank's webhook: who may post notices (`signature`; the allowed source networks are `crate::networks`)
//! and the intake service that records and applies them exactly once by operation id (`intake`). The HTTP
//! handler is `api/webhook.rs`.

pub mod intake;
pub mod signature;

use clap::ValueEnum;

/// How webhooks are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WebhookMode {
    /// Applied before the answer.
    Sync,
    /// Recorded before the answer, applied in the background.
    Async,
}

/// The answer to a known operation id with different data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConflictPolicy {
    /// 200 and a recorded conflict.
    Record,
    /// 409.
    Reject,
}
