//! Event delivery workers' rounds, run inside a ledger batch ([`WriteCommand::Deliveries`]): a worker records
//! the attempts that finished and claims more in one command. On SQLite the one write lock is then shared in
//! arrival order with the ledger's batches, and a round commits with the batch (one fsync for both), instead
//! of taking the lock in transactions of its own that the writer must wait out.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use time::OffsetDateTime;

use super::batch::WriteCommand;
use crate::store::StoreError;
use crate::store::batch::DeliveryTx;
use crate::store::event_rows::{AttemptRecord, DeliveryEnd, DeliveryRound, EndpointVerdict, RoundOutcome};

/// Runs the batch's delivery rounds at `now` and returns each one's outcome by its command's index. Every
/// round's records come first, in ascending delivery id, then the verdicts on their endpoints in ascending
/// endpoint id, then the claims: two batches (two instances on PostgreSQL) lock what they share in one order.
pub(super) async fn run_rounds<T: DeliveryTx>(
    tx: &mut T,
    commands: &[WriteCommand],
    now: OffsetDateTime,
) -> Result<HashMap<usize, RoundOutcome>, StoreError> {
    let rounds: Vec<(usize, &DeliveryRound)> = commands
        .iter()
        .enumerate()
        .filter_map(|(index, command)| match command {
            WriteCommand::Deliveries(round) => Some((index, round)),
            _ => None,
        })
        .collect();
    let mut outcomes: HashMap<usize, RoundOutcome> = HashMap::new();
    if rounds.is_empty() {
        return Ok(outcomes);
    }
    let mut records: Vec<(usize, &DeliveryRound, &AttemptRecord)> = rounds
        .iter()
        .flat_map(|(index, round)| round.records.iter().map(move |record| (*index, *round, record)))
        .collect();
    records.sort_by_key(|(_, _, record)| record.delivery_id);
    let owned: Vec<(&str, &AttemptRecord)> =
        records.iter().map(|(_, round, record)| (round.owner.as_str(), *record)).collect();
    let held = if owned.is_empty() { Default::default() } else { tx.record_attempts(&owned, now).await? };
    // Per endpoint: what its attempts say, and the round (and its failure window) that is told if it is disabled.
    let mut verdicts: BTreeMap<&str, (EndpointVerdict, usize, Duration)> = BTreeMap::new();
    for (index, round, record) in records {
        // A deferred delivery was not attempted: it says nothing about its endpoint.
        if !held.contains(&(record.delivery_id, record.lease)) || matches!(record.end, DeliveryEnd::Deferred(_)) {
            continue;
        }
        let (verdict, _, _) = verdicts.entry(record.endpoint_id.as_str()).or_insert((
            EndpointVerdict::default(),
            index,
            round.failure_window,
        ));
        verdict.succeeded |= record.end == DeliveryEnd::Succeeded;
        verdict.gone |= record.gone;
    }
    for (endpoint, (verdict, index, window)) in verdicts {
        if tx.judge_endpoint(endpoint, verdict, now, now - window).await? {
            outcomes.entry(index).or_default().disabled.push(endpoint.to_owned());
        }
    }
    for (index, round) in rounds {
        if round.limit > 0 {
            let lease = now + round.lease;
            let claimed = tx.claim_deliveries(&round.owner, now, lease, round.limit, &round.excluding).await?;
            outcomes.entry(index).or_default().claimed = claimed;
        }
    }
    Ok(outcomes)
}
