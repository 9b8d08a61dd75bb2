//! The end-of-run summary: what the run measured and checked, rendered as text for people (`text`) and as
//! one JSON line for scripts (`json`).

mod json;
mod text;

use std::time::Duration;

use crate::client::Refusals;
use crate::events::EventCheck;
use crate::load::{PayoutCounts, Settled, Stats};
use crate::payouts::{Drain, rate_tenths};
use crate::reads::{ReadKind, ReadTally};
use crate::verify::{PayoutVerification, TransferVerification, Verification};

/// Percentiles reported, in parts per million, with their labels.
const PERCENTILES: [(&str, u64); 4] = [("p50", 500_000), ("p90", 900_000), ("p99", 990_000), ("p99.9", 999_000)];

/// The scenario-specific end of a run: what was checked, and how.
#[derive(Debug)]
pub enum Check {
    /// The bank webhook scenario's per-organization check.
    Webhook(Verification),
    /// The transfers scenario's per-user and conservation check.
    Transfers(TransferCheck),
    /// The payouts scenario's queue drain and count check.
    Payouts(PayoutCheck),
    /// The ceiling: nothing to check in the answers, only that there were 2xx answers and no failures.
    Ceiling(CeilingCheck),
    /// The read scenarios' check of every answer against the set-up.
    Reads(ReadCheck),
}

impl Check {
    /// Whether the balances came out exact.
    pub fn ok(&self) -> bool {
        match self {
            Check::Webhook(v) => v.ok(),
            Check::Transfers(t) => t.verification.ok(),
            Check::Payouts(p) => p.verification.ok(),
            Check::Ceiling(c) => c.ok(),
            Check::Reads(r) => r.ok(),
        }
    }

    /// The scenario's name, as `--scenario` spells it.
    pub fn scenario(&self) -> &'static str {
        match self {
            Check::Webhook(_) => "webhook",
            Check::Transfers(_) => "transfers",
            Check::Payouts(_) => "payouts",
            Check::Ceiling(_) => "ceiling",
            Check::Reads(r) => r.kind.name(),
        }
    }
}

/// What the ceiling run found: not a check of the answers (the liveness probe reads no data), only whether
/// the number measured is a ceiling at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CeilingCheck {
    /// Measured requests answered 2xx.
    pub answered: u64,
    /// Measured requests answered otherwise (1xx/3xx, 4xx, 5xx) or not at all: a fast failure would inflate
    /// the ceiling, so any of them fails the run.
    pub failed: u64,
}

impl CeilingCheck {
    /// The ceiling's verdict from the measured requests.
    pub fn from_stats(m: &Stats) -> CeilingCheck {
        let s = &m.status;
        let e = &m.errors;
        CeilingCheck {
            answered: s.ok + s.created + s.other_2xx,
            failed: s.other + s.client_error + s.server_error + e.connect + e.transport + e.timeout,
        }
    }

    /// Answers came, all of them 2xx.
    pub fn ok(&self) -> bool {
        self.answered > 0 && self.failed == 0
    }
}

/// What a read scenario set up and found.
#[derive(Debug, Clone)]
pub struct ReadCheck {
    /// Which read.
    pub kind: ReadKind,
    /// Organizations (`balance`) or users (`balances`, `history`) read.
    pub accounts: usize,
    /// The lowest user id (the users are consecutive from there); `None` for organizations.
    pub first_user: Option<u64>,
    /// Money the set-up added: the sum of the notices (`balance`), or the deposit into each user.
    pub seeded: i64,
    /// Set-up requests that had to be resent before the server confirmed them.
    pub setup_resent: u64,
    /// What the checks of the answers found.
    pub reads: ReadTally,
    /// Measured requests answered other than 2xx, or not at all: as for the ceiling, a fast refusal (a 429, a
    /// 503) would pass for a fast read, so any of them fails the run.
    pub not_answered: u64,
}

impl ReadCheck {
    /// Answers were checked, every one matched, and every measured request was answered 2xx.
    pub fn ok(&self) -> bool {
        self.reads.checked > 0 && self.reads.mismatches == 0 && self.not_answered == 0
    }
}

