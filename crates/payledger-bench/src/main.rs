//! `payledger-bench`: drives payledger with keep-alive HTTP/1.1 load, reports throughput and latency, then
//! checks the balances to the kopeck.
//!
//! Three scenarios write: `webhook` (the default) sends bank notices and checks that every acknowledged one
//! was booked exactly once; `transfers` deposits into a set of users, moves money between them, and checks
//! every user's balance against the applied transfers and that no money appeared or vanished; `payouts`
//! creates payouts, then measures how fast the server's workers drain its payout queue and checks that
//! every created payout completed.
//!
//! Three read: `balance` pays a set of organizations one bank notice each, `balances` and `history` deposit
//! into a set of users, and then each reads those accounts (an organization's balance, a user's balance, a
//! user's first history page) and checks every answer against what the set-up left. And `ceiling` reads
//! the liveness probe, which touches no data, to measure what the same client gets from HTTP alone: the
//! other scenarios' rates are reported as a share of it.
//!
//! With `--event-receiver`, the webhook scenario also receives the server's outbound `bank_payment.credited`
//! events at a receiver of its own, and checks that every acknowledged notice's event arrived.
//!
//! With `--username`/`--password` the bench logs in once at the start (but for the ceiling, whose route is
//! open) and every request it sends carries `Authorization: Bearer <access token>`, renewed before it
//! expires; any 401 or 403 answer fails the run.

mod api;
mod args;
mod auth;
mod client;
mod closed_loop;
mod events;
mod histogram;
mod inn;
mod load;
#[cfg(test)]
mod mock;
mod money;
mod payouts;
mod reads;
mod report;
mod rss;
mod run;
mod transfers;
mod verify;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;

use crate::args::Args;
use crate::report::{Check, Summary};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    tokio::spawn(stop_on_ctrl_c(Arc::clone(&stop)));
    match run::run(&args, stop).await {
        Ok(summary) => {
            print!("{}", summary.render_text());
            if args.json {
                println!("{}", summary.to_json());
            }
            exit_code(&summary)
        }
        Err(error) => {
            eprintln!("payledger-bench: {error:#}");
            // 2, not 1: the run never got as far as checking anything.
            ExitCode::from(2)
        }
    }
}

/// The first Ctrl-C ends the load gracefully so the balances are still checked; a second one aborts.
async fn stop_on_ctrl_c(stop: Arc<AtomicBool>) {
    if tokio::signal::ctrl_c().await.is_ok() {
        stop.store(true, Ordering::Relaxed);
        eprintln!("stopping: finishing in-flight requests, then verifying (Ctrl-C again to abort)");
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    }
}

/// 1 when any request was refused for authentication (401 or 403), the balances are wrong (for payouts: the
/// queue did not drain, the counts do not add up, or a payout failed; for reads: an answer said something
/// else than the set-up left), an acknowledged notice's event is missing or an unexpected one arrived
/// (`--event-receiver`), or nothing at all was acknowledged (applied, created, answered 200); errors, 5xx and
/// repeated deliveries are only reported, but for the ceiling, where any of them fails the run.
fn exit_code(summary: &Summary) -> ExitCode {
    let refusals = &summary.auth.refusals;
    if refusals.total() > 0 {
        // A refused request was measured as fast as the server could say no: the numbers mean nothing.
        eprintln!(
            "payledger-bench: the server refused {} requests for authentication (401: {}, 403: {}); check \
             --username/--password and the user's role",
            refusals.total(),
            refusals.unauthorized,
            refusals.forbidden
        );
        return ExitCode::from(1);
    }
    if !summary.verification.ok() || summary.events.as_ref().is_some_and(|events| !events.ok()) {
        return ExitCode::from(1);
    }
    match &summary.verification {
        Check::Webhook(_) if summary.total_acknowledged() == 0 => {
            eprintln!("payledger-bench: the server acknowledged nothing");
            ExitCode::from(1)
        }
        Check::Transfers(t) if t.applied == 0 => {
            eprintln!("payledger-bench: the server applied no transfer");
            ExitCode::from(1)
        }
        Check::Payouts(p) if p.verification.created == 0 => {
            eprintln!("payledger-bench: the server created no payout");
            ExitCode::from(1)
        }
        Check::Reads(r) if r.reads.checked == 0 => {
            eprintln!("payledger-bench: no read got an answer to check (200, or 404 for its account)");
            ExitCode::from(1)
        }
        _ => ExitCode::SUCCESS,
    }
}
