//! The bank's webhook: who may post notices (`signature`, `networks`) and the intake service that records and
//! applies them exactly once by operation id (`intake`). The HTTP handler is `api/webhook.rs`.

pub mod intake;
pub mod networks;
pub mod signature;
