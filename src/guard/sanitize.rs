//! Input sanitising: the characters a reader cannot see but a model reads
//! (zero-width, bidi controls, Unicode tag characters, control characters)
//! removed from message text. Text with none of them is returned as it was,
//! without allocating.

use std::borrow::Cow;

/// Whether `c` is removed: zero-width characters (U+200B–U+200D, U+2060,
/// U+FEFF), bidi controls (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F,
/// U+061C), tag characters (U+E0000–U+E007F, the "ASCII smuggling" channel)
/// and control characters (C0, DEL, C1) except `\n`, `\r` and `\t`.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}'
        | '\u{2060}'
        | '\u{FEFF}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}'
        | '\u{061C}'
        | '\u{E0000}'..='\u{E007F}'
    ) || (c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
}

/// `text` without its invisible characters; borrowed when it has none.
pub fn strip_invisible(text: &str) -> Cow<'_, str> {
    // Printable ASCII (and \n \r \t) is most text: one pass over bytes finds
    // whether anything else is there before any char is decoded.
    let clean_ascii = text
        .bytes()
        .all(|b| (0x20..0x7F).contains(&b) || matches!(b, b'\n' | b'\r' | b'\t'));
    if clean_ascii {
        return Cow::Borrowed(text);
    }
    let Some(first) = text.find(is_invisible) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..first]);
    out.extend(text[first..].chars().filter(|&c| !is_invisible(c)));
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_is_stripped_and_newlines_tabs_stay() {
        let dirty = "a\u{200B}b\u{200C}c\u{200D}d\u{2060}e\u{FEFF}f\u{202E}g\u{2066}h\u{200E}i\u{061C}j\u{E0041}k\u{0007}l\u{0085}m\u{007F}n\r\n\to";
        assert_eq!(strip_invisible(dirty), "abcdefghijklmn\r\n\to");
    }

    #[test]
    fn clean_text_is_borrowed() {
        for clean in ["plain ascii\n", "Grüße, 東京, emoji 🙂 and ZWJ-free"] {
            assert!(
                matches!(strip_invisible(clean), Cow::Borrowed(_)),
                "{clean}"
            );
        }
    }
}
