//! The fast path of JSONL field extraction: one string field of a JSON
//! object, without building a `serde_json::Value` (a map and a String per
//! key). The whole line is still checked to be valid JSON. Anything else - not
//! an object, the field missing or not a string, malformed JSON - returns
//! None, and the caller's exact `Value` path reports what is wrong.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// The text of `field` in the JSON object `line` (borrowed when it has no
/// escapes), or None when the line is not a valid object with a string there.
/// A repeated key takes its last value, as `Value` and Python's json do.
pub(crate) fn string_field<'a>(line: &'a str, field: &str) -> Option<Cow<'a, str>> {
    let mut de = serde_json::Deserializer::from_str(line);
    let found = FieldSeed(field).deserialize(&mut de).ok()?;
    de.end().ok()?;
    found
}

struct FieldSeed<'f>(&'f str);

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<Str<'de>>()? {
            if key.0 == self.0 {
                // A non-string value fails the parse: the slow path names its type.
                found = Some(map.next_value::<Str<'de>>()?.0);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// A JSON string, borrowed from the line when it needs no unescaping.
struct Str<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Str<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Str(Cow::Owned(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::string_field;

    #[test]
    fn extracts_only_valid_string_fields() {
        assert_eq!(
            string_field(r#"{"text": "a\nb", "n": [1, {"x": 2.5e400}]}"#, "text").as_deref(),
            Some("a\nb")
        );
        assert_eq!(
            string_field(r#"{"text": "plain"}"#, "text").as_deref(),
            Some("plain")
        );
        assert_eq!(
            string_field(r#"{"text": "a", "text": "b"}"#, "text").as_deref(),
            Some("b")
        );
        assert_eq!(
            string_field(r#"{"text": "\ud83d\ude00"}"#, "text").as_deref(),
            Some("😀")
        );
        for bad in [
            r#"{"text": 5}"#,
            r#"{"other": "x"}"#,
            r#"["text"]"#,
            r#"{"text": "a"} x"#,
            r#"{"text": "a", "n": tru}"#,
            r#"{"text": "a""#,
            r#""text""#,
        ] {
            assert_eq!(string_field(bad, "text"), None, "{bad}");
        }
    }
}
