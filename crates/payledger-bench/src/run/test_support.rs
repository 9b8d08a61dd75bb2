//! What the scenario tests share: a run against the mock server, and each scenario's check out of its summary.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::Parser;

use super::run;
use crate::args::Args;
use crate::mock::{MOCK_OPERATOR, MOCK_PASSWORD, Mock};
use crate::report::{Check, PayoutCheck, Summary, TransferCheck};
use crate::verify;

/// The bench's arguments to log in as the mock's operator.
pub(super) const AS_OPERATOR: [&str; 4] = ["--username", MOCK_OPERATOR, "--password", MOCK_PASSWORD];

pub(super) fn args(mock: &Mock, extra: &[&str]) -> Args {
    let url = format!("http://{}", mock.addr());
    let mut argv = vec!["payledger-bench", "--url", &url, "--warmup", "0", "--timeout", "5", "--settle", "10"];
    argv.extend_from_slice(extra);
    Args::try_parse_from(argv).unwrap()
}

pub(super) async fn bench(mock: &Mock, extra: &[&str]) -> Summary {
    run(&args(mock, extra), Arc::new(AtomicBool::new(false))).await.unwrap()
}

pub(super) fn webhook(summary: &Summary) -> &verify::Verification {
    match &summary.verification {
        Check::Webhook(v) => v,
        _ => panic!("not a webhook run"),
    }
}

pub(super) fn transfers(summary: &Summary) -> &TransferCheck {
    match &summary.verification {
        Check::Transfers(t) => t,
        _ => panic!("not a transfers run"),
    }
}

pub(super) fn payouts(summary: &Summary) -> &PayoutCheck {
    match &summary.verification {
        Check::Payouts(p) => p,
        _ => panic!("not a payouts run"),
    }
}

pub(super) async fn bench_transfers(mock: &Mock, extra: &[&str]) -> Summary {
    bench(mock, &[&["--scenario", "transfers"], extra].concat()).await
}

pub(super) async fn bench_payouts(mock: &Mock, extra: &[&str]) -> Summary {
    bench(mock, &[&["--scenario", "payouts"], extra].concat()).await
}
