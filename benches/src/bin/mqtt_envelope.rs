//! mqant's answer envelope `{"Trace":"","Error":"","Result":..}` as the MQTT protocol writes it
//! (`gatekit_agent::mqtt::envelope`: the body checked to be JSON, then copied) against the way it
//! was first written (the body parsed into a `serde_json::Value`, the envelope built with `json!`
//! and printed), side by side in one process: 5 rounds of 200,000 answers each, medians.
//!
//! ```sh
//! cargo run --release -p gatekit-benches --bin mqtt_envelope
//! ```

use bytes::Bytes;
use gatekit_codec::Status;
use std::hint::black_box;
use std::time::Instant;

/// The envelope through a `serde_json::Value` (the first version; the same JSON value).
fn via_value(status: Status, body: &Bytes) -> Bytes {
    let text = String::from_utf8_lossy(body);
    let (error, result) = if status == Status::Ok {
        let result = serde_json::from_slice::<serde_json::Value>(body)
            .unwrap_or_else(|_| serde_json::Value::String(text.into_owned()));
        (String::new(), result)
    } else if body.is_empty() {
        (status.name().to_owned(), serde_json::Value::Null)
    } else {
        (
            format!("{}: {text}", status.name()),
            serde_json::Value::Null,
        )
    };
    let json = serde_json::json!({ "Trace": "", "Error": error, "Result": result });
    Bytes::from(json.to_string())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    const N: usize = 200_000;
    let list: String = (0..100)
        .map(|i| format!(r#"{{"i":{i}}}"#))
        .collect::<Vec<_>>()
        .join(",");
    let bodies: Vec<(&str, Bytes)> = vec![
        ("text, 16 B", Bytes::from_static(b"xxxxxxxxxxxxxxxx")),
        (
            "harness hex, 33 B",
            Bytes::from_static(b"h78787878787878787878787878787878"),
        ),
        (
            "JSON object, 60 B",
            Bytes::from_static(br#"{"player":12345,"room":"lobby-7","ok":true,"items":[1,2,3]}"#),
        ),
        ("JSON array, 1 KiB", Bytes::from(format!("[{list}]"))),
        ("timeout (error)", Bytes::new()),
    ];
    println!("| body | serde_json::Value ns | gatekit ns | ratio (median of rounds) |");
    println!("|---|---|---|---|");
    for (name, body) in &bodies {
        let status = if body.is_empty() {
            Status::Timeout
        } else {
            Status::Ok
        };
        let value: serde_json::Value =
            serde_json::from_slice(&gatekit_agent::mqtt::envelope(status, body)).unwrap();
        assert_eq!(
            value,
            serde_json::from_slice::<serde_json::Value>(&via_value(status, body)).unwrap(),
            "the same envelope"
        );
        let (mut old, mut new, mut ratio) = (vec![], vec![], vec![]);
        for _ in 0..5 {
            let time = |f: fn(Status, &Bytes) -> Bytes| {
                let t = Instant::now();
                for _ in 0..N {
                    black_box(f(black_box(status), black_box(body)));
                }
                t.elapsed().as_nanos() as f64 / N as f64
            };
            let o = time(via_value);
            let n = time(gatekit_agent::mqtt::envelope);
            old.push(o);
            new.push(n);
            ratio.push(o / n);
        }
        println!(
            "| {name} | {:.0} | {:.0} | {:.2}× |",
            median(old),
            median(new),
            median(ratio)
        );
    }
}
