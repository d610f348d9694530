//! Path handling: absolute lexical form, mount routing, the host policy.

/// `path` made absolute against `cwd` and lexically normalised: no `.`, `..`,
/// empty components or trailing slash (`/` stays `/`).
pub fn absolute(path: &[u8], cwd: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    let joined: Vec<u8>;
    let src = if path.first() == Some(&b'/') {
        path
    } else {
        joined = [cwd, b"/", path].concat();
        &joined
    };
    for c in src.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = Vec::with_capacity(src.len());
    for p in parts {
        out.push(b'/');
        out.extend_from_slice(p);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// For `raw` (absolute, not normalised) whose normalised form is under the
/// mount at `at`: the rest of `raw` past the mount, as written (see
/// `rktio_fs::rest_under`).
pub fn raw_rest(raw: &[u8], at: &[u8]) -> Option<Vec<u8>> {
    rktio_fs::rest_under(raw, at)
}

/// If `path` (absolute, normalised) is `prefix` or below it, the rest (starting
/// with `/`, or `/` itself).
pub fn strip_under<'a>(path: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    if prefix == b"/" {
        return Some(path);
    }
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() {
        Some(b"/")
    } else if rest.first() == Some(&b'/') {
        Some(rest)
    } else {
        None
    }
}

/// Is `path` (absolute, normalised) one of `list` or below one of them?
pub fn under_any<S: AsRef<str>>(path: &[u8], list: &[S]) -> bool {
    list.iter().any(|p| {
        let p = absolute(p.as_ref().as_bytes(), b"/");
        strip_under(path, &p).is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        assert_eq!(absolute(b"a/./b//c/../d/", b"/x/y"), b"/x/y/a/b/d");
        assert_eq!(absolute(b"/../..", b"/x"), b"/");
        assert_eq!(absolute(b"", b"/x"), b"/x");
        assert_eq!(strip_under(b"/data/a", b"/data"), Some(&b"/a"[..]));
        assert_eq!(strip_under(b"/data", b"/data"), Some(&b"/"[..]));
        assert_eq!(strip_under(b"/database", b"/data"), None);
        assert!(under_any(b"/usr/lib/x.so", &["/usr"]));
        assert!(!under_any(b"/usrx", &["/usr"]));
    }

    #[test]
    fn rest_past_a_mount_as_written() {
        let r = |raw: &[u8]| raw_rest(raw, b"/data").map(|v| String::from_utf8(v).unwrap());
        assert_eq!(r(b"/data/a/../b/."), Some("/a/../b/.".into()));
        assert_eq!(r(b"//data//x/"), Some("//x/".into()));
        assert_eq!(r(b"/data"), Some("/".into()));
        assert_eq!(r(b"/./data/"), Some("/".into()));
        assert_eq!(r(b"/x/../data/a"), None);
        assert_eq!(r(b"/database/a"), None);
        assert_eq!(raw_rest(b"/a/./b", b"/"), Some(b"/a/./b".to_vec()));
    }
}
