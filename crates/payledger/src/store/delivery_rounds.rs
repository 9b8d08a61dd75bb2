//! Event delivery workers' rounds: a worker records the attempts that finished and claims more in one
//! transaction. On SQLite a round rides in a ledger batch (`WriteCommand::Deliveries`, run by the engine on the
//! writer's connection), so the one write lock is shared in arrival order with the ledger's batches and a round
//! commits with one of them, instead of taking the lock in transactions of its own that the writer must wait
//! out. On PostgreSQL, where row locks let both go on at once, a round is a transaction of its own
//! ([`super::Store::delivery_round`]), outside the ledger's batches and their account locks.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use time::OffsetDateTime;

use super::StoreError;
use super::batch::OutboxTx;
use super::event_rows::{AttemptRecord, DeliveryEnd, DeliveryRound, EndpointVerdict, RoundOutcome};

/// Runs `rounds` at `now` in `tx` and returns each one's outcome, in order. Every round's records come first,
/// in ascending delivery id, then the verdicts on their endpoints in ascending endpoint id, then the claims
/// (which skip locked rows): two transactions lock what they share in one order.
pub(crate) async fn run_rounds<T: OutboxTx>(
    tx: &mut T,
    rounds: &[&DeliveryRound],
    now: OffsetDateTime,
) -> Result<Vec<RoundOutcome>, StoreError> {
    let mut outcomes = vec![RoundOutcome::default(); rounds.len()];
    let mut records: Vec<(usize, &AttemptRecord)> = rounds
        .iter()
        .enumerate()
        .flat_map(|(index, round)| round.records.iter().map(move |record| (index, record)))
        .collect();
    records.sort_by_key(|(_, record)| record.delivery_id);
    let owned: Vec<(&str, &AttemptRecord)> =
        records.iter().map(|(index, record)| (rounds[*index].owner.as_str(), *record)).collect();
    let held = if owned.is_empty() { Default::default() } else { tx.record_attempts(&owned, now).await? };
    // Per endpoint: what its attempts say, and the round (and its failure window) that is told if it is disabled.
    let mut verdicts: BTreeMap<&str, (EndpointVerdict, usize, Duration)> = BTreeMap::new();
    for (index, record) in records {
        // A deferred delivery was not attempted: it says nothing about its endpoint.
        if !held.contains(&(record.delivery_id, record.lease)) || matches!(record.end, DeliveryEnd::Deferred(_)) {
            continue;
        }
        let (verdict, _, _) = verdicts.entry(record.endpoint_id.as_str()).or_insert((
            EndpointVerdict::default(),
            index,
            rounds[index].failure_window,
        ));
        verdict.succeeded |= record.end == DeliveryEnd::Succeeded;
        verdict.gone |= record.gone;
    }
    for (endpoint, (verdict, index, window)) in verdicts {
        if tx.judge_endpoint(endpoint, verdict, now, now - window).await? {
            outcomes[index].disabled.push(endpoint.to_owned());
        }
    }
    for (round, outcome) in rounds.iter().zip(&mut outcomes) {
        if round.limit > 0 {
            let lease = now + round.lease;
            outcome.claimed = tx.claim_deliveries(&round.owner, now, lease, round.limit, &round.excluding).await?;
        }
    }
    Ok(outcomes)
}

/// Runs the rounds among a batch's commands (`index`, round) and returns each one's outcome by its index.
pub(crate) async fn run_indexed_rounds<T: OutboxTx>(
    tx: &mut T,
    rounds: Vec<(usize, &DeliveryRound)>,
    now: OffsetDateTime,
) -> Result<HashMap<usize, RoundOutcome>, StoreError> {
    if rounds.is_empty() {
        return Ok(HashMap::new());
    }
    let only: Vec<&DeliveryRound> = rounds.iter().map(|(_, round)| *round).collect();
    let outcomes = run_rounds(tx, &only, now).await?;
    Ok(rounds.into_iter().map(|(index, _)| index).zip(outcomes).collect())
}
