//! Outbound events (issue 15): what payledger tells the company's own systems, signed to the Standard Webhooks
//! specification so that receivers can verify them with its published libraries. So far: the signature
//! (`signature.rs`), the guard that keeps deliveries off private networks (`guard.rs`) and one delivery
//! attempt (`sender.rs`); the endpoints, the outbox and the delivery worker build on them.

pub mod guard;
pub mod sender;
pub mod signature;