/// What the transfers scenario did and found.
#[derive(Debug)]
pub struct TransferCheck {
    /// The lowest user id; the users are consecutive from there.
    pub first_user: u64,
    /// Set-up deposits that had to be resent before the server answered 201.
    pub deposits_resent: u64,
    /// Transfers applied (201), warm-up and resends after the load included.
    pub applied: u64,
    /// Transfers refused for insufficient funds (409), warm-up and resends after the load included.
    pub refused: u64,
    /// The balance check.
    pub verification: TransferVerification,
}

/// What the payouts scenario did and found.
#[derive(Debug)]
pub struct PayoutCheck {
    /// How every creation request came out, warm-up included.
    pub outcomes: PayoutCounts,
    /// How the queue drained after creation stopped.
    pub drain: Drain,
    /// The `--converge` limit on the drain, in seconds.
    pub patience_secs: u64,
    /// The count check.
    pub verification: PayoutVerification,
}

impl PayoutCheck {
    /// Payouts completed per second from the first creation to the end of the drain, in tenths.
    pub fn overall_rate_tenths(&self) -> Option<u64> {
        rate_tenths(self.verification.completed(), self.drain.since_first_creation)
    }
}

/// How the run authenticated, and what the server refused.
#[derive(Debug, Default, Clone)]
pub struct AuthReport {
    /// Who the bench logged in as (`--username`), if it did.
    pub user: Option<String>,
    /// Successful logins, renewals of the access token included.
    pub logins: u64,
    /// The 401 and 403 answers to any of the run's requests: set-up, load, resends and reads.
    pub refusals: Refusals,
}

/// Everything the run measured and checked.
#[derive(Debug)]
pub struct Summary {
    /// Requests after the warm-up.
    pub measured: Stats,
    /// From the end of the warm-up to the last measured response.
    pub elapsed: Duration,
    /// Requests during the warm-up.
    pub warmup_requests: u64,
    /// Unique operations acknowledged during the load, warm-up included.
    pub acknowledged_ops: u64,
    /// Connections the load workers opened (one each, plus reconnects).
    pub connects: u64,
    /// The first connect or transport failure, if any.
    pub first_error: Option<String>,
    /// How resending the operations left in doubt went.
    pub settled: Settled,
    /// Operations still in doubt at the end.
    pub unresolved: usize,
    /// The balance check, which also says which scenario ran.
    pub verification: Check,
    /// The server's peak RSS in KiB, or why it could not be read, if `--server-pid` was given.
    pub server_peak_rss_kib: Option<Result<u64, String>>,
    /// Who the run was, and the 401 and 403 answers it got.
    pub auth: AuthReport,
    /// With `--event-receiver`: the events the bench received and their check.
    pub events: Option<EventCheck>,
    /// Operations per request (`--batch`); filled in by `run`.
    pub batch: u32,
}

impl Summary {
    /// Measured requests per second, in tenths, computed in integers.
    pub fn rate_tenths(&self) -> u64 {
        let nanos = self.elapsed.as_nanos();
        if nanos == 0 {
            return 0;
        }
        u64::try_from(u128::from(self.measured.requests) * 10_000_000_000 / nanos).unwrap_or(u64::MAX)
    }

    /// With `--batch`, the measured operations answered in their places (transfers applied or refused, notices
    /// acknowledged) per second, in tenths.
    pub fn batched_rate_tenths(&self) -> u64 {
        let nanos = self.elapsed.as_nanos();
        if nanos == 0 {
            return 0;
        }
        u64::try_from(u128::from(self.measured.batched) * 10_000_000_000 / nanos).unwrap_or(u64::MAX)
    }

