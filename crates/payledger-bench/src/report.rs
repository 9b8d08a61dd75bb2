//! The end-of-run summary, as text for people and as one JSON line for scripts.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::json;

use crate::client::Refusals;
use crate::load::{PayoutCounts, Settled, Stats};
use crate::money::format_kopecks;
use crate::payouts::{Drain, QueueCounts, rate_tenths};
use crate::rss::format_mib;
use crate::verify::{PayoutVerification, TransferVerification, Verification};

/// Percentiles reported, in parts per million, with their labels.
const PERCENTILES: [(&str, u64); 4] = [("p50", 500_000), ("p90", 900_000), ("p99", 990_000), ("p99.9", 999_000)];

/// At most this many mismatching organizations (or users) are listed; the count covers the rest.
const MISMATCHES_LISTED: usize = 20;

/// The scenario-specific end of a run: what was checked, and how.
#[derive(Debug)]
pub enum Check {
    /// The bank webhook scenario's per-organization check.
    Webhook(Verification),
    /// The transfers scenario's per-user and conservation check.
    Transfers(TransferCheck),
    /// The payouts scenario's queue drain and count check.
    Payouts(PayoutCheck),
}

impl Check {
    /// Whether the balances came out exact.
    pub fn ok(&self) -> bool {
        match self {
            Check::Webhook(v) => v.ok(),
            Check::Transfers(t) => t.verification.ok(),
            Check::Payouts(p) => p.verification.ok(),
        }
    }

    /// The scenario's name, as `--scenario` spells it.
    pub fn scenario(&self) -> &'static str {
        match self {
            Check::Webhook(_) => "webhook",
            Check::Transfers(_) => "transfers",
            Check::Payouts(_) => "payouts",
        }
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

impl AuthReport {
    /// The `auth:` line: what was refused, else who the bench was; nothing for an anonymous run that no
    /// request needed credentials for.
    fn render(&self) -> String {
        let r = &self.refusals;
        let who = match &self.user {
            Some(user) => format!("as user {user}, logins: {}", self.logins),
            None => "without credentials: no --username/--password".to_owned(),
        };
        if r.total() > 0 {
            let first = r.first.as_deref().unwrap_or("-");
            return format!(
                "auth:        FAILED: {} requests refused, 401 Unauthorized: {}  403 Forbidden: {} ({who}; first: {first})\n",
                r.total(),
                r.unauthorized,
                r.forbidden
            );
        }
        match &self.user {
            Some(_) => format!("auth:        Bearer token ({who}); no request refused\n"),
            None => String::new(),
        }
    }
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

    /// Unique operations acknowledged overall, resends after the load included.
    pub fn total_acknowledged(&self) -> u64 {
        self.acknowledged_ops + self.settled.acknowledged
    }

