//! The faults of a filesystem a command serves to itself (`cp` and
//! `export` mount a container's tree in their own process): kept instead
//! of logged, and said with the command's error, so that its user reads
//! one line naming the cause. A damaged chunk printed two to four error
//! log lines of the server's before an error that named nothing ("reading
//! /a: Input/output error", found by a review). Mount servers that live on
//! (`strata mount`, a container's monitor) log them as they come.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static KEEPING: AtomicBool = AtomicBool::new(false);
static FIRST: Mutex<Option<String>> = Mutex::new(None);

/// From now on, this process keeps its filesystem's faults.
pub fn keep() {
    KEEPING.store(true, Ordering::Relaxed);
}

/// Whether `record` is such a fault, kept (the first one) rather than
/// logged.
pub fn kept(record: &log::Record) -> bool {
    let ours = ["fusefs", "layerdb"]
        .iter()
        .any(|c| record.target().starts_with(c));
    if !(KEEPING.load(Ordering::Relaxed) && ours && record.level() == log::Level::Error) {
        return false;
    }
    if let Ok(mut first) = FIRST.lock() {
        first.get_or_insert_with(|| record.args().to_string());
    }
    true
}

/// `error` (one line), with the first fault kept, its cause, when there
/// is one.
pub fn with_cause(error: &str) -> String {
    match FIRST.lock().ok().and_then(|first| first.clone()) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}
