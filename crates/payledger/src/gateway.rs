//! Payout gateways (being written).