    /// The human-readable report.
    pub fn render_text(&self) -> String {
        let m = &self.measured;
        let mut out = String::new();
        // Writing to a String cannot fail; the results are ignored for that reason.
        let _ = writeln!(
            out,
            "requests:    {} in {} s ({} during warm-up, not counted)",
            m.requests,
            millis_as_seconds(self.elapsed),
            self.warmup_requests
        );
        let rate = self.rate_tenths();
        let _ = writeln!(out, "throughput:  {}.{} req/s", rate / 10, rate % 10);
        let mut latency = String::new();
        for (label, ppm) in PERCENTILES {
            let _ = write!(latency, "{label} {}  ", nanos_as_millis(m.latency.value_at_ppm(ppm)));
        }
        let _ = writeln!(out, "latency ms:  {latency}max {}", nanos_as_millis(m.latency.max()));
        let s = &m.status;
        match &self.verification {
            Check::Webhook(_) => {
                let _ = writeln!(
                    out,
                    "statuses:    200: {}  other 2xx: {}  1xx/3xx: {}  4xx: {}  5xx: {} (503: {})",
                    s.ok,
                    s.created + s.other_2xx,
                    s.other,
                    s.client_error,
                    s.server_error,
                    s.unavailable
                );
            }
            Check::Transfers(_) => {
                let t = &m.transfers;
                let _ = writeln!(
                    out,
                    "statuses:    201: {}  409 insufficient funds: {}  409 in flight: {}  other 4xx: {}  \
                     other 2xx: {}  1xx/3xx: {}  5xx: {} (503: {})",
                    s.created,
                    t.refused,
                    t.in_flight,
                    s.client_error.saturating_sub(t.refused + t.in_flight),
                    s.ok + s.other_2xx,
                    s.other,
                    s.server_error,
                    s.unavailable
                );
            }
            Check::Payouts(_) => {
                let _ = writeln!(
                    out,
                    "statuses:    201: {}  4xx: {}  other 2xx: {}  1xx/3xx: {}  5xx: {} (503: {}, of which \
                     unconfirmed: {})",
                    s.created,
                    s.client_error,
                    s.ok + s.other_2xx,
                    s.other,
                    s.server_error,
                    s.unavailable,
                    m.payouts.unconfirmed
                );
            }
        }
        let e = &m.errors;
        let _ = write!(out, "errors:      transport: {}  timeout: {}  connect: {}", e.transport, e.timeout, e.connect);
        match &self.first_error {
            Some(first) => {
                let _ = writeln!(out, "  (first: {first})");
            }
            None => out.push('\n'),
        }
        out.push_str(&self.auth.render());
        let k = &m.kinds;
        match &self.verification {
            Check::Webhook(_) => {
                let _ = writeln!(
                    out,
                    "bodies:      fresh: {}  duplicate: {}  retry: {}  (connections opened: {})",
                    k.fresh, k.duplicate, k.retry, self.connects
                );
                let _ = writeln!(
                    out,
                    "acknowledged: {} unique operations; {} left in doubt by the load, {} settled by {} resends, \
                     {} unresolved",
                    self.total_acknowledged(),
                    self.settled.carried,
                    self.settled.acknowledged,
                    self.settled.attempts,
                    self.unresolved
                );
            }
            Check::Transfers(t) => {
                let _ = writeln!(
                    out,
                    "bodies:      fresh: {}  retry: {}  (connections opened: {})",
                    k.fresh, k.retry, self.connects
                );
                let v = &t.verification;
                let last_user = t.first_user + (v.users as u64).saturating_sub(1);
                let _ = writeln!(
                    out,
                    "setup:       {} users (ids {}..={last_user}), {} deposited into each ({} deposits resent)",
                    v.users,
                    t.first_user,
                    format_kopecks(v.deposit),
                    t.deposits_resent
                );
                let _ = writeln!(
                    out,
                    "transfers:   {} applied, {} refused for insufficient funds (warm-up and resends included); \
                     {} left in doubt by the load, {} settled by {} resends, {} unresolved",
                    t.applied,
                    t.refused,
                    self.settled.carried,
                    self.settled.acknowledged,
                    self.settled.attempts,
                    self.unresolved
                );
            }
            Check::Payouts(p) => out.push_str(&render_payouts(p, self.connects)),
        }
        match &self.server_peak_rss_kib {
            Some(Ok(kib)) => {
                let _ = writeln!(out, "server peak RSS: {} MiB (VmHWM)", format_mib(*kib));
            }
            Some(Err(why)) => {
                let _ = writeln!(out, "server peak RSS: unavailable ({why})");
            }
            None => {}
        }
        out.push_str(&self.render_verification());
        out
    }

    /// The `balances: ...` line, plus one line per mismatching organization or user.
    fn render_verification(&self) -> String {
        let v = match &self.verification {
            Check::Webhook(v) => v,
            Check::Transfers(t) => return self.render_transfer_verification(t),
            Check::Payouts(p) => return render_payout_verification(&p.verification),
        };
        let mut out = String::new();
        if v.ok() {
            let _ = write!(out, "balances: OK ({} orgs, total {})", v.orgs, format_kopecks(v.total));
            if v.unverified_orgs > 0 {
                let _ = write!(
                    out,
                    "; {} orgs checked only against a range because of {} unresolved operations",
                    v.unverified_orgs, self.unresolved
                );
            }
            out.push('\n');
            return out;
        }
        let _ = writeln!(out, "balances: MISMATCH in {} of {} orgs", v.mismatches.len(), v.orgs);
        for miss in v.mismatches.iter().take(MISMATCHES_LISTED) {
            let _ = writeln!(
                out,
                "  {}: baseline {} + acknowledged {} = expected {}, server says {} (off by {})",
                miss.inn,
                format_kopecks(miss.baseline),
                format_kopecks(miss.expected - miss.baseline),
                format_kopecks(miss.expected),
                format_kopecks(miss.actual),
                format_kopecks(miss.actual - miss.expected)
            );
        }
        if v.mismatches.len() > MISMATCHES_LISTED {
            let _ = writeln!(out, "  ... and {} more", v.mismatches.len() - MISMATCHES_LISTED);
        }
        out
    }

