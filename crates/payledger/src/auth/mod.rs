//! Who is calling: users and their roles and passwords (`principals`), access and refresh tokens and the
//! random secrets and hashes behind them (`tokens`), and the login rate limit (`ratelimit`). Nothing here knows
//! HTTP: the middleware that checks credentials on every route is `api/access.rs`.

pub mod principals;
pub mod ratelimit;
pub mod tokens;
