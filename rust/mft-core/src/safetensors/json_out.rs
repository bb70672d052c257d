//! JSON string output that matches Python's `json.dumps` (ensure_ascii=True),
//! so headers written here are byte-identical to the numpy reference's.

pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{:04x}", u));
                }
            }
        }
    }
    out.push('"');
}

pub fn push_u64_list(out: &mut String, values: &[u64]) {
    out.push('[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&v.to_string());
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_like_python() {
        let mut s = String::new();
        super::push_str(&mut s, "a\"\\\n\u{1}\u{7f}é😀");
        assert_eq!(s, r#""a\"\\\n\u0001\u007f\u00e9\ud83d\ude00""#);
    }
}