    /// The transfers scenario's `balances: ...` line, plus one line per mismatching user.
    fn render_transfer_verification(&self, t: &TransferCheck) -> String {
        let v = &t.verification;
        let mut out = String::new();
        if v.ok() {
            let _ = write!(
                out,
                "balances: OK ({} users, total {} as deposited, conserved; {} moved by {} applied transfers",
                v.users,
                format_kopecks(v.total),
                format_kopecks(v.moved),
                t.applied
            );
            if v.unverified_users > 0 {
                let _ = write!(
                    out,
                    "; {} users checked only against a range because of {} unresolved transfers",
                    v.unverified_users, self.unresolved
                );
            }
            out.push_str(")\n");
            return out;
        }
        let _ = write!(out, "balances: MISMATCH in {} of {} users", v.mismatches.len(), v.users);
        if !v.conserved() {
            let _ = write!(
                out,
                "; money not conserved: total {}, deposited {} (off by {})",
                format_kopecks(v.total),
                format_kopecks(v.expected_total),
                format_kopecks(v.total.saturating_sub(v.expected_total))
            );
        }
        out.push('\n');
        for miss in v.mismatches.iter().take(MISMATCHES_LISTED) {
            let _ = writeln!(
                out,
                "  user {}: baseline {} + deposit {} + received {} - sent {} = expected {}, server says {} \
                 + reserved {} (off by {})",
                miss.user_id,
                format_kopecks(miss.baseline),
                format_kopecks(v.deposit),
                format_kopecks(miss.received),
                format_kopecks(miss.sent),
                format_kopecks(miss.expected),
                format_kopecks(miss.actual.amount),
                format_kopecks(miss.actual.reserved),
                format_kopecks(miss.actual.total().saturating_sub(miss.expected))
            );
        }
        if v.mismatches.len() > MISMATCHES_LISTED {
            let _ = writeln!(out, "  ... and {} more", v.mismatches.len() - MISMATCHES_LISTED);
        }
        out
    }

