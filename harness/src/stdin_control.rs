//! Standard input as a stop signal: `gatekit serve --stdin-control` and `gatekit hold` end when
//! the process that started them closes their standard input (or exits).

/// Resolves when standard input reaches its end (or fails). Reads on a thread of its own, since
/// tokio's stdin is blocking underneath.
pub async fn closed() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin().lock();
        while let Ok(n) = std::io::Read::read(&mut stdin, &mut sink) {
            if n == 0 {
                break;
            }
        }
        let _ = tx.send(());
    });
    let _ = rx.await;
}
