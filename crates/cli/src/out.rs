//! Standard output for the long-running verbs (`serve`, `demo`), which keep SIGPIPE ignored so a
//! client gone mid-answer cannot stop the server. A closed stdout (`causeway demo | head -1`) is
//! then a write error, not a signal: it is remembered and ends the printing, never a panic.

use std::fmt::Arguments;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes one line; false once stdout is closed (the reader went away).
pub fn line(text: Arguments<'_>) -> bool {
    if CLOSED.load(Ordering::Relaxed) {
        return false;
    }
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{text}").and_then(|()| stdout.flush()).is_err() {
        CLOSED.store(true, Ordering::Relaxed);
        return false;
    }
    true
}

/// `println!` that ends quietly on a closed stdout; evaluates to whether the line was written.
macro_rules! say {
    () => { $crate::out::line(format_args!("")) };
    ($($arg:tt)*) => { $crate::out::line(format_args!($($arg)*)) };
}
pub(crate) use say;
