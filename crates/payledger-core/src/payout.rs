//! Payout requests (being written).
