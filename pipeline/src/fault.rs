//! Fault injection for the crash tests: `RECGPT_FAULT=NAME:N` aborts the process (no unwinding,
//! no destructors, as a SIGKILL would) the `N`th time the code passes the point `NAME`.
//!
//! The only point is `put_user`, inside the transaction that stores a user's result, after
//! the row is written and before the commit: the kill/resume test uses it to kill a batch job
//! in the middle of a write. Unset (always, outside that test) a point costs one atomic load.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Aborts here when `RECGPT_FAULT` names this point and its count is reached.
pub fn point(name: &str) {
    static FAULT: OnceLock<Option<(String, usize)>> = OnceLock::new();
    static PASSED: AtomicUsize = AtomicUsize::new(0);
    let fault = FAULT.get_or_init(|| parse(&std::env::var("RECGPT_FAULT").ok()?));
    if let Some((point, n)) = fault {
        if point == name && PASSED.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            eprintln!("RECGPT_FAULT: aborting at {name} #{n}");
            std::process::abort();
        }
    }
}

fn parse(spec: &str) -> Option<(String, usize)> {
    let (name, n) = spec.split_once(':')?;
    Some((name.to_string(), n.parse().ok().filter(|&n| n > 0)?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn specs_parse() {
        assert_eq!(super::parse("put_user:2"), Some(("put_user".into(), 2)));
        assert_eq!(super::parse("put_user:0"), None);
        assert_eq!(super::parse("put_user"), None);
        assert_eq!(super::parse("put_user:x"), None);
    }
}
