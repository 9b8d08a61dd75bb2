//! Outbound events (issue 15): what payledger tells the company's own systems, signed to the Standard Webhooks
//! specification so that receivers can verify them with its published libraries. So far: the signature
//! (`signature.rs`); the endpoints, the outbox and the delivery worker build on it.

pub mod signature;
