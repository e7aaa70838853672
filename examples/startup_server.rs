//! A tiny HTTP server that backs its project up at start-up without
//! waiting for it: the pattern of the original InsightMiner Flask app.
//!
//! ```sh
//! cargo run -p backup-cli --example startup_server -- insightminer.toml
//! ```
//!
//! It prints `listening on ADDR` as soon as it serves, answers every request
//! with whether the backup is still running, and on `GET /shutdown` waits
//! for the backup and prints its report as one JSON line.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

fn main() -> anyhow::Result<()> {
    let profile = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "insightminer.toml".into());
    // 1. One call: the backup starts on a background thread.
    let backup = backup_cli::trigger_startup_backup(&profile);
    // 2. Serve at once.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    for stream in listener.incoming() {
        let mut stream = stream?;
        let mut request_line = String::new();
        BufReader::new(&stream).read_line(&mut request_line)?;
        let body = format!("backup_running={}\n", !backup.is_finished());
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        if request_line.starts_with("GET /shutdown") {
            break;
        }
    }
    // 3. Optionally, collect the report.
    let report = backup.join();
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
