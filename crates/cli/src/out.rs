//! Standard output for every command: a reader that goes away (`mobius runs | head`)
//! ends the process quietly with the status a shell reports for SIGPIPE, as it ends
//! other Unix tools, instead of a panic.

use std::fmt;
use std::io::{self, Write};

/// What a shell reports for a process ended by SIGPIPE (128 + 13).
const BROKEN_PIPE_STATUS: i32 = 141;

fn write(body: impl FnOnce(&mut io::StdoutLock<'_>) -> io::Result<()>) {
    let stdout = io::stdout();
    let mut lock = stdout.lock();
    if let Err(e) = body(&mut lock) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(BROKEN_PIPE_STATUS);
        }
        // Another failure (a full disk) is said, and ends the command.
        let _ = writeln!(io::stderr(), "mobius: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// `println!`.
pub fn line(args: fmt::Arguments<'_>) {
    write(|w| {
        w.write_fmt(args)?;
        w.write_all(b"\n")
    });
}