    /// The summary as one JSON object; latencies in milliseconds, money as exact decimal strings.
    pub fn to_json(&self) -> serde_json::Value {
        let m = &self.measured;
        let mut latency = serde_json::Map::new();
        for (label, ppm) in PERCENTILES {
            latency.insert(format!("{label}_ms"), json!(nanos_to_ms_f64(m.latency.value_at_ppm(ppm))));
        }
        latency.insert("max_ms".into(), json!(nanos_to_ms_f64(m.latency.max())));
        latency.insert("count".into(), json!(m.latency.count()));
        let (rss, rss_error) = match &self.server_peak_rss_kib {
            Some(Ok(kib)) => (Some(*kib), None),
            Some(Err(why)) => (None, Some(why.clone())),
            None => (None, None),
        };
        let mut summary = json!({
            "scenario": self.verification.scenario(),
            "requests": m.requests,
            "duration_ms": self.elapsed.as_millis() as u64,
            "warmup_requests": self.warmup_requests,
            // Throughput is a statistic, not money: a float is fine here.
            "req_per_sec": self.rate_tenths() as f64 / 10.0,
            "latency": latency,
            "status": {
                "200": m.status.ok,
                "other_2xx": m.status.created + m.status.other_2xx,
                "other": m.status.other,
                "4xx": m.status.client_error,
                "5xx": m.status.server_error,
                "503": m.status.unavailable,
            },
            "errors": {
                "transport": m.errors.transport,
                "timeout": m.errors.timeout,
                "connect": m.errors.connect,
                "first": self.first_error,
            },
            "bodies": { "fresh": m.kinds.fresh, "duplicate": m.kinds.duplicate, "retry": m.kinds.retry },
            "connections_opened": self.connects,
            "acknowledged_ops": self.total_acknowledged(),
            "in_doubt_after_load": self.settled.carried,
            "acknowledged_after_load": self.settled.acknowledged,
            "unresolved_ops": self.unresolved,
            "server_peak_rss_kib": rss,
            "server_peak_rss_error": rss_error,
            "auth": {
                "user": self.auth.user,
                "logins": self.auth.logins,
                "401": self.auth.refusals.unauthorized,
                "403": self.auth.refusals.forbidden,
                "first_refusal": self.auth.refusals.first,
            },
        });
        match &self.verification {
            Check::Webhook(v) => {
                summary["balances"] = json!({
                    "ok": v.ok(),
                    "orgs": v.orgs,
                    "total": format_kopecks(v.total),
                    "acknowledged_total": format_kopecks(v.acknowledged),
                    "mismatches": v.mismatches.len(),
                    "unverified_orgs": v.unverified_orgs,
                });
            }
            Check::Transfers(t) => {
                let v = &t.verification;
                summary["applied"] = json!(t.applied);
                summary["refused"] = json!(t.refused);
                summary["status"]["201"] = json!(m.status.created);
                summary["status"]["other_2xx"] = json!(m.status.other_2xx);
                summary["status"]["409_insufficient_funds"] = json!(m.transfers.refused);
                summary["status"]["409_in_flight"] = json!(m.transfers.in_flight);
                summary["transfers"] = json!({
                    "users": v.users,
                    "first_user": t.first_user,
                    "deposit": format_kopecks(v.deposit),
                    "deposits_resent": t.deposits_resent,
                    "applied_measured": m.transfers.applied,
                    "refused_measured": m.transfers.refused,
                });
                summary["balances"] = json!({
                    "ok": v.ok(),
                    "users": v.users,
                    "total": format_kopecks(v.total),
                    "expected_total": format_kopecks(v.expected_total),
                    "conserved": v.conserved(),
                    "moved_total": format_kopecks(v.moved),
                    "reserved_total": format_kopecks(v.reserved),
                    "mismatches": v.mismatches.len(),
                    "unverified_users": v.unverified_users,
                });
            }
            Check::Payouts(p) => {
                let v = &p.verification;
                let d = &p.drain;
                let o = &p.outcomes;
                let (lower, upper) = v.expected_finished();
                summary["status"]["201"] = json!(m.status.created);
                summary["status"]["other_2xx"] = json!(m.status.ok + m.status.other_2xx);
                summary["status"]["503_unconfirmed"] = json!(m.payouts.unconfirmed);
                // Rates are statistics, not money: floats are fine here.
                let rate = |tenths: Option<u64>| tenths.map(|t| t as f64 / 10.0);
                summary["payouts"] = json!({
                    "ok": v.ok(),
                    "created": o.created,
                    "created_measured": m.payouts.created,
                    "refused": o.refused,
                    "unconfirmed": o.unconfirmed,
                    "unknown": o.unknown,
                    "in_doubt": o.in_doubt(),
                    "completed": v.completed(),
                    "failed": v.failed(),
                    "expected_finished_min": lower,
                    "expected_finished_max": upper,
                    "drained": v.drained(),
                    "drain_interrupted": d.interrupted,
                    "drain_ms": d.elapsed.as_millis() as u64,
                    "drain_limit_s": p.patience_secs,
                    "completed_during_drain": d.completed_during_drain(),
                    "drain_payouts_per_sec": rate(d.drain_rate_tenths()),
                    "overall_ms": d.since_first_creation.as_millis() as u64,
                    "overall_payouts_per_sec": rate(p.overall_rate_tenths()),
                    "polls": d.polls,
                    "counts_before": counts_json(&v.baseline),
                    "counts_at_stop": counts_json(&d.at_stop),
                    "counts_final": counts_json(&v.last),
                });
            }
        }
        summary
    }
}

/// Counts by status as a JSON object.
fn counts_json(c: &QueueCounts) -> serde_json::Value {
    json!({ "pending": c.pending, "processing": c.processing, "completed": c.completed, "failed": c.failed })
}

/// Tenths as `12.3`, or `-` for a rate over no time.
fn tenths_text(tenths: Option<u64>) -> String {
    match tenths {
        Some(t) => format!("{}.{}", t / 10, t % 10),
        None => "-".to_owned(),
    }
}

/// The payouts scenario's creation, drain and count lines.
fn render_payouts(p: &PayoutCheck, connects: u64) -> String {
    let (o, d, v) = (&p.outcomes, &p.drain, &p.verification);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "created:     {} payouts (warm-up included; connections opened: {connects}); {} certainly not created; \
         {} in doubt and not resent ({} 503 unconfirmed, {} other answers or none)",
        o.created,
        o.refused,
        o.in_doubt(),
        o.unconfirmed,
        o.unknown
    );
    let drain_rate = tenths_text(d.drain_rate_tenths());
    let meanwhile = d.completed_during_drain();
    if !d.drained {
        let _ = writeln!(
            out,
            "drain:       still {} pending and {} processing {} s after creation stopped ({}); {meanwhile} completed \
             meanwhile, {drain_rate} payouts/s",
            d.last.pending,
            d.last.processing,
            millis_as_seconds(d.elapsed),
            if d.interrupted { "stopped by Ctrl-C".to_owned() } else { format!("--converge {}", p.patience_secs) }
        );
    } else if d.elapsed.is_zero() {
        let _ = writeln!(out, "drain:       nothing was pending or processing when creation stopped, - payouts/s");
    } else {
        let _ = writeln!(
            out,
            "drain:       nothing pending or processing {} s after creation stopped; {meanwhile} completed \
             meanwhile, {drain_rate} payouts/s",
            millis_as_seconds(d.elapsed)
        );
    }
    let _ = writeln!(
        out,
        "overall:     {} completed in {} s since the first creation, {} payouts/s",
        v.completed(),
        millis_as_seconds(d.since_first_creation),
        tenths_text(p.overall_rate_tenths())
    );
    let (b, l) = (&v.baseline, &v.last);
    let _ = writeln!(
        out,
        "by status:   completed {} (+{}), failed {} (+{}), pending {}, processing {} (before the run: completed {}, \
         failed {}, pending {}, processing {}; {} polls)",
        l.completed,
        v.completed(),
        l.failed,
        v.failed(),
        l.pending,
        l.processing,
        b.completed,
        b.failed,
        b.pending,
        b.processing,
        d.polls
    );
    out
}

