//! docs/COMPAT.md's table of interposed calls lists exactly what librktio exports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

fn exported() -> BTreeSet<String> {
    // Every source file of the library: the entry points live one file per family.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut src = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "rs") {
            src.push_str(&std::fs::read_to_string(&p).unwrap());
        }
    }
    let mut out = BTreeSet::new();
    let key = "pub unsafe extern \"C\" fn ";
    for (i, _) in src.match_indices(key) {
        let rest = &src[i + key.len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        out.insert(name);
    }
    out
}

fn documented() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/COMPAT.md"))
        .unwrap();
    let start = doc
        .find("## Interposed calls")
        .expect("the section is there");
    let table = &doc[start..];
    let end = table[3..].find("\n## ").map_or(table.len(), |e| e + 3);
    let mut out = BTreeSet::new();
    for line in table[..end].lines().filter(|l| l.starts_with("| `")) {
        let first = line.split('|').nth(1).unwrap();
        for name in first.split('`').skip(1).step_by(2) {
            out.insert(name.to_string());
        }
    }
    out
}

#[test]
fn compat_table_matches_the_exported_calls() {
    let (e, d) = (exported(), documented());
    assert!(e.len() > 100, "found the entry points: {e:?}");
    let undocumented: Vec<_> = e.difference(&d).collect();
    let stale: Vec<_> = d.difference(&e).collect();
    assert!(
        undocumented.is_empty() && stale.is_empty(),
        "exported but not in docs/COMPAT.md: {undocumented:?}; in docs/COMPAT.md but not exported: {stale:?}"
    );
}
