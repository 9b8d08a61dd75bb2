//! The admin console: its handlers as a browser without JavaScript sees them, and the main flows in real
//! Chromium.

mod browser;
mod overview;
mod payouts;
mod people;
mod reconciliation;
mod sessions;
mod webhooks;
