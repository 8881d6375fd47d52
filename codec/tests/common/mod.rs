//! What the doc tests (`protocol_doc.rs`, `mqtt_doc.rs`, `pomelo_doc.rs`) share: reading a page of
//! `docs/`, its `<!-- example: NAME -->` hex blocks, and its `N = `hex`` length examples.

/// The text of `docs/<page>`.
pub fn doc(page: &str) -> String {
    let path = format!("{}/../docs/{page}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// (name, bytes) of every example block of a page: a line `<!-- example: NAME -->`, then a
/// ```` ```hex ```` block of hex bytes separated by spaces, where a `|` may separate the parts of
/// a packet and `#` starts a comment.
pub fn examples(doc: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- example: ")
            .and_then(|r| r.strip_suffix(" -->"))
        else {
            continue;
        };
        assert_eq!(
            lines.next().map(str::trim),
            Some("```hex"),
            "example {name}: no hex block"
        );
        let mut bytes = Vec::new();
        for l in lines.by_ref() {
            if l.trim() == "```" {
                break;
            }
            let l = l.split('#').next().unwrap();
            for word in l.split_whitespace().filter(|w| *w != "|") {
                bytes.push(
                    u8::from_str_radix(word, 16)
                        .unwrap_or_else(|_| panic!("{name}: bad hex {word}")),
                );
            }
        }
        out.push((name.to_owned(), bytes));
    }
    out
}

/// Checks that `page` (its text `doc`) shows `value = `hex`` with `value` written with thousands
/// separators (`16,384 = `80 80 01``), and that `bytes`, the encoder's output, are that hex.
pub fn assert_shows_length(page: &str, doc: &str, value: u64, hex: &str, bytes: &[u8]) {
    let got: Vec<String> = bytes.iter().map(|x| format!("{x:02x}")).collect();
    assert_eq!(got.join(" "), hex, "the encoding of {value}");
    let mut shown = value.to_string();
    let mut i = shown.len();
    while i > 3 {
        i -= 3;
        shown.insert(i, ',');
    }
    assert!(
        doc.contains(&format!("{shown} = `{hex}`")),
        "{page} lacks `{shown} = `{hex}``"
    );
}
