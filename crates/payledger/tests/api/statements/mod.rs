//! Bank statements and reconciliation: the HTTP API (`http`) and the command line (`cli`).

mod cli;
mod http;