    /// Unique operations acknowledged overall, resends after the load included.
    pub fn total_acknowledged(&self) -> u64 {
        self.acknowledged_ops + self.settled.acknowledged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payouts::QueueCounts;
    use crate::verify::Mismatch;

    fn summary(requests: u64, elapsed: Duration) -> Summary {
        let mut measured = Stats { requests, ..Stats::default() };
        for micros in 1..=requests {
            measured.latency.record(micros * 1_000);
            measured.status.ok += 1;
        }
        Summary {
            measured,
            elapsed,
            warmup_requests: 3,
            acknowledged_ops: requests,
            connects: 2,
            first_error: None,
            settled: Settled::default(),
            unresolved: 0,
            verification: Check::Webhook(Verification {
                orgs: 2,
                total: 150_025,
                acknowledged: 150_025,
                ..Verification::default()
            }),
            server_peak_rss_kib: Some(Ok(2_048)),
            auth: AuthReport::default(),
            events: None,
            batch: 1,
        }
    }

    #[test]
    fn rate_uses_the_measured_window() {
        assert_eq!(summary(1_000, Duration::from_secs(4)).rate_tenths(), 2_500);
        assert_eq!(summary(10, Duration::from_millis(3_000)).rate_tenths(), 33);
        assert_eq!(summary(0, Duration::ZERO).rate_tenths(), 0);
    }

    #[test]
    fn text_report_has_the_key_lines() {
        let text = summary(1_000, Duration::from_secs(4)).render_text();
        assert!(text.contains("requests:    1000 in 4.000 s (3 during warm-up, not counted)"), "{text}");
        assert!(text.contains("throughput:  250.0 req/s"), "{text}");
        assert!(text.contains("max 1.000"), "{text}");
        assert!(text.contains("server peak RSS: 2.0 MiB"), "{text}");
        assert!(text.ends_with("balances: OK (2 orgs, total 1500.25)\n"), "{text}");
    }

    #[test]
    fn mismatches_are_listed() {
        let mut s = summary(10, Duration::from_secs(1));
        let Check::Webhook(v) = &mut s.verification else { unreachable!() };
        v.mismatches.push(Mismatch { inn: "7707083893".into(), baseline: 100, expected: 600, actual: 1_100 });
        let text = s.render_text();
        assert!(text.contains("balances: MISMATCH in 1 of 2 orgs"), "{text}");
        assert!(text.contains(
            "7707083893: baseline 1.00 + acknowledged 5.00 = expected 6.00, server says 11.00 (off by 5.00)"
        ));
        assert_eq!(s.to_json()["balances"]["ok"], false);
    }

    fn transfers_summary(verification: TransferVerification) -> Summary {
        let mut s = summary(100, Duration::from_secs(1));
        s.measured.status = crate::load::StatusCounts {
            created: 60,
            client_error: 35,
            server_error: 5,
            unavailable: 5,
            ..Default::default()
        };
        s.measured.transfers = crate::load::TransferCounts { applied: 60, refused: 30, in_flight: 4 };
        s.verification = Check::Transfers(TransferCheck {
            first_user: 5_000_001,
            deposits_resent: 1,
            applied: 61,
            refused: 31,
            verification,
        });
        s
    }

    #[test]
    fn transfers_report_their_outcomes_and_conservation() {
        let v = TransferVerification {
            users: 2,
            deposit: 100_000,
            total: 200_000,
            expected_total: 200_000,
            moved: 1_234,
            ..TransferVerification::default()
        };
        let s = transfers_summary(v);
        let text = s.render_text();
        assert!(
            text.contains(
                "statuses:    201: 60  409 insufficient funds: 30  409 in flight: 4  other 4xx: 1  other 2xx: 0  \
             1xx/3xx: 0  5xx: 5 (503: 5)"
            ),
            "{text}"
        );
        assert!(text.contains("setup:       2 users (ids 5000001..=5000002), 1000.00 deposited into each"), "{text}");
        assert!(text.contains("transfers:   61 applied, 31 refused for insufficient funds"), "{text}");
        assert!(
            text.ends_with(
                "balances: OK (2 users, total 2000.00 as deposited, conserved; 12.34 moved by 61 applied transfers)\n"
            ),
            "{text}"
        );
        let json = s.to_json();
        assert_eq!(json["scenario"], "transfers");
        assert_eq!((json["applied"].as_u64(), json["refused"].as_u64()), (Some(61), Some(31)));
        assert_eq!(json["status"]["201"], 60);
        assert_eq!(json["status"]["409_insufficient_funds"], 30);
        assert_eq!(json["balances"]["moved_total"], "12.34");
        assert_eq!(json["balances"]["conserved"], true);
        assert_eq!(summary(1, Duration::from_secs(1)).to_json()["scenario"], "webhook");
    }

    #[test]
    fn transfer_mismatches_are_listed() {
        let miss = crate::verify::TransferMismatch {
            user_id: 5_000_002,
            baseline: 0,
            received: 500,
            sent: 200,
            expected: 100_300,
            actual: crate::api::UserBalance { amount: 100_000, reserved: 300 },
        };
        let v = TransferVerification {
            users: 2,
            deposit: 100_000,
            total: 199_999,
            expected_total: 200_000,
            mismatches: vec![miss],
            ..TransferVerification::default()
        };
        let text = transfers_summary(v).render_text();
        assert!(text.contains(
            "balances: MISMATCH in 1 of 2 users; money not conserved: total 1999.99, deposited 2000.00 (off by -0.01)"
        ), "{text}");
        assert!(
            text.contains(
                "  user 5000002: baseline 0.00 + deposit 1000.00 + received 5.00 - sent 2.00 = expected 1003.00, \
             server says 1000.00 + reserved 3.00 (off by 0.00)"
            ),
            "{text}"
        );
    }

    #[test]
    fn authentication_is_reported_only_when_it_matters() {
        let mut s = summary(10, Duration::from_secs(1));
        assert!(!s.render_text().contains("auth:"), "an anonymous run nothing refused says nothing");
        s.auth.refusals = Refusals {
            unauthorized: 7,
            forbidden: 0,
            first: Some("GET /api/v1/payouts/?status=pending&page_size=1: HTTP 401 Unauthorized: {}".into()),
        };
        let text = s.render_text();
        assert!(
            text.contains(
                "auth:        FAILED: 7 requests refused, 401 Unauthorized: 7  403 Forbidden: 0 (without credentials: \
                 no --username/--password; first: GET /api/v1/payouts/?status=pending&page_size=1: HTTP 401"
            ),
            "{text}"
        );
        let json = s.to_json();
        assert_eq!((json["auth"]["401"].as_u64(), json["auth"]["user"].is_null()), (Some(7), true));
        s.auth = AuthReport { user: Some("bench".into()), logins: 2, refusals: Refusals::default() };
        assert!(s.render_text().contains("auth:        Bearer token (as user bench, logins: 2); no request refused\n"));
    }

    #[test]
    fn json_is_one_line_with_exact_money() {
        let json = summary(1_000, Duration::from_secs(4)).to_json();
        let line = json.to_string();
        assert!(!line.contains('\n'));
        assert_eq!(json["requests"], 1_000);
        assert_eq!(json["req_per_sec"], 250.0);
        assert_eq!(json["latency"]["max_ms"], 1.0);
        assert_eq!(json["balances"]["total"], "1500.25");
        assert_eq!(json["server_peak_rss_kib"], 2_048);
    }
    #[test]
    fn a_queue_empty_at_the_stop_has_no_drain_rate() {
        let mut s = summary(10, Duration::from_secs(1));
        let last = QueueCounts { completed: 12, ..QueueCounts::default() };
        s.verification = Check::Payouts(PayoutCheck {
            outcomes: PayoutCounts { created: 12, ..PayoutCounts::default() },
            drain: Drain {
                at_stop: last,
                last,
                drained: true,
                interrupted: false,
                elapsed: Duration::ZERO,
                since_first_creation: Duration::from_secs(2),
                polls: 1,
            },
            patience_secs: 120,
            verification: PayoutVerification { created: 12, in_doubt: 0, baseline: QueueCounts::default(), last },
        });
        let text = s.render_text();
        assert!(
            text.contains("drain:       nothing was pending or processing when creation stopped, - payouts/s"),
            "{text}"
        );
        assert!(
            text.contains("overall:     12 completed in 2.000 s since the first creation, 6.0 payouts/s"),
            "{text}"
        );
        let json = s.to_json();
        assert_eq!(json["payouts"]["drain_payouts_per_sec"], serde_json::Value::Null);
        assert_eq!(json["payouts"]["overall_payouts_per_sec"], 6.0);
        assert_eq!(json["payouts"]["ok"], true);
    }
}
