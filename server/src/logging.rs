//! Logs through `tracing`, as text or JSON lines on standard error (`[log]`).

use crate::config::{LogFormat, LogSection};
use tracing_subscriber::EnvFilter;

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// `[log] level` (or `RUST_LOG`) is not a tracing filter.
    #[error("log.level {level:?}: {reason}")]
    Filter {
        /// The filter given.
        level: String,
        /// Why it was refused.
        reason: String,
    },
}

/// Installs the process's log subscriber. `RUST_LOG`, when set, wins over `[log] level`. A
/// second call (a test, an embedding program with its own subscriber) changes nothing.
pub fn init(log: &LogSection) -> Result<(), LogError> {
    let level = std::env::var("RUST_LOG").unwrap_or_else(|_| log.level.clone());
    let filter = EnvFilter::try_new(&level).map_err(|e| LogError::Filter {
        level: level.clone(),
        reason: e.to_string(),
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match log.format {
        LogFormat::Text => builder.with_target(true).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}
