//! The settings of outbound events: their flags (with environment twins) and what they resolve to.

use std::time::Duration;

use clap::Args;

use crate::networks::Network;

/// Outbound events: delivery workers, the receivers they may reach, retries and the failure window.
#[derive(Debug, Clone, Args)]
pub struct EventArgs {
    /// Event delivery workers in this process (0: none; `payledger worker` processes deliver instead).
    #[arg(long, env = "PAYLEDGER_EVENT_WORKERS", default_value_t = 2)]
    pub event_workers: usize,
    /// Networks outside the public internet that endpoints may resolve to (comma-separated addresses or
    /// networks, e.g. `10.1.0.0/16`); loopback, private, link-local, CGNAT and other non-global addresses are
    /// refused otherwise.
    #[arg(long, env = "PAYLEDGER_OUTBOUND_ALLOWED_NETWORKS", value_delimiter = ',')]
    pub outbound_allowed_networks: Vec<String>,
    /// The most one delivery attempt may take (connect, send, answer), in seconds.
    #[arg(long, env = "PAYLEDGER_EVENT_TIMEOUT_SECONDS", default_value_t = 15)]
    pub event_timeout_seconds: u64,
    /// The waits between attempts (`s`, `m`, `h`, `d`), each with ±20 % jitter; after the last the delivery fails.
    #[arg(long, env = "PAYLEDGER_EVENT_RETRY_SCHEDULE", default_value = "5s,5m,30m,2h,5h,10h,10h")]
    pub event_retry_schedule: String,
    /// An endpoint whose every delivery failed for this many hours is disabled (an operator is told).
    #[arg(long, env = "PAYLEDGER_EVENT_FAILURE_WINDOW_HOURS", default_value_t = 120)]
    pub event_failure_window_hours: u64,
    /// How long a rotated-out secret still signs, in hours (both signatures are sent meanwhile).
    #[arg(long, env = "PAYLEDGER_EVENT_SECRET_OVERLAP_HOURS", default_value_t = 24)]
    pub event_secret_overlap_hours: u64,
    /// How many days events, their finished deliveries and the attempts are kept (the delivery log and what a
    /// recovery can replay).
    #[arg(long, env = "PAYLEDGER_EVENT_RETENTION_DAYS", default_value_t = 30)]
    pub event_retention_days: u64,
}

/// What [`EventArgs`] resolve to.
#[derive(Debug, Clone)]
pub struct EventSettings {
    /// Delivery workers in this process.
    pub workers: usize,
    /// Non-global networks endpoints may reach.
    pub allowed_networks: Vec<Network>,
    /// The limit on one attempt.
    pub timeout: Duration,
    /// The waits between attempts, as configured (parsed by `schedule.rs`).
    pub retry_schedule: String,
    /// How long an endpoint may fail continuously before it is disabled.
    pub failure_window: Duration,
    /// How long a rotated-out secret still signs.
    pub secret_overlap: Duration,
    /// Endpoints must be `https` (the production profile).
    pub require_https: bool,
    /// How long a worker holds claimed deliveries: longer than an attempt can take.
    pub lease: Duration,
    /// How long an idle worker waits before looking for due deliveries again.
    pub poll: Duration,
    /// How long events and the delivery log are kept.
    pub retention: Duration,
}

impl Default for EventSettings {
    fn default() -> EventSettings {
        EventSettings {
            workers: 2,
            allowed_networks: Vec::new(),
            timeout: Duration::from_secs(15),
            retry_schedule: "5s,5m,30m,2h,5h,10h,10h".to_owned(),
            failure_window: Duration::from_secs(120 * 3600),
            secret_overlap: Duration::from_secs(24 * 3600),
            require_https: false,
            lease: Duration::from_secs(60),
            poll: Duration::from_millis(200),
            retention: Duration::from_secs(30 * 86_400),
        }
    }
}

impl EventArgs {
    /// The settings these arguments describe (`require_https` is the profile's, set by the caller), or why they
    /// are wrong.
    pub fn settings(&self) -> anyhow::Result<EventSettings> {
        let allowed_networks = self
            .outbound_allowed_networks
            .iter()
            .filter(|entry| !entry.trim().is_empty())
            .map(|entry| {
                entry
                    .parse::<Network>()
                    .map_err(|error| anyhow::anyhow!("PAYLEDGER_OUTBOUND_ALLOWED_NETWORKS: {error}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let timeout = Duration::from_secs(self.event_timeout_seconds.clamp(1, 300));
        Ok(EventSettings {
            workers: self.event_workers,
            allowed_networks,
            timeout,
            retry_schedule: self.event_retry_schedule.clone(),
            failure_window: Duration::from_secs(self.event_failure_window_hours.max(1).saturating_mul(3600)),
            secret_overlap: Duration::from_secs(self.event_secret_overlap_hours.saturating_mul(3600)),
            require_https: false,
            // The longest attempt and a wide margin for the waits around it (the claim's and the record's
            // transactions, a busy SQLite writer): a lease must not end while its attempt may still run. A longer
            // one only delays the retry of a delivery whose worker died.
            lease: timeout * 2 + Duration::from_secs(30),
            poll: EventSettings::default().poll,
            retention: Duration::from_secs(self.event_retention_days.max(1).saturating_mul(86_400)),
        })
    }
}
