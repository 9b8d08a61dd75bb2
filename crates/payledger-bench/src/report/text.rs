//! The summary as text for people: one line per topic, then the check's verdict.

use std::fmt::Write as _;
use std::time::Duration;

use super::{AuthReport, CeilingCheck, Check, PERCENTILES, PayoutCheck, ReadCheck, Summary, TransferCheck};
use crate::api::LIVENESS_PATH;
use crate::events::EventCheck;
use crate::money::format_kopecks;
use crate::rss::format_mib;
use crate::verify::PayoutVerification;

/// At most this many mismatching organizations (or users) are listed; the count covers the rest.
const MISMATCHES_LISTED: usize = 20;

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

impl Summary {
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
        if self.batch > 1 {
            let what = match self.verification {
                Check::Transfers(_) => "transfers/s answered",
                _ => "notices/s acknowledged",
            };
            let ops = self.batched_rate_tenths();
            let _ = writeln!(out, "operations:  {}.{} {what} ({} per request)", ops / 10, ops % 10, self.batch);
        }
        let mut latency = String::new();
        for (label, ppm) in PERCENTILES {
            let _ = write!(latency, "{label} {}  ", nanos_as_millis(m.latency.value_at_ppm(ppm)));
        }
        let _ = writeln!(out, "latency ms:  {latency}max {}", nanos_as_millis(m.latency.max()));
        self.write_statuses(&mut out);
        let e = &m.errors;
        let _ = write!(out, "errors:      transport: {}  timeout: {}  connect: {}", e.transport, e.timeout, e.connect);
        match &self.first_error {
            Some(first) => {
                let _ = writeln!(out, "  (first: {first})");
            }
            None => out.push('\n'),
        }
        out.push_str(&self.auth.render());
        self.write_scenario_counts(&mut out);
        if let Some(events) = &self.events {
            out.push_str(&render_events(events));
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
        if let Some(events) = &self.events {
            out.push_str(&render_event_verification(events));
        }
        out
    }

