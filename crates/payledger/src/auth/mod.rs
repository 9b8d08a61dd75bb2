//! Who may call what: users and their roles (`principals`), access and refresh tokens and the random secrets
//! and hashes behind them (`tokens`), the access table and the middleware that enforces it (`access`), and the
//! login rate limit (`ratelimit`).

pub mod access;
pub mod principals;
pub mod ratelimit;
pub mod tokens;