/// The payouts scenario's `payouts: OK|MISMATCH (...)` line.
fn render_payout_verification(v: &PayoutVerification) -> String {
    let (lower, upper) = v.expected_finished();
    let range = if lower == upper { format!("{lower}") } else { format!("{lower}..={upper}") };
    if v.ok() {
        return format!(
            "payouts: OK (completed + failed grew by {}, expected {range} from {} created; none failed)\n",
            v.finished(),
            v.created
        );
    }
    let mut reasons = Vec::new();
    if !v.drained() {
        reasons.push(format!("the queue did not drain: {} pending, {} processing", v.last.pending, v.last.processing));
    }
    if !v.adds_up() {
        reasons.push(format!(
            "completed + failed grew by {}, expected {range} from {} created and {} in doubt",
            v.finished(),
            v.created,
            v.in_doubt
        ));
    }
    if v.failed() > 0 {
        reasons.push(format!("{} failed, and none should with the bench's card", v.failed()));
    }
    format!("payouts: MISMATCH ({})\n", reasons.join("; "))
}

/// Nanoseconds as milliseconds with three decimals, rounded to the nearest microsecond.
pub fn nanos_as_millis(nanos: u64) -> String {
    let micros = nanos.saturating_add(500) / 1_000;
    format!("{}.{:03}", micros / 1_000, micros % 1_000)
}

/// Nanoseconds as fractional milliseconds for JSON, rounded to the microsecond like the text report.
fn nanos_to_ms_f64(nanos: u64) -> f64 {
    (nanos.saturating_add(500) / 1_000) as f64 / 1_000.0
}

/// A duration as seconds with three decimals.
fn millis_as_seconds(duration: Duration) -> String {
    let millis = duration.as_millis();
    format!("{}.{:03}", millis / 1_000, millis % 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        }
    }

    #[test]
    fn formats_latency_and_time_in_integers() {
        assert_eq!(nanos_as_millis(0), "0.000");
        assert_eq!(nanos_as_millis(1_234_567), "1.235");
        assert_eq!(nanos_as_millis(999_499), "0.999");
        assert_eq!(nanos_as_millis(12_000_000_000), "12000.000");
        assert_eq!(millis_as_seconds(Duration::from_millis(10_042)), "10.042");
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
