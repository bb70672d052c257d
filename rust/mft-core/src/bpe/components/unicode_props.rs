//! Char classes of HF's BERT normalizer and punctuation pre-tokenizers, read
//! from the same Unicode category tables HF reads them from.

use unicode_categories::UnicodeCategories;

/// BERT's whitespace: tab, newline, carriage return and Unicode whitespace.
pub fn is_bert_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

/// BERT's control chars (category C*), tab/newline/CR excepted.
pub fn is_bert_control(c: char) -> bool {
    if c.is_ascii() {
        return (c < ' ' || c == '\x7f') && !matches!(c, '\t' | '\n' | '\r');
    }
    c.is_other()
}

/// The CJK ideograph blocks BERT surrounds with spaces.
pub fn is_chinese_char(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B920..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

pub fn is_mark_nonspacing(c: char) -> bool {
    c.is_mark_nonspacing()
}

/// HF's punctuation (BertPreTokenizer, Punctuation): ASCII punctuation or category P*.
pub fn is_punctuation(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_punctuation();
    }
    c.is_punctuation()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert!(is_punctuation('$') && is_punctuation('、') && !is_punctuation('a'));
        assert!(is_bert_control('\u{200b}') && !is_bert_control('\n'));
        assert!(is_chinese_char('中') && !is_chinese_char('カ'));
        assert!(is_bert_whitespace('\u{3000}') && !is_bert_whitespace('x'));
    }
}