    /// The `statuses:` line, whose columns depend on the scenario.
    fn write_statuses(&self, out: &mut String) {
        let m = &self.measured;
        let s = &m.status;
        match &self.verification {
            Check::Webhook(_) | Check::Ceiling(_) | Check::Reads(_) => {
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
    }

    /// The scenario's own counts: the request bodies sent, and what the server acknowledged or did.
    fn write_scenario_counts(&self, out: &mut String) {
        let m = &self.measured;
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
            Check::Ceiling(_) => {
                let _ = writeln!(
                    out,
                    "route:       GET {LIVENESS_PATH}, without credentials  (connections opened: {})",
                    self.connects
                );
            }
            Check::Reads(r) => out.push_str(&render_reads(r, self.connects)),
        }
    }

    /// The `balances: ...` line, plus one line per mismatching organization or user.
    fn render_verification(&self) -> String {
        let v = match &self.verification {
            Check::Webhook(v) => v,
            Check::Transfers(t) => return self.render_transfer_verification(t),
            Check::Payouts(p) => return render_payout_verification(&p.verification),
            Check::Ceiling(c) => return render_ceiling_verification(c),
            Check::Reads(r) => return render_read_verification(r),
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

/// A read scenario's set-up and answer lines.
fn render_reads(r: &ReadCheck, connects: u64) -> String {
    let mut out = String::new();
    match r.first_user {
        Some(first) => {
            let last = first + (r.accounts as u64).saturating_sub(1);
            let _ = writeln!(
                out,
                "setup:       {} users (ids {first}..={last}), {} deposited into each ({} deposits resent)",
                r.accounts,
                format_kopecks(r.seeded),
                r.setup_resent
            );
        }
        None => {
            let _ = writeln!(
                out,
                "setup:       {} orgs, one bank notice each, {} in all ({} notices resent)",
                r.accounts,
                format_kopecks(r.seeded),
                r.setup_resent
            );
        }
    }
    let _ = writeln!(
        out,
        "reads:       {} answers checked against the set-up (warm-up included), {} mismatches  (connections \
         opened: {connects})",
        r.reads.checked, r.reads.mismatches
    );
    out
}

/// The ceiling's `check: ...` line: there is nothing to verify, so only failures are named.
fn render_ceiling_verification(c: &CeilingCheck) -> String {
    if c.ok() {
        return format!(
            "check: not applicable (GET {LIVENESS_PATH} reads no data); {} answered 2xx, none failed\n",
            c.answered
        );
    }
    format!(
        "check: FAILED (not applicable to the answers, but {} answered 2xx and {} were not answered 2xx or not \
         at all: not a ceiling)\n",
        c.answered, c.failed
    )
}

/// A read scenario's `balances: OK|MISMATCH (...)` line.
fn render_read_verification(r: &ReadCheck) -> String {
    let what = match r.first_user {
        Some(_) => "users",
        None => "orgs",
    };
    let t = &r.reads;
    if r.not_answered > 0 || t.checked == 0 {
        return format!(
            "balances: FAILED ({} measured requests not answered 2xx; {} answers checked)\n",
            r.not_answered, t.checked
        );
    }
    if r.ok() {
        return format!(
            "balances: OK ({} {what}; all {} answers checked said exactly what the set-up left)\n",
            r.accounts, t.checked
        );
    }
    format!(
        "balances: MISMATCH in {} of {} answers ({} {what}); first: {}\n",
        t.mismatches,
        t.checked,
        r.accounts,
        t.first_mismatch.as_deref().unwrap_or("-")
    )
}

/// `--event-receiver`'s lines: what arrived, and how fast.
fn render_events(e: &EventCheck) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "events:      endpoint {} ({}): {} expected (one per acknowledged notice; {} more in doubt), {} delivered; \
         {} requests, {} distinct, {} duplicates",
        e.endpoint,
        e.url,
        e.expected,
        e.in_doubt,
        e.matched.delivered,
        e.counts.requests,
        e.counts.distinct,
        e.duplicates()
    );
    let _ = writeln!(
        out,
        "delivery:    {} distinct in {} s from the first to the last, {} deliveries/s (during the load: {} in {} s, \
         {}/s; after it: {} in {} s, {}/s); waited {} s after the load",
        e.counts.distinct,
        millis_as_seconds(e.span()),
        tenths_text(e.rate_tenths()),
        e.at_load_end,
        millis_as_seconds(e.during_load()),
        tenths_text(e.load_rate_tenths()),
        e.delivered_after_load(),
        millis_as_seconds(e.after_load()),
        tenths_text(e.drain_rate_tenths()),
        millis_as_seconds(e.waited)
    );
    if let Some(why) = &e.cleanup_error {
        let _ = writeln!(out, "endpoint:    NOT deleted, delete {} by hand ({why})", e.endpoint);
    }
    out
}

/// `--event-receiver`'s `events: OK|MISMATCH (...)` line.
fn render_event_verification(e: &EventCheck) -> String {
    let m = &e.matched;
    if e.ok() {
        return format!(
            "events: OK (all {} acknowledged notices' events arrived, none unexpected; {} deliveries repeated)\n",
            e.expected,
            e.duplicates()
        );
    }
    let mut reasons = Vec::new();
    if m.missing > 0 {
        let first = m.first_missing.map(|id| id.to_string()).unwrap_or_default();
        let why =
            if e.interrupted { "stopped by Ctrl-C".to_owned() } else { format!("--converge {}", e.patience_secs) };
        reasons.push(format!(
            "{} of {} acknowledged notices have no event after waiting {} s ({why}); first: {first}",
            m.missing,
            e.expected,
            millis_as_seconds(e.waited)
        ));
    }
    if m.unexpected > 0 {
        reasons.push(format!(
            "{} unexpected events; first: {}",
            m.unexpected,
            m.first_unexpected.as_deref().unwrap_or("-")
        ));
    }
    format!("events: MISMATCH ({})\n", reasons.join("; "))
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

/// A duration as seconds with three decimals.
fn millis_as_seconds(duration: Duration) -> String {
    let millis = duration.as_millis();
    format!("{}.{:03}", millis / 1_000, millis % 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_latency_and_time_in_integers() {
        assert_eq!(nanos_as_millis(0), "0.000");
        assert_eq!(nanos_as_millis(1_234_567), "1.235");
        assert_eq!(nanos_as_millis(999_499), "0.999");
        assert_eq!(nanos_as_millis(12_000_000_000), "12000.000");
        assert_eq!(millis_as_seconds(Duration::from_millis(10_042)), "10.042");
    }
}
