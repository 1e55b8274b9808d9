//! The few Python behaviours whose exact output the preprocessing reproduces: `str.strip()`,
//! `str.lower()`, `os.path` joins, `json.dump` with default settings, and `repr` of shapes.

use std::fmt::Write as _;

/// Python's `str.isspace()`: Unicode `White_Space` plus the four ASCII information separators
/// (U+001C..U+001F), which Rust's `char::is_whitespace` leaves out.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `str.strip()` without arguments.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(py_isspace)
}

/// `str.lower()`: full Unicode lower-casing, final sigma included (Rust does the same).
pub fn py_lower(s: &str) -> String {
    s.to_lowercase()
}

/// `posixpath.join(a, b)` for two components.
pub fn py_join(a: &str, b: &str) -> String {
    if b.starts_with('/') {
        b.to_string()
    } else if a.is_empty() || a.ends_with('/') {
        format!("{a}{b}")
    } else {
        format!("{a}/{b}")
    }
}

/// `os.path.join(os.path.basename(head), tail)` with `head, tail = os.path.split(url)`: the
/// image path the original stores (`VG_100K/1.jpg`).
pub fn image_path_from_url(url: &str) -> String {
    let cut = url.rfind('/').map_or(0, |i| i + 1);
    let (mut head, tail) = (&url[..cut], &url[cut..]);
    if !head.is_empty() && !head.bytes().all(|b| b == b'/') {
        head = head.trim_end_matches('/');
    }
    let base = &head[head.rfind('/').map_or(0, |i| i + 1)..];
    py_join(base, tail)
}

/// A string as `json.dumps` writes it with `ensure_ascii=True`.
pub fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// `{"k": 0, ...}` as `json.dumps` writes a `dict` of `str → int`.
pub fn json_name_to_idx(out: &mut String, entries: &[(&str, i64)]) {
    out.push('{');
    for (i, (name, idx)) in entries.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        json_string(out, name);
        let _ = write!(out, ": {idx}");
    }
    out.push('}');
}

/// `["a", ...]` as `json.dumps` writes a `list` of `str`.
pub fn json_str_list(out: &mut String, items: &[&str]) {
    out.push('[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        json_string(out, s);
    }
    out.push(']');
}

/// `repr(shape)` of a numpy shape tuple: `(126,)`, `(126, 30)`.
pub fn shape_repr(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_matches_python_whitespace() {
        assert_eq!(py_strip(" \t on top of \n"), "on top of");
        assert_eq!(py_strip("\u{1f}x\u{a0}\u{3000}"), "x");
        assert_eq!(py_strip("\u{200b}x"), "\u{200b}x"); // zero-width space is not whitespace
    }

    #[test]
    fn lower_handles_final_sigma_like_python() {
        assert_eq!(py_lower("ON Top"), "on top");
        assert_eq!(py_lower("ΟΔΟΣ"), "οδος");
    }

    #[test]
    fn image_paths_keep_last_directory_and_file() {
        assert_eq!(
            image_path_from_url("https://cs.stanford.edu/people/rak248/VG_100K_2/1.jpg"),
            "VG_100K_2/1.jpg"
        );
        assert_eq!(image_path_from_url("a//VG_100K//2.jpg"), "VG_100K/2.jpg");
        assert_eq!(image_path_from_url("3.jpg"), "3.jpg");
        assert_eq!(image_path_from_url("/4.jpg"), "4.jpg");
    }

    #[test]
    fn json_escapes_like_ensure_ascii() {
        let mut s = String::new();
        json_string(&mut s, "a\"b\\c\n\u{1}é😀\u{7f}");
        assert_eq!(s, r#""a\"b\\c\n\u0001\u00e9\ud83d\ude00\u007f""#);
        let mut s = String::new();
        json_name_to_idx(&mut s, &[("__image__", 0), ("man", 1)]);
        json_str_list(&mut s, &["x", "y"]);
        assert_eq!(s, r#"{"__image__": 0, "man": 1}["x", "y"]"#);
    }

    #[test]
    fn shapes_print_like_numpy_tuples() {
        assert_eq!(shape_repr(&[126]), "(126,)");
        assert_eq!(shape_repr(&[126, 30, 4]), "(126, 30, 4)");
    }
}
