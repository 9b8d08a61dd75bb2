//! What the admin console reads and writes beyond the API's queries: its sessions, and the read models of its
//! pages. Each page's area has its own file with one macro of queries, instantiated for both backends (the SQL
//! is shared; SQLite accepts `$n` placeholders), and its `Store` methods.

pub mod balances;
pub mod dashboard;
pub mod jobs;
pub mod organizations;
pub mod payments;
pub mod sessions;
pub mod users;
