//! The commands a deployment runs around the server: `payledger healthcheck` (a container's HEALTHCHECK, with
//! no curl in the image) and `payledger migrate --check` (a pipeline's gate before it rolls instances).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::store::{Store, StoreError};

/// How long a health probe waits for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The readiness URL of a server bound to `bind`, reached from the same host (an unspecified address, such
/// as `0.0.0.0`, listens on loopback too).
pub fn local_readiness_url(bind: SocketAddr) -> String {
    let host = match bind {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => "127.0.0.1".to_owned(),
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => "[::1]".to_owned(),
        SocketAddr::V4(v4) => v4.ip().to_string(),
        SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
    };
    format!("http://{host}:{}/api/health/ready/", bind.port())
}

/// GETs `url`; exit 0 on a 2xx answer, 1 otherwise (printing why on standard error).
pub async fn healthcheck(url: &str) -> ExitCode {
    let uri = match url.parse::<hyper::Uri>() {
        Ok(uri) if uri.scheme_str() == Some("http") => uri,
        _ => {
            eprintln!("unhealthy: {url} is not an http:// URL");
            return ExitCode::FAILURE;
        }
    };
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    match tokio::time::timeout(PROBE_TIMEOUT, client.get(uri)).await {
        Ok(Ok(response)) if response.status().is_success() => ExitCode::SUCCESS,
        Ok(Ok(response)) => {
            eprintln!("unhealthy: {url} answered {}", response.status());
            ExitCode::FAILURE
        }
        Ok(Err(error)) => {
            eprintln!("unhealthy: {url}: {error}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("unhealthy: {url} did not answer in {} s", PROBE_TIMEOUT.as_secs());
            ExitCode::FAILURE
        }
    }
}

/// Whether this build may run on the database as it is, without changing it: exit 0 if every migration of
/// this build is applied (a newer build's too is fine, and said), 1 if some are pending or a newer build's
/// contracting migration leaves this build behind (listed), 2 if it could not be checked.
pub async fn migrate_check(database_url: &str) -> ExitCode {
    match Store::check_migrations(database_url).await {
        Ok(state) => match state.problems() {
            problems if problems.is_empty() => {
                println!("migrations current");
                for note in state.notes() {
                    println!("{note}");
                }
                ExitCode::SUCCESS
            }
            problems => {
                for problem in problems {
                    println!("{problem}");
                }
                ExitCode::from(1)
            }
        },
        Err(StoreError::NoDatabase(path)) => {
            println!("no database at {path}: every migration is pending");
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("error: cannot check the migrations: {error}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readiness_url_reaches_an_unspecified_bind_on_loopback() {
        let url = |bind: &str| local_readiness_url(bind.parse().unwrap());
        assert_eq!(url("0.0.0.0:8000"), "http://127.0.0.1:8000/api/health/ready/");
        assert_eq!(url("127.0.0.2:9000"), "http://127.0.0.2:9000/api/health/ready/");
        assert_eq!(url("[::]:8000"), "http://[::1]:8000/api/health/ready/");
    }
}
