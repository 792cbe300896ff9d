//! `recgpt`: the application over the library crates. The HTTP server ([`serve`]) is a
//! library module so that the end-to-end tests can drive its router in-process; the command
//! line and the progress bars are the binary's (`src/main.rs`, `src/cli/`).

pub mod serve;
