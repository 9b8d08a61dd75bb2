//! Hiding secrets in text meant for logs and messages.
//!
//! A leaf module: the configuration, the gateway and start-up all print URLs, and none of them should have
//! to depend on another to do it safely.

/// `url` with its password replaced by `***` (`postgres://app:***@db/ledger`), for logs and messages: database
/// and gateway URLs may both carry one.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(redact_url("postgres://app:s3cret@db:5432/ledger"), "postgres://app:***@db:5432/ledger");
        assert_eq!(redact_url("postgres://app@db/ledger"), "postgres://app@db/ledger");
        assert_eq!(redact_url("sqlite://./data/payledger.db"), "sqlite://./data/payledger.db");
    }
}
