//! The summary as one JSON line for scripts: latencies in milliseconds, money as exact decimal strings.

use serde_json::json;

use super::{Check, PERCENTILES, PayoutCheck, ReadCheck, Summary, TransferCheck};
use crate::events::EventCheck;
use crate::load::Stats;
use crate::money::format_kopecks;
use crate::payouts::QueueCounts;

impl Summary {
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
            Check::Transfers(t) => add_transfers_json(&mut summary, m, t),
            Check::Payouts(p) => add_payouts_json(&mut summary, m, p),
            Check::Ceiling(c) => {
                // Nothing to verify in the probe's answers: the check is not applicable, and "ok" only says
                // that every measured request was answered 2xx.
                summary["balances"] = json!({
                    "applicable": false,
                    "ok": c.ok(),
                    "answered_2xx": c.answered,
                    "failed": c.failed,
                });
            }
            Check::Reads(r) => add_reads_json(&mut summary, r),
        }
        if let Some(events) = &self.events {
            summary["events"] = events_json(events);
        }
        summary
    }
}

/// The transfers scenario's counts, `status` entries and balance check, added to the JSON summary.
fn add_transfers_json(summary: &mut serde_json::Value, m: &Stats, t: &TransferCheck) {
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

/// A read scenario's set-up and check, added to the JSON summary.
fn add_reads_json(summary: &mut serde_json::Value, r: &ReadCheck) {
    summary["setup"] = json!({
        "orgs": r.first_user.is_none().then_some(r.accounts),
        "users": r.first_user.map(|_| r.accounts),
        "first_user": r.first_user,
        // The notices' sum for organizations, the deposit into each user for users.
        "seeded": format_kopecks(r.seeded),
        "resent": r.setup_resent,
    });
    summary["balances"] = json!({
        "applicable": true,
        "ok": r.ok(),
        "checked": r.reads.checked,
        "mismatches": r.reads.mismatches,
        "first_mismatch": r.reads.first_mismatch,
        "not_answered": r.not_answered,
    });
}

/// The payouts scenario's `status` entries, outcomes, drain and count check, added to the JSON summary.
fn add_payouts_json(summary: &mut serde_json::Value, m: &Stats, p: &PayoutCheck) {
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

/// `--event-receiver`'s counts, rates and check as a JSON object.
fn events_json(e: &EventCheck) -> serde_json::Value {
    // Rates are statistics, not money: floats are fine here.
    let rate = |tenths: Option<u64>| tenths.map(|t| t as f64 / 10.0);
    json!({
        "ok": e.ok(),
        "endpoint": e.endpoint,
        "url": e.url,
        "expected": e.expected,
        "in_doubt": e.in_doubt,
        "delivered": e.matched.delivered,
        "missing": e.matched.missing,
        "first_missing": e.matched.first_missing.map(|id| id.to_string()),
        "unexpected": e.matched.unexpected,
        "first_unexpected": e.matched.first_unexpected,
        "requests": e.counts.requests,
        "distinct": e.counts.distinct,
        "duplicates": e.duplicates(),
        "deliveries_per_sec": rate(e.rate_tenths()),
        "span_ms": e.span().as_millis() as u64,
        "delivered_during_load": e.at_load_end,
        "during_load_ms": e.during_load().as_millis() as u64,
        "load_deliveries_per_sec": rate(e.load_rate_tenths()),
        "delivered_after_load": e.delivered_after_load(),
        "after_load_ms": e.after_load().as_millis() as u64,
        "after_load_deliveries_per_sec": rate(e.drain_rate_tenths()),
        "waited_ms": e.waited.as_millis() as u64,
        "wait_limit_s": e.patience_secs,
        "interrupted": e.interrupted,
        "endpoint_deleted": e.cleanup_error.is_none(),
        "cleanup_error": e.cleanup_error,
    })
}

/// Counts by status as a JSON object.
fn counts_json(c: &QueueCounts) -> serde_json::Value {
    json!({ "pending": c.pending, "processing": c.processing, "completed": c.completed, "failed": c.failed })
}

/// Nanoseconds as fractional milliseconds for JSON, rounded to the microsecond like the text report.
fn nanos_to_ms_f64(nanos: u64) -> f64 {
    (nanos.saturating_add(500) / 1_000) as f64 / 1_000.0
}
